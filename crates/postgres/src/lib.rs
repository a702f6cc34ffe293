//! The Postgres source: discovery, permission checks, and snapshots read
//! with `COPY (SELECT …) TO STDOUT (FORMAT binary)` straight into Arrow.
//!
//! Read-only by design (the seed's decision): a snapshot runs in one
//! `REPEATABLE READ READ ONLY` transaction, so the rows and the schema it
//! checks against come from the same instant. Session settings that change
//! how values are rendered (time zone, interval style, float digits) are
//! pinned in that transaction so the output does not depend on the server's
//! or the role's configuration. `row_security` is off: if row-level
//! security would hide rows from SimplyLoad, Postgres refuses the read
//! instead of silently returning fewer rows.

mod cdc;
pub mod connect;
pub mod copy;
pub mod discover;
pub mod local;
pub mod pgoutput;
pub mod reconcile;
pub mod replication;
pub mod types;

use connect::{ConnectOptions, pg_error, quote_ident};
use copy::{ColumnRead, CopyParser, RowDecoder};
use futures::StreamExt;
use simplyload_core::config::{OnUnrepresentable, PostgresSourceConfig};
use simplyload_core::cursor::CursorValue;
use simplyload_core::reconcile::{ScanRequest, ScanSender};
use simplyload_core::{
    Catalog, IncrementalRead, TableSpec, CheckReport, Error, ErrorKind, ReadStats, Result, SnapshotRequest, Source, SourceBatch, StreamName,
};
use std::path::Path;
use tokio::sync::mpsc;
use types::ReadAs;

/// Settings pinned for every snapshot transaction.
const SNAPSHOT_SETTINGS: &str = "SET LOCAL TimeZone = 'UTC';
SET LOCAL DateStyle = 'ISO, YMD';
SET LOCAL IntervalStyle = 'iso_8601';
SET LOCAL extra_float_digits = 1;
SET LOCAL bytea_output = 'hex';
SET LOCAL row_security = off;
SET LOCAL statement_timeout = 0;
SET LOCAL idle_in_transaction_session_timeout = 0;";

/// How the snapshot selects a column (see [`types`]): the change stream
/// reads cast columns again with the same expression.
pub(crate) fn select_expr(column: &str, read: ReadAs) -> String {
    let q = quote_ident(column);
    match read {
        ReadAs::Native => q,
        ReadAs::Text => format!("{q}::text"),
        ReadAs::ToJsonb => format!("to_jsonb({q})"),
        ReadAs::Numeric => format!("{q}::numeric"),
    }
}

/// A configured Postgres source.
#[derive(Debug, Clone)]
pub struct PostgresSource {
    name: String,
    opts: ConnectOptions,
    /// Tables at least this large are read in CTID page ranges by several
    /// connections when a request allows it.
    parallel_min_bytes: u64,
}

/// Default [`PostgresSource::with_parallel_min_bytes`]: below this a table
/// is read in one piece (more connections cost more than they bring).
pub const PARALLEL_MIN_BYTES: u64 = 64 << 20;

impl PostgresSource {
    pub fn new(name: &str, config: &PostgresSourceConfig, base_dir: &Path) -> Result<PostgresSource> {
        let root = config.ssl_root_cert.as_ref().map(|p| base_dir.join(p));
        let opts = ConnectOptions::parse(name, config.url.expose(), root.as_deref())?;
        Ok(PostgresSource { name: name.to_owned(), opts, parallel_min_bytes: PARALLEL_MIN_BYTES })
    }

    pub fn from_url(name: &str, url: &str) -> Result<PostgresSource> {
        Ok(PostgresSource {
            name: name.to_owned(),
            opts: ConnectOptions::parse(name, url, None)?,
            parallel_min_bytes: PARALLEL_MIN_BYTES,
        })
    }

