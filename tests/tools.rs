//! The real command-line clients through weir: `psql` (multi-statement commands, `\copy`,
//! meta-commands, errors, sslmode) and `pgbench` (initialisation, simple and extended query
//! modes with many clients on a small pool, a connection per transaction).

mod common;

use std::time::Duration;

use common::tools::{conninfo, ok_stdout, psql_through, run, tool};
use common::{config_toml, fresh_database, psql, Proxy, USER};

#[tokio::test]
async fn psql_multi_statement_commands() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "size = 2", "")).await;
    // One -c with several statements is one Query message: one implicit transaction, and
    // psql prints the last result.
    let out = psql_through(
        &proxy,
        &db,
        "",
        &[
            "-c",
            "CREATE TABLE m (id int primary key, name text); \
             INSERT INTO m VALUES (1, 'one'), (2, 'two'); SELECT count(*) FROM m",
        ],
    )
    .await;
    assert_eq!(ok_stdout(&out), "2");
    // Several -c options: separate round trips, an explicit transaction across them.
    let out = psql_through(
        &proxy,
        &db,
        "",
        &[
            "-c",
            "BEGIN",
            "-c",
            "INSERT INTO m VALUES (3, 'three')",
            "-c",
            "SELECT count(*) FROM m",
            "-c",
            "COMMIT",
        ],
    )
    .await;
    assert_eq!(ok_stdout(&out), "3");
    // An error inside a multi-statement command rolls the whole command back.
    let out = psql_through(
        &proxy,
        &db,
        "",
        &["-c", "INSERT INTO m VALUES (4, 'four'); SELECT 1/0"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("division by zero"), "{stderr}");
    assert_eq!(
        psql(&db, "SELECT string_agg(name, ',' ORDER BY id) FROM m"),
        "one,two,three"
    );
    // Meta-commands run catalog queries through weir too.
    let out = psql_through(&proxy, &db, "", &["-c", "\\dt m"]).await;
    assert!(ok_stdout(&out).contains("|m|table|"), "{out:?}");
    // A script file with psql variables and \gset.
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("script.sql");
    std::fs::write(
        &script,
        "SELECT max(id) AS top FROM m \\gset\nSELECT name FROM m WHERE id = :top;\n",
    )
    .expect("write script");
    let out = psql_through(&proxy, &db, "", &["-f", &script.display().to_string()]).await;
    assert_eq!(ok_stdout(&out), "three");
    proxy.stop().await;
}

#[tokio::test]
async fn psql_copy_in_and_out() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "size = 2", "")).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("in.csv");
    let output = dir.path().join("out.csv");
    let mut data = String::new();
    for i in 0..20_000 {
        data.push_str(&format!("{i},\"name, {i}\",{}\n", i % 7 == 0));
    }
    std::fs::write(&input, &data).expect("write csv");
    let out = psql_through(
        &proxy,
        &db,
        "",
        &[
            "-c",
            "CREATE TABLE c (id int, name text, flag bool)",
            "-c",
            &format!("\\copy c FROM '{}' WITH (FORMAT csv)", input.display()),
            "-c",
            &format!(
                "\\copy (SELECT * FROM c ORDER BY id) TO '{}' WITH (FORMAT csv)",
                output.display()
            ),
            "-c",
            "SELECT count(*), sum(id), count(*) FILTER (WHERE flag) FROM c",
        ],
    )
    .await;
    let stdout = ok_stdout(&out);
    assert!(stdout.ends_with("20000|199990000|2858"), "{stdout}");
    let copied = std::fs::read_to_string(&output).expect("read output");
    let expected = data.replace(",true\n", ",t\n").replace(",false\n", ",f\n");
    assert_eq!(copied.lines().count(), 20_000);
    assert_eq!(copied, expected);
    // A \copy that fails half-way (bad row 3) leaves nothing behind and the session usable.
    std::fs::write(&input, "1,a,true\n2,b,false\nthree,c,true\n").expect("write csv");
    let out = psql_through(
        &proxy,
        &db,
        "",
        &[
            "-v",
            "ON_ERROR_STOP=0",
            "-c",
            &format!("\\copy c FROM '{}' WITH (FORMAT csv)", input.display()),
            "-c",
            "SELECT count(*) FROM c",
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid input syntax for type integer"),
        "{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .ends_with("20000"),
        "{out:?}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn psql_sslmode_prefer_falls_back_and_require_fails() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "", "")).await;
    let out = psql_through(
        &proxy,
        &db,
        "sslmode=prefer",
        &["-c", "SELECT 'plain ' || coalesce((SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()), '?')"],
    )
    .await;
    // weir answered N; the weir-to-server leg is plaintext as well.
    assert_eq!(ok_stdout(&out), "plain false");
    let out = psql_through(&proxy, &db, "sslmode=require", &["-c", "SELECT 1"]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("server does not support SSL, but SSL was required"),
        "{stderr}"
    );
    // And a wrong password through psql reads like PostgreSQL's.
    let mut cmd = tool("psql");
    cmd.env("PGPASSWORD", "wrong")
        .args(["-X", "-w", "-c", "SELECT 1", "-d"])
        .arg(conninfo(&proxy, &db, "sslmode=disable"));
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "password authentication failed for user \"{USER}\""
        )),
        "{stderr}"
    );
    proxy.stop().await;
}

