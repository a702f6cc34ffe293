//! Turning a failed attempt into a [`simplyload_core::Error`] and a retry decision.
//!
//! Status → kind:
//!
//! | status | kind | why |
//! |---|---|---|
//! | 401 | `Auth` | the credentials were refused |
//! | 403 | `Permission` | known credentials, missing grant |
//! | 404, 410 | `NotFound` | a named object or endpoint does not exist |
//! | 408, 409, 420, 425, 429, 5xx | `Transient` | "not now", retried |
//! | any other 4xx (400, 422, …) | `Config` | see below |
//!
//! 400 and 422 mean the server refused the request *as we made it*. What a
//! replication sends — object names, fields, filters, the API version —
//! follows from the configuration, so the operator is the one who can change
//! it: `Config`, with the server's own words in the message. A source whose
//! [`ErrorReader`] knows better says so per reply (Salesforce's
//! `INVALID_FIELD` is a changed schema, `QUERY_TIMEOUT` is transient).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderName};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use simplyload_core::{Error, ErrorKind};

use crate::redact::{Redactor, excerpt};
use crate::reply::Target;
use crate::retry::{header_verdict, retry_after, retryable_status};

/// At most this much of an error body is read; the rest is not waited for.
pub(crate) const MAX_ERROR_BODY: usize = 64 * 1024;

/// Redaction looks at this much of a body before an excerpt is cut from it,
/// so a secret straddling the cut is masked whole, never shown in part.
const REDACT_WINDOW: usize = 4096;

/// Characters of the server's words an error message shows.
const MAX_DETAIL_CHARS: usize = 300;

/// A reply with status 400 or above, as an [`ErrorReader`] sees it. The body
/// is the first 64 KiB at most.
pub struct ErrorReply<'a> {
    pub method: &'a Method,
    /// The path called, without the query string.
    pub path: &'a str,
    pub status: StatusCode,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

impl ErrorReply<'_> {
    /// The body as JSON of type `T`, or `None` if it is not.
    pub fn json<T: DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_slice(self.body).ok()
    }
}

/// What a source's [`ErrorReader`] says about an error reply. Each part is
/// optional; what is left out comes from the status. The message replaces the
/// raw body excerpt (it is still redacted and cut to 300 characters).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ErrorDetail {
    pub message: Option<String>,
    pub hint: Option<String>,
    pub kind: Option<ErrorKind>,
    /// `Some(false)`: do not retry this reply even if its status says so;
    /// `Some(true)`: retry it even if its status does not (idempotent calls only).
    pub retry: Option<bool>,
    /// A wait the body asks for (a `Retry-After` header is read anyway).
    pub retry_after: Option<Duration>,
}

impl ErrorDetail {
    pub fn message(message: impl Into<String>) -> Self {
        ErrorDetail { message: Some(message.into()), ..Default::default() }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = Some(kind);
        self
    }

    pub fn with_retry(mut self, retry: bool) -> Self {
        self.retry = Some(retry);
        self
    }

    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }
}

