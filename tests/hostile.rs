//! Hostile and broken peers, spoken byte by byte over raw TCP: garbage, impossible lengths,
//! wrong protocol versions, messages out of order, half messages. Each case checks what the
//! peer is told (an ErrorResponse with the right SQLSTATE, then the close) and that weir
//! keeps serving a normal tokio-postgres client afterwards.

mod common;

use std::time::Duration;

use common::process::WeirProcess;
use common::raw::{
    first_column, message, query, query_head, startup, Raw, CANCEL_REQUEST, GSSENC_REQUEST,
    PROTOCOL_3_0, SSL_REQUEST,
};
use common::{
    assert_serving, config_toml, fresh_database, psql, simple_value, sqlstate, Proxy, PASSWORD,
    USER,
};
use tokio_postgres::types::Type;

/// A weir in front of a fresh database.
async fn setup() -> (Proxy, String) {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "", "")).await;
    (proxy, db)
}

/// A StartupMessage for `USER` on `db`.
fn startup_for(db: &str) -> Vec<u8> {
    startup(PROTOCOL_3_0, &[("user", USER), ("database", db)])
}

#[tokio::test]
async fn garbage_instead_of_a_startup_packet() {
    let (proxy, db) = setup().await;
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: weir\r\n\r\n"[..],
        &[0xff; 64][..],
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..], // a TLS ClientHello
    ] {
        let mut raw = Raw::connect(proxy.port).await;
        raw.send(garbage).await;
        let fields = raw.expect_fatal("08P01").await;
        assert!(
            fields[&'M'].contains("length") || fields[&'M'].contains("protocol"),
            "{fields:?}"
        );
        assert_serving(&proxy, &db).await;
    }
    proxy.stop().await;
}

#[tokio::test]
async fn startup_packet_with_impossible_length() {
    let (proxy, db) = setup().await;
    // Length 3 cannot even hold itself; 2^31 (and u32::MAX) would be gigabytes. Both must be
    // refused from the header alone, without waiting for (or reserving) the announced body.
    for header in [
        3u32.to_be_bytes(),
        0u32.to_be_bytes(),
        (1u32 << 31).to_be_bytes(),
        u32::MAX.to_be_bytes(),
    ] {
        let mut raw = Raw::connect(proxy.port).await;
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
        raw.send(&bytes).await;
        raw.expect_fatal("08P01").await;
        assert_serving(&proxy, &db).await;
    }
    proxy.stop().await;
}

#[tokio::test]
async fn protocol_version_2_is_refused() {
    let (proxy, db) = setup().await;
    let mut raw = Raw::connect(proxy.port).await;
    raw.send(&startup(2 << 16, &[("user", USER), ("database", &db)]))
        .await;
    raw.expect_fatal("08P01").await;
    // A major version from the future, too.
    let mut raw = Raw::connect(proxy.port).await;
    raw.send(&startup(4 << 16, &[("user", USER), ("database", &db)]))
        .await;
    raw.expect_fatal("08P01").await;
    assert_serving(&proxy, &db).await;
    proxy.stop().await;
}

#[tokio::test]
async fn protocol_3_5_with_options_is_negotiated_down() {
    let (proxy, db) = setup().await;
    let mut raw = Raw::connect(proxy.port).await;
    raw.send(&startup(
        (3 << 16) | 5,
        &[
            ("user", USER),
            ("database", &db),
            ("_pq_.foo", "bar"),
            ("application_name", "hostile"),
        ],
    ))
    .await;
    let m = raw.expect_message().await;
    assert_eq!(
        char::from(m.tag),
        'v',
        "expected NegotiateProtocolVersion: {m:?}"
    );
    let newest_minor = i32::from_be_bytes(m.body[0..4].try_into().expect("4"));
    let count = i32::from_be_bytes(m.body[4..8].try_into().expect("4"));
    assert_eq!(newest_minor, 0);
    assert_eq!(count, 1);
    assert_eq!(&m.body[8..], b"_pq_.foo\0");
    // Login goes on as protocol 3.0.
    let m = raw.expect_message().await;
    assert_eq!(m.auth_code(), 10, "expected AuthenticationSASL: {m:?}");
    raw.scram(PASSWORD).await;
    raw.finish_login().await;
    let rows = raw
        .simple_query("SELECT current_setting('application_name')")
        .await;
    assert_eq!(first_column(&rows), ["hostile"]);
    // A 3.1 client without options still hears that weir speaks 3.0.
    let mut raw = Raw::connect(proxy.port).await;
    raw.send(&startup(
        (3 << 16) | 1,
        &[("user", USER), ("database", &db)],
    ))
    .await;
    let m = raw.expect_message().await;
    assert_eq!(char::from(m.tag), 'v', "{m:?}");
    assert_eq!(&m.body[..], &[0, 0, 0, 0, 0, 0, 0, 0]);
    // Not logged in: closed here so that the shutdown does not wait for it.
    drop(raw);
    proxy.stop().await;
}

