//! Puts the commit and the build date into `simplyload --version`.
//!
//! Both come from git when the source is a git checkout (`unknown` in a
//! source tarball). The date is the day the binary was built, UTC, or the
//! day of `SOURCE_DATE_EPOCH` for reproducible builds. The script runs again
//! only when the checkout moves to another commit.

use std::process::Command;

fn main() {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned()).filter(|s| !s.is_empty())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SIMPLYLOAD_COMMIT={commit}");
    println!("cargo:rustc-env=SIMPLYLOAD_BUILD_DATE={}", build_date());
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    for path in ["HEAD", "packed-refs"] {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(p) = git(&["rev-parse", "--git-path", &head])
    {
        println!("cargo:rerun-if-changed={p}");
    }
}

/// `YYYY-MM-DD`, UTC.
fn build_date() -> String {
    let at = match std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.parse::<u64>().ok()) {
        Some(secs) => std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs),
        None => std::time::SystemTime::now(),
    };
    humantime::format_rfc3339_seconds(at).to_string()[..10].to_owned()
}
