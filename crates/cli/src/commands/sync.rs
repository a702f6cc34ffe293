//! `simplyload sync [PIPELINE…]`.

use crate::connectors;
use crate::progress::{SyncProgress, bytes, count};
use simplyload_config::Config;
use simplyload_core::lock::PipelineLock;
use simplyload_core::sync::{SyncContext, SyncOptions, run_sync};
use simplyload_core::{Progress, Result, SyncReport};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub async fn run(
    config: Option<&Path>,
    names: &[String],
    json: bool,
    wait: Duration,
    bars: Option<indicatif::MultiProgress>,
) -> Result<u8> {
    let cfg = connectors::load_config(config)?;
    let pipelines = super::select_pipelines(&cfg, names)?;
    let progress: Arc<dyn Progress> = Arc::new(SyncProgress::new(bars));
    let mut reports = Vec::new();
    let mut ok = true;
    for name in pipelines {
        match sync_pipeline(&cfg, &name, progress.clone(), wait).await {
            Ok(report) => {
                ok &= report.succeeded();
                if !json {
                    print_report(&report);
                }
                reports.push(report);
            }
            Err(e) => {
                ok = false;
                eprintln!("error: pipeline {name}: {e}");
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reports).expect("reports serialize"));
    }
    Ok(if ok { 0 } else { crate::EXIT_FAILED })
}

/// `sync --follow`: syncs the pipelines again and again — each sync reads
/// what committed since the last one (CDC: up to `batch_max_rows` changes
/// per load), then waits out `batch_max_seconds` — until Ctrl+C or SIGTERM,
/// which end it after the sync under way (a sync cut short is exact too).
pub async fn follow(config: Option<&Path>, names: &[String], json: bool, wait: Duration) -> Result<u8> {
    let cfg = connectors::load_config(config)?;
    let pipelines = super::select_pipelines(&cfg, names)?;
    let progress: Arc<dyn Progress> = Arc::new(SyncProgress::new(None));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let term = async {
                match term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term => {}
            }
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        });
    }
    let every = pipelines
        .iter()
        .filter_map(|n| cfg.pipelines.get(n))
        .map(|p| p.batch_max_seconds.unwrap_or(Duration::from_secs(simplyload_config::DEFAULT_BATCH_MAX_SECONDS)))
        .min()
        .unwrap_or(Duration::from_secs(simplyload_config::DEFAULT_BATCH_MAX_SECONDS));
    let mut failures = 0u32;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let started = std::time::Instant::now();
        for name in &pipelines {
            match sync_pipeline(&cfg, name, progress.clone(), wait).await {
                Ok(report) => {
                    if !report.succeeded() {
                        failures += 1;
                    }
                    if json {
                        println!("{}", serde_json::to_string(&report).expect("report serializes"));
                    } else if report.rows() > 0 || !report.succeeded() {
                        print_report(&report);
                    }
                }
                Err(e) => {
                    failures += 1;
                    eprintln!("error: pipeline {name}: {e}");
                }
            }
        }
        // Wait out the interval, waking early to stop.
        while started.elapsed() < every && !stop.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(100).min(every)).await;
        }
    }
    eprintln!("stopped following ({failures} failed sync(s))");
    Ok(0)
}

/// Runs one sync of one pipeline with the configured connectors.
/// Holds the pipeline's lock for the whole sync (waiting up to `wait` for
/// another process to finish), so two syncs of one pipeline never overlap.
pub async fn sync_pipeline(
    cfg: &Config,
    name: &str,
    progress: Arc<dyn Progress>,
    wait: Duration,
) -> Result<SyncReport> {
    let p = cfg.pipeline(name)?;
    let state = cfg.state_path();
    let state_dir = state.parent().map(Path::to_path_buf).unwrap_or_default();
    let pipeline = name.to_owned();
    let _lock = tokio::task::spawn_blocking(move || PipelineLock::acquire(&state_dir, &pipeline, wait))
        .await
        .map_err(|e| simplyload_core::Error::internal(format!("lock task failed: {e}")))??;
    let ctx = SyncContext {
        pipeline: name.to_owned(),
        config: p.clone(),
        source: connectors::source(cfg, &p.source)?,
        destination: connectors::destination(cfg, &p.destination)?,
        store: connectors::store(cfg)?,
        staging: connectors::staging(cfg)?,
        progress,
        options: sync_options(p),
    };
    run_sync(&ctx).await
}

/// The sync's tuning knobs from the pipeline's config.
pub fn sync_options(p: &simplyload_core::config::PipelineConfig) -> SyncOptions {
    let mut o = SyncOptions::default();
    if let Some(n) = p.snapshot_parallelism {
        o.snapshot_parallelism = n.max(1);
    }
    if let Some(n) = p.snapshot_parallel_min_bytes {
        o.parallel_min_bytes = n;
    }
    if let Some(n) = p.snapshot_part_rows {
        o.part_rows = n.max(1);
    }
    o
}

pub fn print_report(r: &SyncReport) {
    let status = if r.succeeded() { "succeeded" } else { "FAILED" };
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