    /// Reads tables of at least `bytes` (on disk) in parallel page ranges.
    pub fn with_parallel_min_bytes(mut self, bytes: u64) -> Self {
        self.parallel_min_bytes = bytes;
        self
    }

    pub fn options(&self) -> &ConnectOptions {
        &self.opts
    }

    /// The database name, `{database}` in table names.
    pub fn database(&self) -> String {
        self.opts.database()
    }

    pub async fn connect(&self) -> Result<tokio_postgres::Client> {
        self.opts.connect().await
    }
}

#[async_trait::async_trait]
impl Source for PostgresSource {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn name(&self) -> &str {
        &self.name
    }

    async fn discover(&self) -> Result<Catalog> {
        let client = self.connect().await?;
        let tables = discover::discover(&client, None).await?;
        Ok(Catalog { database: self.database(), tables: tables.into_iter().map(|t| t.info).collect() })
    }

    async fn check(&self, streams: &[StreamName]) -> Result<CheckReport> {
        let mut report = CheckReport::default();
        let client = match self.connect().await {
            Ok(c) => c,
            Err(e) => {
                report.fail("connect", e.to_string(), None);
                return Ok(report);
            }
        };
        let row = client
            .query_one("SELECT current_setting('server_version'), current_user, current_setting('wal_level')", &[])
            .await
            .map_err(|e| pg_error(&e, "reading server settings"))?;
        let version: String = row.get(0);
        let user: String = row.get(1);
        let wal_level: String = row.get(2);
        report.pass("connect", format!("connected to {} as {user} (Postgres {version}, wal_level={wal_level})", self.opts.target()));
        let role = client
            .query_one("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user", &[])
            .await
            .map_err(|e| pg_error(&e, "reading role attributes"))?;
        let bypass_rls: bool = role.get(0);
        for s in streams {
            check_stream(&client, s, &user, bypass_rls, &mut report).await?;
        }
        Ok(report)
    }

