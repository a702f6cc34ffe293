//! The status of a pipeline as people (and the API) see it: each configured
//! stream with its mode, last load, rows, checkpoint and lag, the last sync,
//! and the change feed's backlog on the source.

use crate::App;
use serde::Serialize;
use simplyload_config::{PipelineConfig, StreamConfig, SyncMode};
use simplyload_core::checkpoint::{CheckpointStore, StreamState, SyncRecord};
use simplyload_core::cursor::CursorValue;
use simplyload_core::{ChangeFeed, FeedStatus, Position, Result, StreamName};

/// One pipeline's status.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineStatus {
    pub pipeline: String,
    pub source: String,
    pub destination: String,
    pub last_sync: Option<SyncRecord>,
    /// What the state holds per stream (positions as shown to people).
    pub streams: Vec<StreamState>,
    /// Every configured stream (a pattern: the tables it synced, or itself
    /// before the first sync), for display.
    pub rows: Vec<StreamRow>,
    /// The change feed of a pipeline with `cdc` streams.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feed: Option<FeedView>,
}

/// One configured stream.
#[derive(Debug, Clone, Serialize)]
pub struct StreamRow {
    pub stream: String,
    pub mode: String,
    pub state: Option<StreamState>,
    /// Where it stands, in words (`2026-12-03T10:00:00Z`, `LSN 16/B3…`, `batch 7`).
    pub checkpoint: Option<String>,
    /// How far behind the source it is: seconds since the cursor (time
    /// cursors) or since the last load (change feeds).
    pub lag_seconds: Option<u64>,
}

/// A pipeline's change feed on the source.
#[derive(Debug, Clone, Serialize)]
pub struct FeedView {
    /// `replication slot`.
    pub what: String,
    /// The feed's name (as the state recorded it); `None` before the first sync.
    pub name: Option<String>,
    /// The feed as the source shows it; `None`: not made yet, or a source
    /// that keeps nothing for its readers (an API's events).
    #[serde(skip)]
    pub status: Option<FeedStatus>,
    /// Where the state says the feed stands (the last position recorded).
    pub recorded: Option<String>,
    pub confirmed: Option<String>,
    pub lag_bytes: Option<u64>,
    pub lost: bool,
    /// Reading it failed (the source is unreachable, …).
    pub error: Option<String>,
    /// `max_lag_bytes` of the pipeline.
    pub max_lag_bytes: u64,
}

impl App {
    /// A pipeline's status, from the state (and the source, for its change feed).
    pub async fn status(&self, pipeline: &str) -> Result<PipelineStatus> {
        let p = self.config().pipeline(pipeline)?;
        let store = self.existing_store()?;
        let (mut streams, syncs, record) = match &store {
            Some(s) => (s.streams(pipeline).await?, s.syncs(pipeline, 1).await?, s.feed(pipeline).await?),
            None => (Vec::new(), Vec::new(), None),
        };
        for st in &mut streams {
            if let Some(cp) = st.checkpoint.as_mut() {
                cp.position = cp.position.as_ref().map(Position::for_display);
            }
        }
        let source = self.source(&p.source)?;
        let feed = source.change_feed();
        let rows = stream_rows(p, &streams, source.default_namespace(), feed);
        let has_cdc = p.streams.iter().any(|s| s.mode.unwrap_or(p.mode) == SyncMode::Cdc);
        let feed = match (has_cdc, feed) {
            (true, Some(feed)) => Some(feed_view(feed, record, p).await),
            _ => None,
        };
        let mut syncs = syncs;
        self.mark_interrupted(pipeline, &mut syncs).await;
        let last_sync = syncs.into_iter().next();
        Ok(PipelineStatus {
            pipeline: pipeline.to_owned(),
            source: p.source.clone(),
            destination: p.destination.clone(),
            last_sync,
            streams,
            rows,
            feed,
        })
    }
}

