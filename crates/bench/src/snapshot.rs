//! `simplyload bench snapshot`: one table copied by every side in the same
//! run, alternating so all of them see the same machine:
//!
//! * `copy`: `COPY … TO STDOUT (FORMAT binary)` into nothing — what one
//!   Postgres reader can stream at most (in this process);
//! * `stage`: SimplyLoad's Postgres → Parquet staging alone;
//! * `duckdb`: `simplyload sync` end to end into a new DuckDB file;
//! * `dlt`: dlt with its connectorx backend into DuckDB (`replace`);
//! * `sling`: Sling into a CSV file (its DuckDB and Parquet targets
//!   download a DuckDB CLI at run time and fail offline).
//!
//! Every side but `copy` runs as a child process, timed from spawn to exit
//! (what a user waits for) with its peak RSS from `wait4`. dlt and Sling
//! come from the venv `scripts/bench-peers` makes. The figures that matter
//! are the ratios; absolute rates depend on the machine.

use futures::StreamExt;
use simplyload_app::format::{bytes, count};
use simplyload_core::config::{OnUnrepresentable, PipelineConfig, StreamConfig, SyncMode};
use simplyload_core::runner::{SnapshotJob, SyncOptions, stage_snapshot};
use simplyload_core::{Error, NoProgress, Result, Selection, StreamName, ValueLimits};
use simplyload_postgres::connect::pg_error;
use simplyload_postgres::{DEFAULT_SCHEMA, PostgresSource, qualified_name, schema_and_table};
use simplyload_staging::Staging;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

/// What `bench snapshot` measures.
#[derive(Debug, Clone, Default)]
pub struct SnapshotArgs {
    pub database_url: String,
    /// Tables, e.g. public.events.
    pub table: Vec<String>,
    /// Measurements of each side (the median is reported).
    pub runs: usize,
    /// The sides to run, of copy, stage, duckdb, dlt, sling (empty: all that are installed).
    pub sides: Vec<String>,
    /// Write the results as Markdown here.
    pub report: Option<PathBuf>,
    /// The environment file `scripts/bench-peers` writes (default: in its venv).
    pub peers_env: Option<PathBuf>,
    /// `snapshot_parallelism` for SimplyLoad's sides (default: its own).
    pub parallelism: Option<usize>,
    /// `snapshot_part_rows` for the end-to-end side (default: its own).
    pub part_rows: Option<u64>,
    /// Keep the work folder (staged files, DuckDB files, logs) and print where it is.
    pub keep: bool,
}

const ALL_SIDES: [&str; 5] = ["copy", "stage", "duckdb", "dlt", "sling"];

fn side_label(side: &str) -> &'static str {
    match side {
        "copy" => "COPY … TO STDOUT (FORMAT binary) → nothing",
        "stage" => "SimplyLoad Postgres → Parquet (staging)",
        "duckdb" => "SimplyLoad end to end → DuckDB",
        "dlt" => "dlt + connectorx → DuckDB",
        "sling" => "Sling → CSV",
        _ => "?",
    }
}

/// The peers' programs, from the file `scripts/bench-peers` writes.
#[derive(Debug, Default)]
struct Peers {
    python: Option<PathBuf>,
    sling: Option<PathBuf>,
}

fn peers(env_file: Option<&Path>) -> Peers {
    let default = std::env::var_os("SIMPLYLOAD_BENCH_VENV")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/simplyload/bench-venv")))
        .map(|v| v.join("peers.env"));
    let file = env_file.map(Path::to_path_buf).or(default);
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    if let Some(text) = file.and_then(|f| std::fs::read_to_string(f).ok()) {
        for line in text.lines() {
            if let Some((k, v)) = line.split_once('=') {
                vars.insert(k.trim().to_owned(), v.trim().trim_matches('"').to_owned());
            }
        }
    }
    // The environment wins over the file.
    let get =
        |k: &str| std::env::var(k).ok().or_else(|| vars.get(k).cloned()).map(PathBuf::from).filter(|p| p.exists());
    Peers { python: get("SIMPLYLOAD_PEERS_PYTHON"), sling: get("SLING_BINARY") }
}

/// One measurement of one side.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub secs: f64,
    /// Peak resident memory in bytes (`None` for the in-process COPY).
    pub rss: Option<u64>,
}

