//! A tiny scripted HTTP/1.1 server on 127.0.0.1: it answers requests from a
//! queue of canned replies, in order, and records every request it saw.
//! Dropping the [`Server`] stops it and every connection it holds.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// What the server does with the next request.
#[derive(Clone, Debug)]
pub enum Canned {
    /// A complete reply.
    Reply { status: u16, headers: Vec<(String, String)>, body: Vec<u8> },
    /// Headers announcing `declared` bytes, then only `body`, then the
    /// connection is closed.
    Truncated { declared: usize, body: Vec<u8> },
    /// Headers announcing `declared` bytes, then only `body`, then nothing
    /// more (the connection stays open until the server stops).
    Stalled { declared: usize, body: Vec<u8> },
    /// Never answers (the connection stays open until the server stops).
    Hang,
}

impl Canned {
    pub fn status(status: u16) -> Self {
        Canned::Reply { status, headers: Vec::new(), body: Vec::new() }
    }

    pub fn json(status: u16, body: &str) -> Self {
        Canned::status(status).header("content-type", "application/json").body(body)
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        if let Canned::Reply { headers, .. } = &mut self {
            headers.push((name.to_string(), value.to_string()));
        }
        self
    }

    pub fn body(mut self, text: &str) -> Self {
        if let Canned::Reply { body, .. } = &mut self {
            *body = text.as_bytes().to_vec();
        }
        self
    }
}

/// A request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    script: VecDeque<Canned>,
    seen: Vec<Seen>,
}

pub struct Server {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Server {
    pub async fn start(script: Vec<Canned>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State { script: script.into(), seen: Vec::new() }));
        let task = tokio::spawn(accept(listener, state.clone()));
        Server { addr, state, task }
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:<port>`, as messages name the host.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The accept task owns the JoinSet of connections: aborting it drops
        // the set, which aborts every connection task.
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, state: Arc<Mutex<State>>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((socket, _)) = listener.accept().await else { return };
        connections.spawn(serve(socket, state.clone()));
    }
}

async fn serve(mut socket: TcpStream, state: Arc<Mutex<State>>) {
    let mut buffer = Vec::new();
    loop {
        let Some(seen) = read_request(&mut socket, &mut buffer).await else { return };
        let canned = {
            let mut state = state.lock().unwrap();
            state.seen.push(seen);
            state.script.pop_front()
        };
        let canned = canned.unwrap_or_else(|| Canned::status(418).body("the test server's script ran out"));
        if !answer(&mut socket, canned).await {
            return;
        }
    }
}

/// Writes the reply; false when the connection is to be closed.
async fn answer(socket: &mut TcpStream, canned: Canned) -> bool {
    match canned {
        Canned::Reply { status, headers, body } => {
            let mut head = format!("HTTP/1.1 {status} Canned\r\ncontent-length: {}\r\n", body.len());
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            let mut bytes = head.into_bytes();
            bytes.extend_from_slice(&body);
            socket.write_all(&bytes).await.is_ok()
        }
        Canned::Truncated { declared, body } => {
            let head =
                format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {declared}\r\n\r\n");
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(&body).await;
            let _ = socket.flush().await;
            false
        }
        Canned::Stalled { declared, body } => {
            let head = format!("HTTP/1.1 200 OK\r\ncontent-type: text/csv\r\ncontent-length: {declared}\r\n\r\n");
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(&body).await;
            let _ = socket.flush().await;
            std::future::pending::<()>().await;
            false
        }
        Canned::Hang => {
            std::future::pending::<()>().await;
            false
        }
    }
}

/// Reads one request (head and `content-length` body) from the connection.
async fn read_request(socket: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Seen> {
    let head_end = loop {
        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        read_more(socket, buffer).await?;
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let (method, target) = (request_line.next()?.to_string(), request_line.next()?.to_string());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize =
        headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    while buffer.len() < head_end + length {
        read_more(socket, buffer).await?;
    }
    let body = buffer[head_end..head_end + length].to_vec();
    buffer.drain(..head_end + length);
    Some(Seen { method, target, headers, body, at: Instant::now() })
}

async fn read_more(socket: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 4096];
    let n = socket.read(&mut chunk).await.ok()?;
    if n == 0 {
        return None;
    }
    buffer.extend_from_slice(&chunk[..n]);
    Some(())
}
