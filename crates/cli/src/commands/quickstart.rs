//! `simplyload quickstart [--dir DIR]`: a throwaway Postgres with the
//! playground schema and a few thousand rows, a `simplyload.yaml` for it, one
//! sync into `DIR/warehouse.duckdb`, a count check, and the server stopped.

use crate::progress::{SyncProgress, count};
use simplyload_app::{SyncRequest, Trigger};
use simplyload_core::{Error, Progress, Result};
use simplyload_playground::SeedCounts;
use simplyload_postgres::local::{LocalOptions, LocalPostgres};
use std::path::Path;
use std::sync::Arc;

/// The demo's size: "a few thousand rows".
const DEMO: SeedCounts = SeedCounts { users: 500, orders: 2000, events: 5000 };
const PIPELINE: &str = "playground_to_duckdb";

pub async fn run(dir: &Path, bars: Option<indicatif::MultiProgress>) -> Result<u8> {
    std::fs::create_dir_all(dir).map_err(|e| Error::from(e).context(format!("creating {}", dir.display())))?;
    let dir = dir.canonicalize()?;
    println!("starting a throwaway Postgres (its data lives in a temp folder, removed at the end)…");
    let server = tokio::task::spawn_blocking(|| LocalPostgres::start(&LocalOptions::default()))
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
    println!("  Postgres is listening on 127.0.0.1:{}", server.port());
    let outcome = demo(&server, &dir, bars).await;
    // Stop the server whatever happened.
    let mut server = server;
    let stopped = tokio::task::spawn_blocking(move || {
        let r = server.stop();
        drop(server);
        r
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))?;
    match stopped {
        Ok(()) => println!("\nthe throwaway Postgres is stopped and its data removed"),
        Err(e) => eprintln!("warning: stopping the throwaway Postgres: {e}"),
    }
    let ok = outcome?;
    println!(
        "\nexplore the copy:  duckdb {}/warehouse.duckdb  (tables in schema simplyload)\n\
         the config it used: {}/simplyload.yaml (its Postgres is gone; point `url` at yours)",
        dir.display(),
        dir.display()
    );
    Ok(if ok { 0 } else { crate::EXIT_FAILED })
}

async fn demo(server: &LocalPostgres, dir: &Path, bars: Option<indicatif::MultiProgress>) -> Result<bool> {
    let admin = simplyload_postgres::PostgresSource::from_url("quickstart", &server.url("postgres"))?;
    let client = admin.connect().await?;
    client
        .batch_execute("DROP DATABASE IF EXISTS playground")
        .await
        .map_err(|e| simplyload_postgres::connect::pg_error(&e, "dropping an old playground database"))?;
    client
        .batch_execute("CREATE DATABASE playground")
        .await
        .map_err(|e| simplyload_postgres::connect::pg_error(&e, "creating the playground database"))?;
    let url = server.url("playground");
    let source = simplyload_postgres::PostgresSource::from_url("playground", &url)?;
    let client = source.connect().await?;
    println!("creating the playground schema (users, orders, events) and demo rows…");
    simplyload_playground::create_schema(&client).await?;
    simplyload_playground::seed(&client, DEMO, 42).await?;

    let config_path = dir.join("simplyload.yaml");
    std::fs::write(
        &config_path,
        format!(
            "# Written by `simplyload quickstart`.\n\
             state: .simplyload/state.db\n\
             staging: .simplyload/staging\n\
             sources:\n  playground:\n    type: postgres\n    url: {url}\n\
             destinations:\n  warehouse:\n    type: duckdb\n    path: warehouse.duckdb\n\
             pipelines:\n  {PIPELINE}:\n    source: playground\n    destination: warehouse\n    mode: full_refresh\n    streams:\n      - public.users\n      - public.orders\n      - public.events\n"
        ),
    )?;
    println!("wrote {}\n\nsyncing…", config_path.display());
    let app = super::app(Some(&config_path))?;
    let progress: Arc<dyn Progress> = Arc::new(SyncProgress::new(bars));
    let request = SyncRequest::new(PIPELINE, Trigger::Manual, progress);
    let report = app.sync(&request).await?;
    super::sync::print_report(&report);
    if !report.succeeded() {
        return Ok(false);
    }

    println!("\nsource vs destination:");
    let dest = app.destination("warehouse")?;
    let mut rows = Vec::new();
    let mut all_equal = true;
    for (table, n) in simplyload_playground::counts(&client).await? {
        let dest_table = report
            .streams
            .iter()
            .find(|s| s.stream == format!("public.{table}"))
            .map(|s| s.table.clone())
            .unwrap_or_default();
        let d = dest.row_count(&dest_table).await?.unwrap_or(0);
        let equal = d == n as u64;
        all_equal &= equal;
        rows.push(vec![
            format!("  public.{table}"),
            count(n as u64),
            format!("simplyload.{dest_table}"),
            count(d),
            if equal { "ok".into() } else { "DIFFERENT".into() },
        ]);
    }
    super::print_table(&["  source table", "rows", "destination table", "rows", "check"], &rows);
    Ok(all_equal)
}
