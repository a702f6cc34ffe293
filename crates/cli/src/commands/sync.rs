//! `simplyload sync [PIPELINE…]` and `sync --follow`.

use crate::progress::{SyncProgress, bytes, count};
use simplyload_app::{SyncRequest, Trigger};
use simplyload_core::runner::CancellationToken;
use simplyload_core::{Progress, Result, SyncReport};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A token cancelled by the first Ctrl+C or SIGTERM: the sync under way
/// stops at the next batch boundary (nothing half done; the next sync goes
/// on exactly). A second one ends the process at once — a crash, which is
/// exact too.
pub fn stop_on_signals() -> CancellationToken {
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    tokio::spawn(async move {
        let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
            return;
        };
        for n in 0.. {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            if n > 0 {
                crate::output::notice("stopping now (a crash: the next sync settles what this one left)");
                std::process::exit(i32::from(crate::output::exit::STOPPED));
            }
            crate::output::notice("stopping at the next batch boundary (signal again to stop at once)");
            token.cancel();
        }
    });
    cancel
}

/// What `simplyload sync` was asked.
pub struct SyncArgs {
    pub pipelines: Vec<String>,
    pub json: bool,
    pub wait: Duration,
    pub select: Vec<String>,
}

impl SyncArgs {
    /// The pipelines to sync; a stream selection needs exactly one.
    fn pipelines(&self, app: &simplyload_app::App) -> Result<Vec<String>> {
        let pipelines = app.select_pipelines(&self.pipelines)?;
        if !self.select.is_empty() && pipelines.len() != 1 {
            return Err(simplyload_core::Error::config("--select picks streams of one pipeline")
                .with_hint("name it: `simplyload sync PIPELINE --select STREAM…`"));
        }
        Ok(pipelines)
    }

    fn request(&self, pipeline: &str, trigger: Trigger, progress: Arc<dyn Progress>) -> SyncRequest {
        SyncRequest { wait: self.wait, select: self.select.clone(), ..SyncRequest::new(pipeline, trigger, progress) }
    }
}

pub async fn run(config: Option<&Path>, args: SyncArgs, bars: Option<indicatif::MultiProgress>) -> Result<u8> {
    let json = args.json;
    let app = super::app(config)?;
    let pipelines = args.pipelines(&app)?;
    let progress: Arc<dyn Progress> = Arc::new(SyncProgress::new(bars));
    let cancel = stop_on_signals();
    let mut reports = Vec::new();
    let mut outcome = Outcome::default();
    for name in pipelines {
        if cancel.is_cancelled() {
            outcome.stopped.push(name);
            continue;
        }
        let req = SyncRequest { cancel: cancel.clone(), ..args.request(&name, Trigger::Manual, progress.clone()) };
        match app.sync(&req).await {
            Ok(report) => {
                outcome.add(&report);
                if !json {
                    print_report(&report);
                }
                reports.push(report);
            }
            Err(e) => {
                outcome.busy |= e.kind() == simplyload_core::ErrorKind::Busy;
                outcome.failed |= e.kind() != simplyload_core::ErrorKind::Busy;
                crate::output::error(Some(&format!("pipeline {name}")), &e);
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reports).expect("reports serialize"));
    }
    if !outcome.stopped.is_empty() {
        crate::output::notice(&format!(
            "stopped at a batch boundary (not synced: {}); nothing is half done: the next `simplyload sync` \
             goes on from the last loaded batch",
            outcome.stopped.join(", ")
        ));
    }
    warn_idle_feeds(&app).await;
    Ok(outcome.code())
}

/// What the syncs of one `simplyload sync` came to, for its exit code.
#[derive(Default)]
struct Outcome {
    failed: bool,
    usage: bool,
    busy: bool,
    /// Pipelines stopped by a signal (or not started because of one).
    stopped: Vec<String>,
}

