//! The source conformance suite: one set of tests every `Source` must pass
//! (Postgres now; Stripe against localstripe and Salesforce against a fake
//! later). A source's test crate implements [`SourceHarness`] and invokes
//! [`source_conformance!`].
//!
//! Every case makes streams of one small shape through the harness — a key
//! [`ID`], a text [`NAME`], an integer [`AMOUNT`] and, for a source with
//! cursor reads, a `timestamptz` cursor [`UPDATED_AT`] — writes rows with
//! the source's own means (SQL, API calls), then reads them the way a sync
//! does: discovered, planned by [`plan::plan_pipeline`], read through the
//! trait. Cases check the rows and values that arrive, not only that a call
//! returned `Ok`. A case about a capability the source does not declare
//! returns at once, saying so.

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use simplyload_core::config::{OnUnrepresentable, PipelineConfig, StreamConfig, SyncMode};
use simplyload_core::cursor::CursorValue;
use simplyload_core::feed::{FeedOwner, PrepareFeed, Prepared};
use simplyload_core::plan::{self, StreamPlan};
use simplyload_core::schema::meta;
use simplyload_core::source::DEFAULT_BATCH_BYTES;
use simplyload_core::{
    Capabilities, Catalog, ChangeEvent, ChangeFeed, ChangesRead, ChangesRequest, ErrorKind, FeedPosition, FeedStart,
    IncrementalRead, ReadStats, Selection, SnapshotRequest, Source, SqlType, StreamName, TableSpec, ValueLimits,
};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use uuid::Uuid;

/// The key: an integer.
pub const ID: &str = "id";
/// Text, nullable.
pub const NAME: &str = "name";
/// An integer.
pub const AMOUNT: &str = "amount";
/// The cursor (`timestamptz`), on sources with cursor reads only.
pub const UPDATED_AT: &str = "updated_at";

/// A read that has not ended by then is taken as hung, and fails the case.
const HANG: Duration = Duration::from_secs(120);
/// How long a read may take to notice that its receiver is gone.
const STOP_WAIT: Duration = Duration::from_secs(60);

/// 2024-01-01 00:00:00 UTC, in microseconds.
const T0: i64 = 1_704_067_200_000_000;
const SECOND: i64 = 1_000_000;

/// One row of a suite stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub id: i64,
    pub name: Option<String>,
    pub amount: i64,
    /// The cursor, microseconds since 1970-01-01 UTC; `None`: NULL. A
    /// source that sets its cursor itself ignores it (see
    /// [`SourceHarness::keeps_written_cursor`]).
    pub updated_at: Option<i64>,
}

/// A row with a name.
pub fn row(id: i64, name: &str, amount: i64, updated_at: Option<i64>) -> Row {
    Row { id, name: Some(name.to_owned()), amount, updated_at }
}

/// What the suite needs from a source besides the trait itself.
///
/// The suite makes one harness per case; what a case leaves behind
/// (streams, and the feeds it prepared: [`ChangeFeed`] has no call that
/// removes one) is the harness's to remove when it drops — Postgres drops
/// the case's database with its replication slots.
#[async_trait::async_trait]
pub trait SourceHarness: Send + Sync {
    /// The source under test, with credentials allowed everything a sync needs.
    fn source(&self) -> Arc<dyn Source>;

    /// The same source with credentials the service refuses, and the secret
    /// they carry (which no error may show).
    fn source_with_bad_credentials(&self) -> (Arc<dyn Source>, String);

    /// What the source must declare.
    fn capabilities(&self) -> Capabilities;

    /// Whether a stream has exactly the suite's columns, in the suite's
    /// order (a table made for the suite); `false` for an API object that
    /// carries fields of its own besides them.
    fn exact_shape(&self) -> bool {
        true
    }

    /// Whether rows keep the cursor values [`insert`](Self::insert) and
    /// [`update`](Self::update) give them (a table does; an API object
    /// whose service stamps its own time does not).
    fn keeps_written_cursor(&self) -> bool {
        true
    }

    /// Rows of the stream the cancellation case reads: enough for far more
    /// batches than a channel holds.
    fn large_stream_rows(&self) -> usize {
        50_000
    }

    /// Makes an empty stream of the suite's shape, distinct from every
    /// other stream this harness made; `hint` is a short lower-case word
    /// (unique within a case) the name may use.
    async fn create_stream(&self, hint: &str) -> StreamName;

    /// Adds rows, in one write (one transaction where the source has them).
    async fn insert(&self, stream: &StreamName, rows: &[Row]);

    /// Sets the name, amount and cursor of the row with `row.id`, in one write.
    async fn update(&self, stream: &StreamName, row: &Row);

    /// Deletes the rows with these ids, in one write.
    async fn delete(&self, stream: &StreamName, ids: &[i64]);

