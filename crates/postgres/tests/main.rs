//! Integration tests against a real Postgres (one server per test).

#[path = "main/conformance.rs"]
mod conformance;

mod support {
    use arrow_array::RecordBatch;
    use simplyload_core::config::{OnUnrepresentable, PipelineConfig, StreamConfig, SyncMode};
    use simplyload_core::{ReadStats, SnapshotRequest, Source, TableSpec, ValueLimits};
    use simplyload_postgres::PostgresSource;

    /// Plans a table the way a sync would.
    pub async fn spec(source: &PostgresSource, table: &str) -> TableSpec {
        let catalog = source.discover(&simplyload_core::Selection::all()).await.unwrap();
        let p = PipelineConfig {
            source: "src".into(),
            destination: "dst".into(),
            mode: SyncMode::FullRefresh,
            schedule: None,
            table_name: None,
            on_unrepresentable: OnUnrepresentable::Report,
            streams: vec![StreamConfig { name: table.into(), ..Default::default() }],
            ..Default::default()
        };
        simplyload_core::plan::plan_pipeline("p", &p, &catalog).pop().unwrap().1.unwrap().table
    }

    /// Reads a whole table through `read_snapshot`.
    pub async fn snapshot(
        source: &PostgresSource,
        table: &TableSpec,
        on_unrepresentable: OnUnrepresentable,
        batch_rows: usize,
    ) -> simplyload_core::Result<(Vec<RecordBatch>, ReadStats)> {
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let req = SnapshotRequest {
            incremental: None,
            consistent_with: None,
            table: table.clone(),
            limits: ValueLimits::STAGING,
            on_unrepresentable,
            batch_rows,
            batch_bytes: 8 << 20,
            parallelism: 1,
            parallel_min_bytes: 0,
            resumable: false,
            resume: None,
        };
        let s = source.clone();
        let reader = tokio::spawn(async move { s.read_snapshot(req, tx).await });
        let mut batches = Vec::new();
        while let Some(b) = rx.recv().await {
            batches.push(b.batch);
        }
        let stats = reader.await.unwrap()?;
        Ok((batches, stats))
    }
}

mod decode {
    use super::support::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    use arrow_array::{Array, RecordBatch};
    use simplyload_core::SqlType;
    use simplyload_core::config::OnUnrepresentable;
    use simplyload_postgres::PostgresSource;
    use simplyload_testkit::TestPg;

    fn strings(batches: &[RecordBatch], col: usize) -> Vec<Option<String>> {
        batches
            .iter()
            .flat_map(|b| {
                let a = b.column(col).as_string::<i32>();
                (0..a.len()).map(|i| if a.is_null(i) { None } else { Some(a.value(i).to_owned()) }).collect::<Vec<_>>()
            })
            .collect()
    }

    fn decimals(batches: &[RecordBatch], col: usize) -> Vec<Option<String>> {
        batches
            .iter()
            .flat_map(|b| {
                let a = b.column(col).as_primitive::<Decimal128Type>();
                (0..a.len()).map(|i| if a.is_null(i) { None } else { Some(a.value_as_string(i)) }).collect::<Vec<_>>()
            })
            .collect()
    }

    async fn pg_texts(db: &simplyload_testkit::TestDb, sql: &str) -> Vec<Option<String>> {
        db.client.query(sql, &[]).await.unwrap().iter().map(|r| r.get::<_, Option<String>>(0)).collect()
    }