/// `bench snapshot`: see the module docs.
pub async fn snapshot(args: SnapshotArgs) -> Result<u8> {
    let runs = args.runs.max(1);
    let peers = peers(args.peers_env.as_deref());
    let mut sides: Vec<&str> = if args.sides.is_empty() {
        ALL_SIDES.to_vec()
    } else {
        let mut v = Vec::new();
        for s in &args.sides {
            let known = ALL_SIDES
                .iter()
                .find(|k| **k == s.as_str())
                .ok_or_else(|| Error::config(format!("unknown side `{s}`; the sides are {}", ALL_SIDES.join(", "))))?;
            v.push(*known);
        }
        v
    };
    let mut notes = Vec::new();
    sides.retain(|s| match *s {
        "dlt" if peers.python.is_none() => {
            notes.push("dlt: not installed (run scripts/bench-peers)".to_owned());
            false
        }
        "sling" if peers.sling.is_none() => {
            notes.push("Sling: not installed (run scripts/bench-peers)".to_owned());
            false
        }
        _ => true,
    });
    for n in &notes {
        println!("{n}");
    }
    let exe = std::env::current_exe()?;
    let work = tempfile::Builder::new().prefix("simplyload-bench-").tempdir()?;
    let source = Arc::new(PostgresSource::from_url("bench", &args.database_url)?);
    let client = source.connect().await?;
    let version: String = client
        .query_one("SHOW server_version", &[])
        .await
        .map_err(|e| pg_error(&e, "reading the server version"))?
        .get(0);
    let mut results = Vec::new();
    for table in &args.table {
        let name = StreamName::parse(table).map_err(Error::config)?.qualified(Some(DEFAULT_SCHEMA));
        let (schema, table_name) = schema_and_table(&name);
        let qualified = qualified_name(&name);
        let rows: i64 = client
            .query_one(&format!("SELECT count(*) FROM {qualified}"), &[])
            .await
            .map_err(|e| pg_error(&e, &format!("counting the rows of {name}")))?
            .get(0);
        let rows = rows as u64;
        println!("\ntable {name}: {} rows; {runs} run(s) of {}, alternating", count(rows), sides.join(", "));
        let mut times: BTreeMap<&str, Vec<Measured>> = BTreeMap::new();
        let mut wire = 0u64;
        for run in 1..=runs {
            let mut line = format!("  run {run}:");
            for side in &sides {
                let dir = work
                    .path()
                    .join(format!("{}-{side}-{run}", table_name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")));
                std::fs::create_dir_all(&dir)?;
                let m = match *side {
                    "copy" => {
                        let (m, n) = copy_limit(&client, &qualified).await?;
                        wire = n;
                        m
                    }
                    "stage" => {
                        let mut cmd = Command::new(&exe);
                        // The URL (and its password) by environment, not on a command line others can read.
                        cmd.args(["bench", "stage-once", "--table", table]).env("DATABASE_URL", &args.database_url);
                        cmd.arg("--dir").arg(&dir);
                        if let Some(p) = args.parallelism {
                            cmd.arg("--parallelism").arg(p.to_string());
                        }
                        measure(cmd, &dir).await?
                    }
                    "duckdb" => {
                        write_sync_config(&dir, &args, &name)?;
                        let mut cmd = Command::new(&exe);
                        cmd.args(["sync", "--config"]).arg(dir.join("simplyload.yaml")).arg("bench");
                        cmd.env("SIMPLYLOAD_BENCH_URL", &args.database_url);
                        let m = measure(cmd, &dir).await?;
                        check_count(&dir.join("warehouse.duckdb"), "simplyload", rows, "SimplyLoad")?;
                        m
                    }
                    "dlt" => {
                        let mut cmd = Command::new(peers.python.as_ref().expect("checked above"));
                        cmd.arg("-c").arg(DLT_SCRIPT).arg(schema).arg(table_name);
                        cmd.arg(dir.join("dlt.duckdb")).arg(dir.join("dlt"));
                        cmd.env("BENCH_PG", &args.database_url)
                            .env("RUNTIME__DLTHUB_TELEMETRY", "false")
                            .current_dir(&dir);
                        let m = measure(cmd, &dir).await?;
                        check_count(&dir.join("dlt.duckdb"), schema, rows, "dlt")?;
                        m
                    }
                    "sling" => {
                        let out = dir.join("out.csv");
                        let mut cmd = Command::new(peers.sling.as_ref().expect("checked above"));
                        cmd.args(["run", "--src-conn", "BENCH_PG", "--src-stream", &format!("{schema}.{table_name}")]);
                        cmd.arg("--tgt-object").arg(format!("file://{}", out.display()));
                        // Sling asks for TLS unless the URL says otherwise.
                        let url = if args.database_url.contains("sslmode=") {
                            args.database_url.clone()
                        } else {
                            format!(
                                "{}{}sslmode=disable",
                                args.database_url,
                                if args.database_url.contains('?') { '&' } else { '?' }
                            )
                        };
                        cmd.env("BENCH_PG", url)
                            .env("SLING_DISABLE_TELEMETRY", "true")
                            .env("SLING_HOME_DIR", dir.join("sling-home"))
                            // Its background update check goes nowhere (offline machines).
                            .env("HTTPS_PROXY", "http://127.0.0.1:9")
                            .env("HTTP_PROXY", "http://127.0.0.1:9")
                            .env("NO_PROXY", "127.0.0.1,localhost")
                            .current_dir(&dir);
                        let m = measure(cmd, &dir).await?;
                        let lines = count_lines(&out)?;
                        if lines != rows + 1 {
                            println!("  (Sling's CSV has {lines} lines for {rows} rows + a header)");
                        }
                        m
                    }
                    _ => unreachable!("sides are checked above"),
                };
                let _ = write!(line, "  {side} {:.2}s", m.secs);
                times.entry(side).or_default().push(m);
                // Outputs are not kept between runs (disk), unless asked.
                if !args.keep {
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
            println!("{line}");
        }
        results.push(TableResult { name: name.to_string(), rows, wire, times });
    }
    let text = render(&results, &sides);
    println!("\n{text}");
    if let Some(path) = &args.report {
        let mut md = String::new();
        let _ = writeln!(md, "# `simplyload bench snapshot`\n");
        let _ = writeln!(
            md,
            "Postgres {version}, {} cores; {runs} run(s) of each side, alternating; medians.\n",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        for n in &notes {
            let _ = writeln!(md, "- {n}");
        }
        md.push_str(&text);
        std::fs::write(path, md)?;
        println!("report written to {}", path.display());
    }
    if args.keep {
        println!("work folder kept: {}", work.keep().display());
    }
    Ok(0)
}

struct TableResult<'a> {
    name: String,
    rows: u64,
    wire: u64,
    times: BTreeMap<&'a str, Vec<Measured>>,
}

fn median(v: &[Measured]) -> Measured {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    let rss = v.iter().filter_map(|m| m.rss).max();
    Measured { secs: s[s.len() / 2].secs, rss }
}

/// The results as Markdown tables, with the ratios the targets are set in.
fn render(results: &[TableResult<'_>], sides: &[&str]) -> String {
    let mut out = String::new();
    for r in results {
        let _ = writeln!(
            out,
            "## {} ({} rows{})\n",
            r.name,
            count(r.rows),
            if r.wire > 0 { format!(", {} as COPY binary", bytes(r.wire)) } else { String::new() }
        );
        let _ = writeln!(out, "| side | median | rows/s | rate ÷ COPY | peak RSS |");
        let _ = writeln!(out, "|---|---:|---:|---:|---:|");
        let med: BTreeMap<&str, Measured> = r.times.iter().map(|(k, v)| (*k, median(v))).collect();
        let copy = med.get("copy").map(|m| m.secs);
        for side in sides {
            let Some(m) = med.get(side) else { continue };
            let ratio = copy.map_or("—".to_owned(), |c| format!("{:.2}", c / m.secs));
            let rss = m.rss.map_or("—".to_owned(), bytes);
            let _ = writeln!(
                out,
                "| {} | {:.2} s | {} | {ratio} | {rss} |",
                side_label(side),
                m.secs,
                count((r.rows as f64 / m.secs) as u64)
            );
        }
        let ours = med.get("duckdb").map(|m| m.secs);
        let mut lines = Vec::new();
        if let (Some(c), Some(s)) = (copy, med.get("stage")) {
            lines.push(format!("staging ÷ COPY: **{:.2}** (target ≥ 0.8)", c / s.secs));
        }
        if let (Some(c), Some(o)) = (copy, ours) {
            lines.push(format!("end to end ÷ COPY: **{:.2}** (target ≥ 0.5)", c / o));
        }
        if let (Some(o), Some(d)) = (ours, med.get("dlt")) {
            lines.push(format!("end to end ÷ dlt: **{:.2}×** as fast (target ≥ 2)", d.secs / o));
        }
        if let (Some(o), Some(s)) = (ours, med.get("sling")) {
            lines.push(format!("end to end ÷ Sling (CSV): **{:.2}×** as fast", s.secs / o));
        }
        if !lines.is_empty() {
            let _ = writeln!(out, "\n{}", lines.iter().map(|l| format!("- {l}")).collect::<Vec<_>>().join("\n"));
        }
        out.push('\n');
    }
    out
}

/// `COPY … TO STDOUT (FORMAT binary)` into nothing: its time and wire size.
async fn copy_limit(client: &tokio_postgres::Client, qualified: &str) -> Result<(Measured, u64)> {
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
    Ok((Measured { secs: started.elapsed().as_secs_f64(), rss: None }, n))
}

/// Runs a child to its end with its output in `dir/out.log`; its wall time
/// and peak RSS (`wait4`). A failed child is an error carrying its log's tail.
pub async fn measure(mut cmd: Command, dir: &Path) -> Result<Measured> {
    let log_path = dir.join("out.log");
    let log = std::fs::File::create(&log_path)?;
    cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    let program = cmd.get_program().to_string_lossy().into_owned();
    let started = Instant::now();
    let child = cmd.spawn().map_err(|e| Error::from(e).context(format!("starting {program}")))?;
    let pid = child.id() as libc::pid_t;
    let (status, rss) = tokio::task::spawn_blocking(move || {
        let mut status = 0;
        // SAFETY: `rusage` is plain data that wait4 fills in; the child is
        // ours and is reaped here (std's `Child` is never waited on).
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let r = loop {
            let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
            // A signal to this thread interrupts the wait, not the child.
            if r != -1 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break r;
            }
        };
        (if r == pid { Some(status) } else { None }, usage.ru_maxrss as u64 * 1024)
    })
    .await
    .map_err(|e| Error::internal(format!("waiting for {program}: {e}")))?;
    let secs = started.elapsed().as_secs_f64();
    drop(child);
    let ok = status.is_some_and(|s| libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0);
    if !ok {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
        return Err(Error::internal(format!("{program} failed:\n{}", tail.join("\n"))));
    }
    Ok(Measured { secs, rss: Some(rss) })
}

/// The end-to-end side's config: a full refresh of one table into a new DuckDB file.
fn write_sync_config(dir: &Path, args: &SnapshotArgs, name: &StreamName) -> Result<()> {
    // A JSON string is a YAML double-quoted scalar; `$` is escaped from
    // substitution. The URL (and its password) comes from the environment.
    let quote = |s: &str| serde_json::to_string(&s.replace('$', "$$")).expect("a string serializes");
    let mut extra = String::new();
    if let Some(p) = args.parallelism {
        let _ = writeln!(extra, "    snapshot_parallelism: {p}");
    }
    if let Some(n) = args.part_rows {
        let _ = writeln!(extra, "    snapshot_part_rows: {n}");
    }
    std::fs::write(
        dir.join("simplyload.yaml"),
        format!(
            "sources:\n  pg:\n    type: postgres\n    url: {}\n\
             destinations:\n  local:\n    type: duckdb\n    path: warehouse.duckdb\n\
             pipelines:\n  bench:\n    source: pg\n    destination: local\n    mode: full_refresh\n    table_name: \"{{table}}\"\n{extra}    streams:\n      - name: {}\n",
            "\"${SIMPLYLOAD_BENCH_URL}\"",
            quote(&name.to_string()),
        ),
    )?;
    Ok(())
}

fn duck_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Checks a side loaded every row into the one table it made in `schema`
/// (each tool names it its own way; their bookkeeping tables start with `_`).
fn check_count(db: &Path, schema: &str, rows: u64, who: &str) -> Result<()> {
    let conn = simplyload_duckdb::duckdb::Connection::open_with_flags(
        db,
        simplyload_duckdb::duckdb::Config::default()
            .access_mode(simplyload_duckdb::duckdb::AccessMode::ReadOnly)
            .map_err(|e| Error::internal(e.to_string()))?,
    )
    .map_err(|e| Error::internal(format!("opening {}: {e}", db.display())))?;
    let tables: Vec<String> = conn
        .prepare("SELECT table_name FROM information_schema.tables WHERE table_schema = ? AND table_name NOT LIKE '\\_%' ESCAPE '\\'")
        .and_then(|mut st| st.query_map([schema], |r| r.get::<_, String>(0))?.collect())
        .map_err(|e| Error::internal(format!("listing the tables of {}: {e}", db.display())))?;
    let [table] = tables.as_slice() else {
        return Err(Error::internal(format!(
            "{who} made {} tables in {schema} of {}: {tables:?}",
            tables.len(),
            db.display()
        )));
    };
    let table = format!("{}.{}", duck_ident(schema), duck_ident(table));
    let n: i64 = conn
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .map_err(|e| Error::internal(format!("counting {table} in {}: {e}", db.display())))?;
    if n as u64 != rows {
        return Err(Error::internal(format!("{who} loaded {n} rows into {table} but the source has {rows}")));
    }
    Ok(())
}

fn count_lines(path: &Path) -> Result<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::from(e).context(format!("opening {}", path.display())))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            return Ok(n);
        }
        n += buf[..k].iter().filter(|b| **b == b'\n').count() as u64;
    }
}

