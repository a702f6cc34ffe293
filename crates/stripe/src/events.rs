//! One read of the events feed: every event of a window, routed to the
//! stream of the object inside it.
//!
//! * One scan of `/v1/events` serves every stream (`created[gt]` the
//!   window's start, `created[lte]` its end), read to its last page.
//! * Events are routed by `data.object.object`, never by the event type's
//!   prefix (`customer.subscription.updated` carries a subscription).
//! * Each event is applied at its version ([`crate::order`]); duplicates
//!   (the same id twice in one read) are dropped.
//! * `*.deleted` events flag the row deleted and keep its last values;
//!   `customer.subscription.deleted` is a cancellation, not a delete.
//! * An event rendered in another API version than the pinned one has its
//!   object fetched again at the pinned version (once per object per read);
//!   an object Stripe no longer has keeps the event's own rendering.
//! * Events without an object id (`invoice.upcoming`, balance notices) and
//!   of object types SimplyLoad does not sync are counted, never fail.
//! * Every stream is also listed by `created` over the same window: that is
//!   how immutable objects (`balance_transactions`) arrive, and it fills in
//!   objects whose creation event never came (Stripe's own docs and peers
//!   report missing events for some types; localstripe emits none for
//!   charges, refunds or product updates). A listed object is applied at its
//!   creation second, so every event about it wins.

use crate::api::Api;
use crate::decode::{Decoder, Object};
use crate::feed::{Timing, seconds, window_end};
use crate::objects::{self, Changes, ObjectType};
use crate::order::{Direction, event_version};
use serde_json::Value;
use simplyload_core::cdc::stage_changes;
use simplyload_core::feed::{ChangeEvent, ChangesRead, ChangesRequest};
use simplyload_core::{Error, Result, TableSpec};
use std::collections::{BTreeMap, HashMap, HashSet};
use tokio::sync::mpsc;

/// Objects fetched again are remembered up to this many per read.
const FETCHED_CACHE: usize = 1_000;

/// The seconds `(after, upto]` a read covers.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub after: i64,
    pub upto: i64,
}

impl Window {
    fn params(&self) -> [(&'static str, String); 2] {
        [("created[gt]", self.after.to_string()), ("created[lte]", self.upto.to_string())]
    }
}

/// Reads the window after `request.from` and sends its changes on `out`.
pub async fn read_window(
    api: &Api,
    timing: Timing,
    request: ChangesRequest,
    out: mpsc::Sender<ChangeEvent>,
) -> Result<ChangesRead> {
    let from =
        request.from.as_ref().ok_or_else(|| Error::internal("the Stripe events feed was read without a position"))?;
    let from = seconds(from)?;
    let upto = api.now().await? - timing.settle;
    if upto <= from {
        return Ok(ChangesRead::default());
    }
    let window = Window { after: from - timing.overlap, upto };
    let mut router = Router::new(api, &request, out)?;
    if router.wants_events() {
        scan_events(api, window, &mut router).await?;
    }
    // Objects made in the window, whether or not an event said so (events
    // for some types are known to go missing; immutable objects have none).
    for object in router.listed_streams() {
        scan_created(api, object, window, &mut router).await?;
    }
    router.flush_all().await?;
    let mut read = router.finish();
    read.confirm = Some(window_end(upto));
    Ok(read)
}

/// Changes of one stream waiting to be sent.
struct Buffer {
    label: String,
    object: &'static ObjectType,
    table: TableSpec,
    decoder: Decoder,
    versions: Vec<i128>,
    deleted: Vec<bool>,
}

/// Where each change goes.
struct Router<'a> {
    api: &'a Api,
    out: mpsc::Sender<ChangeEvent>,
    buffers: BTreeMap<&'static str, Buffer>,
    batch_rows: usize,
    seen: HashSet<String>,
    fetched: HashMap<String, Option<Value>>,
    read: ChangesRead,
}

impl<'a> Router<'a> {
    fn new(api: &'a Api, request: &ChangesRequest, out: mpsc::Sender<ChangeEvent>) -> Result<Router<'a>> {
        let mut buffers = BTreeMap::new();
        for table in &request.tables {
            let object = crate::stream_object(&table.stream)?;
            let decoder = Decoder::new(object, table, request.limits, request.on_unrepresentable)?;
            let buffer = Buffer {
                label: table.stream.to_string(),
                object,
                table: table.clone(),
                decoder,
                versions: Vec::new(),
                deleted: Vec::new(),
            };
            buffers.insert(object.stream, buffer);
        }
        Ok(Router {
            api,
            out,
            buffers,
            batch_rows: request.batch_rows.max(1),
            seen: HashSet::new(),
            fetched: HashMap::new(),
            read: ChangesRead::default(),
        })
    }

    /// Whether any stream is kept current by events.
    fn wants_events(&self) -> bool {
        self.buffers.values().any(|b| b.object.changes != Changes::Created)
    }

    /// Streams whose objects made in the window are listed too: every
    /// stream but the events themselves.
    fn listed_streams(&self) -> Vec<&'static ObjectType> {
        self.buffers.values().filter(|b| b.object.changes != Changes::Feed).map(|b| b.object).collect()
    }

