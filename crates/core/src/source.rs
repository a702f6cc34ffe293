//! The `Source` contract: snapshots for every source; cursor reads, a change
//! feed ([`crate::feed`]) and reconcile scans where the source declares them.

pub use crate::catalog::Capabilities;
use crate::catalog::{Catalog, CheckReport, Selection};
use crate::error::Result;
use crate::feed::ChangeFeed;
use crate::naming::StreamName;
use crate::report::Unrepresentable;
use crate::scan::{ScanRequest, ScanSender};
use crate::schema::{TableSpec, ValueLimits};
use arrow_array::RecordBatch;
use simplyload_config::OnUnrepresentable;
use tokio::sync::mpsc;

/// Default number of rows per Arrow batch a source produces.
pub const DEFAULT_BATCH_ROWS: usize = 32_768;
/// Default upper bound on the bytes held in one Arrow batch (a batch closes
/// early when wide rows reach it), so memory stays bounded for any row width.
pub const DEFAULT_BATCH_BYTES: usize = 32 * 1024 * 1024;

/// A batch of rows read from a source, with the bytes it took on the wire.
#[derive(Debug)]
pub struct SourceBatch {
    pub batch: RecordBatch,
    pub source_bytes: u64,
    /// A resumable read ([`SnapshotRequest::resumable`]) passed a point it
    /// can resume after: every row of the pages this state calls read was
    /// sent before this batch (usually an empty one). Opaque to the caller,
    /// which keeps the latest in its checkpoint and passes it back in
    /// [`SnapshotRequest::resume`].
    pub progress: Option<serde_json::Value>,
}

impl SourceBatch {
    pub fn rows(batch: RecordBatch, source_bytes: u64) -> SourceBatch {
        SourceBatch { batch, source_bytes, progress: None }
    }
}

/// What to read for a snapshot of one stream.
#[derive(Debug, Clone)]
pub struct SnapshotRequest {
    /// The table shape to produce: the source reads exactly these columns, in
    /// this order, as these types. If the source's schema no longer matches,
    /// the read fails with [`crate::ErrorKind::StalePlan`].
    pub table: TableSpec,
    pub limits: ValueLimits,
    pub on_unrepresentable: OnUnrepresentable,
    pub batch_rows: usize,
    pub batch_bytes: usize,
    /// `incremental`: read only rows whose cursor is ≥ `from` (all rows,
    /// including those with a NULL cursor, when `from` is `None`). Only for
    /// sources whose [`Capabilities::cursor`] is set.
    pub incremental: Option<IncrementalRead>,
    /// `cdc`: read the source exactly as of a change feed's start, with the
    /// token its [`crate::feed::FeedStart::snapshot`] gave, so the changes
    /// the feed delivers afterwards join without a gap.
    pub consistent_with: Option<String>,
    /// Read a large stream with up to this many connections at once, all in
    /// one snapshot (Postgres: CTID page ranges); 1 reads in one piece.
    pub parallelism: usize,
    /// Streams smaller than this (on disk) are read in one piece.
    pub parallel_min_bytes: u64,
    /// Send [`SourceBatch::progress`] as the read goes, so a read stopped
    /// part way can go on (first reads of `cdc` and `incremental` streams).
    pub resumable: bool,
    /// Go on from this [`SourceBatch::progress`] of an earlier read of the
    /// same stream, in a newer snapshot: read what it had not read, and
    /// what changed since in what it had. Rows sent again are merged by
    /// key; rows deleted since come with the replayed changes. Progress the
    /// source cannot go on from (the table was rewritten meanwhile) reads
    /// everything.
    pub resume: Option<serde_json::Value>,
}

/// The cursor filter of an incremental read.
#[derive(Debug, Clone)]
pub struct IncrementalRead {
    /// The cursor column's source name.
    pub column: String,
    pub sql_type: crate::schema::SqlType,
    /// Inclusive lower bound.
    pub from: Option<crate::cursor::CursorValue>,
}

/// What a finished read saw.
#[derive(Debug, Clone, Default)]
pub struct ReadStats {
    pub rows: u64,
    pub source_bytes: u64,
    pub unrepresentable: Vec<Unrepresentable>,
    /// `incremental`: the highest cursor value a later commit could still
    /// carry, as far as the source knows at the start of the read (e.g. the
    /// start of the oldest transaction still open). The checkpoint never
    /// moves past it (DESIGN.md §6).
    pub cursor_ceiling: Option<crate::cursor::CursorValue>,
}

