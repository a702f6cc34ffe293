//! Progress of a sync: a line per stream on a terminal (rows, bytes, rows/s,
//! ETA from the estimated row count), periodic log lines elsewhere.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use simplyload_core::{Progress, StreamReport};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use simplyload_app::format::{bytes, count};

struct Stream {
    bar: Option<ProgressBar>,
    started: Instant,
    estimated: Option<u64>,
    last_log: Instant,
}

/// Shows progress on stderr: bars on a terminal, log lines otherwise.
pub struct SyncProgress {
    multi: Option<MultiProgress>,
    streams: Mutex<HashMap<String, Stream>>,
    log_every: Duration,
}

impl SyncProgress {
    /// `bars`: draw progress lines (only when stderr is a terminal).
    pub fn new(multi: Option<MultiProgress>) -> SyncProgress {
        SyncProgress { multi, streams: Mutex::new(HashMap::new()), log_every: Duration::from_secs(10) }
    }

    fn line(rows: u64, b: u64, elapsed: Duration, estimated: Option<u64>) -> String {
        let secs = elapsed.as_secs_f64().max(0.001);
        let rate = rows as f64 / secs;
        let mut s = match estimated {
            Some(e) if e > 0 => format!("{}/~{} rows", count(rows), count(e)),
            _ => format!("{} rows", count(rows)),
        };
        s.push_str(&format!("  {}  {}/s", bytes(b), count(rate as u64)));
        if let Some(e) = estimated
            && rate > 0.0
            && e > rows
        {
            let eta = Duration::from_secs(((e - rows) as f64 / rate).ceil() as u64);
            s.push_str(&format!("  ETA {}", humantime::format_duration(eta)));
        }
        s
    }
}

impl Progress for SyncProgress {
    fn stream_started(&self, stream: &str, table: &str, estimated_rows: Option<u64>) {
        let bar = self.multi.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new_spinner());
            bar.set_style(ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg}").expect("template"));
            bar.set_prefix(format!("{stream} → {table}"));
            bar.set_message("starting");
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        if bar.is_none() {
            tracing::info!(stream, table, estimated_rows, "stream started");
        }
        let now = Instant::now();
        self.streams
            .lock()
            .expect("progress lock")
            .insert(stream.to_owned(), Stream { bar, started: now, estimated: estimated_rows, last_log: now });
    }

    fn stream_advanced(&self, stream: &str, rows: u64, b: u64) {
        let mut streams = self.streams.lock().expect("progress lock");
        let Some(s) = streams.get_mut(stream) else { return };
        let line = Self::line(rows, b, s.started.elapsed(), s.estimated);
        match &s.bar {
            Some(bar) => bar.set_message(line),
            None if s.last_log.elapsed() >= self.log_every => {
                s.last_log = Instant::now();
                tracing::info!(stream, rows, bytes = b, "{line}");
            }
            None => {}
        }
    }

    fn stream_phase(&self, stream: &str, phase: &str) {
        let streams = self.streams.lock().expect("progress lock");
        match streams.get(stream).and_then(|s| s.bar.as_ref()) {
            Some(bar) => bar.set_message(phase.to_owned()),
            None => tracing::info!(stream, phase, "stream phase"),
        }
    }

    fn stream_finished(&self, report: &StreamReport) {
        let mut streams = self.streams.lock().expect("progress lock");
        if let Some(s) = streams.remove(&report.stream)
            && let Some(bar) = s.bar
        {
            let msg = match &report.error {
                None => format!(
                    "{} rows  {}  in {}",
                    count(report.rows),
                    bytes(report.source_bytes),
                    humantime::format_duration(Duration::from_millis(report.duration_ms))
                ),
                Some(_) => "failed".to_owned(),
            };
            bar.set_style(ProgressStyle::with_template("  {prefix:.bold} {wide_msg}").expect("template"));
            bar.finish_with_message(msg);
        }
    }
}

/// A MultiProgress drawing on stderr when it is a terminal, else `None`.
pub fn terminal_bars() -> Option<MultiProgress> {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        Some(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(12), "12");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_500_000), "1.5 MB");
        let l = SyncProgress::line(500, 1_000_000, Duration::from_secs(1), Some(1000));
        assert_eq!(l, "500/~1,000 rows  1.0 MB  500/s  ETA 1s");
    }
}
