//! Hostile servers: a fake PostgreSQL on a loopback port that answers weir's login with
//! what a broken or malicious server might send. Each case checks the client hears a
//! clear error and that weir keeps serving clients of a real server meanwhile.

mod common;

use std::time::Duration;

use common::{
    assert_serving, config_toml, db_message, fresh_database, sqlstate, Proxy, PASSWORD, USER,
};
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
    let message = db_message(&e);
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
    let message = db_message(&e);
    assert!(message.contains("TLS to server"), "{message}");
    proxy.stop().await;
}

/// A fake server that reads weir's startup (declining TLS) and answers it with `reply`,
/// then holds the connection until weir closes it. Returns its port.
async fn scripted_server(reply: Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let reply = reply.clone();
            tokio::spawn(async move {
                if read_packet(&mut stream, false).await? == [0x04, 0xd2, 0x16, 0x2f] {
                    stream.write_all(b"N").await.ok()?;
                    read_packet(&mut stream, false).await?;
                }
                stream.write_all(&reply).await.ok()?;
                let mut sink = [0u8; 1024];
                while stream.read(&mut sink).await.ok()? > 0 {}
                Some(())
            });
        }
    });
    port
}

/// A message with `tag` and `body`, its length word as announced by `len` (or the true
/// length when `None`).
fn message(tag: u8, body: &[u8], len: Option<u32>) -> Vec<u8> {
    let mut out = vec![tag];
    let true_len = u32::try_from(body.len() + 4).expect("small");
    out.extend_from_slice(&len.unwrap_or(true_len).to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_server_messages_are_errors_for_that_login_only() {
    let db = fresh_database();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "an ErrorResponse without a SQLSTATE",
            message(b'E', b"SFATAL\0Mno code in this error\0\0", None),
        ),
        (
            "a length of two gigabytes",
            message(b'R', &[0, 0, 0, 0], Some(0x7fff_fff0)),
        ),
        (
            "a message longer than its type allows",
            message(b'R', &[0, 0, 0, 0, 1, 2, 3, 4], None),
        ),
        ("an unknown message type", message(b'~', b"junk", None)),
        (
            "a SCRAM nonce that is not weir's",
            [
                auth(10, b"SCRAM-SHA-256\0\0"),
                auth(11, b"r=someone-else,s=c2FsdA==,i=4096"),
            ]
            .concat(),
        ),
        ("a huge SASL mechanism list", auth(10, &[b'x'; 100_000])),
        (
            "AuthenticationOk before the server's SCRAM signature",
            [
                auth(10, b"SCRAM-SHA-256\0\0"),
                auth(0, b""),
                message(b'K', &[0, 0, 0, 1, 0, 0, 0, 2], None),
                message(b'Z', b"I", None),
            ]
            .concat(),
        ),
    ];
    let mut tail = String::new();
    for (i, (_, reply)) in cases.iter().enumerate() {
        let port = scripted_server(reply.clone()).await;
        tail.push_str(&format!(
            "[[databases]]\nname = \"evil{i}\"\nhosts = [\"127.0.0.1:{port}\"]\n"
        ));
    }
    let proxy = Proxy::start(&config_toml(&db, "", &tail)).await;
    for (i, (what, _)) in cases.iter().enumerate() {
        let name = format!("evil{i}");
        let attempt = proxy.try_client(USER, PASSWORD, &name);
        let e = match tokio::time::timeout(Duration::from_secs(10), attempt).await {
            Ok(Err(e)) => e,
            Ok(Ok(_)) => panic!("{what}: the login must fail"),
            Err(_) => panic!("{what}: no answer within 10 s"),
        };
        let db_error = e.as_db_error().unwrap_or_else(|| panic!("{what}: {e:?}"));
        let code = db_error.code().code();
        assert!(
            code.len() == 5 && code.starts_with("08"),
            "{what}: SQLSTATE {code:?}, message {:?}",
            db_error.message()
        );
        assert!(!db_error.message().is_empty(), "{what}");
        assert_serving(&proxy, &db).await;
    }
    proxy.stop().await;
}

/// A fake server that lets weir in without a password, answers every query with an empty
/// result, except one containing `boom`, which gets half a DataRow before the connection
/// closes. Returns its port.
async fn mid_message_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if read_packet(&mut stream, false).await? == [0x04, 0xd2, 0x16, 0x2f] {
                    stream.write_all(b"N").await.ok()?;
                    read_packet(&mut stream, false).await?;
                }
                let mut login = auth(0, b"");
                for (name, value) in [
                    ("server_version", "15.0"),
                    ("server_encoding", "UTF8"),
                    ("client_encoding", "UTF8"),
                    ("DateStyle", "ISO, MDY"),
                    ("TimeZone", "UTC"),
                    ("integer_datetimes", "on"),
                    ("standard_conforming_strings", "on"),
                ] {
                    login.extend(message(b'S', format!("{name}\0{value}\0").as_bytes(), None));
                }
                login.extend(message(b'K', &[0, 0, 0, 1, 0, 0, 0, 2], None));
                login.extend(message(b'Z', b"I", None));
                stream.write_all(&login).await.ok()?;
                loop {
                    let tag = stream.read_u8().await.ok()?;
                    let len = stream.read_u32().await.ok()? as usize;
                    let mut body = vec![0u8; len.checked_sub(4)?];
                    stream.read_exact(&mut body).await.ok()?;
                    if tag != b'Q' {
                        continue;
                    }
                    if String::from_utf8_lossy(&body).contains("boom") {
                        let mut reply = message(
                            b'T',
                            b"\0\x01v\0\0\0\0\0\0\0\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0",
                            None,
                        );
                        // A DataRow announced at 1,000 bytes, of which 20 arrive.
                        reply.extend(message(b'D', &[0; 20], Some(1000)));
                        stream.write_all(&reply).await.ok()?;
                        return Some(());
                    }
                    let mut reply = message(b'C', b"SET\0", None);
                    reply.extend(message(b'Z', b"I", None));
                    stream.write_all(&reply).await.ok()?;
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn a_server_that_dies_mid_message_closes_its_client_without_more_bytes() {
    let db = fresh_database();
    let port = mid_message_server().await;
    let tail = format!("[[databases]]\nname = \"halfway\"\nhosts = [\"127.0.0.1:{port}\"]\n");
    let proxy = Proxy::start(&config_toml(&db, "", &tail)).await;
    let client = proxy
        .try_client(USER, PASSWORD, "halfway")
        .await
        .expect("the fake server lets weir in");
    let e = tokio::time::timeout(
        Duration::from_secs(10),
        client.simple_query("SELECT 'boom'"),
    )
    .await
    .expect("the client is not left waiting for the rest of the row")
    .expect_err("the row never ends");
    // Closed, not an ErrorResponse read as the rest of the row (which would leave the
    // client waiting, or hand it garbage).
    assert!(e.is_closed(), "{e:?}");
    assert_serving(&proxy, &db).await;
    proxy.stop().await;
}
