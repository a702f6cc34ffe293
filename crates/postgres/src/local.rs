//! A throwaway local Postgres server from the installed server binaries:
//! `initdb` + `pg_ctl` on a free loopback port in a temp dir, stopped and
//! removed on drop. Used by `simplyload quickstart` and by the test harness.
//!
//! Postgres refuses to run as root, so when we are root the server runs as
//! the `postgres` user (`runuser -u postgres --`) and its directory is
//! handed to that user; otherwise it runs as the current user.
//!
//! `initdb` takes seconds, so a freshly initialised cluster is kept as a
//! template (per user, per server version) and copied for each new server.

use simplyload_core::{Error, ErrorKind, Result};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The superuser of a local server; it can log in over TCP without a password.
pub const SUPERUSER: &str = "postgres";

/// How to start a local server.
#[derive(Debug, Clone, Default)]
pub struct LocalOptions {
    /// Extra `-c name=value` settings.
    pub settings: Vec<(String, String)>,
    /// Keep `fsync` on (off by default: these servers are throwaway).
    pub durable: bool,
}

/// A running local Postgres server.
#[derive(Debug)]
pub struct LocalPostgres {
    dir: PathBuf,
    data: PathBuf,
    port: u16,
    run_as: Option<String>,
    bin: PathBuf,
    stopped: bool,
}

