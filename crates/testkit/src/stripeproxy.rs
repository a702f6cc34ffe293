//! A small HTTP proxy in front of localstripe that makes it list like
//! Stripe and fail like Stripe (DESIGN.md §10; the brief's test plan).
//!
//! Always on, for every GET that localstripe answers with a list:
//! * **newest first**, as Stripe lists (localstripe lists oldest first);
//! * `limit` between 1 and 100, else a 400 naming the parameter;
//! * `starting_after` an id the list no longer has → 404 `resource_missing`
//!   (localstripe silently starts again at the first page);
//! * `created[gt|gte|lt|lte]` on every list (localstripe takes them on
//!   events only).
//!
//! Faults on demand ([`Fault`]): 429s with or without `Retry-After` and
//! `Stripe-Should-Retry`, 5xx, connections reset before a reply, the N-th
//! request failing, a 403 naming a `rak_…` permission, and events that
//! show up late. Every request is counted.

use crate::http1::{RawRequest, encode};
use serde_json::{Value, json};
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// One failure to inject. `path` matches requests whose path starts with it.
#[derive(Debug, Clone)]
pub enum Fault {
    /// The first `times` matching requests get 429 with these headers.
    Throttle { path: String, times: usize, retry_after: Option<u64>, should_retry: Option<bool> },
    /// The first `times` matching requests get this 5xx status.
    ServerError { path: String, times: usize, status: u16, should_retry: Option<bool> },
    /// The first `times` matching requests: the connection closes with no reply.
    Reset { path: String, times: usize },
    /// Request number `n` (1-based, counted from when the faults were set) gets a 500 that
    /// says not to retry, and so does every one after it while `sticky`.
    FailNth { n: usize, sticky: bool },
    /// Every matching request gets 403, as for a restricted key without `permission`.
    Forbid { path: String, permission: String },
    /// Events created less than `secs` seconds ago are not listed yet.
    LateEvents { secs: i64 },
}

#[derive(Default)]
struct State {
    faults: Vec<(Fault, usize)>,
    requests: usize,
}

/// The proxy; stops when dropped.
pub struct StripeProxy {
    pub port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl StripeProxy {
    /// Listens on a free loopback port and forwards to localstripe on `upstream_port`.
    pub fn start(upstream_port: u16, faults: Vec<Fault>) -> StripeProxy {
        let state = Arc::new(Mutex::new(State { faults: faults.into_iter().map(|f| (f, 0)).collect(), requests: 0 }));
        let st = state.clone();
        let (port, stop) = crate::http1::serve_until_stopped(move |conn| {
            let _ = serve(conn, upstream_port, &st);
        });
        StripeProxy { port, state, stop }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Requests that reached the proxy since it started or the faults were last set.
    pub fn requests(&self) -> usize {
        self.state.lock().expect("proxy state").requests
    }

    /// Replaces the faults; counters, the request count included, start again.
    pub fn set_faults(&self, faults: Vec<Fault>) {
        let mut st = self.state.lock().expect("proxy state");
        st.faults = faults.into_iter().map(|f| (f, 0)).collect();
        st.requests = 0;
    }
}

impl Drop for StripeProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

struct Request {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    head: Vec<String>,
    body: Vec<u8>,
}

fn read_request(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let Some(RawRequest { head, body }) = crate::http1::read_request(r)? else { return Ok(None) };
    let mut first = head.first().map(|l| l.split_whitespace()).into_iter().flatten();
    let method = first.next().unwrap_or("GET").to_owned();
    let target = first.next().unwrap_or("/").to_owned();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), parse_query(q)),
        None => (target, Vec::new()),
    };
    Ok(Some(Request { method, path, query, head, body }))
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn respond(out: &mut TcpStream, status: u16, headers: &[(&str, String)], body: &Value) -> std::io::Result<()> {
    let body = body.to_string();
    let mut text =
        format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("Connection: close\r\n\r\n");
    out.write_all(text.as_bytes())?;
    out.write_all(body.as_bytes())?;
    out.flush()
}

fn stripe_error(kind: &str, code: Option<&str>, message: &str) -> Value {
    let mut e = json!({"type": kind, "message": message});
    if let Some(c) = code {
        e["code"] = json!(c);
    }
    json!({ "error": e })
}

/// Sends a request upstream (one connection, closed after); status and body.
fn forward(req: &Request, query: &[(String, String)], upstream_port: u16) -> std::io::Result<(u16, Vec<u8>)> {
    let q: Vec<String> = query.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
    let target = if q.is_empty() { req.path.clone() } else { format!("{}?{}", req.path, q.join("&")) };
    let line = format!("{} {target} HTTP/1.1", req.method);
    let resp = crate::http1::forward(upstream_port, &line, req.head.get(1..).unwrap_or_default(), &req.body)?;
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").map_or(resp.len(), |p| p + 4);
    let status = String::from_utf8_lossy(&resp[..split]).split_whitespace().nth(1).and_then(|s| s.parse().ok());
    Ok((status.unwrap_or(502), resp[split..].to_vec()))
}

