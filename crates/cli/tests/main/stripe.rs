//! The Stripe source against localstripe (DESIGN.md §10): the first listing
//! across many pages, then updates, deletes and cancellations through the
//! events feed, each sync compared with a full listing of the server.

use super::support::*;
use serde_json::Value;
use simplyload_testkit::localstripe::{KEY, LocalStripe};
use std::collections::BTreeMap;
use std::path::Path;

/// Writes a config with one Stripe source (pages of 3 objects, so every
/// stream spans many pages; no settle lag: localstripe's events list is
/// consistent at once).
fn stripe_config(dir: &Path, server: &LocalStripe, streams: &[&str]) {
    stripe_config_at(dir, &server.base_url(), streams, "");
}

fn stripe_config_at(dir: &Path, base_url: &str, streams: &[&str], extra_pipeline: &str) {
    let streams: String = streams.iter().map(|s| format!("      - {s}\n")).collect();
    std::fs::write(
        dir.join("simplyload.yaml"),
        format!(
            "sources:\n  stripe:\n    type: stripe\n    api_key: ${{STRIPE_API_KEY}}\n    base_url: {base_url}\n    page_size: 3\n    settle_lag: 0s\n\
             destinations:\n  local:\n    type: duckdb\n    path: warehouse.duckdb\n\
             pipelines:\n  billing:\n    source: stripe\n    destination: local\n    mode: cdc\n{extra_pipeline}    streams:\n{streams}"
        ),
    )
    .unwrap();
}

async fn run(dir: &Path, args: &[&str], key: &str) -> Run {
    simplyload(dir, args, &[("STRIPE_API_KEY", key)]).await
}

/// A sync, once Stripe's clock has moved past what came before (with no
/// settle lag a window ends at the current second).
async fn sync(dir: &Path) -> Value {
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = run(dir, &["sync", "--json"], KEY).await;
    r.ok();
    reports(&r)
}

