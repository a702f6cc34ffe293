//! How failures are classified and what their messages say.

use std::time::Duration;

use serde_json::Value;
use simplyload_core::{ErrorKind, Policy};
use simplyload_http::{ErrorDetail, ErrorReply, HttpClient};

use crate::server::{Canned, Server};
use crate::{client, options};

#[tokio::test]
async fn statuses_map_to_kinds_and_are_not_retried() {
    let cases = [
        (401, ErrorKind::Auth, "401 Unauthorized"),
        (403, ErrorKind::Permission, "403 Forbidden"),
        (404, ErrorKind::NotFound, "404 Not Found"),
        (410, ErrorKind::NotFound, "410 Gone"),
        (400, ErrorKind::Config, "400 Bad Request"),
        (422, ErrorKind::Config, "422 Unprocessable Entity"),
    ];
    for (status, kind, text) in cases {
        let server =
            Server::start(vec![Canned::json(status, r#"{"error":"nope"}"#).header("X-Request-Id", "r-9")]).await;

        let e = client(&server.url()).get("/v1/things/th_1").query(&[("expand", "x")]).send().await.unwrap_err();

        assert_eq!(server.seen().len(), 1, "{status} is not retried");
        assert_eq!(e.kind(), kind, "{status}");
        assert_eq!(e.policy(), Policy::NeedsOperator);
        let want = format!(r#"GET {}/v1/things/th_1: {text}: {{"error":"nope"}} (request id r-9)"#, server.host());
        assert_eq!(e.message(), want);
        assert!(e.hint().is_some(), "{status} has a hint");
    }
}

#[tokio::test]
async fn a_long_error_body_is_cut_in_the_message() {
    let body = format!(r#"{{"message":"{}"}}"#, "x".repeat(100_000));
    let server = Server::start(vec![Canned::json(400, &body)]).await;

    let e = client(&server.url()).get("/v1/x").send().await.unwrap_err();

    assert!(e.message().len() < 500, "{} characters", e.message().len());
    assert!(e.message().ends_with('…'), "{e}");
}

#[tokio::test]
async fn malformed_json_is_a_data_error_naming_the_path() {
    let server = Server::start(vec![Canned::json(200, r#"{"data": [1, 2"#)]).await;

    let reply = client(&server.url()).get("/v1/customers").query(&[("limit", "1")]).send().await.unwrap();
    let e = reply.json::<Value>().unwrap_err();

    assert_eq!(e.kind(), ErrorKind::Data);
    let prefix = format!("malformed reply from {}/v1/customers: ", server.host());
    assert!(e.message().starts_with(&prefix), "{e}");
    assert!(!e.message().contains("limit"), "{e}");
}

/// What a Stripe source would pass: `{"error":{"type","code","message","param"}}`.
fn stripe_errors(reply: &ErrorReply<'_>) -> ErrorDetail {
    let Some(body) = reply.json::<Value>() else { return ErrorDetail::default() };
    let error = &body["error"];
    let Some(message) = error["message"].as_str() else { return ErrorDetail::default() };
    let mut detail = ErrorDetail::message(format!("{message} [{}]", error["code"].as_str().unwrap_or("no code")));
    if error["code"] == "resource_missing" && reply.status.as_u16() == 404 {
        detail = detail.with_hint("the object was deleted or belongs to another account; check the key's account");
    }
    detail
}

#[tokio::test]
async fn a_sources_error_reader_names_the_fix() {
    let body = r#"{"error":{"type":"invalid_request_error","code":"resource_missing","message":"No such customer: 'cus_9'","param":"id"}}"#;
    let server = Server::start(vec![Canned::json(404, body).header("Request-Id", "req_7")]).await;
    let mut o = options(&server.url());
    o.error_reader = Some(std::sync::Arc::new(stripe_errors));
    let client = HttpClient::new(o).unwrap();

    let e = client.get("/v1/customers/cus_9").send().await.unwrap_err();

    assert_eq!(e.kind(), ErrorKind::NotFound);
    let want = format!(
        "GET {}/v1/customers/cus_9: 404 Not Found: No such customer: 'cus_9' [resource_missing] (request id req_7)",
        server.host()
    );
    assert_eq!(e.message(), want);
    assert_eq!(e.hint(), Some("the object was deleted or belongs to another account; check the key's account"));
}

/// What a Salesforce source would pass: `[{"errorCode","message"}]`; the
/// daily quota is not worth retrying before the window moves.
fn salesforce_errors(reply: &ErrorReply<'_>) -> ErrorDetail {
    let Some(body) = reply.json::<Value>() else { return ErrorDetail::default() };
    let (code, message) = (body[0]["errorCode"].as_str().unwrap_or(""), body[0]["message"].as_str().unwrap_or(""));
    let detail = ErrorDetail::message(format!("{code}: {message}"));
    match code {
        "REQUEST_LIMIT_EXCEEDED" if message.starts_with("TotalRequests") => detail
            .with_kind(ErrorKind::Transient)
            .with_retry(false)
            .with_retry_after(Duration::from_secs(3600))
            .with_hint("the org's daily API quota is used up; the next sync tries again"),
        "QUERY_TIMEOUT" => detail.with_retry(true),
        _ => detail,
    }
}

#[tokio::test]
async fn an_error_reader_may_change_the_kind_and_the_retry() {
    let server = Server::start(vec![
        Canned::json(403, r#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#),
        Canned::json(
            400,
            r#"[{"message":"Your query request was running for too long.","errorCode":"QUERY_TIMEOUT"}]"#,
        ),
        Canned::json(200, r#"{"records":[]}"#),
    ])
    .await;
    let mut o = options(&server.url());
    o.error_reader = Some(std::sync::Arc::new(salesforce_errors));
    let client = HttpClient::new(o).unwrap();

    let e = client.get("/services/data/v62.0/query").send().await.unwrap_err();
    assert_eq!(server.seen().len(), 1);
    assert_eq!(e.kind(), ErrorKind::Transient);
    assert_eq!(e.policy(), Policy::RetryNextSync);
    assert!(e.message().ends_with("403 Forbidden: REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded."), "{e}");

    client.get("/services/data/v62.0/query").send().await.unwrap();
    assert_eq!(server.seen().len(), 3, "QUERY_TIMEOUT is retried");
}

#[tokio::test]
async fn an_error_status_on_a_streamed_call_is_classified_too() {
    let server = Server::start(vec![Canned::json(
        400,
        r#"[{"errorCode":"JOB_NOT_COMPLETE","message":"can only download query results of successfully completed bulk job"}]"#,
    )])
    .await;

    let e = client(&server.url()).get("/jobs/query/750/results").send_streaming().await.unwrap_err();

    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.message().contains("JOB_NOT_COMPLETE"), "{e}");
}
