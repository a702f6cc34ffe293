//! The sync runner: extract → stage → load → commit checkpoint (DESIGN.md §3).
//!
//! Why this order survives a crash at any instant:
//! * A batch id is taken (`staging`) before any file is written, so an
//!   interrupted read leaves files no manifest names; the next run abandons
//!   that id and removes its files. Ids are never reused.
//! * The manifest is recorded (`staged`) only after every file is durable.
//! * The destination load and the `_simplyload_batches` row commit in one
//!   destination transaction, so the destination itself knows whether a
//!   batch is in.
//! * Only then is the batch marked `loaded` in the checkpoint store. If the
//!   process dies between the destination commit and that write, the next
//!   run asks the destination, finds the batch, and marks it loaded without
//!   applying it twice.

use crate::batch::{BatchManifest, BatchState, LoadKind};
use crate::checkpoint::{BatchRecord, Checkpoint, CheckpointStore, LoadedStream};
use crate::cursor::CursorValue;
use crate::destination::{Destination, LoadRequest};
use crate::error::{Error, ErrorKind, Policy, Result};
use crate::plan::{self, StreamPlan};
use crate::progress::Progress;
use crate::report::{StreamReport, SyncReport};
use crate::row_id;
use crate::schema::{TableSpec, ValueLimits, meta};
use crate::source::{
    DEFAULT_BATCH_BYTES, DEFAULT_BATCH_ROWS, IncrementalRead, ReadStats, SnapshotRequest, Source, SourceBatch,
};
use crate::staging::StagingArea;
use arrow_array::{Array, ArrayRef, BooleanArray, Decimal128Array, RecordBatch};
use simplyload_config::{OnUnrepresentable, PipelineConfig};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use uuid::Uuid;

/// Rows in one batch are numbered below this; the version of a snapshot row
/// is `batch_id × 2³² + ordinal` (DESIGN.md §3).
pub const MAX_ROWS_PER_BATCH: u64 = 1 << 32;

/// Default [`SyncOptions::part_rows`]: four of DuckDB's row groups
/// (122,880 rows), so no part leaves a partly filled row group for the
/// next part's commit to rewrite (with 250,000-row parts, closing the file
/// after each part took ten times as long as with 245,760).
pub const DEFAULT_PART_ROWS: u64 = 491_520;

/// Default [`SyncOptions::snapshot_parallelism`]: one reader per core, at most 4.
/// Default [`SyncOptions::parallel_min_bytes`]: below this a table is read
/// in one piece (more connections cost more than they bring).
pub const DEFAULT_PARALLEL_MIN_BYTES: u64 = 64 << 20;

pub fn default_snapshot_parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4)
}

/// Tuning knobs of a sync.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub batch_rows: usize,
    pub batch_bytes: usize,
    /// Arrow batches buffered between the reader and the Parquet writer.
    pub channel_depth: usize,
    /// Retries of a stream's read or load after a retryable failure
    /// ([`ErrorKind::policy`]).
    pub retries: u32,
    /// The first retry waits this long; each next one twice as long.
    pub retry_base: std::time::Duration,
    /// A snapshot of a table with a key is cut into batches ("parts") of
    /// about this many rows, so loading one overlaps reading the next
    /// (DESIGN.md §2). Every part is a batch of its own: staged, recorded,
    /// loaded in its own transaction and checkpointed.
    pub part_rows: u64,
    /// Connections a snapshot of a large table is read with at once
    /// (`snapshot_parallelism`; default: the machine's cores, at most 4).
    pub snapshot_parallelism: usize,
    /// Tables at least this large on disk are read in parallel page ranges
    /// (`snapshot_parallel_min_bytes`; default 64 MiB).
    pub parallel_min_bytes: u64,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            batch_rows: DEFAULT_BATCH_ROWS,
            batch_bytes: DEFAULT_BATCH_BYTES,
            channel_depth: 2,
            retries: 3,
            retry_base: std::time::Duration::from_secs(1),
            part_rows: DEFAULT_PART_ROWS,
            snapshot_parallelism: default_snapshot_parallelism(),
            parallel_min_bytes: DEFAULT_PARALLEL_MIN_BYTES,
        }
    }
}

/// Everything one sync of one pipeline needs.
pub struct SyncContext {
    pub pipeline: String,
    pub config: PipelineConfig,
    pub source: Arc<dyn Source>,
    pub destination: Arc<dyn Destination>,
    pub store: Arc<dyn CheckpointStore>,
    pub staging: Arc<dyn StagingArea>,
    pub progress: Arc<dyn Progress>,
    pub options: SyncOptions,
}

