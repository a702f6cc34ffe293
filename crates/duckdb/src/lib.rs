//! The DuckDB destination: the embedded default, with the same contract as
//! Snowflake (DESIGN.md §3, §7) so every semantic is tested on one machine.
//!
//! A load opens the database file, runs one transaction — stage the batch's
//! Parquet files as a temporary view, shape the target, replace or merge,
//! record the batches in `_simplyload_batches` — and closes the file again,
//! because a DuckDB file has one writer at a time: between loads,
//! `reconcile` and analysts can open it.
//!
//! This is the only crate that links DuckDB, so the rest of the workspace
//! builds without its C++.

use duckdb::{Connection, params};
use simplyload_core::canon::{Canon, canon_from_arrow, uuid_text};
use simplyload_core::reconcile::{SCAN_BATCH, ScanRequest, ScanSender, ScannedRow};
use simplyload_core::schema::meta;
use simplyload_core::{
    BatchManifest, CheckReport, Column, Destination, Error, ErrorKind, LoadKind, LoadOutcome, LoadRequest, LocalFile,
    Result, RowChanges, SqlType, TableSpec, ValueLimits,
};
use std::path::{Path, PathBuf};
use std::time::Duration;
use uuid::Uuid;

/// The schema every table is created in (DESIGN.md §4).
/// The schema tables land in unless the destination or pipeline names another.
pub const DEFAULT_SCHEMA: &str = "simplyload";
/// DuckDB's default takes 80% of RAM; a loader should not. Appending a
/// part of a full refresh took the same time at 128MB as at 1GB, and the
/// process's peak memory fell by 60 MB (docs/benchmarks.md); merges spill
/// to a temporary file past it.
pub const DEFAULT_MEMORY_LIMIT: &str = "256MB";
/// DuckDB threads for a load beside the read of the next part (Postgres's
/// COPY and SimplyLoad's decoding take about two cores): on 2 cores a
/// second DuckDB thread made the sync no faster and its peak memory 40 MB
/// higher (docs/benchmarks.md). Half the cores, at least one. A load with
/// the machine to itself (the last one of a read) uses every core.
pub fn default_threads() -> u32 {
    (cores() / 2).max(1)
}

fn cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as u32
}

/// How long to wait for another process to release the database file.
const LOCK_WAIT: Duration = Duration::from_secs(30);

pub use duckdb;

/// A DuckDB database file as a destination.
#[derive(Debug, Clone)]
pub struct DuckdbDestination {
    path: PathBuf,
    memory_limit: String,
    threads: Option<u32>,
    /// Where its tables (and `_simplyload_batches`) are.
    schema: String,
}

impl DuckdbDestination {
    pub fn new(path: &Path) -> DuckdbDestination {
        DuckdbDestination {
            path: path.to_path_buf(),
            memory_limit: DEFAULT_MEMORY_LIMIT.into(),
            threads: None,
            schema: DEFAULT_SCHEMA.into(),
        }
    }

    pub fn from_config(cfg: &simplyload_core::config::DuckdbDestinationConfig, base_dir: &Path) -> DuckdbDestination {
        let p = Path::new(&cfg.path);
        let path = if p.is_absolute() { p.to_path_buf() } else { base_dir.join(p) };
        DuckdbDestination {
            path,
            memory_limit: cfg.memory_limit.clone().unwrap_or_else(|| DEFAULT_MEMORY_LIMIT.into()),
            threads: cfg.threads,
            schema: cfg.schema.clone().unwrap_or_else(|| DEFAULT_SCHEMA.into()),
        }
    }

    /// The same file with its tables in `schema`.
    pub fn with_schema(self, schema: &str) -> DuckdbDestination {
        DuckdbDestination { schema: schema.to_owned(), ..self }
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the file for writing, waiting a while if another process holds
    /// it; DuckDB uses the configured threads, or half the cores.
    pub fn open(&self) -> Result<Connection> {
        self.open_with_threads(self.threads.unwrap_or_else(default_threads))
    }

    /// [`Self::open`] with DuckDB using `threads` threads.
    fn open_with_threads(&self, threads: u32) -> Result<Connection> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::from(e).context(format!("cannot create the folder of DuckDB file {}", self.path.display()))
            })?;
        }
        let started = std::time::Instant::now();
        let conn = loop {
            match Connection::open(&self.path) {
                Ok(c) => break c,
                Err(e) if is_lock_error(&e) && started.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => {
                    let kind = if is_lock_error(&e) { ErrorKind::Busy } else { ErrorKind::Internal };
                    let err = Error::new(kind, format!("cannot open DuckDB file {}: {e}", self.path.display()));
                    return Err(if kind == ErrorKind::Busy {
                        err.with_hint(
                            "another program has the file open for writing; close it (DuckDB allows one writer)",
                        )
                    } else {
                        err
                    });
                }
            }
        };
        conn.execute_batch(&format!("SET memory_limit = {};", literal(&self.memory_limit)))
            .map_err(|e| db_error(e, "setting memory_limit"))?;
        // Rows carry their own order (`_simplyload_version`); keeping the
        // insertion order costs CPU (5% on one thread; on two, 60% more CPU
        // for the same rows).
        conn.execute_batch("SET preserve_insertion_order = false;")
            .map_err(|e| db_error(e, "setting preserve_insertion_order"))?;
        conn.execute_batch(&format!("SET threads = {threads};")).map_err(|e| db_error(e, "setting threads"))?;
        Ok(conn)
    }

    /// Runs `f` on an existing table; `None` when the file or the table does not exist.
    async fn with_table<T: Send + 'static>(
        &self,
        table: &str,
        f: impl FnOnce(&Connection, &str, &str) -> Result<T> + Send + 'static,
    ) -> Result<Option<T>> {
        if !self.path.exists() {
            return Ok(None);
        }
        let table = table.to_owned();
        self.blocking(move |me| {
            let conn = me.open()?;
            if !table_exists(&conn, &me.schema, &table)? {
                return Ok(None);
            }
            f(&conn, &me.schema, &table).map(Some)
        })
        .await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&DuckdbDestination) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .map_err(|e| Error::internal(format!("DuckDB task failed: {e}")))?
    }
}