/// Seeds customers, a product and plan, cards, charges, a refund and
/// subscriptions (which make invoices); returns the customer ids.
fn seed(s: &LocalStripe, customers: usize) -> Vec<String> {
    let ids: Vec<String> = (0..customers)
        .map(|i| {
            let name = format!("Customer {i}");
            let email = format!("c{i}@example.com");
            s.post("/v1/customers", &[("name", &name), ("email", &email), ("metadata[n]", &i.to_string())])["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    s.post("/v1/products", &[("name", "Widget")]);
    s.post(
        "/v1/plans",
        &[("id", "basic"), ("amount", "1000"), ("currency", "usd"), ("interval", "month"), ("product[name]", "Basic")],
    );
    for (i, customer) in ids.iter().take(4).enumerate() {
        let pm = card(s, customer);
        let charge = s.post(
            "/v1/charges",
            &[("amount", &(1500 + i).to_string()), ("currency", "usd"), ("source", &pm), ("customer", customer)],
        );
        if i == 0 {
            s.post("/v1/refunds", &[("charge", charge["id"].as_str().unwrap()), ("amount", "500")]);
        }
        s.post(&format!("/v1/customers/{customer}"), &[("invoice_settings[default_payment_method]", &pm)]);
        s.post("/v1/subscriptions", &[("customer", customer), ("items[0][plan]", "basic")]);
    }
    ids
}

/// A card attached to a customer.
fn card(s: &LocalStripe, customer: &str) -> String {
    let pm = s.post(
        "/v1/payment_methods",
        &[
            ("type", "card"),
            ("card[number]", "4242424242424242"),
            ("card[exp_month]", "12"),
            ("card[exp_year]", "2030"),
            ("card[cvc]", "123"),
        ],
    );
    let id = pm["id"].as_str().unwrap().to_owned();
    s.post(&format!("/v1/payment_methods/{id}/attach"), &[("customer", customer)]);
    id
}

/// A stream's rows in the destination: id → (deleted, the given columns as text).
fn table(dir: &Path, stream: &str, columns: &[&str]) -> BTreeMap<String, (bool, Vec<Option<String>>)> {
    let cols: String = columns.iter().map(|c| format!(", CAST({c} AS VARCHAR)")).collect();
    duck(dir, &format!("SELECT id, CAST(_simplyload_deleted AS VARCHAR){cols} FROM simplyload.stripe_{stream}"))
        .into_iter()
        .map(|mut r| {
            let id = r.remove(0).unwrap();
            let deleted = r.remove(0).as_deref() == Some("true");
            (id, (deleted, r))
        })
        .collect()
}

/// The server's objects as the destination should hold them: each live
/// object with the given fields as text.
fn listing(s: &LocalStripe, path: &str, fields: &[&str]) -> BTreeMap<String, Vec<Option<String>>> {
    s.list_all(path)
        .into_iter()
        .map(|o| {
            let values = fields
                .iter()
                .map(|f| match &o[*f] {
                    Value::Null => None,
                    Value::String(t) => Some(t.clone()),
                    other => Some(other.to_string()),
                })
                .collect();
            (o["id"].as_str().unwrap().to_owned(), values)
        })
        .collect()
}

/// The destination holds exactly the server's live objects (with these
/// fields' values), and the ids in `deleted` flagged deleted.
fn assert_exact(dir: &Path, s: &LocalStripe, stream: &str, path: &str, fields: &[&str], deleted: &[String]) {
    let want = listing(s, path, fields);
    let have = table(dir, stream, fields);
    let live: BTreeMap<String, Vec<Option<String>>> =
        have.iter().filter(|(_, (d, _))| !d).map(|(k, (_, v))| (k.clone(), v.clone())).collect();
    assert_eq!(live, want, "{stream}: live rows differ from the server's listing");
    for id in deleted {
        assert!(have.get(id).is_some_and(|(d, _)| *d), "{stream}: {id} should be flagged deleted");
    }
    assert_eq!(have.len(), want.len() + deleted.len(), "{stream}: no other rows");
}

const STREAMS: &[&str] = &[
    "customers",
    "products",
    "subscriptions",
    "invoices",
    "payment_intents",
    "charges",
    "refunds",
    "balance_transactions",
    "events",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_then_events_keep_every_stream_exact() {
    let s = LocalStripe::start();
    let ids = seed(&s, 10);
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    stripe_config(dir, &s, STREAMS);

    let first = sync(dir).await;
    let customers =
        |r: &Value| r[0]["streams"].as_array().unwrap().iter().find(|x| x["stream"] == "customers").cloned();
    assert_eq!(customers(&first).unwrap()["changes"]["inserted"], 10, "{first}");
    let fields = ["name", "email"];
    assert_exact(dir, &s, "customers", "/v1/customers", &fields, &[]);
    assert_exact(dir, &s, "subscriptions", "/v1/subscriptions?status=all", &["status", "customer"], &[]);
    assert_exact(dir, &s, "charges", "/v1/charges", &["amount", "customer"], &[]);
    assert_exact(dir, &s, "refunds", "/v1/refunds", &["amount", "charge"], &[]);
    assert_exact(dir, &s, "invoices", "/v1/invoices", &["status", "customer"], &[]);
    assert_exact(dir, &s, "balance_transactions", "/v1/balance_transactions", &["amount"], &[]);
    assert_exact(dir, &s, "events", "/v1/events", &["type"], &[]);
    let raw = duck(
        dir,
        &format!("SELECT _raw, _stripe_api_version FROM simplyload.stripe_customers WHERE id = '{}'", ids[1]),
    );
    let raw: Value = serde_json::from_str(raw[0][0].as_deref().unwrap()).unwrap();
    assert_eq!(raw["email"], "c1@example.com", "the whole object is in _raw");

    // Changes between syncs: an update, a delete, a new customer created
    // and updated in the same second, a cancellation.
    s.post(&format!("/v1/customers/{}", ids[2]), &[("name", "Renamed")]);
    s.ok("DELETE", &format!("/v1/customers/{}", ids[3]), &[]);
    let new = s.post("/v1/customers", &[("name", "New"), ("email", "new@example.com")]);
    let new_id = new["id"].as_str().unwrap().to_owned();
    s.post(&format!("/v1/customers/{new_id}"), &[("name", "New, renamed at once")]);
    let subs = s.list_all("/v1/subscriptions");
    let canceled = subs[0]["id"].as_str().unwrap().to_owned();
    s.ok("DELETE", &format!("/v1/subscriptions/{canceled}"), &[]);
    // A charge and a refund, which localstripe makes no events for: the
    // listing by `created` over the window brings them.
    let pm = card(&s, &ids[5]);
    let charge =
        s.post("/v1/charges", &[("amount", "777"), ("currency", "usd"), ("source", &pm), ("customer", &ids[5])]);
    s.post("/v1/refunds", &[("charge", charge["id"].as_str().unwrap()), ("amount", "77")]);

    let second = sync(dir).await;
    assert!(second[0]["error"].is_null(), "{second}");
    let deleted = vec![ids[3].clone()];
    assert_exact(dir, &s, "customers", "/v1/customers", &fields, &deleted);
    let gone = table(dir, "customers", &["name"]);
    assert_eq!(gone[&ids[3]].1[0].as_deref(), Some("Customer 3"), "a deleted row keeps its last values");
    assert_eq!(gone[&new_id].1[0].as_deref(), Some("New, renamed at once"), "the newer event of one second wins");
    assert_exact(dir, &s, "subscriptions", "/v1/subscriptions?status=all", &["status", "customer"], &[]);
    let sub = table(dir, "subscriptions", &["status"]);
    assert_eq!(sub[&canceled], (false, vec![Some("canceled".to_owned())]), "a cancellation is not a delete");
    assert_exact(dir, &s, "events", "/v1/events", &["type"], &[]);
    assert_exact(dir, &s, "charges", "/v1/charges", &["amount", "customer"], &[]);
    assert_exact(dir, &s, "refunds", "/v1/refunds", &["amount", "charge"], &[]);
    assert_exact(dir, &s, "balance_transactions", "/v1/balance_transactions", &["amount"], &[]);

    // An idle sync changes nothing.
    let contents = "SELECT id, _raw, _simplyload_deleted FROM simplyload.stripe_customers ORDER BY id";
    let before = duck(dir, contents);
    let third = sync(dir).await;
    for st in third[0]["streams"].as_array().unwrap() {
        let c = &st["changes"];
        assert!(c.is_null() || (c["inserted"] == 0 && c["updated"] == 0 && c["deleted"] == 0), "{st}");
    }
    assert_eq!(duck(dir, contents), before);
    assert_exact(dir, &s, "customers", "/v1/customers", &fields, &deleted);
}

/// Events whose object has no id or is of a type SimplyLoad does not sync
/// are counted in the report, and the sync succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_that_cannot_be_routed_are_counted() {
    let s = LocalStripe::start();
    s.post("/v1/customers", &[("name", "A")]);
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    stripe_config(dir, &s, &["customers"]);
    sync(dir).await;
    // A plan (not synced) and a balance notice (no object id).
    s.post(
        "/v1/plans",
        &[("id", "p"), ("amount", "5"), ("currency", "usd"), ("interval", "month"), ("product[name]", "P")],
    );
    s.ok("GET", "/v1/balance", &[]);
    s.post("/v1/customers", &[("name", "B")]);
    let r = sync(dir).await;
    let skipped = &r[0]["skipped_changes"];
    assert_eq!(skipped["plan.created: SimplyLoad does not sync plan objects"], 1, "{r}");
    assert_eq!(skipped["balance.available: its object has no id"], 1, "{r}");
    assert_eq!(skipped["product.created: stream `products` is not selected"], 1, "{r}");
    assert_eq!(table(dir, "customers", &["name"]).len(), 2);
}

/// Keys localstripe refuses, a publishable key, and an endpoint the server
/// does not have: each fails with the thing named and nothing loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_keys_and_missing_endpoints_are_named() {
    let s = LocalStripe::start();
    s.post("/v1/customers", &[("name", "A")]);
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    stripe_config(dir, &s, &["customers", "prices"]);

    let check = run(dir, &["check", "billing"], "rk_test_refused").await;
    assert_ne!(check.code, Some(0));
    assert!(check.all().contains("API key") && check.all().contains("Stripe refused the API key"), "{}", check.all());
    assert!(!check.all().contains("rk_test_refused"), "the key never shows: {}", check.all());

    let publishable = run(dir, &["sync"], "pk_test_123").await;
    assert_ne!(publishable.code, Some(0));
    assert!(publishable.all().contains("restricted"), "{}", publishable.all());

    // localstripe has no /v1/prices: the stream fails with its name, never skipped.
    let r = run(dir, &["sync", "--json"], KEY).await;
    assert_ne!(r.code, Some(0), "{}", r.all());
    assert!(r.all().contains("prices"), "{}", r.all());
    assert!(duck(dir, "SELECT 1 FROM information_schema.tables WHERE table_name = 'stripe_prices'").is_empty());
}

/// Random SIGKILLs during the first listing (read in parts) and during
/// event syncs, while customers are created, renamed and deleted: after a
/// clean sync the destination equals the server's listing, deletes flagged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sigkills_lose_and_double_nothing() {
    let s = std::sync::Arc::new(LocalStripe::start());
    let first: Vec<String> = (0..30)
        .map(|i| s.post("/v1/customers", &[("name", &format!("c{i}"))])["id"].as_str().unwrap().to_owned())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    stripe_config_at(dir, &s.base_url(), &["customers", "events"], "    snapshot_part_rows: 6\n");
    // Changes go on while syncs are killed.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mutator = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut live = first;
            let mut deleted = Vec::new();
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                i += 1;
                match i % 4 {
                    0 if live.len() > 5 => {
                        let id = live.remove((i as usize * 7) % live.len());
                        s.ok("DELETE", &format!("/v1/customers/{id}"), &[]);
                        deleted.push(id);
                    }
                    1 | 2 => {
                        let id = &live[(i as usize * 13) % live.len()];
                        s.post(&format!("/v1/customers/{id}"), &[("name", &format!("renamed {i}"))]);
                    }
                    _ => live.push(
                        s.post("/v1/customers", &[("name", &format!("new {i}"))])["id"].as_str().unwrap().to_owned(),
                    ),
                }
                std::thread::sleep(std::time::Duration::from_millis(60));
            }
            deleted
        })
    };
    let mut seed: u64 = 0x57_21_9e;
    let mut next = move |n: u64| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let mut kills = 0;
    for i in 0..14 {
        let failpoint =
            ["during_read", "after_part_staged", "after_staged", "during_load", "after_load", "", ""][i % 7];
        let mut sync = tokio::process::Command::new(env!("CARGO_BIN_EXE_simplyload"))
            .current_dir(dir)
            .args(["sync"])
            .env_remove("SIMPLYLOAD_CONFIG")
            .env("STRIPE_API_KEY", KEY)
            .env("SIMPLYLOAD_FAILPOINT", failpoint)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200 + next(1500))).await;
        match sync.try_wait().unwrap() {
            Some(status) if status.success() => {}
            Some(_) => kills += 1,
            None => {
                sync.kill().await.unwrap();
                kills += 1;
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let deleted = mutator.join().unwrap();
    assert!(kills >= 5, "only {kills} kills");
    sync(dir).await;
    assert_exact(dir, &s, "customers", "/v1/customers", &["name"], &deleted);
    assert_exact(dir, &s, "events", "/v1/events", &["type"], &[]);
    // Every column, `_raw` included, against a fresh listing.
    reconcile_clean(dir, "billing", &[("STRIPE_API_KEY", KEY)]).await;
}

/// Through a proxy that lists newest first and throttles: the same result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_newest_first_server_gives_the_same_copy() {
    use simplyload_testkit::stripeproxy::{Fault, StripeProxy};
    let s = LocalStripe::start();
    let ids = seed(&s, 8);
    let proxy = StripeProxy::start(
        s.port,
        vec![
            Fault::Throttle { path: "/v1/events".into(), times: 3, retry_after: Some(1), should_retry: None },
            Fault::ServerError { path: "/v1/customers".into(), times: 2, status: 502, should_retry: None },
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    stripe_config_at(dir, &proxy.base_url(), STREAMS, "");
    sync(dir).await;
    s.post(&format!("/v1/customers/{}", ids[0]), &[("name", "changed")]);
    s.ok("DELETE", &format!("/v1/customers/{}", ids[1]), &[]);
    sync(dir).await;
    assert_exact(dir, &s, "customers", "/v1/customers", &["name", "email"], &[ids[1].clone()]);
    assert_exact(dir, &s, "balance_transactions", "/v1/balance_transactions", &["amount"], &[]);
    assert_exact(dir, &s, "events", "/v1/events", &["type"], &[]);
    reconcile_clean(dir, "billing", &[("STRIPE_API_KEY", KEY)]).await;
}

/// A pipeline whose events position is older than the 30 days Stripe keeps
/// events lists every stream again, flags the rows Stripe no longer lists
/// as deleted, and says so in the report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_past_the_30_days_lists_again_and_flags_what_is_gone() {
    let s = LocalStripe::start();
    let ids: Vec<String> = (0..4)
        .map(|i| s.post("/v1/customers", &[("name", &format!("c{i}"))])["id"].as_str().unwrap().to_owned())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    stripe_config(dir, &s, &["customers"]);
    sync(dir).await;
    s.ok("DELETE", &format!("/v1/customers/{}", ids[2]), &[]);
    // The pipeline was paused for 31 days: its position is older than Stripe's events.
    let old = simplyload_stripe_position_days_ago(31);
    let state = rusqlite::Connection::open(dir.join(".simplyload/state.db")).unwrap();
    assert_eq!(state.execute("UPDATE feeds SET confirmed = ?1 WHERE pipeline = 'billing'", [&old]).unwrap(), 1);
    drop(state);
    let r = sync(dir).await;
    let warnings = r[0]["warnings"].to_string();
    assert!(warnings.contains("30 days") || warnings.contains("older"), "the report says why: {r}");
    assert_exact(dir, &s, "customers", "/v1/customers", &["name"], &[ids[2].clone()]);
}

/// A feed position `days` ago, as the state stores it.
fn simplyload_stripe_position_days_ago(days: i64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let at = now - days * 86_400;
    serde_json::json!({ "version": ((at as i128) << 32).to_string(), "token": at.to_string() }).to_string()
}

/// The N-th request fails (and every one after, as in an outage) during an
/// events sync, for several N: the sync fails, the position does not move,
/// and the next sync makes the copy exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_never_moves_the_position() {
    use simplyload_testkit::stripeproxy::{Fault, StripeProxy};
    let s = LocalStripe::start();
    let ids: Vec<String> = (0..6)
        .map(|i| s.post("/v1/customers", &[("name", &format!("c{i}"))])["id"].as_str().unwrap().to_owned())
        .collect();
    let proxy = StripeProxy::start(s.port, vec![]);
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    stripe_config_at(dir, &proxy.base_url(), &["customers", "events"], "");
    sync(dir).await;
    let position = || {
        let state = rusqlite::Connection::open(dir.join(".simplyload/state.db")).unwrap();
        state
            .query_row("SELECT confirmed FROM feeds WHERE pipeline = 'billing'", [], |r| r.get::<_, String>(0))
            .unwrap()
    };
    for (round, n) in [1usize, 2, 3, 4].into_iter().enumerate() {
        s.post(&format!("/v1/customers/{}", ids[round]), &[("name", &format!("renamed {round}"))]);
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let before = position();
        proxy.set_faults(vec![Fault::FailNth { n, sticky: true }]);
        let failed = run(dir, &["sync", "--json"], KEY).await;
        assert_ne!(failed.code, Some(0), "request {n} failed: {}", failed.all());
        assert_eq!(position(), before, "a failed sync moved the position (request {n})");
        proxy.set_faults(vec![]);
    }
    s.ok("DELETE", &format!("/v1/customers/{}", ids[5]), &[]);
    sync(dir).await;
    assert_exact(dir, &s, "customers", "/v1/customers", &["name"], &[ids[5].clone()]);
    assert_exact(dir, &s, "events", "/v1/events", &["type"], &[]);
}

