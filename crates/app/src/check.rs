//! `check`: connects to a pipeline's source and destination and verifies
//! every permission a sync needs; each failed item carries the SQL (or the
//! steps) that fix it.

use crate::App;
use serde::Serialize;
use simplyload_config::SyncMode;
use simplyload_core::plan::{self, expand_streams, stream_name};
use simplyload_core::{CheckReport, Result, StreamName};

/// One part of a pipeline's check (the source, its change feed, the destination).
#[derive(Debug, Clone, Serialize)]
pub struct CheckSection {
    /// `source app`, `source app (change data capture)`, `destination local`.
    pub title: String,
    pub report: CheckReport,
}

/// A pipeline's check.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineCheck {
    pub pipeline: String,
    pub source: String,
    pub destination: String,
    pub sections: Vec<CheckSection>,
}

impl PipelineCheck {
    pub fn ok(&self) -> bool {
        self.sections.iter().all(|s| s.report.ok())
    }

    /// Whether any failed item carries SQL to run.
    pub fn has_fix_sql(&self) -> bool {
        self.sections.iter().flat_map(|s| &s.report.items).any(|i| !i.ok && i.fix_sql.is_some())
    }
}

impl App {
    /// Checks one pipeline.
    pub async fn check(&self, pipeline: &str) -> Result<PipelineCheck> {
        let p = self.config().pipeline(pipeline)?;
        let source = self.source(&p.source)?;
        let ns = source.default_namespace();
        let mut streams = Vec::new();
        for (i, s) in p.streams.iter().enumerate().filter(|(_, s)| !s.is_pattern()) {
            streams.push(stream_name(pipeline, i, s, ns)?);
        }
        if p.streams.iter().any(|s| s.is_pattern()) {
            // Patterns are checked for the streams they match now.
            if let Ok(catalog) = plan::discover(source.as_ref(), &plan::selection(p, ns)).await {
                for (_, s) in expand_streams(pipeline, p, &catalog) {
                    if let Ok(n) = StreamName::parse(&s.name).map(|n| n.qualified(ns))
                        && !streams.contains(&n)
                    {
                        streams.push(n);
                    }
                }
            }
        }
        let mut sections =
            vec![CheckSection { title: format!("source {}", p.source), report: source.check(&streams).await? }];
        let cdc: Vec<StreamName> = p
            .streams
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.is_pattern() && s.mode.unwrap_or(p.mode) == SyncMode::Cdc)
            .filter_map(|(i, s)| stream_name(pipeline, i, s, ns).ok())
            .collect();
        if !cdc.is_empty()
            && let (Some(feed), Some(name)) = (source.change_feed(), self.feed_name(pipeline).await?)
        {
            let title = format!("source {} (change data capture)", p.source);
            sections.push(CheckSection { title, report: feed.check(&name, &cdc).await? });
        }
        let dest = self.destination(&p.destination)?;
        let report = dest.check().await?;
        dest.end_sync().await;
        sections.push(CheckSection { title: format!("destination {}", p.destination), report });
        Ok(PipelineCheck {
            pipeline: pipeline.to_owned(),
            source: p.source.clone(),
            destination: p.destination.clone(),
            sections,
        })
    }
}