    /// Removes the stream from the source, as someone might during a sync;
    /// `false` when the source cannot (an API's object types are fixed).
    async fn drop_stream(&self, _stream: &StreamName) -> bool {
        false
    }

    /// Removes a column of the stream; `false` when the source cannot.
    async fn drop_column(&self, _stream: &StreamName, _column: &str) -> bool {
        false
    }
}

fn skip(case: &str, what: &str) {
    eprintln!("source suite: {case} skipped: the source declares no {what}");
}

/// Fails the case if `f` has not ended after `wait`.
async fn within<T>(wait: Duration, what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(wait, f).await.unwrap_or_else(|_| panic!("{what} did not end within {wait:?}: it hangs"))
}

/// A name no stream of the source has.
fn missing(stream: &StreamName) -> StreamName {
    StreamName { namespace: stream.namespace.clone(), name: format!("no_such_{}", stream.name) }
}

/// The suite's columns for this source, with the types they must have.
fn shape(h: &dyn SourceHarness) -> Vec<&'static str> {
    let mut columns = vec![ID, NAME, AMOUNT];
    if h.capabilities().cursor {
        columns.push(UPDATED_AT);
    }
    columns
}

fn type_fits(column: &str, t: SqlType) -> bool {
    match column {
        ID | AMOUNT => matches!(t, SqlType::Int16 | SqlType::Int32 | SqlType::Int64),
        NAME => t == SqlType::Text,
        _ => t == SqlType::TimestampTz,
    }
}

/// The stream is in the catalog with the suite's columns, types and key.
fn assert_described(h: &dyn SourceHarness, catalog: &Catalog, stream: &StreamName) {
    let names: Vec<String> = catalog.tables.iter().map(|t| t.name.to_string()).collect();
    let info = catalog.table(stream).unwrap_or_else(|| panic!("{stream} is not in the catalog: {names:?}"));
    assert_eq!(info.primary_key, [ID], "the key of {stream}");
    for column in shape(h) {
        let c = info.columns.iter().find(|c| c.name == column).unwrap_or_else(|| panic!("{stream} lacks {column}"));
        assert!(type_fits(column, c.sql_type), "{stream}.{column} is described as {}", c.sql_type.name());
    }
    if h.exact_shape() {
        let columns: Vec<&str> = info.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(columns, shape(h), "the columns of {stream}");
    }
}

/// A one-stream pipeline, as a config file would give it.
fn pipeline(stream: &StreamName, mode: SyncMode, cursor: Option<&str>) -> PipelineConfig {
    PipelineConfig {
        source: "src".into(),
        destination: "dst".into(),
        mode,
        on_unrepresentable: OnUnrepresentable::Report,
        streams: vec![StreamConfig {
            name: stream.to_string(),
            cursor: cursor.map(str::to_owned),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Plans a stream the way a sync does: discovers its selection, then plans it.
async fn plan_with(source: &dyn Source, stream: &StreamName, mode: SyncMode, cursor: Option<&str>) -> StreamPlan {
    let p = pipeline(stream, mode, cursor);
    let catalog = plan::discover(source, &plan::selection(&p, source.default_namespace())).await.expect("discover");
    let (label, planned) = plan::plan_pipeline("suite", &p, &catalog).pop().expect("one stream planned");
    planned.unwrap_or_else(|e| panic!("planning {label}: {e:?}"))
}

async fn plan_of(source: &dyn Source, stream: &StreamName) -> TableSpec {
    plan_with(source, stream, SyncMode::FullRefresh, None).await.table
}

fn request(table: &TableSpec, batch_rows: usize) -> SnapshotRequest {
    SnapshotRequest {
        table: table.clone(),
        limits: ValueLimits::STAGING,
        on_unrepresentable: OnUnrepresentable::Report,
        batch_rows,
        batch_bytes: DEFAULT_BATCH_BYTES,
        incremental: None,
        consistent_with: None,
        parallelism: 1,
        parallel_min_bytes: 0,
        resumable: false,
        resume: None,
    }
}

/// Runs `read_snapshot` to its end, gathering every batch.
async fn read(
    source: &Arc<dyn Source>,
    request: SnapshotRequest,
) -> simplyload_core::Result<(Vec<RecordBatch>, ReadStats)> {
    let (tx, mut rx) = mpsc::channel(4);
    let s = source.clone();
    let reader = tokio::spawn(async move { s.read_snapshot(request, tx).await });
    let mut batches = Vec::new();
    within(HANG, "a snapshot read", async {
        while let Some(b) = rx.recv().await {
            batches.push(b.batch);
        }
    })
    .await;
    let stats = within(HANG, "a snapshot read", reader).await.expect("the read task panicked")?;
    Ok((batches, stats))
}

/// A read that must succeed, checked for its shape and row count.
async fn read_ok(source: &Arc<dyn Source>, request: SnapshotRequest) -> (Vec<RecordBatch>, ReadStats) {
    let table = request.table.clone();
    let (batches, stats) = read(source, request).await.unwrap_or_else(|e| panic!("reading {}: {e:?}", table.stream));
    for b in &batches {
        assert_eq!(*b.schema(), *table.source_schema(), "every batch has the planned shape");
    }
    let sent: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(stats.rows, sent as u64, "ReadStats.rows counts the rows sent");
    (batches, stats)
}

/// A read that must fail; its error.
async fn read_err(source: &Arc<dyn Source>, request: SnapshotRequest) -> simplyload_core::Error {
    let stream = request.table.stream.clone();
    match read(source, request).await {
        Ok((_, stats)) => panic!("reading {stream} succeeded with {} rows", stats.rows),
        Err(e) => e,
    }
}

fn int_at(a: &dyn Array, i: usize) -> Option<i64> {
    if a.is_null(i) {
        return None;
    }
    Some(match a.data_type() {
        DataType::Int16 => a.as_primitive::<Int16Type>().value(i).into(),
        DataType::Int32 => a.as_primitive::<Int32Type>().value(i).into(),
        DataType::Int64 => a.as_primitive::<Int64Type>().value(i),
        t => panic!("an integer column arrived as {t}"),
    })
}

fn text_at(a: &dyn Array, i: usize) -> Option<String> {
    (!a.is_null(i)).then(|| a.as_string::<i32>().value(i).to_owned())
}

fn micros_at(a: &dyn Array, i: usize) -> Option<i64> {
    match a.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            (!a.is_null(i)).then(|| a.as_primitive::<TimestampMicrosecondType>().value(i))
        }
        t => panic!("the cursor arrived as {t}"),
    }
}

/// A column of a batch by the source name of the planned column.
fn column<'a>(table: &TableSpec, batch: &'a RecordBatch, source_name: &str) -> Option<&'a dyn Array> {
    let c = table.columns.iter().find(|c| c.source_name == source_name)?;
    let i = batch.schema().index_of(&c.name).unwrap_or_else(|_| panic!("the batch lacks column {}", c.name));
    Some(batch.column(i).as_ref())
}