#[tokio::test]
async fn second_startup_message_in_the_middle_of_scram() {
    let (proxy, db) = setup().await;
    let mut raw = Raw::connect(proxy.port).await;
    raw.send(&startup_for(&db)).await;
    let m = raw.expect_message().await;
    assert_eq!(m.auth_code(), 10, "{m:?}");
    raw.send(&startup_for(&db)).await;
    raw.expect_fatal("08P01").await;
    assert_serving(&proxy, &db).await;
    proxy.stop().await;
}

#[tokio::test]
async fn malformed_sasl_messages() {
    let (proxy, db) = setup().await;
    // A mechanism weir did not offer.
    let mut raw = Raw::connect(proxy.port).await;
    raw.send(&startup_for(&db)).await;
    assert_eq!(raw.expect_message().await.auth_code(), 10);
    let mut body = b"PLAIN\0".to_vec();
    body.extend_from_slice(&5i32.to_be_bytes());
    body.extend_from_slice(b"hello");
    raw.send(&message(b'p', &body)).await;
    raw.expect_fatal("08P01").await;
    // A SASLInitialResponse whose inner length points past the message.
    let mut raw = Raw::connect(proxy.port).await;
    raw.send(&startup_for(&db)).await;
    assert_eq!(raw.expect_message().await.auth_code(), 10);
    let mut body = b"SCRAM-SHA-256\0".to_vec();
    body.extend_from_slice(&1000i32.to_be_bytes());
    body.extend_from_slice(b"n,,n=,r=abc");
    raw.send(&message(b'p', &body)).await;
    raw.expect_fatal("08P01").await;
    // A client-first-message that is not SCRAM at all.
    let mut raw = Raw::connect(proxy.port).await;
    raw.send(&startup_for(&db)).await;
    assert_eq!(raw.expect_message().await.auth_code(), 10);
    let mut body = b"SCRAM-SHA-256\0".to_vec();
    body.extend_from_slice(&4i32.to_be_bytes());
    body.extend_from_slice(b"\xff\xfe\0x");
    raw.send(&message(b'p', &body)).await;
    raw.expect_fatal("08P01").await;
    // A password message far above any SCRAM message, announced but never sent.
    let mut raw = Raw::connect(proxy.port).await;
    raw.send(&startup_for(&db)).await;
    assert_eq!(raw.expect_message().await.auth_code(), 10);
    let mut huge = vec![b'p'];
    huge.extend_from_slice(&0x4000_0000u32.to_be_bytes());
    raw.send(&huge).await;
    raw.expect_fatal("08P01").await;
    assert_serving(&proxy, &db).await;
    proxy.stop().await;
}

#[tokio::test]
async fn password_message_before_the_startup_packet() {
    let (proxy, db) = setup().await;
    let mut raw = Raw::connect(proxy.port).await;
    raw.send(&message(b'p', b"app-secret\0")).await;
    raw.expect_fatal("08P01").await;
    assert_serving(&proxy, &db).await;
    proxy.stop().await;
}

#[tokio::test]
async fn unknown_message_type_after_login() {
    let (proxy, db) = setup().await;
    let mut raw = Raw::login(proxy.port, USER, PASSWORD, &db).await;
    // 'Z' is ReadyForQuery, a backend message; no client may send it.
    raw.send(&message(b'Z', b"I")).await;
    raw.expect_fatal("08P01").await;
    // Also in the middle of a session that already ran a transaction.
    let mut raw = Raw::login(proxy.port, USER, PASSWORD, &db).await;
    assert_eq!(first_column(&raw.simple_query("SELECT 1").await), ["1"]);
    raw.send(&message(b'!', b"")).await;
    raw.expect_fatal("08P01").await;
    // A password message after login is out of place too.
    let mut raw = Raw::login(proxy.port, USER, PASSWORD, &db).await;
    raw.send(&message(b'p', b"app-secret\0")).await;
    raw.expect_fatal("08P01").await;
    assert_serving(&proxy, &db).await;
    proxy.stop().await;
}

#[tokio::test]
async fn unknown_message_type_right_after_a_query() {
    let (proxy, db) = setup().await;
    let mut raw = Raw::login(proxy.port, USER, PASSWORD, &db).await;
    // Sent together: a valid query followed by a backend-only tag, while a server is leased.
    let mut bytes = query("SELECT 1");
    bytes.extend_from_slice(&message(b'T', b"\0\0"));
    raw.send(&bytes).await;
    let mut saw_fatal = false;
    while let Some(m) = raw.read_message().await {
        if m.tag == b'E' {
            let fields = m.fields();
            assert_eq!(fields[&'C'], "08P01", "{fields:?}");
            assert_eq!(fields[&'S'], "FATAL", "{fields:?}");
            saw_fatal = true;
        }
    }
    assert!(saw_fatal, "no 08P01 before the close");
    assert_serving(&proxy, &db).await;
    proxy.stop().await;
}