/// A source's knowledge of its API's error bodies (Stripe's
/// `{"error":{"type","code","message","param"}}`, Salesforce's
/// `[{"errorCode","message"}]`), so messages name the fix. Called once for
/// every reply with status 400 or above, before the retry decision; it must
/// not block. A closure `Fn(&ErrorReply) -> ErrorDetail` is a reader too.
pub trait ErrorReader: Send + Sync {
    fn read(&self, reply: &ErrorReply<'_>) -> ErrorDetail;
}

impl<F> ErrorReader for F
where
    F: Fn(&ErrorReply<'_>) -> ErrorDetail + Send + Sync,
{
    fn read(&self, reply: &ErrorReply<'_>) -> ErrorDetail {
        self(reply)
    }
}

/// One failed attempt: the error it would end the call with, and whether and
/// when it may be tried again.
pub(crate) struct Failure {
    pub(crate) error: Error,
    /// Worth trying again, as far as the reply or the failure goes.
    pub(crate) retry: bool,
    /// False when the request provably never left (no connection): safe to
    /// retry whatever the method.
    pub(crate) sent: bool,
    pub(crate) retry_after: Option<Duration>,
    /// For the log line: `503` or `none`, and what went wrong.
    pub(crate) status: Option<StatusCode>,
    pub(crate) cause: String,
    pub(crate) request_id: Option<String>,
}

/// What an error reply is judged by: the source's reader and header.
pub(crate) struct Judge<'a> {
    pub(crate) reader: Option<&'a Arc<dyn ErrorReader>>,
    pub(crate) should_retry_header: Option<&'a HeaderName>,
    pub(crate) redactor: &'a Redactor,
}

impl Judge<'_> {
    /// An error reply (status ≥ 400) → a failure.
    pub(crate) fn reply(&self, target: &Target, reply: &ErrorReply<'_>, request_id: Option<String>) -> Box<Failure> {
        let detail = self.reader.map(|r| r.read(reply)).unwrap_or_default();
        let retry = header_verdict(reply.headers, self.should_retry_header)
            .or(detail.retry)
            .unwrap_or_else(|| retryable_status(reply.status));
        let kind = match detail.kind {
            Some(kind) => kind,
            None if retry => ErrorKind::Transient,
            None => kind_for_status(reply.status),
        };
        let said = match &detail.message {
            Some(message) => excerpt(self.redactor.redact(message).as_bytes(), MAX_DETAIL_CHARS),
            None => self.body_excerpt(reply.body),
        };
        let status = status_text(reply.status);
        let mut message = format!("{target}: {status}");
        if !said.is_empty() {
            message.push_str(&format!(": {said}"));
        }
        if let Some(id) = &request_id {
            message.push_str(&format!(" (request id {id})"));
        }
        let wait = detail.retry_after.or_else(|| retry_after(reply.headers, SystemTime::now()));
        let mut error = Error::new(kind, message);
        if let Some(hint) = detail.hint.or_else(|| default_hint(kind).map(String::from)) {
            error = error.with_hint(hint);
        }
        if let Some(wait) = wait {
            error = error.with_retry_after(wait);
        }
        Box::new(Failure {
            error,
            retry,
            sent: true,
            retry_after: wait,
            status: Some(reply.status),
            cause: status,
            request_id,
        })
    }

    fn body_excerpt(&self, body: &[u8]) -> String {
        let window = String::from_utf8_lossy(&body[..body.len().min(REDACT_WINDOW)]).into_owned();
        excerpt(self.redactor.redact(&window).as_bytes(), MAX_DETAIL_CHARS)
    }

    /// The connection failed, timed out or was cut → a failure.
    pub(crate) fn transport(&self, target: &Target, e: reqwest::Error) -> Box<Failure> {
        let e = e.without_url();
        let chain = self.redactor.redact(&error_chain(&e));
        let (what, retry, sent) = if e.is_builder() {
            ("the request could not be built", false, false)
        } else if e.is_connect() {
            ("could not connect", true, false)
        } else if e.is_timeout() {
            ("timed out", true, true)
        } else if e.is_body() || e.is_decode() {
            ("the connection failed while reading the reply", true, true)
        } else {
            ("the connection failed", true, true)
        };
        let kind = if retry { ErrorKind::Transient } else { ErrorKind::Internal };
        let cause = format!("{what}: {chain}");
        let error = Error::new(kind, format!("{target}: {cause}"));
        Box::new(Failure { error, retry, sent, retry_after: None, status: None, cause, request_id: None })
    }

    /// No complete reply within the call's timeout.
    pub(crate) fn timeout(&self, target: &Target, limit: Duration) -> Box<Failure> {
        let cause = format!("no complete reply within {limit:?}");
        let error = Error::transient(format!("{target}: {cause}"));
        Box::new(Failure { error, retry: true, sent: true, retry_after: None, status: None, cause, request_id: None })
    }
}

fn kind_for_status(status: StatusCode) -> ErrorKind {
    match status.as_u16() {
        401 => ErrorKind::Auth,
        403 => ErrorKind::Permission,
        404 | 410 => ErrorKind::NotFound,
        _ if retryable_status(status) => ErrorKind::Transient,
        _ => ErrorKind::Config,
    }
}

fn default_hint(kind: ErrorKind) -> Option<&'static str> {
    match kind {
        ErrorKind::Auth => Some("the credentials were refused: check the key or token in the configuration"),
        ErrorKind::Permission => Some(
            "the credentials work but may not make this call: grant the permission it names, or use a key that has it",
        ),
        ErrorKind::NotFound => Some("check the object or endpoint names in the configuration"),
        ErrorKind::Config => Some("the server refused the request as made: check the settings the message points at"),
        _ => None,
    }
}

/// `503 Service Unavailable`.
pub(crate) fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// The causes below a transport error, `: `-joined, repeats dropped.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cause = c.source();
    }
    if parts.is_empty() { e.to_string() } else { parts.join(": ") }
}
