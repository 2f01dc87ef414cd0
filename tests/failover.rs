//! A primary change through weir: the primary crashes, a replica is promoted, and clients
//! keep their connections while their next transactions wait for, then use, the new
//! primary. An old primary that comes back never gets a write.

mod common;

use std::time::Duration;

use common::admin::{row_where, show, ADMIN, ADMIN_PASSWORD};
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

/// Lets `USER`, as whom weir promotes in these tests, run `pg_promote` (superusers only
/// unless granted), on the primary and, once replayed, the replica.
fn grant_promote(cluster: &weir::pgcluster::PgCluster) {
    let sql = format!("GRANT EXECUTE ON FUNCTION pg_promote(boolean, integer) TO {USER}");
    cluster
        .psql(cluster.primary().port, DB, &sql)
        .expect("grant pg_promote");
    cluster
        .wait_for_replay(cluster.replicas()[0].port)
        .expect("replica has the grant");
}

/// A primary and a replica with table `t (v int)`, and weir in front with `settings`
/// added to `[cluster]`: the start of most tests here.
async fn start(settings: &str) -> (weir::pgcluster::PgCluster, u16, u16, Proxy) {
    let cluster = start_cluster(&[]);
    on_primary_then_replayed(&cluster, "CREATE TABLE t (v int)");
    let old = cluster.primary().port;
    let new = cluster.replicas()[0].port;
    let toml = with_cluster_settings(&routed::toml(&cluster, ""), settings);
    let proxy = routed::start_proxy(&toml).await;
    (cluster, old, new, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_replica_takes_the_writes_and_clients_keep_their_connections() {
    let (mut cluster, old, new, proxy) = start("down_after = 2\nfailover_timeout = \"30s\"").await;
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
    // SHOW HOSTS tells the operator the same, with the time of the role change.
    let console = proxy
        .try_client(ADMIN, ADMIN_PASSWORD, "weir")
        .await
        .expect("admin console");
    let hosts = show(&console, "SHOW HOSTS").await;
    let promoted = row_where(&hosts, "host", &format!("127.0.0.1:{new}"));
    assert_eq!(promoted["role"].as_deref(), Some("primary"), "{hosts:?}");
    assert_eq!(promoted["healthy"].as_deref(), Some("1"), "{hosts:?}");
    let changed = promoted["last_role_change"]
        .as_deref()
        .expect("a role change time");
    assert!(changed.ends_with(" UTC"), "{changed}");
    let returned = row_where(&hosts, "host", &format!("127.0.0.1:{old}"));
    assert_eq!(returned["healthy"].as_deref(), Some("0"), "{hosts:?}");
    assert!(
        returned["last_error"].is_some(),
        "why it is refused: {hosts:?}"
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
    let (mut cluster, old, replica, proxy) =
        start("down_after = 1\nfailover_timeout = \"1s\"").await;
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
    let (mut cluster, old, new, proxy) = start(
        "down_after = 2\nfailover_timeout = \"30s\"\nauto_promote = true\npromote_after = \"1s\"",
    )
    .await;
    grant_promote(&cluster);
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
    let (mut cluster, old, new, proxy) = start("down_after = 2").await;
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

/// What the writers saw.
#[derive(Default)]
struct Writes {
    /// (client, n) of every INSERT weir acknowledged.
    acked: Vec<(i32, i32)>,
    /// SQLSTATEs of the INSERTs that failed.
    failed: Vec<String>,
    /// When the first INSERT after the crash was acknowledged.
    first_after_crash: Option<tokio::time::Instant>,
}

/// 20 clients insert continuously while the primary crashes and a replica takes over
/// (promoted by the test, or by weir with `auto_promote`); 5 more sit idle. Nothing
/// acknowledged may be lost, failures must be 08006/08001 and never a hang, idle clients
/// keep their connections, and the old primary, restarted on its own, gets no writes.
async fn twenty_writers_through_a_failover(auto_promote: bool) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    const WRITERS: i32 = 20;
    // Synchronous replication: a commit is acknowledged once the replica has it, so a
    // crash loses nothing acknowledged. (With asynchronous replication, commits not yet
    // streamed die with the primary; no pooler can bring them back.)
    let mut cluster = start_cluster(&[]);
    on_primary_then_replayed(&cluster, "CREATE TABLE acks (client int, n int)");
    let old = cluster.primary().port;
    let new = cluster.replicas()[0].port;
    // On the primary alone (ALTER SYSTEM is not replicated): the promoted replica must
    // not wait for a standby of its own.
    for sql in [
        "ALTER SYSTEM SET synchronous_standby_names = '*'",
        "ALTER SYSTEM SET synchronous_commit = on",
        "SELECT pg_reload_conf()",
    ] {
        cluster.psql(old, DB, sql).expect("synchronous replication");
    }
    grant_promote(&cluster);
    let promote = if auto_promote {
        "\nauto_promote = true\npromote_after = \"1s\""
    } else {
        ""
    };
    let toml = with_cluster_settings(
        &routed::toml(&cluster, ""),
        &format!("down_after = 2\nfailover_timeout = \"30s\"{promote}"),
    )
    .replace("size = 4", "size = 10");
    let proxy = routed::start_proxy(&toml).await;
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(connect(&proxy).await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let crashed = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(Mutex::new(Writes::default()));
    let mut tasks = Vec::new();
    for client in 0..WRITERS {
        let c = connect(&proxy).await;
        let (stop, crashed, writes) = (stop.clone(), crashed.clone(), writes.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&client, &n];
                let insert = c.execute("INSERT INTO acks VALUES ($1, $2)", &params);
                // Longer than failover_timeout: only a hang gets here.
                let outcome = tokio::time::timeout(Duration::from_secs(45), insert)
                    .await
                    .unwrap_or_else(|_| panic!("client {client}: an INSERT hung"));
                let mut w = writes.lock().expect("lock");
                match outcome {
                    Ok(_) => {
                        w.acked.push((client, n));
                        if crashed.load(Ordering::Relaxed) && w.first_after_crash.is_none() {
                            w.first_after_crash = Some(tokio::time::Instant::now());
                        }
                    }
                    Err(e) => w
                        .failed
                        .push(sqlstate(&e).unwrap_or_else(|| format!("{e}"))),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Watches the replica directly: when does it leave recovery (accept writes)?
    let replica_url =
        format!("host=127.0.0.1 port={new} user={USER} password={PASSWORD} dbname={DB}");
    let (direct, conn) = tokio_postgres::connect(&replica_url, NoTls)
        .await
        .expect("connect to the replica directly");
    tokio::spawn(conn);
    let accepting = tokio::spawn(async move {
        loop {
            let row = direct.query_one("SELECT pg_is_in_recovery()", &[]).await;
            if matches!(row, Ok(r) if !r.get::<_, bool>(0)) {
                return tokio::time::Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let t0 = tokio::time::Instant::now();
    cluster.kill_server(old).expect("crash the primary");
    crashed.store(true, Ordering::Relaxed);
    let promoted_at = if auto_promote {
        None
    } else {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let c = tokio::task::spawn_blocking(move || {
            cluster.promote(new).expect("promote");
            cluster
        });
        cluster = c.await.expect("promotion");
        Some(tokio::time::Instant::now())
    };
    let resumed = common::eventually(Duration::from_secs(40), || {
        writes.lock().expect("lock").first_after_crash.is_some()
    })
    .await;
    assert!(resumed, "writes never resumed after the failover");
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("writer");
    }
    let w = std::mem::take(&mut *writes.lock().expect("lock"));
    let first = w.first_after_crash.expect("resumed");
    let accepting = accepting.await.expect("the replica left recovery");
    // Printed for docs/failover.md and docs/benchmarks.md (a measurement, not a check).
    eprintln!(
        "failover timeline (auto_promote = {auto_promote}): crash at 0 ms; pg_ctl promote returned at {}; new primary accepts writes at {} ms; first write through weir acknowledged at {} ms (+{} ms); {} rows acknowledged, {} failed: {:?}",
        promoted_at.map_or("- (weir promoted)".to_owned(), |p| format!("{} ms", (p - t0).as_millis())),
        (accepting - t0).as_millis(),
        (first - t0).as_millis(),
        first.saturating_duration_since(accepting).as_millis(),
        w.acked.len(),
        w.failed.len(),
        w.failed,
    );
    assert!(
        w.failed.iter().all(|s| s == "08006" || s == "08001"),
        "failures other than 08006/08001: {:?}",
        w.failed
    );
    // Every acknowledged row is on the new primary.
    let rows = cluster
        .psql(new, DB, "SELECT client || ':' || n FROM acks")
        .expect("rows");
    let present: std::collections::HashSet<&str> = rows.lines().collect();
    let lost: Vec<_> = w
        .acked
        .iter()
        .filter(|(c, n)| !present.contains(format!("{c}:{n}").as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged rows lost: {lost:?}",
        lost.len()
    );
    // Idle clients kept their connections.
    for c in &idle {
        let row = c
            .query_one("SELECT current_setting('port')", &[])
            .await
            .expect("idle client still connected");
        assert_eq!(row.get::<_, String>(0), new.to_string());
    }
    // The old primary comes back on its own, still a primary: it gets no writes.
    cluster.start_server(old).expect("restart the old primary");
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (i, c) in idle.iter().enumerate() {
        assert_eq!(insert_as(c, i).await, new);
    }
    let on_old = cluster
        .psql(old, DB, "SELECT count(*) FROM acks WHERE client < 0")
        .expect("old primary");
    assert_eq!(on_old.trim(), "0", "the old primary got writes");
    proxy.stop().await;
}

/// An INSERT by an idle client (client number below 0), and where it ran.
async fn insert_as(c: &Client, i: usize) -> u16 {
    let client = -1 - i32::try_from(i).expect("small");
    let row = c
        .query_one(
            "INSERT INTO acks VALUES ($1, 0) RETURNING current_setting('port')",
            &[&client],
        )
        .await
        .expect("insert");
    row.get::<_, String>(0).parse().expect("a port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_writers_through_a_promotion_lose_nothing_acknowledged() {
    twenty_writers_through_a_failover(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_writers_through_an_auto_promotion_lose_nothing_acknowledged() {
    twenty_writers_through_a_failover(true).await;
}
