//! The admin console through real clients: who may use it, what every SHOW returns (column
//! for column against a real PgBouncer), PAUSE/RESUME, RELOAD, KILL, and both protocols.

mod common;

use std::time::Duration;

use common::admin::{
    admin_toml, blocked_command, columns, num, row_where, show, show_until, Row, ADMIN,
    ADMIN_PASSWORD,
};
use common::pgbouncer::PgBouncer;
use common::raw::{startup, Raw, PROTOCOL_3_0};
use common::{db_message, fresh_database, pg, psql, simple_value, sqlstate, Proxy, PASSWORD, USER};

/// Every SHOW both weir and PgBouncer 1.18 have.
const SHARED_SHOWS: &[&str] = &[
    "SHOW POOLS",
    "SHOW CLIENTS",
    "SHOW SERVERS",
    "SHOW STATS",
    "SHOW STATS_TOTALS",
    "SHOW STATS_AVERAGES",
    "SHOW TOTALS",
    "SHOW DATABASES",
    "SHOW USERS",
    "SHOW CONFIG",
    "SHOW LISTS",
    "SHOW VERSION",
    "SHOW MEM",
    "SHOW DNS_HOSTS",
    "SHOW DNS_ZONES",
];

async fn admin(proxy: &Proxy) -> tokio_postgres::Client {
    proxy
        .try_client(ADMIN, ADMIN_PASSWORD, "weir")
        .await
        .expect("admin logs in to the console")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_get_in_and_unknown_commands_point_to_show_help() {
    let db = fresh_database();
    let proxy = Proxy::start(&admin_toml(&db, "", "")).await;
    let e = proxy
        .login_error(USER, PASSWORD, "pgbouncer", "app is not in admin.users")
        .await;
    assert_eq!(sqlstate(&e).as_deref(), Some("28000"), "{e}");
    let e = proxy
        .login_error(ADMIN, "wrong", "weir", "wrong password")
        .await;
    assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{e}");

    let console = admin(&proxy).await;
    let e = console
        .simple_query("SELECT 1")
        .await
        .expect_err("not a command");
    assert_eq!(sqlstate(&e).as_deref(), Some("42601"));
    let message = db_message(&e);
    assert!(message.contains("SHOW HELP"), "{message}");
    // The session goes on after an error, as on PgBouncer.
    let version = show(&console, "show version;").await;
    assert!(
        version[0]["version"]
            .as_deref()
            .is_some_and(|v| v.starts_with("weir ")),
        "{version:?}"
    );
    let e = console
        .simple_query("KILL")
        .await
        .expect_err("needs a database");
    assert_eq!(sqlstate(&e).as_deref(), Some("42601"));
    let e = console
        .simple_query("PAUSE nosuchdb")
        .await
        .expect_err("no such db");
    assert_eq!(sqlstate(&e).as_deref(), Some("3D000"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_extended_protocol_works_with_binary_results() {
    let db = fresh_database();
    let proxy = Proxy::start(&admin_toml(&db, "", "")).await;
    let app = proxy.client(&db).await;
    simple_value(&app, "SELECT 1").await;
    let console = admin(&proxy).await;
    // tokio-postgres prepares (Parse/Describe/Sync), then binds asking for binary results.
    let rows = console
        .query("SHOW POOLS", &[])
        .await
        .expect("extended SHOW POOLS");
    let pool = rows
        .iter()
        .find(|r| r.get::<_, String>("database") == db)
        .expect("the database's pool");
    assert_eq!(pool.get::<_, String>("user"), USER);
    assert_eq!(pool.get::<_, i32>("cl_active"), 1);
    assert_eq!(pool.get::<_, i32>("sv_idle"), 1);
    assert_eq!(pool.get::<_, String>("pool_mode"), "transaction");
    let statement = console
        .prepare("SHOW HOSTS")
        .await
        .expect("prepare SHOW HOSTS");
    let names: Vec<&str> = statement.columns().iter().map(|c| c.name()).collect();
    assert_eq!(
        names,
        [
            "database",
            "host",
            "role",
            "healthy",
            "lag_bytes",
            "lag_ms",
            "last_role_change",
            "last_check",
            "pools",
            "sv_active",
            "sv_idle",
            "last_error"
        ]
    );
    let hosts = console.query(&statement, &[]).await.expect("SHOW HOSTS");
    let host = hosts
        .iter()
        .find(|r| r.get::<_, String>("database") == db)
        .expect("the database's host");
    assert_eq!(host.get::<_, String>("role"), "primary");
    assert_eq!(host.get::<_, i32>("healthy"), 1);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_pools_sees_waiting_clients_and_the_stats_move() {
    let db = fresh_database();
    let proxy = Proxy::start(&admin_toml(&db, "size = 1", "")).await;
    let console = admin(&proxy).await;
    let holder = proxy.client(&db).await;
    holder
        .batch_execute("BEGIN; SELECT 1")
        .await
        .expect("begin");
    let server_pid = simple_value(&holder, "SELECT pg_backend_pid()").await;
    let waiter = proxy.client(&db).await;
    let waiting = tokio::spawn(async move { simple_value(&waiter, "SELECT 2").await });

    let mut seen = None;
    for _ in 0..50 {
        let pools = show(&console, "SHOW POOLS").await;
        let pool = row_where(&pools, "database", &db).clone();
        if num(&pool, "cl_waiting") >= 1 {
            seen = Some(pool);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pool = seen.expect("SHOW POOLS shows the waiting client");
    assert_eq!(num(&pool, "sv_active"), 1, "{pool:?}");
    assert_eq!(num(&pool, "cl_active"), 1, "{pool:?}");

    let servers = show(&console, "SHOW SERVERS").await;
    let server = row_where(&servers, "remote_pid", &server_pid);
    assert_eq!(server["state"].as_deref(), Some("active"));
    assert_eq!(server["database"].as_deref(), Some(db.as_str()));
    let clients = show(&console, "SHOW CLIENTS").await;
    let linked = row_where(&clients, "link", server["ptr"].as_deref().unwrap_or("-"));
    assert_eq!(linked["user"].as_deref(), Some(USER));
    assert!(clients
        .iter()
        .any(|c| c["state"].as_deref() == Some("waiting")));

    holder.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(waiting.await.expect("waiter"), "2");
    let stats = show_until(&console, "SHOW STATS", |rows| {
        num(row_where(rows, "database", &db), "total_xact_count") >= 2
    })
    .await;
    let stats = row_where(&stats, "database", &db);
    assert_eq!(
        num(stats, "total_xact_count"),
        2,
        "the holder's and the waiter's: {stats:?}"
    );
    assert_eq!(num(stats, "total_query_count"), 4, "{stats:?}");
    assert!(num(stats, "total_received") > 0 && num(stats, "total_sent") > 0);
    assert!(
        num(stats, "total_wait_time") > 0,
        "the waiter waited: {stats:?}"
    );
    assert_eq!(
        num(stats, "total_requests"),
        num(stats, "total_query_count")
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_waits_for_running_transactions_and_resume_lets_held_ones_go() {
    let db = fresh_database();
    let proxy = Proxy::start(&admin_toml(&db, "", "")).await;
    let console = admin(&proxy).await;
    let running = proxy.client(&db).await;
    running
        .batch_execute("BEGIN; SELECT 1")
        .await
        .expect("begin");
    let pausing = blocked_command(
        console,
        &format!("PAUSE {db}"),
        "PAUSE returned while a transaction ran",
    )
    .await;
    running.batch_execute("COMMIT").await.expect("commit");
    let console = tokio::time::timeout(Duration::from_secs(5), pausing)
        .await
        .expect("PAUSE returned once the transaction ended")
        .expect("pause task");

    let held = proxy.client(&db).await;
    let mut query = tokio::spawn(async move { simple_value(&held, "SELECT 7").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!query.is_finished(), "a transaction ran while paused");
    let databases = show(&console, "SHOW DATABASES").await;
    assert_eq!(num(row_where(&databases, "name", &db), "paused"), 1);
    console.simple_query("RESUME").await.expect("resume");
    let got = tokio::time::timeout(Duration::from_secs(5), &mut query)
        .await
        .expect("RESUME released the held transaction");
    assert_eq!(got.expect("query task"), "7");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_grows_the_pool_and_a_broken_file_changes_nothing() {
    let db = fresh_database();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("weir.toml");
    let small = admin_toml(&db, "size = 1", "");
    std::fs::write(&path, &small).expect("write config");
    let proxy = Proxy::start_file(&path).await;
    let console = admin(&proxy).await;

    // Two clients in transactions: with size 1, the second waits.
    let a = proxy.client(&db).await;
    a.batch_execute("BEGIN; SELECT 1").await.expect("a begins");
    let b = proxy.client(&db).await;
    let mut b_begins = tokio::spawn(async move {
        b.batch_execute("BEGIN; SELECT 1").await.expect("b begins");
        b
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !b_begins.is_finished(),
        "pool.size = 1 must hold the second client"
    );

    std::fs::write(&path, small.replace("size = 1", "size = 3")).expect("rewrite");
    console.simple_query("RELOAD").await.expect("RELOAD");
    let b = tokio::time::timeout(Duration::from_secs(5), &mut b_begins)
        .await
        .expect("the bigger pool served the waiting client")
        .expect("b task");
    let config = show(&console, "SHOW CONFIG").await;
    assert_eq!(
        row_where(&config, "key", "pool.size")["value"].as_deref(),
        Some("3")
    );
    a.batch_execute("COMMIT").await.expect("a commits");
    b.batch_execute("COMMIT").await.expect("b commits");

    std::fs::write(&path, small.replace("size = 1", "size = \"lots\"")).expect("break it");
    let e = console.simple_query("RELOAD").await.expect_err("refused");
    assert_eq!(sqlstate(&e).as_deref(), Some("F0000"));
    let message = db_message(&e);
    assert!(
        message.contains("pool.size"),
        "the reason names the key: {message}"
    );
    let config = show(&console, "SHOW CONFIG").await;
    assert_eq!(
        row_where(&config, "key", "pool.size")["value"].as_deref(),
        Some("3")
    );
    assert_eq!(
        simple_value(&a, "SELECT 5").await,
        "5",
        "clients kept working"
    );

    // SET goes through the same validation, and PgBouncer's names work.
    let done = console
        .simple_query("SET default_pool_size = 4")
        .await
        .expect("SET");
    assert!(done
        .iter()
        .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::CommandComplete(_))));
    let config = show(&console, "SHOW CONFIG").await;
    assert_eq!(
        row_where(&config, "key", "pool.size")["value"].as_deref(),
        Some("4")
    );
    let e = console
        .simple_query("SET pool.size = 0")
        .await
        .expect_err("invalid");
    assert_eq!(sqlstate(&e).as_deref(), Some("F0000"));
    let e = console
        .simple_query("SET listen.addr = '0.0.0.0:1'")
        .await
        .expect_err("fixed");
    assert_eq!(sqlstate(&e).as_deref(), Some("42704"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_client_and_kill_db_disconnect_with_57p01() {
    let db = fresh_database();
    let proxy = Proxy::start(&admin_toml(&db, "", "")).await;
    let console = admin(&proxy).await;
    let (idle, idle_end) = proxy.watched_client(USER, PASSWORD, &db).await;
    simple_value(&idle, "SELECT 1").await;
    let clients = show(&console, "SHOW CLIENTS").await;
    let target = clients
        .iter()
        .find(|c| c["database"].as_deref() == Some(db.as_str()))
        .expect("the client is listed");
    let ptr = target["ptr"].clone().expect("ptr");
    console
        .simple_query(&format!("KILL_CLIENT {ptr}"))
        .await
        .expect("KILL_CLIENT");
    assert_eq!(
        idle_end
            .sqlstate_within(Duration::from_secs(5))
            .await
            .as_deref(),
        Some("57P01")
    );

    let (busy, busy_end) = proxy.watched_client(USER, PASSWORD, &db).await;
    busy.batch_execute("BEGIN; CREATE TABLE lost (x int)")
        .await
        .expect("begin");
    console
        .simple_query(&format!("KILL {db}"))
        .await
        .expect("KILL");
    assert_eq!(
        busy_end
            .sqlstate_within(Duration::from_secs(5))
            .await
            .as_deref(),
        Some("57P01")
    );
    // KILL leaves the database paused, as PgBouncer does; RESUME opens it again.
    console
        .simple_query(&format!("RESUME {db}"))
        .await
        .expect("RESUME");
    let fresh = proxy.client(&db).await;
    assert_eq!(
        simple_value(
            &fresh,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'lost'"
        )
        .await,
        "0",
        "the killed transaction was rolled back"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_pinned_names_the_client_its_server_and_why() {
    let db = fresh_database();
    let proxy = Proxy::start(&admin_toml(&db, "", "")).await;
    let console = admin(&proxy).await;
    let listener = proxy.client(&db).await;
    listener
        .batch_execute("LISTEN weir_news")
        .await
        .expect("LISTEN");
    let backend = simple_value(&listener, "SELECT pg_backend_pid()").await;
    let pinned = show(&console, "SHOW PINNED").await;
    let row = row_where(&pinned, "remote_pid", &backend);
    assert_eq!(row["pins"].as_deref(), Some("listen"), "{pinned:?}");
    assert_eq!(row["database"].as_deref(), Some(db.as_str()));
    let clients = show(&console, "SHOW CLIENTS").await;
    let listening = row_where(&clients, "ptr", row["ptr"].as_deref().unwrap_or("-"));
    assert_eq!(listening["pins"].as_deref(), Some("listen"), "{clients:?}");
    listener
        .batch_execute("UNLISTEN *")
        .await
        .expect("UNLISTEN");
    simple_value(&listener, "SELECT 1").await;
    assert!(
        show(&console, "SHOW PINNED").await.is_empty(),
        "no longer pinned"
    );
    proxy.stop().await;
}

/// Logs in to PgBouncer's admin console (trust) on a raw connection.
async fn raw_pgbouncer(port: u16) -> Raw {
    let mut raw = Raw::connect(port).await;
    raw.send(&startup(
        PROTOCOL_3_0,
        &[("user", ADMIN), ("database", "pgbouncer")],
    ))
    .await;
    let messages = raw.until_ready().await;
    assert!(messages.iter().all(|m| m.tag != b'E'), "{messages:?}");
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_show_has_pgbouncers_columns_names_order_and_types() {
    let db = fresh_database();
    let proxy = Proxy::start(&admin_toml(&db, "", "")).await;
    let app = proxy.client(&db).await;
    simple_value(&app, "SELECT 1").await;
    let bouncer = PgBouncer::start(pg().primary().port, &db, &[ADMIN, USER]);
    let mut theirs = raw_pgbouncer(bouncer.port).await;
    let mut ours = Raw::login(proxy.port, ADMIN, ADMIN_PASSWORD, "pgbouncer").await;
    for sql in SHARED_SHOWS {
        let expected = columns(&mut theirs, sql).await;
        let got = columns(&mut ours, sql).await;
        // Two commands have one column more at the end, as newer PgBouncers add theirs:
        // SHOW STATS for Debian's prometheus-pgbouncer-exporter, SHOW CLIENTS for pins.
        let extra: &[(&str, u32)] = match *sql {
            "SHOW STATS" => &[("total_requests", 1700)],
            "SHOW CLIENTS" => &[("pins", 25)],
            _ => &[],
        };
        assert_eq!(got.len(), expected.len() + extra.len(), "{sql}: {got:?}");
        assert_eq!(got[..expected.len()], expected[..], "{sql}");
        for ((name, oid), (want_name, want_oid)) in got[expected.len()..].iter().zip(extra) {
            assert_eq!((name.as_str(), *oid), (*want_name, *want_oid), "{sql}");
        }
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_moves_clients_to_a_new_pool_and_drops_a_removed_database() {
    let db = fresh_database();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("weir.toml");
    let config = admin_toml(&db, "", "");
    std::fs::write(&path, &config).expect("write config");
    let proxy = Proxy::start_file(&path).await;
    let console = admin(&proxy).await;
    let (client, end) = proxy.watched_client(USER, PASSWORD, &db).await;
    for i in 0..3 {
        simple_value(&client, &format!("SELECT {i}")).await;
    }
    let xacts = |rows: &[Row]| num(row_where(rows, "database", &db), "total_xact_count");
    let before = xacts(&show_until(&console, "SHOW STATS", |rows| xacts(rows) >= 3).await);

    // Same server, spelled differently: a new pool. The idle client moves to it.
    let port = pg().primary().port;
    let moved = config.replace(&format!("127.0.0.1:{port}"), &format!("localhost:{port}"));
    assert_ne!(moved, config);
    std::fs::write(&path, &moved).expect("rewrite");
    console.simple_query("RELOAD").await.expect("RELOAD");
    assert_eq!(simple_value(&client, "SELECT 42").await, "42");
    let servers = show(&console, "SHOW SERVERS").await;
    assert!(
        servers
            .iter()
            .all(|s| s["addr"].as_deref() == Some("localhost")),
        "the old pool's free connections were closed: {servers:?}"
    );
    let after = xacts(&show_until(&console, "SHOW STATS", |rows| xacts(rows) > before).await);
    assert_eq!(after, before + 1, "the totals carried over to the new pool");

    // A user added by RELOAD logs in; the others carry on.
    let newcomer = format!("{db}_new");
    pg().create_role(&newcomer, "new-secret")
        .expect("create role");
    psql(
        &db,
        &format!("GRANT CONNECT ON DATABASE {db} TO {newcomer}"),
    );
    let moved = moved.replace(
        "[admin]",
        &format!("[[users]]\nname = \"{newcomer}\"\npassword = \"new-secret\"\n[admin]"),
    );
    std::fs::write(&path, &moved).expect("rewrite");
    console.simple_query("RELOAD").await.expect("RELOAD");
    let fresh = proxy
        .try_client(&newcomer, "new-secret", &db)
        .await
        .expect("the new user logs in");
    assert_eq!(simple_value(&fresh, "SELECT current_user").await, newcomer);
    assert_eq!(simple_value(&client, "SELECT 43").await, "43");

    // The database goes away: its client hears it at its next transaction.
    let other = fresh_database();
    std::fs::write(
        &path,
        moved.replace(&format!("name = \"{db}\""), &format!("name = \"{other}\"")),
    )
    .expect("rewrite");
    console.simple_query("RELOAD").await.expect("RELOAD");
    let e = client
        .simple_query("SELECT 1")
        .await
        .expect_err("database removed");
    assert_eq!(sqlstate(&e).as_deref(), Some("57P01"), "{e}");
    // The FATAL came as the answer to that query; then weir closed the connection.
    end.sqlstate_within(Duration::from_secs(5)).await;
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_messages_on_the_console_end_it_with_08p01() {
    let db = fresh_database();
    let proxy = Proxy::start(&admin_toml(&db, "", "")).await;
    // A Bind whose parameter announces more bytes than the message has.
    let mut raw = Raw::login(proxy.port, ADMIN, ADMIN_PASSWORD, "weir").await;
    raw.send(&common::raw::message(b'P', b"\0SHOW VERSION\0\0\0"))
        .await;
    raw.send(&common::raw::message(
        b'B',
        b"\0\0\0\0\0\x01\0\0\x7f\xffxx\0\0",
    ))
    .await;
    let parsed = raw.expect_message().await;
    assert_eq!(parsed.tag, b'1', "ParseComplete first: {parsed:?}");
    raw.expect_fatal("08P01").await;
    // A query that is not UTF-8.
    let mut raw = Raw::login(proxy.port, ADMIN, ADMIN_PASSWORD, "weir").await;
    raw.send(&common::raw::message(b'Q', b"SHOW \xff\xfe\0"))
        .await;
    raw.expect_fatal("08P01").await;
    // The console still serves others.
    let console = admin(&proxy).await;
    assert_eq!(show(&console, "SHOW VERSION").await.len(), 1);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_whose_console_leaves_stops_waiting() {
    let db = fresh_database();
    let proxy = Proxy::start(&admin_toml(&db, "", "")).await;
    let running = proxy.client(&db).await;
    running.batch_execute("BEGIN").await.expect("begin");
    // PAUSE waits for the transaction; its console goes away meanwhile.
    let mut raw = Raw::login(proxy.port, ADMIN, ADMIN_PASSWORD, "weir").await;
    raw.send(&common::raw::query(&format!("PAUSE {db}"))).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(raw);
    let console = admin(&proxy).await;
    let stopped = common::eventually_async(Duration::from_secs(5), || async {
        let clients = show(&console, "SHOW CLIENTS").await;
        clients
            .iter()
            .filter(|c| c["database"].as_deref() == Some("weir"))
            .count()
            == 1
    })
    .await;
    assert!(stopped, "the abandoned PAUSE session ended");
    // The database stays paused until RESUME, as PgBouncer's PAUSE leaves it.
    console
        .simple_query(&format!("RESUME {db}"))
        .await
        .expect("RESUME");
    running.batch_execute("COMMIT").await.expect("commit");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_counts_each_transaction_while_the_client_stays() {
    let db = fresh_database();
    let toml = admin_toml(&db, "", "").replace("mode = \"transaction\"", "mode = \"session\"");
    assert!(toml.contains("mode = \"session\""));
    let proxy = Proxy::start(&toml).await;
    let console = admin(&proxy).await;
    let client = proxy.client(&db).await;
    for i in 0..3 {
        simple_value(&client, &format!("SELECT {i}")).await;
    }
    client
        .batch_execute("BEGIN; SELECT 1; COMMIT")
        .await
        .expect("an explicit transaction");
    let xacts = |rows: &[Row]| num(row_where(rows, "database", &db), "total_xact_count");
    let rows = show_until(&console, "SHOW STATS", |rows| xacts(rows) >= 4).await;
    assert_eq!(
        xacts(&rows),
        4,
        "three queries and one transaction, counted as they ended"
    );
    assert_eq!(
        num(row_where(&rows, "database", &db), "total_query_count"),
        4
    );
    drop(client);
    proxy.stop().await;
}