/// The suite's values of every row, sorted by id.
fn rows_of(table: &TableSpec, batches: &[RecordBatch]) -> Vec<Row> {
    let mut rows = Vec::new();
    for b in batches {
        let col = |n: &str| column(table, b, n).unwrap_or_else(|| panic!("{} lacks column {n}", table.stream));
        let cursor = column(table, b, UPDATED_AT);
        for i in 0..b.num_rows() {
            rows.push(Row {
                id: int_at(col(ID), i).expect("a key is never NULL"),
                name: text_at(col(NAME), i),
                amount: int_at(col(AMOUNT), i).expect("amount"),
                updated_at: cursor.and_then(|c| micros_at(c, i)),
            });
        }
    }
    rows.sort_by_key(|r| r.id);
    rows
}

fn ids(rows: &[Row]) -> Vec<i64> {
    rows.iter().map(|r| r.id).collect()
}

/// Rows as the source should give them back: without the cursor when it
/// has none or stamps its own.
fn as_read(h: &dyn SourceHarness, rows: &[Row]) -> Vec<Row> {
    let keep = h.capabilities().cursor && h.keeps_written_cursor();
    let mut rows: Vec<Row> =
        rows.iter().map(|r| Row { updated_at: r.updated_at.filter(|_| keep), ..r.clone() }).collect();
    rows.sort_by_key(|r| r.id);
    rows
}

/// Capabilities are declared as the source behaves: a change feed exactly
/// when `change_feed()` gives one, reconcile scans exactly when
/// `scanner()` does, and all of it what the harness expects.
pub async fn capabilities_match_what_the_source_offers(h: &dyn SourceHarness) {
    let source = h.source();
    let caps = source.capabilities();
    assert_eq!(caps, h.capabilities(), "the capabilities {} declares", source.kind());
    assert_eq!(caps.change_feed, source.change_feed().is_some(), "change_feed vs change_feed()");
    assert_eq!(caps.scan, source.scanner().is_some(), "scan vs scanner()");
    let catalog = plan::discover(source.as_ref(), &Selection::all()).await.expect("discover");
    assert_eq!(catalog.capabilities, caps);
}

/// `discover` describes every stream a selection matches, with its
/// columns and key; a name the source lacks is left out without an error.
pub async fn discover_describes_what_the_selection_matches(h: &dyn SourceHarness) {
    let source = h.source();
    let orders = h.create_stream("orders").await;
    let refunds = h.create_stream("refunds").await;
    let all = plan::discover(source.as_ref(), &Selection::all()).await.expect("discover everything");
    assert_described(h, &all, &orders);
    assert_described(h, &all, &refunds);
    let one = plan::discover(source.as_ref(), &Selection::of([orders.clone()])).await.expect("discover one");
    assert_described(h, &one, &orders);
    let prefix = &orders.name[..orders.name.len() - 1];
    let pattern = StreamName { namespace: orders.namespace.clone(), name: format!("{prefix}*") };
    let matched = plan::discover(source.as_ref(), &Selection::of([pattern])).await.expect("discover a pattern");
    assert_described(h, &matched, &orders);
    let gone = missing(&orders);
    let none = plan::discover(source.as_ref(), &Selection::of([gone.clone()])).await.expect("discover a missing name");
    assert!(none.table(&gone).is_none(), "{gone} does not exist, yet it is described");
}