#[tokio::test]
async fn message_length_below_four_after_login() {
    let (proxy, db) = setup().await;
    for (tag, len) in [(b'Q', 0u32), (b'Q', 3), (b'S', 2), (b'P', 1)] {
        let mut raw = Raw::login(proxy.port, USER, PASSWORD, &db).await;
        let mut bytes = vec![tag];
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(b"SELECT 1\0");
        raw.send(&bytes).await;
        raw.expect_fatal("08P01").await;
        assert_serving(&proxy, &db).await;
    }
    proxy.stop().await;
}

#[tokio::test]
async fn huge_declared_length_after_login() {
    let (proxy, db) = setup().await;
    // Larger than anything PostgreSQL accepts: refused from the header, without allocating.
    for (tag, len) in [
        (b'Q', 0x7fff_ffffu32),
        (b'Q', u32::MAX),
        (b'P', 0x8000_0000),
        (b'd', 0x4000_0004),
    ] {
        let mut raw = Raw::login(proxy.port, USER, PASSWORD, &db).await;
        let mut bytes = vec![tag];
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(b"SELECT 1\0");
        raw.send(&bytes).await;
        raw.expect_fatal("08P01").await;
        assert_serving(&proxy, &db).await;
    }
    proxy.stop().await;
}

#[tokio::test]
async fn sync_with_a_length_postgres_refuses() {
    // Sync has no body; PostgreSQL refuses any over 10000 bytes ("invalid message length").
    // weir passes unknown sizes through; whatever happens, the client must be told and
    // closed, and its server must not go back to the pool half-read.
    let (proxy, db) = setup().await;
    let mut raw = Raw::login(proxy.port, USER, PASSWORD, &db).await;
    let mut bytes = vec![b'S'];
    bytes.extend_from_slice(&0x0100_0000u32.to_be_bytes());
    bytes.extend_from_slice(&[0u8; 64]);
    raw.send(&bytes).await;
    let m = raw.expect_message().await;
    assert_eq!(char::from(m.tag), 'E', "{m:?}");
    let fields = m.fields();
    assert!(
        matches!(fields[&'C'].as_str(), "08P01" | "08006"),
        "{fields:?}"
    );
    raw.expect_closed().await;
    assert_serving(&proxy, &db).await;
    let c = proxy.client(&db).await;
    let stuck = simple_value(
        &c,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND pid <> pg_backend_pid() AND state <> 'idle'",
    )
    .await;
    assert_eq!(stuck, "0", "a server was left busy");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_message_stall_does_not_block_other_clients() {
    let (proxy, db) = setup().await;
    let mut stalled = Raw::login(proxy.port, USER, PASSWORD, &db).await;
    // A Query announcing 100 bytes, of which 10 arrive.
    let bytes = query_head(100u32, b"SELECT 1 ");
    stalled.send(&bytes).await;
    // Also one stalled in the middle of the header.
    let mut stalled_header = Raw::login(proxy.port, USER, PASSWORD, &db).await;
    stalled_header.send(b"Q\0\0").await;
    // Also one stalled in the middle of its startup packet.
    let mut stalled_startup = Raw::connect(proxy.port).await;
    stalled_startup.send(&startup_for(&db)[..7]).await;
    let c = proxy.client(&db).await;
    for i in 0..20i32 {
        let row = tokio::time::timeout(
            Duration::from_secs(10),
            c.query_typed("SELECT $1::int + 1", &[(&i, Type::INT4)]),
        )
        .await
        .expect("not blocked by the stalled clients")
        .expect("query");
        assert_eq!(row[0].get::<_, i32>(0), i + 1);
    }
    assert_serving(&proxy, &db).await;
    // The stalled client finishes its message late and gets its answer.
    let mut rest = b"+ 1".to_vec();
    rest.resize(100 - 4 - 9 - 1, b' ');
    rest.push(0);
    stalled.send(&rest).await;
    assert_eq!(first_column(&stalled.until_ready().await), ["2"]);
    // Not logged in: closed here so that the shutdown does not wait for it.
    drop(stalled_startup);
    proxy.stop().await;
}

#[tokio::test]
async fn large_first_message_arriving_in_pieces_is_answered() {
    // A first message over 64 KiB is relayed as it arrives. When only its first bytes are
    // there (too few to tell what it is), weir must wait for more, not hand the client back
    // and lease a server again for the same bytes: that spun a core and never answered.
    let (proxy, db) = setup().await;
    let text = format!("SELECT length('{}')", "x".repeat(100_000));
    let mut raw = Raw::login(proxy.port, USER, PASSWORD, &db).await;
    let whole = query(&text);
    for cut in [6, 13, 40] {
        raw.send(&whole[..cut]).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        raw.send(&whole[cut..]).await;
        assert_eq!(first_column(&raw.until_ready().await), ["100000"]);
    }
    // The same for a named Parse, which weir reads whole to rename it.
    let mut parse = b"big\0".to_vec();
    parse.extend_from_slice(text.as_bytes());
    parse.extend_from_slice(b"\0\0\0");
    let mut bytes = message(b'P', &parse);
    let mut bind = b"\0big\0".to_vec();
    bind.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    bytes.extend(message(b'B', &bind));
    bytes.extend(message(b'E', b"\0\0\0\0\0"));
    bytes.extend(message(b'S', b""));
    raw.send(&bytes[..20]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    raw.send(&bytes[20..]).await;
    let replies = raw.until_ready().await;
    let tags: Vec<char> = replies.iter().map(|m| char::from(m.tag)).collect();
    assert_eq!(tags, ['1', '2', 'D', 'C'], "{replies:?}");
    assert_serving(&proxy, &db).await;
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_inside_a_large_message_frees_the_server() {
    // A message over 64 KiB is relayed as it arrives, so its sender holds a server. One that
    // sends 10 bytes of a 100 KB Query and goes silent is disconnected after
    // query_wait_timeout (08P01), and the only server serves the others again.
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(
        &db,
        "size = 1\nquery_wait_timeout = \"2s\"",
        "",
    ))
    .await;
    let c = proxy.client(&db).await;
    c.simple_query("SELECT 1").await.expect("warm up");
    let mut stalled = Raw::login(proxy.port, USER, PASSWORD, &db).await;
    let bytes = query_head(100_000u32, b"SELECT 1 ");
    stalled.send(&bytes).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut served = false;
    for _ in 0..5 {
        if c.simple_query("SELECT 2").await.is_ok() {
            served = true;
            break;
        }
    }
    assert!(served, "the stalled client kept the only server");
    stalled.expect_fatal("08P01").await;
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_message_stall_does_not_pin_the_only_server() {
    // With one server, a client that sent 10 bytes of a 100-byte Query and went silent must
    // not hold it: every wait on a peer has a deadline (STYLE R12), and both idle timeouts are
    // set here. Either weir leases no server until the first message is whole, or a deadline
    // frees it; the other client must get the server within 10 s.
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(
        &db,
        "size = 1\nquery_wait_timeout = \"10s\"\nclient_idle_timeout = \"2s\"\nidle_transaction_timeout = \"2s\"",
        "",
    ))
    .await;
    let c = proxy.client(&db).await;
    c.simple_query("SELECT 1").await.expect("warm up");
    let mut stalled = Raw::login(proxy.port, USER, PASSWORD, &db).await;
    let bytes = query_head(100u32, b"SELECT 1 ");
    stalled.send(&bytes).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let result = c.simple_query("SELECT 2").await;
    assert!(
        result.is_ok(),
        "the other client got no server after {:?}: {:?}",
        started.elapsed(),
        result.err().and_then(|e| sqlstate(&e))
    );
    drop(stalled);
    proxy.stop().await;
}

#[tokio::test]
async fn data_sent_right_after_ssl_request_is_refused() {
    let (proxy, db) = setup().await;
    let mut raw = Raw::connect(proxy.port).await;
    // SSLRequest and a StartupMessage in one write, before weir could answer 'N'.
    let mut bytes = startup(SSL_REQUEST, &[]);
    bytes.extend_from_slice(&startup_for(&db));
    raw.send(&bytes).await;
    raw.expect_fatal("08P01").await;
    assert_serving(&proxy, &db).await;
    proxy.stop().await;
}

#[tokio::test]
async fn ssl_and_gssenc_requests_are_declined_and_login_goes_on() {
    let (proxy, db) = setup().await;
    let mut raw = Raw::connect(proxy.port).await;
    raw.send(&startup(GSSENC_REQUEST, &[])).await;
    assert_eq!(raw.read_bytes(1).await.as_deref(), Some(&b"N"[..]));
    raw.send(&startup(SSL_REQUEST, &[])).await;
    assert_eq!(raw.read_bytes(1).await.as_deref(), Some(&b"N"[..]));
    raw.send(&startup_for(&db)).await;
    assert_eq!(raw.expect_message().await.auth_code(), 10);
    raw.scram(PASSWORD).await;
    raw.finish_login().await;
    assert_eq!(first_column(&raw.simple_query("SELECT 7").await), ["7"]);
    // An SSLRequest with a body is not an SSLRequest.
    let mut raw = Raw::connect(proxy.port).await;
    let mut bad = 12u32.to_be_bytes().to_vec();
    bad.extend_from_slice(&SSL_REQUEST.to_be_bytes());
    bad.extend_from_slice(b"xxxx");
    raw.send(&bad).await;
    raw.expect_fatal("08P01").await;
    proxy.stop().await;
}

#[tokio::test]
async fn cancel_request_with_unknown_keys_is_closed_silently() {
    let (proxy, db) = setup().await;
    let c = proxy.client(&db).await;
    let slow = tokio::spawn(async move { c.simple_query("SELECT pg_sleep(1.5), 'done'").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut raw = Raw::connect(proxy.port).await;
    let mut bytes = 16u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&CANCEL_REQUEST.to_be_bytes());
    bytes.extend_from_slice(&12345i32.to_be_bytes());
    bytes.extend_from_slice(&67890i32.to_be_bytes());
    raw.send(&bytes).await;
    raw.expect_closed().await;
    // A truncated cancel request is a protocol violation.
    let mut raw = Raw::connect(proxy.port).await;
    let mut bytes = 12u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&CANCEL_REQUEST.to_be_bytes());
    bytes.extend_from_slice(&1i32.to_be_bytes());
    raw.send(&bytes).await;
    raw.expect_fatal("08P01").await;
    slow.await
        .expect("task")
        .expect("a guessed cancel key cancels nothing");
    assert_serving(&proxy, &db).await;
    proxy.stop().await;
}

#[tokio::test]
async fn startup_without_user_or_with_bad_options() {
    let (proxy, db) = setup().await;
    let mut raw = Raw::connect(proxy.port).await;
    raw.send(&startup(PROTOCOL_3_0, &[("database", &db)])).await;
    raw.expect_fatal("28000").await;
    // Parameters that are not NUL-terminated pairs.
    let mut raw = Raw::connect(proxy.port).await;
    let mut body = PROTOCOL_3_0.to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0app");
    let mut bytes = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&body);
    raw.send(&bytes).await;
    raw.expect_fatal("08P01").await;
    // Invalid UTF-8 in a parameter.
    let mut raw = Raw::connect(proxy.port).await;
    let mut body = PROTOCOL_3_0.to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0\xff\xfe\0\0");
    let mut bytes = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&body);
    raw.send(&bytes).await;
    let m = raw.expect_message().await;
    assert_eq!(char::from(m.tag), 'E', "{m:?}");
    raw.expect_closed().await;
    // Replication connections are refused with a clear error.
    let mut raw = Raw::connect(proxy.port).await;
    raw.send(&startup(
        PROTOCOL_3_0,
        &[("user", USER), ("database", &db), ("replication", "true")],
    ))
    .await;
    raw.expect_fatal("0A000").await;
    assert_serving(&proxy, &db).await;
    proxy.stop().await;
}

