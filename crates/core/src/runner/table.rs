//! `full_refresh` and `incremental` streams: each read in full or from its
//! cursor, staged and loaded, one stream after the other.
//!
//! Before reading, the planned table is brought in line with what the
//! destination holds (schema evolution, [`crate::plan::evolve`]); a change
//! that gave existing rows values without touching their cursor (a column
//! added with a default, a type diverted to a new column) reads the stream
//! again in full, merged, so columns no longer filled keep their data.

use super::context::Run;
use super::incremental::{Overlap, checkpoint_cursor, checkpoint_overlap};
use super::resume::ResumableSnapshot;
use super::snapshot::{ReadPlan, read_and_load};
use crate::cursor::CursorValue;
use crate::error::Result;
use crate::plan::{self, CursorPlan, SchemaChange, StreamPlan};
use crate::position::{FirstRead, Position};
use crate::report::Unrepresentable;
use crate::source::IncrementalRead;
use simplyload_config::SyncMode;

/// What one stream did in a sync.
pub(crate) struct StreamDone {
    pub batch_id: u64,
    pub rows: u64,
    pub source_bytes: u64,
    pub staged_bytes: u64,
    pub unrepresentable: Vec<Unrepresentable>,
    /// Where the stream now stands.
    pub position: Option<Position>,
    pub schema_changes: Vec<String>,
}

/// The checkpoint position of `stream`, if it has one.
pub(crate) async fn checkpoint_of(run: Run<'_>, stream: &str) -> Result<Option<Position>> {
    let states = run.ctx.store.streams(run.pipeline()).await?;
    Ok(states.into_iter().find(|s| s.stream == stream).and_then(|s| s.checkpoint).and_then(|c| c.position))
}

/// Evolves a plan's table against what was loaded last; returns the changes
/// and whether anything was loaded before.
pub(crate) async fn evolve_plan(run: Run<'_>, plan: &mut StreamPlan) -> Result<(Vec<SchemaChange>, bool)> {
    let stream = plan.stream();
    let Some(previous) = run.ctx.store.last_loaded_table(run.pipeline(), &stream).await? else {
        return Ok((Vec::new(), false));
    };
    let changes = plan::evolve(&previous, &mut plan.table, &plan.defaults);
    for c in &changes {
        tracing::info!(pipeline = %run.pipeline(), stream = %stream, change = %c, "schema change");
    }
    Ok((changes, true))
}

/// Syncs one `full_refresh` or `incremental` stream.
pub(crate) async fn run_table_stream(run: Run<'_>, plan: &StreamPlan) -> Result<StreamDone> {
    let stream = plan.stream();
    let mut plan = plan.clone();
    let (changes, loaded_before) = evolve_plan(run, &mut plan).await?;
    let reread = changes.iter().any(SchemaChange::needs_reread);
    let setup = match &plan.cursor {
        Some(c) => incremental_setup(run, &plan, c, reread, changes.is_empty()).await?,
        None => IncrementalSetup::default(),
    };
    let read = ReadPlan {
        stream: &stream,
        plan: &plan,
        incremental: setup.read,
        merge_full_read: reread,
        overlap: setup.overlap,
        // A full refresh replaces a loaded table's rows in one transaction
        // (DESIGN.md §4), so only its first load, into a table that holds
        // nothing of this stream yet, is cut into parts; merges always may be.
        split: plan.mode != SyncMode::FullRefresh || !loaded_before,
        resumable: setup.resumable,
        feed_snapshot: None,
        end_position: None,
        complete: false,
    };
    let done = read_and_load(run, read).await?;
    tracing::info!(pipeline = %run.pipeline(), stream = %stream, table = %plan.table.name,
        batch_id = done.manifest.batch_id, rows = done.loaded.rows, destination_rows = done.loaded.rows_after,
        "stream loaded");
    Ok(StreamDone {
        batch_id: done.manifest.batch_id,
        rows: done.loaded.rows,
        source_bytes: done.stats.source_bytes,
        staged_bytes: done.loaded.staged_bytes,
        unrepresentable: done.stats.unrepresentable,
        position: done.manifest.end_position,
        schema_changes: changes.iter().map(|c| c.to_string()).collect(),
    })
}

/// How an incremental stream is read this time.
#[derive(Default)]
struct IncrementalSetup {
    read: Option<(IncrementalRead, Option<CursorValue>)>,
    overlap: Option<Overlap>,
    resumable: Option<ResumableSnapshot>,
}

async fn incremental_setup(
    run: Run<'_>,
    plan: &StreamPlan,
    cursor: &CursorPlan,
    reread: bool,
    same_shape: bool,
) -> Result<IncrementalSetup> {
    let column = &plan.table.columns[cursor.index];
    let name = column.source_name.as_str();
    let position = checkpoint_of(run, &plan.stream()).await?;
    let previous = checkpoint_cursor(position.as_ref(), name);
    // The first read (no cursor yet) of a table with a key goes on after a
    // crash from the parts it loaded, unless the table's shape changed meanwhile.
    let resumable = (previous.is_none() && plan.table.has_key()).then(|| {
        ResumableSnapshot::from_checkpoint(
            position.as_ref(),
            |p| same_shape && matches!(p, Position::IncrementalSnapshot(f) if f.column == name),
            Position::IncrementalSnapshot(FirstRead { column: name.to_owned(), source: None }),
        )
    });
    let overlap = Overlap {
        lookback: Some(cursor.lookback),
        // After a re-read every row is staged again.
        loaded: if reread { Default::default() } else { checkpoint_overlap(position.as_ref(), name) },
    };
    let read = IncrementalRead {
        column: name.to_owned(),
        sql_type: column.sql_type,
        // A change that gave existing rows new values without touching their
        // cursor: read everything again (merged, so columns no longer filled
        // keep their data).
        from: if reread { None } else { previous.as_ref().map(|p| p.minus(&cursor.lookback)) },
    };
    Ok(IncrementalSetup { read: Some((read, previous)), overlap: Some(overlap), resumable })
}
