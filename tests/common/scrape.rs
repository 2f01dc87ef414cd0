//! Reading weir's metrics listener from tests: HTTP GET, and `/metrics` parsed with a
//! Prometheus text parser (`prometheus-parse`).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Proxy;

/// `[metrics]` on a free loopback port, to append to a configuration.
pub const METRICS: &str = "[metrics]\nlisten = \"127.0.0.1:0\"\n";

/// GETs `path` over HTTP/1.1; returns the status code and the body.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: weir\r\nAccept: */*\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
        .await
        .expect("an answer within 10 s")
        .expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, body.to_owned())
}

/// Scrapes `/metrics` and parses it with a Prometheus text parser.
pub async fn scrape(addr: SocketAddr) -> prometheus_parse::Scrape {
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text")
}

/// The value of `name` whose labels include all of `labels`.
pub fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .unwrap_or_else(|| panic!("no {name} with {labels:?}"));
    match &sample.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => *v,
        prometheus_parse::Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
        other => panic!("{name}: unexpected {other:?}"),
    }
}

pub fn metrics_addr(proxy: &Proxy) -> SocketAddr {
    proxy
        .weir
        .as_ref()
        .and_then(|w| w.metrics_addr())
        .expect("a metrics listener")
}

/// Scrapes until `ready` holds (a client hears its answer a moment before weir has
/// counted the transaction), at most 5 s; returns the last scrape either way.
pub async fn scrape_until(
    addr: SocketAddr,
    ready: impl Fn(&prometheus_parse::Scrape) -> bool,
) -> prometheus_parse::Scrape {
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let s = scrape(addr).await;
        if ready(&s) || tokio::time::Instant::now() >= until {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
