//! The destination conformance suite: one set of tests every `Destination`
//! must pass (DuckDB now, Snowflake later). A destination's test crate
//! implements [`DestinationHarness`] and invokes [`destination_conformance!`].
//!
//! Every case stages real Parquet files through the real staging code, loads
//! them through the trait, and reads the rows back as typed values.

use arrow_array::builder::*;
use arrow_array::{ArrayRef, Decimal128Array, RecordBatch, StringArray};
use simplyload_core::runner::stage_columns;
use simplyload_core::schema::meta;
use simplyload_core::{
    BatchManifest, Column, Destination, LoadKind, LoadRequest, SqlType, StagingArea, StreamName, TableSpec,
};
use simplyload_staging::Staging;
use std::sync::Arc;
use uuid::Uuid;

/// A value read back from a destination, in a destination-neutral form.
#[derive(Debug, Clone)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Exact decimal text, as `rust_decimal`-free canonical form (`-12.50` at scale 2).
    Decimal(String),
    Text(String),
    Bytes(Vec<u8>),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since 1970-01-01 (UTC for timestamptz).
    Timestamp(i64),
    /// Microseconds since midnight.
    Time(i64),
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        use Value::*;
        match (self, other) {
            (Null, Null) => true,
            (Bool(a), Bool(b)) => a == b,
            (Int(a), Int(b)) => a == b,
            (Float(a), Float(b)) => a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
            (Decimal(a), Decimal(b)) | (Text(a), Text(b)) => a == b,
            (Bytes(a), Bytes(b)) => a == b,
            (Date(a), Date(b)) => a == b,
            (Timestamp(a), Timestamp(b)) | (Time(a), Time(b)) => a == b,
            _ => false,
        }
    }
}

/// What the suite needs from a destination besides the trait itself.
#[async_trait::async_trait]
pub trait DestinationHarness: Send + Sync {
    fn destination(&self) -> Arc<dyn Destination>;
    /// Rows of a destination table (all rows, deleted ones too), the given
    /// columns in order, sorted by `order_by`.
    async fn rows(&self, table: &str, columns: &[&str], order_by: &[&str]) -> Vec<Vec<Value>>;
    /// (column name, logical type name as [`SqlType::name`] or a meta type) in table order.
    async fn column_types(&self, table: &str) -> Vec<(String, String)>;
    /// `_simplyload_batches` rows: (pipeline_id, stream, batch_id, row_count).
    async fn batches(&self) -> Vec<(String, String, u64, u64)>;
    /// The logical type name [`column_types`](Self::column_types) reports
    /// for a column created as `logical` (a destination with one float
    /// type reports `float32` columns as `float64`).
    fn reported_type(&self, logical: &str) -> String {
        logical.to_owned()
    }
}

/// Replaces the dates and timestamps a destination cannot hold by NULL, in
/// the staged data and in what is expected back: sources do this before
/// staging (DESIGN.md §5), so a destination never sees them.
fn within_limits(batch: RecordBatch, expected: &mut [Vec<Value>], limits: simplyload_core::ValueLimits) -> RecordBatch {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Date32Type, TimestampMicrosecondType};
    let mut cols: Vec<ArrayRef> = Vec::new();
    for (i, col) in batch.columns().iter().enumerate() {
        let out: ArrayRef = match col.data_type() {
            arrow_schema::DataType::Date32 => {
                let a = col.as_primitive::<Date32Type>();
                Arc::new(a.iter().map(|v| v.filter(|d| limits.date_ok(*d))).collect::<arrow_array::Date32Array>())
            }
            arrow_schema::DataType::Timestamp(_, tz) => {
                let a = col.as_primitive::<TimestampMicrosecondType>();
                Arc::new(
                    a.iter()
                        .map(|v| v.filter(|t| limits.timestamp_ok(*t)))
                        .collect::<arrow_array::TimestampMicrosecondArray>()
                        .with_timezone_opt(tz.clone()),
                )
            }
            _ => col.clone(),
        };
        for (row, exp) in expected.iter_mut().enumerate() {
            if out.is_null(row) && !col.is_null(row) {
                exp[i] = Value::Null;
            }
        }
        cols.push(out);
    }
    RecordBatch::try_new(batch.schema(), cols).expect("batch within limits")
}

/// Two values of a column are the same; JSON compares as JSON (key order,
/// spacing and number spelling are the destination's).
fn same_value(t: SqlType, got: &Value, want: &Value) -> bool {
    match (t, got, want) {
        (SqlType::Json, Value::Text(g), Value::Text(w)) => {
            simplyload_core::canon::canon_json(g).ok() == simplyload_core::canon::canon_json(w).ok()
        }
        _ => got == want,
    }
}

/// A staging folder and pipeline identity for one suite case.
pub struct Bench {
    pub staging: Staging,
    pub pipeline_id: Uuid,
    _dir: tempfile::TempDir,
}

impl Default for Bench {
    fn default() -> Self {
        Self::new()
    }
}

impl Bench {
    pub fn new() -> Bench {
        let dir = tempfile::tempdir().expect("tempdir");
        Bench { staging: Staging::local(dir.path()).expect("staging"), pipeline_id: Uuid::new_v4(), _dir: dir }
    }

    /// Stages `data` (the table's data columns) as batch `batch_id`, with
    /// versions `batch_id × 2³² + ordinal` and no deletes.
    pub async fn stage(&self, table: &TableSpec, batch_id: u64, data: RecordBatch, kind: LoadKind) -> BatchManifest {
        let staged = stage_columns(table, data, batch_id, 0, None).expect("stage columns");
        self.write(table, batch_id, staged, kind).await
    }