    async fn read_snapshot(&self, request: SnapshotRequest, out: mpsc::Sender<SourceBatch>) -> Result<ReadStats> {
        let stream = request.table.stream.clone();
        let client = self.connect().await?;
        // Before the snapshot is taken: how far a checkpoint may move.
        let cursor_ceiling = match &request.incremental {
            Some(inc) => cursor_ceiling(&client, inc.sql_type, &stream).await?,
            None => None,
        };
        // CDC: the slot's exported snapshot, imported before any query.
        let import = match &request.snapshot {
            Some(name) => format!("SET TRANSACTION SNAPSHOT '{}';\n", name.replace('\'', "''")),
            None => String::new(),
        };
        client
            .batch_execute(&format!("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\n{import}{SNAPSHOT_SETTINGS}"))
            .await
            .map_err(|e| pg_error(&e, "starting the snapshot transaction"))?;
        let tables = discover::discover(&client, Some(&stream)).await?;
        let table = tables.into_iter().next().ok_or_else(|| {
            Error::not_found(format!("table {stream} no longer exists in source `{}`", self.name))
        })?;
        let mut select = Vec::with_capacity(request.table.columns.len());
        let mut reads = Vec::with_capacity(request.table.columns.len());
        for c in &request.table.columns {
            let pg = table.columns.iter().find(|p| p.info.name == c.source_name).ok_or_else(|| {
                Error::new(
                    ErrorKind::Conflict,
                    format!("column {} of {stream} was dropped or renamed during the sync", c.source_name),
                )
                .with_hint("run the sync again")
            })?;
            if pg.plan.sql_type != c.sql_type {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "column {} of {stream} changed type during the sync ({} → {})",
                        c.source_name, c.source_type, pg.info.type_name
                    ),
                )
                .with_hint("run the sync again"));
            }
            select.push(select_expr(&c.source_name, pg.plan.read));
            reads.push(ColumnRead { name: c.name.clone(), decoder: pg.plan.decoder });
        }
        let key: Vec<usize> = request
            .table
            .key
            .iter()
            .filter_map(|k| request.table.columns.iter().position(|c| &c.name == k))
            .collect();
        let filter = match &request.incremental {
            Some(IncrementalRead { column, from: Some(from), .. }) => {
                let pg = table.columns.iter().find(|p| &p.info.name == column).ok_or_else(|| {
                    Error::new(ErrorKind::Conflict, format!("cursor column {column} of {stream} no longer exists"))
                })?;
                let text = reconcile::bound_text(&from.to_canon(), pg.plan.sql_type)?;
                Some(format!("{} >= '{}'::{}", quote_ident(column), text.replace('\'', "''"), pg.info.type_name))
            }
            _ => None,
        };
        let qualified = format!("{}.{}", quote_ident(&stream.schema), quote_ident(&stream.table));
        let read = RangeRead {
            source: self.clone(),
            stream: stream.clone(),
            reads,
            key,
            request: request.clone(),
            select: select.join(", "),
            from: qualified.clone(),
            filter,
        };
        let ranges = match request.parallelism {
            0 | 1 => Vec::new(),
            n => page_ranges(&client, &qualified, n, self.parallel_min_bytes).await?,
        };
        let read = if ranges.len() < 2 {
            read.copy(&client, None, &out).await?
        } else {
            // The COPY's own lock, taken now and held to the end: no
            // TRUNCATE, VACUUM FULL or rewriting ALTER can commit between
            // the ranges' starts (each range would read another file).
            client
                .batch_execute(&format!("LOCK TABLE {qualified} IN ACCESS SHARE MODE"))
                .await
                .map_err(|e| read_error(&e, &stream, &self.opts.user()))?;
            // Every range in this transaction's snapshot (or the slot's).
            let snapshot = match &request.snapshot {
                Some(name) => name.clone(),
                None => client
                    .query_one("SELECT pg_export_snapshot()", &[])
                    .await
                    .map_err(|e| pg_error(&e, "exporting the snapshot"))?
                    .get(0),
            };
            tracing::debug!(stream = %stream, ranges = ranges.len(), "reading in parallel page ranges");
            let mut tasks = tokio::task::JoinSet::new();
            for range in ranges {
                let (read, out, snapshot) = (read.clone(), out.clone(), snapshot.clone());
                tasks.spawn(async move { read.range(&snapshot, &range, &out).await });
            }
            let mut total = RangeStats::default();
            while let Some(done) = tasks.join_next().await {
                let done = done.map_err(|e| Error::internal(format!("{stream}: a range reader failed: {e}")))?;
                match done {
                    Ok(r) => {
                        total.rows += r.rows;
                        total.bytes += r.bytes;
                        total.tally.merge(r.tally);
                    }
                    // The other ranges stop with the first failure.
                    Err(e) => {
                        tasks.abort_all();
                        return Err(e);
                    }
                }
            }
            total
        };
        client.batch_execute("COMMIT").await.map_err(|e| pg_error(&e, "ending the snapshot transaction"))?;
        Ok(ReadStats { rows: read.rows, source_bytes: read.bytes, unrepresentable: read.tally.into_entries(), cursor_ceiling })
    }

    async fn key_ranges_agree(&self, table: &TableSpec) -> Result<bool> {
        reconcile::key_ranges_agree(self, table).await
    }

    async fn cdc_slot(&self, pipeline: &str) -> Result<Option<simplyload_core::SlotStatus>> {
        let client = self.connect().await?;
        let slot = replication::slot_name(pipeline);
        Ok(replication::slot_info(&client, &slot).await?.map(|s| simplyload_core::SlotStatus {
            name: s.name,
            confirmed: s.confirmed_flush_lsn.map(replication::format_lsn).unwrap_or_else(|| "-".into()),
            lag_bytes: s.lag_bytes.unwrap_or(0),
            status: s.wal_status,
        }))
    }

    async fn check_cdc(&self, pipeline: &str, streams: &[StreamName]) -> Result<CheckReport> {
        self.check_cdc_impl(pipeline, streams).await
    }

    async fn cdc_prepare(
        &self,
        pipeline: &str,
        tables: &[TableSpec],
        temporary: bool,
        on_slot_lost: simplyload_core::config::OnSlotLost,
    ) -> Result<Option<Box<dyn simplyload_core::CdcStart>>> {
        self.cdc_prepare_impl(pipeline, tables, temporary, on_slot_lost).await
    }

    async fn read_changes(
        &self,
        request: simplyload_core::ChangesRequest,
        out: mpsc::Sender<simplyload_core::ChangeEvent>,
    ) -> Result<simplyload_core::ChangesRead> {
        self.read_changes_impl(request, out).await
    }

    async fn confirm_changes(&self, pipeline: &str, lsn: simplyload_core::cdc::Lsn) -> Result<()> {
        self.confirm_changes_impl(pipeline, lsn).await
    }

    async fn scan(&self, request: ScanRequest, out: ScanSender) -> Result<()> {
        reconcile::scan(self, request, out).await
    }
}

