//! `cdc` streams (DESIGN.md §3, §6), driven through the source's
//! [`ChangeFeed`].
//!
//! 1. The pipeline's feed is opened ([`open_feed`]): its name is the one the
//!    state recorded, or a new one made for this state's pipeline id and
//!    recorded before first use — a state never takes over a feed it did
//!    not make. A feed found confirmed past the position this state last
//!    confirmed was read by someone else: its changes are lost to us.
//! 2. Streams without a `cdc` checkpoint start: each is snapshot at the
//!    start of the feed when it was just made, else of a short-lived
//!    joining feed, every row at the start's version, and loaded (a first
//!    snapshot in parts that go on after a crash; a stream read again as a
//!    merge of every live row).
//! 3. Every change since the feed's confirmed position is read into one
//!    batch per stream, and each batch is loaded (merged by key and version).
//! 4. Only after every load committed is the position recorded in the state
//!    and then confirmed to the source. A crash anywhere replays from the
//!    last confirmed position, and versions make the replay harmless.

use super::context::Run;
use super::load::load_with_retries;
use super::resume::ResumableSnapshot;
use super::retry::retrying;
use super::snapshot::{ReadDone, ReadPlan, read_and_load};
use super::stage::FeedSnapshot;
use crate::batch::{BatchManifest, LoadKind, StagedFile};
use crate::checkpoint::{FeedRecord, StreamState};
use crate::error::{Error, ErrorKind, Result};
use crate::failpoint::failpoint;
use crate::feed::{
    ChangeEvent, ChangeFeed, ChangesRead, ChangesRequest, FeedOwner, FeedPosition, FeedStart, PrepareFeed, Prepared,
};
use crate::plan::StreamPlan;
use crate::position::{FeedCheckpoint, FeedFirstRead, Position};
use crate::report::Unrepresentable;
use crate::schema::TableSpec;
use crate::staging::BatchWriter;
use std::collections::{BTreeMap, BTreeSet};
use tokio::sync::mpsc;

/// What one `cdc` stream did in a round.
#[derive(Default)]
pub(crate) struct FeedStreamDone {
    pub rows: u64,
    pub staged_bytes: u64,
    /// Bytes read from the source by a snapshot (changes are not counted).
    pub source_bytes: u64,
    pub batch_id: Option<u64>,
    /// Read from a snapshot at a feed's start.
    pub snapshot: bool,
    pub unrepresentable: Vec<Unrepresentable>,
}

/// What a round of the `cdc` streams did.
#[derive(Default)]
pub(crate) struct Round {
    pub done: BTreeMap<String, FeedStreamDone>,
    /// Stopped early (schema change, `batch_max_rows`): run another round.
    pub again: bool,
    pub warnings: Vec<String>,
    /// Changes no stream could take, by reason ([`ChangesRead::skipped`]).
    pub skipped: BTreeMap<String, u64>,
}

/// The `cdc` streams of one round: `plans` already evolved; `reread` are
/// streams whose schema change means reading them again.
pub(crate) struct FeedStreams<'a> {
    pub plans: &'a [(String, StreamPlan)],
    pub reread: &'a BTreeSet<String>,
}

impl FeedStreams<'_> {
    fn tables(&self) -> Vec<TableSpec> {
        self.plans.iter().map(|(_, p)| p.table.clone()).collect()
    }

    fn plan(&self, label: &str) -> Option<&StreamPlan> {
        self.plans.iter().find(|(l, _)| l == label).map(|(_, p)| p)
    }
}

fn change_feed(run: Run<'_>) -> Result<&dyn ChangeFeed> {
    run.ctx.source.change_feed().ok_or_else(|| {
        Error::new(ErrorKind::Unsupported, format!("source `{}` has no change feed", run.ctx.config.source))
            .with_hint("use `mode: incremental` or `mode: full_refresh` for its streams")
    })
}

/// Takes out of `plans` the streams the feed cannot carry (see
/// [`ChangeFeed::unfit`]) and returns them with their errors.
pub(crate) async fn set_aside_unfit(
    run: Run<'_>,
    plans: &mut Vec<(String, StreamPlan)>,
) -> Result<Vec<(String, StreamPlan, Error)>> {
    let feed = change_feed(run)?;
    let tables: Vec<TableSpec> = plans.iter().map(|(_, p)| p.table.clone()).collect();
    let unfit = feed.unfit(&tables).await?;
    let mut out = Vec::new();
    for (name, e) in unfit {
        if let Some(i) = plans.iter().position(|(_, p)| p.table.stream == name) {
            let (label, plan) = plans.remove(i);
            out.push((label, plan, e));
        }
    }
    Ok(out)
}

