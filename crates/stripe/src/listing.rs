//! The first read of a stream: its whole list, page by page.
//!
//! Pages are read with `limit` and `starting_after` (the last id of the
//! previous page). A resumable read sends, after the rows of each batch, the
//! id it can go on after; a killed read goes on from there. The list's order
//! is Stripe's business (newest first; localstripe: oldest first): nothing
//! here depends on it, and objects made or changed while the list is read
//! arrive through the events feed, which replays from before the listing
//! began.
//!
//! Two ways a cursor goes stale are handled without losing or doubling a
//! row: Stripe answers `resource_missing` when the `starting_after` object
//! was deleted meanwhile, and some servers silently start again at the first
//! page. Either way the list is read again from the start (rows already sent
//! are merged by key), at most [`MAX_RESTARTS`] times.

use crate::api::Api;
use crate::decode::{Decoder, Object};
use crate::objects::{Changes, ObjectType};
use serde_json::{Value, json};
use simplyload_core::canon::canon_from_arrow;
use simplyload_core::config::OnUnrepresentable;
use simplyload_core::scan::{KeyRange, SCAN_BATCH, ScanRequest, ScanSender, ScannedRow};
use simplyload_core::source::{ReadStats, SnapshotRequest, SourceBatch};
use simplyload_core::{Error, ErrorKind, Result};
use tokio::sync::mpsc;

/// Times a list may go back to its start before the read gives up.
pub const MAX_RESTARTS: u32 = 3;

/// Reads every object of `object`'s list into batches on `out`.
pub async fn read_all(
    api: &Api,
    object: &ObjectType,
    request: SnapshotRequest,
    out: mpsc::Sender<SourceBatch>,
) -> Result<ReadStats> {
    let mut decoder = Decoder::new(object, &request.table, request.limits, request.on_unrepresentable)?;
    let mut read = Listing {
        after: resume_after(request.resume.as_ref()),
        first_id: None,
        restarts: 0,
        stats: ReadStats::default(),
    };
    let batch_rows = request.batch_rows.max(1);
    let mut pending_bytes = 0;
    loop {
        let Some(page) = read.next_page(api, object).await? else { continue };
        for item in &page.data {
            decoder.push(Object { value: item, api_version: version_of(api, object, item) })?;
        }
        read.stats.rows += page.data.len() as u64;
        pending_bytes += page.bytes;
        read.after = page.data.last().and_then(|v| v.get("id")).and_then(Value::as_str).map(str::to_owned);
        let last = !page.has_more || read.after.is_none();
        if last || decoder.rows() >= batch_rows || decoder.bytes() >= request.batch_bytes {
            send(&out, SourceBatch::rows(decoder.finish()?, std::mem::take(&mut pending_bytes))).await?;
            // Every row up to `after` is sent: a killed read goes on after it.
            if request.resumable && !last {
                send(&out, SourceBatch { progress: Some(json!({ "after": read.after })), ..empty(&request) }).await?;
            }
        }
        if last {
            break;
        }
    }
    read.stats.unrepresentable = decoder.take_tally().into_entries();
    Ok(read.stats)
}

/// Where a list read stands.
struct Listing {
    after: Option<String>,
    /// The first id the list gave from its start, to see a silent restart.
    first_id: Option<String>,
    restarts: u32,
    stats: ReadStats,
}

impl Listing {
    /// The next page, or `None` when the list has to be read from its start
    /// again (the caller asks again).
    async fn next_page(&mut self, api: &Api, object: &ObjectType) -> Result<Option<crate::api::Page>> {
        let page = match api.list_page(object, &[], self.after.as_deref()).await {
            Err(e) if e.kind() == ErrorKind::NotFound && self.after.is_some() => {
                self.restart(object, "its cursor object was deleted while the list was read")?;
                return Ok(None);
            }
            other => other.map_err(|e| e.context(format!("listing stripe {}", object.stream)))?,
        };
        self.stats.source_bytes += page.bytes;
        let first = page.data.first().and_then(|v| v.get("id")).and_then(Value::as_str).map(str::to_owned);
        match (&self.after, &self.first_id) {
            (None, _) => self.first_id = first,
            (Some(_), Some(f)) if first.as_ref() == Some(f) => {
                self.restart(object, "the server went back to the first page")?;
                return Ok(Some(page));
            }
            _ => {}
        }
        Ok(Some(page))
    }

