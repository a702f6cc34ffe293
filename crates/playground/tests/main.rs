//! The playground against a real Postgres: the activity generator's totals
//! checked against the database, the baseline's determinism, validation's
//! numbers against direct SQL, and the settings' error messages.

mod support {
    use simplyload_playground::SeedCounts;
    use simplyload_testkit::TestDb;
    use tokio_postgres::Client;

    pub async fn playground(db: &TestDb, users: u64, orders: u64, events: u64) {
        simplyload_playground::create_schema(&db.client).await.unwrap();
        simplyload_playground::seed(&db.client, SeedCounts { users, orders, events }, 11).await.unwrap();
    }

    pub async fn int(client: &Client, sql: &str) -> i64 {
        match client.query_one(sql, &[]).await {
            Ok(r) => r.get(0),
            Err(e) => panic!("{sql}: {e}: {:?}", e.as_db_error().map(|d| d.message())),
        }
    }

    /// Rows of users, orders, events, and users with `deleted_at` set.
    pub async fn snapshot(client: &Client) -> [i64; 4] {
        [
            int(client, "SELECT count(*) FROM users").await,
            int(client, "SELECT count(*) FROM orders").await,
            int(client, "SELECT count(*) FROM events").await,
            int(client, "SELECT count(*) FROM users WHERE deleted_at IS NOT NULL").await,
        ]
    }

