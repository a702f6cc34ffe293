//! Snapshot parts: a large read cut into batches of about
//! [`SyncOptions::part_rows`](super::SyncOptions::part_rows) rows, each
//! loaded while the read goes on (DESIGN.md §2).
//!
//! The reader hands every finished part to [`Parts`], which records it as
//! staged and passes it to the stream's loader ([`load_parts`]) over a
//! channel of four: finished parts wait on disk, not in memory. The loader
//! takes every part waiting into one load when they continue the same read,
//! so a destination slower than the read does fewer, larger transactions. A
//! failed load closes the channel, so the read's next hand-over fails and
//! the read stops: the load's error is the cause reported.

use super::context::Run;
use super::load::load_with_retries;
use crate::batch::{BatchManifest, LoadKind};
use crate::error::{Error, Result};
use crate::failpoint::{armed, failpoint};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::{Notify, mpsc};

/// Finished parts waiting for the loader.
const WAITING_PARTS: usize = 4;

/// Takes the finished parts of a read cut into several batches.
#[async_trait::async_trait]
pub trait PartSink: Send + Sync {
    /// `manifest` is a finished part: record it as staged and pass it on to
    /// be loaded. Returns the id of the batch the read goes on in.
    async fn part_staged(&self, manifest: BatchManifest) -> Result<u64>;
}

/// The sync runner's [`PartSink`]: records each part, hands it to the
/// stream's loader, and takes the next batch id.
pub(crate) struct Parts<'a> {
    run: Run<'a>,
    stream: String,
    tx: Mutex<Option<mpsc::Sender<BatchManifest>>>,
    /// The batch the read is writing now (its files are removed if the read
    /// fails); 0 when none is (the last one was just handed over).
    current: AtomicU64,
    /// The read is over: loads no longer run beside it.
    read_done: AtomicBool,
    /// Parts handed over and parts loaded (or the loader stopped), for the
    /// `after_part_loaded` failpoint: armed, the read waits for each part's
    /// load, so the crash comes with the read part way, as it says.
    handed: AtomicU64,
    settled: AtomicU64,
    settled_notify: Notify,
}

impl<'a> Parts<'a> {
    /// The parts of `stream`'s read and the receiving end for its loader.
    pub(crate) fn new(run: Run<'a>, stream: &str) -> (Self, mpsc::Receiver<BatchManifest>) {
        let (tx, rx) = mpsc::channel(WAITING_PARTS);
        let parts = Parts {
            run,
            stream: stream.to_owned(),
            tx: Mutex::new(Some(tx)),
            current: AtomicU64::new(0),
            read_done: AtomicBool::new(false),
            handed: AtomicU64::new(0),
            settled: AtomicU64::new(0),
            settled_notify: Notify::new(),
        };
        (parts, rx)
    }

    /// The batch the read is writing now; 0 when none.
    pub(crate) fn current(&self) -> u64 {
        self.current.load(Ordering::SeqCst)
    }

    pub(crate) fn set_current(&self, batch_id: u64) {
        self.current.store(batch_id, Ordering::SeqCst);
    }

    /// The read has stopped (its last part, if any, is still to come):
    /// loads from now on have the machine to themselves.
    pub(crate) fn read_finished(&self) {
        self.read_done.store(true, Ordering::SeqCst);
    }

    /// Nothing more comes: the loader ends after the parts it holds.
    pub(crate) fn close(&self) {
        self.read_finished();
        self.tx.lock().expect("parts lock").take();
    }

    /// Passes a recorded batch to the loader; `false` when the loader has
    /// stopped (its error is the one reported).
    pub(crate) async fn hand_over(&self, manifest: BatchManifest) -> bool {
        self.set_current(0);
        let tx = self.tx.lock().expect("parts lock").clone();
        match tx {
            Some(tx) => tx.send(manifest).await.is_ok(),
            None => false,
        }
    }

    fn read_done(&self) -> bool {
        self.read_done.load(Ordering::SeqCst)
    }

