//! Read/write splitting against a real primary and streaming replica: where statements
//! run (seen through `current_setting('port')`), read-your-writes under replication delay,
//! lag limits, and a replica going away.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::routed::{self, start_cluster, DB};
use common::scrape::{metrics_addr, scrape, value, METRICS};
use common::{sqlstate, Proxy, PASSWORD, USER};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};
use weir::pgcluster::PgCluster;

/// The cluster shared by the tests that do not disturb it.
fn shared() -> &'static PgCluster {
    static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let cluster = start_cluster(&[]);
        let port = cluster.primary().port;
        cluster
            .psql_as(
                port,
                DB,
                USER,
                Some(PASSWORD),
                "CREATE TABLE items (id serial PRIMARY KEY, v text); \
                 CREATE FUNCTION touch() RETURNS int LANGUAGE sql VOLATILE AS 'SELECT 1'; \
                 CREATE FUNCTION pure(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1'",
            )
            .expect("schema");
        let replica = cluster.replicas()[0].port;
        cluster
            .wait_for_replay(replica)
            .expect("replica catches up");
        cluster
    })
}

/// Starts weir in front of `cluster` with `routing` inside `[routing]`, once it knows
/// both hosts.
async fn routed_proxy(cluster: &PgCluster, routing: &str) -> Proxy {
    routed::start_proxy(&routed::toml(cluster, routing)).await
}

async fn connect(proxy: &Proxy, options: Option<&str>) -> Client {
    let mut url = proxy.url(USER, PASSWORD, DB);
    if let Some(o) = options {
        url.push_str("?options=");
        url.push_str(&o.replace(' ', "%20"));
    }
    let (client, conn) = tokio_postgres::connect(&url, NoTls)
        .await
        .expect("connect through weir");
    tokio::spawn(conn);
    client
}

/// The port of the server that ran `sql` (simple protocol; the first column of the
/// first row, which must be `current_setting('port')`).
async fn port_of(client: &Client, sql: &str) -> u16 {
    let messages = client.simple_query(sql).await.expect(sql);
    let value = messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"));
    value
        .parse()
        .unwrap_or_else(|_| panic!("{sql}: {value:?} is not a port"))
}

/// The same through the extended protocol (an unnamed prepared statement).
async fn port_of_extended(client: &Client, sql: &str) -> u16 {
    let row = client.query_one(sql, &[]).await.expect(sql);
    let port: String = row.get(0);
    port.parse().expect("a port")
}

