//! End-to-end tests of the `simplyload` binary: a real Postgres, the real
//! binary, a real DuckDB file.

mod support {
    use simplyload_duckdb::duckdb;
    use std::path::{Path, PathBuf};

    pub struct Run {
        pub code: Option<i32>,
        pub stdout: String,
        pub stderr: String,
    }

    impl Run {
        pub fn ok(&self) -> &Self {
            assert_eq!(self.code, Some(0), "stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
            self
        }
        pub fn all(&self) -> String {
            format!("{}\n{}", self.stdout, self.stderr)
        }
    }

    pub async fn simplyload(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_simplyload"));
        cmd.current_dir(dir).args(args).env_remove("SIMPLYLOAD_CONFIG").env_remove("SIMPLYLOAD_FAILPOINT");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().await.expect("run simplyload");
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Writes `simplyload.yaml` for one Postgres source and one DuckDB destination.
    pub fn config(dir: &Path, url: &str, streams: &[&str], extra_pipeline: &str) -> PathBuf {
        let streams: String = streams.iter().map(|s| format!("      - {s}\n")).collect();
        let path = dir.join("simplyload.yaml");
        std::fs::write(
            &path,
            format!(
                "sources:\n  app:\n    type: postgres\n    url: {url}\n\
                 destinations:\n  local:\n    type: duckdb\n    path: warehouse.duckdb\n\
                 pipelines:\n  main:\n    source: app\n    destination: local\n{extra_pipeline}    streams:\n{streams}"
            ),
        )
        .unwrap();
        path
    }

    /// Query results from the DuckDB file, every value as text.
    pub fn duck(dir: &Path, sql: &str) -> Vec<Vec<Option<String>>> {
        let conn = duckdb::Connection::open(dir.join("warehouse.duckdb")).unwrap();
        let mut st = conn.prepare(sql).unwrap();
        let mut rows = st.query([]).unwrap();
        let mut out = Vec::new();
        while let Some(r) = rows.next().unwrap() {
            let n = r.as_ref().column_count();
            let mut row = Vec::new();
            for i in 0..n {
                let v: duckdb::types::Value = r.get(i).unwrap();
                row.push(match v {
                    duckdb::types::Value::Null => None,
                    duckdb::types::Value::Text(s) => Some(s),
                    other => Some(format!("{other:?}")),
                });
            }
            out.push(row);
        }
        out
    }

    pub fn duck_count(dir: &Path, table: &str) -> i64 {
        duck(dir, &format!("SELECT CAST(count(*) AS VARCHAR) FROM simplyload.{table}"))[0][0]
            .as_ref()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Pipeline `main`'s replication slot in this test's database: named for
    /// the pipeline and its state (`simplyload_main_<hash>`).
    pub async fn main_slot(db: &simplyload_testkit::TestDb) -> String {
        db.client
            .query_one(
                "SELECT slot_name::text FROM pg_replication_slots
                  WHERE database = current_database() AND slot_name LIKE 'simplyload\\_main\\_%' AND NOT temporary",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// `playground reconcile` of a pipeline exits 0 and finds it clean.
    pub async fn reconcile_clean(dir: &Path, pipeline: &str, env: &[(&str, &str)]) {
        let run = simplyload(dir, &["playground", "reconcile", "--pipeline", pipeline], env).await;
        assert!(run.code == Some(0) && run.stdout.contains("result: clean"), "{}\n{}", run.stdout, run.stderr);
    }

    /// Files under the local staging folder.
    pub fn staged_files(dir: &Path) -> usize {
        fn walk(d: &Path) -> usize {
            std::fs::read_dir(d)
                .map(|rd| rd.flatten().map(|e| if e.path().is_dir() { walk(&e.path()) } else { 1 }).sum())
                .unwrap_or(0)
        }
        walk(&dir.join(".simplyload/staging"))
    }

    pub fn reports(run: &Run) -> serde_json::Value {
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", run.stdout, run.stderr))
    }
}

mod exact {
    use super::support::*;
    use simplyload_testkit::TestPg;
    use simplyload_testkit::edge::{self, COLUMNS, UNREPRESENTABLE};
    use std::collections::BTreeMap;

    /// Every type of DESIGN.md §5 with edge values, synced to DuckDB and
    /// compared value by value; each unrepresentable value is NULL and
    /// counted, nothing else differs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn edge_values_arrive_exactly() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(edge::SETUP_SQL).await;
        let dir = tempfile::tempdir().unwrap();
        config(dir.path(), &db.url, &["public.edge"], "");
        let run = simplyload(dir.path(), &["sync", "--json"], &[]).await;
        run.ok();
        let report = reports(&run);
        let stream = &report[0]["streams"][0];
        assert_eq!(stream["rows"], 6);
        let table = stream["table"].as_str().unwrap().to_owned();
        assert_eq!(table, format!("app_{}_edge", db.name));

        // Unrepresentable values: counted per column, exactly the expected ones.
        let mut counted: BTreeMap<String, u64> = BTreeMap::new();
        for u in stream["unrepresentable"].as_array().unwrap() {
            *counted.entry(u["column"].as_str().unwrap().to_owned()).or_default() += u["count"].as_u64().unwrap();
        }
        let mut expected: BTreeMap<String, u64> = BTreeMap::new();
        for (c, _) in UNREPRESENTABLE {
            *expected.entry(c.to_string()).or_default() += 1;
        }
        assert_eq!(counted, expected);

        db.exec("SET TimeZone = 'UTC'; SET IntervalStyle = 'iso_8601'; SET extra_float_digits = 1").await;
        let mut differences = Vec::new();
        for c in COLUMNS {
            let q = format!("\"{}\"", c.name);
            let pg_rows = db
                .client
                .query(&format!("SELECT id, {} FROM edge ORDER BY id", edge::render(c.pg, &q)), &[])
                .await
                .unwrap_or_else(|e| panic!("{}: {e:?}", c.name));
            let duck_rows = duck(
                dir.path(),
                &format!(
                    "SELECT CAST(id AS VARCHAR), {} FROM simplyload.{table} ORDER BY id",
                    edge::render(c.duckdb, &q)
                ),
            );
            assert_eq!(pg_rows.len(), duck_rows.len());
            for (p, d) in pg_rows.iter().zip(&duck_rows) {
                let id: i32 = p.get(0);
                let pv: Option<String> = p.get(1);
                let dv = d[1].clone();
                let unrep = UNREPRESENTABLE.contains(&(c.name, id));
                let ok = if unrep { dv.is_none() } else { edge::same(c.compare, pv.as_deref(), dv.as_deref()) };
                if !ok {
                    let short = |v: &Option<String>| v.as_ref().map(|s| s.chars().take(120).collect::<String>());
                    differences.push(format!("{} id={id}: postgres {:?} duckdb {:?}", c.name, short(&pv), short(&dv)));
                }
            }
        }
        assert!(differences.is_empty(), "values differ:\n{}", differences.join("\n"));

        // The 5 MB text arrived whole.
        let len =
            duck(dir.path(), &format!("SELECT CAST(length(c_text) AS VARCHAR) FROM simplyload.{table} WHERE id = 5"));
        assert_eq!(len[0][0].as_deref(), Some("5242880"));
        // Types per DESIGN.md §5.
        let types = duck(
            dir.path(),
            &format!(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = '{table}' ORDER BY ordinal_position"
            ),
        );
        let ty = |name: &str| types.iter().find(|r| r[0].as_deref() == Some(name)).unwrap()[1].clone().unwrap();
        assert_eq!(ty("c_num"), "DECIMAL(38,10)");
        assert_eq!(ty("c_num_free"), "VARCHAR");
        assert_eq!(ty("c_num_neg"), "DECIMAL(7,0)");
        assert_eq!(ty("c_num_tiny"), "DECIMAL(5,5)");
        assert_eq!(ty("c_money"), "DECIMAL(19,2)");
        assert_eq!(ty("c_domain"), "DECIMAL(12,2)");
        assert_eq!(ty("c_tstz"), "TIMESTAMP WITH TIME ZONE");
        assert_eq!(ty("c_uuid"), "UUID");
        assert_eq!(ty("c_jsonb"), "JSON");
        assert_eq!(ty("c_int_arr"), "JSON");
        assert_eq!(ty("c_bytea"), "BLOB");
        assert_eq!(ty("c_interval"), "VARCHAR");
        assert_eq!(ty("_simplyload_version"), "DECIMAL(38,0)");
    }
}

mod lifecycle {
    use super::support::*;
    use simplyload_testkit::TestPg;

    async fn playground(db: &simplyload_testkit::TestDb, users: u64, orders: u64, events: u64) {
        simplyload_playground::create_schema(&db.client).await.unwrap();
        simplyload_playground::seed(&db.client, simplyload_playground::SeedCounts { users, orders, events }, 7)
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn second_sync_without_changes_has_no_duplicates() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        playground(&db, 200, 500, 1000).await;
        let dir = tempfile::tempdir().unwrap();
        config(dir.path(), &db.url, &["public.users", "public.orders", "public.events"], "");
        simplyload(dir.path(), &["sync"], &[]).await.ok();
        let first = duck(
            dir.path(),
            &format!(
                "SELECT CAST(id AS VARCHAR), status, CAST(amount AS VARCHAR) FROM simplyload.app_{}_orders ORDER BY id",
                db.name
            ),
        );
        let run = simplyload(dir.path(), &["sync", "main"], &[]).await;
        run.ok();
        assert!(run.stdout.contains("succeeded"), "{}", run.stdout);
        for (t, n) in [("users", 200), ("orders", 500), ("events", 1000)] {
            assert_eq!(duck_count(dir.path(), &format!("app_{}_{t}", db.name)), n, "{t}");
        }
        let second = duck(
            dir.path(),
            &format!(
                "SELECT CAST(id AS VARCHAR), status, CAST(amount AS VARCHAR) FROM simplyload.app_{}_orders ORDER BY id",
                db.name
            ),
        );
        assert_eq!(first, second);
        let batches = duck(
            dir.path(),
            "SELECT stream, CAST(count(*) AS VARCHAR) FROM simplyload._simplyload_batches GROUP BY stream ORDER BY stream",
        );
        assert_eq!(batches.len(), 3);
        assert!(batches.iter().all(|r| r[1].as_deref() == Some("2")), "{batches:?}");

        let status = simplyload(dir.path(), &["status"], &[]).await;
        status.ok();
        assert!(status.stdout.contains("public.orders"), "{}", status.stdout);
        assert!(status.stdout.contains("batch 2"), "{}", status.stdout);
        assert!(status.stdout.contains("succeeded"), "{}", status.stdout);
    }

    /// Killed right after staging (manifest recorded, nothing loaded): the
    /// next run loads the staged batch once, then syncs, and the destination
    /// holds exactly the source rows once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sync_killed_after_staging_recovers_exactly() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        playground(&db, 100, 300, 400).await;
        let dir = tempfile::tempdir().unwrap();
        config(dir.path(), &db.url, &["public.orders"], "");
        let crashed = simplyload(dir.path(), &["sync"], &[("SIMPLYLOAD_FAILPOINT", "after_staged")]).await;
        assert_ne!(crashed.code, Some(0), "{}", crashed.all());
        assert!(crashed.stderr.contains("failpoint after_staged"), "{}", crashed.stderr);
        assert!(!dir.path().join("warehouse.duckdb").exists(), "nothing was loaded before the crash");
        // A change between the crash and the rerun is picked up by the new sync.
        db.exec("UPDATE orders SET status = 'refunded' WHERE id = 1").await;
        let run = simplyload(dir.path(), &["sync", "--json"], &[]).await;
        run.ok();
        let report = reports(&run);
        assert_eq!(report[0]["streams"][0]["recovered_batches"], serde_json::json!([1]));
        let table = format!("app_{}_orders", db.name);
        assert_eq!(duck_count(dir.path(), &table), 300);
        let dupes = duck(
            dir.path(),
            &format!(
                "SELECT CAST(count(*) AS VARCHAR) FROM (SELECT id FROM simplyload.{table} GROUP BY id HAVING count(*) > 1)"
            ),
        );
        assert_eq!(dupes[0][0].as_deref(), Some("0"));
        let s = duck(dir.path(), &format!("SELECT status FROM simplyload.{table} WHERE id = 1"));
        assert_eq!(s[0][0].as_deref(), Some("refunded"));
        let batches =
            duck(dir.path(), "SELECT CAST(batch_id AS VARCHAR) FROM simplyload._simplyload_batches ORDER BY batch_id");
        assert_eq!(batches, vec![vec![Some("1".into())], vec![Some("2".into())]]);
    }

    /// Crash after crash: each run first settles what the previous one left,
    /// so every staged batch is loaded exactly once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn repeated_crashes_settle_every_batch_once() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        playground(&db, 30, 10, 10).await;
        let dir = tempfile::tempdir().unwrap();
        config(dir.path(), &db.url, &["public.users"], "");
        for _ in 0..2 {
            let crashed = simplyload(dir.path(), &["sync"], &[("SIMPLYLOAD_FAILPOINT", "after_staged")]).await;
            assert_ne!(crashed.code, Some(0));
        }
        let run = simplyload(dir.path(), &["sync", "--json"], &[]).await;
        run.ok();
        assert_eq!(reports(&run)[0]["streams"][0]["recovered_batches"], serde_json::json!([2]));
        let batches =
            duck(dir.path(), "SELECT CAST(batch_id AS VARCHAR) FROM simplyload._simplyload_batches ORDER BY batch_id");
        assert_eq!(batches, vec![vec![Some("1".into())], vec![Some("2".into())], vec![Some("3".into())]]);
        assert_eq!(duck_count(dir.path(), &format!("app_{}_users", db.name)), 30);
    }

    /// Killed after the destination committed but before the checkpoint
    /// moved: the next run finds the batch in `_simplyload_batches` and does
    /// not apply it again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sync_killed_between_load_and_checkpoint_applies_nothing_twice() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        playground(&db, 50, 100, 10).await;
        let dir = tempfile::tempdir().unwrap();
        config(dir.path(), &db.url, &["public.users"], "");
        let crashed = simplyload(dir.path(), &["sync"], &[("SIMPLYLOAD_FAILPOINT", "after_load")]).await;
        assert_ne!(crashed.code, Some(0));
        let table = format!("app_{}_users", db.name);
        assert_eq!(duck_count(dir.path(), &table), 50);
        let run = simplyload(dir.path(), &["sync", "--json"], &[]).await;
        run.ok();
        assert_eq!(reports(&run)[0]["streams"][0]["recovered_batches"], serde_json::json!([1]));
        assert_eq!(duck_count(dir.path(), &table), 50);
        let batches =
            duck(dir.path(), "SELECT CAST(batch_id AS VARCHAR) FROM simplyload._simplyload_batches ORDER BY batch_id");
        assert_eq!(batches, vec![vec![Some("1".into())], vec![Some("2".into())]]);
        let history = simplyload(dir.path(), &["status", "--json"], &[]).await;
        history.ok();
        assert!(history.stdout.contains("\"status\": \"succeeded\""), "{}", history.stdout);
    }

    /// SIGKILL while the snapshot is being read: the half-written batch is
    /// abandoned and its files removed; the next sync is exact.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sync_killed_during_read_leaves_nothing_behind() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec("CREATE TABLE big (id bigint PRIMARY KEY, pad text); INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 400000) g;").await;
        let dir = tempfile::tempdir().unwrap();
        config(dir.path(), &db.url, &["public.big"], "");
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_simplyload"))
            .current_dir(dir.path())
            .arg("sync")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Wait until staging has started, then kill -9.
        let staging = dir.path().join(".simplyload/staging/main/public.big/000000000001");
        let started = std::time::Instant::now();
        while !staging.exists() && started.elapsed() < std::time::Duration::from_secs(60) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        child.start_kill().unwrap();
        let status = child.wait().await.unwrap();
        assert!(!status.success());
        let run = simplyload(dir.path(), &["sync"], &[]).await;
        run.ok();
        assert_eq!(duck_count(dir.path(), &format!("app_{}_big", db.name)), 400_000);
        assert!(!staging.exists(), "the abandoned batch's files are removed");
    }

    /// SIGTERM while a first CDC snapshot is read in parts: the sync stops at
    /// the next batch boundary — the parts loaded stay, the batch being read
    /// is dropped with its files — says so, and the next sync goes on and
    /// ends exact.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sigterm_stops_at_a_batch_boundary_and_the_next_sync_is_exact() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec("CREATE TABLE big (id bigint PRIMARY KEY, pad text); INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 300000) g;").await;
        let dir = tempfile::tempdir().unwrap();
        config(dir.path(), &db.url, &["public.big"], "    mode: cdc\n    snapshot_part_rows: 40000\n");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_simplyload"))
            .current_dir(dir.path())
            .args(["sync", "--json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Once the second part is being written, the first is handed over.
        let second = dir.path().join(".simplyload/staging/main/public.big/000000000002");
        let mut waited = 0;
        while !second.exists() {
            waited += 1;
            assert!(waited < 3000, "the read never reached its second part");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let pid = child.id().unwrap() as libc::pid_t;
        // SAFETY: a plain signal to our own child.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let out = tokio::time::timeout(std::time::Duration::from_secs(120), child.wait_with_output())
            .await
            .expect("the sync stops instead of reading on")
            .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(130), "stopped by a signal: {stdout}\n{stderr}");
        assert!(stderr.contains("stopping at the next batch boundary"), "{stderr}");
        assert!(stderr.contains("the next `simplyload sync` goes on from the last loaded batch"), "{stderr}");
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(report[0]["error_kind"], "cancelled", "{report}");
        assert_eq!(report[0]["streams"][0]["status"], "cancelled", "{report}");
        let status = simplyload(dir.path(), &["status", "--json"], &[]).await;
        assert!(!status.stdout.contains("\"status\": \"running\""), "the sync was recorded as over: {}", status.stdout);
        db.exec("UPDATE big SET pad = 'changed' WHERE id % 1000 = 0; DELETE FROM big WHERE id % 777 = 0;").await;
        let run = simplyload(dir.path(), &["sync"], &[]).await;
        run.ok();
        let rec = simplyload(dir.path(), &["playground", "reconcile", "--pipeline", "main"], &[]).await;
        assert_eq!(rec.code, Some(0), "{}\n{}", rec.stdout, rec.stderr);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn table_without_primary_key_loads_with_row_ids() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(
            "CREATE TABLE log (msg text, n int); INSERT INTO log VALUES ('a', 1), ('a', 1), ('b', NULL), (NULL, NULL);",
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        config(dir.path(), &db.url, &["public.log"], "");
        simplyload(dir.path(), &["sync"], &[]).await.ok();
        let rows = duck(
            dir.path(),
            &format!(
                "SELECT msg, CAST(n AS VARCHAR), _simplyload_id, CAST(_simplyload_index AS VARCHAR) FROM simplyload.app_{}_log ORDER BY msg NULLS LAST, _simplyload_index",
                db.name
            ),
        );
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0][2], rows[1][2], "identical rows share an id");
        assert_eq!((rows[0][3].as_deref(), rows[1][3].as_deref()), (Some("0"), Some("1")));
        assert_ne!(rows[2][2], rows[0][2]);
        assert!(rows.iter().all(|r| r[2].as_ref().is_some_and(|id| id.len() == 32)));
        // A second sync gives every row the same id again.
        simplyload(dir.path(), &["sync"], &[]).await.ok();
        let again = duck(
            dir.path(),
            &format!(
                "SELECT msg, CAST(n AS VARCHAR), _simplyload_id, CAST(_simplyload_index AS VARCHAR) FROM simplyload.app_{}_log ORDER BY msg NULLS LAST, _simplyload_index",
                db.name
            ),
        );
        assert_eq!(rows, again);
    }

