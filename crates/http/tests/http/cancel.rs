//! Cancellation ends any wait at once.

use std::time::Duration;

use simplyload_core::ErrorKind;
use simplyload_http::{CancellationToken, HttpClient};

use crate::options;
use crate::server::{Canned, Server};

fn cancel_after(token: &CancellationToken, after: Duration) {
    let token = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        token.cancel();
    });
}

#[tokio::test]
async fn cancelling_during_a_backoff_returns_cancelled() {
    // The server asks for 30 s; the call must not sit them out.
    let server = Server::start(vec![Canned::status(503).header("Retry-After", "30"), Canned::json(200, "{}")]).await;
    let token = CancellationToken::new();
    let client = HttpClient::new(options(&server.url())).unwrap().with_cancellation(token.clone());
    cancel_after(&token, Duration::from_millis(200));

    let e = client.get("/v1/events").send().await.unwrap_err();

    assert_eq!(e.kind(), ErrorKind::Cancelled);
    assert!(e.message().contains("cancelled while waiting to retry"), "{e}");
    assert_eq!(server.seen().len(), 1, "no second attempt was made");
}

#[tokio::test]
async fn cancelling_a_call_in_flight_returns_cancelled() {
    let server = Server::start(vec![Canned::Hang]).await;
    let token = CancellationToken::new();
    cancel_after(&token, Duration::from_millis(200));

    let e = crate::client(&server.url()).get("/v1/slow").cancellation(token).send().await.unwrap_err();

    assert_eq!(e.kind(), ErrorKind::Cancelled);
    assert!(e.message().contains("with a request in flight"), "{e}");
}

#[tokio::test]
async fn a_cancelled_token_sends_nothing() {
    let server = Server::start(vec![Canned::json(200, "{}")]).await;
    let token = CancellationToken::new();
    token.cancel();

    let e = crate::client(&server.url()).get("/v1/x").cancellation(token).send().await.unwrap_err();

    assert_eq!(e.kind(), ErrorKind::Cancelled);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(server.seen().is_empty());
}
