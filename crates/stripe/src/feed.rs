//! Stripe's change feed: `/v1/events`.
//!
//! Stripe keeps nothing for a reader, so the feed is a position only — a
//! second of Stripe's clock, kept in the pipeline's state and handed back
//! with each call ([`PrepareFeed::recorded`], [`ChangesRequest::from`]):
//! * **prepare** takes Stripe's clock as the start of a new feed; the first
//!   listing of every stream is read after it, and every event from that
//!   second on is applied over what the listing saw;
//! * **read** scans the events of one window — from the position minus an
//!   overlap to Stripe's clock minus a settle lag (the events list is
//!   eventually consistent: the newest seconds are read only once they have
//!   settled) — and returns the window's end as the position to confirm;
//! * a position older than the events Stripe keeps (30 days) cannot go on:
//!   the feed is made again and every stream read again, rows the new
//!   listing lacks marked deleted (`on_slot_lost: resnapshot`), or the sync
//!   stops and says so (`fail`).

use crate::api::Api;
use crate::objects;
use crate::order::{end_version, start_version};
use simplyload_core::catalog::CheckReport;
use simplyload_core::feed::{
    ChangeEvent, ChangeFeed, ChangesRead, ChangesRequest, FeedOwner, FeedPosition, FeedStart, FeedStatus, PrepareFeed,
    Prepared,
};
use simplyload_core::{Error, ErrorKind, Result, StreamName};
use tokio::sync::mpsc;

/// How long Stripe keeps events.
pub const RETENTION_SECS: i64 = 30 * 86_400;
/// A position must be this far inside the retention to go on (a slow read
/// of a long window must not reach past what Stripe still has).
pub const HORIZON_MARGIN_SECS: i64 = 3_600;

/// The feed's windows.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Each window starts this much before the last one ended, so an event
    /// that became visible late is still read.
    pub overlap: i64,
    /// Each window ends this much before Stripe's clock.
    pub settle: i64,
}

impl Timing {
    /// Whether a feed at `position` can still be read at `now`.
    pub fn within_retention(&self, position: i64, now: i64) -> bool {
        now - (position - self.overlap) < RETENTION_SECS - HORIZON_MARGIN_SECS
    }
}

/// The events feed of one Stripe account.
pub struct EventsFeed {
    pub(crate) api: Api,
    pub(crate) timing: Timing,
}

/// A new feed's start: a second of Stripe's clock.
struct Start(i64);

#[async_trait::async_trait]
impl FeedStart for Start {
    fn position(&self) -> FeedPosition {
        FeedPosition { version: start_version(self.0), token: self.0.to_string() }
    }

    /// Stripe cannot list as of a moment: the listing shows the objects as
    /// they are when read, and the events from the start on converge them.
    fn snapshot(&self) -> Option<String> {
        None
    }

    async fn release(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

/// The position after a window that ended with `second`.
pub fn window_end(second: i64) -> FeedPosition {
    FeedPosition { version: end_version(second), token: second.to_string() }
}

/// The second of Stripe's clock a position stands at.
pub fn seconds(position: &FeedPosition) -> Result<i64> {
    position.token.parse().map_err(|_| {
        Error::new(ErrorKind::Data, format!("`{}` is not a Stripe events position (Unix seconds)", position.token))
            .with_hint("the state holds a position another source wrote; give this pipeline a state of its own")
    })
}

/// A second as UTC text.
pub fn utc(second: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(second.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn created(second: i64, remade: bool) -> Prepared {
    Prepared::Created { start: Box::new(Start(second)), remade }
}

#[async_trait::async_trait]
impl ChangeFeed for EventsFeed {
    fn feed_name(&self, owner: FeedOwner<'_>) -> Result<String> {
        Ok(match owner {
            FeedOwner::Pipeline { pipeline_id, .. } => format!("stripe_events_{}", pipeline_id.simple()),
            FeedOwner::Legacy { pipeline } => format!("stripe_events_{pipeline}"),
        })
    }

    async fn check(&self, _feed: &str, _streams: &[StreamName]) -> Result<CheckReport> {
        let mut report = CheckReport::default();
        let events = objects::by_stream("events").expect("events is a stream");
        match self.api.list_page(events, &[], None).await {
            Ok(_) => report.pass("read events", "the key can list /v1/events (the feed that keeps streams current)"),
            Err(e) => report.fail("read events", e.to_string(), None),
        }
        Ok(report)
    }

    /// Stripe holds nothing for the feed: there is nothing to show.
    async fn status(&self, _feed: &str) -> Result<Option<FeedStatus>> {
        Ok(None)
    }

    async fn prepare(&self, request: PrepareFeed<'_>) -> Result<Prepared> {
        let now = self.api.now().await?;
        let Some(recorded) = request.recorded.filter(|_| !request.joining) else {
            return Ok(created(now, false));
        };
        let at = seconds(recorded)?;
        if self.timing.within_retention(at, now) {
            return Ok(Prepared::Existing { confirmed: Some(recorded.clone()) });
        }
        let why = format!(
            "the events feed stands at {} and Stripe keeps events for 30 days only: changes since may be lost",
            utc(at)
        );
        if !request.remake_lost {
            return Err(Error::new(ErrorKind::Data, why).with_hint(
                "set the pipeline's `on_slot_lost: resnapshot`: the next sync lists every stream again and marks \
                 the rows Stripe no longer has as deleted",
            ));
        }
        tracing::warn!(feed = %request.feed, "{why}; listing every stream again");
        Ok(created(now, true))
    }

    async fn read(&self, request: ChangesRequest, out: mpsc::Sender<ChangeEvent>) -> Result<ChangesRead> {
        crate::events::read_window(&self.api, self.timing, request, out).await
    }

    async fn confirm(&self, _feed: &str, _position: &FeedPosition) -> Result<()> {
        Ok(())
    }

    fn what(&self) -> &'static str {
        "Stripe events feed"
    }

    fn describe(&self, position: &FeedPosition) -> String {
        match seconds(position) {
            Ok(s) => format!("events through {}", utc(s)),
            Err(_) => position.token.clone(),
        }
    }

    fn removal_hint(&self, _feed: &str) -> String {
        "nothing to remove: Stripe keeps no state for SimplyLoad".to_owned()
    }

    async fn remove(&self, _feed: &str) -> Result<bool> {
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_horizon_counts_the_overlap() {
        let t = Timing { overlap: 300, settle: 60 };
        let now = 100 * 86_400;
        assert!(t.within_retention(now - 86_400, now));
        assert!(t.within_retention(now - RETENTION_SECS + HORIZON_MARGIN_SECS + 301, now));
        assert!(!t.within_retention(now - RETENTION_SECS + HORIZON_MARGIN_SECS + 300, now));
        assert_eq!(seconds(&window_end(1_796_284_300)).unwrap(), 1_796_284_300);
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
    }
}
