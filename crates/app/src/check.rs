//! `check`: connects to a pipeline's source and destination and verifies
//! every permission a sync needs; each failed item carries the SQL (or the
//! steps) that fix it.

use crate::App;
use serde::Serialize;
use simplyload_config::SyncMode;
use simplyload_core::plan::{self, StreamPlan, stream_name};
use simplyload_core::{CheckReport, Error, Result, StreamName};

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
    /// Checks one pipeline: the source (and its change feed for the `cdc`
    /// streams, patterns included), every stream as `sync` plans it (so
    /// `check` refuses what `sync` would: a missing cursor column, a mode the
    /// table cannot have, an unknown excluded column), and the destination.
    pub async fn check(&self, pipeline: &str) -> Result<PipelineCheck> {
        self.check_streams(pipeline, &[]).await
    }

    /// [`App::check`] of some streams only (`public.orders`; empty: all).
    pub async fn check_streams(&self, pipeline: &str, select: &[String]) -> Result<PipelineCheck> {
        let p = self.config().pipeline(pipeline)?;
        let source = self.source(&p.source)?;
        let ns = source.default_namespace();
        let mut wanted = Vec::new();
        for s in select {
            let name = StreamName::parse(s).map_err(|m| Error::config(format!("--select {s}: {m}")))?;
            wanted.push(name.qualified(ns));
        }
        let keep = |n: &StreamName| wanted.is_empty() || wanted.contains(n);
        let mut streams = Vec::new();
        for (i, s) in p.streams.iter().enumerate().filter(|(_, s)| !s.is_pattern()) {
            streams.push(stream_name(pipeline, i, s, ns)?);
        }
        let (planned, plans) = match plan::discover(source.as_ref(), &plan::selection(p, ns)).await {
            Ok(catalog) => {
                let mut plans = plan::plan_pipeline(pipeline, p, &catalog);
                if let Some(unknown) = wanted.iter().find(|w| !plans.iter().any(|(l, _)| *l == w.to_string())) {
                    let labels: Vec<&str> = plans.iter().map(|(l, _)| l.as_str()).collect();
                    return Err(Error::config(format!("pipeline {pipeline} has no stream {unknown}"))
                        .with_hint(format!("its streams are: {}", labels.join(", "))));
                }
                plans.retain(|(l, _)| StreamName::parse(l).is_ok_and(|n| keep(&n.qualified(ns))));
                (plan_report(&plans), plans)
            }
            Err(e) => {
                let mut report = CheckReport::default();
                report.fail("discovery", described(&e), None);
                (report, Vec::new())
            }
        };
        // Streams a pattern matches now are checked like named ones.
        for (_, plan) in plans.iter().filter_map(|(l, p)| Some((l, p.as_ref().ok()?))) {
            if !streams.contains(&plan.table.stream) {
                streams.push(plan.table.stream.clone());
            }
        }
        streams.retain(|n| keep(n));
        let mut sections =
            vec![CheckSection { title: format!("source {}", p.source), report: source.check(&streams).await? }];
        let mut cdc: Vec<StreamName> = p
            .streams
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.is_pattern() && s.mode.unwrap_or(p.mode) == SyncMode::Cdc)
            .filter_map(|(i, s)| stream_name(pipeline, i, s, ns).ok())
            .collect();
        for plan in plans.iter().filter_map(|(_, p)| p.as_ref().ok()).filter(|p| p.mode == SyncMode::Cdc) {
            if !cdc.contains(&plan.table.stream) {
                cdc.push(plan.table.stream.clone());
            }
        }
        cdc.retain(|n| keep(n));
        if !cdc.is_empty()
            && let (Some(feed), Some(name)) = (source.change_feed(), self.feed_name(pipeline).await?)
        {
            let title = format!("source {} (change data capture)", p.source);
            sections.push(CheckSection { title, report: feed.check(&name, &cdc).await? });
        }
        sections.push(CheckSection { title: "streams, as sync plans them".into(), report: planned });
        let dest = self.pipeline_destination(pipeline)?;
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

/// One item per planned stream: its mode and table, or why sync would refuse it.
fn plan_report(plans: &[(String, Result<StreamPlan>)]) -> CheckReport {
    let mut report = CheckReport::default();
    for (label, planned) in plans {
        match planned {
            Ok(plan) => report.pass(label.as_str(), format!("{} into {}", plan.mode, plan.table.name)),
            Err(e) => report.fail(label.as_str(), described(e), None),
        }
    }
    report
}

/// An error with its hint, as one line.
fn described(e: &simplyload_core::Error) -> String {
    match e.hint() {
        Some(h) => format!("{} (hint: {h})", e.message()),
        None => e.message().to_owned(),
    }
}
