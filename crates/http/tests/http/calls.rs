//! Calls that succeed: what is sent, what comes back.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use simplyload_http::{Auth, HttpClient, Secret};

use crate::server::{Canned, Server};
use crate::{client, options};

#[tokio::test]
async fn get_with_query_returns_status_headers_and_json() {
    let server = Server::start(vec![
        Canned::json(200, r#"{"object":"list","data":[{"id":"cus_1"}],"has_more":false}"#)
            .header("Request-Id", "req_abc"),
    ])
    .await;
    let mut o = options(&server.url());
    o.auth = Auth::Bearer(Secret::new("sk_test_123456"));
    o.default_headers.push(("Stripe-Version".into(), "2026-09-30.endive".into()));
    let client = HttpClient::new(o).unwrap();

    let reply = client.get("/v1/customers").query(&[("limit", "2"), ("starting_after", "cus_0")]).send().await.unwrap();

    assert_eq!(reply.status().as_u16(), 200);
    assert_eq!(reply.request_id(), Some("req_abc"));
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body: Value = reply.json().unwrap();
    assert_eq!(body["data"][0]["id"], "cus_1");
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].target.as_str()),
        ("GET", "/v1/customers?limit=2&starting_after=cus_0")
    );
    assert_eq!(seen[0].header("authorization"), Some("Bearer sk_test_123456"));
    assert_eq!(seen[0].header("stripe-version"), Some("2026-09-30.endive"));
    assert_eq!(seen[0].header("user-agent"), Some(concat!("simplyload/", env!("CARGO_PKG_VERSION"))));
}

