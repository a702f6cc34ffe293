//! The client, a call being built, and the one loop that retries.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, Url};
use serde::Serialize;
use simplyload_core::{Error, ErrorKind, Result};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::classify::{ErrorReply, Failure, Judge, MAX_ERROR_BODY};
use crate::redact::{Redactor, url_for_display};
use crate::reply::{Reply, StreamingReply, Target};
use crate::retry::{Backoff, idempotent_method};
use crate::{Auth, ErrorReader, HttpOptions, RateLimiter, Secret};

/// Longest request id kept from a reply header.
const MAX_REQUEST_ID_LEN: usize = 128;

/// An HTTP client for one API. Cheap to clone; clones share the connection
/// pool and the rate limiter. A caller may rely on: every call passing the
/// rate limiter before each attempt; idempotent calls being retried as the
/// module docs say; every error being a classified
/// [`simplyload_core::Error`] whose message names method, host, path and
/// status and holds no credential; and cancellation ending any wait at once.
#[derive(Clone)]
pub struct HttpClient {
    inner: Arc<Inner>,
    cancel: Option<CancellationToken>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    auth: ClientAuth,
    redactor: Redactor,
    max_attempts: u32,
    backoff: Backoff,
    request_timeout: Duration,
    max_wait_in_call: Duration,
    limiter: Option<RateLimiter>,
    should_retry_header: Option<HeaderName>,
    request_id_headers: Vec<HeaderName>,
    error_reader: Option<Arc<dyn ErrorReader>>,
}

/// Client-level credentials, ready to put on a request.
enum ClientAuth {
    None,
    Basic(Secret, Option<Secret>),
    Header(HeaderName, HeaderValue),
}

impl HttpClient {
    /// Checks the options (a `Config` error names the field) and builds the
    /// client. Installs the ring TLS provider if nobody has yet.
    pub fn new(options: HttpOptions) -> Result<HttpClient> {
        simplyload_core::install_tls_provider();
        check_numbers(&options)?;
        let base = parse_base_url(&options.base_url)?;
        let mut redactor = Redactor::default();
        let auth = client_auth(&options.auth, &mut redactor)?;
        let tls = crate::tls::client_config(base.scheme() == "https")?;
        let http = reqwest::Client::builder()
            .user_agent(options.user_agent.as_str())
            .connect_timeout(options.connect_timeout)
            .default_headers(header_map(&options.default_headers)?)
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| Error::internal(format!("http: building the client: {}", e.without_url())))?;
        let inner = Inner {
            http,
            base,
            auth,
            redactor,
            max_attempts: options.max_attempts,
            backoff: Backoff { base: options.backoff_base, cap: options.backoff_cap },
            request_timeout: options.request_timeout,
            max_wait_in_call: options.max_wait_in_call,
            limiter: options.rate_limiter,
            should_retry_header: options.should_retry_header.as_deref().map(header_name).transpose()?,
            request_id_headers: options.request_id_headers.iter().map(|h| header_name(h)).collect::<Result<_>>()?,
            error_reader: options.error_reader,
        };
        Ok(HttpClient { inner: Arc::new(inner), cancel: options.cancel })
    }

    /// The base URL calls are resolved against (without a query string).
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    /// A clone whose calls all stop when `token` is cancelled.
    pub fn with_cancellation(&self, token: CancellationToken) -> HttpClient {
        HttpClient { inner: self.inner.clone(), cancel: Some(token) }
    }

    /// A GET of `path` (appended to the base URL) or of an absolute URL.
    pub fn get(&self, path: &str) -> Request {
        self.request(Method::GET, path)
    }

    /// A POST; not retried unless marked [`Request::idempotent`].
    pub fn post(&self, path: &str) -> Request {
        self.request(Method::POST, path)
    }

    /// A call with any method. `path` is appended to the base URL's path
    /// (`https://h/api` + `/v1/x` → `https://h/api/v1/x`); an `http://` or
    /// `https://` URL is used as it is — the client's credentials go only to
    /// the base URL's origin.
    pub fn request(&self, method: Method, path: &str) -> Request {
        let (builder, same_origin) = match self.resolve(path) {
            Ok(url) => {
                let same = url.origin() == self.inner.base.origin();
                (Ok(self.inner.http.request(method.clone(), url)), same)
            }
            Err(e) => (Err(e), false),
        };
        Request {
            client: self.clone(),
            method,
            builder,
            same_origin,
            auth_set: false,
            idempotent: None,
            timeout: None,
            cancel: None,
            redactor: self.inner.redactor.clone(),
        }
    }

    fn resolve(&self, path: &str) -> Result<Url> {
        let text = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}/{}", self.inner.base.as_str().trim_end_matches('/'), path.trim_start_matches('/'))
        };
        Url::parse(&text)
            .map_err(|e| Error::config(format!("http: {} is not a valid URL: {e}", url_for_display(&text))))
    }

    fn with_client_auth(&self, builder: RequestBuilder) -> RequestBuilder {
        match &self.inner.auth {
            ClientAuth::None => builder,
            ClientAuth::Basic(user, password) => {
                builder.basic_auth(user.expose(), password.as_ref().map(Secret::expose))
            }
            ClientAuth::Header(name, value) => builder.header(name.clone(), value.clone()),
        }
    }
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("base_url", &url_for_display(self.inner.base.as_str()))
            .field("max_attempts", &self.inner.max_attempts)
            .field("request_timeout", &self.inner.request_timeout)
            .field("rate_limiter", &self.inner.limiter)
            .finish_non_exhaustive()
    }
}