    /// The loader is done with `n` more parts (loaded, or it stopped: then
    /// with all of them).
    fn settle(&self, n: u64) {
        self.settled.fetch_add(n, Ordering::SeqCst);
        self.settled_notify.notify_waiters();
    }

    /// Waits until the loader is done with every part handed over so far.
    async fn wait_settled(&self) {
        let target = self.handed.load(Ordering::SeqCst);
        loop {
            let notified = self.settled_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.settled.load(Ordering::SeqCst) >= target {
                return;
            }
            notified.await;
        }
    }
}

#[async_trait::async_trait]
impl PartSink for Parts<'_> {
    async fn part_staged(&self, manifest: BatchManifest) -> Result<u64> {
        let ctx = self.run.ctx;
        ctx.store.record_staged(&manifest).await?;
        // From here the part is the loader's (or, after a crash, recovery's):
        // a failure must not remove its files.
        self.set_current(0);
        failpoint("after_part_staged");
        self.handed.fetch_add(1, Ordering::SeqCst);
        if !self.hand_over(manifest).await {
            return Err(Error::internal(format!("{}: the loader stopped", self.stream)));
        }
        if armed("after_part_loaded") {
            self.wait_settled().await;
        }
        let next = ctx.store.allocate_batch(&ctx.pipeline, &self.stream, self.run.sync_id).await?;
        self.set_current(next);
        Ok(next)
    }
}

/// What the loader of a read loaded.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Loaded {
    /// Rows and staged bytes loaded (a replace starts the count over).
    pub rows: u64,
    pub staged_bytes: u64,
    /// The destination's row count after the last load, if it counted.
    pub rows_after: Option<u64>,
}

/// The loader of a read cut into parts: loads each part handed over while
/// the read goes on; parts already waiting join the load when they continue
/// the same read (a replace and its appends, or merges), in one transaction.
pub(crate) async fn load_parts(parts: &Parts<'_>, rx: &mut mpsc::Receiver<BatchManifest>) -> Result<Loaded> {
    let mut loaded = Loaded::default();
    let mut next: Option<BatchManifest> = None;
    loop {
        let first = match next.take() {
            Some(m) => m,
            None => match rx.recv().await {
                Some(m) => m,
                None => break,
            },
        };
        let group = waiting_group(first, rx, &mut next);
        tracing::debug!(stream = %parts.stream, batches = ?group.iter().map(|m| m.batch_id).collect::<Vec<_>>(),
            rows = group.iter().map(|m| m.row_count).sum::<u64>(), "loading");
        loaded.rows_after = match load_with_retries(parts.run, &group, !parts.read_done()).await {
            Ok(v) => v,
            Err(e) => {
                // The read's next hand-over fails at once and stops it.
                rx.close();
                parts.settle(u64::MAX / 2);
                return Err(e);
            }
        };
        if !parts.read_done() {
            failpoint("after_part_loaded");
        }
        parts.settle(group.len() as u64);
        // A replace starts the table over: rows an earlier (retried) read
        // put in are gone, so they are not counted.
        if group[0].kind == LoadKind::Replace {
            (loaded.rows, loaded.staged_bytes) = (0, 0);
        }
        loaded.rows += group.iter().map(|m| m.row_count).sum::<u64>();
        loaded.staged_bytes += group.iter().map(BatchManifest::byte_count).sum::<u64>();
    }
    Ok(loaded)
}

/// `first` and the parts already waiting that continue the same read (a
/// retried read starts again with a replace); the first that does not is
/// left in `next`.
fn waiting_group(
    first: BatchManifest,
    rx: &mut mpsc::Receiver<BatchManifest>,
    next: &mut Option<BatchManifest>,
) -> Vec<BatchManifest> {
    let mut group = vec![first];
    while let Ok(m) = rx.try_recv() {
        let joins = matches!(
            (group[0].kind, m.kind),
            (LoadKind::Replace | LoadKind::Append, LoadKind::Append) | (LoadKind::Merge, LoadKind::Merge)
        ) && !m.complete;
        if !joins {
            *next = Some(m);
            break;
        }
        group.push(m);
    }
    group
}