#[tokio::test]
async fn client_that_vanishes_mid_login_frees_its_slot() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "max_client_conn = 3", "")).await;
    for _ in 0..10 {
        let mut raw = Raw::connect(proxy.port).await;
        raw.send(&startup_for(&db)).await;
        assert_eq!(raw.expect_message().await.auth_code(), 10);
        drop(raw);
    }
    for _ in 0..10 {
        let mut raw = Raw::connect(proxy.port).await;
        raw.send(&startup_for(&db)[..5]).await;
        drop(raw);
    }
    // With max_client_conn = 3 this only works once the 20 dropped connections were counted out.
    assert!(
        common::eventually_async(Duration::from_secs(10), || async {
            proxy.try_client(USER, PASSWORD, &db).await.is_ok()
        })
        .await,
        "dropped logins still count against max_client_conn"
    );
    assert_serving(&proxy, &db).await;
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_lengths_do_not_grow_weir_memory() {
    // weir as its own process, so its memory is not the test's. Each message below announces
    // 1 to 4 GiB; reserving any of it would show in VmPeak (address space), buffering the
    // 32 MiB actually sent would show in VmHWM (resident).
    let db = fresh_database();
    let mut weir = WeirProcess::start(&config_toml(&db, "", ""), &[("MALLOC_ARENA_MAX", "2")]);
    let port = weir.port;
    // Warm up: a pool, its servers and weir's threads exist before measuring.
    for _ in 0..3 {
        let mut raw = Raw::login(port, USER, PASSWORD, &db).await;
        assert_eq!(first_column(&raw.simple_query("SELECT 1").await), ["1"]);
    }
    let peak_before = weir.status_kib("VmPeak");
    let hwm_before = weir.status_kib("VmHWM");

    let mut raw = Raw::connect(port).await;
    let mut bytes = (1u32 << 31).to_be_bytes().to_vec();
    bytes.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
    raw.send(&bytes).await;
    raw.expect_fatal("08P01").await;

    let mut raw = Raw::connect(port).await;
    raw.send(&startup_for(&db)).await;
    assert_eq!(raw.expect_message().await.auth_code(), 10);
    let mut bytes = vec![b'p'];
    bytes.extend_from_slice(&0xffff_0000u32.to_be_bytes());
    raw.send(&bytes).await;
    raw.expect_fatal("08P01").await;

    for len in [0x7fff_ffffu32, 0xffff_ffff] {
        let mut raw = Raw::login(port, USER, PASSWORD, &db).await;
        let bytes = query_head(len, b"");
        raw.send(&bytes).await;
        raw.expect_fatal("08P01").await;
    }

    // Within PostgreSQL's limit (1 GiB): weir streams it to the server, never holding it.
    let mut raw = Raw::login(port, USER, PASSWORD, &db).await;
    let bytes = query_head(0x3fff_0000u32, b"SELECT '");
    raw.send(&bytes).await;
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..32 {
        raw.send(&chunk).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let peak_after = weir.status_kib("VmPeak");
    let hwm_after = weir.status_kib("VmHWM");
    drop(raw);

    let grew_peak = peak_after.saturating_sub(peak_before);
    let grew_hwm = hwm_after.saturating_sub(hwm_before);
    eprintln!("VmPeak +{grew_peak} KiB, VmHWM +{grew_hwm} KiB");
    assert!(
        grew_peak < 512 * 1024,
        "weir's address space grew by {grew_peak} KiB (from {peak_before} KiB)"
    );
    assert!(
        grew_hwm < 16 * 1024,
        "weir's resident memory grew by {grew_hwm} KiB while 32 MiB streamed through"
    );
    let mut raw = Raw::login(port, USER, PASSWORD, &db).await;
    assert_eq!(first_column(&raw.simple_query("SELECT 2").await), ["2"]);
    weir.signal("TERM");
    let status = weir.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        weir.log()
    );
}