    fn skip(&mut self, reason: String) {
        *self.read.skipped.entry(reason).or_default() += 1;
    }

    /// Routes one event at its version.
    async fn event(&mut self, event: &Value, version: i128) -> Result<()> {
        let rendered_in = event.get("api_version").and_then(Value::as_str).unwrap_or("");
        if self.buffers.contains_key("events") {
            self.push("events", event, rendered_in, version, false).await?;
        }
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("?").to_owned();
        let Some(object) = event.pointer("/data/object") else {
            self.skip(format!("{kind}: no object"));
            return Ok(());
        };
        let object_type = object.get("object").and_then(Value::as_str).unwrap_or("object");
        let Some(id) = object.get("id").and_then(Value::as_str).map(str::to_owned) else {
            self.skip(format!("{kind}: its {object_type} has no id"));
            return Ok(());
        };
        let Some(stream) = objects::by_object(object_type) else {
            self.skip(format!("{kind}: SimplyLoad does not sync {object_type} objects"));
            return Ok(());
        };
        if !self.buffers.contains_key(stream.stream) {
            self.skip(format!("{kind}: stream `{}` is not selected", stream.stream));
            return Ok(());
        }
        if stream.changes != Changes::Events {
            self.skip(format!("{kind}: stream `{}` is read by `created`, not by events", stream.stream));
            return Ok(());
        }
        let deleted = is_delete(&kind, object);
        if deleted || rendered_in == self.api.version {
            return self.push(stream.stream, object, rendered_in, version, deleted).await;
        }
        match self.fetch(stream, &id).await? {
            Some(current) if current.get("deleted").and_then(Value::as_bool) == Some(true) => {
                self.push(stream.stream, object, rendered_in, version, true).await
            }
            Some(current) => {
                let api = self.api;
                self.push(stream.stream, &current, &api.version, version, false).await
            }
            None => self.push(stream.stream, object, rendered_in, version, false).await,
        }
    }

    /// The object as it is now, at the pinned version.
    async fn fetch(&mut self, object: &ObjectType, id: &str) -> Result<Option<Value>> {
        if let Some(v) = self.fetched.get(id) {
            return Ok(v.clone());
        }
        let v = self.api.retrieve(object, id).await.map_err(|e| e.context(format!("fetching stripe {id}")))?;
        if self.fetched.len() >= FETCHED_CACHE {
            self.fetched.clear();
        }
        self.fetched.insert(id.to_owned(), v.clone());
        Ok(v)
    }

