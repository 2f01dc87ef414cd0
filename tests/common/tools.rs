//! Running the real command-line tools (psql, pgbench) against weir.

use std::process::Output;
use std::time::Duration;

use tokio::process::Command;

use super::{Proxy, PASSWORD, USER};

/// Any one run of psql or pgbench must finish within this.
pub const TOOL_LIMIT: Duration = Duration::from_secs(120);

/// A command for `program` that talks to weir as `USER`: the password comes from
/// PGPASSWORD and no other libpq environment is inherited.
pub fn tool(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LANG", "C")
        .env("PGPASSWORD", PASSWORD)
        .env("PGCONNECT_TIMEOUT", "10")
        .kill_on_drop(true);
    cmd
}

/// A libpq connection string for weir.
pub fn conninfo(proxy: &Proxy, db: &str, extra: &str) -> String {
    format!(
        "host=127.0.0.1 port={} user={USER} dbname={db} {extra}",
        proxy.port
    )
}

/// Runs `cmd` with a time limit; returns its output.
pub async fn run(mut cmd: Command) -> Output {
    let shown = format!("{cmd:?}");
    tokio::time::timeout(TOOL_LIMIT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{shown} ran longer than {TOOL_LIMIT:?}"))
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"))
}

/// Runs psql (`-X -A -t -q`, stop on error) against weir with `args` after the conninfo.
pub async fn psql_through(proxy: &Proxy, db: &str, extra: &str, args: &[&str]) -> Output {
    let mut cmd = tool("psql");
    cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(conninfo(proxy, db, extra))
        .args(args);
    run(cmd).await
}

/// stdout of a run that must succeed.
pub fn ok_stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
