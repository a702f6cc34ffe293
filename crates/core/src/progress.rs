//! Progress of long work, reported by the runner to whoever shows it (a
//! terminal progress line, periodic log lines, the server's metrics).

use crate::report::StreamReport;

pub trait Progress: Send + Sync {
    fn stream_started(&self, stream: &str, table: &str, estimated_rows: Option<u64>);
    /// Cumulative rows and source bytes read so far.
    fn stream_advanced(&self, stream: &str, rows: u64, bytes: u64);
    /// A phase change (`loading`, `recovering`).
    fn stream_phase(&self, stream: &str, phase: &str);
    fn stream_finished(&self, report: &StreamReport);
}

/// Shows nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn stream_started(&self, _: &str, _: &str, _: Option<u64>) {}
    fn stream_advanced(&self, _: &str, _: u64, _: u64) {}
    fn stream_phase(&self, _: &str, _: &str) {}
    fn stream_finished(&self, _: &StreamReport) {}
}
