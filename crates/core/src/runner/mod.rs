//! The sync runner: extract → stage → load → commit checkpoint (DESIGN.md §3).
//!
//! Why this order survives a crash at any instant:
//! * A batch id is taken (`staging`) before any file is written, so an
//!   interrupted read leaves files no manifest names; the next run abandons
//!   that id and removes its files. Ids are never reused.
//! * The manifest is recorded (`staged`) only after every file is durable.
//! * The destination load and the `_simplyload_batches` row commit in one
//!   destination transaction, so the destination itself knows whether a
//!   batch is in.
//! * Only then is the batch marked `loaded` in the checkpoint store (and a
//!   change feed's position confirmed to the source). If the process dies
//!   between the destination commit and that write, the next run asks the
//!   destination, finds the batch, and marks it loaded without applying it
//!   twice.
//!
//! The modules, each one reason to change, depend on each other one way:
//! `context` ← `retry` ← `load` ← `parts` ← `stage` ← `snapshot` ←
//! `table` / `changes` ← `recover` ← this one, which plans the pipeline,
//! reads again in full the streams the destination lost ([`lost`], which
//! needs only `context`), runs its streams, and removes a change feed no
//! stream uses any more ([`retire`]): `full_refresh` and `incremental` streams one after the
//! other ([`table`]), then the `cdc` streams together through the source's
//! change feed ([`changes`]), in rounds while a round stops early (a schema
//! change to plan, `batch_max_rows` reached).

mod changes;
mod context;
mod dry_run;
mod incremental;
mod load;
mod lost;
mod parts;
mod recover;
mod resume;
mod retire;
mod retry;
mod select;
mod snapshot;
mod stage;
mod table;

pub use changes::{FeedOwnerKind, existing_feed_name, unrecorded_feed_name};
pub use context::{
    CancellationToken, DEFAULT_PARALLEL_MIN_BYTES, DEFAULT_PART_ROWS, SyncContext, SyncOptions,
    default_snapshot_parallelism,
};
pub use dry_run::{PlannedStream, dry_run};
pub use incremental::{OVERLAP_MAX_ROWS, Overlap, checkpoint_cursor, checkpoint_overlap};
pub use parts::PartSink;
pub use resume::ResumableSnapshot;
pub use retire::uses_change_feed;
pub use stage::{
    FeedSnapshot, MAX_ROWS_PER_BATCH, SnapshotJob, Versions, stage_columns, stage_columns_at, stage_snapshot,
};

use crate::catalog::Catalog;
use crate::error::{Error, ErrorKind, Result};
use crate::plan::{self, StreamPlan};
use crate::report::{StreamReport, SyncReport};
use changes::{FeedStreamDone, FeedStreams, Round};
use context::Run;
use simplyload_config::SyncMode;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;
use table::StreamDone;

/// Runs one sync. Returns `Err` only when the checkpoint store cannot record
/// the sync at all; every other failure is in the report (per stream, or as
/// the sync's error), and [`SyncReport::succeeded`] tells whether it worked.
pub async fn run_sync(ctx: &SyncContext) -> Result<SyncReport> {
    let started = Instant::now();
    let pipeline_id = ctx.store.pipeline_id(&ctx.pipeline).await?;
    let sync_id = ctx.store.begin_sync(&ctx.pipeline).await?;
    let loads = tokio::sync::Mutex::new(());
    let run = Run { ctx, pipeline_id, sync_id, loads: &loads };
    let mut report = SyncReport::new(&ctx.pipeline, sync_id);
    tracing::info!(pipeline = %ctx.pipeline, sync_id, "sync started");
    ctx.destination.begin_sync(&ctx.pipeline, sync_id);
    let outcome = run_streams(run, &mut report).await;
    report.statements = ctx.destination.end_sync().await;
    if outcome.is_ok() {
        retire::retire_unused_feed(run, &mut report).await;
    }
    if let Err(e) = outcome {
        match e.kind() {
            ErrorKind::Cancelled => tracing::warn!(pipeline = %ctx.pipeline, sync_id, "sync stopped: {e}"),
            _ => tracing::error!(pipeline = %ctx.pipeline, sync_id, error = %e, "sync failed"),
        }
        report.set_error(&e);
    }
    add_changes(run, &mut report).await;
    report.duration_ms = started.elapsed().as_millis() as u64;
    report.finished_at = crate::report::utc_now();
    ctx.store.finish_sync(&report).await?;
    tracing::info!(pipeline = %ctx.pipeline, sync_id, rows = report.rows(), duration_ms = report.duration_ms,
        succeeded = report.succeeded(), "sync finished");
    Ok(report)
}

