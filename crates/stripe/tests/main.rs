//! The Stripe source against localstripe, without a destination: what the
//! listing and the events feed send, value by value.

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use simplyload_core::catalog::Selection;
use simplyload_core::config::{OnUnrepresentable, StripeSourceConfig};
use simplyload_core::feed::{ChangeEvent, ChangesRead, ChangesRequest, FeedPosition, PrepareFeed, Prepared};
use simplyload_core::schema::meta;
use simplyload_core::source::{SnapshotRequest, SourceBatch};
use simplyload_core::{Column, Source, StreamName, TableSpec, ValueLimits};
use simplyload_stripe::StripeSource;
use simplyload_testkit::localstripe::{KEY, LocalStripe};
use std::collections::BTreeMap;
use tokio::sync::mpsc;

fn config(server: &LocalStripe, page_size: u32) -> StripeSourceConfig {
    let yaml = format!(
        "api_key: {KEY}\nbase_url: {}\npage_size: {page_size}\nsettle_lag: 0s\nmax_attempts: 2\n",
        server.base_url()
    );
    serde_yaml_ng::from_str(&yaml).unwrap()
}

async fn table(source: &StripeSource, stream: &str) -> TableSpec {
    let catalog = source.discover(&Selection::of([StreamName::bare(stream)])).await.unwrap();
    let info = catalog.table(&StreamName::bare(stream)).unwrap();
    TableSpec {
        stream: info.name.clone(),
        name: stream.to_owned(),
        columns: info
            .columns
            .iter()
            .map(|c| Column {
                source_name: c.name.clone(),
                name: c.name.clone(),
                sql_type: c.sql_type,
                source_type: c.type_name.clone(),
                nullable: c.nullable,
            })
            .collect(),
        key: info.primary_key.clone(),
        hashed: Vec::new(),
    }
}

fn request(table: &TableSpec, resume: Option<serde_json::Value>) -> SnapshotRequest {
    SnapshotRequest {
        table: table.clone(),
        limits: ValueLimits::STAGING,
        on_unrepresentable: OnUnrepresentable::Report,
        batch_rows: 4,
        batch_bytes: usize::MAX,
        incremental: None,
        consistent_with: None,
        parallelism: 1,
        parallel_min_bytes: u64::MAX,
        resumable: true,
        resume,
    }
}

/// Every batch a listing sends.
async fn list(source: &StripeSource, table: &TableSpec, resume: Option<serde_json::Value>) -> Vec<SourceBatch> {
    let (tx, mut rx) = mpsc::channel(1000);
    source.read_snapshot(request(table, resume), tx).await.unwrap();
    let mut out = Vec::new();
    while let Some(b) = rx.recv().await {
        out.push(b);
    }
    out
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> &'a dyn Array {
    batch.column(batch.schema().index_of(name).unwrap()).as_ref()
}

fn texts(batches: &[RecordBatch], name: &str) -> Vec<Option<String>> {
    batches
        .iter()
        .flat_map(|b| {
            let a = column(b, name).as_string::<i32>();
            (0..a.len()).map(|i| (!a.is_null(i)).then(|| a.value(i).to_owned())).collect::<Vec<_>>()
        })
        .collect()
}

