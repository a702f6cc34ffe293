//! The JSON that release 0.1 wrote, brought to today's shapes by schema
//! migration 3.
//!
//! Release 0.1 had one change feed, Postgres logical replication, and kept
//! its position as a WAL position under `lsn`: checkpoint positions
//! `{"mode": "cdc", "lsn": "16/B374D848"}` and
//! `{"mode": "cdc_snapshot", "lsn": …, "source": …}`, in the streams table
//! and in batch manifests. Today a position names the feed's position
//! opaquely, `{"feed": {"version", "token"}}`: the token is the WAL
//! position as written, and the version is the one every row read at it
//! carries (the WAL position × 2³², DESIGN.md §3) — exactly what 0.1
//! computed from `lsn`. Cursor positions did not change.

use serde_json::Value;

/// Rewrites a 0.1 change-feed position in place; `true` if it was one.
pub fn upgrade_position(position: &mut Value) -> bool {
    let Some(obj) = position.as_object_mut() else { return false };
    let cdc = matches!(obj.get("mode").and_then(Value::as_str), Some("cdc" | "cdc_snapshot"));
    if !cdc || obj.contains_key("feed") {
        return false;
    }
    let Some(Value::String(lsn)) = obj.remove("lsn") else { return false };
    let Some(wal) = parse_wal_position(&lsn) else {
        obj.insert("lsn".into(), Value::String(lsn));
        return false;
    };
    let version = (wal as i128) << 32;
    obj.insert("feed".into(), serde_json::json!({"version": version.to_string(), "token": lsn}));
    true
}

/// Rewrites the positions of a 0.1 batch manifest in place; `true` if any changed.
pub fn upgrade_manifest(manifest: &mut Value) -> bool {
    let mut changed = false;
    for key in ["start_position", "end_position"] {
        if let Some(p) = manifest.get_mut(key) {
            changed |= upgrade_position(p);
        }
    }
    changed
}

/// `16/B374D848` as a number; `None` if it is not one.
fn parse_wal_position(s: &str) -> Option<u64> {
    let (hi, lo) = s.trim().split_once('/')?;
    let part = |p: &str| (!p.is_empty() && p.len() <= 8).then(|| u64::from_str_radix(p, 16).ok()).flatten();
    Some((part(hi)? << 32) | part(lo)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cdc_positions_name_the_feed() {
        let mut p = json!({"mode": "cdc", "lsn": "16/B374D848"});
        assert!(upgrade_position(&mut p));
        let version = (0x16_B374_D848_i128 << 32).to_string();
        assert_eq!(p, json!({"mode": "cdc", "feed": {"version": version, "token": "16/B374D848"}}));
        assert!(!upgrade_position(&mut p), "already upgraded");

        let mut s = json!({"mode": "cdc_snapshot", "lsn": "0/16B3748", "source": {"next": 3}});
        assert!(upgrade_position(&mut s));
        assert_eq!(s["source"], json!({"next": 3}));
        assert_eq!(s["feed"]["token"], "0/16B3748");

        let mut inc = json!({"mode": "incremental", "column": "u", "cursor": null, "null_cursor_rows": 0});
        let before = inc.clone();
        assert!(!upgrade_position(&mut inc));
        assert_eq!(inc, before);
        let mut bad = json!({"mode": "cdc", "lsn": "nonsense"});
        assert!(!upgrade_position(&mut bad));
        assert_eq!(bad["lsn"], "nonsense", "left for the reader to report");

        let mut m =
            json!({"stream": "public.t", "start_position": null, "end_position": {"mode": "cdc", "lsn": "1/0"}});
        assert!(upgrade_manifest(&mut m));
        assert_eq!(m["end_position"]["feed"]["version"], (1i128 << 64).to_string());
    }
}