/// dlt's `sql_table` with the connectorx backend into DuckDB, `replace`
/// (arguments: schema, table, DuckDB file, dlt's work folder; the URL in
/// `$BENCH_PG`); prints the rows it loaded. SQLAlchemy 2.1 reads a plain
/// `postgresql://` as psycopg 3, so the driver is named; dlt drops it again
/// for connectorx.
const DLT_SCRIPT: &str = r#"
import os, sys, dlt
from dlt.sources.sql_database import sql_table
schema, table, db_path, work_dir = sys.argv[1:5]
scheme, _, rest = os.environ["BENCH_PG"].partition("://")
url = "postgresql+psycopg2://" + rest if scheme in ("postgres", "postgresql") else os.environ["BENCH_PG"]
src = sql_table(credentials=url, schema=schema, table=table, backend="connectorx", chunk_size=100000)
p = dlt.pipeline(pipeline_name="simplyload_bench", pipelines_dir=work_dir,
                 destination=dlt.destinations.duckdb(db_path), dataset_name=schema)
p.run(src, write_disposition="replace")
print(sum(n for t, n in p.last_trace.last_normalize_info.row_counts.items() if not t.startswith("_dlt_")))
"#;

/// `bench stage-once`: one Postgres → Parquet staging of a table (a child
/// of `bench snapshot`, so its time and memory are its own).
pub async fn stage_once(database_url: &str, table: &str, dir: &Path, parallelism: Option<usize>) -> Result<u8> {
    let name = StreamName::parse(table).map_err(Error::config)?.qualified(Some(DEFAULT_SCHEMA));
    let source = Arc::new(PostgresSource::from_url("bench", database_url)?);
    let catalog = simplyload_core::plan::discover(source.as_ref(), &Selection::of([name.clone()])).await?;
    let pipeline = PipelineConfig {
        source: "bench".into(),
        destination: "bench".into(),
        mode: SyncMode::FullRefresh,
        on_unrepresentable: OnUnrepresentable::Report,
        streams: vec![StreamConfig { name: name.to_string(), ..Default::default() }],
        ..Default::default()
    };
    let plan = simplyload_core::plan::plan_pipeline("bench", &pipeline, &catalog)
        .pop()
        .ok_or_else(|| Error::not_found(format!("table {name} in the source")))?
        .1?;
    let staging = Staging::local(dir)?;
    let mut options = SyncOptions::default();
    if let Some(p) = parallelism {
        options.snapshot_parallelism = p.max(1);
    }
    let (manifest, _) = stage_snapshot(SnapshotJob {
        source: source.clone(),
        staging: &staging,
        pipeline: "bench",
        table: plan.table.clone(),
        limits: ValueLimits::STAGING,
        on_unrepresentable: OnUnrepresentable::Report,
        options: &options,
        sync_id: 0,
        batch_id: 1,
        progress: &NoProgress,
        cursor: None,
        soft_delete: None,
        incremental: None,
        merge_full_read: false,
        overlap: None,
        feed_snapshot: None,
        resumable: None,
        parts: None,
        cancel: None,
    })
    .await?;
    println!("staged {} rows in {} files ({})", manifest.row_count, manifest.files.len(), bytes(manifest.byte_count()));
    Ok(0)
}