    /// Stages `data` with explicit versions and delete flags (what CDC produces).
    pub async fn stage_changes(
        &self,
        table: &TableSpec,
        batch_id: u64,
        data: RecordBatch,
        versions: &[i128],
        deleted: &[bool],
    ) -> BatchManifest {
        self.stage_changes_with(table, batch_id, data, versions, deleted, &[]).await
    }

    /// Like [`Bench::stage_changes`], with the columns each update left unchanged (TOAST).
    pub async fn stage_changes_with(
        &self,
        table: &TableSpec,
        batch_id: u64,
        data: RecordBatch,
        versions: &[i128],
        deleted: &[bool],
        unchanged: &[Vec<String>],
    ) -> BatchManifest {
        let batch =
            simplyload_core::cdc::stage_changes(table, data, versions, deleted, unchanged).expect("staged batch");
        self.write(table, batch_id, batch, LoadKind::Merge).await
    }

    async fn write(&self, table: &TableSpec, batch_id: u64, batch: RecordBatch, kind: LoadKind) -> BatchManifest {
        let stream = table.stream.to_string();
        let mut w = self.staging.writer("suite", &stream, batch_id, table.staged_schema()).await.expect("writer");
        w.write(batch).await.expect("write");
        let files = w.finish().await.expect("finish");
        BatchManifest {
            pipeline: "suite".into(),
            stream,
            batch_id,
            sync_id: 1,
            kind,
            table: table.clone(),
            row_count: files.iter().map(|f| f.row_count).sum(),
            files,
            start_position: None,
            end_position: None,
            truncated_at: None,
            complete: false,
        }
    }

    pub async fn load(
        &self,
        dest: &dyn Destination,
        table: &TableSpec,
        kind: LoadKind,
        batches: &[BatchManifest],
    ) -> simplyload_core::Result<simplyload_core::LoadOutcome> {
        dest.load(LoadRequest {
            beside_read: false,
            pipeline_id: self.pipeline_id,
            table,
            kind,
            batches,
            staging: &self.staging as &dyn StagingArea,
        })
        .await
    }
}

fn column(name: &str, t: SqlType) -> Column {
    Column { source_name: name.into(), name: name.into(), sql_type: t, source_type: t.name(), nullable: true }
}

/// A table spec for the suite; `key` names key columns (empty: no key).
pub fn table(name: &str, columns: &[(&str, SqlType)], key: &[&str]) -> TableSpec {
    TableSpec {
        stream: StreamName::new("suite", name),
        name: name.into(),
        columns: columns.iter().map(|(n, t)| column(n, *t)).collect(),
        key: key.iter().map(|k| k.to_string()).collect(),
        hashed: Vec::new(),
    }
}

