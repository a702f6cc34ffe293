//! The `CheckpointStore` contract (DESIGN.md §3, §8).

use crate::batch::{BatchManifest, BatchState};
use crate::error::Result;
use crate::feed::FeedPosition;
use crate::position::Position;
use crate::report::SyncReport;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A stream's durable position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The last batch whose effect is committed in the destination.
    pub batch_id: u64,
    /// Where that batch left the stream; `None` for a full refresh, which
    /// always starts over.
    pub position: Option<Position>,
}

/// The pipeline's change feed as the state knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedRecord {
    /// The feed's name on the source, recorded before the feed is first
    /// used: a feed of this name is this state's.
    pub name: String,
    /// The position this state last confirmed to the source. A feed found
    /// confirmed past it was read by someone else.
    pub confirmed: Option<FeedPosition>,
}

/// What the store knows about one stream of a pipeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamState {
    pub stream: String,
    pub mode: String,
    pub table: String,
    pub checkpoint: Option<Checkpoint>,
    pub last_sync_id: Option<i64>,
    /// Unix milliseconds of the last successful load.
    pub last_loaded_at_ms: Option<i64>,
    /// Rows staged by the last successful load.
    pub last_rows: u64,
    /// Live rows in the destination table after the last load.
    pub destination_rows: Option<u64>,
    pub last_error: Option<String>,
    /// What the last load did to the destination table.
    #[serde(default)]
    pub last_changes: Option<RowChanges>,
}

pub use crate::report::RowChanges;

/// A loaded batch whose staged files may be removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedBatch {
    pub stream: String,
    pub batch_id: u64,
    pub loaded_at_ms: i64,
    pub byte_count: u64,
}

/// One batch as the store holds it.
#[derive(Debug, Clone)]
pub struct BatchRecord {
    pub pipeline: String,
    pub stream: String,
    pub batch_id: u64,
    pub sync_id: i64,
    pub state: BatchState,
    /// Present from `staged` on.
    pub manifest: Option<BatchManifest>,
}

/// One past or running sync.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncRecord {
    pub sync_id: i64,
    pub pipeline: String,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    /// `running`, `succeeded`, `failed`.
    pub status: String,
    pub rows: u64,
    pub error: Option<String>,
}

/// What a successful load changes about a stream besides its checkpoint.
#[derive(Debug, Clone)]
pub struct LoadedStream<'a> {
    pub pipeline: &'a str,
    pub stream: &'a str,
    pub mode: &'a str,
    pub table: &'a str,
    pub sync_id: i64,
    pub batch_ids: &'a [u64],
    pub checkpoint: Checkpoint,
    pub rows: u64,
    pub destination_rows: Option<u64>,
    pub changes: Option<RowChanges>,
}

/// Durable state: pipelines, streams, batches, checkpoints, sync history.
///
/// Contract:
/// * `pipeline_id` returns the same UUID for a pipeline for the life of the
///   store, creating it on first use, so batches recorded by another state
///   file are never mistaken for this one's.
/// * `allocate_batch` returns an id greater than every id it returned before
///   for that stream, even across crashes (ids are never reused).
/// * `record_staged` makes the manifest durable before returning; after a
///   crash `unfinished_batches` returns it.
/// * `mark_loaded` marks the batches loaded and moves the stream's
///   checkpoint in one atomic write; a checkpoint never moves backwards (a
///   call with an older batch id leaves it as it is). The stream's
///   `last_rows` and `last_changes` add up the loads of one sync (a first
///   read in parts counts whole); a call for batches already loaded
///   changes nothing.
/// * `record_feed` replaces the pipeline's feed record; `feed` returns the
///   last one recorded.
/// * Every write is durable when the call returns.
/// * Concurrency: calls may come from several tasks of one sync at once (a
///   read recording parts while its loader marks others loaded); each call
///   is atomic on its own.
#[async_trait::async_trait]
pub trait CheckpointStore: Send + Sync {
    async fn pipeline_id(&self, pipeline: &str) -> Result<Uuid>;

    async fn begin_sync(&self, pipeline: &str) -> Result<i64>;

    async fn finish_sync(&self, report: &SyncReport) -> Result<()>;

    async fn allocate_batch(&self, pipeline: &str, stream: &str, sync_id: i64) -> Result<u64>;

    async fn record_staged(&self, manifest: &BatchManifest) -> Result<()>;

    async fn abandon_batch(&self, pipeline: &str, stream: &str, batch_id: u64) -> Result<()>;

    async fn mark_loaded(&self, loaded: LoadedStream<'_>) -> Result<()>;

    /// Records a stream's failure in its state (shown by `status`).
    async fn record_stream_error(&self, pipeline: &str, stream: &str, error: &str) -> Result<()>;

    /// The table shape of the stream's most recently loaded batch: what the
    /// destination table looks like now, for schema evolution.
    async fn last_loaded_table(&self, pipeline: &str, stream: &str) -> Result<Option<crate::schema::TableSpec>>;

    /// Starts a new generation of a stream: its checkpoint position is
    /// cleared, so the next sync reads it in full and replaces the
    /// destination table's rows. Returns whether there was a checkpoint.
    async fn request_resync(&self, pipeline: &str, stream: &str) -> Result<bool>;

    /// Loaded batches (loaded before `before_ms`) whose staged files have not been removed.
    async fn batches_to_clean(&self, pipeline: &str, before_ms: i64) -> Result<Vec<StagedBatch>>;

    /// Records that a loaded batch's staged files are gone.
    async fn mark_files_removed(&self, pipeline: &str, stream: &str, batch_id: u64) -> Result<()>;

    /// Batches in state `staging` or `staged`, oldest first.
    async fn unfinished_batches(&self, pipeline: &str) -> Result<Vec<BatchRecord>>;

    async fn streams(&self, pipeline: &str) -> Result<Vec<StreamState>>;

    /// The most recent syncs first.
    async fn syncs(&self, pipeline: &str, limit: usize) -> Result<Vec<SyncRecord>>;

    /// The pipeline's change feed, if it has one.
    async fn feed(&self, pipeline: &str) -> Result<Option<FeedRecord>>;

    async fn record_feed(&self, pipeline: &str, feed: &FeedRecord) -> Result<()>;

    /// Every pipeline the store knows, with its change feed if it has one.
    async fn pipelines(&self) -> Result<Vec<(String, Option<FeedRecord>)>>;

    /// The pipeline's change feed was removed from the source: its record
    /// goes, and so do the streams' positions on it (a stream that comes
    /// back as `cdc` starts again on a new feed).
    async fn forget_feed(&self, pipeline: &str) -> Result<()>;

    /// Removes everything the store knows of a pipeline (its id too: a
    /// pipeline of that name later is a new one).
    async fn forget_pipeline(&self, pipeline: &str) -> Result<()>;
}
