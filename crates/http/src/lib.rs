//! The HTTP client every API source (Stripe, Salesforce, …) talks through.
//!
//! A source builds one [`HttpClient`] from [`HttpOptions`] and makes its calls
//! with [`HttpClient::get`] / [`HttpClient::post`]. Everything an API source
//! would otherwise write again lives here, once:
//!
//! * **TLS** is rustls with the ring provider and the system's root
//!   certificates, like every other connection SimplyLoad makes; `http://` is
//!   allowed (local fakes and tests).
//! * **A client-side rate limit** (a token bucket, [`RateLimiter`]) is taken
//!   before every attempt, retries included, so a sync stays under the API's
//!   published limit instead of learning it from 429s. Clones of a client share
//!   the bucket; waiting for a token is a timer, never a busy loop.
//! * **Retries happen in one place** ([`HttpClient`]'s call loop): connect
//!   errors, timeouts, connection resets, a body cut short, 408, 409, 420, 425,
//!   429 and 5xx are tried again after a jittered exponential backoff, never
//!   sooner than the server's `Retry-After`. Only idempotent calls are retried
//!   (GET, HEAD, PUT, DELETE, OPTIONS, or a call marked
//!   [`Request::idempotent`]); any call is retried when its connection could
//!   not even be opened, because then nothing was sent. A source may overrule
//!   the decision per reply: a header such as Stripe's `Stripe-Should-Retry`
//!   ([`HttpOptions::should_retry_header`]) or its [`ErrorReader`].
//! * **Errors are classified at the boundary** into
//!   [`simplyload_core::Error`]: 401 → `Auth`, 403 → `Permission`, 404/410 →
//!   `NotFound`, other 4xx → `Config`, retryable failures → `Transient`, a reply
//!   that cannot be decoded → `Data`. When retries run out, or the server asks
//!   for a longer wait than one call may sit out, the error is `Transient`
//!   with `retry_after` set and [`simplyload_core::Error::policy`] decides
//!   whether the sync retries now or at the next sync. Messages name the
//!   method, host, path and status, then what the server said: a source's
//!   [`ErrorReader`] turns its API's error body into a sentence that names the
//!   fix; without one a short excerpt of the body is shown.
//! * **Secrets stay out of logs, errors and `Debug`**: credentials are
//!   [`Secret`]s and sensitive headers; logs show query *keys* only; error
//!   messages show the path without its query; body excerpts pass through a
//!   redactor that masks the client's own credentials, `Bearer …`, and values
//!   of names such as `token`, `sig`, `X-Amz-Signature`, `password`, `cookie`.
//! * **Logging**: one `debug` line per attempt and one `warn` per retry
//!   (method, host, path, query keys, status, attempt, wait, elapsed, and the
//!   server's request id from the headers listed in
//!   [`HttpOptions::request_id_headers`]).
//! * **Cancellation**: a [`CancellationToken`] (per client or per call) ends
//!   a backoff, a wait for the rate limiter or a call in flight at once with
//!   `ErrorKind::Cancelled`.

mod classify;
mod client;
mod http_date;
mod limit;
mod options;
mod redact;
mod reply;
mod retry;
mod tls;

pub use classify::{ErrorDetail, ErrorReader, ErrorReply};
pub use client::{HttpClient, Request};
pub use http_date::parse as parse_http_date;
pub use limit::RateLimiter;
pub use options::{Auth, HttpOptions, RateLimit};
pub use reply::{BodyStream, Reply, StreamingReply};

pub use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
pub use reqwest::{Method, StatusCode, Url};
pub use simplyload_core::config::Secret;
pub use tokio_util::sync::CancellationToken;
