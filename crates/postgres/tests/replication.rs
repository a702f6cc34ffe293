//! Logical replication plumbing against a real Postgres (wal_level=logical).

use bytes::Bytes;
use simplyload_core::ErrorKind;
use simplyload_postgres::connect::ConnectOptions;
use simplyload_postgres::local::LocalOptions;
use simplyload_postgres::replication::{
    self, ChangeStream, Lsn, create_slot, drop_slot, ensure_publication, readiness, release_stale_slot, slot_info,
    slot_name,
};
use simplyload_testkit::{TestPg, pg::TestDb};

fn opts(url: &str) -> ConnectOptions {
    ConnectOptions::parse("src", url, None).unwrap()
}

fn tables(names: &[&str]) -> Vec<(String, String)> {
    names.iter().map(|t| ("public".to_owned(), (*t).to_owned())).collect()
}

/// Drains the stream to its end.
async fn drain(stream: &mut ChangeStream) -> Vec<(Lsn, Bytes)> {
    let mut out = Vec::new();
    let deadline = std::time::Duration::from_secs(60);
    while let Some(m) = tokio::time::timeout(deadline, stream.next()).await.expect("drained in time").unwrap() {
        out.push(m);
    }
    out
}

fn tags(msgs: &[(Lsn, Bytes)]) -> String {
    msgs.iter().map(|(_, b)| b[0] as char).collect()
}

/// End LSN of the last Commit.
fn last_commit_end(msgs: &[(Lsn, Bytes)]) -> Lsn {
    let (lsn, c) = msgs.iter().rev().find(|(_, b)| b[0] == b'C').expect("a commit");
    let end = u64::from_be_bytes(c[10..18].try_into().unwrap());
    assert_eq!(*lsn, end, "a Commit's position is its end LSN");
    end
}

