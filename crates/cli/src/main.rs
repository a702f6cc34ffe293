//! `simplyload`: the one binary. Thin: parses arguments and calls the crates.

mod commands;
mod output;
mod progress;

use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "simplyload",
    version = VERSION,
    about = "Exact, fast, cheap replication from Postgres into DuckDB and Snowflake",
    after_help = "Start with `simplyload quickstart`. Docs: README.md and docs/ in the repository."
)]
struct Cli {
    /// The config file [default: ./simplyload.yaml]
    #[arg(long, global = true, env = "SIMPLYLOAD_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,

    /// Log format: text for people, json for machines
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Log filter: `info`, `debug`, or a tracing filter like `warn,simplyload_core=debug`
    /// [default: info; warn while progress lines are shown on a terminal]
    #[arg(long, global = true, env = "SIMPLYLOAD_LOG")]
    log_level: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Connect to sources and destinations, check grants, print the SQL that fixes what is missing
    Check {
        /// Only this pipeline [default: all]
        pipeline: Option<String>,
        /// Only these streams of the one pipeline named
        #[arg(long, value_name = "STREAM", num_args = 1.., requires = "pipeline")]
        select: Vec<String>,
    },
    /// List a source's tables, columns, types, primary keys and estimated rows
    Discover {
        /// The source's name in the config
        source: String,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Run one sync of the given pipelines [default: all]
    Sync {
        pipelines: Vec<String>,
        /// Print the sync reports as JSON on stdout
        #[arg(long)]
        json: bool,
        /// If another process is syncing a pipeline, wait this long for it (`30s`, `10m`) instead of failing
        #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
        wait: std::time::Duration,
        /// Keep syncing until Ctrl+C / SIGTERM: `cdc` streams in micro-batches
        /// (every `batch_max_seconds`, or sooner after `batch_max_rows` changes)
        #[arg(long)]
        follow: bool,
        /// Only these streams of the one pipeline named (`--select public.orders public.users`);
        /// `cdc` streams go all together or not at all (they share the replication slot)
        #[arg(long, value_name = "STREAM", num_args = 1..)]
        select: Vec<String>,
        /// Say what the sync would do (streams, modes, schema changes, what is read again)
        /// without reading or loading anything
        #[arg(long, conflicts_with = "follow")]
        dry_run: bool,
    },
    /// Show each stream's mode, last sync, rows and checkpoint
    Status {
        /// Only this pipeline [default: all]
        pipeline: Option<String>,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Read one stream in full at the next sync (a new generation), leaving the others alone
    Resync {
        pipeline: String,
        /// The stream, e.g. `public.orders`
        stream: String,
        /// If the pipeline is syncing, wait this long for it
        #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
        wait: std::time::Duration,
    },
    /// Pipelines: `drop` removes one's replication slot and publication and forgets its state
    #[command(subcommand)]
    Pipeline(commands::pipeline::PipelineCommand),
    /// List a pipeline's past syncs with durations and row counts
    History {
        pipeline: String,
        /// How many syncs to show
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Print the SQL a customer runs once so SimplyLoad has the access it needs
    #[command(subcommand)]
    SetupSql(commands::setup_sql::SetupSql),
    /// Staged Parquet files
    #[command(subcommand)]
    Staging(commands::day2::StagingCommand),
    /// Start a throwaway Postgres with demo data, sync it into DuckDB, compare counts
    Quickstart {
        /// Where to write simplyload.yaml, the state and warehouse.duckdb
        #[arg(long, default_value = "simplyload-quickstart")]
        dir: PathBuf,
    },
    /// Benchmarks, printed as ratios against a peer measured in the same run
    #[command(subcommand)]
    Bench(commands::bench::BenchCommand),
    /// The playground: demo schema, realistic data and load, validation, reconciliation
    #[command(subcommand)]
    Playground(commands::playground::PlaygroundCommand),
    /// Print a shell completion script: `simplyload completions bash > /etc/bash_completion.d/simplyload`
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `simplyload --version`: the release, the commit it was built from and the build date.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SIMPLYLOAD_COMMIT"),
    ", built ",
    env!("SIMPLYLOAD_BUILD_DATE"),
    ")"
);

/// Exit codes: see [`output::exit`].
pub const EXIT_FAILED: u8 = output::exit::FAILED;
pub const EXIT_USAGE: u8 = output::exit::USAGE;

fn main() -> ExitCode {
    restore_sigpipe();
    let cli = Cli::parse();
    let bars = match cli.log_format {
        LogFormat::Text => progress::terminal_bars(),
        LogFormat::Json => None,
    };
    init_logging(&cli, bars.clone());
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let result = runtime.block_on(run(cli, bars));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            tracing::debug!(error = ?e, "command failed");
            output::error(None, &e);
            ExitCode::from(output::code_of(&e))
        }
    }
}

async fn run(cli: Cli, bars: Option<indicatif::MultiProgress>) -> simplyload_core::Result<u8> {
    let config = cli.config.as_deref();
    match cli.command {
        Command::Check { pipeline, select } => commands::check::run(config, pipeline.as_deref(), &select).await,
        Command::Discover { source, json } => commands::discover::run(config, &source, json).await,
        Command::Sync { pipelines, json, wait, follow, select, dry_run } => {
            let args = commands::sync::SyncArgs { pipelines, json, wait, select };
            match (follow, dry_run) {
                (_, true) => commands::sync::dry_run(config, args).await,
                (false, false) => commands::sync::run(config, args, bars).await,
                (true, false) => commands::sync::follow(config, args).await,
            }
        }
        Command::Status { pipeline, json } => commands::status::run(config, pipeline.as_deref(), json).await,
        Command::Resync { pipeline, stream, wait } => commands::day2::resync(config, &pipeline, &stream, wait).await,
        Command::Pipeline(cmd) => commands::pipeline::run(config, cmd).await,
        Command::History { pipeline, limit, json } => commands::day2::history(config, &pipeline, limit, json).await,
        Command::Staging(cmd) => commands::day2::staging(config, cmd).await,
        Command::SetupSql(cmd) => commands::setup_sql::run(config, cmd).await,
        Command::Quickstart { dir } => commands::quickstart::run(&dir, bars).await,
        Command::Bench(b) => commands::bench::run(b).await,
        Command::Playground(p) => commands::playground::run(config, p).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "simplyload", &mut std::io::stdout());
            Ok(0)
        }
    }
}

