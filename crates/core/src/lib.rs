//! SimplyLoad's core: domain types, the contracts every connector implements
//! ([`Source`], [`Destination`], [`CheckpointStore`], [`StagingArea`]), and
//! the sync runner that drives them (extract → stage → load → checkpoint).
//!
//! This crate depends on no connector; connectors depend on it.

pub mod batch;
pub mod canon;
pub mod catalog;
pub mod cdc;
pub mod cdc_sync;
pub mod checkpoint;
pub mod cursor;
pub mod destination;
pub mod error;
pub mod lock;
pub mod naming;
pub mod plan;
pub mod progress;
pub mod reconcile;
pub mod report;
pub mod row_id;
pub mod schema;
pub mod source;
pub mod staging;
pub mod sync;

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
pub use catalog::{Catalog, CheckItem, CheckReport, ColumnInfo, TableInfo};
pub use checkpoint::{
    BatchRecord, Checkpoint, CheckpointStore, LoadedStream, RowChanges, StagedBatch, StreamState, SyncRecord,
};
pub use destination::{Destination, LoadOutcome, LoadRequest};
pub use error::{Error, ErrorKind, Policy, Result};
pub use naming::StreamName;
pub use progress::{NoProgress, Progress};
pub use report::{StreamReport, SyncReport, Unrepresentable, UnrepresentableTally};
pub use schema::{Column, SqlType, TableSpec, ValueLimits};
pub use source::{
    CdcStart, ChangeEvent, ChangesRead, ChangesRequest, IncrementalRead, ReadStats, SlotStatus, SnapshotRequest,
    Source, SourceBatch,
};
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
