//! What a sync did, stream by stream: rows, bytes, renames, and every value
//! that could not be carried exactly.

use crate::error::{Error, ErrorKind, Policy};
use crate::naming::Rename;
use serde::{Deserialize, Serialize};

/// How many sample keys are kept per column and reason.
pub const SAMPLE_KEYS: usize = 5;

/// Values of one column that were written as NULL for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unrepresentable {
    /// Destination column name.
    pub column: String,
    /// Why (`numeric NaN does not fit decimal(12,2)`).
    pub reason: String,
    pub count: u64,
    /// The first few rows' keys, as `col=value` lists.
    pub sample_keys: Vec<String>,
}

/// Counts unrepresentable values per (column, reason).
#[derive(Debug, Default, Clone)]
pub struct UnrepresentableTally {
    entries: Vec<Unrepresentable>,
}

impl UnrepresentableTally {
    pub fn record(&mut self, column: &str, reason: &str, key: impl FnOnce() -> String) {
        let entry = match self.entries.iter_mut().position(|e| e.column == column && e.reason == reason) {
            Some(i) => &mut self.entries[i],
            None => {
                self.entries.push(Unrepresentable {
                    column: column.to_owned(),
                    reason: reason.to_owned(),
                    count: 0,
                    sample_keys: Vec::new(),
                });
                self.entries.last_mut().expect("just pushed")
            }
        };
        entry.count += 1;
        if entry.sample_keys.len() < SAMPLE_KEYS {
            entry.sample_keys.push(key());
        }
    }

    /// Adds another tally's counts (and sample keys, up to [`SAMPLE_KEYS`]).
    pub fn merge(&mut self, other: UnrepresentableTally) {
        for e in other.entries {
            match self.entries.iter_mut().find(|s| s.column == e.column && s.reason == e.reason) {
                Some(s) => {
                    s.count += e.count;
                    let room = SAMPLE_KEYS.saturating_sub(s.sample_keys.len());
                    s.sample_keys.extend(e.sample_keys.into_iter().take(room));
                }
                None => self.entries.push(e),
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn total(&self) -> u64 {
        self.entries.iter().map(|e| e.count).sum()
    }

    pub fn into_entries(self) -> Vec<Unrepresentable> {
        self.entries
    }

    pub fn entries(&self) -> &[Unrepresentable] {
        &self.entries
    }
}

/// Rows a load inserted, updated and marked deleted in the destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowChanges {
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
}

/// The outcome of one stream in one sync.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamReport {
    pub stream: String,
    pub table: String,
    pub mode: String,
    /// `succeeded`, `failed`, `cancelled` (the sync was asked to stop) or `skipped`.
    pub status: String,
    pub rows: u64,
    pub source_bytes: u64,
    pub staged_bytes: u64,
    pub batch_id: Option<u64>,
    pub duration_ms: u64,
    pub unrepresentable: Vec<Unrepresentable>,
    /// How the table's shape changed at this sync, in words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schema_changes: Vec<String>,
    /// Rows this sync inserted, updated (a newer version of a stored row)
    /// and marked deleted in the destination table, every load together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<RowChanges>,
    /// Why the stream was read again in full at this sync, when the
    /// destination had lost what was loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reread: Option<String>,
    /// The checkpoint position after this sync (incremental: the cursor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<serde_json::Value>,
    pub renames: Vec<Rename>,
    /// Batches left by an earlier run that this sync loaded or found loaded.
    pub recovered_batches: Vec<u64>,
    pub error: Option<String>,
    /// The error's kind and what follows it ([`Error::policy`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<ErrorKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
}

impl StreamReport {
    /// A stream's report before anything happened.
    pub fn new(stream: &str) -> StreamReport {
        StreamReport {
            stream: stream.to_owned(),
            table: String::new(),
            mode: String::new(),
            status: String::new(),
            rows: 0,
            source_bytes: 0,
            staged_bytes: 0,
            batch_id: None,
            duration_ms: 0,
            unrepresentable: Vec::new(),
            schema_changes: Vec::new(),
            changes: None,
            reread: None,
            position: None,
            renames: Vec::new(),
            recovered_batches: Vec::new(),
            error: None,
            error_kind: None,
            policy: None,
        }
    }

