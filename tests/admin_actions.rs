//! The admin commands that act, through real clients: DISABLE/ENABLE, RECONNECT and
//! WAIT_CLOSE, SHUTDOWN WAIT_FOR_CLIENTS, and a reload by SIGHUP of the real binary
//! (which also logs in JSON here).

mod common;

use std::time::Duration;

use common::admin::{admin_toml, blocked_command, row_where, show, ADMIN, ADMIN_PASSWORD};
use common::process::WeirProcess;
use common::{eventually_async, fresh_database, simple_value, sqlstate, Proxy, PASSWORD, USER};

async fn console_at(port: u16) -> tokio_postgres::Client {
    let url = format!("postgresql://{ADMIN}:{ADMIN_PASSWORD}@127.0.0.1:{port}/weir");
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("admin console");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

async fn client_at(port: u16, db: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let url = format!("postgresql://{USER}:{PASSWORD}@127.0.0.1:{port}/{db}");
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_refuses_new_logins_and_enable_admits_them() {
    let db = fresh_database();
    let proxy = Proxy::start(&admin_toml(&db, "", "")).await;
    let console = console_at(proxy.port).await;
    let connected = proxy.client(&db).await;
    console
        .simple_query(&format!("DISABLE {db}"))
        .await
        .expect("DISABLE");
    let e = proxy.login_error(USER, PASSWORD, &db, "disabled").await;
    assert_eq!(sqlstate(&e).as_deref(), Some("55000"), "{e}");
    assert_eq!(
        simple_value(&connected, "SELECT 1").await,
        "1",
        "connected clients go on"
    );
    let databases = show(&console, "SHOW DATABASES").await;
    assert_eq!(
        row_where(&databases, "name", &db)["disabled"].as_deref(),
        Some("1")
    );
    console
        .simple_query(&format!("ENABLE {db}"))
        .await
        .expect("ENABLE");
    let again = proxy.client(&db).await;
    assert_eq!(simple_value(&again, "SELECT 2").await, "2");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_replaces_servers_and_wait_close_waits_for_the_busy_one() {
    let db = fresh_database();
    let proxy = Proxy::start(&admin_toml(&db, "", "")).await;
    let console = console_at(proxy.port).await;
    let busy = proxy.client(&db).await;
    busy.batch_execute("BEGIN").await.expect("begin");
    let old_pid = simple_value(&busy, "SELECT pg_backend_pid()").await;

    console
        .simple_query(&format!("RECONNECT {db}"))
        .await
        .expect("RECONNECT");
    let servers = show(&console, "SHOW SERVERS").await;
    assert_eq!(
        row_where(&servers, "remote_pid", &old_pid)["close_needed"].as_deref(),
        Some("1")
    );
    let waiting = blocked_command(
        console,
        "WAIT_CLOSE",
        "WAIT_CLOSE returned while the old server was busy",
    )
    .await;
    busy.batch_execute("COMMIT").await.expect("commit");
    let console = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("WAIT_CLOSE returned once the old server closed")
        .expect("task");
    let servers = show(&console, "SHOW SERVERS").await;
    assert!(
        servers
            .iter()
            .all(|s| s["remote_pid"].as_deref() != Some(old_pid.as_str())),
        "{servers:?}"
    );
    let new_pid = simple_value(&busy, "SELECT pg_backend_pid()").await;
    assert_ne!(
        new_pid, old_pid,
        "the next transaction runs on a new server"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_file_and_shutdown_wait_for_clients_waits_for_them() {
    let db = fresh_database();
    let mut weir = WeirProcess::start(
        &admin_toml(&db, "size = 1", ""),
        &[("WEIR_LOG_FORMAT", "json")],
    );
    let console = console_at(weir.port).await;
    let text = std::fs::read_to_string(weir.config_path()).expect("config");
    std::fs::write(weir.config_path(), text.replace("size = 1", "size = 4")).expect("rewrite");
    weir.signal("HUP");
    let reloaded = eventually_async(Duration::from_secs(10), || async {
        let config = show(&console, "SHOW CONFIG").await;
        row_where(&config, "key", "pool.size")["value"].as_deref() == Some("4")
    })
    .await;
    assert!(reloaded, "SIGHUP applied the new pool size");

    let client = client_at(weir.port, &db).await.expect("client");
    console
        .simple_query("SHUTDOWN WAIT_FOR_CLIENTS")
        .await
        .expect("SHUTDOWN WAIT_FOR_CLIENTS");
    let refused = eventually_async(Duration::from_secs(5), || async {
        client_at(weir.port, &db).await.is_err()
    })
    .await;
    assert!(refused, "no new clients after SHUTDOWN WAIT_FOR_CLIENTS");
    assert_eq!(
        simple_value(&client, "SELECT 3").await,
        "3",
        "connected clients go on"
    );
    assert!(
        weir.wait_exit(Duration::from_millis(500)).is_none(),
        "weir waits for them"
    );
    drop(client);
    drop(console);
    let status = weir
        .wait_exit(Duration::from_secs(10))
        .expect("weir exits once its clients left");
    assert!(status.success(), "{status}");
    // Every log line was one JSON object.
    let log = weir.log();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            line.starts_with('{') && line.ends_with('}') && line.contains("\"level\""),
            "not a JSON log line: {line}"
        );
    }
    assert!(log.contains("SHUTDOWN WAIT_FOR_CLIENTS"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_reload_resume_sends_held_transactions_to_the_new_hosts() {
    let db = fresh_database();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("weir.toml");
    let config = admin_toml(&db, "", "");
    std::fs::write(&path, &config).expect("write config");
    let proxy = Proxy::start_file(&path).await;
    let console = console_at(proxy.port).await;
    let client = proxy.client(&db).await;
    simple_value(&client, "SELECT 1").await;

    console
        .simple_query(&format!("PAUSE {db}"))
        .await
        .expect("PAUSE");
    let held = tokio::spawn(async move {
        let pid = simple_value(&client, "SELECT pg_backend_pid()").await;
        (client, pid)
    });
    // The switchover: the same server under another name stands for a new host.
    let port = common::pg().primary().port;
    let moved = config.replace(&format!("127.0.0.1:{port}"), &format!("localhost:{port}"));
    std::fs::write(&path, &moved).expect("rewrite");
    console.simple_query("RELOAD").await.expect("RELOAD");
    assert!(!held.is_finished(), "the request is held while paused");
    console
        .simple_query(&format!("RESUME {db}"))
        .await
        .expect("RESUME");
    let (_client, pid) = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .expect("RESUME released it")
        .expect("task");
    let servers = show(&console, "SHOW SERVERS").await;
    let used = row_where(&servers, "remote_pid", &pid);
    assert_eq!(used["addr"].as_deref(), Some("localhost"), "{servers:?}");
    proxy.stop().await;
}