fn customer(s: &LocalStripe, name: &str) -> String {
    s.post("/v1/customers", &[("name", name)])["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_listing_reads_every_page_and_says_where_it_can_go_on() {
    let s = LocalStripe::start();
    let ids: Vec<String> = (0..10).map(|i| customer(&s, &format!("c{i}"))).collect();
    let source = StripeSource::new("stripe", &config(&s, 3)).unwrap();
    let t = table(&source, "customers").await;
    let batches = list(&source, &t, None).await;
    let rows: Vec<RecordBatch> = batches.iter().map(|b| b.batch.clone()).collect();
    let mut got: Vec<String> = texts(&rows, "id").into_iter().flatten().collect();
    got.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(got, want, "every customer once");
    assert!(rows.iter().all(|b| b.num_rows() <= 6), "batches close at batch_rows, on a page boundary");
    // Progress comes in an empty batch after the rows it covers.
    let progress: Vec<&SourceBatch> = batches.iter().filter(|b| b.progress.is_some()).collect();
    assert!(!progress.is_empty() && progress.iter().all(|b| b.batch.num_rows() == 0));
    // Going on after the first page reads the rest.
    let after = serde_json::json!({ "after": ids[2] });
    let rest: Vec<RecordBatch> = list(&source, &t, Some(after)).await.into_iter().map(|b| b.batch).collect();
    assert_eq!(texts(&rest, "id").len(), 7, "localstripe lists oldest first: the 7 after the third");
}

#[tokio::test]
async fn a_stale_cursor_reads_the_list_again_and_ends() {
    let s = LocalStripe::start();
    let ids: Vec<String> = (0..5).map(|i| customer(&s, &format!("c{i}"))).collect();
    s.ok("DELETE", &format!("/v1/customers/{}", ids[1]), &[]);
    let source = StripeSource::new("stripe", &config(&s, 2)).unwrap();
    let t = table(&source, "customers").await;
    // localstripe answers a deleted cursor with its first page again: the
    // read notices and reads the list through once more, never looping.
    let after = serde_json::json!({ "after": ids[1] });
    let rows: Vec<RecordBatch> = list(&source, &t, Some(after)).await.into_iter().map(|b| b.batch).collect();
    let mut got: Vec<String> = texts(&rows, "id").into_iter().flatten().collect();
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 4);
}

/// Reads the feed from `from`; the changes per stream: (id, deleted, version, name).
async fn changes(
    source: &StripeSource,
    tables: &[TableSpec],
    from: &FeedPosition,
) -> (ChangesRead, BTreeMap<String, Vec<(String, bool, i128, Option<String>)>>) {
    let feed = source.change_feed().unwrap();
    let request = ChangesRequest {
        feed: "f".into(),
        from: Some(from.clone()),
        tables: tables.to_vec(),
        limits: ValueLimits::STAGING,
        on_unrepresentable: OnUnrepresentable::Report,
        batch_rows: 1000,
        max_changes: u64::MAX,
        max_lag_bytes: u64::MAX,
    };
    let (tx, mut rx) = mpsc::channel(1000);
    let read = feed.read(request, tx).await.unwrap();
    let mut out: BTreeMap<String, Vec<_>> = BTreeMap::new();
    while let Some(e) = rx.recv().await {
        let ChangeEvent::Rows { stream, batch } = e else { panic!("Stripe sends no truncates") };
        let ids = texts(std::slice::from_ref(&batch), "id");
        let deleted = column(&batch, meta::DELETED).as_boolean().clone();
        let versions = column(&batch, meta::VERSION).as_primitive::<arrow_array::types::Decimal128Type>().clone();
        let names = if batch.schema().index_of("name").is_ok() {
            texts(std::slice::from_ref(&batch), "name")
        } else {
            vec![None; batch.num_rows()]
        };
        for i in 0..batch.num_rows() {
            out.entry(stream.clone()).or_default().push((
                ids[i].clone().unwrap(),
                deleted.value(i),
                versions.value(i),
                names[i].clone(),
            ));
        }
    }
    (read, out)
}

#[tokio::test]
async fn the_events_feed_routes_orders_and_flags_deletes() {
    let s = LocalStripe::start();
    let kept = customer(&s, "kept");
    let gone = customer(&s, "gone");
    let source = StripeSource::new("stripe", &config(&s, 2)).unwrap();
    let feed = source.change_feed().unwrap();
    let tables = vec![table(&source, "customers").await, table(&source, "events").await];
    let Prepared::Created { start, remade: false } = feed
        .prepare(PrepareFeed { feed: "f", tables: &tables, joining: false, remake_lost: true, recorded: None })
        .await
        .unwrap()
    else {
        panic!("a feed without a recorded position is made")
    };
    let start = start.position();
    // Same second: created then renamed twice; another deleted.
    let fresh = customer(&s, "fresh");
    s.post(&format!("/v1/customers/{fresh}"), &[("name", "fresh 2")]);
    s.post(&format!("/v1/customers/{fresh}"), &[("name", "fresh 3")]);
    s.ok("DELETE", &format!("/v1/customers/{gone}"), &[]);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (read, got) = changes(&source, &tables, &start).await;
    let confirm = read.confirm.clone().expect("a window was read");
    assert!(confirm.version > start.version);
    let customers = &got["customers"];
    let newest = |id: &str| customers.iter().filter(|c| c.0 == id).max_by_key(|c| c.2).cloned().unwrap();
    assert_eq!(newest(&fresh).3.as_deref(), Some("fresh 3"), "{customers:?}");
    assert!(newest(&gone).1, "deleted: {customers:?}");
    assert_eq!(newest(&gone).3.as_deref(), Some("gone"), "a deleted row keeps its last values");
    assert!(customers.iter().any(|c| c.0 == kept), "the window reaches back by the overlap");
    let events = &got["events"];
    assert_eq!(events.len(), 6, "every event of the window once: {events:?}");
    // Reading again from the confirmed position (once Stripe's clock moved
    // on): the overlap brings the same events, at the same versions.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (again, got) = changes(&source, &tables, &confirm).await;
    let newest_again = got["customers"].iter().filter(|c| c.0 == fresh).max_by_key(|c| c.2).cloned().unwrap();
    assert_eq!(newest_again.2, newest(&fresh).2, "the overlap gives the same event the same version");
    assert!(again.confirm.is_some());
}

