//! Loading: batches of one stream applied in one destination transaction,
//! then marked loaded with the stream's checkpoint moved (DESIGN.md §3).
//!
//! The destination commits the rows and its `_simplyload_batches` record
//! together, so it knows by itself whether a batch is in; only after that
//! commit does the checkpoint store hear of it. A crash in between is
//! settled by recovery, which asks the destination.

use super::context::Run;
use super::retry::retrying;
use crate::batch::{BatchManifest, LoadKind};
use crate::checkpoint::{Checkpoint, LoadedStream};
use crate::destination::LoadRequest;
use crate::error::{Error, Result};
use crate::failpoint::failpoint;

/// Loads batches of one stream in one destination transaction, then marks
/// them loaded and moves the checkpoint to the last one's end position.
/// Returns the destination's row count when the load counted it.
pub(crate) async fn load_batches(run: Run<'_>, batches: &[BatchManifest], beside_read: bool) -> Result<Option<u64>> {
    let ctx = run.ctx;
    let last = batches.last().ok_or_else(|| Error::internal("load of no batches"))?;
    // The parts of one full refresh load together as the replace they begin.
    let kind = if batches[0].kind == LoadKind::Replace { LoadKind::Replace } else { last.kind };
    let request = LoadRequest {
        pipeline_id: run.pipeline_id,
        table: &last.table,
        kind,
        batches,
        staging: ctx.staging.as_ref(),
        beside_read,
    };
    let _one_load_at_a_time = run.loads.lock().await;
    let outcome = ctx
        .destination
        .load(request)
        .await
        .map_err(|e| e.context(format!("loading {} into {}", last.stream, last.table.name)))?;
    failpoint("after_load");
    let ids: Vec<u64> = batches.iter().map(|b| b.batch_id).collect();
    ctx.store
        .mark_loaded(LoadedStream {
            pipeline: &ctx.pipeline,
            stream: &last.stream,
            mode: last.mode().as_str(),
            table: &last.table.name,
            sync_id: last.sync_id,
            batch_ids: &ids,
            checkpoint: Checkpoint { batch_id: last.batch_id, position: last.end_position.clone() },
            rows: batches.iter().map(|b| b.row_count).sum(),
            destination_rows: outcome.rows_after,
            changes: Some(outcome.changes),
        })
        .await?;
    Ok(outcome.rows_after)
}

/// [`load_batches`] through the sync's retry path.
pub(crate) async fn load_with_retries(
    run: Run<'_>,
    batches: &[BatchManifest],
    beside_read: bool,
) -> Result<Option<u64>> {
    let stream = batches.first().map(|b| b.stream.as_str()).unwrap_or_default();
    retrying(run, stream, "loading", |_| load_batches(run, batches, beside_read)).await
}
