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
pub mod setup;
pub mod types;

use connect::{ConnectOptions, pg_error, quote_ident};
use copy::{ColumnRead, CopyParser, RowDecoder};
use futures::StreamExt;
use simplyload_core::config::{OnUnrepresentable, PostgresSourceConfig};
use simplyload_core::cursor::CursorValue;
use simplyload_core::reconcile::{ScanRequest, ScanSender};
use simplyload_core::{
    Capabilities, Catalog, ChangeFeed, CheckReport, Error, ErrorKind, IncrementalRead, ReadStats, Result, Scanner,
    Selection, SnapshotRequest, Source, SourceBatch, StreamName, TableSpec,
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
        ReadAs::Abbrev => format!("abbrev({q})"),
        ReadAs::ToJsonb => format!("to_jsonb({q})"),
        ReadAs::Numeric => format!("{q}::numeric"),
    }
}

/// The schema a stream name without one is in.
pub const DEFAULT_SCHEMA: &str = "public";

/// A stream's schema and table: a name without a schema is in [`DEFAULT_SCHEMA`].
pub fn schema_and_table(s: &StreamName) -> (&str, &str) {
    (s.namespace.as_deref().unwrap_or(DEFAULT_SCHEMA), &s.name)
}

/// `"schema"."table"`, quoted.
pub fn qualified_name(s: &StreamName) -> String {
    let (schema, table) = schema_and_table(s);
    format!("{}.{}", quote_ident(schema), quote_ident(table))
}

/// A configured Postgres source.
#[derive(Debug, Clone)]
pub struct PostgresSource {
    name: String,
    opts: ConnectOptions,
}

impl PostgresSource {
    pub fn new(name: &str, config: &PostgresSourceConfig, base_dir: &Path) -> Result<PostgresSource> {
        let root = config.ssl_root_cert.as_ref().map(|p| base_dir.join(p));
        let opts = ConnectOptions::parse(name, config.url.expose(), root.as_deref())?;
        Ok(PostgresSource { name: name.to_owned(), opts })
    }

