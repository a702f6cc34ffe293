//! The protocol client against the `fakesnow` server: login, statements
//! with bind parameters, JSON (DML) and Arrow (SELECT) results, errors with
//! their kinds, an expired session logging in again, heartbeat, close.

use arrow_array::Array;
use arrow_array::cast::AsArray;
use simplyload_core::ErrorKind;
use simplyload_core::config::Secret;
use simplyload_snowflake::{Binding, Credentials, LoginOptions, Rows, Session};
use simplyload_testkit::peers::Fakesnow;
use std::time::Duration;

fn options(server: &Fakesnow, credentials: Credentials) -> LoginOptions {
    LoginOptions {
        base_url: server.base_url(),
        account: "xy12345.us-east-1".into(),
        user: "SIMPLYLOAD".into(),
        role: Some("SIMPLYLOAD".into()),
        warehouse: Some("SIMPLYLOAD_WH".into()),
        database: Some("RAW_DATA".into()),
        schema: Some("SIMPLYLOAD".into()),
        credentials,
        session_parameters: serde_json::Map::from_iter([("QUERY_TAG".to_owned(), "simplyload:test".into())]),
        timeout: Duration::from_secs(60),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_bindings_and_both_result_formats() {
    let server = Fakesnow::start();
    let s = Session::login(options(&server, Credentials::Password(Secret::new("any")))).await.unwrap();
    s.query("CREATE DATABASE IF NOT EXISTS RAW_DATA", &[]).await.unwrap();
    s.query("CREATE SCHEMA IF NOT EXISTS RAW_DATA.SIMPLYLOAD", &[]).await.unwrap();
    s.query("CREATE OR REPLACE TABLE T (ID NUMBER(19,0), NAME VARCHAR, AMOUNT NUMBER(12,2), OK BOOLEAN)", &[])
        .await
        .unwrap();
    let ins = s
        .query(
            "INSERT INTO T VALUES (?, ?, ?, ?), (?, ?, ?, ?)",
            &[
                Binding::Fixed(1),
                Binding::Text("Zoë 😀 O'Brien".into()),
                Binding::Text("12.30".into()),
                Binding::Boolean(true),
                Binding::Fixed(9_223_372_036_854_775_807),
                Binding::Null,
                Binding::Text("-0.01".into()),
                Binding::Boolean(false),
            ],
        )
        .await
        .unwrap();
    assert_eq!(ins.first_cell(), Some("2"), "DML answers with its row count");
    let r = s.query("SELECT ID, NAME, AMOUNT, OK FROM T ORDER BY ID", &[]).await.unwrap();
    assert_eq!(r.row_count(), 2);
    assert_eq!(r.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["ID", "NAME", "AMOUNT", "OK"]);
    assert_eq!(
        (r.columns[2].type_name.as_str(), r.columns[2].precision, r.columns[2].scale),
        ("fixed", Some(12), Some(2))
    );
    let Rows::Arrow(batches) = &r.rows else { panic!("SELECT answers in Arrow: {r:?}") };
    let names = batches[0].column(1).as_string::<i32>();
    assert_eq!(names.value(0), "Zoë 😀 O'Brien");
    assert!(names.is_null(1));
    assert!(s.statements().len() >= 5, "every statement is logged with its time");
    s.heartbeat().await.unwrap();
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_kinds_and_an_expired_session_logs_in_again() {
    let server = Fakesnow::start();
    let s = Session::login(options(&server, Credentials::Password(Secret::new("any")))).await.unwrap();
    let e = s.query("SELECT * FROM RAW_DATA.SIMPLYLOAD.NOPE", &[]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("NOPE") && e.to_string().contains("SELECT * FROM RAW_DATA.SIMPLYLOAD.NOPE"), "{e}");
    assert!(e.hint().unwrap().contains("setup-sql snowflake"));
    // The server forgets the session: the next statement logs in again and succeeds.
    s.close().await.unwrap();
    let r = s.query("SELECT 1 AS ONE", &[]).await.unwrap();
    assert_eq!(r.row_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_pair_login_and_unreachable_servers() {
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    let server = Fakesnow::start();
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let pem = key.to_pkcs8_encrypted_pem(&mut rsa::rand_core::OsRng, b"pass", LineEnding::LF).unwrap();
    let creds =
        Credentials::KeyPair { private_key_pem: Secret::new(pem.to_string()), passphrase: Some(Secret::new("pass")) };
    let s = Session::login(options(&server, creds)).await.unwrap();
    s.query("SELECT 1", &[]).await.unwrap();
    // A bad passphrase never reaches the server.
    let creds =
        Credentials::KeyPair { private_key_pem: Secret::new(pem.to_string()), passphrase: Some(Secret::new("nope")) };
    let e = Session::login(options(&server, creds)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth);
    // Nothing listening: transient, with the URL to check.
    let mut o = options(&server, Credentials::Password(Secret::new("x")));
    o.base_url = "http://127.0.0.1:9".into();
    let e = Session::login(o).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
    assert!(e.hint().unwrap().contains("http://127.0.0.1:9"), "{e}");
}
