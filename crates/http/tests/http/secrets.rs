//! Credentials, signed URLs and cookies never reach logs, errors or `Debug`.

use std::io::Write;
use std::sync::{Arc, Mutex};

use simplyload_http::{Auth, HttpClient, Secret};
use tracing_subscriber::fmt::MakeWriter;

use crate::options;
use crate::server::{Canned, Server};

/// Log output collected in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

const SECRETS: &[&str] = &[
    "sk_live_SUPERSECRET1",
    "AMZSIGSECRET",
    "TOKENSECRET",
    "QUERYSECRET",
    "HEADERSECRET9",
    "COOKIESECRET",
    "FORMSECRET",
    "SIGSECRET",
];

fn assert_clean(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
    }
}

#[tokio::test]
async fn secrets_are_absent_from_logs_errors_and_debug() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(logs.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let echo = "refused Authorization: Bearer sk_live_SUPERSECRET1 for \
                /download?X-Amz-Signature=AMZSIGSECRET&token=TOKENSECRET; Cookie: session=COOKIESECRET";
    let unavailable =
        Canned::status(503).header("Set-Cookie", "session=COOKIESECRET").header("Request-Id", "req_1").body(echo);
    let server = Server::start(vec![
        unavailable.clone(),
        unavailable.clone(),
        unavailable,
        Canned::json(401, r#"{"message":"invalid api key HEADERSECRET9","client_secret":"FORMSECRET"}"#),
    ])
    .await;
    let mut o = options(&server.url());
    o.auth = Auth::Bearer(Secret::new("sk_live_SUPERSECRET1"));
    let client = HttpClient::new(o.clone()).unwrap();

    let call = || {
        client
            .get(&format!("{}/download?X-Amz-Signature=AMZSIGSECRET&token=TOKENSECRET", server.url()))
            .query(&[("access_token", "QUERYSECRET"), ("limit", "10")])
            .secret_header("X-Api-Key", &Secret::new("HEADERSECRET9"))
    };
    assert_clean("Request's Debug", &format!("{:?}", call()));

    // Three 503s whose body echoes the credentials, then a 401 that does too.
    let unavailable = call().send().await.unwrap_err();
    let refused = call().send().await.unwrap_err();

    assert_eq!(server.seen().len(), 4);
    assert_eq!(server.seen()[0].header("x-api-key"), Some("HEADERSECRET9"), "the secret is sent");
    assert_eq!(unavailable.kind(), simplyload_core::ErrorKind::Transient);
    assert!(unavailable.message().contains("refused Authorization: ***"), "{unavailable}");
    assert_eq!(refused.kind(), simplyload_core::ErrorKind::Auth);
    assert!(refused.message().contains(r#"{"message":"invalid api key ***","client_secret":"***"}"#), "{refused}");
    for e in [&unavailable, &refused] {
        assert_clean("the error", &e.to_string());
        assert_clean("the error's Debug", &format!("{e:?}"));
    }
    assert_clean("the options' Debug", &format!("{o:?}"));
    assert_clean("the client's Debug", &format!("{client:?}"));

    // A transport error on a signed URL does not show its query either.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let e = client.get(&format!("http://127.0.0.1:{port}/blob?sv=1&sig=SIGSECRET")).send().await.unwrap_err();
    assert_clean("a connect error", &format!("{e} {e:?}"));

    let logs = logs.text();
    assert_clean("the logs", &logs);
    // The logs still say what happened.
    assert!(logs.contains("http call failed; retrying after a backoff"), "{logs}");
    assert!(logs.contains("path=/download"), "{logs}");
    assert!(logs.contains("query=X-Amz-Signature,token,access_token,limit"), "{logs}");
    assert!(logs.contains("request_id=req_1"), "{logs}");
    assert!(logs.contains("status=503 error=503 Service Unavailable"), "{logs}");
}

#[test]
fn debug_of_secrets_and_auth_shows_stars() {
    let auth = Auth::Basic { user: Secret::new("sk_live_SUPERSECRET1"), password: Some(Secret::new("FORMSECRET")) };
    assert_clean("Auth's Debug", &format!("{auth:?}"));
    let header = Auth::Header { name: "X-Api-Key".into(), value: Secret::new("HEADERSECRET9") };
    assert_clean("Auth's Debug", &format!("{header:?}"));
    assert_eq!(format!("{}", Secret::new("TOKENSECRET")), "***");
}
