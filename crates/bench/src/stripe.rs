//! `bench stripe`: is a Stripe backfill bounded by the API, not by
//! SimplyLoad?
//!
//! A local server that never throttles answers Stripe's list protocol with
//! synthetic objects of four streams (newest first, `limit`,
//! `starting_after`), optionally after a fixed latency. `simplyload sync` copies them into DuckDB with the
//! client's rate limit set to `limit`; the server counts the requests. The
//! figures are ratios: the request rate the server saw while the listing ran
//! against the configured limit (≥ 0.9 means the limit, not SimplyLoad, set
//! the pace), and the sync's peak RSS at two account sizes (bounded memory
//! means the larger account does not need more).

use crate::snapshot::measure;
use serde_json::json;
use simplyload_core::{Error, Result};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone)]
pub struct StripeArgs {
    /// Account sizes (customers), each synced once.
    pub objects: Vec<u64>,
    /// The client's `requests_per_second`.
    pub limit: f64,
    /// Added to every reply, as a far-away API would.
    pub latency: Duration,
}

/// The requests a fake server saw.
#[derive(Default)]
struct Seen {
    requests: AtomicU64,
    /// When each list page was asked for.
    pages: Mutex<Vec<Instant>>,
}

/// A server that answers Stripe's list protocol from synthetic customers.
struct FakeStripe {
    port: u16,
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
}

impl FakeStripe {
    fn start(objects: u64, latency: Duration) -> Result<FakeStripe> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let seen = Arc::new(Seen::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let s = s.clone();
                        std::thread::spawn(move || serve(conn, objects, latency, &s));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Err(_) => break,
                }
            }
        });
        Ok(FakeStripe { port, seen, stop })
    }
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Answers requests on one keep-alive connection.
fn serve(conn: TcpStream, objects: u64, latency: Duration, seen: &Seen) {
    let _ = conn.set_nodelay(true);
    let Ok(mut out) = conn.try_clone() else { return };
    let mut reader = BufReader::new(conn);
    loop {
        let mut first = String::new();
        if reader.read_line(&mut first).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
        }
        let target = first.split_whitespace().nth(1).unwrap_or("/").to_owned();
        std::thread::sleep(latency);
        let body = reply(&target, objects, seen).to_string();
        // One write: a head and a body written apart wait out the client's
        // delayed ACK (40 ms) on every reply.
        let whole = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if out.write_all(whole.as_bytes()).is_err() {
            return;
        }
    }
}

/// The streams the server has, each with the same number of objects: the
/// list path, the id prefix and the `object` value.
const STREAMS: &[(&str, &str, &str)] = &[
    ("/v1/customers", "cus_", "customer"),
    ("/v1/charges", "ch_", "charge"),
    ("/v1/invoices", "in_", "invoice"),
    ("/v1/payment_intents", "pi_", "payment_intent"),
];

fn reply(target: &str, objects: u64, seen: &Seen) -> serde_json::Value {
    seen.requests.fetch_add(1, Ordering::SeqCst);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let param = |k: &str| query.split('&').find_map(|p| p.strip_prefix(k)?.strip_prefix('=')).map(str::to_owned);
    let Some(&(_, prefix, object)) = STREAMS.iter().find(|(p, _, _)| *p == path) else {
        return json!({"object": "list", "url": path, "has_more": false, "data": []});
    };
    seen.pages.lock().unwrap_or_else(|p| p.into_inner()).push(Instant::now());
    let limit: u64 = param("limit").and_then(|l| l.parse().ok()).unwrap_or(10).min(100);
    // Newest first: index objects−1 down to 0.
    let start = match param("starting_after").and_then(|id| id.strip_prefix(prefix)?.parse::<u64>().ok()) {
        Some(after) => after,
        None => objects,
    };
    let end = start.saturating_sub(limit);
    let data: Vec<serde_json::Value> = (end..start).rev().map(|i| synthetic(prefix, object, i)).collect();
    json!({"object": "list", "url": path, "has_more": end > 0, "data": data})
}

/// An object of about 600 bytes, with the fields each stream's typed columns read.
fn synthetic(prefix: &str, object: &str, i: u64) -> serde_json::Value {
    json!({
        "id": format!("{prefix}{i:010}"), "object": object, "created": 1_700_000_000 + i, "livemode": false,
        "email": format!("customer{i}@example.com"), "name": format!("Customer {i}"), "description": null,
        "currency": "usd", "amount": 1000 + i, "amount_due": 1000 + i, "balance": (i % 1000) as i64 - 500,
        "customer": format!("cus_{:010}", i / 3), "status": "succeeded", "delinquent": i.is_multiple_of(17),
        "address": {"city": "Berlin", "country": "DE", "line1": format!("Street {i}"), "postal_code": "10115"},
        "metadata": {"n": i.to_string(), "plan": "pro"}, "preferred_locales": ["en"], "tax_exempt": "none"
    })
}

