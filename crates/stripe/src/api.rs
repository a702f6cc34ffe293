//! Calls to Stripe's API through the shared HTTP client: the key, the pinned
//! `Stripe-Version`, the client-side rate limit, retries honouring
//! `Retry-After` and `Stripe-Should-Retry`, and Stripe's error bodies turned
//! into messages that name the fix.

use crate::objects::{OBJECTS, ObjectType};
use crate::order::Direction;
use serde_json::Value;
use simplyload_core::config::StripeSourceConfig;
use simplyload_core::{Error, ErrorKind, Result};
use simplyload_http::{Auth, ErrorDetail, ErrorReply, HttpClient, HttpOptions, RateLimit, RateLimiter};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Stripe's API, for one configured account.
#[derive(Clone)]
pub struct Api {
    http: HttpClient,
    /// The pinned API version every call asks for.
    pub version: String,
    pub mode: Mode,
    pub page_size: u32,
    /// The order this server lists events in, once a list showed it.
    direction: Arc<OnceLock<Direction>>,
}

/// Test or live mode, told by the key's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Test,
    Live,
}

impl Mode {
    pub fn of_key(key: &str) -> Option<Mode> {
        let rest = key.strip_prefix("sk_").or_else(|| key.strip_prefix("rk_"))?;
        if rest.starts_with("test_") {
            Some(Mode::Test)
        } else if rest.starts_with("live_") {
            Some(Mode::Live)
        } else {
            None
        }
    }

    pub fn livemode(self) -> bool {
        self == Mode::Live
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Test => "test",
            Mode::Live => "live",
        }
    }

    /// Requests per second the client allows itself by default: below
    /// Stripe's documented 100/s (live) and 25/s (test).
    pub fn default_rate(self) -> f64 {
        match self {
            Mode::Test => 20.0,
            Mode::Live => 80.0,
        }
    }
}

/// One page of a list.
pub struct Page {
    pub data: Vec<Value>,
    pub has_more: bool,
    /// The body's size on the wire.
    pub bytes: u64,
}

impl Api {
    pub fn new(config: &StripeSourceConfig) -> Result<Api> {
        let key = config.api_key.expose();
        let mode = Mode::of_key(key).ok_or_else(|| {
            Error::config("stripe `api_key` is not a secret (`sk_test_…`, `sk_live_…`) or restricted (`rk_…`) key")
                .with_hint("create a restricted key with read access (Dashboard → Developers → API keys) and set it as `api_key: ${STRIPE_API_KEY}`")
        })?;
        let per_second = config.requests_per_second.unwrap_or_else(|| mode.default_rate());
        let mut options = HttpOptions::new(config.base_url.clone().unwrap_or_else(|| DEFAULT_BASE_URL.to_owned()));
        options.auth = Auth::Bearer(config.api_key.clone());
        options.rate_limiter =
            Some(RateLimiter::new(RateLimit { per_second, burst: per_second.ceil().max(1.0) as u32 })?);
        options.default_headers = vec![("Stripe-Version".to_owned(), config.api_version().to_owned())];
        options.should_retry_header = Some("stripe-should-retry".to_owned());
        options.error_reader = Some(Arc::new(read_error));
        if let Some(attempts) = config.max_attempts {
            options.max_attempts = attempts;
        }
        Ok(Api {
            http: HttpClient::new(options)?,
            version: config.api_version().to_owned(),
            mode,
            page_size: config.page_size(),
            direction: Arc::default(),
        })
    }

    /// The order events are listed in, if a list has shown it.
    pub fn direction(&self) -> Option<Direction> {
        self.direction.get().copied()
    }

    /// Remembers the order a list showed.
    pub fn learn_direction(&self, direction: Direction) {
        let _ = self.direction.set(direction);
    }

    /// One page of `object`'s list after `after` (the first page without).
    pub async fn list_page(&self, object: &ObjectType, params: &[(&str, String)], after: Option<&str>) -> Result<Page> {
        let mut query: Vec<(&str, String)> = vec![("limit", self.page_size.to_string())];
        query.extend(object.list_params.iter().map(|(k, v)| (*k, (*v).to_owned())));
        query.extend(params.iter().cloned());
        if let Some(a) = after {
            query.push(("starting_after", a.to_owned()));
        }
        let reply = self.http.get(object.path).query(&query).send().await?;
        let body: Value = reply.json()?;
        let bytes = reply.body().len() as u64;
        let Value::Object(mut map) = body else {
            return Err(malformed(object.path, "a list reply that is not a JSON object"));
        };
        let data = match map.remove("data") {
            Some(Value::Array(items)) => items,
            _ => return Err(malformed(object.path, "a list reply without a `data` array")),
        };
        let has_more = match map.get("has_more") {
            Some(Value::Bool(b)) => *b,
            _ => return Err(malformed(object.path, "a list reply without `has_more`")),
        };
        for item in &data {
            check_item(object, item, self.mode)?;
        }
        Ok(Page { data, has_more, bytes })
    }

