//! The status page (`GET /` on the metrics listener) in a real browser: headless Chromium
//! loads it, its script fetches `/status.json` and fills the tables, and what the page
//! then shows is checked against SHOW HOSTS and SHOW POOLS on the admin console and the
//! routing counters, while clients keep a primary and a replica busy.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::admin::{show, Row, ADMIN, ADMIN_PASSWORD};
use common::routed::{self, start_cluster, DB};
use common::scrape::{get, metrics_addr, scrape, value, METRICS};
use common::{PASSWORD, USER};

/// Clients kept connected and busy while the page is read.
const CLIENTS: usize = 6;

/// The Chromium binary (Debian's `chromium` package; `.ci/run` installs it).
fn chromium() -> &'static str {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("Chromium is needed for this test: apt-get install -y chromium (.ci/run does)")
}

/// The page's DOM after its script ran, as headless Chromium serialises it.
fn rendered(url: &str) -> String {
    let profile = tempfile_dir();
    let output = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            // Time for the first fetch and a refresh or two; virtual time skips the waits.
            "--virtual-time-budget=5000",
            &format!("--user-data-dir={}", profile.display()),
            "--dump-dom",
            url,
        ])
        .output()
        .expect("run chromium");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 DOM")
}

/// A fresh directory for Chromium's profile.
fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-chromium-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("profile directory");
    dir
}