    /// Quotes, spaces, dots, slashes, upper case and non-Latin letters in
    /// schema, table and column names.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn awkward_identifiers_round_trip() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(
            r#"CREATE SCHEMA "Sales Data";
               CREATE TABLE "Sales Data"."Order ""Items""/2024.v1" (
                 "Order ID" int PRIMARY KEY, "createdAt" text, "ÜberPreis" numeric(10,2),
                 "select" text, "a.b" int, "A.B" int, "日本" text, "%x" int);
               INSERT INTO "Sales Data"."Order ""Items""/2024.v1" VALUES (1, 'x', 9.99, 'from', 1, 2, 'ja', 3), (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL);"#,
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        config(
            dir.path(),
            &db.url,
            &[r#"'"Sales Data"."Order ""Items""/2024.v1"'"#],
            "    table_name: \"{schema}_{table}\"\n",
        );
        let run = simplyload(dir.path(), &["sync", "--json"], &[]).await;
        run.ok();
        let report = reports(&run);
        let table = report[0]["streams"][0]["table"].as_str().unwrap().to_owned();
        assert_eq!(table, "sales_data_order_items_2024_v1");
        let renames = &report[0]["streams"][0]["renames"];
        assert_eq!(renames[0]["destination"], "a_b_2", "{renames}");
        let cols = duck(
            dir.path(),
            &format!(
                "SELECT column_name FROM information_schema.columns WHERE table_name = '{table}' ORDER BY ordinal_position"
            ),
        );
        let cols: Vec<&str> = cols.iter().map(|r| r[0].as_deref().unwrap()).collect();
        assert_eq!(&cols[..8], &["order_id", "created_at", "ber_preis", "select", "a_b", "a_b_2", "column_7", "x"]);
        let rows = duck(
            dir.path(),
            &format!(
                r#"SELECT CAST(order_id AS VARCHAR), created_at, CAST(ber_preis AS VARCHAR), "select", CAST(a_b_2 AS VARCHAR), column_7 FROM simplyload.{table} ORDER BY order_id"#
            ),
        );
        assert_eq!(
            rows[0],
            vec![
                Some("1".into()),
                Some("x".into()),
                Some("9.99".into()),
                Some("from".into()),
                Some("2".into()),
                Some("ja".into())
            ]
        );
        assert_eq!(rows[1][1], None);
        let status = simplyload(dir.path(), &["status"], &[]).await;
        status.ok();
        assert!(status.stdout.contains(r#""Sales Data"."Order ""Items""/2024.v1""#), "{}", status.stdout);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn discover_and_check_describe_the_source() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        playground(&db, 10, 10, 10).await;
        let dir = tempfile::tempdir().unwrap();
        config(dir.path(), &db.url, &["public.users"], "");
        let d = simplyload(dir.path(), &["discover", "app"], &[]).await;
        d.ok();
        assert!(d.stdout.contains("public.orders  [table]  ~10 rows  primary key (id)"), "{}", d.stdout);
        assert!(
            d.stdout.contains("amount") && d.stdout.contains("numeric(12,2)") && d.stdout.contains("decimal(12,2)"),
            "{}",
            d.stdout
        );
        let j = simplyload(dir.path(), &["discover", "app", "--json"], &[]).await;
        let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
        assert_eq!(v["tables"].as_array().unwrap().len(), 3);
        let c = simplyload(dir.path(), &["check"], &[]).await;
        c.ok();
        assert!(c.stdout.contains("all checks passed"), "{}", c.stdout);
    }
}

mod bad_input {
    use super::support::*;
    use simplyload_testkit::TestPg;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wrong_password_fails_clearly_and_loads_nothing() {
        let pg = TestPg::start();
        let db = pg.database().await;
        db.exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);").await;
        db.role("reader", "good").await;
        let dir = tempfile::tempdir().unwrap();
        config(dir.path(), &db.url_as("reader", "b4d-s3cret"), &["public.t"], "");
        let run = simplyload(dir.path(), &["sync"], &[]).await;
        assert_eq!(run.code, Some(1), "{}", run.all());
        assert!(run.all().contains("password authentication failed for user \"reader\""), "{}", run.all());
        assert!(run.all().contains("sources.app.url"), "{}", run.all());
        assert!(!run.all().contains("b4d-s3cret"), "{}", run.all());
        assert!(!dir.path().join("warehouse.duckdb").exists());
        let check = simplyload(dir.path(), &["check"], &[]).await;
        assert_eq!(check.code, Some(1));
        assert!(check.stdout.contains("[FAIL] connect"), "{}", check.stdout);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn missing_select_grant_prints_the_grant() {
        let pg = TestPg::start();
        let db = pg.database().await;
        db.exec("CREATE TABLE secret (id int PRIMARY KEY); CREATE TABLE open (id int PRIMARY KEY); INSERT INTO open VALUES (1), (2);").await;
        db.role("reader", "pw").await;
        db.exec("GRANT SELECT ON open TO reader").await;
        let dir = tempfile::tempdir().unwrap();
        config(dir.path(), &db.url_as("reader", "pw"), &["public.secret", "public.open"], "");
        let check = simplyload(dir.path(), &["check"], &[]).await;
        assert_eq!(check.code, Some(1), "{}", check.all());
        assert!(check.stdout.contains("GRANT SELECT ON \"public\".\"secret\" TO \"reader\";"), "{}", check.stdout);
        let run = simplyload(dir.path(), &["sync"], &[]).await;
        assert_eq!(run.code, Some(1), "{}", run.all());
        assert!(run.stdout.contains("permission denied for table secret"), "{}", run.stdout);
        assert!(run.stdout.contains("GRANT SELECT ON \"public\".\"secret\""), "{}", run.stdout);
        // The other stream still synced.
        assert_eq!(duck_count(dir.path(), &format!("app_{}_open", db.name)), 2);
        let status = simplyload(dir.path(), &["status"], &[]).await;
        assert!(status.stdout.contains("permission denied"), "{}", status.stdout);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn missing_table_names_the_table_and_the_fix() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec("CREATE TABLE orders (id int PRIMARY KEY)").await;
        let dir = tempfile::tempdir().unwrap();
        config(dir.path(), &db.url, &["public.ordres"], "");
        let run = simplyload(dir.path(), &["sync"], &[]).await;
        assert_eq!(run.code, Some(1), "{}", run.all());
        assert!(run.stdout.contains("table public.ordres not found in source `app`"), "{}", run.stdout);
        assert!(run.stdout.contains("simplyload discover app"), "{}", run.stdout);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn config_errors_name_the_key_and_exit_2() {
        let dir = tempfile::tempdir().unwrap();
        let path = config(dir.path(), "postgres://u@127.0.0.1:1/db", &["public.a"], "    on_unrepresentible: fail\n");
        let run = simplyload(dir.path(), &["sync"], &[]).await;
        assert_eq!(run.code, Some(2), "{}", run.all());
        assert!(run.stderr.contains("pipelines.main"), "{}", run.stderr);
        assert!(run.stderr.contains("unknown field `on_unrepresentible`"), "{}", run.stderr);

        config(dir.path(), "postgres://u@127.0.0.1:1/db", &["public.orders", "sales.orders"], "");
        let run = simplyload(dir.path(), &["check"], &[]).await;
        assert_eq!(run.code, Some(2), "{}", run.all());
        assert!(run.stderr.contains("both map to table `app_db_orders`"), "{}", run.stderr);
        assert!(run.stderr.contains("{schema}"), "{}", run.stderr);

        let run = simplyload(dir.path(), &["sync"], &[("SIMPLYLOAD_CONFIG", "/nowhere/x.yaml")]).await;
        assert_eq!(run.code, Some(2), "{}", run.all());
        assert!(run.stderr.contains("/nowhere/x.yaml"), "{}", run.stderr);

        std::fs::write(&path, "sources: {app: {type: postgres, url: \"postgres://u:${NOPE_PW}@h/d\"}}\n").unwrap();
        let run = simplyload(dir.path(), &["sync"], &[]).await;
        assert_eq!(run.code, Some(2));
        assert!(run.stderr.contains("sources.app.url: environment variable NOPE_PW is not set"), "{}", run.stderr);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn config_path_comes_from_flag_env_or_cwd_and_json_logs_are_json() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);").await;
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("conf");
        std::fs::create_dir(&conf).unwrap();
        let path = config(&conf, &db.url, &["public.t"], "");
        let elsewhere = tempfile::tempdir().unwrap();
        let p = path.to_str().unwrap();
        simplyload(elsewhere.path(), &["--config", p, "sync"], &[]).await.ok();
        // Relative paths resolve against the config file, not the cwd.
        assert!(conf.join("warehouse.duckdb").exists());
        assert!(conf.join(".simplyload/state.db").exists());
        let run = simplyload(elsewhere.path(), &["--log-format", "json", "sync"], &[("SIMPLYLOAD_CONFIG", p)]).await;
        run.ok();
        let lines: Vec<&str> = run.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(!lines.is_empty());
        for l in lines {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            assert!(v["level"].is_string());
        }
    }
}

mod quickstart {
    use super::support::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn quickstart_syncs_the_demo_and_stops_postgres() {
        let dir = tempfile::tempdir().unwrap();
        let run = simplyload(dir.path(), &["quickstart", "--dir", "demo"], &[]).await;
        run.ok();
        let demo = dir.path().join("demo");
        assert!(demo.join("simplyload.yaml").exists());
        assert!(run.stdout.contains("source vs destination"), "{}", run.stdout);
        assert_eq!(run.stdout.matches(" ok\n").count(), 3, "{}", run.stdout);
        assert!(run.stdout.contains("stopped"), "{}", run.stdout);
        // Source and database are both `playground`: the name says it once.
        let n = duck(&demo, "SELECT CAST(count(*) AS VARCHAR) FROM simplyload.playground_events");
        assert_eq!(n[0][0].as_deref(), Some("5000"));
        // The server is gone: its port no longer answers.
        let port: u16 = run
            .stdout
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .expect("port in output");
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}

mod reconcile {
    use super::support::*;
    use simplyload_testkit::TestPg;
    use std::path::Path;

    fn exec_duck(dir: &Path, sql: &str) {
        let conn = simplyload_duckdb::duckdb::Connection::open(dir.join("warehouse.duckdb")).unwrap();
        conn.execute_batch(sql).unwrap_or_else(|e| panic!("{e}\n{sql}"));
    }

    fn table<'a>(result: &'a serde_json::Value, stream: &str) -> &'a serde_json::Value {
        result["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["stream"] == stream)
            .unwrap_or_else(|| panic!("{stream} in {result}"))
    }

    /// The keys of one kind of difference, sorted.
    fn keys(t: &serde_json::Value, kind: &str) -> Vec<String> {
        let mut k: Vec<String> = t["samples"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["kind"] == kind)
            .map(|s| s["key"].as_str().unwrap().to_owned())
            .collect();
        k.sort();
        k
    }

    fn counts(t: &serde_json::Value) -> [u64; 4] {
        ["matched", "missing", "extra", "different"].map(|k| t[k].as_u64().unwrap())
    }

    /// schema → seed → sync → reconcile is clean; then rows of the
    /// destination are changed, deleted, added and marked deleted on purpose,
    /// and reconcile names exactly those keys (and the changed columns), in
    /// small key-range chunks so chunk edges are crossed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reports_exactly_the_rows_tampered_with() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        let dir = tempfile::tempdir().unwrap();
        simplyload(dir.path(), &["playground", "schema", "--database-url", &db.url], &[]).await.ok();
        simplyload(
            dir.path(),
            &["playground", "seed", "--database-url", &db.url, "--scale", "0.2", "--seed", "3"],
            &[],
        )
        .await
        .ok();
        config(dir.path(), &db.url, &["public.users", "public.orders", "public.events"], "");
        simplyload(dir.path(), &["sync"], &[]).await.ok();

        let clean =
            simplyload(dir.path(), &["playground", "reconcile", "--pipeline", "main", "--chunk-rows", "150"], &[])
                .await;
        clean.ok();
        assert!(clean.stdout.contains("result: clean"), "{}", clean.stdout);
        assert!(clean.stdout.contains("public.orders") && clean.stdout.contains("1,000"), "{}", clean.stdout);

        let t = |name: &str| format!("simplyload.app_{}_{name}", db.name);
        exec_duck(
            dir.path(),
            &format!(
                "UPDATE {orders} SET amount = amount + 0.01 WHERE id IN (5, 150, 151);
                 UPDATE {orders} SET status = 'lost', quantity = quantity + 1 WHERE id = 999;
                 DELETE FROM {orders} WHERE id IN (1, 300);
                 UPDATE {events} SET properties = '{{\"path\": \"/\"}}' WHERE id = 42;
                 UPDATE {events} SET created_at = CAST(make_timestamp(epoch_us(created_at) + 1) AS TIMESTAMPTZ) WHERE id = 43;
                 INSERT INTO {users} SELECT * REPLACE (100000 AS id) FROM {users} WHERE id = 10;
                 UPDATE {users} SET _simplyload_deleted = true WHERE id = 7;",
                orders = t("orders"),
                events = t("events"),
                users = t("users"),
            ),
        );
        let run = simplyload(
            dir.path(),
            &["playground", "reconcile", "--pipeline", "main", "--chunk-rows", "150", "--samples", "10", "--json"],
            &[],
        )
        .await;
        assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
        let r = reports(&run);
        assert_eq!(r["clean"], false);
        let orders = table(&r, "public.orders");
        assert_eq!(counts(orders), [994, 2, 0, 4], "{orders}");
        assert_eq!(keys(orders, "missing"), ["1", "300"]);
        assert_eq!(keys(orders, "different"), ["150", "151", "5", "999"]);
        let s999 = orders["samples"].as_array().unwrap().iter().find(|s| s["key"] == "999").unwrap();
        assert_eq!(s999["columns"], serde_json::json!(["status", "quantity"]));
        let events = table(&r, "public.events");
        assert_eq!(counts(events), [3998, 0, 0, 2], "{events}");
        assert_eq!(keys(events, "different"), ["42", "43"]);
        let users = table(&r, "public.users");
        assert_eq!(counts(users), [199, 1, 1, 0], "{users}");
        assert_eq!(keys(users, "missing"), ["7"]);
        assert_eq!(keys(users, "extra"), ["100000"]);

        // The same findings in the text report, with the exit code.
        let text = simplyload(dir.path(), &["playground", "reconcile", "--pipeline", "main"], &[]).await;
        assert_eq!(text.code, Some(1));
        assert!(text.stdout.contains("public.orders: missing in the destination, e.g. 1; 300"), "{}", text.stdout);
        assert!(text.stdout.contains("999 (status, quantity)"), "{}", text.stdout);
        assert!(text.stdout.contains("result: 3 of 3 table(s) differ"), "{}", text.stdout);

        // A later sync repairs everything (full refresh), and reconcile says so.
        simplyload(dir.path(), &["sync"], &[]).await.ok();
        simplyload(dir.path(), &["playground", "reconcile", "--pipeline", "main"], &[]).await.ok();
    }

    /// Every type of DESIGN.md §5 with its edge values reconciles clean
    /// (unrepresentable values are expected as NULL), and a one-microsecond
    /// or one-digit change in any of them is found.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn edge_values_reconcile_to_the_last_digit() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(simplyload_testkit::edge::SETUP_SQL).await;
        let dir = tempfile::tempdir().unwrap();
        config(dir.path(), &db.url, &["public.edge"], "");
        simplyload(dir.path(), &["sync"], &[]).await.ok();
        let clean = simplyload(dir.path(), &["playground", "reconcile", "--pipeline", "main", "--json"], &[]).await;
        clean.ok();
        assert_eq!(counts(table(&reports(&clean), "public.edge"))[0], 6);

        let edge = format!("simplyload.app_{}_edge", db.name);
        // One change per column, each in a different row that holds a value there.
        let changes = [
            ("c_tstz", "CAST(make_timestamp(epoch_us(c_tstz) + 1) AS TIMESTAMPTZ)", "isfinite(c_tstz)"),
            ("c_num", "c_num + 0.0000000001", "abs(c_num) < 1e27"),
            ("c_double", "nextafter(c_double, 0)", "isfinite(c_double) AND c_double <> 0"),
            ("c_jsonb", "'{\"changed\": 1}'", "true"),
            ("c_bytea", "c_bytea || '\\x00'::BLOB", "true"),
        ];
        let mut expected: Vec<(String, Vec<String>)> = Vec::new();
        for (col, expr, cond) in changes {
            let taken: Vec<&str> = expected.iter().map(|(k, _)| k.as_str()).collect();
            let not_in = if taken.is_empty() { String::new() } else { format!("AND id NOT IN ({})", taken.join(", ")) };
            let id = duck(
                dir.path(),
                &format!("SELECT CAST(min(id) AS VARCHAR) FROM {edge} WHERE {col} IS NOT NULL AND {cond} {not_in}"),
            )[0][0]
                .clone()
                .unwrap_or_else(|| panic!("no row to change {col} in"));
            exec_duck(dir.path(), &format!("UPDATE {edge} SET {col} = {expr} WHERE id = {id}"));
            expected.push((id, vec![col.to_owned()]));
        }
        expected.sort();
        let run = simplyload(
            dir.path(),
            &["playground", "reconcile", "--pipeline", "main", "--json", "--samples", "10"],
            &[],
        )
        .await;
        assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
        let r = reports(&run);
        let t = table(&r, "public.edge");
        let mut found: Vec<(String, Vec<String>)> = t["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["key"].as_str().unwrap().to_owned(),
                    s["columns"]
                        .as_array()
                        .map(|c| c.iter().map(|x| x.as_str().unwrap().to_owned()).collect())
                        .unwrap_or_default(),
                )
            })
            .collect();
        found.sort();
        assert_eq!(found, expected);
        assert_eq!(counts(t), [1, 0, 0, 5]);
    }

    /// A table without a key compares as a multiset (duplicates count); a
    /// text key under a linguistic collation and an enum key compare in hash
    /// partitions; a composite key in ranges. A missing destination table is
    /// reported, not an error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keyless_collated_and_composite_keys() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(
            r#"CREATE TABLE log (msg text, n int);
               INSERT INTO log VALUES ('a', 1), ('a', 1), ('a', 1), ('b', NULL), (NULL, NULL);
               CREATE TYPE colour AS ENUM ('red', 'green', 'blue');
               CREATE TABLE tagged (c colour PRIMARY KEY, v int);
               INSERT INTO tagged VALUES ('blue', 1), ('red', 2), ('green', 3);
               CREATE TABLE words (w text PRIMARY KEY, v int);
               INSERT INTO words SELECT w, ord::int FROM unnest(ARRAY['Zebra', 'apple', 'Äpfel', 'b', 'ß', 'Ωmega', 'éclair',
                 'E', 'e', 'a b', 'a-b', 'ab', '日本', 'z', 'A', 'aa', 'ä', 'Ä', '😀', '', ' x']) WITH ORDINALITY AS t(w, ord);
               CREATE TABLE pairs (a int, b text, v text, PRIMARY KEY (a, b));
               INSERT INTO pairs SELECT i / 10, 'k' || (i % 10), 'v' || i FROM generate_series(1, 500) i;"#,
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        config(dir.path(), &db.url, &["public.log", "public.tagged", "public.words", "public.pairs"], "");
        simplyload(dir.path(), &["sync"], &[]).await.ok();
        let run = simplyload(
            dir.path(),
            &["playground", "reconcile", "--pipeline", "main", "--chunk-rows", "7", "--json"],
            &[],
        )
        .await;
        run.ok();
        let r = reports(&run);
        assert!(table(&r, "public.log")["method"].as_str().unwrap().starts_with("multiset"));
        assert!(table(&r, "public.tagged")["method"].as_str().unwrap().starts_with("hash partitions"));
        assert_eq!(table(&r, "public.pairs")["method"], "key ranges");
        assert_eq!(counts(table(&r, "public.pairs")), [500, 0, 0, 0]);
        // Text keys are chunked in byte order on both sides, whatever the column's collation.
        assert_eq!(table(&r, "public.words")["method"], "key ranges");
        assert_eq!(counts(table(&r, "public.words")), [21, 0, 0, 0]);

        let t = |name: &str| format!("simplyload.app_{}_{name}", db.name);
        exec_duck(
            dir.path(),
            &format!(
                "DELETE FROM {log} WHERE _simplyload_index = 2;
                 UPDATE {tagged} SET v = 20 WHERE c = 'red';
                 UPDATE {pairs} SET v = 'changed' WHERE a = 3 AND b = 'k7';
                 DELETE FROM {pairs} WHERE a = 49 AND b = 'k9';",
                log = t("log"),
                tagged = t("tagged"),
                pairs = t("pairs"),
            ),
        );
        db.exec("INSERT INTO pairs VALUES (51, 'k0', 'new'); CREATE TABLE never_synced (id int PRIMARY KEY);").await;
        let run = simplyload(
            dir.path(),
            &["playground", "reconcile", "--pipeline", "main", "--chunk-rows", "7", "--json"],
            &[],
        )
        .await;
        assert_eq!(run.code, Some(1));
        let r = reports(&run);
        assert_eq!(counts(table(&r, "public.log")), [4, 1, 0, 0]);
        assert_eq!(keys(table(&r, "public.tagged"), "different"), ["\"red\""]);
        let pairs = table(&r, "public.pairs");
        assert_eq!(counts(pairs), [498, 2, 0, 1]);
        assert_eq!(keys(pairs, "missing"), ["(49, \"k9\")", "(51, \"k0\")"]);
        assert_eq!(keys(pairs, "different"), ["(3, \"k7\")"]);

        config(dir.path(), &db.url, &["public.never_synced"], "");
        let run = simplyload(dir.path(), &["playground", "reconcile", "--pipeline", "main"], &[]).await;
        assert_eq!(run.code, Some(1));
        assert!(run.stdout.contains("does not exist"), "{}", run.stdout);
    }
}

mod incremental {
    use super::support::*;
    use simplyload_testkit::TestPg;
    use std::path::Path;

    async fn playground(db: &simplyload_testkit::TestDb) {
        simplyload_playground::create_schema(&db.client).await.unwrap();
        simplyload_playground::seed(
            &db.client,
            simplyload_playground::SeedCounts { users: 100, orders: 400, events: 10 },
            11,
        )
        .await
        .unwrap();
    }

    fn incremental_config(dir: &Path, url: &str, lookback: &str) {
        let streams = format!(
            "      - name: public.users\n        cursor: updated_at\n        soft_delete: deleted_at\n        lookback: {lookback}\n\
             \x20     - name: public.orders\n        cursor: updated_at\n        lookback: {lookback}\n"
        );
        std::fs::write(
            dir.join("simplyload.yaml"),
            format!(
                "sources:\n  app:\n    type: postgres\n    url: {url}\n\
                 destinations:\n  local:\n    type: duckdb\n    path: warehouse.duckdb\n\
                 pipelines:\n  main:\n    source: app\n    destination: local\n    mode: incremental\n    streams:\n{streams}"
            ),
        )
        .unwrap();
    }

    /// The three playground tables, incremental by `updated_at`, users' soft deletes mapped.
    fn playground_incremental_config(dir: &Path, url: &str) {
        config(
            dir,
            url,
            &[
                "{name: public.users, cursor: updated_at, soft_delete: deleted_at}",
                "{name: public.orders, cursor: updated_at}",
                "{name: public.events, cursor: updated_at}",
            ],
            "    mode: incremental\n",
        );
    }

    /// `playground run` in the background at a brisk rate.
    fn spawn_load(dir: &Path, url: &str, extra: &[&str], stdout: std::process::Stdio) -> tokio::process::Child {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_simplyload"))
            .current_dir(dir)
            .args(["playground", "run", "--database-url", url])
            .args(["--orders-per-hour", "36000", "--events-per-hour", "72000", "--soft-deletes-per-hour", "3600"])
            .args(extra)
            .stdout(stdout)
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    fn rows(report: &serde_json::Value, stream: &str) -> u64 {
        report[0]["streams"].as_array().unwrap().iter().find(|s| s["stream"] == stream).unwrap()["rows"]
            .as_u64()
            .unwrap()
    }

    async fn sync(dir: &Path) -> serde_json::Value {
        let run = simplyload(dir, &["sync", "--json"], &[]).await;
        run.ok();
        reports(&run)
    }

    async fn reconcile_clean(dir: &Path) {
        let run = simplyload(dir, &["playground", "reconcile", "--pipeline", "main"], &[]).await;
        assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    }

    /// The first sync snapshots; later ones read only what changed (plus the
    /// lookback window), merge it by key, and map soft deletes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_only_changes_and_maps_soft_deletes() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        playground(&db).await;
        let dir = tempfile::tempdir().unwrap();
        incremental_config(dir.path(), &db.url, "1s");
        let first = sync(dir.path()).await;
        assert_eq!((rows(&first, "public.users"), rows(&first, "public.orders")), (100, 400));
        reconcile_clean(dir.path()).await;

        db.exec(
            "UPDATE orders SET status = 'refunded' WHERE id <= 7;
             UPDATE users SET deleted_at = now() WHERE id IN (3, 4);
             INSERT INTO orders (user_id, status, quantity, amount, currency) VALUES (1, 'pending', 1, 9.99, 'EUR');",
        )
        .await;
        let second = sync(dir.path()).await;
        // Only the changed rows: those read again within the lookback (and the
        // row at the checkpoint, read again by the `>=`) were loaded unchanged.
        assert_eq!((rows(&second, "public.users"), rows(&second, "public.orders")), (2, 8));
        let orders = format!("simplyload.app_{}_orders", db.name);
        assert_eq!(duck_count(dir.path(), &format!("app_{}_orders", db.name)), 401, "merged by key, no duplicates");
        let refunded =
            duck(dir.path(), &format!("SELECT CAST(count(*) AS VARCHAR) FROM {orders} WHERE status = 'refunded'"));
        assert_eq!(refunded[0][0].as_deref(), Some("7"));
        let deleted = duck(
            dir.path(),
            &format!(
                "SELECT CAST(id AS VARCHAR) FROM simplyload.app_{}_users WHERE _simplyload_deleted ORDER BY id",
                db.name
            ),
        );
        let deleted: Vec<_> = deleted.iter().map(|r| r[0].clone().unwrap()).collect();
        let expected: Vec<String> = {
            let rows = db
                .client
                .query("SELECT id::text AS k FROM users WHERE deleted_at IS NOT NULL ORDER BY id", &[])
                .await
                .unwrap();
            rows.iter().map(|r| r.get(0)).collect()
        };
        assert_eq!(deleted, expected, "_simplyload_deleted follows deleted_at");
        assert!(deleted.contains(&"3".to_owned()) && deleted.contains(&"4".to_owned()));
        reconcile_clean(dir.path()).await;

        // The checkpoint is the cursor; status shows it.
        let cursor = &second[0]["streams"][1]["position"]["cursor"];
        assert_eq!(cursor["type"], "micros", "{second}");
        let status = simplyload(dir.path(), &["status"], &[]).await;
        status.ok();
        assert!(status.stdout.contains("incremental"), "{}", status.stdout);

        // Nothing changed: only the lookback window is read again, nothing doubles.
        let third = sync(dir.path()).await;
        assert!(rows(&third, "public.orders") <= 9, "{third}");
        assert_eq!(duck_count(dir.path(), &format!("app_{}_orders", db.name)), 401);
        reconcile_clean(dir.path()).await;
    }

    /// `updated_at = now()` is the writing transaction's start: a transaction
    /// open during a sync commits rows older than what that sync saw. With
    /// no lookback at all, the checkpoint must still stop at its start.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transaction_committing_late_is_not_missed() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        playground(&db).await;
        let dir = tempfile::tempdir().unwrap();
        incremental_config(dir.path(), &db.url, "0s");
        sync(dir.path()).await;