#[tokio::test]
async fn reads_run_on_the_replica_and_everything_else_on_the_primary() {
    let cluster = shared();
    let primary = cluster.primary().port;
    let replica = cluster.replicas()[0].port;
    let toml = format!("{}{METRICS}", routed::toml(cluster, ""));
    let proxy = routed::start_proxy(&toml).await;
    let c = connect(&proxy, None).await;

    let on_replica = [
        "SELECT current_setting('port')",
        "SELECT current_setting('port') FROM (SELECT count(*) FROM items) AS n",
        "WITH x AS (SELECT 1) SELECT current_setting('port') FROM x",
        "SELECT current_setting('port'), pure(2)",
        "/* weir:replica */ SELECT current_setting('port')",
    ];
    for sql in on_replica {
        assert_eq!(port_of(&c, sql).await, replica, "{sql}");
    }
    assert_eq!(
        port_of_extended(&c, "SELECT current_setting('port')").await,
        replica,
        "extended protocol read"
    );
    let on_primary = [
        "INSERT INTO items (v) VALUES ('a') RETURNING current_setting('port')",
        "SELECT current_setting('port') FROM items FOR UPDATE",
        "SELECT current_setting('port'), nextval('items_id_seq')",
        "SELECT current_setting('port'), touch()",
        "/* weir:primary */ SELECT current_setting('port')",
        "WITH d AS (DELETE FROM items WHERE false RETURNING 1) SELECT current_setting('port')",
        // Not parsed by sqlparser: fails closed, to the primary.
        "SELECT current_setting('port') FROM items FOR NO KEY UPDATE",
    ];
    for sql in on_primary {
        assert_eq!(port_of(&c, sql).await, primary, "{sql}");
    }
    assert_eq!(
        port_of_extended(
            &c,
            "SELECT current_setting('port') FROM items LIMIT 1 FOR UPDATE"
        )
        .await,
        primary,
        "extended protocol lock"
    );

    // The decisions are counted by target and reason (other tests of this binary route in
    // the same database, so the counts are lower bounds), and the classification cache
    // reports its hits once a batch of lookups has gathered.
    // Once the health checks see the writes replayed, the client reads from the replica.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while port_of(&c, "SELECT current_setting('port')").await != replica {
        assert!(
            tokio::time::Instant::now() < deadline,
            "reads never went back to the replica"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..300 {
        port_of(&c, "SELECT current_setting('port')").await;
    }
    c.batch_execute("SET weir.route = primary")
        .await
        .expect("SET weir.route");
    assert_eq!(port_of(&c, "SELECT current_setting('port')").await, primary);
    c.batch_execute("RESET weir.route")
        .await
        .expect("RESET weir.route");
    let metrics = scrape(metrics_addr(&proxy)).await;
    let decided = |target: &str, reason: &str| {
        value(
            &metrics,
            "weir_routing_decisions_total",
            &[("database", DB), ("target", target), ("reason", reason)],
        )
    };
    let reads = decided("replica", "read");
    assert!(
        reads >= 200.0,
        "reads (the first few after the writes may wait for replay on the primary): {reads}, {}",
        decided("primary", "no_replica")
    );
    assert!(decided("primary", "write") >= 6.0);
    assert!(decided("primary", "forced") >= 1.0, "weir.route = primary");
    let hits = value(
        &metrics,
        "weir_router_cache_lookups_total",
        &[("database", DB), ("result", "hit")],
    );
    assert!(hits >= 200.0, "{hits}");
    proxy.stop().await;
}

#[tokio::test]
async fn explicit_transactions_stay_on_the_primary_unless_read_only() {
    let cluster = shared();
    let primary = cluster.primary().port;
    let replica = cluster.replicas()[0].port;
    let proxy = routed_proxy(cluster, "").await;
    let c = connect(&proxy, None).await;

    c.batch_execute("BEGIN").await.expect("begin");
    assert_eq!(port_of(&c, "SELECT current_setting('port')").await, primary);
    c.batch_execute("INSERT INTO items (v) VALUES ('in-tx')")
        .await
        .expect("insert");
    let seen = c
        .query_one("SELECT count(*) FROM items WHERE v = 'in-tx'", &[])
        .await
        .expect("read own write");
    assert!(
        seen.get::<_, i64>(0) >= 1,
        "a transaction sees its own write"
    );
    c.batch_execute("COMMIT").await.expect("commit");

    // This client just wrote: it reads from the primary until the replica has the write.
    let c = connect(&proxy, None).await;
    c.batch_execute("BEGIN READ ONLY")
        .await
        .expect("begin read only");
    assert_eq!(port_of(&c, "SELECT current_setting('port')").await, replica);
    assert_eq!(port_of(&c, "SELECT current_setting('port')").await, replica);
    c.batch_execute("COMMIT").await.expect("commit");

    // A write in a read-only transaction fails as PostgreSQL makes it fail, and the
    // client goes on.
    c.batch_execute("START TRANSACTION READ ONLY")
        .await
        .expect("start");
    let err = c
        .batch_execute("INSERT INTO items (v) VALUES ('no')")
        .await
        .expect_err("read-only transaction");
    assert_eq!(sqlstate(&err).as_deref(), Some("25006"));
    c.batch_execute("ROLLBACK").await.expect("rollback");

    // Several statements in one Query: one write sends them all to the primary.
    assert_eq!(
        port_of(
            &c,
            "SELECT current_setting('port'); INSERT INTO items (v) VALUES ('multi')"
        )
        .await,
        primary
    );
    proxy.stop().await;
}

#[tokio::test]
async fn first_statement_routes_a_whole_transaction_by_its_first_statement() {
    let cluster = shared();
    let primary = cluster.primary().port;
    let replica = cluster.replicas()[0].port;
    let proxy = routed_proxy(cluster, "transactions = \"first_statement\"").await;

    // What psycopg and SQLAlchemy do: BEGIN first, then the statements.
    let mut c = connect(&proxy, None).await;
    let tx = c.transaction().await.expect("begin");
    for _ in 0..3 {
        let row = tx
            .query_one("SELECT current_setting('port')", &[])
            .await
            .expect("read");
        assert_eq!(row.get::<_, String>(0), replica.to_string());
    }
    tx.commit().await.expect("commit");

    // A transaction that starts with a write runs on the primary throughout.
    c.batch_execute("BEGIN").await.expect("begin");
    assert_eq!(
        port_of(
            &c,
            "INSERT INTO items (v) VALUES ('first') RETURNING current_setting('port')"
        )
        .await,
        primary
    );
    assert_eq!(port_of(&c, "SELECT current_setting('port')").await, primary);
    c.batch_execute("COMMIT").await.expect("commit");

    // An empty transaction needs no server; SERIALIZABLE (refused by a standby) and an
    // explicit READ WRITE go to the primary.
    let c = connect(&proxy, None).await;
    c.batch_execute("BEGIN").await.expect("begin");
    c.batch_execute("ROLLBACK").await.expect("rollback");
    for begin in ["BEGIN ISOLATION LEVEL SERIALIZABLE", "BEGIN READ WRITE"] {
        c.batch_execute(begin).await.expect(begin);
        assert_eq!(
            port_of(&c, "SELECT current_setting('port')").await,
            primary,
            "{begin}"
        );
        c.batch_execute("COMMIT").await.expect("commit");
    }

    // weir.route commands inside a transaction weir holds keep the client in it.
    let c = connect(&proxy, None).await;
    c.batch_execute("BEGIN").await.expect("begin");
    assert_eq!(common::simple_value(&c, "SHOW weir.route").await, "auto");
    assert_eq!(port_of(&c, "SELECT current_setting('port')").await, replica);
    assert_eq!(port_of(&c, "SELECT current_setting('port')").await, replica);
    c.batch_execute("COMMIT").await.expect("commit");

    // A write after a read in such a transaction fails on the replica, as documented.
    // (A new client: the transactions above ran on the primary, so they count as writes.)
    let c = connect(&proxy, None).await;
    c.batch_execute("BEGIN").await.expect("begin");
    assert_eq!(port_of(&c, "SELECT current_setting('port')").await, replica);
    let err = c
        .batch_execute("INSERT INTO items (v) VALUES ('late')")
        .await
        .expect_err("write on a replica");
    assert_eq!(sqlstate(&err).as_deref(), Some("25006"));
    c.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(port_of(&c, "SELECT current_setting('port')").await, replica);
    proxy.stop().await;
}

#[tokio::test]
async fn pipelined_requests_are_routed_one_by_one() {
    use common::raw::{self, Raw};
    let cluster = shared();
    let primary = cluster.primary().port.to_string();
    let replica = cluster.replicas()[0].port.to_string();
    let proxy = routed_proxy(cluster, "").await;
    let mut c = Raw::login(proxy.port, USER, PASSWORD, DB).await;
    // One write carrying reads, a read-only transaction and a write: each request
    // is routed on its own, and a transaction's requests stay together.
    let mut batch = Vec::new();
    for sql in [
        "SELECT current_setting('port')",
        "BEGIN READ ONLY",
        "SELECT current_setting('port')",
        "COMMIT",
        "/* weir:replica */ SELECT current_setting('port')",
        "INSERT INTO items (v) VALUES ('pipelined') RETURNING current_setting('port')",
    ] {
        batch.extend(raw::query(sql));
    }
    c.send(&batch).await;
    let mut ports = Vec::new();
    for _ in 0..6 {
        ports.extend(raw::first_column(&c.until_ready().await));
    }
    assert_eq!(
        ports,
        [&replica, &replica, &replica, &primary].map(String::clone)
    );

    // Extended protocol: two Sync-ended batches in one write, a read then a write. (A new
    // client: the last one wrote, so its reads stay on the primary for a while.)
    let mut c = Raw::login(proxy.port, USER, PASSWORD, DB).await;
    let mut batch = Vec::new();
    for sql in [
        "SELECT current_setting('port')",
        "INSERT INTO items (v) VALUES ('ext') RETURNING current_setting('port')",
    ] {
        let mut parse = vec![0];
        parse.extend(sql.as_bytes());
        parse.extend([0, 0, 0]);
        batch.extend(raw::message(b'P', &parse));
        batch.extend(raw::message(b'B', &[0, 0, 0, 0, 0, 0, 0, 0]));
        batch.extend(raw::message(b'E', &[0, 0, 0, 0, 0]));
        batch.extend(raw::message(b'S', &[]));
    }
    c.send(&batch).await;
    let mut ports = Vec::new();
    for _ in 0..2 {
        ports.extend(raw::first_column(&c.until_ready().await));
    }
    assert_eq!(ports, [&replica, &primary].map(String::clone));
    proxy.stop().await;
}

#[tokio::test]
async fn weir_route_overrides_the_classification() {
    let cluster = shared();
    let primary = cluster.primary().port;
    let replica = cluster.replicas()[0].port;
    let proxy = routed_proxy(cluster, "").await;

    let c = connect(&proxy, None).await;
    c.batch_execute("SET weir.route = primary")
        .await
        .expect("set");
    assert_eq!(port_of(&c, "SELECT current_setting('port')").await, primary);
    let shown = common::simple_value(&c, "SHOW weir.route").await;
    assert_eq!(shown, "primary");
    c.batch_execute("RESET weir.route").await.expect("reset");
    assert_eq!(port_of(&c, "SELECT current_setting('port')").await, replica);
    let err = c
        .batch_execute("SET weir.route = sideways")
        .await
        .expect_err("bad value");
    assert_eq!(sqlstate(&err).as_deref(), Some("22023"));
    assert_eq!(port_of(&c, "SELECT current_setting('port')").await, replica);

    // A second DATABASE_URL for reads: everything goes to a replica, writes fail there.
    let reader = connect(&proxy, Some("-c weir.route=replica")).await;
    assert_eq!(
        port_of(&reader, "SELECT current_setting('port')").await,
        replica
    );
    for write in [
        "INSERT INTO items (v) VALUES ('x')",
        "SELECT nextval('items_id_seq')",
    ] {
        let err = reader.batch_execute(write).await.expect_err(write);
        assert_eq!(
            sqlstate(&err).as_deref(),
            Some("25006"),
            "{write} on a replica"
        );
    }
    assert_eq!(
        common::simple_value(&reader, "SHOW weir.route").await,
        "replica"
    );

    // Never sent to a server: the servers do not know the setting.
    let direct = cluster
        .psql(
            primary,
            DB,
            "SELECT count(*) FROM pg_settings WHERE name = 'weir.route'",
        )
        .expect("psql");
    assert_eq!(direct.trim(), "0");
    proxy.stop().await;
}

#[tokio::test]
async fn session_mode_stays_on_the_primary_unless_told_replica() {
    let cluster = shared();
    let primary = cluster.primary().port;
    let replica = cluster.replicas()[0].port;
    let toml = routed::toml(cluster, "").replace("[pool]", "[pool]\nmode = \"session\"");
    let proxy = routed::start_proxy(&toml).await;
    let c = connect(&proxy, None).await;
    for _ in 0..3 {
        assert_eq!(port_of(&c, "SELECT current_setting('port')").await, primary);
    }
    // The whole session on a replica: every statement, one after another.
    let reader = connect(&proxy, Some("-c weir.route=replica")).await;
    for _ in 0..3 {
        assert_eq!(
            port_of(&reader, "SELECT current_setting('port')").await,
            replica
        );
    }
    proxy.stop().await;
}

#[tokio::test]
async fn primary_only_and_single_host_databases_do_not_route() {
    let cluster = shared();
    let primary = cluster.primary().port;
    let toml =
        routed::toml(cluster, "").replace("hosts = [", "routing = \"primary_only\"\nhosts = [");
    let proxy = Proxy::start(&toml).await;
    let c = connect(&proxy, None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(port_of(&c, "SELECT current_setting('port')").await, primary);
    proxy.stop().await;
}

#[tokio::test]
async fn a_client_always_reads_its_own_writes_from_a_delayed_replica() {
    let cluster = start_cluster(&[("recovery_min_apply_delay", "300ms")]);
    let primary = cluster.primary().port;
    let replica = cluster.replicas()[0].port;
    cluster
        .psql_as(
            primary,
            DB,
            USER,
            Some(PASSWORD),
            "CREATE TABLE log (id int PRIMARY KEY)",
        )
        .expect("schema");
    cluster
        .wait_for_replay(replica)
        .expect("replica catches up");
    let proxy = routed_proxy(&cluster, "").await;

    // A client without writes reads from the replica, however stale.
    let bystander = connect(&proxy, None).await;
    assert_eq!(
        port_of(&bystander, "SELECT current_setting('port')").await,
        replica
    );

    let c = connect(&proxy, None).await;
    let insert = c
        .prepare("INSERT INTO log VALUES ($1)")
        .await
        .expect("prepare");
    let read = c
        .prepare("SELECT count(*) FROM log WHERE id = $1")
        .await
        .expect("prepare");
    for i in 0..1000 {
        c.execute(&insert, &[&i]).await.expect("insert");
        let n: i64 = c.query_one(&read, &[&i]).await.expect("read").get(0);
        assert_eq!(
            n, 1,
            "iteration {i}: the client did not see the row it committed"
        );
        if i % 100 == 0 {
            // The same through the simple protocol.
            let n =
                common::simple_value(&c, &format!("SELECT count(*) FROM log WHERE id = {i}")).await;
            assert_eq!(n, "1", "iteration {i} (simple protocol)");
        }
    }
    // Once the replica has replayed the last write, the client's reads go back to it.
    let back = common::eventually_async(Duration::from_secs(10), || async {
        port_of(&c, "SELECT current_setting('port')").await == replica
    })
    .await;
    assert!(
        back,
        "reads never returned to the replica after it caught up"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn replicas_past_the_lag_limit_or_down_get_no_reads() {
    let mut cluster = start_cluster(&[]);
    let primary = cluster.primary().port;
    let replica = cluster.replicas()[0].port;
    cluster
        .psql_as(primary, DB, USER, Some(PASSWORD), "CREATE TABLE t (v int)")
        .expect("schema");
    cluster
        .wait_for_replay(replica)
        .expect("replica catches up");
    let proxy = routed_proxy(&cluster, "max_replica_lag = \"1s\"").await;
    let c = connect(&proxy, None).await;
    assert_eq!(port_of(&c, "SELECT current_setting('port')").await, replica);

    // Replay paused while the primary writes: the replica falls behind by more than 1s.
    cluster
        .psql(replica, DB, "SELECT pg_wal_replay_pause()")
        .expect("pause replay");
    cluster
        .psql(primary, DB, "INSERT INTO t VALUES (1)")
        .expect("write");
    let lagging = common::eventually_async(Duration::from_secs(10), || async {
        port_of(&c, "SELECT current_setting('port')").await == primary
    })
    .await;
    assert!(
        lagging,
        "reads kept going to a replica past max_replica_lag"
    );
    cluster
        .psql(replica, DB, "SELECT pg_wal_replay_resume()")
        .expect("resume replay");
    let caught_up = common::eventually_async(Duration::from_secs(10), || async {
        port_of(&c, "SELECT current_setting('port')").await == replica
    })
    .await;
    assert!(caught_up, "reads never returned to the replica");

    // The replica stops: every read still succeeds, on the primary.
    cluster.stop_server(replica).expect("stop replica");
    for _ in 0..50 {
        assert_eq!(port_of(&c, "SELECT current_setting('port')").await, primary);
    }
    let hosts = proxy.weir.as_ref().expect("running").hosts(DB);
    assert!(
        hosts.iter().any(|h| h.role == "replica" && !h.healthy),
        "the stopped replica is still healthy: {hosts:?}"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_to_session_mode_leaves_connected_clients_routing_their_reads() {
    let cluster = shared();
    let replica = cluster.replicas()[0].port;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("weir.toml");
    let toml = routed::toml(cluster, "");
    std::fs::write(&path, &toml).expect("write config");
    let proxy = Proxy::start_file(&path).await;
    routed::wait_for_roles(&proxy).await;
    let c = connect(&proxy, None).await;
    assert_eq!(port_of(&c, "SELECT current_setting('port')").await, replica);

    let session = toml.replace("[pool]\n", "[pool]\nmode = \"session\"\n");
    assert_ne!(session, toml);
    std::fs::write(&path, &session).expect("rewrite");
    let (console, conn) = tokio_postgres::connect(
        &proxy.url(common::admin::ADMIN, common::admin::ADMIN_PASSWORD, "weir"),
        NoTls,
    )
    .await
    .expect("admin console");
    tokio::spawn(conn);
    console.simple_query("RELOAD").await.expect("RELOAD");

    // The client logged in under transaction mode and keeps it: its reads are still
    // routed, statement by statement, to the replica.
    for _ in 0..3 {
        assert_eq!(port_of(&c, "SELECT current_setting('port')").await, replica);
    }
    proxy.stop().await;
}
