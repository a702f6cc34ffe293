//! Staging retention: the staged files of loaded batches are kept for
//! `staging_retention` (default 7 days), then removed — after each
//! successful sync of their pipeline, or by `simplyload staging gc`.

use crate::App;
use simplyload_core::checkpoint::CheckpointStore;
use simplyload_core::{Result, StagingArea};
use std::time::Duration;

/// What a clean-up removed (or would remove).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cleaned {
    pub batches: u64,
    pub bytes: u64,
}

impl App {
    /// The configured retention of staged files.
    pub fn staging_retention(&self) -> Duration {
        self.config().staging_retention.unwrap_or(simplyload_config::DEFAULT_STAGING_RETENTION)
    }

    /// Removes the staged files of a pipeline's batches loaded more than
    /// `older_than` ago (with `dry_run`, only counts them).
    pub async fn clean_staging(&self, pipeline: &str, older_than: Duration, dry_run: bool) -> Result<Cleaned> {
        let Some(store) = self.existing_store()? else { return Ok(Cleaned::default()) };
        let staging = self.staging()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let cutoff = now - older_than.as_millis().min(i64::MAX as u128) as i64;
        let mut cleaned = Cleaned::default();
        for b in store.batches_to_clean(pipeline, cutoff).await? {
            if !dry_run {
                staging.remove_batch(pipeline, &b.stream, b.batch_id).await?;
                store.mark_files_removed(pipeline, &b.stream, b.batch_id).await?;
            }
            cleaned.batches += 1;
            cleaned.bytes += b.byte_count;
        }
        Ok(cleaned)
    }
}
