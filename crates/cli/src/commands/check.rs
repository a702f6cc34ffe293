//! `simplyload check [PIPELINE]`.

use crate::connectors;
use simplyload_core::{CheckReport, Result};
use std::path::Path;

pub async fn run(config: Option<&Path>, pipeline: Option<&str>) -> Result<u8> {
    let cfg = connectors::load_config(config)?;
    let names: Vec<String> = pipeline.map(|p| vec![p.to_owned()]).unwrap_or_default();
    let pipelines = super::select_pipelines(&cfg, &names)?;
    let mut ok = true;
    for name in pipelines {
        let p = cfg.pipeline(&name)?;
        println!("pipeline {name}: {} → {}", p.source, p.destination);
        let source = connectors::source(&cfg, &p.source)?;
        let mut streams = Vec::new();
        for (i, s) in p.streams.iter().enumerate().filter(|(_, s)| !s.is_pattern()) {
            streams.push(simplyload_core::plan::stream_name(&name, i, s)?);
        }
        if p.streams.iter().any(|s| s.is_pattern()) {
            // Patterns are checked for the tables they match now.
            if let Ok(catalog) = source.discover().await {
                for (_, s) in simplyload_core::plan::expand_streams(&name, p, &catalog) {
                    if let Ok(n) = simplyload_core::StreamName::parse(&s.name) {
                        if !streams.contains(&n) {
                            streams.push(n);
                        }
                    }
                }
            }
        }
        let report = source.check(&streams).await?;
        ok &= print_report(&format!("source {}", p.source), &report);
        let cdc: Vec<_> = p
            .streams
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.is_pattern() && s.mode.unwrap_or(p.mode) == simplyload_config::SyncMode::Cdc)
            .filter_map(|(i, s)| simplyload_core::plan::stream_name(&name, i, s).ok())
            .collect();
        if !cdc.is_empty() {
            let report = source.check_cdc(&name, &cdc).await?;
            ok &= print_report(&format!("source {} (change data capture)", p.source), &report);
        }
        let dest = connectors::destination(&cfg, &p.destination)?;
        let report = dest.check().await?;
        dest.end_sync().await;
        ok &= print_report(&format!("destination {}", p.destination), &report);
    }
    if ok {
        println!("\nall checks passed");
        Ok(0)
    } else {
        println!("\nsome checks failed; run the SQL above as an administrator, then `simplyload check` again");
        Ok(crate::EXIT_FAILED)
    }
}

fn print_report(title: &str, report: &CheckReport) -> bool {
    println!("  {title}");
    for item in &report.items {
        let mark = if item.ok { "ok  " } else { "FAIL" };
        println!("    [{mark}] {}: {}", item.what, item.detail);
        if let Some(sql) = &item.fix_sql {
            println!("           fix (run as an administrator):");
            for line in sql.lines() {
                println!("             {line}");
            }
        }
    }
    report.ok()
}