    pub async fn statuses(client: &Client) -> std::collections::BTreeMap<String, i64> {
        client
            .query("SELECT status, count(*) FROM orders GROUP BY status", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }
}

mod activity {
    use super::support::*;
    use simplyload_playground::{Activity, ActivityOptions, Rates};
    use simplyload_testkit::TestPg;
    use std::time::{Duration, Instant};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn totals_are_exact_with_hard_deletes_and_schema_changes() {
        let pg = TestPg::shared();
        let mut db = pg.database().await;
        playground(&db, 300, 1500, 3000).await;
        let before = snapshot(&db.client).await;
        let max_order = int(&db.client, "SELECT max(id) FROM orders").await;

        // Tens of changes a second of every kind.
        let rates = Rates {
            orders_per_hour: 72_000.0,
            events_per_hour: 144_000.0,
            users_per_hour: 20_000.0,
            status_updates_per_hour: 72_000.0,
            plan_changes_per_hour: 15_000.0,
            soft_deletes_per_hour: 20_000.0,
            hard_deletes_per_hour: 60_000.0,
        };
        let mut options = ActivityOptions::new(rates);
        options.duration = Some(Duration::from_secs(4));
        options.hard_deletes = true;
        options.schema_change_every = Some(Duration::from_millis(600));
        options.stats_every = Duration::from_secs(1);
        options.seed = 3;
        let mut activity = Activity::new(options);
        let (_stop_tx, mut stop) = tokio::sync::watch::channel(false);
        let mut stats = Vec::new();
        let started = Instant::now();
        activity.run(&mut db.client, &mut stop, &mut |t| stats.push(t.clone())).await.unwrap();
        let took = started.elapsed();
        let t = activity.totals().clone();
        // It ran for its duration (a lower bound: a busy machine may take longer).
        assert!(took >= Duration::from_secs(4), "{took:?}");
        assert!((3.9..=4.0).contains(&t.elapsed_seconds), "{}", t.elapsed_seconds);

        // Every total is a row count the database agrees with.
        let after = snapshot(&db.client).await;
        assert_eq!(after[0], before[0] + t.users_inserted as i64 - t.users_hard_deleted as i64, "users: {t:#?}");
        assert_eq!(after[1], before[1] + t.orders_inserted as i64 - t.orders_hard_deleted as i64, "orders: {t:#?}");
        assert_eq!(after[2], before[2] + t.events_inserted as i64 - t.events_hard_deleted as i64, "events: {t:#?}");
        // Only soft-deleted users are purged.
        assert_eq!(after[3], before[3] + t.users_soft_deleted as i64 - t.users_hard_deleted as i64, "{t:#?}");
        assert_eq!(t.status_changes.values().sum::<u64>(), t.orders_updated);

        // All kinds happened, at about the configured pace (Poisson: within
        // five standard deviations).
        let near = |got: u64, per_hour: f64| {
            let want = per_hour * t.elapsed_seconds / 3600.0;
            (got as f64 - want).abs() < 5.0 * want.sqrt()
        };
        assert!(near(t.orders_inserted, 72_000.0), "{t:#?}");
        assert!(near(t.events_inserted, 144_000.0), "{t:#?}");
        assert!(near(t.users_inserted, 20_000.0), "{t:#?}");
        for (what, n) in [
            ("status", t.orders_updated),
            ("plan", t.users_updated),
            ("soft delete", t.users_soft_deleted),
            ("event delete", t.events_hard_deleted),
            ("order delete", t.orders_hard_deleted),
        ] {
            assert!(n > 0, "no {what}: {t:#?}");
        }
        assert!(t.transactions > 20, "{t:#?}");
        assert_eq!(t.transactions_rolled_back, 0);

        // Columns: one every 600 ms, each in the catalog, nullable, filled by later writes.
        assert!((4..=7).contains(&t.columns_added), "{t:#?}");
        assert_eq!(t.added_columns.len() as u64, t.columns_added);
        for c in &t.added_columns {
            let (table, column) = c.split_once('.').unwrap();
            let nullable: String = db
                .client
                .query_one(
                    "SELECT is_nullable FROM information_schema.columns
                     WHERE table_schema = 'public' AND table_name = $1 AND column_name = $2 AND column_default IS NULL",
                    &[&table, &column],
                )
                .await
                .unwrap_or_else(|e| panic!("{c} is not in information_schema: {e}"))
                .get(0);
            assert_eq!(nullable, "YES", "{c}");
        }
        let (table, column) = t.added_columns[0].split_once('.').unwrap();
        let filled = int(&db.client, &format!("SELECT count(\"{column}\") FROM {table}")).await;
        assert!(filled > 0, "{table}.{column} was never filled");

        // Soft-deleted users got no new orders.
        let late = int(
            &db.client,
            &format!(
                "SELECT count(*) FROM orders o JOIN users u ON u.id = o.user_id
                 WHERE o.id > {max_order} AND u.deleted_at < o.created_at"
            ),
        )
        .await;
        assert_eq!(late, 0);

        // Statistics every second, each a prefix of the final totals.
        assert!((3..=4).contains(&stats.len()), "{} stats calls", stats.len());
        assert!(stats.windows(2).all(|w| w[0].changes() <= w[1].changes()));
        assert!(stats.last().unwrap().changes() <= t.changes());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn status_transitions_are_exact_and_stop_is_graceful() {
        let pg = TestPg::shared();
        let mut db = pg.database().await;
        playground(&db, 200, 800, 500).await;
        let before = statuses(&db.client).await;
        let rows_before = snapshot(&db.client).await;

        let mut rates = Rates::derived(36_000.0, 36_000.0);
        rates.status_updates_per_hour = 100_000.0;
        let mut options = ActivityOptions::new(rates);
        options.seed = 9;
        let mut activity = Activity::new(options);
        let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(2500)).await;
            let _ = stop_tx.send(true);
            Instant::now()
        });
        activity.run(&mut db.client, &mut stop, &mut |_| {}).await.unwrap();
        let returned = Instant::now();
        let stopped_at = stopper.await.unwrap();
        assert!(returned.duration_since(stopped_at) < Duration::from_millis(500), "stop took too long");
        let t = activity.totals().clone();
        assert!(t.orders_updated > 20, "{t:#?}");

