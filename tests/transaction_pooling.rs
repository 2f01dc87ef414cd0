//! Transaction pooling through weir against a real PostgreSQL, with tokio-postgres.

mod common;

use std::time::Duration;

use common::{
    config_toml, config_toml_with, eventually, fresh_database, psql, sqlstate, Proxy, Settings,
};
use futures_util::{SinkExt, StreamExt};

#[tokio::test]
async fn simple_and_extended_queries() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "", "")).await;
    let c = proxy.client(&db).await;
    let rows = c
        .simple_query("SELECT 1 AS one; SELECT 'two'")
        .await
        .expect("simple");
    let data_rows = rows
        .iter()
        .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
        .count();
    assert_eq!(data_rows, 2);
    let rows = c
        .query_typed(
            "SELECT $1::int + 1",
            &[(&41i32, tokio_postgres::types::Type::INT4)],
        )
        .await
        .expect("extended, unnamed");
    assert_eq!(rows[0].get::<_, i32>(0), 42);
    // Named statements prepared and used within one transaction.
    let mut c = c;
    let tx = c.transaction().await.expect("begin");
    let stmt = tx.prepare("SELECT $1::text || '!'").await.expect("prepare");
    let row = tx.query_one(&stmt, &[&"hi"]).await.expect("execute named");
    assert_eq!(row.get::<_, String>(0), "hi!");
    tx.commit().await.expect("commit");
    proxy.stop().await;
}

#[tokio::test]
async fn transactions_with_errors_and_rollback() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "", "")).await;
    let mut c = proxy.client(&db).await;
    c.batch_execute("CREATE TABLE t (id int primary key)")
        .await
        .expect("create");
    let tx = c.transaction().await.expect("begin");
    tx.execute("INSERT INTO t VALUES (1)", &[])
        .await
        .expect("insert");
    let err = tx
        .execute("INSERT INTO t VALUES (1)", &[])
        .await
        .expect_err("duplicate");
    assert_eq!(sqlstate(&err).as_deref(), Some("23505"));
    let err = tx.execute("SELECT 1", &[]).await.expect_err("aborted tx");
    assert_eq!(sqlstate(&err).as_deref(), Some("25P02"));
    tx.rollback().await.expect("rollback");
    let n: i64 = c
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0);
    let tx = c.transaction().await.expect("begin");
    tx.execute("INSERT INTO t VALUES (2)", &[])
        .await
        .expect("insert");
    tx.commit().await.expect("commit");
    assert_eq!(psql(&db, "SELECT id FROM t"), "2");
    proxy.stop().await;
}

#[tokio::test]
async fn ten_megabyte_result() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "", "")).await;
    let c = proxy.client(&db).await;
    let row = c
        .query_one("SELECT repeat('x', 10 * 1024 * 1024) AS big", &[])
        .await
        .expect("big row");
    assert_eq!(row.get::<_, String>(0).len(), 10 * 1024 * 1024);
    let rows = c
        .query(
            "SELECT g, md5(g::text) FROM generate_series(1, 200000) g",
            &[],
        )
        .await
        .expect("many rows");
    assert_eq!(rows.len(), 200_000);
    proxy.stop().await;
}

