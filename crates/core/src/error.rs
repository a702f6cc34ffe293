//! Errors: rich where they happen, classified at the crate boundary.
//!
//! Every connector keeps its own detailed error type and converts it into
//! [`Error`] with an [`ErrorKind`] when it crosses into the runner. One
//! function, [`Error::policy`], decides what happens next: retry within this
//! sync, fail this sync and try again at the next, or stop the pipeline until
//! an operator acts. Messages name the thing that failed; the hint says how to
//! fix it. An error may carry how long the other side asked us to wait
//! ([`Error::retry_after`], an HTTP `Retry-After`), which the retry honours.

use std::fmt;
use std::time::Duration;

/// What kind of failure this is, which decides whether it is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The configuration is wrong: unknown key, missing reference, bad value.
    Config,
    /// Credentials were refused.
    Auth,
    /// Connected, but a grant or attribute is missing.
    Permission,
    /// A table, schema, database, object or file that was named does not exist.
    NotFound,
    /// The source holds something SimplyLoad does not handle (yet).
    Unsupported,
    /// A value could not be carried exactly and `on_unrepresentable: fail` is set,
    /// or data read from a peer was malformed.
    Data,
    /// Network cut, timeout, server restart, an HTTP 5xx or 429: worth retrying soon.
    Transient,
    /// Another process holds what we need (a lock, a file, a session): try
    /// again once it lets go.
    #[serde(alias = "conflict")]
    Busy,
    /// The source changed shape after the sync planned it (a column dropped
    /// or retyped during the read): the next sync plans again.
    StalePlan,
    /// The sync was asked to stop (SIGTERM, a server shutting down) and
    /// stopped at a batch boundary; nothing is half done.
    Cancelled,
    /// A bug in SimplyLoad.
    Internal,
}

/// What to do after an error: the one decision every caller (the runner's
/// retries, the scheduler, the API) takes from [`Error::policy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Try again within this sync, with backoff (at least `retry_after`).
    RetryNow,
    /// End this sync as failed; the next sync tries again (and plans again).
    RetryNextSync,
    /// Stop the pipeline until someone changes something (config, grants, data).
    NeedsOperator,
}

impl Policy {
    /// What the operator is told about it.
    pub fn hint(self) -> &'static str {
        match self {
            Policy::RetryNow => "retried automatically with backoff",
            Policy::RetryNextSync => "nothing to do: the next sync tries again",
            Policy::NeedsOperator => "this needs an operator: fix the cause above, then sync again",
        }
    }
}

/// A wait asked for that is longer than this is not sat out inside a sync:
/// the sync ends and the next one tries again.
pub const MAX_WAIT_IN_SYNC: Duration = Duration::from_secs(300);

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Auth => "auth",
            ErrorKind::Permission => "permission",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Data => "data",
            ErrorKind::Transient => "transient",
            ErrorKind::Busy => "busy",
            ErrorKind::StalePlan => "stale_plan",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error that crossed a crate boundary: a kind, a message naming the thing
/// that failed, and optionally how to fix it and how long to wait.
pub struct Error {
    kind: ErrorKind,
    message: String,
    hint: Option<String>,
    retry_after: Option<Duration>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), hint: None, retry_after: None, source: None }
    }

    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    pub fn data(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Data, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Transient, message)
    }

    pub fn busy(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Busy, message)
    }

    pub fn stale_plan(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::StalePlan, message)
    }

    /// The sync was asked to stop.
    pub fn cancelled() -> Self {
        Self::new(ErrorKind::Cancelled, "the sync was asked to stop; it stopped at a batch boundary")
            .with_hint("nothing was lost: the next sync goes on from the last loaded batch")
    }

    /// How to fix it, shown after the message.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The other side asked to wait this long before trying again.
    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Prefixes the message with where it happened (`stream public.orders: …`).
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The single place that decides what follows this error.
    pub fn policy(&self) -> Policy {
        match self.kind {
            ErrorKind::Transient | ErrorKind::Busy => match self.retry_after {
                Some(wait) if wait > MAX_WAIT_IN_SYNC => Policy::RetryNextSync,
                _ => Policy::RetryNow,
            },
            ErrorKind::StalePlan | ErrorKind::Cancelled => Policy::RetryNextSync,
            ErrorKind::Config
            | ErrorKind::Auth
            | ErrorKind::Permission
            | ErrorKind::NotFound
            | ErrorKind::Unsupported
            | ErrorKind::Data
            | ErrorKind::Internal => Policy::NeedsOperator,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Messages are built by us and never hold secrets; the source error may
        // come from a driver, so only its Display (not Debug) is shown.
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(hint) = &self.hint {
            d.field("hint", hint);
        }
        if let Some(wait) = &self.retry_after {
            d.field("retry_after", wait);
        }
        if let Some(source) = &self.source {
            d.field("source", &source.to_string());
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::PermissionDenied => ErrorKind::Permission,
            std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::UnexpectedEof => ErrorKind::Transient,
            _ => ErrorKind::Internal,
        };
        Error::new(kind, e.to_string())
    }
}

impl From<arrow_schema::ArrowError> for Error {
    fn from(e: arrow_schema::ArrowError) -> Self {
        Error::internal(format!("arrow: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_retries_only_transient_kinds() {
        let policy = |k: ErrorKind| Error::new(k, "x").policy();
        assert_eq!(policy(ErrorKind::Transient), Policy::RetryNow);
        assert_eq!(policy(ErrorKind::Busy), Policy::RetryNow);
        assert_eq!(policy(ErrorKind::StalePlan), Policy::RetryNextSync);
        assert_eq!(policy(ErrorKind::Cancelled), Policy::RetryNextSync);
        assert_eq!(policy(ErrorKind::Auth), Policy::NeedsOperator);
        assert_eq!(policy(ErrorKind::Config), Policy::NeedsOperator);
        assert_eq!(policy(ErrorKind::Permission), Policy::NeedsOperator);
    }

    #[test]
    fn a_long_retry_after_waits_for_the_next_sync() {
        let e = Error::transient("429 Too Many Requests").with_retry_after(Duration::from_secs(2));
        assert_eq!((e.policy(), e.retry_after()), (Policy::RetryNow, Some(Duration::from_secs(2))));
        let e = Error::transient("daily API limit reached").with_retry_after(Duration::from_secs(3600));
        assert_eq!(e.policy(), Policy::RetryNextSync);
        assert_eq!(serde_json::from_str::<ErrorKind>("\"conflict\"").unwrap(), ErrorKind::Busy);
    }

    #[test]
    fn display_carries_hint_and_context() {
        let e = Error::new(ErrorKind::NotFound, "table public.nope does not exist")
            .with_hint("run `simplyload discover app` to list tables")
            .context("source app");
        assert_eq!(
            e.to_string(),
            "source app: table public.nope does not exist\n  hint: run `simplyload discover app` to list tables"
        );
    }
}
