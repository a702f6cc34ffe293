//! `simplyload playground …`: the demo schema, a baseline of realistic rows,
//! continuous activity and a summary of what the tables hold. Settings come
//! from flags, else the environment, else `.env` (see docs/playground.md).

use crate::progress::count;
use clap::{Args, Subcommand};
use simplyload_core::{Error, Result};
use simplyload_playground::config::parse_duration;
use simplyload_playground::{Activity, ActivityOptions, ActivityTotals, Environment, Flags, PlaygroundConfig};
use std::path::PathBuf;
use std::time::Duration;

/// Where the database is.
#[derive(Args, Debug)]
pub struct Connection {
    /// The playground database [env: DATABASE_URL]
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Read settings from this file instead of ./.env
    #[arg(long, value_name = "PATH")]
    env_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum PlaygroundCommand {
    /// Create the playground schema (users, orders, events); idempotent
    Schema {
        #[command(flatten)]
        connection: Connection,
    },
    /// Insert baseline rows with COPY (creates the schema if needed)
    Seed {
        #[command(flatten)]
        connection: Connection,
        /// Users to insert [env: INITIAL_USERS] [default: 1000]
        #[arg(long, value_name = "N")]
        users: Option<u64>,
        /// Orders to insert [env: INITIAL_ORDERS] [default: 5000]
        #[arg(long, value_name = "N")]
        orders: Option<u64>,
        /// Events to insert [env: INITIAL_EVENTS] [default: 20000]
        #[arg(long, value_name = "N")]
        events: Option<u64>,
        /// Multiplies every count
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// Random seed: the same seed gives the same rows
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Connections a large table is loaded over, each with its own COPY
        #[arg(long, value_name = "N", default_value_t = 2)]
        connections: usize,
    },
    /// Generate continuous activity: inserts, status changes, soft and hard deletes, new columns
    Run(RunArgs),
    /// Row counts, soft deletes and the last hour's activity per table
    Validate {
        #[command(flatten)]
        connection: Connection,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Compare each stream's source table with its destination table, row by row
    Reconcile(super::reconcile::Args),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    connection: Connection,
    /// New orders per hour [env: ORDERS_PER_HOUR] [default: 50]
    #[arg(long, value_name = "N")]
    orders_per_hour: Option<f64>,
    /// New events per hour [env: EVENTS_PER_HOUR] [default: 200]
    #[arg(long, value_name = "N")]
    events_per_hour: Option<f64>,
    /// New users per hour [env: USERS_PER_HOUR] [default: orders per hour / 5]
    #[arg(long, value_name = "N")]
    users_per_hour: Option<f64>,
    /// Order status changes per hour [env: STATUS_UPDATES_PER_HOUR] [default: orders per hour × 2]
    #[arg(long, value_name = "N")]
    status_updates_per_hour: Option<f64>,
    /// User plan changes per hour [env: PLAN_CHANGES_PER_HOUR] [default: orders per hour / 10]
    #[arg(long, value_name = "N")]
    plan_changes_per_hour: Option<f64>,
    /// Users soft-deleted per hour [env: SOFT_DELETES_PER_HOUR] [default: orders per hour / 50]
    #[arg(long, value_name = "N")]
    soft_deletes_per_hour: Option<f64>,
    /// Also DELETE events and orders, and purge soft-deleted users with their orders
    #[arg(long)]
    hard_deletes: bool,
    /// DELETEs per hour with --hard-deletes [env: HARD_DELETES_PER_HOUR] [default: (orders + events per hour) / 20]
    #[arg(long, value_name = "N")]
    hard_deletes_per_hour: Option<f64>,
    /// Now and then add a nullable column to users, orders or events
    #[arg(long)]
    schema_changes: bool,
    /// How often --schema-changes adds a column
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    schema_change_every: Duration,
    /// Stop after this long, e.g. 30s, 5m, 0.083h [env: TEST_DURATION_HOURS, in hours] [default: until Ctrl+C]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Random seed: the same seed gives the same sequence of changes
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Print activity statistics this often
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    stats_every: Duration,
    /// Changes arriving faster than this share transactions
    #[arg(long, value_name = "N", default_value_t = simplyload_playground::activity::DEFAULT_MAX_TRANSACTIONS_PER_SECOND)]
    max_transactions_per_second: f64,
    /// Print the final totals as one JSON object on stdout (statistics go to stderr)
    #[arg(long)]
    json: bool,
}

fn settings(connection: &Connection, mut flags: Flags) -> Result<PlaygroundConfig> {
    flags.database_url = connection.database_url.clone();
    let env = Environment::load(connection.env_file.as_deref())?;
    PlaygroundConfig::resolve(&flags, &env)
}

pub async fn run(config: Option<&std::path::Path>, cmd: PlaygroundCommand) -> Result<u8> {
    match cmd {
        PlaygroundCommand::Reconcile(args) => return super::reconcile::run(config, args).await,
        PlaygroundCommand::Schema { connection } => {
            let cfg = settings(&connection, Flags::default())?;
            let client = cfg.database_url.connect().await?;
            simplyload_playground::create_schema(&client).await?;
            println!("the playground schema is in place in {}", cfg.database_url);
        }
        PlaygroundCommand::Seed { connection, users, orders, events, scale, seed, connections } => {
            if !(scale.is_finite() && scale > 0.0) {
                return Err(Error::config(format!("--scale {scale}: must be a positive number")));
            }
            if !(1..=64).contains(&connections) {
                return Err(Error::config(format!("--connections {connections}: must be between 1 and 64")));
            }
            let flags =
                Flags { initial_users: users, initial_orders: orders, initial_events: events, ..Flags::default() };
            let cfg = settings(&connection, flags)?;
            let s = |n: u64| (n as f64 * scale).round() as u64;
            let c = cfg.seed_counts;
            let counts =
                simplyload_playground::SeedCounts { users: s(c.users), orders: s(c.orders), events: s(c.events) };
            let mut clients = Vec::with_capacity(connections);
            for _ in 0..connections {
                clients.push(cfg.database_url.connect().await?);
            }
            let client = &clients[0];
            simplyload_playground::create_schema(client).await?;
            println!(
                "seeding {}: {} users, {} orders, {} events (seed {seed})",
                cfg.database_url,
                count(counts.users),
                count(counts.orders),
                count(counts.events)
            );
            let started = std::time::Instant::now();
            let clients: Vec<&tokio_postgres::Client> = clients.iter().collect();
            let done = simplyload_playground::seed_with_progress(&clients, counts, seed, &mut |p| {
                let secs = p.elapsed.as_secs_f64();
                let rate = if secs > 0.0 { p.rows as f64 / secs } else { 0.0 };
                println!("  {:<7}{:>12} rows in {secs:.1}s ({} rows/s)", p.table, count(p.rows), count(rate as u64));
            })
            .await?;
            println!(
                "inserted {} users, {} orders, {} events in {:.1}s",
                count(done.users),
                count(done.orders),
                count(done.events),
                started.elapsed().as_secs_f64()
            );
        }
        PlaygroundCommand::Run(args) => return run_activity(args).await,
        PlaygroundCommand::Validate { connection, json } => {
            let cfg = settings(&connection, Flags::default())?;
            let client = cfg.database_url.connect().await?;
            let v = simplyload_playground::validate(&client).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v).map_err(|e| Error::internal(e.to_string()))?);
                return Ok(0);
            }
            println!("playground {} at {}\n", cfg.database_url, v.checked_at);
            let rows: Vec<Vec<String>> = v
                .tables
                .iter()
                .map(|t| {
                    vec![
                        format!("  {}", t.table),
                        count(t.rows as u64),
                        t.soft_deleted.map(|n| count(n as u64)).unwrap_or_else(|| "-".into()),
                        count(t.created_last_hour as u64),
                        count(t.updated_last_hour as u64),
                    ]
                })
                .collect();
            super::print_table(
                &["  table", "rows", "soft-deleted", "created (last hour)", "updated (last hour)"],
                &rows,
            );
            let statuses: Vec<String> =
                v.orders_by_status.iter().map(|(s, n)| format!("{s} {}", count(*n as u64))).collect();
            println!("\norders by status: {}", if statuses.is_empty() { "none".into() } else { statuses.join(", ") });
            println!(
                "added columns: {}",
                if v.added_columns.is_empty() { "none".into() } else { v.added_columns.join(", ") }
            );
        }
    }
    Ok(0)
}