/// Stripe into Snowflake (fakesnow): the same rows, `_raw` kept as it is
/// spelled, deletes flagged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_into_snowflake() {
    use simplyload_core::config::Secret;
    use simplyload_snowflake::destination::result_rows;
    use simplyload_snowflake::{Credentials, LoginOptions, Session};
    let s = LocalStripe::start();
    let ids: Vec<String> = (0..5)
        .map(|i| s.post("/v1/customers", &[("name", &format!("c{i}"))])["id"].as_str().unwrap().to_owned())
        .collect();
    let snow = simplyload_testkit::peers::Fakesnow::start();
    let admin = Session::login(LoginOptions {
        base_url: snow.base_url(),
        account: "xy12345.us-east-1".into(),
        user: "ADMIN".into(),
        role: None,
        warehouse: None,
        database: None,
        schema: None,
        credentials: Credentials::Password(Secret::new("x")),
        session_parameters: Default::default(),
        timeout: std::time::Duration::from_secs(60),
    })
    .await
    .unwrap();
    admin.query("CREATE DATABASE IF NOT EXISTS RAW_DATA", &[]).await.unwrap();
    admin.query("CREATE SCHEMA IF NOT EXISTS RAW_DATA.SIMPLYLOAD", &[]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(
        dir.join("simplyload.yaml"),
        format!(
            "sources:\n  stripe:\n    type: stripe\n    api_key: ${{STRIPE_API_KEY}}\n    base_url: {}\n    page_size: 2\n    settle_lag: 0s\n\
             destinations:\n  snow:\n    type: snowflake\n    account: xy12345.us-east-1\n    user: SIMPLYLOAD\n\
             \x20   password: ${{SNOWFLAKE_PASSWORD}}\n    role: SIMPLYLOAD\n    warehouse: SIMPLYLOAD_WH\n    base_url: {}\n\
             pipelines:\n  billing:\n    source: stripe\n    destination: snow\n    mode: cdc\n    streams: [customers, events]\n",
            s.base_url(),
            snow.base_url()
        ),
    )
    .unwrap();
    let env = [("STRIPE_API_KEY", KEY), ("SNOWFLAKE_PASSWORD", "pw")];
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    simplyload(dir, &["sync"], &env).await.ok();
    s.post(&format!("/v1/customers/{}", ids[0]), &[("name", "renamed")]);
    s.ok("DELETE", &format!("/v1/customers/{}", ids[1]), &[]);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    simplyload(dir, &["sync"], &env).await.ok();
    let rows = admin
        .query(
            "SELECT ID, NAME, \"_RAW\", _SIMPLYLOAD_DELETED FROM RAW_DATA.SIMPLYLOAD.STRIPE_CUSTOMERS ORDER BY ID",
            &[],
        )
        .await
        .unwrap();
    let rows = result_rows(&rows);
    assert_eq!(rows.len(), 5, "{rows:?}");
    let by_id = |id: &str| rows.iter().find(|r| r[0].as_deref() == Some(id)).unwrap().clone();
    assert_eq!(by_id(&ids[0])[1].as_deref(), Some("renamed"));
    let raw: Value = serde_json::from_str(by_id(&ids[0])[2].as_deref().unwrap()).unwrap();
    assert_eq!(raw["name"], "renamed", "_raw holds the object");
    assert!(matches!(by_id(&ids[1])[3].as_deref(), Some("true" | "True" | "1")), "{:?}", by_id(&ids[1]));
    let live = rows.iter().filter(|r| !matches!(r[3].as_deref(), Some("true" | "True" | "1"))).count();
    assert_eq!(live, 4);
}

