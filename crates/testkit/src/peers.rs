//! Python peers the tests run against (DESIGN.md §10): pinned packages in a
//! virtualenv made once and cached (`$SIMPLYLOAD_PEERS_VENV`, default
//! `~/.cache/simplyload/peers-<pins>`), each server started on a free
//! loopback port and stopped when its value is dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The pinned packages (DESIGN.md §10; issue 5 lists what works here).
/// fakesnow 0.12.1 needs snowflake-connector-python below 5 (5.x breaks its import).
pub const PINS: &[&str] =
    &["moto[server]==5.2.5", "fakesnow[server]==0.12.1", "snowflake-connector-python<5", "localstripe==1.15.10"];

/// The cached virtualenv, created and filled on first use. Several test
/// processes may ask at once: a file lock lets one install while the others wait.
pub fn venv() -> PathBuf {
    let tag: String = simplyload_core::row_id::short_hash(PINS.join(" ").as_bytes());
    let dir = match std::env::var_os("SIMPLYLOAD_PEERS_VENV") {
        Some(d) => PathBuf::from(d),
        None => {
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
            home.join(".cache").join("simplyload").join(format!("peers-{tag}"))
        }
    };
    let marker = dir.join(".installed");
    if marker.exists() {
        return dir;
    }
    std::fs::create_dir_all(dir.parent().expect("venv has a parent")).expect("create the venv's parent folder");
    let lock = std::fs::File::create(dir.with_extension("lock")).expect("create the venv lock file");
    lock.lock().expect("lock the venv");
    if !marker.exists() {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        run(Command::new(&python).args(["-m", "venv"]).arg(&dir), "create the peers virtualenv");
        run(
            Command::new(dir.join("bin/pip")).args(["install", "--quiet", "--disable-pip-version-check"]).args(PINS),
            "pip install the test peers (needs PyPI)",
        );
        std::fs::write(&marker, PINS.join("\n")).expect("mark the venv installed");
    }
    dir
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Starts `program args…` from the venv and waits until `port` accepts connections.
pub(crate) fn start_server(program: &str, args: &[String], port: u16) -> Child {
    let log = tempfile::NamedTempFile::new().expect("server log").into_temp_path().keep().expect("keep log");
    let mut child = Command::new(venv().join("bin").join(program))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).expect("log file"))
        .stderr(std::fs::File::create(log.with_extension("err")).expect("log file"))
        .spawn()
        .unwrap_or_else(|e| panic!("start {program}: {e}"));
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            let err = std::fs::read_to_string(log.with_extension("err")).unwrap_or_default();
            panic!("{program} exited ({status}) before listening on {port}:\n{err}");
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{program} did not listen on {port} within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

/// A `moto` S3 server on a free loopback port.
pub struct Moto {
    pub port: u16,
    child: Child,
}

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let child =
            start_server("moto_server", &["-H".into(), "127.0.0.1".into(), "-p".into(), port.to_string()], port);
        Moto { port, child }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sends one plain HTTP/1.1 request; returns the status code and the response head and body.
    pub fn request(&self, method: &str, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .expect("send to moto");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let code = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (code, out)
    }

    pub fn create_bucket(&self, bucket: &str) {
        let (code, out) = self.request("PUT", &format!("/{bucket}"));
        assert_eq!(code, 200, "create bucket {bucket}:\n{out}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `fakesnow` Snowflake server (in-memory) on a free loopback port.
pub struct Fakesnow {
    pub port: u16,
    child: Child,
}

impl Fakesnow {
    pub fn start() -> Fakesnow {
        let port = free_port();
        let child = start_server("fakesnow", &["-s".into(), "-p".into(), port.to_string()], port);
        Fakesnow { port, child }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Fakesnow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