fn sample_rows() -> Vec<Row> {
    vec![
        row(1, "alpha", 1999, Some(T0)),
        row(2, "zwölf 🦀 日本語", -250, Some(T0 + 1)),
        Row { id: 3, name: None, amount: 0, updated_at: None },
        row(4, "it's \"quoted\",\n\ttabbed", 2_000_000_000, Some(T0 - 86_400 * SECOND)),
        row(5, &"x".repeat(2000), 7, Some(T0 + 365 * 86_400 * SECOND)),
    ]
}

/// A snapshot arrives in the planned Arrow shape with every row and value
/// as written, and counts what it sent; an empty stream reads as no rows.
pub async fn snapshot_reads_every_row_as_written(h: &dyn SourceHarness) {
    let source = h.source();
    let stream = h.create_stream("people").await;
    h.insert(&stream, &sample_rows()).await;
    let table = plan_of(source.as_ref(), &stream).await;
    let (batches, stats) = read_ok(&source, request(&table, 1000)).await;
    assert_eq!(rows_of(&table, &batches), as_read(h, &sample_rows()));
    assert_eq!(stats.rows, 5);
    assert!(stats.source_bytes > 0, "the bytes read are counted");
    assert!(stats.unrepresentable.is_empty(), "{:?}", stats.unrepresentable);

    let empty = h.create_stream("nobody").await;
    let table = plan_of(source.as_ref(), &empty).await;
    let (batches, stats) = read_ok(&source, request(&table, 1000)).await;
    assert!(rows_of(&table, &batches).is_empty());
    assert_eq!(stats.rows, 0);
}

/// No batch holds more than `batch_rows` rows, and every row arrives once.
pub async fn snapshot_batches_hold_at_most_batch_rows(h: &dyn SourceHarness) {
    let source = h.source();
    let stream = h.create_stream("tickets").await;
    let rows: Vec<Row> = (1..=10).map(|i| row(i, &format!("t{i}"), i * 10, Some(T0 + i * SECOND))).collect();
    h.insert(&stream, &rows).await;
    let table = plan_of(source.as_ref(), &stream).await;
    let (batches, stats) = read_ok(&source, request(&table, 3)).await;
    let sizes: Vec<usize> = batches.iter().map(|b| b.num_rows()).collect();
    assert!(sizes.iter().all(|n| *n <= 3), "batches of {sizes:?} rows with batch_rows 3");
    assert_eq!(rows_of(&table, &batches), as_read(h, &rows), "each row exactly once");
    assert_eq!(stats.rows, 10);
}

/// Cursor values with a tie (ids 4 and 5) and a NULL (id 7).
fn cursor_rows() -> Vec<Row> {
    let at = [Some(1), Some(2), Some(3), Some(4), Some(4), Some(6), None, Some(8)];
    (1..=8).map(|i| row(i, &format!("c{i}"), i, at[i as usize - 1].map(|s| T0 + s * SECOND))).collect()
}

/// Rows whose cursor is at or after `from`.
fn at_or_after(rows: &[Row], from: i64) -> Vec<i64> {
    rows.iter().filter(|r| r.updated_at.is_some_and(|at| at >= from)).map(|r| r.id).collect()
}