    pub fn from_url(name: &str, url: &str) -> Result<PostgresSource> {
        Ok(PostgresSource { name: name.to_owned(), opts: ConnectOptions::parse(name, url, None)? })
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

    fn capabilities(&self) -> Capabilities {
        Capabilities { cursor: true, change_feed: true, scan: true }
    }

    fn default_namespace(&self) -> Option<&str> {
        Some(DEFAULT_SCHEMA)
    }

    async fn discover(&self, selection: &Selection) -> Result<Catalog> {
        let client = self.connect().await?;
        let tables = discover::discover(&client, discover::Scope::of(selection)).await?;
        Ok(Catalog {
            database: self.database(),
            default_namespace: Some(DEFAULT_SCHEMA.into()),
            capabilities: self.capabilities(),
            tables: tables.into_iter().map(|t| t.info).filter(|t| selection.matches(&t.name)).collect(),
        })
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
        report.pass(
            "connect",
            format!("connected to {} as {user} (Postgres {version}, wal_level={wal_level})", self.opts.target()),
        );
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
        let import = match &request.consistent_with {
            Some(name) => format!("SET TRANSACTION SNAPSHOT '{}';\n", name.replace('\'', "''")),
            None => String::new(),
        };
        client
            .batch_execute(&format!("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\n{import}{SNAPSHOT_SETTINGS}"))
            .await
            .map_err(|e| pg_error(&e, "starting the snapshot transaction"))?;
        let tables = discover::discover(&client, discover::Scope::Table(&stream)).await?;
        let table = tables
            .into_iter()
            .next()
            .ok_or_else(|| Error::not_found(format!("table {stream} no longer exists in source `{}`", self.name)))?;
        let mut select = Vec::with_capacity(request.table.columns.len());
        let mut reads = Vec::with_capacity(request.table.columns.len());
        for c in &request.table.columns {
            let pg = table.columns.iter().find(|p| p.info.name == c.source_name).ok_or_else(|| {
                Error::new(
                    ErrorKind::StalePlan,
                    format!("column {} of {stream} was dropped or renamed during the sync", c.source_name),
                )
                .with_hint("run the sync again")
            })?;
            if pg.plan.sql_type != c.sql_type {
                return Err(Error::new(
                    ErrorKind::StalePlan,
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
        let key: Vec<usize> =
            request.table.key.iter().filter_map(|k| request.table.columns.iter().position(|c| &c.name == k)).collect();
        let filter = match &request.incremental {
            Some(IncrementalRead { column, from: Some(from), .. }) => {
                let pg = table.columns.iter().find(|p| &p.info.name == column).ok_or_else(|| {
                    Error::new(ErrorKind::StalePlan, format!("cursor column {column} of {stream} no longer exists"))
                })?;
                let text = reconcile::bound_text(&from.to_canon(), pg.plan.sql_type)?;
                Some(format!("{} >= '{}'::{}", quote_ident(column), text.replace('\'', "''"), pg.info.type_name))
            }
            _ => None,
        };
        let qualified = qualified_name(&stream);
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
            _ if request.resumable => Vec::new(),
            0 | 1 => Vec::new(),
            n => page_ranges(&client, &qualified, n, request.parallel_min_bytes).await?,
        };
        let read = if request.resumable {
            read.resumable(&client, &out).await?
        } else if ranges.len() < 2 {
            read.copy(&client, None, &out).await?
        } else {
            let snapshot = read.share(&client).await?;
            tracing::debug!(stream = %stream, ranges = ranges.len(), "reading in parallel page ranges");
            let mut tasks = tokio::task::JoinSet::new();
            let n = ranges.len();
            for (i, (lo, hi)) in ranges.into_iter().enumerate() {
                let (read, out, snapshot) = (read.clone(), out.clone(), snapshot.clone());
                let condition = ctid_between(lo, (i + 1 < n).then_some(hi));
                tasks.spawn(async move { read.range(&snapshot, &condition, &out).await });
            }
            join_ranges(&stream, tasks).await?
        };
        client.batch_execute("COMMIT").await.map_err(|e| pg_error(&e, "ending the snapshot transaction"))?;
        Ok(ReadStats {
            rows: read.rows,
            source_bytes: read.bytes,
            unrepresentable: read.tally.into_entries(),
            cursor_ceiling,
        })
    }

    fn change_feed(&self) -> Option<&dyn ChangeFeed> {
        Some(self)
    }

    fn scanner(&self) -> Option<&dyn Scanner> {
        Some(self)
    }
}

#[async_trait::async_trait]
impl Scanner for PostgresSource {
    async fn key_ranges_agree(&self, table: &TableSpec) -> Result<bool> {
        reconcile::key_ranges_agree(self, table).await
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

impl RangeStats {
    fn add(&mut self, other: RangeStats) {
        self.rows += other.rows;
        self.bytes += other.bytes;
        self.tally.merge(other.tally);
    }
}

/// Waits for every range reader; the first failure stops the others.
async fn join_ranges(stream: &StreamName, mut tasks: tokio::task::JoinSet<Result<RangeStats>>) -> Result<RangeStats> {
    let mut total = RangeStats::default();
    while let Some(done) = tasks.join_next().await {
        let done = done.map_err(|e| Error::internal(format!("{stream}: a range reader failed: {e}")))?;
        match done {
            Ok(r) => total.add(r),
            Err(e) => {
                tasks.abort_all();
                return Err(e);
            }
        }
    }
    Ok(total)
}

/// Where a resumable snapshot read stands ([`SnapshotRequest::resumable`]),
/// sent as [`simplyload_core::SourceBatch::progress`] after every chunk of
/// pages and kept in the stream's checkpoint until the snapshot is loaded.
///
/// A read that goes on from it, in a newer snapshot, reads the pages not
/// read yet in full, and from the pages already read only the row versions
/// written by a transaction the first snapshot could not see (`xmin` at or
/// after its `xmin`): a row no transaction touched since stays where it was
/// (only a rewrite moves rows, and a rewrite changes `relfilenode`), so it
/// was read then; a row touched since may now sit anywhere, and is read
/// again wherever it is. Rows deleted since, and everything after, come from
/// the replication slot, which replays every change from before the first
/// snapshot (the caller's part).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct RangePlan {
    /// The table's file when planned: a rewrite (VACUUM FULL, CLUSTER,
    /// TRUNCATE, a rewriting ALTER) moves every row, and the read starts over.
    relfilenode: i64,
    /// The 64-bit `xmin` of the snapshot the plan was first read in.
    xmin: i64,
    ranges: Vec<PlannedRange>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct PlannedRange {
    /// Pages `[lo, hi)`; the last range goes on past `hi` to the table's end.
    lo: u64,
    hi: u64,
    last: bool,
    /// Pages before this are read.
    next: u64,
    done: bool,
}

/// Pages read per COPY of a resumable read: about an eighth of a range, so
/// a resumed read repeats little, and at most 64 MiB of 8 kB pages.
fn chunk_pages(range_pages: u64) -> u64 {
    (range_pages / 8).clamp(1, 8192)
}

/// The CTID condition of pages `[lo, hi)` (`hi` `None`: to the end).
fn ctid_between(lo: u64, hi: Option<u64>) -> String {
    match hi {
        Some(hi) => format!("ctid >= '({lo},0)'::tid AND ctid < '({hi},0)'::tid"),
        None => format!("ctid >= '({lo},0)'::tid"),
    }
}

/// The condition "written by a transaction from `from` (64-bit) on, up to
/// `to`": `xmin` is the 32-bit transaction id, so the window is taken
/// modulo 2³² (callers make sure it spans less than 2³¹ transactions).
/// Frozen or much older rows that fall in it are only read once more.
fn written_since(from: i64, to: i64) -> String {
    let (lo, hi) = (from & 0xffff_ffff, to & 0xffff_ffff);
    let x = "xmin::text::bigint";
    if lo <= hi { format!("{x} BETWEEN {lo} AND {hi}") } else { format!("({x} >= {lo} OR {x} <= {hi})") }
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
        let client = self.join_snapshot(snapshot).await?;
        let stats = self.copy(&client, Some(range), out).await?;
        client.batch_execute("COMMIT").await.map_err(|e| pg_error(&e, "ending the snapshot transaction"))?;
        Ok(stats)
    }

    /// Takes the COPY's own lock on the main connection, held to the end
    /// (no TRUNCATE, VACUUM FULL or rewriting ALTER can commit between the
    /// ranges' starts: each range would read another file), and returns
    /// the snapshot every range reads in: this transaction's, exported, or
    /// the slot's.
    async fn share(&self, client: &tokio_postgres::Client) -> Result<String> {
        client
            .batch_execute(&format!("LOCK TABLE {} IN ACCESS SHARE MODE", self.from))
            .await
            .map_err(|e| read_error(&e, &self.stream, &self.source.opts.user()))?;
        match &self.request.consistent_with {
            Some(name) => Ok(name.clone()),
            None => Ok(client
                .query_one("SELECT pg_export_snapshot()", &[])
                .await
                .map_err(|e| pg_error(&e, "exporting the snapshot"))?
                .get(0)),
        }
    }

    /// A connection of its own in `snapshot`, holding the table's
    /// ACCESS SHARE lock. The main connection holds that lock already, so
    /// the only wait here is behind a statement that queued for an
    /// exclusive lock after it (ALTER, TRUNCATE, VACUUM FULL): that one
    /// waits for the main connection, which waits for this one, a cycle
    /// Postgres cannot see. After 10 s the read gives way (and is retried).
    async fn join_snapshot(&self, snapshot: &str) -> Result<tokio_postgres::Client> {
        let client = self.source.connect().await?;
        client
            .batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\nSET TRANSACTION SNAPSHOT '{}';\n{SNAPSHOT_SETTINGS}\nSET LOCAL lock_timeout = '10s';",
                snapshot.replace('\'', "''")
            ))
            .await
            .map_err(|e| pg_error(&e, "joining the snapshot"))?;
        if let Err(e) = client.batch_execute(&format!("LOCK TABLE {} IN ACCESS SHARE MODE", self.from)).await {
            if e.as_db_error().is_some_and(|d| d.code().code() == "55P03") {
                return Err(Error::new(
                    ErrorKind::Transient,
                    format!(
                        "reading {}: a statement that needs the table to itself (ALTER, TRUNCATE, VACUUM FULL, …) \
                         is waiting for this read; the read gives way to it",
                        self.stream
                    ),
                )
                .with_hint("the read is retried; to avoid this, run such statements outside sync times"));
            }
            return Err(read_error(&e, &self.stream, &self.source.opts.user()));
        }
        client.batch_execute("SET LOCAL lock_timeout = 0").await.map_err(|e| pg_error(&e, "joining the snapshot"))?;
        Ok(client)
    }

    /// A resumable read (see [`RangePlan`]): the table's own lock first,
    /// then the plan (the one to go on from, if it still applies), then one
    /// connection per range in the shared snapshot.
    async fn resumable(&self, client: &tokio_postgres::Client, out: &mpsc::Sender<SourceBatch>) -> Result<RangeStats> {
        let stream = &self.stream;
        // A table that is not read in ranges (small, never analyzed, not a
        // plain table, on a standby or a server before 14) is read in one
        // piece, with nothing to go on from.
        let ranges =
            page_ranges(client, &self.from, self.request.parallelism.max(1), self.request.parallel_min_bytes).await?;
        if ranges.is_empty() {
            self.send_progress(out, serde_json::Value::Null).await?;
            return self.copy(client, None, out).await;
        }
        let snapshot = self.share(client).await?;
        let row = client
            .query_one(
                "SELECT c.relfilenode::text::bigint, txid_snapshot_xmin(txid_current_snapshot()),
                        txid_snapshot_xmax(txid_current_snapshot())
                 FROM pg_class c WHERE c.oid = $1::text::regclass",
                &[&self.from],
            )
            .await
            .map_err(|e| pg_error(&e, "reading the table's file and the snapshot"))?;
        let (node, xmin, xmax): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        let saved = self.request.resume.clone().and_then(|v| serde_json::from_value::<RangePlan>(v).ok());
        let (plan, since) = match saved {
            Some(p) if p.relfilenode == node && p.xmin <= xmax && xmax - p.xmin < 1 << 31 => {
                let since = written_since(p.xmin, xmax);
                tracing::info!(stream = %stream, ranges = p.ranges.len(), "snapshot goes on from where it stopped");
                (p, Some(since))
            }
            saved => {
                if saved.is_some() {
                    tracing::info!(stream = %stream,
                        "the table was rewritten (or too many transactions ran) since the snapshot stopped; reading it all again");
                }
                let n = ranges.len();
                let ranges = ranges
                    .into_iter()
                    .enumerate()
                    .map(|(i, (lo, hi))| PlannedRange { lo, hi, last: i + 1 == n, next: lo, done: false })
                    .collect();
                (RangePlan { relfilenode: node, xmin, ranges }, None)
            }
        };
        // The plan this read follows, before any row: parts cut before its
        // first chunk ends must not record a plan it dropped.
        self.send_progress(
            out,
            serde_json::to_value(&plan).map_err(|e| Error::internal(format!("the snapshot's progress: {e}")))?,
        )
        .await?;
        let plan = std::sync::Arc::new(std::sync::Mutex::new(plan));
        let n = plan.lock().expect("plan lock").ranges.len();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..n {
            let (read, out, snapshot, plan, since) =
                (self.clone(), out.clone(), snapshot.clone(), plan.clone(), since.clone());
            tasks.spawn(async move { read.resumable_range(&snapshot, i, &plan, since.as_deref(), &out).await });
        }
        join_ranges(stream, tasks).await
    }

    /// Reads range `i` of a resumable read on a connection of its own: the
    /// rows of its pages already read that were written since (when going
    /// on), then the rest in chunks, sending the plan after each.
    async fn resumable_range(
        &self,
        snapshot: &str,
        i: usize,
        plan: &std::sync::Mutex<RangePlan>,
        since: Option<&str>,
        out: &mpsc::Sender<SourceBatch>,
    ) -> Result<RangeStats> {
        let client = self.join_snapshot(snapshot).await?;
        let r = plan.lock().expect("plan lock").ranges[i].clone();
        let mut total = RangeStats::default();
        if let Some(since) = since {
            let read_end = match (r.done, r.last) {
                (true, true) => None,
                (true, false) => Some(r.hi),
                (false, _) => Some(r.next),
            };
            if read_end.is_none_or(|end| end > r.lo) {
                let condition = format!("{} AND {since}", ctid_between(r.lo, read_end));
                total.add(self.copy(&client, Some(&condition), out).await?);
            }
        }
        let chunk = chunk_pages(r.hi.saturating_sub(r.lo));
        let mut next = r.next;
        let mut done = r.done;
        while !done {
            let (condition, to) = if next < r.hi {
                let to = (next + chunk).min(r.hi);
                done = !r.last && to >= r.hi;
                (ctid_between(next, Some(to)), to)
            } else if r.last {
                done = true;
                (ctid_between(next, None), next)
            } else {
                done = true;
                (String::new(), next)
            };
            if !condition.is_empty() {
                total.add(self.copy(&client, Some(&condition), out).await?);
            }
            // The chunk's rows are all in the channel: the plan may say so.
            let state = {
                let mut p = plan.lock().expect("plan lock");
                p.ranges[i].next = to;
                p.ranges[i].done = done;
                serde_json::to_value(&*p).map_err(|e| Error::internal(format!("the snapshot's progress: {e}")))?
            };
            self.send_progress(out, state).await?;
            next = to;
        }
        client.batch_execute("COMMIT").await.map_err(|e| pg_error(&e, "ending the snapshot transaction"))?;
        Ok(total)
    }

    /// Sends where the read stands (a batch without rows).
    async fn send_progress(&self, out: &mpsc::Sender<SourceBatch>, state: serde_json::Value) -> Result<()> {
        let marker = SourceBatch {
            batch: arrow_array::RecordBatch::new_empty(self.request.table.source_schema()),
            source_bytes: 0,
            progress: Some(state),
        };
        out.send(marker)
            .await
            .map_err(|_| Error::internal(format!("{}: the staging side stopped receiving batches", self.stream)))
    }

    /// Runs the COPY (of `range`, or the whole table) and sends its batches.
    async fn copy(
        &self,
        client: &tokio_postgres::Client,
        range: Option<&str>,
        out: &mpsc::Sender<SourceBatch>,
    ) -> Result<RangeStats> {
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
            copy::DecodeBounds {
                limits: request.limits,
                fail_on_unrepresentable: request.on_unrepresentable == OnUnrepresentable::Fail,
                batch_rows: request.batch_rows,
                batch_bytes: request.batch_bytes,
            },
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
                out.send(SourceBatch::rows(batch, source_bytes)).await.map_err(|_| closed())?;
            }
        }
        parser.finish()?;
        rows.finish_batch()?;
        let ready: Vec<_> = rows.take_ready().collect();
        for (batch, source_bytes) in ready {
            out.send(SourceBatch::rows(batch, source_bytes)).await.map_err(|_| closed())?;
        }
        Ok(RangeStats { rows: rows.rows(), bytes, tally: std::mem::take(&mut rows.tally) })
    }
}

/// Page ranges `[lo, hi)` cutting a plain table of at least `min_bytes`
/// into `n` of equal size. The size is
/// `pg_class.relpages`, the estimate VACUUM and ANALYZE keep (reading it
/// takes no lock, unlike `pg_relation_size`, which would queue behind a
/// lock before the COPY does); the last range is read open ended (its `hi`
/// is where the table ended then), since the table may have grown since.
/// Empty for anything else: smaller or never analyzed tables; views,
/// materialized views (which cannot be locked), partitioned and foreign
/// tables; a standby, which cannot export a snapshot for the other
/// connections to share; and servers before 14 (no TID range scan there).
/// The size and kind are read without a lock.
async fn page_ranges(
    client: &tokio_postgres::Client,
    qualified: &str,
    n: usize,
    min_bytes: u64,
) -> Result<Vec<(u64, u64)>> {
    let row = client
        .query_one(
            "SELECT c.relkind::text, c.relpages::bigint * current_setting('block_size')::bigint,
                    current_setting('block_size')::bigint, pg_is_in_recovery(),
                    current_setting('server_version_num')::int
             FROM pg_class c WHERE c.oid = $1::text::regclass",
            &[&qualified],
        )
        .await
        .map_err(|e| pg_error(&e, "reading the table's size"))?;
    let (kind, size, block, standby, version): (String, i64, i64, bool, i32) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    // Before 14 a CTID condition is no TID range scan: each range would scan the whole table.
    if standby || kind != "r" || (size as u64) < min_bytes || block <= 0 || version < 140000 {
        return Ok(Vec::new());
    }
    Ok(split_pages((size / block) as u64, n as u64))
}

/// `pages` cut into at most `n` ranges `[lo, hi)` of equal size, none empty,
/// covering every page (the last is read open ended anyway).
fn split_pages(pages: u64, n: u64) -> Vec<(u64, u64)> {
    if pages == 0 {
        return Vec::new();
    }
    let step = pages.div_ceil(n.clamp(1, pages));
    let n = pages.div_ceil(step);
    (0..n).map(|i| (i * step, (i + 1) * step)).collect()
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
            let (schema, _) = schema_and_table(stream);
            let grant = format!(
                "GRANT USAGE ON SCHEMA {} TO {u}; GRANT SELECT ON {} TO {u};",
                quote_ident(schema),
                qualified_name(stream),
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
            &[&schema_and_table(s).0, &schema_and_table(s).1],
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
        fixes.push(format!("GRANT USAGE ON SCHEMA {} TO {u};", quote_ident(schema_and_table(s).0)));
    }
    if !select {
        fixes.push(format!("GRANT SELECT ON {} TO {u};", qualified_name(s)));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_since_window_wraps_around_32_bits() {
        assert_eq!(written_since(100, 250), "xmin::text::bigint BETWEEN 100 AND 250");
        // Epoch 1, ids 4294967000 … 4294967295 then 0 … 500 of epoch 2.
        let from = (1i64 << 32) + 4_294_967_000;
        let to = (2i64 << 32) + 500;
        assert_eq!(written_since(from, to), "(xmin::text::bigint >= 4294967000 OR xmin::text::bigint <= 500)");
        assert_eq!(written_since(3 << 32, (3 << 32) + 7), "xmin::text::bigint BETWEEN 0 AND 7");
    }

    /// A range connection queued behind an exclusive lock that itself waits
    /// for the read's main connection gives way (a retryable error) instead
    /// of waiting forever.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_range_gives_way_to_a_queued_exclusive_lock() {
        let pg = simplyload_testkit::TestPg::shared();
        let db = pg.database().await;
        db.exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);").await;
        let source = PostgresSource::from_url("src", &db.url).unwrap();
        let main = source.connect().await.unwrap();
        main.batch_execute(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; LOCK TABLE public.t IN ACCESS SHARE MODE;",
        )
        .await
        .unwrap();
        let snapshot: String = main.query_one("SELECT pg_export_snapshot()", &[]).await.unwrap().get(0);
        // ALTER queues behind the main connection's lock.
        let alter = source.connect().await.unwrap();
        let queued = tokio::spawn(async move { alter.batch_execute("ALTER TABLE public.t ADD COLUMN x int").await });
        let waiting = "SELECT count(*) FROM pg_locks WHERE relation = 'public.t'::regclass AND NOT granted";
        for _ in 0..100 {
            if db.client.query_one(waiting, &[]).await.unwrap().get::<_, i64>(0) > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let table = TableSpec {
            stream: StreamName::new("public", "t"),
            name: "t".into(),
            columns: Vec::new(),
            key: Vec::new(),
            hashed: Vec::new(),
        };
        let read = RangeRead {
            source: source.clone(),
            stream: table.stream.clone(),
            reads: Vec::new(),
            key: Vec::new(),
            request: SnapshotRequest {
                table,
                limits: simplyload_core::ValueLimits::STAGING,
                on_unrepresentable: OnUnrepresentable::Report,
                batch_rows: 10,
                batch_bytes: 1 << 20,
                incremental: None,
                consistent_with: None,
                parallelism: 2,
                parallel_min_bytes: 0,
                resumable: true,
                resume: None,
            },
            select: "id".into(),
            from: "public.t".into(),
            filter: None,
        };
        // Bounded: a read that never gives way fails the test instead of hanging it.
        let e = tokio::time::timeout(std::time::Duration::from_secs(60), read.join_snapshot(&snapshot))
            .await
            .expect("the range gives way instead of waiting behind the lock")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
        assert!(e.to_string().contains("gives way") && e.to_string().contains("public.t"), "{e}");
        main.batch_execute("ROLLBACK").await.unwrap();
        queued.await.unwrap().unwrap();
    }

    #[test]
    fn page_splits_cover_every_page_once() {
        for pages in 1..60u64 {
            for n in 1..9u64 {
                let r = split_pages(pages, n);
                assert!(!r.is_empty() && r.len() as u64 <= n, "{pages} pages, {n}: {r:?}");
                assert_eq!(r[0].0, 0);
                for w in r.windows(2) {
                    assert_eq!(w[0].1, w[1].0, "contiguous: {pages} pages, {n}: {r:?}");
                }
                assert!(r.iter().all(|(lo, hi)| lo < hi && *lo < pages), "no empty range: {pages} pages, {n}: {r:?}");
                assert!(r.last().unwrap().1 >= pages);
            }
        }
        assert_eq!(split_pages(5, 4), vec![(0, 2), (2, 4), (4, 6)]);
        assert!(split_pages(0, 4).is_empty());
    }

    #[test]
    fn chunks_and_ctid_conditions() {
        assert_eq!(chunk_pages(0), 1);
        assert_eq!(chunk_pages(800), 100);
        assert_eq!(chunk_pages(10_000_000), 8192);
        assert_eq!(ctid_between(3, Some(9)), "ctid >= '(3,0)'::tid AND ctid < '(9,0)'::tid");
        assert_eq!(ctid_between(3, None), "ctid >= '(3,0)'::tid");
    }

    #[test]
    fn a_plan_survives_its_checkpoint() {
        let plan = RangePlan {
            relfilenode: 16_384,
            xmin: (1 << 32) + 7,
            ranges: vec![
                PlannedRange { lo: 0, hi: 10, last: false, next: 10, done: true },
                PlannedRange { lo: 10, hi: 20, last: true, next: 12, done: false },
            ],
        };
        let back: RangePlan = serde_json::from_value(serde_json::to_value(&plan).unwrap()).unwrap();
        assert_eq!(back.xmin, plan.xmin);
        assert_eq!((back.ranges[1].next, back.ranges[1].done, back.ranges[1].last), (12, false, true));
    }
}