async fn run_activity(args: RunArgs) -> Result<u8> {
    let flags = Flags {
        orders_per_hour: args.orders_per_hour,
        events_per_hour: args.events_per_hour,
        users_per_hour: args.users_per_hour,
        status_updates_per_hour: args.status_updates_per_hour,
        plan_changes_per_hour: args.plan_changes_per_hour,
        soft_deletes_per_hour: args.soft_deletes_per_hour,
        hard_deletes_per_hour: args.hard_deletes_per_hour,
        duration: args.duration,
        ..Flags::default()
    };
    if args.schema_change_every.is_zero() || args.stats_every.is_zero() {
        return Err(Error::config("--schema-change-every and --stats-every must be longer than zero"));
    }
    if !(args.max_transactions_per_second.is_finite() && args.max_transactions_per_second > 0.0) {
        return Err(Error::config(format!(
            "--max-transactions-per-second {}: must be a positive number",
            args.max_transactions_per_second
        )));
    }
    let cfg = settings(&args.connection, flags)?;
    let mut client = cfg.database_url.connect().await?;
    simplyload_playground::create_schema(&client).await?;

    let mut options = ActivityOptions::new(cfg.rates);
    options.duration = cfg.duration;
    options.hard_deletes = args.hard_deletes;
    options.schema_change_every = args.schema_changes.then_some(args.schema_change_every);
    options.seed = args.seed;
    options.stats_every = args.stats_every;
    options.max_transactions_per_second = args.max_transactions_per_second;

    let json = args.json;
    // With --json, stdout carries only the final object.
    let say = move |line: String| if json { eprintln!("{line}") } else { println!("{line}") };
    let r = &cfg.rates;
    say(format!(
        "generating activity in {} (seed {}), per hour: {} orders, {} events, {} users, {} status changes, \
         {} plan changes, {} soft deletes{}{}",
        cfg.database_url,
        args.seed,
        rate(r.orders_per_hour),
        rate(r.events_per_hour),
        rate(r.users_per_hour),
        rate(r.status_updates_per_hour),
        rate(r.plan_changes_per_hour),
        rate(r.soft_deletes_per_hour),
        if args.hard_deletes { format!(", {} hard deletes", rate(r.hard_deletes_per_hour)) } else { String::new() },
        if args.schema_changes {
            format!("; a new column every {}", humantime::format_duration(args.schema_change_every))
        } else {
            String::new()
        },
    ));
    say(match cfg.duration {
        Some(d) => format!("running for {} (Ctrl+C stops earlier)", humantime::format_duration(round(d))),
        None => "running until Ctrl+C".to_owned(),
    });

    let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
    let signals = tokio::spawn(async move {
        shutdown_signal().await;
        eprintln!("stopping: finishing the transaction in flight (Ctrl+C again quits at once)");
        let _ = stop_tx.send(true);
        shutdown_signal().await;
        std::process::exit(130);
    });
    let mut activity = Activity::new(options);
    let result = activity
        .run(&mut client, &mut stop, &mut |t: &ActivityTotals| {
            let elapsed = humantime::format_duration(Duration::from_secs(t.elapsed_seconds as u64));
            say(format!("[{elapsed}] {}", t.summary()));
        })
        .await;
    signals.abort();
    let totals = activity.totals();
    if json {
        let mut v = serde_json::to_value(totals).map_err(|e| Error::internal(e.to_string()))?;
        v["changes"] = totals.changes().into();
        v["changes_per_second"] = per_second(totals).into();
        println!("{v}");
    } else {
        print_totals(totals);
    }
    result?;
    Ok(0)
}

