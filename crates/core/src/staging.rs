//! The `StagingArea` contract: where batches are written as Parquet.

use crate::batch::StagedFile;
use crate::error::Result;
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use std::path::PathBuf;

/// A staged file made available on the local file system.
#[derive(Debug)]
pub struct LocalFile {
    pub path: PathBuf,
    /// Removed when dropped (a downloaded copy); `None` for files that live here.
    pub temp: Option<tempfile_guard::TempPath>,
}

/// A tiny owned temp-path guard so core does not need the `tempfile` crate.
pub mod tempfile_guard {
    use std::path::PathBuf;

    #[derive(Debug)]
    pub struct TempPath(pub PathBuf);

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// Writes the files of one batch. Files roll over at the staging area's
/// target size; `finish` returns them once every byte is durable.
#[async_trait::async_trait]
pub trait BatchWriter: Send {
    async fn write(&mut self, batch: RecordBatch) -> Result<()>;
    async fn finish(self: Box<Self>) -> Result<Vec<StagedFile>>;
}

/// An object store holding staged Parquet (local folder, S3, …).
///
/// Contract: a file named in a manifest was completely written before
/// `finish` returned; an interrupted writer leaves at most files that no
/// manifest names, which `remove_batch` clears.
#[async_trait::async_trait]
pub trait StagingArea: Send + Sync {
    /// `file:///abs/path` or `s3://bucket/prefix`, for messages.
    fn describe(&self) -> String;

    async fn writer(
        &self,
        pipeline: &str,
        stream: &str,
        batch_id: u64,
        schema: SchemaRef,
    ) -> Result<Box<dyn BatchWriter>>;

    /// A local path for a staged file: the file itself for a local folder, a
    /// downloaded copy otherwise.
    async fn local_file(&self, key: &str) -> Result<LocalFile>;

    /// Removes every file of a batch (after it was abandoned or expired).
    async fn remove_batch(&self, pipeline: &str, stream: &str, batch_id: u64) -> Result<()>;
}
