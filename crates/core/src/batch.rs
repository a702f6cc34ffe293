//! Batches: the staged files of one stream in one sync (DESIGN.md §2, §3).

use crate::position::Position;
use crate::schema::TableSpec;
use serde::{Deserialize, Serialize};

/// How a batch is applied to its destination table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadKind {
    /// The batch is the source's full content: the table's rows are replaced
    /// by it in one transaction (`full_refresh`).
    Replace,
    /// Rows are merged by key: applied when their version is ≥ the stored one.
    Merge,
    /// A later part of a full refresh cut into several batches (so loading
    /// one overlaps reading the next): its rows are added to those the
    /// batches before it in the same read put in. Only for tables with a
    /// key; a consistent snapshot never holds a key twice.
    Append,
}

/// Where a batch is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchState {
    /// Its id is taken and files are being written; no manifest yet.
    Staging,
    /// Every file is written and the manifest recorded; not yet in the destination.
    Staged,
    /// Committed in the destination and the checkpoint moved past it.
    Loaded,
    /// Never loaded and never will be (the read was cut off before the manifest).
    Abandoned,
}

impl BatchState {
    pub fn as_str(self) -> &'static str {
        match self {
            BatchState::Staging => "staging",
            BatchState::Staged => "staged",
            BatchState::Loaded => "loaded",
            BatchState::Abandoned => "abandoned",
        }
    }

    pub fn parse(s: &str) -> Option<BatchState> {
        Some(match s {
            "staging" => BatchState::Staging,
            "staged" => BatchState::Staged,
            "loaded" => BatchState::Loaded,
            "abandoned" => BatchState::Abandoned,
            _ => return None,
        })
    }
}

/// One staged Parquet file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedFile {
    /// The object key, relative to the staging root.
    pub key: String,
    pub row_count: u64,
    pub byte_count: u64,
}

/// The durable record of a staged batch: every load reads exactly these
/// files, never anything else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchManifest {
    pub pipeline: String,
    /// The stream as displayed (`public.orders`).
    pub stream: String,
    pub batch_id: u64,
    pub sync_id: i64,
    pub kind: LoadKind,
    /// The table shape the files were written in.
    pub table: TableSpec,
    pub files: Vec<StagedFile>,
    pub row_count: u64,
    /// Where the stream stood before and after the batch, if anywhere.
    pub start_position: Option<Position>,
    pub end_position: Option<Position>,
    /// CDC: the source table was truncated at this version (decimal text):
    /// every stored row older than it is marked deleted. The batch's rows
    /// all come after the truncate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated_at: Option<String>,
    /// A merge of every live row of the source table (a CDC stream read
    /// again from a snapshot): stored rows whose key it lacks, and that are
    /// older than it ([`BatchManifest::complete_version`]), are marked
    /// deleted — never removed (DESIGN.md §4).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub complete: bool,
}

impl BatchManifest {
    pub fn byte_count(&self) -> u64 {
        self.files.iter().map(|f| f.byte_count).sum()
    }

    /// The sync mode that staged the batch, told by its end position.
    pub fn mode(&self) -> simplyload_config::SyncMode {
        self.end_position.as_ref().map_or(simplyload_config::SyncMode::FullRefresh, Position::sync_mode)
    }

    /// The truncate version, parsed.
    pub fn truncate_version(&self) -> Option<i128> {
        self.truncated_at.as_deref().and_then(|v| v.parse().ok())
    }

    /// A complete snapshot's version: the change feed's start it was read at.
    pub fn complete_version(&self) -> Option<i128> {
        if !self.complete {
            return None;
        }
        self.end_position.as_ref()?.feed().map(|f| f.version)
    }
}

/// The object-store prefix of a batch: `{prefix}/{pipeline}/{stream}/{batch_id:012}`.
/// The stream part is the stream's display name with `/` made safe.
pub fn batch_prefix(pipeline: &str, stream: &str, batch_id: u64) -> String {
    format!("{}/{}/{batch_id:012}", path_part(pipeline), path_part(stream))
}

/// The key of the `n`th file of a batch.
pub fn file_key(pipeline: &str, stream: &str, batch_id: u64, n: u32) -> String {
    format!("{}/part-{n:05}.parquet", batch_prefix(pipeline, stream, batch_id))
}

/// Makes one path segment safe for any object store and file system: keeps
/// letters, digits, `.`, `_`, `-`, and percent-encodes the rest (so two
/// different stream names can never share a folder).
pub fn path_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && !out.is_empty()) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() { "%00".into() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_design() {
        assert_eq!(
            file_key("app_to_local", "public.orders", 7, 3),
            "app_to_local/public.orders/000000000007/part-00003.parquet"
        );
        assert_eq!(path_part("\"My Schema\".\"a/b\""), "%22My%20Schema%22.%22a%2Fb%22");
        assert_eq!(path_part(".."), "%2E.");
    }
}