#[tokio::test]
async fn a_position_past_the_30_days_is_made_again_or_refused() {
    let s = LocalStripe::start();
    let source = StripeSource::new("stripe", &config(&s, 2)).unwrap();
    let feed = source.change_feed().unwrap();
    let tables = vec![table(&source, "customers").await];
    let old = FeedPosition { version: 0, token: "1000000000".into() };
    let refused = feed
        .prepare(PrepareFeed { feed: "f", tables: &tables, joining: false, remake_lost: false, recorded: Some(&old) })
        .await
        .err()
        .expect("an old position cannot go on");
    assert!(refused.to_string().contains("30 days"), "{refused}");
    let remade = feed
        .prepare(PrepareFeed { feed: "f", tables: &tables, joining: false, remake_lost: true, recorded: Some(&old) })
        .await
        .unwrap();
    assert!(matches!(remade, Prepared::Created { remade: true, .. }));
}

mod like_stripe {
    //! Through a proxy that lists newest first, answers stale cursors with
    //! `resource_missing`, filters by `created` everywhere, and fails on demand.
    use super::*;
    use simplyload_core::ErrorKind;
    use simplyload_testkit::stripeproxy::{Fault, StripeProxy};

    fn via(proxy: &StripeProxy, page_size: u32, attempts: u32) -> StripeSource {
        let yaml = format!(
            "api_key: {KEY}\nbase_url: {}\npage_size: {page_size}\nsettle_lag: 0s\nmax_attempts: {attempts}\n",
            proxy.base_url()
        );
        StripeSource::new("stripe", &serde_yaml_ng::from_str(&yaml).unwrap()).unwrap()
    }

    async fn ids(source: &StripeSource, t: &TableSpec, resume: Option<serde_json::Value>) -> Vec<String> {
        let rows: Vec<RecordBatch> = list(source, t, resume).await.into_iter().map(|b| b.batch).collect();
        let mut got: Vec<String> = texts(&rows, "id").into_iter().flatten().collect();
        got.sort();
        got
    }

    async fn read_err(source: &StripeSource, t: &TableSpec) -> simplyload_core::Error {
        let (tx, _rx) = mpsc::channel(1000);
        source.read_snapshot(request(t, None), tx).await.unwrap_err()
    }

    #[tokio::test]
    async fn a_deleted_cursor_is_resource_missing_and_the_list_starts_again() {
        let s = LocalStripe::start();
        let mut all: Vec<String> = (0..7).map(|i| customer(&s, &format!("c{i}"))).collect();
        let proxy = StripeProxy::start(s.port, vec![]);
        let source = via(&proxy, 2, 2);
        let t = table(&source, "customers").await;
        s.ok("DELETE", &format!("/v1/customers/{}", all[3]), &[]);
        let stale = all.remove(3);
        all.sort();
        assert_eq!(ids(&source, &t, Some(serde_json::json!({ "after": stale }))).await, all);
        assert_eq!(ids(&source, &t, None).await, all, "newest first, every page");
    }

