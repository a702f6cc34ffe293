//! Real Postgres for tests: `initdb` (cached as a template) + `pg_ctl` on a
//! free loopback port in a temp dir, `wal_level=logical`.
//!
//! Starting a server is most of a test's fixed cost, so the tests of one
//! binary share one ([`TestPg::shared`]) and each gets a database of its own
//! ([`TestPg::database`]), dropped with its replication slots when the test
//! ends. The shared server stops when the test process ends, however it
//! ends. A test that stops, restarts or reconfigures its server starts its
//! own ([`TestPg::start`]), stopped and removed when dropped — also when the
//! test panics.

use simplyload_postgres::local::{LocalOptions, LocalPostgres};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio_postgres::{Client, NoTls};

/// A running Postgres server.
pub struct TestPg {
    pub server: LocalPostgres,
}

static DB_COUNTER: AtomicU32 = AtomicU32::new(0);
static SHARED: OnceLock<TestPg> = OnceLock::new();

/// Settings of the shared server: room for the connections, slots and
/// walsenders of the tests running at once.
const SHARED_SETTINGS: [(&str, &str); 3] =
    [("max_connections", "200"), ("max_replication_slots", "40"), ("max_wal_senders", "40")];

impl TestPg {
    /// The server the tests of this binary share, started on first use.
    pub fn shared() -> &'static TestPg {
        SHARED.get_or_init(|| {
            let settings = SHARED_SETTINGS.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let pg = TestPg::start_with(&LocalOptions { settings, ..Default::default() });
            pg.server.stop_when_process_ends(std::process::id()).expect("start the shared server's watchdog");
            pg
        })
    }

    /// A server of the test's own.
    pub fn start() -> TestPg {
        Self::start_with(&LocalOptions::default())
    }

    pub fn start_with(opts: &LocalOptions) -> TestPg {
        TestPg { server: LocalPostgres::start(opts).expect("start a local Postgres for the test") }
    }

    /// Creates a fresh database for the test; it is dropped (with the
    /// replication slots made in it) when the value is.
    pub async fn database(&self) -> TestDb {
        let n = DB_COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("test_{}_{n}", std::process::id());
        let admin_url = self.server.url("postgres");
        let admin = connect(&admin_url).await;
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create test database");
        let url = self.server.url(&name);
        let client = connect(&url).await;
        TestDb { name, url, client, port: self.server.port(), admin_url }
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
    admin_url: String,
}

impl TestDb {
    pub async fn exec(&self, sql: &str) {
        if let Err(e) = self.client.batch_execute(sql).await {
            panic!("SQL failed: {e}: {:?}\n{sql}", e.as_db_error().map(|d| d.message()));
        }
    }

    /// Waits (up to two minutes) until every transaction of the server
    /// that began before now has ended. A snapshot's `xmin` is the oldest
    /// transaction open anywhere on the server — another test's, on the
    /// shared server — and until those end, rows just written count as
    /// written since any snapshot taken now: a read that goes on from its
    /// progress reads them all again. Correct, but not what a case about
    /// skipping what was read is checking.
    pub async fn settle_older_transactions(&self) {
        let now: i64 = self.client.query_one("SELECT txid_current()", &[]).await.expect("txid_current").get(0);
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_secs(120) {
            let row = self.client.query_one("SELECT txid_snapshot_xmin(txid_current_snapshot())", &[]).await;
            if row.expect("the snapshot's xmin").get::<_, i64>(0) > now {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
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

impl Drop for TestDb {
    /// Drops the database and its replication slots (slots are the server's,
    /// and would hold WAL for as long as the shared server runs). Best
    /// effort: a server already stopped has nothing left to drop.
    fn drop(&mut self) {
        let (name, admin_url) = (self.name.clone(), self.admin_url.clone());
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(drop_database(&admin_url, &name))
        });
        let _ = cleanup.join();
    }
}

async fn drop_database(admin_url: &str, name: &str) {
    let Ok((admin, conn)) = tokio_postgres::connect(admin_url, NoTls).await else { return };
    tokio::spawn(conn);
    let db = [&name as &(dyn tokio_postgres::types::ToSql + Sync)];
    let _ = admin
        .execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL",
            &db,
        )
        .await;
    for _ in 0..50 {
        let dropped = admin
            .execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1", &db)
            .await;
        let left: i64 = admin
            .query_one("SELECT count(*) FROM pg_replication_slots WHERE database = $1", &db)
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        if dropped.is_ok() && left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
}

pub async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.expect("connect to the test Postgres");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}
