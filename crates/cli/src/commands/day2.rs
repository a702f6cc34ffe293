//! Day-2 commands: `resync`, `history`, `staging gc`.

use crate::progress::{bytes, count};
use clap::Subcommand;
use simplyload_core::{CheckpointStore, Error, Result, StreamName};
use std::path::Path;
use std::time::Duration;

/// `simplyload resync PIPELINE STREAM`: the stream is read in full at the
/// next sync and its destination rows replaced; other streams are untouched.
pub async fn resync(config: Option<&Path>, pipeline: &str, stream: &str, wait: Duration) -> Result<u8> {
    let app = super::app(config)?;
    let p = app.config().pipeline(pipeline)?;
    let ns = app.source(&p.source)?.default_namespace().map(str::to_owned);
    let ns = ns.as_deref();
    let wanted = StreamName::parse(stream).map_err(|m| Error::config(format!("stream `{stream}`: {m}")))?.qualified(ns);
    let configured: Vec<String> = p
        .streams
        .iter()
        .enumerate()
        .map(|(i, s)| {
            simplyload_core::plan::stream_name(pipeline, i, s, ns).map(|n| n.to_string()).unwrap_or(s.name.clone())
        })
        .collect();
    if !simplyload_core::plan::selects(p, &wanted, ns) {
        return Err(Error::config(format!("pipeline {pipeline} has no stream {wanted}"))
            .with_hint(format!("its streams are: {}", configured.join(", "))));
    }
    let Some(store) = app.existing_store()? else {
        println!("{wanted} of pipeline {pipeline} has never been synced; the next sync reads it in full anyway");
        return Ok(0);
    };
    // Not while a sync of the pipeline runs: its checkpoint would overwrite this.
    let _lock = app.locks().acquire(pipeline, wait).await?;
    if store.request_resync(pipeline, &wanted.to_string()).await? {
        println!(
            "{wanted} of pipeline {pipeline} will be read in full at the next sync, and its destination rows replaced"
        );
    } else {
        println!("{wanted} of pipeline {pipeline} has no checkpoint yet; the next sync reads it in full anyway");
    }
    Ok(0)
}

/// `simplyload history PIPELINE`: past syncs, newest first.
pub async fn history(config: Option<&Path>, pipeline: &str, limit: usize, json: bool) -> Result<u8> {
    let app = super::app(config)?;
    app.config().pipeline(pipeline)?;
    let syncs = app.history(pipeline, limit).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&syncs).expect("history serializes"));
        return Ok(0);
    }
    if syncs.is_empty() {
        println!("pipeline {pipeline} has never been synced; run `simplyload sync {pipeline}`");
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = syncs
        .iter()
        .map(|s| {
            vec![
                s.sync_id.to_string(),
                super::ago(s.started_at_ms),
                s.finished_at_ms
                    .map(|f| {
                        humantime::format_duration(Duration::from_millis((f - s.started_at_ms).max(0) as u64))
                            .to_string()
                    })
                    .unwrap_or_else(|| "-".into()),
                s.status.clone(),
                count(s.rows),
                s.error.as_ref().map(|e| e.lines().next().unwrap_or("").to_owned()).unwrap_or_default(),
            ]
        })
        .collect();
    super::print_table(&["sync", "started", "duration", "status", "rows", "error"], &rows);
    Ok(0)
}

#[derive(Subcommand, Debug)]
pub enum StagingCommand {
    /// Remove the staged files of loaded batches older than the retention
    Gc {
        /// Pipelines to clean [default: all]
        pipelines: Vec<String>,
        /// Keep files of batches loaded less than this long ago [default: `staging_retention`, 7d]
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: Option<Duration>,
        /// Only say what would be removed
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn staging(config: Option<&Path>, cmd: StagingCommand) -> Result<u8> {
    let StagingCommand::Gc { pipelines, older_than, dry_run } = cmd;
    let app = super::app(config)?;
    let names = app.select_pipelines(&pipelines)?;
    if app.existing_store()?.is_none() {
        println!("nothing has been synced yet; nothing to remove");
        return Ok(0);
    }
    let older_than = older_than.unwrap_or_else(|| app.staging_retention());
    let (mut batches, mut total) = (0u64, 0u64);
    for name in &names {
        let cleaned = app.clean_staging(name, older_than, dry_run).await?;
        batches += cleaned.batches;
        total += cleaned.bytes;
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    println!(
        "{verb} the staged files of {batches} loaded batch(es), {} (loaded more than {} ago)",
        bytes(total),
        humantime::format_duration(older_than)
    );
    Ok(0)
}
