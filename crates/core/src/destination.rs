//! The `Destination` contract (DESIGN.md §3, §4, §7).

use crate::batch::{BatchManifest, LoadKind};
use crate::catalog::CheckReport;
use crate::error::Result;
use crate::scan::{ScanRequest, ScanSender};
use crate::schema::{TableSpec, ValueLimits};
use crate::staging::StagingArea;
use uuid::Uuid;

/// One load: the batches of one stream, applied in one destination transaction.
pub struct LoadRequest<'a> {
    pub pipeline_id: Uuid,
    pub table: &'a TableSpec,
    pub kind: LoadKind,
    /// In batch-id order. For [`LoadKind::Replace`], together they are the
    /// table's whole new content.
    pub batches: &'a [BatchManifest],
    pub staging: &'a dyn StagingArea,
    /// The read of the stream's next part runs while this load does: a
    /// destination on the same machine may hold back (DuckDB: half the
    /// cores); when false the load has the machine to itself.
    pub beside_read: bool,
}

/// What a load did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOutcome {
    /// Rows read from the staged files of the batches applied.
    pub rows_staged: u64,
    /// Live rows in the table after the load; `None` when the load did not
    /// count them (a load with nothing to apply sends no statement at all).
    pub rows_after: Option<u64>,
    /// Batches that were already recorded in `_simplyload_batches` and so
    /// were not applied again.
    pub already_loaded: Vec<u64>,
    /// What the load did: rows inserted, updated (a newer version of a
    /// stored row) and marked deleted.
    pub changes: crate::checkpoint::RowChanges,
}

/// A stream's last load as the state knows it, checked against the
/// destination at the start of a sync ([`Destination::missing`]).
#[derive(Debug, Clone, Copy)]
pub struct LoadMark<'a> {
    pub stream: &'a str,
    /// The table the stream is loaded into now.
    pub table: &'a str,
    /// The stream's last loaded batch (its checkpoint's).
    pub batch_id: u64,
}

/// What a destination no longer holds of a stream's loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// The table is gone (dropped, or another database, file or schema).
    Table,
    /// The table is there, but `_simplyload_batches` has no record of the
    /// stream's last batch for this pipeline id: another destination's
    /// table, or one written by another state.
    Record,
}

impl Missing {
    /// Why the stream is read again, in words.
    pub fn reason(self, mark: &LoadMark<'_>) -> String {
        match self {
            Missing::Table => format!(
                "read again in full as a new generation: table {} is missing in the destination \
                 (dropped, or a new destination)",
                mark.table
            ),
            Missing::Record => format!(
                "read again in full as a new generation: the destination has no record of batch {} \
                 in _simplyload_batches (a new destination, or one loaded by another state)",
                mark.batch_id
            ),
        }
    }
}

/// A warehouse that staged batches are loaded into.
///
/// Contract (exactly-once effect, DESIGN.md §3):
/// * `load` applies the request's batches in ONE transaction: it reads only
///   the files named in the manifests, brings the target table's shape up to
///   `request.table` (creating it, adding columns), applies the rows
///   ([`LoadKind::Replace`]: the table's rows become exactly the batches'
///   rows; [`LoadKind::Append`]: the batches' rows are added to the table
///   as they are — the later parts of a full refresh, whose keys the table
///   does not hold; [`LoadKind::Merge`]: per key, the row with the highest
///   `_simplyload_version` wins, ties go to the newer batch, and a row never
///   replaces a newer one), records every batch in `_simplyload_batches`
///   (pipeline_id, stream, batch_id, row_count, loaded_at), and commits.
///   Either all of that is visible afterwards or none of it.
/// * A batch already in `_simplyload_batches` is not applied again: loading
///   the same batches twice has the effect of loading them once. When every
///   batch is already there, `load` changes nothing.
/// * `loaded_batches` says which of the given batch ids the destination has
///   committed; the runner calls it after a crash to decide what to reload.
/// * `missing` says which streams' loads the destination no longer holds
///   (its table or its batch record is gone); the runner asks at the start
///   of every sync and reads those streams again in full. It must not be
///   wrong the other way: a stream it calls held is in the destination up to
///   its last batch (a hand-emptied table aside). It may answer from
///   metadata to keep an empty sync free (Snowflake).
/// * Every value in a staged file is stored exactly; `limits` tells sources
///   which values the destination could not hold, so they are reported
///   before staging instead of bent here.
/// * Concurrency: the runner loads one stream at a time per pipeline (the
///   pipeline's lock keeps other syncs out); loads of different pipelines
///   into one destination may run at once and must not see each other's
///   temporary objects. `scan` may run beside nothing but other scans.
/// * Cancellation: a load is never cancelled part way — dropping its future
///   after the commit is sent is the same as a crash, which the
///   `_simplyload_batches` record makes harmless.
#[async_trait::async_trait]
pub trait Destination: Send + Sync {
    /// `duckdb`, `snowflake`.
    fn kind(&self) -> &'static str;

    /// A sync starts: a destination with sessions names them after it
    /// (Snowflake's `QUERY_TAG`). Nothing is sent yet.
    fn begin_sync(&self, _pipeline: &str, _sync_id: i64) {}

    /// The sync is over: close what it opened, and say which statements it
    /// sent (for the report; empty for an embedded destination).
    async fn end_sync(&self) -> Vec<crate::report::Statement> {
        Vec::new()
    }

    fn limits(&self) -> ValueLimits;

    /// Connects and checks the destination can be written.
    async fn check(&self) -> Result<CheckReport>;

    async fn loaded_batches(&self, pipeline_id: Uuid, stream: &str, batch_ids: &[u64]) -> Result<Vec<u64>>;

    /// Which of `streams` the destination no longer holds, and why. The
    /// default asks for each stream's table and its last batch's record.
    async fn missing(&self, pipeline_id: Uuid, streams: &[LoadMark<'_>]) -> Result<Vec<(String, Missing)>> {
        let mut missing = Vec::new();
        for m in streams {
            if self.columns(m.table).await?.is_none() {
                missing.push((m.stream.to_owned(), Missing::Table));
            } else if self.loaded_batches(pipeline_id, m.stream, &[m.batch_id]).await?.is_empty() {
                missing.push((m.stream.to_owned(), Missing::Record));
            }
        }
        Ok(missing)
    }

    async fn load(&self, request: LoadRequest<'_>) -> Result<LoadOutcome>;

    /// Live (not deleted) rows of a destination table; `None` if it does not exist.
    async fn row_count(&self, table: &str) -> Result<Option<u64>>;

    /// The column names of a destination table; `None` if it does not exist.
    async fn columns(&self, table: &str) -> Result<Option<Vec<String>>>;

    /// Reads rows for `reconcile` (see [`crate::reconcile`]): the rows of
    /// table `request.table.name` within `request.range` (keys compared as
    /// the source compares them), every value of `request.table.columns`
    /// (NULL for a column the table lacks) canonicalised and hashed, the
    /// flag being `_simplyload_deleted`, sent on `out` in groups. Tombstones
    /// and deleted rows are sent too; the caller decides.
    async fn scan(&self, request: ScanRequest, out: ScanSender) -> Result<()>;
}
