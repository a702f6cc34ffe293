//! A stream's first read (a CDC stream's snapshot, an incremental stream's
//! first read), cut into parts, that goes on after a crash.
//!
//! Each part's checkpoint holds the stream's first-read position
//! ([`Position::CdcSnapshot`] or [`Position::IncrementalSnapshot`]) with
//! the source's progress ([`crate::SourceBatch::progress`]) in it. Going
//! on, the source reads, in a newer snapshot, what it had not read and what
//! changed since in what it had; those parts are merged by key and version.
//! Rows deleted meanwhile from what was read are the one thing that read
//! cannot see: a CDC stream gets them from its change feed, which replays
//! every change from the first snapshot's position (the caller makes sure
//! the feed has not moved past it); an incremental stream never sees hard
//! deletes, so it is as if the first read had finished before them. A full
//! refresh would keep them, so it never goes on: it reads everything again.

use crate::position::{FeedFirstRead, FirstRead, Position};

#[derive(Debug, Clone)]
pub struct ResumableSnapshot {
    /// The first-read position each part records, its progress left empty.
    pub position: Position,
    /// Going on from an earlier attempt: every part is merged (rows of the
    /// earlier attempt stay); otherwise the first part replaces the table's rows.
    pub going_on: bool,
    /// The source's progress to go on from (`None`: read everything).
    pub from: Option<serde_json::Value>,
}

impl ResumableSnapshot {
    /// The checkpoint position of a part read up to `progress`.
    pub fn position(&self, progress: Option<&serde_json::Value>) -> Position {
        let source = progress.cloned();
        match &self.position {
            Position::IncrementalSnapshot(f) => Position::IncrementalSnapshot(FirstRead { source, ..f.clone() }),
            Position::CdcSnapshot(f) => Position::CdcSnapshot(FeedFirstRead { source, ..f.clone() }),
            other => other.clone(),
        }
    }

    /// The same read started over: its first part replaces the table's rows.
    pub fn restart(self) -> ResumableSnapshot {
        ResumableSnapshot { going_on: false, from: None, ..self }
    }

    /// How to read a stream whose checkpoint is `checkpoint`: going on when
    /// it is a stopped first read whose position `matches` (same mode and
    /// what else the caller needs), from the start otherwise with `fresh`.
    pub fn from_checkpoint(
        checkpoint: Option<&Position>,
        matches: impl FnOnce(&Position) -> bool,
        fresh: Position,
    ) -> ResumableSnapshot {
        match checkpoint.filter(|p| matches(p)) {
            Some(p) => {
                let from = p.first_read_progress().cloned();
                let stopped = ResumableSnapshot { position: p.clone(), going_on: true, from };
                ResumableSnapshot { position: stopped.position(None), ..stopped }
            }
            None => ResumableSnapshot { position: fresh, going_on: false, from: None },
        }
    }
}
