//! Pool modes, graceful shutdown, the client-facing timeouts, and the login methods other
//! than SCRAM (trust, md5 with a plaintext password, md5 with a stored verifier), each
//! through weir against a real PostgreSQL.

mod common;

use std::time::{Duration, Instant};

use common::raw::{startup, Raw, PROTOCOL_3_0};
use common::{
    config_toml, config_toml_with, fresh_database, psql, simple_value, sqlstate, Proxy, Settings,
    MD5_PASSWORD, MD5_USER, PASSWORD, USER,
};

/// Generous bound for anything that should take about a second.
const SOON: Duration = Duration::from_secs(10);

#[tokio::test]
async fn session_mode_keeps_session_state_and_resets_it_for_the_next_client() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml_with(
        &db,
        Settings {
            mode: "session",
            pool_extra: "size = 1",
            ..Settings::default()
        },
    ))
    .await;
    let a = proxy.client(&db).await;
    a.batch_execute(
        "CREATE SCHEMA other; CREATE TABLE other.marker (v text); \
         INSERT INTO other.marker VALUES ('other')",
    )
    .await
    .expect("schema");
    // Session state of every kind: a GUC PostgreSQL does not report, a temp table, a
    // prepared statement, an advisory lock, a LISTEN.
    a.batch_execute(
        "SET search_path TO other, public; CREATE TEMP TABLE scratch (x int); \
         PREPARE p AS SELECT 1; SELECT pg_advisory_lock(42); LISTEN weir_test",
    )
    .await
    .expect("session state");
    let a_pid = simple_value(&a, "SELECT pg_backend_pid()").await;
    for _ in 0..3 {
        a.batch_execute("BEGIN; INSERT INTO scratch VALUES (1); COMMIT")
            .await
            .expect("tx");
        assert_eq!(
            simple_value(&a, "SELECT current_setting('search_path')").await,
            "other, public"
        );
        assert_eq!(simple_value(&a, "SELECT v FROM marker").await, "other");
        assert_eq!(simple_value(&a, "SELECT pg_backend_pid()").await, a_pid);
    }
    assert_eq!(simple_value(&a, "SELECT count(*) FROM scratch").await, "3");
    assert_eq!(simple_value(&a, "EXECUTE p").await, "1");

    // b waits for the only server, which a holds for its whole session.
    let b = proxy.client(&db).await;
    let b_query = tokio::spawn(async move {
        let r = simple_value(&b, "SELECT pg_backend_pid()").await;
        (b, r)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !b_query.is_finished(),
        "session mode handed a's server to b"
    );
    drop(a);
    let (b, b_pid) = tokio::time::timeout(SOON, b_query)
        .await
        .expect("b got the server once a left")
        .expect("task");
    assert_eq!(
        b_pid, a_pid,
        "not the same server: the reset was not tested"
    );
    assert_eq!(
        simple_value(&b, "SELECT current_setting('search_path')").await,
        "\"$user\", public"
    );
    assert_eq!(
        simple_value(&b, "SELECT to_regclass('pg_temp.scratch') IS NULL").await,
        "t"
    );
    assert_eq!(
        simple_value(&b, "SELECT count(*) FROM pg_prepared_statements").await,
        "0"
    );
    assert_eq!(
        simple_value(
            &b,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        .await,
        "0"
    );
    assert_eq!(
        simple_value(&b, "SELECT count(*) FROM pg_listening_channels()").await,
        "0"
    );
    // Leave before the shutdown (see session_mode_shutdown_tells_idle_clients).
    drop(b);
    proxy.stop().await;
}

#[tokio::test]
async fn session_mode_client_leaving_mid_transaction_rolls_back() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml_with(
        &db,
        Settings {
            mode: "session",
            pool_extra: "size = 1",
            ..Settings::default()
        },
    ))
    .await;
    let a = proxy.client(&db).await;
    a.batch_execute("CREATE TABLE t (id int)")
        .await
        .expect("create");
    a.batch_execute("BEGIN; INSERT INTO t VALUES (1)")
        .await
        .expect("open tx");
    drop(a);
    let b = proxy.client(&db).await;
    let n = tokio::time::timeout(SOON, simple_value(&b, "SELECT count(*) FROM t"))
        .await
        .expect("b gets a server");
    assert_eq!(n, "0");
    b.batch_execute("INSERT INTO t VALUES (2)")
        .await
        .expect("b is not inside a's transaction");
    assert_eq!(psql(&db, "SELECT count(*) FROM t"), "1");
    // Leave before the shutdown (see session_mode_shutdown_tells_idle_clients).
    drop(b);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_a_transaction_finish() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "", "")).await;
    let port = proxy.port;
    let (a, a_end) = proxy.watched_client(USER, PASSWORD, &db).await;
    let (_b, b_end) = proxy.watched_client(USER, PASSWORD, &db).await;
    a.batch_execute("CREATE TABLE s (id int)")
        .await
        .expect("create");
    a.batch_execute("BEGIN; INSERT INTO s VALUES (1)")
        .await
        .expect("open tx");

    let stopping = tokio::spawn(proxy.stop());
    // Shutdown has begun once new connections are refused.
    assert!(
        common::eventually_async(SOON, || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
        })
        .await,
        "weir still accepts connections after shutdown began"
    );
    // The idle client is told weir is going away.
    assert_eq!(b_end.sqlstate_within(SOON).await.as_deref(), Some("57P01"));
    // The client in a transaction is not cut off: it can finish.
    assert!(
        !stopping.is_finished(),
        "shutdown did not wait for the transaction"
    );
    assert!(
        !a_end.is_finished(),
        "the client in a transaction was cut off"
    );
    a.batch_execute("INSERT INTO s VALUES (2)")
        .await
        .expect("work inside the transaction goes on");
    a.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(psql(&db, "SELECT count(*) FROM s"), "2");
    // Then it is disconnected, and weir finishes stopping.
    let end = a_end.sqlstate_within(SOON).await;
    assert!(end.is_none() || end.as_deref() == Some("57P01"), "{end:?}");
    assert!(a.simple_query("SELECT 1").await.is_err());
    tokio::time::timeout(SOON, stopping)
        .await
        .expect("shutdown finished once the transaction ended")
        .expect("task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeout_cuts_off_a_stuck_transaction() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml_with(
        &db,
        Settings {
            listen_extra: "shutdown_timeout = \"1s\"",
            ..Settings::default()
        },
    ))
    .await;
    let (a, a_end) = proxy.watched_client(USER, PASSWORD, &db).await;
    a.batch_execute("CREATE TABLE s (id int)")
        .await
        .expect("create");
    a.batch_execute("BEGIN; INSERT INTO s VALUES (1)")
        .await
        .expect("open tx");
    tokio::time::timeout(SOON, proxy.stop())
        .await
        .expect("shutdown_timeout bounds the shutdown");
    a_end.sqlstate_within(SOON).await;
    assert!(
        common::eventually(SOON, || psql(
            &db,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND state LIKE 'idle in transaction%'"
        ) == "0")
        .await,
        "the stuck transaction's server was left open"
    );
    assert_eq!(psql(&db, "SELECT count(*) FROM s"), "0");
}