#[tokio::test]
async fn copy_in_and_out() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "", "")).await;
    let c = proxy.client(&db).await;
    c.batch_execute("CREATE TABLE c (id int, name text)")
        .await
        .expect("create");
    let sink = c.copy_in("COPY c FROM STDIN").await.expect("copy in");
    futures_util::pin_mut!(sink);
    let mut data = String::new();
    for i in 0..50_000 {
        data.push_str(&format!("{i}\tname {i}\n"));
    }
    sink.send(bytes::Bytes::from(data.clone()))
        .await
        .expect("send");
    let n = sink.finish().await.expect("finish");
    assert_eq!(n, 50_000);
    let stream = c.copy_out("COPY c TO STDOUT").await.expect("copy out");
    futures_util::pin_mut!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("chunk"));
    }
    assert_eq!(String::from_utf8(out).expect("utf8"), data);
    // A failed COPY leaves the connection usable.
    let err = c
        .batch_execute("COPY c FROM STDIN WITH (FORMAT nonsense)")
        .await
        .expect_err("bad copy");
    assert!(sqlstate(&err).is_some());
    assert_eq!(
        c.query_one("SELECT 1", &[])
            .await
            .expect("after")
            .get::<_, i32>(0),
        1
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_clients_share_five_servers() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "", "")).await;
    let mut tasks = Vec::new();
    for i in 0..200i32 {
        let url = proxy.url(common::USER, common::PASSWORD, &db);
        tasks.push(tokio::spawn(async move {
            let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(conn);
            for j in 0..5i32 {
                // Unnamed statements: Parse/Bind/Execute/Sync in one round trip.
                let row = c
                    .query_typed(
                        "SELECT $1::int * 2, pg_sleep(0.001)::text",
                        &[(&(i * 10 + j), tokio_postgres::types::Type::INT4)],
                    )
                    .await
                    .expect("query")
                    .remove(0);
                assert_eq!(row.get::<_, i32>(0), (i * 10 + j) * 2);
            }
        }));
    }
    let mut max_seen = 0usize;
    let dbname = db.clone();
    let watcher = tokio::spawn(async move {
        let mut max = 0usize;
        for _ in 0..30 {
            let n: usize = psql(&dbname, &format!("SELECT count(*) FROM pg_stat_activity WHERE usename = '{}' AND datname = '{dbname}'", common::USER))
                .parse()
                .unwrap_or(0);
            max = max.max(n);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        max
    });
    for t in tasks {
        t.await.expect("client task");
    }
    max_seen = max_seen.max(watcher.await.expect("watcher"));
    assert!(
        max_seen <= 5,
        "pg_stat_activity showed {max_seen} server connections for pool size 5"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn login_failures_have_the_right_sqlstate() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "", "")).await;
    let err = proxy
        .login_error(common::USER, "wrong", &db, "bad password")
        .await;
    assert_eq!(sqlstate(&err).as_deref(), Some("28P01"));
    let message = err
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default();
    assert!(
        message.contains("password authentication failed for user"),
        "{message}"
    );
    let err = proxy.login_error("nobody", "x", &db, "unknown user").await;
    assert_eq!(sqlstate(&err).as_deref(), Some("28P01"));
    let err = proxy
        .login_error(common::USER, common::PASSWORD, "nodb", "unknown db")
        .await;
    assert_eq!(sqlstate(&err).as_deref(), Some("3D000"));
    // The md5 user is challenged with md5 and logs in to a server that stores md5.
    let c = proxy
        .try_client(common::MD5_USER, common::MD5_PASSWORD, &db)
        .await
        .expect("md5 login");
    assert_eq!(
        c.query_one("SELECT current_user::text", &[])
            .await
            .expect("q")
            .get::<_, String>(0),
        common::MD5_USER
    );
    proxy.stop().await;
}

#[tokio::test]
async fn max_client_conn_is_enforced() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "max_client_conn = 2", "")).await;
    let a = proxy.client(&db).await;
    let b = proxy.client(&db).await;
    let err = proxy
        .login_error(common::USER, common::PASSWORD, &db, "third refused")
        .await;
    assert_eq!(sqlstate(&err).as_deref(), Some("53300"));
    drop(a);
    assert!(eventually(Duration::from_secs(5), || true).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let c = proxy.client(&db).await;
    c.simple_query("SELECT 1")
        .await
        .expect("after a client left");
    drop(b);
    proxy.stop().await;
}