/// `mode: full_refresh` lists everything each time (a deleted object is
/// gone); `mode: incremental` is refused with the mode that works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_modes_replace_or_are_refused_with_the_fix() {
    let s = LocalStripe::start();
    let ids: Vec<String> = (0..4)
        .map(|i| s.post("/v1/customers", &[("name", &format!("c{i}"))])["id"].as_str().unwrap().to_owned())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let config = |mode: &str| {
        let text = std::fs::read_to_string(dir.join("simplyload.yaml")).unwrap();
        let start = text.find("mode: ").unwrap();
        let end = start + text[start..].find('\n').unwrap();
        std::fs::write(dir.join("simplyload.yaml"), format!("{}mode: {mode}{}", &text[..start], &text[end..])).unwrap();
    };
    stripe_config(dir, &s, &["customers"]);
    config("full_refresh");
    sync(dir).await;
    s.ok("DELETE", &format!("/v1/customers/{}", ids[0]), &[]);
    sync(dir).await;
    let have = table(dir, "customers", &["name"]);
    assert_eq!(have.len(), 3, "a full refresh replaces: {have:?}");

    config("incremental");
    let r = run(dir, &["sync"], KEY).await;
    assert_ne!(r.code, Some(0));
    assert!(r.all().contains("mode: cdc"), "the error names the mode that works: {}", r.all());
}

/// A stream added to a running pipeline is listed on its own start and then
/// follows the pipeline's events, while the others go on where they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_added_later_joins_the_feed() {
    let s = LocalStripe::start();
    let ids = seed(&s, 4);
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    stripe_config(dir, &s, &["customers"]);
    sync(dir).await;
    s.post(&format!("/v1/customers/{}", ids[0]), &[("name", "before the join")]);
    stripe_config(dir, &s, &["customers", "subscriptions", "invoices"]);
    sync(dir).await;
    let subs = s.list_all("/v1/subscriptions");
    s.ok("DELETE", &format!("/v1/subscriptions/{}", subs[0]["id"].as_str().unwrap()), &[]);
    sync(dir).await;
    assert_exact(dir, &s, "customers", "/v1/customers", &["name"], &[]);
    assert_exact(dir, &s, "subscriptions", "/v1/subscriptions?status=all", &["status", "customer"], &[]);
    assert_exact(dir, &s, "invoices", "/v1/invoices", &["status", "customer"], &[]);
}
