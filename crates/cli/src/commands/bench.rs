//! `simplyload bench …`: arguments for the benchmarks in `simplyload-bench`.

use clap::{Args, Subcommand};
use simplyload_core::Result;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Snapshot of tables by SimplyLoad and its peers vs `COPY … TO STDOUT (FORMAT binary)`
    Snapshot(SnapshotCmd),
    /// CDC decode rate vs `pg_recvlogical` on the same changes, and end to end into DuckDB
    Cdc {
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        /// Changes to apply (inserts, updates, deletes) in a bench table
        #[arg(long, default_value_t = 200_000)]
        changes: u64,
    },
    /// A Stripe backfill from a local server that never throttles: the request rate against the limit, and peak RSS
    Stripe {
        /// Account sizes (objects in each of four streams), each synced once
        #[arg(long, value_delimiter = ',', default_values_t = [5_000u64, 20_000])]
        objects: Vec<u64>,
        /// The client's requests_per_second
        #[arg(long, default_value_t = 50.0)]
        limit: f64,
        /// Milliseconds the server waits before each reply
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
    },
    /// One staging run, as a child of `bench snapshot` (its time and memory are measured)
    #[command(hide = true)]
    StageOnce {
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        #[arg(long)]
        table: String,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        parallelism: Option<usize>,
    },
}

#[derive(Args, Debug)]
pub struct SnapshotCmd {
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// A table, e.g. public.events (repeat for several)
    #[arg(long, required = true)]
    pub table: Vec<String>,
    /// Measurements of each side (the median is reported)
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// The sides to run, of copy, stage, duckdb, dlt, sling (default: all
    /// that are installed)
    #[arg(long, value_delimiter = ',')]
    pub sides: Vec<String>,
    /// Write the results as Markdown here
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// The environment file `scripts/bench-peers` writes (default: in its venv)
    #[arg(long, env = "SIMPLYLOAD_PEERS_ENV")]
    pub peers_env: Option<PathBuf>,
    /// `snapshot_parallelism` for SimplyLoad's sides (default: its own)
    #[arg(long)]
    pub parallelism: Option<usize>,
    /// `snapshot_part_rows` for the end-to-end side (default: its own)
    #[arg(long)]
    pub part_rows: Option<u64>,
    /// Keep the work folder (staged files, DuckDB files, logs) and print where it is
    #[arg(long)]
    pub keep: bool,
}

pub async fn run(cmd: BenchCommand) -> Result<u8> {
    match cmd {
        BenchCommand::Snapshot(c) => simplyload_bench::snapshot(c.into()).await,
        BenchCommand::Cdc { database_url, changes } => simplyload_bench::cdc::run(database_url, changes).await,
        BenchCommand::Stripe { objects, limit, latency_ms } => {
            let latency = std::time::Duration::from_millis(latency_ms);
            simplyload_bench::stripe::run(simplyload_bench::stripe::StripeArgs { objects, limit, latency }).await
        }
        BenchCommand::StageOnce { database_url, table, dir, parallelism } => {
            simplyload_bench::stage_once(&database_url, &table, &dir, parallelism).await
        }
    }
}

impl From<SnapshotCmd> for simplyload_bench::SnapshotArgs {
    fn from(c: SnapshotCmd) -> Self {
        simplyload_bench::SnapshotArgs {
            database_url: c.database_url,
            table: c.table,
            runs: c.runs,
            sides: c.sides,
            report: c.report,
            peers_env: c.peers_env,
            parallelism: c.parallelism,
            part_rows: c.part_rows,
            keep: c.keep,
        }
    }
}