/// What each stream's loads of this sync did to its table, as the store
/// added them up ([`crate::checkpoint::CheckpointStore::mark_loaded`]).
async fn add_changes(run: Run<'_>, report: &mut SyncReport) {
    let Ok(states) = run.ctx.store.streams(run.pipeline()).await else { return };
    for s in &mut report.streams {
        let state = states.iter().find(|st| st.stream == s.stream && st.last_sync_id == Some(run.sync_id));
        s.changes = state.and_then(|st| st.last_changes);
    }
}

async fn run_streams(run: Run<'_>, report: &mut SyncReport) -> Result<()> {
    let catalog = discover(run).await?;
    let planned = select::plan_streams(run, &catalog).await?;
    // Before settling unfinished batches: those of a lost stream are dropped.
    let mut lost = lost::reread_lost(run, &planned).await?;
    let mut recovered = recover::recover(run).await?;
    let mut cdc = Vec::new();
    for (label, planned) in planned {
        if let Ok(plan) = &planned
            && plan.mode == SyncMode::Cdc
        {
            cdc.push((label, plan.clone()));
            continue;
        }
        run.check_cancelled()?;
        let recovered_batches = recovered.remove(&label).unwrap_or_default();
        let mut r = table_stream(run, &label, planned, recovered_batches).await;
        r.reread = lost.remove(&label);
        let cancelled = r.error_kind == Some(ErrorKind::Cancelled);
        report.streams.push(r);
        if cancelled {
            return Err(Error::cancelled());
        }
    }
    let mut rounds = 0;
    while !cdc.is_empty() {
        run.check_cancelled()?;
        let settled = Settled { recovered: &mut recovered, lost: &mut lost };
        if !feed_round(run, cdc, settled, report).await {
            break;
        }
        // A read that stopped early goes on with a new plan.
        rounds += 1;
        if rounds >= 1000 {
            break;
        }
        let catalog = discover(run).await?;
        cdc = select::plan_streams(run, &catalog)
            .await?
            .into_iter()
            .filter_map(|(label, p)| p.ok().filter(|p| p.mode == SyncMode::Cdc).map(|p| (label, p)))
            .collect();
    }
    Ok(())
}

/// The catalog of the streams the pipeline selects.
async fn discover(run: Run<'_>) -> Result<Catalog> {
    let source = run.ctx.source.as_ref();
    plan::discover(source, &plan::selection(&run.ctx.config, source.default_namespace()))
        .await
        .map_err(|e| e.context(format!("source `{}`", run.ctx.config.source)))
}

/// Syncs one `full_refresh` or `incremental` stream and reports it.
async fn table_stream(
    run: Run<'_>,
    label: &str,
    planned: Result<StreamPlan>,
    recovered_batches: Vec<u64>,
) -> StreamReport {
    let started = Instant::now();
    let result = match planned {
        Ok(plan) => {
            run.ctx.progress.stream_started(label, &plan.table.name, plan.estimated_rows);
            table::run_table_stream(run, &plan).await.map(|done| (plan, done))
        }
        Err(e) => Err(e),
    };
    let mut r = StreamReport::new(label);
    r.recovered_batches = recovered_batches;
    match result {
        Ok((plan, done)) => fill_table_report(&mut r, &plan, done),
        Err(e) => stream_failed(run, &mut r, &e).await,
    }
    r.duration_ms = started.elapsed().as_millis() as u64;
    run.ctx.progress.stream_finished(&r);
    r
}

/// What every succeeded stream's report says of its plan.
fn succeeded(r: &mut StreamReport, plan: &StreamPlan) {
    r.table = plan.table.name.clone();
    r.mode = plan.mode.to_string();
    r.status = "succeeded".into();
    r.renames = plan.renames.clone();
}

fn fill_table_report(r: &mut StreamReport, plan: &StreamPlan, done: StreamDone) {
    succeeded(r, plan);
    r.rows = done.rows;
    r.source_bytes = done.source_bytes;
    r.staged_bytes = done.staged_bytes;
    r.batch_id = Some(done.batch_id);
    r.unrepresentable = done.unrepresentable;
    r.position = done.position.map(|p| serde_json::to_value(p.for_display()).expect("positions serialize"));
    r.schema_changes = done.schema_changes;
}