fn is_lock_error(e: &duckdb::Error) -> bool {
    let s = e.to_string();
    s.contains("Could not set lock") || s.contains("Conflicting lock")
}

fn db_error(e: duckdb::Error, what: &str) -> Error {
    Error::new(ErrorKind::Internal, format!("DuckDB, {what}: {e}"))
}

/// Quotes an identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `"simplyload"."table"`.
pub fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", ident(schema), ident(table))
}

/// DuckDB's column type for a logical type (DESIGN.md §5).
pub fn duck_type(t: &SqlType) -> String {
    match t {
        SqlType::Int16 => "SMALLINT".into(),
        SqlType::Int32 => "INTEGER".into(),
        SqlType::Int64 => "BIGINT".into(),
        SqlType::Decimal { precision, scale } => format!("DECIMAL({precision},{scale})"),
        SqlType::Float32 => "REAL".into(),
        SqlType::Float64 => "DOUBLE".into(),
        SqlType::Text => "VARCHAR".into(),
        SqlType::Boolean => "BOOLEAN".into(),
        SqlType::Date => "DATE".into(),
        SqlType::Timestamp => "TIMESTAMP".into(),
        SqlType::TimestampTz => "TIMESTAMPTZ".into(),
        SqlType::Time => "TIME".into(),
        SqlType::Uuid => "UUID".into(),
        SqlType::Json => "JSON".into(),
        SqlType::Binary => "BLOB".into(),
    }
}

/// The logical type of a DuckDB column type (as `information_schema` prints it).
fn sql_type_of(duck: &str) -> Option<SqlType> {
    let t = duck.to_ascii_uppercase().replace(' ', "");
    Some(match t.as_str() {
        "SMALLINT" | "INT2" => SqlType::Int16,
        "INTEGER" | "INT" | "INT4" => SqlType::Int32,
        "BIGINT" | "INT8" => SqlType::Int64,
        "REAL" | "FLOAT" | "FLOAT4" => SqlType::Float32,
        "DOUBLE" | "FLOAT8" => SqlType::Float64,
        d if d.starts_with("DECIMAL(") => {
            let inner = d.trim_start_matches("DECIMAL(").trim_end_matches(')');
            let (p, s) = inner.split_once(',')?;
            SqlType::Decimal { precision: p.parse().ok()?, scale: s.parse().ok()? }
        }
        _ => return None,
    })
}

/// Whether a type from `information_schema.columns.data_type` is the type we create.
fn same_type(info: &str, created: &str) -> bool {
    let norm = |t: &str| match t.to_ascii_uppercase().replace(' ', "").as_str() {
        "REAL" | "FLOAT" | "FLOAT4" => "FLOAT".to_owned(),
        "TIMESTAMPTZ" | "TIMESTAMPWITHTIMEZONE" => "TIMESTAMPTZ".to_owned(),
        "INT" | "INTEGER" | "INT4" => "INTEGER".to_owned(),
        "INT8" | "BIGINT" => "BIGINT".to_owned(),
        "INT2" | "SMALLINT" => "SMALLINT".to_owned(),
        other => other.to_owned(),
    };
    norm(info) == norm(created)
}

/// The metadata columns of a table and their types.
fn meta_columns(table: &TableSpec) -> Vec<(&'static str, &'static str)> {
    let mut cols = vec![(meta::SYNCED_AT, "TIMESTAMPTZ"), (meta::DELETED, "BOOLEAN"), (meta::VERSION, "DECIMAL(38,0)")];
    if !table.has_key() {
        cols.push((meta::ID, "VARCHAR"));
        cols.push((meta::INDEX, "BIGINT"));
    }
    cols
}

