//! The change-feed contract: how a source delivers every change made since a
//! position, so `mode: cdc` streams stay current without reading everything
//! again (DESIGN.md §3, §6).
//!
//! The runner drives a feed in four steps:
//! 1. **prepare** makes sure the pipeline's feed exists on the source. When
//!    it has to make it, it returns a [`FeedStart`]: the position the feed
//!    starts at and, where the source has one, a token that reads the source
//!    exactly as of that position ([`SnapshotRequest::consistent_with`]). The
//!    streams are snapshot through it, every row at the start's version.
//! 2. **read** sends every change committed after the feed's confirmed
//!    position, up to the source's current end, and returns the position to
//!    confirm.
//! 3. The runner stages and loads those changes (one destination
//!    transaction per stream) and records the position in the checkpoint
//!    store.
//! 4. **confirm** then tells the source it may forget what came before.
//!
//! A crash anywhere replays from the last confirmed position; versions
//! ([`FeedPosition::version`]) make the replay harmless. The Postgres
//! implementation is a replication slot, its publication and an exported
//! snapshot; an API source's feed is its events endpoint.
//!
//! [`SnapshotRequest::consistent_with`]: crate::source::SnapshotRequest::consistent_with

use crate::catalog::CheckReport;
use crate::error::Result;
use crate::naming::StreamName;
use crate::report::Unrepresentable;
use crate::schema::{TableSpec, ValueLimits};
use arrow_array::RecordBatch;
use serde::{Deserialize, Serialize};
use simplyload_config::OnUnrepresentable;
use tokio::sync::mpsc;
use uuid::Uuid;

/// Where a change feed stands. The runner stores it in checkpoints and
/// hands it back; only the source reads `token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedPosition {
    /// Every change the feed delivers after this position has a higher
    /// version; rows read at this position get exactly this one.
    #[serde(with = "crate::version::text")]
    pub version: i128,
    /// The source's own encoding of the position (Postgres: a WAL position
    /// such as `16/B374D848`).
    pub token: String,
}

/// Who a feed belongs to, for [`ChangeFeed::feed_name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedOwner<'a> {
    /// A pipeline and the UUID its state gave it: two states (two
    /// deployments of one config, one pipeline name on two databases of a
    /// server) never get the same name.
    Pipeline { pipeline: &'a str, pipeline_id: Uuid },
    /// A pipeline whose state started its feed before feeds were named for
    /// their state: the name used then, so the pipeline goes on with it.
    Legacy { pipeline: &'a str },
}

/// What `prepare` is asked to do.
#[derive(Debug, Clone)]
pub struct PrepareFeed<'a> {
    /// The feed's name ([`ChangeFeed::feed_name`], as recorded in the state).
    pub feed: &'a str,
    /// The tables the feed must carry (Postgres: its publication's tables).
    pub tables: &'a [TableSpec],
    /// A short-lived feed whose only use is its start: a snapshot for
    /// streams joining a pipeline whose feed already runs. Always created,
    /// and gone once the start is released.
    pub joining: bool,
    /// A feed that was lost (the source dropped what it held) is made
    /// again (`on_slot_lost: resnapshot`) instead of failing.
    pub remake_lost: bool,
    /// The position the pipeline's state recorded for this feed, if any. A
    /// source that keeps nothing for a reader (an API's events endpoint)
    /// knows from it whether the feed exists and whether it can still go on.
    pub recorded: Option<&'a FeedPosition>,
}

/// What `prepare` found or made.
pub enum Prepared {
    /// The feed was there; changes replay from `confirmed`.
    Existing { confirmed: Option<FeedPosition> },
    /// The feed was made now; `remade` when it replaced a lost one (every
    /// change since the old one's position is gone, so every stream is read
    /// again).
    Created { start: Box<dyn FeedStart>, remade: bool },
}

/// A feed just made: its start, held until `release` (Postgres keeps the
/// exported snapshot valid until then).
#[async_trait::async_trait]
pub trait FeedStart: Send + Sync {
    /// Where the feed starts: every change after it is delivered.
    fn position(&self) -> FeedPosition;
    /// A token that reads the source exactly as of [`position`](Self::position)
    /// ([`crate::SnapshotRequest::consistent_with`]), if the source has one.
    /// A source without one reads its current state, and replaying the
    /// feed from the start converges every row.
    fn snapshot(&self) -> Option<String>;
    async fn release(self: Box<Self>) -> Result<()>;
}

/// What a change read needs.
#[derive(Debug, Clone)]
pub struct ChangesRequest {
    /// The feed's name.
    pub feed: String,
    /// The position the state recorded last (the last one confirmed). A
    /// source that keeps its readers' positions itself (Postgres: the slot)
    /// reads from its own; one that keeps nothing reads from this.
    pub from: Option<FeedPosition>,
    /// The streams read from the feed; changes of others are skipped.
    pub tables: Vec<TableSpec>,
    pub limits: ValueLimits,
    pub on_unrepresentable: OnUnrepresentable,
    pub batch_rows: usize,
    /// Stop at the first transaction boundary after this many changes (the
    /// rest is read by the next round), so one load never grows without bound.
    pub max_changes: u64,
    /// Warn when the source holds more than this many bytes for the feed.
    pub max_lag_bytes: u64,
}

