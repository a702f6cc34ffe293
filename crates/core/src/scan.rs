//! What a reconcile scan reads, shared by the two sides that scan (a
//! source's [`crate::source::Scanner`] and a destination) and by
//! [`crate::reconcile`], which compares them.

use crate::canon::Canon;
use crate::schema::{TableSpec, ValueLimits};
use tokio::sync::mpsc;

/// A key range: rows with `after < key <= upto` (either side open when `None`),
/// keys compared lexicographically, column by column.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRange {
    pub after: Option<Vec<Canon>>,
    pub upto: Option<Vec<Canon>>,
}

/// What to read for one reconcile step.
#[derive(Debug, Clone)]
pub struct ScanRequest {
    /// The table: a source reads `stream` by each column's `source_name`, a
    /// destination reads `name` by each column's `name`. Keys are
    /// `table.key` (empty: no key).
    pub table: TableSpec,
    /// Source only: the soft-delete column; a row's flag is `column IS NOT NULL`.
    pub flag_column: Option<String>,
    pub range: KeyRange,
    /// Source only: read in key order, at most this many rows.
    pub limit: Option<u64>,
    /// Source only: values outside these limits are what the destination
    /// holds as NULL (DESIGN.md §5), so they canonicalise to NULL.
    pub limits: ValueLimits,
}

/// One row, hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedRow {
    /// The key columns' canonical values (empty without a key).
    pub key: Vec<Canon>,
    /// [`Canon::hash64`] of every column of `table.columns`, in order.
    pub hashes: Vec<u64>,
    /// Source: the soft-delete column is set. Destination: `_simplyload_deleted`.
    pub flag: bool,
}

/// Rows sent by a scan, a few hundred at a time.
pub type ScanSender = mpsc::Sender<Vec<ScannedRow>>;

/// How many rows a scanner sends per message.
pub const SCAN_BATCH: usize = 512;