    /// One object at the pinned version; `None` when Stripe no longer has it.
    pub async fn retrieve(&self, object: &ObjectType, id: &str) -> Result<Option<Value>> {
        let path = format!("{}/{}", object.path, encode_id(id));
        match self.http.get(&path).send().await {
            Ok(reply) => {
                let v: Value = reply.json()?;
                check_item(object, &v, self.mode)?;
                Ok(Some(v))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Stripe's clock now, Unix seconds (the `Date` of a cheap call; the
    /// local clock when the server sends none).
    pub async fn now(&self) -> Result<i64> {
        let reply = self.http.get("/v1/events").query(&[("limit", "1")]).send().await?;
        Ok(reply.header("date").and_then(unix_seconds).unwrap_or_else(local_now))
    }
}

/// Stripe's API.
pub const DEFAULT_BASE_URL: &str = "https://api.stripe.com";

pub fn local_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn unix_seconds(date: &str) -> Option<i64> {
    let t = simplyload_http::parse_http_date(date)?;
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs() as i64)
}

/// Ids are letters, digits and `_`; anything else is escaped so it stays
/// one path segment.
fn encode_id(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn malformed(path: &str, what: &str) -> Error {
    Error::new(ErrorKind::Transient, format!("stripe {path}: {what}"))
        .with_hint("Stripe (or a proxy in between) answered with something else than the API's JSON; it is tried again at the next sync")
}

/// Every listed object must be of the stream's type and the key's mode.
fn check_item(object: &ObjectType, item: &Value, mode: Mode) -> Result<()> {
    let kind = item.get("object").and_then(Value::as_str);
    let deleted = item.get("deleted").and_then(Value::as_bool) == Some(true);
    if item.get("id").and_then(Value::as_str).is_none() || kind.is_some_and(|k| k != object.object) {
        return Err(malformed(object.path, &format!("an item that is not a {} with an id", object.object)));
    }
    if let Some(live) = item.get("livemode").and_then(Value::as_bool).filter(|_| !deleted)
        && live != mode.livemode()
    {
        return Err(Error::config(format!(
            "stripe {}: the key is a {}-mode key but Stripe returned a {} object",
            object.stream,
            mode.name(),
            if live { "live-mode" } else { "test-mode" }
        ))
        .with_hint("use a key of the mode you mean to sync; test and live data are separate accounts of data"));
    }
    Ok(())
}

/// The permission a path needs, for messages.
fn permission_for(path: &str) -> Option<&'static ObjectType> {
    OBJECTS.iter().find(|o| path == o.path || path.starts_with(&format!("{}/", o.path)))
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    error: StripeError,
}

#[derive(serde::Deserialize)]
struct StripeError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

/// Stripe's error bodies: `{"error": {"type", "code", "message", "param"}}`.
fn read_error(reply: &ErrorReply<'_>) -> ErrorDetail {
    let body: Option<ErrorBody> = reply.json();
    let e = body.map(|b| b.error);
    let message = e.as_ref().and_then(|e| e.message.clone()).unwrap_or_else(|| reply.status.to_string());
    let code = e.as_ref().and_then(|e| e.code.clone()).unwrap_or_default();
    let mut detail = ErrorDetail::message(message.clone());
    let object = permission_for(reply.path);
    match reply.status.as_u16() {
        401 => {
            detail = detail.with_kind(ErrorKind::Auth).with_hint(
                "Stripe refused the API key: check `api_key` (Dashboard → Developers → API keys; a rolled or deleted key stops working)",
            )
        }
        403 => {
            let permission = object.map_or("the resource", |o| o.permission);
            detail = detail.with_kind(ErrorKind::Permission).with_hint(format!(
                "give the restricted key Read access to {permission} (Dashboard → Developers → API keys → edit the key){}",
                rak(&message).map(|r| format!("; Stripe names it `{r}`")).unwrap_or_default()
            ))
        }
        404 if code == "resource_missing" || object.is_some() => {
            detail = detail.with_kind(ErrorKind::NotFound);
        }
        400 if message.contains("API version") || message.contains("Stripe-Version") => {
            detail = detail.with_hint("set the source's `api_version` to a version Stripe lists (docs/stripe.md)");
        }
        429 if code == "lock_timeout" => detail = detail.with_retry(true),
        _ => {}
    }
    if e.as_ref().and_then(|e| e.kind.as_deref()) == Some("invalid_request_error") && reply.status.as_u16() == 400 {
        detail = detail.with_kind(ErrorKind::Config);
    }
    detail
}

/// The `rak_…` permission a 403 message names, if it does.
fn rak(message: &str) -> Option<&str> {
    let start = message.find("rak_")?;
    let rest = &message[start..];
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_tells_the_mode() {
        assert_eq!(Mode::of_key("sk_test_abc"), Some(Mode::Test));
        assert_eq!(Mode::of_key("rk_live_abc"), Some(Mode::Live));
        assert_eq!(Mode::of_key("pk_test_abc"), None);
        assert_eq!(Mode::of_key("sk_abc"), None);
    }

    #[test]
    fn ids_stay_one_path_segment() {
        assert_eq!(encode_id("cus_AZ502Geo"), "cus_AZ502Geo");
        assert_eq!(encode_id("x/../y"), "x%2F%2E%2E%2Fy");
    }

    #[test]
    fn a_403_names_the_permission() {
        assert_eq!(
            rak("… Having the 'rak_charge_read' permission would allow this request to continue."),
            Some("rak_charge_read")
        );
        assert_eq!(permission_for("/v1/refunds").map(|o| o.permission), Some("Charges"));
        assert_eq!(permission_for("/v1/customers/cus_1").map(|o| o.stream), Some("customers"));
    }
}
