//! The client-side rate limit.

use std::time::Duration;

use simplyload_core::ErrorKind;
use simplyload_http::{CancellationToken, HttpClient, RateLimit, RateLimiter};
use tokio::time::Instant;

use crate::options;
use crate::server::{Canned, Server};

#[tokio::test(start_paused = true)]
async fn n_calls_at_r_per_second_take_at_least_n_minus_burst_over_r() {
    let limiter = RateLimiter::new(RateLimit { per_second: 4.0, burst: 4 }).unwrap();
    let started = Instant::now();

    // 12 callers at once, as clones of a client would be.
    let waits = (0..12).map(|_| {
        let limiter = limiter.clone();
        async move { limiter.acquire(None).await }
    });
    for result in futures::future::join_all(waits).await {
        result.unwrap();
    }

    // (12 - 4) / 4 = 2 s on tokio's paused clock (deterministic, not wall time).
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(took < Duration::from_millis(2100), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_wait_for_a_token_returns_at_once_and_gives_the_token_back() {
    let limiter = RateLimiter::new(RateLimit { per_second: 1.0, burst: 1 }).unwrap();
    limiter.acquire(None).await.unwrap();
    let token = CancellationToken::new();
    let waiting = {
        let (limiter, token) = (limiter.clone(), token.clone());
        tokio::spawn(async move { limiter.acquire(Some(&token)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();

    token.cancel();
    let e = waiting.await.unwrap().unwrap_err();

    assert_eq!(e.kind(), ErrorKind::Cancelled);
    assert_eq!(started.elapsed(), Duration::ZERO);
    // The cancelled caller's reservation went back: the next token is due 1 s
    // after the first, not 2 s.
    limiter.acquire(None).await.unwrap();
    assert!(started.elapsed() <= Duration::from_millis(900), "{:?}", started.elapsed());
}

#[tokio::test]
async fn clones_of_a_client_share_its_limit() {
    let server = Server::start((0..5).map(|_| Canned::json(200, "{}")).collect()).await;
    let mut o = options(&server.url());
    o.rate_limiter = Some(RateLimiter::new(RateLimit { per_second: 20.0, burst: 1 }).unwrap());
    let first = HttpClient::new(o).unwrap();
    let second = first.clone();

    let calls = (0..5).map(|i| {
        let client = if i % 2 == 0 { first.clone() } else { second.clone() };
        async move { client.get("/v1/x").send().await }
    });
    for result in futures::future::join_all(calls).await {
        result.unwrap();
    }

    let seen = server.seen();
    let span = seen[4].at.duration_since(seen[0].at);
    // A lower bound: (5 - 1) / 20 s between the first and the last.
    assert!(span >= Duration::from_millis(190), "{span:?}");
}