/// Runs one sync. Returns `Err` only when the checkpoint store cannot record
/// the sync at all; every other failure is in the report (per stream, or as
/// the sync's error), and [`SyncReport::succeeded`] tells whether it worked.
pub async fn run_sync(ctx: &SyncContext) -> Result<SyncReport> {
    let started = Instant::now();
    let pipeline_id = ctx.store.pipeline_id(&ctx.pipeline).await?;
    let sync_id = ctx.store.begin_sync(&ctx.pipeline).await?;
    let mut report = SyncReport {
        pipeline: ctx.pipeline.clone(),
        sync_id,
        streams: Vec::new(),
        error: None,
        duration_ms: 0,
        statements: Vec::new(),
        warnings: Vec::new(),
    };
    tracing::info!(pipeline = %ctx.pipeline, sync_id, "sync started");

    ctx.destination.begin_sync(&ctx.pipeline, sync_id);
    let outcome = run_streams(ctx, pipeline_id, sync_id, &mut report).await;
    report.statements = ctx.destination.end_sync().await;
    if let Err(e) = outcome {
        tracing::error!(pipeline = %ctx.pipeline, sync_id, error = %e, "sync failed");
        report.error = Some(e.to_string());
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    ctx.store.finish_sync(&report).await?;
    tracing::info!(
        pipeline = %ctx.pipeline,
        sync_id,
        rows = report.rows(),
        duration_ms = report.duration_ms,
        succeeded = report.succeeded(),
        "sync finished"
    );
    Ok(report)
}

async fn run_streams(ctx: &SyncContext, pipeline_id: Uuid, sync_id: i64, report: &mut SyncReport) -> Result<()> {
    let mut recovered = recover(ctx, pipeline_id).await?;
    let catalog = ctx.source.discover().await.map_err(|e| e.context(format!("source `{}`", ctx.config.source)))?;
    let mut cdc = Vec::new();
    for (label, planned) in plan::plan_pipeline(&ctx.pipeline, &ctx.config, &catalog) {
        if let Ok(plan) = &planned
            && plan.mode == simplyload_config::SyncMode::Cdc
        {
            cdc.push((label, plan.clone()));
            continue;
        }
        let started = Instant::now();
        let recovered_batches = recovered.remove(&label).unwrap_or_default();
        let result = match planned {
            Ok(plan) => {
                ctx.progress.stream_started(&label, &plan.table.name, plan.estimated_rows);
                run_stream(ctx, pipeline_id, sync_id, &plan).await.map(|r| (plan, r))
            }
            Err(e) => Err(e),
        };
        let stream_report = match result {
            Ok((plan, done)) => StreamReport {
                schema_changes: done.schema_changes,
                stream: label.clone(),
                table: plan.table.name.clone(),
                mode: plan.mode.to_string(),
                status: "succeeded".into(),
                rows: done.rows,
                source_bytes: done.source_bytes,
                staged_bytes: done.staged_bytes,
                batch_id: Some(done.batch_id),
                duration_ms: started.elapsed().as_millis() as u64,
                unrepresentable: done.unrepresentable,
                position: done.position,
                renames: plan.renames.clone(),
                recovered_batches,
                error: None,
            },
            Err(e) => {
                tracing::error!(pipeline = %ctx.pipeline, stream = %label, error = %e, "stream failed");
                let _ = ctx.store.record_stream_error(&ctx.pipeline, &label, &e.to_string()).await;
                StreamReport {
                    schema_changes: Vec::new(),
                    stream: label.clone(),
                    table: String::new(),
                    mode: String::new(),
                    status: "failed".into(),
                    rows: 0,
                    source_bytes: 0,
                    staged_bytes: 0,
                    batch_id: None,
                    duration_ms: started.elapsed().as_millis() as u64,
                    unrepresentable: Vec::new(),
                    position: None,
                    renames: Vec::new(),
                    recovered_batches,
                    error: Some(e.to_string()),
                }
            }
        };
        ctx.progress.stream_finished(&stream_report);
        report.streams.push(stream_report);
    }
    // CDC streams; a read that stopped at a schema change goes on with a new plan.
    let mut rounds = 0;
    while !cdc.is_empty() && crate::cdc_sync::run_cdc(ctx, pipeline_id, sync_id, cdc, report).await {
        rounds += 1;
        if rounds >= 1000 {
            break;
        }
        let catalog = ctx.source.discover().await.map_err(|e| e.context(format!("source `{}`", ctx.config.source)))?;
        cdc = plan::plan_pipeline(&ctx.pipeline, &ctx.config, &catalog)
            .into_iter()
            .filter_map(|(label, p)| p.ok().filter(|p| p.mode == simplyload_config::SyncMode::Cdc).map(|p| (label, p)))
            .collect();
    }
    Ok(())
}

struct StreamDone {
    batch_id: u64,
    rows: u64,
    source_bytes: u64,
    staged_bytes: u64,
    unrepresentable: Vec<crate::report::Unrepresentable>,
    position: Option<serde_json::Value>,
    schema_changes: Vec<String>,
}

/// The cursor an incremental stream's checkpoint holds, if it was written
/// for the same cursor column (a changed cursor starts over with a snapshot).
pub fn checkpoint_cursor(position: Option<&serde_json::Value>, column: &str) -> Option<CursorValue> {
    let p = position?;
    if p.get("mode")?.as_str()? != "incremental" || p.get("column")?.as_str()? != column {
        return None;
    }
    serde_json::from_value(p.get("cursor")?.clone()).ok()
}

async fn run_stream(ctx: &SyncContext, pipeline_id: Uuid, sync_id: i64, plan: &StreamPlan) -> Result<StreamDone> {
    let stream = plan.stream();
    // Schema evolution against what the destination table holds now.
    let mut plan = plan.clone();
    let previous = ctx.store.last_loaded_table(&ctx.pipeline, &stream).await?;
    let loaded_before = previous.is_some();
    let changes = match previous {
        Some(previous) => plan::evolve(&previous, &mut plan.table, &plan.defaults),
        None => Vec::new(),
    };
    for c in &changes {
        tracing::info!(pipeline = %ctx.pipeline, stream = %stream, change = %c, "schema change");
    }
    let reread = changes.iter().any(plan::SchemaChange::needs_reread);
    let plan = &plan;
    let mut overlap = None;
    let mut resumable = None;
    let incremental = match &plan.cursor {
        None => None,
        Some(c) => {
            let column = &plan.table.columns[c.index];
            let state = ctx.store.streams(&ctx.pipeline).await?.into_iter().find(|s| s.stream == stream);
            let position = state.and_then(|s| s.checkpoint).and_then(|cp| cp.position);
            let previous = checkpoint_cursor(position.as_ref(), &column.source_name);
            // The first read (no cursor yet) of a table with a key goes on
            // after a crash from the parts it loaded, unless the table's
            // shape changed meanwhile.
            if previous.is_none() && plan.table.has_key() {
                let name = column.source_name.as_str();
                resumable = Some(ResumableSnapshot::from_checkpoint(
                    position.as_ref(),
                    |p| {
                        changes.is_empty()
                            && p.get("mode").and_then(|m| m.as_str()) == Some(INCREMENTAL_SNAPSHOT_MODE)
                            && p.get("column").and_then(|c| c.as_str()) == Some(name)
                    },
                    serde_json::json!({"mode": INCREMENTAL_SNAPSHOT_MODE, "column": name}),
                ));
            }
            overlap = Some(Overlap {
                lookback: Some(c.lookback),
                // After a re-read every row is staged again.
                loaded: if reread {
                    Default::default()
                } else {
                    checkpoint_overlap(position.as_ref(), &column.source_name)
                },
            });
            Some((
                IncrementalRead {
                    column: column.source_name.clone(),
                    sql_type: column.sql_type,
                    // A change that gave existing rows new values without
                    // touching their cursor: read everything again (merged,
                    // so columns no longer filled keep their data).
                    from: if reread { None } else { previous.as_ref().map(|p| p.minus(&c.lookback)) },
                },
                previous,
            ))
        }
    };
    // Transient failures (a dropped connection, a restarting server) are
    // retried with backoff; a failed read starts a new batch, a failed load
    // loads the same staged batch again.
    // A large read is cut into parts: each finished part is loaded by the
    // loader below while the read goes on. Up to four finished parts wait
    // (their files are on disk, not in memory); the loader takes every part
    // waiting into one load, so a destination slower than the read does
    // fewer, larger transactions.
    let (part_tx, mut part_rx) = mpsc::channel::<BatchManifest>(4);
    let parts = Parts::new(ctx, sync_id, &stream, part_tx, 0);
    let read_done = std::sync::atomic::AtomicBool::new(false);
    // A full refresh replaces a loaded table's rows in one transaction
    // (DESIGN.md §4), so only its first load, into a table that holds
    // nothing of this stream yet, is cut into parts; merges always may be.
    let split = plan.mode != simplyload_config::SyncMode::FullRefresh || !loaded_before;
    let read = async {
        let mut attempt = 0;
        let staged = loop {
            attempt += 1;
            match stage_stream(
                ctx,
                sync_id,
                plan,
                &stream,
                incremental.clone(),
                reread,
                overlap.clone(),
                split.then_some(&parts),
                // A retried read starts over.
                if attempt == 1 { resumable.clone() } else { resumable.clone().map(|r| r.restart()) },
            )
            .await
            {
                Ok(v) => break Ok(v),
                Err(e) if attempt <= ctx.options.retries && e.kind() == ErrorKind::Transient => {
                    backoff(ctx, &stream, attempt, &e, "reading").await;
                }
                Err(e) => break Err(e),
            }
        };
        read_done.store(true, std::sync::atomic::Ordering::SeqCst);
        // The last part goes to the loader too (parts still waiting there
        // load with it, in one transaction).
        if let Ok((manifest, _)) = &staged {
            failpoint("after_staged");
            ctx.progress.stream_phase(&stream, "loading");
            parts.hand_over(manifest.clone()).await;
        }
        parts.close();
        staged
    };
    let load = load_parts(ctx, pipeline_id, plan.mode.as_str(), &stream, &mut part_rx, &read_done);
    let (staged, loaded) = tokio::join!(read, load);
    // A failed load stops the read (its parts have nowhere to go): the load's error is the cause.
    let (rows, staged_bytes, rows_after) = loaded?;
    let (manifest, stats) = staged?;
    let batch_id = manifest.batch_id;
    tracing::info!(
        pipeline = %ctx.pipeline,
        stream = %stream,
        table = %plan.table.name,
        batch_id,
        rows,
        destination_rows = ?rows_after,
        "stream loaded"
    );
    Ok(StreamDone {
        batch_id,
        rows,
        source_bytes: stats.source_bytes,
        staged_bytes,
        unrepresentable: stats.unrepresentable,
        position: display_position(manifest.end_position.as_ref()),
        schema_changes: changes.iter().map(|c| c.to_string()).collect(),
    })
}

/// The loader of a read cut into parts: loads each part handed over on
/// `part_rx` while the read goes on; parts already waiting join the load
/// when they continue the same read (a replace and its appends, or merges),
/// in one transaction. A failed load closes `part_rx`, so the read's next
/// hand-over fails and the read stops. Returns the rows and staged bytes
/// loaded (a replace starts the count over) and the destination's row count.
pub(crate) async fn load_parts(
    ctx: &SyncContext,
    pipeline_id: Uuid,
    mode: &str,
    stream: &str,
    part_rx: &mut mpsc::Receiver<BatchManifest>,
    read_done: &std::sync::atomic::AtomicBool,
) -> Result<(u64, u64, Option<u64>)> {
    let (mut rows, mut bytes, mut rows_after) = (0u64, 0u64, None);
    let mut next: Option<BatchManifest> = None;
    loop {
        let first = match next.take() {
            Some(m) => m,
            None => match part_rx.recv().await {
                Some(m) => m,
                None => break,
            },
        };
        // Parts already waiting join this load if they continue the same
        // read (a retried read starts again with a replace).
        let mut group = vec![first];
        while let Ok(m) = part_rx.try_recv() {
            let joins = matches!(
                (group[0].kind, m.kind),
                (LoadKind::Replace | LoadKind::Append, LoadKind::Append) | (LoadKind::Merge, LoadKind::Merge)
            ) && !m.complete;
            if !joins {
                next = Some(m);
                break;
            }
            group.push(m);
        }
        tracing::debug!(stream = %stream, batches = ?group.iter().map(|m| m.batch_id).collect::<Vec<_>>(),
            rows = group.iter().map(|m| m.row_count).sum::<u64>(), "loading");
        let beside_read = !read_done.load(std::sync::atomic::Ordering::SeqCst);
        rows_after = match load_with_retries(ctx, pipeline_id, mode, stream, &group, beside_read).await {
            Ok(v) => v,
            Err(e) => {
                // The read's next hand-over fails at once and stops it.
                part_rx.close();
                return Err(e);
            }
        };
        if !read_done.load(std::sync::atomic::Ordering::SeqCst) {
            failpoint("after_part_loaded");
        }
        // A replace starts the table over: rows an earlier (retried) read
        // put in are gone, so they are not counted.
        if group[0].kind == LoadKind::Replace {
            (rows, bytes) = (0, 0);
        }
        rows += group.iter().map(|m| m.row_count).sum::<u64>();
        bytes += group.iter().map(BatchManifest::byte_count).sum::<u64>();
    }
    Ok((rows, bytes, rows_after))
}

/// Loads staged batches of one stream, retrying transient failures with backoff.
async fn load_with_retries(
    ctx: &SyncContext,
    pipeline_id: Uuid,
    mode: &str,
    stream: &str,
    batches: &[BatchManifest],
    beside_read: bool,
) -> Result<Option<u64>> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match load_batches(ctx, pipeline_id, mode, batches, beside_read).await {
            Ok(v) => return Ok(v),
            Err(e) if attempt <= ctx.options.retries && e.policy() == Policy::RetryNow => {
                backoff(ctx, stream, attempt, &e, "loading").await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Takes the finished parts of a read cut into several batches
/// ([`SyncOptions::part_rows`]).
#[async_trait::async_trait]
pub trait PartSink: Send + Sync {
    /// `manifest` is a finished part: record it as staged and pass it on to
    /// be loaded. Returns the id of the batch the read goes on in.
    async fn part_staged(&self, manifest: BatchManifest) -> Result<u64>;
}

/// The sync runner's [`PartSink`]: records each part, hands it to the
/// stream's loader, and takes the next batch id.
pub(crate) struct Parts<'a> {
    ctx: &'a SyncContext,
    sync_id: i64,
    stream: String,
    tx: std::sync::Mutex<Option<mpsc::Sender<BatchManifest>>>,
    /// The batch the read is writing now (its files are removed if it fails).
    current: std::sync::atomic::AtomicU64,
}

impl<'a> Parts<'a> {
    /// Parts of `stream`'s read, handed to the loader on `tx`; the read
    /// writes batch `current` first (0: not allocated yet).
    pub(crate) fn new(
        ctx: &'a SyncContext,
        sync_id: i64,
        stream: &str,
        tx: mpsc::Sender<BatchManifest>,
        current: u64,
    ) -> Self {
        Parts {
            ctx,
            sync_id,
            stream: stream.to_owned(),
            tx: std::sync::Mutex::new(Some(tx)),
            current: std::sync::atomic::AtomicU64::new(current),
        }
    }

    /// The batch the read is writing now; 0 when none (just handed over).
    pub(crate) fn current(&self) -> u64 {
        self.current.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The read's last batch is recorded: it is no longer the read's to remove.
    pub(crate) fn recorded(&self) {
        self.current.store(0, std::sync::atomic::Ordering::SeqCst);
    }

    /// The read is over: the loader ends after the parts it holds.
    pub(crate) fn close(&self) {
        self.tx.lock().expect("parts lock").take();
    }

    /// Passes a recorded batch to the loader; `false` when the loader has
    /// stopped (its error is the one reported).
    pub(crate) async fn hand_over(&self, manifest: BatchManifest) -> bool {
        let tx = self.tx.lock().expect("parts lock").clone();
        match tx {
            Some(tx) => tx.send(manifest).await.is_ok(),
            None => false,
        }
    }
}

#[async_trait::async_trait]
impl PartSink for Parts<'_> {
    async fn part_staged(&self, manifest: BatchManifest) -> Result<u64> {
        self.ctx.store.record_staged(&manifest).await?;
        // From here the part is the loader's (or, after a crash, recovery's):
        // a failure must not remove its files.
        self.current.store(0, std::sync::atomic::Ordering::SeqCst);
        failpoint("after_part_staged");
        if !self.hand_over(manifest).await {
            return Err(Error::new(ErrorKind::Internal, format!("{}: the loader stopped", self.stream)));
        }
        let next = self.ctx.store.allocate_batch(&self.ctx.pipeline, &self.stream, self.sync_id).await?;
        self.current.store(next, std::sync::atomic::Ordering::SeqCst);
        Ok(next)
    }
}

/// Waits before the next attempt: `retry_base × 2^(attempt−1)`, at most a minute.
pub(crate) async fn backoff(ctx: &SyncContext, stream: &str, attempt: u32, e: &Error, what: &str) {
    let wait =
        ctx.options.retry_base.saturating_mul(1 << (attempt - 1).min(16)).min(std::time::Duration::from_secs(60));
    tracing::warn!(pipeline = %ctx.pipeline, stream = %stream, attempt, retries = ctx.options.retries,
        wait_ms = wait.as_millis() as u64, error = %e, "{what} failed; retrying");
    ctx.progress.stream_phase(stream, &format!("retrying in {}s", wait.as_secs_f64().ceil()));
    tokio::time::sleep(wait).await;
}

/// Reads a stream into a new batch and records its manifest (`staged`).
async fn stage_stream(
    ctx: &SyncContext,
    sync_id: i64,
    plan: &StreamPlan,
    stream: &str,
    incremental: Option<(IncrementalRead, Option<CursorValue>)>,
    merge_full_read: bool,
    overlap: Option<Overlap>,
    parts: Option<&Parts<'_>>,
    resumable: Option<ResumableSnapshot>,
) -> Result<(BatchManifest, ReadStats)> {
    let stream = stream.to_owned();
    let first = ctx.store.allocate_batch(&ctx.pipeline, &stream, sync_id).await?;
    if let Some(p) = parts {
        p.current.store(first, std::sync::atomic::Ordering::SeqCst);
    }
    let staged = stage_snapshot(SnapshotJob {
        source: ctx.source.clone(),
        staging: ctx.staging.as_ref(),
        pipeline: &ctx.pipeline,
        table: plan.table.clone(),
        limits: ctx.destination.limits(),
        on_unrepresentable: ctx.config.on_unrepresentable,
        options: &ctx.options,
        sync_id,
        batch_id: first,
        progress: ctx.progress.as_ref(),
        cursor: plan.cursor.as_ref().map(|c| c.index),
        soft_delete: plan.soft_delete,
        incremental,
        merge_full_read,
        overlap,
        cdc_snapshot: None,
        resumable: resumable.filter(|_| parts.is_some()),
        parts: parts.map(|p| p as &dyn PartSink),
    })
    .await;
    let (manifest, stats) = match staged {
        Ok(v) => v,
        Err(e) => {
            // The part being written when the read failed (none: it had
            // just been handed over).
            let batch_id = parts.map_or(first, |p| p.current.load(std::sync::atomic::Ordering::SeqCst));
            if batch_id == 0 {
                return Err(e);
            }
            // Nothing names these files; remove them now rather than at the next run.
            if let Err(cleanup) = ctx.staging.remove_batch(&ctx.pipeline, &stream, batch_id).await {
                tracing::warn!(stream = %stream, batch_id, error = %cleanup, "could not remove files of a failed batch");
            }
            ctx.store.abandon_batch(&ctx.pipeline, &stream, batch_id).await?;
            return Err(e);
        }
    };
    ctx.store.record_staged(&manifest).await?;
    Ok((manifest, stats))
}

/// One snapshot to stage: a stream read from a source into one batch.
pub struct SnapshotJob<'a> {
    pub source: Arc<dyn Source>,
    pub staging: &'a dyn StagingArea,
    pub pipeline: &'a str,
    pub table: TableSpec,
    pub limits: ValueLimits,
    pub on_unrepresentable: OnUnrepresentable,
    pub options: &'a SyncOptions,
    pub sync_id: i64,
    pub batch_id: u64,
    pub progress: &'a dyn Progress,
    /// Index of the cursor column in `table.columns` (incremental streams).
    pub cursor: Option<usize>,
    /// Index of the column mapped onto `_simplyload_deleted`.
    pub soft_delete: Option<usize>,
    /// The cursor filter, and the checkpoint's cursor it was derived from.
    pub incremental: Option<(IncrementalRead, Option<CursorValue>)>,
    /// An incremental stream read in full after a schema change is merged,
    /// not replaced, so destination columns no longer filled keep their data.
    pub merge_full_read: bool,
    /// Incremental: rows the lookback reads again that were loaded already.
    pub overlap: Option<Overlap>,
    /// CDC: read inside this exported snapshot, every row at this version
    /// (the slot's consistent point; see [`crate::cdc::snapshot_version`]).
    pub cdc_snapshot: Option<(String, i128)>,
    /// A first read whose parts record where it stands, so a read stopped
    /// by a crash goes on from there (see [`ResumableSnapshot`]).
    pub resumable: Option<ResumableSnapshot>,
    /// Cut the read into parts of [`SyncOptions::part_rows`] rows, each
    /// handed here when its files are written (tables with a key, not CDC
    /// snapshots); `None`: one batch.
    pub parts: Option<&'a dyn PartSink>,
}

/// A stream's first read (a CDC stream's snapshot, an incremental stream's
/// first read), cut into parts, that can go on after a crash.
///
/// Each part's checkpoint holds what the stream needs to go on (`position`)
/// and the source's progress ([`SourceBatch::progress`]) under `source`.
/// Going on, the source reads, in a newer snapshot, what it had not read
/// and what changed since in what it had; those parts are merged by key
/// and version. Rows deleted meanwhile from what was read are the one
/// thing that read cannot see: a CDC stream gets them from its slot, which
/// replays every change from the first snapshot's point (the caller makes
/// sure it has not moved past it); an incremental stream never sees hard
/// deletes, so it is as if the first read had finished before them. A full
/// refresh would keep them, so it never goes on: it reads everything again.
#[derive(Debug, Clone)]
pub struct ResumableSnapshot {
    /// A part's checkpoint position besides the source's progress (its
    /// `mode` is [`CDC_SNAPSHOT_MODE`] or [`INCREMENTAL_SNAPSHOT_MODE`]).
    pub position: serde_json::Value,
    /// Going on from an earlier attempt: every part is merged (rows of the
    /// earlier attempt stay); otherwise the first part replaces the table's rows.
    pub going_on: bool,
    /// The source's progress to go on from (`None`: read everything).
    pub from: Option<serde_json::Value>,
}

impl ResumableSnapshot {
    /// The checkpoint position of a part read up to `progress`.
    pub fn position(&self, progress: Option<&serde_json::Value>) -> serde_json::Value {
        let mut p = self.position.clone();
        p["source"] = progress.cloned().unwrap_or(serde_json::Value::Null);
        p
    }

    /// The same read started over: its first part replaces the table's rows.
    pub fn restart(self) -> ResumableSnapshot {
        ResumableSnapshot { going_on: false, from: None, ..self }
    }

    /// How to read a stream whose checkpoint is `checkpoint`: going on when
    /// it is a stopped first read whose position `matches` (same mode and
    /// what else the caller needs), from the start otherwise with `fresh`.
    pub fn from_checkpoint(
        checkpoint: Option<&serde_json::Value>,
        matches: impl FnOnce(&serde_json::Value) -> bool,
        fresh: serde_json::Value,
    ) -> ResumableSnapshot {
        match checkpoint.filter(|p| matches(p)) {
            Some(p) => {
                let mut position = p.clone();
                let from = position.as_object_mut().and_then(|o| o.remove("source")).filter(|v| !v.is_null());
                ResumableSnapshot { position, going_on: true, from }
            }
            None => ResumableSnapshot { position: fresh, going_on: false, from: None },
        }
    }
}

/// The `mode` of a checkpoint position while a CDC stream's first snapshot
/// is loaded in parts.
pub const CDC_SNAPSHOT_MODE: &str = "cdc_snapshot";
/// The `mode` of a checkpoint position while an incremental stream's first
/// read is loaded in parts.
pub const INCREMENTAL_SNAPSHOT_MODE: &str = "incremental_snapshot";

/// The rows an incremental read finds again because of its lookback window
/// (and its `>=`): those already loaded unchanged are not staged again, so
/// a sync with no changes loads nothing and the warehouse stays asleep.
///
/// Each checkpoint keeps the row ids (a hash of every column, cursor
/// included) of the rows within one lookback of it; a row read again with
/// the same id is the same row version the destination already has.
#[derive(Debug, Clone, Default)]
pub struct Overlap {
    pub lookback: Option<crate::cursor::Lookback>,
    /// Ids of rows loaded by the batches up to the checkpoint, within its window.
    pub loaded: std::collections::HashSet<String>,
}

/// At most this many row ids are kept per checkpoint; a busier window is
/// simply merged again at the next sync.
pub const OVERLAP_MAX_ROWS: usize = 5_000;

/// The ids of rows within the window of a checkpoint position.
pub fn checkpoint_overlap(position: Option<&serde_json::Value>, column: &str) -> std::collections::HashSet<String> {
    let Some(p) = position.filter(|p| p.get("column").and_then(|c| c.as_str()) == Some(column)) else {
        return Default::default();
    };
    p.get("overlap")
        .and_then(|o| o.as_array())
        .map(|ids| ids.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// A position as shown to people: without the overlap ids.
pub fn display_position(position: Option<&serde_json::Value>) -> Option<serde_json::Value> {
    let mut p = position?.clone();
    if let Some(o) = p.as_object_mut() {
        o.remove("overlap");
    }
    Some(p)
}

/// Reads a snapshot of one stream into the staged files of one batch: the
/// source decodes on its own task while this one adds the metadata columns
/// and feeds the Parquet writer, with a bounded channel in between.
pub async fn stage_snapshot(job: SnapshotJob<'_>) -> Result<(BatchManifest, ReadStats)> {
    let stream = job.table.stream.to_string();
    let table = job.table.clone();
    let mut batch_id = job.batch_id;
    let mut writer = Some(job.staging.writer(job.pipeline, &stream, batch_id, table.staged_schema()).await?);
    let mut kind = match &job.incremental {
        Some((read, _)) if read.from.is_some() || job.merge_full_read => LoadKind::Merge,
        _ if job.resumable.as_ref().is_some_and(|r| r.going_on) => LoadKind::Merge,
        _ => LoadKind::Replace,
    };
    // Where a resumable read stands: the source's latest progress.
    let mut progress = job.resumable.as_ref().and_then(|r| r.from.clone());
    // A part's checkpoint may not move past anything: an incremental read
    // is not in cursor order, so its parts keep the previous checkpoint.
    let position = |column: &str, c: &Option<CursorValue>, null_cursors: u64| {
        serde_json::json!({
            "mode": "incremental",
            "column": column,
            "cursor": c,
            "null_cursor_rows": null_cursors,
        })
    };
    let start_position = job
        .incremental
        .as_ref()
        .and_then(|(read, _)| read.from.as_ref().map(|f| position(&read.column, &Some(f.clone()), 0)));
    let part_position = job
        .incremental
        .as_ref()
        .and_then(|(read, previous)| previous.as_ref().map(|p| position(&read.column, &Some(p.clone()), 0)));
    let parts = job.parts.filter(|_| table.has_key() && (job.cdc_snapshot.is_none() || job.resumable.is_some()));
    let manifest = |batch_id: u64,
                    kind: LoadKind,
                    files: Vec<crate::batch::StagedFile>,
                    end_position: Option<serde_json::Value>| {
        BatchManifest {
            pipeline: job.pipeline.to_owned(),
            stream: stream.clone(),
            batch_id,
            sync_id: job.sync_id,
            kind,
            table: table.clone(),
            row_count: files.iter().map(|f| f.row_count).sum(),
            files,
            start_position: start_position.clone(),
            end_position,
            truncated_at: None,
            complete: false,
        }
    };
    let (tx, mut rx) = mpsc::channel::<SourceBatch>(job.options.channel_depth.max(1));
    let request = SnapshotRequest {
        table: table.clone(),
        limits: job.limits,
        on_unrepresentable: job.on_unrepresentable,
        batch_rows: job.options.batch_rows,
        batch_bytes: job.options.batch_bytes,
        incremental: job.incremental.as_ref().map(|(r, _)| r.clone()),
        snapshot: job.cdc_snapshot.as_ref().map(|(name, _)| name.clone()),
        parallelism: job.options.snapshot_parallelism.max(1),
        parallel_min_bytes: job.options.parallel_min_bytes,
        resumable: job.resumable.is_some(),
        resume: job.resumable.as_ref().and_then(|r| r.from.clone()),
    };
    let source = job.source.clone();
    let reader = tokio::spawn(async move { source.read_snapshot(request, tx).await });

    let mut rows: u64 = 0;
    // Rows in the part being written (their ordinals in its batch).
    let mut part_rows: u64 = 0;
    let mut read_rows: u64 = 0;
    let mut bytes: u64 = 0;
    let mut write_error = None;
    let mut seen: Option<CursorValue> = None;
    let mut null_cursors: u64 = 0;
    // Row ids within one lookback of the highest cursor seen so far.
    let mut window: Vec<(CursorValue, String)> = Vec::new();
    // The window overflowed at this cursor: ids below it are not all kept.
    let mut window_lost: Option<CursorValue> = None;
    let mut unchanged: u64 = 0;
    while let Some(mut b) = rx.recv().await {
        if let Some(p) = b.progress.take() {
            progress = Some(p);
        }
        if b.batch.num_rows() == 0 {
            continue;
        }
        read_rows += b.batch.num_rows() as u64;
        if let Some(i) = job.cursor {
            match crate::cursor::max_cursor(b.batch.column(i)) {
                Ok((max, nulls)) => {
                    null_cursors += nulls;
                    if let Some(m) = max {
                        seen = Some(match seen.take() {
                            Some(s) => s.max(m),
                            None => m,
                        });
                    }
                }
                Err(e) => {
                    write_error = Some(e);
                    break;
                }
            }
        }
        if let (Some(ov), Some(ci)) = (&job.overlap, job.cursor) {
            match skip_loaded(&table, b.batch, ci, ov, &mut window) {
                Ok((batch, skipped)) => {
                    b.batch = batch;
                    unchanged += skipped;
                }
                Err(e) => {
                    write_error = Some(e);
                    break;
                }
            }
            if let (Some(top), Some(lb)) = (&seen, &ov.lookback) {
                let from = top.minus(lb);
                window.retain(|(c, _)| c.compare(&from) != Some(std::cmp::Ordering::Less));
            }
            if window.len() > OVERLAP_MAX_ROWS {
                window.clear();
                window_lost = seen.clone();
            }
        }
        // The batch goes into the current part; across a part's end it is
        // sliced (zero-copy) and the rest goes into the next part.
        let part_limit = job.options.part_rows.max(1);
        let mut pending = b.batch;
        while pending.num_rows() > 0 {
            // A full part with more to come: finish its files, hand it
            // over, go on in a new batch (never an empty last part).
            if let Some(sink) = parts
                && part_rows >= part_limit
            {
                let cut = async {
                    let files = writer.take().expect("a writer is open").finish().await?;
                    let end = match &job.resumable {
                        Some(r) => Some(r.position(progress.as_ref())),
                        None => part_position.clone(),
                    };
                    let part = manifest(batch_id, kind, files, end);
                    if part.row_count != part_rows {
                        return Err(Error::internal(format!(
                            "staging {stream}: {part_rows} rows read but {} rows in the part's files",
                            part.row_count
                        )));
                    }
                    let next = sink.part_staged(part).await?;
                    writer = Some(job.staging.writer(job.pipeline, &stream, next, table.staged_schema()).await?);
                    Ok(next)
                };
                match cut.await {
                    Ok(next) => {
                        batch_id = next;
                        part_rows = 0;
                        if kind == LoadKind::Replace {
                            kind = LoadKind::Append;
                        }
                    }
                    Err(e) => {
                        write_error = Some(e);
                        break;
                    }
                }
            }
            let take = match parts {
                Some(_) => (part_limit - part_rows).min(pending.num_rows() as u64) as usize,
                None => pending.num_rows(),
            };
            let now = pending.slice(0, take);
            pending = pending.slice(take, pending.num_rows() - take);
            let staged = match &job.cdc_snapshot {
                Some((_, version)) => stage_columns_at(&table, now, Versions::Fixed(*version), job.soft_delete),
                None => stage_columns(&table, now, batch_id, part_rows, job.soft_delete),
            };
            let written = match staged {
                Ok(batch) => writer.as_mut().expect("a writer is open").write(batch).await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                write_error = Some(e);
                break;
            }
            rows += take as u64;
            part_rows += take as u64;
        }
        if write_error.is_some() {
            break;
        }
        bytes += b.source_bytes;
        job.progress.stream_advanced(&stream, rows, bytes);
        failpoint("during_read");
    }
    drop(rx);
    let read = reader.await.map_err(|e| Error::internal(format!("reader task of {stream} failed: {e}")))?;
    if let Some(e) = write_error {
        return Err(e.context(format!("staging {stream}")));
    }
    let stats = read.map_err(|e| e.context(format!("reading {stream}")))?;
    if unchanged > 0 {
        tracing::info!(stream = %stream, rows = unchanged,
            "rows read again within the lookback are unchanged since they were loaded; not staged again");
    }
    if stats.rows != read_rows {
        return Err(Error::internal(format!(
            "reading {stream}: the source reported {} rows but sent {read_rows}",
            stats.rows
        )));
    }
    let files = match writer.take() {
        Some(w) => w.finish().await.map_err(|e| e.context(format!("staging {stream}")))?,
        None => return Err(Error::internal(format!("staging {stream}: no file writer open"))),
    };
    // Incremental: the checkpoint is the highest cursor read, but never past
    // what a transaction still open at the start of the read could commit,
    // and never behind the previous checkpoint.
    let end_position = match &job.incremental {
        None => None,
        Some((read, previous)) => {
            let mut pos = match (seen, stats.cursor_ceiling.clone()) {
                (Some(p), Some(ceiling)) => Some(p.min(ceiling)),
                (p, _) => p,
            };
            if let Some(prev) = previous {
                pos = Some(match pos {
                    Some(p) => p.max(prev.clone()),
                    None => prev.clone(),
                });
            }
            let mut end = position(&read.column, &pos, null_cursors);
            // The ids of the rows the next read will find again, if all are known.
            if let (Some(ov), Some(p)) = (&job.overlap, &pos) {
                let from = ov.lookback.as_ref().map(|lb| p.minus(lb)).unwrap_or_else(|| p.clone());
                let complete =
                    window_lost.as_ref().is_none_or(|lost| lost.compare(&from) == Some(std::cmp::Ordering::Less));
                if complete {
                    let mut ids: Vec<&str> = window
                        .iter()
                        .filter(|(c, _)| c.compare(&from) != Some(std::cmp::Ordering::Less))
                        .map(|(_, id)| id.as_str())
                        .collect();
                    ids.sort_unstable();
                    ids.dedup();
                    if ids.len() <= OVERLAP_MAX_ROWS {
                        end["overlap"] = serde_json::json!(ids);
                    }
                }
            }
            Some(end)
        }
    };
    if null_cursors > 0 {
        tracing::warn!(stream = %stream, rows = null_cursors,
            "rows with a NULL cursor were read by this snapshot; later incremental reads cannot see their changes");
    }
    let manifest = manifest(batch_id, kind, files, end_position);
    if manifest.row_count != part_rows {
        return Err(Error::internal(format!(
            "staging {}: {part_rows} rows read but {} rows in the staged files",
            manifest.stream, manifest.row_count
        )));
    }
    Ok((manifest, stats))
}

/// Drops the rows of `batch` already loaded unchanged (see [`Overlap`]) and
/// notes every row's id and cursor in `window`. Returns the rows to stage
/// and how many were dropped.
fn skip_loaded(
    table: &TableSpec,
    batch: RecordBatch,
    cursor: usize,
    overlap: &Overlap,
    window: &mut Vec<(CursorValue, String)>,
) -> Result<(RecordBatch, u64)> {
    let ids = row_id::row_ids(table, &batch)?;
    let col = batch.column(cursor);
    let mut keep = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let id = ids.value(row);
        if let (Some(c), _) = crate::cursor::max_cursor(&col.slice(row, 1))? {
            window.push((c, id.to_owned()));
        }
        keep.push(!overlap.loaded.contains(id));
    }
    let dropped = keep.iter().filter(|k| !**k).count() as u64;
    if dropped == 0 {
        return Ok((batch, 0));
    }
    let filtered = arrow_select::filter::filter_record_batch(&batch, &BooleanArray::from(keep))?;
    Ok((filtered, dropped))
}

/// Appends the metadata columns a staged file carries: `_simplyload_deleted`,
/// `_simplyload_version` (`batch_id × 2³² + ordinal`) and, for tables without
/// a key, `_simplyload_id`.
/// With `soft_delete`, a row is marked deleted when that column is not NULL.
pub fn stage_columns(
    table: &TableSpec,
    batch: RecordBatch,
    batch_id: u64,
    first_ordinal: u64,
    soft_delete: Option<usize>,
) -> Result<RecordBatch> {
    stage_columns_at(table, batch, Versions::Batch { batch_id, first_ordinal }, soft_delete)
}

/// How staged rows are versioned.
#[derive(Debug, Clone, Copy)]
pub enum Versions {
    /// `batch_id × 2³² + ordinal` (snapshots and incremental reads).
    Batch { batch_id: u64, first_ordinal: u64 },
    /// Every row at one version (a CDC snapshot at a slot's consistent point).
    Fixed(i128),
}

/// [`stage_columns`] with the versioning given.
pub fn stage_columns_at(
    table: &TableSpec,
    batch: RecordBatch,
    versions: Versions,
    soft_delete: Option<usize>,
) -> Result<RecordBatch> {
    let n = batch.num_rows() as u64;
    let versions = match versions {
        Versions::Batch { batch_id, first_ordinal } => {
            if first_ordinal + n > MAX_ROWS_PER_BATCH {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!("{}: more than 2^32 rows in one batch", table.stream),
                ));
            }
            let base = (batch_id as i128) << 32;
            Decimal128Array::from_iter_values((0..n).map(|i| base + (first_ordinal + i) as i128))
        }
        Versions::Fixed(v) => Decimal128Array::from_iter_values((0..n).map(|_| v)),
    }
    .with_precision_and_scale(meta::VERSION_PRECISION, 0)?;
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    let deleted = match soft_delete {
        Some(i) => {
            let c = batch.column(i);
            BooleanArray::from_iter((0..c.len()).map(|r| Some(c.is_valid(r))))
        }
        None => BooleanArray::from(vec![false; n as usize]),
    };
    columns.push(Arc::new(deleted));
    columns.push(Arc::new(versions));
    if !table.has_key() {
        columns.push(Arc::new(row_id::row_ids(table, &batch)?));
    }
    columns.push(arrow_array::new_null_array(&arrow_schema::DataType::Utf8, n as usize));
    Ok(RecordBatch::try_new(table.staged_schema(), columns)?)
}

