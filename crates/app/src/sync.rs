//! Running syncs: one sync of a pipeline under its lock, and the follow loop.

use crate::App;
use simplyload_core::runner::{CancellationToken, PlannedStream, SyncContext, SyncOptions, dry_run, run_sync};
use simplyload_core::{Progress, Result, SyncReport};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What started a sync (recorded in its report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Someone asked for it (`simplyload sync`, "sync now").
    Manual,
    /// The pipeline's schedule.
    Schedule,
    /// `sync --follow` (or a `cdc` pipeline served continuously).
    Follow,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Schedule => "schedule",
            Trigger::Follow => "follow",
        }
    }
}

/// One sync to run.
#[derive(Clone)]
pub struct SyncRequest {
    pub pipeline: String,
    pub trigger: Trigger,
    /// If the pipeline is syncing elsewhere, wait this long for it.
    pub wait: Duration,
    pub progress: Arc<dyn Progress>,
    /// Cancelled: the sync stops at the next batch boundary (see
    /// [`SyncContext::cancel`]); the next sync goes on exactly.
    pub cancel: CancellationToken,
    /// Only these streams (see [`SyncContext::select`]); empty: all.
    pub select: Vec<String>,
}

impl SyncRequest {
    pub fn new(pipeline: &str, trigger: Trigger, progress: Arc<dyn Progress>) -> SyncRequest {
        SyncRequest {
            pipeline: pipeline.to_owned(),
            trigger,
            wait: Duration::ZERO,
            progress,
            cancel: CancellationToken::new(),
            select: Vec::new(),
        }
    }
}

impl App {
    /// Runs one sync of a pipeline with the configured connectors, holding
    /// the pipeline's lock for the whole sync (so two syncs of one pipeline
    /// never overlap, whichever process runs them). `Err` when the sync
    /// could not start (unknown pipeline, lock held, state unreadable);
    /// otherwise every failure is in the report.
    pub async fn sync(&self, req: &SyncRequest) -> Result<SyncReport> {
        let _lock = self.locks().acquire(&req.pipeline, req.wait).await?;
        let ctx = self.sync_context(req)?;
        let mut report = run_sync(&ctx).await?;
        report.trigger = Some(req.trigger.as_str().to_owned());
        if report.succeeded() {
            // Retention, applied where it is due: files older than it go.
            match self.clean_staging(&req.pipeline, self.staging_retention(), false).await {
                Ok(c) if c.batches > 0 => tracing::info!(pipeline = %req.pipeline, batches = c.batches,
                    bytes = c.bytes, "removed staged files older than the retention"),
                Ok(_) => {}
                Err(e) => report.warnings.push(format!("removing staged files older than the retention: {e}")),
            }
        }
        Ok(report)
    }

    /// What a sync of `req` would do, stream by stream, without running it
    /// (see [`simplyload_core::runner::dry_run`]).
    pub async fn dry_run(&self, req: &SyncRequest) -> Result<Vec<PlannedStream>> {
        let ctx = self.sync_context(req)?;
        let planned = dry_run(&ctx).await;
        ctx.destination.end_sync().await;
        planned
    }

    fn sync_context(&self, req: &SyncRequest) -> Result<SyncContext> {
        let p = self.config().pipeline(&req.pipeline)?;
        Ok(SyncContext {
            pipeline: req.pipeline.clone(),
            config: p.clone(),
            source: self.source(&p.source)?,
            destination: self.pipeline_destination(&req.pipeline)?,
            store: self.store()?,
            staging: self.staging()?,
            progress: req.progress.clone(),
            options: SyncOptions::from_config(p),
            cancel: req.cancel.clone(),
            select: req.select.clone(),
        })
    }

    /// Syncs the pipelines again and again — each sync reads what committed
    /// since the last one (`cdc`: up to `batch_max_rows` changes per load),
    /// then waits out the shortest `batch_max_seconds` — until `cancel`,
    /// which stops the sync under way at a batch boundary. Every outcome
    /// goes to `on_report`. Returns how many syncs failed.
    pub async fn follow(
        &self,
        pipelines: &[String],
        template: &SyncRequest,
        mut on_report: impl FnMut(&str, Result<SyncReport>),
    ) -> u32 {
        let every = self.follow_interval(pipelines);
        let mut failures = 0;
        while !template.cancel.is_cancelled() {
            let started = Instant::now();
            for name in pipelines {
                if template.cancel.is_cancelled() {
                    break;
                }
                let req = SyncRequest { pipeline: name.clone(), trigger: Trigger::Follow, ..template.clone() };
                let outcome = self.sync(&req).await;
                if !outcome.as_ref().is_ok_and(SyncReport::succeeded) {
                    failures += 1;
                }
                on_report(name, outcome);
            }
            let left = every.saturating_sub(started.elapsed());
            tokio::select! {
                _ = tokio::time::sleep(left) => {}
                _ = template.cancel.cancelled() => {}
            }
        }
        failures
    }

    fn follow_interval(&self, pipelines: &[String]) -> Duration {
        let default = Duration::from_secs(simplyload_config::DEFAULT_BATCH_MAX_SECONDS);
        pipelines
            .iter()
            .filter_map(|n| self.config().pipelines.get(n))
            .map(|p| p.batch_max_seconds.unwrap_or(default))
            .min()
            .unwrap_or(default)
    }
}