/// What one COPY of a snapshot read.
#[derive(Default)]
struct RangeStats {
    rows: u64,
    bytes: u64,
    tally: simplyload_core::report::UnrepresentableTally,
}

/// The parts of a snapshot read every range shares.
#[derive(Clone)]
struct RangeRead {
    source: PostgresSource,
    stream: StreamName,
    reads: Vec<ColumnRead>,
    key: Vec<usize>,
    request: SnapshotRequest,
    select: String,
    from: String,
    /// The incremental read's cursor condition.
    filter: Option<String>,
}

impl RangeRead {
    /// The COPY statement, for a CTID condition or the whole table.
    fn sql(&self, range: Option<&str>) -> String {
        let conditions: Vec<&str> = range.into_iter().chain(self.filter.as_deref()).collect();
        let filter = if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
        format!("COPY (SELECT {} FROM {}{filter}) TO STDOUT (FORMAT binary)", self.select, self.from)
    }

    /// Reads one page range on a connection of its own, in `snapshot`.
    async fn range(&self, snapshot: &str, range: &str, out: &mpsc::Sender<SourceBatch>) -> Result<RangeStats> {
        let client = self.source.connect().await?;
        client
            .batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\nSET TRANSACTION SNAPSHOT '{}';\n{SNAPSHOT_SETTINGS}",
                snapshot.replace('\'', "''")
            ))
            .await
            .map_err(|e| pg_error(&e, "joining the snapshot"))?;
        let stats = self.copy(&client, Some(range), out).await?;
        client.batch_execute("COMMIT").await.map_err(|e| pg_error(&e, "ending the snapshot transaction"))?;
        Ok(stats)
    }

    /// Runs the COPY (of `range`, or the whole table) and sends its batches.
    async fn copy(&self, client: &tokio_postgres::Client, range: Option<&str>, out: &mpsc::Sender<SourceBatch>) -> Result<RangeStats> {
        let stream = &self.stream;
        let user = self.source.opts.user();
        let sql = self.sql(range);
        tracing::debug!(stream = %stream, sql = %sql, "snapshot query");
        let copy = client.copy_out(sql.as_str()).await.map_err(|e| read_error(&e, stream, &user))?;
        futures::pin_mut!(copy);
        let request = &self.request;
        let mut rows = RowDecoder::new(
            &stream.to_string(),
            &self.reads,
            request.table.source_schema(),
            self.key.clone(),
            request.limits,
            request.on_unrepresentable == OnUnrepresentable::Fail,
            request.batch_rows,
            request.batch_bytes,
        );
        let mut parser = CopyParser::new();
        let mut bytes: u64 = 0;
        let closed = || Error::internal(format!("{stream}: the staging side stopped receiving batches"));
        while let Some(chunk) = copy.next().await {
            let chunk = chunk.map_err(|e| read_error(&e, stream, &user))?;
            bytes += chunk.len() as u64;
            parser.feed(&chunk, &mut rows)?;
            let ready: Vec<_> = rows.take_ready().collect();
            for (batch, source_bytes) in ready {
                out.send(SourceBatch { batch, source_bytes }).await.map_err(|_| closed())?;
            }
        }
        parser.finish()?;
        rows.finish_batch()?;
        let ready: Vec<_> = rows.take_ready().collect();
        for (batch, source_bytes) in ready {
            out.send(SourceBatch { batch, source_bytes }).await.map_err(|_| closed())?;
        }
        Ok(RangeStats { rows: rows.rows(), bytes, tally: std::mem::take(&mut rows.tally) })
    }
}