/// What a pgbench run reported.
#[derive(Debug)]
struct Bench {
    /// `number of transactions actually processed`.
    processed: u64,
    /// `number of failed transactions` (absent in old pgbench: then 0).
    failed: u64,
    /// `tps = ...`.
    tps: f64,
}

/// Runs pgbench through weir with `args`, asserting exit 0; parses its summary.
async fn pgbench(proxy: &Proxy, db: &str, args: &[&str]) -> (Bench, String) {
    let mut cmd = tool("pgbench");
    cmd.args(["-h", "127.0.0.1", "-p", &proxy.port.to_string(), "-U", USER])
        .args(args)
        .arg(db);
    let out = run(cmd).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "pgbench {args:?} exited {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let field = |prefix: &str| -> Option<&str> {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
    };
    let bench = Bench {
        processed: field("number of transactions actually processed:")
            .and_then(|v| v.split('/').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no processed count:\n{stdout}")),
        failed: field("number of failed transactions:")
            .map(|v| v.parse().expect("failed count"))
            .unwrap_or(0),
        tps: field("tps =")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no tps:\n{stdout}")),
    };
    eprintln!("pgbench {args:?}: {bench:?}");
    (bench, format!("{stdout}\n{stderr}"))
}

/// Runs `pgbench -i -s 1` through weir and checks the tables it made.
async fn pgbench_init(proxy: &Proxy, db: &str) {
    let mut cmd = tool("pgbench");
    cmd.args(["-i", "-s", "1", "-q", "-h", "127.0.0.1", "-p"])
        .arg(proxy.port.to_string())
        .args(["-U", USER, db]);
    let out = run(cmd).await;
    assert!(
        out.status.success(),
        "pgbench -i: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(psql(db, "SELECT count(*) FROM pgbench_accounts"), "100000");
    assert_eq!(psql(db, "SELECT count(*) FROM pgbench_branches"), "1");
    assert_eq!(
        psql(
            db,
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'pgbench_accounts_pkey'"
        ),
        "1"
    );
}

/// Server connections of `USER` to `db`, as PostgreSQL sees them.
fn server_connections(db: &str) -> usize {
    psql(
        db,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = '{USER}' AND datname = current_database()"
        ),
    )
    .parse()
    .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_select_only_simple_and_extended_on_a_pool_of_five() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "size = 5", "")).await;
    pgbench_init(&proxy, &db).await;
    for mode in ["simple", "extended"] {
        let watch_db = db.clone();
        let watcher = tokio::spawn(async move {
            let mut most = 0;
            for _ in 0..20 {
                most = most.max(server_connections(&watch_db));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            most
        });
        let (bench, text) = pgbench(
            &proxy,
            &db,
            &["-c", "20", "-j", "2", "-T", "3", "-S", "-M", mode, "-n"],
        )
        .await;
        assert_eq!(bench.failed, 0, "{text}");
        assert!(bench.processed > 0 && bench.tps > 0.0, "{bench:?}\n{text}");
        assert!(text.contains(&format!("query mode: {mode}")), "{text}");
        let most = watcher.await.expect("watcher");
        assert!(
            (1..=5).contains(&most),
            "{most} server connections seen for a pool of 5"
        );
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_tpcb_writes_through_weir() {
    // The default TPC-B-like script: BEGIN, three UPDATEs, SELECT, INSERT, END per
    // transaction; the totals must add up exactly.
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "size = 3", "")).await;
    pgbench_init(&proxy, &db).await;
    let (bench, text) = pgbench(
        &proxy,
        &db,
        &["-c", "8", "-j", "2", "-t", "50", "-M", "extended"],
    )
    .await;
    assert_eq!(bench.failed, 0, "{text}");
    assert_eq!(bench.processed, 400, "{text}");
    assert_eq!(psql(&db, "SELECT count(*) FROM pgbench_history"), "400");
    assert_eq!(
        psql(
            &db,
            "SELECT (SELECT sum(abalance) FROM pgbench_accounts) = (SELECT sum(delta) FROM pgbench_history)"
        ),
        "t"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_connection_per_transaction() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "size = 5", "")).await;
    pgbench_init(&proxy, &db).await;
    let (bench, text) = pgbench(&proxy, &db, &["-C", "-c", "4", "-T", "2", "-S", "-n"]).await;
    assert_eq!(bench.failed, 0, "{text}");
    assert!(bench.processed > 0 && bench.tps > 0.0, "{bench:?}\n{text}");
    // Every transaction logged in anew; weir's server connections stayed pooled.
    assert!(
        common::eventually(Duration::from_secs(10), || server_connections(&db) <= 5).await,
        "server connections were not pooled"
    );
    proxy.stop().await;
}
