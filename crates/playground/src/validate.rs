//! Validation (PR-1.6): what the playground tables hold now and what changed
//! in the last hour, as the server sees it (`now()` is the server's clock).
//!
//! "Updated in the last hour" means `updated_at` is within the hour and
//! later than `created_at`: a row inserted and never changed counts as
//! created, not updated. All counts of one table come from one scan, and
//! all tables are read in one `REPEATABLE READ` snapshot, so the numbers
//! agree with each other even while `run` is writing.

use simplyload_core::Result;
use simplyload_postgres::connect::pg_error;
use std::collections::BTreeMap;
use tokio_postgres::Client;

/// One table's numbers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableSummary {
    pub table: String,
    pub rows: i64,
    /// Rows with `deleted_at` set; `None` for tables without soft deletes.
    pub soft_deleted: Option<i64>,
    pub created_last_hour: i64,
    pub updated_last_hour: i64,
}

/// The state of the playground database.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Validation {
    /// The server's clock when the numbers were read (UTC, RFC 3339).
    pub checked_at: String,
    pub tables: Vec<TableSummary>,
    pub orders_by_status: BTreeMap<String, i64>,
    /// Columns beyond the playground schema (e.g. added by `run --schema-changes`), as `table.column`.
    pub added_columns: Vec<String>,
}

const BASE_COLUMNS: &[(&str, &[&str])] = &[
    ("users", &["id", "email", "full_name", "country", "plan", "created_at", "updated_at", "deleted_at"]),
    ("orders", &["id", "user_id", "status", "quantity", "amount", "currency", "created_at", "updated_at"]),
    ("events", &["id", "user_id", "event_type", "properties", "session_id", "created_at", "updated_at"]),
];

/// Reads the numbers.
pub async fn validate(client: &Client) -> Result<Validation> {
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(fail("starting a read-only transaction"))?;
    let result = read(client).await;
    // Read-only: ending it either way changes nothing.
    let _ = client.batch_execute("ROLLBACK").await;
    result
}

/// Maps a driver error, pointing at `seed` when the tables are missing.
fn fail(what: &str) -> impl FnOnce(tokio_postgres::Error) -> simplyload_core::Error {
    let what = what.to_owned();
    move |e| {
        let err = pg_error(&e, &what);
        if err.kind() == simplyload_core::ErrorKind::NotFound {
            err.with_hint("create and fill the tables first: simplyload playground seed")
        } else {
            err
        }
    }
}

async fn read(client: &Client) -> Result<Validation> {
    let checked_at: String = client
        .query_one("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')", &[])
        .await
        .map_err(fail("reading the clock"))?
        .get(0);
    let mut tables = Vec::new();
    for (table, _) in BASE_COLUMNS {
        let soft = if *table == "users" { "count(*) FILTER (WHERE deleted_at IS NOT NULL)" } else { "NULL::int8" };
        let sql = format!(
            "SELECT count(*),
                    {soft},
                    count(*) FILTER (WHERE created_at >= now() - interval '1 hour'),
                    count(*) FILTER (WHERE updated_at >= now() - interval '1 hour' AND updated_at > created_at)
             FROM {table}"
        );
        let row = client.query_one(&sql, &[]).await.map_err(fail(&format!("counting {table}")))?;
        tables.push(TableSummary {
            table: (*table).to_owned(),
            rows: row.get(0),
            soft_deleted: row.get(1),
            created_last_hour: row.get(2),
            updated_last_hour: row.get(3),
        });
    }
    let orders_by_status = client
        .query("SELECT status, count(*) FROM orders GROUP BY status ORDER BY status", &[])
        .await
        .map_err(fail("counting orders by status"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut added_columns = Vec::new();
    for row in client
        .query(
            "SELECT c.relname::text, a.attname::text
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
             WHERE a.attrelid IN ('users'::regclass, 'orders'::regclass, 'events'::regclass)
               AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY c.relname, a.attnum",
            &[],
        )
        .await
        .map_err(fail("reading the tables' columns"))?
    {
        let (table, column): (String, String) = (row.get(0), row.get(1));
        let base = BASE_COLUMNS.iter().find(|(t, _)| *t == table).map(|(_, c)| *c).unwrap_or(&[]);
        if !base.contains(&column.as_str()) {
            added_columns.push(format!("{table}.{column}"));
        }
    }
    Ok(Validation { checked_at, tables, orders_by_status, added_columns })
}
