//! `sync --select`: the streams a sync takes ([`crate::runner::SyncContext::select`]).

use super::context::Run;
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::plan::{self, StreamPlan};
use simplyload_config::SyncMode;

/// The pipeline's streams as this sync takes them: planned against the
/// catalog, in the tables they were loaded into, and only those selected.
pub(crate) async fn plan_streams(run: Run<'_>, catalog: &Catalog) -> Result<Vec<(String, Result<StreamPlan>)>> {
    let ctx = run.ctx;
    let mut planned = plan::plan_pipeline(run.pipeline(), &ctx.config, catalog);
    let states = ctx.store.streams(run.pipeline()).await?;
    let loaded = |s: &str| states.iter().find(|x| x.stream == s).map(|x| x.table.clone()).filter(|t| !t.is_empty());
    plan::keep_loaded_tables(&ctx.config, &catalog.database, &mut planned, loaded);
    select_streams(run, planned)
}

/// The planned streams [`crate::runner::SyncContext::select`] asks for (all when it is empty).
pub(crate) fn select_streams(
    run: Run<'_>,
    planned: Vec<(String, Result<StreamPlan>)>,
) -> Result<Vec<(String, Result<StreamPlan>)>> {
    let ctx = run.ctx;
    if ctx.select.is_empty() {
        return Ok(planned);
    }
    let ns = ctx.source.default_namespace();
    let mut wanted = Vec::new();
    for s in &ctx.select {
        let name = crate::naming::StreamName::parse(s).map_err(|m| Error::config(format!("--select {s}: {m}")))?;
        wanted.push(name.qualified(ns).to_string());
    }
    let labels: Vec<&str> = planned.iter().map(|(l, _)| l.as_str()).collect();
    if let Some(unknown) = wanted.iter().find(|w| !labels.contains(&w.as_str())) {
        return Err(Error::config(format!("pipeline {} has no stream {unknown}", ctx.pipeline))
            .with_hint(format!("its streams are: {}", labels.join(", "))));
    }
    let cdc: Vec<&str> = planned
        .iter()
        .filter(|(_, p)| p.as_ref().is_ok_and(|p| p.mode == SyncMode::Cdc))
        .map(|(l, _)| l.as_str())
        .collect();
    let chosen = cdc.iter().filter(|l| wanted.iter().any(|w| w == *l)).count();
    if chosen > 0 && chosen < cdc.len() {
        return Err(Error::config(format!(
            "the `cdc` streams of pipeline {} share one change feed, whose position moves for all of them: \
             select all of them ({}) or none",
            ctx.pipeline,
            cdc.join(", ")
        )));
    }
    Ok(planned.into_iter().filter(|(l, _)| wanted.contains(l)).collect())
}
