//! `reconcile`: is every stream's destination table exactly its source
//! table? Plans each stream as a sync would (after schema evolution) and
//! compares both sides row by row ([`simplyload_core::reconcile`]).

use crate::App;
use simplyload_config::SyncMode;
use simplyload_core::checkpoint::CheckpointStore;
use simplyload_core::plan::{self, StreamPlan};
use simplyload_core::reconcile::{ReconcileOptions, TableReconcile, reconcile_table};
use simplyload_core::{Destination, Error, ErrorKind, Result, Scanner, StreamName};

/// What a reconcile found.
pub struct Reconciled {
    pub tables: Vec<TableReconcile>,
    /// Streams that could not be compared, with why.
    pub errors: Vec<(String, Error)>,
}

impl Reconciled {
    pub fn clean(&self) -> bool {
        self.errors.is_empty() && self.tables.iter().all(TableReconcile::clean)
    }
}

impl App {
    /// Compares the streams of a pipeline (`streams`: only these; empty: all).
    pub async fn reconcile(&self, pipeline: &str, streams: &[String], opts: ReconcileOptions) -> Result<Reconciled> {
        let p = self.config().pipeline(pipeline)?;
        let source = self.source(&p.source)?;
        let scanner = source.scanner().ok_or_else(|| {
            Error::new(ErrorKind::Unsupported, format!("source `{}` cannot be read back for reconcile", p.source))
        })?;
        let ns = source.default_namespace();
        let wanted: Vec<StreamName> = streams
            .iter()
            .map(|s| {
                StreamName::parse(s).map(|n| n.qualified(ns)).map_err(|m| Error::config(format!("--stream {s}: {m}")))
            })
            .collect::<Result<_>>()?;
        // The table shapes are the sync's, whatever the stream's mode.
        let mut shape = p.clone();
        shape.mode = SyncMode::FullRefresh;
        for s in &mut shape.streams {
            s.mode = None;
        }
        let catalog = plan::discover(source.as_ref(), &plan::selection(&shape, ns)).await?;
        let mut plans = plan::plan_pipeline(pipeline, &shape, &catalog);
        if let Some(store) = self.existing_store()? {
            let states = simplyload_core::checkpoint::CheckpointStore::streams(&store, pipeline).await?;
            let loaded =
                |s: &str| states.iter().find(|x| x.stream == s).map(|x| x.table.clone()).filter(|t| !t.is_empty());
            plan::keep_loaded_tables(&shape, &catalog.database, &mut plans, loaded);
        }
        for want in &wanted {
            if !plans.iter().any(|(label, _)| *label == want.to_string()) {
                return Err(Error::config(format!("--stream {want}: not a stream of pipeline {pipeline}")));
            }
        }
        let destination = self.pipeline_destination(pipeline)?;
        let mut out = Reconciled { tables: Vec::new(), errors: Vec::new() };
        for (label, plan) in plans {
            if !wanted.is_empty() && !wanted.iter().any(|w| w.to_string() == label) {
                continue;
            }
            let compared = match plan {
                Ok(plan) => self.reconcile_stream(pipeline, scanner, destination.as_ref(), plan, opts).await,
                Err(e) => Err(e),
            };
            match compared {
                Ok(r) => out.tables.push(r),
                Err(e) => out.errors.push((label, e)),
            }
        }
        // Ends the destination's session, if it opened one.
        destination.end_sync().await;
        Ok(out)
    }

    async fn reconcile_stream(
        &self,
        pipeline: &str,
        scanner: &dyn Scanner,
        destination: &dyn Destination,
        mut plan: StreamPlan,
        opts: ReconcileOptions,
    ) -> Result<TableReconcile> {
        // The destination's shape after schema evolution (diverted columns).
        if let Some(store) = self.existing_store()?
            && let Some(previous) = store.last_loaded_table(pipeline, &plan.stream()).await?
        {
            plan::evolve(&previous, &mut plan.table, &plan.defaults);
        }
        let started = std::time::Instant::now();
        let soft_delete = plan.config.soft_delete.as_deref();
        let r = reconcile_table(scanner, destination, &plan.table, soft_delete, plan.estimated_rows, opts).await?;
        tracing::info!(stream = %plan.stream(), table = %r.table, clean = r.clean(),
            elapsed_ms = started.elapsed().as_millis() as u64, "reconciled");
        Ok(r)
    }
}