fn print_totals(t: &ActivityTotals) {
    println!(
        "\nactivity totals: {} changes in {} transactions over {} ({:.1} changes/s)",
        count(t.changes()),
        count(t.transactions),
        humantime::format_duration(Duration::from_secs(t.elapsed_seconds.round() as u64)),
        per_second(t)
    );
    let rows = vec![
        vec![
            "  users".into(),
            count(t.users_inserted),
            format!("{} (plan)", count(t.users_updated)),
            count(t.users_soft_deleted),
            count(t.users_hard_deleted),
        ],
        vec![
            "  orders".into(),
            count(t.orders_inserted),
            format!("{} (status)", count(t.orders_updated)),
            "-".into(),
            count(t.orders_hard_deleted),
        ],
        vec!["  events".into(), count(t.events_inserted), "-".into(), "-".into(), count(t.events_hard_deleted)],
    ];
    super::print_table(&["  table", "inserted", "updated", "soft-deleted", "hard-deleted"], &rows);
    if !t.status_changes.is_empty() {
        let changes: Vec<String> = t.status_changes.iter().map(|(k, n)| format!("{k} {}", count(*n))).collect();
        println!("status changes: {}", changes.join(", "));
    }
    println!(
        "columns added: {}",
        if t.added_columns.is_empty() { "none".to_owned() } else { t.added_columns.join(", ") }
    );
    if t.transactions_rolled_back > 0 {
        println!("transactions rolled back (not counted above): {}", count(t.transactions_rolled_back));
    }
}

fn per_second(t: &ActivityTotals) -> f64 {
    if t.elapsed_seconds > 0.0 { (t.changes() as f64 / t.elapsed_seconds * 10.0).round() / 10.0 } else { 0.0 }
}

fn rate(per_hour: f64) -> String {
    if per_hour.fract() == 0.0 { count(per_hour as u64) } else { format!("{per_hour:.2}") }
}

fn round(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs_f64().round() as u64)
}

/// Ctrl+C, or SIGTERM (what `kill` and container runtimes send).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