fn check_numbers(o: &HttpOptions) -> Result<()> {
    let fail = |field: &str, why: &str| Err(Error::config(format!("http: {field} {why}")));
    if o.max_attempts == 0 {
        return fail("max_attempts", "must be at least 1");
    }
    if o.connect_timeout.is_zero() || o.request_timeout.is_zero() {
        return fail("connect_timeout and request_timeout", "must be above zero");
    }
    if o.backoff_base > o.backoff_cap {
        return fail("backoff_base", "must not be above backoff_cap");
    }
    Ok(())
}

fn parse_base_url(text: &str) -> Result<Url> {
    let shown = url_for_display(text);
    let mut url =
        Url::parse(text).map_err(|e| Error::config(format!("http: base_url {shown} is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(Error::config(format!("http: base_url {shown} must be an http:// or https:// URL with a host")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::config(format!("http: base_url {shown} must not hold credentials"))
            .with_hint("set them as the client's auth, which keeps them secret"));
    }
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

fn header_name(name: &str) -> Result<HeaderName> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| Error::config(format!("http: `{name}` is not a valid header name")))
}

fn header_map(headers: &[(String, String)]) -> Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let value = HeaderValue::from_str(value)
            .map_err(|_| Error::config(format!("http: the value of header `{name}` is not valid in a header")))?;
        map.append(header_name(name)?, value);
    }
    Ok(map)
}

fn sensitive_value(name: &str, value: &str) -> Result<HeaderValue> {
    let mut v = HeaderValue::from_str(value)
        .map_err(|_| Error::config(format!("http: the value of header `{name}` is not valid in a header")))?;
    v.set_sensitive(true);
    Ok(v)
}

fn client_auth(auth: &Auth, redactor: &mut Redactor) -> Result<ClientAuth> {
    Ok(match auth {
        Auth::None => ClientAuth::None,
        Auth::Bearer(token) => {
            redactor.add(token);
            let value = sensitive_value("Authorization", &format!("Bearer {}", token.expose()))?;
            ClientAuth::Header(reqwest::header::AUTHORIZATION, value)
        }
        Auth::Basic { user, password } => {
            redactor.add(user);
            password.iter().for_each(|p| redactor.add(p));
            ClientAuth::Basic(user.clone(), password.clone())
        }
        Auth::Header { name, value } => {
            redactor.add(value);
            ClientAuth::Header(header_name(name)?, sensitive_value(name, value.expose())?)
        }
    })
}

/// A call being built. Nothing is sent until [`Request::send`] or
/// [`Request::send_streaming`]; a mistake made while building (a bad header,
/// a body that does not serialize) is returned by them.
pub struct Request {
    client: HttpClient,
    method: Method,
    builder: Result<RequestBuilder>,
    same_origin: bool,
    auth_set: bool,
    idempotent: Option<bool>,
    timeout: Option<Duration>,
    cancel: Option<CancellationToken>,
    redactor: Redactor,
}

impl Request {
    fn map(mut self, f: impl FnOnce(RequestBuilder) -> Result<RequestBuilder>) -> Self {
        self.builder = self.builder.and_then(f);
        self
    }

    /// Adds query parameters (`&[("limit", "100")]`, or any struct serde
    /// can write as a query string).
    pub fn query<T: Serialize + ?Sized>(self, query: &T) -> Self {
        self.map(|b| Ok(b.query(query)))
    }

    /// A form body (`application/x-www-form-urlencoded`), e.g. an OAuth token call.
    pub fn form<T: Serialize + ?Sized>(self, form: &T) -> Self {
        self.map(|b| Ok(b.form(form)))
    }

