//! Typed checkpoint positions: where a stream stands, one serde type per
//! mode, stored as JSON tagged by `mode` in the checkpoint store and in
//! batch manifests.

use crate::cursor::CursorValue;
use crate::feed::FeedPosition;
use serde::{Deserialize, Serialize};

/// Where a stream stands, by mode. Stored as JSON tagged by `mode`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Position {
    /// `incremental`: loaded up to a cursor value.
    Incremental(CursorPosition),
    /// `incremental`: the first read, loaded in parts, stopped part way.
    IncrementalSnapshot(FirstRead),
    /// `cdc`: loaded up to a change-feed position.
    Cdc(FeedCheckpoint),
    /// `cdc`: the first snapshot, loaded in parts, stopped part way; its
    /// changes replay from `feed`.
    CdcSnapshot(FeedFirstRead),
}

/// An incremental stream's cursor checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CursorPosition {
    /// The cursor column's source name (a changed cursor starts over).
    pub column: String,
    /// The highest cursor value loaded; `None` before any row had one.
    pub cursor: Option<CursorValue>,
    /// Rows whose cursor was NULL when read (later changes to them are not seen).
    #[serde(default)]
    pub null_cursor_rows: u64,
    /// The ids of the rows within one lookback of `cursor`, when all are
    /// known, so the next read does not stage them again unchanged
    /// (internal: not shown to people).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<Vec<String>>,
}

/// An incremental stream's first read stopped part way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirstRead {
    pub column: String,
    /// The source's progress ([`crate::SourceBatch::progress`]), opaque.
    #[serde(default)]
    pub source: Option<serde_json::Value>,
}

/// A `cdc` stream loaded up to `feed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedCheckpoint {
    pub feed: FeedPosition,
}

/// A `cdc` stream's first snapshot stopped part way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedFirstRead {
    /// The feed's start the snapshot was read at; changes replay from it.
    pub feed: FeedPosition,
    /// The source's progress ([`crate::SourceBatch::progress`]), opaque.
    #[serde(default)]
    pub source: Option<serde_json::Value>,
}

impl Position {
    /// The mode's name as stored (`incremental`, `cdc_snapshot`, …).
    pub fn mode(&self) -> &'static str {
        match self {
            Position::Incremental(_) => "incremental",
            Position::IncrementalSnapshot(_) => "incremental_snapshot",
            Position::Cdc(_) => "cdc",
            Position::CdcSnapshot(_) => "cdc_snapshot",
        }
    }

    /// The sync mode this position belongs to.
    pub fn sync_mode(&self) -> simplyload_config::SyncMode {
        match self {
            Position::Incremental(_) | Position::IncrementalSnapshot(_) => simplyload_config::SyncMode::Incremental,
            Position::Cdc(_) | Position::CdcSnapshot(_) => simplyload_config::SyncMode::Cdc,
        }
    }

    /// The cursor checkpoint of an incremental stream.
    pub fn cursor(&self) -> Option<&CursorPosition> {
        match self {
            Position::Incremental(c) => Some(c),
            _ => None,
        }
    }

    /// The change-feed position a `cdc` stream replays from.
    pub fn feed(&self) -> Option<&FeedPosition> {
        match self {
            Position::Cdc(c) => Some(&c.feed),
            Position::CdcSnapshot(c) => Some(&c.feed),
            _ => None,
        }
    }

    /// The source's progress of a first read stopped part way.
    pub fn first_read_progress(&self) -> Option<&serde_json::Value> {
        match self {
            Position::IncrementalSnapshot(f) => f.source.as_ref(),
            Position::CdcSnapshot(f) => f.source.as_ref(),
            _ => None,
        }
    }

    /// The position as shown to people: without internal row ids.
    pub fn for_display(&self) -> Position {
        match self {
            Position::Incremental(c) => Position::Incremental(CursorPosition { overlap: None, ..c.clone() }),
            other => other.clone(),
        }
    }
}