/// CTID conditions cutting a plain table (or materialized view) of at least
/// `min_bytes` into `n` page ranges of equal size. The size is
/// `pg_class.relpages`, the estimate VACUUM and ANALYZE keep (reading it
/// takes no lock, unlike `pg_relation_size`, which would queue behind a
/// lock before the COPY does); the last range is open ended, since the
/// table may have grown since. Empty for anything else (smaller or never
/// analyzed tables, views, partitioned or foreign tables), and on a standby,
/// which cannot export a snapshot for the other connections to share.
async fn page_ranges(client: &tokio_postgres::Client, qualified: &str, n: usize, min_bytes: u64) -> Result<Vec<String>> {
    let row = client
        .query_one(
            "SELECT c.relkind::text, c.relpages::bigint * current_setting('block_size')::bigint,
                    current_setting('block_size')::bigint, pg_is_in_recovery()
             FROM pg_class c WHERE c.oid = $1::text::regclass",
            &[&qualified],
        )
        .await
        .map_err(|e| pg_error(&e, "reading the table's size"))?;
    let (kind, size, block, standby): (String, i64, i64, bool) = (row.get(0), row.get(1), row.get(2), row.get(3));
    if standby || !matches!(kind.as_str(), "r" | "m") || (size as u64) < min_bytes || block <= 0 {
        return Ok(Vec::new());
    }
    let pages = (size / block) as u64;
    let n = (n as u64).min(pages).max(1);
    let step = pages.div_ceil(n);
    Ok((0..n)
        .map(|i| {
            let lo = i * step;
            if i + 1 == n {
                format!("ctid >= '({lo},0)'::tid")
            } else {
                format!("ctid >= '({lo},0)'::tid AND ctid < '({},0)'::tid", lo + step)
            }
        })
        .collect())
}

/// The highest time-cursor value a checkpoint may take for a read that
/// starts now: `updated_at` set by `now()` is a transaction's start time, so
/// a transaction still open at the start of the read can commit rows older
/// than everything the read sees. Measured before the snapshot is taken, so
/// every transaction the snapshot cannot see is either counted here or
/// started after `clock_timestamp()`. Integer and numeric cursors have no
/// such bound (their lookback is a count).
async fn cursor_ceiling(
    client: &tokio_postgres::Client,
    t: simplyload_core::SqlType,
    stream: &StreamName,
) -> Result<Option<CursorValue>> {
    use simplyload_core::SqlType;
    let wall = match t {
        SqlType::TimestampTz => false,
        SqlType::Timestamp => true,
        _ => return Ok(None),
    };
    // For `timestamp` cursors, times as wall clock in the server's time zone
    // (the zone writers' `now()` is rendered in); for timestamptz, UTC.
    let as_us = |e: &str| {
        if wall {
            format!("(extract(epoch FROM ({e}) AT TIME ZONE current_setting('TimeZone')) * 1000000)::int8")
        } else {
            format!("(extract(epoch FROM {e}) * 1000000)::int8")
        }
    };
    let sql = format!(
        "SELECT {}, (SELECT {} FROM pg_stat_activity
                      WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() AND backend_type = 'client backend'),
                (SELECT count(*) FROM pg_stat_activity
                  WHERE pid <> pg_backend_pid() AND backend_type = 'client backend' AND query = '<insufficient privilege>')",
        as_us("clock_timestamp()"),
        as_us("min(xact_start)")
    );
    let row = client.query_one(sql.as_str(), &[]).await.map_err(|e| pg_error(&e, "reading open transactions"))?;
    let now: i64 = row.get(0);
    let oldest: Option<i64> = row.get(1);
    let hidden: i64 = row.get(2);
    if hidden > 0 {
        tracing::warn!(stream = %stream, sessions = hidden,
            "cannot see the transactions of {hidden} other session(s); rows they commit late are caught only by the lookback window (GRANT pg_read_all_stats to SimplyLoad's role to close that gap)");
    }
    Ok(Some(CursorValue::Micros { value: oldest.map_or(now, |o| o.min(now)) }))
}

