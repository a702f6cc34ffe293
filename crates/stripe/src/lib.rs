//! The Stripe source (docs/stripe.md).
//!
//! Streams are Stripe's object types (`customers`, `invoices`, …, and the
//! raw `events`), each with a few typed columns and the whole object in
//! `_raw`. A stream's first read lists every object; afterwards one scan of
//! `/v1/events` per sync keeps every stream current (`mode: cdc`, see
//! [`feed`]). The client keeps under the account's rate limit, retries what
//! Stripe says to retry, and turns every refusal into an error that names
//! the stream and the fix — a list is never skipped.

mod api;
mod catalog;
mod decode;
mod events;
mod feed;
mod listing;
mod objects;
mod order;

pub use api::{DEFAULT_BASE_URL, Mode};
pub use feed::{RETENTION_SECS, Timing};
pub use objects::{API_VERSION, OBJECTS, RAW};

use api::Api;
use objects::{Changes, ObjectType};
use serde_json::Value;
use simplyload_core::catalog::{Catalog, CheckReport, Selection};
use simplyload_core::config::StripeSourceConfig;
use simplyload_core::feed::ChangeFeed;
use simplyload_core::scan::{ScanRequest, ScanSender};
use simplyload_core::source::{Capabilities, ReadStats, Scanner, SnapshotRequest, SourceBatch};
use simplyload_core::{Error, ErrorKind, Result, Source, StreamName};
use tokio::sync::mpsc;

/// Streams whose first listing runs at once.
pub const READ_CONCURRENCY: usize = 4;

/// A configured Stripe account.
pub struct StripeSource {
    name: String,
    api: Api,
    feed: feed::EventsFeed,
}

impl StripeSource {
    pub fn new(name: &str, config: &StripeSourceConfig) -> Result<StripeSource> {
        let api = Api::new(config)?;
        let timing = Timing { overlap: config.events_overlap_secs(), settle: config.settle_lag_secs() };
        Ok(StripeSource { name: name.to_owned(), feed: feed::EventsFeed { api: api.clone(), timing }, api })
    }
}

/// The object type a stream name stands for.
pub(crate) fn stream_object(stream: &StreamName) -> Result<&'static ObjectType> {
    let found = if stream.namespace.is_none() { objects::by_stream(&stream.name) } else { None };
    found.ok_or_else(|| {
        Error::new(ErrorKind::NotFound, format!("stripe has no stream `{stream}`"))
            .with_hint(format!("Stripe streams are: {}", objects::stream_names()))
    })
}

#[async_trait::async_trait]
impl Source for StripeSource {
    fn kind(&self) -> &'static str {
        "stripe"
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        catalog::CAPABILITIES
    }

    async fn discover(&self, selection: &Selection) -> Result<Catalog> {
        Ok(catalog::catalog(&self.name, selection))
    }

    async fn check(&self, streams: &[StreamName]) -> Result<CheckReport> {
        let mut report = CheckReport::default();
        let events = objects::by_stream("events").expect("events is a stream");
        let first = match self.api.list_page(events, &[], None).await {
            Ok(page) => page,
            Err(e) if e.kind() == ErrorKind::Auth => {
                report.fail("API key", e.to_string(), None);
                return Ok(report);
            }
            Err(e) if matches!(e.kind(), ErrorKind::Config | ErrorKind::Transient | ErrorKind::NotFound) => {
                report.fail("reach Stripe", e.to_string(), None);
                return Ok(report);
            }
            Err(e) => {
                report.pass("API key", "Stripe accepted the key");
                report.fail("read events", e.to_string(), None);
                return Ok(report);
            }
        };
        report.pass("API key", format!("Stripe accepted the key, at API version {}", self.api.version));
        report.pass("mode", mode_detail(self.api.mode, &first.data));
        for stream in streams {
            check_stream(&self.api, stream, &mut report).await;
        }
        Ok(report)
    }

    async fn read_snapshot(&self, request: SnapshotRequest, out: mpsc::Sender<SourceBatch>) -> Result<ReadStats> {
        let object = stream_object(&request.table.stream)?;
        if request.incremental.is_some() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("stripe {}: `mode: incremental` is not how Stripe streams stay current", object.stream),
            )
            .with_hint("use `mode: cdc` (the events feed, which sees updates and deletes) or `mode: full_refresh`"));
        }
        listing::read_all(&self.api, object, request, out).await
    }

    fn change_feed(&self) -> Option<&dyn ChangeFeed> {
        Some(&self.feed)
    }

    /// Streams list at once, all within the one rate limit: a page waits
    /// on the network far longer than it takes to stage.
    fn read_concurrency(&self) -> usize {
        READ_CONCURRENCY
    }

    fn scanner(&self) -> Option<&dyn Scanner> {
        Some(self)
    }
}

#[async_trait::async_trait]
impl Scanner for StripeSource {
    /// Stripe's ids do not sort as a destination sorts text: reconcile
    /// compares in hash partitions, each a fresh listing.
    async fn key_ranges_agree(&self, _table: &simplyload_core::TableSpec) -> Result<bool> {
        Ok(false)
    }

    async fn scan(&self, request: ScanRequest, out: ScanSender) -> Result<()> {
        let object = stream_object(&request.table.stream)?;
        listing::scan(&self.api, object, request, out).await
    }
}

fn mode_detail(mode: Mode, sample: &[Value]) -> String {
    let seen = sample.iter().find_map(|e| e.get("livemode").and_then(Value::as_bool));
    let tail = match seen {
        Some(_) => ", and its events agree",
        None => "",
    };
    format!("a {}-mode key{tail}", mode.name())
}

/// One stream's read access, with the permission to add when it is missing.
async fn check_stream(api: &Api, stream: &StreamName, report: &mut CheckReport) {
    let what = format!("read {stream}");
    let object = match stream_object(stream) {
        Ok(o) => o,
        Err(e) => {
            report.fail(what, format!("{e}"), None);
            return;
        }
    };
    let how = match object.changes {
        Changes::Events => "kept current by the events feed",
        Changes::Created => "immutable, read by `created`",
        Changes::Feed => "every event of the last 30 days, then each new one",
    };
    match api.list_page(object, &[], None).await {
        Ok(_) => report.pass(what, format!("the key can list {} ({how})", object.path)),
        Err(e) => report.fail(what, format!("{e}"), None),
    }
}