#[tokio::test]
async fn client_idle_timeout_disconnects_with_57p05() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "client_idle_timeout = \"1s\"", "")).await;
    let (c, end) = proxy.watched_client(USER, PASSWORD, &db).await;
    // Activity keeps it alive: 6 queries half a second apart span 3 s.
    for _ in 0..6 {
        simple_value(&c, "SELECT 1").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let started = Instant::now();
    assert_eq!(end.sqlstate_within(SOON).await.as_deref(), Some("57P05"));
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(c.simple_query("SELECT 1").await.is_err());
    proxy.stop().await;
}

#[tokio::test]
async fn idle_transaction_timeout_disconnects_with_25p03_and_rolls_back() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(
        &db,
        "size = 1\nidle_transaction_timeout = \"1s\"",
        "",
    ))
    .await;
    let (c, end) = proxy.watched_client(USER, PASSWORD, &db).await;
    c.batch_execute("CREATE TABLE t (id int)")
        .await
        .expect("create");
    c.batch_execute("BEGIN; INSERT INTO t VALUES (1); SELECT pg_advisory_xact_lock(7)")
        .await
        .expect("open tx");
    assert_eq!(end.sqlstate_within(SOON).await.as_deref(), Some("25P03"));
    let idle_in_tx = || {
        psql(
            &db,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND state LIKE 'idle in transaction%'",
        )
    };
    assert!(
        common::eventually(SOON, || idle_in_tx() == "0").await,
        "a server was left idle in transaction"
    );
    assert_eq!(psql(&db, "SELECT count(*) FROM t"), "0");
    // The only server slot is free again and the lock is gone.
    let d = proxy.client(&db).await;
    let got = tokio::time::timeout(
        SOON,
        simple_value(&d, "SELECT pg_try_advisory_xact_lock(7)"),
    )
    .await
    .expect("the pool's only slot was freed");
    assert_eq!(got, "t");
    proxy.stop().await;
}