/// An incremental read sends exactly the rows whose cursor is at or after
/// its bound (rows on the bound included, NULL cursors left out), every
/// row without a bound, and says how far a checkpoint may move.
pub async fn incremental_read_starts_at_its_bound(h: &dyn SourceHarness) {
    if !h.capabilities().cursor {
        return skip("incremental_read_starts_at_its_bound", "cursor reads");
    }
    let source = h.source();
    let stream = h.create_stream("events").await;
    h.insert(&stream, &cursor_rows()).await;
    let planned = plan_with(source.as_ref(), &stream, SyncMode::Incremental, Some(UPDATED_AT)).await;
    let cursor = &planned.table.columns[planned.cursor.as_ref().expect("a cursor plan").index];
    let incremental = |from: Option<i64>| IncrementalRead {
        column: cursor.source_name.clone(),
        sql_type: cursor.sql_type,
        from: from.map(|value| CursorValue::Micros { value }),
    };
    let everything = SnapshotRequest { incremental: Some(incremental(None)), ..request(&planned.table, 1000) };
    let (batches, stats) = read_ok(&source, everything).await;
    let all = rows_of(&planned.table, &batches);
    assert_eq!(all, as_read(h, &cursor_rows()), "without a bound: every row, NULL cursors too");
    assert!(matches!(stats.cursor_ceiling, Some(CursorValue::Micros { .. })), "{:?}", stats.cursor_ceiling);

    // The bound is a value rows have: the middle one of those read.
    let mut values: Vec<i64> = all.iter().filter_map(|r| r.updated_at).collect();
    values.sort_unstable();
    let from = values[values.len() / 2];
    let want = at_or_after(&all, from);
    assert!(!want.is_empty() && want.len() < values.len(), "the bound {from} must leave rows out: {values:?}");
    let bounded = SnapshotRequest { incremental: Some(incremental(Some(from))), ..request(&planned.table, 1000) };
    let (batches, stats) = read_ok(&source, bounded).await;
    assert_eq!(ids(&rows_of(&planned.table, &batches)), want, "rows with a cursor ≥ {from}");
    assert!(matches!(stats.cursor_ceiling, Some(CursorValue::Micros { .. })), "{:?}", stats.cursor_ceiling);
}

/// What a change read delivered of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Upsert { name: Option<String>, amount: Option<i64> },
    Deleted,
}

fn upsert(name: &str, amount: i64) -> Seen {
    Seen::Upsert { name: Some(name.to_owned()), amount: Some(amount) }
}

/// One change as delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Change {
    id: i64,
    seen: Seen,
    version: i128,
}

fn changes_request(feed: &str, table: &TableSpec) -> ChangesRequest {
    ChangesRequest {
        feed: feed.to_owned(),
        from: None,
        tables: vec![table.clone()],
        limits: ValueLimits::STAGING,
        on_unrepresentable: OnUnrepresentable::Report,
        batch_rows: 1000,
        max_changes: 1_000_000,
        max_lag_bytes: u64::MAX,
    }
}

fn staged(batch: &RecordBatch, name: &str) -> usize {
    batch.schema().index_of(name).unwrap_or_else(|_| panic!("a staged change lacks {name}"))
}

/// The changes of `events`, in the order they came.
fn changes_of(table: &TableSpec, events: Vec<ChangeEvent>) -> Vec<Change> {
    let mut out = Vec::new();
    for e in events {
        let batch = match e {
            ChangeEvent::Rows { stream, batch } => {
                assert_eq!(stream, table.stream.to_string(), "changes of a stream not asked for");
                batch
            }
            ChangeEvent::Truncate { stream, .. } => panic!("a truncate of {stream} that never happened"),
        };
        let col = |n: &str| column(table, &batch, n).expect("a suite column");
        let deleted = batch.column(staged(&batch, meta::DELETED)).as_boolean();
        let version = batch.column(staged(&batch, meta::VERSION)).as_primitive::<Decimal128Type>();
        for i in 0..batch.num_rows() {
            let seen = match deleted.value(i) {
                true => Seen::Deleted,
                false => Seen::Upsert { name: text_at(col(NAME), i), amount: int_at(col(AMOUNT), i) },
            };
            out.push(Change { id: int_at(col(ID), i).expect("a key"), seen, version: version.value(i) });
        }
    }
    out
}

/// Runs a change read to its end.
async fn read_changes(feed: &dyn ChangeFeed, name: &str, table: &TableSpec) -> (ChangesRead, Vec<Change>) {
    let (tx, mut rx) = mpsc::channel(16);
    let drain = async move {
        let mut events = Vec::new();
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        events
    };
    let reading = async { tokio::join!(feed.read(changes_request(name, table), tx), drain) };
    let (read, events) = within(HANG, "a change read", reading).await;
    let read = read.unwrap_or_else(|e| panic!("reading the changes of feed {name}: {e:?}"));
    (read, changes_of(table, events))
}

fn prepare_request<'a>(feed: &'a str, tables: &'a [TableSpec]) -> PrepareFeed<'a> {
    PrepareFeed { feed, tables, joining: false, remake_lost: false, recorded: None }
}

/// The name of the feed of a new pipeline.
fn new_feed_name(feed: &dyn ChangeFeed) -> String {
    let owner = FeedOwner::Pipeline { pipeline: "suite", pipeline_id: Uuid::new_v4() };
    let name = feed.feed_name(owner).expect("a feed name");
    assert_eq!(feed.feed_name(owner).expect("a feed name"), name, "feed_name is a function of its owner");
    name
}

/// Makes a feed that does not exist yet; its start.
async fn make_feed(feed: &dyn ChangeFeed, name: &str, table: &TableSpec) -> Box<dyn FeedStart> {
    match feed.prepare(prepare_request(name, std::slice::from_ref(table))).await.expect("prepare a new feed") {
        Prepared::Created { start, remade } => {
            assert!(!remade, "a new feed replaced nothing");
            assert!(!start.position().token.is_empty(), "the start has a position");
            start
        }
        Prepared::Existing { .. } => panic!("feed {name} was never made, yet prepare found it"),
    }
}

