//! The `weir` binary: `--version`, `--check` on good and bad configurations (exit codes and
//! messages that name the culprit), and a real run against PostgreSQL ended by SIGTERM.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::process::{strip_ansi, weir_command, WeirProcess};
use common::{config_toml, fresh_database, psql, simple_value, PASSWORD, USER};

/// The example configuration shipped in `etc/`.
fn example_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/weir.toml")
}

/// Runs `weir` with `args` and `env` added; waits at most 30 s.
fn weir(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = weir_command();
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn weir");
    let end = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("try_wait").is_none() {
        if std::time::Instant::now() > end {
            let _ = child.kill();
            panic!("weir {args:?} ran for more than 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// stderr as text, without colour codes.
fn stderr(out: &Output) -> String {
    strip_ansi(&String::from_utf8_lossy(&out.stderr))
}

/// Writes `text` to `name` in `dir`.
fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

/// A small valid configuration (nothing is contacted by `--check`).
const VALID: &str = r#"
[listen]
addr = "127.0.0.1:6432"
[pool]
mode = "transaction"
size = 5
[[users]]
name = "app"
password = "app"
[[databases]]
name = "appdb"
hosts = ["127.0.0.1:5432"]
"#;

#[test]
fn version_prints_the_crate_version() {
    let out = weir(&["--version"], &[]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        format!("weir {}", env!("CARGO_PKG_VERSION")),
        "{stdout}"
    );
}

#[test]
fn no_configuration_is_an_error_with_a_hint() {
    let out = weir(&[], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("--config"), "{}", stderr(&out));
    // --check needs --config: a usage error from the argument parser (exit 2).
    let out = weir(&["--check"], &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("--config"), "{}", stderr(&out));
}

#[test]
fn check_accepts_the_example_configuration() {
    let path = example_config();
    let out = weir(
        &["--config", path.to_str().expect("utf-8 path"), "--check"],
        &[],
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("valid"), "{stdout}");
    assert!(
        !stderr(&out).contains("warning"),
        "the example configuration should not need a warning: {}",
        stderr(&out)
    );
}

#[test]
fn check_names_a_misspelt_pool_mode() {
    let dir = tempfile::tempdir().expect("dir");
    let path = write(
        dir.path(),
        "bad.toml",
        &VALID.replace("mode = \"transaction\"", "mode = \"tranaction\""),
    );
    let out = weir(&["--config", path.to_str().expect("utf-8"), "--check"], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    assert!(err.contains("pool.mode"), "{err}");
    assert!(err.contains("tranaction"), "{err}");
    assert!(
        err.contains("transaction") && err.contains("session"),
        "the accepted values should be listed: {err}"
    );
    assert!(out.stdout.is_empty(), "nothing on stdout for a bad config");
}

#[test]
fn check_reports_other_mistakes_by_key() {
    let dir = tempfile::tempdir().expect("dir");
    for (name, text, culprit) in [
        (
            "unknown_key.toml",
            VALID.replace("size = 5", "size = 5\npool_sizee = 3"),
            "pool_sizee",
        ),
        (
            "zero_size.toml",
            VALID.replace("size = 5", "size = 0"),
            "pool.size",
        ),
        (
            "bad_host.toml",
            VALID.replace("127.0.0.1:5432", "127.0.0.1:99999"),
            "databases[0].hosts[0]",
        ),
        (
            "reserved.toml",
            VALID.replace("name = \"appdb\"", "name = \"pgbouncer\""),
            "databases[0].name",
        ),
        ("syntax.toml", VALID.replace("[pool]", "[pool"), "bad"),
    ] {
        let path = write(dir.path(), name, &text);
        let out = weir(&["--config", path.to_str().expect("utf-8"), "--check"], &[]);
        assert_eq!(out.status.code(), Some(1), "{name}: {out:?}");
        let err = stderr(&out);
        let culprit = if name == "syntax.toml" { name } else { culprit };
        assert!(err.contains(culprit), "{name}: {err}");
    }
}

#[test]
fn check_of_a_missing_file_names_the_path() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("nowhere").join("weir.toml");
    let out = weir(&["--config", path.to_str().expect("utf-8"), "--check"], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    assert!(err.contains(path.to_str().expect("utf-8")), "{err}");
    // Running (not just checking) a missing file fails the same way, without hanging.
    let out = weir(&["--config", path.to_str().expect("utf-8")], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains(path.to_str().expect("utf-8")));
}

#[test]
fn environment_overrides_are_checked_and_named() {
    let dir = tempfile::tempdir().expect("dir");
    let path = write(dir.path(), "weir.toml", VALID);
    let path = path.to_str().expect("utf-8");
    let out = weir(
        &["--config", path, "--check"],
        &[("WEIR_POOL__SIZE", "abc")],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    assert!(err.contains("WEIR_POOL__SIZE"), "{err}");
    // A good override passes, and an unknown variable name is refused by name.
    let out = weir(&["--config", path, "--check"], &[("WEIR_POOL__SIZE", "50")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = weir(&["--config", path, "--check"], &[("WEIR_POOL_SIZE", "50")]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("WEIR_POOL_SIZE"), "{}", stderr(&out));
    // WEIR_LOG is the log filter, not a configuration key.
    let out = weir(&["--config", path, "--check"], &[("WEIR_LOG", "debug")]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn check_warns_about_a_user_given_only_as_a_scram_verifier() {
    let dir = tempfile::tempdir().expect("dir");
    let verifier = postgres_protocol::password::scram_sha_256(b"s3cret");
    let text = VALID.replace("password = \"app\"", &format!("password = \"{verifier}\""));
    let path = write(dir.path(), "scram.toml", &text);
    let out = weir(&["--config", path.to_str().expect("utf-8"), "--check"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("warning"), "{err}");
    assert!(err.contains("\"app\""), "the user should be named: {err}");
    assert!(
        err.contains("pass-through") && err.contains("same verifier"),
        "{err}"
    );
    assert!(
        !err.contains(&verifier),
        "the verifier must not be printed: {err}"
    );
    // A plaintext password draws no warning.
    let path = write(dir.path(), "plain.toml", VALID);
    let out = weir(&["--config", path.to_str().expect("utf-8"), "--check"], &[]);
    assert!(out.status.success());
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
}

#[test]
fn check_refuses_a_malformed_verifier_without_echoing_it() {
    let dir = tempfile::tempdir().expect("dir");
    let text = VALID.replace(
        "password = \"app\"",
        "password = \"SCRAM-SHA-256$4096:bm90LWJhc2U2NA==$broken\"",
    );
    let path = write(dir.path(), "bad.toml", &text);
    let out = weir(&["--config", path.to_str().expect("utf-8"), "--check"], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    assert!(err.contains("users[0].password"), "{err}");
    assert!(
        !err.contains("broken"),
        "the secret must not be printed: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_against_postgres_and_exits_0_on_sigterm() {
    let db = fresh_database();
    let mut weir = WeirProcess::start(&config_toml(&db, "", ""), &[]);
    let url = format!(
        "postgresql://{USER}:{PASSWORD}@127.0.0.1:{}/{db}",
        weir.port
    );
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect through the weir process");
    let conn = tokio::spawn(conn);
    client
        .batch_execute("CREATE TABLE cli (x int); INSERT INTO cli VALUES (1)")
        .await
        .expect("write");
    assert_eq!(simple_value(&client, "SELECT sum(x) FROM cli").await, "1");
    assert_eq!(psql(&db, "SELECT count(*) FROM cli"), "1");

    // An idle client does not hold the shutdown up: it is told and weir exits at once.
    weir.signal("TERM");
    let status = tokio::task::block_in_place(|| weir.wait_exit(Duration::from_secs(10)));
    let log = weir.log();
    let Some(status) = status else {
        panic!("weir did not exit within 10 s of SIGTERM; log:\n{log}");
    };
    assert!(status.success(), "exit {status:?}; log:\n{log}");
    assert!(log.contains("shutting down"), "{log}");
    let end = tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("the client connection ended")
        .expect("task");
    match end {
        Ok(()) => {}
        Err(e) => assert_eq!(common::sqlstate(&e).as_deref(), Some("57P01"), "{e}"),
    }
    // Nothing is left listening.
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", weir.port))
        .await
        .is_err());
    // Its server connections are closed.
    assert!(
        common::eventually(Duration::from_secs(10), || psql(
            &db,
            &format!("SELECT count(*) FROM pg_stat_activity WHERE usename = '{USER}' AND datname = current_database()")
        ) == "0")
        .await,
        "server connections outlived weir"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_waits_for_a_running_transaction() {
    let db = fresh_database();
    let mut weir = WeirProcess::start(&config_toml(&db, "", ""), &[]);
    let url = format!(
        "postgresql://{USER}:{PASSWORD}@127.0.0.1:{}/{db}",
        weir.port
    );
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
        .batch_execute("CREATE TABLE t (x int)")
        .await
        .expect("create");
    client
        .batch_execute("BEGIN; INSERT INTO t VALUES (1)")
        .await
        .expect("open tx");
    weir.signal("TERM");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        weir.child.try_wait().expect("try_wait").is_none(),
        "weir exited with a transaction open; log:\n{}",
        weir.log()
    );
    client.batch_execute("COMMIT").await.expect("commit");
    let status = tokio::task::block_in_place(|| weir.wait_exit(Duration::from_secs(10)));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}; log:\n{}",
        weir.log()
    );
    assert_eq!(psql(&db, "SELECT count(*) FROM t"), "1");
}
