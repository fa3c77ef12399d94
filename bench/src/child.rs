//! Running one benchmark configuration in a fresh child process (this same
//! executable, re-run with environment variables naming the configuration),
//! so that peak RSS, page faults and CPU time are per run.

use std::process::{Command, Stdio};

use serde::de::DeserializeOwned;

/// Re-runs the current executable with `env` set, and parses the first
/// line of its stdout that starts with `{` as JSON. `Err` describes a
/// crash, a failed verification (the child panics) or unreadable output.
///
/// `/proc/self/exe` is used where it exists: it still names this process's
/// executable when a concurrent `cargo build` has replaced the file in the
/// shared target directory (the path from `current_exe` would then be gone).
pub fn run_json_child<T: DeserializeOwned>(env: &[(&str, String)]) -> Result<T, String> {
    let exe = if std::path::Path::new("/proc/self/exe").exists() {
        std::path::PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe().map_err(|e| format!("current executable: {e}"))?
    };
    let mut cmd = Command::new(exe);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("spawning failed: {e}"))?;
    if !out.status.success() {
        return Err(format!("child exited with {}", out.status));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| "no JSON line on stdout".to_string())?;
    serde_json::from_str(line).map_err(|e| format!("bad JSON ({e}): {line}"))
}