        // Per status: what was there, plus new (pending) orders, plus what
        // moved in, minus what moved out — exactly.
        let after = statuses(&db.client).await;
        let mut expected = before.clone();
        *expected.entry("pending".into()).or_default() += t.orders_inserted as i64;
        for (change, n) in &t.status_changes {
            let (from, to) = change.split_once("->").unwrap();
            assert!(
                matches!(
                    (from, to),
                    ("pending", "paid")
                        | ("pending", "cancelled")
                        | ("paid", "shipped")
                        | ("paid", "cancelled")
                        | ("shipped", "delivered")
                ),
                "{change}"
            );
            *expected.entry(from.into()).or_default() -= *n as i64;
            *expected.entry(to.into()).or_default() += *n as i64;
        }
        expected.retain(|_, n| *n != 0);
        assert_eq!(after, expected, "{t:#?}");

        // Without hard deletes nothing disappears.
        let rows_after = snapshot(&db.client).await;
        assert_eq!(rows_after[0], rows_before[0] + t.users_inserted as i64);
        assert_eq!(rows_after[1], rows_before[1] + t.orders_inserted as i64);
        assert_eq!(rows_after[2], rows_before[2] + t.events_inserted as i64);
        assert_eq!(rows_after[3], rows_before[3] + t.users_soft_deleted as i64);
        // Each status change touched updated_at (the trigger).
        let touched = int(
            &db.client,
            "SELECT count(*) FROM orders WHERE updated_at > now() - interval '1 minute' AND updated_at > created_at",
        )
        .await;
        assert!(touched > 0 && touched <= t.orders_updated as i64, "{touched} vs {}", t.orders_updated);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fills_columns_from_earlier_runs_and_survives_their_removal() {
        let pg = TestPg::shared();
        let mut db = pg.database().await;
        playground(&db, 100, 300, 300).await;
        // Added by an earlier run: filled by this one. Someone else's: left alone.
        db.exec("ALTER TABLE orders ADD COLUMN discount_code text; ALTER TABLE orders ADD COLUMN notes varchar(3)")
            .await;
        let before = snapshot(&db.client).await;
        let mut options = ActivityOptions::new(Rates::derived(36_000.0, 36_000.0));
        options.duration = Some(Duration::from_secs(3));
        let mut activity = Activity::new(options);
        let (_tx, mut stop) = tokio::sync::watch::channel(false);
        let other = simplyload_testkit::pg::connect(&db.url).await;
        let dropper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let filled: i64 = other.query_one("SELECT count(discount_code) FROM orders", &[]).await.unwrap().get(0);
            other.batch_execute("ALTER TABLE orders DROP COLUMN discount_code").await.unwrap();
            filled
        });
        activity.run(&mut db.client, &mut stop, &mut |_| {}).await.unwrap();
        assert!(dropper.await.unwrap() > 0, "discount_code was not filled");
        let t = activity.totals();
        let after = snapshot(&db.client).await;
        assert_eq!(after[1], before[1] + t.orders_inserted as i64, "{t:#?}");
        assert_eq!(after[0], before[0] + t.users_inserted as i64, "{t:#?}");
        assert_eq!(int(&db.client, "SELECT count(notes) FROM orders").await, 0);
        // One transaction hit the dropped column and was rolled back, uncounted;
        // orders kept coming after it.
        assert!(t.transactions_rolled_back >= 1, "{t:#?}");
        assert!(t.orders_inserted > 15, "{t:#?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_on_an_empty_schema() {
        let pg = TestPg::shared();
        let mut db = pg.database().await;
        simplyload_playground::create_schema(&db.client).await.unwrap();
        let mut options = ActivityOptions::new(Rates::derived(20_000.0, 20_000.0));
        options.duration = Some(Duration::from_millis(1500));
        options.hard_deletes = true;
        let mut activity = Activity::new(options);
        let (_tx, mut stop) = tokio::sync::watch::channel(false);
        activity.run(&mut db.client, &mut stop, &mut |_| {}).await.unwrap();
        let t = activity.totals();
        let rows = snapshot(&db.client).await;
        assert_eq!(rows[0], t.users_inserted as i64 - t.users_hard_deleted as i64);
        assert_eq!(rows[1], t.orders_inserted as i64 - t.orders_hard_deleted as i64);
        assert_eq!(rows[2], t.events_inserted as i64 - t.events_hard_deleted as i64);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn missing_tables_say_how_to_create_them() {
        let pg = TestPg::shared();
        let mut db = pg.database().await;
        let mut activity = Activity::new(ActivityOptions::new(Rates::derived(1.0, 1.0)));
        let (_tx, mut stop) = tokio::sync::watch::channel(false);
        let e = activity.run(&mut db.client, &mut stop, &mut |_| {}).await.unwrap_err();
        assert_eq!(e.kind(), simplyload_core::ErrorKind::NotFound, "{e}");
        assert!(e.hint().unwrap_or("").contains("playground seed"), "{e}");
    }
}