/// Reads rows for `reconcile` (see [`crate::reconcile`]).
///
/// Contract: values are read independently of the snapshot path (so a bug
/// there shows as a difference) and canonicalised after the type mapping;
/// with a `limit`, rows come in key order; calls never change the source;
/// dropping `out` stops a scan with an error.
#[async_trait::async_trait]
pub trait Scanner: Send + Sync {
    /// Whether the source orders `table`'s key exactly as destinations do
    /// (byte order for text), so `reconcile` may compare it in key ranges.
    async fn key_ranges_agree(&self, table: &TableSpec) -> Result<bool>;

    /// The rows of `request.table.stream` within `request.range` (in key
    /// order and at most `request.limit` rows when a limit is given), each
    /// value read independently of the snapshot path and brought to its
    /// canonical form after the type mapping, hashed, and sent on `out` in
    /// groups.
    async fn scan(&self, request: ScanRequest, out: ScanSender) -> Result<()>;
}

/// A source of data: a database or an API.
///
/// Every source snapshots; cursor reads, a change feed and reconcile scans
/// are optional and declared in [`Source::capabilities`].
///
/// Contract:
/// * `discover` describes at least the streams `selection` matches and
///   never changes anything; it spends no more of the source's time or API
///   quota than the selection needs.
/// * `check` connects and verifies every permission a sync of `streams`
///   will need; a failed item says how to fix it (the SQL to run, the
///   permission to add). It returns `Err` only when the check itself could
///   not run.
/// * `read_snapshot` reads a consistent snapshot of one stream and sends it
///   as Arrow record batches of at most `batch_rows` rows (and about
///   `batch_bytes` bytes) on `out`, in the shape of `request.table`, then
///   returns what it saw. Memory stays bounded: it never holds more than
///   one batch besides the ones in the channel. Values it cannot carry
///   exactly follow `on_unrepresentable`: NULL and counted in
///   [`ReadStats::unrepresentable`], or an [`crate::ErrorKind::Data`] error.
///   With `request.incremental`, it reads only rows whose cursor is ≥ the
///   bound, and reports in [`ReadStats::cursor_ceiling`] how far a
///   checkpoint may safely move.
/// * Cancellation: a read stops soon after `out`'s receiver is dropped
///   (the runner drops it at a batch boundary when the sync is asked to
///   stop) and returns an error; nothing it sent before is lost, since the
///   runner decides what to keep.
/// * Errors carry a kind the runner's policy understands: bad credentials
///   are [`crate::ErrorKind::Auth`], a stream that does not exist
///   [`crate::ErrorKind::NotFound`], a shape that changed since the plan
///   [`crate::ErrorKind::StalePlan`], a network cut or throttling
///   [`crate::ErrorKind::Transient`] (with `retry_after` when the source said).
/// * Concurrency: calls may run at once on one source (one per stream being
///   read, plus reconcile scans); a source holds no state between calls
///   that another call could disturb.
#[async_trait::async_trait]
pub trait Source: Send + Sync {
    /// `postgres`, `stripe`, `salesforce`.
    fn kind(&self) -> &'static str;

    /// The name the source is configured under.
    fn name(&self) -> &str;

    /// What the source can do besides snapshots.
    fn capabilities(&self) -> Capabilities;

    /// The namespace a stream name written without one is looked up in
    /// (Postgres: `public`); `None` when names have no namespace or need
    /// their own.
    fn default_namespace(&self) -> Option<&str> {
        None
    }

    async fn discover(&self, selection: &Selection) -> Result<Catalog>;

    async fn check(&self, streams: &[StreamName]) -> Result<CheckReport>;

    async fn read_snapshot(&self, request: SnapshotRequest, out: mpsc::Sender<SourceBatch>) -> Result<ReadStats>;

    /// The change feed, when [`Capabilities::change_feed`] is set.
    fn change_feed(&self) -> Option<&dyn ChangeFeed> {
        None
    }

    /// How many streams' first reads may run at once. A source whose pages
    /// wait on a far-away API gains from several (each still within its
    /// rate limit); a database, whose reads are already parallel inside,
    /// keeps to one. Loads into the destination run one at a time anyway.
    fn read_concurrency(&self) -> usize {
        1
    }

    /// Reconcile scans, when [`Capabilities::scan`] is set.
    fn scanner(&self) -> Option<&dyn Scanner> {
        None
    }
}
