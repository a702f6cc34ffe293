//! The client-side rate limit: a token bucket.
//!
//! The bucket holds up to `burst` tokens and refills at `per_second`. Taking
//! a token never fails: a caller that finds the bucket empty *reserves* the
//! next token (the count goes below zero) and sleeps until it is due, so
//! callers are served in the order they asked and nobody polls. A caller
//! that is cancelled while it waits gives its reservation back.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use simplyload_core::{Error, Result};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::RateLimit;

/// A shared token bucket. Clones share the bucket, so a limit set on a client
/// holds for all its clones and for any other client given a clone of the
/// same limiter. [`RateLimiter::acquire`] waits with a timer (tokio's clock,
/// so tests may pause time) and returns `Cancelled` as soon as the token
/// fires.
#[derive(Clone)]
pub struct RateLimiter {
    limit: RateLimit,
    bucket: Arc<Mutex<Bucket>>,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl RateLimiter {
    /// A limiter with a full bucket. `per_second` must be a positive number
    /// and `burst` at least 1.
    pub fn new(limit: RateLimit) -> Result<Self> {
        if !(limit.per_second.is_finite() && limit.per_second > 0.0) {
            return Err(Error::config(format!("rate limit: per_second must be above 0, not {}", limit.per_second)));
        }
        if limit.burst == 0 {
            return Err(Error::config("rate limit: burst must be at least 1"));
        }
        let bucket = Bucket { tokens: f64::from(limit.burst), refilled: Instant::now() };
        Ok(RateLimiter { limit, bucket: Arc::new(Mutex::new(bucket)) })
    }

    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Waits until a token is available and takes it.
    pub async fn acquire(&self, cancel: Option<&CancellationToken>) -> Result<()> {
        let wait = self.reserve();
        if wait.is_zero() {
            return Ok(());
        }
        tokio::select! {
            biased;
            _ = crate::client::cancelled(cancel) => {
                self.give_back();
                Err(Error::new(simplyload_core::ErrorKind::Cancelled, "cancelled while waiting for the client-side rate limit"))
            }
            _ = tokio::time::sleep(wait) => Ok(()),
        }
    }

    /// Takes a token, possibly one not yet there; returns how long until it is.
    fn reserve(&self) -> Duration {
        let mut bucket = self.bucket.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        let refill = now.saturating_duration_since(bucket.refilled).as_secs_f64() * self.limit.per_second;
        bucket.tokens = (bucket.tokens + refill).min(f64::from(self.limit.burst));
        bucket.refilled = now;
        bucket.tokens -= 1.0;
        if bucket.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-bucket.tokens / self.limit.per_second)
        }
    }

    fn give_back(&self) {
        let mut bucket = self.bucket.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        bucket.tokens += 1.0;
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("per_second", &self.limit.per_second)
            .field("burst", &self.limit.burst)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonsense_limits_are_refused() {
        for (per_second, burst) in [(0.0, 1), (-1.0, 1), (f64::NAN, 1), (f64::INFINITY, 1), (1.0, 0)] {
            let e = RateLimiter::new(RateLimit { per_second, burst }).unwrap_err();
            assert_eq!(e.kind(), simplyload_core::ErrorKind::Config);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_spell_refills_up_to_the_burst_only() {
        let limiter = RateLimiter::new(RateLimit { per_second: 10.0, burst: 3 }).unwrap();
        for _ in 0..3 {
            assert_eq!(limiter.reserve(), Duration::ZERO);
        }
        assert!(limiter.reserve() > Duration::ZERO);
        limiter.give_back();
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..3 {
            assert_eq!(limiter.reserve(), Duration::ZERO);
        }
        assert_eq!(limiter.reserve(), Duration::from_millis(100));
    }
}