    /// A JSON body.
    pub fn json<T: Serialize + ?Sized>(self, body: &T) -> Self {
        let body = serde_json::to_vec(body).map_err(|e| Error::internal(format!("http: JSON body: {e}")));
        self.map(|b| Ok(b.header(CONTENT_TYPE, "application/json").body(body?)))
    }

    /// A body of any type.
    pub fn body(self, body: impl Into<Bytes>, content_type: &str) -> Self {
        let body = body.into();
        let value = HeaderValue::from_str(content_type)
            .map_err(|_| Error::config(format!("http: `{content_type}` is not a valid content type")));
        self.map(|b| Ok(b.header(CONTENT_TYPE, value?).body(body)))
    }

    /// A header that is not secret (`Stripe-Version: …`).
    pub fn header(self, name: &str, value: &str) -> Self {
        let parsed = header_name(name).and_then(|n| {
            let v = HeaderValue::from_str(value)
                .map_err(|_| Error::config(format!("http: the value of header `{name}` is not valid in a header")))?;
            Ok((n, v))
        });
        self.map(|b| parsed.map(|(n, v)| b.header(n, v)))
    }

    /// A header that carries a secret: sent marked sensitive, masked in any
    /// message.
    pub fn secret_header(mut self, name: &str, value: &Secret) -> Self {
        self.redactor.add(value);
        let parsed = header_name(name).and_then(|n| Ok((n, sensitive_value(name, value.expose())?)));
        self.map(|b| parsed.map(|(n, v)| b.header(n, v)))
    }

    /// `Authorization: Bearer <token>` for this call, instead of the client's.
    pub fn bearer(mut self, token: &Secret) -> Self {
        self.redactor.add(token);
        self.auth_set = true;
        self.map(|b| Ok(b.bearer_auth(token.expose())))
    }

    /// HTTP Basic credentials for this call, instead of the client's.
    pub fn basic_auth(mut self, user: &Secret, password: Option<&Secret>) -> Self {
        self.redactor.add(user);
        password.iter().for_each(|p| self.redactor.add(p));
        self.auth_set = true;
        self.map(|b| Ok(b.basic_auth(user.expose(), password.map(Secret::expose))))
    }

    /// Marks the call safe (or not) to send twice, e.g. a POST with an
    /// idempotency key, or a POST that only reads. The default follows the
    /// method: GET, HEAD, PUT, DELETE, OPTIONS and TRACE are idempotent.
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = Some(idempotent);
        self
    }

    /// This call's per-attempt timeout instead of the client's.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Stops this call when `token` is cancelled. It replaces the client's
    /// token for this call; pass a `child_token()` of it to keep both.
    pub fn cancellation(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Sends the call (retrying as the module docs say) and reads the whole body.
    pub async fn send(self) -> Result<Reply> {
        self.into_call()?.run::<Buffered>().await
    }

    /// Sends the call (retrying up to the reply's headers) and returns the
    /// body unread, as a stream.
    pub async fn send_streaming(self) -> Result<StreamingReply> {
        self.into_call()?.run::<Streamed>().await
    }

    fn into_call(self) -> Result<Call> {
        let mut builder = self.builder?;
        if self.same_origin && !self.auth_set {
            builder = self.client.with_client_auth(builder);
        }
        let request = builder.build().map_err(|e| {
            Error::config(format!("http: {} call could not be built: {}", self.method, e.without_url()))
        })?;
        let target = Target::new(request.method(), request.url());
        let idempotent = self.idempotent.unwrap_or_else(|| idempotent_method(request.method()));
        let timeout = self.timeout.unwrap_or(self.client.inner.request_timeout);
        let cancel = self.cancel.or_else(|| self.client.cancel.clone());
        Ok(Call { inner: self.client.inner, request, target, idempotent, timeout, cancel, redactor: self.redactor })
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request").field("method", &self.method).finish_non_exhaustive()
    }
}

/// Resolves when `token` is cancelled; never without one.
pub(crate) async fn cancelled(token: Option<&CancellationToken>) {
    match token {
        Some(token) => token.cancelled().await,
        None => std::future::pending().await,
    }
}

/// A successful attempt and what its log line says.
struct Success<T> {
    value: T,
    status: reqwest::StatusCode,
    request_id: Option<String>,
}

/// What one attempt reads: the whole body ([`Buffered`]) or only up to the
/// headers ([`Streamed`]).
trait Attempt {
    type Output;
    fn attempt(
        call: &Call,
        request: reqwest::Request,
    ) -> impl Future<Output = Result<Success<Self::Output>, Box<Failure>>> + Send;
}