#[tokio::test]
async fn query_timeout_cancels_with_57014_and_the_connection_stays_usable() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "query_timeout = \"1s\"", "")).await;
    let c = proxy.client(&db).await;
    let started = Instant::now();
    let err = c
        .simple_query("SELECT pg_sleep(30)")
        .await
        .expect_err("cancelled by query_timeout");
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(simple_value(&c, "SELECT 'still here'").await, "still here");
    // Inside a transaction too: the transaction is aborted, the connection is not.
    c.batch_execute("BEGIN").await.expect("begin");
    let err = c
        .simple_query("SELECT pg_sleep(30)")
        .await
        .expect_err("cancelled");
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"), "{err}");
    let err = c.simple_query("SELECT 1").await.expect_err("aborted tx");
    assert_eq!(sqlstate(&err).as_deref(), Some("25P02"));
    c.batch_execute("ROLLBACK").await.expect("rollback");
    // A query just under the limit is not cancelled.
    assert_eq!(
        simple_value(&c, "SELECT pg_sleep(0.2)::text || 'ok'").await,
        "ok"
    );
    proxy.stop().await;
}

/// `auth.method = "trust"`, with `users` as the `[[users]]` entries.
fn trust_config(db: &str, users: &str) -> String {
    config_toml_with(
        db,
        Settings {
            auth_method: "trust",
            users: Some(users),
            ..Settings::default()
        },
    )
}