/// Reads messages until ReadyForQuery and returns the SQLSTATEs of the errors among them.
async fn errors_until_ready(raw: &mut Raw) -> Vec<String> {
    raw.until_ready()
        .await
        .iter()
        .filter(|m| m.tag == b'E')
        .map(|m| m.fields()[&'C'].clone())
        .collect()
}

#[tokio::test]
async fn malformed_extended_protocol_messages() {
    let (proxy, db) = setup().await;
    // A Query whose text has no terminating NUL: PostgreSQL's own 08P01 ("invalid string
    // in message") reaches the client, and the connection goes on.
    let mut raw = Raw::login(proxy.port, USER, PASSWORD, &db).await;
    raw.send(&message(b'Q', b"SELECT 1")).await;
    assert_eq!(errors_until_ready(&mut raw).await, ["08P01"]);
    assert_eq!(first_column(&raw.simple_query("SELECT 1").await), ["1"]);

    // A Parse that announces 30,000 parameter types and carries two.
    let mut raw = Raw::login(proxy.port, USER, PASSWORD, &db).await;
    let mut body = b"\0SELECT $1\0".to_vec();
    body.extend_from_slice(&30_000u16.to_be_bytes());
    body.extend_from_slice(&23u32.to_be_bytes());
    body.extend_from_slice(&23u32.to_be_bytes());
    let mut bytes = message(b'P', &body);
    bytes.extend_from_slice(&message(b'S', b""));
    raw.send(&bytes).await;
    let mut codes = Vec::new();
    while let Some(m) = raw.read_message().await {
        if m.tag == b'E' {
            codes.push(m.fields()[&'C'].clone());
        }
        if m.tag == b'Z' {
            break;
        }
    }
    assert_eq!(codes, ["08P01"], "one protocol error for the bad Parse");

    // Bind to a statement nobody prepared: 26000, and the connection goes on.
    let mut raw = Raw::login(proxy.port, USER, PASSWORD, &db).await;
    let mut bytes = message(b'B', b"\0nosuch\0\0\0\0\0\0\0");
    bytes.extend_from_slice(&message(b'E', b"\0\0\0\0\0"));
    bytes.extend_from_slice(&message(b'S', b""));
    raw.send(&bytes).await;
    assert_eq!(errors_until_ready(&mut raw).await, ["26000"]);
    assert_eq!(first_column(&raw.simple_query("SELECT 2").await), ["2"]);
    assert_serving(&proxy, &db).await;
    proxy.stop().await;
}