struct Buffered;

impl Attempt for Buffered {
    type Output = Reply;
    fn attempt(
        call: &Call,
        request: reqwest::Request,
    ) -> impl Future<Output = Result<Success<Reply>, Box<Failure>>> + Send {
        call.buffered(request)
    }
}

struct Streamed;

impl Attempt for Streamed {
    type Output = StreamingReply;
    fn attempt(
        call: &Call,
        request: reqwest::Request,
    ) -> impl Future<Output = Result<Success<StreamingReply>, Box<Failure>>> + Send {
        call.streaming(request)
    }
}

/// One call on its way: the built request (cloned for each attempt) and
/// everything the retry loop needs.
struct Call {
    inner: Arc<Inner>,
    request: reqwest::Request,
    target: Target,
    idempotent: bool,
    timeout: Duration,
    cancel: Option<CancellationToken>,
    redactor: Redactor,
}

impl Call {
    /// The retry loop: rate limit, attempt, and on failure either wait and
    /// go again or end with the classified error.
    async fn run<A: Attempt>(&self) -> Result<A::Output> {
        let mut n = 0;
        loop {
            n += 1;
            if let Some(limiter) = &self.inner.limiter {
                limiter.acquire(self.cancel.as_ref()).await.map_err(|e| e.context(&self.target))?;
            }
            let started = Instant::now();
            let request =
                self.request.try_clone().ok_or_else(|| Error::internal("http: a request body was a stream"))?;
            let outcome = self.guarded(A::attempt(self, request)).await?;
            let elapsed = started.elapsed();
            let failure = match outcome {
                Ok(success) => {
                    self.log_success(n, elapsed, &success);
                    return Ok(success.value);
                }
                Err(failure) => failure,
            };
            let log = FailureLog::new(n, elapsed, &failure);
            match self.wait_before_retry(n, *failure) {
                Ok(wait) => {
                    self.log_retry(&log, wait);
                    self.sleep(wait).await?;
                }
                Err(e) => {
                    self.log_failure(&log);
                    return Err(e);
                }
            }
        }
    }

    /// An attempt bounded by the call's timeout and its cancellation.
    async fn guarded<T>(
        &self,
        attempt: impl Future<Output = Result<Success<T>, Box<Failure>>>,
    ) -> Result<Result<Success<T>, Box<Failure>>> {
        tokio::select! {
            biased;
            _ = cancelled(self.cancel.as_ref()) => Err(self.cancelled("with a request in flight")),
            outcome = tokio::time::timeout(self.timeout, attempt) => {
                Ok(outcome.unwrap_or_else(|_| Err(self.judge().timeout(&self.target, self.timeout))))
            }
        }
    }

    async fn sleep(&self, wait: Duration) -> Result<()> {
        tokio::select! {
            biased;
            _ = cancelled(self.cancel.as_ref()) => Err(self.cancelled("while waiting to retry")),
            _ = tokio::time::sleep(wait) => Ok(()),
        }
    }

    fn cancelled(&self, when: &str) -> Error {
        Error::new(ErrorKind::Cancelled, format!("{}: cancelled {when}", self.target))
            .with_hint("nothing to do: the call stopped because the sync was asked to stop")
    }

    /// How long to wait before attempt `n + 1`, or the error to end with.
    fn wait_before_retry(&self, n: u32, failure: Failure) -> Result<Duration> {
        if !failure.retry {
            return Err(failure.error);
        }
        if failure.sent && !self.idempotent {
            let hint = format!("not retried: a {} may not be safe to send twice", self.target.method);
            return Err(failure.error.with_hint(hint));
        }
        let asked = failure.retry_after.unwrap_or(Duration::ZERO);
        if asked > self.inner.max_wait_in_call {
            let (wait, max) = (seconds(asked), seconds(self.inner.max_wait_in_call));
            let why = format!("the server asked to wait {wait}, longer than a call waits ({max})");
            return Err(give_up(failure.error, &why, asked));
        }
        let wait = self.inner.backoff.wait(n).max(asked);
        if n >= self.inner.max_attempts {
            let why =
                if n == 1 { "gave up after 1 attempt".to_string() } else { format!("gave up after {n} attempts") };
            return Err(give_up(failure.error, &why, wait));
        }
        Ok(wait)
    }