/// A new feed for a pipeline of its own; its name and start.
async fn new_feed(feed: &dyn ChangeFeed, table: &TableSpec) -> (String, Box<dyn FeedStart>) {
    let name = new_feed_name(feed);
    let start = make_feed(feed, &name, table).await;
    (name, start)
}

/// Every change arrived as expected, per key in commit order, each newer
/// than the feed's start and no newer than the position to confirm.
fn assert_changes(changes: &[Change], start: &FeedPosition, confirm: &FeedPosition, want: &BTreeMap<i64, Vec<Seen>>) {
    let mut by_key: BTreeMap<i64, Vec<&Change>> = BTreeMap::new();
    for c in changes {
        by_key.entry(c.id).or_default().push(c);
        assert!(c.version > start.version, "{c:?} is not newer than the start {start:?}");
        assert!(c.version <= confirm.version, "{c:?} is newer than the position to confirm {confirm:?}");
    }
    for (id, seen) in want {
        let got = by_key.get(id).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(got.iter().map(|c| c.seen.clone()).collect::<Vec<_>>(), *seen, "the changes of id {id}");
        let versions: Vec<i128> = got.iter().map(|c| c.version).collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "versions of id {id} rise in commit order: {versions:?}");
    }
    let keys: Vec<&i64> = by_key.keys().collect();
    assert_eq!(keys, want.keys().collect::<Vec<_>>(), "changes of rows never changed");
}

/// Inserts, an update and a delete, in three writes; what a feed must deliver of them.
async fn write_ledger(h: &dyn SourceHarness, stream: &StreamName) -> BTreeMap<i64, Vec<Seen>> {
    h.insert(stream, &[row(1, "a", 10, Some(T0)), row(2, "b", 20, Some(T0)), row(3, "c", 30, Some(T0))]).await;
    h.update(stream, &row(2, "b2", 22, Some(T0 + SECOND))).await;
    h.delete(stream, &[3]).await;
    BTreeMap::from([
        (1, vec![upsert("a", 10)]),
        (2, vec![upsert("b", 20), upsert("b2", 22)]),
        (3, vec![upsert("c", 30), Seen::Deleted]),
    ])
}

/// A change feed delivers every change after its start; read again
/// without a confirm it delivers the same changes with the same versions;
/// once confirmed, nothing; its status shows the confirmed position.
pub async fn change_feed_replays_until_confirmed(h: &dyn SourceHarness) {
    if !h.capabilities().change_feed {
        return skip("change_feed_replays_until_confirmed", "change feed");
    }
    let source = h.source();
    let feed = source.change_feed().expect("a change feed");
    let stream = h.create_stream("ledger").await;
    let table = plan_with(source.as_ref(), &stream, SyncMode::Cdc, None).await.table;
    let name = new_feed_name(feed);
    assert!(feed.status(&name).await.expect("status").is_none(), "feed {name} exists before it was made");
    let check = feed.check(&name, std::slice::from_ref(&stream)).await.expect("check the feed");
    assert!(check.ok(), "{check:?}");
    let start = make_feed(feed, &name, &table).await;
    let at = start.position();
    match feed.prepare(prepare_request(&name, std::slice::from_ref(&table))).await.expect("prepare again") {
        Prepared::Existing { confirmed } => {
            assert!(confirmed.is_none_or(|c| c == at), "a new feed replays from its start")
        }
        Prepared::Created { .. } => panic!("feed {name} exists, yet prepare made it again"),
    }
    start.release().await.expect("release the start");
    let (idle, nothing) = read_changes(feed, &name, &table).await;
    assert!(nothing.is_empty() && idle.changes == 0, "nothing changed yet: {nothing:?}");

    let want = write_ledger(h, &stream).await;
    let (first, changes) = read_changes(feed, &name, &table).await;
    let confirm = first.confirm.clone().expect("changes were read: a position to confirm");
    assert_eq!(first.changes, 5, "3 inserts, an update and a delete");
    assert_changes(&changes, &at, &confirm, &want);

    let (_, replayed) = read_changes(feed, &name, &table).await;
    assert_eq!(replayed, changes, "read again without a confirm: the same changes, the same versions");

    feed.confirm(&name, &confirm).await.expect("confirm");
    let (after, rest) = read_changes(feed, &name, &table).await;
    assert!(rest.is_empty() && after.changes == 0, "confirmed changes came again: {rest:?}");
    let status = feed.status(&name).await.expect("status").expect("the feed exists");
    assert_eq!(status.name, name);
    assert!(!status.lost);
    assert_eq!(status.confirmed, Some(confirm), "the confirmed position");
}

