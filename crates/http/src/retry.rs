//! When to try again and how long to wait first.
//!
//! The wait before retry `n` (n = 1 after the first failure) is an
//! exponential step `min(cap, base · 2^(n−1))` with *equal jitter*: half the
//! step for sure, the other half at random. The sure half keeps a retry from
//! hammering a server that just failed; the random half spreads clients that
//! failed together. A server's `Retry-After` is a lower bound on the wait.

use std::time::{Duration, SystemTime};

use rand::Rng;
use reqwest::header::{HeaderMap, HeaderName, RETRY_AFTER};
use reqwest::{Method, StatusCode};

/// The backoff between attempts of one call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Backoff {
    pub(crate) base: Duration,
    pub(crate) cap: Duration,
}

impl Backoff {
    /// The wait after failed attempt `attempt` (1-based).
    pub(crate) fn wait(&self, attempt: u32) -> Duration {
        let step = self.step(attempt);
        let half = step / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }

    fn step(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.base.saturating_mul(factor).min(self.cap)
    }
}

/// Statuses that say "not now" rather than "not this": timeouts (408),
/// conflicts with a concurrent change or lock (409), "enhance your calm"
/// (420, Salesforce behind some proxies), too early (425), too many requests
/// (429), and every server error.
pub(crate) fn retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 409 | 420 | 425 | 429) || status.is_server_error()
}

/// Methods RFC 9110 calls idempotent: sending them twice does no more than once.
pub(crate) fn idempotent_method(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE)
}

/// How long the server asked to wait: `Retry-After` as delta-seconds or as
/// an HTTP date (a date in the past means no wait).
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // A number too big for u64 still means "a very long time".
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = crate::http_date::parse(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The server's own verdict in a header such as `Stripe-Should-Retry`.
pub(crate) fn header_verdict(headers: &HeaderMap, name: Option<&HeaderName>) -> Option<bool> {
    let value = headers.get(name?)?.to_str().ok()?.trim();
    if value.eq_ignore_ascii_case("true") {
        Some(true)
    } else if value.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn backoff_grows_to_the_cap_and_keeps_half_of_each_step() {
        let b = Backoff { base: Duration::from_millis(500), cap: Duration::from_secs(30) };
        for _ in 0..100 {
            let w1 = b.wait(1);
            assert!(w1 >= Duration::from_millis(250) && w1 <= Duration::from_millis(500), "{w1:?}");
            let w4 = b.wait(4);
            assert!(w4 >= Duration::from_secs(2) && w4 <= Duration::from_secs(4), "{w4:?}");
            let w30 = b.wait(30);
            assert!(w30 >= Duration::from_secs(15) && w30 <= Duration::from_secs(30), "{w30:?}");
        }
        assert_eq!(b.step(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(retry_after(&h, now), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("Sun, 06 Nov 1994 08:50:37 GMT"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(60)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("Sun, 06 Nov 1994 08:00:00 GMT"));
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("99999999999999999999999"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(u64::MAX)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("later"));
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn a_header_may_overrule_the_retry_decision() {
        let name = HeaderName::from_static("stripe-should-retry");
        let mut h = HeaderMap::new();
        assert_eq!(header_verdict(&h, Some(&name)), None);
        h.insert(name.clone(), HeaderValue::from_static("False"));
        assert_eq!(header_verdict(&h, Some(&name)), Some(false));
        h.insert(name.clone(), HeaderValue::from_static("true"));
        assert_eq!(header_verdict(&h, Some(&name)), Some(true));
        assert_eq!(header_verdict(&h, None), None);
    }
}