/// What the faults say about this request, if anything.
enum Verdict {
    Pass { late_events: Option<i64> },
    Reply(u16, Vec<(&'static str, String)>, Value),
    Reset,
}

fn judge(req: &Request, state: &Mutex<State>) -> Verdict {
    let mut st = state.lock().expect("proxy state");
    st.requests += 1;
    let number = st.requests;
    let mut late_events = None;
    for (f, n) in st.faults.iter_mut() {
        let matches = |p: &str| req.path.starts_with(p);
        match f {
            Fault::Throttle { path, times, retry_after, should_retry } if *n < *times && matches(path) => {
                *n += 1;
                let mut h = Vec::new();
                if let Some(s) = retry_after {
                    h.push(("Retry-After", s.to_string()));
                }
                if let Some(r) = should_retry {
                    h.push(("Stripe-Should-Retry", r.to_string()));
                }
                h.push(("Stripe-Rate-Limited-Reason", "global-rate".to_owned()));
                let body = stripe_error(
                    "invalid_request_error",
                    Some("rate_limit"),
                    "Too many requests hit the API too quickly.",
                );
                return Verdict::Reply(429, h, body);
            }
            Fault::ServerError { path, times, status, should_retry } if *n < *times && matches(path) => {
                *n += 1;
                let h = should_retry.map(|r| vec![("Stripe-Should-Retry", r.to_string())]).unwrap_or_default();
                return Verdict::Reply(*status, h, stripe_error("api_error", None, "An unknown error occurred"));
            }
            Fault::Reset { path, times } if *n < *times && matches(path) => {
                *n += 1;
                return Verdict::Reset;
            }
            Fault::FailNth { n: at, sticky } if number == *at || (*sticky && number > *at) => {
                let h = vec![("Stripe-Should-Retry", "false".to_owned())];
                return Verdict::Reply(500, h, stripe_error("api_error", None, "Injected failure"));
            }
            Fault::Forbid { path, permission } if matches(path) => {
                let message = format!(
                    "The provided key 'rk_test_***' does not have the required permissions for this endpoint on account 'acct_1'. Having the '{permission}' permission would allow this request to continue."
                );
                return Verdict::Reply(403, Vec::new(), stripe_error("invalid_request_error", None, &message));
            }
            Fault::LateEvents { secs } => late_events = Some(*secs),
            _ => {}
        }
    }
    Verdict::Pass { late_events }
}

fn serve(conn: TcpStream, upstream_port: u16, state: &Mutex<State>) -> std::io::Result<()> {
    let mut out = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    let Some(req) = read_request(&mut reader)? else { return Ok(()) };
    let late_events = match judge(&req, state) {
        Verdict::Reply(status, headers, body) => return respond(&mut out, status, &headers, &body),
        Verdict::Reset => return out.shutdown(std::net::Shutdown::Both),
        Verdict::Pass { late_events } => late_events,
    };
    if req.method != "GET" {
        let (status, body) = forward(&req, &req.query, upstream_port)?;
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        return respond(&mut out, status, &[], &v);
    }
    let listing = List::of(&req.query);
    let (status, body) = forward(&req, &listing.upstream_query, upstream_port)?;
    let v: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| json!({"error": {"message": "Not Found", "type": "invalid_request_error"}}));
    if status != 200 || v.get("object").and_then(Value::as_str) != Some("list") {
        return respond(&mut out, status, &[], &v);
    }
    let (status, reply) = listing.page(&req.path, v, late_events);
    respond(&mut out, status, &[], &reply)
}

/// A list request as Stripe reads it.
struct List {
    limit: Option<String>,
    after: Option<String>,
    created: Vec<(String, i64)>,
    upstream_query: Vec<(String, String)>,
}

impl List {
    fn of(query: &[(String, String)]) -> List {
        let mut l = List { limit: None, after: None, created: Vec::new(), upstream_query: Vec::new() };
        for (k, v) in query {
            match k.as_str() {
                "limit" => l.limit = Some(v.clone()),
                "starting_after" => l.after = Some(v.clone()),
                c if c.starts_with("created[") => l
                    .created
                    .push((c.trim_start_matches("created[").trim_end_matches(']').to_owned(), v.parse().unwrap_or(0))),
                _ => l.upstream_query.push((k.clone(), v.clone())),
            }
        }
        l.upstream_query.push(("limit".into(), "1000000".into()));
        l
    }

    fn keeps(&self, created: i64) -> bool {
        self.created.iter().all(|(op, bound)| match op.as_str() {
            "gt" => created > *bound,
            "gte" => created >= *bound,
            "lt" => created < *bound,
            "lte" => created <= *bound,
            _ => true,
        })
    }

    /// One page of the whole list, newest first.
    fn page(&self, path: &str, list: Value, late_events: Option<i64>) -> (u16, Value) {
        let limit: i64 = match self.limit.as_deref().unwrap_or("10").parse() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => {
                let m = "Invalid integer: limit must be between 1 and 100";
                return (400, stripe_error("invalid_request_error", None, m));
            }
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let created = |o: &Value| o.get("created").and_then(Value::as_i64).unwrap_or(0);
        let mut items: Vec<Value> = list["data"].as_array().cloned().unwrap_or_default();
        // localstripe's newest-first lists stay; its oldest-first ones turn.
        if items.len() > 1 && created(&items[0]) <= created(&items[items.len() - 1]) {
            items.reverse();
        }
        items.sort_by_key(|o| std::cmp::Reverse(created(o)));
        items.retain(|o| self.keeps(created(o)));
        if path == "/v1/events"
            && let Some(secs) = late_events
        {
            items.retain(|o| created(o) < now - secs);
        }
        let start = match &self.after {
            None => 0,
            Some(id) => match items.iter().position(|o| o.get("id").and_then(Value::as_str) == Some(id)) {
                Some(i) => i + 1,
                None => {
                    let m = format!("No such object: '{id}'");
                    return (404, stripe_error("invalid_request_error", Some("resource_missing"), &m));
                }
            },
        };
        let end = (start + limit as usize).min(items.len());
        let data: Vec<Value> = items[start..end].to_vec();
        (200, json!({"object": "list", "url": path, "has_more": end < items.len(), "data": data}))
    }
}
