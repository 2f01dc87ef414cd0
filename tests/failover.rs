//! A primary change through weir: the primary crashes, a replica is promoted, and clients
//! keep their connections while their next transactions wait for, then use, the new
//! primary. An old primary that comes back never gets a write.

mod common;

use std::time::Duration;

use common::routed::{self, on_primary_then_replayed, start_cluster, DB};
use common::{sqlstate, Proxy, PASSWORD, USER};
use tokio_postgres::{Client, NoTls};

async fn connect(proxy: &Proxy) -> Client {
    let (client, conn) = tokio_postgres::connect(&proxy.url(USER, PASSWORD, DB), NoTls)
        .await
        .expect("connect through weir");
    tokio::spawn(conn);
    client
}

/// The port of the server that inserted a row.
async fn insert(client: &Client, v: i32) -> Result<u16, tokio_postgres::Error> {
    let row = client
        .query_one(
            "INSERT INTO t VALUES ($1) RETURNING current_setting('port')",
            &[&v],
        )
        .await?;
    Ok(row.get::<_, String>(0).parse().expect("a port"))
}

/// Sessions of `USER` on `DB` at the server on `port`: weir's connections there.
fn weir_connections(cluster: &weir::pgcluster::PgCluster, port: u16) -> u32 {
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = '{USER}' AND datname = '{DB}'"
    );
    cluster
        .psql(port, DB, &sql)
        .map(|n| n.trim().parse().unwrap_or(0))
        .unwrap_or(0)
}

