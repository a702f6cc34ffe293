//! The checkpoint-store conformance suite: one set of tests every
//! `CheckpointStore` must pass (SQLite now, Postgres later).

use simplyload_core::RowChanges;
use simplyload_core::checkpoint::{Checkpoint, CheckpointStore, FeedRecord, LoadedStream};
use simplyload_core::cursor::CursorValue;
use simplyload_core::position::{CursorPosition, FeedCheckpoint, Position};
use simplyload_core::{BatchManifest, BatchState, FeedPosition, LoadKind, SqlType, StagedFile, SyncReport};

fn feed_position(version: i128) -> FeedPosition {
    FeedPosition { version, token: format!("token-{version}") }
}

fn cursor_at(value: u64) -> Position {
    Position::Incremental(CursorPosition {
        column: "updated_at".into(),
        cursor: Some(CursorValue::Int { value: value as i64 }),
        null_cursor_rows: 0,
        overlap: Some(vec!["a".into()]),
    })
}

fn manifest(pipeline: &str, stream: &str, batch_id: u64, sync_id: i64) -> BatchManifest {
    let table = crate::destination_suite::table("t", &[("id", SqlType::Int64)], &["id"]);
    BatchManifest {
        pipeline: pipeline.into(),
        stream: stream.into(),
        batch_id,
        sync_id,
        kind: LoadKind::Replace,
        table,
        files: vec![StagedFile {
            key: format!("{pipeline}/{stream}/{batch_id:012}/part-00000.parquet"),
            row_count: 3,
            byte_count: 100,
        }],
        row_count: 3,
        start_position: None,
        end_position: Some(Position::Cdc(FeedCheckpoint { feed: feed_position(1 << 40) })),
        truncated_at: None,
        complete: false,
    }
}

fn loaded<'a>(stream: &'a str, ids: &'a [u64], cp: u64) -> LoadedStream<'a> {
    LoadedStream {
        pipeline: "p",
        stream,
        mode: "full_refresh",
        table: "t",
        sync_id: 1,
        batch_ids: ids,
        checkpoint: Checkpoint { batch_id: cp, position: Some(cursor_at(cp)) },
        rows: 10,
        destination_rows: Some(10),
        changes: Some(RowChanges { inserted: 7, updated: 2, deleted: 1 }),
    }
}

async fn checkpoint_of(store: &impl CheckpointStore, stream: &str) -> Checkpoint {
    store.streams("p").await.unwrap().into_iter().find(|x| x.stream == stream).unwrap().checkpoint.unwrap()
}

