//! What the CLI writes besides its results: errors and notices on stderr
//! (log records under `--log-format json`, so a log shipper gets one
//! format), colour only on a terminal, and the exit codes scripts rely on.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

/// Exit codes (docs/operations.md has the table).
pub mod exit {
    /// Everything asked for succeeded.
    pub const OK: u8 = 0;
    /// Something asked for failed: a sync, a check, a stream.
    pub const FAILED: u8 = 1;
    /// Bad usage or config: nothing was attempted.
    pub const USAGE: u8 = 2;
    /// Another process is syncing the pipeline (its lock is held); nothing
    /// failed — try again later, or pass `--wait`.
    pub const BUSY: u8 = 3;
    /// Stopped by SIGINT or SIGTERM at a batch boundary; the next sync goes on.
    pub const STOPPED: u8 = 130;
}

static JSON: AtomicBool = AtomicBool::new(false);

/// Errors and notices become log records (set with `--log-format json`).
pub fn set_json(json: bool) {
    JSON.store(json, Ordering::Relaxed);
}

/// Colour on stderr only on a terminal, and never with `NO_COLOR` set
/// (<https://no-color.org>).
pub fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// An error, with what it concerns (`pipeline main`).
pub fn error(context: Option<&str>, e: &simplyload_core::Error) {
    if JSON.load(Ordering::Relaxed) {
        tracing::error!(kind = %e.kind(), hint = e.hint(), context, "{}", e.message());
    } else {
        match context {
            Some(c) => eprintln!("error: {c}: {e}"),
            None => eprintln!("error: {e}"),
        }
    }
}

/// A line for the person or the log about what the process is doing.
pub fn notice(message: &str) {
    if JSON.load(Ordering::Relaxed) {
        tracing::warn!("{message}");
    } else {
        eprintln!("{message}");
    }
}

/// The exit code of an error the command ended with.
pub fn code_of(e: &simplyload_core::Error) -> u8 {
    use simplyload_core::ErrorKind;
    match e.kind() {
        ErrorKind::Config => exit::USAGE,
        ErrorKind::Busy => exit::BUSY,
        ErrorKind::Cancelled => exit::STOPPED,
        _ => exit::FAILED,
    }
}
