//! What is retried, how long it waits, and how it ends.

use std::time::Duration;

use simplyload_core::{ErrorKind, Policy};
use simplyload_http::HttpClient;

use crate::server::{Canned, Server};
use crate::{client, options};

#[tokio::test]
async fn a_429_waits_at_least_its_retry_after() {
    let server = Server::start(vec![Canned::status(429).header("Retry-After", "1"), Canned::json(200, "{}")]).await;

    client(&server.url()).get("/v1/events").send().await.unwrap();

    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    let waited = seen[1].at.duration_since(seen[0].at);
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}, Retry-After asked 1 s");
}

#[tokio::test]
async fn server_errors_are_retried_until_one_succeeds() {
    let server =
        Server::start(vec![Canned::status(503), Canned::status(502), Canned::json(200, r#"{"ok":true}"#)]).await;

    let reply = client(&server.url()).get("/v1/charges").send().await.unwrap();

    assert_eq!(reply.json::<serde_json::Value>().unwrap()["ok"], true);
    assert_eq!(server.seen().len(), 3);
}

#[tokio::test]
async fn running_out_of_attempts_is_transient_with_a_wait() {
    let server = Server::start(vec![
        Canned::status(503).body("upstream down"),
        Canned::status(503).body("upstream down"),
        Canned::status(503).body("upstream down").header("Request-Id", "req_last"),
    ])
    .await;

    let e = client(&server.url()).get("/v1/charges").query(&[("limit", "100")]).send().await.unwrap_err();

    assert_eq!(server.seen().len(), 3);
    assert_eq!(e.kind(), ErrorKind::Transient);
    assert_eq!(e.policy(), Policy::RetryNow);
    assert!(e.retry_after().is_some_and(|w| w > Duration::ZERO), "{e:?}");
    let want = format!(
        "GET {}/v1/charges: 503 Service Unavailable: upstream down (request id req_last) (gave up after 3 attempts)",
        server.host()
    );
    assert_eq!(e.message(), want);
}

#[tokio::test]
async fn a_retry_after_longer_than_a_call_waits_ends_the_call_at_once() {
    for retry_after in ["3600", "Fri, 01 Jan 2100 00:00:00 GMT"] {
        let server = Server::start(vec![Canned::status(429).header("Retry-After", retry_after)]).await;

        let e = client(&server.url()).get("/v1/events").send().await.unwrap_err();

        assert_eq!(server.seen().len(), 1, "{retry_after}");
        assert_eq!(e.kind(), ErrorKind::Transient);
        assert_eq!(e.policy(), Policy::RetryNextSync, "{retry_after}");
        assert!(e.retry_after().is_some_and(|w| w >= Duration::from_secs(3599)), "{e:?}");
        assert!(e.message().contains("longer than a call waits"), "{e}");
    }
}

#[tokio::test]
async fn a_body_cut_short_is_retried() {
    let server = Server::start(vec![
        Canned::Truncated { declared: 100, body: br#"{"data":[{"id""#.to_vec() },
        Canned::json(200, r#"{"data":[]}"#),
    ])
    .await;

    let reply = client(&server.url()).get("/v1/customers").send().await.unwrap();

    assert_eq!(reply.body().as_ref(), br#"{"data":[]}"#);
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn a_body_cut_short_every_time_is_transient() {
    let cut = Canned::Truncated { declared: 100, body: b"{".to_vec() };
    let server = Server::start(vec![cut.clone(), cut.clone(), cut]).await;

    let e = client(&server.url()).get("/v1/customers").send().await.unwrap_err();

    assert_eq!(e.kind(), ErrorKind::Transient);
    assert!(e.message().contains("while reading the reply"), "{e}");
    assert!(e.message().ends_with("(gave up after 3 attempts)"), "{e}");
}

#[tokio::test]
async fn a_server_that_does_not_answer_times_out_and_is_retried() {
    let server = Server::start(vec![Canned::Hang, Canned::json(200, "{}")]).await;
    let mut o = options(&server.url());
    o.request_timeout = Duration::from_millis(300);
    let client = HttpClient::new(o).unwrap();

    client.get("/v1/slow").send().await.unwrap();

    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn a_refused_connection_is_retried_even_for_a_post() {
    // A port nobody listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();

    let e = client(&format!("http://127.0.0.1:{port}")).post("/oauth2/token").send().await.unwrap_err();

    assert_eq!(e.kind(), ErrorKind::Transient);
    assert!(e.message().starts_with(&format!("POST 127.0.0.1:{port}/oauth2/token: could not connect")), "{e}");
    assert!(e.message().ends_with("(gave up after 3 attempts)"), "{e}");
}

#[tokio::test]
async fn a_post_is_not_retried_unless_marked_idempotent() {
    let server = Server::start(vec![Canned::status(500), Canned::status(500), Canned::json(200, "{}")]).await;
    let client = client(&server.url());

    let e = client.post("/v1/customers").form(&[("name", "x")]).send().await.unwrap_err();
    assert_eq!(server.seen().len(), 1);
    assert_eq!(e.kind(), ErrorKind::Transient);
    assert!(e.hint().is_some_and(|h| h.contains("not retried")), "{e:?}");

    client.post("/v1/customers").header("Idempotency-Key", "k1").idempotent(true).send().await.unwrap();
    assert_eq!(server.seen().len(), 3);
}

#[tokio::test]
async fn a_should_retry_header_overrules_the_status() {
    let server = Server::start(vec![
        Canned::status(500).header("Stripe-Should-Retry", "false"),
        Canned::status(400).header("Stripe-Should-Retry", "true"),
        Canned::json(200, "{}"),
    ])
    .await;
    let mut o = options(&server.url());
    o.should_retry_header = Some("Stripe-Should-Retry".into());
    let client = HttpClient::new(o).unwrap();

    let e = client.get("/v1/a").send().await.unwrap_err();
    assert_eq!(server.seen().len(), 1, "a 500 with Stripe-Should-Retry: false is not retried");
    assert_eq!(e.kind(), ErrorKind::Transient);

    client.get("/v1/b").send().await.unwrap();
    assert_eq!(server.seen().len(), 3, "a 400 with Stripe-Should-Retry: true is retried");
}

#[tokio::test]
async fn other_retryable_statuses() {
    for status in [408, 409, 420, 425, 500, 504] {
        let server = Server::start(vec![Canned::status(status), Canned::json(200, "{}")]).await;
        client(&server.url()).get("/x").send().await.unwrap();
        assert_eq!(server.seen().len(), 2, "{status}");
    }
}
