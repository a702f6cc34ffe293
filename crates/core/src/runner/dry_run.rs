//! `sync --dry-run`: what a sync would do, stream by stream — its mode and
//! table, where it would read from, the schema changes it would apply and
//! what it would read again — without reading, staging or loading anything
//! and without touching the state, the source's change feed or the
//! destination's data. It discovers the source, reads the state and asks
//! the destination what it holds, as a sync's first steps do.

use super::context::{Run, SyncContext};
use super::lost::find_lost;
use super::table::evolve_plan;
use crate::error::Result;
use crate::plan::{self, SchemaChange, StreamPlan};
use crate::position::Position;
use serde::Serialize;
use simplyload_config::SyncMode;
use std::collections::BTreeMap;

/// One stream as a sync would take it.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStream {
    pub stream: String,
    pub mode: String,
    pub table: String,
    /// What the sync would do, in words (`read rows with updated_at ≥ …`).
    pub action: String,
    /// Schema changes it would apply to the table.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schema_changes: Vec<String>,
    /// Batches left by an interrupted sync that it would settle first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unfinished_batches: Vec<u64>,
    /// Why the sync would refuse the stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Plans a sync of `ctx`'s pipeline without running it.
pub async fn dry_run(ctx: &SyncContext) -> Result<Vec<PlannedStream>> {
    let pipeline_id = ctx.store.pipeline_id(&ctx.pipeline).await?;
    let loads = tokio::sync::Mutex::new(());
    let run = Run { ctx, pipeline_id, sync_id: 0, loads: &loads };
    let source = ctx.source.as_ref();
    let catalog = plan::discover(source, &plan::selection(&ctx.config, source.default_namespace())).await?;
    let planned = super::select::plan_streams(run, &catalog).await?;
    let lost = find_lost(run, &planned).await?;
    let mut unfinished: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for b in ctx.store.unfinished_batches(&ctx.pipeline).await? {
        unfinished.entry(b.stream).or_default().push(b.batch_id);
    }
    let mut out = Vec::new();
    for (label, planned) in planned {
        let mut p = PlannedStream {
            unfinished_batches: unfinished.remove(&label).unwrap_or_default(),
            stream: label,
            mode: String::new(),
            table: String::new(),
            action: String::new(),
            schema_changes: Vec::new(),
            error: None,
        };
        match planned {
            Ok(plan) => describe(run, plan, lost.get(&p.stream), &mut p).await?,
            Err(e) => p.error = Some(e.to_string()),
        }
        out.push(p);
    }
    Ok(out)
}

async fn describe(run: Run<'_>, mut plan: StreamPlan, lost: Option<&String>, p: &mut PlannedStream) -> Result<()> {
    let (changes, _) = evolve_plan(run, &mut plan).await?;
    p.mode = plan.mode.to_string();
    p.table = plan.table.name.clone();
    p.schema_changes = changes.iter().map(|c| c.to_string()).collect();
    let position = super::table::checkpoint_of(run, &p.stream).await?;
    p.action = match (lost, changes.iter().any(SchemaChange::needs_reread)) {
        (Some(why), _) => why.clone(),
        (None, true) => "read again in full, merged: a schema change gave existing rows new values".into(),
        (None, false) => action(run, &plan, position.as_ref()),
    };
    Ok(())
}

/// Where a stream would be read from, given its checkpoint.
fn action(run: Run<'_>, plan: &StreamPlan, position: Option<&Position>) -> String {
    let describe_feed = |f: &crate::feed::FeedPosition| match run.ctx.source.change_feed() {
        Some(feed) => feed.describe(f),
        None => f.token.clone(),
    };
    match (plan.mode, position) {
        (SyncMode::FullRefresh, _) => "read in full; the table's rows are replaced".into(),
        (SyncMode::Incremental, Some(Position::Incremental(c))) => match (&c.cursor, &plan.cursor) {
            (Some(v), Some(cp)) => {
                format!(
                    "read rows with {} ≥ {} (the checkpoint {v} minus the lookback)",
                    c.column,
                    v.minus(&cp.lookback)
                )
            }
            _ => format!("read every row (no {} value was loaded yet)", c.column),
        },
        (SyncMode::Cdc, Some(Position::Cdc(c))) => format!("read the changes since {}", describe_feed(&c.feed)),
        (SyncMode::Incremental, Some(Position::IncrementalSnapshot(_)))
        | (SyncMode::Cdc, Some(Position::CdcSnapshot(_))) => "go on with the first read, stopped part way".into(),
        (SyncMode::Cdc, _) => "first read: a snapshot at the change feed's start, then its changes".into(),
        (SyncMode::Incremental, _) => "first read: every row".into(),
    }
}