        let late = simplyload_testkit::pg::connect(&db.url).await;
        late.batch_execute("BEGIN; UPDATE orders SET status = 'late' WHERE id = 1;").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        db.exec("UPDATE orders SET status = 'early' WHERE id = 2;").await;
        sync(dir.path()).await;
        late.batch_execute("COMMIT").await.unwrap();
        sync(dir.path()).await;
        let status = duck(
            dir.path(),
            &format!("SELECT status FROM simplyload.app_{}_orders WHERE id IN (1, 2) ORDER BY id", db.name),
        );
        assert_eq!(status, vec![vec![Some("late".to_owned())], vec![Some("early".to_owned())]]);
        reconcile_clean(dir.path()).await;
    }

    /// `playground run` (inserts, updates, soft deletes, new columns) while
    /// incremental syncs run every couple of seconds; after a final sync the
    /// destination is exactly the source.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn syncs_under_continuous_load_converge() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        let dir = tempfile::tempdir().unwrap();
        simplyload(dir.path(), &["playground", "seed", "--database-url", &db.url, "--scale", "0.2"], &[]).await.ok();
        playground_incremental_config(dir.path(), &db.url);
        let mut load = spawn_load(
            dir.path(),
            &db.url,
            &["--duration", "60s", "--json", "--schema-changes", "--schema-change-every", "8s"],
            std::process::Stdio::piped(),
        );
        let mut syncs = 0;
        loop {
            let run = simplyload(dir.path(), &["sync"], &[]).await;
            assert_eq!(run.code, Some(0), "sync {syncs} under load:\n{}", run.all());
            syncs += 1;
            if let Some(status) = load.try_wait().unwrap() {
                assert!(status.success());
                break;
            }
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        }
        assert!(syncs >= 10, "only {syncs} syncs ran during the load");
        let out = load.wait_with_output().await.unwrap();
        let totals: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(totals["orders_inserted"].as_u64().unwrap() > 50, "{totals}");
        assert!(totals["columns_added"].as_u64().unwrap() >= 2, "{totals}");
        simplyload(dir.path(), &["sync"], &[]).await.ok();
        let rec = simplyload(dir.path(), &["playground", "reconcile", "--pipeline", "main"], &[]).await;
        assert_eq!(rec.code, Some(0), "{}\n{}", rec.stdout, rec.stderr);
    }

    /// At least 20 syncs SIGKILLed at random moments, and some aborted at each
    /// fixed point (during the read, after staging, inside the destination
    /// transaction, between load and checkpoint), while
    /// `playground run` writes; after a final sync nothing is lost or doubled.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn random_sigkills_under_load_lose_and_double_nothing() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        let dir = tempfile::tempdir().unwrap();
        simplyload(dir.path(), &["playground", "seed", "--database-url", &db.url, "--scale", "0.5"], &[]).await.ok();
        playground_incremental_config(dir.path(), &db.url);
        let mut load = spawn_load(dir.path(), &db.url, &["--duration", "10m"], std::process::Stdio::null());
        let mut seed: u64 = 0x5eed;
        let mut next = move |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let (mut kills, mut finished) = (0, 0);
        for i in 0..80 {
            if kills >= 24 {
                break;
            }
            // Every fourth sync dies at a fixed point; the rest at a random moment.
            let failpoint = match i % 16 {
                1 => "during_read",
                5 => "after_staged",
                9 => "during_load",
                13 => "after_load",
                _ => "",
            };
            let mut sync = tokio::process::Command::new(env!("CARGO_BIN_EXE_simplyload"))
                .current_dir(dir.path())
                .args(["sync"])
                .env_remove("SIMPLYLOAD_CONFIG")
                .env("SIMPLYLOAD_FAILPOINT", failpoint)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(30 + next(1500))).await;
            match sync.try_wait().unwrap() {
                Some(status) if status.success() => finished += 1,
                Some(_) => kills += 1, // aborted at its failpoint
                None => {
                    sync.kill().await.unwrap();
                    kills += 1;
                }
            }
        }
        eprintln!("{kills} kills, {finished} syncs finished");
        assert!(kills >= 20, "only {kills} kills ({finished} syncs finished)");
        load.kill().await.unwrap();
        // Settle what the last kill left, then one more sync reads what is left.
        simplyload(dir.path(), &["sync"], &[]).await.ok();
        simplyload(dir.path(), &["sync"], &[]).await.ok();
        let rec = simplyload(dir.path(), &["playground", "reconcile", "--pipeline", "main"], &[]).await;
        assert_eq!(
            rec.code,
            Some(0),
            "after {kills} kills and {finished} finished syncs:\n{}\n{}",
            rec.stdout,
            rec.stderr
        );
    }

    /// Integer cursors: a count lookback (default 0).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn integer_cursor() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(
            "CREATE SEQUENCE v; CREATE TABLE items (id int PRIMARY KEY, name text, version bigint NOT NULL DEFAULT nextval('v'));
             INSERT INTO items (id, name) SELECT i, 'n' || i FROM generate_series(1, 50) i;",
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        config(dir.path(), &db.url, &["{name: public.items, cursor: version}"], "    mode: incremental\n");
        assert_eq!(rows(&sync(dir.path()).await, "public.items"), 50);
        db.exec("UPDATE items SET name = 'changed', version = nextval('v') WHERE id IN (5, 6); INSERT INTO items (id, name) VALUES (51, 'new');").await;
        // The three changed rows; the row at the checkpoint is read again (the
        // read is `>=`) but was loaded unchanged, so it is not staged again.
        assert_eq!(rows(&sync(dir.path()).await, "public.items"), 3);
        assert_eq!(rows(&sync(dir.path()).await, "public.items"), 0, "nothing changed, nothing staged");
        reconcile_clean(dir.path()).await;
    }

    /// Rows whose cursor is NULL are read by the snapshot, counted and reported.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn null_cursors_are_counted_and_reported() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec("CREATE TABLE t (id int PRIMARY KEY, changed timestamptz); INSERT INTO t VALUES (1, now()), (2, NULL), (3, NULL);").await;
        let dir = tempfile::tempdir().unwrap();
        config(dir.path(), &db.url, &["{name: public.t, cursor: changed}"], "    mode: incremental\n");
        let run = simplyload(dir.path(), &["sync", "--json"], &[]).await;
        run.ok();
        let r = reports(&run);
        assert_eq!(r[0]["streams"][0]["rows"], 3);
        assert_eq!(r[0]["streams"][0]["position"]["null_cursor_rows"], 2);
        db.exec("INSERT INTO t VALUES (4, NULL);").await;
        let text = simplyload(dir.path(), &["resync", "main", "public.t"], &[]).await;
        text.ok();
        let text = simplyload(dir.path(), &["sync"], &[]).await;
        text.ok();
        assert!(text.stdout.contains("public.t: 3 row(s) have a NULL cursor"), "{}", text.stdout);
    }

    /// Misconfigured incremental streams fail with the key and the fix.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn config_mistakes_name_the_key_and_the_fix() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        playground(&db).await;
        db.exec("CREATE TABLE nokey (a int, t timestamptz);").await;
        let dir = tempfile::tempdir().unwrap();
        config(
            dir.path(),
            &db.url,
            &[
                "public.users",
                "{name: public.orders, cursor: status}",
                "{name: public.events, cursor: updated_at, lookback: 10}",
                "{name: public.nokey, cursor: t}",
            ],
            "    mode: incremental\n    table_name: \"{table}_{source}\"\n",
        );
        let run = simplyload(dir.path(), &["sync"], &[]).await;
        let out = run.all();
        assert_ne!(run.code, Some(0), "{out}");
        for expected in [
            "pipelines.main.streams[0]: mode `incremental` needs a cursor column",
            "add `cursor: updated_at`",
            "pipelines.main.streams[1].cursor: column `status` is text",
            "pipelines.main.streams[2].lookback: 10 is a count, but the cursor is a timestamp",
            "table public.nokey has no primary key",
            "add `primary_key: [..]`",
        ] {
            assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
        }
    }
}

mod locking {
    use super::support::*;
    use simplyload_testkit::TestPg;

    /// A second sync of a pipeline that is syncing fails at once (or after
    /// `--wait`) and names the holder; SIGKILL of the holder frees the lock.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_sync_per_pipeline_and_the_lock_dies_with_its_process() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        simplyload_playground::create_schema(&db.client).await.unwrap();
        simplyload_playground::seed(
            &db.client,
            simplyload_playground::SeedCounts { users: 20, orders: 50, events: 5 },
            1,
        )
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        config(dir.path(), &db.url, &["public.users", "public.orders"], "");
        // The first sync blocks on a table lock while it reads.
        let blocker = simplyload_testkit::pg::connect(&db.url).await;
        blocker.batch_execute("BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE;").await.unwrap();
        let mut first = tokio::process::Command::new(env!("CARGO_BIN_EXE_simplyload"))
            .current_dir(dir.path())
            .args(["sync"])
            .env_remove("SIMPLYLOAD_CONFIG")
            .env_remove("SIMPLYLOAD_FAILPOINT")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = first.id().unwrap();
        // Wait until it is inside the read (it holds the lock by then).
        let mut waited = 0;
        loop {
            let n: i64 = db
                .client
                .query_one("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'COPY%orders%' AND wait_event_type = 'Lock'", &[])
                .await
                .unwrap()
                .get(0);
            if n > 0 {
                break;
            }
            waited += 1;
            assert!(waited < 300, "the first sync never started reading");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let second = simplyload(dir.path(), &["sync"], &[]).await;
        assert_eq!(second.code, Some(3), "busy, not failed: {}", second.all());
        assert!(
            second.all().contains(&format!("pipeline `main` is being synced by another process (pid {pid}, since")),
            "{}",
            second.all()
        );
        assert!(second.all().contains("--wait"), "{}", second.all());
        let started = std::time::Instant::now();
        let third = simplyload(dir.path(), &["sync", "--wait", "1s"], &[]).await;
        assert_eq!(third.code, Some(3));
        assert!(started.elapsed() >= std::time::Duration::from_secs(1));

        let during = simplyload(dir.path(), &["status", "--json"], &[]).await;
        assert!(during.stdout.contains("\"status\": \"running\""), "{}", during.stdout);
        first.kill().await.unwrap(); // SIGKILL
        first.wait().await.unwrap();
        let after_kill = simplyload(dir.path(), &["status", "--json"], &[]).await;
        assert!(after_kill.stdout.contains("\"status\": \"interrupted\""), "{}", after_kill.stdout);
        let history = simplyload(dir.path(), &["history", "main"], &[]).await;
        assert!(history.stdout.contains("interrupted"), "{}", history.stdout);
        blocker.batch_execute("ROLLBACK").await.unwrap();
        let after = simplyload(dir.path(), &["sync", "--json"], &[]).await;
        after.ok();
        assert_eq!(duck_count(dir.path(), &format!("app_{}_orders", db.name)), 50);
        simplyload(dir.path(), &["playground", "reconcile", "--pipeline", "main"], &[]).await.ok();
    }
}

mod network {
    use super::support::*;
    use simplyload_postgres::local::LocalOptions;
    use simplyload_testkit::TestPg;
    use std::time::Duration;

    fn spawn_sync(dir: &std::path::Path) -> tokio::process::Child {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_simplyload"))
            .current_dir(dir)
            .args(["sync", "--json", "--log-format", "json"])
            .env_remove("SIMPLYLOAD_CONFIG")
            .env_remove("SIMPLYLOAD_FAILPOINT")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    /// Waits until the sync is inside its COPY of `big`.
    async fn wait_for_copy(url: &str) {
        let c = simplyload_testkit::pg::connect(url).await;
        for _ in 0..400 {
            let n: i64 = c
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY%big%' AND state = 'active'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if n > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the sync never started reading");
    }

    /// Postgres goes away in the middle of a read. Back within the retry
    /// window: the sync retries and succeeds. Gone for good: the sync fails
    /// with a message that says what happened, stages nothing, and the next
    /// sync after Postgres is back is exact.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_lost_mid_read_is_retried_then_reported() {
        let mut pg = TestPg::start();
        let db = pg.database().await;
        db.exec("CREATE TABLE big AS SELECT i AS id, md5(i::text) AS h, repeat('x', 300) AS pad FROM generate_series(1, 400000) i; ALTER TABLE big ADD PRIMARY KEY (id); CHECKPOINT;").await;
        // (The test server runs with synchronous_commit off; CHECKPOINT makes
        // the setup survive the crashes below.)
        let dir = tempfile::tempdir().unwrap();
        config(dir.path(), &db.url, &["public.big"], "");

        // 1. Back quickly: retried.
        let sync = spawn_sync(dir.path());
        wait_for_copy(&db.url).await;
        pg.server.stop().unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        pg.server.restart(&LocalOptions::default()).unwrap();
        let out = sync.wait_with_output().await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains("reading failed; retrying"), "{stderr}");
        assert_eq!(duck_count(dir.path(), &format!("app_{}_big", db.name)), 400_000);

        // 2. Gone for good: reported, nothing half-loaded.
        let db2 = simplyload_testkit::pg::connect(&db.url).await;
        db2.batch_execute("UPDATE big SET h = 'new' WHERE id <= 10; CHECKPOINT;").await.unwrap();
        let sync = spawn_sync(dir.path());
        wait_for_copy(&db.url).await;
        pg.server.stop().unwrap();
        let out = sync.wait_with_output().await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let error = report[0]["streams"][0]["error"].as_str().unwrap().to_owned();
        assert!(error.contains("public.big"), "{error}");
        assert!(error.to_lowercase().contains("connect") || error.contains("closed"), "{error}");
        let staged = walk(&dir.path().join(".simplyload/staging"));
        assert_eq!(staged.len(), 1, "only the loaded batch's files stay: {staged:?}");
        let unchanged =
            duck(dir.path(), &format!("SELECT count(*)::VARCHAR FROM simplyload.app_{}_big WHERE h = 'new'", db.name));
        assert_eq!(unchanged[0][0].as_deref(), Some("0"));

        pg.server.restart(&LocalOptions::default()).unwrap();
        simplyload(dir.path(), &["sync"], &[]).await.ok();
        simplyload(dir.path(), &["playground", "reconcile", "--pipeline", "main"], &[]).await.ok();
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    out.extend(walk(&p));
                } else {
                    out.push(p);
                }
            }
        }
        out
    }
}

mod schema_evolution {
    use super::support::*;
    use simplyload_testkit::TestPg;

    fn types(dir: &std::path::Path, table: &str) -> Vec<(String, String)> {
        duck(dir, &format!("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = '{table}' AND column_name NOT LIKE '\\_simplyload%' ESCAPE '\\' ORDER BY ordinal_position"))
            .into_iter()
            .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
            .collect()
    }

    async fn sync(dir: &std::path::Path) -> serde_json::Value {
        let run = simplyload(dir, &["sync", "--json"], &[]).await;
        run.ok();
        reports(&run)
    }

    fn changes(r: &serde_json::Value) -> Vec<String> {
        r[0]["streams"][0]["schema_changes"]
            .as_array()
            .map(|a| a.iter().map(|c| c.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    }

    async fn clean(dir: &std::path::Path) {
        let rec = simplyload(dir, &["playground", "reconcile", "--pipeline", "main"], &[]).await;
        assert_eq!(rec.code, Some(0), "{}\n{}", rec.stdout, rec.stderr);
    }

    /// Added, defaulted, dropped, widened and incompatibly changed columns of
    /// an incremental stream: the destination's columns and values after each.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_kind_of_change_arrives_without_losing_a_value() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(
            "CREATE TABLE items (id int PRIMARY KEY, code int, price numeric(10,2), note varchar(10), legacy text,
                                 updated_at timestamptz NOT NULL DEFAULT now());
             INSERT INTO items (id, code, price, note, legacy) SELECT i, i * 10, i + 0.25, 'n' || i, 'l' || i FROM generate_series(1, 20) i;",
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        config(
            dir.path(),
            &db.url,
            &["{name: public.items, cursor: updated_at, lookback: 1s}"],
            "    mode: incremental\n",
        );
        sync(dir.path()).await;
        let t = format!("app_{}_items", db.name);

        // 1. Added without a default: earlier rows NULL, new values arrive.
        db.exec("ALTER TABLE items ADD COLUMN color text; UPDATE items SET color = 'red', updated_at = clock_timestamp() WHERE id = 1;").await;
        let r = sync(dir.path()).await;
        assert_eq!(changes(&r), ["column color added"]);
        let colors = duck(dir.path(), &format!("SELECT color FROM simplyload.{t} WHERE id IN (1, 2) ORDER BY id"));
        assert_eq!(colors, vec![vec![Some("red".into())], vec![None]]);
        clean(dir.path()).await;

        // 2. Added with a default: every existing row has a value its cursor
        //    does not show, so the stream is read again.
        db.exec("ALTER TABLE items ADD COLUMN status text NOT NULL DEFAULT 'active';").await;
        let r = sync(dir.path()).await;
        assert_eq!(changes(&r), ["column status added with a default; existing rows are read again"]);
        assert_eq!(r[0]["streams"][0]["rows"], 20);
        let active = duck(dir.path(), &format!("SELECT count(*)::VARCHAR FROM simplyload.{t} WHERE status = 'active'"));
        assert_eq!(active[0][0].as_deref(), Some("20"));
        clean(dir.path()).await;

        // 3. Dropped: the column stays with its values, new rows leave it NULL.
        db.exec("ALTER TABLE items DROP COLUMN legacy; INSERT INTO items (id, code, price, note) VALUES (21, 210, 21.25, 'n21');").await;
        let r = sync(dir.path()).await;
        assert_eq!(changes(&r), ["column legacy dropped in the source; kept in the destination, no longer filled"]);
        let legacy = duck(dir.path(), &format!("SELECT legacy FROM simplyload.{t} WHERE id IN (1, 21) ORDER BY id"));
        assert_eq!(legacy, vec![vec![Some("l1".into())], vec![None]]);
        clean(dir.path()).await;

        // 4. Widened: altered in place, values intact.
        db.exec("ALTER TABLE items ALTER COLUMN id TYPE bigint, ALTER COLUMN price TYPE numeric(14,3), ALTER COLUMN note TYPE text;
                 UPDATE items SET price = 1234567.125, updated_at = clock_timestamp() WHERE id = 2;").await;
        let r = sync(dir.path()).await;
        assert_eq!(
            changes(&r),
            ["column id widened from int32 to int64", "column price widened from decimal(10,2) to decimal(14,3)"]
        );
        let ty = types(dir.path(), &t);
        assert!(
            ty.contains(&("id".into(), "BIGINT".into())) && ty.contains(&("price".into(), "DECIMAL(14,3)".into())),
            "{ty:?}"
        );
        let prices =
            duck(dir.path(), &format!("SELECT price::VARCHAR FROM simplyload.{t} WHERE id IN (1, 2) ORDER BY id"));
        assert_eq!(prices, vec![vec![Some("1.250".into())], vec![Some("1234567.125".into())]]);
        clean(dir.path()).await;

        // 5. Incompatible: the old column keeps its data, values go to code__text.
        db.exec("ALTER TABLE items ALTER COLUMN code TYPE text USING 'C-' || code;").await;
        let r = sync(dir.path()).await;
        assert_eq!(
            changes(&r),
            [
                "column code changed type from int32 to text; old values stay in code, values are now written to code__text (rows read again)"
            ]
        );
        let codes = duck(
            dir.path(),
            &format!("SELECT code::VARCHAR, code__text FROM simplyload.{t} WHERE id IN (1, 21) ORDER BY id"),
        );
        assert_eq!(
            codes,
            vec![vec![Some("10".into()), Some("C-10".into())], vec![Some("210".into()), Some("C-210".into())]]
        );
        clean(dir.path()).await;
        // Later syncs keep writing to code__text.
        db.exec("UPDATE items SET code = 'C-new', updated_at = clock_timestamp() WHERE id = 3;").await;
        let r = sync(dir.path()).await;
        assert!(changes(&r).is_empty(), "{r}");
        let c3 = duck(dir.path(), &format!("SELECT code__text FROM simplyload.{t} WHERE id = 3"));
        assert_eq!(c3[0][0].as_deref(), Some("C-new"));
        clean(dir.path()).await;
    }
}

mod day2 {
    use super::support::*;
    use simplyload_testkit::TestPg;

    /// status (changes, cursor, lag), history, resync of one stream, staging gc.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn status_history_resync_and_staging_gc() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        simplyload_playground::create_schema(&db.client).await.unwrap();
        simplyload_playground::seed(
            &db.client,
            simplyload_playground::SeedCounts { users: 30, orders: 60, events: 5 },
            5,
        )
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        config(
            dir.path(),
            &db.url,
            &[
                "{name: public.users, cursor: updated_at, lookback: 1s}",
                "{name: public.orders, cursor: updated_at, lookback: 1s}",
            ],
            "    mode: incremental\n",
        );
        simplyload(dir.path(), &["sync"], &[]).await.ok();
        db.exec(
            "UPDATE orders SET status = 'refunded' WHERE id <= 4;
             INSERT INTO orders (user_id, status, quantity, amount, currency) VALUES (1, 'pending', 1, 1.00, 'USD'), (2, 'pending', 1, 2.00, 'USD');",
        )
        .await;
        simplyload(dir.path(), &["sync"], &[]).await.ok();

        let status = simplyload(dir.path(), &["status"], &[]).await;
        status.ok();
        let line = status.stdout.lines().find(|l| l.contains("public.orders")).unwrap().to_owned();
        assert!(line.contains("incremental"), "{line}");
        // 2 new rows, 4 updated, none deleted (the row at the checkpoint, read
        // again by the `>=`, is unchanged and not staged again).
        assert!(line.contains("2 / 4 / 0"), "{}", status.stdout);
        let json = simplyload(dir.path(), &["status", "--json"], &[]).await;
        let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
        let orders =
            v[0]["streams"].as_array().unwrap().iter().find(|s| s["stream"] == "public.orders").unwrap().clone();
        assert_eq!(orders["checkpoint"]["position"]["cursor"]["type"], "micros", "{orders}");
        assert_eq!(orders["last_changes"], serde_json::json!({"inserted": 2, "updated": 4, "deleted": 0}));
        assert!(orders["checkpoint"]["position"].get("overlap").is_none(), "row ids are not shown: {orders}");

        let history = simplyload(dir.path(), &["history", "main"], &[]).await;
        history.ok();
        let lines: Vec<&str> = history.stdout.lines().collect();
        assert_eq!(lines.len(), 3, "{}", history.stdout);
        assert!(lines[1].starts_with("2 ") && lines[1].contains("succeeded"), "{}", history.stdout);
        assert!(lines[2].starts_with("1 ") && lines[2].contains("90"), "{}", history.stdout);

        // resync: orders is read in full at the next sync, users is not.
        let bad = simplyload(dir.path(), &["resync", "main", "public.nope"], &[]).await;
        assert_eq!(bad.code, Some(2));
        assert!(
            bad.all().contains("pipeline main has no stream public.nope") && bad.all().contains("public.orders"),
            "{}",
            bad.all()
        );
        let r = simplyload(dir.path(), &["resync", "main", "public.orders"], &[]).await;
        r.ok();
        assert!(r.stdout.contains("will be read in full at the next sync"), "{}", r.stdout);
        let run = simplyload(dir.path(), &["sync", "--json"], &[]).await;
        run.ok();
        let rep = reports(&run);
        let rows = |s: &str| {
            rep[0]["streams"].as_array().unwrap().iter().find(|x| x["stream"] == s).unwrap()["rows"].as_u64().unwrap()
        };
        assert_eq!(rows("public.orders"), 62);
        assert!(rows("public.users") < 30);
        simplyload(dir.path(), &["playground", "reconcile", "--pipeline", "main"], &[]).await.ok();

        // staging gc: nothing is old enough by default; everything loaded with 0s.
        let before = staged_files(dir.path());
        assert!(before >= 4, "{before} staged files (a batch with no rows has none)");
        let keep = simplyload(dir.path(), &["staging", "gc"], &[]).await;
        keep.ok();
        assert!(keep.stdout.contains("removed the staged files of 0 loaded batch(es)"), "{}", keep.stdout);
        let dry = simplyload(dir.path(), &["staging", "gc", "--older-than", "0s", "--dry-run"], &[]).await;
        dry.ok();
        assert!(dry.stdout.contains("would remove the staged files of 6 loaded batch(es)"), "{}", dry.stdout);
        assert_eq!(staged_files(dir.path()), before);
        let gc = simplyload(dir.path(), &["staging", "gc", "--older-than", "0s"], &[]).await;
        gc.ok();
        assert!(gc.stdout.contains("removed the staged files of 6 loaded batch(es)"), "{}", gc.stdout);
        assert_eq!(staged_files(dir.path()), 0);
        // The next sync does not need them.
        simplyload(dir.path(), &["sync"], &[]).await.ok();
        simplyload(dir.path(), &["playground", "reconcile", "--pipeline", "main"], &[]).await.ok();
    }
}

mod patterns {
    use super::support::*;
    use simplyload_testkit::TestPg;

