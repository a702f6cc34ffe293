//! The application layer: what the `simplyload` CLI and the server share.
//!
//! * [`registry`]: builds sources, destinations, staging and the checkpoint
//!   store from the config — the one place that knows every connector;
//! * [`App::sync`] runs one sync of a pipeline with a [`Trigger`] and a
//!   cancellation token honoured at batch boundaries, under the pipeline's
//!   lock ([`lock`]); [`App::follow`] keeps syncing;
//! * [`App::status`] is the status view model; [`App::check`] the checks
//!   with the SQL (or steps) that fix what is missing;
//! * [`App::idle_feeds`] finds change feeds no `cdc` stream uses any more;
//!   [`App::drop_pipeline`] removes a pipeline's feed and state;
//! * setup scripts live with their connectors
//!   (`simplyload_postgres::setup`, `simplyload_snowflake::setup`);
//!   [`App::feed_name`] names what they create for a pipeline.
//!
//! Callers parse arguments and print; everything else is here or below.

pub mod check;
pub mod feeds;
pub mod format;
pub mod lock;
pub mod reconcile;
pub mod registry;
pub mod staging;
pub mod status;
pub mod sync;

pub use check::{CheckSection, PipelineCheck};
pub use feeds::{DroppedPipeline, IdleFeed};
pub use lock::{FileLocks, PipelineGuard, PipelineLocks};
pub use status::{FeedView, PipelineStatus, StreamRow};
pub use sync::{SyncRequest, Trigger};

use simplyload_config::Config;
use simplyload_core::checkpoint::CheckpointStore;
use simplyload_core::{Destination, Error, Result, Source};
use simplyload_staging::Staging;
use simplyload_state::SqliteStore;
use std::path::Path;
use std::sync::Arc;

/// A loaded, validated configuration and where pipeline locks are taken.
pub struct App {
    config: Config,
    locks: Arc<dyn PipelineLocks>,
}

impl App {
    /// Loads and fully validates the config found at `path` (default
    /// `./simplyload.yaml`); pipeline locks are files beside its state.
    pub fn load(path: Option<&Path>) -> Result<App> {
        let config = Config::load(&registry::config_path(path))?;
        App::new(config)
    }

    /// An app over a config (validated here), with file locks beside its state.
    pub fn new(config: Config) -> Result<App> {
        registry::validate(&config)?;
        let locks = Arc::new(FileLocks::new(&registry::state_dir(&config)));
        Ok(App { config, locks })
    }

    /// The same app with another lock space (a server's).
    pub fn with_locks(self, locks: Arc<dyn PipelineLocks>) -> App {
        App { locks, ..self }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn locks(&self) -> &dyn PipelineLocks {
        self.locks.as_ref()
    }

    pub fn source(&self, name: &str) -> Result<Arc<dyn Source>> {
        registry::source(&self.config, name)
    }

    pub fn destination(&self, name: &str) -> Result<Arc<dyn Destination>> {
        registry::destination(&self.config, name)
    }

    /// A pipeline's destination, in the pipeline's `schema:` when it names one.
    pub fn pipeline_destination(&self, pipeline: &str) -> Result<Arc<dyn Destination>> {
        registry::pipeline_destination(&self.config, pipeline)
    }

    pub fn staging(&self) -> Result<Arc<Staging>> {
        registry::staging(&self.config)
    }

    /// The checkpoint store, created if missing.
    pub fn store(&self) -> Result<Arc<SqliteStore>> {
        registry::store(&self.config)
    }

    /// The checkpoint store if its file exists.
    pub fn existing_store(&self) -> Result<Option<SqliteStore>> {
        registry::existing_store(&self.config)
    }

    /// The pipelines a command applies to: those named, or all of them.
    pub fn select_pipelines(&self, names: &[String]) -> Result<Vec<String>> {
        if names.is_empty() {
            if self.config.pipelines.is_empty() {
                let path = self.config.path.as_deref().map(|p| p.display().to_string()).unwrap_or_default();
                return Err(Error::config(format!("{path}: no pipelines are defined"))
                    .with_hint("add a `pipelines:` section (see README.md)"));
            }
            return Ok(self.config.pipelines.keys().cloned().collect());
        }
        for n in names {
            self.config.pipeline(n)?;
        }
        Ok(names.to_vec())
    }

    /// The name of a pipeline's change feed on its source (the Postgres
    /// replication slot and publication): the one its state recorded, or
    /// the one its first `cdc` sync will make. `None` when the source has no
    /// change feed. Creates the pipeline's id in the state if needed.
    pub async fn feed_name(&self, pipeline: &str) -> Result<Option<String>> {
        let p = self.config.pipeline(pipeline)?;
        let source = self.source(&p.source)?;
        let Some(feed) = source.change_feed() else { return Ok(None) };
        let store = self.store()?;
        if let Some(record) = store.feed(pipeline).await? {
            return Ok(Some(record.name));
        }
        let states = store.streams(pipeline).await?;
        let id = store.pipeline_id(pipeline).await?;
        let (name, _) = simplyload_core::runner::unrecorded_feed_name(feed, pipeline, id, &states).await?;
        Ok(Some(name))
    }
}
