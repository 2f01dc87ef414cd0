//! Real Python drivers through weir in transaction mode, with more clients than server
//! connections: asyncpg with its statement cache, psycopg 3 preparing every query, and
//! SQLAlchemy 2 on both. The scripts in `tests/python/` check every answer they get; here
//! we start weir, run a script, and watch from PostgreSQL's side that the pool size holds.
//!
//! The drivers come from PyPI: `pip install --target` into cargo's target directory, once
//! per interpreter version and set of pins (later runs reuse the directory). If that
//! fails, every test here fails saying why.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::sync::OnceLock;
use std::time::Duration;

use common::backends::{assert_pool_held, ServerConnections};
use common::external::{install_once, pip_install_target, run_script_checked, SHORT_WAIT};
use common::{config_toml, fresh_database, psql, Proxy, PASSWORD, USER};
use tokio::process::Command;

/// The drivers, pinned so that a new release cannot change what these tests exercise.
const REQUIREMENTS: &[&str] = &[
    "asyncpg==0.32.0",
    "psycopg[binary]==3.3.9",
    "sqlalchemy[asyncio]==2.0.58",
];
/// One script run must finish within this (they take a few seconds).
const SCRIPT_LIMIT: Duration = Duration::from_secs(120);

/// A Python interpreter, and the directory holding the pinned drivers built for it.
struct Python {
    /// The interpreter's own path (`sys.executable`), so no shim or virtualenv in `PATH`
    /// decides which one runs the scripts.
    exe: PathBuf,
    /// What `PYTHONPATH` points at.
    deps: PathBuf,
}

/// Set up once per test binary; every test waits for the first to finish.
static PYTHON: OnceLock<Result<Python, String>> = OnceLock::new();

/// The interpreter with the drivers installed. Panics, with the reason, if they cannot be.
fn python() -> &'static Python {
    match PYTHON.get_or_init(install) {
        Ok(python) => python,
        Err(why) => panic!("cannot set up the Python drivers: {why}"),
    }
}

/// Finds `python3` and installs `REQUIREMENTS` for it, unless an earlier run did.
fn install() -> Result<Python, String> {
    let probe = StdCommand::new("python3")
        .args([
            "-c",
            "import sys; print(sys.executable); print('%d.%d' % sys.version_info[:2])",
        ])
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    let text = String::from_utf8_lossy(&probe.stdout);
    let mut lines = text.lines();
    let (true, Some(exe), Some(version)) = (probe.status.success(), lines.next(), lines.next())
    else {
        return Err(format!(
            "python3 did not say where it is ({}): {}",
            probe.status,
            String::from_utf8_lossy(&probe.stderr)
        ));
    };
    let deps = install_once(&format!("python{version}"), REQUIREMENTS, |dir| {
        pip_install_target(exe, dir, REQUIREMENTS, "PyPI must be reachable")
    })?;
    Ok(Python {
        exe: exe.into(),
        deps,
    })
}

/// Runs `tests/python/{script} {args}` against weir (the URL in `WEIR_TEST_DSN`); panics
/// showing everything it printed unless it exits 0.
async fn run_script(proxy: &Proxy, db: &str, script: &str, args: &[&str]) {
    let python = python();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let mut cmd = Command::new(&python.exe);
    // No user site-packages, no libpq or proxy settings from the caller's environment.
    cmd.arg("-s")
        .arg(&path)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LANG", "C.UTF-8")
        .env("PYTHONPATH", &python.deps)
        .env(
            "PYTHONPYCACHEPREFIX",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("pycache"),
        )
        .env("PYTHONUNBUFFERED", "1")
        .env("WEIR_TEST_DSN", proxy.url(USER, PASSWORD, db));
    run_script_checked(cmd, &format!("{script} {args:?}"), SCRIPT_LIMIT).await;
}

/// asyncpg prepares every parametrised query as a named statement (its statement cache)
/// and reuses it in later transactions, which weir puts on any of its servers. 200 of
/// its connections on 10 servers: fetchval, fetch, executemany, `conn.transaction()`
/// committed and rolled back, `conn.prepare()`, and an enum type asyncpg must introspect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_statement_cache_two_hundred_clients_ten_servers() {
    python();
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "size = 10", "")).await;
    let watch = ServerConnections::watch(&db).await;
    run_script(&proxy, &db, "asyncpg_clients.py", &["200", "5"]).await;
    assert_pool_held(watch.most().await, 10);
    // 200 clients x 5 rounds x 4 rows, counted without any driver.
    assert_eq!(psql(&db, "SELECT count(*) FROM items"), "4000");
    proxy.stop().await;
}

