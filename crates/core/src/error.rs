//! Errors: rich where they happen, classified at the crate boundary.
//!
//! Every connector keeps its own detailed error type and converts it into
//! [`Error`] with an [`ErrorKind`] when it crosses into the runner. The kind
//! alone decides what happens next ([`ErrorKind::policy`]): retry with
//! backoff, or stop and tell the operator what to fix. Messages name the thing
//! that failed; the hint says how to fix it.

use std::fmt;

/// What kind of failure this is, which decides whether it is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The configuration is wrong: unknown key, missing reference, bad value.
    Config,
    /// Credentials were refused.
    Auth,
    /// Connected, but a grant or attribute is missing.
    Permission,
    /// A table, schema, database or file that was named does not exist.
    NotFound,
    /// The source holds something SimplyLoad does not handle (yet).
    Unsupported,
    /// A value could not be carried exactly and `on_unrepresentable: fail` is set,
    /// or data read from a peer was malformed.
    Data,
    /// Network cut, timeout, server restart, serialization failure: worth retrying.
    Transient,
    /// Another process holds what we need (a lock, a file), or state disagrees.
    Conflict,
    /// A bug in SimplyLoad.
    Internal,
}

/// What the runner does with an error of a given kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryPolicy {
    /// Try again with backoff; the failure is likely to go away by itself.
    RetryWithBackoff,
    /// Stop: someone has to change something (config, grants, the data).
    NeedsOperator,
}

impl ErrorKind {
    /// The single place that maps a kind to a retry decision.
    pub fn policy(self) -> RetryPolicy {
        match self {
            ErrorKind::Transient | ErrorKind::Conflict => RetryPolicy::RetryWithBackoff,
            _ => RetryPolicy::NeedsOperator,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Auth => "auth",
            ErrorKind::Permission => "permission",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Data => "data",
            ErrorKind::Transient => "transient",
            ErrorKind::Conflict => "conflict",
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
/// that failed, and optionally how to fix it.
pub struct Error {
    kind: ErrorKind,
    message: String,
    hint: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), hint: None, source: None }
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

    /// How to fix it, shown after the message.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
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
        assert_eq!(ErrorKind::Transient.policy(), RetryPolicy::RetryWithBackoff);
        assert_eq!(ErrorKind::Auth.policy(), RetryPolicy::NeedsOperator);
        assert_eq!(ErrorKind::Config.policy(), RetryPolicy::NeedsOperator);
        assert_eq!(ErrorKind::Permission.policy(), RetryPolicy::NeedsOperator);
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
