//! What a call returns: a buffered [`Reply`] or a [`StreamingReply`].

use std::fmt;
use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use simplyload_core::{Error, Result};

use crate::classify::error_chain;
use crate::redact::{Redactor, host_and_port, query_keys};

/// How a call is named in messages and logs: method, host and path — never
/// the query string (it may hold a signature or a token).
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) method: Method,
    pub(crate) host: String,
    pub(crate) path: String,
    /// The query's keys only, for logs.
    pub(crate) query_keys: String,
}

impl Target {
    pub(crate) fn new(method: &Method, url: &Url) -> Self {
        Target {
            method: method.clone(),
            host: host_and_port(url),
            path: url.path().to_string(),
            query_keys: query_keys(url),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}{}", self.method, self.host, self.path)
    }
}

/// A complete reply with a status below 400 (redirects are followed; a 304
/// is returned as is). The body is in memory. A caller may rely on
/// [`Reply::json`] failing with `ErrorKind::Data` and a message that names
/// the host and path when the body is not the JSON it expects.
pub struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) request_id: Option<String>,
    pub(crate) target: Target,
    pub(crate) redactor: Redactor,
}

impl Reply {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The server's id for this request (see `HttpOptions::request_id_headers`).
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    pub fn body(&self) -> &Bytes {
        &self.body
    }

    pub fn into_body(self) -> Bytes {
        self.body
    }

    /// The body as UTF-8 text; `Data` if it is not.
    pub fn text(&self) -> Result<&str> {
        std::str::from_utf8(&self.body).map_err(|e| self.malformed(&e))
    }

    /// The body as JSON of type `T` (`serde_json::Value` for any JSON);
    /// `Data` naming host and path if it is not.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| self.malformed(&e))
    }

    fn malformed(&self, e: &dyn fmt::Display) -> Error {
        let mut message = format!(
            "malformed reply from {}{}: {}",
            self.target.host,
            self.target.path,
            self.redactor.redact(&e.to_string())
        );
        if let Some(id) = &self.request_id {
            message.push_str(&format!(" (request id {id})"));
        }
        Error::data(message).with_hint(
            "the API answered something SimplyLoad cannot read; if it happens again, report it with the request id",
        )
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reply")
            .field("call", &self.target.to_string())
            .field("status", &self.status)
            .field("request_id", &self.request_id)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// The body of a [`StreamingReply`], chunk by chunk. An error ends it and is
/// `Transient` (the connection failed or stalled longer than the request
/// timeout); it is not retried here — the caller knows where to resume.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// A reply with status below 400 whose body has not been read yet, for
/// downloads too large to hold (Salesforce Bulk results). Retries covered
/// everything up to the headers.
pub struct StreamingReply {
    pub(crate) response: reqwest::Response,
    pub(crate) idle_timeout: std::time::Duration,
    pub(crate) request_id: Option<String>,
    pub(crate) target: Target,
    pub(crate) redactor: Redactor,
}

impl StreamingReply {
    pub fn status(&self) -> StatusCode {
        self.response.status()
    }

    pub fn headers(&self) -> &HeaderMap {
        self.response.headers()
    }

    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.response.headers().get(name).and_then(|v| v.to_str().ok())
    }

    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The body as a stream of chunks. Each wait for the next chunk is
    /// bounded by the call's timeout; a stall or a cut connection ends the
    /// stream with one `Transient` error.
    pub fn into_stream(self) -> BodyStream {
        let StreamingReply { response, target, redactor, idle_timeout, .. } = self;
        let stalled = format!("{target}: the reply stalled: no data for {idle_timeout:?}");
        let body: BodyStream = Box::pin(response.bytes_stream().map(move |chunk| {
            chunk.map_err(|e| {
                let chain = redactor.redact(&error_chain(&e.without_url()));
                Error::transient(format!("{target}: the connection failed while reading the reply: {chain}"))
            })
        }));
        // The state is the body until it ends or fails; then `None` ends the stream.
        Box::pin(futures::stream::unfold(Some(body), move |body| {
            let stalled = stalled.clone();
            async move {
                let mut body = body?;
                match tokio::time::timeout(idle_timeout, body.next()).await {
                    Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(body))),
                    Ok(Some(Err(e))) => Some((Err(e), None)),
                    Ok(None) => None,
                    Err(_) => Some((Err(Error::transient(stalled)), None)),
                }
            }
        }))
    }
}

impl fmt::Debug for StreamingReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamingReply")
            .field("call", &self.target.to_string())
            .field("status", &self.response.status())
            .field("request_id", &self.request_id)
            .finish()
    }
}