fn with_cluster_settings(toml: &str, settings: &str) -> String {
    toml.replace("[cluster]", &format!("[cluster]\n{settings}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_replica_takes_the_writes_and_clients_keep_their_connections() {
    let mut cluster = start_cluster(&[]);
    on_primary_then_replayed(&cluster, "CREATE TABLE t (v int)");
    let old = cluster.primary().port;
    let new = cluster.replicas()[0].port;
    let toml = with_cluster_settings(
        &routed::toml(&cluster, ""),
        "down_after = 2\nfailover_timeout = \"30s\"",
    );
    let proxy = routed::start_proxy(&toml).await;
    let idle = connect(&proxy).await;
    let writer = connect(&proxy).await;
    assert_eq!(insert(&writer, 1).await.expect("insert"), old);
    cluster.wait_for_replay(new).expect("replica has the row");

    // The primary crashes; a moment later the replica is promoted.
    cluster.kill_server(old).expect("crash the primary");
    let promoted = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_secs(1));
        cluster.promote(new).expect("promote the replica");
        cluster
    });
    // The next write waits for the new primary and lands there.
    assert_eq!(insert(&writer, 2).await.expect("write after failover"), new);
    let mut cluster = promoted.await.expect("promotion");
    // A client that sat idle through it all still has its connection, and writes too.
    assert_eq!(insert(&idle, 3).await.expect("idle client writes"), new);

    // The old primary comes back, still a primary by its own account: refused.
    cluster.start_server(old).expect("restart the old primary");
    let refused = common::eventually(Duration::from_secs(10), || {
        let hosts = proxy.weir.as_ref().expect("running").hosts(DB);
        hosts
            .iter()
            .any(|h| h.addr.ends_with(&format!(":{old}")) && h.role == "primary" && !h.healthy)
    })
    .await;
    assert!(
        refused,
        "the returning old primary was not seen and refused"
    );
    for v in 4..10 {
        assert_eq!(insert(&writer, v).await.expect("write"), new, "row {v}");
    }
    let on_new = cluster
        .psql(new, DB, "SELECT string_agg(v::text, ',' ORDER BY v) FROM t")
        .expect("count");
    assert_eq!(
        on_new.trim(),
        "1,2,3,4,5,6,7,8,9",
        "every committed row is on the new primary"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_primary_writes_fail_after_the_timeout_and_reads_go_on() {
    let mut cluster = start_cluster(&[]);
    on_primary_then_replayed(&cluster, "CREATE TABLE t (v int)");
    let old = cluster.primary().port;
    let replica = cluster.replicas()[0].port;
    let toml = with_cluster_settings(
        &routed::toml(&cluster, ""),
        "down_after = 1\nfailover_timeout = \"1s\"",
    );
    let proxy = routed::start_proxy(&toml).await;
    let c = connect(&proxy).await;
    cluster.kill_server(old).expect("crash the primary");
    let err = insert(&c, 1).await.expect_err("no primary");
    assert_eq!(sqlstate(&err).as_deref(), Some("08001"), "{err:?}");
    assert!(
        format!("{err:?}").contains("no primary available"),
        "the error says why: {err:?}"
    );
    let reader = connect(&proxy).await;
    for _ in 0..5 {
        let row = reader
            .query_one("SELECT current_setting('port')", &[])
            .await
            .expect("reads go on");
        assert_eq!(row.get::<_, String>(0), replica.to_string());
    }
    // The same client goes on once a primary is back.
    cluster.start_server(old).expect("restart");
    let back = common::eventually_async(Duration::from_secs(15), || async {
        insert(&c, 2).await.is_ok()
    })
    .await;
    assert!(back, "writes never resumed");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auto_promote_weir_promotes_the_replica_itself() {
    let mut cluster = start_cluster(&[]);
    on_primary_then_replayed(&cluster, "CREATE TABLE t (v int)");
    let old = cluster.primary().port;
    let new = cluster.replicas()[0].port;
    // pg_promote is for superusers unless granted; weir promotes as the app user here.
    cluster
        .psql(
            old,
            DB,
            &format!("GRANT EXECUTE ON FUNCTION pg_promote(boolean, integer) TO {USER}"),
        )
        .expect("grant pg_promote");
    cluster.wait_for_replay(new).expect("replica has the grant");
    let toml = with_cluster_settings(
        &routed::toml(&cluster, ""),
        "down_after = 2\nfailover_timeout = \"30s\"\nauto_promote = true\npromote_after = \"1s\"",
    );
    let proxy = routed::start_proxy(&toml).await;
    let c = connect(&proxy).await;
    assert_eq!(insert(&c, 1).await.expect("insert"), old);
    cluster.wait_for_replay(new).expect("replica has the row");
    cluster.kill_server(old).expect("crash the primary");
    // Nobody promotes anything by hand: weir does, and the write lands there.
    assert_eq!(insert(&c, 2).await.expect("write after promotion"), new);
    let in_recovery = cluster
        .psql(new, DB, "SELECT pg_is_in_recovery()")
        .expect("ask the replica");
    assert_eq!(in_recovery.trim(), "f", "the replica was promoted");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_primary_is_warmed_before_traffic_arrives() {
    let mut cluster = start_cluster(&[]);
    on_primary_then_replayed(&cluster, "CREATE TABLE t (v int)");
    let old = cluster.primary().port;
    let new = cluster.replicas()[0].port;
    let toml = with_cluster_settings(&routed::toml(&cluster, ""), "down_after = 2")
        .replace("[pool]", "[pool]\nmin_size = 2");
    let proxy = routed::start_proxy(&toml).await;
    // A login creates the pools; then nobody sends anything.
    let _idle = connect(&proxy).await;
    // The health check's connection is the replica's only one.
    assert_eq!(weir_connections(&cluster, new), 1);
    cluster.kill_server(old).expect("crash the primary");
    cluster.promote(new).expect("promote");
    let warmed = common::eventually(Duration::from_secs(15), || {
        weir_connections(&cluster, new) >= 3
    })
    .await;
    assert!(
        warmed,
        "the new primary has {} of weir's connections, want the health check + min_size 2",
        weir_connections(&cluster, new)
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_caught_on_the_dying_primary_gets_08006_and_the_client_goes_on() {
    let mut cluster = start_cluster(&[]);
    on_primary_then_replayed(&cluster, "CREATE TABLE t (v int)");
    let old = cluster.primary().port;
    let new = cluster.replicas()[0].port;
    let toml = with_cluster_settings(&routed::toml(&cluster, ""), "down_after = 2");
    let proxy = routed::start_proxy(&toml).await;
    let c = connect(&proxy).await;
    c.batch_execute("BEGIN; INSERT INTO t VALUES (1)")
        .await
        .expect("open a transaction on the primary");
    let sleeping = tokio::spawn(async move {
        let result = c.batch_execute("SELECT pg_sleep(30)").await;
        (c, result)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.kill_server(old).expect("crash the primary");
    let (c, result) = sleeping.await.expect("task");
    let err = result.expect_err("the transaction died with its server");
    assert_eq!(sqlstate(&err).as_deref(), Some("08006"), "{err:?}");
    cluster.promote(new).expect("promote");
    // The same connection goes on, on the new primary; the lost row was never committed.
    assert_eq!(insert(&c, 2).await.expect("next transaction"), new);
    let rows = cluster
        .psql(new, DB, "SELECT string_agg(v::text, ',') FROM t")
        .expect("rows");
    assert_eq!(rows.trim(), "2");
    proxy.stop().await;
}
