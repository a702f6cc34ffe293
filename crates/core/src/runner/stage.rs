//! Staging: a snapshot of one stream read from its source into the Parquet
//! files of one batch (or of several parts), with the metadata columns every
//! staged row carries (DESIGN.md §2, §3).
//!
//! The source decodes on its own task while this one adds the metadata
//! columns and feeds the Parquet writer, with a bounded channel in between,
//! so memory holds a couple of Arrow batches whatever the table's size.

use super::context::{CancellationToken, SyncOptions};
use super::incremental::{CursorTracker, Overlap, cursor_position};
use super::parts::PartSink;
use super::resume::ResumableSnapshot;
use crate::batch::{BatchManifest, LoadKind, StagedFile};
use crate::cursor::CursorValue;
use crate::error::{Error, ErrorKind, Result};
use crate::failpoint::failpoint;
use crate::position::Position;
use crate::progress::Progress;
use crate::row_id;
use crate::schema::{TableSpec, ValueLimits, meta};
use crate::source::{IncrementalRead, ReadStats, SnapshotRequest, Source, SourceBatch};
use crate::staging::{BatchWriter, StagingArea};
use arrow_array::{Array, ArrayRef, BooleanArray, Decimal128Array, RecordBatch};
use simplyload_config::OnUnrepresentable;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Rows in one batch are numbered below this; the version of a snapshot row
/// is `batch_id × 2³² + ordinal` (DESIGN.md §3).
pub const MAX_ROWS_PER_BATCH: u64 = 1 << 32;

/// A snapshot read at a change feed's start.
#[derive(Debug, Clone)]
pub struct FeedSnapshot {
    /// The source's token for reading as of the start
    /// ([`SnapshotRequest::consistent_with`]).
    pub token: Option<String>,
    /// Every row's version: the start's.
    pub version: i128,
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
    /// not replaced, so destination columns no longer filled keep their data
    /// (only with `incremental`).
    pub merge_full_read: bool,
    /// Incremental: rows the lookback reads again that were loaded already.
    pub overlap: Option<Overlap>,
    /// `cdc`: read at a change feed's start, every row at its version.
    pub feed_snapshot: Option<FeedSnapshot>,
    /// A first read whose parts record where it stands, so a read stopped
    /// by a crash goes on from there (see [`ResumableSnapshot`]).
    pub resumable: Option<ResumableSnapshot>,
    /// Cut the read into parts of [`SyncOptions::part_rows`] rows, each
    /// handed here when its files are written (tables with a key); `None`:
    /// one batch.
    pub parts: Option<&'a dyn PartSink>,
    /// Stop at the next batch boundary when cancelled (the batch being
    /// written is left for the caller to remove).
    pub cancel: Option<CancellationToken>,
}

/// Reads a snapshot of one stream into the staged files of one batch (the
/// last part, when cut into parts) and returns its manifest, not yet recorded.
pub async fn stage_snapshot(job: SnapshotJob<'_>) -> Result<(BatchManifest, ReadStats)> {
    let stream = job.table.stream.to_string();
    let mut stager = Stager::open(&job).await?;
    let (tx, rx) = mpsc::channel::<SourceBatch>(job.options.channel_depth.max(1));
    let source = job.source.clone();
    let request = snapshot_request(&job);
    let reader = tokio::spawn(async move { source.read_snapshot(request, tx).await });
    let written = stager.consume(&job, rx).await;
    let read = reader.await.map_err(|e| Error::internal(format!("reader task of {stream} failed: {e}")))?;
    written.map_err(|e| e.context(format!("staging {stream}")))?;
    let stats = read.map_err(|e| e.context(format!("reading {stream}")))?;
    stager.finish(&job, stats).await
}

fn snapshot_request(job: &SnapshotJob<'_>) -> SnapshotRequest {
    SnapshotRequest {
        table: job.table.clone(),
        limits: job.limits,
        on_unrepresentable: job.on_unrepresentable,
        batch_rows: job.options.batch_rows,
        batch_bytes: job.options.batch_bytes,
        incremental: job.incremental.as_ref().map(|(r, _)| r.clone()),
        consistent_with: job.feed_snapshot.as_ref().and_then(|f| f.token.clone()),
        parallelism: job.options.snapshot_parallelism.max(1),
        parallel_min_bytes: job.options.parallel_min_bytes,
        resumable: job.resumable.is_some(),
        resume: job.resumable.as_ref().and_then(|r| r.from.clone()),
    }
}