    async fn push(
        &mut self,
        stream: &str,
        value: &Value,
        api_version: &str,
        version: i128,
        deleted: bool,
    ) -> Result<()> {
        let full = {
            let b = self.buffers.get_mut(stream).expect("routed to a selected stream");
            b.decoder.push(Object { value, api_version })?;
            b.versions.push(version);
            b.deleted.push(deleted);
            b.versions.len() >= self.batch_rows
        };
        self.read.changes += 1;
        if full {
            self.flush(stream).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, stream: &str) -> Result<()> {
        let b = self.buffers.get_mut(stream).expect("a selected stream");
        if b.versions.is_empty() {
            return Ok(());
        }
        let data = b.decoder.finish()?;
        let batch = stage_changes(&b.table, data, &b.versions, &b.deleted, &[])?;
        b.versions.clear();
        b.deleted.clear();
        let event = ChangeEvent::Rows { stream: b.label.clone(), batch };
        self.out.send(event).await.map_err(|_| Error::cancelled())
    }

    async fn flush_all(&mut self) -> Result<()> {
        let streams: Vec<&'static str> = self.buffers.keys().copied().collect();
        for s in streams {
            self.flush(s).await?;
        }
        Ok(())
    }

    fn finish(mut self) -> ChangesRead {
        for b in self.buffers.values_mut() {
            for u in b.decoder.take_tally().into_entries() {
                self.read.unrepresentable.push((b.label.clone(), u));
            }
        }
        self.read
    }
}

/// Whether an event removes its object. `customer.subscription.deleted`
/// ends a subscription, which Stripe keeps (status `canceled`).
pub fn is_delete(event_type: &str, object: &Value) -> bool {
    if object.get("deleted").and_then(Value::as_bool) == Some(true) {
        return true;
    }
    let object_type = object.get("object").and_then(Value::as_str).unwrap_or("");
    event_type.ends_with(".deleted") && object_type != "subscription"
}

/// Events of one second, in list order.
struct Second {
    created: i64,
    events: Vec<Value>,
}

/// Scans the window's events and routes them, one second at a time.
async fn scan_events(api: &Api, window: Window, router: &mut Router<'_>) -> Result<()> {
    let events = objects::by_stream("events").expect("events is a stream");
    let params = window.params();
    let mut after: Option<String> = None;
    let mut held: Vec<Second> = Vec::new();
    loop {
        let page = api
            .list_page(events, &params, after.as_deref())
            .await
            .map_err(|e| e.context("reading the Stripe events feed"))?;
        router.read.source_bytes += page.bytes;
        after = page.data.last().and_then(|v| v.get("id")).and_then(Value::as_str).map(str::to_owned);
        for event in page.data {
            let Some(id) = event.get("id").and_then(Value::as_str) else { continue };
            if !router.seen.insert(id.to_owned()) {
                continue;
            }
            let created = event.get("created").and_then(Value::as_i64).unwrap_or(0);
            match held.last_mut() {
                Some(s) if s.created == created => s.events.push(event),
                last => {
                    if let Some(d) = last.and_then(|s| Direction::from_pair(s.created, created)) {
                        api.learn_direction(d);
                    }
                    held.push(Second { created, events: vec![event] });
                }
            }
            // Every second but the last is complete once the order is known.
            if let Some(d) = api.direction() {
                while held.len() > 1 {
                    let second = held.remove(0);
                    route_second(router, second, d).await?;
                }
            }
        }
        if !page.has_more || after.is_none() {
            break;
        }
    }
    let direction = direction_of(api, &held).await?;
    for second in held {
        route_second(router, second, direction).await?;
    }
    Ok(())
}

async fn route_second(router: &mut Router<'_>, second: Second, direction: Direction) -> Result<()> {
    let count = second.events.len();
    for (i, event) in second.events.iter().enumerate() {
        router.event(event, event_version(second.created, i, count, direction)).await?;
    }
    Ok(())
}

/// The list's order when the window did not show it: what an object's
/// lifecycle within a second says, else the account's first page of
/// events, else Stripe's documented newest-first.
async fn direction_of(api: &Api, held: &[Second]) -> Result<Direction> {
    if let Some(d) = api.direction() {
        return Ok(d);
    }
    if held.is_empty() {
        return Ok(Direction::NewestFirst);
    }
    if let Some(d) = held.iter().find_map(|s| crate::order::from_lifecycle(&s.events)) {
        api.learn_direction(d);
        return Ok(d);
    }
    let events = objects::by_stream("events").expect("events is a stream");
    let page = api.list_page(events, &[], None).await?;
    let created: Vec<i64> = page.data.iter().filter_map(|e| e.get("created").and_then(Value::as_i64)).collect();
    let first = created.first().copied().unwrap_or(0);
    let seen = created
        .iter()
        .find_map(|c| Direction::from_pair(first, *c))
        .or_else(|| crate::order::from_lifecycle(&page.data));
    match seen {
        Some(d) => {
            api.learn_direction(d);
            Ok(d)
        }
        None => Ok(Direction::NewestFirst),
    }
}

/// Lists a stream's objects created in the window. Each is applied at its
/// creation second, so any event about it (at that second or later) wins
/// over the listing, which only fills in objects no event brought.
///
/// The list is read newest first without a `created` filter (servers that
/// are not Stripe refuse one on some lists, or fail on it) and stops at the
/// first page that is wholly older than the window, in descending order. A
/// list in another order is read to its end.
async fn scan_created(api: &Api, object: &'static ObjectType, window: Window, router: &mut Router<'_>) -> Result<()> {
    let mut after: Option<String> = None;
    loop {
        let page = api
            .list_page(object, &[], after.as_deref())
            .await
            .map_err(|e| e.context(format!("listing stripe {} by created", object.stream)))?;
        router.read.source_bytes += page.bytes;
        after = page.data.last().and_then(|v| v.get("id")).and_then(Value::as_str).map(str::to_owned);
        let created: Vec<i64> =
            page.data.iter().map(|i| i.get("created").and_then(Value::as_i64).unwrap_or(0)).collect();
        for (item, &at) in page.data.iter().zip(&created) {
            if at > window.after && at <= window.upto {
                router
                    .push(object.stream, item, &api.version, event_version(at, 0, 1, Direction::OldestFirst), false)
                    .await?;
            }
        }
        if !page.has_more || after.is_none() || past_the_window(&created, window) {
            return Ok(());
        }
    }
}

/// Whether a page ends a newest-first read of the window: it descends, and
/// its last object is older than the window.
fn past_the_window(created: &[i64], window: Window) -> bool {
    match (created.first(), created.last()) {
        (Some(first), Some(last)) => first > last && *last <= window.after,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_newest_first_list_stops_past_the_window_and_any_other_reads_on() {
        let w = Window { after: 100, upto: 200 };
        assert!(past_the_window(&[150, 120, 90], w));
        assert!(!past_the_window(&[150, 120, 101], w), "the next page may still hold the window");
        assert!(!past_the_window(&[50, 60, 70], w), "oldest first: newer pages follow");
        assert!(!past_the_window(&[90, 90], w), "no order to go by");
    }

    #[test]
    fn deletes_are_deletes_and_cancellations_are_not() {
        let customer = json!({"id": "cus_1", "object": "customer"});
        let sub = json!({"id": "sub_1", "object": "subscription", "status": "canceled"});
        assert!(is_delete("customer.deleted", &customer));
        assert!(!is_delete("customer.updated", &customer));
        assert!(!is_delete("customer.subscription.deleted", &sub));
        assert!(is_delete("product.updated", &json!({"id": "p", "object": "product", "deleted": true})));
    }
}