    /// Thousands of numerics of every shape, decoded to text and to decimal,
    /// against Postgres's own rendering.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn numerics_match_postgres_text() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(
            "CREATE TABLE n (id int PRIMARY KEY, free numeric, fixed numeric(38,10), small numeric(12,2));
             INSERT INTO n
             SELECT g,
                    CASE g % 7 WHEN 0 THEN 'NaN'::numeric WHEN 1 THEN round((random() - 0.5)::numeric * 10::numeric ^ (g % 60 - 30), g % 40)
                         WHEN 2 THEN (g::numeric * 10::numeric ^ (g % 90)) WHEN 3 THEN -(1::numeric / 3)
                         WHEN 4 THEN 0 WHEN 5 THEN round(random()::numeric, 20) ELSE (-1)::numeric * g / 1000 END,
                    round((random() - 0.5)::numeric * 10::numeric ^ (g % 28), 10),
                    round((random() - 0.5)::numeric * 10::numeric ^ (g % 10), 2)
             FROM generate_series(1, 5000) g;
             INSERT INTO n VALUES (0, 'Infinity', 0.0000000001, 0.01), (-1, '-Infinity', -9999999999999999999999999999.9999999999, -9999999999.99);",
        )
        .await;
        let source = PostgresSource::from_url("src", &db.url).unwrap();
        let table = spec(&source, "public.n").await;
        assert_eq!(table.columns[1].sql_type, SqlType::Text);
        assert_eq!(table.columns[2].sql_type, SqlType::Decimal { precision: 38, scale: 10 });
        let (batches, stats) = snapshot(&source, &table, OnUnrepresentable::Report, 1000).await.unwrap();
        assert_eq!(stats.rows, 5002);
        assert!(batches.iter().all(|b| b.num_rows() <= 1000));
        assert_eq!(strings(&batches, 1), pg_texts(&db, "SELECT free::text FROM n").await);
        assert_eq!(decimals(&batches, 2), pg_texts(&db, "SELECT fixed::text FROM n").await);
        assert_eq!(decimals(&batches, 3), pg_texts(&db, "SELECT small::text FROM n").await);
        assert!(stats.unrepresentable.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn intervals_uuids_json_and_casts_match_postgres_text() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(
            "CREATE TYPE pair AS (a int, b text);
             CREATE TABLE t (id int PRIMARY KEY, iv interval, u uuid, j jsonb, js json, arr text[], c pair, r tstzrange,
                             ip inet, tz timetz, m money);
             INSERT INTO t
             SELECT g,
                    make_interval(years => g % 5 - 2, months => g % 13 - 6, days => g % 40 - 20, hours => g % 30 - 15,
                                  mins => g % 70 - 35, secs => ((g % 1000) - 500) / 7.0),
                    md5(g::text)::uuid,
                    jsonb_build_object('g', g, 'f', g / 3.0, 's', repeat('é', g % 5), 'a', jsonb_build_array(1, NULL, 'x')),
                    ('{\"raw\":  ' || g || ' }')::json,
                    ARRAY['a' || g, NULL, 'q\"uote'],
                    ROW(g, 'b' || g)::pair,
                    tstzrange(now() - g * interval '1 hour', now()),
                    CASE WHEN g % 7 = 0 THEN ('::' || g)::inet
                         WHEN g % 3 = 0 THEN ('10.1.' || (g % 256) || '.' || (g % 200))::inet
                         ELSE ('10.0.' || (g % 256) || '.1/24')::inet END,
                    ('12:00:00+' || (g % 14))::timetz,
                    (g * 1.01)::money
             FROM generate_series(1, 2000) g;
             INSERT INTO t (id, iv) VALUES (0, '0'), (-1, '-1.5 seconds'), (-2, '178000000 years');",
        )
        .await;
        let source = PostgresSource::from_url("src", &db.url).unwrap();
        let table = spec(&source, "public.t").await;
        let (batches, stats) = snapshot(&source, &table, OnUnrepresentable::Report, 512).await.unwrap();
        assert_eq!(stats.rows, 2003);
        db.exec("SET TimeZone = 'UTC'; SET IntervalStyle = 'iso_8601'").await;
        assert_eq!(strings(&batches, 1), pg_texts(&db, "SELECT iv::text FROM t").await, "interval");
        assert_eq!(strings(&batches, 2), pg_texts(&db, "SELECT u::text FROM t").await, "uuid");
        assert_eq!(strings(&batches, 3), pg_texts(&db, "SELECT j::text FROM t").await, "jsonb");
        assert_eq!(strings(&batches, 4), pg_texts(&db, "SELECT js::text FROM t").await, "json");
        assert_eq!(strings(&batches, 5), pg_texts(&db, "SELECT to_jsonb(arr)::text FROM t").await, "array");
        assert_eq!(strings(&batches, 6), pg_texts(&db, "SELECT to_jsonb(c)::text FROM t").await, "composite");
        assert_eq!(strings(&batches, 7), pg_texts(&db, "SELECT to_jsonb(r)::text FROM t").await, "range");
        // inet as Postgres prints it (its output function): a host without
        // `/32` (which `::text` would add), a network with its mask.
        let ips = strings(&batches, 8);
        assert_eq!(
            ips,
            pg_texts(&db, "SELECT CASE WHEN ip IS NOT NULL THEN format('%s', ip) END FROM t").await,
            "inet"
        );
        let ids = pg_texts(&db, "SELECT id::text FROM t").await;
        let ip_of = |id: &str| ips[ids.iter().position(|i| i.as_deref() == Some(id)).unwrap()].clone();
        assert_eq!(ip_of("3"), Some("10.1.3.3".into()));
        assert_eq!(ip_of("7"), Some("::7".into()));
        assert_eq!(ip_of("1"), Some("10.0.1.1/24".into()));
        assert_eq!(strings(&batches, 9), pg_texts(&db, "SELECT tz::text FROM t").await, "timetz");
        assert_eq!(decimals(&batches, 10), pg_texts(&db, "SELECT m::numeric::text FROM t").await, "money");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn infinite_values_are_counted_or_fail_with_the_key() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(
            "CREATE TABLE t (id text PRIMARY KEY, d date, ts timestamptz, amount numeric(10,2));
             INSERT INTO t VALUES ('a', 'infinity', now(), 1), ('b', '2020-01-01', '-infinity', 'NaN'),
                                  ('c', '2020-01-01', now(), 2.5), ('d', '-infinity', 'infinity', 'NaN');",
        )
        .await;
        let source = PostgresSource::from_url("src", &db.url).unwrap();
        let table = spec(&source, "public.t").await;
        let (batches, stats) = snapshot(&source, &table, OnUnrepresentable::Report, 100).await.unwrap();
        assert_eq!(stats.rows, 4);
        let counts: Vec<(String, u64, Vec<String>)> =
            stats.unrepresentable.iter().map(|u| (u.column.clone(), u.count, u.sample_keys.clone())).collect();
        assert_eq!(
            counts,
            vec![
                ("d".into(), 1, vec!["id=\"a\"".into()]),
                ("ts".into(), 1, vec!["id=\"b\"".into()]),
                ("amount".into(), 2, vec!["id=\"b\"".into(), "id=\"d\"".into()]),
                ("d".into(), 1, vec!["id=\"d\"".into()]),
                ("ts".into(), 1, vec!["id=\"d\"".into()]),
            ]
        );
        let b = &batches[0];
        assert_eq!(b.column(1).null_count(), 2);
        assert_eq!(b.column(2).null_count(), 2);
        assert_eq!(b.column(3).null_count(), 2);
        assert_eq!(b.column(3).as_primitive::<Decimal128Type>().value(2), 250);

        let e = snapshot(&source, &table, OnUnrepresentable::Fail, 100).await.unwrap_err();
        assert_eq!(e.kind(), simplyload_core::ErrorKind::Data);
        assert!(e.to_string().contains("column d of the row with id=\"a\": date is infinity"), "{e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn schema_change_between_plan_and_read_is_a_stale_plan() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec("CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 1);").await;
        let source = PostgresSource::from_url("src", &db.url).unwrap();
        let table = spec(&source, "public.t").await;
        db.exec("ALTER TABLE t ALTER COLUMN v TYPE text").await;
        let e = snapshot(&source, &table, OnUnrepresentable::Report, 100).await.unwrap_err();
        assert_eq!(e.kind(), simplyload_core::ErrorKind::StalePlan);
        assert!(e.to_string().contains("column v of public.t changed type"), "{e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_are_bounded_by_bytes_for_wide_rows() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec("CREATE TABLE w (id int PRIMARY KEY, t text); INSERT INTO w SELECT g, repeat('x', 1000000) FROM generate_series(1, 40) g;").await;
        let source = PostgresSource::from_url("src", &db.url).unwrap();
        let table = spec(&source, "public.w").await;
        let (batches, stats) = snapshot(&source, &table, OnUnrepresentable::Report, 65536).await.unwrap();
        assert_eq!(stats.rows, 40);
        assert!(batches.len() >= 4, "8 MB batch limit should cut 40 MB into several batches, got {}", batches.len());
    }
}

