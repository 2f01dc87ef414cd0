//! Real Node.js drivers through weir in transaction mode, with more client connections than
//! server connections: node-postgres (`pg`) with named prepared statements, per-client
//! settings, a temporary table and LISTEN; and postgres.js, which prepares every query and
//! pipelines. The scripts in `tests/node/` check every answer they get; here we start weir,
//! run a script, and watch from PostgreSQL's side that the pool size holds.
//!
//! The drivers come from the npm registry: `npm install --prefix` into cargo's target
//! directory, once per set of pins (later runs reuse the directory). If that fails, every
//! test here fails saying why.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::sync::OnceLock;
use std::time::Duration;

use common::backends::{assert_pool_held, ServerConnections};
use common::external::{install_once, run_installer, run_script_checked, SHORT_WAIT};
use common::{config_toml, fresh_database, psql, Proxy, PASSWORD, USER};
use tokio::process::Command;

/// The drivers, pinned so that a new release cannot change what these tests exercise.
const PACKAGES: &[&str] = &["pg@8.23.1", "postgres@3.4.9"];
/// One script run must finish within this (they take a few seconds).
const SCRIPT_LIMIT: Duration = Duration::from_secs(60);

/// Set up once per test binary: the `node_modules` directory holding the pinned drivers.
static DRIVERS: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The `node_modules` directory with the drivers. Panics, with the reason, if they cannot
/// be installed.
fn drivers() -> &'static Path {
    match DRIVERS.get_or_init(install) {
        Ok(dir) => dir,
        Err(why) => panic!("cannot set up the Node.js drivers: {why}"),
    }
}

/// Checks that `node` runs and installs `PACKAGES`, unless an earlier run did.
fn install() -> Result<PathBuf, String> {
    let probe = StdCommand::new("node")
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run node (Node.js 18 or later is needed): {e}"))?;
    if !probe.status.success() {
        return Err(format!("`node --version` failed ({})", probe.status));
    }
    let prefix = install_once("node", PACKAGES, |dir| {
        run_installer(
            StdCommand::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--no-update-notifier"])
                .args(["--loglevel=error", "--prefix"])
                .arg(dir)
                .args(PACKAGES),
            "the npm registry must be reachable",
        )
    })?;
    Ok(prefix.join("node_modules"))
}

/// Runs `node tests/node/{script} {args}` against weir (the URL in `WEIR_TEST_DSN`);
/// panics showing everything it printed unless it exits 0.
async fn run_script(proxy: &Proxy, db: &str, script: &str, args: &[&str]) {
    let modules = drivers();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/node")
        .join(script);
    let mut cmd = Command::new("node");
    // No PG* variables or npm settings from the caller's environment.
    cmd.arg(&path)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LANG", "C.UTF-8")
        .env("NODE_PATH", modules)
        .env("WEIR_TEST_DSN", proxy.url(USER, PASSWORD, db));
    run_script_checked(cmd, &format!("{script} {args:?}"), SCRIPT_LIMIT).await;
}

/// node-postgres: a `pg.Pool` of 40 clients, all connected at once, on 4 servers. Each
/// client, per round: parametrised queries, named prepared statements (Parse once per
/// connection, then Bind by name on whatever server comes; one name with three texts across
/// clients), BEGIN/COMMIT, BEGIN/ROLLBACK, an error mid-transaction and the ROLLBACK after
/// it, a named statement failing on Execute. A quarter of the clients `SET search_path`,
/// `TIME ZONE` and `application_name` once and must keep them (a SET rolled back must not
/// count, `RESET ALL` returns to the startup packet); the others must never see them. One
/// client is pinned by a temporary table, an SQL `PREPARE` and a WITH HOLD cursor, used
/// across queries and then dropped; one holds a session advisory lock no other client may
/// get; a dedicated `pg.Client` LISTENs and gets every `pg_notify` while idle. Then
/// `pool.query` from all clients at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres_pool_of_forty_on_four_servers() {
    drivers();
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, &format!("size = 4\n{SHORT_WAIT}"), "")).await;
    let watch = ServerConnections::watch(&db).await;
    run_script(&proxy, &db, "pg_pool.js", &["40", "3"]).await;
    assert_pool_held(watch.most().await, 4);
    // 40 clients x 3 rounds, one committed row each; the rolled-back UPDATEs left nothing.
    assert_eq!(psql(&db, "SELECT count(*) FROM entries"), "120");
    assert_eq!(
        psql(&db, "SELECT count(*) FROM entries WHERE note = 'lost'"),
        "0"
    );
    proxy.stop().await;
}

/// postgres.js with `max: 20` on 4 servers: 4,000 concurrent prepared queries (pipelined,
/// each shape first prepared with Parse/Describe/Flush), a burst with failing queries among
/// them (Execute, Bind and Parse errors), 80 concurrent `sql.begin` transfers (committed,
/// thrown out, failed by the server on Execute or on Parse; each with `SET LOCAL` and a
/// savepoint rolled back), `sql.unsafe` multi-statement strings, `sql.reserve()` with its
/// own settings and BEGIN/ROLLBACK, a cancelled query, and `sql.listen` receiving
/// `sql.notify`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_js_twenty_connections_on_four_servers() {
    drivers();
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, &format!("size = 4\n{SHORT_WAIT}"), "")).await;
    let watch = ServerConnections::watch(&db).await;
    run_script(&proxy, &db, "postgres_js.js", &["4000", "80"]).await;
    assert_pool_held(watch.most().await, 4);
    // Half of the 80 transfers commit; money is moved, never made.
    assert_eq!(psql(&db, "SELECT count(*) FROM transfers"), "40");
    assert_eq!(psql(&db, "SELECT sum(balance) FROM accounts"), "5000");
    assert_eq!(psql(&db, "SELECT count(*) FROM audit"), "0");
    proxy.stop().await;
}

/// Two clients on one server prepare the same statement text under different search_paths,
/// which resolve it to tables with different column types. On PostgreSQL each reads its
/// own table. Fails while weir shares one server-side statement per text between clients:
/// the second gets 0A000 "cached plan must not change result type".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_same_statement_text_two_search_paths_one_server() {
    drivers();
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, &format!("size = 1\n{SHORT_WAIT}"), "")).await;
    run_script(&proxy, &db, "pg_cases.js", &["search-path"]).await;
    proxy.stop().await;
}

/// A client prepares `SELECT * FROM t`, a column is added, and a new client prepares the
/// same text: on PostgreSQL its Parse sees the new column. Fails while weir answers that
/// Parse from the statement the first client left on the server: 0A000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_statement_prepared_after_alter_table_by_a_new_client() {
    drivers();
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, &format!("size = 1\n{SHORT_WAIT}"), "")).await;
    run_script(&proxy, &db, "pg_cases.js", &["alter-table"]).await;
    proxy.stop().await;
}