    /// The stream failed with `e` (or stopped, when the sync was cancelled).
    pub fn set_error(&mut self, e: &Error) {
        self.status = if e.kind() == ErrorKind::Cancelled { "cancelled" } else { "failed" }.into();
        self.error = Some(e.to_string());
        self.error_kind = Some(e.kind());
        self.policy = Some(e.policy());
    }
}

/// The outcome of one sync of a pipeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncReport {
    pub pipeline: String,
    pub sync_id: i64,
    pub streams: Vec<StreamReport>,
    /// An error that stopped the whole sync before or between streams.
    pub error: Option<String>,
    pub duration_ms: u64,
    /// The statements sent to a warehouse destination, in order, with their
    /// elapsed times (what the sync cost in warehouse time).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statements: Vec<Statement>,
    /// Things to look at that did not fail the sync (a change feed's lag, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Changes a feed carried that no stream could take, counted by reason
    /// (events without an object id, of object types not synced).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub skipped_changes: std::collections::BTreeMap<String, u64>,
    /// The sync error's kind and what follows it ([`Error::policy`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<ErrorKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// What started the sync (`manual`, `schedule`, `follow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// When the sync started and ended, UTC (RFC 3339, milliseconds).
    #[serde(default)]
    pub started_at: String,
    #[serde(default)]
    pub finished_at: String,
}

/// Now, UTC, as RFC 3339 with milliseconds (`2026-12-03T15:04:05.123Z`).
pub fn utc_now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// One statement sent to the destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    pub sql: String,
    pub elapsed_ms: u64,
    /// Whether it needs a running warehouse (metadata-only statements do not).
    pub uses_warehouse: bool,
}

impl SyncReport {
    /// A sync's report before anything happened.
    pub fn new(pipeline: &str, sync_id: i64) -> SyncReport {
        SyncReport {
            pipeline: pipeline.to_owned(),
            sync_id,
            streams: Vec::new(),
            error: None,
            duration_ms: 0,
            statements: Vec::new(),
            warnings: Vec::new(),
            skipped_changes: Default::default(),
            error_kind: None,
            policy: None,
            trigger: None,
            started_at: utc_now(),
            finished_at: String::new(),
        }
    }

    /// The sync as a whole failed with `e` (or stopped, when cancelled).
    pub fn set_error(&mut self, e: &Error) {
        self.error = Some(e.to_string());
        self.error_kind = Some(e.kind());
        self.policy = Some(e.policy());
    }

    /// Adds a stream's report; a later round of the same sync (a `cdc`
    /// stream read in several rounds) adds to the stream's report.
    pub fn add_round(&mut self, r: StreamReport) {
        let Some(s) = self.streams.iter_mut().find(|s| s.stream == r.stream) else {
            self.streams.push(r);
            return;
        };
        s.rows += r.rows;
        s.staged_bytes += r.staged_bytes;
        s.source_bytes += r.source_bytes;
        s.batch_id = r.batch_id.or(s.batch_id);
        s.duration_ms += r.duration_ms;
        s.schema_changes.extend(r.schema_changes);
        s.unrepresentable.extend(r.unrepresentable);
        s.recovered_batches.extend(r.recovered_batches);
        s.reread = s.reread.take().or(r.reread);
        s.table = r.table;
        if r.error.is_some() {
            s.status = r.status;
            s.error = r.error;
            s.error_kind = r.error_kind;
            s.policy = r.policy;
        }
    }

    /// Every stream succeeded and the sync was not stopped.
    pub fn succeeded(&self) -> bool {
        self.error.is_none() && self.streams.iter().all(|s| s.status != "failed" && s.status != "cancelled")
    }

    /// The error that decides what follows the sync: the sync's own, else
    /// the first failed stream's.
    pub fn failure(&self) -> Option<(ErrorKind, Policy)> {
        let own = self.error_kind.zip(self.policy);
        own.or_else(|| self.streams.iter().find_map(|s| s.error_kind.zip(s.policy)))
    }

    pub fn rows(&self) -> u64 {
        self.streams.iter().map(|s| s.rows).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_and_keeps_a_few_keys() {
        let mut t = UnrepresentableTally::default();
        for i in 0..8 {
            t.record("amount", "numeric NaN", || format!("id={i}"));
        }
        t.record("d", "infinite date", || "id=1".into());
        let e = t.into_entries();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].count, 8);
        assert_eq!(e[0].sample_keys, vec!["id=0", "id=1", "id=2", "id=3", "id=4"]);
        assert_eq!(e[1].count, 1);
    }
}