mod seed {
    use super::support::*;
    use simplyload_playground::SeedCounts;
    use simplyload_testkit::TestPg;

    const CONTENT: &str = "SELECT md5(string_agg(concat_ws('|', id, user_id, event_type, properties::text, session_id), ',' ORDER BY id)) FROM events";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn same_seed_same_rows_over_any_number_of_connections() {
        let pg = TestPg::shared();
        let counts = SeedCounts { users: 500, orders: 2000, events: 150_000 };
        let a = pg.database().await;
        simplyload_playground::create_schema(&a.client).await.unwrap();
        let got = simplyload_playground::seed(&a.client, counts, 5).await.unwrap();
        assert_eq!(got, counts);

        let b = pg.database().await;
        simplyload_playground::create_schema(&b.client).await.unwrap();
        let second = simplyload_testkit::pg::connect(&b.url).await;
        let got =
            simplyload_playground::seed_with_progress(&[&b.client, &second], counts, 5, &mut |_| {}).await.unwrap();
        assert_eq!(got, counts);

        let (ha, hb) =
            (a.client.query_one(CONTENT, &[]).await.unwrap(), b.client.query_one(CONTENT, &[]).await.unwrap());
        assert_eq!(ha.get::<_, String>(0), hb.get::<_, String>(0));
        assert_eq!(snapshot(&a.client).await, snapshot(&b.client).await);
        // Ids are 1..n and the sequence continues after them.
        assert_eq!(int(&b.client, "SELECT max(id) FROM events").await, 150_000);
        b.exec("INSERT INTO events (user_id, event_type) VALUES (1, 'x')").await;
        assert_eq!(int(&b.client, "SELECT max(id) FROM events").await, 150_001);
        // Time goes forward with the ids; orders refer to existing users.
        assert_eq!(
            int(&b.client, "SELECT count(*) FROM (SELECT created_at < lag(created_at) OVER (ORDER BY id) AS back FROM events) s WHERE back").await,
            0
        );
        assert_eq!(
            int(
                &b.client,
                "SELECT count(*) FROM events WHERE created_at > now() OR created_at < now() - interval '91 days'"
            )
            .await,
            0
        );

        // A different seed gives different rows.
        let c = pg.database().await;
        playground(&c, 10, 10, 150_000).await;
        let hc = c.client.query_one(CONTENT, &[]).await.unwrap();
        assert_ne!(ha.get::<_, String>(0), hc.get::<_, String>(0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn seeding_twice_appends_with_fresh_ids() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        playground(&db, 50, 100, 200).await;
        // Purged users leave gaps in the ids; new orders must still find users.
        db.exec("DELETE FROM orders WHERE user_id % 3 = 0; DELETE FROM users WHERE id % 3 = 0").await;
        let left = snapshot(&db.client).await;
        playground(&db, 50, 100, 200).await;
        assert_eq!(snapshot(&db.client).await[..3], [left[0] + 50, left[1] + 100, 400]);
        assert_eq!(int(&db.client, "SELECT count(DISTINCT id) FROM events").await, 400);
        assert_eq!(int(&db.client, "SELECT count(*) FROM orders WHERE status NOT IN ('pending', 'paid', 'shipped', 'delivered', 'cancelled')").await, 0);
    }
}

mod validate {
    use super::support::*;
    use simplyload_playground::{Activity, ActivityOptions, Rates};
    use simplyload_testkit::TestPg;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn numbers_match_direct_sql() {
        let pg = TestPg::shared();
        let mut db = pg.database().await;
        playground(&db, 400, 3000, 5000).await;
        let mut options = ActivityOptions::new(Rates::derived(36_000.0, 36_000.0));
        options.duration = Some(Duration::from_millis(1500));
        options.schema_change_every = Some(Duration::from_millis(500));
        let mut activity = Activity::new(options);
        let (_tx, mut stop) = tokio::sync::watch::channel(false);
        activity.run(&mut db.client, &mut stop, &mut |_| {}).await.unwrap();

        let v = simplyload_playground::validate(&db.client).await.unwrap();
        assert_eq!(v.tables.iter().map(|t| t.table.as_str()).collect::<Vec<_>>(), ["users", "orders", "events"]);
        for t in &v.tables {
            let name = &t.table;
            assert_eq!(t.rows, int(&db.client, &format!("SELECT count(*) FROM {name}")).await, "{name}");
            assert_eq!(
                t.created_last_hour,
                int(&db.client, &format!("SELECT count(*) FROM {name} WHERE created_at >= now() - interval '1 hour'"))
                    .await,
                "{name}"
            );
            assert_eq!(
                t.updated_last_hour,
                int(
                    &db.client,
                    &format!("SELECT count(*) FROM {name} WHERE updated_at >= now() - interval '1 hour' AND updated_at <> created_at")
                )
                .await,
                "{name}"
            );
            let soft = match name.as_str() {
                "users" => Some(int(&db.client, "SELECT count(*) FROM users WHERE deleted_at IS NOT NULL").await),
                _ => None,
            };
            assert_eq!(t.soft_deleted, soft, "{name}");
        }
        // The activity shows up in the last hour.
        let t = activity.totals();
        assert!(v.tables[1].created_last_hour >= t.orders_inserted as i64);
        assert!(v.tables[1].updated_last_hour >= 1);
        assert_eq!(v.orders_by_status, statuses(&db.client).await);
        assert_eq!(v.orders_by_status.values().sum::<i64>(), v.tables[1].rows);
        let mut added = t.added_columns.clone();
        added.sort();
        let mut listed = v.added_columns.clone();
        listed.sort();
        assert_eq!(listed, added);
        assert!(!added.is_empty());

        // JSON for machines.
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["tables"][0]["table"], "users");
        assert!(json["tables"][1]["soft_deleted"].is_null());
        assert!(json["checked_at"].as_str().unwrap().ends_with('Z'));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn missing_tables_point_at_seed() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        let e = simplyload_playground::validate(&db.client).await.unwrap_err();
        assert!(e.hint().unwrap_or("").contains("playground seed"), "{e}");
    }
}

mod config {
    use simplyload_playground::config::{Environment, Flags, Origin, PlaygroundConfig};
    use std::path::Path;
    use std::time::Duration;

