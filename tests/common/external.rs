//! Other languages' drivers, installed once under cargo's target directory and run as
//! scripts against weir: what `tests/drivers.rs` (Python) and `tests/node_drivers.rs`
//! (Node.js) share.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Output};
use std::time::Duration;

use tokio::process::Command;

/// `pool.query_wait_timeout` for driver tests: a server that weir fails to give back then
/// shows as SQLSTATE 08001 soon, rather than after the default 30 s.
pub const SHORT_WAIT: &str = "query_wait_timeout = \"10s\"";

/// The directory `{kind}-{pins}` under the target directory, filled by `install` unless an
/// earlier run did. Test binaries may run at the same time, so `install` fills a directory
/// of this process, which is then renamed into place: whoever renames first wins, and the
/// other uses the winner's.
pub fn install_once(
    kind: &str,
    pins: &[&str],
    install: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<PathBuf, String> {
    let pins: String = pins
        .join("_")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.join(format!("{kind}-{pins}"));
    if dir.is_dir() {
        return Ok(dir);
    }
    let partial = tmp.join(format!("{kind}-partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    if let Err(e) = install(&partial) {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(e);
    }
    if let Err(e) = std::fs::rename(&partial, &dir) {
        let _ = std::fs::remove_dir_all(&partial);
        if !dir.is_dir() {
            return Err(format!("cannot rename {partial:?} to {dir:?}: {e}"));
        }
    }
    Ok(dir)
}

/// Runs an installer command; on failure, says what ran, why it may have failed (`hint`)
/// and everything it printed.
pub fn run_installer(cmd: &mut StdCommand, hint: &str) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{shown} failed ({}); {hint}:\n{}",
        out.status,
        printed(&out)
    ))
}

/// Installs the pinned `pins` for the interpreter `python` into `dir` with `pip install
/// --target` (meant as the `install` of `install_once`); on failure, says why with `hint`.
pub fn pip_install_target(
    python: impl AsRef<OsStr>,
    dir: &Path,
    pins: &[&str],
    hint: &str,
) -> Result<(), String> {
    run_installer(
        StdCommand::new(python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(["--no-input", "--target"])
            .arg(dir)
            .args(pins),
        hint,
    )
}

/// Runs a driver script (already set up in `cmd`) within `limit`; panics showing
/// everything it printed unless it exits 0, and echoes its output otherwise.
pub async fn run_script_checked(mut cmd: Command, what: &str, limit: Duration) {
    cmd.kill_on_drop(true);
    let out = tokio::time::timeout(limit, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{what} ran longer than {limit:?}"))
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        printed(&out)
    );
    println!("{}", String::from_utf8_lossy(&out.stdout));
}

/// A process's stdout and stderr, labelled.
fn printed(out: &Output) -> String {
    format!(
        "--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