#[tokio::test]
async fn ten_thousand_pipelined_executes_before_one_sync() {
    let (proxy, db) = setup().await;
    let mut raw = Raw::login(proxy.port, USER, PASSWORD, &db).await;
    let mut bytes = message(b'P', b"\0SELECT 1\0\0\0");
    for _ in 0..10_000 {
        bytes.extend_from_slice(&message(b'B', b"\0\0\0\0\0\0\0\0"));
        bytes.extend_from_slice(&message(b'E', b"\0\0\0\0\0"));
    }
    bytes.extend_from_slice(&message(b'S', b""));
    // About 270 kB of requests and 290 kB of answers: within loopback socket buffers, so
    // sending all before reading does not block either side.
    raw.send(&bytes).await;
    let messages = raw.until_ready().await;
    let rows = messages.iter().filter(|m| m.tag == b'D').count();
    let errors = messages.iter().filter(|m| m.tag == b'E').count();
    assert_eq!((rows, errors), (10_000, 0));
    assert_eq!(first_column(&raw.simple_query("SELECT 3").await), ["3"]);
    assert_serving(&proxy, &db).await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_thousand_cancel_requests_with_random_keys() {
    let (proxy, db) = setup().await;
    let c = proxy.client(&db).await;
    let slow = tokio::spawn(async move { c.simple_query("SELECT pg_sleep(1), 'done'").await });
    let port = proxy.port;
    let burst = (0..1000).map(|i: i32| async move {
        let mut raw = Raw::connect(port).await;
        let mut bytes = 16u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&CANCEL_REQUEST.to_be_bytes());
        bytes.extend_from_slice(&i.wrapping_mul(7919).to_be_bytes());
        bytes.extend_from_slice(&i.wrapping_mul(104_729).to_be_bytes());
        raw.send(&bytes).await;
        raw.expect_closed().await;
    });
    futures_util::future::join_all(burst).await;
    slow.await
        .expect("task")
        .expect("no guessed key cancelled the running query");
    assert_serving(&proxy, &db).await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_thousand_wrong_passwords() {
    let (proxy, db) = setup().await;
    let attempts = (0..1000).map(|_| {
        let proxy = &proxy;
        let db = &db;
        async move {
            let err = proxy
                .login_error(USER, "wrong", db, "a wrong password")
                .await;
            sqlstate(&err)
        }
    });
    // 50 at a time, as a guesser with many connections would.
    let mut codes = Vec::new();
    let mut attempts = attempts.collect::<Vec<_>>();
    while !attempts.is_empty() {
        let batch: Vec<_> = attempts.drain(..attempts.len().min(50)).collect();
        codes.extend(futures_util::future::join_all(batch).await);
    }
    drop(attempts);
    assert!(codes.iter().all(|c| c.as_deref() == Some("28P01")));
    assert_eq!(codes.len(), 1000);
    assert_serving(&proxy, &db).await;
    proxy.stop().await;
}

#[tokio::test]
async fn terminate_mid_transaction_rolls_back() {
    let (proxy, db) = setup().await;
    let c = proxy.client(&db).await;
    c.batch_execute("CREATE TABLE kept (v int)")
        .await
        .expect("create");
    let mut raw = Raw::login(proxy.port, USER, PASSWORD, &db).await;
    raw.simple_query("BEGIN").await;
    raw.simple_query("INSERT INTO kept VALUES (1)").await;
    raw.send(&message(b'X', b"")).await;
    raw.expect_closed().await;
    let n = simple_value(&c, "SELECT count(*) FROM kept").await;
    assert_eq!(n, "0", "the terminated client's row must be gone");
    proxy.stop().await;
}

#[tokio::test]
async fn messages_over_limits_max_message_size_are_refused() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(
        &db,
        "",
        "[limits]\nmax_message_size = \"1kB\"",
    ))
    .await;
    // Under the limit: served, inside and outside a transaction.
    let mut raw = Raw::login(proxy.port, USER, PASSWORD, &db).await;
    let fits = format!("SELECT '{}'", "x".repeat(900));
    let rows = raw.simple_query(&fits).await;
    assert_eq!(first_column(&rows), vec!["x".repeat(900)]);

    // Over it, as the first message of a transaction, or in the middle of one: refused
    // from the header, before the body arrives.
    let too_long = format!("SELECT '{}'", "x".repeat(2000));
    let head = query_head(too_long.len() as u32 + 5, b"SELECT");
    raw.send(&head).await;
    let fields = raw.expect_fatal("08P01").await;
    assert!(
        fields[&'M'].contains("limits.max_message_size"),
        "{fields:?}"
    );

    let mut raw = Raw::login(proxy.port, USER, PASSWORD, &db).await;
    raw.simple_query("BEGIN").await;
    raw.send(&query(&too_long)).await;
    raw.expect_fatal("08P01").await;
    assert_serving(&proxy, &db).await;
    proxy.stop().await;
}