    /// `public.*` with `exclude`: matching tables sync, excluded ones do not,
    /// and a table created later is picked up at the next sync.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pattern_streams_pick_up_new_tables() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(
            "CREATE TABLE a_1 (id int PRIMARY KEY, v text); INSERT INTO a_1 VALUES (1, 'x');
             CREATE TABLE a_2 (id int PRIMARY KEY, v text); INSERT INTO a_2 VALUES (1, 'y'), (2, 'z');
             CREATE TABLE tmp_scratch (id int); CREATE SCHEMA other; CREATE TABLE other.a_9 (id int);",
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        config(dir.path(), &db.url, &["{name: \"public.*\", exclude: [public.tmp_*]}"], "");
        let run = simplyload(dir.path(), &["sync", "--json"], &[]).await;
        run.ok();
        let streams: Vec<String> = reports(&run)[0]["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["stream"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(streams, ["public.a_1", "public.a_2"]);

        db.exec("CREATE TABLE a_3 (id int PRIMARY KEY, v text); INSERT INTO a_3 VALUES (7, 'new');").await;
        let run = simplyload(dir.path(), &["sync", "--json"], &[]).await;
        run.ok();
        let streams: Vec<String> = reports(&run)[0]["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["stream"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(streams, ["public.a_1", "public.a_2", "public.a_3"]);
        assert_eq!(duck_count(dir.path(), &format!("app_{}_a_3", db.name)), 1);
        let status = simplyload(dir.path(), &["status"], &[]).await;
        status.ok();
        assert!(status.stdout.contains("public.a_3") && !status.stdout.contains("tmp_scratch"), "{}", status.stdout);
        simplyload(dir.path(), &["playground", "reconcile", "--pipeline", "main"], &[]).await.ok();
        simplyload(dir.path(), &["check"], &[]).await.ok();
        let bad = simplyload(dir.path(), &["resync", "main", "public.tmp_scratch"], &[]).await;
        assert_eq!(bad.code, Some(2), "excluded tables are not streams: {}", bad.all());
        simplyload(dir.path(), &["resync", "main", "public.a_2"], &[]).await.ok();
    }
}

mod s3_staging {
    use super::support::*;
    use simplyload_testkit::TestPg;
    use simplyload_testkit::peers::Moto;

    /// Playground → sync with S3 staging (moto) → DuckDB; reconcile clean;
    /// `staging gc` removes the batches' objects.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sync_through_s3_staging() {
        let moto = Moto::start();
        moto.create_bucket("simplyload-stage");
        let pg = TestPg::shared();
        let db = pg.database().await;
        simplyload_playground::create_schema(&db.client).await.unwrap();
        simplyload_playground::seed(
            &db.client,
            simplyload_playground::SeedCounts { users: 50, orders: 200, events: 500 },
            2,
        )
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        config(dir.path(), &db.url, &["public.users", "public.orders", "public.events"], "");
        let yaml = std::fs::read_to_string(dir.path().join("simplyload.yaml")).unwrap();
        std::fs::write(
            dir.path().join("simplyload.yaml"),
            format!(
                "staging:\n  url: s3://simplyload-stage/customer_7\n  endpoint: {}\n  region: us-east-1\n  access_key_id: testing\n  secret_access_key: ${{S3_SECRET}}\n{yaml}",
                moto.endpoint()
            ),
        )
        .unwrap();
        let env = [("S3_SECRET", "s3cr3t-never-printed")];
        let run = simplyload(dir.path(), &["sync", "--json"], &env).await;
        run.ok();
        assert!(!run.all().contains("s3cr3t") && !dir.path().join(".simplyload/staging").exists());
        let key = "<Key>customer_7/main/public.orders/000000000001/part-00000.parquet</Key>";
        let listing = || moto.request("GET", "/simplyload-stage?list-type=2").1;
        assert!(listing().contains(key), "{}", listing());
        simplyload(dir.path(), &["playground", "reconcile", "--pipeline", "main"], &env).await.ok();
        let gc = simplyload(dir.path(), &["staging", "gc", "--older-than", "0s"], &env).await;
        gc.ok();
        assert!(gc.stdout.contains("removed the staged files of 3 loaded batch(es)"), "{}", gc.stdout);
        assert!(!listing().contains("<Key>"), "{}", listing());
    }
}

mod setup_sql {
    use super::support::*;
    use simplyload_testkit::TestPg;