/// Sets up table `t` (int4 id, text v) and the publication; commits synchronously
/// so the WAL end read by a stream includes them.
async fn setup(db: &TestDb, slot: &str) {
    db.exec("CREATE TABLE t (id int4 PRIMARY KEY, v text); SET synchronous_commit = on;").await;
    ensure_publication(&db.client, slot, &tables(&["t"])).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reports_what_to_fix() {
    let pg = TestPg::start();
    let db = pg.database().await;
    db.exec("CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY); CREATE TABLE nokey (x int);")
        .await;
    let slot = slot_name("Orders");
    assert_eq!(slot, "simplyload_orders");

    let r = readiness(&db.client, &slot, &tables(&["a"])).await.unwrap();
    assert!(r.wal_level_logical && r.can_replicate, "{r:?}");
    assert!(!r.publication_exists);
    assert!(r.slot.is_none());
    assert_eq!(r.fixes, vec![r#"CREATE PUBLICATION "simplyload_orders" FOR TABLE "public"."a";"#.to_owned()]);

    ensure_publication(&db.client, &slot, &tables(&["a"])).await.unwrap();
    let r = readiness(&db.client, &slot, &tables(&["a"])).await.unwrap();
    assert!(r.publication_exists && r.is_ready(), "{r:?}");

    // A table added later: ALTER PUBLICATION … ADD TABLE.
    let r = readiness(&db.client, &slot, &tables(&["a", "b"])).await.unwrap();
    assert_eq!(r.fixes, vec![r#"ALTER PUBLICATION "simplyload_orders" ADD TABLE "public"."b";"#.to_owned()]);
    ensure_publication(&db.client, &slot, &tables(&["a", "b"])).await.unwrap();
    ensure_publication(&db.client, &slot, &tables(&["a", "b"])).await.unwrap();
    assert!(readiness(&db.client, &slot, &tables(&["a", "b"])).await.unwrap().is_ready());

    // No primary key: reported, and not added (it would break the customer's UPDATEs).
    let r = readiness(&db.client, &slot, &tables(&["nokey"])).await.unwrap();
    assert_eq!(r.tables_without_replica_identity, tables(&["nokey"]));
    assert!(r.fixes.contains(&r#"ALTER TABLE "public"."nokey" REPLICA IDENTITY FULL;"#.to_owned()), "{:?}", r.fixes);
    let e = ensure_publication(&db.client, &slot, &tables(&["nokey"])).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.hint().unwrap().contains("REPLICA IDENTITY FULL"), "{e}");

    // A role without REPLICATION.
    let url = db.role("Reader", "s3cret pw").await;
    db.exec(r#"GRANT SELECT ON a TO "Reader""#).await;
    let reader = simplyload_testkit::pg::connect(&url).await;
    let r = readiness(&reader, &slot, &tables(&["a"])).await.unwrap();
    assert!(!r.can_replicate);
    assert!(r.fixes.contains(&r#"ALTER ROLE "Reader" REPLICATION;"#.to_owned()), "{:?}", r.fixes);
    // It may not create the publication either: the error carries the SQL.
    let e = ensure_publication(&reader, "simplyload_other", &tables(&["a"])).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Permission, "{e}");
    assert!(e.hint().unwrap().contains(r#"CREATE PUBLICATION "simplyload_other" FOR TABLE "public"."a";"#), "{e}");
    // And it may not replicate (SCRAM over the replication protocol, then refused).
    let e = create_slot(&opts(&url), "simplyload_reader", false).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Permission, "{e}");
    assert!(e.hint().unwrap_or_default().contains(r#"ALTER ROLE "Reader" REPLICATION;"#), "{e}");
    assert!(!e.to_string().contains("s3cret"), "{e}");

    // A wrong password is an Auth error without the password.
    let bad = db.url_as("Reader", "wrong-pw");
    let e = create_slot(&opts(&bad), "simplyload_reader", false).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert!(!e.to_string().contains("wrong-pw"), "{e}");

    // With REPLICATION it works, over SCRAM.
    db.exec(r#"ALTER ROLE "Reader" REPLICATION"#).await;
    let r = readiness(&reader, &slot, &tables(&["a"])).await.unwrap();
    assert!(r.can_replicate && r.is_ready(), "{r:?}");
    let created = create_slot(&opts(&url), "simplyload_reader", true).await.unwrap();
    assert!(created.consistent_point > 0);
    created.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_slot_exports_its_snapshot() {
    let pg = TestPg::shared();
    let db = pg.database().await;
    let slot = slot_name("snap");
    setup(&db, &slot).await;
    db.exec("INSERT INTO t VALUES (1, 'before')").await;
    let created = create_slot(&opts(&db.url), &slot, false).await.unwrap();
    db.exec("INSERT INTO t VALUES (2, 'after')").await;

    let other = simplyload_testkit::pg::connect(&db.url).await;
    other
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT '{}';",
            created.snapshot_name
        ))
        .await
        .unwrap();
    let ids: Vec<i32> =
        other.query("SELECT id FROM t ORDER BY id", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, vec![1], "the snapshot sees the row from before the slot, not the one after");
    other.batch_execute("COMMIT").await.unwrap();
    created.release().await.unwrap();

    let info = slot_info(&db.client, &slot).await.unwrap().expect("slot exists");
    assert_eq!(info.slot_type, "logical");
    assert_eq!(info.plugin.as_deref(), Some("pgoutput"));
    assert!(info.confirmed_flush_lsn.is_some());
    assert!(info.wal_status.is_some());
    assert!(info.lag_bytes.is_some());
    let r = readiness(&db.client, &slot, &tables(&["t"])).await.unwrap();
    assert!(r.is_ready() && r.slot.is_some(), "{r:?}");

    drop_slot(&db.client, &slot).await.unwrap();
    assert!(slot_info(&db.client, &slot).await.unwrap().is_none());
    drop_slot(&db.client, &slot).await.unwrap();

    // A temporary slot goes with its session.
    let tmp = create_slot(&opts(&db.url), "simplyload_tmp", true).await.unwrap();
    assert!(slot_info(&db.client, "simplyload_tmp").await.unwrap().is_some());
    tmp.release().await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while slot_info(&db.client, "simplyload_tmp").await.unwrap().is_some() {
        assert!(std::time::Instant::now() < deadline, "temporary slot still there");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_stream_drains_confirms_and_resumes() {
    let pg = TestPg::shared();
    let db = pg.database().await;
    let slot = slot_name("cdc");
    setup(&db, &slot).await;
    let created = create_slot(&opts(&db.url), &slot, false).await.unwrap();
    let start = created.consistent_point;
    created.release().await.unwrap();

    // Nothing happened yet: the stream ends at once.
    let mut s = ChangeStream::start(&opts(&db.url), &slot, &slot, start).await.unwrap();
    assert!(drain(&mut s).await.is_empty());
    s.stop().await.unwrap();

    db.exec("BEGIN; INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, NULL); COMMIT;").await;
    db.exec("UPDATE t SET v = 'bb' WHERE id = 2").await;
    db.exec("DELETE FROM t WHERE id = 3").await;
    // Not published: decoded past, not delivered.
    db.exec("CREATE TABLE other (id int PRIMARY KEY); INSERT INTO other VALUES (1);").await;

    let mut s = ChangeStream::start(&opts(&db.url), &slot, &slot, start).await.unwrap();
    assert!(s.wal_end_at_start() > start);
    let msgs = drain(&mut s).await;
    assert_eq!(tags(&msgs), "BRIIICBUCBDC", "{msgs:?}");
    let count = |t: u8| msgs.iter().filter(|(_, b)| b[0] == t).count();
    assert_eq!((count(b'I'), count(b'U'), count(b'D')), (3, 1, 1));
    // Commits come in WAL order; each change lies before its commit's end.
    let commits: Vec<Lsn> = msgs.iter().filter(|(_, b)| b[0] == b'C').map(|(l, _)| *l).collect();
    assert!(commits.windows(2).all(|w| w[0] < w[1]), "{commits:?}");
    let mut txn_end = commits.iter();
    let mut end_of_txn = 0;
    for (lsn, b) in &msgs {
        match b[0] {
            b'B' => end_of_txn = *txn_end.next().unwrap(),
            b'I' | b'U' | b'D' => {
                assert!(*lsn >= start && *lsn < end_of_txn, "{lsn} start {start} end {end_of_txn} in {msgs:?}")
            }
            _ => {}
        }
    }

    // Binary mode: the int4 key of the first Insert is 'b' with 4 bytes.
    let insert = &msgs.iter().find(|(_, b)| b[0] == b'I').unwrap().1;
    // 'I', relid(4), 'N', ncols(2), then column 1: kind, len(4), data.
    assert_eq!(insert[5], b'N');
    assert_eq!(u16::from_be_bytes([insert[6], insert[7]]), 2);
    assert_eq!(insert[8], b'b', "binary datum");
    assert_eq!(u32::from_be_bytes(insert[9..13].try_into().unwrap()), 4);
    assert_eq!(i32::from_be_bytes(insert[13..17].try_into().unwrap()), 1);

    let end = last_commit_end(&msgs);
    s.confirm(end).await.unwrap();
    assert_eq!(s.confirmed(), end);
    s.stop().await.unwrap();
    let info = slot_info(&db.client, &slot).await.unwrap().unwrap();
    assert_eq!(info.confirmed_flush_lsn, Some(end));
    assert_eq!(info.active_pid, None);

    // A second stream from the slot's point: only what is new.
    db.exec("INSERT INTO t VALUES (4, 'd')").await;
    let mut s = ChangeStream::start(&opts(&db.url), &slot, &slot, 0).await.unwrap();
    assert_eq!(s.start_lsn(), end);
    let msgs = drain(&mut s).await;
    assert_eq!(tags(&msgs), "BRIC", "{msgs:?}");
    let end2 = last_commit_end(&msgs);
    assert!(end2 > end);
    s.confirm(end2).await.unwrap();
    // Following past the end: a change made while streaming arrives too.
    s.set_stop_at(None);
    db.exec("INSERT INTO t VALUES (5, 'e')").await;
    let mut got = String::new();
    while !got.ends_with('C') {
        let (_, m) =
            tokio::time::timeout(std::time::Duration::from_secs(30), s.next()).await.unwrap().unwrap().unwrap();
        got.push(m[0] as char);
    }
    assert_eq!(got, "BIC");
    s.stop().await.unwrap();
    assert_eq!(slot_info(&db.client, &slot).await.unwrap().unwrap().confirmed_flush_lsn, Some(end2));

    // Idle and confirmed: nothing re-delivered.
    let mut s = ChangeStream::start(&opts(&db.url), &slot, &slot, end2).await.unwrap();
    let msgs = drain(&mut s).await;
    assert_eq!(tags(&msgs), "BRIC", "only the unconfirmed row 5: {msgs:?}");
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_walsender_is_released() {
    let pg = TestPg::shared();
    let db = pg.database().await;
    let slot = slot_name("stale");
    setup(&db, &slot).await;
    let created = create_slot(&opts(&db.url), &slot, false).await.unwrap();
    let start = created.consistent_point;
    created.release().await.unwrap();

    // A stream that is never stopped (as after a crash): its walsender holds the slot.
    let s = ChangeStream::start(&opts(&db.url), &slot, &slot, start).await.unwrap();
    let old_pid = s.backend_pid();
    std::mem::forget(s);
    assert_eq!(slot_info(&db.client, &slot).await.unwrap().unwrap().active_pid, Some(old_pid));

    db.exec("INSERT INTO t VALUES (1, 'a')").await;
    let mut s = ChangeStream::start(&opts(&db.url), &slot, &slot, start).await.unwrap();
    assert_ne!(s.backend_pid(), old_pid);
    assert_eq!(tags(&drain(&mut s).await), "BRIC");
    // Dropped without stop: the next start still succeeds.
    drop(s);
    let mut s = ChangeStream::start(&opts(&db.url), &slot, &slot, start).await.unwrap();
    assert_eq!(tags(&drain(&mut s).await), "BRIC");
    s.stop().await.unwrap();

    // release_stale_slot on an idle slot is a no-op.
    release_stale_slot(&db.client, &slot).await.unwrap();
    // A missing slot is NotFound.
    let e = ChangeStream::start(&opts(&db.url), "simplyload_missing", &slot, start).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_prefer_falls_back_and_require_refuses_without_tls() {
    let pg = TestPg::shared();
    let db = pg.database().await;
    let slot = slot_name("prefer");
    setup(&db, &slot).await;
    let prefer = db.url.replace("sslmode=disable", "sslmode=prefer");
    let created = create_slot(&opts(&prefer), &slot, false).await.unwrap();
    let start = created.consistent_point;
    created.release().await.unwrap();
    db.exec("INSERT INTO t VALUES (1, 'a')").await;
    let mut s = ChangeStream::start(&opts(&prefer), &slot, &slot, start).await.unwrap();
    assert_eq!(tags(&drain(&mut s).await), "BRIC");
    s.stop().await.unwrap();

    let require = db.url.replace("sslmode=disable", "sslmode=require");
    let e = ChangeStream::start(&opts(&require), &slot, &slot, start).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("does not accept TLS"), "{e}");
}

/// A server with TLS: the replication session goes over TLS (pg_stat_ssl).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    if !made.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: no openssl to make a server certificate");
        return;
    }
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        // The server runs as `postgres` when we are root: the key must be its own.
        let uid = std::process::Command::new("id").arg("-u").output().unwrap();
        if String::from_utf8_lossy(&uid.stdout).trim() == "0" {
            let pid = std::process::Command::new("id").args(["-u", "postgres"]).output().unwrap();
            let gid = std::process::Command::new("id").args(["-g", "postgres"]).output().unwrap();
            let n = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).trim().parse::<u32>().unwrap();
            std::os::unix::fs::chown(&key, Some(n(&pid)), Some(n(&gid))).unwrap();
        }
    }
    let pg = TestPg::start_with(&LocalOptions {
        settings: vec![
            ("ssl".into(), "on".into()),
            ("ssl_cert_file".into(), format!("'{}'", cert.display())),
            ("ssl_key_file".into(), format!("'{}'", key.display())),
        ],
        ..Default::default()
    });
    let db = pg.database().await;
    let slot = slot_name("tls");
    setup(&db, &slot).await;
    let require = db.url.replace("sslmode=disable", "sslmode=require");
    let created = create_slot(&opts(&require), &slot, false).await.unwrap();
    let ssl: bool = db
        .client
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = $1", &[&created.backend_pid])
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "the slot was created over TLS");
    let start = created.consistent_point;
    created.release().await.unwrap();
    db.exec("INSERT INTO t VALUES (1, 'a')").await;
    let mut s = ChangeStream::start(&opts(&require), &slot, &slot, start).await.unwrap();
    let ssl: bool =
        db.client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = $1", &[&s.backend_pid()]).await.unwrap().get(0);
    assert!(ssl, "the stream runs over TLS");
    let msgs = drain(&mut s).await;
    assert_eq!(tags(&msgs), "BRIC");
    s.confirm(last_commit_end(&msgs)).await.unwrap();
    s.stop().await.unwrap();

    // verify-full against a self-signed certificate it was not given: refused, with the reason.
    let verify = db.url.replace(
        "sslmode=disable",
        &format!("sslmode=verify-full&sslrootcert={}", dir.path().join("none.crt").display()),
    );
    let e = ChangeStream::start(&opts(&verify), &slot, &slot, start).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
}

/// Asynchronous commits (the test servers' default): a stop point at the WAL
/// insert position is waited for until it is flushed and decoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_at_beyond_the_flushed_wal_waits_for_it() {
    let pg = TestPg::shared();
    let db = pg.database().await;
    let slot = slot_name("async");
    setup(&db, &slot).await;
    let created = create_slot(&opts(&db.url), &slot, false).await.unwrap();
    let start = created.consistent_point;
    created.release().await.unwrap();
    let other = simplyload_testkit::pg::connect(&db.url).await;
    other
        .batch_execute("SET synchronous_commit = off; INSERT INTO t VALUES (1, 'a'); INSERT INTO t VALUES (2, 'b');")
        .await
        .unwrap();
    let insert: String = other.query_one("SELECT pg_current_wal_insert_lsn()::text", &[]).await.unwrap().get(0);
    let mut s = ChangeStream::start(&opts(&db.url), &slot, &slot, start).await.unwrap();
    s.set_stop_at(Some(replication::parse_lsn(&insert).unwrap()));
    assert_eq!(tags(&drain(&mut s).await), "BRIIC", "one simple query is one transaction");
    s.stop().await.unwrap();
}
