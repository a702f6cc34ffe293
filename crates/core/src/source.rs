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
    /// including those with a NULL cursor, when `from` is `None`).
    pub incremental: Option<IncrementalRead>,
    /// `cdc`: read inside this exported snapshot (a replication slot's
    /// consistent point), so the changes streamed after it join without a gap.
    pub snapshot: Option<String>,
    /// Read a large table with up to this many connections at once, all in
    /// one snapshot (Postgres: CTID page ranges); 1 reads in one piece.
    pub parallelism: usize,
    /// Tables smaller than this (on disk) are read in one piece.
    pub parallel_min_bytes: u64,
    /// Send [`SourceBatch::progress`] as the read goes (CDC snapshots, whose
    /// changes replayed from the slot make a resumed read exact).
    pub resumable: bool,
    /// Go on from this [`SourceBatch::progress`] of an earlier read of the
    /// same stream, in a newer snapshot: read the pages it had not read, and
    /// the rows of the pages it had read that changed since. Rows sent
    /// again are merged by key; rows deleted since come with the replayed
    /// changes. A state the source cannot go on from (the table was
    /// rewritten meanwhile) reads everything.
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

/// A replication slot made for a CDC start: the WAL position it is
/// consistent at, and a snapshot of the source at exactly that point, usable
/// (through [`SnapshotRequest::snapshot`]) until `release` is awaited.
#[async_trait::async_trait]
pub trait CdcStart: Send + Sync {
    fn consistent_point(&self) -> crate::cdc::Lsn;
    fn snapshot_name(&self) -> String;
    async fn release(self: Box<Self>) -> Result<()>;
}

/// What a CDC read needs.
#[derive(Debug, Clone)]
pub struct ChangesRequest {
    pub pipeline: String,
    /// The `cdc` streams; changes of other tables are skipped.
    pub tables: Vec<TableSpec>,
    pub limits: ValueLimits,
    pub on_unrepresentable: OnUnrepresentable,
    pub batch_rows: usize,
    /// Stop at the first commit after this many changes (the rest is read
    /// by the next round), so one load never grows without bound.
    pub max_changes: u64,
    /// Warn when the slot holds more WAL than this.
    pub max_lag_bytes: u64,
}

/// Changes of one stream, in the staged form (data columns, then
/// `_simplyload_deleted`, `_simplyload_version`, …; see
/// [`crate::cdc::stage_changes`]), or a truncate of its table.
#[derive(Debug)]
pub enum ChangeEvent {
    Rows { stream: String, batch: RecordBatch },
    Truncate { stream: String, version: i128 },
}

/// What a finished CDC read saw.
#[derive(Debug, Clone, Default)]
pub struct ChangesRead {
    /// Confirm this position once every change read is committed in the
    /// destination (the end of the last transaction read); `None`: nothing new.
    pub confirm: Option<crate::cdc::Lsn>,
    pub changes: u64,
    pub source_bytes: u64,
    /// Per stream.
    pub unrepresentable: Vec<(String, Unrepresentable)>,
    /// The read stopped early at a schema change the next sync must plan.
    pub schema_changed: bool,
    /// The read stopped at `max_changes`; more is waiting.
    pub more: bool,
    /// WAL the slot held when the read started.
    pub lag_bytes: Option<u64>,
    /// Things the user should know (slot lag above `max_lag_bytes`, …).
    pub warnings: Vec<String>,
}

/// A CDC pipeline's replication slot, for `status`.
#[derive(Debug, Clone)]
pub struct SlotStatus {
    pub name: String,
    /// The position confirmed (`16/B374D848`).
    pub confirmed: String,
    /// WAL the source keeps for the slot beyond the confirmed position.
    pub lag_bytes: u64,
    /// `reserved`, `extended`, `unreserved`, `lost`.
    pub status: Option<String>,
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

    /// CDC: whether the server and role allow logical replication of
    /// `streams` for `pipeline` (each failed item carries the SQL that fixes it).
    async fn check_cdc(&self, _pipeline: &str, _streams: &[StreamName]) -> Result<CheckReport> {
        let mut r = CheckReport::default();
        r.fail("cdc", format!("source kind `{}` has no change data capture", self.kind()), None);
        Ok(r)
    }

    /// CDC: the pipeline's replication slot, if it exists.
    async fn cdc_slot(&self, _pipeline: &str) -> Result<Option<SlotStatus>> {
        Ok(None)
    }

    /// CDC: makes sure the pipeline's publication and replication slot
    /// exist. When it creates the slot (`temporary` for a stream joining a
    /// running pipeline), it returns the slot's consistent point and
    /// snapshot; `None` when the slot already existed.
    /// A slot that was lost (invalidated) is dropped and made again when
    /// `on_slot_lost` is `resnapshot`; with `fail` it is an error.
    async fn cdc_prepare(
        &self,
        _pipeline: &str,
        _tables: &[TableSpec],
        _temporary: bool,
        _on_slot_lost: simplyload_config::OnSlotLost,
    ) -> Result<Option<Box<dyn CdcStart>>> {
        Err(crate::Error::new(
            crate::ErrorKind::Unsupported,
            format!("source kind `{}` has no change data capture", self.kind()),
        ))
    }

    /// CDC: sends every change committed since the slot's confirmed point,
    /// up to the source's current end, on `out`, and returns what to confirm.
    async fn read_changes(&self, _request: ChangesRequest, _out: mpsc::Sender<ChangeEvent>) -> Result<ChangesRead> {
        Err(crate::Error::new(
            crate::ErrorKind::Unsupported,
            format!("source kind `{}` has no change data capture", self.kind()),
        ))
    }

    /// CDC: the destination committed everything up to `lsn`; the source may
    /// forget it (Postgres: the slot's confirmed point moves, WAL is freed).
    async fn confirm_changes(&self, _pipeline: &str, _lsn: crate::cdc::Lsn) -> Result<()> {
        Err(crate::Error::new(
            crate::ErrorKind::Unsupported,
            format!("source kind `{}` has no change data capture", self.kind()),
        ))
    }
}