    /// The Postgres script runs as written, and the role it makes can `check`
    /// and sync — including a table created after the script (default privileges).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_postgres_script_gives_exactly_enough_access() {
        let pg = TestPg::start();
        let db = pg.database().await;
        db.exec("CREATE SCHEMA \"Sales Data\"; CREATE TABLE \"Sales Data\".orders (id int PRIMARY KEY, v text); INSERT INTO \"Sales Data\".orders VALUES (1, 'a');").await;
        let dir = tempfile::tempdir().unwrap();
        // The config first: the publication is named for the pipeline and its state.
        let url = db.url_as("sl reader", "pw");
        config(
            dir.path(),
            &url,
            &[r#"'"Sales Data".orders'"#, r#"'"Sales Data".later'"#],
            "    mode: cdc\n    table_name: \"{schema}_{table}\"\n",
        );
        let script = simplyload(
            dir.path(),
            &[
                "setup-sql",
                "postgres",
                "--database",
                &db.name,
                "--role",
                "sl reader",
                "--schema",
                "Sales Data",
                "--cdc",
                "--pipeline",
                "main",
            ],
            &[],
        )
        .await;
        script.ok();
        pg.server.psql_script(&db.name, &script.stdout).unwrap();
        db.exec("ALTER ROLE \"sl reader\" PASSWORD 'pw'; CREATE TABLE \"Sales Data\".later (id int PRIMARY KEY); INSERT INTO \"Sales Data\".later VALUES (5);").await;
        simplyload(dir.path(), &["check"], &[]).await.ok();
        simplyload(dir.path(), &["sync"], &[]).await.ok();
        assert_eq!(duck_count(dir.path(), "sales_data_later"), 1);
        let roles =
            db.client.query_one("SELECT rolreplication FROM pg_roles WHERE rolname = 'sl reader'", &[]).await.unwrap();
        assert!(roles.get::<_, bool>(0), "--cdc grants REPLICATION");
        // The sync used the script's publication: the role could not have made it.
        let slot = main_slot(&db).await;
        let publ =
            db.client.query_one("SELECT count(*) FROM pg_publication WHERE pubname = $1", &[&slot]).await.unwrap();
        assert_eq!(publ.get::<_, i64>(0), 1);
        db.exec("INSERT INTO \"Sales Data\".later VALUES (6);").await;
        simplyload(dir.path(), &["sync"], &[]).await.ok();
        assert_eq!(duck_count(dir.path(), "sales_data_later"), 2, "changes arrive through the slot");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_snowflake_script_uses_the_given_key_and_refuses_odd_names() {
        let dir = tempfile::tempdir().unwrap();
        use simplyload_snowflake::rsa::{self, pkcs8::EncodePublicKey};
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let pem = key.to_public_key().to_public_key_pem(rsa::pkcs8::LineEnding::LF).unwrap();
        std::fs::write(dir.path().join("rsa_key.pub"), &pem).unwrap();
        let run = simplyload(
            dir.path(),
            &["setup-sql", "snowflake", "--public-key-file", "rsa_key.pub", "--warehouse", "load_wh"],
            &[],
        )
        .await;
        run.ok();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(run.stdout.contains(&format!("RSA_PUBLIC_KEY = '{body}'")), "{}", run.stdout);
        let fp = simplyload_snowflake::jwt::fingerprint(&key).unwrap();
        assert!(run.stdout.contains(&format!("RSA_PUBLIC_KEY_FP = {fp}")), "{}", run.stdout);
        std::fs::write(dir.path().join("bad.pub"), "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
            .unwrap();
        let bad = simplyload(dir.path(), &["setup-sql", "snowflake", "--public-key-file", "bad.pub"], &[]).await;
        assert_eq!(bad.code, Some(2), "{}", bad.all());
        assert!(bad.all().contains("bad.pub"), "{}", bad.all());
        assert!(
            run.stdout.contains("CREATE WAREHOUSE IF NOT EXISTS LOAD_WH") && run.stdout.contains("AUTO_SUSPEND = 60"),
            "{}",
            run.stdout
        );
        let bad = simplyload(dir.path(), &["setup-sql", "snowflake", "--role", "x'; DROP"], &[]).await;
        assert_eq!(bad.code, Some(2));
        assert!(bad.all().contains("--role"), "{}", bad.all());
    }
}

mod snowflake {
    use super::support::*;
    use simplyload_core::config::Secret;
    use simplyload_snowflake::destination::{result_rows, uses_warehouse};
    use simplyload_snowflake::{Credentials, LoginOptions, Session};
    use simplyload_testkit::TestPg;
    use simplyload_testkit::peers::{Fakesnow, Moto};
    use simplyload_testkit::snowproxy::{Fault, SnowProxy};
    use std::path::Path;
    use std::time::Duration;

    const PASSWORD: &str = "sn0wfl4ke-never-printed";

    /// A session straight to fakesnow (not through the proxy), as the
    /// customer's admin: makes what `setup-sql snowflake` makes, and reads.
    async fn admin(server: &Fakesnow) -> Session {
        let s = Session::login(LoginOptions {
            base_url: server.base_url(),
            account: "xy12345.us-east-1".into(),
            user: "ADMIN".into(),
            role: None,
            warehouse: None,
            database: None,
            schema: None,
            credentials: Credentials::Password(Secret::new("x")),
            session_parameters: Default::default(),
            timeout: Duration::from_secs(60),
        })
        .await
        .unwrap();
        s.query("CREATE DATABASE IF NOT EXISTS RAW_DATA", &[]).await.unwrap();
        s.query("CREATE SCHEMA IF NOT EXISTS RAW_DATA.SIMPLYLOAD", &[]).await.unwrap();
        s
    }

    async fn count(s: &Session, table: &str, filter: &str) -> Option<u64> {
        let r = s.query(&format!("SELECT COUNT(*) FROM RAW_DATA.SIMPLYLOAD.\"{table}\" {filter}"), &[]).await.ok()?;
        result_rows(&r)[0][0].as_deref().and_then(|v| v.parse().ok())
    }

    /// `simplyload.yaml`: the Postgres source, a Snowflake destination at
    /// `base_url`, incremental streams of the playground, optional S3 staging.
    fn config(dir: &Path, pg_url: &str, base_url: &str, staging: &str) {
        std::fs::write(
            dir.join("simplyload.yaml"),
            format!(
                "{staging}sources:\n  app:\n    type: postgres\n    url: {pg_url}\n\
                 destinations:\n  snow:\n    type: snowflake\n    account: xy12345.us-east-1\n    user: SIMPLYLOAD\n\
                 \x20   password: ${{SNOWFLAKE_PASSWORD}}\n    role: SIMPLYLOAD\n    warehouse: SIMPLYLOAD_WH\n\
                 \x20   base_url: {base_url}\n\
                 pipelines:\n  main:\n    source: app\n    destination: snow\n    mode: incremental\n    streams:\n\
                 \x20     - {{name: public.users, cursor: updated_at, soft_delete: deleted_at}}\n\
                 \x20     - {{name: public.orders, cursor: updated_at}}\n\
                 \x20     - {{name: public.events, cursor: updated_at}}\n"
            ),
        )
        .unwrap();
    }

    async fn playground(db: &simplyload_testkit::TestDb) {
        simplyload_playground::create_schema(&db.client).await.unwrap();
        simplyload_playground::seed(
            &db.client,
            simplyload_playground::SeedCounts { users: 40, orders: 150, events: 300 },
            2,
        )
        .await
        .unwrap();
    }

    const ENV: [(&str, &str); 2] = [("SNOWFLAKE_PASSWORD", PASSWORD), ("S3_SECRET", "s3cr3t-never-printed")];

    fn warehouse_statements(report: &serde_json::Value) -> Vec<String> {
        report[0]["statements"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|s| s["uses_warehouse"] == true)
                    .map(|s| s["sql"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Playground → sync with S3 staging on moto → Snowflake (fakesnow, behind
    /// the proxy) → reconcile clean; a sync with no changes sends no warehouse
    /// statement; changes merge and reconcile clean again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn playground_through_s3_staging_reconciles_clean() {
        let moto = Moto::start();
        moto.create_bucket("simplyload-stage");
        let server = Fakesnow::start();
        let proxy = SnowProxy::start(server.port, vec![]);
        let admin = admin(&server).await;
        let pg = TestPg::shared();
        let db = pg.database().await;
        playground(&db).await;
        let dir = tempfile::tempdir().unwrap();
        let staging = format!(
            "staging:\n  url: s3://simplyload-stage/c9\n  endpoint: {}\n  region: us-east-1\n  access_key_id: testing\n  secret_access_key: ${{S3_SECRET}}\n",
            moto.endpoint()
        );
        config(dir.path(), &db.url, &proxy.base_url(), &staging);

        simplyload(dir.path(), &["check"], &ENV).await.ok();
        let first = simplyload(dir.path(), &["sync", "--json"], &ENV).await;
        first.ok();
        assert!(!first.all().contains(PASSWORD) && !first.all().contains("s3cr3t"), "{}", first.all());
        let orders = format!("APP_{}_ORDERS", db.name.to_ascii_uppercase());
        assert_eq!(count(&admin, &orders, "").await, Some(150));
        let report = reports(&first);
        assert!(!warehouse_statements(&report).is_empty(), "the first sync loads");
        assert!(report[0]["statements"][0]["elapsed_ms"].is_u64());
        let clean = simplyload(dir.path(), &["playground", "reconcile", "--pipeline", "main"], &ENV).await;
        clean.ok();
        assert!(clean.stdout.contains("result: clean"), "{}", clean.stdout);

        // Nothing changed: no statement that needs the warehouse reaches Snowflake.
        let before = proxy.statements().len();
        let idle = simplyload(dir.path(), &["sync", "--json"], &ENV).await;
        idle.ok();
        assert_eq!(warehouse_statements(&reports(&idle)), Vec::<String>::new());
        let sent: Vec<String> = proxy.statements()[before..].to_vec();
        assert!(sent.iter().all(|s| !uses_warehouse(s)), "{sent:#?}");

        // Changes merge: updates, inserts, a soft delete.
        db.exec(
            "UPDATE orders SET status = 'refunded', amount = amount + 1 WHERE id <= 10;
             INSERT INTO orders (user_id, status, amount, quantity, currency) SELECT user_id, 'new', 5.25, 1, 'EUR' FROM orders WHERE id <= 3;
             UPDATE users SET deleted_at = now() WHERE id IN (2, 3);",
        )
        .await;
        let third = simplyload(dir.path(), &["sync", "--json"], &ENV).await;
        third.ok();
        assert_eq!(count(&admin, &orders, "").await, Some(153));
        let users = format!("APP_{}_USERS", db.name.to_ascii_uppercase());
        let gone: i64 =
            db.client.query_one("SELECT count(*) FROM users WHERE deleted_at IS NOT NULL", &[]).await.unwrap().get(0);
        assert!(gone >= 2);
        assert_eq!(count(&admin, &users, "WHERE _SIMPLYLOAD_DELETED").await, Some(gone as u64));
        let clean = simplyload(dir.path(), &["playground", "reconcile", "--pipeline", "main"], &ENV).await;
        clean.ok();
        assert!(clean.stdout.contains("result: clean"), "{}", clean.stdout);
        let batches = count(&admin, "_SIMPLYLOAD_BATCHES", "").await.unwrap();
        assert!((4..=6).contains(&batches), "one row per loaded batch with rows: {batches}");
    }

    /// A sync against fakesnow behind a proxy that answers the given faults.
    struct Faulty {
        _server: Fakesnow,
        admin: Session,
        proxy: SnowProxy,
        db: simplyload_testkit::TestDb,
        _pg: &'static TestPg,
        dir: tempfile::TempDir,
    }

    async fn faulty(faults: Vec<Fault>) -> Faulty {
        let server = Fakesnow::start();
        let proxy = SnowProxy::start(server.port, faults);
        let admin = admin(&server).await;
        let pg = TestPg::shared();
        let db = pg.database().await;
        playground(&db).await;
        let dir = tempfile::tempdir().unwrap();
        config(dir.path(), &db.url, &proxy.base_url(), "");
        Faulty { _server: server, admin, proxy, db, _pg: pg, dir }
    }

    impl Faulty {
        async fn run(&self, args: &[&str]) -> Run {
            let r = simplyload(self.dir.path(), args, &ENV).await;
            assert!(!r.all().contains(PASSWORD), "the password is never printed:\n{}", r.all());
            r
        }

        fn table(&self, t: &str) -> String {
            format!("APP_{}_{t}", self.db.name.to_ascii_uppercase())
        }

        /// With the fault gone, a sync loads everything exactly once.
        async fn recovers(&self) {
            self.proxy.set_faults(vec![]);
            self.run(&["sync"]).await.ok();
            assert_eq!(count(&self.admin, &self.table("ORDERS"), "").await, Some(150));
            assert_eq!(count(&self.admin, &self.table("EVENTS"), "").await, Some(300));
            let clean = self.run(&["playground", "reconcile", "--pipeline", "main"]).await;
            clean.ok();
            assert!(clean.stdout.contains("result: clean"), "{}", clean.stdout);
        }
    }

    /// `mode` streams of the playground into Snowflake schema `schema`.
    fn mode_config(dir: &Path, pg_url: &str, base_url: &str, mode: &str, schema: &str) {
        let streams = match mode {
            "incremental" => {
                "      - {name: public.users, cursor: updated_at}\n      - {name: public.orders, cursor: updated_at}\n"
            }
            _ => "      - public.users\n      - public.orders\n",
        };
        std::fs::write(
            dir.join("simplyload.yaml"),
            format!(
                "sources:\n  app:\n    type: postgres\n    url: {pg_url}\n\
                 destinations:\n  snow:\n    type: snowflake\n    account: xy12345.us-east-1\n    user: SIMPLYLOAD\n\
                 \x20   password: ${{SNOWFLAKE_PASSWORD}}\n    role: SIMPLYLOAD\n    warehouse: SIMPLYLOAD_WH\n\
                 \x20   schema: {schema}\n    base_url: {base_url}\n\
                 pipelines:\n  main:\n    source: app\n    destination: snow\n    mode: {mode}\n    streams:\n\
                 {streams}"
            ),
        )
        .unwrap();
    }

    /// Syncs; returns the report and, per stream, why it was read again.
    async fn sync_rereads(dir: &Path) -> (serde_json::Value, Vec<(String, Option<String>)>) {
        let run = simplyload(dir, &["sync", "--json"], &ENV).await;
        run.ok();
        let report = reports(&run);
        let why = report[0]["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["stream"].as_str().unwrap().to_owned(), s["reread"].as_str().map(str::to_owned)))
            .collect();
        (report, why)
    }

    /// The destination lost what was loaded (issue 15): a table dropped by
    /// hand, then a new schema, are read again in full and end exact; the
    /// check stays off the warehouse (a marker table per pipeline), and a
    /// destination without the marker (loaded before markers existed) is
    /// checked against `_simplyload_batches` once and not read again.
    async fn lost_tables_are_refilled(mode: &str) {
        let server = Fakesnow::start();
        let admin = admin(&server).await;
        admin.query("CREATE SCHEMA IF NOT EXISTS RAW_DATA.MOVED", &[]).await.unwrap();
        let pg = TestPg::shared();
        let db = pg.database().await;
        playground(&db).await;
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        mode_config(dir, &db.url, &server.base_url(), mode, "SIMPLYLOAD");
        sync_rereads(dir).await;
        let orders = format!("APP_{}_ORDERS", db.name.to_ascii_uppercase());
        let touch = "UPDATE orders SET status = 'refunded', updated_at = clock_timestamp() WHERE id % 7 = 0";

        admin.query(&format!("DROP TABLE RAW_DATA.SIMPLYLOAD.\"{orders}\""), &[]).await.unwrap();
        db.exec(touch).await;
        let (_, why) = sync_rereads(dir).await;
        let of = |s: &str| why.iter().find(|(n, _)| n == s).unwrap().1.clone();
        assert!(of("public.orders").is_some_and(|w| w.contains("is missing")), "{why:?}");
        assert_eq!(of("public.users"), None);
        assert_eq!(count(&admin, &orders, "WHERE NOT _SIMPLYLOAD_DELETED").await, Some(150));
        reconcile_clean(dir, "main", &ENV).await;

        // Nothing lost: the check sends no warehouse statement.
        let (idle, why) = sync_rereads(dir).await;
        assert!(why.iter().all(|(_, w)| w.is_none()), "{why:?}");
        assert_eq!(warehouse_statements(&idle), Vec::<String>::new());

        // Loaded before markers existed: asked once, not read again.
        let marker = admin
            .query("SHOW TERSE TABLES LIKE '_SIMPLYLOAD_PIPELINE_%' IN SCHEMA RAW_DATA.SIMPLYLOAD", &[])
            .await
            .unwrap();
        let markers = result_rows(&marker);
        assert_eq!(markers.len(), 1, "{markers:?}");
        let name = markers[0][1].clone().unwrap();
        admin.query(&format!("DROP TABLE RAW_DATA.SIMPLYLOAD.\"{name}\""), &[]).await.unwrap();
        let (_, why) = sync_rereads(dir).await;
        assert!(why.iter().all(|(_, w)| w.is_none()), "{why:?}");
        let (idle, _) = sync_rereads(dir).await;
        assert_eq!(warehouse_statements(&idle), Vec::<String>::new(), "the marker was made again");

        // A new schema: every stream is read again there.
        mode_config(dir, &db.url, &server.base_url(), mode, "MOVED");
        db.exec(touch).await;
        let (_, why) = sync_rereads(dir).await;
        assert!(why.iter().all(|(_, w)| w.as_deref().is_some_and(|w| w.contains("is missing"))), "{why:?}");
        let moved = admin.query(&format!("SELECT COUNT(*) FROM RAW_DATA.MOVED.\"{orders}\""), &[]).await.unwrap();
        assert_eq!(result_rows(&moved)[0][0].as_deref(), Some("150"));
        reconcile_clean(dir, "main", &ENV).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lost_incremental_tables_are_refilled() {
        lost_tables_are_refilled("incremental").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lost_cdc_tables_are_refilled() {
        lost_tables_are_refilled("cdc").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wrong_password_is_refused_and_nothing_loads() {
        let f = faulty(vec![Fault::login("390100", "Incorrect username or password was specified.")]).await;
        let check = f.run(&["check"]).await;
        assert_ne!(check.code, Some(0));
        assert!(
            check.all().contains("Incorrect username or password") && check.all().contains("password"),
            "{}",
            check.all()
        );
        let sync = f.run(&["sync"]).await;
        assert_ne!(sync.code, Some(0));
        assert!(sync.all().contains("390100"), "{}", sync.all());
        assert_eq!(count(&f.admin, &f.table("ORDERS"), "").await, None, "nothing was created");
        f.recovers().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_private_keys_say_which_and_why() {
        let f = faulty(vec![]).await;
        let yaml = std::fs::read_to_string(f.dir.path().join("simplyload.yaml")).unwrap();
        let with_key = yaml.replace("    password: ${SNOWFLAKE_PASSWORD}\n", "    private_key_path: keys/rsa_key.p8\n");
        std::fs::write(f.dir.path().join("simplyload.yaml"), &with_key).unwrap();
        // The file is missing.
        let check = f.run(&["check"]).await;
        assert_ne!(check.code, Some(0));
        assert!(check.all().contains("rsa_key.p8"), "{}", check.all());
        // The file is not a key.
        std::fs::create_dir_all(f.dir.path().join("keys")).unwrap();
        std::fs::write(
            f.dir.path().join("keys/rsa_key.p8"),
            "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let check = f.run(&["check"]).await;
        assert_ne!(check.code, Some(0));
        assert!(check.all().to_lowercase().contains("key"), "{}", check.all());
        assert!(!check.all().contains("bm90IGEga2V5"), "the key's text is not printed");
        // A real key that Snowflake does not know.
        use simplyload_snowflake::rsa::pkcs8::EncodePrivateKey;
        let key = simplyload_snowflake::rsa::RsaPrivateKey::new(&mut simplyload_snowflake::rsa::rand_core::OsRng, 2048)
            .unwrap();
        let pem = key.to_pkcs8_pem(simplyload_snowflake::rsa::pkcs8::LineEnding::LF).unwrap();
        std::fs::write(f.dir.path().join("keys/rsa_key.p8"), pem.as_bytes()).unwrap();
        f.proxy.set_faults(vec![Fault::login("390144", "JWT token is invalid.")]);
        let check = f.run(&["check"]).await;
        assert_ne!(check.code, Some(0));
        assert!(
            check.all().contains("JWT token is invalid") && check.all().contains("RSA_PUBLIC_KEY"),
            "{}",
            check.all()
        );
        // Snowflake knows the key: the sync loads.
        f.proxy.set_faults(vec![]);
        f.run(&["sync"]).await.ok();
        assert_eq!(count(&f.admin, &f.table("ORDERS"), "").await, Some(150));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn missing_warehouse_database_and_grants_name_the_fix() {
        let no_warehouse = "No active warehouse selected in the current session.  Select an active warehouse with the 'use warehouse' command.";
        let f = faulty(vec![
            Fault::statement(
                "USE WAREHOUSE",
                "002003",
                "SQL compilation error:\nObject 'SIMPLYLOAD_WH' does not exist or not authorized.",
            ),
            Fault::statement("SELECT", "000606", no_warehouse),
            Fault::statement("COPY INTO", "000606", no_warehouse),
        ])
        .await;
        let check = f.run(&["check"]).await;
        assert_ne!(check.code, Some(0));
        assert!(check.all().contains("GRANT USAGE ON WAREHOUSE SIMPLYLOAD_WH TO ROLE SIMPLYLOAD"), "{}", check.all());
        let sync = f.run(&["sync"]).await;
        assert_ne!(sync.code, Some(0));
        assert!(
            sync.all().contains("000606")
                && sync.all().contains("GRANT USAGE ON WAREHOUSE SIMPLYLOAD_WH TO ROLE SIMPLYLOAD"),
            "{}",
            sync.all()
        );

        let no_db = "SQL compilation error:\nDatabase 'RAW_DATA' does not exist or not authorized.";
        f.proxy.set_faults(vec![
            Fault::statement("USE SCHEMA", "002003", no_db),
            Fault::statement("CREATE TABLE", "002003", no_db),
        ]);
        let check = f.run(&["check"]).await;
        assert_ne!(check.code, Some(0));
        assert!(
            check.all().contains("'RAW_DATA'")
                && check.all().contains("GRANT USAGE ON DATABASE RAW_DATA TO ROLE SIMPLYLOAD"),
            "{}",
            check.all()
        );
        let sync = f.run(&["sync"]).await;
        assert_ne!(sync.code, Some(0));
        assert!(sync.all().contains("GRANT USAGE ON DATABASE RAW_DATA TO ROLE SIMPLYLOAD"), "{}", sync.all());

        let no_grant = "SQL access control error:\nInsufficient privileges to operate on schema 'SIMPLYLOAD'";
        f.proxy.set_faults(vec![Fault::statement("CREATE TABLE", "003001", no_grant)]);
        let check = f.run(&["check"]).await;
        assert_ne!(check.code, Some(0));
        assert!(check.all().contains("ON SCHEMA RAW_DATA.SIMPLYLOAD TO ROLE SIMPLYLOAD"), "{}", check.all());
        let sync = f.run(&["sync"]).await;
        assert_ne!(sync.code, Some(0));
        assert!(
            sync.all().contains("Insufficient privileges")
                && sync.all().contains("CREATE TABLE, CREATE STAGE ON SCHEMA RAW_DATA.SIMPLYLOAD TO ROLE SIMPLYLOAD"),
            "{}",
            sync.all()
        );
        assert_eq!(count(&f.admin, &f.table("ORDERS"), "").await.unwrap_or(0), 0, "nothing was loaded");
        f.recovers().await;
    }

    /// The server dies answering the COMMIT (which went through) and, in a
    /// second sync, an INSERT inside the transaction (rolled back): each load
    /// is retried and every row is there exactly once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_error_mid_load_is_retried_without_doubles() {
        let f = faulty(vec![Fault::ServerErrorAfter { pattern: "COMMIT".into(), times: 2 }]).await;
        let sync = f.run(&["sync", "--json"]).await;
        sync.ok();
        assert_eq!(count(&f.admin, &f.table("ORDERS"), "").await, Some(150));
        assert_eq!(count(&f.admin, "_SIMPLYLOAD_BATCHES", "").await, Some(3), "each batch recorded once");
        f.db.exec(
            "UPDATE orders SET amount = amount + 1 WHERE id <= 20;
             INSERT INTO orders (user_id, status, amount, quantity, currency) SELECT user_id, 'new', 1.00, 1, 'USD' FROM orders WHERE id <= 5;",
        )
        .await;
        f.proxy.set_faults(vec![Fault::ServerErrorAfter { pattern: "INSERT INTO".into(), times: 1 }]);
        f.run(&["sync"]).await.ok();
        assert_eq!(count(&f.admin, &f.table("ORDERS"), "").await, Some(155));
        let clean = f.run(&["playground", "reconcile", "--pipeline", "main"]).await;
        clean.ok();
        assert!(clean.stdout.contains("result: clean"), "{}", clean.stdout);
        let rollbacks = f.proxy.statements().iter().filter(|s| s.as_str() == "ROLLBACK").count();
        assert_eq!(rollbacks, 3, "each failed load rolled back once, then was retried");
    }

    /// `stage: <external stage>`: COPY reads the staged files in place
    /// (`FILES = (…)`, nothing PUT). fakesnow cannot read S3 here (no httpfs
    /// extension offline), so the stage's URL is the local staging folder as
    /// a `file://` URL — the same SQL a stage over `s3://` gets.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_external_stage_is_read_in_place() {
        let f = faulty(vec![]).await;
        let root = f.dir.path().join(".simplyload/staging");
        std::fs::create_dir_all(&root).unwrap();
        f.admin
            .query(&format!("CREATE STAGE RAW_DATA.SIMPLYLOAD.SIMPLYLOAD_EXT URL = 'file://{}/'", root.display()), &[])
            .await
            .unwrap();
        let yaml = std::fs::read_to_string(f.dir.path().join("simplyload.yaml")).unwrap();
        let yaml = yaml.replace(
            "    warehouse: SIMPLYLOAD_WH\n",
            "    warehouse: SIMPLYLOAD_WH\n    stage: RAW_DATA.SIMPLYLOAD.SIMPLYLOAD_EXT\n",
        );
        std::fs::write(f.dir.path().join("simplyload.yaml"), yaml).unwrap();
        f.run(&["sync"]).await.ok();
        assert_eq!(count(&f.admin, &f.table("ORDERS"), "").await, Some(150));
        let sent = f.proxy.statements();
        assert!(sent.iter().all(|s| !s.starts_with("PUT ")), "nothing is uploaded");
        assert!(
            sent.iter().any(|s| s.contains("FROM @RAW_DATA.SIMPLYLOAD.SIMPLYLOAD_EXT/main/public.orders/")
                && s.contains("FILES = ('part-00000.parquet')")),
            "{sent:#?}"
        );
        let clean = f.run(&["playground", "reconcile", "--pipeline", "main"]).await;
        clean.ok();
        assert!(clean.stdout.contains("result: clean"), "{}", clean.stdout);
    }

    /// The process dies at every failpoint in turn; the next sync settles
    /// what the last one left, and every row is in Snowflake exactly once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sync_killed_anywhere_loses_and_doubles_nothing() {
        let f = faulty(vec![]).await;
        for (i, point) in ["during_read", "after_staged", "during_load", "after_load"].iter().enumerate() {
            f.db.exec(&format!(
                "UPDATE orders SET amount = amount + 1 WHERE id % 7 = {i};
                 INSERT INTO orders (user_id, status, amount, quantity, currency) SELECT user_id, 'k{i}', 2.00, 1, 'USD' FROM orders WHERE id <= 2;"
            ))
            .await;
            let mut env = ENV.to_vec();
            env.push(("SIMPLYLOAD_FAILPOINT", point));
            let killed = simplyload(f.dir.path(), &["sync"], &env).await;
            assert_ne!(killed.code, Some(0), "{point}: {}", killed.all());
            f.run(&["sync"]).await.ok();
            let clean = f.run(&["playground", "reconcile", "--pipeline", "main"]).await;
            assert!(clean.stdout.contains("result: clean"), "after {point}:\n{}\n{}", clean.stdout, clean.stderr);
        }
        assert_eq!(count(&f.admin, &f.table("ORDERS"), "").await, Some(158));
    }
}

mod cdc {
    use super::support::*;
    use simplyload_testkit::TestPg;
    use std::path::Path;

    fn rows(report: &serde_json::Value, stream: &str) -> u64 {
        report[0]["streams"].as_array().unwrap().iter().find(|s| s["stream"] == stream).unwrap()["rows"]
            .as_u64()
            .unwrap()
    }

    async fn sync(dir: &Path) -> serde_json::Value {
        let run = simplyload(dir, &["sync", "--json"], &[]).await;
        assert_eq!(run.code, Some(0), "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
        reports(&run)
    }

    fn live(dir: &Path, table: &str) -> i64 {
        duck(dir, &format!("SELECT CAST(count(*) AS VARCHAR) FROM simplyload.{table} WHERE NOT _simplyload_deleted"))[0]
            [0]
        .as_ref()
        .unwrap()
        .parse()
        .unwrap()
    }

    async fn reconcile_clean(dir: &Path) {
        let run = simplyload(dir, &["playground", "reconcile", "--pipeline", "main"], &[]).await;
        assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    }

    /// 1 MB of text Postgres cannot compress below its TOAST threshold.
    const BIG: &str = "(SELECT string_agg(md5(random()::text || g::text), '') FROM generate_series(1, 32768) g)";

    /// The first sync snapshots at the slot's consistent point; then
    /// inserts, updates, deletes, an update that leaves a TOASTed column
    /// unchanged, a rolled-back transaction, a key change and a truncate
    /// arrive through the slot, exactly.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn changes_arrive_exactly() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(&format!(
            "CREATE TABLE items (id int PRIMARY KEY, name text, body text, n numeric(12,2), at timestamptz);
             CREATE TABLE other (id bigint PRIMARY KEY, v text);
             INSERT INTO items SELECT i, 'n' || i, CASE WHEN i = 1 THEN {BIG} ELSE 'small' END, i * 1.5, now() FROM generate_series(1, 100) i;
             INSERT INTO other VALUES (1, 'a'), (2, 'b');"
        ))
        .await;
        let dir = tempfile::tempdir().unwrap();
        config(dir.path(), &db.url, &["public.items", "public.other"], "    mode: cdc\n");
        let first = sync(dir.path()).await;
        assert_eq!((rows(&first, "public.items"), rows(&first, "public.other")), (100, 2));
        let items = format!("app_{}_items", db.name);
        assert_eq!(live(dir.path(), &items), 100);

        let big_before =
            duck(dir.path(), &format!("SELECT md5(body) FROM simplyload.{items} WHERE id = 1"))[0][0].clone();
        // (One exec is one implicit transaction: a BEGIN inside it would take
        // the statements before it into its block, so each part runs apart.)
        for sql in [
            "INSERT INTO items VALUES (101, 'new', 'x', 1.00, now())",
            "UPDATE items SET name = 'renamed' WHERE id = 1",
            "UPDATE items SET n = n + 1 WHERE id BETWEEN 2 AND 11",
            "DELETE FROM items WHERE id IN (50, 51)",
            "BEGIN; INSERT INTO items VALUES (900, 'rolled back', 'x', 0, now()); ROLLBACK;",
            "UPDATE items SET id = 1000 WHERE id = 60",
            "TRUNCATE other",
            "INSERT INTO other VALUES (3, 'c')",
        ] {
            db.exec(sql).await;
        }
        let second = sync(dir.path()).await;
        assert!(rows(&second, "public.items") >= 14, "{second}");
        assert_eq!(live(dir.path(), &items), 99, "100 + 1 − 2 deleted, id 60 became 1000");
        let one = duck(dir.path(), &format!("SELECT name, md5(body) FROM simplyload.{items} WHERE id = 1"));
        assert_eq!(one[0][0].as_deref(), Some("renamed"));
        assert_eq!(one[0][1], big_before, "the unchanged TOAST value is kept, never NULL");
        let gone = duck(
            dir.path(),
            &format!(
                "SELECT CAST(count(*) AS VARCHAR) FROM simplyload.{items} WHERE _simplyload_deleted AND id IN (50, 51, 60)"
            ),
        );
        assert_eq!(gone[0][0].as_deref(), Some("3"));
        assert!(
            duck(dir.path(), &format!("SELECT id FROM simplyload.{items} WHERE id = 900")).is_empty(),
            "a rolled-back row never arrives"
        );
        let other = format!("app_{}_other", db.name);
        assert_eq!(live(dir.path(), &other), 1, "truncate marked the old rows deleted");
        reconcile_clean(dir.path()).await;

        // Nothing changed: nothing is read again.
        let idle = sync(dir.path()).await;
        assert_eq!(rows(&idle, "public.items"), 0);
        let name = main_slot(&db).await;
        let slot: (String,) = {
            let r = db
                .client
                .query_one("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", &[&name])
                .await
                .unwrap();
            (r.get(0),)
        };
        assert!(slot.0.contains('/'), "the slot's position was confirmed");
        // WAL of tables outside the pipeline does not pile up behind it.
        db.exec("CREATE TABLE noise (v text); INSERT INTO noise SELECT md5(i::text) FROM generate_series(1, 20000) i;")
            .await;
        let before: String = db.client.query_one("SELECT pg_current_wal_lsn()::text", &[]).await.unwrap().get(0);
        let idle = sync(dir.path()).await;
        assert_eq!(rows(&idle, "public.items"), 0);
        let behind: i64 = db
            .client
            .query_one(&format!("SELECT pg_wal_lsn_diff('{before}', confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = '{name}'"), &[])
            .await
            .unwrap()
            .get(0);
        assert!(behind <= 0, "the slot moved past WAL it has no changes for ({behind} bytes behind)");
        let slot: (String,) = {
            let r = db
                .client
                .query_one("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", &[&name])
                .await
                .unwrap();
            (r.get(0),)
        };
        let status = simplyload(dir.path(), &["status"], &[]).await;
        status.ok();
        assert!(
            status.stdout.contains(&format!("replication slot {name}:"))
                && status.stdout.contains(&format!("confirmed at {}", slot.0)),
            "{}",
            status.stdout
        );
        assert!(status.stdout.contains("LSN "), "{}", status.stdout);
    }

    /// A first snapshot read in page ranges and loaded in parts, killed
    /// after its first part: the next sync goes on from the parts loaded
    /// (their rows are not read again) although rows moved meanwhile —
    /// deleted from pages read and not read, updated into the free space of
    /// pages already read (one with a TOASTed value left unchanged),
    /// inserted — and the copy is exact. On a second server: killed with a
    /// part recorded but not loaded (recovery loads it), killed again while
    /// going on, then the table rewritten (VACUUM FULL): read again, exact.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_first_snapshot_killed_part_way_goes_on_from_its_parts() {
        let pg = TestPg::shared();
        let setup = format!(
            "CREATE TABLE \"Big Items\" (id bigint PRIMARY KEY, pad text, body text, n int);
             INSERT INTO \"Big Items\" SELECT g, repeat('p', 200), CASE WHEN g % 1000 = 500 THEN {BIG} ELSE 'small' END, 0
             FROM generate_series(1, 20000) g;
             ANALYZE \"Big Items\";"
        );
        let db = pg.database().await;
        db.exec(&setup).await;
        db.settle_older_transactions().await;
        let dir = tempfile::tempdir().unwrap();
        let extra = "    mode: cdc\n    snapshot_parallelism: 2\n    snapshot_parallel_min_bytes: 0\n    snapshot_part_rows: 5000\n";
        config(dir.path(), &db.url, &["'public.\"Big Items\"'"], extra);
        let t = format!("app_{}_big_items", db.name);
        let killed = simplyload(dir.path(), &["sync"], &[("SIMPLYLOAD_FAILPOINT", "after_part_loaded")]).await;
        assert_ne!(killed.code, Some(0), "{}", killed.all());
        assert_eq!(live(dir.path(), &t), 5000, "the first part is loaded");
        let status = simplyload(dir.path(), &["status", "--json"], &[]).await;
        assert!(
            status.stdout.contains("cdc_snapshot") && status.stdout.contains("\"next\""),
            "the checkpoint says where the snapshot stands: {}",
            status.stdout
        );
        let first_version =
            duck(dir.path(), &format!("SELECT CAST(min(_simplyload_version) AS VARCHAR) FROM simplyload.{t}"))[0][0]
                .clone()
                .unwrap();

        for sql in [
            "DELETE FROM \"Big Items\" WHERE id % 3 = 0 AND id <= 1000",
            "VACUUM \"Big Items\"",
            "UPDATE \"Big Items\" SET n = 2 WHERE id > 12000 AND id % 1000 = 500",
            "UPDATE \"Big Items\" SET n = 1, pad = repeat('q', 150) WHERE id > 12000 AND id % 7 = 0",
            "DELETE FROM \"Big Items\" WHERE id BETWEEN 10000 AND 10100",
            "INSERT INTO \"Big Items\" SELECT g, 'new', 'small', 3 FROM generate_series(30001, 30500) g",
        ] {
            db.exec(sql).await;
        }
        let moved: i64 = db
            .client
            .query_one(
                "SELECT count(*) FROM \"Big Items\" WHERE id > 12000 AND n = 2 AND (ctid::text::point)[0] < 30",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(moved > 0, "rows with a TOASTed value, updated, moved into the first pages, already read");
        sync(dir.path()).await;
        let kept = duck(
            dir.path(),
            &format!(
                "SELECT CAST(count(*) AS VARCHAR) FROM simplyload.{t} WHERE _simplyload_version = {first_version}"
            ),
        );
        assert!(
            kept[0][0].as_deref().unwrap().parse::<i64>().unwrap() >= 1000,
            "rows loaded before the crash and unchanged since were not read again: {kept:?}"
        );
        let source: i64 = db.client.query_one("SELECT count(*) FROM \"Big Items\"", &[]).await.unwrap().get(0);
        assert_eq!(live(dir.path(), &t), source);
        reconcile_clean(dir.path()).await;

        db.exec("UPDATE \"Big Items\" SET n = 9 WHERE id % 23 = 0").await;
        sync(dir.path()).await;
        reconcile_clean(dir.path()).await;

        // Killed again, part way through going on; the table rewritten
        // before the next try, in another database (slots are named for each state).
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(&setup).await;
        let t = format!("app_{}_big_items", db.name);
        let again = tempfile::tempdir().unwrap();
        config(again.path(), &db.url, &["'public.\"Big Items\"'"], extra);
        let killed = simplyload(again.path(), &["sync"], &[("SIMPLYLOAD_FAILPOINT", "after_part_staged")]).await;
        assert_ne!(killed.code, Some(0), "{}", killed.all());
        db.exec("UPDATE \"Big Items\" SET n = 4 WHERE id % 11 = 0").await;
        let killed = simplyload(again.path(), &["sync"], &[("SIMPLYLOAD_FAILPOINT", "after_part_loaded")]).await;
        assert_ne!(killed.code, Some(0), "{}", killed.all());
        db.exec("DELETE FROM \"Big Items\" WHERE id % 13 = 0").await;
        db.exec("VACUUM FULL \"Big Items\"").await;
        db.exec("UPDATE \"Big Items\" SET n = 5 WHERE id % 17 = 0").await;
        sync(again.path()).await;
        let source: i64 = db.client.query_one("SELECT count(*) FROM \"Big Items\"", &[]).await.unwrap().get(0);
        assert_eq!(live(again.path(), &t), source);
        reconcile_clean(again.path()).await;
        db.exec("UPDATE \"Big Items\" SET n = 6 WHERE id % 19 = 0").await;
        sync(again.path()).await;
        reconcile_clean(again.path()).await;
    }

    /// 100k changes in one transaction.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_transaction() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (0, 'seed');").await;
        let dir = tempfile::tempdir().unwrap();
        config(dir.path(), &db.url, &["public.t"], "    mode: cdc\n");
        sync(dir.path()).await;
        db.exec("INSERT INTO t SELECT i, 'v' || i FROM generate_series(1, 100000) i;").await;
        let r = sync(dir.path()).await;
        assert_eq!(rows(&r, "public.t"), 100_000);
        assert_eq!(live(dir.path(), &format!("app_{}_t", db.name)), 100_001);
        reconcile_clean(dir.path()).await;
    }

    fn cdc_config(dir: &Path, url: &str, streams: &[&str]) {
        config(dir, url, streams, "    mode: cdc\n");
    }

    /// A stream added to a running pipeline is snapshot through a temporary
    /// slot and joins without a gap; the running stream goes on meanwhile.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stream_added_later_joins_without_a_gap() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec("CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE b (id int PRIMARY KEY, v text);
                 INSERT INTO a SELECT i, 'a' || i FROM generate_series(1, 50) i; INSERT INTO b SELECT i, 'b' || i FROM generate_series(1, 50) i;").await;
        let dir = tempfile::tempdir().unwrap();
        cdc_config(dir.path(), &db.url, &["public.a"]);
        sync(dir.path()).await;
        db.exec("UPDATE a SET v = 'x' WHERE id <= 5").await;
        db.exec("UPDATE b SET v = 'y' WHERE id <= 5").await;
        db.exec("DELETE FROM b WHERE id = 50").await;
        cdc_config(dir.path(), &db.url, &["public.a", "public.b"]);
        let joined = sync(dir.path()).await;
        assert_eq!(rows(&joined, "public.b"), 49, "b is read from a snapshot");
        assert_eq!(rows(&joined, "public.a"), 5, "a goes on from its slot");
        db.exec("UPDATE b SET v = 'z' WHERE id BETWEEN 10 AND 12").await;
        db.exec("DELETE FROM a WHERE id = 1").await;
        sync(dir.path()).await;
        assert_eq!(live(dir.path(), &format!("app_{}_b", db.name)), 49);
        assert_eq!(live(dir.path(), &format!("app_{}_a", db.name)), 49);
        reconcile_clean(dir.path()).await;
        let temp: i64 = db
            .client
            .query_one(
                "SELECT count(*) FROM pg_replication_slots WHERE temporary AND database = current_database()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(temp, 0, "the temporary slot is gone");
    }

    /// The slot was dropped behind SimplyLoad's back: the next sync says so,
    /// makes it again and reads every stream again, ending exact.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_slot_is_made_again_and_the_copy_ends_exact() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec("CREATE TABLE a (id int PRIMARY KEY, v text); INSERT INTO a SELECT i, 'a' || i FROM generate_series(1, 30) i;").await;
        let dir = tempfile::tempdir().unwrap();
        cdc_config(dir.path(), &db.url, &["public.a"]);
        sync(dir.path()).await;
        db.exec(&format!("SELECT pg_drop_replication_slot('{}')", main_slot(&db).await)).await;
        db.exec("DELETE FROM a WHERE id <= 3").await;
        db.exec("UPDATE a SET v = 'changed' WHERE id = 10").await;
        let again = sync(dir.path()).await;
        assert_eq!(rows(&again, "public.a"), 27);
        assert_eq!(live(dir.path(), &format!("app_{}_a", db.name)), 27);
        let flagged = duck(
            dir.path(),
            &format!(
                "SELECT CAST(count(*) AS VARCHAR) FROM simplyload.app_{}_a WHERE _simplyload_deleted AND id <= 3",
                db.name
            ),
        );
        assert_eq!(
            flagged[0][0].as_deref(),
            Some("3"),
            "rows deleted while the slot was gone are marked deleted, not removed"
        );
        assert!(again[0]["warnings"].to_string().contains("was lost"), "the sync says so: {again}");
        reconcile_clean(dir.path()).await;
        db.exec("INSERT INTO a VALUES (100, 'new')").await;
        sync(dir.path()).await;
        reconcile_clean(dir.path()).await;
    }

    /// `check` reports what logical replication needs, and the slot.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn check_reports_replication_readiness() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec("CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE nokey (v text);").await;
        let dir = tempfile::tempdir().unwrap();
        cdc_config(dir.path(), &db.url, &["public.a"]);
        let ok = simplyload(dir.path(), &["check"], &[]).await;
        ok.ok();
        assert!(ok.stdout.contains("change data capture") && ok.stdout.contains("does not exist yet"), "{}", ok.stdout);
        cdc_config(dir.path(), &db.url, &["public.a", "public.nokey"]);
        let bad = simplyload(dir.path(), &["check"], &[]).await;
        assert_ne!(bad.code, Some(0), "{}", bad.stdout);
        assert!(bad.stdout.contains("REPLICA IDENTITY FULL"), "{}", bad.stdout);
    }

    /// The process dies at every point of a CDC sync in turn; the next sync
    /// settles what was left and the copy is exact.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cdc_sync_killed_anywhere_loses_and_doubles_nothing() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec("CREATE TABLE a (id int PRIMARY KEY, v text, n int); INSERT INTO a SELECT i, 'a' || i, 0 FROM generate_series(1, 200) i;").await;
        let dir = tempfile::tempdir().unwrap();
        cdc_config(dir.path(), &db.url, &["public.a"]);
        for (i, point) in ["during_read", "after_staged", "during_load", "after_load"].iter().enumerate() {
            db.exec(&format!("UPDATE a SET n = n + 1 WHERE id % 4 = {i}")).await;
            db.exec(&format!("DELETE FROM a WHERE id = {}", 190 + i)).await;
            db.exec(&format!("INSERT INTO a VALUES ({}, 'new', 0)", 1000 + i)).await;
            let killed = simplyload(dir.path(), &["sync"], &[("SIMPLYLOAD_FAILPOINT", point)]).await;
            assert_ne!(killed.code, Some(0), "{point}: {}", killed.all());
            sync(dir.path()).await;
            reconcile_clean(dir.path()).await;
        }
        assert_eq!(live(dir.path(), &format!("app_{}_a", db.name)), 200);
    }

    /// Schema changes arrive as Relation messages: a new column (the read
    /// stops before it and the same sync goes on with the column planned), a
    /// column added with a default (rows read again), a dropped column, a
    /// widened type.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn schema_changes_follow_the_evolution_rules() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec("CREATE TABLE a (id int PRIMARY KEY, v text, n int); INSERT INTO a SELECT i, 'a' || i, i FROM generate_series(1, 40) i;").await;
        let dir = tempfile::tempdir().unwrap();
        cdc_config(dir.path(), &db.url, &["public.a"]);
        sync(dir.path()).await;
        db.exec("UPDATE a SET v = 'before' WHERE id = 1").await;
        db.exec("ALTER TABLE a ADD COLUMN extra text").await;
        db.exec("INSERT INTO a VALUES (41, 'new', 41, 'x')").await;
        db.exec("UPDATE a SET extra = 'y' WHERE id = 2").await;
        sync(dir.path()).await;
        let t = format!("app_{}_a", db.name);
        let got = duck(dir.path(), &format!("SELECT extra FROM simplyload.{t} WHERE id IN (2, 41) ORDER BY id"));
        assert_eq!(got, vec![vec![Some("y".to_owned())], vec![Some("x".to_owned())]]);
        reconcile_clean(dir.path()).await;

        db.exec("ALTER TABLE a ADD COLUMN d int NOT NULL DEFAULT 7").await;
        db.exec("UPDATE a SET d = 8 WHERE id = 3").await;
        sync(dir.path()).await;
        let sevens = duck(
            dir.path(),
            &format!("SELECT CAST(count(*) AS VARCHAR) FROM simplyload.{t} WHERE d = 7 AND NOT _simplyload_deleted"),
        );
        assert_eq!(sevens[0][0].as_deref(), Some("40"), "rows that got the default without a change were read again");
        reconcile_clean(dir.path()).await;

        db.exec("ALTER TABLE a DROP COLUMN v").await;
        db.exec("ALTER TABLE a ALTER COLUMN n TYPE bigint").await;
        db.exec("UPDATE a SET n = 9000000000 WHERE id = 4").await;
        db.exec("DELETE FROM a WHERE id = 5").await;
        sync(dir.path()).await;
        reconcile_clean(dir.path()).await;
        assert_eq!(live(dir.path(), &t), 40);
    }

    /// A table without a primary key (REPLICA IDENTITY FULL): identical rows
    /// are kept as occurrences; updates and deletes remove exactly one.
    /// And a table with a key and REPLICA IDENTITY FULL.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tables_without_a_key_and_replica_identity_full() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(&format!(
            "CREATE TABLE log (msg text, n int, body text); ALTER TABLE log REPLICA IDENTITY FULL;
             INSERT INTO log VALUES ('x', 1, 'b'), ('x', 1, 'b'), ('y', 1, {BIG});
             CREATE TABLE full_id (id int PRIMARY KEY, v text); ALTER TABLE full_id REPLICA IDENTITY FULL;
             INSERT INTO full_id SELECT i, 'v' || i FROM generate_series(1, 10) i;"
        ))
        .await;
        let dir = tempfile::tempdir().unwrap();
        cdc_config(dir.path(), &db.url, &["public.log", "public.full_id"]);
        sync(dir.path()).await;
        db.exec("DELETE FROM log WHERE ctid = (SELECT min(ctid) FROM log WHERE msg = 'x')").await;
        db.exec("UPDATE log SET n = 2 WHERE msg = 'y'").await;
        db.exec("INSERT INTO log VALUES ('z', 3, 'c'), ('z', 3, 'c')").await;
        db.exec("UPDATE full_id SET v = 'changed' WHERE id <= 3").await;
        db.exec("DELETE FROM full_id WHERE id = 10").await;
        sync(dir.path()).await;
        let log = format!("app_{}_log", db.name);
        assert_eq!(live(dir.path(), &log), 4, "x once, y, z twice");
        reconcile_clean(dir.path()).await;
        // Again, with nothing changed: nothing doubles.
        sync(dir.path()).await;
        assert_eq!(live(dir.path(), &log), 4);
        assert_eq!(live(dir.path(), &format!("app_{}_full_id", db.name)), 9);
        reconcile_clean(dir.path()).await;
    }

    /// The issue's acceptance run: the playground under load with hard
    /// deletes and schema changes, syncs every moment, at least 20 of them
    /// SIGKILLed at random moments (and at every failpoint); a final sync
    /// leaves `playground reconcile` clean.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn random_sigkills_under_load_with_hard_deletes_and_schema_changes() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        let dir = tempfile::tempdir().unwrap();
        simplyload(dir.path(), &["playground", "seed", "--database-url", &db.url, "--scale", "0.2"], &[]).await.ok();
        cdc_config(dir.path(), &db.url, &["public.users", "public.orders", "public.events"]);
        let mut load = tokio::process::Command::new(env!("CARGO_BIN_EXE_simplyload"))
            .current_dir(dir.path())
            .args(["playground", "run", "--database-url", &db.url, "--duration", "10m"])
            .args(["--orders-per-hour", "36000", "--events-per-hour", "72000", "--soft-deletes-per-hour", "3600"])
            .args(["--hard-deletes", "--schema-changes", "--schema-change-every", "4s"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        let mut seed: u64 = start | 1;
        eprintln!("random seed {seed}");
        let mut next = move |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let (mut kills, mut finished) = (0, 0);
        for i in 0..90 {
            if kills >= 22 {
                break;
            }
            let failpoint = match i % 12 {
                1 => "during_read",
                4 => "after_staged",
                7 => "during_load",
                10 => "after_load",
                _ => "",
            };
            let mut sync = tokio::process::Command::new(env!("CARGO_BIN_EXE_simplyload"))
                .current_dir(dir.path())
                .args(["sync"])
                .env_remove("SIMPLYLOAD_CONFIG")
                .env("SIMPLYLOAD_FAILPOINT", failpoint)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(30 + next(1500))).await;
            match sync.try_wait().unwrap() {
                Some(status) if status.success() => finished += 1,
                Some(_) => kills += 1,
                None => {
                    sync.kill().await.unwrap();
                    kills += 1;
                }
            }
        }
        eprintln!("{kills} kills, {finished} syncs finished");
        assert!(kills >= 20, "only {kills} kills ({finished} syncs finished)");
        load.kill().await.unwrap();
        let last = simplyload(dir.path(), &["sync"], &[]).await;
        assert_eq!(last.code, Some(0), "{}\n{}", last.stdout, last.stderr);
        let rec = simplyload(dir.path(), &["playground", "reconcile", "--pipeline", "main"], &[]).await;
        assert_eq!(
            rec.code,
            Some(0),
            "after {kills} kills and {finished} finished syncs:\n{}\n{}",
            rec.stdout,
            rec.stderr
        );
    }

    /// `batch_max_rows` cuts a long backlog into several loads within one
    /// sync; `sync --follow` keeps loading micro-batches until SIGTERM.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn micro_batches_and_follow() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec("CREATE TABLE t (id int PRIMARY KEY, v text)").await;
        let dir = tempfile::tempdir().unwrap();
        config(
            dir.path(),
            &db.url,
            &["public.t"],
            "    mode: cdc\n    batch_max_rows: 400\n    batch_max_seconds: 1s\n",
        );
        sync(dir.path()).await;
        for k in 0..3 {
            db.exec(&format!("INSERT INTO t SELECT i, 'v' FROM generate_series({}, {}) i", k * 500 + 1, k * 500 + 500))
                .await;
        }
        let r = sync(dir.path()).await;
        assert_eq!(rows(&r, "public.t"), 1500, "three loads, one sync: {r}");
        let t = format!("app_{}_t", db.name);
        assert_eq!(live(dir.path(), &t), 1500);

        let mut follower = tokio::process::Command::new(env!("CARGO_BIN_EXE_simplyload"))
            .current_dir(dir.path())
            .args(["sync", "--follow"])
            .env_remove("SIMPLYLOAD_CONFIG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        db.exec("INSERT INTO t VALUES (9001, 'followed')").await;
        db.exec("DELETE FROM t WHERE id = 1").await;
        let path = dir.path().join("warehouse.duckdb");
        let mut seen = false;
        for _ in 0..150 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let Ok(conn) = simplyload_duckdb::duckdb::Connection::open(&path) else { continue };
            let n: Result<i64, _> = conn.query_row(
                &format!("SELECT count(*) FROM simplyload.{t} WHERE (id = 9001 AND NOT _simplyload_deleted) OR (id = 1 AND _simplyload_deleted)"),
                [],
                |r| r.get(0),
            );
            if n.ok() == Some(2) {
                seen = true;
                break;
            }
        }
        assert!(seen, "the follower loaded the changes");
        let pid = follower.id().unwrap();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap().success());
        let out = tokio::time::timeout(std::time::Duration::from_secs(30), follower.wait()).await.unwrap().unwrap();
        assert!(out.success(), "SIGTERM ends --follow cleanly");
        reconcile_clean(dir.path()).await;
    }

    /// `bench cdc` runs end to end on a small change set and prints its ratios.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bench_cdc_prints_the_ratios() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        let dir = tempfile::tempdir().unwrap();
        let run = simplyload(dir.path(), &["bench", "cdc", "--database-url", &db.url, "--changes", "3000"], &[]).await;
        run.ok();
        assert!(
            run.stdout.contains("ratio decoder / pg_recvlogical:") && run.stdout.contains("end-to-end sync loaded"),
            "{}",
            run.stdout
        );
        let slots: i64 = db
            .client
            .query_one("SELECT count(*) FROM pg_replication_slots WHERE database = current_database()", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(slots, 0, "the benchmark removes its slots");
    }

    /// Every type of the edge-value table under `mode: cdc`: columns the
    /// snapshot reads through a cast (inet, arrays, composites, ranges,
    /// hstore, money, timetz, …) are read again by key with the same
    /// expression; reconcile compares every value.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_edge_type_arrives_exactly() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(simplyload_testkit::edge::SETUP_SQL).await;
        let dir = tempfile::tempdir().unwrap();
        cdc_config(dir.path(), &db.url, &["public.edge"]);
        sync(dir.path()).await;
        reconcile_clean(dir.path()).await;
        // Copy every row under a new key, change values of the others, delete one.
        let max: i32 = db.client.query_one("SELECT max(id) FROM edge", &[]).await.unwrap().get(0);
        db.exec(&format!(
            "DO $$ DECLARE cols text; BEGIN
               SELECT string_agg(quote_ident(column_name), ', ' ORDER BY ordinal_position) INTO cols
                 FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'edge' AND column_name <> 'id';
               EXECUTE format('INSERT INTO edge (id, %s) SELECT id + {max}, %s FROM edge', cols, cols);
             END $$"
        ))
        .await;
        db.exec("UPDATE edge SET c_text = coalesce(c_text, '') || ' changed' WHERE id = 2").await;
        db.exec("DELETE FROM edge WHERE id = 1").await;
        let r = sync(dir.path()).await;
        assert!(rows(&r, "public.edge") > 0, "{r}");
        reconcile_clean(dir.path()).await;
    }

    /// An excluded column is known to the plan: its values in the change
    /// stream are skipped, never mistaken for a schema change.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn excluded_columns_are_skipped() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec("CREATE TABLE a (id int PRIMARY KEY, v text, secret text); INSERT INTO a SELECT i, 'v', 's' FROM generate_series(1, 10) i;").await;
        let dir = tempfile::tempdir().unwrap();
        config(dir.path(), &db.url, &["{name: public.a, exclude_columns: [secret]}"], "    mode: cdc\n");
        sync(dir.path()).await;
        db.exec("UPDATE a SET v = 'w', secret = 't' WHERE id <= 5").await;
        let r = sync(dir.path()).await;
        assert_eq!(rows(&r, "public.a"), 5, "{r}");
        let cols = duck(
            dir.path(),
            &format!("SELECT column_name FROM information_schema.columns WHERE table_name = 'app_{}_a'", db.name),
        );
        assert!(!cols.iter().any(|c| c[0].as_deref() == Some("secret")), "{cols:?}");
        reconcile_clean(dir.path()).await;
    }
}