/// The state of one snapshot being staged.
struct Stager<'a> {
    stream: String,
    batch_id: u64,
    writer: Option<Box<dyn BatchWriter>>,
    kind: LoadKind,
    /// Where a resumable read stands: the source's latest progress.
    progress: Option<serde_json::Value>,
    /// Cut into parts through this sink.
    parts: Option<&'a dyn PartSink>,
    tracker: Option<CursorTracker>,
    /// Rows staged in all parts, and in the part being written (their
    /// ordinals in its batch).
    rows: u64,
    part_rows: u64,
    read_rows: u64,
    bytes: u64,
}

impl<'a> Stager<'a> {
    async fn open(job: &SnapshotJob<'a>) -> Result<Stager<'a>> {
        let stream = job.table.stream.to_string();
        let writer = job.staging.writer(job.pipeline, &stream, job.batch_id, job.table.staged_schema()).await?;
        // An incremental read merges (a full one too, after a schema change);
        // so does a first read going on from its loaded parts.
        let merge = matches!(&job.incremental, Some((read, _)) if read.from.is_some() || job.merge_full_read)
            || job.resumable.as_ref().is_some_and(|r| r.going_on);
        let parts =
            job.parts.filter(|_| job.table.has_key() && (job.feed_snapshot.is_none() || job.resumable.is_some()));
        Ok(Stager {
            stream,
            batch_id: job.batch_id,
            writer: Some(writer),
            kind: if merge { LoadKind::Merge } else { LoadKind::Replace },
            progress: job.resumable.as_ref().and_then(|r| r.from.clone()),
            parts,
            tracker: job.cursor.map(|i| CursorTracker::new(i, job.overlap.clone())),
            rows: 0,
            part_rows: 0,
            read_rows: 0,
            bytes: 0,
        })
    }

    /// Stages every batch the source sends, until it is done, a write
    /// fails, or the sync is cancelled (dropping `rx` then stops the source).
    async fn consume(&mut self, job: &SnapshotJob<'_>, mut rx: mpsc::Receiver<SourceBatch>) -> Result<()> {
        loop {
            let next = match &job.cancel {
                Some(cancel) => tokio::select! {
                    b = rx.recv() => b,
                    _ = cancel.cancelled() => return Err(Error::cancelled()),
                },
                None => rx.recv().await,
            };
            let Some(b) = next else { return Ok(()) };
            self.take(job, b).await?;
            job.progress.stream_advanced(&self.stream, self.rows, self.bytes);
            failpoint("during_read");
        }
    }

    async fn take(&mut self, job: &SnapshotJob<'_>, mut b: SourceBatch) -> Result<()> {
        if let Some(p) = b.progress.take() {
            self.progress = Some(p);
        }
        self.bytes += b.source_bytes;
        if b.batch.num_rows() == 0 {
            return Ok(());
        }
        self.read_rows += b.batch.num_rows() as u64;
        let mut pending = match &mut self.tracker {
            Some(t) => t.observe(&job.table, b.batch)?,
            None => b.batch,
        };
        // The batch goes into the current part; across a part's end it is
        // sliced (zero-copy) and the rest goes into the next part.
        let part_limit = job.options.part_rows.max(1);
        while pending.num_rows() > 0 {
            // A full part with more to come: finish its files, hand it
            // over, go on in a new batch (never an empty last part).
            if self.parts.is_some() && self.part_rows >= part_limit {
                self.cut_part(job).await?;
            }
            let take = match self.parts {
                Some(_) => (part_limit - self.part_rows).min(pending.num_rows() as u64) as usize,
                None => pending.num_rows(),
            };
            let now = pending.slice(0, take);
            pending = pending.slice(take, pending.num_rows() - take);
            let versions = match &job.feed_snapshot {
                Some(f) => Versions::Fixed(f.version),
                None => Versions::Batch { batch_id: self.batch_id, first_ordinal: self.part_rows },
            };
            let staged = stage_columns_at(&job.table, now, versions, job.soft_delete)?;
            self.writer.as_mut().expect("a writer is open").write(staged).await?;
            self.rows += take as u64;
            self.part_rows += take as u64;
        }
        Ok(())
    }

    /// Finishes the part being written, hands it over and goes on in the
    /// next batch.
    async fn cut_part(&mut self, job: &SnapshotJob<'_>) -> Result<()> {
        let sink = self.parts.expect("cut only with parts");
        let files = self.writer.take().expect("a writer is open").finish().await?;
        // A part's checkpoint may not move past anything: an incremental read
        // is not in cursor order, so its parts keep the previous checkpoint.
        let end = match &job.resumable {
            Some(r) => Some(r.position(self.progress.as_ref())),
            None => job.incremental.as_ref().and_then(|(read, previous)| {
                previous.as_ref().map(|p| cursor_position(&read.column, Some(p.clone()), 0))
            }),
        };
        let part = self.manifest(job, files, end)?;
        let next = sink.part_staged(part).await?;
        self.writer = Some(job.staging.writer(job.pipeline, &self.stream, next, job.table.staged_schema()).await?);
        self.batch_id = next;
        self.part_rows = 0;
        if self.kind == LoadKind::Replace {
            self.kind = LoadKind::Append;
        }
        Ok(())
    }

    /// The manifest of the batch being written, checked against its rows.
    fn manifest(&self, job: &SnapshotJob<'_>, files: Vec<StagedFile>, end: Option<Position>) -> Result<BatchManifest> {
        let start = job
            .incremental
            .as_ref()
            .and_then(|(read, _)| read.from.as_ref().map(|f| cursor_position(&read.column, Some(f.clone()), 0)));
        let m = BatchManifest {
            pipeline: job.pipeline.to_owned(),
            stream: self.stream.clone(),
            batch_id: self.batch_id,
            sync_id: job.sync_id,
            kind: self.kind,
            table: job.table.clone(),
            row_count: files.iter().map(|f| f.row_count).sum(),
            files,
            start_position: start,
            end_position: end,
            truncated_at: None,
            complete: false,
        };
        if m.row_count != self.part_rows {
            return Err(Error::internal(format!(
                "staging {}: {} rows read but {} rows in the staged files",
                self.stream, self.part_rows, m.row_count
            )));
        }
        Ok(m)
    }

    /// The read is over: its last batch's files and manifest.
    async fn finish(mut self, job: &SnapshotJob<'_>, stats: ReadStats) -> Result<(BatchManifest, ReadStats)> {
        let stream = &self.stream;
        if stats.rows != self.read_rows {
            return Err(Error::internal(format!(
                "reading {stream}: the source reported {} rows but sent {}",
                stats.rows, self.read_rows
            )));
        }
        let files = match self.writer.take() {
            Some(w) => w.finish().await.map_err(|e| e.context(format!("staging {stream}")))?,
            None => return Err(Error::internal(format!("staging {stream}: no file writer open"))),
        };
        let end = match (&self.tracker, &job.incremental) {
            (Some(t), Some((read, previous))) => {
                log_tracked(stream, t);
                Some(t.end_position(read, previous.as_ref(), stats.cursor_ceiling.clone()))
            }
            _ => None,
        };
        let manifest = self.manifest(job, files, end)?;
        Ok((manifest, stats))
    }
}

fn log_tracked(stream: &str, t: &CursorTracker) {
    if t.unchanged > 0 {
        tracing::info!(stream = %stream, rows = t.unchanged,
            "rows read again within the lookback are unchanged since they were loaded; not staged again");
    }
    if t.null_cursors() > 0 {
        tracing::warn!(stream = %stream, rows = t.null_cursors(),
            "rows with a NULL cursor were read by this snapshot; later incremental reads cannot see their changes");
    }
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
    /// Every row at one version (a snapshot read at a change feed's start).
    Fixed(i128),
}

/// [`stage_columns`] with the versioning given.
pub fn stage_columns_at(
    table: &TableSpec,
    batch: RecordBatch,
    versions: Versions,
    soft_delete: Option<usize>,
) -> Result<RecordBatch> {
    let batch = crate::pseudonym::apply(table, batch)?;
    let n = batch.num_rows() as u64;
    let versions = match versions {
        Versions::Batch { batch_id, first_ordinal } => {
            if first_ordinal + n > MAX_ROWS_PER_BATCH {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!("{}: more than 2^32 rows in one batch", table.stream),
                ));
            }
            Decimal128Array::from_iter_values(
                (0..n).map(|i| crate::version::version(batch_id, (first_ordinal + i) as u32)),
            )
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