/// `CREATE TABLE` for a table spec.
pub fn create_table_sql(schema: &str, table: &TableSpec) -> String {
    let mut cols: Vec<String> =
        table.columns.iter().map(|c| format!("{} {}", ident(&c.name), duck_type(&c.sql_type))).collect();
    cols.extend(meta_columns(table).into_iter().map(|(n, t)| format!("{} {t}", ident(n))));
    format!("CREATE TABLE IF NOT EXISTS {} (\n  {}\n)", qualified(schema, &table.name), cols.join(",\n  "))
}

fn batches_ddl(schema: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (
  pipeline_id VARCHAR NOT NULL,
  stream VARCHAR NOT NULL,
  batch_id BIGINT NOT NULL,
  row_count BIGINT NOT NULL,
  loaded_at TIMESTAMPTZ NOT NULL
)",
        qualified(schema, meta::BATCHES_TABLE)
    )
}

/// The expression that turns a staged column into the target column's type.
fn cast(c: &Column) -> String {
    let q = format!("s.{}", ident(&c.name));
    match c.sql_type {
        SqlType::Uuid => format!("CAST({q} AS UUID)"),
        SqlType::Json => format!("CAST({q} AS JSON)"),
        _ => q,
    }
}

#[async_trait::async_trait]
impl Destination for DuckdbDestination {
    fn kind(&self) -> &'static str {
        "duckdb"
    }

    fn limits(&self) -> ValueLimits {
        // DuckDB stores timestamps as i64 microseconds and dates as i32 days,
        // and reserves the extremes for ±infinity.
        ValueLimits { timestamp_us: (-i64::MAX + 1, i64::MAX - 1), date_days: (-i32::MAX + 1, i32::MAX - 1) }
    }

    async fn check(&self) -> Result<CheckReport> {
        self.blocking(|me| {
            let mut report = CheckReport::default();
            match me.open() {
                Ok(conn) => {
                    let r = conn
                        .execute_batch(&format!("CREATE SCHEMA IF NOT EXISTS {};", ident(&me.schema)))
                        .map_err(|e| db_error(e, "creating the schema"));
                    match r {
                        Ok(()) => report.pass("open", format!("DuckDB file {} is writable", me.path.display())),
                        Err(e) => report.fail("open", e.to_string(), None),
                    }
                }
                Err(e) => report.fail("open", e.to_string(), None),
            }
            Ok(report)
        })
        .await
    }

    async fn loaded_batches(&self, pipeline_id: Uuid, stream: &str, batch_ids: &[u64]) -> Result<Vec<u64>> {
        if !self.path.exists() {
            return Ok(Vec::new());
        }
        let stream = stream.to_owned();
        let ids = batch_ids.to_vec();
        self.blocking(move |me| {
            let conn = me.open()?;
            loaded_ids(&conn, &me.schema, pipeline_id, &stream, &ids)
        })
        .await
    }

    async fn load(&self, request: LoadRequest<'_>) -> Result<LoadOutcome> {
        // Bring every staged file here first (no-op for a local staging folder).
        let mut files: Vec<LocalFile> = Vec::new();
        for b in request.batches {
            for f in &b.files {
                files.push(request.staging.local_file(&f.key).await?);
            }
        }
        let table = request.table.clone();
        let kind = request.kind;
        let batches: Vec<BatchManifest> = request.batches.to_vec();
        let pipeline_id = request.pipeline_id;
        let paths: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
        let threads = self.threads.unwrap_or_else(|| if request.beside_read { default_threads() } else { cores() });
        let outcome = self
            .blocking(move |me| {
                let mut conn = me.open_with_threads(threads)?;
                load_sync(&mut conn, &me.schema, pipeline_id, &table, kind, &batches, &paths)
            })
            .await;
        drop(files);
        outcome
    }

    async fn row_count(&self, table: &str) -> Result<Option<u64>> {
        self.with_table(table, live_rows).await
    }

    async fn columns(&self, table: &str) -> Result<Option<Vec<String>>> {
        self.with_table(table, |conn, schema, table| {
            Ok(existing_columns(conn, schema, table)?.into_iter().map(|(name, _)| name).collect())
        })
        .await
    }

    async fn scan(&self, request: ScanRequest, out: ScanSender) -> Result<()> {
        if !self.path.exists() {
            return Ok(());
        }
        self.blocking(move |me| {
            let conn = me.open()?;
            scan_table(&conn, &me.schema, &request, &out)
        })
        .await
    }
}

/// A key value as a DuckDB literal of the key column's type.
fn key_literal(v: &Canon, t: SqlType) -> Result<String> {
    Ok(match (v, t) {
        (Canon::Int(i), _) => i.to_string(),
        (Canon::Decimal(d), SqlType::Decimal { precision, scale }) => {
            format!("CAST({} AS DECIMAL({precision},{scale}))", literal(d))
        }
        (Canon::Text(s), _) => literal(s),
        (Canon::Bool(b), _) => b.to_string(),
        (Canon::Uuid(u), _) => format!("CAST({} AS UUID)", literal(&uuid_text(*u))),
        (Canon::Date(d), _) => format!("CAST(DATE '1970-01-01' + {d} AS DATE)"),
        (Canon::Timestamp(us), SqlType::TimestampTz) => format!("CAST(make_timestamp({us}::BIGINT) AS TIMESTAMPTZ)"),
        (Canon::Timestamp(us), _) => format!("make_timestamp({us}::BIGINT)"),
        (other, t) => {
            return Err(Error::internal(format!("reconcile: cannot use {other} as a {} key bound", t.name())));
        }
    })
}