/// Large snapshots cut into parts: each part is its own batch, loaded while
/// the next is read (issue 7).
mod parts {
    use super::support::*;
    use simplyload_testkit::TestPg;
    use std::path::Path;

    async fn sync(dir: &Path, env: &[(&str, &str)]) -> serde_json::Value {
        let run = simplyload(dir, &["sync", "--json"], env).await;
        run.ok();
        reports(&run)
    }

    async fn reconcile_clean(dir: &Path) {
        let run = simplyload(dir, &["playground", "reconcile", "--pipeline", "main"], &[]).await;
        assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    }

    fn batches(dir: &Path, stream: &str) -> Vec<i64> {
        duck(dir, &format!("SELECT CAST(batch_id AS VARCHAR) FROM simplyload._simplyload_batches WHERE stream LIKE '%{stream}%' ORDER BY batch_id"))
            .into_iter()
            .map(|r| r[0].as_ref().unwrap().parse().unwrap())
            .collect()
    }

    /// A first full refresh of 2,500 rows in parts of 1,000: three batches,
    /// every value exact; changes arrive on the next sync (one batch: a
    /// loaded table is replaced in one transaction); a crash between a
    /// part's commit and its checkpoint applies nothing twice; a table
    /// without a key is read in one piece.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_refresh_in_parts_is_exact_and_survives_a_crash() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(
            "CREATE TABLE \"Wide Orders\" (id bigint PRIMARY KEY, note text, amount numeric(14,4), at timestamptz, doc jsonb);
             INSERT INTO \"Wide Orders\" SELECT g, 'n' || g || repeat('é', g % 7), g * 1.0001, now() - g * interval '1 minute',
                    jsonb_build_object('g', g) FROM generate_series(1, 2500) g;
             CREATE TABLE loose (a int, b text);
             INSERT INTO loose SELECT g % 10, 'x' FROM generate_series(1, 2500) g;",
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        config(dir.path(), &db.url, &["'public.\"Wide Orders\"'", "public.loose"], "    snapshot_part_rows: 1000\n");
        let report = sync(dir.path(), &[]).await;
        let wide = format!("app_{}_wide_orders", db.name);
        assert_eq!(report[0]["streams"][0]["rows"], 2500, "{report}");
        assert_eq!(batches(dir.path(), "Wide Orders"), vec![1, 2, 3]);
        assert_eq!(batches(dir.path(), "public.loose"), vec![1], "a table without a key is one batch");
        assert_eq!(duck_count(dir.path(), &wide), 2500);
        assert_eq!(duck_count(dir.path(), &format!("app_{}_loose", db.name)), 2500);
        // Versions are unique: each part numbers its rows within its own batch.
        let versions = duck(
            dir.path(),
            &format!("SELECT CAST(count(DISTINCT _simplyload_version) AS VARCHAR) FROM simplyload.{wide}"),
        );
        assert_eq!(versions[0][0].as_deref(), Some("2500"));
        reconcile_clean(dir.path()).await;

        db.exec(
            "DELETE FROM \"Wide Orders\" WHERE id % 25 = 0;
             UPDATE \"Wide Orders\" SET note = 'changed' WHERE id % 40 = 1;
             INSERT INTO \"Wide Orders\" SELECT g, 'new', g, now(), '[]' FROM generate_series(3001, 3400) g;",
        )
        .await;
        sync(dir.path(), &[]).await;
        assert_eq!(duck_count(dir.path(), &wide), 2500 - 100 + 400);
        // A loaded table's full refresh replaces its rows in one transaction: one batch.
        assert_eq!(batches(dir.path(), "Wide Orders"), vec![1, 2, 3, 4]);
        reconcile_clean(dir.path()).await;

        // A first sync killed right after its first part committed, before
        // its checkpoint: the next sync finishes what was staged, then
        // replaces everything; nothing is doubled.
        db.exec("UPDATE \"Wide Orders\" SET amount = amount + 1 WHERE id < 50").await;
        let fresh = tempfile::tempdir().unwrap();
        config(fresh.path(), &db.url, &["'public.\"Wide Orders\"'"], "    snapshot_part_rows: 1000\n");
        let crashed = simplyload(fresh.path(), &["sync"], &[("SIMPLYLOAD_FAILPOINT", "after_load")]).await;
        assert_ne!(crashed.code, Some(0), "{}", crashed.all());
        assert!(crashed.stderr.contains("failpoint after_load"), "{}", crashed.stderr);
        let report = sync(fresh.path(), &[]).await;
        let recovered = report[0]["streams"][0]["recovered_batches"].as_array().unwrap().len();
        assert!(recovered >= 1, "{report}");
        assert_eq!(duck_count(fresh.path(), &wide), 2800);
        let dupes = duck(
            fresh.path(),
            &format!(
                "SELECT CAST(count(*) AS VARCHAR) FROM (SELECT id FROM simplyload.{wide} GROUP BY id HAVING count(*) > 1)"
            ),
        );
        assert_eq!(dupes[0][0].as_deref(), Some("0"));
        reconcile_clean(fresh.path()).await;
    }

    /// `bench snapshot` runs its sides alternating, checks what the end-to-end
    /// side loaded, and writes the Markdown report; a side it does not know
    /// is a usage error naming the sides.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bench_snapshot_writes_its_report() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec("CREATE TABLE \"Bench T\" (id bigint PRIMARY KEY, v text); INSERT INTO \"Bench T\" SELECT g, md5(g::text) FROM generate_series(1, 20000) g;").await;
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("report.md");
        let run = simplyload(
            dir.path(),
            &[
                "bench",
                "snapshot",
                "--table",
                "public.\"Bench T\"",
                "--runs",
                "2",
                "--sides",
                "copy,stage,duckdb",
                "--report",
                report.to_str().unwrap(),
            ],
            &[("DATABASE_URL", &db.url)],
        )
        .await;
        run.ok();
        assert!(run.stdout.contains("run 2:") && run.stdout.contains("end to end ÷ COPY"), "{}", run.stdout);
        let md = std::fs::read_to_string(&report).unwrap();
        assert!(md.contains("| SimplyLoad end to end → DuckDB |") && md.contains("20,000 rows"), "{md}");
        assert!(!md.contains(&db.url), "the report does not show the database URL");

        let bad = simplyload(
            dir.path(),
            &["bench", "snapshot", "--table", "public.x", "--sides", "copy,airbyte"],
            &[("DATABASE_URL", &db.url)],
        )
        .await;
        assert_eq!(bad.code, Some(2), "{}", bad.all());
        assert!(
            bad.all().contains("unknown side `airbyte`") && bad.all().contains("copy, stage, duckdb, dlt, sling"),
            "{}",
            bad.all()
        );
    }

    /// An incremental stream's first read, in page ranges and parts, killed
    /// after its first part: the next sync goes on from the parts loaded
    /// (their rows are not read again); rows of the pages not read yet that
    /// were updated into the pages already read meanwhile — without their
    /// cursor moving — are read all the same, and the copy is exact.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_incremental_first_read_killed_part_way_goes_on_from_its_parts() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(
            "CREATE TABLE \"Inc Items\" (id bigint PRIMARY KEY, pad text, \"Updated At\" timestamptz NOT NULL);
             INSERT INTO \"Inc Items\" SELECT g, repeat('p', 200), '2024-01-01'::timestamptz + g * interval '1 minute'
             FROM generate_series(1, 20000) g;
             ANALYZE \"Inc Items\";",
        )
        .await;
        db.settle_older_transactions().await;
        let dir = tempfile::tempdir().unwrap();
        let extra = "    mode: incremental\n    snapshot_parallelism: 2\n    snapshot_parallel_min_bytes: 0\n    snapshot_part_rows: 5000\n";
        config(dir.path(), &db.url, &["{name: 'public.\"Inc Items\"', cursor: Updated At}"], extra);
        let t = format!("app_{}_inc_items", db.name);
        let killed = simplyload(dir.path(), &["sync"], &[("SIMPLYLOAD_FAILPOINT", "after_part_loaded")]).await;
        assert_ne!(killed.code, Some(0), "{}", killed.all());
        assert_eq!(duck_count(dir.path(), &t), 5000, "the first part is loaded");
        let status = simplyload(dir.path(), &["status", "--json"], &[]).await;
        assert!(
            status.stdout.contains("incremental_snapshot") && status.stdout.contains("\"next\""),
            "{}",
            status.stdout
        );

        // Free space in the first pages, then rows of the last pages
        // rewritten into it with their cursor left alone: no later
        // incremental read would find them by cursor.
        db.exec("DELETE FROM \"Inc Items\" WHERE id % 3 = 0 AND id <= 1000").await;
        db.exec("VACUUM \"Inc Items\"").await;
        db.exec("INSERT INTO \"Inc Items\" SELECT g, 'back', '2024-01-01'::timestamptz + g * interval '1 minute' FROM generate_series(3, 999, 3) g").await;
        db.exec("UPDATE \"Inc Items\" SET pad = repeat('m', 150) WHERE id > 19000 AND id % 5 = 0").await;
        db.exec("INSERT INTO \"Inc Items\" SELECT g, 'new', now() FROM generate_series(30001, 30200) g").await;
        let moved: i64 = db
            .client
            .query_one("SELECT count(*) FROM \"Inc Items\" WHERE id > 19000 AND (ctid::text::point)[0] < 30", &[])
            .await
            .unwrap()
            .get(0);
        assert!(moved > 0, "rows of the last pages moved into the first ones, already read");
        sync(dir.path(), &[]).await;
        let kept = duck(
            dir.path(),
            &format!(
                "SELECT CAST(count(*) AS VARCHAR) FROM simplyload.{t} WHERE _simplyload_version < CAST(2 AS DECIMAL(38,0)) * 4294967296"
            ),
        );
        assert!(
            kept[0][0].as_deref().unwrap().parse::<i64>().unwrap() >= 1000,
            "rows of the first part were not read again: {kept:?}"
        );
        assert_eq!(duck_count(dir.path(), &t), 20200);
        reconcile_clean(dir.path()).await;
        let status = simplyload(dir.path(), &["status", "--json"], &[]).await;
        assert!(
            status.stdout.contains("\"cursor\"") && !status.stdout.contains("incremental_snapshot"),
            "{}",
            status.stdout
        );

        db.exec("UPDATE \"Inc Items\" SET pad = 'late', \"Updated At\" = now() WHERE id % 1000 = 7").await;
        let report = sync(dir.path(), &[]).await;
        assert!(report[0]["streams"][0]["rows"].as_u64().unwrap() < 1000, "{report}");
        reconcile_clean(dir.path()).await;
    }

    /// An incremental stream's first read in parts keeps its checkpoint
    /// until the last part: parts in between cannot tell how far the cursor
    /// went (the read is not in cursor order). Later reads merge.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_incremental_read_in_parts_moves_its_checkpoint_once() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(
            "CREATE TABLE t (id bigint PRIMARY KEY, v int, updated_at timestamptz NOT NULL);
             INSERT INTO t SELECT g, g, now() - (g % 97) * interval '1 day' FROM generate_series(1, 2300) g;",
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        config(
            dir.path(),
            &db.url,
            &["{name: public.t, cursor: updated_at}"],
            "    mode: incremental\n    snapshot_part_rows: 700\n",
        );
        sync(dir.path(), &[]).await;
        assert_eq!(batches(dir.path(), "public.t"), vec![1, 2, 3, 4]);
        assert_eq!(duck_count(dir.path(), &format!("app_{}_t", db.name)), 2300);
        reconcile_clean(dir.path()).await;

        db.exec("UPDATE t SET v = -v, updated_at = now() WHERE id % 100 = 0; INSERT INTO t VALUES (5000, 5, now())")
            .await;
        let report = sync(dir.path(), &[]).await;
        assert!(report[0]["streams"][0]["rows"].as_u64().unwrap() < 100, "{report}");
        assert_eq!(duck_count(dir.path(), &format!("app_{}_t", db.name)), 2301);
        reconcile_clean(dir.path()).await;

        // A first read killed after its first part committed: the checkpoint
        // has no cursor yet. The next sync loads the parts the crash left
        // staged (the last one, if it was staged, carries the cursor) and
        // reads on from there.
        let fresh = tempfile::tempdir().unwrap();
        config(
            fresh.path(),
            &db.url,
            &["{name: public.t, cursor: updated_at}"],
            "    mode: incremental\n    snapshot_part_rows: 700\n",
        );
        let crashed = simplyload(fresh.path(), &["sync"], &[("SIMPLYLOAD_FAILPOINT", "after_load")]).await;
        assert_ne!(crashed.code, Some(0), "{}", crashed.all());
        let status = simplyload(fresh.path(), &["status", "--json"], &[]).await;
        status.ok();
        assert!(!status.stdout.contains("\"cursor\""), "no cursor before the last part: {}", status.stdout);
        db.exec("UPDATE t SET v = v + 1, updated_at = now() WHERE id < 10").await;
        sync(fresh.path(), &[]).await;
        assert_eq!(duck_count(fresh.path(), &format!("app_{}_t", db.name)), 2301);
        reconcile_clean(fresh.path()).await;
        let status = simplyload(fresh.path(), &["status", "--json"], &[]).await;
        status.ok();
        assert!(status.stdout.contains("\"cursor\""), "{}", status.stdout);
    }
}

