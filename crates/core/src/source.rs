//! The `Source` contract.

use crate::catalog::{Catalog, CheckReport};
use crate::error::Result;
use crate::naming::StreamName;
use crate::reconcile::{ScanRequest, ScanSender};
use crate::report::Unrepresentable;
use crate::schema::{TableSpec, ValueLimits};
use arrow_array::RecordBatch;
use simplyload_config::OnUnrepresentable;
use tokio::sync::mpsc;

/// Default number of rows per Arrow batch a source produces.
pub const DEFAULT_BATCH_ROWS: usize = 65_536;
/// Default upper bound on the bytes held in one Arrow batch (a batch closes
/// early when wide rows reach it), so memory stays bounded for any row width.
pub const DEFAULT_BATCH_BYTES: usize = 32 * 1024 * 1024;

/// A batch of rows read from a source, with the bytes it took on the wire.
#[derive(Debug)]
pub struct SourceBatch {
    pub batch: RecordBatch,
    pub source_bytes: u64,
}

/// What to read for a snapshot of one stream.
#[derive(Debug, Clone)]
pub struct SnapshotRequest {
    /// The table shape to produce: the source reads exactly these columns, in
    /// this order, as these types. If the source's schema no longer matches,
    /// the read fails with [`crate::ErrorKind::Conflict`].
    pub table: TableSpec,
    pub limits: ValueLimits,
    pub on_unrepresentable: OnUnrepresentable,
    pub batch_rows: usize,
    pub batch_bytes: usize,
    /// `incremental`: read only rows whose cursor is ≥ `from` (all rows,
    /// including those with a NULL cursor, when `from` is `None`).
    pub incremental: Option<IncrementalRead>,
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

/// A source of data: a database or an API.
///
/// Contract:
/// * `discover` describes what the source holds; it never changes anything.
/// * `check` connects and verifies every permission a sync of `streams` will
///   need; a failed item carries the SQL (or steps) that fix it. It returns
///   `Err` only when the check itself could not run.
/// * `read_snapshot` reads a consistent snapshot of one stream and sends it
///   as Arrow record batches of at most `batch_rows` rows (and about
///   `batch_bytes` bytes) on `out`, in the shape of `request.table`, then
///   returns what it saw. Memory stays bounded: it never holds more than one
///   batch besides the ones in the channel. Values it cannot carry exactly
///   follow `on_unrepresentable`: NULL and counted in
///   [`ReadStats::unrepresentable`], or an [`crate::ErrorKind::Data`] error.
///   If the receiver is dropped, it stops and returns an error.
///   With `request.incremental`, it reads only rows whose cursor is ≥ the
///   bound, and reports in [`ReadStats::cursor_ceiling`] how far a
///   checkpoint may safely move.
#[async_trait::async_trait]
pub trait Source: Send + Sync {
    /// `postgres`, `stripe`, `salesforce`.
    fn kind(&self) -> &'static str;

    /// The name the source is configured under.
    fn name(&self) -> &str;

    async fn discover(&self) -> Result<Catalog>;

    async fn check(&self, streams: &[StreamName]) -> Result<CheckReport>;

    async fn read_snapshot(&self, request: SnapshotRequest, out: mpsc::Sender<SourceBatch>) -> Result<ReadStats>;

    /// Whether the source orders `table`'s key exactly as destinations do
    /// (byte order for text), so `reconcile` may compare it in key ranges.
    async fn key_ranges_agree(&self, table: &TableSpec) -> Result<bool>;

    /// Reads rows for `reconcile` (see [`crate::reconcile`]): the rows of
    /// `request.table.stream` within `request.range` (in key order and at
    /// most `request.limit` rows when a limit is given), each value read
    /// independently of the snapshot path and brought to its canonical form
    /// after the type mapping, hashed, and sent on `out` in groups.
    async fn scan(&self, request: ScanRequest, out: ScanSender) -> Result<()>;
}