async fn feed_view(
    feed: &dyn ChangeFeed,
    record: Option<simplyload_core::checkpoint::FeedRecord>,
    p: &PipelineConfig,
) -> FeedView {
    let name = record.as_ref().map(|r| r.name.clone());
    let mut view = FeedView {
        what: feed.what().to_owned(),
        name: name.clone(),
        recorded: record.and_then(|r| r.confirmed).map(|c| feed.describe(&c)),
        status: None,
        confirmed: None,
        lag_bytes: None,
        lost: false,
        error: None,
        max_lag_bytes: p.max_lag_bytes.unwrap_or(simplyload_config::DEFAULT_MAX_LAG_BYTES),
    };
    let Some(name) = name else { return view };
    match feed.status(&name).await {
        Ok(Some(s)) => {
            view.confirmed = s.confirmed.as_ref().map(|c| c.token.clone());
            view.lag_bytes = s.lag_bytes;
            view.lost = s.lost;
            view.status = Some(s);
        }
        Ok(None) => {}
        Err(e) => view.error = Some(e.to_string().lines().next().unwrap_or("").to_owned()),
    }
    view
}

/// Configured streams; a pattern shows the tables it has synced (or itself,
/// before the first sync).
fn stream_rows(
    p: &PipelineConfig,
    states: &[StreamState],
    default_ns: Option<&str>,
    feed: Option<&dyn ChangeFeed>,
) -> Vec<StreamRow> {
    let mut listed: Vec<(String, &StreamConfig)> = Vec::new();
    for sc in &p.streams {
        if sc.is_pattern() {
            let one = PipelineConfig { streams: vec![sc.clone()], ..p.clone() };
            let matched: Vec<String> = states
                .iter()
                .filter(|s| {
                    StreamName::parse(&s.stream).is_ok_and(|n| simplyload_core::plan::selects(&one, &n, default_ns))
                })
                .map(|s| s.stream.clone())
                .filter(|s| !listed.iter().any(|(l, _)| l == s))
                .collect();
            if matched.is_empty() {
                listed.push((sc.name.clone(), sc));
            }
            listed.extend(matched.into_iter().map(|m| (m, sc)));
        } else {
            let label = StreamName::parse(&sc.name)
                .map(|n| n.qualified(default_ns).to_string())
                .unwrap_or_else(|_| sc.name.clone());
            listed.retain(|(l, _)| *l != label);
            listed.push((label, sc));
        }
    }
    listed
        .into_iter()
        .map(|(label, sc)| {
            let state = states.iter().find(|s| s.stream == label).cloned();
            let (checkpoint, lag_seconds) = state.as_ref().map(|s| describe(s, feed)).unwrap_or((None, None));
            StreamRow { stream: label, mode: sc.mode.unwrap_or(p.mode).to_string(), state, checkpoint, lag_seconds }
        })
        .collect()
}

/// A stream's checkpoint in words, and its lag.
fn describe(st: &StreamState, feed: Option<&dyn ChangeFeed>) -> (Option<String>, Option<u64>) {
    let cp = st.checkpoint.as_ref();
    let position = cp.and_then(|c| c.position.as_ref());
    let now_ms = now_ms();
    match position {
        Some(Position::Incremental(c)) => {
            let lag = match &c.cursor {
                Some(CursorValue::Micros { value }) => Some(((now_ms * 1000 - value).max(0) / 1_000_000) as u64),
                _ => None,
            };
            (c.cursor.as_ref().map(|c| c.to_string()), lag)
        }
        Some(Position::Cdc(c)) => {
            let text = feed.map_or_else(|| c.feed.token.clone(), |f| f.describe(&c.feed));
            let lag = st.last_loaded_at_ms.map(|t| ((now_ms - t).max(0) / 1000) as u64);
            (Some(text), lag)
        }
        Some(other) => (Some(format!("{} (first read under way)", other.mode())), None),
        None => (cp.map(|c| format!("batch {}", c.batch_id)), None),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl App {
    /// A pipeline's syncs, newest first, with one recorded as running
    /// shown as `interrupted` when nobody holds the pipeline (it was killed;
    /// the next sync settles what it left).
    pub async fn history(&self, pipeline: &str, limit: usize) -> Result<Vec<SyncRecord>> {
        let Some(store) = self.existing_store()? else { return Ok(Vec::new()) };
        let mut syncs = store.syncs(pipeline, limit).await?;
        self.mark_interrupted(pipeline, &mut syncs).await;
        Ok(syncs)
    }

    async fn mark_interrupted(&self, pipeline: &str, syncs: &mut [SyncRecord]) {
        if syncs.iter().any(|s| s.status == "running")
            && self.locks().acquire(pipeline, std::time::Duration::ZERO).await.is_ok()
        {
            for s in syncs.iter_mut().filter(|s| s.status == "running") {
                s.status = "interrupted".into();
            }
        }
    }
}
