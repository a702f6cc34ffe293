//! What one sync needs: the connectors, the pipeline's config, tuning knobs,
//! and the cancellation token it honours at batch boundaries.

use crate::checkpoint::CheckpointStore;
use crate::destination::Destination;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::source::{DEFAULT_BATCH_BYTES, DEFAULT_BATCH_ROWS, Source};
use crate::staging::StagingArea;
use simplyload_config::PipelineConfig;
use std::sync::Arc;
use std::time::Duration;
pub use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Default [`SyncOptions::part_rows`]: four of DuckDB's row groups
/// (122,880 rows), so no part leaves a partly filled row group for the
/// next part's commit to rewrite (with 250,000-row parts, closing the file
/// after each part took ten times as long as with 245,760).
pub const DEFAULT_PART_ROWS: u64 = 491_520;

/// Default [`SyncOptions::parallel_min_bytes`]: below this a table is read
/// in one piece (more connections cost more than they bring).
pub const DEFAULT_PARALLEL_MIN_BYTES: u64 = 64 << 20;

/// Default [`SyncOptions::snapshot_parallelism`]: one reader per core, at most 4.
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
    /// Retries of a read, a load or a change read whose error's policy is
    /// [`crate::Policy::RetryNow`].
    pub retries: u32,
    /// The first retry waits about this long; each next one about twice as
    /// long (jittered), at most a minute, and never less than the error's
    /// `retry_after`.
    pub retry_base: Duration,
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
            retry_base: Duration::from_secs(1),
            part_rows: DEFAULT_PART_ROWS,
            snapshot_parallelism: default_snapshot_parallelism(),
            parallel_min_bytes: DEFAULT_PARALLEL_MIN_BYTES,
        }
    }
}

impl SyncOptions {
    /// The knobs a pipeline's config sets, over the defaults.
    pub fn from_config(p: &PipelineConfig) -> SyncOptions {
        let mut o = SyncOptions::default();
        if let Some(n) = p.snapshot_parallelism {
            o.snapshot_parallelism = n.max(1);
        }
        if let Some(n) = p.snapshot_parallel_min_bytes {
            o.parallel_min_bytes = n;
        }
        if let Some(n) = p.snapshot_part_rows {
            o.part_rows = n.max(1);
        }
        o
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
    /// Cancelled: the sync stops at the next batch boundary (a batch being
    /// read is dropped and its files removed; loads under way finish),
    /// reports [`crate::ErrorKind::Cancelled`], and the next sync goes on
    /// exactly from the last loaded batch.
    pub cancel: CancellationToken,
    /// Only these streams (`public.orders`; empty: every stream). A
    /// selection that takes some `cdc` streams must take all of them: they
    /// share the pipeline's change feed, whose position moves for all.
    pub select: Vec<String>,
}

/// One sync under way: its context and the ids the store gave it.
#[derive(Clone, Copy)]
pub(crate) struct Run<'a> {
    pub ctx: &'a SyncContext,
    pub pipeline_id: Uuid,
    pub sync_id: i64,
    /// Held around each destination load: streams read at once still load
    /// one at a time (an embedded destination has one writer).
    pub loads: &'a tokio::sync::Mutex<()>,
}

impl Run<'_> {
    pub fn pipeline(&self) -> &str {
        &self.ctx.pipeline
    }

    /// `Err(Cancelled)` once the sync was asked to stop.
    pub fn check_cancelled(&self) -> Result<()> {
        if self.ctx.cancel.is_cancelled() { Err(Error::cancelled()) } else { Ok(()) }
    }
}
