//! The metrics listener: `/metrics` parses as Prometheus text and moves with the load,
//! `/health` says whether weir can take writes, and Debian's PgBouncer exporter scrapes
//! weir's admin console unmodified.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::admin::{admin_toml, ADMIN, ADMIN_PASSWORD};
use common::scrape::{get, metrics_addr, scrape_until, value, METRICS};
use common::{fresh_database, simple_value, Proxy, USER};

/// Where Debian's exporter is installed (`apt-get install prometheus-pgbouncer-exporter`).
const EXPORTER: &str = "/usr/bin/prometheus-pgbouncer-exporter";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_their_counters_move_with_the_load() {
    let db = fresh_database();
    let proxy = Proxy::start(&admin_toml(&db, "", METRICS)).await;
    let addr = metrics_addr(&proxy);
    let client = proxy.client(&db).await;
    for i in 0..5 {
        simple_value(&client, &format!("SELECT {i}")).await;
    }
    let pool = [("database", db.as_str()), ("user", USER)];
    let idle = |s: &prometheus_parse::Scrape, what: &str| {
        value(
            s,
            what,
            &[("database", &db), ("state", "idle"), ("role", "primary")],
        )
    };
    let before = scrape_until(addr, |s| {
        value(s, "weir_pool_transactions_total", &pool) >= 5.0
            && idle(s, "weir_pool_clients") == 1.0
            && idle(s, "weir_pool_servers") == 1.0
    })
    .await;
    let xacts = value(&before, "weir_pool_transactions_total", &pool);
    assert!(xacts >= 5.0, "{xacts}");
    assert_eq!(
        value(
            &before,
            "weir_pool_clients",
            &[("database", &db), ("state", "idle"), ("role", "primary")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &before,
            "weir_pool_servers",
            &[("database", &db), ("state", "idle"), ("role", "primary")]
        ),
        1.0
    );
    assert_eq!(value(&before, "weir_host_up", &[("database", &db)]), 1.0);
    assert_eq!(
        value(
            &before,
            "weir_host_role",
            &[("database", &db), ("role", "primary")]
        ),
        1.0
    );

    for i in 0..7 {
        simple_value(&client, &format!("SELECT {i}")).await;
    }
    let after = scrape_until(addr, |s| {
        value(s, "weir_pool_transactions_total", &pool) - xacts >= 7.0
    })
    .await;
    assert_eq!(
        value(&after, "weir_pool_transactions_total", &pool) - xacts,
        7.0
    );
    assert!(
        value(&after, "weir_pool_sent_bytes_total", &pool)
            > value(&before, "weir_pool_sent_bytes_total", &pool)
    );
    let waits = value(&after, "weir_pool_wait_seconds", &pool);
    assert_eq!(waits, value(&after, "weir_pool_transactions_total", &pool));
    assert!(
        value(
            &after,
            "weir_routed_transactions_total",
            &[("database", &db), ("role", "primary")]
        ) >= 12.0
    );

    let (status, body) = get(addr, "/health").await;
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, _) = get(addr, "/nothing-here").await;
    assert_eq!(status, 404);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_while_no_primary_is_known() {
    let db = fresh_database();
    // Two hosts nobody listens on: the health checks never find a primary.
    let closed = |_| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port()
    };
    let (a, b): (u16, u16) = (closed(0), closed(1));
    let toml = admin_toml(&db, "", METRICS).replace(
        &format!("hosts = [\"127.0.0.1:{}\"]", common::pg().primary().port),
        &format!("hosts = [\"127.0.0.1:{a}\", \"127.0.0.1:{b}\"]"),
    );
    let proxy = Proxy::start(&toml).await;
    let (status, body) = get(metrics_addr(&proxy), "/health").await;
    assert_eq!(status, 503);
    assert!(body.contains(&db), "{body}");
    // Not ready, but alive: a liveness probe must not restart weir for this.
    let (status, body) = get(metrics_addr(&proxy), "/health/live").await;
    assert_eq!((status, body.as_str()), (200, "alive\n"));
    proxy.stop().await;
}

/// Runs Debian's exporter against weir's console and returns what it serves at /metrics.
async fn exporter_scrape(weir_port: u16) -> String {
    assert!(
        std::path::Path::new(EXPORTER).is_file(),
        "no exporter at {EXPORTER}: apt-get install prometheus-pgbouncer-exporter (.ci/run does)"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut child = Command::new(EXPORTER)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--pgbouncer-host", "127.0.0.1"])
        .args(["--pgbouncer-port", &weir_port.to_string()])
        .args(["--pgbouncer-user", ADMIN])
        .env("PGPASSWORD", ADMIN_PASSWORD)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the exporter");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let until = Instant::now() + Duration::from_secs(20);
    let body = loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("the exporter exited ({status}) against weir:\n{err}");
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            let (status, body) = get(addr, "/metrics").await;
            assert_eq!(status, 200, "{body}");
            break body;
        }
        assert!(
            Instant::now() < until,
            "the exporter did not listen within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debians_pgbouncer_exporter_scrapes_the_console() {
    let db = fresh_database();
    let proxy = Proxy::start(&admin_toml(&db, "", "")).await;
    let client = proxy.client(&db).await;
    for i in 0..3 {
        simple_value(&client, &format!("SELECT {i}")).await;
    }
    let body = exporter_scrape(proxy.port).await;
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .expect("the exporter's output parses");
    let mut seen: HashMap<&str, f64> = HashMap::new();
    for name in [
        "pgbouncer_active_clients",
        "pgbouncer_waiting_clients",
        "pgbouncer_requests_total",
        "pgbouncer_received_bytes_total",
        "pgbouncer_pool_size",
    ] {
        seen.insert(name, value(&scrape, name, &[("database", &db)]));
    }
    assert_eq!(seen["pgbouncer_active_clients"], 1.0, "{seen:?}");
    assert_eq!(seen["pgbouncer_waiting_clients"], 0.0, "{seen:?}");
    assert!(seen["pgbouncer_requests_total"] >= 3.0, "{seen:?}");
    assert_eq!(seen["pgbouncer_pool_size"], 5.0, "{seen:?}");
    assert!(value(&scrape, "pgbouncer_used_clients", &[]) >= 1.0);
    proxy.stop().await;
}
