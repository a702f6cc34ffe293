//! `simplyload status [PIPELINE]`: prints the status view model
//! ([`simplyload_app::App::status`]).

use crate::progress::{bytes, count};
use simplyload_app::{FeedView, PipelineStatus, StreamRow};
use simplyload_core::Result;
use std::path::Path;

pub async fn run(config: Option<&Path>, pipeline: Option<&str>, json: bool) -> Result<u8> {
    let app = super::app(config)?;
    let names: Vec<String> = pipeline.map(|p| vec![p.to_owned()]).unwrap_or_default();
    let mut out = Vec::new();
    for name in app.select_pipelines(&names)? {
        let status = app.status(&name).await?;
        if json {
            out.push(serde_json::json!({ "pipeline": name, "last_sync": status.last_sync, "streams": status.streams, "feed": status.feed }));
        } else {
            print_status(&status);
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&out).expect("status serializes"));
    }
    Ok(0)
}

fn print_status(s: &PipelineStatus) {
    println!("pipeline {}: {} → {}", s.pipeline, s.source, s.destination);
    match &s.last_sync {
        Some(l) => println!(
            "  last sync {}: {} (started {}){}",
            l.sync_id,
            l.status,
            super::ago(l.started_at_ms),
            l.error.as_ref().map(|e| format!("\n    {e}")).unwrap_or_default()
        ),
        None => println!("  never synced; run `simplyload sync {}`", s.pipeline),
    }
    let rows: Vec<Vec<String>> = s.rows.iter().map(row).collect();
    super::print_table(
        &[
            "  stream",
            "mode",
            "last loaded",
            "last sync read",
            "ins / upd / del",
            "in destination (at last load)",
            "checkpoint",
            "lag",
            "last error",
        ],
        &rows,
    );
    if let Some(feed) = &s.feed {
        print_feed(feed);
    }
}

fn row(r: &StreamRow) -> Vec<String> {
    let Some(st) = &r.state else {
        let none = || "-".to_owned();
        return vec![
            format!("  {}", r.stream),
            r.mode.clone(),
            "never".into(),
            none(),
            none(),
            none(),
            none(),
            none(),
            String::new(),
        ];
    };
    let lag = match (r.lag_seconds, &r.state) {
        (Some(secs), _) => humantime::format_duration(std::time::Duration::from_secs(secs)).to_string(),
        _ => "-".into(),
    };
    vec![
        format!("  {}", r.stream),
        r.mode.clone(),
        st.last_loaded_at_ms.map(super::ago).unwrap_or_else(|| "never".into()),
        count(st.last_rows),
        st.last_changes
            .map(|c| format!("{} / {} / {}", count(c.inserted), count(c.updated), count(c.deleted)))
            .unwrap_or_else(|| "-".into()),
        st.destination_rows.map(count).unwrap_or_else(|| "-".into()),
        r.checkpoint.clone().unwrap_or_else(|| "-".into()),
        lag,
        st.last_error.as_ref().map(|e| e.lines().next().unwrap_or("").to_owned()).unwrap_or_default(),
    ]
}

/// How much the change feed holds on the source (Postgres: WAL behind the slot).
fn print_feed(f: &FeedView) {
    let what = &f.what;
    if let Some(e) = &f.error {
        println!("  {what}: cannot read it: {e}");
        return;
    }
    let (Some(name), Some(_)) = (&f.name, &f.status) else {
        match (&f.name, &f.recorded) {
            // A source that keeps nothing for its readers: the state holds the position.
            (Some(name), Some(at)) => println!("  {what} {name}: {at} (kept in the state; the source holds nothing)"),
            _ => println!("  {what}: not made yet (the first sync makes it)"),
        }
        return;
    };
    let warn = match f.lag_bytes {
        Some(lag) if lag > f.max_lag_bytes => {
            format!(" — WARNING: more than max_lag_bytes ({})", bytes(f.max_lag_bytes))
        }
        _ => String::new(),
    };
    println!(
        "  {what} {name}: {} of WAL held, confirmed at {}{warn}",
        bytes(f.lag_bytes.unwrap_or(0)),
        f.confirmed.as_deref().unwrap_or("-")
    );
    if f.lost {
        println!("  {what} {name}: lost — the next sync makes it again and reads every stream again");
    }
}