/// `key > bound`, lexicographically over the key columns.
fn key_greater(keys: &[(String, SqlType)], bound: &[Canon]) -> Result<String> {
    let mut ors = Vec::new();
    for i in 0..keys.len() {
        let mut ands = Vec::new();
        for (j, (k, t)) in keys.iter().enumerate().take(i) {
            ands.push(format!("{} = {}", ident(k), key_literal(&bound[j], *t)?));
        }
        ands.push(format!("{} > {}", ident(&keys[i].0), key_literal(&bound[i], keys[i].1)?));
        ors.push(format!("({})", ands.join(" AND ")));
    }
    Ok(format!("({})", ors.join(" OR ")))
}

fn scan_table(conn: &Connection, schema: &str, request: &ScanRequest, out: &ScanSender) -> Result<()> {
    let table = &request.table;
    if !table_exists(conn, schema, &table.name)? {
        return Ok(());
    }
    let existing: Vec<String> = existing_columns(conn, schema, &table.name)?.into_iter().map(|(n, _)| n).collect();
    let mut select: Vec<String> = table
        .columns
        .iter()
        .map(|c| {
            if existing.contains(&c.name) {
                ident(&c.name)
            } else {
                format!("CAST(NULL AS {})", duck_type(&c.sql_type))
            }
        })
        .collect();
    select.push(format!("coalesce({}, false)", ident(meta::DELETED)));
    let keys: Vec<(String, SqlType)> = table
        .key
        .iter()
        .map(|k| {
            table
                .column(k)
                .map(|c| (c.name.clone(), c.sql_type))
                .ok_or_else(|| Error::internal(format!("reconcile: key {k} is not a column of {}", table.name)))
        })
        .collect::<Result<_>>()?;
    let key_idx: Vec<usize> =
        table.key.iter().filter_map(|k| table.columns.iter().position(|c| &c.name == k)).collect();
    let mut predicates = Vec::new();
    if let Some(after) = &request.range.after {
        predicates.push(key_greater(&keys, after)?);
    }
    if let Some(upto) = &request.range.upto {
        predicates.push(format!("NOT {}", key_greater(&keys, upto)?));
    }
    let mut sql = format!("SELECT {} FROM {}", select.join(", "), qualified(schema, &table.name));
    if !predicates.is_empty() {
        sql.push_str(&format!(" WHERE {}", predicates.join(" AND ")));
    }
    tracing::debug!(table = %table.name, sql = %sql, "reconcile destination query");
    let mut stmt = conn.prepare(&sql).map_err(|e| db_error(e, &format!("reading {}", table.name)))?;
    let batches = stmt.query_arrow([]).map_err(|e| db_error(e, &format!("reading {}", table.name)))?;
    let closed = || Error::internal("reconcile stopped reading");
    let mut group = Vec::with_capacity(SCAN_BATCH);
    for batch in batches {
        let flags = batch.column(table.columns.len()).clone();
        let flags = flags
            .as_any()
            .downcast_ref::<duckdb::arrow::array::BooleanArray>()
            .ok_or_else(|| Error::internal("reconcile: _simplyload_deleted is not BOOLEAN"))?
            .clone();
        for row in 0..batch.num_rows() {
            let mut hashes = Vec::with_capacity(table.columns.len());
            let mut key = vec![Canon::Null; key_idx.len()];
            for (i, c) in table.columns.iter().enumerate() {
                let v = canon_from_arrow(batch.column(i), row, c.sql_type)
                    .map_err(|e| e.context(format!("{}.{}", table.name, c.name)))?;
                hashes.push(v.hash64());
                if let Some(k) = key_idx.iter().position(|k| *k == i) {
                    key[k] = v;
                }
            }
            group.push(ScannedRow { key, hashes, flag: flags.value(row) });
            if group.len() >= SCAN_BATCH {
                out.blocking_send(std::mem::take(&mut group)).map_err(|_| closed())?;
            }
        }
    }
    if !group.is_empty() {
        out.blocking_send(group).map_err(|_| closed())?;
    }
    Ok(())
}

fn table_exists(conn: &Connection, schema: &str, table: &str) -> Result<bool> {
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
            params![schema, table],
            |r| r.get(0),
        )
        .map_err(|e| db_error(e, "reading information_schema"))?;
    Ok(n > 0)
}

fn live_rows(conn: &Connection, schema: &str, table: &str) -> Result<u64> {
    let n: i64 = conn
        .query_row(
            &format!("SELECT count(*) FROM {} WHERE NOT {}", qualified(schema, table), ident(meta::DELETED)),
            [],
            |r| r.get(0),
        )
        .map_err(|e| db_error(e, &format!("counting rows of {table}")))?;
    Ok(n as u64)
}

