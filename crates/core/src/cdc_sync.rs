//! The sync of a pipeline's `cdc` streams (DESIGN.md §3, §6).
//!
//! 1. Streams without a CDC checkpoint start: the source makes the slot (or,
//!    when the pipeline's slot already runs, a temporary one) and each such
//!    stream is snapshot inside the slot's exported snapshot, every row at
//!    the consistent point's version, and loaded as a full refresh.
//! 2. Every change committed since the slot's confirmed point is read, up to
//!    the source's current end, into one batch per stream (truncates
//!    recorded on the batch), and each batch is loaded (merged by key and
//!    version).
//! 3. Only after every load committed is the position confirmed to the
//!    source. A crash anywhere replays from the last confirmed point, and
//!    the versions (commit LSN × 2³² + position) make the replay harmless.

use crate::batch::{BatchManifest, LoadKind, StagedFile};
use crate::cdc::{format_lsn, snapshot_version};
use crate::error::{Error, Result};
use crate::plan::StreamPlan;
use crate::report::{StreamReport, SyncReport};
use crate::source::{ChangeEvent, ChangesRequest};
use crate::staging::BatchWriter;
use crate::sync::{
    CDC_SNAPSHOT_MODE, PartSink, Parts, ResumableSnapshot, SnapshotJob, SyncContext, backoff, load_batches, load_parts,
    stage_snapshot,
};
use std::collections::BTreeMap;
use std::time::Instant;
use tokio::sync::mpsc;
use uuid::Uuid;

/// Whether a checkpoint position is a CDC one.
fn is_cdc_position(p: Option<&serde_json::Value>) -> bool {
    p.and_then(|p| p.get("mode")).and_then(|m| m.as_str()) == Some("cdc")
}

struct Open {
    batch_id: u64,
    writer: Option<Box<dyn BatchWriter>>,
    rows: u64,
    truncated_at: Option<i128>,
}

/// What a round of CDC reading did, besides loading.
struct Round<'a> {
    done: &'a mut BTreeMap<String, Done>,
    /// Stopped early (schema change, `batch_max_rows`): run another round.
    again: bool,
    warnings: &'a mut Vec<String>,
}

/// What one stream did in this sync.
#[derive(Default)]
struct Done {
    rows: u64,
    staged_bytes: u64,
    batch_id: Option<u64>,
    snapshot: bool,
    unrepresentable: Vec<crate::report::Unrepresentable>,
}

/// Runs the `cdc` streams of a sync; adds one report per stream. Returns
/// whether the read stopped at a schema change, so the caller plans again
/// and runs the rest.
pub(crate) async fn run_cdc(
    ctx: &SyncContext,
    pipeline_id: Uuid,
    sync_id: i64,
    plans: Vec<(String, StreamPlan)>,
    report: &mut SyncReport,
) -> bool {
    let started = Instant::now();
    let mut done: BTreeMap<String, Done> = BTreeMap::new();
    // Schema evolution against what each table holds now; a change that
    // gave existing rows values without a change per row (a column added
    // with a default) or a diverted column means reading the stream again.
    let mut plans = plans;
    let mut reread = std::collections::BTreeSet::new();
    let mut changes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (label, plan) in plans.iter_mut() {
        if let Ok(Some(previous)) = ctx.store.last_loaded_table(&ctx.pipeline, label).await {
            let ch = crate::plan::evolve(&previous, &mut plan.table, &plan.defaults);
            if ch.iter().any(crate::plan::SchemaChange::needs_reread) {
                reread.insert(label.clone());
            }
            changes.insert(label.clone(), ch.iter().map(|c| c.to_string()).collect());
        }
    }
    let mut round = Round { done: &mut done, again: false, warnings: &mut report.warnings };
    let result = cdc_streams(ctx, pipeline_id, sync_id, &plans, &reread, &mut round).await;
    let again = round.again;
    for (label, plan) in &plans {
        let d = done.remove(label).unwrap_or_default();
        let error = result.as_ref().err().map(|e| e.to_string());
        if let Some(e) = &error {
            let _ = ctx.store.record_stream_error(&ctx.pipeline, label, e).await;
        }
        let r = StreamReport {
            stream: label.clone(),
            table: plan.table.name.clone(),
            mode: plan.mode.to_string(),
            status: if error.is_some() { "failed".into() } else { "succeeded".into() },
            rows: d.rows,
            source_bytes: 0,
            staged_bytes: d.staged_bytes,
            batch_id: d.batch_id,
            duration_ms: started.elapsed().as_millis() as u64,
            unrepresentable: d.unrepresentable,
            schema_changes: {
                let mut c = changes.remove(label).unwrap_or_default();
                if d.snapshot {
                    c.push("read from a snapshot at the slot's consistent point".into());
                }
                c
            },
            position: None,
            renames: plan.renames.clone(),
            recovered_batches: Vec::new(),
            error,
        };
        ctx.progress.stream_finished(&r);
        // A later round of the same sync adds to the stream's report.
        match report.streams.iter_mut().find(|s| s.stream == r.stream) {
            Some(s) => {
                s.rows += r.rows;
                s.staged_bytes += r.staged_bytes;
                s.batch_id = r.batch_id.or(s.batch_id);
                s.duration_ms += r.duration_ms;
                s.schema_changes.extend(r.schema_changes);
                s.unrepresentable.extend(r.unrepresentable);
                s.table = r.table;
                if r.error.is_some() {
                    s.status = r.status;
                    s.error = r.error;
                }
            }
            None => report.streams.push(r),
        }
    }
    again && result.is_ok()
}