#[tokio::test]
async fn trust_admits_listed_and_unlisted_users_without_a_password() {
    let db = fresh_database();
    // `app` keeps its password: weir needs it to log in to the server, which asks SCRAM.
    let users = format!("[[users]]\nname = \"{USER}\"\npassword = \"{PASSWORD}\"\n");
    let proxy = Proxy::start(&trust_config(&db, &users)).await;
    let c = proxy
        .try_client(USER, "not the password", &db)
        .await
        .expect("trust ignores the password");
    assert_eq!(simple_value(&c, "SELECT current_user").await, USER);
    // An unlisted user is admitted by weir and logged in to the server with no password:
    // `postgres` is trusted by the test cluster's pg_hba.conf.
    let c = proxy
        .try_client("postgres", "", &db)
        .await
        .expect("unlisted user under trust");
    assert_eq!(simple_value(&c, "SELECT current_user").await, "postgres");
    // An unlisted user the server wants a password from cannot borrow anyone's.
    let err = proxy
        .login_error(
            MD5_USER,
            MD5_PASSWORD,
            &db,
            "weir has no password for legacy",
        )
        .await;
    let message = err
        .as_db_error()
        .map(|e| e.message().to_owned())
        .unwrap_or_else(|| err.to_string());
    assert!(message.contains(MD5_USER), "{message}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_user_without_password_is_valid_only_with_trust() {
    let db = fresh_database();
    // Per-user trust, no password, while everyone else logs in with SCRAM.
    let users = format!(
        "[[users]]\nname = \"{USER}\"\npassword = \"{PASSWORD}\"\n\
         [[users]]\nname = \"postgres\"\nauth_method = \"trust\"\n"
    );
    let text = config_toml_with(
        &db,
        Settings {
            users: Some(&users),
            ..Settings::default()
        },
    );
    let proxy = Proxy::start(&text).await;
    let c = proxy
        .try_client("postgres", "", &db)
        .await
        .expect("trusted user");
    assert_eq!(simple_value(&c, "SELECT current_user").await, "postgres");
    let err = proxy
        .login_error(USER, "wrong", &db, "app still needs SCRAM")
        .await;
    assert_eq!(sqlstate(&err).as_deref(), Some("28P01"));
    // Without trust, a user without a password is refused by validation, naming the key.
    let users = "[[users]]\nname = \"postgres\"\n";
    let text = config_toml_with(
        &db,
        Settings {
            users: Some(users),
            ..Settings::default()
        },
    );
    let err = weir::config::from_toml_str(&text).expect_err("no password, scram");
    assert!(err.to_string().contains("users[0].password"), "{err}");
    proxy.stop().await;
}

/// The authentication request weir answers a StartupMessage for `user` with.
async fn first_auth_request(port: u16, user: &str, db: &str) -> i32 {
    let mut raw = Raw::connect(port).await;
    raw.send(&startup(PROTOCOL_3_0, &[("user", user), ("database", db)]))
        .await;
    raw.expect_message().await.auth_code()
}

#[tokio::test]
async fn md5_for_a_user_with_a_plaintext_password() {
    // The client logs in to weir with md5; weir logs in to the server (which stores SCRAM)
    // with the plaintext password.
    let db = fresh_database();
    let users =
        format!("[[users]]\nname = \"{USER}\"\npassword = \"{PASSWORD}\"\nauth_method = \"md5\"\n");
    let proxy = Proxy::start(&config_toml_with(
        &db,
        Settings {
            users: Some(&users),
            ..Settings::default()
        },
    ))
    .await;
    assert_eq!(
        first_auth_request(proxy.port, USER, &db).await,
        5,
        "not md5"
    );
    let c = proxy.client(&db).await;
    assert_eq!(simple_value(&c, "SELECT current_user").await, USER);
    let err = proxy
        .login_error(USER, "wrong", &db, "bad md5 password")
        .await;
    assert_eq!(sqlstate(&err).as_deref(), Some("28P01"));
    proxy.stop().await;
}

#[tokio::test]
async fn md5_for_a_user_given_as_an_md5_verifier() {
    // `md5` + hex(md5(password + user)), as pg_authid stores it: weir checks clients with it
    // (md5 challenge, even though auth.method is scram-sha-256) and answers the server's md5
    // challenge with it.
    let db = fresh_database();
    let verifier = postgres_protocol::password::md5(MD5_PASSWORD.as_bytes(), MD5_USER);
    assert!(verifier.starts_with("md5") && verifier.len() == 35);
    let users = format!(
        "[[users]]\nname = \"{USER}\"\npassword = \"{PASSWORD}\"\n\
         [[users]]\nname = \"{MD5_USER}\"\npassword = \"{verifier}\"\n"
    );
    let proxy = Proxy::start(&config_toml_with(
        &db,
        Settings {
            users: Some(&users),
            ..Settings::default()
        },
    ))
    .await;
    assert_eq!(
        first_auth_request(proxy.port, MD5_USER, &db).await,
        5,
        "not md5"
    );
    assert_eq!(
        first_auth_request(proxy.port, USER, &db).await,
        10,
        "not SASL"
    );
    let c = proxy
        .try_client(MD5_USER, MD5_PASSWORD, &db)
        .await
        .expect("md5 login with a stored verifier");
    assert_eq!(simple_value(&c, "SELECT current_user").await, MD5_USER);
    c.batch_execute("CREATE TABLE legacy_t (x int); INSERT INTO legacy_t VALUES (1)")
        .await
        .expect("the server session works");
    let err = proxy
        .login_error(MD5_USER, "wrong", &db, "bad password")
        .await;
    assert_eq!(sqlstate(&err).as_deref(), Some("28P01"));
    // The verifier itself is not a password.
    let err = proxy
        .login_error(MD5_USER, &verifier, &db, "verifier as password")
        .await;
    assert_eq!(sqlstate(&err).as_deref(), Some("28P01"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_a_running_query_finish() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "", "")).await;
    let (a, a_end) = proxy.watched_client(USER, PASSWORD, &db).await;
    let running = tokio::spawn(async move {
        let r = simple_value(&a, "SELECT pg_sleep(1.5)::text || 'done'").await;
        (a, r)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = tokio::spawn(proxy.stop());
    let (a, r) = tokio::time::timeout(SOON, running)
        .await
        .expect("query finished")
        .expect("the running query was not cut off");
    assert_eq!(r, "done");
    let end = a_end.sqlstate_within(SOON).await;
    assert!(end.is_none() || end.as_deref() == Some("57P01"), "{end:?}");
    assert!(a.simple_query("SELECT 1").await.is_err());
    tokio::time::timeout(SOON, stopping)
        .await
        .expect("shutdown finished")
        .expect("task");
}

#[tokio::test]
async fn client_idle_timeout_does_not_cut_a_long_query() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "client_idle_timeout = \"1s\"", "")).await;
    let c = proxy.client(&db).await;
    // The client waits 2.5 s for its answer; it is not idle while it waits.
    assert_eq!(
        simple_value(&c, "SELECT pg_sleep(2.5)::text || 'ok'").await,
        "ok"
    );
    assert_eq!(simple_value(&c, "SELECT 'next'").await, "next");
    proxy.stop().await;
}

