//! What a source chooses about its client; every default is a named constant
//! with the reason it was chosen.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::{CancellationToken, ErrorReader, RateLimiter, Secret};

/// Sent as `User-Agent` unless a source sets its own.
pub const DEFAULT_USER_AGENT: &str = concat!("simplyload/", env!("CARGO_PKG_VERSION"));

/// A TCP + TLS handshake to a healthy API takes well under a second; 10 s
/// tolerates a slow network and still gives up quickly on an address that
/// swallows packets, so the retry can try a fresh connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longer than the slowest reply the APIs we read give on purpose (Salesforce
/// ends a SOQL query after about 2 minutes and says `QUERY_TIMEOUT`, which is
/// better to read than to cut off); short enough that a hung connection costs
/// minutes, not a sync. For a streamed body it bounds each wait for data.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(180);

/// Five tries ride out a restart or a burst of 429s (the backoff waits up to
/// 0.5 + 1 + 2 + 4 s between them); anything longer is the sync runner's
/// business, which retries the stream with its own backoff.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// First backoff step (Stripe's libraries start at 0.5 s).
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(500);

/// Longest backoff step (the Stripe reference design caps at 30 s).
pub const DEFAULT_BACKOFF_CAP: Duration = Duration::from_secs(30);

/// A `Retry-After` up to this long is sat out inside the call (Stripe's
/// libraries honour up to 60 s); a longer one ends the call with a
/// `Transient` error carrying the wait, and the runner's policy decides.
pub const DEFAULT_MAX_WAIT_IN_CALL: Duration = Duration::from_secs(60);

/// Response headers that carry the server's id for a request (Stripe's
/// `Request-Id`, the common `X-Request-Id`), logged and put into errors so
/// support can find the call.
pub const DEFAULT_REQUEST_ID_HEADERS: &[&str] = &["request-id", "x-request-id"];

/// How a client proves who it is. Every variant keeps its secret in a
/// [`Secret`]; `Debug` never shows it. Client-level credentials are only sent
/// to the base URL's origin (scheme, host, port), never to another host a
/// source follows a link to.
#[derive(Clone, Debug, Default)]
pub enum Auth {
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// `Authorization: Basic base64(user:password)`; the user may be the
    /// secret itself (Stripe accepts the key as user and no password).
    Basic { user: Secret, password: Option<Secret> },
    /// A header of its own carries the key (`X-Api-Key: …`).
    Header { name: String, value: Secret },
}

/// A client-side rate limit: on average `per_second` attempts a second, and
/// up to `burst` at once after a quiet spell.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

/// How to build an [`HttpClient`](crate::HttpClient). Start from
/// [`HttpOptions::new`], which fills in the documented defaults, then change
/// fields. [`HttpClient::new`](crate::HttpClient::new) validates them and says
/// which one is wrong.
#[derive(Clone)]
#[non_exhaustive]
pub struct HttpOptions {
    /// Scheme, host, port and an optional path prefix; a call's path is
    /// appended to it (`https://api.stripe.com` + `/v1/customers`). A call
    /// may instead name an absolute URL.
    pub base_url: String,
    pub user_agent: String,
    pub connect_timeout: Duration,
    /// The whole attempt: connecting, sending, and reading the reply; for a
    /// streamed body, the headers and then each wait for more data.
    pub request_timeout: Duration,
    /// Tries per call, the first included (1 = never retry).
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// The longest `Retry-After` sat out inside a call.
    pub max_wait_in_call: Duration,
    /// Shared by every clone of the client, and by other clients given a
    /// clone of the same limiter. `None`: no client-side limit.
    pub rate_limiter: Option<RateLimiter>,
    /// Sent with every call (e.g. `Stripe-Version`). Not secret: use
    /// [`HttpOptions::auth`] for keys.
    pub default_headers: Vec<(String, String)>,
    pub auth: Auth,
    /// A reply header whose `true` / `false` overrules the retry decision,
    /// e.g. `Stripe-Should-Retry`.
    pub should_retry_header: Option<String>,
    /// Reply headers that carry the server's request id, first match wins.
    pub request_id_headers: Vec<String>,
    /// Reads the API's error bodies into a message, a hint and a decision.
    pub error_reader: Option<Arc<dyn ErrorReader>>,
    /// Cancels every call of the client (a call may carry its own token too).
    pub cancel: Option<CancellationToken>,
}

impl HttpOptions {
    pub fn new(base_url: impl Into<String>) -> Self {
        HttpOptions {
            base_url: base_url.into(),
            user_agent: DEFAULT_USER_AGENT.to_string(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_cap: DEFAULT_BACKOFF_CAP,
            max_wait_in_call: DEFAULT_MAX_WAIT_IN_CALL,
            rate_limiter: None,
            default_headers: Vec::new(),
            auth: Auth::None,
            should_retry_header: None,
            request_id_headers: DEFAULT_REQUEST_ID_HEADERS.iter().map(|h| h.to_string()).collect(),
            error_reader: None,
            cancel: None,
        }
    }
}

impl fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.default_headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("HttpOptions")
            .field("base_url", &crate::redact::url_for_display(&self.base_url))
            .field("user_agent", &self.user_agent)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_cap", &self.backoff_cap)
            .field("max_wait_in_call", &self.max_wait_in_call)
            .field("rate_limiter", &self.rate_limiter)
            .field("default_headers", &header_names)
            .field("auth", &self.auth)
            .field("should_retry_header", &self.should_retry_header)
            .field("request_id_headers", &self.request_id_headers)
            .field("error_reader", &self.error_reader.as_ref().map(|_| "custom"))
            .field("cancel", &self.cancel.is_some())
            .finish()
    }
}