/// Marks a stream's report failed (or cancelled) and records the error in
/// its state, for `status`.
async fn stream_failed(run: Run<'_>, r: &mut StreamReport, e: &Error) {
    r.set_error(e);
    if e.kind() != ErrorKind::Cancelled {
        tracing::error!(pipeline = %run.pipeline(), stream = %r.stream, error = %e, "stream failed");
        let _ = run.ctx.store.record_stream_error(run.pipeline(), &r.stream, &e.to_string()).await;
    }
}

/// What the start of the sync found, per stream, for the first report of
/// each: batches settled after a crash, and why a stream is read again.
struct Settled<'a> {
    recovered: &'a mut BTreeMap<String, Vec<u64>>,
    lost: &'a mut BTreeMap<String, String>,
}

/// Runs one round of the `cdc` streams and adds to their reports. Returns
/// whether the round stopped early, so the caller plans again and goes on.
async fn feed_round(
    run: Run<'_>,
    mut plans: Vec<(String, StreamPlan)>,
    settled: Settled<'_>,
    report: &mut SyncReport,
) -> bool {
    let started = Instant::now();
    let mut round = Round::default();
    let mut changes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut unfit = Vec::new();
    let result = async {
        let reread = evolve_all(run, &mut plans, &mut changes).await?;
        unfit = changes::set_aside_unfit(run, &mut plans).await?;
        changes::run_round(run, FeedStreams { plans: &plans, reread: &reread }, &mut round).await
    }
    .await;
    // A stream the feed cannot carry fails alone, with its own error.
    for (label, plan, e) in unfit {
        let mut r = StreamReport::new(&label);
        (r.table, r.mode) = (plan.table.name.clone(), plan.mode.to_string());
        stream_failed(run, &mut r, &e).await;
        run.ctx.progress.stream_finished(&r);
        report.add_round(r);
    }
    report.warnings.append(&mut round.warnings);
    for (reason, n) in std::mem::take(&mut round.skipped) {
        *report.skipped_changes.entry(reason).or_default() += n;
    }
    for (label, plan) in &plans {
        let done = round.done.remove(label).unwrap_or_default();
        let mut r = StreamReport::new(label);
        r.recovered_batches = settled.recovered.remove(label).unwrap_or_default();
        r.reread = settled.lost.remove(label);
        fill_feed_report(&mut r, plan, done, changes.remove(label).unwrap_or_default());
        if let Err(e) = &result {
            stream_failed(run, &mut r, e).await;
        }
        r.duration_ms = started.elapsed().as_millis() as u64;
        run.ctx.progress.stream_finished(&r);
        report.add_round(r);
    }
    if let Err(e) = &result
        && e.kind() == ErrorKind::Cancelled
    {
        report.set_error(e);
    }
    round.again && result.is_ok()
}

/// Schema evolution of every `cdc` stream against what its table holds
/// now; returns the streams to read again (see [`plan::SchemaChange::needs_reread`]).
async fn evolve_all(
    run: Run<'_>,
    plans: &mut [(String, StreamPlan)],
    changes: &mut BTreeMap<String, Vec<String>>,
) -> Result<BTreeSet<String>> {
    let mut reread = BTreeSet::new();
    for (label, plan) in plans.iter_mut() {
        let (ch, _) = table::evolve_plan(run, plan).await?;
        if ch.iter().any(plan::SchemaChange::needs_reread) {
            reread.insert(label.clone());
        }
        changes.insert(label.clone(), ch.iter().map(|c| c.to_string()).collect());
    }
    Ok(reread)
}

fn fill_feed_report(r: &mut StreamReport, plan: &StreamPlan, done: FeedStreamDone, mut changes: Vec<String>) {
    if done.snapshot {
        changes.push("read from a snapshot at the change feed's start".into());
    }
    succeeded(r, plan);
    r.rows = done.rows;
    r.staged_bytes = done.staged_bytes;
    r.source_bytes = done.source_bytes;
    r.batch_id = done.batch_id;
    r.unrepresentable = done.unrepresentable;
    r.schema_changes = changes;
}
