pub mod bench;
pub mod check;
pub mod day2;
pub mod discover;
pub mod pipeline;
pub mod playground;
pub mod quickstart;
pub mod reconcile;
pub mod setup_sql;
pub mod status;
pub mod sync;

use simplyload_app::App;
use simplyload_core::Result;
use std::path::Path;

/// The application over the config found at `config` (or `./simplyload.yaml`).
pub fn app(config: Option<&Path>) -> Result<App> {
    App::load(config)
}

/// Prints rows as an aligned text table.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

/// "3 minutes ago" for a unix-millisecond time.
pub fn ago(ms: i64) -> String {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let secs = ((now - ms).max(0) / 1000) as u64;
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    format!(
        "{} ({} ago)",
        humantime::format_rfc3339_seconds(t),
        humantime::format_duration(std::time::Duration::from_secs(secs))
    )
}
