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
        let (planned, plans) = match plan::discover(source.as_ref(), &plan::selection(p, ns)).await {
            Ok(catalog) => {
                let plans = plan::select_planned(pipeline, select, ns, plan::plan_pipeline(pipeline, p, &catalog))?;
                (plan_report(&plans), plans)
            }
            Err(e) => {
                let mut report = CheckReport::default();
                report.fail("discovery", described(&e), None);
                (report, Vec::new())
            }
        };
        let (streams, cdc) = checked_streams(pipeline, p, ns, select, &plans)?;
        let mut sections =
            vec![CheckSection { title: format!("source {}", p.source), report: source.check(&streams).await? }];
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

/// The streams the source is checked for, and those of them read through
/// the change feed: the configured names and what patterns match now (from
/// the plans), narrowed to `select`.
fn checked_streams(
    pipeline: &str,
    p: &simplyload_config::PipelineConfig,
    ns: Option<&str>,
    select: &[String],
    plans: &[(String, Result<StreamPlan>)],
) -> Result<(Vec<StreamName>, Vec<StreamName>)> {
    let mut streams = Vec::new();
    let mut cdc = Vec::new();
    for (i, s) in p.streams.iter().enumerate().filter(|(_, s)| !s.is_pattern()) {
        let name = stream_name(pipeline, i, s, ns)?;
        if s.mode.unwrap_or(p.mode) == SyncMode::Cdc {
            cdc.push(name.clone());
        }
        streams.push(name);
    }
    for plan in plans.iter().filter_map(|(_, p)| p.as_ref().ok()) {
        let name = &plan.table.stream;
        if !streams.contains(name) {
            streams.push(name.clone());
        }
        if plan.mode == SyncMode::Cdc && !cdc.contains(name) {
            cdc.push(name.clone());
        }
    }
    let mut wanted = Vec::new();
    for s in select {
        wanted.push(StreamName::parse(s).map_err(|m| Error::config(format!("--select {s}: {m}")))?.qualified(ns));
    }
    let keep = |n: &StreamName| wanted.is_empty() || wanted.contains(n);
    streams.retain(|n| keep(n));
    cdc.retain(|n| keep(n));
    Ok((streams, cdc))
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