impl Outcome {
    fn add(&mut self, report: &SyncReport) {
        use simplyload_core::ErrorKind;
        match report.error_kind {
            Some(ErrorKind::Cancelled) => self.stopped.push(report.pipeline.clone()),
            // The sync itself refused its request (e.g. an unknown --select stream).
            Some(ErrorKind::Config) => self.usage = true,
            _ => self.failed |= !report.succeeded(),
        }
    }

    /// Stopped beats bad usage beats failed beats busy (see `output::exit`).
    fn code(&self) -> u8 {
        use crate::output::exit;
        match () {
            _ if !self.stopped.is_empty() => exit::STOPPED,
            _ if self.usage => exit::USAGE,
            _ if self.failed => exit::FAILED,
            _ if self.busy => exit::BUSY,
            _ => exit::OK,
        }
    }
}

/// Warns (on stderr) about change feeds no `cdc` stream uses any more.
pub async fn warn_idle_feeds(app: &simplyload_app::App) {
    match app.idle_feeds().await {
        Ok(idle) => {
            for f in idle {
                tracing::warn!(pipeline = %f.pipeline, feed = %f.name, "{}", f.message());
            }
        }
        Err(e) => tracing::warn!("cannot look for replication slots left behind: {e}"),
    }
}

/// `sync --dry-run`: what each pipeline's sync would do, read from the
/// source's catalog, the state and the destination; nothing is read,
/// staged or loaded.
pub async fn dry_run(config: Option<&Path>, args: SyncArgs) -> Result<u8> {
    let app = super::app(config)?;
    let progress: Arc<dyn Progress> = Arc::new(SyncProgress::new(None));
    let mut out = Vec::new();
    let mut refused = false;
    for name in args.pipelines(&app)? {
        let planned = app.dry_run(&args.request(&name, Trigger::Manual, progress.clone())).await?;
        refused |= planned.iter().any(|p| p.error.is_some());
        if !args.json {
            print_dry_run(&name, &planned);
        }
        out.push(serde_json::json!({ "pipeline": name, "streams": planned }));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out).expect("plans serialize"));
    }
    Ok(if refused { crate::EXIT_FAILED } else { 0 })
}

fn print_dry_run(pipeline: &str, planned: &[simplyload_core::runner::PlannedStream]) {
    println!("pipeline {pipeline} (dry run: nothing is read or loaded)");
    let rows: Vec<Vec<String>> = planned
        .iter()
        .map(|p| {
            let action =
                p.error.as_ref().map(|e| format!("REFUSED: {}", e.replace('\n', " "))).unwrap_or(p.action.clone());
            vec![format!("  {}", p.stream), p.mode.clone(), p.table.clone(), action]
        })
        .collect();
    super::print_table(&["  stream", "mode", "table", "what the sync would do"], &rows);
    for p in planned {
        for c in &p.schema_changes {
            println!("  {}: schema change: {c}", p.stream);
        }
        if !p.unfinished_batches.is_empty() {
            println!(
                "  {}: batches {:?} left by an interrupted sync are settled first",
                p.stream, p.unfinished_batches
            );
        }
    }
}

/// `sync --follow`: syncs the pipelines again and again (see
/// [`simplyload_app::App::follow`]) until Ctrl+C or SIGTERM, which stop the
/// sync under way at a batch boundary.
pub async fn follow(config: Option<&Path>, args: SyncArgs) -> Result<u8> {
    let json = args.json;
    let app = super::app(config)?;
    let pipelines = args.pipelines(&app)?;
    let progress: Arc<dyn Progress> = Arc::new(SyncProgress::new(None));
    let template = SyncRequest { cancel: stop_on_signals(), ..args.request("", Trigger::Follow, progress) };
    let failures = app
        .follow(&pipelines, &template, |name, outcome| match outcome {
            Ok(report) if json => println!("{}", serde_json::to_string(&report).expect("report serializes")),
            Ok(report) if report.rows() > 0 || !report.succeeded() => print_report(&report),
            Ok(_) => {}
            Err(e) => crate::output::error(Some(&format!("pipeline {name}")), &e),
        })
        .await;
    crate::output::notice(&format!("stopped following ({failures} failed sync(s)); the next sync goes on exactly"));
    Ok(0)
}

