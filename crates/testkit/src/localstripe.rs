//! `localstripe` (PyPI, GPL: run as a separate process, never copied), the
//! Stripe server the Stripe source is tested against (DESIGN.md §10).
//!
//! The stock command binds every interface and keeps its store in the fixed
//! `/tmp/localstripe.pickle`, shared by every instance on the host. Ours is
//! started through a few lines of our own that bind 127.0.0.1 and keep the
//! store in the instance's own temp folder; each test has its instance,
//! stopped when the value is dropped.

use crate::http1::encode;
use crate::peers::{free_port, start_server};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Child;

/// The key tests use: localstripe takes any `sk_…` key.
pub const KEY: &str = "sk_test_simplyload";

/// Starts localstripe's aiohttp app on 127.0.0.1, its pickle in a folder of ours.
const WRAPPER: &str = r#"
import os, pickle, sys
from aiohttp import web
import localstripe.resources as resources
store = os.path.join(sys.argv[2], 'localstripe.pickle')
def dump_to_disk(self):
    with open(store, 'wb') as f:
        pickle.dump(self, f, protocol=pickle.HIGHEST_PROTOCOL)
resources.Store.dump_to_disk = dump_to_disk
from localstripe.server import app
web.run_app(app, host='127.0.0.1', port=int(sys.argv[1]), print=None)
"#;

/// A localstripe server on a free loopback port.
pub struct LocalStripe {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl LocalStripe {
    pub fn start() -> LocalStripe {
        let port = free_port();
        let dir = tempfile::tempdir().expect("localstripe folder");
        let args = vec!["-c".to_owned(), WRAPPER.to_owned(), port.to_string(), dir.path().display().to_string()];
        let child = start_server("python", &args, port);
        LocalStripe { port, child, _dir: dir }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One call with a form body; the status and the JSON reply.
    pub fn call(&self, method: &str, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let body: String =
            form.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&");
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to localstripe");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {KEY}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .expect("send to localstripe");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read from localstripe");
        let code = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let json = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        (code, serde_json::from_str(json).unwrap_or(Value::Null))
    }

    /// A call that must succeed; its JSON reply.
    pub fn ok(&self, method: &str, path: &str, form: &[(&str, &str)]) -> Value {
        let (code, v) = self.call(method, path, form);
        assert_eq!(code, 200, "{method} {path}: {v}");
        v
    }

    pub fn post(&self, path: &str, form: &[(&str, &str)]) -> Value {
        self.ok("POST", path, form)
    }

    /// Every object of a list (oldest first, as localstripe lists).
    pub fn list_all(&self, path: &str) -> Vec<Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let v = self.ok("GET", &format!("{path}{sep}limit=100000"), &[]);
        v["data"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for LocalStripe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