#[tokio::test]
async fn max_client_conn_per_user_and_per_database() {
    let db = fresh_database();
    // The [auth] table ends where the users begin: failure_delay goes in front of them.
    let users = format!(
        "failure_delay = \"300ms\"\n[[users]]\nname = \"{}\"\npassword = \"{}\"\nmax_client_conn = 2\n",
        common::USER,
        common::PASSWORD
    );
    let tail = format!(
        "[[databases]]\nname = \"limited\"\ndbname = \"{db}\"\nhosts = [\"127.0.0.1:{}\"]\nmax_client_conn = 1\n",
        common::pg().primary().port
    );
    let settings = Settings {
        users: Some(&users),
        tail: &tail,
        ..Settings::default()
    };
    let proxy = Proxy::start(&config_toml_with(&db, settings)).await;
    let message = |e: &tokio_postgres::Error| e.as_db_error().map(|d| d.message().to_owned());

    // The database's limit: one client of "limited".
    let a = proxy.client("limited").await;
    let err = proxy
        .login_error(common::USER, common::PASSWORD, "limited", "database full")
        .await;
    assert_eq!(sqlstate(&err).as_deref(), Some("53300"));
    let text = message(&err).unwrap_or_default();
    assert!(text.contains("database \"limited\""), "{text}");

    // The user's limit: two clients whatever the database.
    let b = proxy.client(&db).await;
    let err = proxy
        .login_error(common::USER, common::PASSWORD, &db, "user full")
        .await;
    assert_eq!(sqlstate(&err).as_deref(), Some("53300"));
    let text = message(&err).unwrap_or_default();
    assert!(text.contains("role \"app\""), "{text}");

    // A client that leaves gives its place back.
    drop(a);
    let mut c = None;
    for _ in 0..50 {
        if let Ok(client) = proxy.try_client(common::USER, common::PASSWORD, &db).await {
            c = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c = c.expect("a place came back when a client left");
    c.simple_query("SELECT 1").await.expect("served");
    drop((b, c));

    // auth.failure_delay: a wrong password is answered no sooner than 300 ms.
    let started = std::time::Instant::now();
    let err = proxy
        .login_error(common::USER, "wrong", &db, "wrong password")
        .await;
    assert_eq!(sqlstate(&err).as_deref(), Some("28P01"));
    assert!(started.elapsed() >= Duration::from_millis(300));
    // The second failure from the same address within a minute waits twice as long.
    let started = std::time::Instant::now();
    let err = proxy
        .login_error(common::USER, "wrong again", &db, "wrong password")
        .await;
    assert_eq!(sqlstate(&err).as_deref(), Some("28P01"));
    assert!(started.elapsed() >= Duration::from_millis(600));
    proxy.stop().await;
}

#[tokio::test]
async fn previous_passwords_log_in_during_a_rotation() {
    let db = fresh_database();
    // Servers get `password` (the role's real one); clients may also use the old ones.
    let users = format!(
        "[[users]]\nname = \"{}\"\npassword = \"{}\"\nprevious_passwords = [\"old-secret\"]\n\
         [[users]]\nname = \"{}\"\npassword = \"{}\"\nauth_method = \"md5\"\n\
         previous_passwords = [\"old-md5-secret\"]\n",
        common::USER,
        common::PASSWORD,
        common::MD5_USER,
        common::MD5_PASSWORD
    );
    let settings = Settings {
        users: Some(&users),
        ..Settings::default()
    };
    let proxy = Proxy::start(&config_toml_with(&db, settings)).await;
    for (user, password) in [
        (common::USER, common::PASSWORD),
        (common::USER, "old-secret"),
        (common::MD5_USER, common::MD5_PASSWORD),
        (common::MD5_USER, "old-md5-secret"),
    ] {
        let client = proxy
            .try_client(user, password, &db)
            .await
            .unwrap_or_else(|e| panic!("{user} with {password}: {e}"));
        client.simple_query("SELECT 1").await.expect("served");
    }
    for (user, password) in [(common::USER, "older"), (common::MD5_USER, "old-secret")] {
        let err = proxy
            .login_error(user, password, &db, "not a password of this user")
            .await;
        assert_eq!(sqlstate(&err).as_deref(), Some("28P01"));
    }
    proxy.stop().await;
}

#[tokio::test]
async fn query_wait_timeout_gives_a_clear_error() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(
        &db,
        "size = 1\nquery_wait_timeout = \"500ms\"",
        "",
    ))
    .await;
    let a = proxy.client(&db).await;
    let b = proxy.client(&db).await;
    a.batch_execute("BEGIN; SELECT 1")
        .await
        .expect("a holds the only server");
    let err = b
        .simple_query("SELECT 2")
        .await
        .expect_err("b waits in vain");
    assert_eq!(sqlstate(&err).as_deref(), Some("08001"));
    let message = err
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default();
    assert!(message.contains("query_wait_timeout"), "{message}");
    a.batch_execute("COMMIT").await.expect("commit");
    b.simple_query("SELECT 3")
        .await
        .expect("b works once the server is free");
    proxy.stop().await;
}