/// Confirming a position at or behind the confirmed one changes nothing.
pub async fn change_feed_confirm_never_moves_back(h: &dyn SourceHarness) {
    if !h.capabilities().change_feed {
        return skip("change_feed_confirm_never_moves_back", "change feed");
    }
    let source = h.source();
    let feed = source.change_feed().expect("a change feed");
    let stream = h.create_stream("journal").await;
    let table = plan_with(source.as_ref(), &stream, SyncMode::Cdc, None).await.table;
    let (name, start) = new_feed(feed, &table).await;
    let at = start.position();
    start.release().await.expect("release the start");
    h.insert(&stream, &[row(1, "a", 1, Some(T0))]).await;
    let (read, changes) = read_changes(feed, &name, &table).await;
    assert_eq!(changes.len(), 1, "{changes:?}");
    let confirm = read.confirm.expect("a position to confirm");
    feed.confirm(&name, &confirm).await.expect("confirm");
    feed.confirm(&name, &confirm).await.expect("confirm the same position again");
    let behind = feed.confirm(&name, &at).await;
    assert!(behind.is_ok(), "confirming the start, behind the confirmed position, must change nothing: {behind:?}");
    let status = feed.status(&name).await.expect("status").expect("the feed exists");
    assert_eq!(status.confirmed, Some(confirm), "the confirmed position stays");
    let (_, rest) = read_changes(feed, &name, &table).await;
    assert!(rest.is_empty(), "confirmed changes came again: {rest:?}");
}

/// A feed's start reads the source as of its position: rows written after
/// it are not in the snapshot, and come from the feed instead.
pub async fn change_feed_start_reads_as_of_its_position(h: &dyn SourceHarness) {
    if !h.capabilities().change_feed {
        return skip("change_feed_start_reads_as_of_its_position", "change feed");
    }
    let source = h.source();
    let feed = source.change_feed().expect("a change feed");
    let stream = h.create_stream("accounts").await;
    let before = [row(1, "a", 1, Some(T0)), row(2, "b", 2, Some(T0))];
    h.insert(&stream, &before).await;
    let table = plan_with(source.as_ref(), &stream, SyncMode::Cdc, None).await.table;
    let (name, start) = new_feed(feed, &table).await;
    let at = start.position();
    h.insert(&stream, &[row(3, "c", 3, Some(T0))]).await;
    h.update(&stream, &row(1, "a2", 11, Some(T0 + SECOND))).await;
    let Some(snapshot) = start.snapshot() else {
        start.release().await.expect("release the start");
        return skip("change_feed_start_reads_as_of_its_position", "snapshot token at a feed's start");
    };
    let consistent = SnapshotRequest { consistent_with: Some(snapshot), ..request(&table, 1000) };
    let (batches, _) = read_ok(&source, consistent).await;
    start.release().await.expect("release the start");
    assert_eq!(rows_of(&table, &batches), as_read(h, &before), "the snapshot is as of the feed's start");
    let (read, changes) = read_changes(feed, &name, &table).await;
    let confirm = read.confirm.expect("a position to confirm");
    let want = BTreeMap::from([(1, vec![upsert("a2", 11)]), (3, vec![upsert("c", 3)])]);
    assert_changes(&changes, &at, &confirm, &want);
}

/// A read whose receiver is dropped part way stops with an error instead
/// of hanging or finishing.
pub async fn dropped_receiver_stops_the_read(h: &dyn SourceHarness) {
    let source = h.source();
    let stream = h.create_stream("bulk").await;
    let n = h.large_stream_rows() as i64;
    let rows: Vec<Row> = (1..=n).map(|i| row(i, &format!("row {i}"), i, Some(T0 + i))).collect();
    h.insert(&stream, &rows).await;
    let table = plan_of(source.as_ref(), &stream).await;
    let batch_rows = (n as usize / 100).max(1);
    let (tx, mut rx) = mpsc::channel(1);
    let (s, req) = (source.clone(), request(&table, batch_rows));
    let reader = tokio::spawn(async move { s.read_snapshot(req, tx).await });
    let first = within(HANG, "the first batch", rx.recv()).await.expect("a first batch");
    assert!(first.batch.num_rows() > 0 && first.batch.num_rows() <= batch_rows, "{} rows", first.batch.num_rows());
    drop(rx);
    let ended = within(STOP_WAIT, "a read whose receiver was dropped", reader).await.expect("the read task panicked");
    match ended {
        Ok(stats) => panic!("the read finished ({} rows) though its receiver was dropped", stats.rows),
        Err(e) => eprintln!("source suite: the stopped read failed with {}: {e}", e.kind()),
    }
}

