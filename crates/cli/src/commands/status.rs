//! `simplyload status [PIPELINE]`.

use crate::connectors;
use crate::progress::count;
use simplyload_core::cursor::CursorValue;
use simplyload_core::{CheckpointStore, Result};
use simplyload_state::SqliteStore;
use std::path::Path;

pub async fn run(config: Option<&Path>, pipeline: Option<&str>, json: bool) -> Result<u8> {
    let cfg = connectors::load_config(config)?;
    let names: Vec<String> = pipeline.map(|p| vec![p.to_owned()]).unwrap_or_default();
    let pipelines = super::select_pipelines(&cfg, &names)?;
    let store = SqliteStore::open_existing(&cfg.state_path())?;
    let mut out = Vec::new();
    for name in &pipelines {
        let p = cfg.pipeline(name)?;
        let (streams, syncs) = match &store {
            Some(s) => (s.streams(name).await?, s.syncs(name, 1).await?),
            None => (Vec::new(), Vec::new()),
        };
        if json {
            // The row ids an incremental checkpoint keeps are internal.
            let mut streams = streams.clone();
            for st in &mut streams {
                if let Some(cp) = st.checkpoint.as_mut() {
                    cp.position = simplyload_core::sync::display_position(cp.position.as_ref());
                }
            }
            out.push(serde_json::json!({ "pipeline": name, "last_sync": syncs.first(), "streams": streams }));
            continue;
        }
        println!("pipeline {name}: {} → {}", p.source, p.destination);
        match syncs.first() {
            Some(s) => println!(
                "  last sync {}: {} (started {}){}",
                s.sync_id,
                s.status,
                super::ago(s.started_at_ms),
                s.error.as_ref().map(|e| format!("\n    {e}")).unwrap_or_default()
            ),
            None => println!("  never synced; run `simplyload sync {name}`"),
        }
        // Configured streams; a pattern shows the tables it has synced (or itself, before the first sync).
        let mut listed: Vec<(String, &simplyload_config::StreamConfig)> = Vec::new();
        for (i, sc) in p.streams.iter().enumerate() {
            if sc.is_pattern() {
                let one = simplyload_config::PipelineConfig { streams: vec![sc.clone()], ..p.clone() };
                let matched: Vec<String> = streams
                    .iter()
                    .filter(|s| {
                        simplyload_core::StreamName::parse(&s.stream)
                            .is_ok_and(|n| simplyload_core::plan::selects(&one, &n))
                    })
                    .map(|s| s.stream.clone())
                    .filter(|s| !listed.iter().any(|(l, _)| l == s))
                    .collect();
                if matched.is_empty() {
                    listed.push((sc.name.clone(), sc));
                }
                listed.extend(matched.into_iter().map(|m| (m, sc)));
            } else {
                let label =
                    simplyload_core::plan::stream_name(name, i, sc).map(|n| n.to_string()).unwrap_or(sc.name.clone());
                listed.retain(|(l, _)| *l != label);
                listed.push((label, sc));
            }
        }
        let rows: Vec<Vec<String>> = listed
            .into_iter()
            .map(|(label, sc)| {
                let st = streams.iter().find(|s| s.stream == label);
                let mode = sc.mode.unwrap_or(p.mode).to_string();
                match st {
                    Some(st) => {
                        let cursor = st
                            .checkpoint
                            .as_ref()
                            .and_then(|c| c.position.as_ref())
                            .and_then(|p| p.get("cursor").cloned())
                            .and_then(|c| serde_json::from_value::<CursorValue>(c).ok());
                        // CDC: the LSN loaded; the lag is the time since that load.
                        let lsn = st
                            .checkpoint
                            .as_ref()
                            .and_then(|c| c.position.as_ref())
                            .filter(|p| p.get("mode").and_then(|m| m.as_str()) == Some("cdc"))
                            .and_then(|p| p.get("lsn").and_then(|l| l.as_str()).map(str::to_owned));
                        let lag = match &cursor {
                            None if lsn.is_some() => st.last_loaded_at_ms.map(super::ago).unwrap_or_else(|| "-".into()),
                            Some(CursorValue::Micros { value }) => {
                                let now = std::time::SystemTime::now()
                                    .duration_since(std::time::UNIX_EPOCH)
                                    .map(|d| d.as_micros() as i64)
                                    .unwrap_or(0);
                                humantime::format_duration(std::time::Duration::from_secs(
                                    ((now - value).max(0) / 1_000_000) as u64,
                                ))
                                .to_string()
                            }
                            _ => "-".into(),
                        };
                        vec![
                            format!("  {label}"),
                            mode,
                            st.last_loaded_at_ms.map(super::ago).unwrap_or_else(|| "never".into()),
                            count(st.last_rows),
                            st.last_changes
                                .map(|c| format!("{} / {} / {}", count(c.inserted), count(c.updated), count(c.deleted)))
                                .unwrap_or_else(|| "-".into()),
                            st.destination_rows.map(count).unwrap_or_else(|| "-".into()),
                            match (&cursor, &st.checkpoint, &lsn) {
                                (Some(c), _, _) => c.to_string(),
                                (None, _, Some(l)) => format!("LSN {l}"),
                                (None, Some(c), None) => format!("batch {}", c.batch_id),
                                (None, None, None) => "-".into(),
                            },
                            lag,
                            st.last_error
                                .as_ref()
                                .map(|e| e.lines().next().unwrap_or("").to_owned())
                                .unwrap_or_default(),
                        ]
                    }
                    None => vec![
                        format!("  {label}"),
                        mode,
                        "never".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        String::new(),
                    ],
                }
            })
            .collect();
        super::print_table(
            &[
                "  stream",
                "mode",
                "last loaded",
                "rows read",
                "ins / upd / del",
                "in destination",
                "checkpoint",
                "lag",
                "last error",
            ],
            &rows,
        );
        // CDC: how much WAL the replication slot holds for this pipeline.
        let cdc = p.streams.iter().any(|s| s.mode.unwrap_or(p.mode) == simplyload_config::SyncMode::Cdc);
        if cdc && let Ok(source) = crate::connectors::source(&cfg, &p.source) {
            match source.cdc_slot(name).await {
                Ok(Some(slot)) => {
                    let max = p.max_lag_bytes.unwrap_or(simplyload_config::DEFAULT_MAX_LAG_BYTES);
                    println!(
                        "  replication slot {}: {} of WAL held, confirmed at {}{}",
                        slot.name,
                        crate::progress::bytes(slot.lag_bytes),
                        slot.confirmed,
                        if slot.lag_bytes > max {
                            format!(" — WARNING: more than max_lag_bytes ({})", crate::progress::bytes(max))
                        } else {
                            String::new()
                        }
                    );
                    if let Some(status) = slot.status.filter(|s| s == "lost") {
                        println!(
                            "  replication slot {}: {status} — the next sync makes it again and reads every stream again",
                            slot.name
                        );
                    }
                }
                Ok(None) => println!("  replication slot: not made yet (the first sync makes it)"),
                Err(e) => {
                    println!("  replication slot: cannot read it: {}", e.to_string().lines().next().unwrap_or(""))
                }
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&out).expect("status serializes"));
    }
    Ok(0)
}
