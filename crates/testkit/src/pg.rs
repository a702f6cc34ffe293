//! A real Postgres for a test: `initdb` (cached as a template) + `pg_ctl` on a
//! free loopback port in a temp dir, `wal_level=logical`, stopped and removed
//! when the value is dropped — also when the test panics.

use simplyload_postgres::local::{LocalOptions, LocalPostgres};
use std::sync::atomic::{AtomicU32, Ordering};
use tokio_postgres::{Client, NoTls};

/// A running Postgres server owned by one test.
pub struct TestPg {
    pub server: LocalPostgres,
}

static DB_COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestPg {
    pub fn start() -> TestPg {
        Self::start_with(&LocalOptions::default())
    }

    pub fn start_with(opts: &LocalOptions) -> TestPg {
        TestPg { server: LocalPostgres::start(opts).expect("start a local Postgres for the test") }
    }

    /// Creates a fresh database for the test.
    pub async fn database(&self) -> TestDb {
        let n = DB_COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("test_{}_{n}", std::process::id());
        let admin = connect(&self.server.url("postgres")).await;
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create test database");
        let url = self.server.url(&name);
        let client = connect(&url).await;
        TestDb { name, url, client, port: self.server.port() }
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }
}

/// A database inside a [`TestPg`], with a superuser connection.
pub struct TestDb {
    pub name: String,
    /// Superuser URL (no password needed on loopback).
    pub url: String,
    pub client: Client,
    pub port: u16,
}

impl TestDb {
    pub async fn exec(&self, sql: &str) {
        if let Err(e) = self.client.batch_execute(sql).await {
            panic!("SQL failed: {e}: {:?}\n{sql}", e.as_db_error().map(|d| d.message()));
        }
    }

    /// Creates a login role with a password and returns its URL.
    pub async fn role(&self, user: &str, password: &str) -> String {
        self.exec(&format!("CREATE ROLE \"{user}\" LOGIN PASSWORD '{}'", password.replace('\'', "''"))).await;
        self.url_as(user, password)
    }

    pub fn url_as(&self, user: &str, password: &str) -> String {
        let enc = |s: &str| {
            s.bytes()
                .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
                .collect::<String>()
        };
        format!("postgres://{}:{}@127.0.0.1:{}/{}?sslmode=disable", enc(user), enc(password), self.port, self.name)
    }

    pub async fn count(&self, table: &str) -> i64 {
        self.client.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.expect("count").get(0)
    }
}

pub async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.expect("connect to the test Postgres");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}
