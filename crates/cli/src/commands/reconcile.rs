//! `simplyload playground reconcile --pipeline P`: is every stream's
//! destination table exactly its source table? The oracle of the end-to-end
//! tests and benchmarks.

use crate::progress::count;
use simplyload_core::reconcile::{Difference, ReconcileOptions, TableReconcile};
use simplyload_core::{Error, Result};
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
    let app = super::app(config)?;
    let p = app.config().pipeline(&args.pipeline)?;
    let opts = ReconcileOptions { chunk_rows: args.chunk_rows.max(1), samples: args.samples, ..Default::default() };
    let out = app.reconcile(&args.pipeline, &args.streams, opts).await?;
    let clean = out.clean();
    if args.json {
        let json = serde_json::json!({
            "pipeline": args.pipeline,
            "clean": clean,
            "tables": out.tables,
            "errors": out.errors.iter().map(|(s, e)| serde_json::json!({"stream": s, "error": e.to_string()})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&json).expect("reconcile report serializes"));
    } else {
        print_results(&args.pipeline, &p.source, &p.destination, &out.tables, &out.errors);
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