#[tokio::test]
async fn idle_transaction_timeout_counts_from_the_last_reply() {
    // PostgreSQL's idle_in_transaction_session_timeout starts when the backend goes idle,
    // i.e. after it answered. A statement that ran longer than the limit must not count
    // as idle time: the client answers right away and must be allowed to commit.
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "idle_transaction_timeout = \"1s\"", "")).await;
    let c = proxy.client(&db).await;
    c.batch_execute("CREATE TABLE t (id int)")
        .await
        .expect("create");
    c.batch_execute("BEGIN").await.expect("begin");
    c.batch_execute("SELECT pg_sleep(2)")
        .await
        .expect("a slow statement inside the transaction");
    c.batch_execute("INSERT INTO t VALUES (1)")
        .await
        .expect("the client answered at once: not idle");
    c.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(psql(&db, "SELECT count(*) FROM t"), "1");
    proxy.stop().await;
}

/// Session mode, pool size 2, with `pool_extra` added.
fn session_config(db: &str, pool_extra: &str) -> String {
    config_toml_with(
        db,
        Settings {
            mode: "session",
            pool_extra,
            ..Settings::default()
        },
    )
}

#[tokio::test]
async fn session_mode_client_idle_timeout_disconnects_with_57p05() {
    let db = fresh_database();
    let proxy = Proxy::start(&session_config(&db, "client_idle_timeout = \"1s\"")).await;
    let (c, end) = proxy.watched_client(USER, PASSWORD, &db).await;
    simple_value(&c, "SELECT 1").await;
    assert_eq!(end.sqlstate_within(SOON).await.as_deref(), Some("57P05"));
    // Its server went back to the pool, clean.
    let d = proxy.client(&db).await;
    assert_eq!(
        simple_value(&d, "SELECT current_setting('search_path')").await,
        "\"$user\", public"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_shutdown_tells_idle_clients() {
    // docs/architecture.md: "Idle clients get FATAL 57P01", and the shutdown does not wait
    // for them. In session mode a client between transactions is idle too.
    let db = fresh_database();
    let proxy = Proxy::start(&session_config(&db, "")).await;
    let (c, end) = proxy.watched_client(USER, PASSWORD, &db).await;
    simple_value(&c, "SELECT 1").await;
    let stopping = tokio::spawn(proxy.stop());
    assert_eq!(end.sqlstate_within(SOON).await.as_deref(), Some("57P01"));
    tokio::time::timeout(SOON, stopping)
        .await
        .expect("shutdown did not wait for an idle session-mode client")
        .expect("task");
}

#[tokio::test]
async fn session_mode_timeouts_inside_the_session() {
    // query_timeout and idle_transaction_timeout are enforced by the relay, which in session
    // mode runs for the whole session.
    let db = fresh_database();
    let proxy = Proxy::start(&session_config(
        &db,
        "query_timeout = \"1s\"\nidle_transaction_timeout = \"1s\"",
    ))
    .await;
    let (c, end) = proxy.watched_client(USER, PASSWORD, &db).await;
    let err = c
        .simple_query("SELECT pg_sleep(30)")
        .await
        .expect_err("cancelled");
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"), "{err}");
    c.batch_execute("BEGIN").await.expect("begin");
    assert_eq!(end.sqlstate_within(SOON).await.as_deref(), Some("25P03"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_clients_still_logging_in() {
    // A client that has not logged in has no transaction to finish: shutdown closes it at
    // once (57P01), as PostgreSQL does with a fast shutdown, instead of waiting up to
    // shutdown_timeout (30 s by default) or client_login_timeout (60 s).
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "", "")).await;
    // One stalled halfway through its startup packet, one at the password prompt.
    let mut half_startup = Raw::connect(proxy.port).await;
    let packet = startup(PROTOCOL_3_0, &[("user", USER), ("database", &db)]);
    half_startup.send(&packet[..7]).await;
    let mut at_password = Raw::connect(proxy.port).await;
    at_password.send(&packet).await;
    assert_eq!(at_password.expect_message().await.auth_code(), 10);
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::time::timeout(SOON, proxy.stop())
        .await
        .expect("shutdown waited for clients that never logged in");
    // Told why (57P01), or simply closed.
    if let Some(m) = at_password.read_message().await {
        assert_eq!(m.fields()[&'C'], "57P01", "{m:?}");
        at_password.expect_closed().await;
    }
    half_startup.expect_closed().await;
}