/// Starts a SCRAM login with `password` up to the client's final message, which it returns
/// unsent, so a test can tamper with it.
async fn scram_until_final(raw: &mut Raw, db: &str, password: &str) -> String {
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    raw.send(&startup_for(db)).await;
    assert_eq!(raw.expect_message().await.auth_code(), 10);
    let mut scram = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
    let mut body = b"SCRAM-SHA-256\0".to_vec();
    body.extend_from_slice(&(scram.message().len() as i32).to_be_bytes());
    body.extend_from_slice(scram.message());
    raw.send(&message(b'p', &body)).await;
    let m = raw.expect_message().await;
    assert_eq!(m.auth_code(), 11);
    scram.update(&m.body[4..]).expect("server-first");
    String::from_utf8(scram.message().to_vec()).expect("ASCII")
}

#[tokio::test]
async fn wrong_scram_proof_and_tampered_nonce() {
    let (proxy, db) = setup().await;
    // A proof made with the wrong password: 28P01.
    let mut raw = Raw::connect(proxy.port).await;
    let last = scram_until_final(&mut raw, &db, "not-the-password").await;
    raw.send(&message(b'p', last.as_bytes())).await;
    raw.expect_fatal("28P01").await;
    // The right proof with a nonce that is not the one agreed: a protocol violation.
    let mut raw = Raw::connect(proxy.port).await;
    let last = scram_until_final(&mut raw, &db, PASSWORD).await;
    let tampered = last.replacen(",r=", ",r=X", 1);
    raw.send(&message(b'p', tampered.as_bytes())).await;
    raw.expect_fatal("08P01").await;
    // A proof flipped in one bit.
    let mut raw = Raw::connect(proxy.port).await;
    let last = scram_until_final(&mut raw, &db, PASSWORD).await;
    let (head, proof) = last.rsplit_once(",p=").expect("proof");
    let flipped = if proof.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{head},p={flipped}{}", &proof[1..]);
    raw.send(&message(b'p', tampered.as_bytes())).await;
    raw.expect_fatal("28P01").await;
    assert_serving(&proxy, &db).await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_thousand_startup_parameters() {
    let (proxy, db) = setup().await;
    // Custom settings (a dot in the name), which PostgreSQL accepts from anyone: each is
    // the client's, to be made true on whichever server serves it.
    let names: Vec<String> = (0..1000).map(|i| format!("x.p{i}")).collect();
    let mut params: Vec<(&str, &str)> = vec![("user", USER), ("database", &db)];
    params.extend(names.iter().map(|n| (n.as_str(), "1")));
    let mut raw = Raw::connect(proxy.port).await;
    raw.send(&startup(PROTOCOL_3_0, &params)).await;
    assert_eq!(raw.expect_message().await.auth_code(), 10);
    raw.scram(PASSWORD).await;
    raw.finish_login().await;
    let rows = raw
        .simple_query("SELECT current_setting('x.p999') || current_setting('x.p0')")
        .await;
    assert_eq!(first_column(&rows), vec!["11"]);
    // Past the 10,000-byte limit of a startup packet: refused before the login.
    let names: Vec<String> = (0..3000).map(|i| format!("x.p{i}")).collect();
    let mut params: Vec<(&str, &str)> = vec![("user", USER), ("database", &db)];
    params.extend(names.iter().map(|n| (n.as_str(), "1")));
    let mut raw = Raw::connect(proxy.port).await;
    raw.send(&startup(PROTOCOL_3_0, &params)).await;
    raw.expect_fatal("08P01").await;
    assert_serving(&proxy, &db).await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_server_that_closes_mid_result() {
    use futures_util::StreamExt as _;
    let (proxy, db) = setup().await;
    let client = proxy.client(&db).await;
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    // A result far larger than the socket buffers, read slowly; the server dies after the
    // first rows have arrived.
    let rows = client
        .query_raw(
            "SELECT repeat('x', 1000) FROM generate_series(1, 1000000)",
            std::iter::empty::<i32>(),
        )
        .await
        .expect("the result starts");
    futures_util::pin_mut!(rows);
    for _ in 0..10 {
        rows.next().await.expect("a row").expect("row");
    }
    psql(&db, &format!("SELECT pg_terminate_backend({pid})"));
    let mut ended = None;
    while let Some(row) = rows.next().await {
        if let Err(e) = row {
            ended = Some(e);
            break;
        }
    }
    let e = ended.expect("the result cannot end normally");
    match sqlstate(&e).as_deref() {
        // The server died between two messages: the client hears why, and keeps its
        // connection for the next transaction (transaction mode).
        Some("57P01" | "08006") => {
            assert_eq!(simple_value(&client, "SELECT 41 + 1").await, "42");
        }
        // It died in the middle of one, part of which the client already had: no message
        // can follow that, so the connection closes, as PostgreSQL's own would. What the
        // client has is never followed by bytes it would misread.
        None => assert!(e.is_closed(), "{e:?}"),
        Some(other) => panic!("unexpected SQLSTATE {other}: {e:?}"),
    }
    assert_serving(&proxy, &db).await;
    proxy.stop().await;
}