#[tokio::test]
async fn clients_that_gave_up_waiting_leave_the_pool_whole() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(
        &db,
        "size = 1\nquery_wait_timeout = \"500ms\"",
        "",
    ))
    .await;
    let a = proxy.client(&db).await;
    a.batch_execute("BEGIN; SELECT 1")
        .await
        .expect("a holds the only server");
    // Five clients queue for the server and give up (query_wait_timeout).
    let mut waiters = Vec::new();
    for _ in 0..5 {
        let client = proxy.client(&db).await;
        waiters.push(tokio::spawn(async move {
            let r = client.simple_query("SELECT 2").await;
            (client, r)
        }));
    }
    let mut clients = Vec::new();
    for waiter in waiters {
        let (client, r) = waiter.await.expect("task");
        let err = r.expect_err("nobody is served while a holds the server");
        assert_eq!(sqlstate(&err).as_deref(), Some("08001"));
        clients.push(client);
    }
    a.batch_execute("COMMIT").await.expect("commit");
    // Had the server been handed to a waiter that gave up, these would time out.
    for client in clients.iter().chain([&a]) {
        client
            .simple_query("SELECT 3")
            .await
            .expect("served once the server is free");
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_only_its_query() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "", "")).await;
    let a = proxy.client(&db).await;
    let b = proxy.client(&db).await;
    let token = a.cancel_token();
    let slow = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let r = a.simple_query("SELECT pg_sleep(30)").await;
        (r, started.elapsed())
    });
    let other = tokio::spawn(async move { b.simple_query("SELECT pg_sleep(1.5), 'b'").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    token
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel sent");
    let (r, took) = slow.await.expect("task");
    let err = r.expect_err("cancelled");
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"));
    assert!(took < Duration::from_secs(10), "cancel took {took:?}");
    other
        .await
        .expect("task")
        .expect("the other client's query is not cancelled");
    proxy.stop().await;
}

#[tokio::test]
async fn killed_client_leaves_no_idle_in_transaction_server() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "", "")).await;
    let c = proxy.client(&db).await;
    c.batch_execute("CREATE TABLE k (id int)")
        .await
        .expect("create");
    c.batch_execute("BEGIN; INSERT INTO k VALUES (1)")
        .await
        .expect("open tx");
    drop(c);
    let count = || {
        psql(&db, "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%' AND datname = current_database()")
    };
    assert!(
        eventually(Duration::from_secs(10), || count() == "0").await,
        "a server stayed idle in transaction"
    );
    assert_eq!(psql(&db, "SELECT count(*) FROM k"), "0");
    proxy.stop().await;
}

#[tokio::test]
async fn terminated_server_gives_08006_and_the_next_transaction_works() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "", "")).await;
    let c = proxy.client(&db).await;
    c.batch_execute("BEGIN").await.expect("begin");
    let rows = c
        .simple_query("SELECT pg_backend_pid()")
        .await
        .expect("pid");
    let Some(tokio_postgres::SimpleQueryMessage::Row(row)) = rows.get(1) else {
        panic!("no row: {rows:?}");
    };
    let pid = row.get(0).expect("pid").to_owned();
    psql(&db, &format!("SELECT pg_terminate_backend({pid})"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let err = c.simple_query("SELECT 1").await.expect_err("server gone");
    assert_eq!(sqlstate(&err).as_deref(), Some("08006"), "{err}");
    let row = c
        .query_one("SELECT 2", &[])
        .await
        .expect("next transaction works");
    assert_eq!(row.get::<_, i32>(0), 2);
    proxy.stop().await;
}

#[tokio::test]
async fn a_pooled_server_that_died_while_idle_is_never_handed_out() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "size = 1", "")).await;
    let c = proxy.client(&db).await;
    for _ in 0..3 {
        let pid = common::simple_value(&c, "SELECT pg_backend_pid()").await;
        // The server sits idle in the pool when it is terminated.
        psql(&db, &format!("SELECT pg_terminate_backend({pid})"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let next = common::simple_value(&c, "SELECT pg_backend_pid()").await;
        assert_ne!(next, pid, "a new server, and no error");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn startup_parameters_follow_the_client() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "size = 1", "")).await;
    let url = format!(
        "{}?application_name=alpha&options=-c%20search_path%3Dfoo%2Cpublic%20-c%20TimeZone%3DAsia/Tokyo",
        proxy.url(common::USER, common::PASSWORD, &db)
    );
    let (a, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("a");
    tokio::spawn(conn);
    let b = proxy.client(&db).await;
    for _ in 0..3 {
        let row = a
            .query_one("SELECT current_setting('application_name'), current_setting('search_path'), current_setting('TimeZone')", &[])
            .await
            .expect("a settings");
        assert_eq!(row.get::<_, String>(0), "alpha");
        assert_eq!(row.get::<_, String>(1), "foo,public");
        assert_eq!(row.get::<_, String>(2), "Asia/Tokyo");
        // b shares the one server connection and must not see a's settings.
        let row = b
            .query_one("SELECT current_setting('application_name'), current_setting('search_path'), current_setting('TimeZone')", &[])
            .await
            .expect("b settings");
        assert_eq!(row.get::<_, String>(0), "");
        assert_eq!(row.get::<_, String>(1), "\"$user\", public");
        assert_ne!(row.get::<_, String>(2), "Asia/Tokyo");
    }
    proxy.stop().await;
}