pub fn print_report(r: &SyncReport) {
    let status = match r.failure() {
        None if r.succeeded() => "succeeded",
        Some((simplyload_core::ErrorKind::Cancelled, _)) => "STOPPED",
        _ => "FAILED",
    };
    println!(
        "sync {} of pipeline {} {status} in {}",
        r.sync_id,
        r.pipeline,
        humantime::format_duration(std::time::Duration::from_millis(r.duration_ms))
    );
    if let Some(e) = &r.error {
        println!("  error: {e}");
    }
    for w in &r.warnings {
        println!("  warning: {w}");
    }
    if !r.skipped_changes.is_empty() {
        let total: u64 = r.skipped_changes.values().sum();
        println!("  skipped {total} change(s) no stream takes:");
        for (reason, n) in &r.skipped_changes {
            println!("    {n} × {reason}");
        }
    }
    let rows: Vec<Vec<String>> = r
        .streams
        .iter()
        .map(|s| {
            vec![
                format!("  {}", s.stream),
                if s.table.is_empty() { "-".into() } else { s.table.clone() },
                s.status.clone(),
                count(s.rows),
                bytes(s.source_bytes),
                bytes(s.staged_bytes),
                s.unrepresentable.iter().map(|u| u.count).sum::<u64>().to_string(),
            ]
        })
        .collect();
    super::print_table(&["  stream", "table", "status", "rows", "read", "staged", "unrepresentable"], &rows);
    for s in &r.streams {
        if let Some(e) = &s.error {
            println!("  {}: {}", s.stream, e.replace('\n', "\n    "));
        }
        for u in &s.unrepresentable {
            println!(
                "  {}: {} value(s) of column {} written as NULL: {} (e.g. {})",
                s.stream,
                u.count,
                u.column,
                u.reason,
                u.sample_keys.join("; ")
            );
        }
        if let Some(n) =
            s.position.as_ref().and_then(|p| p.get("null_cursor_rows")).and_then(|n| n.as_u64()).filter(|n| *n > 0)
        {
            println!(
                "  {}: {n} row(s) have a NULL cursor; later changes to them are not seen by incremental reads",
                s.stream
            );
        }
        if let Some(why) = &s.reread {
            println!("  {}: {why}", s.stream);
        }
        for c in &s.schema_changes {
            println!("  {}: {c}", s.stream);
        }
        for rn in &s.renames {
            println!(
                "  {}: column {:?} is named {} in the destination (name collision)",
                s.stream, rn.source, rn.destination
            );
        }
        if !s.recovered_batches.is_empty() {
            println!("  {}: settled batches {:?} left by an interrupted sync", s.stream, s.recovered_batches);
        }
    }
    if let Some((kind, policy)) = r.failure()
        && kind != simplyload_core::ErrorKind::Cancelled
    {
        println!("  ({kind}: {})", policy.hint());
    }
    if !r.statements.is_empty() {
        let on_warehouse: Vec<_> = r.statements.iter().filter(|s| s.uses_warehouse).collect();
        println!(
            "  destination: {} statement(s), {} on the warehouse ({} ms of warehouse statements)",
            r.statements.len(),
            on_warehouse.len(),
            on_warehouse.iter().map(|s| s.elapsed_ms).sum::<u64>()
        );
        // W: the statement ran on the warehouse (the others are metadata only).
        for st in &r.statements {
            let one_line: String = st.sql.split_whitespace().collect::<Vec<_>>().join(" ");
            let short: String = one_line.chars().take(120).collect();
            println!("    {:>7} ms {} {short}", st.elapsed_ms, if st.uses_warehouse { "W" } else { " " });
        }
    }
}