    fn judge(&self) -> Judge<'_> {
        Judge {
            reader: self.inner.error_reader.as_ref(),
            should_retry_header: self.inner.should_retry_header.as_ref(),
            redactor: &self.redactor,
        }
    }

    async fn execute(&self, request: reqwest::Request) -> Result<(Response, Option<String>), Box<Failure>> {
        let response = self.inner.http.execute(request).await.map_err(|e| self.judge().transport(&self.target, e))?;
        let request_id = self.request_id(response.headers());
        if response.status().as_u16() < 400 {
            return Ok((response, request_id));
        }
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_capped(response, MAX_ERROR_BODY).await;
        let reply =
            ErrorReply { method: &self.target.method, path: &self.target.path, status, headers: &headers, body: &body };
        Err(self.judge().reply(&self.target, &reply, request_id))
    }

    async fn buffered(&self, request: reqwest::Request) -> Result<Success<Reply>, Box<Failure>> {
        let (response, request_id) = self.execute(request).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| {
            let mut failure = self.judge().transport(&self.target, e);
            failure.status = Some(status);
            failure.request_id.clone_from(&request_id);
            failure
        })?;
        let reply = Reply {
            status,
            headers,
            body,
            request_id: request_id.clone(),
            target: self.target.clone(),
            redactor: self.redactor.clone(),
        };
        Ok(Success { value: reply, status, request_id })
    }

    async fn streaming(&self, request: reqwest::Request) -> Result<Success<StreamingReply>, Box<Failure>> {
        let (response, request_id) = self.execute(request).await?;
        let status = response.status();
        let reply = StreamingReply {
            response,
            idle_timeout: self.timeout,
            request_id: request_id.clone(),
            target: self.target.clone(),
            redactor: self.redactor.clone(),
        };
        Ok(Success { value: reply, status, request_id })
    }

    fn request_id(&self, headers: &HeaderMap) -> Option<String> {
        let value = self.inner.request_id_headers.iter().find_map(|name| headers.get(name)?.to_str().ok())?;
        let id: String = value.chars().filter(|c| !c.is_control()).take(MAX_REQUEST_ID_LEN).collect();
        (!id.is_empty()).then_some(id)
    }

    fn log_success<T>(&self, attempt: u32, elapsed: Duration, success: &Success<T>) {
        let t = &self.target;
        tracing::debug!(
            method = %t.method, host = %t.host, path = %t.path, query = %t.query_keys,
            status = success.status.as_u16(), attempt, elapsed_ms = elapsed.as_millis() as u64,
            request_id = success.request_id.as_deref().unwrap_or("-"),
            "http call"
        );
    }

    fn log_failure(&self, log: &FailureLog) {
        let t = &self.target;
        tracing::debug!(
            method = %t.method, host = %t.host, path = %t.path, query = %t.query_keys,
            status = %log.status, error = %log.cause, attempt = log.attempt, elapsed_ms = log.elapsed_ms,
            request_id = %log.request_id,
            "http call failed"
        );
    }

    fn log_retry(&self, log: &FailureLog, wait: Duration) {
        let t = &self.target;
        tracing::warn!(
            method = %t.method, host = %t.host, path = %t.path, query = %t.query_keys,
            status = %log.status, error = %log.cause, attempt = log.attempt, max_attempts = self.inner.max_attempts,
            wait_ms = wait.as_millis() as u64, elapsed_ms = log.elapsed_ms, request_id = %log.request_id,
            "http call failed; retrying after a backoff"
        );
    }
}

/// What the log lines say about a failed attempt (taken before the failure
/// is turned into the call's error).
struct FailureLog {
    attempt: u32,
    elapsed_ms: u64,
    status: String,
    cause: String,
    request_id: String,
}

impl FailureLog {
    fn new(attempt: u32, elapsed: Duration, failure: &Failure) -> Self {
        FailureLog {
            attempt,
            elapsed_ms: elapsed.as_millis() as u64,
            status: failure.status.map(|s| s.as_u16().to_string()).unwrap_or_else(|| "none".into()),
            cause: failure.cause.clone(),
            request_id: failure.request_id.clone().unwrap_or_else(|| "-".into()),
        }
    }
}

/// The error a call ends with when it stops retrying something retryable:
/// `Transient`, with the wait that would have come next.
fn give_up(last: Error, why: &str, wait: Duration) -> Error {
    let error = Error::transient(format!("{} ({why})", last.message())).with_retry_after(wait);
    match last.hint() {
        Some(hint) => error.with_hint(hint),
        None => error,
    }
}

/// At most `cap` bytes of a body; a read error ends it early (the excerpt
/// is only for the message).
async fn read_capped(mut response: Response, cap: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < cap {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(cap);
    body
}

/// `1.5 s`, `3600 s`.
fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}
