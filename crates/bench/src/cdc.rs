//! `simplyload bench cdc`: SimplyLoad's change decoding against
//! `pg_recvlogical` on the same changes, in the same run.
//!
//! Three slots are made before the changes: one read by SimplyLoad's
//! pgoutput decoder into Arrow (no staging), one by `pg_recvlogical` into
//! /dev/null with the same plugin options, and one by a whole CDC sync into
//! DuckDB (end to end). The figures that matter are the ratios.

use simplyload_app::format::count;
use simplyload_app::{SyncRequest, Trigger};
use simplyload_core::{Error, Result, StreamName, ValueLimits};
use simplyload_postgres::PostgresSource;
use simplyload_postgres::connect::pg_error;
use simplyload_postgres::pgoutput::{self, ChangeBuilder, ChangeColumns, Message};
use simplyload_postgres::replication::{self, ChangeStream};
use std::sync::Arc;
use std::time::Instant;

const TABLE: &str = "simplyload_bench_cdc";
const PUBLICATION: &str = "simplyload_bench_cdc";
const OURS: &str = "simplyload_bench_ours";
const THEIRS: &str = "simplyload_bench_recvlogical";

pub async fn run(database_url: String, changes: u64) -> Result<u8> {
    let source = Arc::new(PostgresSource::from_url("bench", &database_url)?);
    let client = source.connect().await?;
    let exec = |sql: String| {
        let c = &client;
        async move { c.batch_execute(&sql).await.map_err(|e| pg_error(&e, "setting up the benchmark")) }
    };
    // Start clean (an earlier run may have been interrupted; its end-to-end
    // slot, named for a state long gone, holds WAL).
    for slot in [OURS, THEIRS] {
        let _ = replication::drop_slot(&client, slot).await;
    }
    let stale: Vec<String> = client
        .query("SELECT slot_name::text FROM pg_replication_slots WHERE slot_name LIKE 'simplyload\\_bench\\_e2e%' AND NOT active", &[])
        .await
        .map_err(|e| pg_error(&e, "reading replication slots"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for slot in &stale {
        let _ = replication::drop_slot(&client, slot).await;
        let _ = exec(format!("DROP PUBLICATION IF EXISTS {}", simplyload_postgres::connect::quote_ident(slot))).await;
    }
    exec(format!(
        "DROP PUBLICATION IF EXISTS {PUBLICATION}; DROP TABLE IF EXISTS {TABLE};
         CREATE TABLE {TABLE} (id bigint PRIMARY KEY, status text NOT NULL, amount numeric(12,2), at timestamptz NOT NULL, doc jsonb);
         CREATE PUBLICATION {PUBLICATION} FOR TABLE {TABLE};"
    ))
    .await?;
    for slot in [OURS, THEIRS] {
        exec(format!("SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')")).await?;
    }
    // The end-to-end pipeline (DuckDB in a temporary folder) starts before the changes.
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("simplyload.yaml"),
        format!(
            "sources:\n  app:\n    type: postgres\n    url: {database_url}\n\
             destinations:\n  local:\n    type: duckdb\n    path: warehouse.duckdb\n\
             pipelines:\n  bench_e2e:\n    source: app\n    destination: local\n    mode: cdc\n    batch_max_rows: 1000000000\n    streams:\n      - public.{TABLE}\n"
        ),
    )?;
    let app = simplyload_app::App::load(Some(&dir.path().join("simplyload.yaml")))?;
    let progress: Arc<dyn simplyload_core::Progress> = Arc::new(simplyload_core::NoProgress);
    let e2e_sync = SyncRequest::new("bench_e2e", Trigger::Manual, progress);
    let first = app.sync(&e2e_sync).await?;
    if !first.succeeded() {
        return Err(Error::internal(format!("the end-to-end pipeline's first sync failed: {:?}", first.error)));
    }

    // The changes: inserts, then updates of half, then deletes of a tenth.
    let n = changes.max(10);
    let (inserts, updates, deletes) = (n * 10 / 16, n * 5 / 16, n - n * 10 / 16 - n * 5 / 16);
    println!(
        "applying {} changes ({} inserts, {} updates, {} deletes) …",
        count(n),
        count(inserts),
        count(updates),
        count(deletes)
    );
    let chunk = 50_000u64;
    let mut at = 0;
    while at < inserts {
        let end = (at + chunk).min(inserts);
        exec(format!(
            "INSERT INTO {TABLE} SELECT i, 'new', i * 0.01, now(), jsonb_build_object('i', i, 'tag', md5(i::text))
               FROM generate_series({}, {end}) i",
            at + 1
        ))
        .await?;
        at = end;
    }
    exec(format!("UPDATE {TABLE} SET status = 'paid', amount = amount + 1 WHERE id <= {updates}")).await?;
    exec(format!("DELETE FROM {TABLE} WHERE id > {}", inserts - deletes)).await?;
    let end: String = client
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .map_err(|e| pg_error(&e, "reading the WAL position"))?
        .get(0);
    let wal: i64 = client
        .query_one(
            &format!("SELECT pg_wal_lsn_diff('{end}', confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = '{OURS}'"),
            &[],
        )
        .await
        .map_err(|e| pg_error(&e, "measuring the WAL"))?
        .get(0);
    println!("{} of WAL to decode\n", simplyload_app::format::bytes(wal as u64));

    // pg_recvlogical, to /dev/null, up to the same position (a child: its own time and memory).
    // The connection by environment: the password never on its command line.
    let mut cmd = std::process::Command::new("pg_recvlogical");
    cmd.envs(source.options().libpq_env());
    let dbname = format!("dbname='{}'", source.database().replace('\\', "\\\\").replace('\'', "\\'"));
    cmd.args(["--dbname", &dbname, "--slot", THEIRS, "--start", "--endpos", &end, "--file", "/dev/null", "--no-loop"])
        .args(["-o", "proto_version=1", "-o", &format!("publication_names={PUBLICATION}"), "-o", "binary=true"]);
    let measured = crate::snapshot::measure(cmd, dir.path())
        .await
        .map_err(|e| e.context("pg_recvlogical (install the Postgres client tools)"))?;
    let (theirs, theirs_rss) = (measured.secs, measured.rss.unwrap_or(0));

    // SimplyLoad's decoder into Arrow, up to the same position.
    let stream = StreamName::new("public", TABLE);
    let catalog =
        simplyload_core::plan::discover(source.as_ref(), &simplyload_core::Selection::of([stream.clone()])).await?;
    let plan = simplyload_core::plan::plan_pipeline(
        "bench",
        &simplyload_config::PipelineConfig {
            streams: vec![simplyload_config::StreamConfig { name: stream.to_string(), ..Default::default() }],
            ..Default::default()
        },
        &catalog,
    )
    .pop()
    .ok_or_else(|| Error::internal("no plan"))?
    .1?;
    let decoders = {
        let pg = simplyload_postgres::discover::discover(&client, simplyload_postgres::discover::Scope::Table(&stream))
            .await?;
        let t = pg.into_iter().next().ok_or_else(|| Error::internal("bench table missing"))?;
        plan.table
            .columns
            .iter()
            .map(|c| t.columns.iter().find(|p| p.info.name == c.source_name).map(|p| p.plan.decoder))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Error::internal("bench column missing"))?
    };
    let names: Vec<String> = plan.table.columns.iter().map(|c| c.source_name.clone()).collect();
    reset_peak_rss();
    let base_rss = current_rss();
    let started = Instant::now();
    let mut s = ChangeStream::start(source.options(), OURS, PUBLICATION, 0).await?;
    s.set_stop_at(Some(replication::parse_lsn(&end)?));
    let mut builder: Option<ChangeBuilder> = None;
    let (mut decoded, mut rows) = (0u64, 0u64);
    while let Some((_, bytes)) = s.next().await? {
        match pgoutput::parse(&bytes)? {
            Message::Relation(rel) => {
                let cols = ChangeColumns::new(&rel, &names, &decoders)?;
                builder = Some(ChangeBuilder::new(
                    TABLE,
                    cols,
                    plan.table.source_schema(),
                    ValueLimits::STAGING,
                    false,
                    65_536,
                ));
            }
            Message::Insert { new: t, .. } | Message::Update { new: t, .. } | Message::Delete { old: t, .. } => {
                let b = builder.as_mut().ok_or_else(|| Error::data("a change before its Relation"))?;
                b.push(&t)?;
                decoded += 1;
                if b.rows() >= 65_536 {
                    rows += b.finish()?.num_rows() as u64;
                }
            }
            _ => {}
        }
    }
    if let Some(b) = builder.as_mut() {
        rows += b.finish()?.num_rows() as u64;
    }
    s.stop().await?;
    let ours = started.elapsed().as_secs_f64();
    let ours_rss = peak_rss().saturating_sub(base_rss);

    // End to end into DuckDB.
    reset_peak_rss();
    let base_rss = current_rss();
    let started = Instant::now();
    let e2e = app.sync(&e2e_sync).await?;
    let e2e_secs = started.elapsed().as_secs_f64();
    let e2e_rss = peak_rss().saturating_sub(base_rss);
    let e2e_rows = e2e.rows();

    // Clean up (the end-to-end pipeline's slot and publication are named for its state).
    let e2e_feed = app.feed_name("bench_e2e").await?.unwrap_or_default();
    for slot in [OURS, THEIRS, e2e_feed.as_str()] {
        let _ = replication::drop_slot(&client, slot).await;
    }
    let _ = exec(format!(
        "DROP PUBLICATION IF EXISTS {PUBLICATION}; DROP PUBLICATION IF EXISTS {}; DROP TABLE IF EXISTS {TABLE};",
        simplyload_postgres::connect::quote_ident(&e2e_feed)
    ))
    .await;

    if decoded != n || rows != n {
        return Err(Error::internal(format!("decoded {decoded} changes into {rows} rows, expected {n}")));
    }
    let rate = |secs: f64| n as f64 / secs.max(1e-9);
    let mb = simplyload_app::format::bytes;
    println!("{:<46} {:>10} {:>14} {:>12}", "", "seconds", "changes/s", "peak RSS");
    println!(
        "{:<46} {theirs:>10.2} {:>14} {:>12}",
        "pg_recvlogical → /dev/null (limit)",
        count(rate(theirs) as u64),
        mb(theirs_rss)
    );
    println!(
        "{:<46} {ours:>10.2} {:>14} {:>12}",
        "SimplyLoad pgoutput decoder → Arrow",
        count(rate(ours) as u64),
        format!("+{}", mb(ours_rss))
    );
    println!(
        "{:<46} {e2e_secs:>10.2} {:>14} {:>12}",
        "SimplyLoad CDC sync → DuckDB (end to end)",
        count(rate(e2e_secs) as u64),
        format!("+{}", mb(e2e_rss))
    );
    println!("(SimplyLoad's figures: the growth of this process's peak RSS over what it held before that side)");
    println!("\nratio decoder / pg_recvlogical: {:.2}", theirs / ours.max(1e-9));
    println!("ratio end to end / pg_recvlogical: {:.2}", theirs / e2e_secs.max(1e-9));
    println!("end-to-end sync loaded {} rows", count(e2e_rows));
    if !e2e.succeeded() {
        return Err(Error::internal(format!("the end-to-end sync failed: {:?}", e2e.error)));
    }
    Ok(0)
}

/// Peak resident memory of this process (Linux `VmHWM`), 0 when unknown.
fn peak_rss() -> u64 {
    status_kb("VmHWM:")
}

/// Resident memory of this process now (Linux `VmRSS`), 0 when unknown.
fn current_rss() -> u64 {
    status_kb("VmRSS:")
}

/// Starts the peak over from the current RSS (Linux: `5` into `clear_refs`).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}
