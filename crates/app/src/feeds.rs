//! Change feeds left behind, and dropping a pipeline.
//!
//! A pipeline's change feed (a Postgres replication slot and publication)
//! keeps changes until they are confirmed. When no `cdc` stream reads it
//! any more — the pipeline's mode was switched, or the pipeline left the
//! config — it keeps them forever: a slot holds WAL until the disk fills.
//! A switched pipeline's feed is removed after its next successful sync
//! (`simplyload_core::runner`); [`App::idle_feeds`] finds the rest for
//! `check` and `sync` to warn about, and [`App::drop_pipeline`] removes a
//! pipeline's feed and state.

use crate::App;
use serde::Serialize;
use simplyload_core::runner::{existing_feed_name, uses_change_feed};
use simplyload_core::{Error, ErrorKind, Result};
use simplyload_state::SqliteStore;
use std::time::Duration;

/// A change feed this state made that no `cdc` stream uses any more.
#[derive(Debug, Clone, Serialize)]
pub struct IdleFeed {
    pub pipeline: String,
    pub source: String,
    /// What the feed is on the source (`replication slot`).
    pub what: String,
    pub name: String,
    /// What the source keeps for it (bytes of WAL).
    pub retained_bytes: Option<u64>,
    /// The pipeline is still configured (its mode was switched): its next
    /// successful sync removes the feed.
    pub in_config: bool,
    /// The SQL that removes it by hand.
    pub removal_sql: String,
}

impl IdleFeed {
    /// A warning that says what is held and how to end it.
    pub fn message(&self) -> String {
        let held = match self.retained_bytes {
            Some(b) => format!("holds {} of WAL", crate::format::bytes(b)),
            None => "holds changes".into(),
        };
        let fix = if self.in_config {
            format!(
                "it is dropped after pipeline {p}'s next successful sync, or now with `simplyload pipeline drop {p}`",
                p = self.pipeline
            )
        } else {
            format!("drop it with `simplyload pipeline drop {}`", self.pipeline)
        };
        format!(
            "{} {} on source {} {held} but no `cdc` stream of pipeline {} uses it any more: {fix} \
             (by hand: {})",
            self.what, self.name, self.source, self.pipeline, self.removal_sql
        )
    }
}

/// What [`App::drop_pipeline`] did.
#[derive(Debug, Clone, Serialize)]
pub struct DroppedPipeline {
    pub pipeline: String,
    /// The feed removed from the source: (what, name).
    pub feed: Option<(String, String)>,
    /// A feed the state recorded that no configured source has (it may be
    /// gone, or on a source no longer configured): how to remove it by hand.
    pub feed_not_found: Option<String>,
    /// The state knew the pipeline (and forgot it).
    pub had_state: bool,
}

/// A feed found on a source.
struct Found {
    source: String,
    name: String,
    status: simplyload_core::feed::FeedStatus,
    what: &'static str,
    removal_sql: String,
}

impl App {
    /// The change feeds of this state's pipelines that no `cdc` stream uses
    /// any more, as their sources show them. A source that cannot be
    /// reached is skipped (with a log line): this is a warning, not a check.
    pub async fn idle_feeds(&self) -> Result<Vec<IdleFeed>> {
        let Some(store) = self.existing_store()? else { return Ok(Vec::new()) };
        let mut idle = Vec::new();
        for (pipeline, _) in simplyload_core::checkpoint::CheckpointStore::pipelines(&store).await? {
            let configured = self.config().pipelines.get(&pipeline);
            if configured.is_some_and(uses_change_feed) {
                continue;
            }
            match self.find_feed(&store, &pipeline).await {
                Ok(Some(f)) => idle.push(IdleFeed {
                    pipeline: pipeline.clone(),
                    source: f.source,
                    what: f.what.into(),
                    name: f.name,
                    retained_bytes: f.status.retained_bytes,
                    in_config: configured.is_some(),
                    removal_sql: f.removal_sql,
                }),
                Ok(None) => {}
                Err(e) => tracing::warn!(pipeline = %pipeline, "cannot look for its change feed: {e}"),
            }
        }
        Ok(idle)
    }

    /// Drops a pipeline: removes its change feed from the source and
    /// forgets its state (checkpoints, history, id). The destination's
    /// tables are left as they are. Holds the pipeline's lock, waiting up
    /// to `wait` for a sync under way.
    pub async fn drop_pipeline(&self, pipeline: &str, wait: Duration) -> Result<DroppedPipeline> {
        use simplyload_core::checkpoint::CheckpointStore;
        let store = self.existing_store()?;
        let known = match &store {
            Some(s) => s.pipelines().await?.into_iter().any(|(p, _)| p == pipeline),
            None => false,
        };
        if !known && !self.config().pipelines.contains_key(pipeline) {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("pipeline {pipeline} is neither in the config nor in the state"),
            )
            .with_hint("`simplyload status` lists the pipelines"));
        }
        let mut dropped =
            DroppedPipeline { pipeline: pipeline.into(), feed: None, feed_not_found: None, had_state: known };
        let Some(store) = store.filter(|_| known) else { return Ok(dropped) };
        let _lock = self.locks().acquire(pipeline, wait).await?;
        match self.find_feed(&store, pipeline).await? {
            Some(f) => {
                let feed = self.source(&f.source)?;
                let feed = feed.change_feed().ok_or_else(|| Error::internal("a feed without a change feed"))?;
                feed.remove(&f.name).await?;
                dropped.feed = Some((f.what.into(), f.name));
            }
            None => {
                if let Some(record) = store.feed(pipeline).await? {
                    let by_hand = self.removal_hint(&record.name);
                    dropped.feed_not_found = Some(format!(
                        "change feed {} was not found on any configured source; if it still exists, remove it by hand{by_hand}",
                        record.name
                    ));
                }
            }
        }
        store.forget_pipeline(pipeline).await?;
        Ok(dropped)
    }

    /// How to remove a feed by hand, as the configured sources with a change
    /// feed say (` (SQL)`), or nothing when none is configured.
    fn removal_hint(&self, feed_name: &str) -> String {
        let hints: Vec<String> = self
            .config()
            .sources
            .keys()
            .filter_map(|name| self.source(name).ok())
            .filter_map(|s| s.change_feed().map(|f| f.removal_hint(feed_name)))
            .collect();
        match hints.first() {
            Some(h) => format!(" ({h})"),
            None => String::new(),
        }
    }

    /// The pipeline's feed on the source that has it: the pipeline's own
    /// source when configured, else each configured source with a change feed.
    async fn find_feed(&self, store: &SqliteStore, pipeline: &str) -> Result<Option<Found>> {
        let sources: Vec<String> = match self.config().pipelines.get(pipeline) {
            Some(p) => vec![p.source.clone()],
            None => self.config().sources.keys().cloned().collect(),
        };
        for source_name in sources {
            let source = self.source(&source_name)?;
            let Some(feed) = source.change_feed() else { continue };
            let Some(name) = existing_feed_name(feed, store, pipeline).await? else { continue };
            if let Some(status) = feed.status(&name).await? {
                let removal_sql = feed.removal_hint(&name);
                return Ok(Some(Found { source: source_name, name, status, what: feed.what(), removal_sql }));
            }
        }
        Ok(None)
    }
}
