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

/// The planned streams [`crate::runner::SyncContext::select`] asks for (all
/// when it is empty); a pipeline's `cdc` streams go all together or not at
/// all, since they share the change feed's position.
pub(crate) fn select_streams(
    run: Run<'_>,
    planned: Vec<(String, Result<StreamPlan>)>,
) -> Result<Vec<(String, Result<StreamPlan>)>> {
    let ctx = run.ctx;
    let cdc: Vec<String> = planned
        .iter()
        .filter(|(_, p)| p.as_ref().is_ok_and(|p| p.mode == SyncMode::Cdc))
        .map(|(l, _)| l.clone())
        .collect();
    let selected = plan::select_planned(&ctx.pipeline, &ctx.select, ctx.source.default_namespace(), planned)?;
    let chosen = selected.iter().filter(|(l, _)| cdc.contains(l)).count();
    if chosen > 0 && chosen < cdc.len() {
        return Err(Error::config(format!(
            "the `cdc` streams of pipeline {} share one change feed, whose position moves for all of them: \
             select all of them ({}) or none",
            ctx.pipeline,
            cdc.join(", ")
        )));
    }
    Ok(selected)
}
