//! The little HTTP/1.1 the test peers' proxies speak: a request's head
//! lines and body (by `Content-Length`), and form encoding.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;

/// A request as read: its head lines (the request line first) and body.
pub(crate) struct RawRequest {
    pub head: Vec<String>,
    pub body: Vec<u8>,
}

/// Reads one request; `None` when the connection closed first.
pub(crate) fn read_request(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<RawRequest>> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    let len = head
        .iter()
        .find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok()).flatten()
        })
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(Some(RawRequest { head, body }))
}

/// A form or query value, percent-encoded.
pub(crate) fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}
