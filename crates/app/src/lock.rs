//! One sync of a pipeline at a time, whoever runs it (the CLI, a server, a
//! second server on the same state): every sync, resync and pipeline change
//! holds the pipeline's lock ([`PipelineLocks`]).
//!
//! [`FileLocks`] is an OS file lock per pipeline, next to the state file.
//! The operating system releases it when the process ends, however it ends
//! (a SIGKILL included), so a pipeline is never left locked; the CLI and a
//! server pointed at the same state share it.

use simplyload_core::{Error, ErrorKind, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Holds a pipeline's lock until dropped.
pub struct PipelineGuard(#[allow(dead_code)] Box<dyn Send + Sync>);

impl std::fmt::Debug for PipelineGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PipelineGuard")
    }
}

impl PipelineGuard {
    pub fn new(held: impl Send + Sync + 'static) -> PipelineGuard {
        PipelineGuard(Box::new(held))
    }
}

/// Where pipeline locks are taken.
///
/// Contract: while a guard of pipeline `p` is alive, `acquire(p, …)`
/// anywhere that shares this lock space waits up to `wait` and then fails
/// with [`ErrorKind::Busy`], naming who holds it. Different pipelines never
/// wait for each other.
#[async_trait::async_trait]
pub trait PipelineLocks: Send + Sync {
    async fn acquire(&self, pipeline: &str, wait: Duration) -> Result<PipelineGuard>;
}

/// OS file locks in `locks/` beside the state file.
#[derive(Debug, Clone)]
pub struct FileLocks {
    state_dir: PathBuf,
}

impl FileLocks {
    pub fn new(state_dir: &Path) -> FileLocks {
        FileLocks { state_dir: state_dir.to_path_buf() }
    }
}

#[async_trait::async_trait]
impl PipelineLocks for FileLocks {
    async fn acquire(&self, pipeline: &str, wait: Duration) -> Result<PipelineGuard> {
        let (dir, name) = (self.state_dir.clone(), pipeline.to_owned());
        let lock = tokio::task::spawn_blocking(move || PipelineLock::acquire(&dir, &name, wait))
            .await
            .map_err(|e| Error::internal(format!("lock task failed: {e}")))??;
        Ok(PipelineGuard::new(lock))
    }
}

/// Held while a pipeline syncs; dropping it releases the lock.
#[derive(Debug)]
pub struct PipelineLock {
    _file: File,
    path: PathBuf,
}

impl PipelineLock {
    /// The lock file of a pipeline, in `locks/` beside the state file.
    pub fn path(state_dir: &Path, pipeline: &str) -> PathBuf {
        let safe: String =
            pipeline.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
        // Different names that sanitise alike still get different files.
        let tag = simplyload_core::row_id::short_hash(pipeline.as_bytes());
        state_dir.join("locks").join(format!("{safe}-{tag}.lock"))
    }

    /// Takes the pipeline's lock, waiting up to `wait` for another process
    /// to release it.
    pub fn acquire(state_dir: &Path, pipeline: &str, wait: Duration) -> Result<PipelineLock> {
        let path = Self::path(state_dir, pipeline);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::from(e).context(format!("cannot create the lock folder {}", dir.display())))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::from(e).context(format!("cannot open the lock file {}", path.display())))?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if started.elapsed() < wait => {
                    std::thread::sleep(Duration::from_millis(200).min(wait));
                }
                Err(TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    let holder = holder.trim();
                    let who = if holder.is_empty() { String::new() } else { format!(" ({holder})") };
                    return Err(Error::new(
                        ErrorKind::Busy,
                        format!("pipeline `{pipeline}` is being synced by another process{who}"),
                    )
                    .with_hint("wait for it to finish, or pass `--wait 10m` to queue behind it"));
                }
                Err(TryLockError::Error(e)) => {
                    return Err(Error::from(e).context(format!("cannot lock {}", path.display())));
                }
            }
        }
        // Who holds it, for the message another process prints.
        let _ = file.set_len(0);
        let _ = file.rewind();
        let since = humantime_now();
        let _ = write!(file, "pid {}, since {since}", std::process::id());
        let _ = file.flush();
        Ok(PipelineLock { _file: file, path })
    }

    pub fn file(&self) -> &Path {
        &self.path
    }
}

fn humantime_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let (y, m, d) = simplyload_core::canon::civil_from_days(days);
    let s = secs % 86_400;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s % 3600 / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_waits_or_is_told_who_holds_it() {
        let dir = tempfile_dir();
        let first = PipelineLock::acquire(&dir, "p/1", Duration::ZERO).unwrap();
        let e = PipelineLock::acquire(&dir, "p/1", Duration::from_millis(300)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Busy);
        assert!(
            e.message()
                .contains(&format!("pipeline `p/1` is being synced by another process (pid {}", std::process::id())),
            "{e}"
        );
        // Another pipeline is independent; a name that sanitises alike too.
        let _other = PipelineLock::acquire(&dir, "p_1", Duration::ZERO).unwrap();
        drop(first);
        PipelineLock::acquire(&dir, "p/1", Duration::ZERO).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("simplyload-lock-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