fn read_error(e: &tokio_postgres::Error, stream: &StreamName, user: &str) -> Error {
    let err = pg_error(e, &format!("reading {stream}"));
    match err.kind() {
        ErrorKind::Permission => {
            let grant = format!(
                "GRANT USAGE ON SCHEMA {} TO {u}; GRANT SELECT ON {}.{} TO {u};",
                quote_ident(&stream.schema),
                quote_ident(&stream.schema),
                quote_ident(&stream.table),
                u = quote_ident(user)
            );
            if err.message().contains("row-level security") {
                err.with_hint(format!(
                    "row-level security would hide rows from SimplyLoad; run as an admin: ALTER ROLE {} BYPASSRLS;",
                    quote_ident(user)
                ))
            } else {
                err.with_hint(format!("run as an admin: {grant}"))
            }
        }
        _ => err,
    }
}

async fn check_stream(
    client: &tokio_postgres::Client,
    s: &StreamName,
    user: &str,
    bypass_rls: bool,
    report: &mut CheckReport,
) -> Result<()> {
    let what = format!("SELECT on {s}");
    let row = client
        .query_opt(
            "SELECT c.oid::int8,
                    has_schema_privilege(n.oid, 'USAGE'),
                    has_table_privilege(c.oid, 'SELECT')
                      OR NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
                                     AND NOT a.attisdropped AND NOT has_column_privilege(c.oid, a.attnum, 'SELECT')),
                    c.relrowsecurity AND pg_get_userbyid(c.relowner) <> current_user
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
            &[&s.schema, &s.table],
        )
        .await
        .map_err(|e| pg_error(&e, &format!("checking {s}")))?;
    let Some(row) = row else {
        report.fail(what, format!("table {s} does not exist (or is not visible to {user})"), None);
        return Ok(());
    };
    let usage: bool = row.get(1);
    let select: bool = row.get(2);
    let rls: bool = row.get(3);
    let u = quote_ident(user);
    let mut fixes = Vec::new();
    if !usage {
        fixes.push(format!("GRANT USAGE ON SCHEMA {} TO {u};", quote_ident(&s.schema)));
    }
    if !select {
        fixes.push(format!("GRANT SELECT ON {}.{} TO {u};", quote_ident(&s.schema), quote_ident(&s.table)));
    }
    if !fixes.is_empty() {
        let missing = match (usage, select) {
            (false, false) => "USAGE on the schema and SELECT on the table",
            (false, true) => "USAGE on the schema",
            _ => "SELECT on the table",
        };
        report.fail(what, format!("{user} lacks {missing}"), Some(fixes.join("\n")));
    } else if rls && !bypass_rls {
        report.fail(
            what,
            format!("row-level security is enabled on {s}: {user} would not see every row"),
            Some(format!("ALTER ROLE {u} BYPASSRLS;")),
        );
    } else {
        report.pass(what, "ok");
    }
    Ok(())
}
