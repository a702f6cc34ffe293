//! The client against a real HTTP/1.1 server on loopback (`server.rs`): no
//! part of the client is mocked. Waits are lower bounds only; the rate
//! limiter's arithmetic runs on tokio's paused clock.

mod calls;
mod cancel;
mod errors;
mod limits;
mod retries;
mod secrets;
mod server;

use std::time::Duration;

use simplyload_http::{HttpClient, HttpOptions};

/// Options for a test client: short backoffs so retries take milliseconds.
pub fn options(base_url: &str) -> HttpOptions {
    let mut o = HttpOptions::new(base_url);
    o.max_attempts = 3;
    o.backoff_base = Duration::from_millis(10);
    o.backoff_cap = Duration::from_millis(40);
    o.request_timeout = Duration::from_secs(20);
    o
}

pub fn client(base_url: &str) -> HttpClient {
    HttpClient::new(options(base_url)).expect("client")
}
