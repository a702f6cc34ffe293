//! `simplyload bench snapshot`: SimplyLoad's Postgres → Parquet snapshot
//! against `COPY … TO STDOUT (FORMAT binary)` into nothing, on the same table
//! in the same run, alternating so both see the same machine. The figure
//! that matters is the ratio; absolute rates depend on the machine.

use crate::progress::{bytes, count};
use clap::Subcommand;
use futures::StreamExt;
use simplyload_core::config::{OnUnrepresentable, PipelineConfig, StreamConfig, SyncMode};
use simplyload_core::sync::{SnapshotJob, SyncOptions, stage_snapshot};
use simplyload_core::{Error, NoProgress, Result, Source, StreamName, ValueLimits};
use simplyload_postgres::PostgresSource;
use simplyload_postgres::connect::{pg_error, quote_ident};
use simplyload_staging::Staging;
use std::sync::Arc;
use std::time::Instant;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Snapshot rate vs `COPY … TO STDOUT (FORMAT binary)` on the same table
    Snapshot {
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        /// The table, e.g. public.events
        #[arg(long)]
        table: String,
        /// Measurements of each side (the median is reported)
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// CDC decode rate vs `pg_recvlogical` on the same changes, and end to end into DuckDB
    Cdc {
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        /// Changes to apply (inserts, updates, deletes) in a bench table
        #[arg(long, default_value_t = 200_000)]
        changes: u64,
    },
}

pub async fn run(cmd: BenchCommand) -> Result<u8> {
    let (database_url, table, runs) = match cmd {
        BenchCommand::Snapshot { database_url, table, runs } => (database_url, table, runs),
        BenchCommand::Cdc { database_url, changes } => return super::bench_cdc::run(database_url, changes).await,
    };
    let runs = runs.max(1);
    let name = StreamName::parse(&table).map_err(Error::config)?;
    let source = Arc::new(PostgresSource::from_url("bench", &database_url)?);
    let catalog = source.discover().await?;
    let pipeline = PipelineConfig {
        source: "bench".into(),
        destination: "bench".into(),
        mode: SyncMode::FullRefresh,
        schedule: None,
        table_name: None,
        on_unrepresentable: OnUnrepresentable::Report,
        streams: vec![StreamConfig { name: name.to_string(), ..Default::default() }],
        ..Default::default()
    };
    let plan = simplyload_core::plan::plan_pipeline("bench", &pipeline, &catalog)
        .pop()
        .expect("one stream")
        .1?;
    let client = source.connect().await?;
    let qualified = format!("{}.{}", quote_ident(&name.schema), quote_ident(&name.table));
    let rows: i64 = client
        .query_one(&format!("SELECT count(*) FROM {qualified}"), &[])
        .await
        .map_err(|e| pg_error(&e, "counting rows"))?
        .get(0);
    println!("table {name}: {} rows, {} columns; {runs} run(s) of each side, alternating\n", count(rows as u64), plan.table.columns.len());

    let mut copy_secs = Vec::new();
    let mut ours_secs = Vec::new();
    let mut copy_bytes = 0u64;
    let mut staged = 0u64;
    let options = SyncOptions::default();
    for run in 1..=runs {
        // COPY into nothing.
        let started = Instant::now();
        let stream = client
            .copy_out(&format!("COPY {qualified} TO STDOUT (FORMAT binary)"))
            .await
            .map_err(|e| pg_error(&e, "COPY"))?;
        futures::pin_mut!(stream);
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            n += chunk.map_err(|e| pg_error(&e, "COPY"))?.len() as u64;
        }
        copy_secs.push(started.elapsed().as_secs_f64());
        copy_bytes = n;

        // SimplyLoad: Postgres → Arrow → Parquet (zstd) in a temp staging folder.
        let dir = tempfile::tempdir()?;
        let staging = Staging::local(dir.path())?;
        let started = Instant::now();
        let (manifest, _) = stage_snapshot(SnapshotJob {
            source: source.clone(),
            staging: &staging,
            pipeline: "bench",
            table: plan.table.clone(),
            limits: ValueLimits::STAGING,
            on_unrepresentable: OnUnrepresentable::Report,
            options: &options,
            sync_id: 0,
            batch_id: run as u64,
            progress: &NoProgress,
            cursor: None,
            soft_delete: None,
            incremental: None,
            merge_full_read: false,
            overlap: None,
            cdc_snapshot: None,
        })
        .await?;
        ours_secs.push(started.elapsed().as_secs_f64());
        staged = manifest.byte_count();
        if manifest.row_count != rows as u64 {
            return Err(Error::internal(format!(
                "SimplyLoad staged {} rows but the table has {rows}",
                manifest.row_count
            )));
        }
        println!(
            "  run {run}: COPY {:.2}s, SimplyLoad {:.2}s",
            copy_secs.last().expect("pushed"),
            ours_secs.last().expect("pushed")
        );
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
        v[v.len() / 2]
    };
    let (c, o) = (median(&mut copy_secs), median(&mut ours_secs));
    let line = |label: &str, secs: f64| {
        println!(
            "{label:<48} {:>12} rows/s  {:>10}/s",
            count((rows as f64 / secs) as u64),
            bytes((copy_bytes as f64 / secs) as u64)
        );
    };
    println!();
    line("COPY … TO STDOUT (FORMAT binary) → nothing", c);
    line("SimplyLoad snapshot → Parquet (zstd), 1 reader", o);
    println!("\nwire size {} (COPY binary), staged {} of Parquet", bytes(copy_bytes), bytes(staged));
    println!("ratio (SimplyLoad rate / COPY rate): {:.2}", c / o);
    Ok(0)
}