/// Runs one round of the `cdc` streams.
pub(crate) async fn run_round(run: Run<'_>, streams: FeedStreams<'_>, round: &mut Round) -> Result<()> {
    if streams.plans.is_empty() {
        return Ok(());
    }
    let feed = change_feed(run)?;
    let states = run.ctx.store.streams(run.pipeline()).await?;
    let position = |label: &str| -> Option<Position> {
        states.iter().find(|s: &&StreamState| s.stream == label).and_then(|s| s.checkpoint.as_ref())?.position.clone()
    };
    let started = |label: &str| matches!(position(label), Some(Position::Cdc(_)));
    let tables = streams.tables();
    let any_started = streams.plans.iter().any(|(l, _)| started(l));
    let mut open = open_feed(run, feed, &states, &tables, any_started, &mut round.warnings).await?;
    let joining: Vec<&(String, StreamPlan)> = if open.start.is_some() {
        streams.plans.iter().collect()
    } else {
        streams.plans.iter().filter(|(l, _)| !started(l) || streams.reread.contains(l)).collect()
    };
    if !joining.is_empty() {
        // The pipeline's own feed when it was just made; otherwise a
        // short-lived one whose start the joining streams are read at.
        let start = match open.start.take() {
            Some(s) => s,
            None => joining_start(feed, &open.name, &tables).await?,
        };
        let snapshots =
            Snapshots { streams: &streams, position: &position, started: &started, confirmed: &open.confirmed };
        let result = snapshot_joining(run, &snapshots, &joining, start.as_ref(), round).await;
        // The start is needed only while reading.
        start.release().await?;
        result?;
    }
    apply_changes(run, feed, &open.name, &streams, round).await
}

/// The pipeline's feed, opened for a round.
struct OpenFeed {
    name: String,
    /// Made now: every stream is read at its start.
    start: Option<Box<dyn FeedStart>>,
    /// Where the feed stood, when it existed.
    confirmed: Option<FeedPosition>,
}

/// The name a pipeline's feed gets when its state has recorded none: a
/// state whose streams already stand on a feed position began before feeds
/// were named for their state, and goes on with the feed it used while that
/// feed exists; otherwise the feed is named for this state's pipeline id.
pub async fn unrecorded_feed_name(
    feed: &dyn ChangeFeed,
    pipeline: &str,
    pipeline_id: uuid::Uuid,
    states: &[StreamState],
) -> Result<(String, FeedOwnerKind)> {
    let started = states
        .iter()
        .any(|s| s.checkpoint.as_ref().and_then(|c| c.position.as_ref()).is_some_and(|p| p.feed().is_some()));
    if started {
        let name = feed.feed_name(FeedOwner::Legacy { pipeline })?;
        if feed.status(&name).await?.is_some() {
            return Ok((name, FeedOwnerKind::Legacy));
        }
    }
    Ok((feed.feed_name(FeedOwner::Pipeline { pipeline, pipeline_id })?, FeedOwnerKind::Pipeline))
}

/// The name of the feed a pipeline's state made or uses, if any: the one
/// it recorded, or a feed from before names were recorded that its streams
/// stand on and that still exists.
pub async fn existing_feed_name(
    feed: &dyn ChangeFeed,
    store: &dyn crate::checkpoint::CheckpointStore,
    pipeline: &str,
) -> Result<Option<String>> {
    if let Some(record) = store.feed(pipeline).await? {
        return Ok(Some(record.name));
    }
    let states = store.streams(pipeline).await?;
    let id = store.pipeline_id(pipeline).await?;
    Ok(match unrecorded_feed_name(feed, pipeline, id, &states).await? {
        (name, FeedOwnerKind::Legacy) => Some(name),
        (_, FeedOwnerKind::Pipeline) => None,
    })
}

/// Whose name [`unrecorded_feed_name`] gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedOwnerKind {
    /// The name used before feeds carried their state's identity (its feed exists).
    Legacy,
    /// Named for this state's pipeline id.
    Pipeline,
}

