//! Snowflake runs the destination conformance suite, against the `fakesnow`
//! server (the same cases DuckDB passes).

use simplyload_core::Destination;
use simplyload_core::config::Secret;
use simplyload_snowflake::destination::{ident, result_rows, sf_name};
use simplyload_snowflake::{Credentials, LoginOptions, Rows, Session, SnowflakeDestination, StageMode, values};
use simplyload_testkit::destination_conformance;
use simplyload_testkit::destination_suite::{DestinationHarness, Value};
use simplyload_testkit::peers::Fakesnow;
use std::sync::Arc;
use std::time::Duration;

struct Snow {
    dest: Arc<SnowflakeDestination>,
    reader: Session,
    _server: Fakesnow,
}

fn options(server: &Fakesnow) -> LoginOptions {
    LoginOptions {
        base_url: server.base_url(),
        account: "xy12345.us-east-1".into(),
        user: "SIMPLYLOAD".into(),
        role: Some("SIMPLYLOAD".into()),
        warehouse: Some("SIMPLYLOAD_WH".into()),
        database: Some("RAW_DATA".into()),
        schema: Some("SIMPLYLOAD".into()),
        credentials: Credentials::Password(Secret::new("any")),
        session_parameters: Default::default(),
        timeout: Duration::from_secs(120),
    }
}

async fn snow() -> Snow {
    let server = Fakesnow::start();
    let reader = Session::login(options(&server)).await.unwrap();
    // What the customer's one-time setup script creates.
    reader.query("CREATE DATABASE IF NOT EXISTS RAW_DATA", &[]).await.unwrap();
    reader.query("CREATE SCHEMA IF NOT EXISTS RAW_DATA.SIMPLYLOAD", &[]).await.unwrap();
    let dest = Arc::new(SnowflakeDestination::new(options(&server), StageMode::Internal));
    Snow { dest, reader, _server: server }
}

/// Snowflake's type (as DESCRIBE prints it) → the suite's logical type name.
fn logical(t: &str) -> String {
    let t = t.to_ascii_uppercase().replace(' ', "");
    if let Some(inner) = t.strip_prefix("NUMBER(").and_then(|r| r.strip_suffix(')')) {
        return match inner {
            "5,0" => "int16".into(),
            "10,0" => "int32".into(),
            "19,0" => "int64".into(),
            ps => format!("decimal({ps})"),
        };
    }
    let base = t.split('(').next().unwrap_or("");
    match (base, t.as_str()) {
        (_, "VARCHAR(36)") => "uuid",
        ("VARCHAR" | "TEXT", _) => "text",
        ("FLOAT" | "DOUBLE", _) => "float64",
        ("BOOLEAN", _) => "boolean",
        ("DATE", _) => "date",
        ("TIMESTAMP_NTZ", _) => "timestamp",
        ("TIMESTAMP_TZ", _) => "timestamptz",
        ("TIME", _) => "time",
        ("VARIANT", _) => "json",
        ("BINARY", _) => "binary",
        (other, _) => return other.to_lowercase(),
    }
    .to_owned()
}

#[async_trait::async_trait]
impl DestinationHarness for Snow {
    fn destination(&self) -> Arc<dyn Destination> {
        self.dest.clone()
    }

    async fn rows(&self, table: &str, columns: &[&str], order_by: &[&str]) -> Vec<Vec<Value>> {
        let types = self.column_types(table).await;
        let exprs: Vec<String> = columns
            .iter()
            .map(|c| {
                let t = &types.iter().find(|(n, _)| n == c).unwrap_or_else(|| panic!("no column {c}")).1;
                let q = ident(&sf_name(c));
                if t == "json" { format!("TO_JSON({q})") } else { q }
            })
            .collect();
        let order: Vec<String> = order_by.iter().map(|o| format!("{} NULLS LAST", ident(&sf_name(o)))).collect();
        let sql = format!(
            "SELECT {} FROM RAW_DATA.SIMPLYLOAD.{} ORDER BY {}",
            exprs.join(", "),
            ident(&sf_name(table)),
            order.join(", ")
        );
        let r = self.reader.query(&sql, &[]).await.unwrap();
        let Rows::Arrow(batches) = r.rows else { panic!("SELECT answers in Arrow") };
        let mut out = Vec::new();
        for b in &batches {
            let schema = b.schema();
            for row in 0..b.num_rows() {
                let mut vals = Vec::new();
                for (i, c) in columns.iter().enumerate() {
                    let kind = &types.iter().find(|(n, _)| n == c).unwrap().1;
                    let (a, f) = (b.column(i), schema.field(i));
                    use simplyload_core::SqlType as T;
                    use simplyload_core::canon::Canon;
                    let st = match kind.as_str() {
                        "int16" | "int32" | "int64" => T::Int64,
                        k if k.starts_with("decimal") => T::Decimal { precision: 38, scale: 0 },
                        "float32" | "float64" => T::Float64,
                        "text" | "uuid" | "json" => T::Text,
                        "boolean" => T::Boolean,
                        "date" => T::Date,
                        "timestamp" => T::Timestamp,
                        "timestamptz" => T::TimestampTz,
                        "time" => T::Time,
                        "binary" => T::Binary,
                        other => panic!("unexpected type {other}"),
                    };
                    let v = match values::canon(a, f, row, st).unwrap() {
                        Canon::Null => Value::Null,
                        Canon::Int(i) => Value::Int(i as i64),
                        // Decimals as text at the column's scale.
                        Canon::Decimal(_) => Value::Decimal(values::text(a, f, row).unwrap()),
                        Canon::Float(bits) => Value::Float(f64::from_bits(bits)),
                        Canon::Text(s) => Value::Text(s),
                        Canon::Bool(b) => Value::Bool(b),
                        Canon::Date(d) => Value::Date(d),
                        Canon::Timestamp(t) => Value::Timestamp(t),
                        Canon::Time(t) => Value::Time(t),
                        Canon::Bytes(b) => Value::Bytes(b),
                        other => panic!("unexpected value {other:?}"),
                    };
                    vals.push(v);
                }
                out.push(vals);
            }
        }
        out
    }

    async fn column_types(&self, table: &str) -> Vec<(String, String)> {
        let r = self
            .reader
            .query(&format!("DESCRIBE TABLE RAW_DATA.SIMPLYLOAD.{}", ident(&sf_name(table))), &[])
            .await
            .unwrap();
        result_rows(&r)
            .into_iter()
            .map(|row| (row[0].clone().unwrap().to_ascii_lowercase(), logical(row[1].as_deref().unwrap())))
            .collect()
    }

    async fn batches(&self) -> Vec<(String, String, u64, u64)> {
        let r = self
            .reader
            .query(
                "SELECT PIPELINE_ID, STREAM, BATCH_ID, ROW_COUNT FROM RAW_DATA.SIMPLYLOAD._SIMPLYLOAD_BATCHES ORDER BY BATCH_ID",
                &[],
            )
            .await
            .unwrap();
        result_rows(&r)
            .into_iter()
            .map(|row| {
                (
                    row[0].clone().unwrap(),
                    row[1].clone().unwrap(),
                    row[2].as_deref().unwrap().parse().unwrap(),
                    row[3].as_deref().unwrap().parse().unwrap(),
                )
            })
            .collect()
    }

    fn reported_type(&self, logical: &str) -> String {
        if logical == "float32" { "float64".into() } else { logical.to_owned() }
    }
}

destination_conformance!(snow());