/// One account size, synced once.
struct Measured {
    objects: u64,
    secs: f64,
    requests: u64,
    list_rate: f64,
    rss: u64,
}

/// Runs the benchmark and prints its figures; exit code 0.
pub async fn run(args: StripeArgs) -> Result<u8> {
    if args.objects.is_empty() || !args.limit.is_finite() || args.limit <= 0.0 {
        return Err(Error::config("bench stripe: give at least one --objects size and a --limit above 0"));
    }
    let exe = std::env::current_exe()?;
    let work = tempfile::Builder::new().prefix("simplyload-bench-stripe-").tempdir()?;
    println!(
        "bench stripe: limit {} requests/s, latency {} ms, account sizes {:?}",
        args.limit,
        args.latency.as_millis(),
        args.objects
    );
    let mut results = Vec::new();
    for (i, &objects) in args.objects.iter().enumerate() {
        let dir = work.path().join(format!("run{i}"));
        std::fs::create_dir_all(&dir)?;
        let server = FakeStripe::start(objects, args.latency)?;
        write_config(&dir, server.port, args.limit)?;
        let mut cmd = Command::new(&exe);
        cmd.current_dir(&dir).args(["sync"]).env("STRIPE_API_KEY", "sk_test_bench").env_remove("SIMPLYLOAD_CONFIG");
        let m = measure(cmd, &dir).await?;
        let requests = server.seen.requests.load(Ordering::SeqCst);
        let list_rate = steady_rate(&server.seen.pages.lock().unwrap_or_else(|p| p.into_inner()), args.limit);
        let r = Measured { objects, secs: m.secs, requests, list_rate, rss: m.rss.unwrap_or(0) };
        println!(
            "  {} objects in each of {} streams: {:.1} s end to end ({:.0} objects/s), {} requests; listing at {:.1} requests/s = {:.2} × the limit; peak RSS {} MiB",
            r.objects,
            STREAMS.len(),
            r.secs,
            (r.objects * STREAMS.len() as u64) as f64 / r.secs,
            r.requests,
            r.list_rate,
            r.list_rate / args.limit,
            r.rss >> 20
        );
        results.push(r);
    }
    summarize(&results, args.limit);
    Ok(0)
}

/// Pages per second once the client's burst (one second's worth of
/// requests, taken at once) is spent.
fn steady_rate(pages: &[Instant], limit: f64) -> f64 {
    let skip = (limit.ceil() as usize).min(pages.len().saturating_sub(2));
    match (pages.get(skip), pages.last()) {
        (Some(a), Some(b)) if b > a => (pages.len() - 1 - skip) as f64 / b.duration_since(*a).as_secs_f64(),
        _ => 0.0,
    }
}

fn summarize(results: &[Measured], limit: f64) {
    let worst = results.iter().map(|r| r.list_rate / limit).fold(f64::INFINITY, f64::min);
    let verdict = if worst >= 0.9 {
        "the API's limit sets the pace"
    } else {
        "below the limit: the server's latency (one page of a stream in flight at a time) or SimplyLoad sets the pace"
    };
    println!("request rate / limit: {worst:.2} at worst (target ≥ 0.9): {verdict}");
    if let (Some(small), Some(large)) = (results.first(), results.last())
        && results.len() > 1
    {
        println!(
            "peak RSS: {} MiB for {} objects per stream, {} MiB for {} ({:.2}×, for {:.0}× the objects)",
            small.rss >> 20,
            small.objects,
            large.rss >> 20,
            large.objects,
            large.rss as f64 / small.rss.max(1) as f64,
            large.objects as f64 / small.objects.max(1) as f64
        );
    }
}

/// Parts of this many rows: every size but the smallest loads in several,
/// so peak memory is that of one part, whatever the account's size.
const PART_ROWS: u64 = 10_000;

fn write_config(dir: &Path, port: u16, limit: f64) -> Result<()> {
    std::fs::write(
        dir.join("simplyload.yaml"),
        format!(
            "sources:\n  stripe:\n    type: stripe\n    api_key: ${{STRIPE_API_KEY}}\n    base_url: http://127.0.0.1:{port}\n    requests_per_second: {limit}\n    settle_lag: 0s\n\
             destinations:\n  local:\n    type: duckdb\n    path: warehouse.duckdb\n\
             pipelines:\n  bench:\n    source: stripe\n    destination: local\n    mode: cdc\n    snapshot_part_rows: {PART_ROWS}\n    streams: [customers, charges, invoices, payment_intents]\n"
        ),
    )?;
    Ok(())
}