/// Opens the pipeline's feed: the one the state recorded, or a new one.
async fn open_feed(
    run: Run<'_>,
    feed: &dyn ChangeFeed,
    states: &[StreamState],
    tables: &[TableSpec],
    any_started: bool,
    warnings: &mut Vec<String>,
) -> Result<OpenFeed> {
    let record = run.ctx.store.feed(run.pipeline()).await?;
    let name = match &record {
        Some(r) => r.name.clone(),
        None => claim_feed(run, feed, states).await?,
    };
    let recorded = record.and_then(|r| r.confirmed);
    match prepare(run, feed, &name, tables, recorded.as_ref()).await? {
        Prepared::Created { start, .. } => {
            if any_started {
                lost_feed_warning(run, feed, &name, warnings);
            }
            Ok(OpenFeed { name, start: Some(start), confirmed: None })
        }
        Prepared::Existing { confirmed } => match (&recorded, &confirmed) {
            (Some(ours), Some(now)) if now.version > ours.version => {
                read_by_another(run, feed, &name, ours, now, tables, warnings).await
            }
            _ => Ok(OpenFeed { name, start: None, confirmed }),
        },
    }
}

/// Makes the feed if missing and records where a new one starts.
async fn prepare(
    run: Run<'_>,
    feed: &dyn ChangeFeed,
    name: &str,
    tables: &[TableSpec],
    recorded: Option<&FeedPosition>,
) -> Result<Prepared> {
    let remake_lost = run.ctx.config.on_slot_lost == simplyload_config::OnSlotLost::Resnapshot;
    let prepared = feed.prepare(PrepareFeed { feed: name, tables, joining: false, remake_lost, recorded }).await?;
    if let Prepared::Created { start, .. } = &prepared {
        let record = FeedRecord { name: name.to_owned(), confirmed: Some(start.position()) };
        run.ctx.store.record_feed(run.pipeline(), &record).await?;
    }
    Ok(prepared)
}

/// The name of a pipeline's first feed ([`unrecorded_feed_name`]),
/// recorded in the state before the feed is made. An existing feed named for
/// this state that the state has no record of is refused, never taken over.
async fn claim_feed(run: Run<'_>, feed: &dyn ChangeFeed, states: &[StreamState]) -> Result<String> {
    let pipeline = run.pipeline();
    let (name, owner) = unrecorded_feed_name(feed, pipeline, run.pipeline_id, states).await?;
    if owner == FeedOwnerKind::Pipeline && feed.status(&name).await?.is_some() {
        return Err(Error::config(format!(
            "pipeline {pipeline}: {} {name} already exists on source `{}`, and this state has never used it",
            feed.what(),
            run.ctx.config.source
        ))
        .with_hint(format!(
            "another SimplyLoad setup with a copy of this state file made it; this one will not take it over. \
             If nothing uses it any more, remove it ({}) and sync again",
            feed.removal_hint(&name)
        )));
    }
    record_name(run, name).await
}

async fn record_name(run: Run<'_>, name: String) -> Result<String> {
    run.ctx.store.record_feed(run.pipeline(), &FeedRecord { name: name.clone(), confirmed: None }).await?;
    tracing::info!(pipeline = %run.pipeline(), feed = %name, "the pipeline's change feed is recorded in its state");
    Ok(name)
}

fn lost_feed_warning(run: Run<'_>, feed: &dyn ChangeFeed, name: &str, warnings: &mut Vec<String>) {
    let w = format!(
        "the {} of pipeline {} ({name}) was lost (dropped, invalidated, or older than the changes the source \
         keeps) and has been made again; every stream was read again from a snapshot, and rows the source no \
         longer has are marked deleted",
        feed.what(),
        run.pipeline()
    );
    tracing::warn!("{w}");
    warnings.push(w);
}

/// The feed was confirmed past what this state confirmed: another consumer
/// read it (two setups sharing a feed named before feeds carried their
/// state's identity). This state moves to a feed of its own and reads
/// every stream again; a feed already named for this state is refused.
async fn read_by_another(
    run: Run<'_>,
    feed: &dyn ChangeFeed,
    name: &str,
    ours: &FeedPosition,
    now: &FeedPosition,
    tables: &[TableSpec],
    warnings: &mut Vec<String>,
) -> Result<OpenFeed> {
    let pipeline = run.pipeline();
    let what = feed.what();
    let own = feed.feed_name(FeedOwner::Pipeline { pipeline, pipeline_id: run.pipeline_id })?;
    let consumed = format!(
        "pipeline {pipeline}: {what} {name} was confirmed at {} by someone else (this state confirmed {} last), \
         so changes it had not loaded were consumed",
        feed.describe(now),
        feed.describe(ours)
    );
    if own == name {
        return Err(Error::config(consumed).with_hint(format!(
            "two setups share this state's identity (a copied state file?); give each its own state, \
             then remove the {what} ({}) and sync again: every stream is read again",
            feed.removal_hint(name)
        )));
    }
    let w = format!("{consumed}; this pipeline now has a {what} of its own ({own}) and every stream was read again");
    tracing::warn!("{w}");
    warnings.push(w);
    run.ctx.store.record_feed(pipeline, &FeedRecord { name: own.clone(), confirmed: None }).await?;
    match prepare(run, feed, &own, tables, None).await? {
        Prepared::Created { start, .. } => Ok(OpenFeed { name: own, start: Some(start), confirmed: None }),
        Prepared::Existing { .. } => Err(Error::internal(format!("{what} {own} existed before this state made it"))),
    }
}