    const URL: &str = "postgres://app:s3cret-pw@db.internal:5432/shop";

    fn env(vars: &[(&str, &str)], file: Option<&str>) -> (tempfile::TempDir, Environment) {
        let dir = tempfile::tempdir().unwrap();
        if let Some(text) = file {
            std::fs::write(dir.path().join(".env"), text).unwrap();
        }
        let vars = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        let e = Environment::new(vars, None, dir.path()).unwrap();
        (dir, e)
    }

    fn error(flags: &Flags, env: &Environment) -> String {
        let e = PlaygroundConfig::resolve(flags, env).unwrap_err();
        assert_eq!(e.kind(), simplyload_core::ErrorKind::Config);
        let (text, debug) = (e.to_string(), format!("{e:?}"));
        assert!(!text.contains("s3cret") && !debug.contains("s3cret"), "the password leaked: {debug}");
        text
    }

    #[test]
    fn defaults_are_the_seeds() {
        let (_d, e) = env(&[("DATABASE_URL", URL)], None);
        let c = PlaygroundConfig::resolve(&Flags::default(), &e).unwrap();
        assert_eq!(c.seed_counts, simplyload_playground::SeedCounts::DEFAULT);
        assert_eq!((c.rates.orders_per_hour, c.rates.events_per_hour), (50.0, 200.0));
        assert_eq!(c.rates.users_per_hour, 10.0);
        assert_eq!(c.duration, None);
        assert_eq!(c.database_url.target(), "app@db.internal:5432/shop");
        assert_eq!(c.database_url.origin(), &Origin::Environment);
        let debug = format!("{c:?} {}", c.database_url);
        assert!(!debug.contains("s3cret"), "{debug}");
    }

