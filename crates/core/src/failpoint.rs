//! Crash injection for tests: when `SIMPLYLOAD_FAILPOINT` names a point
//! (comma-separated), the process aborts there — no destructors, no cleanup
//! — exactly like `kill -9` at that instant.
//!
//! Points: `during_read` (an Arrow batch was written to staging, the read
//! goes on), `after_staged` (manifest recorded, nothing loaded),
//! `during_load` (in the destination transaction, before its commit),
//! `after_load` (destination committed, checkpoint not yet moved), and for a
//! read cut into parts `after_part_staged` (a part recorded) and
//! `after_part_loaded` (a part loaded and checkpointed), the read not over.

/// Aborts the process if `SIMPLYLOAD_FAILPOINT` names `name`.
pub fn failpoint(name: &str) {
    if armed(name) {
        eprintln!("failpoint {name}: aborting the process");
        std::process::abort();
    }
}

/// Whether `SIMPLYLOAD_FAILPOINT` names `name`: code whose failpoint
/// depends on timing (a part loaded *while* the read goes on) waits for
/// that moment instead of racing it, so the crash happens where it says.
pub fn armed(name: &str) -> bool {
    std::env::var("SIMPLYLOAD_FAILPOINT").is_ok_and(|points| points.split(',').any(|p| p.trim() == name))
}