fn loaded_ids(conn: &Connection, schema: &str, pipeline_id: Uuid, stream: &str, ids: &[u64]) -> Result<Vec<u64>> {
    if !table_exists(conn, schema, meta::BATCHES_TABLE)? || ids.is_empty() {
        return Ok(Vec::new());
    }
    let list: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    let mut st = conn
        .prepare(&format!(
            "SELECT DISTINCT batch_id FROM {} WHERE pipeline_id = ? AND stream = ? AND batch_id IN ({}) ORDER BY 1",
            qualified(schema, meta::BATCHES_TABLE),
            list.join(", ")
        ))
        .map_err(|e| db_error(e, "reading _simplyload_batches"))?;
    let rows = st
        .query_map(params![pipeline_id.to_string(), stream], |r| r.get::<_, i64>(0))
        .map_err(|e| db_error(e, "reading _simplyload_batches"))?;
    let mut out = Vec::new();
    for r in rows {
        out.push(r.map_err(|e| db_error(e, "reading _simplyload_batches"))? as u64);
    }
    Ok(out)
}

/// Existing columns of a table: name → type.
fn existing_columns(conn: &Connection, schema: &str, table: &str) -> Result<Vec<(String, String)>> {
    let mut st = conn
        .prepare(
            "SELECT column_name, data_type FROM information_schema.columns
             WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        )
        .map_err(|e| db_error(e, "reading columns"))?;
    let rows = st
        .query_map(params![schema, table], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(|e| db_error(e, "reading columns"))?;
    rows.collect::<std::result::Result<Vec<_>, _>>().map_err(|e| db_error(e, "reading columns"))
}

fn load_sync(
    conn: &mut Connection,
    schema: &str,
    pipeline_id: Uuid,
    table: &TableSpec,
    kind: LoadKind,
    batches: &[BatchManifest],
    files: &[PathBuf],
) -> Result<LoadOutcome> {
    let stream = batches.first().map(|b| b.stream.clone()).unwrap_or_default();
    let tx = conn.transaction().map_err(|e| db_error(e, "BEGIN"))?;
    tx.execute_batch(&format!(
        "CREATE SCHEMA IF NOT EXISTS {};\n{};\n{};",
        ident(schema),
        batches_ddl(schema),
        create_table_sql(schema, table)
    ))
    .map_err(|e| db_error(e, &format!("creating {}", table.name)))?;
    // Columns added in the source since the table was created.
    let existing = existing_columns(&tx, schema, &table.name)?;
    let mut wanted: Vec<(String, String)> =
        table.columns.iter().map(|c| (c.name.clone(), duck_type(&c.sql_type))).collect();
    wanted.extend(meta_columns(table).into_iter().map(|(n, t)| (n.to_owned(), t.to_owned())));
    let mut changed = Vec::new();
    let mut widened: Vec<(String, String)> = Vec::new();
    for (name, ty) in &wanted {
        match existing.iter().find(|(n, _)| n == name) {
            None => {
                tx.execute_batch(&format!(
                    "ALTER TABLE {} ADD COLUMN {} {ty};",
                    qualified(schema, &table.name),
                    ident(name)
                ))
                .map_err(|e| db_error(e, &format!("adding column {name} to {}", table.name)))?;
            }
            Some((_, have)) if !same_type(have, ty) => changed.push((name.clone(), have.clone(), ty.clone())),
            Some(_) => {}
        }
    }
    // A widened column (every old value is exactly a value of the new type)
    // is altered in place.
    changed.retain(|(name, have, ty)| {
        let widen = table
            .column(name)
            .zip(sql_type_of(have))
            .is_some_and(|(c, old)| old != c.sql_type && old.widens_to(&c.sql_type));
        if widen {
            widened.push((name.clone(), ty.clone()));
        }
        !widen
    });
    for (name, ty) in &widened {
        tx.execute_batch(&format!(
            "ALTER TABLE {} ALTER COLUMN {} SET DATA TYPE {ty};",
            qualified(schema, &table.name),
            ident(name)
        ))
        .map_err(|e| db_error(e, &format!("widening column {name} of {}", table.name)))?;
    }
    // Any other type change: a full refresh rewrites every row, so the
    // column takes the new type on the emptied table (never a cast of old
    // values); a merge must not cast stored values, so it stops. (The sync
    // runner diverts such changes to a new column before they get here.)
    if !changed.is_empty() {
        if kind != LoadKind::Replace {
            let (name, have, ty) = &changed[0];
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("column {name} of {} is {have} in DuckDB but the source now stages {ty}", table.name),
            )
            .with_hint("run a full refresh of this stream"));
        }
        tx.execute_batch(&format!("DELETE FROM {};", qualified(schema, &table.name)))
            .map_err(|e| db_error(e, &format!("emptying {}", table.name)))?;
        for (name, _, ty) in &changed {
            tx.execute_batch(&format!(
                "ALTER TABLE {} ALTER COLUMN {} SET DATA TYPE {ty};",
                qualified(schema, &table.name),
                ident(name)
            ))
            .map_err(|e| db_error(e, &format!("changing the type of {name} in {}", table.name)))?;
        }
    }

    let ids: Vec<u64> = batches.iter().map(|b| b.batch_id).collect();
    let already = loaded_ids(&tx, schema, pipeline_id, &stream, &ids)?;
    let todo: Vec<&BatchManifest> = batches.iter().filter(|b| !already.contains(&b.batch_id)).collect();
    if todo.is_empty() {
        let rows_after = live_rows(&tx, schema, &table.name)?;
        tx.rollback().map_err(|e| db_error(e, "ROLLBACK"))?;
        return Ok(LoadOutcome {
            rows_staged: 0,
            rows_after: Some(rows_after),
            already_loaded: already,
            changes: RowChanges::default(),
        });
    }
    let todo_files: Vec<&PathBuf> = {
        // Files are passed in batch order; keep those of batches still to apply.
        let mut out = Vec::new();
        let mut i = 0;
        for b in batches {
            for _ in &b.files {
                if !already.contains(&b.batch_id) {
                    out.push(&files[i]);
                }
                i += 1;
            }
        }
        out
    };

    let target = qualified(schema, &table.name);
    // The stage is a view over exactly the manifests' files: DuckDB streams
    // them into the target instead of materialising the batch in memory.
    let stage = ident("_simplyload_stage");
    let data_cols: Vec<String> = table.columns.iter().map(|c| ident(&c.name)).collect();
    if todo_files.is_empty() {
        tx.execute_batch(&format!("CREATE OR REPLACE TEMP VIEW {stage} AS SELECT * FROM {target} WHERE false;"))
            .map_err(|e| db_error(e, "creating the stage view"))?;
    } else {
        let list: Vec<String> = todo_files.iter().map(|p| literal(&p.to_string_lossy())).collect();
        tx.execute_batch(&format!(
            "CREATE OR REPLACE TEMP VIEW {stage} AS SELECT * FROM read_parquet([{}], union_by_name = true);",
            list.join(", ")
        ))
        .map_err(|e| db_error(e, &format!("reading the staged files of {stream}")))?;
    }
    let rows_staged: i64 = tx
        .query_row(&format!("SELECT count(*) FROM {stage}"), [], |r| r.get(0))
        .map_err(|e| db_error(e, "counting staged rows"))?;
    let expected: u64 = todo.iter().map(|b| b.row_count).sum();
    if rows_staged as u64 != expected {
        return Err(Error::data(format!(
            "{stream}: the staged files hold {rows_staged} rows but the manifests say {expected}"
        )));
    }

    let casts: Vec<String> = table.columns.iter().map(cast).collect();
    let (d, v) = (ident(meta::DELETED), ident(meta::VERSION));
    let changes = match kind {
        LoadKind::Append if !table.has_key() => {
            return Err(Error::internal(format!("{stream}: an appended part of a table without a key")));
        }
        LoadKind::Replace | LoadKind::Append => {
            let mut cols = data_cols.clone();
            cols.extend([ident(meta::SYNCED_AT), d.clone(), v.clone()]);
            let mut vals = casts.clone();
            vals.extend(["now()".to_owned(), format!("s.{d}"), format!("s.{v}")]);
            if !table.has_key() {
                let id = ident(meta::ID);
                cols.extend([id.clone(), ident(meta::INDEX)]);
                vals.extend([format!("s.{id}"), format!("row_number() OVER (PARTITION BY s.{id} ORDER BY s.{v}) - 1")]);
            }
            // The later parts of a full refresh add to what its first part put in.
            let delete = if kind == LoadKind::Replace { format!("DELETE FROM {target};\n") } else { String::new() };
            tx.execute_batch(&format!(
                "{delete}INSERT INTO {target} ({}) SELECT {} FROM {stage} s;",
                cols.join(", "),
                vals.join(", ")
            ))
            .map_err(|e| db_error(e, &format!("replacing the rows of {}", table.name)))?;
            RowChanges { inserted: rows_staged as u64, updated: 0, deleted: 0 }
        }
        LoadKind::Merge if rows_staged == 0 => RowChanges::default(),
        LoadKind::Merge if !table.has_key() => {
            keyless(&tx, table, &target, &stage, todo.iter().filter_map(|b| b.truncate_version()).max())?
        }
        LoadKind::Merge => merge(&tx, table, &target, &stage, &casts)?,
    };
    let mut changes = changes;
    // A complete snapshot merged: stored rows whose key it lacks are deleted.
    if kind == LoadKind::Merge
        && table.has_key()
        && let Some(at) = todo.iter().filter_map(|b| b.complete_version()).max()
    {
        let (d, v) = (ident(meta::DELETED), ident(meta::VERSION));
        let on: Vec<String> =
            table.key.iter().map(|k| format!("s.{q} IS NOT DISTINCT FROM t.{q}", q = ident(k))).collect();
        let missing = format!(
            "NOT t.{d} AND t.{v} < CAST({at} AS DECIMAL(38,0)) AND NOT EXISTS (SELECT 1 FROM {stage} s WHERE {})",
            on.join(" AND ")
        );
        let n: i64 = tx
            .query_row(&format!("SELECT count(*) FROM {target} t WHERE {missing}"), [], |r| r.get(0))
            .map_err(|e| db_error(e, &format!("finding the rows gone from {}", table.name)))?;
        if n > 0 {
            tx.execute_batch(&format!(
                "UPDATE {target} AS t SET {d} = true, {v} = CAST({at} AS DECIMAL(38,0)), {} = now() WHERE {missing};",
                ident(meta::SYNCED_AT)
            ))
            .map_err(|e| db_error(e, &format!("marking the rows gone from {}", table.name)))?;
        }
        changes.deleted += n as u64;
    }
    // A truncate in the source: every stored row older than it is deleted.
    if let Some(at) = todo.iter().filter_map(|b| b.truncate_version()).max() {
        let older = format!("{} < CAST({at} AS DECIMAL(38,0))", ident(meta::VERSION));
        let n: i64 = tx
            .query_row(
                &format!("SELECT count(*) FROM {target} WHERE {older} AND NOT {}", ident(meta::DELETED)),
                [],
                |r| r.get(0),
            )
            .map_err(|e| db_error(e, &format!("counting the rows a truncate deletes in {}", table.name)))?;
        tx.execute_batch(&format!(
            "UPDATE {target} SET {} = true, {} = CAST({at} AS DECIMAL(38,0)), {} = now() WHERE {older};",
            ident(meta::DELETED),
            ident(meta::VERSION),
            ident(meta::SYNCED_AT)
        ))
        .map_err(|e| db_error(e, &format!("applying a truncate to {}", table.name)))?;
        changes.deleted += n as u64;
    }
    for b in &todo {
        tx.execute(
            &format!(
                "INSERT INTO {} (pipeline_id, stream, batch_id, row_count, loaded_at) VALUES (?, ?, ?, ?, now())",
                qualified(schema, meta::BATCHES_TABLE)
            ),
            params![pipeline_id.to_string(), b.stream, b.batch_id as i64, b.row_count as i64],
        )
        .map_err(|e| db_error(e, "recording the batch"))?;
    }
    tx.execute_batch(&format!("DROP VIEW {stage};")).map_err(|e| db_error(e, "dropping the stage view"))?;
    let rows_after = live_rows(&tx, schema, &table.name)?;
    simplyload_core::failpoint::failpoint("during_load");
    tx.commit().map_err(|e| db_error(e, "COMMIT"))?;
    Ok(LoadOutcome { rows_staged: rows_staged as u64, rows_after: Some(rows_after), already_loaded: already, changes })
}

