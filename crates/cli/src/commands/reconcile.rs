//! `simplyload playground reconcile --pipeline P`: is every stream's
//! destination table exactly its source table? The oracle of the end-to-end
//! tests and benchmarks.

use crate::connectors;
use crate::progress::count;
use simplyload_config::SyncMode;
use simplyload_core::reconcile::{Difference, ReconcileOptions, TableReconcile, reconcile_table};
use simplyload_core::{CheckpointStore, Error, Result, StreamName};
use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The pipeline whose streams to compare
    #[arg(long)]
    pub pipeline: String,
    /// Only these streams (`public.orders`); repeatable [default: all]
    #[arg(long = "stream", value_name = "STREAM")]
    pub streams: Vec<String>,
    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// Source rows compared per key-range chunk (bounds memory)
    #[arg(long, default_value_t = 50_000)]
    pub chunk_rows: u64,
    /// Differing keys listed per kind and table
    #[arg(long, default_value_t = 5)]
    pub samples: usize,
}

pub async fn run(config: Option<&Path>, args: Args) -> Result<u8> {
    let cfg = connectors::load_config(config)?;
    let p = cfg.pipeline(&args.pipeline)?;
    let source = connectors::source(&cfg, &p.source)?;
    let destination = connectors::destination(&cfg, &p.destination)?;
    let catalog = source.discover().await?;
    let store: Option<std::sync::Arc<simplyload_state::SqliteStore>> =
        if cfg.state_path().exists() { Some(connectors::store(&cfg)?) } else { None };
    // The table shapes are the sync's, whatever the stream's mode.
    let mut shape = p.clone();
    shape.mode = SyncMode::FullRefresh;
    for s in &mut shape.streams {
        s.mode = None;
    }
    let wanted: Vec<StreamName> = args
        .streams
        .iter()
        .map(|s| StreamName::parse(s).map_err(|m| Error::config(format!("--stream {s}: {m}"))))
        .collect::<Result<_>>()?;
    let opts = ReconcileOptions { chunk_rows: args.chunk_rows.max(1), samples: args.samples, ..Default::default() };
    let mut results: Vec<TableReconcile> = Vec::new();
    let mut failures: Vec<(String, Error)> = Vec::new();
    let plans = simplyload_core::plan::plan_pipeline(&args.pipeline, &shape, &catalog);
    for want in &wanted {
        if !plans.iter().any(|(label, _)| *label == want.to_string()) {
            return Err(Error::config(format!("--stream {want}: not a stream of pipeline {}", args.pipeline)));
        }
    }
    for (label, plan) in plans {
        if !wanted.is_empty() && !wanted.iter().any(|w| w.to_string() == label) {
            continue;
        }
        let mut plan = match plan {
            Ok(p) => p,
            Err(e) => {
                failures.push((label, e));
                continue;
            }
        };
        // The destination's shape after schema evolution (diverted columns).
        if let Some(store) = &store {
            if let Some(previous) = store.last_loaded_table(&args.pipeline, &label).await? {
                simplyload_core::plan::evolve(&previous, &mut plan.table, &plan.defaults);
            }
        }
        let started = std::time::Instant::now();
        let result = reconcile_table(
            source.as_ref(),
            destination.as_ref(),
            &plan.table,
            plan.config.soft_delete.as_deref(),
            plan.estimated_rows,
            opts,
        )
        .await;
        match result {
            Ok(r) => {
                tracing::info!(stream = %label, table = %r.table, clean = r.clean(), elapsed_ms = started.elapsed().as_millis() as u64, "reconciled");
                results.push(r)
            }
            Err(e) => failures.push((label, e)),
        }
    }
    let clean = failures.is_empty() && results.iter().all(TableReconcile::clean);
    // Ends the destination's session, if it opened one.
    destination.end_sync().await;
    if args.json {
        let out = serde_json::json!({
            "pipeline": args.pipeline,
            "clean": clean,
            "tables": results,
            "errors": failures.iter().map(|(s, e)| serde_json::json!({"stream": s, "error": e.to_string()})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out).expect("reconcile report serializes"));
    } else {
        print_results(&args.pipeline, &p.source, &p.destination, &results, &failures);
    }
    Ok(if clean { 0 } else { crate::EXIT_FAILED })
}

fn print_results(
    pipeline: &str,
    source: &str,
    destination: &str,
    results: &[TableReconcile],
    failures: &[(String, Error)],
) {
    println!("reconcile of pipeline {pipeline} (source {source} → destination {destination})");
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            vec![
                format!("  {}", r.stream),
                r.table.clone(),
                count(r.source_rows),
                count(r.destination_rows),
                count(r.matched),
                count(r.missing),
                count(r.extra),
                count(r.different),
                if r.clean() { "ok".into() } else { "DIFFERENT".into() },
            ]
        })
        .collect();
    super::print_table(
        &["  stream", "table", "source", "destination", "matched", "missing", "extra", "different", "result"],
        &rows,
    );
    for r in results {
        for n in &r.notes {
            println!("  {}: {n}", r.stream);
        }
        for kind in [Difference::Missing, Difference::Extra, Difference::Different] {
            let samples: Vec<String> =
                r.samples
                    .iter()
                    .filter(|s| s.kind == kind)
                    .map(|s| {
                        if s.columns.is_empty() {
                            s.key.clone()
                        } else {
                            format!("{} ({})", s.key, s.columns.join(", "))
                        }
                    })
                    .collect();
            if samples.is_empty() {
                continue;
            }
            let what = match kind {
                Difference::Missing => "missing in the destination",
                Difference::Extra => "extra in the destination",
                Difference::Different => "different",
            };
            println!("  {}: {what}, e.g. {}", r.stream, samples.join("; "));
        }
        tracing::debug!(stream = %r.stream, method = %r.method, "compared");
    }
    for (stream, e) in failures {
        println!("  {stream}: error: {}", e.to_string().replace('\n', "\n    "));
    }
    let differing = results.iter().filter(|r| !r.clean()).count();
    if differing == 0 && failures.is_empty() {
        println!("result: clean — {} table(s) match exactly", results.len());
    } else {
        println!(
            "result: {differing} of {} table(s) differ{}",
            results.len() + failures.len(),
            if failures.is_empty() { String::new() } else { format!(", {} could not be compared", failures.len()) }
        );
    }
}