/// psycopg 3 with `prepare_threshold=0` prepares every query; a tiny `prepared_max` makes it
/// close and re-prepare statements as it goes. 50 threads on 5 servers, half autocommit,
/// half in implicit transactions: commit, rollback, savepoints, executemany, a server-side
/// cursor, and errors mid-work (failing Execute, syntax error, `ROLLBACK` answered by
/// psycopg's `DEALLOCATE ALL`) after which the connection must keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_prepare_threshold_zero_fifty_threads_five_servers() {
    python();
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, &format!("size = 5\n{SHORT_WAIT}"), "")).await;
    let watch = ServerConnections::watch(&db).await;
    run_script(&proxy, &db, "psycopg_threads.py", &["50", "4"]).await;
    assert_pool_held(watch.most().await, 5);
    // Per thread and round: one 'kept', one 'outer', three 'many' rows; nothing rolled back.
    assert_eq!(psql(&db, "SELECT count(*) FROM ledger"), "1000");
    assert_eq!(
        psql(&db, "SELECT count(*) FROM ledger WHERE kind = 'dropped'"),
        "0"
    );
    proxy.stop().await;
}

/// SQLAlchemy 2 with `postgresql+psycopg` (threads) and `postgresql+asyncpg` (tasks) at
/// once, each engine a QueuePool of 4 busy connections, on 3 servers: `create_all`, ORM and
/// Core inserts, updates, rollbacks, and the rows read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlalchemy_psycopg_and_asyncpg_pools_on_three_servers() {
    python();
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, &format!("size = 3\n{SHORT_WAIT}"), "")).await;
    let watch = ServerConnections::watch(&db).await;
    run_script(&proxy, &db, "sqlalchemy_pools.py", &["12", "4"]).await;
    assert_pool_held(watch.most().await, 3);
    // 2 dialects x 12 jobs x 4 rounds x (3 ORM + 2 Core rows).
    assert_eq!(psql(&db, "SELECT count(*) FROM orders"), "480");
    proxy.stop().await;
}

/// psycopg follows a rollback with a simple-Query `DEALLOCATE ALL` when it had prepared
/// statements. On one server shared by two clients: the client that deallocated prepares
/// the same statement again, and the other client's statements keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_deallocate_all_after_rollback() {
    python();
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, &format!("size = 1\n{SHORT_WAIT}"), "")).await;
    run_script(&proxy, &db, "psycopg_cases.py", &["deallocate-all"]).await;
    proxy.stop().await;
}

/// psycopg's executemany runs in pipeline mode (Sync, then Flush); the transaction then
/// ends with a simple-Query COMMIT. The client is idle, so the only server must go back to
/// the pool for another client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_pipeline_then_commit_gives_the_server_back() {
    python();
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, &format!("size = 1\n{SHORT_WAIT}"), "")).await;
    run_script(&proxy, &db, "psycopg_cases.py", &["pipeline-commit"]).await;
    proxy.stop().await;
}

/// asyncpg and psycopg 3 (not in autocommit: BEGIN before every transaction) through weir
/// splitting reads and writes between a primary and its streaming replica, with
/// `routing.transactions = "first_statement"`: reads land on the replica, writes and
/// `nextval` on the primary, and a client reads its own write at once, every round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_and_psycopg_through_read_write_splitting() {
    use common::routed;
    python();
    let cluster = routed::start_cluster(&[]);
    routed::on_primary_then_replayed(
        &cluster,
        "CREATE TABLE routed (client int, round int, driver text); CREATE SEQUENCE routed_seq",
    );
    let toml = routed::toml(&cluster, "transactions = \"first_statement\"");
    let proxy = routed::start_proxy(&toml).await;
    let primary = cluster.primary().port.to_string();
    let replica = cluster.replicas()[0].port.to_string();
    run_script(
        &proxy,
        routed::DB,
        "routing_drivers.py",
        &[&primary, &replica, "8", "5"],
    )
    .await;
    let rows = cluster
        .psql(
            cluster.primary().port,
            routed::DB,
            "SELECT count(*) FROM routed",
        )
        .expect("count");
    assert_eq!(rows.trim(), "80", "8 clients x 5 rounds x 2 drivers");
    proxy.stop().await;
}
