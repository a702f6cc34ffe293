//! The one retry path of a sync: reads, loads and change reads all retry
//! here, by the error's policy ([`Error::policy`]).
//!
//! An attempt whose error says [`Policy::RetryNow`] is tried again after a
//! jittered exponential wait (`retry_base × 2^(n−1)`, between half and all
//! of it, at most a minute), never shorter than the error's `retry_after`,
//! up to [`SyncOptions::retries`](super::SyncOptions::retries) times. Any
//! other error, or the last one, is returned. A wait ends early, with
//! [`crate::ErrorKind::Cancelled`], when the sync is asked to stop.

use super::context::Run;
use crate::error::{Error, Policy, Result};
use std::future::Future;
use std::time::Duration;

/// The longest wait between two attempts (unless `retry_after` asks more).
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Runs `attempt` (given the attempt number, from 1) until it succeeds or
/// its error is not to be retried now.
pub(crate) async fn retrying<T, F, Fut>(run: Run<'_>, stream: &str, what: &str, mut attempt: F) -> Result<T>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut n = 0;
    loop {
        n += 1;
        match attempt(n).await {
            Ok(v) => return Ok(v),
            Err(e) if n <= run.ctx.options.retries && e.policy() == Policy::RetryNow => {
                wait_before_retry(run, stream, n, &e, what).await?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// How long to wait before attempt `n + 1`.
pub(crate) fn backoff(base: Duration, n: u32, retry_after: Option<Duration>) -> Duration {
    let full = base.saturating_mul(1 << (n.max(1) - 1).min(16)).min(MAX_BACKOFF);
    let jittered = full.mul_f64(0.5 + rand::random::<f64>() * 0.5);
    retry_after.map_or(jittered, |r| jittered.max(r))
}

async fn wait_before_retry(run: Run<'_>, stream: &str, n: u32, e: &Error, what: &str) -> Result<()> {
    let ctx = run.ctx;
    let wait = backoff(ctx.options.retry_base, n, e.retry_after());
    tracing::warn!(pipeline = %ctx.pipeline, stream = %stream, attempt = n, retries = ctx.options.retries,
        wait_ms = wait.as_millis() as u64, error = %e, "{what} failed; retrying");
    ctx.progress.stream_phase(stream, &format!("retrying in {}s", wait.as_secs_f64().ceil()));
    tokio::select! {
        _ = tokio::time::sleep(wait) => Ok(()),
        _ = ctx.cancel.cancelled() => Err(Error::cancelled()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_honours_retry_after() {
        let base = Duration::from_secs(1);
        for n in 1..=4 {
            let full = base * (1 << (n - 1));
            let w = backoff(base, n, None);
            assert!(w >= full / 2 && w <= full, "attempt {n}: {w:?}");
        }
        assert!(backoff(base, 30, None) <= MAX_BACKOFF);
        assert!(backoff(base, 1, Some(Duration::from_secs(7))) >= Duration::from_secs(7));
    }
}