/// Loads batches of one stream in one destination transaction, then marks
/// them loaded and moves the checkpoint. Returns the destination's row count
/// when the load counted it.
pub(crate) async fn load_batches(
    ctx: &SyncContext,
    pipeline_id: Uuid,
    mode: &str,
    batches: &[BatchManifest],
    beside_read: bool,
) -> Result<Option<u64>> {
    let last = batches.last().ok_or_else(|| Error::internal("load of no batches"))?;
    // The parts of one full refresh load together as the replace they begin.
    let kind = if batches[0].kind == LoadKind::Replace { LoadKind::Replace } else { last.kind };
    let outcome = ctx
        .destination
        .load(LoadRequest {
            pipeline_id,
            table: &last.table,
            kind,
            batches,
            staging: ctx.staging.as_ref(),
            beside_read,
        })
        .await
        .map_err(|e| e.context(format!("loading {} into {}", last.stream, last.table.name)))?;
    failpoint("after_load");
    let ids: Vec<u64> = batches.iter().map(|b| b.batch_id).collect();
    ctx.store
        .mark_loaded(LoadedStream {
            pipeline: &ctx.pipeline,
            stream: &last.stream,
            mode,
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

/// Crash injection for tests: when `SIMPLYLOAD_FAILPOINT` names this point,
/// the process aborts on the spot — no destructors, no cleanup — exactly
/// like `kill -9` at that instant. Points: `during_read` (the first Arrow
/// batch is written to staging, the read goes on), `after_staged` (manifest
/// recorded, nothing loaded), `during_load` (in the destination transaction,
/// before its commit), `after_load` (destination committed, checkpoint not
/// yet moved), and for a read cut into parts `after_part_staged` (a part
/// recorded) and `after_part_loaded` (a part loaded and checkpointed), the
/// read not over.
pub fn failpoint(name: &str) {
    if let Ok(points) = std::env::var("SIMPLYLOAD_FAILPOINT")
        && points.split(',').any(|p| p.trim() == name)
    {
        eprintln!("failpoint {name}: aborting the process");
        std::process::abort();
    }
}

/// Finishes what an earlier, interrupted run left: abandons batches whose
/// files were never completed, and loads (or, if the destination already
/// has them, just marks) the batches that were staged. Returns, per stream,
/// the ids of the batches it settled.
async fn recover(ctx: &SyncContext, pipeline_id: Uuid) -> Result<BTreeMap<String, Vec<u64>>> {
    let unfinished = ctx.store.unfinished_batches(&ctx.pipeline).await?;
    // Streams taken out of the config keep their batches until they come back.
    let configured =
        |stream: &str| crate::naming::StreamName::parse(stream).is_ok_and(|n| plan::selects(&ctx.config, &n));
    let mut by_stream: BTreeMap<String, Vec<BatchRecord>> = BTreeMap::new();
    for b in unfinished.into_iter().filter(|b| configured(&b.stream)) {
        by_stream.entry(b.stream.clone()).or_default().push(b);
    }
    let mut settled = BTreeMap::new();
    for (stream, records) in by_stream {
        ctx.progress.stream_phase(&stream, "recovering");
        let mut staged: Vec<BatchManifest> = Vec::new();
        for r in records {
            match (r.state, r.manifest) {
                (BatchState::Staged, Some(m)) => staged.push(m),
                _ => {
                    tracing::info!(pipeline = %ctx.pipeline, stream = %stream, batch_id = r.batch_id,
                        "abandoning a batch whose staging was interrupted");
                    ctx.staging.remove_batch(&ctx.pipeline, &stream, r.batch_id).await?;
                    ctx.store.abandon_batch(&ctx.pipeline, &stream, r.batch_id).await?;
                }
            }
        }
        if staged.is_empty() {
            continue;
        }
        let ids: Vec<u64> = staged.iter().map(|m| m.batch_id).collect();
        let in_destination = ctx.destination.loaded_batches(pipeline_id, &stream, &ids).await?;
        let mut done = Vec::new();
        for m in &staged {
            let mode = if m.kind == LoadKind::Merge { "incremental" } else { "full_refresh" };
            if in_destination.contains(&m.batch_id) {
                tracing::info!(pipeline = %ctx.pipeline, stream = %stream, batch_id = m.batch_id,
                    "batch was committed in the destination before the crash; marking it loaded");
                ctx.store
                    .mark_loaded(LoadedStream {
                        pipeline: &ctx.pipeline,
                        stream: &stream,
                        mode,
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
                load_batches(ctx, pipeline_id, mode, std::slice::from_ref(m), false).await?;
            }
            done.push(m.batch_id);
        }
        settled.insert(stream, done);
    }
    Ok(settled)
}
