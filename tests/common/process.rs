//! The `weir` binary as a separate process: for the command line, signals, and measuring
//! weir's own memory apart from the test's.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// The `weir` binary cargo built for these tests.
pub fn weir_bin() -> &'static str {
    env!("CARGO_BIN_EXE_weir")
}

/// A `weir` command with no `WEIR_*` configuration inherited from the environment (so the
/// caller's shell cannot change a test), colours off and info logs on stderr.
pub fn weir_command() -> Command {
    let mut cmd = Command::new(weir_bin());
    for (name, _) in std::env::vars_os() {
        if name
            .to_string_lossy()
            .to_ascii_uppercase()
            .starts_with("WEIR_")
        {
            cmd.env_remove(name);
        }
    }
    cmd.env("NO_COLOR", "1").env("WEIR_LOG", "info");
    cmd.stdin(Stdio::null());
    cmd
}

/// Removes ANSI colour sequences, in case a log line carries them anyway.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A running `weir --config FILE`. Killed (SIGKILL) on drop if still running.
pub struct WeirProcess {
    /// The process.
    pub child: Child,
    /// The port it logged as its listen address.
    pub port: u16,
    /// Everything it wrote to stderr so far.
    pub stderr: Arc<Mutex<String>>,
    /// Holds the configuration file.
    _dir: tempfile::TempDir,
}

impl WeirProcess {
    /// Writes `config` to a file and runs `weir --config FILE` with `env` added; returns once
    /// weir logged that it accepts clients (within 20 s).
    pub fn start(config: &str, env: &[(&str, &str)]) -> WeirProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("weir.toml");
        std::fs::write(&path, config).expect("write config");
        let mut cmd = weir_command();
        cmd.arg("--config").arg(&path);
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn weir");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let pipe = child.stderr.take().expect("stderr pipe");
        let log = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let line = strip_ansi(&line);
                if line.contains("accepting clients") {
                    if let Some(port) = logged_port(&line) {
                        let _ = tx.send(port);
                    }
                }
                let mut log = log
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                log.push_str(&line);
                log.push('\n');
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "weir did not log `accepting clients addr=...` within 20 s; stderr:\n{}",
                    stderr.lock().expect("log")
                );
            }
        };
        WeirProcess {
            child,
            port,
            stderr,
            _dir: dir,
        }
    }

    /// The configuration file it was started with (rewrite it, then SIGHUP).
    pub fn config_path(&self) -> PathBuf {
        self._dir.path().join("weir.toml")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. "TERM") with `kill(1)`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and asserts that weir exits successfully within `limit`, showing its
    /// log if it does not.
    pub fn assert_exits_on_term(&mut self, limit: Duration) {
        self.signal("TERM");
        let status = self.wait_exit(limit);
        assert!(
            status.is_some_and(|s| s.success()),
            "weir did not exit successfully within {limit:?} of SIGTERM ({status:?}):\n{}",
            self.log()
        );
    }

    /// What weir logged so far.
    pub fn log(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// A value from `/proc/PID/status` in KiB, e.g. `VmPeak` or `VmHWM`.
    pub fn status_kib(&self, field: &str) -> u64 {
        proc_status_kib(
            &PathBuf::from(format!("/proc/{}/status", self.pid())),
            field,
        )
    }
}

impl Drop for WeirProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The port in `addr=127.0.0.1:PORT` of a log line (or `"addr":"127.0.0.1:PORT"` in
/// the JSON format).
fn logged_port(line: &str) -> Option<u16> {
    let addr = match line.find("addr=") {
        Some(at) => line[at + 5..].split_whitespace().next()?,
        None => {
            let at = line.find("\"addr\":\"")?;
            line[at + 8..].split('"').next()?
        }
    };
    addr.rsplit(':').next()?.parse().ok()
}

/// A `Field:   1234 kB` line of a `/proc/.../status` file, in KiB.
pub fn proc_status_kib(path: &Path, field: &str) -> u64 {
    let text = std::fs::read_to_string(path).expect("read /proc status");
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {}", path.display()))
}
