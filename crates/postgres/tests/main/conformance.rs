//! Postgres runs the source conformance suite: each case in a database of
//! its own on the binary's shared server, a stream being a table in `public`.

use simplyload_core::{Capabilities, Source, StreamName};
use simplyload_postgres::{PostgresSource, qualified_name};
use simplyload_testkit::source_conformance;
use simplyload_testkit::source_suite::{Row, SourceHarness};
use simplyload_testkit::{TestDb, TestPg};
use std::sync::Arc;

struct Pg {
    db: TestDb,
    source: Arc<PostgresSource>,
}

async fn pg() -> Pg {
    let db = TestPg::shared().database().await;
    let source = Arc::new(PostgresSource::from_url("suite", &db.url).expect("a source for the test database"));
    Pg { db, source }
}

/// A `timestamptz` from microseconds since 1970-01-01 UTC (exact, unlike `to_timestamp`).
fn timestamptz(micros: &str) -> String {
    format!("'epoch'::timestamptz + {micros} * interval '1 microsecond'")
}

impl Pg {
    async fn write(&self, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) {
        if let Err(e) = self.db.client.execute(sql, params).await {
            panic!("SQL failed: {e}: {:?}\n{sql}", e.as_db_error().map(|d| d.message()));
        }
    }
}

#[async_trait::async_trait]
impl SourceHarness for Pg {
    fn source(&self) -> Arc<dyn Source> {
        self.source.clone()
    }

    /// A role that does not exist: Postgres answers as for a wrong password.
    fn source_with_bad_credentials(&self) -> (Arc<dyn Source>, String) {
        let secret = "wr0ng-s3cret-pw".to_owned();
        let url = self.db.url_as("suite_reader", &secret);
        (Arc::new(PostgresSource::from_url("suite", &url).expect("a source")), secret)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { cursor: true, change_feed: true, scan: true }
    }

    async fn create_stream(&self, hint: &str) -> StreamName {
        let stream = StreamName::new("public", hint);
        self.db
            .exec(&format!(
                "CREATE TABLE {} (id bigint PRIMARY KEY, name text, amount integer, updated_at timestamptz)",
                qualified_name(&stream)
            ))
            .await;
        stream
    }

    async fn insert(&self, stream: &StreamName, rows: &[Row]) {
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let names: Vec<Option<String>> = rows.iter().map(|r| r.name.clone()).collect();
        let amounts: Vec<i64> = rows.iter().map(|r| r.amount).collect();
        let at: Vec<Option<i64>> = rows.iter().map(|r| r.updated_at).collect();
        let sql = format!(
            "INSERT INTO {} (id, name, amount, updated_at) SELECT i, n, a, {}
             FROM unnest($1::int8[], $2::text[], $3::int8[], $4::int8[]) AS r(i, n, a, u)",
            qualified_name(stream),
            timestamptz("u")
        );
        self.write(&sql, &[&ids, &names, &amounts, &at]).await;
    }

    async fn update(&self, stream: &StreamName, row: &Row) {
        let sql = format!(
            "UPDATE {} SET name = $2, amount = $3::int8, updated_at = {} WHERE id = $1",
            qualified_name(stream),
            timestamptz("$4::int8")
        );
        self.write(&sql, &[&row.id, &row.name, &row.amount, &row.updated_at]).await;
    }

    async fn delete(&self, stream: &StreamName, ids: &[i64]) {
        self.write(&format!("DELETE FROM {} WHERE id = ANY($1)", qualified_name(stream)), &[&ids]).await;
    }

    async fn drop_stream(&self, stream: &StreamName) -> bool {
        self.db.exec(&format!("DROP TABLE {}", qualified_name(stream))).await;
        true
    }

    async fn drop_column(&self, stream: &StreamName, column: &str) -> bool {
        self.db.exec(&format!("ALTER TABLE {} DROP COLUMN \"{column}\"", qualified_name(stream))).await;
        true
    }
}

source_conformance!(pg());