/// Refused credentials are an `Auth` error that never shows the secret,
/// when discovering and when reading; `check` reports them instead of failing.
pub async fn bad_credentials_are_an_auth_error(h: &dyn SourceHarness) {
    let stream = h.create_stream("secrets").await;
    h.insert(&stream, &[row(1, "a", 1, Some(T0))]).await;
    let table = plan_of(h.source().as_ref(), &stream).await;
    let (bad, secret) = h.source_with_bad_credentials();
    let shown = |e: &simplyload_core::Error| format!("{e} {e:?} {:?}", e.hint());
    let e = plan::discover(bad.as_ref(), &Selection::all()).await.expect_err("discover with bad credentials");
    assert_eq!(e.kind(), ErrorKind::Auth, "{e:?}");
    assert!(!shown(&e).contains(&secret), "the secret is shown: {}", shown(&e));
    let e = read_err(&bad, request(&table, 100)).await;
    assert_eq!(e.kind(), ErrorKind::Auth, "{e:?}");
    assert!(!shown(&e).contains(&secret), "the secret is shown: {}", shown(&e));
    let report = bad.check(std::slice::from_ref(&stream)).await.expect("check reports, not fails");
    assert!(!report.ok(), "{report:?}");
    assert!(!format!("{report:?}").contains(&secret), "the secret is shown: {report:?}");
}

/// Reading a stream the source no longer has is `NotFound`: a plan of a
/// name it lacks, and a plan of a stream dropped since.
pub async fn reading_a_missing_stream_is_not_found(h: &dyn SourceHarness) {
    let source = h.source();
    let stream = h.create_stream("invoices").await;
    h.insert(&stream, &[row(1, "a", 1, Some(T0))]).await;
    let table = plan_of(source.as_ref(), &stream).await;
    let elsewhere = TableSpec { stream: missing(&stream), ..table.clone() };
    let e = read_err(&source, request(&elsewhere, 100)).await;
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e:?}");
    if !h.drop_stream(&stream).await {
        return eprintln!("source suite: streams of this source cannot be dropped; the dropped-stream read is skipped");
    }
    let e = read_err(&source, request(&table, 100)).await;
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e:?}");
    assert!(e.message().contains(&stream.to_string()), "the error names {stream}: {e}");
}

/// Reading a plan whose columns the source no longer has is a `StalePlan`:
/// a column it never had, and one dropped since.
pub async fn a_changed_shape_is_a_stale_plan(h: &dyn SourceHarness) {
    let source = h.source();
    let stream = h.create_stream("payments").await;
    h.insert(&stream, &[row(1, "a", 1, Some(T0))]).await;
    let table = plan_of(source.as_ref(), &stream).await;
    let mut widened = table.clone();
    let mut extra = widened.columns[1].clone();
    (extra.source_name, extra.name) = ("suite_never_there".into(), "suite_never_there".into());
    widened.columns.push(extra);
    let e = read_err(&source, request(&widened, 100)).await;
    assert_eq!(e.kind(), ErrorKind::StalePlan, "{e:?}");
    if !h.drop_column(&stream, AMOUNT).await {
        return eprintln!("source suite: columns of this source cannot be dropped; the dropped-column read is skipped");
    }
    let e = read_err(&source, request(&table, 100)).await;
    assert_eq!(e.kind(), ErrorKind::StalePlan, "{e:?}");
    assert!(e.message().contains(AMOUNT), "the error names the column: {e}");
}

/// `check` passes a stream the credentials can read, and reports a
/// missing one as a failed item naming it (without failing itself).
pub async fn check_names_a_missing_stream(h: &dyn SourceHarness) {
    let source = h.source();
    let stream = h.create_stream("refunds").await;
    let report = source.check(std::slice::from_ref(&stream)).await.expect("check");
    assert!(report.ok(), "{report:?}");
    let gone = missing(&stream);
    let report = source.check(std::slice::from_ref(&gone)).await.expect("check reports, not fails");
    let named = |i: &&simplyload_core::CheckItem| format!("{} {}", i.what, i.detail).contains(&gone.to_string());
    assert!(report.items.iter().filter(|i| !i.ok).any(|i| named(&i)), "no failed item names {gone}: {report:?}");
}

/// Expands to one `#[tokio::test]` per suite case. `$make` is an async
/// expression producing a value that implements [`SourceHarness`].
#[macro_export]
macro_rules! source_conformance {
    ($make:expr) => {
        $crate::source_conformance!(@cases $make;
            capabilities_match_what_the_source_offers,
            discover_describes_what_the_selection_matches,
            snapshot_reads_every_row_as_written,
            snapshot_batches_hold_at_most_batch_rows,
            incremental_read_starts_at_its_bound,
            change_feed_replays_until_confirmed,
            change_feed_confirm_never_moves_back,
            change_feed_start_reads_as_of_its_position,
            dropped_receiver_stops_the_read,
            bad_credentials_are_an_auth_error,
            reading_a_missing_stream_is_not_found,
            a_changed_shape_is_a_stale_plan,
            check_names_a_missing_stream,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let harness = $make.await;
                $crate::source_suite::$case(&harness).await;
            }
        )*
    };
}