/// The rows of the table with id `table` in `dom`: each cell by its `data-col`.
fn page_rows(dom: &str, table: &str) -> Vec<BTreeMap<String, String>> {
    let start = dom
        .find(&format!("<table id=\"{table}\""))
        .unwrap_or_else(|| panic!("no table {table} in the page"));
    let rest = &dom[start..];
    let body = &rest[..rest.find("</table>").expect("table ends")];
    let body = &body[body.find("<tbody>").expect("a tbody")..];
    body.split("<tr>")
        .skip(1)
        .map(|row| {
            row.split("<td data-col=\"")
                .skip(1)
                .map(|cell| {
                    let (col, rest) = cell.split_once('"').expect("a column name");
                    let text = &rest[rest.find('>').expect("cell opens") + 1..];
                    let text = &text[..text.find("</td>").expect("cell ends")];
                    (col.to_owned(), unescape(text))
                })
                .collect()
        })
        .collect()
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

/// The text of the element with id `id`.
fn element_text(dom: &str, id: &str) -> String {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element {id}"));
    let rest = &dom[at..];
    let text = &rest[rest.find('>').expect("element opens") + 1..];
    unescape(&text[..text.find('<').expect("element ends")])
}

fn field(row: &Row, column: &str) -> String {
    row.get(column).cloned().flatten().unwrap_or_default()
}

fn number(text: &str) -> i64 {
    text.parse()
        .unwrap_or_else(|_| panic!("not a number: {text:?}"))
}

/// Transactions routed to `role` so far, from `/metrics`.
async fn routed_total(metrics: SocketAddr, role: &str) -> u64 {
    let s = scrape(metrics).await;
    value(
        &s,
        "weir_routed_transactions_total",
        &[("database", DB), ("role", role)],
    ) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_what_the_console_shows_under_load() {
    let cluster = start_cluster(&[]);
    cluster
        .psql_as(
            cluster.primary().port,
            DB,
            USER,
            Some(PASSWORD),
            "CREATE TABLE hits (n int)",
        )
        .expect("schema");
    cluster
        .wait_for_replay(cluster.replicas()[0].port)
        .expect("replica catches up");
    let toml = format!("{}{METRICS}", routed::toml(&cluster, ""));
    let proxy = routed::start_proxy(&toml).await;
    let metrics = metrics_addr(&proxy);

    // The page is one self-contained document: nothing is fetched from elsewhere.
    let (status, page) = get(metrics, "/").await;
    assert_eq!(status, 200);
    assert!(page.contains("<table id=\"hosts\""), "{page}");
    for external in ["http://", "https://", "src=", "<link", "@import"] {
        assert!(!page.contains(external), "the page refers to {external}");
    }

    // Load: reads (to the replica) and writes (to the primary), on more clients than
    // servers, so some wait.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for i in 0..CLIENTS {
        let client = proxy.client(DB).await;
        let (stop, done) = (stop.clone(), done.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let sql = if i % 3 == 0 {
                    "INSERT INTO hits VALUES (1)"
                } else {
                    "SELECT count(*) FROM pg_class"
                };
                client.simple_query(sql).await.expect("query under load");
                done.fetch_add(1, Ordering::Relaxed);
            }
            client
        }));
    }
    let warmed = common::eventually(Duration::from_secs(10), || {
        done.load(Ordering::Relaxed) > 200
    })
    .await;
    assert!(warmed, "the load never got going");

    let (admin, conn) = tokio_postgres::connect(
        &proxy.url(ADMIN, ADMIN_PASSWORD, "weir"),
        tokio_postgres::NoTls,
    )
    .await
    .expect("admin console");
    tokio::spawn(conn);

    let primary_before = routed_total(metrics, "primary").await;
    let replica_before = routed_total(metrics, "replica").await;
    let url = format!("http://{metrics}/");
    let dom = tokio::task::spawn_blocking(move || rendered(&url))
        .await
        .expect("chromium ran");
    let hosts = show(&admin, "SHOW HOSTS").await;
    let pools = show(&admin, "SHOW POOLS").await;
    let primary_after = routed_total(metrics, "primary").await;
    let replica_after = routed_total(metrics, "replica").await;

    assert!(
        dom.contains("data-loaded=\"1\""),
        "the page's script never loaded status.json: {dom}"
    );
    assert_eq!(element_text(&dom, "error"), "", "the page reports an error");

    // Hosts: the same hosts, roles and health as SHOW HOSTS.
    let shown: BTreeSet<_> = page_rows(&dom, "hosts")
        .iter()
        .map(|r| {
            (
                r["database"].clone(),
                r["host"].clone(),
                r["role"].clone(),
                r["healthy"].clone(),
            )
        })
        .collect();
    let console: BTreeSet<_> = hosts
        .iter()
        .map(|h| {
            let healthy = if field(h, "healthy") == "1" {
                "healthy"
            } else {
                "down"
            };
            (
                field(h, "database"),
                field(h, "host"),
                field(h, "role"),
                healthy.to_owned(),
            )
        })
        .collect();
    assert_eq!(shown, console);
    let roles: BTreeSet<_> = shown.iter().map(|h| h.2.as_str()).collect();
    assert_eq!(roles, BTreeSet::from(["primary", "replica"]));

    // Pools: the same pools; clients connected (active or waiting) do not change under
    // the load, so page and console agree on them exactly.
    let shown_pools = page_rows(&dom, "pools");
    let clients = |r: &BTreeMap<String, String>| number(&r["cl_active"]) + number(&r["cl_waiting"]);
    let shown_keys: BTreeSet<_> = shown_pools
        .iter()
        .map(|r| (r["database"].clone(), r["user"].clone(), clients(r)))
        .collect();
    let console_keys: BTreeSet<_> = pools
        .iter()
        .map(|p| {
            let n = number(&field(p, "cl_active")) + number(&field(p, "cl_waiting"));
            (field(p, "database"), field(p, "user"), n)
        })
        .collect();
    assert_eq!(shown_keys, console_keys);
    let ours = shown_pools
        .iter()
        .find(|r| r["database"] == DB && r["user"] == USER)
        .expect("the busy pool is shown");
    assert_eq!(clients(ours), CLIENTS as i64);
    let servers = number(&ours["sv_active"]) + number(&ours["sv_idle"]) + number(&ours["sv_login"]);
    assert!(
        (1..=8).contains(&servers),
        "{servers} servers for two hosts of pool.size 4"
    );
    // The cards add up the table.
    let total_clients: i64 = shown_pools.iter().map(clients).sum();
    let cards =
        number(&element_text(&dom, "cl_active")) + number(&element_text(&dom, "cl_waiting"));
    assert_eq!(cards, total_clients);
    assert_eq!(element_text(&dom, "healthy"), "2 of 2");

    // Routing: between the counters read before and after the page was loaded.
    let routing = page_rows(&dom, "routing");
    let row = routing
        .iter()
        .find(|r| r["database"] == DB)
        .expect("the routed database is shown");
    let (primary, replica) = (
        number(&row["primary"]) as u64,
        number(&row["replica"]) as u64,
    );
    assert!(
        (primary_before..=primary_after).contains(&primary),
        "primary {primary} not within {primary_before}..={primary_after}"
    );
    assert!(
        (replica_before..=replica_after).contains(&replica),
        "replica {replica} not within {replica_before}..={replica_after}"
    );
    assert!(primary > 0 && replica > 0, "both hosts served: {row:?}");

    // /status.json is what the page reads: valid JSON with SHOW's column names.
    let (status, json) = get(metrics, "/status.json").await;
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(doc["hosts"]["columns"][2], "role");
    assert_eq!(doc["pools"]["columns"][0], "database");

    stop.store(true, Ordering::Relaxed);
    for task in load {
        drop(task.await.expect("load client"));
    }
    drop(admin);
    proxy.stop().await;
}