#[tokio::test]
async fn typed_json_and_a_base_path_prefix() {
    #[derive(serde::Deserialize)]
    struct Limits {
        #[serde(rename = "DailyApiRequests")]
        daily: Quota,
    }
    #[derive(serde::Deserialize)]
    struct Quota {
        #[serde(rename = "Remaining")]
        remaining: u64,
    }
    let server =
        Server::start(vec![Canned::json(200, r#"{"DailyApiRequests":{"Max":15000,"Remaining":14998}}"#)]).await;
    let client = client(&format!("{}/services/data/v62.0/", server.url()));

    let limits: Limits = client.get("limits/").send().await.unwrap().json().unwrap();

    assert_eq!(limits.daily.remaining, 14998);
    assert_eq!(server.seen()[0].target, "/services/data/v62.0/limits/");
}

#[tokio::test]
async fn post_form_and_json_bodies() {
    let server = Server::start(vec![
        Canned::json(200, r#"{"access_token":"00Dxx","instance_url":"https://x.my.salesforce.com"}"#),
        Canned::json(200, r#"{"id":"750xx","state":"UploadComplete"}"#),
    ])
    .await;
    let client = client(&server.url());

    let token: Value = client
        .post("/services/oauth2/token")
        .form(&[("grant_type", "client_credentials"), ("client_id", "abc")])
        .send()
        .await
        .unwrap()
        .json()
        .unwrap();
    let job: Value =
        client.post("/jobs/query").json(&json!({"operation": "query"})).send().await.unwrap().json().unwrap();

    assert_eq!(token["access_token"], "00Dxx");
    assert_eq!(job["id"], "750xx");
    let seen = server.seen();
    assert_eq!(seen[0].header("content-type"), Some("application/x-www-form-urlencoded"));
    assert_eq!(seen[0].body, b"grant_type=client_credentials&client_id=abc");
    assert_eq!(seen[1].header("content-type"), Some("application/json"));
    assert_eq!(serde_json::from_slice::<Value>(&seen[1].body).unwrap(), json!({"operation": "query"}));
}

#[tokio::test]
async fn a_streamed_body_arrives_whole() {
    let csv: String = (0..20_000).map(|i| format!("\"{i}\",\"name {i}\"\n")).collect();
    let server = Server::start(vec![
        Canned::status(200).header("Sforce-Locator", "MTAwMDA").header("content-type", "text/csv").body(&csv),
    ])
    .await;
    let client = client(&server.url());

    let reply = client.get("/jobs/query/750xx/results").send_streaming().await.unwrap();
    assert_eq!(reply.header("sforce-locator"), Some("MTAwMDA"));
    let mut stream = reply.into_stream();
    let mut got = Vec::new();
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }

    assert_eq!(got, csv.as_bytes());
}

#[tokio::test]
async fn a_streamed_body_that_stalls_or_is_cut_ends_with_a_transient_error() {
    let server = Server::start(vec![
        Canned::Stalled { declared: 1000, body: b"\"1\",\"a\"\n".to_vec() },
        Canned::Truncated { declared: 1000, body: b"\"1\",\"a\"\n".to_vec() },
    ])
    .await;
    let mut o = options(&server.url());
    o.request_timeout = Duration::from_millis(300);
    let client = HttpClient::new(o).unwrap();

    for want in ["the reply stalled", "the connection failed while reading the reply"] {
        let mut stream = client.get("/jobs/query/750xx/results").send_streaming().await.unwrap().into_stream();
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(first.as_ref(), b"\"1\",\"a\"\n");
        let e = stream.next().await.unwrap().unwrap_err();
        assert_eq!(e.kind(), simplyload_core::ErrorKind::Transient, "{e}");
        assert!(e.message().starts_with(&format!("GET {}/jobs/query/750xx/results: {want}", server.host())), "{e}");
        assert!(stream.next().await.is_none(), "the stream ends after its error");
    }
}

#[tokio::test]
async fn an_https_client_builds_with_rustls_and_ring() {
    // Whether this machine has root certificates decides which answer is right.
    match HttpClient::new(options("https://api.stripe.com")) {
        Ok(client) => assert_eq!(client.base_url().as_str(), "https://api.stripe.com/"),
        Err(e) => assert_eq!(e.kind(), simplyload_core::ErrorKind::Config, "{e}"),
    }
}

#[tokio::test]
async fn credentials_go_only_to_the_base_urls_origin() {
    let api = Server::start(vec![Canned::json(200, "{}")]).await;
    let elsewhere = Server::start(vec![Canned::status(200).body("file")]).await;
    let mut o = options(&api.url());
    o.auth = Auth::Bearer(Secret::new("sk_test_123456"));
    let client = HttpClient::new(o).unwrap();

    client.get("/v1/files/f_1").send().await.unwrap();
    let file = client.get(&format!("{}/download?X-Amz-Signature=abc", elsewhere.url())).send().await.unwrap();

    assert_eq!(file.body().as_ref(), b"file");
    assert_eq!(api.seen()[0].header("authorization"), Some("Bearer sk_test_123456"));
    assert_eq!(elsewhere.seen()[0].header("authorization"), None);
}

#[tokio::test]
async fn a_call_may_carry_its_own_credentials() {
    let server = Server::start(vec![Canned::json(200, "{}"), Canned::json(200, "{}")]).await;
    let mut o = options(&server.url());
    o.auth = Auth::Bearer(Secret::new("client-token"));
    let client = HttpClient::new(o).unwrap();

    client.get("/a").bearer(&Secret::new("call-token")).send().await.unwrap();
    client.get("/b").basic_auth(&Secret::new("sk_test_key"), None).send().await.unwrap();

    let seen = server.seen();
    assert_eq!(seen[0].header("authorization"), Some("Bearer call-token"));
    // base64("sk_test_key:")
    assert_eq!(seen[1].header("authorization"), Some("Basic c2tfdGVzdF9rZXk6"));
}

#[tokio::test]
async fn bad_options_are_config_errors_naming_the_field() {
    use simplyload_core::ErrorKind;
    type Change = fn(&mut simplyload_http::HttpOptions);
    let cases: [(Change, &str); 6] = [
        (|o| o.base_url = "not a url".into(), "base_url"),
        (|o| o.base_url = "ftp://h/".into(), "base_url"),
        (|o| o.base_url = "https://u:pw@h/".into(), "must not hold credentials"),
        (|o| o.max_attempts = 0, "max_attempts"),
        (|o| o.default_headers.push(("bad header".into(), "x".into())), "bad header"),
        (|o| o.should_retry_header = Some("a b".into()), "a b"),
    ];
    for (change, named) in cases {
        let mut o = options("http://127.0.0.1:1");
        change(&mut o);
        let e = HttpClient::new(o).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert!(e.message().contains(named), "{e}");
        assert!(!e.to_string().contains("pw@"), "{e}");
    }
}

#[test]
fn calls_can_be_spawned() {
    fn send<T: Send>(_: &T) {}
    let client = client("http://127.0.0.1:1");
    send(&client.get("/").send());
    send(&client.get("/").send_streaming());
    send(&client);
}