async fn cdc_streams(
    ctx: &SyncContext,
    pipeline_id: Uuid,
    sync_id: i64,
    plans: &[(String, StreamPlan)],
    reread: &std::collections::BTreeSet<String>,
    round: &mut Round<'_>,
) -> Result<()> {
    let done = &mut *round.done;
    let states = ctx.store.streams(&ctx.pipeline).await?;
    let started = |label: &str| {
        states
            .iter()
            .find(|s| s.stream == label)
            .and_then(|s| s.checkpoint.as_ref())
            .is_some_and(|cp| is_cdc_position(cp.position.as_ref()))
    };
    let tables: Vec<_> = plans.iter().map(|(_, p)| p.table.clone()).collect();
    let slot = ctx.source.cdc_prepare(&ctx.pipeline, &tables, false, ctx.config.on_slot_lost).await?;
    // A first snapshot stopped part way goes on (see [`ResumableSnapshot`])
    // when its changes are all still in the slot: the slot is the same one
    // and not confirmed past the snapshot's point, and the table's shape
    // gave no rows new values meanwhile. Otherwise it starts over.
    let confirmed = match slot {
        Some(_) => None,
        None => ctx.source.cdc_slot(&ctx.pipeline).await?.and_then(|s| crate::cdc::parse_lsn(&s.confirmed).ok()),
    };
    let snapshot_lsn =
        |p: &serde_json::Value| p.get("lsn").and_then(|l| l.as_str()).and_then(|l| crate::cdc::parse_lsn(l).ok());
    let first_snapshot = |label: &str, point: crate::cdc::Lsn| {
        let position = states
            .iter()
            .find(|s| s.stream == label)
            .and_then(|s| s.checkpoint.as_ref())
            .and_then(|c| c.position.as_ref());
        ResumableSnapshot::from_checkpoint(
            position,
            |p| {
                p.get("mode").and_then(|m| m.as_str()) == Some(CDC_SNAPSHOT_MODE)
                    && !reread.contains(label)
                    && matches!((confirmed, snapshot_lsn(p)), (Some(c), Some(lsn)) if c <= lsn)
            },
            serde_json::json!({"mode": CDC_SNAPSHOT_MODE, "lsn": crate::cdc::format_lsn(point)}),
        )
    };
    // A slot made now while streams had started means the old one is gone
    // (dropped, or invalidated and dropped): what happened since it is not
    // in any slot, so every stream starts again from a snapshot.
    let joining: Vec<&(String, StreamPlan)> = if slot.is_some() {
        if plans.iter().any(|(l, _)| started(l)) {
            let w = format!(
                "the replication slot of pipeline {} was lost (dropped or invalidated) and has been made again; \
                 every stream was read again from a snapshot",
                ctx.pipeline
            );
            tracing::warn!("{w}");
            round.warnings.push(w);
        }
        plans.iter().collect()
    } else {
        plans.iter().filter(|(l, _)| !started(l) || reread.contains(l)).collect()
    };
    if !joining.is_empty() {
        // The pipeline's own slot when it was just made; otherwise a
        // temporary one, whose snapshot the joining streams are read in.
        let start = match slot {
            Some(s) => s,
            None => ctx
                .source
                .cdc_prepare(&ctx.pipeline, &tables, true, ctx.config.on_slot_lost)
                .await?
                .ok_or_else(|| Error::internal("the source made no temporary slot"))?,
        };
        let point = start.consistent_point();
        let snapshot = start.snapshot_name();
        let result = async {
            for (label, plan) in &joining {
                ctx.progress.stream_started(label, &plan.table.name, plan.estimated_rows);
                let batch_id = ctx.store.allocate_batch(&ctx.pipeline, label, sync_id).await?;
                // A stream's first snapshot (with a key) loads in parts,
                // each checkpointing where the read stands.
                let resumable = (!started(label) && plan.table.has_key()).then(|| first_snapshot(label, point));
                if let Some(r) = resumable.as_ref().filter(|r| r.going_on) {
                    tracing::info!(pipeline = %ctx.pipeline, stream = %label, resumes = r.from.is_some(),
                        "the stream's first snapshot stopped part way; going on from its loaded parts");
                }
                // The changes replay from the first attempt's point.
                let replay_from = resumable.as_ref().and_then(|r| snapshot_lsn(&r.position)).unwrap_or(point);
                // Parts load while the read goes on (see `load_parts`).
                let (part_tx, mut part_rx) = mpsc::channel::<BatchManifest>(4);
                let parts = Parts::new(ctx, sync_id, label, part_tx, batch_id);
                let read_done = std::sync::atomic::AtomicBool::new(false);
                let read = async {
                    let staged = stage_snapshot(SnapshotJob {
                        source: ctx.source.clone(),
                        staging: ctx.staging.as_ref(),
                        pipeline: &ctx.pipeline,
                        table: plan.table.clone(),
                        limits: ctx.destination.limits(),
                        on_unrepresentable: ctx.config.on_unrepresentable,
                        options: &ctx.options,
                        sync_id,
                        batch_id,
                        progress: ctx.progress.as_ref(),
                        cursor: None,
                        soft_delete: None,
                        incremental: None,
                        merge_full_read: false,
                        overlap: None,
                        cdc_snapshot: Some((snapshot.clone(), snapshot_version(point))),
                        resumable: resumable.clone(),
                        parts: resumable.is_some().then_some(&parts as &dyn PartSink),
                    })
                    .await;
                    read_done.store(true, std::sync::atomic::Ordering::SeqCst);
                    let staged = match staged {
                        Ok((mut manifest, stats)) => {
                            manifest.end_position = Some(crate::cdc::position(replay_from));
                            // A stream read again (lost slot, schema change) merges the
                            // snapshot and marks the keys it lacks deleted: rows are never
                            // removed under `mode: cdc`. A table without a key is replaced.
                            if started(label) && plan.table.has_key() {
                                manifest.kind = LoadKind::Merge;
                                manifest.complete = true;
                            }
                            match ctx.store.record_staged(&manifest).await {
                                Ok(()) => {
                                    parts.recorded();
                                    ctx.progress.stream_phase(label, "loading");
                                    parts.hand_over(manifest.clone()).await;
                                    Ok((manifest, stats))
                                }
                                Err(e) => Err(e),
                            }
                        }
                        Err(e) => Err(e),
                    };
                    parts.close();
                    staged
                };
                let load = load_parts(ctx, pipeline_id, "cdc", label, &mut part_rx, &read_done);
                let (staged, loaded) = tokio::join!(read, load);
                if staged.is_err() {
                    // The batch being written (none: it was just recorded).
                    let current = parts.current();
                    if current != 0 {
                        if let Err(cleanup) = ctx.staging.remove_batch(&ctx.pipeline, label, current).await {
                            tracing::warn!(stream = %label, batch_id = current, error = %cleanup,
                                "could not remove files of a failed batch");
                        }
                        ctx.store.abandon_batch(&ctx.pipeline, label, current).await?;
                    }
                }
                // A failed load stops the read: the load's error is the cause.
                let (rows, staged_bytes, _) = loaded?;
                let (manifest, stats) = staged?;
                let d = done.entry(label.clone()).or_default();
                d.unrepresentable.extend(stats.unrepresentable);
                d.rows += rows;
                d.staged_bytes += staged_bytes;
                d.batch_id = Some(manifest.batch_id);
                d.snapshot = true;
            }
            Ok::<_, Error>(())
        }
        .await;
        // The snapshot is needed only while reading.
        start.release().await?;
        result?;
    }

    // Changes since the confirmed point, one batch per stream.
    let request = ChangesRequest {
        pipeline: ctx.pipeline.clone(),
        tables: tables.clone(),
        limits: ctx.destination.limits(),
        on_unrepresentable: ctx.config.on_unrepresentable,
        batch_rows: ctx.options.batch_rows,
        max_changes: ctx.config.batch_max_rows.unwrap_or(simplyload_config::DEFAULT_BATCH_MAX_ROWS).max(1),
        max_lag_bytes: ctx.config.max_lag_bytes.unwrap_or(simplyload_config::DEFAULT_MAX_LAG_BYTES),
    };
    let (tx, mut rx) = mpsc::channel::<ChangeEvent>(ctx.options.channel_depth.max(1));
    let source = ctx.source.clone();
    let reader = tokio::spawn(async move { source.read_changes(request, tx).await });
    let mut open: BTreeMap<String, Open> = BTreeMap::new();
    let mut write_error = None;
    while let Some(event) = rx.recv().await {
        let stream = match &event {
            ChangeEvent::Rows { stream, .. } | ChangeEvent::Truncate { stream, .. } => stream.clone(),
        };
        let Some((_, plan)) = plans.iter().find(|(l, _)| *l == stream) else { continue };
        if !open.contains_key(&stream) {
            match ctx.store.allocate_batch(&ctx.pipeline, &stream, sync_id).await {
                Ok(batch_id) => {
                    open.insert(stream.clone(), Open { batch_id, writer: None, rows: 0, truncated_at: None });
                }
                Err(e) => {
                    write_error = Some(e);
                    break;
                }
            }
        }
        let o = open.get_mut(&stream).expect("just inserted");
        match event {
            ChangeEvent::Truncate { version, .. } => {
                o.truncated_at = Some(o.truncated_at.map_or(version, |t| t.max(version)));
            }
            ChangeEvent::Rows { batch, .. } => {
                if o.writer.is_none() {
                    match ctx.staging.writer(&ctx.pipeline, &stream, o.batch_id, plan.table.staged_schema()).await {
                        Ok(w) => o.writer = Some(w),
                        Err(e) => {
                            write_error = Some(e);
                            break;
                        }
                    }
                }
                o.rows += batch.num_rows() as u64;
                ctx.progress.stream_advanced(&stream, o.rows, 0);
                if let Err(e) = o.writer.as_mut().expect("opened above").write(batch).await {
                    write_error = Some(e);
                    break;
                }
                crate::sync::failpoint("during_read");
            }
        }
    }
    drop(rx);
    let read = reader.await.map_err(|e| Error::internal(format!("the change reader failed: {e}")))?;
    let read = match (write_error, read) {
        (Some(e), _) | (None, Err(e)) => {
            for (stream, o) in &open {
                let _ = ctx.staging.remove_batch(&ctx.pipeline, stream, o.batch_id).await;
                ctx.store.abandon_batch(&ctx.pipeline, stream, o.batch_id).await?;
            }
            return Err(e.context("reading changes"));
        }
        (None, Ok(read)) => read,
    };
    round.again = read.schema_changed || read.more;
    for (stream, u) in &read.unrepresentable {
        done.entry(stream.clone()).or_default().unrepresentable.push(u.clone());
    }
    round.warnings.extend(read.warnings.iter().cloned());
    let Some(confirm) = read.confirm else {
        return Ok(());
    };
    // Every stream's batch staged, then each loaded; then the position confirmed.
    let mut manifests = Vec::new();
    for (stream, o) in open {
        let (_, plan) = plans.iter().find(|(l, _)| *l == stream).expect("only planned streams are opened");
        let files: Vec<StagedFile> = match o.writer {
            Some(w) => w.finish().await?,
            None => Vec::new(),
        };
        let manifest = BatchManifest {
            pipeline: ctx.pipeline.clone(),
            stream: stream.clone(),
            batch_id: o.batch_id,
            sync_id,
            kind: LoadKind::Merge,
            table: plan.table.clone(),
            row_count: files.iter().map(|f| f.row_count).sum(),
            files,
            start_position: None,
            end_position: Some(crate::cdc::position(confirm)),
            truncated_at: o.truncated_at.map(|t| t.to_string()),
            complete: false,
        };
        if manifest.row_count != o.rows {
            return Err(Error::internal(format!(
                "staging {stream}: {} changes read but {} rows in the staged files",
                o.rows, manifest.row_count
            )));
        }
        ctx.store.record_staged(&manifest).await?;
        manifests.push(manifest);
    }
    crate::sync::failpoint("after_staged");
    for m in &manifests {
        ctx.progress.stream_phase(&m.stream, "loading");
        load_with_retries(ctx, pipeline_id, &m.stream, m).await?;
        let d = done.entry(m.stream.clone()).or_default();
        d.rows += m.row_count;
        d.staged_bytes += m.byte_count();
        d.batch_id = Some(m.batch_id);
    }
    ctx.source.confirm_changes(&ctx.pipeline, confirm).await?;
    tracing::info!(pipeline = %ctx.pipeline, changes = read.changes, confirmed = %format_lsn(confirm), "changes loaded and confirmed");
    Ok(())
}

async fn load_with_retries(ctx: &SyncContext, pipeline_id: Uuid, stream: &str, manifest: &BatchManifest) -> Result<()> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match load_batches(ctx, pipeline_id, "cdc", std::slice::from_ref(manifest), false).await {
            Ok(_) => return Ok(()),
            Err(e) if attempt <= ctx.options.retries && e.policy() == crate::error::Policy::RetryNow => {
                backoff(ctx, stream, attempt, &e, "loading").await;
            }
            Err(e) => return Err(e),
        }
    }
}
