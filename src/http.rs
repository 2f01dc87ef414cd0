//! The metrics listener (`metrics.listen`): `/metrics` in the Prometheus text format,
//! `/health` for load balancers and orchestrators, and the status page (`/`, refreshed
//! from `/status.json`).
//!
//! Owns: a minimal HTTP/1.1 responder (one request per connection, then close).
//! Why not the exporter's own listener: it serves only `/metrics`, and weir needs
//! `/health` (and the status page) on the same port; this also drops hyper from the build.
//! Does not: compute metrics (see `admin::refresh_gauges`).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::app::Shared;

/// Longest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// A scraper that has not sent its request (or read the answer) by then is dropped.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `addr` and serves it until weir has stopped (through a shutdown it answers
/// `/health` with 503). Returns the bound address.
pub(crate) async fn start(addr: SocketAddr, shared: Arc<Shared>) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "metrics at /metrics, health at /health");
    tokio::spawn(async move {
        let mut stopped = shared.stopped.subscribe();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let shared = shared.clone();
                        tokio::spawn(async move {
                            let _ = tokio::time::timeout(IO_TIMEOUT, answer(stream, &shared)).await;
                        });
                    }
                    Err(e) => {
                        tracing::warn!("metrics listener: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = stopped.changed() => return,
            }
        }
    });
    Ok(local)
}

/// Reads one request and writes its answer.
async fn answer(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if head.len() > MAX_HEAD {
            return respond(&mut stream, 431, "text/plain", "request head too large\n").await;
        }
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" && method != "HEAD" {
        return respond(&mut stream, 405, "text/plain", "only GET is served\n").await;
    }
    match path {
        "/metrics" => {
            let body = match crate::metrics::handle() {
                Some(handle) => {
                    crate::admin::refresh_gauges(shared);
                    handle.run_upkeep();
                    handle.render()
                }
                None => String::new(),
            };
            respond(
                &mut stream,
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                &body,
            )
            .await
        }
        // Liveness: the process is up and serving. Unlike `/health`, not failed by a
        // failover (no primary known for a while), which a liveness probe must not
        // answer by restarting weir and dropping every client it holds.
        "/health/live" => respond(&mut stream, 200, "text/plain", "alive\n").await,
        "/health" => {
            let (ok, body) = crate::admin::health(shared);
            respond(&mut stream, if ok { 200 } else { 503 }, "text/plain", &body).await
        }
        "/" => {
            respond(
                &mut stream,
                200,
                "text/html; charset=utf-8",
                crate::admin::STATUS_PAGE,
            )
            .await
        }
        "/status.json" => {
            let body = crate::admin::status_json(shared);
            respond(&mut stream, 200, "application/json", &body).await
        }
        _ => {
            respond(
                &mut stream,
                404,
                "text/plain",
                "not found: try /, /status.json, /metrics, /health or /health/live\n",
            )
            .await
        }
    }
}

async fn respond(stream: &mut TcpStream, status: u16, kind: &str, body: &str) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
