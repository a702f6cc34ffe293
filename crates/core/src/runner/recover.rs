//! Recovery at the start of a sync: finishes what an earlier, interrupted
//! run left (DESIGN.md §3).
//!
//! * A batch whose id was taken but whose manifest was never recorded
//!   (`staging`) has files no manifest names: they are removed and the id
//!   abandoned. Ids are never reused.
//! * A batch recorded `staged` is loaded — unless the destination already
//!   has it in `_simplyload_batches` (the crash came between the
//!   destination's commit and the checkpoint store's write), in which case
//!   it is only marked loaded.

use super::context::Run;
use super::load::load_batches;
use crate::batch::{BatchManifest, BatchState};
use crate::checkpoint::{BatchRecord, Checkpoint, LoadedStream};
use crate::error::Result;
use crate::naming::StreamName;
use crate::plan;
use std::collections::BTreeMap;

/// Settles every unfinished batch of the pipeline's configured streams.
/// Returns, per stream, the ids of the batches it settled.
pub(crate) async fn recover(run: Run<'_>) -> Result<BTreeMap<String, Vec<u64>>> {
    let ctx = run.ctx;
    let unfinished = ctx.store.unfinished_batches(&ctx.pipeline).await?;
    // Streams taken out of the config keep their batches until they come back.
    let default_ns = ctx.source.default_namespace();
    let configured = |stream: &str| StreamName::parse(stream).is_ok_and(|n| plan::selects(&ctx.config, &n, default_ns));
    let mut by_stream: BTreeMap<String, Vec<BatchRecord>> = BTreeMap::new();
    for b in unfinished.into_iter().filter(|b| configured(&b.stream)) {
        by_stream.entry(b.stream.clone()).or_default().push(b);
    }
    let mut settled = BTreeMap::new();
    for (stream, records) in by_stream {
        ctx.progress.stream_phase(&stream, "recovering");
        let staged = abandon_unstaged(run, &stream, records).await?;
        if staged.is_empty() {
            continue;
        }
        settled.insert(stream.clone(), settle_staged(run, &stream, &staged).await?);
    }
    Ok(settled)
}

/// Abandons the batches never recorded staged; returns the staged ones.
async fn abandon_unstaged(run: Run<'_>, stream: &str, records: Vec<BatchRecord>) -> Result<Vec<BatchManifest>> {
    let ctx = run.ctx;
    let mut staged = Vec::new();
    for r in records {
        match (r.state, r.manifest) {
            (BatchState::Staged, Some(m)) => staged.push(m),
            _ => {
                tracing::info!(pipeline = %ctx.pipeline, stream = %stream, batch_id = r.batch_id,
                    "abandoning a batch whose staging was interrupted");
                ctx.staging.remove_batch(&ctx.pipeline, stream, r.batch_id).await?;
                ctx.store.abandon_batch(&ctx.pipeline, stream, r.batch_id).await?;
            }
        }
    }
    Ok(staged)
}

/// Loads the staged batches the destination does not have, in order, and
/// marks loaded those it has.
async fn settle_staged(run: Run<'_>, stream: &str, staged: &[BatchManifest]) -> Result<Vec<u64>> {
    let ctx = run.ctx;
    let ids: Vec<u64> = staged.iter().map(|m| m.batch_id).collect();
    let in_destination = ctx.destination.loaded_batches(run.pipeline_id, stream, &ids).await?;
    for m in staged {
        if in_destination.contains(&m.batch_id) {
            tracing::info!(pipeline = %ctx.pipeline, stream = %stream, batch_id = m.batch_id,
                "batch was committed in the destination before the crash; marking it loaded");
            ctx.store
                .mark_loaded(LoadedStream {
                    pipeline: &ctx.pipeline,
                    stream,
                    mode: m.mode().as_str(),
                    table: &m.table.name,
                    sync_id: m.sync_id,
                    batch_ids: &[m.batch_id],
                    checkpoint: Checkpoint { batch_id: m.batch_id, position: m.end_position.clone() },
                    rows: m.row_count,
                    destination_rows: None,
                    changes: None,
                })
                .await?;
        } else {
            tracing::info!(pipeline = %ctx.pipeline, stream = %stream, batch_id = m.batch_id,
                rows = m.row_count, "loading a batch staged by an interrupted sync");
            load_batches(run, std::slice::from_ref(m), false).await?;
        }
    }
    Ok(ids)
}
