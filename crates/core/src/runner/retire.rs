//! A pipeline that no longer has a `cdc` stream (its mode was switched)
//! keeps its change feed on the source, which holds changes for a reader
//! that never comes (a Postgres slot holds WAL: gigabytes within minutes
//! under load). Once every stream has loaded in its new mode, the feed is
//! removed and the state forgets it.

use super::changes::existing_feed_name;
use super::context::Run;
use crate::error::Result;
use crate::report::SyncReport;
use simplyload_config::{PipelineConfig, SyncMode};

/// Whether any stream of the pipeline is read through the change feed.
pub fn uses_change_feed(p: &PipelineConfig) -> bool {
    p.streams.iter().any(|s| s.mode.unwrap_or(p.mode) == SyncMode::Cdc)
}

/// After a successful sync of a pipeline without `cdc` streams, removes
/// the feed its state made. A failure to remove it is a warning with the
/// SQL to do it by hand; the sync itself succeeded.
pub(crate) async fn retire_unused_feed(run: Run<'_>, report: &mut SyncReport) {
    if !report.succeeded() || uses_change_feed(&run.ctx.config) {
        return;
    }
    let Some(feed) = run.ctx.source.change_feed() else { return };
    match retire(run, feed).await {
        Ok(Some(done)) => report.warnings.push(done),
        Ok(None) => {}
        Err(e) => report.warnings.push(format!("{e}")),
    }
}

async fn retire(run: Run<'_>, feed: &dyn crate::feed::ChangeFeed) -> Result<Option<String>> {
    let store = run.ctx.store.as_ref();
    let Some(name) = existing_feed_name(feed, store, run.pipeline()).await? else { return Ok(None) };
    let existed = feed.remove(&name).await.map_err(|e| {
        e.context(format!("no `cdc` stream uses {} {name} any more, but it could not be dropped", feed.what()))
    })?;
    store.forget_feed(run.pipeline()).await?;
    tracing::info!(pipeline = %run.pipeline(), feed = %name, existed, "removed the change feed no stream uses");
    Ok(existed.then(|| format!("dropped {} {name}: no `cdc` stream of this pipeline uses it any more", feed.what())))
}