/// A short-lived feed for streams joining a running pipeline.
async fn joining_start(feed: &dyn ChangeFeed, name: &str, tables: &[TableSpec]) -> Result<Box<dyn FeedStart>> {
    match feed.prepare(PrepareFeed { feed: name, tables, joining: true, remake_lost: false, recorded: None }).await? {
        Prepared::Created { start, .. } => Ok(start),
        Prepared::Existing { .. } => Err(Error::internal("the source made no feed for the joining streams")),
    }
}

/// What the joining streams' snapshots need to know.
struct Snapshots<'a> {
    streams: &'a FeedStreams<'a>,
    position: &'a dyn Fn(&str) -> Option<Position>,
    started: &'a dyn Fn(&str) -> bool,
    /// Where the pipeline's feed stood (`None`: it was just made).
    confirmed: &'a Option<FeedPosition>,
}

impl Snapshots<'_> {
    /// A stream's first snapshot stopped part way goes on (see
    /// [`ResumableSnapshot`]) when its changes are all still in the feed:
    /// the feed is the same one and not confirmed past the snapshot's
    /// start, and the table's shape gave no rows new values meanwhile.
    fn first_snapshot(&self, label: &str, start: &FeedPosition) -> ResumableSnapshot {
        let same_shape = !self.streams.reread.contains(label);
        let confirmed = self.confirmed.as_ref();
        ResumableSnapshot::from_checkpoint(
            (self.position)(label).as_ref(),
            |p| {
                matches!(p, Position::CdcSnapshot(f)
                    if same_shape && confirmed.is_some_and(|c| c.version <= f.feed.version))
            },
            Position::CdcSnapshot(FeedFirstRead { feed: start.clone(), source: None }),
        )
    }
}