    fn restart(&mut self, object: &ObjectType, why: &str) -> Result<()> {
        self.restarts += 1;
        if self.restarts > MAX_RESTARTS {
            return Err(Error::new(
                ErrorKind::Transient,
                format!("listing stripe {}: {why}, {} times in one read", object.stream, self.restarts),
            )
            .with_hint("objects are being deleted faster than the list can be read; the next sync goes on"));
        }
        tracing::warn!(
            stream = object.stream,
            restarts = self.restarts,
            "{why}; reading the list from its start again (rows already read are merged by id)"
        );
        self.after = None;
        Ok(())
    }
}

/// The id a resumed read goes on after.
fn resume_after(progress: Option<&Value>) -> Option<String> {
    progress?.get("after")?.as_str().map(str::to_owned)
}

fn empty(request: &SnapshotRequest) -> SourceBatch {
    SourceBatch::rows(arrow_array::RecordBatch::new_empty(request.table.source_schema()), 0)
}

async fn send(out: &mpsc::Sender<SourceBatch>, batch: SourceBatch) -> Result<()> {
    out.send(batch).await.map_err(|_| Error::cancelled())
}

/// A fresh listing of a stream for `reconcile`: every object, decoded as a
/// read does, each row's key and value hashes sent in groups. Stripe's ids
/// sort differently from a destination's text order, so reconcile compares
/// in hash partitions and a scan always reads the whole list.
pub async fn scan(api: &Api, object: &ObjectType, request: ScanRequest, out: ScanSender) -> Result<()> {
    if request.limit.is_some() || request.range != KeyRange::default() {
        return Err(Error::internal("a Stripe scan reads the whole list: key ranges do not apply"));
    }
    let table = &request.table;
    let mut decoder = Decoder::new(object, table, request.limits, OnUnrepresentable::Report)?;
    let key = table.columns.iter().position(|c| c.source_name == "id");
    let key = key
        .ok_or_else(|| Error::config(format!("reconcile of stripe {}: the `id` column is excluded", object.stream)))?;
    let mut read = Listing { after: None, first_id: None, restarts: 0, stats: ReadStats::default() };
    loop {
        let Some(page) = read.next_page(api, object).await? else { continue };
        for item in &page.data {
            decoder.push(Object { value: item, api_version: version_of(api, object, item) })?;
        }
        let batch = simplyload_core::pseudonym::apply(table, decoder.finish()?)?;
        let mut rows = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            let mut hashes = Vec::with_capacity(table.columns.len());
            for (c, column) in table.columns.iter().enumerate() {
                hashes.push(canon_from_arrow(batch.column(c), i, column.sql_type)?.hash64());
            }
            let id = canon_from_arrow(batch.column(key), i, table.columns[key].sql_type)?;
            rows.push(ScannedRow { key: vec![id], hashes, flag: false });
        }
        for chunk in rows.chunks(SCAN_BATCH) {
            out.send(chunk.to_vec()).await.map_err(|_| Error::cancelled())?;
        }
        read.after = page.data.last().and_then(|v| v.get("id")).and_then(Value::as_str).map(str::to_owned);
        if !page.has_more || read.after.is_none() {
            return Ok(());
        }
    }
}

/// The API version an item of a listing is rendered in: events keep their
/// own, objects are at the pinned one.
fn version_of<'a>(api: &'a Api, object: &ObjectType, item: &'a Value) -> &'a str {
    match object.changes {
        Changes::Feed => item.get("api_version").and_then(Value::as_str).unwrap_or(""),
        _ => &api.version,
    }
}
