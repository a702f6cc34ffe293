//! `simplyload check [PIPELINE]`: prints [`simplyload_app::App::check`].

use simplyload_core::{CheckReport, Result};
use std::path::Path;

pub async fn run(config: Option<&Path>, pipeline: Option<&str>, select: &[String]) -> Result<u8> {
    let app = super::app(config)?;
    let names: Vec<String> = pipeline.map(|p| vec![p.to_owned()]).unwrap_or_default();
    let (mut ok, mut sql) = (true, false);
    for name in app.select_pipelines(&names)? {
        let check = app.check_streams(&name, select).await?;
        println!("pipeline {name}: {} → {}", check.source, check.destination);
        for section in &check.sections {
            print_report(&section.title, &section.report);
        }
        ok &= check.ok();
        sql |= check.has_fix_sql();
    }
    for f in app.idle_feeds().await? {
        println!("\nwarning: {}", f.message());
    }
    if ok {
        println!("\nall checks passed");
        Ok(0)
    } else {
        match sql {
            true => {
                println!("\nsome checks failed; run the SQL above as an administrator, then `simplyload check` again")
            }
            false => println!("\nsome checks failed; fix what is named above, then `simplyload check` again"),
        }
        Ok(crate::EXIT_FAILED)
    }
}

fn print_report(title: &str, report: &CheckReport) {
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
}