/// Runs every case against stores made by `open` (called again to reopen
/// the same store, to check durability).
pub async fn run<S: CheckpointStore>(open: impl Fn() -> S) {
    let store = open();
    // pipeline ids are stable and distinct.
    let a = store.pipeline_id("p").await.unwrap();
    assert_eq!(store.pipeline_id("p").await.unwrap(), a);
    assert_ne!(store.pipeline_id("q").await.unwrap(), a);

    // batch ids grow per stream and are never reused.
    let sync = store.begin_sync("p").await.unwrap();
    let b1 = store.allocate_batch("p", "public.a", sync).await.unwrap();
    let b2 = store.allocate_batch("p", "public.a", sync).await.unwrap();
    let other = store.allocate_batch("p", "public.b", sync).await.unwrap();
    assert!(b2 > b1);
    assert_eq!(other, 1);

    // staging → abandoned; staged manifests come back after a reopen.
    store.abandon_batch("p", "public.a", b1).await.unwrap();
    let m = manifest("p", "public.a", b2, sync);
    store.record_staged(&m).await.unwrap();
    drop(store);
    let store = open();
    let unfinished = store.unfinished_batches("p").await.unwrap();
    assert_eq!(unfinished.len(), 2, "{unfinished:?}");
    let a2 = unfinished.iter().find(|b| b.stream == "public.a").unwrap();
    assert_eq!(a2.batch_id, b2);
    assert_eq!(a2.state, BatchState::Staged);
    assert_eq!(a2.manifest.as_ref(), Some(&m));
    let b = unfinished.iter().find(|b| b.stream == "public.b").unwrap();
    assert_eq!(b.state, BatchState::Staging);
    assert!(b.manifest.is_none());
    let b3 = store.allocate_batch("p", "public.a", sync).await.unwrap();
    assert!(b3 > b2, "ids are not reused after a reopen");

    // loading moves the checkpoint forward only.
    store.mark_loaded(loaded("public.a", &[b2], b2)).await.unwrap();
    assert_eq!(checkpoint_of(&store, "public.a").await.batch_id, b2);
    assert_eq!(checkpoint_of(&store, "public.a").await.position, Some(cursor_at(b2)), "typed positions round-trip");
    store.mark_loaded(loaded("public.a", &[b1], b1)).await.unwrap();
    assert_eq!(checkpoint_of(&store, "public.a").await.batch_id, b2, "an older batch never moves the checkpoint back");
    assert!(store.unfinished_batches("p").await.unwrap().iter().all(|b| b.stream != "public.a" || b.batch_id == b3));

    // errors and history.
    store.record_stream_error("p", "public.b", "boom").await.unwrap();
    let streams = store.streams("p").await.unwrap();
    assert_eq!(streams.iter().find(|s| s.stream == "public.b").unwrap().last_error.as_deref(), Some("boom"));
    let a_state = streams.iter().find(|s| s.stream == "public.a").unwrap();
    // The two loads of sync 1 add up.
    assert_eq!(a_state.last_rows, 20);
    assert!(a_state.last_error.is_none());
    assert_eq!(a_state.last_changes, Some(RowChanges { inserted: 14, updated: 4, deleted: 2 }));
    // Marking a loaded batch loaded again counts nothing twice.
    store.mark_loaded(loaded("public.a", &[b2], b2)).await.unwrap();
    let again = store.streams("p").await.unwrap().into_iter().find(|s| s.stream == "public.a").unwrap();
    assert_eq!((again.last_rows, again.last_changes), (20, a_state.last_changes));

    // The last loaded table shape; staged files to clean; resync.
    assert_eq!(store.last_loaded_table("p", "public.a").await.unwrap(), Some(m.table.clone()));
    assert_eq!(store.last_loaded_table("p", "public.b").await.unwrap(), None);
    let cleanable = store.batches_to_clean("p", i64::MAX).await.unwrap();
    // (b1 was marked loaded above by the forward-only check.)
    assert_eq!(
        cleanable.iter().map(|b| (b.stream.as_str(), b.batch_id)).collect::<Vec<_>>(),
        vec![("public.a", b1), ("public.a", b2)]
    );
    assert!(store.batches_to_clean("p", 0).await.unwrap().is_empty(), "nothing loaded before the epoch");
    store.mark_files_removed("p", "public.a", b1).await.unwrap();
    store.mark_files_removed("p", "public.a", b2).await.unwrap();
    assert!(store.batches_to_clean("p", i64::MAX).await.unwrap().is_empty());
    assert!(store.request_resync("p", "public.a").await.unwrap());
    assert_eq!(checkpoint_of(&store, "public.a").await.position, None, "a resync clears the position");
    assert!(!store.request_resync("p", "public.nope").await.unwrap());
    let mut report = SyncReport::new("p", sync);
    report.duration_ms = 5;
    store.finish_sync(&report).await.unwrap();
    let next = store.begin_sync("p").await.unwrap();
    assert!(next > sync);
    // A sync left running by a killed process is marked when the next starts.
    let third = store.begin_sync("p").await.unwrap();
    let history = store.syncs("p", 10).await.unwrap();
    assert_eq!(history.iter().map(|s| s.sync_id).collect::<Vec<_>>(), vec![third, next, sync]);
    assert_eq!(history[0].status, "running");
    assert_eq!(history[1].status, "interrupted");
    assert_eq!(history[2].status, "succeeded");
    assert!(store.syncs("other", 10).await.unwrap().is_empty());

    // The change feed's record: none, then the last one recorded, durably.
    assert_eq!(store.feed("p").await.unwrap(), None);
    let named = FeedRecord { name: "simplyload_p_0a1b2c3d".into(), confirmed: None };
    store.record_feed("p", &named).await.unwrap();
    let confirmed = FeedRecord { confirmed: Some(feed_position((7 << 32) + 3)), ..named.clone() };
    store.record_feed("p", &confirmed).await.unwrap();
    drop(store);
    let store = open();
    assert_eq!(store.feed("p").await.unwrap(), Some(confirmed));
    assert_eq!(store.feed("q").await.unwrap(), None, "feeds are per pipeline");
}