/// Applies staged changes to a table without a key: occurrences of
/// identical rows are added and removed (see
/// [`simplyload_core::cdc::keyless_apply_sql`]).
fn keyless(
    tx: &duckdb::Transaction<'_>,
    table: &TableSpec,
    target: &str,
    stage: &str,
    truncated_at: Option<i128>,
) -> Result<RowChanges> {
    let v = ident(meta::VERSION);
    let watermark: String = tx
        .query_row(&format!("SELECT CAST(COALESCE(MAX({v}), -1) AS VARCHAR) FROM {target}"), [], |r| r.get(0))
        .map_err(|e| db_error(e, &format!("reading the newest version in {}", table.name)))?;
    // Changes before a truncate in the load are gone with it.
    let watermark = match (watermark.parse::<i128>(), truncated_at) {
        (Ok(w), Some(t)) => w.max(t).to_string(),
        _ => watermark,
    };
    let watermark = format!("CAST({watermark} AS DECIMAL(38,0))");
    let (d, id) = (ident(meta::DELETED), ident(meta::ID));
    let (added, removed): (i64, i64) = tx
        .query_row(
            &format!(
                "SELECT COALESCE(SUM(delta) FILTER (WHERE delta > 0), 0), COALESCE(-SUM(delta) FILTER (WHERE delta < 0), 0)
                 FROM (SELECT SUM(CASE WHEN {d} THEN -1 ELSE 1 END) AS delta FROM {stage} WHERE {v} > {watermark} GROUP BY {id})"
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(|e| db_error(e, &format!("counting the changes to {}", table.name)))?;
    let [delete, insert] =
        simplyload_core::cdc::keyless_apply_sql(table, target, stage, &watermark, "now()", ident, cast);
    for sql in [delete, insert] {
        tx.execute_batch(&sql).map_err(|e| db_error(e, &format!("applying changes to {}", table.name)))?;
    }
    Ok(RowChanges { inserted: added as u64, updated: 0, deleted: removed as u64 })
}

/// Applies staged changes by key: the newest version per key wins, a row
/// never replaces a newer one, and a delete of an unseen key leaves a tombstone.
fn merge(
    tx: &duckdb::Transaction<'_>,
    table: &TableSpec,
    target: &str,
    stage: &str,
    casts: &[String],
) -> Result<RowChanges> {
    if !table.has_key() {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!("{}: merging into a table without a primary key is not supported yet", table.stream),
        )
        .with_hint("set primary_key: [...] for this stream"));
    }
    let (d, v, at) = (ident(meta::DELETED), ident(meta::VERSION), ident(meta::SYNCED_AT));
    let keys: Vec<String> = table.key.iter().map(|k| ident(k)).collect();
    let on: Vec<String> = keys.iter().map(|k| format!("t.{k} IS NOT DISTINCT FROM s.{k}")).collect();
    let latest = ident("_simplyload_latest");
    let u = ident(meta::UNCHANGED);
    let with_unchanged: i64 = tx
        .query_row(&format!("SELECT count(*) FROM {stage} WHERE {u} IS NOT NULL"), [], |r| r.get(0))
        .map_err(|e| db_error(e, "reading the staged unchanged columns"))?;
    let with_unchanged = with_unchanged > 0;
    // A column an update left unchanged (TOAST) keeps the stored value.
    let set_all: Vec<String> = table
        .columns
        .iter()
        .zip(casts)
        .map(|(c, e)| {
            let q = ident(&c.name);
            if with_unchanged && !table.key.contains(&c.name) {
                let marker = literal(&format!(",{},", c.name));
                format!("{q} = CASE WHEN s.{u} IS NOT NULL AND contains(s.{u}, {marker}) THEN t.{q} ELSE {e} END")
            } else {
                format!("{q} = {e}")
            }
        })
        .chain([format!("{at} = now()"), format!("{d} = s.{d}"), format!("{v} = s.{v}")])
        .collect();
    let mut cols: Vec<String> = table.columns.iter().map(|c| ident(&c.name)).collect();
    cols.extend([at.clone(), d.clone(), v.clone()]);
    let mut vals: Vec<String> = casts.to_vec();
    vals.extend(["now()".to_owned(), format!("s.{d}"), format!("s.{v}")]);
    // A delete that carries only its key keeps the stored values; a deleted
    // row that carries its values (a mapped soft delete) stores them.
    let non_key: Vec<String> = table
        .columns
        .iter()
        .filter(|c| !table.key.contains(&c.name))
        .map(|c| format!("s.{} IS NULL", ident(&c.name)))
        .collect();
    let key_only = if non_key.is_empty() { "true".to_owned() } else { format!("({})", non_key.join(" AND ")) };
    tx.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE {latest} AS {};",
        simplyload_core::cdc::latest_per_key_sql(table, stage, with_unchanged, ident, literal)
    ))
    .map_err(|e| db_error(e, &format!("reducing the staged rows of {}", table.name)))?;
    // What the MERGE below will do, counted before it runs. A row read
    // again with the values it has (an incremental lookback) is applied but
    // is not an update.
    let differs: Vec<String> = std::iter::once(format!("t.{d}"))
        .chain(
            table
                .columns
                .iter()
                .zip(casts)
                .filter(|(c, _)| !table.key.contains(&c.name))
                .map(|(c, e)| format!("t.{} IS DISTINCT FROM {e}", ident(&c.name))),
        )
        .collect();
    // Whether a stored row matched: its version is never NULL (a key column may be).
    let first_key = &v;
    let (inserted, updated, deleted): (i64, i64, i64) = tx
        .query_row(
            &format!(
                "SELECT count(*) FILTER (WHERE t.{first_key} IS NULL AND NOT s.{d}),
                        count(*) FILTER (WHERE t.{first_key} IS NOT NULL AND s.{v} >= t.{v} AND NOT s.{d} AND ({})),
                        count(*) FILTER (WHERE s.{d} AND (t.{first_key} IS NULL OR (s.{v} >= t.{v} AND NOT t.{d})))
                 FROM {latest} s LEFT JOIN {target} t ON ({})",
                differs.join(" OR "),
                on.join(" AND ")
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(|e| db_error(e, &format!("counting the changes to {}", table.name)))?;
    tx.execute_batch(&format!(
        "MERGE INTO {target} t USING {latest} s ON ({})
         WHEN MATCHED AND s.{v} >= t.{v} AND s.{d} AND {key_only} THEN
           UPDATE SET {d} = true, {v} = s.{v}, {at} = now()
         WHEN MATCHED AND s.{v} >= t.{v} THEN
           UPDATE SET {}
         WHEN NOT MATCHED THEN
           INSERT ({}) VALUES ({});
         DROP TABLE {latest};",
        on.join(" AND "),
        set_all.join(", "),
        cols.join(", "),
        vals.join(", ")
    ))
    .map_err(|e| db_error(e, &format!("merging into {}", table.name)))?;
    Ok(RowChanges { inserted: inserted as u64, updated: updated as u64, deleted: deleted as u64 })
}

#[cfg(test)]
mod tests;
