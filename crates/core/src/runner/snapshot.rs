//! A snapshot read and loaded: the one sequence every full read of a stream
//! follows — a `full_refresh`, an `incremental` stream's reads, and a `cdc`
//! stream's snapshot at its change feed's start.
//!
//! The read stages parts that [`load_parts`] loads while the read goes on;
//! the read's last batch goes to the loader too, so parts still waiting load
//! with it in one transaction. A read whose error the policy retries starts
//! again in a new batch (a resumable first read then starts over); the
//! files of the batch being written when a read fails are removed at once
//! and its id abandoned, since no manifest names them.

use super::context::Run;
use super::incremental::Overlap;
use super::parts::{Loaded, PartSink, Parts, load_parts};
use super::resume::ResumableSnapshot;
use super::retry::retrying;
use super::stage::{FeedSnapshot, SnapshotJob, stage_snapshot};
use crate::batch::{BatchManifest, LoadKind};
use crate::cursor::CursorValue;
use crate::error::Result;
use crate::failpoint::failpoint;
use crate::plan::StreamPlan;
use crate::position::Position;
use crate::source::{IncrementalRead, ReadStats};

/// What to read and how to load it.
pub(crate) struct ReadPlan<'p> {
    /// The stream, as its label.
    pub stream: &'p str,
    /// The plan, its table already evolved against what was loaded.
    pub plan: &'p StreamPlan,
    /// The cursor filter, and the checkpoint's cursor it was derived from.
    pub incremental: Option<(IncrementalRead, Option<CursorValue>)>,
    /// A full read merged instead of replacing (see [`SnapshotJob::merge_full_read`]).
    pub merge_full_read: bool,
    pub overlap: Option<Overlap>,
    /// Cut into parts loaded while the read goes on.
    pub split: bool,
    pub resumable: Option<ResumableSnapshot>,
    pub feed_snapshot: Option<FeedSnapshot>,
    /// The last batch's end position, when it is not the read's own (a
    /// `cdc` stream's: the feed position its changes replay from).
    pub end_position: Option<Position>,
    /// Load the last batch as a merge of every live row, marking deleted
    /// the stored keys it lacks (a `cdc` stream read again).
    pub complete: bool,
}

/// What a read and its loads did.
pub(crate) struct ReadDone {
    /// The last batch.
    pub manifest: BatchManifest,
    pub stats: ReadStats,
    pub loaded: Loaded,
}

/// Reads a stream (in parts when `split`), loading each part as it is
/// staged; returns once everything read is loaded. A failed load stops the
/// read: the load's error is the one returned.
pub(crate) async fn read_and_load(run: Run<'_>, read: ReadPlan<'_>) -> Result<ReadDone> {
    let (parts, mut rx) = Parts::new(run, read.stream);
    let staging = async {
        let staged = retrying(run, read.stream, "reading", |attempt| stage_attempt(run, &read, &parts, attempt)).await;
        parts.read_finished();
        let staged = match staged {
            Ok(done) => hand_over_last(run, &read, &parts, done).await,
            Err(e) => Err(e),
        };
        parts.close();
        staged
    };
    let (staged, loaded) = tokio::join!(staging, load_parts(&parts, &mut rx));
    let loaded = loaded?;
    let (manifest, stats) = staged?;
    Ok(ReadDone { manifest, stats, loaded })
}

/// One attempt at the read, in a new batch; on failure the files of the
/// batch being written are removed and its id abandoned.
async fn stage_attempt(
    run: Run<'_>,
    read: &ReadPlan<'_>,
    parts: &Parts<'_>,
    attempt: u32,
) -> Result<(BatchManifest, ReadStats)> {
    let ctx = run.ctx;
    let first = ctx.store.allocate_batch(&ctx.pipeline, read.stream, run.sync_id).await?;
    parts.set_current(first);
    // A retried read starts over.
    let resumable = read.resumable.clone().map(|r| if attempt == 1 { r } else { r.restart() });
    let job = SnapshotJob {
        source: ctx.source.clone(),
        staging: ctx.staging.as_ref(),
        pipeline: &ctx.pipeline,
        table: read.plan.table.clone(),
        limits: ctx.destination.limits(),
        on_unrepresentable: ctx.config.on_unrepresentable,
        options: &ctx.options,
        sync_id: run.sync_id,
        batch_id: first,
        progress: ctx.progress.as_ref(),
        cursor: read.plan.cursor.as_ref().map(|c| c.index),
        soft_delete: read.plan.soft_delete,
        incremental: read.incremental.clone(),
        merge_full_read: read.merge_full_read,
        overlap: read.overlap.clone(),
        feed_snapshot: read.feed_snapshot.clone(),
        resumable: resumable.filter(|_| read.split),
        parts: read.split.then_some(parts as &dyn PartSink),
        cancel: Some(ctx.cancel.clone()),
    };
    let staged = stage_snapshot(job).await;
    if staged.is_err() {
        abandon_current(run, read.stream, parts.current()).await?;
    }
    staged
}

/// Removes the files of a batch no manifest names and abandons its id (0: none).
async fn abandon_current(run: Run<'_>, stream: &str, batch_id: u64) -> Result<()> {
    if batch_id == 0 {
        return Ok(());
    }
    let ctx = run.ctx;
    if let Err(cleanup) = ctx.staging.remove_batch(&ctx.pipeline, stream, batch_id).await {
        tracing::warn!(stream = %stream, batch_id, error = %cleanup, "could not remove files of a failed batch");
    }
    ctx.store.abandon_batch(&ctx.pipeline, stream, batch_id).await
}

/// Records the read's last batch and hands it to the loader.
async fn hand_over_last(
    run: Run<'_>,
    read: &ReadPlan<'_>,
    parts: &Parts<'_>,
    (mut manifest, stats): (BatchManifest, ReadStats),
) -> Result<(BatchManifest, ReadStats)> {
    if let Some(end) = &read.end_position {
        manifest.end_position = Some(end.clone());
    }
    if read.complete {
        manifest.kind = LoadKind::Merge;
        manifest.complete = true;
    }
    run.ctx.store.record_staged(&manifest).await?;
    failpoint("after_staged");
    run.ctx.progress.stream_phase(read.stream, "loading");
    parts.hand_over(manifest.clone()).await;
    Ok((manifest, stats))
}