    #[tokio::test]
    async fn throttling_resets_and_retryable_errors_are_waited_out() {
        let s = LocalStripe::start();
        let all: Vec<String> = (0..3).map(|i| customer(&s, &format!("c{i}"))).collect();
        let proxy = StripeProxy::start(
            s.port,
            vec![
                Fault::Throttle { path: "/v1/customers".into(), times: 2, retry_after: Some(1), should_retry: None },
                Fault::Reset { path: "/v1/customers".into(), times: 1 },
                Fault::ServerError { path: "/v1/customers".into(), times: 1, status: 503, should_retry: Some(true) },
            ],
        );
        let source = via(&proxy, 2, 6);
        let t = table(&source, "customers").await;
        let started = std::time::Instant::now();
        let mut want = all.clone();
        want.sort();
        assert_eq!(ids(&source, &t, None).await, want);
        assert!(started.elapsed() >= std::time::Duration::from_secs(2), "Retry-After: 1 was honoured twice");
        assert_eq!(proxy.requests(), 4 + 2, "2 throttled + 1 reset + 1 error, then 2 pages");
    }

    #[tokio::test]
    async fn stripe_saying_not_to_retry_and_missing_permissions_fail_with_the_fix() {
        let s = LocalStripe::start();
        customer(&s, "c");
        let proxy = StripeProxy::start(
            s.port,
            vec![Fault::ServerError { path: "/v1/customers".into(), times: 1, status: 500, should_retry: Some(false) }],
        );
        let source = via(&proxy, 2, 5);
        let t = table(&source, "customers").await;
        let e = read_err(&source, &t).await;
        assert_eq!(proxy.requests(), 1, "Stripe-Should-Retry: false is not retried: {e}");
        assert!(e.to_string().contains("customers"), "{e}");

        proxy.set_faults(vec![Fault::Forbid { path: "/v1/charges".into(), permission: "rak_charge_read".into() }]);
        let charges = table(&source, "charges").await;
        let e = read_err(&source, &charges).await;
        assert_eq!(e.kind(), ErrorKind::Permission, "{e}");
        let text = format!("{e} {}", e.hint().unwrap_or(""));
        assert!(text.contains("Charges") && text.contains("rak_charge_read") && text.contains("charges"), "{text}");
        let report = source.check(&[StreamName::bare("customers"), StreamName::bare("charges")]).await.unwrap();
        let failed: Vec<&str> = report.items.iter().filter(|i| !i.ok).map(|i| i.what.as_str()).collect();
        assert_eq!(failed, ["read charges"], "{report:?}");
    }

    #[tokio::test]
    async fn newest_first_events_of_one_second_apply_in_order() {
        let s = LocalStripe::start();
        let proxy = StripeProxy::start(s.port, vec![]);
        let source = via(&proxy, 2, 2);
        let tables = vec![table(&source, "customers").await];
        let feed = source.change_feed().unwrap();
        let Prepared::Created { start, .. } = feed
            .prepare(PrepareFeed { feed: "f", tables: &tables, joining: false, remake_lost: true, recorded: None })
            .await
            .unwrap()
        else {
            panic!("made")
        };
        let id = customer(&s, "v1");
        for v in ["v2", "v3", "v4"] {
            s.post(&format!("/v1/customers/{id}"), &[("name", v)]);
        }
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let (_, got) = changes(&source, &tables, &start.position()).await;
        let rows = &got["customers"];
        let versions: Vec<i128> = rows.iter().map(|r| r.2).collect();
        let mut distinct = versions.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 4, "one version per event: {rows:?}");
    }

    #[tokio::test]
    async fn events_that_show_up_late_are_read_by_the_overlap() {
        let s = LocalStripe::start();
        let proxy = StripeProxy::start(s.port, vec![Fault::LateEvents { secs: 3 }]);
        let source = via(&proxy, 10, 2);
        // The events stream alone: other streams also list what was made in
        // the window, which would hide what this case is about.
        let tables = vec![table(&source, "events").await];
        let feed = source.change_feed().unwrap();
        let Prepared::Created { start, .. } = feed
            .prepare(PrepareFeed { feed: "f", tables: &tables, joining: false, remake_lost: true, recorded: None })
            .await
            .unwrap()
        else {
            panic!("made")
        };
        customer(&s, "late");
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let (first, got) = changes(&source, &tables, &start.position()).await;
        assert!(got.is_empty(), "not listed yet: {got:?}");
        let confirmed = first.confirm.expect("the window moved on");
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        let (_, got) = changes(&source, &tables, &confirmed).await;
        assert_eq!(got["events"].len(), 1, "the late event, read by the overlap: {got:?}");
    }
}
