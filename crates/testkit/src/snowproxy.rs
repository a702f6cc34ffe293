//! A small fault-injecting HTTP proxy in front of fakesnow (DESIGN.md §10).
//!
//! fakesnow accepts any credentials and has no grants or warehouses, so the
//! failures a customer meets — a wrong password, a key Snowflake does not
//! know, a missing warehouse, database or privilege, a server error in the
//! middle of a load — are answered here, in Snowflake's documented error
//! format (`{"data": {...}, "code": "390100", "message": "...",
//! "success": false}`, HTTP 200 for SQL and login errors). Everything else
//! is forwarded unchanged, and every statement is recorded.

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// One failure to inject.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Every login is refused with this Snowflake error.
    Login { code: String, message: String },
    /// Statements whose text contains `pattern` (case-insensitive) are
    /// answered with this Snowflake error and never reach the server.
    Statement { pattern: String, code: String, message: String },
    /// The first `times` statements containing `pattern` are forwarded (so
    /// they take effect) and then answered with HTTP 500 and an HTML page,
    /// as a load balancer does when the server dies mid-request.
    ServerErrorAfter { pattern: String, times: usize },
}

impl Fault {
    pub fn login(code: &str, message: &str) -> Fault {
        Fault::Login { code: code.into(), message: message.into() }
    }

    pub fn statement(pattern: &str, code: &str, message: &str) -> Fault {
        Fault::Statement { pattern: pattern.into(), code: code.into(), message: message.into() }
    }
}

#[derive(Default)]
struct State {
    faults: Vec<(Fault, usize)>,
    statements: Vec<String>,
    logins: usize,
}

/// The proxy; stops when dropped.
pub struct SnowProxy {
    pub port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl SnowProxy {
    /// Listens on a free loopback port and forwards to `upstream_port`.
    pub fn start(upstream_port: u16, faults: Vec<Fault>) -> SnowProxy {
        let state =
            Arc::new(Mutex::new(State { faults: faults.into_iter().map(|f| (f, 0)).collect(), ..Default::default() }));
        let st = state.clone();
        let (port, stop) = crate::http1::serve_until_stopped(move |conn| {
            let _ = serve(conn, upstream_port, &st);
        });
        SnowProxy { port, state, stop }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The statements that reached the proxy, in order (answered or not).
    pub fn statements(&self) -> Vec<String> {
        self.state.lock().expect("proxy state").statements.clone()
    }

    pub fn logins(&self) -> usize {
        self.state.lock().expect("proxy state").logins
    }

    /// Replaces the faults (counters start again).
    pub fn set_faults(&self, faults: Vec<Fault>) {
        self.state.lock().expect("proxy state").faults = faults.into_iter().map(|f| (f, 0)).collect();
    }
}

impl Drop for SnowProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

use crate::http1::{RawRequest as Request, read_request};

fn respond(out: &mut TcpStream, status: &str, content_type: &str, body: &[u8]) -> std::io::Result<()> {
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    out.write_all(body)?;
    out.flush()
}

fn snowflake_error(code: &str, message: &str) -> Vec<u8> {
    serde_json::json!({
        "data": {"errorCode": code, "sqlState": "42000", "internalError": false},
        "code": code,
        "message": message,
        "success": false,
        "headers": null
    })
    .to_string()
    .into_bytes()
}

/// Sends the request upstream (one connection, closed after) and returns the raw response.
fn forward(req: &Request, upstream_port: u16) -> std::io::Result<Vec<u8>> {
    let line = req.head.first().map_or("", String::as_str);
    crate::http1::forward(upstream_port, line, req.head.get(1..).unwrap_or_default(), &req.body)
}

fn serve(conn: TcpStream, upstream_port: u16, state: &Mutex<State>) -> std::io::Result<()> {
    let mut out = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    let Some(req) = read_request(&mut reader)? else { return Ok(()) };
    let path = req.head.first().and_then(|l| l.split_whitespace().nth(1)).unwrap_or("").to_owned();
    let json: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
    let mut after_forward_500 = false;
    if path.starts_with("/session/v1/login-request") {
        let mut st = state.lock().expect("proxy state");
        st.logins += 1;
        if let Some((Fault::Login { code, message }, _)) =
            st.faults.iter().find(|(f, _)| matches!(f, Fault::Login { .. }))
        {
            let body = snowflake_error(code, message);
            drop(st);
            return respond(&mut out, "200 OK", "application/json", &body);
        }
    } else if path.starts_with("/queries/v1/query-request") {
        let sql = json.get("sqlText").and_then(|s| s.as_str()).unwrap_or("").to_owned();
        let mut st = state.lock().expect("proxy state");
        st.statements.push(sql.clone());
        let upper = sql.to_ascii_uppercase();
        for (f, n) in st.faults.iter_mut() {
            match f {
                Fault::Statement { pattern, code, message } if upper.contains(&pattern.to_ascii_uppercase()) => {
                    let body = snowflake_error(code, message);
                    drop(st);
                    return respond(&mut out, "200 OK", "application/json", &body);
                }
                Fault::ServerErrorAfter { pattern, times }
                    if *n < *times && upper.contains(&pattern.to_ascii_uppercase()) =>
                {
                    *n += 1;
                    after_forward_500 = true;
                    break;
                }
                _ => {}
            }
        }
    }
    let resp = forward(&req, upstream_port)?;
    if after_forward_500 {
        return respond(
            &mut out,
            "500 Internal Server Error",
            "text/html",
            b"<html><body>500 Internal Server Error</body></html>",
        );
    }
    out.write_all(&resp)?;
    out.flush()
}