mod catalog {
    use simplyload_core::{Source, SqlType};
    use simplyload_postgres::PostgresSource;
    use simplyload_testkit::TestPg;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn discovers_keys_domains_enums_partitions_and_awkward_names() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(
            r#"CREATE TYPE mood AS ENUM ('a', 'b');
               CREATE DOMAIN money2 AS numeric(10,2);
               CREATE DOMAIN money3 AS money2;
               CREATE SCHEMA "My Schema";
               CREATE TABLE "My Schema"."Order Items" ("Id" bigint, "line" int, m mood, amt money3, tags int[],
                                                      PRIMARY KEY ("line", "Id"));
               CREATE TABLE nokey (x text);
               CREATE TABLE parted (id int, at date) PARTITION BY RANGE (at);
               CREATE TABLE parted_2024 PARTITION OF parted FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
               INSERT INTO parted SELECT g, '2024-05-01' FROM generate_series(1, 100) g;
               ANALYZE parted_2024;
               CREATE VIEW v AS SELECT 1 AS one;"#,
        )
        .await;
        let source = PostgresSource::from_url("src", &db.url).unwrap();
        let catalog = source.discover(&simplyload_core::Selection::all()).await.unwrap();
        assert_eq!(catalog.database, db.name);
        let names: Vec<String> = catalog.tables.iter().map(|t| t.name.to_string()).collect();
        assert_eq!(names, vec![r#""My Schema"."Order Items""#, "public.nokey", "public.parted", "public.v"]);
        let oi = &catalog.tables[0];
        assert_eq!(oi.primary_key, vec!["line", "Id"]);
        let types: Vec<(String, SqlType)> = oi.columns.iter().map(|c| (c.type_name.clone(), c.sql_type)).collect();
        assert_eq!(
            types,
            vec![
                ("bigint".into(), SqlType::Int64),
                ("integer".into(), SqlType::Int32),
                ("mood".into(), SqlType::Text),
                ("money3".into(), SqlType::Decimal { precision: 10, scale: 2 }),
                ("integer[]".into(), SqlType::Json),
            ]
        );
        assert!(catalog.tables[1].primary_key.is_empty());
        assert_eq!(catalog.tables[2].kind, "partitioned table");
        assert_eq!(catalog.tables[2].estimated_rows, Some(100));
        assert_eq!(catalog.tables[3].kind, "view");
    }
}

mod access {
    use simplyload_core::{ErrorKind, Source, StreamName};
    use simplyload_postgres::PostgresSource;
    use simplyload_testkit::TestPg;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wrong_password_is_an_auth_error_without_the_password() {
        let pg = TestPg::start();
        let db = pg.database().await;
        db.role("reader", "right-password").await;
        let source = PostgresSource::from_url("app", &db.url_as("reader", "wr0ng-s3cret")).unwrap();
        let e = source.discover(&simplyload_core::Selection::all()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
        let text = format!("{e} {e:?}");
        assert!(text.contains("password authentication failed for user \"reader\""), "{text}");
        assert!(text.contains("sources.app.url"), "{text}");
        assert!(!text.contains("wr0ng-s3cret"), "{text}");
        let report = source.check(&[StreamName::new("public", "t")]).await.unwrap();
        assert!(!report.ok());
        assert!(report.items[0].detail.contains("password authentication failed"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn missing_grants_print_the_sql_that_fixes_them() {
        let pg = TestPg::start();
        let db = pg.database().await;
        db.exec(
            r#"CREATE SCHEMA shop; CREATE TABLE shop."Orders" (id int PRIMARY KEY); CREATE TABLE public.ok (id int);"#,
        )
        .await;
        db.role("reader", "pw").await;
        db.exec("GRANT SELECT ON public.ok TO reader").await;
        let source = PostgresSource::from_url("app", &db.url_as("reader", "pw")).unwrap();
        let report = source
            .check(&[
                StreamName::new("shop", "Orders"),
                StreamName::new("public", "ok"),
                StreamName::new("public", "gone"),
            ])
            .await
            .unwrap();
        let items: Vec<(bool, &str, Option<&str>)> =
            report.items.iter().map(|i| (i.ok, i.what.as_str(), i.fix_sql.as_deref())).collect();
        assert!(items[0].0, "connect");
        assert_eq!(
            items[1],
            (
                false,
                r#"SELECT on shop."Orders""#,
                Some(
                    "GRANT USAGE ON SCHEMA \"shop\" TO \"reader\";\nGRANT SELECT ON \"shop\".\"Orders\" TO \"reader\";"
                )
            )
        );
        assert_eq!(items[2], (true, "SELECT on public.ok", None));
        assert!(!items[3].0);
        assert!(report.items[3].detail.contains("does not exist"));

        // Reading without the grant fails with the same fix.
        let table =
            super::support::spec(&PostgresSource::from_url("admin", &db.url).unwrap(), r#"shop."Orders""#).await;
        let e = super::support::snapshot(&source, &table, simplyload_core::config::OnUnrepresentable::Report, 10)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Permission, "{e}");
        assert!(e.hint().unwrap().contains("GRANT SELECT ON \"shop\".\"Orders\" TO \"reader\""), "{e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn row_level_security_never_hides_rows_silently() {
        let pg = TestPg::start();
        let db = pg.database().await;
        db.exec(
            "CREATE TABLE t (id int PRIMARY KEY, owner text); INSERT INTO t VALUES (1, 'a'), (2, 'b');
             ALTER TABLE t ENABLE ROW LEVEL SECURITY; CREATE POLICY only_a ON t USING (owner = 'a');",
        )
        .await;
        db.role("reader", "pw").await;
        db.exec("GRANT SELECT ON t TO reader").await;
        let source = PostgresSource::from_url("app", &db.url_as("reader", "pw")).unwrap();
        let report = source.check(&[StreamName::new("public", "t")]).await.unwrap();
        assert_eq!(report.items[1].fix_sql.as_deref(), Some("ALTER ROLE \"reader\" BYPASSRLS;"));
        let table = super::support::spec(&source, "public.t").await;
        let e = super::support::snapshot(&source, &table, simplyload_core::config::OnUnrepresentable::Report, 10)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("row-level security"), "{e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unreachable_server_is_transient() {
        let source = PostgresSource::from_url("app", "postgres://u:p@127.0.0.1:1/db?sslmode=disable").unwrap();
        let e = source.discover(&simplyload_core::Selection::all()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
        assert!(e.hint().unwrap().contains("reachable"), "{e}");
    }
}

/// Snapshots read in CTID page ranges by several connections (issue 7).
mod parallel {
    use super::support::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use simplyload_core::config::OnUnrepresentable;
    use simplyload_core::cursor::CursorValue;
    use simplyload_core::{IncrementalRead, SnapshotRequest, Source, ValueLimits};
    use simplyload_postgres::PostgresSource;
    use simplyload_testkit::TestPg;

    fn request(
        table: &simplyload_core::TableSpec,
        parallelism: usize,
        incremental: Option<IncrementalRead>,
        batch_rows: usize,
    ) -> SnapshotRequest {
        SnapshotRequest {
            incremental,
            consistent_with: None,
            table: table.clone(),
            limits: ValueLimits::STAGING,
            on_unrepresentable: OnUnrepresentable::Report,
            batch_rows,
            batch_bytes: 8 << 20,
            parallelism,
            parallel_min_bytes: 0,
            resumable: false,
            resume: None,
        }
    }

    async fn ids(
        source: &PostgresSource,
        table: &simplyload_core::TableSpec,
        parallelism: usize,
        incremental: Option<IncrementalRead>,
    ) -> (Vec<i64>, u64) {
        read_ids(source, request(table, parallelism, incremental, 997)).await
    }

    async fn read_ids(source: &PostgresSource, req: SnapshotRequest) -> (Vec<i64>, u64) {
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let s = source.clone();
        let reader = tokio::spawn(async move { s.read_snapshot(req, tx).await });
        let mut out = Vec::new();
        while let Some(b) = rx.recv().await {
            let a = b.batch.column(0).as_primitive::<Int64Type>();
            out.extend((0..a.len()).map(|i| a.value(i)));
        }
        let stats = reader.await.unwrap().unwrap();
        out.sort_unstable();
        (out, stats.rows)
    }

    /// Every row exactly once, whatever the number of ranges; rows written
    /// while the ranges are read are not seen (one snapshot); the last range
    /// is open ended; an incremental filter applies in every range.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn page_ranges_read_every_row_once_in_one_snapshot() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(
            "CREATE TABLE p (id bigint PRIMARY KEY, pad text, at timestamptz NOT NULL);
             INSERT INTO p SELECT g, repeat('p', g % 300), '2024-01-01'::timestamptz + g * interval '1 second'
             FROM generate_series(1, 30000) g;
             DELETE FROM p WHERE id % 7 = 0;
             ANALYZE p;",
        )
        .await;
        let pages: i32 =
            db.client.query_one("SELECT relpages FROM pg_class WHERE relname = 'p'", &[]).await.unwrap().get(0);
        assert!(pages > 16, "the table spans enough pages for 8 ranges: {pages}");
        let expected: Vec<i64> = (1..=30000).filter(|i| i % 7 != 0).collect();
        let source = PostgresSource::from_url("src", &db.url).unwrap();
        let table = spec(&source, "public.p").await;
        for n in [1, 2, 3, 8] {
            let (got, rows) = ids(&source, &table, n, None).await;
            assert_eq!(rows as usize, expected.len(), "parallelism {n}");
            assert_eq!(got, expected, "parallelism {n}");
        }
        // Below the size threshold: one piece, same rows.
        let small = SnapshotRequest { parallel_min_bytes: u64::MAX, ..request(&table, 4, None, 997) };
        assert_eq!(read_ids(&source, small).await.0, expected);

        let from = IncrementalRead {
            column: "at".into(),
            sql_type: simplyload_core::SqlType::TimestampTz,
            from: Some(CursorValue::Micros { value: 1_704_085_200_000_000 }), // 2024-01-01 05:00:00 UTC
        };
        let (got, _) = ids(&source, &table, 3, Some(from)).await;
        let want: Vec<i64> = expected.iter().copied().filter(|i| *i >= 18000).collect();
        assert_eq!(got, want);

        // Rows added by another session after the snapshot began are not read,
        // even if they land past the last range's first page.
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let req = request(&table, 3, None, 500);
        let s = source.clone();
        let reader = tokio::spawn(async move { s.read_snapshot(req, tx).await });
        let first = rx.recv().await.unwrap();
        db.client
            .batch_execute("INSERT INTO p SELECT g, repeat('q', 500), now() FROM generate_series(40001, 42000) g; DELETE FROM p WHERE id = 1;")
            .await
            .unwrap();
        let mut n = first.batch.num_rows();
        while let Some(b) = rx.recv().await {
            n += b.batch.num_rows();
        }
        reader.await.unwrap().unwrap();
        assert_eq!(n, expected.len());
    }

    /// A resumable read: the ids of every batch, and the progress sent
    /// after each chunk with how many ids came before it.
    async fn resumable(
        source: &PostgresSource,
        table: &simplyload_core::TableSpec,
        from: Option<serde_json::Value>,
    ) -> (Vec<i64>, Vec<(usize, serde_json::Value)>) {
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let req = SnapshotRequest { resumable: true, resume: from, ..request(table, 2, None, 997) };
        let s = source.clone();
        let reader = tokio::spawn(async move { s.read_snapshot(req, tx).await });
        let (mut ids, mut marks) = (Vec::new(), Vec::new());
        while let Some(b) = rx.recv().await {
            let a = b.batch.column(0).as_primitive::<Int64Type>();
            ids.extend((0..a.len()).map(|i| a.value(i)));
            if let Some(p) = b.progress {
                assert_eq!(b.batch.num_rows(), 0, "progress comes in a batch of its own");
                marks.push((ids.len(), p));
            }
        }
        let stats = reader.await.unwrap().unwrap();
        assert_eq!(stats.rows as usize, ids.len());
        (ids, marks)
    }

    /// A resumable read sends where it stands after every chunk of pages;
    /// going on from there in a newer snapshot reads the pages not read and,
    /// from those read, only rows written since; after a rewrite
    /// (VACUUM FULL) it reads everything.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_resumable_read_goes_on_from_its_progress() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        db.exec(
            "CREATE TABLE r (id bigint PRIMARY KEY, pad text, at timestamptz NOT NULL);
             INSERT INTO r SELECT g, repeat('r', 100), now() FROM generate_series(1, 20000) g;
             ANALYZE r;",
        )
        .await;
        db.settle_older_transactions().await;
        let source = PostgresSource::from_url("src", &db.url).unwrap();
        let table = spec(&source, "public.r").await;
        let expected: Vec<i64> = (1..=20000).collect();
        let (sent_order, marks) = resumable(&source, &table, None).await;
        let mut all = sent_order.clone();
        all.sort_unstable();
        assert!(all == expected, "every row once: {} rows", all.len());
        assert!(marks.len() >= 8, "progress after each chunk of each range: {}", marks.len());
        let last = &marks.last().unwrap().1;
        assert!(last["ranges"].as_array().unwrap().iter().all(|r| r["done"] == true), "{last}");

        // Stopped after the third chunk: what was sent before it, plus the
        // rest read now, is every row; the rows before it are not read again.
        let (sent, progress) = marks[2].clone();
        let before: std::collections::BTreeSet<i64> = sent_order[..sent].iter().copied().collect();
        let (rest, _) = resumable(&source, &table, Some(progress.clone())).await;
        let mut union: Vec<i64> = before.iter().copied().chain(rest.iter().copied()).collect();
        union.sort_unstable();
        union.dedup();
        assert!(
            union == expected,
            "{} rows sent before the progress and {} after make {} of {}",
            before.len(),
            rest.len(),
            union.len(),
            expected.len()
        );
        assert!(rest.len() + 1000 < expected.len(), "the pages read are skipped: {} of {}", rest.len(), expected.len());

        // Rows of the pages read, written since: read again wherever they are now.
        let touched: Vec<i64> = before.iter().copied().step_by(97).collect();
        let list = touched.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        db.exec(&format!("UPDATE r SET pad = repeat('s', 300) WHERE id IN ({list})")).await;
        let (rest, _) = resumable(&source, &table, Some(progress.clone())).await;
        for id in &touched {
            assert!(rest.contains(id), "row {id}, written since, is read again");
        }

        // A rewrite moves every row: everything is read.
        db.exec("VACUUM FULL r").await;
        let (mut again, _) = resumable(&source, &table, Some(progress.clone())).await;
        again.sort_unstable();
        assert!(again == expected, "after VACUUM FULL: {} of {}", again.len(), expected.len());

        // A materialized view cannot be locked: it is read in one piece,
        // with nothing to go on from.
        db.exec("CREATE MATERIALIZED VIEW rm AS SELECT * FROM r; ANALYZE rm;").await;
        let view = spec(&source, "public.rm").await;
        let (mut rows, marks) = resumable(&source, &view, Some(progress)).await;
        rows.sort_unstable();
        assert!(rows == expected, "the materialized view: {} of {}", rows.len(), expected.len());
        assert!(marks.iter().all(|(_, p)| p.is_null()), "{marks:?}");
    }
}
