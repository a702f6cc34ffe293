//! `mode: incremental` (DESIGN.md §6): what a read tracks as its rows pass,
//! and the checkpoint it ends at.
//!
//! The checkpoint is the highest cursor read, but never past what a
//! transaction still open at the start of the read could commit (the
//! source's `cursor_ceiling`), and never behind the previous checkpoint.
//!
//! The lookback window (and the `>=`) make every read find again the rows
//! loaded just before the checkpoint. Each checkpoint keeps the ids (a hash
//! of every column, cursor included) of the rows within one lookback of it
//! ([`CursorPosition::overlap`]); a row read again with the same id is the
//! version the destination already has, so it is not staged again — a sync
//! with no changes loads nothing and the warehouse stays asleep.

use crate::cursor::{CursorValue, Lookback, max_cursor};
use crate::error::Result;
use crate::position::{CursorPosition, Position};
use crate::row_id;
use crate::schema::TableSpec;
use crate::source::IncrementalRead;
use arrow_array::{BooleanArray, RecordBatch};
use std::cmp::Ordering;
use std::collections::HashSet;

/// At most this many row ids are kept per checkpoint; a busier window is
/// simply merged again at the next sync.
pub const OVERLAP_MAX_ROWS: usize = 5_000;

/// The rows an incremental read will find again that were loaded already.
#[derive(Debug, Clone, Default)]
pub struct Overlap {
    pub lookback: Option<Lookback>,
    /// Ids of rows loaded by the batches up to the checkpoint, within its window.
    pub loaded: HashSet<String>,
}

/// The ids of rows within the window of a checkpoint, when it was written
/// for the same cursor column.
pub fn checkpoint_overlap(position: Option<&Position>, column: &str) -> HashSet<String> {
    match position.and_then(Position::cursor) {
        Some(c) if c.column == column => c.overlap.iter().flatten().cloned().collect(),
        _ => HashSet::new(),
    }
}

/// The cursor an incremental stream's checkpoint holds, if it was written
/// for the same cursor column (a changed cursor starts over with a snapshot).
pub fn checkpoint_cursor(position: Option<&Position>, column: &str) -> Option<CursorValue> {
    position.and_then(Position::cursor).filter(|c| c.column == column).and_then(|c| c.cursor.clone())
}

/// The position of an incremental stream at cursor `cursor`.
pub(crate) fn cursor_position(column: &str, cursor: Option<CursorValue>, null_cursor_rows: u64) -> Position {
    Position::Incremental(CursorPosition { column: column.to_owned(), cursor, null_cursor_rows, overlap: None })
}

/// What an incremental read tracks as its rows pass.
pub(crate) struct CursorTracker {
    /// The cursor column's index in the table's columns.
    index: usize,
    overlap: Option<Overlap>,
    /// The highest cursor seen.
    seen: Option<CursorValue>,
    null_cursors: u64,
    /// Row ids within one lookback of the highest cursor seen so far.
    window: Vec<(CursorValue, String)>,
    /// The window overflowed at this cursor: ids below it are not all kept.
    window_lost: Option<CursorValue>,
    /// Rows found again unchanged, not staged.
    pub unchanged: u64,
}

impl CursorTracker {
    pub fn new(index: usize, overlap: Option<Overlap>) -> Self {
        CursorTracker {
            index,
            overlap,
            seen: None,
            null_cursors: 0,
            window: Vec::new(),
            window_lost: None,
            unchanged: 0,
        }
    }

    pub fn null_cursors(&self) -> u64 {
        self.null_cursors
    }

    /// Notes a batch's cursors and returns the rows to stage: those not
    /// already loaded unchanged.
    pub fn observe(&mut self, table: &TableSpec, batch: RecordBatch) -> Result<RecordBatch> {
        let (max, nulls) = max_cursor(batch.column(self.index))?;
        self.null_cursors += nulls;
        if let Some(m) = max {
            self.seen = Some(match self.seen.take() {
                Some(s) => s.max(m),
                None => m,
            });
        }
        let Some(lookback) = self.overlap.as_ref().map(|o| o.lookback) else { return Ok(batch) };
        let batch = self.skip_loaded(table, batch)?;
        if let (Some(top), Some(lb)) = (&self.seen, &lookback) {
            let from = top.minus(lb);
            self.window.retain(|(c, _)| c.compare(&from) != Some(Ordering::Less));
        }
        if self.window.len() > OVERLAP_MAX_ROWS {
            self.window.clear();
            self.window_lost = self.seen.clone();
        }
        Ok(batch)
    }

    /// Drops the rows already loaded unchanged and notes every row's id and
    /// cursor in the window.
    fn skip_loaded(&mut self, table: &TableSpec, batch: RecordBatch) -> Result<RecordBatch> {
        let overlap = self.overlap.as_ref().expect("called with an overlap");
        let ids = row_id::row_ids(table, &batch)?;
        let col = batch.column(self.index);
        let mut keep = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let id = ids.value(row);
            if let (Some(c), _) = max_cursor(&col.slice(row, 1))? {
                self.window.push((c, id.to_owned()));
            }
            keep.push(!overlap.loaded.contains(id));
        }
        let dropped = keep.iter().filter(|k| !**k).count() as u64;
        if dropped == 0 {
            return Ok(batch);
        }
        self.unchanged += dropped;
        Ok(arrow_select::filter::filter_record_batch(&batch, &BooleanArray::from(keep))?)
    }

    /// The checkpoint the read ends at (see the module docs).
    pub fn end_position(
        &self,
        read: &IncrementalRead,
        previous: Option<&CursorValue>,
        ceiling: Option<CursorValue>,
    ) -> Position {
        let mut pos = match (self.seen.clone(), ceiling) {
            (Some(p), Some(ceiling)) => Some(p.min(ceiling)),
            (p, _) => p,
        };
        if let Some(prev) = previous {
            pos = Some(match pos {
                Some(p) => p.max(prev.clone()),
                None => prev.clone(),
            });
        }
        let overlap = pos.as_ref().and_then(|p| self.window_ids(p));
        Position::Incremental(CursorPosition {
            column: read.column.clone(),
            cursor: pos,
            null_cursor_rows: self.null_cursors,
            overlap,
        })
    }

    /// The ids of the rows the next read will find again, if all are known.
    fn window_ids(&self, top: &CursorValue) -> Option<Vec<String>> {
        let lookback = self.overlap.as_ref()?.lookback;
        let from = lookback.as_ref().map(|lb| top.minus(lb)).unwrap_or_else(|| top.clone());
        let complete = self.window_lost.as_ref().is_none_or(|lost| lost.compare(&from) == Some(Ordering::Less));
        if !complete {
            return None;
        }
        let mut ids: Vec<String> = self
            .window
            .iter()
            .filter(|(c, _)| c.compare(&from) != Some(Ordering::Less))
            .map(|(_, id)| id.clone())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        (ids.len() <= OVERLAP_MAX_ROWS).then_some(ids)
    }
}
