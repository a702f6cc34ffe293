//! SimplyLoad's core: domain types, the contracts every connector implements
//! ([`Source`] with its optional [`ChangeFeed`], [`Destination`],
//! [`CheckpointStore`], [`StagingArea`]), the error policy, and the sync
//! runner that drives them (extract → stage → load → checkpoint).
//!
//! This crate depends on no connector; connectors depend on it. No module
//! here speaks of a particular source or destination: a change feed's
//! position is opaque ([`feed::FeedPosition`]), stream names may have no
//! namespace, and checkpoints are typed per mode ([`position::Position`]).

pub mod batch;
pub mod canon;
pub mod catalog;
pub mod cdc;
pub mod checkpoint;
pub mod cursor;
pub mod destination;
pub mod error;
pub mod failpoint;
pub mod feed;
pub mod naming;
pub mod plan;
pub mod position;
pub mod progress;
pub mod pseudonym;
pub mod reconcile;
pub mod report;
pub mod row_id;
pub mod runner;
pub mod scan;
pub mod schema;
pub mod source;
pub mod staging;
pub mod version;

pub use batch::{BatchManifest, BatchState, LoadKind, StagedFile};

/// Every HTTPS client here (S3, Snowflake) uses rustls with the ring
/// provider, like the Postgres connections: installed once per process
/// before the first client is built.
pub fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
pub use canon::Canon;
pub use catalog::{Capabilities, Catalog, CheckItem, CheckReport, ColumnInfo, Selection, TableInfo};
pub use checkpoint::{
    BatchRecord, Checkpoint, CheckpointStore, FeedRecord, LoadedStream, RowChanges, StagedBatch, StreamState,
    SyncRecord,
};
pub use destination::{Destination, LoadMark, LoadOutcome, LoadRequest, Missing};
pub use error::{Error, ErrorKind, Policy, Result};
pub use feed::{ChangeEvent, ChangeFeed, ChangesRead, ChangesRequest, FeedPosition, FeedStart, FeedStatus};
pub use naming::StreamName;
pub use position::Position;
pub use progress::{NoProgress, Progress};
pub use report::{StreamReport, SyncReport, Unrepresentable, UnrepresentableTally};
pub use schema::{Column, SqlType, TableSpec, ValueLimits};
pub use source::{IncrementalRead, ReadStats, Scanner, SnapshotRequest, Source, SourceBatch};
pub use staging::{BatchWriter, LocalFile, StagingArea};

pub use simplyload_config as config;

impl From<simplyload_config::ConfigError> for Error {
    fn from(e: simplyload_config::ConfigError) -> Self {
        let hint = e.hint.clone();
        let err = Error::config(e.message);
        match hint {
            Some(h) => err.with_hint(h),
            None => err,
        }
    }
}