impl LocalPostgres {
    /// Starts a server with `wal_level=logical` on a free port.
    pub fn start(opts: &LocalOptions) -> Result<LocalPostgres> {
        let bin = find_bin_dir()?;
        let run_as = if is_root() { Some("postgres".to_owned()) } else { None };
        let dir = tempfile::Builder::new().prefix("simplyload-pg-").tempdir()?.keep();
        let data = dir.join("data");
        let template = template_dir(&bin, run_as.as_deref())?;
        copy_dir(&template, &data)?;
        if let Some(user) = &run_as {
            chown_r(&dir, user)?;
        }
        let mut server = LocalPostgres { dir, data, port: 0, run_as, bin, stopped: true };
        let mut last = None;
        for _ in 0..5 {
            server.port = free_port()?;
            match server.pg_ctl_start(opts) {
                Ok(()) => {
                    server.stopped = false;
                    return Ok(server);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("tried at least once"))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// A URL for `database` as the superuser.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}?sslmode=disable", self.port)
    }

    /// A URL for `database` as `user` with `password`.
    pub fn url_as(&self, user: &str, password: &str, database: &str) -> String {
        format!("postgres://{}:{}@127.0.0.1:{}/{database}?sslmode=disable", pct(user), pct(password), self.port)
    }

    /// Runs a `psql` command as the superuser.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String> {
        let out = self
            .command("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-U", SUPERUSER, "-d", database, "-c", sql])
            .output()?;
        check_output("psql", &out)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs a script through psql's standard input, statement by statement
    /// (as `psql -f` would: not in one transaction), stopping at the first error.
    pub fn psql_script(&self, database: &str, sql: &str) -> Result<String> {
        use std::io::Write;
        let mut child = self
            .command("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-U", SUPERUSER, "-d", database, "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        child.stdin.take().expect("piped stdin").write_all(sql.as_bytes())?;
        let out = child.wait_with_output()?;
        check_output("psql", &out)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The folder holding the data directory, the socket and the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes sure the server stops and its folder goes when process `pid`
    /// ends, however it ends (a SIGKILL included): a small watchdog shell,
    /// detached, polls the process once a second. For servers whose value is
    /// never dropped (one server shared by the tests of a binary).
    pub fn stop_when_process_ends(&self, pid: u32) -> Result<()> {
        let pg_ctl = self.bin.join("pg_ctl");
        let stop = match &self.run_as {
            Some(user) => format!("runuser -u {user} -- '{}'", pg_ctl.display()),
            None => format!("'{}'", pg_ctl.display()),
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {stop} -D '{data}' -m immediate -w -t 30 stop >/dev/null 2>&1; rm -rf '{dir}'",
            data = self.data.display(),
            dir = self.dir.display()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        Ok(())
    }

    /// Stops the server now (fast shutdown: open transactions are rolled back).
    pub fn stop(&mut self) -> Result<()> {
        self.pg_ctl_stop("fast")
    }

    /// Stops the server abruptly (simulates a crash or network loss).
    pub fn kill(&mut self) -> Result<()> {
        self.pg_ctl_stop("immediate")
    }

    fn pg_ctl_stop(&mut self, mode: &str) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let out =
            self.command("pg_ctl").arg("-D").arg(&self.data).args(["-m", mode, "-w", "-t", "30", "stop"]).output()?;
        check_output("pg_ctl stop", &out)
    }

    /// Starts a stopped server again on the same port.
    pub fn restart(&mut self, opts: &LocalOptions) -> Result<()> {
        if !self.stopped {
            return Ok(());
        }
        self.pg_ctl_start(opts)?;
        self.stopped = false;
        Ok(())
    }

    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        let exe = if exe.is_file() { exe } else { PathBuf::from(program) };
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    fn pg_ctl_start(&self, opts: &LocalOptions) -> Result<()> {
        let mut o = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c wal_level=logical -c max_wal_senders=10 \
             -c max_replication_slots=10 -c max_connections=60 -c shared_buffers=128MB",
            self.port,
            self.dir.display()
        );
        if !opts.durable {
            o.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        for (k, v) in &opts.settings {
            o.push_str(&format!(" -c {k}={v}"));
        }
        let log = self.dir.join("server.log");
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o", &o, "start"])
            .output()?;
        if !out.status.success() {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(10).collect();
            return Err(Error::new(
                ErrorKind::Transient,
                format!(
                    "pg_ctl start failed: {}{}\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ),
            ));
        }
        Ok(())
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(error = %e, "stopping the local Postgres failed; killing it");
            self.stopped = false;
            let _ = self.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pct(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn check_output(what: &str, out: &Output) -> Result<()> {
    if out.status.success() {
        return Ok(());
    }
    Err(Error::internal(format!(
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )))
}

/// Finds `initdb` and `pg_ctl`: `$PG_BIN`, then `PATH`, then Debian's layout.
pub fn find_bin_dir() -> Result<PathBuf> {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    // PATH often holds symlinks (/usr/local/bin/initdb → /usr/lib/postgresql/15/bin/initdb);
    // the real folder also has psql of the same version.
    let real = |d: &Path| {
        std::fs::canonicalize(d.join("initdb"))
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or(d.to_path_buf())
    };
    if let Ok(d) = std::env::var("PG_BIN") {
        let d = PathBuf::from(d);
        if has(&d) {
            return Ok(real(&d));
        }
    }
    if let Ok(path) = std::env::var("PATH") {
        for d in std::env::split_paths(&path) {
            if has(&d) {
                return Ok(real(&d));
            }
        }
    }
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).filter(|d| has(d)).collect())
        .unwrap_or_default();
    debian.sort();
    debian.pop().ok_or_else(|| {
        Error::not_found("the Postgres server programs (initdb, pg_ctl) were not found")
            .with_hint("install Postgres (Debian: apt-get install postgresql) or set PG_BIN to their folder")
    })
}

/// An initialised cluster to copy, made once per user and server version.
fn template_dir(bin: &Path, run_as: Option<&str>) -> Result<PathBuf> {
    let version = Command::new(bin.join("initdb")).arg("--version").output()?;
    let version = String::from_utf8_lossy(&version.stdout);
    let tag: String = version.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '.').collect();
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let dir = std::env::temp_dir().join(format!("simplyload-pg-template-{uid}-{tag}-v1"));
    if dir.join("PG_VERSION").is_file() && dir.join(".complete").is_file() {
        return Ok(dir);
    }
    let work = tempfile::Builder::new().prefix("simplyload-pg-init-").tempdir()?.keep();
    let data = work.join("data");
    if let Some(user) = run_as {
        chown_r(&work, user)?;
    }
    let initdb = |c: &mut Command| {
        c.arg("-D")
            .arg(&data)
            .args([
                "-U",
                SUPERUSER,
                "-E",
                "UTF8",
                "--locale=C",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-N",
            ])
            .output()
    };
    let out = match run_as {
        Some(user) => initdb(Command::new("runuser").args(["-u", user, "--"]).arg(bin.join("initdb"))),
        None => initdb(&mut Command::new(bin.join("initdb"))),
    }?;
    check_output("initdb", &out)?;
    // The superuser may log in over loopback without a password; every other
    // role needs its password (so tests can exercise wrong passwords).
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\n\
         host all postgres 127.0.0.1/32 trust\n\
         host all all 127.0.0.1/32 scram-sha-256\n\
         host replication postgres 127.0.0.1/32 trust\n\
         host replication all 127.0.0.1/32 scram-sha-256\n",
    )?;
    std::fs::write(data.join(".complete"), "")?;
    // Publish atomically: concurrent test processes may race to make it.
    match std::fs::rename(&data, &dir) {
        Ok(()) => {}
        Err(_) if dir.join(".complete").is_file() => {}
        Err(e) => return Err(Error::from(e).context(format!("creating {}", dir.display()))),
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(dir)
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    let out = Command::new("cp").arg("-a").arg(from).arg(to).output()?;
    check_output("cp", &out)
}

fn chown_r(dir: &Path, user: &str) -> Result<()> {
    let out = Command::new("chown").arg("-R").arg(format!("{user}:")).arg(dir).output()?;
    check_output("chown", &out)?;
    // The server's directory must not be readable by others.
    let out = Command::new("chmod").arg("700").arg(dir).output()?;
    check_output("chmod", &out)
}