/// Rust ignores SIGPIPE, so printing into a closed pipe (`simplyload
/// discover app | head`) would be an error at every `println!` — a panic.
/// Like other command-line tools, the process instead ends quietly when
/// its reader has gone.
fn restore_sigpipe() {
    // SAFETY: called first thing in `main`, before any thread exists;
    // setting a signal's disposition to its default has no other effect.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Log lines go to stderr, through the progress bars when they are shown so
/// the two never garble each other.
#[derive(Clone)]
struct LogWriter(Option<indicatif::MultiProgress>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &self.0 {
            Some(m) => m.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn init_logging(cli: &Cli, bars: Option<indicatif::MultiProgress>) {
    use tracing_subscriber::EnvFilter;
    // On a terminal the progress lines and the final report say what the
    // info lines would; elsewhere (CI, cron, files) the info lines are the record.
    let level = cli.log_level.clone().unwrap_or_else(|| if bars.is_some() { "warn".into() } else { "info".into() });
    // `info` means: our crates at info, everything else at warn.
    let spec = match level.as_str() {
        l @ ("trace" | "debug" | "info" | "warn" | "error") => format!("warn,simplyload={l}"),
        other => other.to_owned(),
    };
    let filter = EnvFilter::try_new(&spec).unwrap_or_else(|e| {
        eprintln!("warning: bad --log-level `{spec}` ({e}); using info");
        EnvFilter::new("warn,simplyload=info")
    });
    output::set_json(cli.log_format == LogFormat::Json);
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(LogWriter(bars)).with_ansi(output::colour());
    match cli.log_format {
        LogFormat::Json => builder.json().with_current_span(false).init(),
        LogFormat::Text => builder.with_target(false).compact().init(),
    }
}