fn id_name(ids: &[i64], names: &[Option<&str>]) -> (TableSpec, RecordBatch) {
    let t = table("people", &[("id", SqlType::Int64), ("name", SqlType::Text)], &["id"]);
    let b = RecordBatch::try_new(
        t.source_schema(),
        vec![Arc::new(arrow_array::Int64Array::from(ids.to_vec())), Arc::new(StringArray::from(names.to_vec()))],
    )
    .unwrap();
    (t, b)
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

/// Every logical type, with typical, extreme and NULL values.
pub fn all_types() -> (TableSpec, RecordBatch, Vec<Vec<Value>>) {
    let t = table(
        "all_types",
        &[
            ("id", SqlType::Int32),
            ("i16", SqlType::Int16),
            ("i64", SqlType::Int64),
            ("dec", SqlType::Decimal { precision: 38, scale: 10 }),
            ("money", SqlType::Decimal { precision: 19, scale: 2 }),
            ("f32", SqlType::Float32),
            ("f64", SqlType::Float64),
            ("txt", SqlType::Text),
            ("flag", SqlType::Boolean),
            ("day", SqlType::Date),
            ("ts", SqlType::Timestamp),
            ("tstz", SqlType::TimestampTz),
            ("tod", SqlType::Time),
            ("uid", SqlType::Uuid),
            ("doc", SqlType::Json),
            ("blob", SqlType::Binary),
        ],
        &["id"],
    );
    let max_dec: i128 = 99_999_999_999_999_999_999_999_999_999_999_999_999;
    let mut id = Int32Builder::new();
    let mut i16b = Int16Builder::new();
    let mut i64b = Int64Builder::new();
    let mut dec = Decimal128Builder::new().with_precision_and_scale(38, 10).unwrap();
    let mut money = Decimal128Builder::new().with_precision_and_scale(19, 2).unwrap();
    let mut f32b = Float32Builder::new();
    let mut f64b = Float64Builder::new();
    let mut txt = StringBuilder::new();
    let mut flag = BooleanBuilder::new();
    let mut day = Date32Builder::new();
    let mut ts = TimestampMicrosecondBuilder::new();
    let mut tstz = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut tod = Time64MicrosecondBuilder::new();
    let mut uid = StringBuilder::new();
    let mut doc = StringBuilder::new();
    let mut blob = BinaryBuilder::new();
    let mut expected = Vec::new();

    // 1: typical values.
    id.append_value(1);
    i16b.append_value(7);
    i64b.append_value(42);
    dec.append_value(12_345_000_000_000);
    money.append_value(1999);
    f32b.append_value(1.5);
    f64b.append_value(0.1);
    txt.append_value("hello");
    flag.append_value(true);
    day.append_value(19_723);
    ts.append_value(1_704_067_200_123_456);
    tstz.append_value(1_704_067_200_000_001);
    tod.append_value(45_296_789_000);
    uid.append_value("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    doc.append_value(r#"{"a": [1, 2, {"b": null}], "c": "x"}"#);
    blob.append_value(b"\x00\x01\x02\xff\x00");
    expected.push(vec![
        Value::Int(1),
        Value::Int(7),
        Value::Int(42),
        Value::Decimal("1234.5000000000".into()),
        Value::Decimal("19.99".into()),
        Value::Float(1.5),
        Value::Float(0.1),
        text("hello"),
        Value::Bool(true),
        Value::Date(19_723),
        Value::Timestamp(1_704_067_200_123_456),
        Value::Timestamp(1_704_067_200_000_001),
        Value::Time(45_296_789_000),
        text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        text(r#"{"a": [1, 2, {"b": null}], "c": "x"}"#),
        Value::Bytes(b"\x00\x01\x02\xff\x00".to_vec()),
    ]);

    // 2: extremes.
    let far_past_us = -210_866_803_200_000_000; // 4713-01-01 BC
    let far_future_us = 9_214_646_400_000_000_000; // year 293970
    id.append_value(2);
    i16b.append_value(i16::MIN);
    i64b.append_value(i64::MIN);
    dec.append_value(-max_dec);
    money.append_value(-9_223_372_036_854_775_808);
    f32b.append_value(f32::NAN);
    f64b.append_value(f64::INFINITY);
    txt.append_value("");
    flag.append_value(false);
    day.append_value(-2_440_588); // 4713-11-24 BC
    ts.append_value(far_past_us);
    tstz.append_value(far_future_us);
    tod.append_value(0);
    uid.append_value("00000000-0000-0000-0000-000000000000");
    doc.append_value("[]");
    blob.append_value(b"");
    expected.push(vec![
        Value::Int(2),
        Value::Int(i16::MIN as i64),
        Value::Int(i64::MIN),
        Value::Decimal("-9999999999999999999999999999.9999999999".into()),
        Value::Decimal("-92233720368547758.08".into()),
        Value::Float(f32::NAN as f64),
        Value::Float(f64::INFINITY),
        text(""),
        Value::Bool(false),
        Value::Date(-2_440_588),
        Value::Timestamp(far_past_us),
        Value::Timestamp(far_future_us),
        Value::Time(0),
        text("00000000-0000-0000-0000-000000000000"),
        text("[]"),
        Value::Bytes(Vec::new()),
    ]);

    // 3: the other extremes.
    id.append_value(3);
    i16b.append_value(i16::MAX);
    i64b.append_value(i64::MAX);
    dec.append_value(max_dec);
    money.append_value(9_223_372_036_854_775_807);
    f32b.append_value(f32::NEG_INFINITY);
    f64b.append_value(-0.0);
    txt.append_value("zwölf 🦀 \u{10FFFF} 日本語");
    flag.append_null();
    day.append_value(2_932_896); // 9999-12-31
    ts.append_value(253_402_300_799_999_999); // 9999-12-31 23:59:59.999999
    tstz.append_value(-1);
    tod.append_value(86_399_999_999);
    uid.append_value("ffffffff-ffff-ffff-ffff-ffffffffffff");
    doc.append_value(r#"{"n": 12345678901234567890123, "f": 1.10, "u": "\u00e9\ud83e\udd80"}"#);
    blob.append_value([0u8; 300]);
    expected.push(vec![
        Value::Int(3),
        Value::Int(i16::MAX as i64),
        Value::Int(i64::MAX),
        Value::Decimal("9999999999999999999999999999.9999999999".into()),
        Value::Decimal("92233720368547758.07".into()),
        Value::Float(f64::NEG_INFINITY),
        Value::Float(-0.0),
        text("zwölf 🦀 \u{10FFFF} 日本語"),
        Value::Null,
        Value::Date(2_932_896),
        Value::Timestamp(253_402_300_799_999_999),
        Value::Timestamp(-1),
        Value::Time(86_399_999_999),
        text("ffffffff-ffff-ffff-ffff-ffffffffffff"),
        text(r#"{"n": 12345678901234567890123, "f": 1.10, "u": "\u00e9\ud83e\udd80"}"#),
        Value::Bytes(vec![0u8; 300]),
    ]);

    // 4: NULL everywhere but the key.
    id.append_value(4);
    i16b.append_null();
    i64b.append_null();
    dec.append_null();
    money.append_null();
    f32b.append_null();
    f64b.append_null();
    txt.append_null();
    flag.append_null();
    day.append_null();
    ts.append_null();
    tstz.append_null();
    tod.append_null();
    uid.append_null();
    doc.append_null();
    blob.append_null();
    let mut nulls = vec![Value::Int(4)];
    nulls.extend(std::iter::repeat_n(Value::Null, 15));
    expected.push(nulls);

    let arrays: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(i16b.finish()),
        Arc::new(i64b.finish()),
        Arc::new(dec.finish()),
        Arc::new(money.finish()),
        Arc::new(f32b.finish()),
        Arc::new(f64b.finish()),
        Arc::new(txt.finish()),
        Arc::new(flag.finish()),
        Arc::new(day.finish()),
        Arc::new(ts.finish()),
        Arc::new(tstz.finish()),
        Arc::new(tod.finish()),
        Arc::new(uid.finish()),
        Arc::new(doc.finish()),
        Arc::new(blob.finish()),
    ];
    let batch = RecordBatch::try_new(t.source_schema(), arrays).unwrap();
    (t, batch, expected)
}

pub async fn all_types_round_trip(h: &dyn DestinationHarness) {
    let bench = Bench::new();
    let (t, batch, mut expected) = all_types();
    let batch = within_limits(batch, &mut expected, h.destination().limits());
    let m = bench.stage(&t, 1, batch, LoadKind::Replace).await;
    let out = bench.load(h.destination().as_ref(), &t, LoadKind::Replace, &[m]).await.unwrap();
    assert_eq!(out.rows_staged, 4);
    assert_eq!(out.rows_after, Some(4));
    let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
    let rows = h.rows(&t.name, &names, &["id"]).await;
    assert_eq!(rows.len(), expected.len());
    for (got, want) in rows.iter().zip(&expected) {
        for ((g, w), c) in got.iter().zip(want).zip(&t.columns) {
            assert!(same_value(c.sql_type, g, w), "column {} of row {:?}: got {g:?}, want {w:?}", c.name, want[0]);
        }
    }
    let types = h.column_types(&t.name).await;
    let want_types: Vec<(String, String)> = t
        .columns
        .iter()
        .map(|c| (c.name.clone(), h.reported_type(&c.sql_type.name())))
        .chain([
            (meta::SYNCED_AT.to_owned(), "timestamptz".to_owned()),
            (meta::DELETED.to_owned(), "boolean".to_owned()),
            (meta::VERSION.to_owned(), "decimal(38,0)".to_owned()),
        ])
        .collect();
    assert_eq!(types, want_types);
}

pub async fn replace_replaces_rows(h: &dyn DestinationHarness) {
    let bench = Bench::new();
    let dest = h.destination();
    let (t, b1) = id_name(&[1, 2, 3], &[Some("a"), Some("b"), Some("c")]);
    let m1 = bench.stage(&t, 1, b1, LoadKind::Replace).await;
    bench.load(dest.as_ref(), &t, LoadKind::Replace, &[m1]).await.unwrap();
    let (_, b2) = id_name(&[2, 4], &[Some("B"), None]);
    let m2 = bench.stage(&t, 2, b2, LoadKind::Replace).await;
    let out = bench.load(dest.as_ref(), &t, LoadKind::Replace, &[m2]).await.unwrap();
    assert_eq!(out.rows_after, Some(2));
    let rows = h.rows("people", &["id", "name", meta::DELETED], &["id"]).await;
    assert_eq!(
        rows,
        vec![vec![Value::Int(2), text("B"), Value::Bool(false)], vec![Value::Int(4), Value::Null, Value::Bool(false)]]
    );
    assert_eq!(dest.row_count("people").await.unwrap(), Some(2));
    assert_eq!(dest.row_count("no_such_table").await.unwrap(), None);
}

/// The parts of a full refresh: the first replaces the table's rows, the
/// later ones add theirs; a part loaded again changes nothing.
pub async fn appended_parts_follow_a_replace(h: &dyn DestinationHarness) {
    let bench = Bench::new();
    let dest = h.destination();
    let (t, b0) = id_name(&[7, 8], &[Some("old"), Some("old")]);
    let m0 = bench.stage(&t, 1, b0, LoadKind::Replace).await;
    bench.load(dest.as_ref(), &t, LoadKind::Replace, &[m0]).await.unwrap();
    let (_, b1) = id_name(&[1, 2], &[Some("a"), Some("b")]);
    let m1 = bench.stage(&t, 2, b1, LoadKind::Replace).await;
    bench.load(dest.as_ref(), &t, LoadKind::Replace, &[m1]).await.unwrap();
    let (_, b2) = id_name(&[3, 4], &[None, Some("d")]);
    let m2 = bench.stage(&t, 3, b2, LoadKind::Append).await;
    let out = bench.load(dest.as_ref(), &t, LoadKind::Append, std::slice::from_ref(&m2)).await.unwrap();
    assert_eq!(out.rows_staged, 2);
    let want = vec![
        vec![Value::Int(1), text("a"), Value::Bool(false)],
        vec![Value::Int(2), text("b"), Value::Bool(false)],
        vec![Value::Int(3), Value::Null, Value::Bool(false)],
        vec![Value::Int(4), text("d"), Value::Bool(false)],
    ];
    assert_eq!(h.rows("people", &["id", "name", meta::DELETED], &["id"]).await, want);
    let again = bench.load(dest.as_ref(), &t, LoadKind::Append, &[m2]).await.unwrap();
    assert_eq!(again.already_loaded, vec![3]);
    assert_eq!(h.rows("people", &["id", "name", meta::DELETED], &["id"]).await, want);
    assert_eq!(dest.row_count("people").await.unwrap(), Some(4));
}

pub async fn replay_of_a_loaded_batch_changes_nothing(h: &dyn DestinationHarness) {
    let bench = Bench::new();
    let dest = h.destination();
    let (t, b1) = id_name(&[1, 2], &[Some("a"), Some("b")]);
    let m1 = bench.stage(&t, 5, b1, LoadKind::Replace).await;
    bench.load(dest.as_ref(), &t, LoadKind::Replace, std::slice::from_ref(&m1)).await.unwrap();
    let before = h.rows("people", &["id", "name", meta::VERSION], &["id"]).await;
    let again = bench.load(dest.as_ref(), &t, LoadKind::Replace, &[m1]).await.unwrap();
    assert_eq!(again.already_loaded, vec![5]);
    assert_eq!(again.rows_staged, 0);
    assert_eq!(h.rows("people", &["id", "name", meta::VERSION], &["id"]).await, before);
    let batches = h.batches().await;
    assert_eq!(batches, vec![(bench.pipeline_id.to_string(), "suite.people".to_owned(), 5, 2)]);
    assert_eq!(dest.loaded_batches(bench.pipeline_id, "suite.people", &[4, 5, 6]).await.unwrap(), vec![5]);
    assert!(dest.loaded_batches(Uuid::new_v4(), "suite.people", &[5]).await.unwrap().is_empty());
}

pub async fn empty_replace_empties_the_table(h: &dyn DestinationHarness) {
    let bench = Bench::new();
    let dest = h.destination();
    let (t, b1) = id_name(&[1], &[Some("a")]);
    let m1 = bench.stage(&t, 1, b1, LoadKind::Replace).await;
    bench.load(dest.as_ref(), &t, LoadKind::Replace, &[m1]).await.unwrap();
    let (_, empty) = id_name(&[], &[]);
    let m2 = bench.stage(&t, 2, empty, LoadKind::Replace).await;
    assert!(m2.files.is_empty());
    let out = bench.load(dest.as_ref(), &t, LoadKind::Replace, &[m2]).await.unwrap();
    assert_eq!(out.rows_after, Some(0));
    assert!(h.rows("people", &["id"], &["id"]).await.is_empty());
    assert_eq!(h.batches().await.len(), 2);
}

pub async fn table_without_key_keeps_duplicates(h: &dyn DestinationHarness) {
    let bench = Bench::new();
    let t = table("log", &[("msg", SqlType::Text), ("n", SqlType::Int32)], &[]);
    let b = RecordBatch::try_new(
        t.source_schema(),
        vec![
            Arc::new(StringArray::from(vec![Some("x"), Some("x"), Some("y"), None])),
            Arc::new(arrow_array::Int32Array::from(vec![1, 1, 1, 2])),
        ],
    )
    .unwrap();
    let m = bench.stage(&t, 1, b, LoadKind::Replace).await;
    let out = bench.load(h.destination().as_ref(), &t, LoadKind::Replace, &[m]).await.unwrap();
    assert_eq!(out.rows_after, Some(4));
    let rows = h.rows("log", &["msg", "n", meta::INDEX], &["msg", "n", meta::INDEX]).await;
    assert_eq!(
        rows,
        vec![
            vec![text("x"), Value::Int(1), Value::Int(0)],
            vec![text("x"), Value::Int(1), Value::Int(1)],
            vec![text("y"), Value::Int(1), Value::Int(0)],
            vec![Value::Null, Value::Int(2), Value::Int(0)],
        ]
    );
    let ids = h.rows("log", &[meta::ID], &["msg", "n", meta::INDEX]).await;
    assert_eq!(ids[0], ids[1], "identical rows share an id");
    assert_ne!(ids[0], ids[2]);
}

pub async fn merge_applies_newest_version_and_tombstones(h: &dyn DestinationHarness) {
    let bench = Bench::new();
    let dest = h.destination();
    let (t, b1) = id_name(&[1, 2, 3], &[Some("a1"), Some("b1"), Some("c1")]);
    let m1 = bench.stage_changes(&t, 1, b1, &[10, 10, 10], &[false, false, false]).await;
    bench.load(dest.as_ref(), &t, LoadKind::Merge, &[m1]).await.unwrap();
    // Batch 2: two changes to id 1 (the later wins), an OLDER change to id 2
    // (ignored), a delete of id 3, a delete of never-seen id 9 (tombstone),
    // and a new id 4.
    let (_, b2) = id_name(&[1, 1, 2, 3, 9, 4], &[Some("a2"), Some("a3"), Some("b0"), None, None, Some("d1")]);
    let m2 = bench.stage_changes(&t, 2, b2, &[20, 21, 5, 22, 23, 24], &[false, false, false, true, true, false]).await;
    let out = bench.load(dest.as_ref(), &t, LoadKind::Merge, &[m2]).await.unwrap();
    assert_eq!(out.rows_after, Some(3));
    let rows = h.rows("people", &["id", "name", meta::DELETED, meta::VERSION], &["id"]).await;
    let d = |s: &str| Value::Decimal(s.into());
    assert_eq!(
        rows,
        vec![
            vec![Value::Int(1), text("a3"), Value::Bool(false), d("21")],
            vec![Value::Int(2), text("b1"), Value::Bool(false), d("10")],
            vec![Value::Int(3), text("c1"), Value::Bool(true), d("22")],
            vec![Value::Int(4), text("d1"), Value::Bool(false), d("24")],
            vec![Value::Int(9), Value::Null, Value::Bool(true), d("23")],
        ]
    );
    // An older row arriving later cannot resurrect the tombstone.
    let (_, b3) = id_name(&[9], &[Some("zombie")]);
    let m3 = bench.stage_changes(&t, 3, b3, &[15], &[false]).await;
    bench.load(dest.as_ref(), &t, LoadKind::Merge, &[m3]).await.unwrap();
    let rows = h.rows("people", &["id", "name", meta::DELETED], &["id"]).await;
    assert_eq!(rows[4], vec![Value::Int(9), Value::Null, Value::Bool(true)]);
}

/// A row merged again with the values it has (an incremental lookback
/// reading it again) is applied but not counted as an update.
pub async fn a_row_merged_again_unchanged_is_not_an_update(h: &dyn DestinationHarness) {
    let bench = Bench::new();
    let dest = h.destination();
    let (t, b1) = id_name(&[1, 2, 3], &[Some("a"), Some("b"), None]);
    let m1 = bench.stage_changes(&t, 1, b1, &[10, 10, 10], &[false, false, false]).await;
    bench.load(dest.as_ref(), &t, LoadKind::Merge, &[m1]).await.unwrap();
    let (_, b2) = id_name(&[1, 2, 3, 4], &[Some("a"), Some("B"), None, Some("d")]);
    let m2 = bench.stage_changes(&t, 2, b2, &[20, 20, 20, 20], &[false, false, false, false]).await;
    let out = bench.load(dest.as_ref(), &t, LoadKind::Merge, &[m2]).await.unwrap();
    assert_eq!(out.changes, simplyload_core::RowChanges { inserted: 1, updated: 1, deleted: 0 }, "only id 2 changed");
    let rows = h.rows("people", &["id", "name", meta::VERSION], &["id"]).await;
    assert_eq!(rows[1], vec![Value::Int(2), text("B"), Value::Decimal("20".into())]);
}

pub async fn several_batches_load_in_one_call(h: &dyn DestinationHarness) {
    let bench = Bench::new();
    let dest = h.destination();
    let (t, b1) = id_name(&[1, 2], &[Some("a"), Some("b")]);
    let (_, b2) = id_name(&[2, 3], &[Some("B"), Some("c")]);
    let m1 = bench.stage(&t, 1, b1, LoadKind::Merge).await;
    let m2 = bench.stage(&t, 2, b2, LoadKind::Merge).await;
    let out = bench.load(dest.as_ref(), &t, LoadKind::Merge, &[m1.clone(), m2]).await.unwrap();
    assert_eq!(out.rows_staged, 4);
    let rows = h.rows("people", &["id", "name"], &["id"]).await;
    assert_eq!(
        rows,
        vec![vec![Value::Int(1), text("a")], vec![Value::Int(2), text("B")], vec![Value::Int(3), text("c")]]
    );
    let ids: Vec<u64> = h.batches().await.iter().map(|b| b.2).collect();
    assert_eq!(ids, vec![1, 2]);
    // Replaying an old batch after a newer one changes nothing.
    bench.load(dest.as_ref(), &t, LoadKind::Merge, &[m1]).await.unwrap();
    assert_eq!(h.rows("people", &["id", "name"], &["id"]).await, rows);
}

pub async fn new_source_column_is_added(h: &dyn DestinationHarness) {
    let bench = Bench::new();
    let dest = h.destination();
    let (t, b1) = id_name(&[1], &[Some("a")]);
    let m1 = bench.stage(&t, 1, b1, LoadKind::Merge).await;
    bench.load(dest.as_ref(), &t, LoadKind::Merge, &[m1]).await.unwrap();
    let mut t2 = t.clone();
    t2.columns.push(column("score", SqlType::Decimal { precision: 5, scale: 1 }));
    let b2 = RecordBatch::try_new(
        t2.source_schema(),
        vec![
            Arc::new(arrow_array::Int64Array::from(vec![2])),
            Arc::new(StringArray::from(vec!["b"])),
            Arc::new(Decimal128Array::from(vec![123]).with_precision_and_scale(5, 1).unwrap()),
        ],
    )
    .unwrap();
    let m2 = bench.stage(&t2, 2, b2, LoadKind::Merge).await;
    bench.load(dest.as_ref(), &t2, LoadKind::Merge, &[m2]).await.unwrap();
    let rows = h.rows("people", &["id", "name", "score"], &["id"]).await;
    assert_eq!(
        rows,
        vec![
            vec![Value::Int(1), text("a"), Value::Null],
            vec![Value::Int(2), text("b"), Value::Decimal("12.3".into())]
        ]
    );
    let types = h.column_types("people").await;
    assert!(types.contains(&("score".to_owned(), "decimal(5,1)".to_owned())), "{types:?}");
}

pub async fn changed_column_type_is_never_cast(h: &dyn DestinationHarness) {
    let bench = Bench::new();
    let dest = h.destination();
    let spec = |scale: i8| {
        table("prices", &[("id", SqlType::Int64), ("amount", SqlType::Decimal { precision: 12, scale })], &["id"])
    };
    let batch = |t: &TableSpec, v: i128, scale: i8| {
        RecordBatch::try_new(
            t.source_schema(),
            vec![
                Arc::new(arrow_array::Int64Array::from(vec![1])),
                Arc::new(Decimal128Array::from(vec![v]).with_precision_and_scale(12, scale).unwrap()),
            ],
        )
        .unwrap()
    };
    let t2 = spec(2);
    let m1 = bench.stage(&t2, 1, batch(&t2, 125, 2), LoadKind::Replace).await;
    bench.load(dest.as_ref(), &t2, LoadKind::Replace, &[m1]).await.unwrap();
    // The source column became numeric(12,4): a full refresh stores 1.2345, not 1.23.
    let t4 = spec(4);
    let m2 = bench.stage(&t4, 2, batch(&t4, 12345, 4), LoadKind::Replace).await;
    bench.load(dest.as_ref(), &t4, LoadKind::Replace, &[m2]).await.unwrap();
    assert_eq!(
        h.rows("prices", &["id", "amount"], &["id"]).await,
        vec![vec![Value::Int(1), Value::Decimal("1.2345".into())]]
    );
    assert!(h.column_types("prices").await.contains(&("amount".to_owned(), "decimal(12,4)".to_owned())));
    // A merge never casts stored values: it refuses and says what to do.
    let m3 = bench.stage(&t2, 3, batch(&t2, 999, 2), LoadKind::Merge).await;
    let e = bench.load(dest.as_ref(), &t2, LoadKind::Merge, &[m3]).await.unwrap_err();
    assert_eq!(e.kind(), simplyload_core::ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("amount"), "{e}");
    assert_eq!(
        h.rows("prices", &["id", "amount"], &["id"]).await,
        vec![vec![Value::Int(1), Value::Decimal("1.2345".into())]]
    );
}

pub async fn awkward_names_are_quoted(h: &dyn DestinationHarness) {
    let bench = Bench::new();
    let t = table("select", &[("from", SqlType::Int32), ("we\"ird name", SqlType::Text)], &["from"]);
    let b = RecordBatch::try_new(
        t.source_schema(),
        vec![Arc::new(arrow_array::Int32Array::from(vec![1])), Arc::new(StringArray::from(vec!["it's"]))],
    )
    .unwrap();
    let m = bench.stage(&t, 1, b, LoadKind::Replace).await;
    bench.load(h.destination().as_ref(), &t, LoadKind::Replace, &[m]).await.unwrap();
    assert_eq!(h.rows("select", &["from", "we\"ird name"], &["from"]).await, vec![vec![Value::Int(1), text("it's")]]);
}

/// CDC: an update that left a TOAST column unchanged keeps the stored
/// value, or takes it from an earlier change of the same key in the load.
pub async fn unchanged_columns_keep_their_values(h: &dyn DestinationHarness) {
    let bench = Bench::new();
    let dest = h.destination();
    let t = table("docs", &[("id", SqlType::Int64), ("name", SqlType::Text), ("body", SqlType::Text)], &["id"]);
    let rows = |ids: Vec<i64>, names: Vec<Option<&str>>, bodies: Vec<Option<&str>>| {
        RecordBatch::try_new(
            t.source_schema(),
            vec![
                Arc::new(arrow_array::Int64Array::from(ids)),
                Arc::new(StringArray::from(names)),
                Arc::new(StringArray::from(bodies)),
            ],
        )
        .unwrap()
    };
    let big = "x".repeat(100_000);
    let m1 = bench
        .stage_changes(
            &t,
            1,
            rows(vec![1, 2], vec![Some("a"), Some("b")], vec![Some(&big), Some("b1")]),
            &[10, 10],
            &[false, false],
        )
        .await;
    bench.load(dest.as_ref(), &t, LoadKind::Merge, &[m1]).await.unwrap();
    let body = || vec!["body".to_owned()];
    // id 1: only the name changes (body not sent). id 2: body and name change,
    // then the name again with the body not sent. id 3: never loaded, body not sent.
    let m2 = bench
        .stage_changes_with(
            &t,
            2,
            rows(
                vec![1, 2, 2, 3],
                vec![Some("a2"), Some("b2"), Some("b3"), Some("c")],
                vec![None, Some("b2 body"), None, None],
            ),
            &[20, 21, 22, 23],
            &[false, false, false, false],
            &[body(), vec![], body(), body()],
        )
        .await;
    let out = bench.load(dest.as_ref(), &t, LoadKind::Merge, &[m2]).await.unwrap();
    assert_eq!(out.rows_after, Some(3));
    let got = h.rows("docs", &["id", "name", "body"], &["id"]).await;
    assert_eq!(
        got,
        vec![
            vec![Value::Int(1), text("a2"), text(&big)],
            vec![Value::Int(2), text("b3"), text("b2 body")],
            vec![Value::Int(3), text("c"), Value::Null],
        ]
    );
    // A later full row replaces everything.
    let m3 = bench.stage_changes(&t, 3, rows(vec![1], vec![Some("a3")], vec![Some("new")]), &[30], &[false]).await;
    bench.load(dest.as_ref(), &t, LoadKind::Merge, &[m3]).await.unwrap();
    assert_eq!(h.rows("docs", &["id", "name", "body"], &["id"]).await[0], vec![Value::Int(1), text("a3"), text("new")]);
}

/// CDC: a truncate marks every older row deleted; rows after it, in the
/// same load, stay; an older change replayed later cannot bring a row back.
pub async fn truncate_deletes_older_rows(h: &dyn DestinationHarness) {
    let bench = Bench::new();
    let dest = h.destination();
    let (t, b1) = id_name(&[1, 2, 3], &[Some("a"), Some("b"), Some("c")]);
    let m1 = bench.stage_changes(&t, 1, b1, &[10, 10, 10], &[false, false, false]).await;
    bench.load(dest.as_ref(), &t, LoadKind::Merge, &[m1]).await.unwrap();
    let (_, b2) = id_name(&[4], &[Some("d")]);
    let mut m2 = bench.stage_changes(&t, 2, b2, &[20], &[false]).await;
    m2.truncated_at = Some("15".into());
    let out = bench.load(dest.as_ref(), &t, LoadKind::Merge, &[m2]).await.unwrap();
    assert_eq!(out.rows_after, Some(1));
    assert_eq!(out.changes.deleted, 3);
    let (_, b3) = id_name(&[1], &[Some("zombie")]);
    let m3 = bench.stage_changes(&t, 3, b3, &[12], &[false]).await;
    bench.load(dest.as_ref(), &t, LoadKind::Merge, &[m3]).await.unwrap();
    let rows = h.rows("people", &["id", "name", meta::DELETED], &["id"]).await;
    assert_eq!(
        rows,
        vec![
            vec![Value::Int(1), text("a"), Value::Bool(true)],
            vec![Value::Int(2), text("b"), Value::Bool(true)],
            vec![Value::Int(3), text("c"), Value::Bool(true)],
            vec![Value::Int(4), text("d"), Value::Bool(false)],
        ]
    );
    // A truncate alone (no rows after it) is applied too.
    let (_, empty) = id_name(&[], &[]);
    let mut m4 = bench.stage_changes(&t, 4, empty, &[], &[]).await;
    m4.truncated_at = Some("40".into());
    let out = bench.load(dest.as_ref(), &t, LoadKind::Merge, &[m4]).await.unwrap();
    assert_eq!(out.rows_after, Some(0));
}

/// CDC of a table without a key: inserts add occurrences of identical rows,
/// deletes (and the old side of updates) remove one; a replayed change is
/// not applied twice.
pub async fn keyless_changes_count_occurrences(h: &dyn DestinationHarness) {
    let bench = Bench::new();
    let dest = h.destination();
    let t = table("events_log", &[("msg", SqlType::Text), ("n", SqlType::Int32)], &[]);
    let rows = |msgs: Vec<&str>, ns: Vec<i32>| {
        RecordBatch::try_new(
            t.source_schema(),
            vec![Arc::new(StringArray::from(msgs)), Arc::new(arrow_array::Int32Array::from(ns))],
        )
        .unwrap()
    };
    let m1 = bench
        .stage_changes(&t, 1, rows(vec!["x", "x", "y"], vec![1, 1, 1]), &[10, 11, 12], &[false, false, false])
        .await;
    let out = bench.load(dest.as_ref(), &t, LoadKind::Merge, &[m1]).await.unwrap();
    assert_eq!(out.rows_after, Some(3));
    // Delete one x; insert z; update y 1 → 2 (its old row deleted, the new inserted).
    let b2 = || rows(vec!["x", "z", "y", "y"], vec![1, 2, 1, 2]);
    let (v2, d2) = ([20, 21, 22, 23], [true, false, true, false]);
    let m2 = bench.stage_changes(&t, 2, b2(), &v2, &d2).await;
    let out = bench.load(dest.as_ref(), &t, LoadKind::Merge, &[m2]).await.unwrap();
    assert_eq!(out.rows_after, Some(3));
    let live = || async {
        let mut r: Vec<Vec<Value>> = h
            .rows("events_log", &["msg", "n", meta::DELETED], &["msg", "n", meta::INDEX])
            .await
            .into_iter()
            .filter(|r| r[2] == Value::Bool(false))
            .map(|r| r[..2].to_vec())
            .collect();
        r.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        r
    };
    let want = vec![vec![text("x"), Value::Int(1)], vec![text("y"), Value::Int(2)], vec![text("z"), Value::Int(2)]];
    assert_eq!(live().await, want);
    // The same changes read again after a crash (a new batch): nothing doubles.
    let m3 = bench.stage_changes(&t, 3, b2(), &v2, &d2).await;
    bench.load(dest.as_ref(), &t, LoadKind::Merge, &[m3]).await.unwrap();
    assert_eq!(live().await, want);
    // Another identical x arrives: two occurrences again.
    let m4 = bench.stage_changes(&t, 4, rows(vec!["x"], vec![1]), &[30], &[false]).await;
    let out = bench.load(dest.as_ref(), &t, LoadKind::Merge, &[m4]).await.unwrap();
    assert_eq!(out.rows_after, Some(4));
    // Insert x, TRUNCATE, insert x (one load): one x, as in the source.
    let mut m5 = bench.stage_changes(&t, 5, rows(vec!["x", "x"], vec![1, 1]), &[40, 42], &[false, false]).await;
    m5.truncated_at = Some("41".into());
    let out = bench.load(dest.as_ref(), &t, LoadKind::Merge, &[m5]).await.unwrap();
    assert_eq!(out.rows_after, Some(1));
}

/// CDC: a stream read again from a snapshot merges it, and the stored rows
/// whose key it lacks are marked deleted (never removed).
pub async fn complete_snapshot_marks_missing_keys_deleted(h: &dyn DestinationHarness) {
    use simplyload_core::FeedPosition;
    use simplyload_core::position::{FeedCheckpoint, Position};
    use simplyload_core::version::version as change_version;
    // A change feed's position at `p`: every row read there has its version.
    let snapshot_version = |p: u64| change_version(p, 0);
    let position = |p: u64| {
        Position::Cdc(FeedCheckpoint { feed: FeedPosition { version: snapshot_version(p), token: p.to_string() } })
    };
    let bench = Bench::new();
    let dest = h.destination();
    let (t, b1) = id_name(&[1, 2, 3], &[Some("a"), Some("b"), Some("c")]);
    let v1: Vec<i128> = (1..=3).map(|i| change_version(100, i)).collect();
    let m1 = bench.stage_changes(&t, 1, b1, &v1, &[false, false, false]).await;
    bench.load(dest.as_ref(), &t, LoadKind::Merge, &[m1]).await.unwrap();
    // The snapshot at position 200 lacks key 1.
    let (_, b2) = id_name(&[2, 3, 4], &[Some("B"), Some("c"), Some("d")]);
    let mut m2 = bench.stage_changes(&t, 2, b2, &[snapshot_version(200); 3], &[false, false, false]).await;
    m2.complete = true;
    m2.end_position = Some(position(200));
    let out = bench.load(dest.as_ref(), &t, LoadKind::Merge, &[m2]).await.unwrap();
    assert_eq!(out.rows_after, Some(3));
    let rows = h.rows("people", &["id", "name", meta::DELETED], &["id"]).await;
    assert_eq!(
        rows,
        vec![
            vec![Value::Int(1), text("a"), Value::Bool(true)],
            vec![Value::Int(2), text("B"), Value::Bool(false)],
            vec![Value::Int(3), text("c"), Value::Bool(false)],
            vec![Value::Int(4), text("d"), Value::Bool(false)],
        ]
    );
    // An empty snapshot at position 300: every stored row is gone from the source.
    let (_, empty) = id_name(&[], &[]);
    let mut m3 = bench.stage_changes(&t, 3, empty, &[], &[]).await;
    m3.complete = true;
    m3.end_position = Some(position(300));
    let out = bench.load(dest.as_ref(), &t, LoadKind::Merge, &[m3]).await.unwrap();
    assert_eq!(out.rows_after, Some(0));
}

/// Expands to one `#[tokio::test]` per suite case. `$make` is an async
/// expression producing a value that implements [`DestinationHarness`].
#[macro_export]
macro_rules! destination_conformance {
    ($make:expr) => {
        $crate::destination_conformance!(@cases $make;
            all_types_round_trip,
            replace_replaces_rows,
            appended_parts_follow_a_replace,
            replay_of_a_loaded_batch_changes_nothing,
            empty_replace_empties_the_table,
            table_without_key_keeps_duplicates,
            merge_applies_newest_version_and_tombstones,
            a_row_merged_again_unchanged_is_not_an_update,
            several_batches_load_in_one_call,
            new_source_column_is_added,
            changed_column_type_is_never_cast,
            awkward_names_are_quoted,
            unchanged_columns_keep_their_values,
            truncate_deletes_older_rows,
            keyless_changes_count_occurrences,
            complete_snapshot_marks_missing_keys_deleted,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let harness = $make.await;
                $crate::destination_suite::$case(&harness).await;
            }
        )*
    };
}