    #[test]
    fn flags_beat_environment_beats_env_file_beats_defaults() {
        let file = format!(
            "DATABASE_URL={URL}\nORDERS_PER_HOUR=10\nEVENTS_PER_HOUR=20\nINITIAL_USERS=7\nTEST_DURATION_HOURS=0.5\n"
        );
        let (_d, e) = env(&[("ORDERS_PER_HOUR", "100"), ("EVENTS_PER_HOUR", "300")], Some(&file));
        let flags = Flags { orders_per_hour: Some(1000.0), ..Flags::default() };
        let c = PlaygroundConfig::resolve(&flags, &e).unwrap();
        assert_eq!(c.rates.orders_per_hour, 1000.0); // flag
        assert_eq!(c.rates.events_per_hour, 300.0); // environment
        assert_eq!(c.seed_counts.users, 7); // .env
        assert_eq!(c.seed_counts.orders, 5000); // default
        assert_eq!(c.rates.status_updates_per_hour, 2000.0); // derived from the flag
        assert_eq!(c.duration, Some(Duration::from_secs(1800)));
        assert_eq!(c.database_url.origin(), &Origin::EnvFile(".env".into()));
        let flags = Flags { duration: Some(Duration::from_secs(30)), ..Flags::default() };
        assert_eq!(PlaygroundConfig::resolve(&flags, &e).unwrap().duration, Some(Duration::from_secs(30)));
        // Empty means unset.
        let (_d, e) = env(&[("DATABASE_URL", URL), ("TEST_DURATION_HOURS", "")], Some("TEST_DURATION_HOURS=2\n"));
        assert_eq!(PlaygroundConfig::resolve(&Flags::default(), &e).unwrap().duration, Some(Duration::from_secs(7200)));
        let (_d, e) = env(&[("DATABASE_URL", URL)], Some("TEST_DURATION_HOURS=\n"));
        assert_eq!(PlaygroundConfig::resolve(&Flags::default(), &e).unwrap().duration, None);
    }

    #[test]
    fn bad_values_name_the_variable_the_value_and_where_it_came_from() {
        let (_d, e) = env(&[("DATABASE_URL", URL)], Some("ORDERS_PER_HOUR=abc\n"));
        assert_eq!(
            error(&Flags::default(), &e).lines().next().unwrap(),
            "ORDERS_PER_HOUR=\"abc\" (from .env): not a number"
        );

        let (_d, e) = env(&[("DATABASE_URL", URL), ("EVENTS_PER_HOUR", "-5")], None);
        assert!(
            error(&Flags::default(), &e)
                .starts_with("EVENTS_PER_HOUR=\"-5\" (from the environment): must be zero or more")
        );

        let flags = Flags { orders_per_hour: Some(-1.0), ..Flags::default() };
        let (_d, e) = env(&[("DATABASE_URL", URL)], None);
        assert!(error(&flags, &e).starts_with("--orders-per-hour -1: must be zero or more"));

        let (_d, e) = env(&[("DATABASE_URL", URL), ("INITIAL_USERS", "12.5")], None);
        assert!(
            error(&Flags::default(), &e)
                .starts_with("INITIAL_USERS=\"12.5\" (from the environment): not a whole number")
        );

        let (_d, e) = env(&[("DATABASE_URL", URL), ("TEST_DURATION_HOURS", "-1")], None);
        assert!(
            error(&Flags::default(), &e)
                .starts_with("TEST_DURATION_HOURS=\"-1\" (from the environment): must be a positive number of hours")
        );

        let (_d, e) = env(&[("DATABASE_URL", URL), ("TEST_DURATION_HOURS", "5m")], None);
        assert!(error(&Flags::default(), &e).contains("not a number of hours"));

        // Several problems: all of them, at once.
        let (_d, e) = env(&[("DATABASE_URL", URL), ("INITIAL_EVENTS", "lots")], Some("ORDERS_PER_HOUR=abc\n"));
        let text = error(&Flags::default(), &e);
        assert!(text.starts_with("2 problems in the playground settings:"), "{text}");
        assert!(text.contains("INITIAL_EVENTS=\"lots\" (from the environment): not a whole number"), "{text}");
        assert!(text.contains("ORDERS_PER_HOUR=\"abc\" (from .env): not a number"), "{text}");
    }