/// Reads and loads each joining stream at `start`, as many at once as the
/// source allows ([`crate::Source::read_concurrency`]; loads still run one
/// at a time). Every stream goes to its end; the first error is returned.
async fn snapshot_joining(
    run: Run<'_>,
    snapshots: &Snapshots<'_>,
    joining: &[&(String, StreamPlan)],
    start: &dyn FeedStart,
    round: &mut Round,
) -> Result<()> {
    use futures::StreamExt;
    let at = start.position();
    let feed_snapshot = FeedSnapshot { token: start.snapshot(), version: at.version };
    let at_once = run.ctx.source.read_concurrency().max(1);
    let reads = joining.iter().map(|(label, plan)| {
        let one = JoiningRead { label, plan, at: &at, feed_snapshot: &feed_snapshot };
        async move { (label, snapshot_one(run, snapshots, one).await) }
    });
    let done: Vec<(&String, Result<ReadDone>)> = futures::stream::iter(reads).buffered(at_once).collect().await;
    let mut first_error = None;
    for (label, result) in done {
        match result {
            Ok(d) => note_snapshot(round.done.entry(label.clone()).or_default(), d),
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// One joining stream's read.
struct JoiningRead<'a> {
    label: &'a str,
    plan: &'a StreamPlan,
    at: &'a FeedPosition,
    feed_snapshot: &'a FeedSnapshot,
}

async fn snapshot_one(run: Run<'_>, snapshots: &Snapshots<'_>, one: JoiningRead<'_>) -> Result<ReadDone> {
    let JoiningRead { label, plan, at, feed_snapshot } = one;
    run.check_cancelled()?;
    run.ctx.progress.stream_started(label, &plan.table.name, plan.estimated_rows);
    let started = (snapshots.started)(label);
    // A stream's first snapshot (with a key) loads in parts, each
    // checkpointing where the read stands.
    let resumable = (!started && plan.table.has_key()).then(|| snapshots.first_snapshot(label, at));
    if let Some(r) = resumable.as_ref().filter(|r| r.going_on) {
        tracing::info!(pipeline = %run.pipeline(), stream = %label, resumes = r.from.is_some(),
            "the stream's first snapshot stopped part way; going on from its loaded parts");
    }
    // The changes replay from the first attempt's start.
    let replay_from = resumable.as_ref().and_then(|r| r.position.feed().cloned()).unwrap_or_else(|| at.clone());
    let read = ReadPlan {
        stream: label,
        plan,
        incremental: None,
        merge_full_read: false,
        overlap: None,
        split: resumable.is_some(),
        resumable,
        feed_snapshot: Some(feed_snapshot.clone()),
        end_position: Some(Position::Cdc(FeedCheckpoint { feed: replay_from })),
        // A stream read again (lost feed, schema change) merges the
        // snapshot and marks the keys it lacks deleted: rows are never
        // removed under `mode: cdc`. A table without a key is replaced.
        complete: started && plan.table.has_key(),
    };
    read_and_load(run, read).await
}

fn note_snapshot(d: &mut FeedStreamDone, done: ReadDone) {
    d.unrepresentable.extend(done.stats.unrepresentable);
    d.rows += done.loaded.rows;
    d.staged_bytes += done.loaded.staged_bytes;
    d.source_bytes += done.stats.source_bytes;
    d.batch_id = Some(done.manifest.batch_id);
    d.snapshot = true;
}

/// Reads the changes since the feed's confirmed position, loads them, then
/// records and confirms the position.
async fn apply_changes(
    run: Run<'_>,
    feed: &dyn ChangeFeed,
    name: &str,
    streams: &FeedStreams<'_>,
    round: &mut Round,
) -> Result<()> {
    let (read, manifests) = retrying(run, "changes", "reading changes", |_| stage_changes(run, name, streams)).await?;
    round.again = read.schema_changed || read.more;
    for (stream, u) in &read.unrepresentable {
        round.done.entry(stream.clone()).or_default().unrepresentable.push(u.clone());
    }
    round.warnings.extend(read.warnings.iter().cloned());
    for (reason, n) in &read.skipped {
        *round.skipped.entry(reason.clone()).or_default() += n;
    }
    let Some(confirm) = read.confirm else { return Ok(()) };
    failpoint("after_staged");
    for m in &manifests {
        run.ctx.progress.stream_phase(&m.stream, "loading");
        load_with_retries(run, std::slice::from_ref(m), false).await?;
        let d = round.done.entry(m.stream.clone()).or_default();
        d.rows += m.row_count;
        d.staged_bytes += m.byte_count();
        d.batch_id = Some(m.batch_id);
    }
    let record = FeedRecord { name: name.to_owned(), confirmed: Some(confirm.clone()) };
    run.ctx.store.record_feed(run.pipeline(), &record).await?;
    feed.confirm(name, &confirm).await?;
    tracing::info!(pipeline = %run.pipeline(), changes = read.changes, confirmed = %feed.describe(&confirm),
        "changes loaded and confirmed");
    Ok(())
}

/// A batch of one stream's changes being written.
struct OpenBatch {
    batch_id: u64,
    writer: Option<Box<dyn BatchWriter>>,
    rows: u64,
    truncated_at: Option<i128>,
}

/// Reads the changes into one staged batch per stream and records them;
/// on failure the batches are abandoned and their files removed.
async fn stage_changes(
    run: Run<'_>,
    name: &str,
    streams: &FeedStreams<'_>,
) -> Result<(ChangesRead, Vec<BatchManifest>)> {
    let ctx = run.ctx;
    let from = ctx.store.feed(run.pipeline()).await?.and_then(|r| r.confirmed);
    let request = ChangesRequest {
        feed: name.to_owned(),
        from,
        tables: streams.tables(),
        limits: ctx.destination.limits(),
        on_unrepresentable: ctx.config.on_unrepresentable,
        batch_rows: ctx.options.batch_rows,
        max_changes: ctx.config.batch_max_rows.unwrap_or(simplyload_config::DEFAULT_BATCH_MAX_ROWS).max(1),
        max_lag_bytes: ctx.config.max_lag_bytes.unwrap_or(simplyload_config::DEFAULT_MAX_LAG_BYTES),
    };
    let (tx, rx) = mpsc::channel::<ChangeEvent>(ctx.options.channel_depth.max(1));
    let source = ctx.source.clone();
    let reader = tokio::spawn(async move {
        match source.change_feed() {
            Some(feed) => feed.read(request, tx).await,
            None => Err(Error::internal("the source's change feed went away")),
        }
    });
    let mut open: BTreeMap<String, OpenBatch> = BTreeMap::new();
    let received = receive_changes(run, streams, rx, &mut open).await;
    let read = reader.await.map_err(|e| Error::internal(format!("the change reader failed: {e}")))?;
    let read = match received.and(read) {
        Ok(read) if read.confirm.is_some() => read,
        outcome => {
            abandon(run, &open).await?;
            return outcome.map(|read| (read, Vec::new())).map_err(|e| e.context("reading changes"));
        }
    };
    let confirm = read.confirm.clone().expect("checked above");
    let manifests = record_batches(run, streams, open, confirm).await?;
    Ok((read, manifests))
}

async fn abandon(run: Run<'_>, open: &BTreeMap<String, OpenBatch>) -> Result<()> {
    let ctx = run.ctx;
    for (stream, o) in open {
        let _ = ctx.staging.remove_batch(&ctx.pipeline, stream, o.batch_id).await;
        ctx.store.abandon_batch(&ctx.pipeline, stream, o.batch_id).await?;
    }
    Ok(())
}

/// Stages every change event into its stream's batch until the reader is
/// done, a write fails, or the sync is cancelled.
async fn receive_changes(
    run: Run<'_>,
    streams: &FeedStreams<'_>,
    mut rx: mpsc::Receiver<ChangeEvent>,
    open: &mut BTreeMap<String, OpenBatch>,
) -> Result<()> {
    let ctx = run.ctx;
    loop {
        let event = tokio::select! {
            e = rx.recv() => e,
            _ = ctx.cancel.cancelled() => return Err(Error::cancelled()),
        };
        let Some(event) = event else { return Ok(()) };
        let stream = match &event {
            ChangeEvent::Rows { stream, .. } | ChangeEvent::Truncate { stream, .. } => stream.clone(),
        };
        let Some(plan) = streams.plan(&stream) else { continue };
        if !open.contains_key(&stream) {
            let batch_id = ctx.store.allocate_batch(&ctx.pipeline, &stream, run.sync_id).await?;
            open.insert(stream.clone(), OpenBatch { batch_id, writer: None, rows: 0, truncated_at: None });
        }
        let o = open.get_mut(&stream).expect("just inserted");
        match event {
            ChangeEvent::Truncate { version, .. } => {
                o.truncated_at = Some(o.truncated_at.map_or(version, |t| t.max(version)));
            }
            ChangeEvent::Rows { batch, .. } => {
                if o.writer.is_none() {
                    o.writer =
                        Some(ctx.staging.writer(&ctx.pipeline, &stream, o.batch_id, plan.table.staged_schema()).await?);
                }
                o.rows += batch.num_rows() as u64;
                ctx.progress.stream_advanced(&stream, o.rows, 0);
                o.writer.as_mut().expect("opened above").write(batch).await?;
                failpoint("during_read");
            }
        }
    }
}

/// Finishes every stream's batch and records its manifest (`staged`).
async fn record_batches(
    run: Run<'_>,
    streams: &FeedStreams<'_>,
    open: BTreeMap<String, OpenBatch>,
    confirm: FeedPosition,
) -> Result<Vec<BatchManifest>> {
    let mut manifests = Vec::new();
    for (stream, o) in open {
        let plan = streams.plan(&stream).expect("only planned streams are opened");
        let files: Vec<StagedFile> = match o.writer {
            Some(w) => w.finish().await?,
            None => Vec::new(),
        };
        let manifest = BatchManifest {
            pipeline: run.pipeline().to_owned(),
            stream: stream.clone(),
            batch_id: o.batch_id,
            sync_id: run.sync_id,
            kind: LoadKind::Merge,
            table: plan.table.clone(),
            row_count: files.iter().map(|f| f.row_count).sum(),
            files,
            start_position: None,
            end_position: Some(Position::Cdc(FeedCheckpoint { feed: confirm.clone() })),
            truncated_at: o.truncated_at.map(|t| t.to_string()),
            complete: false,
        };
        if manifest.row_count != o.rows {
            return Err(Error::internal(format!(
                "staging {stream}: {} changes read but {} rows in the staged files",
                o.rows, manifest.row_count
            )));
        }
        run.ctx.store.record_staged(&manifest).await?;
        manifests.push(manifest);
    }
    Ok(manifests)
}