mod identity {
    //! Replication slots carry the identity of the state that made them.
    use super::support::*;
    use simplyload_testkit::{TestDb, TestPg};
    use std::path::Path;

    const ITEMS: &str = "CREATE TABLE items (id int PRIMARY KEY, v text);
         INSERT INTO items SELECT i, 'v' || i FROM generate_series(1, 200) i;";

    async fn sync_ok(dir: &Path) {
        let run = simplyload(dir, &["sync"], &[]).await;
        assert_eq!(run.code, Some(0), "{}", run.all());
    }

    /// The destination holds exactly the source's live rows, value by value.
    async fn exact(dir: &Path, db: &TestDb) {
        let run = simplyload(dir, &["playground", "reconcile", "--pipeline", "main"], &[]).await;
        assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
        let live = duck(
            dir,
            &format!(
                "SELECT CAST(count(*) AS VARCHAR) FROM simplyload.app_{}_items WHERE NOT _simplyload_deleted",
                db.name
            ),
        );
        assert_eq!(live[0][0].as_deref().unwrap().parse::<i64>().unwrap(), db.count("items").await);
    }

    async fn change(db: &TestDb, round: i32) {
        let (lo, hi) = (1000 + round * 10, 1009 + round * 10);
        db.exec(&format!(
            "INSERT INTO items SELECT i, 'r{round}' FROM generate_series({lo}, {hi}) i;
             UPDATE items SET v = 'u{round}' WHERE id % 7 = {round};
             DELETE FROM items WHERE id % 11 = {round};"
        ))
        .await;
    }

    async fn slots(db: &TestDb) -> Vec<String> {
        let rows = db
            .client
            .query(
                "SELECT slot_name::text FROM pg_replication_slots
                  WHERE database = current_database() AND NOT temporary ORDER BY 1",
                &[],
            )
            .await
            .unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    }

    /// Two setups of one config (own state, own warehouse) against one source
    /// database, and a third on another database of the same server, all
    /// with pipeline `main`: each reads a slot of its own, and through
    /// interleaved syncs with inserts, updates and deletes every copy ends exact.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn setups_sharing_a_pipeline_name_never_share_a_slot() {
        let pg = TestPg::shared();
        let (db, other) = (pg.database().await, pg.database().await);
        db.exec(ITEMS).await;
        other.exec(ITEMS).await;
        let (a, b, c) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for (dir, url) in [(&a, &db.url), (&b, &db.url), (&c, &other.url)] {
            config(dir.path(), url, &["public.items"], "    mode: cdc\n");
            sync_ok(dir.path()).await;
        }
        for round in 0..4 {
            change(&db, round).await;
            change(&other, round).await;
            sync_ok(a.path()).await;
            if round % 2 == 1 {
                sync_ok(b.path()).await;
            }
            sync_ok(c.path()).await;
        }
        sync_ok(b.path()).await;
        let here = slots(&db).await;
        assert_eq!(here.len(), 2, "one slot per setup: {here:?}");
        assert!(here.iter().all(|s| s.starts_with("simplyload_main_")), "{here:?}");
        assert_eq!(slots(&other).await.len(), 1);
        exact(a.path(), &db).await;
        exact(b.path(), &db).await;
        exact(c.path(), &other).await;
    }

    /// A state file copied to a second setup shares the first one's slot:
    /// once one of them consumes changes, the other is refused with the
    /// slot and the fix named — never a success with rows missing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_copied_state_is_refused_not_silently_behind() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(ITEMS).await;
        let a = tempfile::tempdir().unwrap();
        config(a.path(), &db.url, &["public.items"], "    mode: cdc\n");
        sync_ok(a.path()).await;
        let copy = tempfile::tempdir().unwrap();
        copy_dir(a.path(), copy.path());
        change(&db, 1).await;
        sync_ok(a.path()).await;
        let refused = simplyload(copy.path(), &["sync"], &[]).await;
        assert_eq!(refused.code, Some(1), "{}", refused.all());
        let slot = slots(&db).await.pop().unwrap();
        assert!(refused.all().contains(&format!("replication slot {slot} was confirmed at")), "{}", refused.all());
        assert!(refused.all().contains("pg_drop_replication_slot"), "the fix is named: {}", refused.all());
        change(&db, 2).await;
        sync_ok(a.path()).await;
        exact(a.path(), &db).await;
    }

    fn copy_dir(from: &Path, to: &Path) {
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                std::fs::create_dir_all(&target).unwrap();
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }

    /// A state written by release 0.1 (committed as a fixture, see
    /// fixtures/state-0.1/README.md) loads unchanged and every pipeline goes
    /// on from it exactly: its slots are gone (another server), so `cdc`
    /// streams are read again and the state's feeds named for it from now on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_state_written_by_0_1_loads_and_goes_on() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(include_str!("fixtures/state-0.1/setup.sql")).await;
        db.exec(
            "INSERT INTO feed_t VALUES (31, 'c31'); UPDATE feed_t SET v = 'changed' WHERE id = 1;
             DELETE FROM feed_t WHERE id = 2; INSERT INTO inc_t VALUES (21, 'i21', '2026-01-02 00:00:00+00');",
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/state-0.1");
        let state = dir.path().join(".simplyload");
        std::fs::create_dir_all(state.join("staging")).unwrap();
        for f in ["simplyload.yaml", "warehouse.duckdb"] {
            std::fs::copy(fixture.join(f), dir.path().join(f)).unwrap();
        }
        std::fs::copy(fixture.join("state.db"), state.join("state.db")).unwrap();
        copy_dir(&fixture.join("staging"), &state.join("staging"));
        let env = [("FIXTURE_URL", db.url.as_str())];

        let status = simplyload(dir.path(), &["status", "--json"], &env).await;
        status.ok();
        let s: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
        let position = |p: usize, stream: &str| {
            let streams = s[p]["streams"].as_array().unwrap();
            streams.iter().find(|x| x["stream"] == stream).unwrap()["checkpoint"]["position"].clone()
        };
        assert_eq!(position(0, "public.feed_t")["mode"], "cdc");
        assert_eq!(position(0, "public.feed_t")["feed"]["token"], "0/2825450", "the 0.1 position, migrated");
        assert_eq!(position(0, "public.inc_t")["cursor"]["value"], 1767312000000000i64);
        assert_eq!(position(1, "public.big_t")["mode"], "cdc_snapshot");

        let run = simplyload(dir.path(), &["sync", "--json"], &env).await;
        assert_eq!(run.code, Some(0), "{}", run.all());
        let reports = reports(&run);
        assert!(reports[0]["warnings"].to_string().contains("was lost"), "{}", reports[0]);
        assert_eq!(reports[2]["streams"][0]["recovered_batches"], serde_json::json!([1]), "the staged batch loaded");
        for p in ["main", "killed", "staged"] {
            let r = simplyload(dir.path(), &["playground", "reconcile", "--pipeline", p], &env).await;
            assert_eq!(r.code, Some(0), "{p}: {}\n{}", r.stdout, r.stderr);
        }
        let slots = slots(&db).await;
        assert_eq!(slots.len(), 2, "{slots:?}");
        assert!(slots[0].starts_with("simplyload_killed_") && slots[1].starts_with("simplyload_main_"), "{slots:?}");
    }
}

/// The destination lost what was loaded while the state still says
/// "loaded" (issue 15): a dropped table, a deleted DuckDB file, a file
/// loaded by another state, a new path. Each affected stream is read again
/// in full, the report says why, and the copy ends exact — in every mode.
mod lost_destination {
    use super::support::*;
    use simplyload_testkit::{TestDb, TestPg};
    use std::path::Path;

    const TABLES: &str =
        "CREATE TABLE a (id int PRIMARY KEY, v text, updated_at timestamptz NOT NULL DEFAULT clock_timestamp());
         CREATE TABLE b (id int PRIMARY KEY, v text, updated_at timestamptz NOT NULL DEFAULT clock_timestamp());
         INSERT INTO a (id, v) SELECT i, 'a' || i FROM generate_series(1, 300) i;
         INSERT INTO b (id, v) SELECT i, 'b' || i FROM generate_series(1, 40) i;";

    fn write_config(dir: &Path, db: &TestDb, mode: &str, path: &str) {
        let streams = if mode == "incremental" {
            "      - {name: public.a, cursor: updated_at, lookback: 1s}\n      - {name: public.b, cursor: updated_at, lookback: 1s}\n"
        } else {
            "      - public.a\n      - public.b\n"
        };
        std::fs::write(
            dir.join("simplyload.yaml"),
            format!(
                "sources:\n  app:\n    type: postgres\n    url: {}\n\
                 destinations:\n  local:\n    type: duckdb\n    path: {path}\n\
                 pipelines:\n  main:\n    source: app\n    destination: local\n    mode: {mode}\n    streams:\n{streams}",
                db.url
            ),
        )
        .unwrap();
    }

    /// Inserts, updates and (where the mode sees them) deletes, round `n`.
    async fn change(db: &TestDb, mode: &str, n: i32) {
        let base = 1000 * n;
        db.exec(&format!(
            "INSERT INTO a (id, v) SELECT {base} + i, 'new' FROM generate_series(1, 7) i;
             UPDATE a SET v = 'changed {n}', updated_at = clock_timestamp() WHERE id % 10 = {n};
             UPDATE b SET v = 'changed {n}', updated_at = clock_timestamp() WHERE id = {n};"
        ))
        .await;
        if mode != "incremental" {
            db.exec(&format!("DELETE FROM a WHERE id = {}", 100 + n)).await;
        }
    }

    /// Syncs; returns, per stream, why it was read again (if it was).
    async fn sync(dir: &Path) -> Vec<(String, Option<String>)> {
        let run = simplyload(dir, &["sync", "--json"], &[]).await;
        run.ok();
        let report = reports(&run);
        report[0]["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["stream"].as_str().unwrap().to_owned(), s["reread"].as_str().map(str::to_owned)))
            .collect()
    }

    fn reread<'a>(report: &'a [(String, Option<String>)], stream: &str) -> Option<&'a str> {
        report.iter().find(|(s, _)| s == stream).unwrap().1.as_deref()
    }

    /// Reconcile clean, and the live rows of `a` are exactly the source's.
    async fn exact(dir: &Path, db: &TestDb, file: &str) {
        reconcile_clean(dir, "main", &[]).await;
        let conn = simplyload_duckdb::duckdb::Connection::open(dir.join(file)).unwrap();
        let live: i64 = conn
            .query_row(
                &format!("SELECT count(*) FROM simplyload.app_{}_a WHERE NOT _simplyload_deleted", db.name),
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(live, db.count("a").await, "live rows of a");
    }

    async fn lost_and_refilled(mode: &str) {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(TABLES).await;
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        write_config(dir, &db, mode, "warehouse.duckdb");
        let first = sync(dir).await;
        assert!(first.iter().all(|(_, why)| why.is_none()), "{first:?}");
        change(&db, mode, 1).await;
        let quiet = sync(dir).await;
        assert!(quiet.iter().all(|(_, why)| why.is_none()), "nothing was lost: {quiet:?}");

        // 1. One table dropped by hand: that stream alone is read again.
        duck(dir, &format!("DROP TABLE simplyload.app_{}_a", db.name));
        change(&db, mode, 2).await;
        let after_drop = sync(dir).await;
        let why = reread(&after_drop, "public.a").unwrap_or_else(|| panic!("{after_drop:?}"));
        assert!(why.contains(&format!("table app_{}_a is missing", db.name)), "{why}");
        assert_eq!(reread(&after_drop, "public.b"), None);
        exact(dir, &db, "warehouse.duckdb").await;

        // 2. The DuckDB file deleted: every stream is read again.
        std::fs::remove_file(dir.join("warehouse.duckdb")).unwrap();
        let _ = std::fs::remove_file(dir.join("warehouse.duckdb.wal"));
        change(&db, mode, 3).await;
        let after_delete = sync(dir).await;
        assert!(after_delete.iter().all(|(_, why)| why.is_some()), "{after_delete:?}");
        exact(dir, &db, "warehouse.duckdb").await;

        // 3. A file another state loaded (its own pipeline id) put in its place.
        let other = tempfile::tempdir().unwrap();
        write_config(other.path(), &db, mode, "warehouse.duckdb");
        sync(other.path()).await;
        std::fs::copy(other.path().join("warehouse.duckdb"), dir.join("warehouse.duckdb")).unwrap();
        change(&db, mode, 4).await;
        let after_swap = sync(dir).await;
        for (stream, why) in &after_swap {
            let why = why.as_deref().unwrap_or_else(|| panic!("{stream} was not read again: {after_swap:?}"));
            assert!(why.contains("no record of batch"), "{why}");
        }
        exact(dir, &db, "warehouse.duckdb").await;

        // 4. The config points at a new file.
        write_config(dir, &db, mode, "moved.duckdb");
        change(&db, mode, 5).await;
        let after_move = sync(dir).await;
        assert!(after_move.iter().all(|(_, why)| why.is_some()), "{after_move:?}");
        exact(dir, &db, "moved.duckdb").await;
        change(&db, mode, 6).await;
        let settled = sync(dir).await;
        assert!(settled.iter().all(|(_, why)| why.is_none()), "{settled:?}");
        exact(dir, &db, "moved.duckdb").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn incremental_streams_are_refilled() {
        lost_and_refilled("incremental").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cdc_streams_are_refilled() {
        lost_and_refilled("cdc").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn full_refresh_streams_are_refilled() {
        lost_and_refilled("full_refresh").await;
    }
}

/// Replication slots no `cdc` stream uses any more (issue 15): warned
/// about with the WAL they hold, dropped after a mode switch once the new
/// mode loaded, and by `pipeline drop` for a pipeline taken out of the config.
mod slots_left_behind {
    use super::support::*;
    use simplyload_testkit::{TestDb, TestPg};
    use std::path::Path;

    fn write_config(dir: &Path, db: &TestDb, pipeline: &str, mode: &str) {
        let streams = match mode {
            "incremental" => "      - {name: public.a, cursor: updated_at}\n",
            _ => "      - public.a\n",
        };
        std::fs::write(
            dir.join("simplyload.yaml"),
            format!(
                "sources:\n  app:\n    type: postgres\n    url: {}\n\
                 destinations:\n  local:\n    type: duckdb\n    path: warehouse.duckdb\n\
                 pipelines:\n  {pipeline}:\n    source: app\n    destination: local\n    mode: {mode}\n    streams:\n{streams}",
                db.url
            ),
        )
        .unwrap();
    }

    /// Slots and publications of this test's database.
    async fn feeds(db: &TestDb) -> (Vec<String>, Vec<String>) {
        let names = |rows: Vec<tokio_postgres::Row>| rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>();
        let slots = db
            .client
            .query("SELECT slot_name::text FROM pg_replication_slots WHERE database = current_database()", &[])
            .await
            .unwrap();
        let pubs = db.client.query("SELECT pubname::text FROM pg_publication", &[]).await.unwrap();
        (names(slots), names(pubs))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unused_slots_are_warned_about_and_dropped() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(
            "CREATE TABLE a (id int PRIMARY KEY, v text, updated_at timestamptz NOT NULL DEFAULT clock_timestamp());
             INSERT INTO a (id, v) SELECT i, 'v' FROM generate_series(1, 50) i;",
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        write_config(dir, &db, "main", "cdc");
        simplyload(dir, &["sync"], &[]).await.ok();
        let slot = main_slot(&db).await;
        assert_eq!(feeds(&db).await, (vec![slot.clone()], vec![slot.clone()]));

        // Switched to incremental: check warns, with the WAL held.
        db.exec("INSERT INTO a (id, v) SELECT i, 'w' FROM generate_series(51, 80) i").await;
        write_config(dir, &db, "main", "incremental");
        let check = simplyload(dir, &["check"], &[]).await;
        check.ok();
        let warning =
            check.stdout.lines().find(|l| l.starts_with("warning:")).unwrap_or_else(|| panic!("{}", check.stdout));
        for part in [
            format!("replication slot {slot} on source app holds "),
            " of WAL but no `cdc` stream of pipeline main".into(),
            "next successful sync".into(),
            "pg_drop_replication_slot".into(),
        ] {
            assert!(warning.contains(&part), "{part:?} in {warning}");
        }
        // The sync that loads the new mode drops it.
        let run = simplyload(dir, &["sync", "--json"], &[]).await;
        run.ok();
        let report = reports(&run);
        assert!(report[0]["warnings"].to_string().contains(&format!("dropped replication slot {slot}")), "{report}");
        assert_eq!(feeds(&db).await, (vec![], vec![]));
        reconcile_clean(dir, "main", &[]).await;
        let quiet = simplyload(dir, &["check"], &[]).await;
        assert!(!quiet.stdout.contains("warning:"), "{}", quiet.stdout);

        // Back to cdc: a new slot, and the copy stays exact.
        write_config(dir, &db, "main", "cdc");
        simplyload(dir, &["sync"], &[]).await.ok();
        db.exec("UPDATE a SET v = 'x' WHERE id < 10; DELETE FROM a WHERE id = 20").await;
        simplyload(dir, &["sync"], &[]).await.ok();
        reconcile_clean(dir, "main", &[]).await;
        let slot = main_slot(&db).await;

        // The pipeline taken out of the config: sync and check warn.
        write_config(dir, &db, "other", "full_refresh");
        let run = simplyload(dir, &["sync"], &[]).await;
        run.ok();
        assert!(
            run.stderr.contains(&format!("replication slot {slot}"))
                && run.stderr.contains("simplyload pipeline drop main"),
            "{}",
            run.stderr
        );
        let check = simplyload(dir, &["check"], &[]).await;
        assert!(check.stdout.contains("drop it with `simplyload pipeline drop main`"), "{}", check.stdout);

        // `pipeline drop` asks first; without a terminal it needs --yes.
        let refused = simplyload(dir, &["pipeline", "drop", "main"], &[]).await;
        assert_eq!(refused.code, Some(2), "{}", refused.all());
        assert!(refused.all().contains("add --yes"), "{}", refused.all());
        assert_eq!(feeds(&db).await.0, vec![slot.clone()]);
        let dropped = simplyload(dir, &["pipeline", "drop", "main", "--yes"], &[]).await;
        dropped.ok();
        assert!(dropped.stdout.contains(&format!("dropped replication slot {slot}")), "{}", dropped.stdout);
        assert_eq!(feeds(&db).await, (vec![], vec![]));
        let status = simplyload(dir, &["status", "--json"], &[]).await;
        assert!(!status.stdout.contains("\"main\""), "{}", status.stdout);
        let quiet = simplyload(dir, &["check"], &[]).await;
        assert!(!quiet.stdout.contains("warning:"), "{}", quiet.stdout);
        let unknown = simplyload(dir, &["pipeline", "drop", "main", "--yes"], &[]).await;
        assert_eq!(unknown.code, Some(1), "{}", unknown.all());
        assert!(unknown.all().contains("pipeline main is neither in the config nor in the state"), "{}", unknown.all());
    }

    /// A slot removed by hand: `pipeline drop` says so, with the SQL for
    /// wherever it may still be, and forgets the pipeline.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_a_pipeline_whose_slot_is_gone() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(
            "CREATE TABLE a (id int PRIMARY KEY, v text, updated_at timestamptz); INSERT INTO a VALUES (1, 'x', now())",
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        write_config(dir, &db, "main", "cdc");
        simplyload(dir, &["sync"], &[]).await.ok();
        let slot = main_slot(&db).await;
        db.exec(&format!("SELECT pg_drop_replication_slot('{slot}')")).await;
        write_config(dir, &db, "other", "full_refresh");
        let dropped = simplyload(dir, &["pipeline", "drop", "main", "--yes"], &[]).await;
        dropped.ok();
        assert!(
            dropped.stdout.contains(&format!("change feed {slot} was not found on any configured source")),
            "{}",
            dropped.stdout
        );
        assert!(dropped.stdout.contains("pg_drop_replication_slot"), "{}", dropped.stdout);
        assert!(dropped.stdout.contains("forgot pipeline main's state"), "{}", dropped.stdout);
    }
}

/// One table a change feed cannot carry fails alone (issue 15).
mod one_bad_table {
    use super::support::*;
    use simplyload_testkit::TestPg;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_table_without_replica_identity_fails_alone() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(
            "CREATE TABLE good (id int PRIMARY KEY, v text);
             CREATE TABLE \"No Key\" (v text, n int);
             INSERT INTO good SELECT i, 'g' FROM generate_series(1, 20) i;
             INSERT INTO \"No Key\" SELECT 'x', i FROM generate_series(1, 5) i;",
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        config(dir, &db.url, &["public.good", "'public.\"No Key\"'"], "    mode: cdc\n");
        let run = simplyload(dir, &["sync", "--json"], &[]).await;
        assert_eq!(run.code, Some(1), "{}", run.all());
        let report = reports(&run);
        let stream =
            |name: &str| report[0]["streams"].as_array().unwrap().iter().find(|s| s["stream"] == name).unwrap().clone();
        let good = stream("public.good");
        assert_eq!((good["status"].as_str(), good["rows"].as_u64()), (Some("succeeded"), Some(20)), "{good}");
        assert!(good["error"].is_null(), "{good}");
        let bad = stream("public.\"No Key\"");
        assert_eq!(bad["status"], "failed", "{bad}");
        let error = bad["error"].as_str().unwrap();
        assert!(error.contains("cannot replicate \"public\".\"No Key\""), "{error}");
        assert!(error.contains("ALTER TABLE \"public\".\"No Key\" REPLICA IDENTITY FULL"), "{error}");

        // The rest goes on syncing; once fixed, the table joins exactly.
        db.exec("INSERT INTO good VALUES (21, 'new')").await;
        assert_eq!(simplyload(dir, &["sync"], &[]).await.code, Some(1));
        db.exec("ALTER TABLE \"No Key\" REPLICA IDENTITY FULL").await;
        simplyload(dir, &["sync"], &[]).await.ok();
        db.exec("UPDATE \"No Key\" SET v = 'y' WHERE n = 1; DELETE FROM good WHERE id = 3").await;
        simplyload(dir, &["sync"], &[]).await.ok();
        reconcile_clean(dir, "main", &[]).await;
    }
}

/// `check` refuses what `sync` would (issue 15).
mod check_parity {
    use super::support::*;
    use simplyload_testkit::TestPg;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn check_names_every_mistake_sync_would_refuse() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(
            "CREATE TABLE t1 (id int PRIMARY KEY, updated_at timestamptz, v text);
             CREATE TABLE t2 (id int PRIMARY KEY, updated_at timestamptz, v text);
             CREATE TABLE nokey (v text, updated_at timestamptz);
             CREATE SCHEMA cdcs;
             CREATE TABLE cdcs.k (id int PRIMARY KEY);
             CREATE TABLE cdcs.bare (v text);",
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        std::fs::write(
            dir.join("simplyload.yaml"),
            format!(
                "sources:\n  app:\n    type: postgres\n    url: {}\n\
                 destinations:\n  local:\n    type: duckdb\n    path: warehouse.duckdb\n\
                 pipelines:\n\
                 \x20 inc:\n    source: app\n    destination: local\n    mode: incremental\n    streams:\n\
                 \x20     - {{name: public.t1, cursor: changed_at}}\n\
                 \x20     - {{name: public.t2, cursor: updated_at, exclude_columns: [nope]}}\n\
                 \x20     - {{name: public.nokey, cursor: updated_at}}\n\
                 \x20 feed:\n    source: app\n    destination: local\n    mode: cdc\n    streams:\n\
                 \x20     - cdcs.*\n",
                db.url
            ),
        )
        .unwrap();
        let inc = simplyload(dir, &["check", "inc"], &[]).await;
        assert_eq!(inc.code, Some(1), "{}", inc.all());
        for expected in [
            "table public.t1 has no column `changed_at`",
            "exclude_columns: table public.t2 has no column `nope`",
            "table public.nokey has no primary key",
            "some checks failed; fix what is named above",
        ] {
            assert!(inc.stdout.contains(expected), "{expected:?} in\n{}", inc.stdout);
        }
        // A pattern's streams get the change-feed checks too.
        let feed = simplyload(dir, &["check", "feed"], &[]).await;
        assert_eq!(feed.code, Some(1), "{}", feed.all());
        for expected in
            ["ALTER TABLE \"cdcs\".\"bare\" REPLICA IDENTITY FULL;", "run the SQL above as an administrator"]
        {
            assert!(feed.stdout.contains(expected), "{expected:?} in\n{}", feed.stdout);
        }
        // What check says is what sync does.
        let sync = simplyload(dir, &["sync", "inc", "--json"], &[]).await;
        assert_eq!(sync.code, Some(1));
        let report = reports(&sync);
        assert!(report[0]["streams"].as_array().unwrap().iter().all(|s| s["status"] == "failed"), "{report}");
    }
}

/// Errors at sync time carry the fix `check` prints (issue 15).
mod sync_hints {
    use super::support::*;
    use simplyload_testkit::TestPg;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wal_level_is_named_with_its_fix() {
        let opts = simplyload_postgres::local::LocalOptions {
            settings: vec![("wal_level".into(), "replica".into())],
            ..Default::default()
        };
        let pg = TestPg::start_with(&opts);
        let db = pg.database().await;
        db.exec("CREATE TABLE a (id int PRIMARY KEY); INSERT INTO a VALUES (1)").await;
        let dir = tempfile::tempdir().unwrap();
        config(dir.path(), &db.url, &["public.a"], "    mode: cdc\n");
        let run = simplyload(dir.path(), &["sync"], &[]).await;
        assert_eq!(run.code, Some(1), "{}", run.all());
        assert!(run.all().contains("ALTER SYSTEM SET wal_level = logical"), "{}", run.all());
        let check = simplyload(dir.path(), &["check"], &[]).await;
        assert!(check.stdout.contains("ALTER SYSTEM SET wal_level = logical"), "{}", check.stdout);
    }
}

/// What a shell script or a log shipper relies on (issue 15): exit codes,
/// JSON errors under `--log-format json`, no colour off a terminal, no
/// `Some(…)` in log fields, no panic on a closed pipe.
mod scripts {
    use super::support::*;
    use simplyload_testkit::TestPg;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exit_codes_json_errors_and_plain_logs() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(
            "CREATE TABLE a (id int PRIMARY KEY, v text); INSERT INTO a SELECT i, 'v' FROM generate_series(1, 10) i",
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        config(dir, &db.url, &["public.a"], "    mode: full_refresh\n");

        // Off a terminal: no colour, and fields print values, not `Some(…)`.
        let run = simplyload(dir, &["sync"], &[]).await;
        run.ok();
        assert!(!run.stderr.contains('\u{1b}'), "colour off a terminal: {:?}", run.stderr);
        assert!(run.stderr.contains("destination_rows=10") && !run.stderr.contains("Some("), "{}", run.stderr);

        // A fatal error under --log-format json is a JSON record; bad config exits 2.
        let bad = simplyload(dir, &["--log-format", "json", "sync", "nope"], &[]).await;
        assert_eq!(bad.code, Some(2), "{}", bad.all());
        let last = bad.stderr.lines().last().unwrap_or_default();
        let record: serde_json::Value =
            serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}): {}", bad.stderr));
        assert_eq!(record["level"], "ERROR", "{record}");
        assert_eq!(record["fields"]["kind"], "config", "{record}");
        assert!(record["fields"]["message"].as_str().unwrap().contains("nope"), "{record}");
        // Every stderr line of a JSON-logged sync is JSON.
        let logged = simplyload(dir, &["--log-format", "json", "sync"], &[]).await;
        logged.ok();
        for line in logged.stderr.lines() {
            serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        }

        // A reader that goes away early ends the output quietly.
        let bin = env!("CARGO_BIN_EXE_simplyload");
        let piped = tokio::process::Command::new("sh")
            .current_dir(dir)
            .arg("-c")
            .arg(format!("'{bin}' discover app | true; '{bin}' discover app | head -c 10 >/dev/null"))
            .env_remove("SIMPLYLOAD_CONFIG")
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&piped.stderr);
        assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
    }
}

