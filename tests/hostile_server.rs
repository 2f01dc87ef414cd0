//! Hostile servers: a fake PostgreSQL on a loopback port that answers weir's login with
//! what a broken or malicious server might send. Each case checks the client hears a
//! clear error and that weir keeps serving clients of a real server meanwhile.

mod common;

use std::time::Duration;

use common::{assert_serving, config_toml, fresh_database, sqlstate, Proxy, PASSWORD, USER};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Reads one length-prefixed packet (startup) or tagged message; returns its body.
async fn read_packet(stream: &mut TcpStream, tagged: bool) -> Option<Vec<u8>> {
    if tagged {
        stream.read_u8().await.ok()?;
    }
    let len = stream.read_u32().await.ok()? as usize;
    let mut body = vec![0u8; len.checked_sub(4)?];
    stream.read_exact(&mut body).await.ok()?;
    Some(body)
}

/// An Authentication message with `code` and `data`.
fn auth(code: i32, data: &[u8]) -> Vec<u8> {
    let mut out = vec![b'R'];
    out.extend_from_slice(&((8 + data.len()) as u32).to_be_bytes());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// A fake server that asks every login for SCRAM-SHA-256 with `iterations` iterations, then
/// waits for the answer (which weir must never compute). With `knows_tls`, it answers an
/// SSLRequest `N` as PostgreSQL without ssl does; without, it takes the SSLRequest for a
/// startup packet, as a minimal server would. Returns its port.
async fn scram_server(iterations: u64, knows_tls: bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                // weir asks for TLS first (server_tls.mode = "prefer").
                if read_packet(&mut stream, false).await? == [0x04, 0xd2, 0x16, 0x2f] && knows_tls {
                    stream.write_all(b"N").await.ok()?;
                    read_packet(&mut stream, false).await?;
                }
                stream
                    .write_all(&auth(10, b"SCRAM-SHA-256\0\0"))
                    .await
                    .ok()?;
                let first = read_packet(&mut stream, true).await?;
                let text = String::from_utf8_lossy(&first).into_owned();
                let nonce = text.split("r=").nth(1)?.to_owned();
                let challenge = format!("r={nonce}fake,s=c2FsdHNhbHQ=,i={iterations}");
                stream
                    .write_all(&auth(11, challenge.as_bytes()))
                    .await
                    .ok()?;
                // Hold the connection: an honest answer would take PBKDF2 at that count.
                let _ = read_packet(&mut stream, true).await;
                Some(())
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_scram_iteration_count_is_refused_without_stalling_anyone() {
    // The second fake does not understand SSLRequest: weir connects again without it.
    for knows_tls in [true, false] {
        absurd_iterations(knows_tls).await;
    }
}

async fn absurd_iterations(knows_tls: bool) {
    let db = fresh_database();
    let evil = scram_server(2_000_000_000, knows_tls).await;
    let tail = format!("[[databases]]\nname = \"evil\"\nhosts = [\"127.0.0.1:{evil}\"]\n");
    let proxy = Proxy::start(&config_toml(&db, "", &tail)).await;
    let attempt = proxy.try_client(USER, PASSWORD, "evil");
    let e = match tokio::time::timeout(Duration::from_secs(10), attempt).await {
        Ok(Err(e)) => e,
        Ok(Ok(_)) => panic!("a login through the fake server must fail"),
        Err(_) => panic!("weir was still deriving keys after 10 s"),
    };
    assert_eq!(sqlstate(&e).as_deref(), Some("08001"), "{e}");
    let message = e
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default();
    assert!(message.contains("iterations"), "{message}");
    assert_serving(&proxy, &db).await;
    proxy.stop().await;
}

#[tokio::test]
async fn require_never_falls_back_to_plaintext() {
    let db = fresh_database();
    // A server that does not understand SSLRequest: under prefer weir would connect
    // again without TLS; under require it must not.
    let plain_only = scram_server(4096, false).await;
    let tail = format!(
        "[[databases]]\nname = \"plain\"\nhosts = [\"127.0.0.1:{plain_only}\"]\n\
         [server_tls]\nmode = \"require\"\n"
    );
    let proxy = Proxy::start(&config_toml(&db, "", &tail)).await;
    let e = proxy
        .try_client(USER, PASSWORD, "plain")
        .await
        .expect_err("no TLS, no connection");
    assert_eq!(sqlstate(&e).as_deref(), Some("08001"), "{e}");
    let message = e
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default();
    assert!(message.contains("TLS to server"), "{message}");
    proxy.stop().await;
}
