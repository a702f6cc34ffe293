//! Streams whose destination lost what was loaded (DESIGN.md §3).
//!
//! The state says a stream is loaded up to its checkpoint's batch; the
//! destination may say otherwise: its file was deleted, the config points at
//! a new one, someone dropped the table, or the table was written by another
//! state (another `pipeline_id`). Going on from the checkpoint would leave
//! the destination with only what changed since. So at the start of a sync,
//! before unfinished batches are settled, every stream with a checkpoint is
//! checked ([`crate::Destination::missing`]); one the destination no longer
//! holds starts a new generation — its checkpoint position is cleared and
//! its unfinished batches abandoned — and is read again in full. The report
//! says why.

use super::context::Run;
use crate::destination::LoadMark;
use crate::error::Result;
use crate::plan::StreamPlan;
use std::collections::BTreeMap;

/// Checks the planned streams against the destination; every stream it no
/// longer holds is set to be read again in full. Returns, per stream, why.
pub(crate) async fn reread_lost(
    run: Run<'_>,
    planned: &[(String, Result<StreamPlan>)],
) -> Result<BTreeMap<String, String>> {
    let ctx = run.ctx;
    let lost = find_lost(run, planned).await?;
    for (stream, reason) in &lost {
        tracing::warn!(pipeline = %ctx.pipeline, stream = %stream, "{reason}");
        abandon_unfinished(run, stream).await?;
        ctx.store.request_resync(&ctx.pipeline, stream).await?;
    }
    Ok(lost)
}

/// The planned streams with a checkpoint that the destination no longer
/// holds, and why (changes nothing).
pub(crate) async fn find_lost(
    run: Run<'_>,
    planned: &[(String, Result<StreamPlan>)],
) -> Result<BTreeMap<String, String>> {
    let ctx = run.ctx;
    let states = ctx.store.streams(run.pipeline()).await?;
    let marks: Vec<LoadMark<'_>> = planned
        .iter()
        .filter_map(|(label, plan)| {
            let plan = plan.as_ref().ok()?;
            let checkpoint = states.iter().find(|s| &s.stream == label)?.checkpoint.as_ref()?;
            Some(LoadMark { stream: label, table: &plan.table.name, batch_id: checkpoint.batch_id })
        })
        .collect();
    if marks.is_empty() {
        return Ok(BTreeMap::new());
    }
    let missing = ctx.destination.missing(run.pipeline_id, &marks).await?;
    Ok(missing
        .into_iter()
        .filter_map(|(stream, why)| {
            let mark = marks.iter().find(|m| m.stream == stream)?;
            Some((stream, why.reason(mark)))
        })
        .collect())
}

/// Batches of a lost stream not yet loaded belong to the old generation:
/// their files are removed and their ids abandoned.
async fn abandon_unfinished(run: Run<'_>, stream: &str) -> Result<()> {
    let ctx = run.ctx;
    for b in ctx.store.unfinished_batches(&ctx.pipeline).await?.into_iter().filter(|b| b.stream == stream) {
        ctx.staging.remove_batch(&ctx.pipeline, stream, b.batch_id).await?;
        ctx.store.abandon_batch(&ctx.pipeline, stream, b.batch_id).await?;
    }
    Ok(())
}