/// Counts that tell the truth (issue 15).
mod counts {
    use super::support::*;
    use simplyload_testkit::TestPg;

    fn stream(report: &serde_json::Value, name: &str) -> serde_json::Value {
        report[0]["streams"].as_array().unwrap().iter().find(|s| s["stream"] == name).unwrap().clone()
    }

    async fn sync(dir: &std::path::Path) -> serde_json::Value {
        let run = simplyload(dir, &["sync", "--json"], &[]).await;
        run.ok();
        reports(&run)
    }

    /// More rows within the lookback than the checkpoint remembers: they are
    /// read and merged again, and only the ones that changed are updates.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rows_read_again_unchanged_are_not_updates() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(
            "CREATE TABLE big (id int PRIMARY KEY, v text, updated_at timestamptz NOT NULL DEFAULT clock_timestamp());
             INSERT INTO big (id, v) SELECT i, 'v' FROM generate_series(1, 6000) i;",
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        config(dir, &db.url, &["{name: public.big, cursor: updated_at, lookback: 1h}"], "    mode: incremental\n");
        sync(dir).await;
        db.exec("UPDATE big SET v = 'w', updated_at = clock_timestamp() WHERE id <= 3").await;
        let second = sync(dir).await;
        let big = stream(&second, "public.big");
        assert!(big["rows"].as_u64().unwrap() > 5000, "the window was read again: {big}");
        assert_eq!(big["changes"], serde_json::json!({"inserted": 0, "updated": 3, "deleted": 0}), "{big}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reports_and_status_count_what_happened() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(
            "CREATE TABLE a (id int PRIMARY KEY, v text, updated_at timestamptz NOT NULL DEFAULT clock_timestamp());
             INSERT INTO a (id, v) SELECT i, 'v' FROM generate_series(1, 1000) i;
             CREATE TABLE c (id int PRIMARY KEY, v text);
             INSERT INTO c SELECT i, repeat('x', 100) FROM generate_series(1, 500) i;",
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        config(
            dir,
            &db.url,
            &["{name: public.a, cursor: updated_at, lookback: 1h}", "{name: public.c, mode: cdc}"],
            "    mode: incremental\n    snapshot_part_rows: 300\n",
        );
        // A first read in parts: the report and status count all of it.
        let first = sync(dir).await;
        assert!(first[0]["started_at"].as_str().unwrap().ends_with('Z'), "{first}");
        assert!(first[0]["finished_at"].as_str().unwrap() >= first[0]["started_at"].as_str().unwrap());
        let a = stream(&first, "public.a");
        assert_eq!(a["rows"], 1000, "{a}");
        assert_eq!(a["changes"], serde_json::json!({"inserted": 1000, "updated": 0, "deleted": 0}), "{a}");
        let c = stream(&first, "public.c");
        assert!(c["source_bytes"].as_u64().unwrap() > 50_000, "a CDC snapshot reports what it read: {c}");
        let status = simplyload(dir, &["status", "--json"], &[]).await;
        let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
        let a_state = v[0]["streams"].as_array().unwrap().iter().find(|s| s["stream"] == "public.a").unwrap().clone();
        assert_eq!(a_state["last_rows"], 1000, "the whole first read, not its last part: {a_state}");
        assert_eq!(a_state["last_changes"]["inserted"], 1000, "{a_state}");

        // Rows read again by the lookback and unchanged are not updates.
        db.exec("UPDATE a SET v = 'w', updated_at = clock_timestamp() WHERE id <= 3; DELETE FROM c WHERE id = 1").await;
        let second = sync(dir).await;
        let a = stream(&second, "public.a");
        assert_eq!(a["changes"], serde_json::json!({"inserted": 0, "updated": 3, "deleted": 0}), "{a}");
        let c = stream(&second, "public.c");
        assert_eq!(c["changes"], serde_json::json!({"inserted": 0, "updated": 0, "deleted": 1}), "{c}");
    }
}

/// What users of the peers expect (issue 15): `--select`, staging
/// retention after each sync, completions, `--version`.
mod peers_expect {
    use super::support::*;
    use simplyload_testkit::TestPg;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn select_some_streams_and_retention_applies_itself() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(
            "CREATE TABLE a (id int PRIMARY KEY, v text); INSERT INTO a SELECT i, 'a' FROM generate_series(1, 10) i;
             CREATE TABLE b (id int PRIMARY KEY, v text); INSERT INTO b SELECT i, 'b' FROM generate_series(1, 20) i;
             CREATE TABLE c1 (id int PRIMARY KEY); INSERT INTO c1 SELECT generate_series(1, 5);
             CREATE TABLE c2 (id int PRIMARY KEY); INSERT INTO c2 SELECT generate_series(1, 6);",
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        config(
            dir,
            &db.url,
            &["public.a", "b", "{name: public.c1, mode: cdc}", "{name: public.c2, mode: cdc}"],
            "    mode: full_refresh\n",
        );
        // Only b (named without its schema, as in the config).
        let run = simplyload(dir, &["sync", "main", "--select", "b", "--json"], &[]).await;
        run.ok();
        let synced: Vec<String> = reports(&run)[0]["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["stream"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(synced, vec!["public.b"]);
        // cdc streams share the slot: all or none.
        let half = simplyload(dir, &["sync", "main", "--select", "public.c1"], &[]).await;
        assert_eq!(half.code, Some(2), "{}", half.all());
        assert!(half.all().contains("select all of them (public.c1, public.c2) or none"), "{}", half.all());
        let unknown = simplyload(dir, &["sync", "main", "--select", "public.nope"], &[]).await;
        assert_eq!(unknown.code, Some(2), "{}", unknown.all());
        assert!(unknown.all().contains("pipeline main has no stream public.nope"), "{}", unknown.all());
        // The config's only pipeline need not be named.
        simplyload(dir, &["sync", "--select", "b"], &[]).await.ok();
        simplyload(dir, &["sync", "main", "--select", "public.c1", "public.c2"], &[]).await.ok();
        let check = simplyload(dir, &["check", "main", "--select", "public.a"], &[]).await;
        check.ok();
        assert!(check.stdout.contains("public.a") && !check.stdout.contains("public.b"), "{}", check.stdout);

        // Default retention (7 days) keeps the files; a zero retention removes
        // them after each successful sync.
        assert!(staged_files(dir) > 0);
        let yaml = std::fs::read_to_string(dir.join("simplyload.yaml")).unwrap();
        std::fs::write(dir.join("simplyload.yaml"), format!("staging_retention: 0s\n{yaml}")).unwrap();
        simplyload(dir, &["sync"], &[]).await.ok();
        assert_eq!(staged_files(dir), 0);
        simplyload(dir, &["playground", "reconcile", "--pipeline", "main"], &[]).await.ok();
    }

    /// `columns:` keeps only the listed columns, in every mode (CDC too).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_column_allow_list_in_cdc() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(
            "CREATE TABLE p (id int PRIMARY KEY, email text, secret text, note text);
             INSERT INTO p SELECT i, 'u' || i || '@x', 'pw' || i, 'n' FROM generate_series(1, 30) i;",
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        config(dir, &db.url, &["{name: public.p, columns: [id, email]}"], "    mode: cdc\n");
        simplyload(dir, &["sync"], &[]).await.ok();
        db.exec(
            "UPDATE p SET email = 'changed', secret = 'new' WHERE id <= 5; INSERT INTO p VALUES (31, 'e', 's', 'n')",
        )
        .await;
        simplyload(dir, &["sync"], &[]).await.ok();
        let table = format!("app_{}_p", db.name);
        let cols = duck(
            dir,
            &format!(
                "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = '{table}'"
            ),
        );
        let cols = cols[0][0].clone().unwrap();
        assert!(
            cols.starts_with("id,email,_simplyload") && !cols.contains("secret") && !cols.contains("note"),
            "{cols}"
        );
        let changed = duck(dir, &format!("SELECT count(*)::VARCHAR FROM simplyload.{table} WHERE email = 'changed'"));
        assert_eq!(changed[0][0].as_deref(), Some("5"));
        simplyload(dir, &["playground", "reconcile", "--pipeline", "main"], &[]).await.ok();
    }

    /// `sync --dry-run` says what a sync would do and changes nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dry_run_plans_without_touching_anything() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(
            "CREATE TABLE a (id int PRIMARY KEY, v text, updated_at timestamptz NOT NULL DEFAULT clock_timestamp());
             INSERT INTO a (id, v) SELECT i, 'a' FROM generate_series(1, 10) i;
             CREATE TABLE c (id int PRIMARY KEY, v text); INSERT INTO c SELECT i, 'c' FROM generate_series(1, 5) i;",
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        config(
            dir,
            &db.url,
            &["{name: public.a, cursor: updated_at}", "{name: public.c, mode: cdc}"],
            "    mode: incremental\n",
        );
        let plan = |run: &Run| -> Vec<(String, String)> {
            reports(run)[0]["streams"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    (s["stream"].as_str().unwrap().to_owned(), s["action"].as_str().unwrap_or_default().to_owned())
                })
                .collect()
        };
        let slots = || async {
            let n: i64 = db
                .client
                .query_one("SELECT count(*) FROM pg_replication_slots WHERE database = current_database()", &[])
                .await
                .unwrap()
                .get(0);
            n
        };
        let first = simplyload(dir, &["sync", "--dry-run", "--json"], &[]).await;
        first.ok();
        assert_eq!(
            plan(&first),
            vec![
                ("public.a".to_owned(), "first read: every row".to_owned()),
                (
                    "public.c".to_owned(),
                    "first read: a snapshot at the change feed's start, then its changes".to_owned()
                )
            ]
        );
        assert_eq!(slots().await, 0, "a dry run makes no slot");
        assert!(!dir.join("warehouse.duckdb").exists(), "nor a destination");
        simplyload(dir, &["sync"], &[]).await.ok();

        db.exec("ALTER TABLE a ADD COLUMN flag int NOT NULL DEFAULT 7").await;
        duck(dir, &format!("DROP TABLE simplyload.app_{}_c", db.name));
        let text = simplyload(dir, &["sync", "--dry-run"], &[]).await;
        text.ok();
        assert!(text.stdout.contains("dry run: nothing is read or loaded"), "{}", text.stdout);
        assert!(text.stdout.contains("read again in full, merged: a schema change"), "{}", text.stdout);
        assert!(text.stdout.contains("public.a: schema change: column flag added"), "{}", text.stdout);
        assert!(text.stdout.contains(&format!("table app_{}_c is missing", db.name)), "{}", text.stdout);
        let history = simplyload(dir, &["history", "main", "--json"], &[]).await;
        assert_eq!(serde_json::from_str::<serde_json::Value>(&history.stdout).unwrap().as_array().unwrap().len(), 1);
        simplyload(dir, &["sync"], &[]).await.ok();
        let settled = simplyload(dir, &["sync", "--dry-run", "--json"], &[]).await;
        let actions = plan(&settled);
        assert!(actions[0].1.starts_with("read rows with updated_at ≥ "), "{actions:?}");
        assert!(actions[1].1.starts_with("read the changes since LSN "), "{actions:?}");
        config(dir, &db.url, &["{name: public.a, cursor: nope}"], "    mode: incremental\n");
        let refused = simplyload(dir, &["sync", "--dry-run"], &[]).await;
        assert_eq!(refused.code, Some(1), "{}", refused.all());
        assert!(refused.stdout.contains("REFUSED: pipelines.main.streams[0].cursor"), "{}", refused.stdout);
    }

    /// A source named like its database: the default table name says it
    /// once; a stream loaded under the name 0.1 gave it stays there.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn table_names_say_a_repeated_name_once_and_loaded_tables_stay() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(
            "CREATE TABLE a (id int PRIMARY KEY); INSERT INTO a SELECT generate_series(1, 4);
             CREATE TABLE b (id int PRIMARY KEY); INSERT INTO b SELECT generate_series(1, 3);",
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let write = |streams: &str, template: &str| {
            std::fs::write(
                dir.join("simplyload.yaml"),
                format!(
                    "sources:\n  {name}:\n    type: postgres\n    url: {url}\n\
                     destinations:\n  local:\n    type: duckdb\n    path: warehouse.duckdb\n\
                     pipelines:\n  main:\n    source: {name}\n    destination: local\n{template}    streams: [{streams}]\n",
                    name = db.name,
                    url = db.url
                ),
            )
            .unwrap();
        };
        // As 0.1 named it.
        write("public.a", "    table_name: \"{source}_{database}_{table}\"\n");
        simplyload(dir, &["sync"], &[]).await.ok();
        let twice = format!("{0}_{0}_a", db.name);
        write("public.a, public.b", "");
        db.exec("INSERT INTO a VALUES (5)").await;
        let run = simplyload(dir, &["sync", "--json"], &[]).await;
        run.ok();
        let report = reports(&run);
        let table = |s: &str| {
            report[0]["streams"].as_array().unwrap().iter().find(|x| x["stream"] == s).unwrap()["table"].clone()
        };
        assert_eq!(table("public.a"), twice.as_str(), "a loaded stream stays in its table");
        assert_eq!(table("public.b"), format!("{}_b", db.name).as_str(), "a new one says the name once");
        assert_eq!(duck_count(dir, &twice), 5);
        simplyload(dir, &["playground", "reconcile", "--pipeline", "main"], &[]).await.ok();
    }

    /// `schema:` on a DuckDB destination or on a pipeline: two pipelines
    /// of one source land side by side in one file.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_schema_per_pipeline() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(
            "CREATE TABLE a (id int PRIMARY KEY, v text); INSERT INTO a SELECT i, 'v' FROM generate_series(1, 7) i;",
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        std::fs::write(
            dir.join("simplyload.yaml"),
            format!(
                "sources:\n  app:\n    type: postgres\n    url: {}\n\
                 destinations:\n  local:\n    type: duckdb\n    path: warehouse.duckdb\n    schema: raw\n\
                 pipelines:\n\
                 \x20 one:\n    source: app\n    destination: local\n    mode: full_refresh\n    streams: [public.a]\n\
                 \x20 two:\n    source: app\n    destination: local\n    schema: Sales Copy\n    mode: full_refresh\n    streams: [public.a]\n",
                db.url
            ),
        )
        .unwrap();
        simplyload(dir, &["sync"], &[]).await.ok();
        let table = format!("app_{}_a", db.name);
        for schema in ["raw", "Sales Copy"] {
            let n = duck(dir, &format!("SELECT count(*)::VARCHAR FROM \"{schema}\".{table}"));
            assert_eq!(n[0][0].as_deref(), Some("7"), "{schema}");
            let b = duck(dir, &format!("SELECT count(*)::VARCHAR FROM \"{schema}\"._simplyload_batches"));
            assert_eq!(b[0][0].as_deref(), Some("1"), "{schema}");
        }
        for p in ["one", "two"] {
            simplyload(dir, &["playground", "reconcile", "--pipeline", p], &[]).await.ok();
        }
        // Nothing lost: the second sync of each finds its own tables.
        let again = simplyload(dir, &["sync", "--json"], &[]).await;
        again.ok();
        assert!(!again.stdout.contains("\"reread\""), "{}", again.stdout);
    }

    /// `hash_columns:` stores salted SHA-256 pseudonyms, in snapshots and
    /// changes, and reconcile still compares exactly.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hash_columns_store_pseudonyms() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(
            "CREATE TABLE p (id int PRIMARY KEY, email text, age int, updated_at timestamptz NOT NULL DEFAULT clock_timestamp());
             INSERT INTO p (id, email, age) SELECT i, CASE WHEN i = 3 THEN NULL ELSE 'user' || i || '@example.com' END, i
               FROM generate_series(1, 20) i;
             CREATE TABLE q (id int PRIMARY KEY, email text);
             INSERT INTO q SELECT i, 'q' || i || '@example.com' FROM generate_series(1, 10) i;",
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        config(
            dir,
            &db.url,
            &[
                "{name: public.p, cursor: updated_at, hash_columns: [email]}",
                "{name: public.q, mode: cdc, hash_columns: [email]}",
            ],
            "    mode: incremental\n",
        );
        const SALT: &str = "s3cret-salt-never-printed";
        let env = [("SIMPLYLOAD_HASH_SALT", SALT)];
        // No salt: refused, naming the variable.
        let bare = simplyload(dir, &["sync"], &[]).await;
        assert_eq!(bare.code, Some(1), "{}", bare.all());
        assert!(bare.all().contains("SIMPLYLOAD_HASH_SALT is not set"), "{}", bare.all());
        let check = simplyload(dir, &["check"], &[]).await;
        assert!(check.stdout.contains("SIMPLYLOAD_HASH_SALT is not set"), "{}", check.stdout);

        let expected = |table: &'static str| {
            let db = &db;
            async move {
                let rows = db
                    .client
                    .query(
                        &format!(
                            "SELECT id::text, encode(sha256(convert_to($1 || email, 'UTF8')), 'hex') FROM {table} t ORDER BY t.id"
                        ),
                        &[&SALT],
                    )
                    .await
                    .unwrap();
                rows.iter()
                    .map(|r| vec![r.get::<_, Option<String>>(0), r.get::<_, Option<String>>(1)])
                    .collect::<Vec<_>>()
            }
        };
        let stored = |table: &str| {
            duck(
                dir,
                &format!(
                    "SELECT id::VARCHAR, email FROM simplyload.app_{}_{table} WHERE NOT _simplyload_deleted ORDER BY id",
                    db.name
                ),
            )
        };
        let run = simplyload(dir, &["sync"], &env).await;
        run.ok();
        assert_eq!(stored("p"), expected("p").await);
        assert_eq!(stored("q"), expected("q").await);
        assert_eq!(stored("p")[2][1], None, "NULL stays NULL");
        db.exec("UPDATE p SET email = 'new@x', updated_at = clock_timestamp() WHERE id = 1; UPDATE q SET email = 'changed@x' WHERE id = 2; INSERT INTO q VALUES (11, 'e@x')").await;
        let run = simplyload(dir, &["sync"], &env).await;
        run.ok();
        assert!(!run.all().contains(SALT), "{}", run.all());
        assert_eq!(stored("p"), expected("p").await);
        assert_eq!(stored("q"), expected("q").await);
        reconcile_clean(dir, "main", &env).await;
        // Only text columns, and never the key.
        config(
            dir,
            &db.url,
            &["{name: public.p, cursor: updated_at, hash_columns: [age, id]}"],
            "    mode: incremental\n",
        );
        let bad = simplyload(dir, &["check"], &env).await;
        assert!(
            bad.stdout.contains("column `age` is integer (int32); only text columns can be hashed"),
            "{}",
            bad.stdout
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn version_and_completions() {
        let dir = tempfile::tempdir().unwrap();
        let v = simplyload(dir.path(), &["--version"], &[]).await;
        v.ok();
        let line = v.stdout.trim();
        assert!(line.starts_with(&format!("simplyload {} (commit ", env!("CARGO_PKG_VERSION"))), "{line}");
        assert!(line.contains(", built 20") && line.ends_with(')'), "{line}");
        for (shell, marker) in
            [("bash", "_simplyload()"), ("zsh", "#compdef simplyload"), ("fish", "complete -c simplyload")]
        {
            let out = simplyload(dir.path(), &["completions", shell], &[]).await;
            out.ok();
            assert!(out.stdout.contains(marker), "{shell}: {}", &out.stdout[..200.min(out.stdout.len())]);
            assert!(out.stdout.contains("pipeline"), "{shell} completes subcommands");
        }
    }
}

#[path = "main/stripe.rs"]
mod stripe;
