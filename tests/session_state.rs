//! Session state in transaction mode: settings follow their client from server to server
//! and never reach another client; LISTEN, temporary tables, advisory locks, SQL PREPARE
//! and WITH HOLD cursors pin the client to its server until the state is gone.

mod common;

use std::time::Duration;

use common::{config_toml, fresh_database, psql, simple_value, sqlstate, Proxy, PASSWORD, USER};
use futures_util::StreamExt;
use tokio_postgres::{AsyncMessage, NoTls};

/// A weir with `size` servers in transaction mode in front of a fresh database. A client
/// waits at most `wait` for a server (the pinning tests expect the wait to run out).
async fn setup_waiting(size: u32, wait: &str) -> (Proxy, String) {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(
        &db,
        &format!("size = {size}\nquery_wait_timeout = \"{wait}\""),
        "",
    ))
    .await;
    (proxy, db)
}

/// `setup_waiting` with a wait no healthy test should reach.
async fn setup(size: u32) -> (Proxy, String) {
    setup_waiting(size, "10s").await
}

#[tokio::test]
async fn settings_follow_their_client_and_no_other() {
    // Twelve clients on three servers, each with its own work_mem and search_path, each
    // checking its own values on every transaction, while the servers change under them.
    let (proxy, db) = setup(3).await;
    let admin = proxy.client(&db).await;
    for i in 0..12 {
        admin
            .batch_execute(&format!(
                "CREATE SCHEMA s{i}; CREATE TABLE s{i}.whoami AS SELECT {i} AS n"
            ))
            .await
            .expect("schema");
    }
    let mut tasks = Vec::new();
    for i in 0..12u32 {
        let c = proxy.client(&db).await;
        tasks.push(tokio::spawn(async move {
            // Outside a transaction, with SET, and with set_config(..., false).
            c.simple_query(&format!("SET work_mem = '{}MB'", i + 1))
                .await
                .expect("set");
            c.simple_query(&format!("SELECT set_config('search_path', 's{i}', false)"))
                .await
                .expect("set_config");
            for _ in 0..20 {
                assert_eq!(
                    simple_value(&c, "SHOW work_mem").await,
                    format!("{}MB", i + 1)
                );
                assert_eq!(
                    simple_value(&c, "SELECT n FROM whoami").await,
                    i.to_string()
                );
                tokio::task::yield_now().await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    // A newcomer sees the server defaults, whichever server it gets.
    let fresh = proxy.client(&db).await;
    for _ in 0..6 {
        assert_eq!(simple_value(&fresh, "SHOW work_mem").await, "4MB");
        assert_eq!(
            simple_value(&fresh, "SHOW search_path").await,
            "\"$user\", public"
        );
    }
    proxy.stop().await;
}

#[tokio::test]
async fn set_in_transactions_commit_rollback_and_reset() {
    let (proxy, db) = setup(2).await;
    // Startup options are the values RESET returns to.
    let url = format!(
        "{}?options=-c%20statement_timeout%3D7s",
        proxy.url(USER, PASSWORD, &db)
    );
    let (c, conn) = tokio_postgres::connect(&url, NoTls).await.expect("connect");
    tokio::spawn(conn);
    let other = proxy.client(&db).await;
    assert_eq!(simple_value(&c, "SHOW statement_timeout").await, "7s");
    // A SET inside a committed transaction stays, as on PostgreSQL.
    c.batch_execute("BEGIN; SET statement_timeout = '8s'; COMMIT")
        .await
        .expect("commit");
    assert_eq!(simple_value(&c, "SHOW statement_timeout").await, "8s");
    // One inside a rolled-back transaction does not.
    c.batch_execute("BEGIN; SET statement_timeout = '9s'; ROLLBACK")
        .await
        .expect("rollback");
    assert_eq!(simple_value(&c, "SHOW statement_timeout").await, "8s");
    // SET LOCAL lasts for its transaction only.
    c.batch_execute("BEGIN; SET LOCAL statement_timeout = '10s'; COMMIT")
        .await
        .expect("set local");
    assert_eq!(simple_value(&c, "SHOW statement_timeout").await, "8s");
    // RESET goes back to the startup value.
    c.simple_query("RESET statement_timeout")
        .await
        .expect("reset");
    for _ in 0..4 {
        assert_eq!(simple_value(&c, "SHOW statement_timeout").await, "7s");
        assert_eq!(simple_value(&other, "SHOW statement_timeout").await, "0");
    }
    // TimeZone is reported by PostgreSQL; it follows the client too, and RESET ALL clears it.
    c.simple_query("SET TimeZone = 'Asia/Tokyo'")
        .await
        .expect("tz");
    c.simple_query("SET work_mem = '5MB'")
        .await
        .expect("work_mem");
    for _ in 0..4 {
        assert_eq!(simple_value(&c, "SHOW TimeZone").await, "Asia/Tokyo");
        assert_ne!(simple_value(&other, "SHOW TimeZone").await, "Asia/Tokyo");
    }
    c.simple_query("RESET ALL").await.expect("reset all");
    for _ in 0..4 {
        assert_eq!(simple_value(&c, "SHOW work_mem").await, "4MB");
        assert_eq!(simple_value(&c, "SHOW statement_timeout").await, "7s");
        assert_ne!(simple_value(&c, "SHOW TimeZone").await, "Asia/Tokyo");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_client_that_leaves_after_set_leaves_nothing_behind() {
    let (proxy, db) = setup(1).await;
    for _ in 0..3 {
        let c = proxy.client(&db).await;
        c.simple_query("SET work_mem = '11MB'").await.expect("set");
        drop(c);
        let next = proxy.client(&db).await;
        assert_eq!(simple_value(&next, "SHOW work_mem").await, "4MB");
    }
    proxy.stop().await;
}

/// Waits until a second client can (or cannot) get the pool's only server.
async fn other_client_gets_a_server(proxy: &Proxy, db: &str) -> Result<(), String> {
    let other = proxy.client(db).await;
    match other.simple_query("SELECT 1").await {
        Ok(_) => Ok(()),
        Err(e) => Err(sqlstate(&e).unwrap_or_else(|| e.to_string())),
    }
}

#[tokio::test]
async fn listen_pins_and_notifications_arrive_while_idle() {
    let (proxy, db) = setup_waiting(1, "1s").await;
    let (listener, mut conn) = tokio_postgres::connect(&proxy.url(USER, PASSWORD, &db), NoTls)
        .await
        .expect("connect");
    let (tx, mut notes) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(msg)) = stream.next().await {
            if let AsyncMessage::Notification(n) = msg {
                let _ = tx.send((n.channel().to_owned(), n.payload().to_owned()));
            }
        }
    });
    listener
        .simple_query("LISTEN weir_news")
        .await
        .expect("listen");
    // The only server is the listener's now: another client waits, then gives up.
    assert_eq!(
        other_client_gets_a_server(&proxy, &db).await,
        Err("08001".to_owned())
    );
    // A notification sent straight to PostgreSQL reaches the idle listener through weir.
    psql(&db, "NOTIFY weir_news, 'hello'");
    let note = tokio::time::timeout(Duration::from_secs(5), notes.recv())
        .await
        .expect("notification within 5 s")
        .expect("a notification");
    assert_eq!(note, ("weir_news".to_owned(), "hello".to_owned()));
    // It keeps working on the same server; UNLISTEN * unpins it.
    assert_eq!(simple_value(&listener, "SELECT 1").await, "1");
    listener.simple_query("UNLISTEN *").await.expect("unlisten");
    assert_eq!(other_client_gets_a_server(&proxy, &db).await, Ok(()));
    proxy.stop().await;
}

#[tokio::test]
async fn temp_table_advisory_lock_prepare_and_hold_cursor_pin_until_gone() {
    let (proxy, db) = setup_waiting(1, "1s").await;
    let c = proxy.client(&db).await;
    let cases = [
        (
            "CREATE TEMP TABLE scratch (n int); INSERT INTO scratch VALUES (41)",
            "SELECT n + 1 FROM scratch",
            "42",
            "DROP TABLE scratch",
        ),
        (
            "CREATE TEMP TABLE scratch2 AS SELECT 41 AS n",
            "SELECT n + 1 FROM scratch2",
            "42",
            "DISCARD TEMP",
        ),
        (
            "SELECT pg_advisory_lock(4242)",
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
            "1",
            "SELECT pg_advisory_unlock(4242)",
        ),
        (
            "PREPARE plus(int) AS SELECT $1 + 1",
            "EXECUTE plus(41)",
            "42",
            "DEALLOCATE plus",
        ),
        (
            "BEGIN; DECLARE cur SCROLL CURSOR WITH HOLD FOR SELECT g FROM generate_series(41, 50) g; COMMIT",
            "FETCH ABSOLUTE 1 FROM cur",
            "41",
            "CLOSE cur",
        ),
    ];
    for (create, use_it, expect, drop_it) in cases {
        c.batch_execute(create).await.expect(create);
        assert_eq!(
            other_client_gets_a_server(&proxy, &db).await,
            Err("08001".to_owned()),
            "not pinned after {create}"
        );
        for _ in 0..3 {
            assert_eq!(simple_value(&c, use_it).await, expect, "{use_it}");
        }
        c.batch_execute(drop_it).await.expect(drop_it);
        assert_eq!(
            other_client_gets_a_server(&proxy, &db).await,
            Ok(()),
            "still pinned after {drop_it}"
        );
    }
    proxy.stop().await;
}

#[tokio::test]
async fn pinned_client_whose_server_dies_is_told_why() {
    let (proxy, db) = setup(2).await;
    let (c, end) = proxy.watched_client(USER, PASSWORD, &db).await;
    c.simple_query("LISTEN gone").await.expect("listen");
    let pid = simple_value(&c, "SELECT pg_backend_pid()").await;
    psql(&db, &format!("SELECT pg_terminate_backend({pid})"));
    let code = end.sqlstate_within(Duration::from_secs(5)).await;
    assert_eq!(code.as_deref(), Some("08006"));
    // Everyone else goes on.
    let other = proxy.client(&db).await;
    assert_eq!(simple_value(&other, "SELECT 2").await, "2");
    proxy.stop().await;
}

#[tokio::test]
async fn settings_the_probe_cannot_list_never_reach_another_client() {
    // Custom settings (RLS tenants) are invisible to pg_settings; default_transaction_read_only
    // is reported but not followed; SET TRANSACTION leaves transaction_* behind. None of it
    // may reach the next client of the same server, and the first client keeps working.
    let (proxy, db) = setup(1).await;
    let a = proxy.client(&db).await;
    let b = proxy.client(&db).await;
    b.batch_execute("CREATE TABLE notes (n int)")
        .await
        .expect("create");
    a.simple_query("SELECT set_config('app.tenant', '42', false)")
        .await
        .expect("tenant");
    a.simple_query("SET work_mem = '6MB'")
        .await
        .expect("work_mem");
    a.batch_execute("BEGIN; SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; COMMIT")
        .await
        .expect("set transaction");
    a.simple_query("SET default_transaction_read_only = on")
        .await
        .expect("read only");
    for _ in 0..3 {
        assert_eq!(
            simple_value(
                &b,
                "SELECT coalesce(current_setting('app.tenant', true), '')"
            )
            .await,
            ""
        );
        assert_eq!(
            simple_value(&b, "SHOW default_transaction_read_only").await,
            "off"
        );
        b.simple_query("INSERT INTO notes VALUES (1)")
            .await
            .expect("b can write");
        assert_eq!(simple_value(&a, "SHOW work_mem").await, "6MB");
        assert_eq!(
            simple_value(&a, "SHOW default_transaction_read_only").await,
            "on"
        );
    }
    proxy.stop().await;
}