    #[test]
    fn database_url_missing_or_malformed() {
        let (_d, e) = env(&[], Some("# nothing here\n"));
        let text = error(&Flags::default(), &e);
        assert!(text.starts_with("DATABASE_URL is not set"), "{text}");
        for how in ["--database-url", "export DATABASE_URL", ".env", "--env-file"] {
            assert!(text.contains(how), "{how}: {text}");
        }

        let (_d, e) = env(&[("DATABASE_URL", "postgres://app:s3cret@db.internal:notaport/shop")], None);
        let text = error(&Flags::default(), &e);
        assert!(
            text.starts_with("DATABASE_URL (from the environment) is not a valid Postgres connection string"),
            "{text}"
        );

        let (_d, e) = env(&[], Some("DATABASE_URL=postgres://app:s3cret@h/db?sslmode=sometimes\n"));
        let text = error(&Flags::default(), &e);
        assert!(text.starts_with("DATABASE_URL (from .env): sslmode `sometimes`"), "{text}");
    }

    #[test]
    fn env_file_problems() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.env");
        let e = Environment::new(Vec::new(), Some(&missing), Path::new("/")).unwrap_err();
        assert!(e.message().starts_with(&format!("--env-file {}: cannot read it", missing.display())), "{e}");

        let file = dir.path().join("custom.env");
        std::fs::write(&file, "ORDERS_PER_HOUR=12\nDATABASE_URL='postgres://app:s3cret@h/db'\n").unwrap();
        let e = Environment::new(Vec::new(), Some(&file), Path::new("/")).unwrap();
        let c = PlaygroundConfig::resolve(&Flags::default(), &e).unwrap();
        assert_eq!(c.rates.orders_per_hour, 12.0);
        assert_eq!(c.database_url.origin(), &Origin::EnvFile(file.display().to_string()));
        assert!(!format!("{e:?}").contains("s3cret"));

        std::fs::write(&file, "ORDERS_PER_HOUR=x\n").unwrap();
        let e = Environment::new(vec![("DATABASE_URL".into(), URL.into())], Some(&file), Path::new("/")).unwrap();
        let text = error(&Flags::default(), &e);
        assert!(text.starts_with(&format!("ORDERS_PER_HOUR=\"x\" (from {}): not a number", file.display())), "{text}");

        std::fs::write(&file, "DATABASE_URL=\"postgres://app:s3cret@h/db\nX=1\n").unwrap();
        let e = Environment::new(Vec::new(), Some(&file), Path::new("/")).unwrap_err();
        assert_eq!(e.message(), format!("{} line 1: DATABASE_URL: the closing \" is missing", file.display()));
    }
}

mod schema {
    use simplyload_testkit::TestPg;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_schema_creation_is_safe() {
        let pg = TestPg::shared();
        let db = pg.database().await;
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(simplyload_testkit::pg::connect(&db.url).await);
        }
        let results = futures::future::join_all(clients.iter().map(simplyload_playground::create_schema)).await;
        for r in results {
            r.unwrap();
        }
        // And the connections are usable afterwards (no transaction left open).
        for c in &clients {
            let n: i64 = c.query_one("SELECT count(*) FROM users", &[]).await.unwrap().get(0);
            assert_eq!(n, 0);
        }
    }
}