/// Changes of one stream, in the staged form (data columns, then
/// `_simplyload_deleted`, `_simplyload_version`, …; see
/// [`crate::cdc::stage_changes`]), or a truncate of its table.
#[derive(Debug)]
pub enum ChangeEvent {
    Rows { stream: String, batch: RecordBatch },
    Truncate { stream: String, version: i128 },
}

/// What a finished change read saw.
#[derive(Debug, Clone, Default)]
pub struct ChangesRead {
    /// Confirm this position once every change read is committed in the
    /// destination; `None`: nothing new.
    pub confirm: Option<FeedPosition>,
    pub changes: u64,
    pub source_bytes: u64,
    /// Per stream.
    pub unrepresentable: Vec<(String, Unrepresentable)>,
    /// The read stopped early at a schema change the next round must plan.
    pub schema_changed: bool,
    /// The read stopped at `max_changes`; more is waiting.
    pub more: bool,
    /// What the source held for the feed when the read started.
    pub lag_bytes: Option<u64>,
    /// Things the user should know (a feed holding more than `max_lag_bytes`, …).
    pub warnings: Vec<String>,
    /// Changes the feed carried but no stream could take, counted by reason
    /// (`invoice.upcoming: its invoice has no id`): reported, never failing.
    pub skipped: std::collections::BTreeMap<String, u64>,
}

/// A feed as the source shows it, for `status` and `check`.
#[derive(Debug, Clone)]
pub struct FeedStatus {
    /// The feed's name on the source.
    pub name: String,
    /// The position confirmed, if any.
    pub confirmed: Option<FeedPosition>,
    /// What the source keeps for the feed beyond the confirmed position.
    pub lag_bytes: Option<u64>,
    /// All the source keeps for the feed (Postgres: the WAL from the
    /// slot's restart point), which a feed nobody reads makes grow.
    pub retained_bytes: Option<u64>,
    /// The source dropped what the feed held: changes were lost.
    pub lost: bool,
}

/// A source's change feed.
///
/// Contract:
/// * `feed_name` is a pure function of the owner: the same owner always
///   gets the same name, two owners never do (for [`FeedOwner::Pipeline`]),
///   and the name is valid on the source.
/// * `prepare` never takes over a feed it did not make: the runner calls it
///   only for a name its state has recorded. It makes the feed (and the
///   source objects it needs) when missing; an existing feed is left as it
///   is, except a lost one when `remake_lost`. Making a feed and taking its
///   start happen at one instant of the source.
/// * `read` sends only changes committed after the feed's confirmed
///   position, each exactly once per read, in commit order per stream,
///   stopping at a transaction boundary; reading again without a `confirm`
///   in between sends the same changes again. It confirms nothing itself.
///   If the receiver is dropped it stops with an error.
/// * `confirm` is called only after every change up to the position is
///   committed in the destination and recorded in the state; the source
///   may then forget them. Confirming a position at or behind the confirmed
///   one changes nothing.
/// * Calls for one feed never overlap: the runner holds the pipeline's
///   lock around a sync.
#[async_trait::async_trait]
pub trait ChangeFeed: Send + Sync {
    /// The name of an owner's feed on the source (Postgres: the replication
    /// slot and publication name).
    fn feed_name(&self, owner: FeedOwner<'_>) -> Result<String>;

    /// Whether the source and role allow this feed for `streams`; each
    /// failed item says how to fix it.
    async fn check(&self, feed: &str, streams: &[StreamName]) -> Result<CheckReport>;

    /// The feed, if it exists.
    async fn status(&self, feed: &str) -> Result<Option<FeedStatus>>;

    /// The streams of `tables` this feed cannot carry, each with its own
    /// error naming the fix (Postgres: a table without a primary key or
    /// replica identity). The runner leaves them out of the round and fails
    /// them alone, so one bad table does not stop the others. The default:
    /// every stream is fit.
    async fn unfit(&self, _tables: &[crate::schema::TableSpec]) -> Result<Vec<(StreamName, crate::Error)>> {
        Ok(Vec::new())
    }

    async fn prepare(&self, request: PrepareFeed<'_>) -> Result<Prepared>;

    async fn read(&self, request: ChangesRequest, out: mpsc::Sender<ChangeEvent>) -> Result<ChangesRead>;

    async fn confirm(&self, feed: &str, position: &FeedPosition) -> Result<()>;

    /// What a feed is on this source, for people (`replication slot`).
    fn what(&self) -> &'static str;

    /// A position as people read it (`LSN 16/B374D848`).
    fn describe(&self, position: &FeedPosition) -> String {
        position.token.clone()
    }

    /// How an operator removes the feed by hand (the SQL to run).
    fn removal_hint(&self, feed: &str) -> String;

    /// Removes the feed and the source objects made for it, so the source
    /// keeps nothing more for it. Returns whether anything was there.
    /// The caller holds the pipeline's lock: nothing reads the feed.
    async fn remove(&self, feed: &str) -> Result<bool>;
}
