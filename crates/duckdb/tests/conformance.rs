//! DuckDB runs the destination conformance suite.

use simplyload_core::Destination;
use simplyload_duckdb::{DuckdbDestination, ident, qualified};
use simplyload_testkit::destination_conformance;
use simplyload_testkit::destination_suite::{DestinationHarness, Value};
use std::sync::Arc;

struct Duck {
    dest: Arc<DuckdbDestination>,
    _dir: tempfile::TempDir,
}

async fn duck() -> Duck {
    let dir = tempfile::tempdir().unwrap();
    Duck { dest: Arc::new(DuckdbDestination::new(&dir.path().join("w.duckdb"))), _dir: dir }
}

/// DuckDB type names → the suite's logical type names.
fn logical(t: &str) -> String {
    let t = t.to_ascii_uppercase();
    if let Some(rest) = t.strip_prefix("DECIMAL") {
        return format!("decimal{}", rest.replace(' ', ""));
    }
    match t.as_str() {
        "SMALLINT" => "int16",
        "INTEGER" => "int32",
        "BIGINT" => "int64",
        "FLOAT" | "REAL" => "float32",
        "DOUBLE" => "float64",
        "VARCHAR" => "text",
        "BOOLEAN" => "boolean",
        "DATE" => "date",
        "TIMESTAMP" => "timestamp",
        "TIMESTAMP WITH TIME ZONE" => "timestamptz",
        "TIME" => "time",
        "UUID" => "uuid",
        "JSON" => "json",
        "BLOB" => "binary",
        other => return other.to_lowercase(),
    }
    .to_owned()
}

fn time_us(s: &str) -> i64 {
    let (hms, frac) = s.split_once('.').unwrap_or((s, ""));
    let p: Vec<i64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    let frac: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<6}").parse().unwrap() };
    ((p[0] * 60 + p[1]) * 60 + p[2]) * 1_000_000 + frac
}

#[async_trait::async_trait]
impl DestinationHarness for Duck {
    fn destination(&self) -> Arc<dyn Destination> {
        self.dest.clone()
    }

    async fn rows(&self, table: &str, columns: &[&str], order_by: &[&str]) -> Vec<Vec<Value>> {
        let conn = self.dest.open().unwrap();
        let types: Vec<(String, String)> = self.column_types(table).await;
        let mut exprs = Vec::new();
        let mut kinds = Vec::new();
        for c in columns {
            let t =
                types.iter().find(|(n, _)| n == c).map(|(_, t)| t.clone()).unwrap_or_else(|| panic!("no column {c}"));
            let q = ident(c);
            exprs.push(match t.as_str() {
                "timestamp" | "timestamptz" => format!("epoch_us({q})"),
                "date" => format!("({q} - DATE '1970-01-01')"),
                t if t.starts_with("decimal") => format!("CAST({q} AS VARCHAR)"),
                "uuid" | "json" | "time" => format!("CAST({q} AS VARCHAR)"),
                _ => q,
            });
            kinds.push(t);
        }
        let order: Vec<String> = order_by.iter().map(|o| format!("{} NULLS LAST", ident(o))).collect();
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {}",
            exprs.join(", "),
            qualified(simplyload_duckdb::DEFAULT_SCHEMA, table),
            order.join(", ")
        );
        let mut st = conn.prepare(&sql).unwrap();
        let mut rows = st.query([]).unwrap();
        let mut out = Vec::new();
        while let Some(r) = rows.next().unwrap() {
            let mut row = Vec::new();
            for (i, kind) in kinds.iter().enumerate() {
                use duckdb::types::Value as D;
                let v: D = r.get(i).unwrap();
                row.push(match (kind.as_str(), v) {
                    (_, D::Null) => Value::Null,
                    (_, D::Boolean(b)) => Value::Bool(b),
                    (_, D::SmallInt(n)) => Value::Int(n as i64),
                    (_, D::Int(n)) => Value::Int(n as i64),
                    ("date", D::BigInt(n)) => Value::Date(n as i32),
                    ("timestamp" | "timestamptz", D::BigInt(n)) => Value::Timestamp(n),
                    (_, D::BigInt(n)) => Value::Int(n),
                    (_, D::Float(f)) => Value::Float(f as f64),
                    (_, D::Double(f)) => Value::Float(f),
                    ("time", D::Text(s)) => Value::Time(time_us(&s)),
                    (k, D::Text(s)) if k.starts_with("decimal") => Value::Decimal(s),
                    (_, D::Text(s)) => Value::Text(s),
                    (_, D::Blob(b)) => Value::Bytes(b),
                    (k, other) => panic!("unexpected DuckDB value {other:?} for {k}"),
                });
            }
            out.push(row);
        }
        out
    }

    async fn column_types(&self, table: &str) -> Vec<(String, String)> {
        let conn = self.dest.open().unwrap();
        let mut st = conn
            .prepare(
                "SELECT column_name, data_type FROM information_schema.columns
                 WHERE table_schema = 'simplyload' AND table_name = ? ORDER BY ordinal_position",
            )
            .unwrap();
        let rows = st.query_map([table], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).unwrap();
        rows.map(|r| {
            let (n, t) = r.unwrap();
            (n, logical(&t))
        })
        .collect()
    }

    async fn batches(&self) -> Vec<(String, String, u64, u64)> {
        let conn = self.dest.open().unwrap();
        let mut st = conn
            .prepare(
                "SELECT pipeline_id, stream, batch_id, row_count FROM simplyload._simplyload_batches ORDER BY batch_id",
            )
            .unwrap();
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)? as u64,
                    r.get::<_, i64>(3)? as u64,
                ))
            })
            .unwrap();
        rows.map(|r| r.unwrap()).collect()
    }
}

destination_conformance!(duck());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_held_by_another_writer_is_a_conflict_after_waiting() {
    // DuckDB locks a file per process, so a second process is needed: this
    // test only checks the message shape of the open path with a bad file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-db.duckdb");
    std::fs::write(&path, b"this is not a DuckDB file").unwrap();
    let e = DuckdbDestination::new(&path).open().unwrap_err();
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
}
