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

/// A listener on a free loopback port, served until the returned flag is
/// set: each connection on a thread of its own, handed to `serve`.
pub(crate) fn serve_until_stopped(
    serve: impl Fn(TcpStream) + Send + Sync + 'static,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = listener.local_addr().expect("the listener's address").port();
    listener.set_nonblocking(true).expect("a nonblocking listener");
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let (flag, serve) = (stop.clone(), std::sync::Arc::new(serve));
    std::thread::spawn(move || {
        while !flag.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((conn, _)) => {
                    let serve = serve.clone();
                    std::thread::spawn(move || serve(conn));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(_) => break,
            }
        }
    });
    (port, stop)
}

/// Sends a request upstream on a connection of its own, closed after: the
/// request line, the head lines but `Connection`/`Keep-Alive`, the body;
/// returns the raw response.
pub(crate) fn forward(port: u16, request_line: &str, head: &[String], body: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut up = TcpStream::connect(("127.0.0.1", port))?;
    let mut text = format!("{request_line}\r\n");
    for h in head {
        let name = h.split(':').next().unwrap_or("").to_ascii_lowercase();
        if name == "connection" || name == "keep-alive" {
            continue;
        }
        text.push_str(h);
        text.push_str("\r\n");
    }
    text.push_str("Connection: close\r\n\r\n");
    up.write_all(text.as_bytes())?;
    up.write_all(body)?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    Ok(resp)
}
