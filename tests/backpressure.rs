//! Backpressure: a client that reads a large result slowly, or stops reading it, must not
//! make weir buffer that result. weir stops reading a side once 256 KiB of its data waits
//! for the other side (`HIGH_WATER` in src/client/relay/mod.rs), so what it holds per
//! connection is bounded however large the result and however slow the reader. The
//! server, the kernel's socket buffers and the client hold the rest.

mod common;

use std::time::Duration;

use futures_util::future::join_all;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use common::process::WeirProcess;
use common::raw::{first_column, query, Message, Raw, READ_LIMIT};
use common::{config_toml, eventually, fresh_database, psql, Proxy, PASSWORD, USER};

/// Slow clients at once, as in the issue ("100 clients each reading a 1 GB result
/// slowly"). The test cluster allows `max_connections = 300` (src/pgcluster.rs), so a pool
/// of this size fits beside the other test of this binary and the harness's psql.
const CLIENTS: usize = 100;
/// ≈ 1.04 GB per client: 130,000 DataRows of 8,000 bytes each. No client reads more than a
/// few MB of it; the rest must wait in the server, not in weir.
const HUGE_RESULT: &str = "SELECT repeat('x', 8000) FROM generate_series(1, 130000)";
/// SO_RCVBUF of a slow client (the kernel doubles it): weir feels a reader that stops
/// after a few KiB, not after the megabytes an autotuned loopback socket would take.
const CLIENT_RCVBUF: u32 = 16 * 1024;
/// What a slow client reads at a time...
const READ_CHUNK: usize = 16 * 1024;
/// ...and how long it pauses between reads: at most 1.6 MB/s per client, a small fraction
/// of what a server produces for one `repeat` query.
const READ_PAUSE: Duration = Duration::from_millis(10);
/// What each slow client reads before it stops reading. All of them together read more
/// than weir may grow by (the bound below), so a weir that kept what it relayed fails too.
const READ_PER_CLIENT: u64 = 2 << 20;
/// The slow reading must be over by then (it takes 2 to 5 s; more means weir starves
/// clients).
const READ_LIMIT_ALL: Duration = Duration::from_secs(20);
/// How long the clients then stay connected without reading at all.
const STALL_FOR: Duration = Duration::from_millis(1500);
/// How often weir's memory is sampled. A weir that buffers grows by hundreds of MiB a
/// second, so the test stops at the first sample over the bound rather than let it run.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// `HIGH_WATER` in src/client/relay/mod.rs, in KiB.
const HIGH_WATER_KIB: u64 = 256;
/// What weir may hold per slow client, in KiB. The server-to-client buffer is read into
/// only while it holds less than `HIGH_WATER`, but one read may fill all its spare
/// capacity, and a `BytesMut` that must grow doubles its whole allocation (bytes already
/// written out at its front included): it stays below about 4 × `HIGH_WATER` = 1 MiB.
/// The client-to-server buffer holds one short query. Socket buffers are the kernel's,
/// not in weir's resident set. (Measured: about 0.4 MiB per client.)
const PER_CLIENT_KIB: u64 = 4 * HIGH_WATER_KIB;
/// Allocator and runtime slack on top, in KiB (arenas, thread stacks touched deeper, the
/// log lines of 100 clients).
const SLACK_KIB: u64 = 32 * 1024;

#[tokio::test]
async fn slow_readers_of_huge_results_keep_weir_memory_bounded() {
    let db = fresh_database();
    // weir as its own process, so its memory is not the test's.
    let toml = config_toml(&db, &format!("size = {CLIENTS}"), "");
    let mut weir = WeirProcess::start(&toml, &[("MALLOC_ARENA_MAX", "2")]);
    let port = weir.port;

    // Every client logs in, then all hold a server at once, so the pool's servers, the
    // client sessions and weir's threads exist before the baseline is taken.
    let name = db.as_str();
    let mut clients = join_all((0..CLIENTS).map(|_| async move {
        let raw = Raw::connect_small_window(port, CLIENT_RCVBUF).await;
        raw.log_in(USER, PASSWORD, name).await
    }))
    .await;
    join_all(clients.iter_mut().map(|raw| async move {
        let rows = raw.simple_query("SELECT 1 FROM pg_sleep(0.5)").await;
        assert_eq!(first_column(&rows), ["1"]);
    }))
    .await;
    let servers = psql(&db, &backends_sql("true"));
    let hwm_before = weir.status_kib("VmHWM");
    let rss_before = weir.status_kib("VmRSS");
    let bound_kib = CLIENTS as u64 * PER_CLIENT_KIB + SLACK_KIB;

    // Slow reading: every client asks for ≈ 1 GB and takes a few KiB of it at a time.
    let started = Instant::now();
    let readers: Vec<_> = clients
        .drain(..)
        .map(|raw| tokio::spawn(read_slowly(raw)))
        .collect();
    let mut rss_max = rss_before;
    while !readers.iter().all(|r| r.is_finished()) {
        assert!(
            started.elapsed() < READ_LIMIT_ALL,
            "the slow readers did not get {READ_PER_CLIENT} bytes each within {READ_LIMIT_ALL:?}"
        );
        tokio::time::sleep(SAMPLE_EVERY).await;
        rss_max = rss_max.max(weir.status_kib("VmRSS"));
        assert_within(
            &weir,
            hwm_before,
            bound_kib,
            "while the clients read slowly",
        );
    }
    let mut received = Vec::with_capacity(CLIENTS);
    for reader in join_all(readers).await {
        let (raw, got) = reader.expect("slow reader");
        clients.push(raw);
        received.push(got);
    }
    let read_phase = started.elapsed();

    // Stalled: the clients stay connected and read nothing more. The servers keep their
    // ≈ 1 GB results to send; none of it may pile up in weir.
    let stalled = Instant::now();
    while stalled.elapsed() < STALL_FOR {
        tokio::time::sleep(SAMPLE_EVERY).await;
        rss_max = rss_max.max(weir.status_kib("VmRSS"));
        assert_within(&weir, hwm_before, bound_kib, "while the clients stalled");
    }
    let hwm_after = weir.status_kib("VmHWM");
    let total: u64 = received.iter().sum();
    eprintln!(
        "{CLIENTS} slow readers ({servers} servers warm) got {} MiB in {read_phase:.1?}; \
         weir VmHWM {hwm_before} -> {hwm_after} KiB (+{} KiB, bound {bound_kib} KiB), \
         VmRSS {rss_before} -> max {rss_max} KiB",
        total >> 20,
        hwm_after.saturating_sub(hwm_before),
    );
    assert!(
        total > bound_kib * 1024,
        "the clients got {total} bytes, too little to tell a bounded weir from a buffering one"
    );

    // The clients vanish mid-result: weir must close (or cancel) their servers, not leave
    // them running the query, and must keep serving.
    let still_active = backends_sql(&format!(
        "state = 'active' AND query = '{}'",
        HUGE_RESULT.replace('\'', "''")
    ));
    assert_eq!(
        psql(&db, &still_active),
        CLIENTS.to_string(),
        "every server is still busy sending its result"
    );
    drop(clients);
    let left = Instant::now();
    let settled = eventually(Duration::from_secs(10), || psql(&db, &still_active) == "0").await;
    assert!(
        settled,
        "{} servers still run the huge query 10 s after their clients left",
        psql(&db, &still_active)
    );
    eprintln!(
        "no server ran the huge query {:.1?} after the clients left; {} of their backends remain",
        left.elapsed(),
        psql(&db, &backends_sql("true"))
    );
    let mut raw = Raw::login(port, USER, PASSWORD, &db).await;
    assert_eq!(first_column(&raw.simple_query("SELECT 2").await), ["2"]);
    drop(raw);
    weir.signal("TERM");
    let status = weir.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        weir.log()
    );
}

/// Sends `HUGE_RESULT` and reads `READ_CHUNK` bytes every `READ_PAUSE` until
/// `READ_PER_CLIENT` arrived; returns the connection, still open, and how many bytes
/// arrived.
async fn read_slowly(mut raw: Raw) -> (Raw, u64) {
    raw.send(&query(HUGE_RESULT)).await;
    let mut buf = vec![0u8; READ_CHUNK];
    let mut got = 0u64;
    while got < READ_PER_CLIENT {
        let n = tokio::time::timeout(READ_LIMIT, raw.stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("weir sent nothing for {READ_LIMIT:?} after {got} bytes"))
            .expect("read from weir");
        assert!(n > 0, "weir closed the connection after {got} bytes");
        if got == 0 {
            assert_eq!(
                buf[0],
                b'T',
                "the result starts with RowDescription: {:?}",
                String::from_utf8_lossy(&buf[..n])
            );
        }
        got += n as u64;
        tokio::time::sleep(READ_PAUSE).await;
    }
    (raw, got)
}

/// Fails if weir's peak resident memory grew by `bound_kib` or more since `hwm_before`.
fn assert_within(weir: &WeirProcess, hwm_before: u64, bound_kib: u64, when: &str) {
    let grew = weir.status_kib("VmHWM").saturating_sub(hwm_before);
    assert!(
        grew < bound_kib,
        "weir's peak resident memory grew by {grew} KiB {when} (from {hwm_before} KiB, \
         bound {bound_kib} KiB): it buffers results its clients do not read"
    );
}

/// SQL counting the backends of `USER` in this database (other than psql's own) for which
/// `condition` holds.
fn backends_sql(condition: &str) -> String {
    format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND usename = '{USER}' AND pid <> pg_backend_pid() AND {condition}"
    )
}

/// Rows of the moderately large result: ≈ 51 MB in all.
const ROWS: usize = 50_000;
/// Width of the text column of each row.
const WIDTH: usize = 1000;
/// Bytes after which the slow whole-result reader pauses...
const PAUSE_EVERY: usize = 256 * 1024;
/// ...for this long.
const WHOLE_PAUSE: Duration = Duration::from_millis(5);

#[tokio::test]
async fn slow_reader_gets_the_whole_result() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "size = 2", "")).await;
    let raw = Raw::connect_small_window(proxy.port, CLIENT_RCVBUF).await;
    let mut raw = raw.log_in(USER, PASSWORD, &db).await;
    raw.send(&query(&format!(
        "SELECT i, repeat('y', {WIDTH}) FROM generate_series(1, {ROWS}) AS i"
    )))
    .await;

    // Read message by message, pausing every 256 KiB: the server outruns this client the
    // whole time, so weir pauses and resumes its reads from the server thousands of times.
    let started = Instant::now();
    let description = raw.expect_message().await;
    assert_eq!(description.tag, b'T', "{description:?}");
    let mut bytes = 0usize;
    let mut since_pause = 0usize;
    let wide = vec![b'y'; WIDTH];
    for i in 1..=ROWS {
        let row = raw.expect_message().await;
        assert_eq!(row.tag, b'D', "row {i}: {row:?}");
        let columns = columns(&row);
        assert_eq!(columns.len(), 2, "row {i}");
        assert_eq!(columns[0], i.to_string().as_bytes(), "row {i} out of order");
        assert!(columns[1] == wide, "row {i}: wrong text column");
        let size = 5 + row.body.len();
        bytes += size;
        since_pause += size;
        if since_pause >= PAUSE_EVERY {
            since_pause = 0;
            tokio::time::sleep(WHOLE_PAUSE).await;
        }
    }
    let done = raw.expect_message().await;
    assert_eq!(done.tag, b'C', "{done:?}");
    assert_eq!(done.body, format!("SELECT {ROWS}\0").as_bytes());
    let ready = raw.expect_message().await;
    assert_eq!((ready.tag, ready.body.as_slice()), (b'Z', &b"I"[..]));
    // DataRow: tag, length, column count, then per column a length and the text.
    let digits: usize = (1..=ROWS).map(|i| i.to_string().len()).sum();
    assert_eq!(bytes, ROWS * (1 + 4 + 2 + 4 + 4 + WIDTH) + digits);
    eprintln!(
        "slow reader got {ROWS} rows, {} MiB, in {:.1?}",
        bytes >> 20,
        started.elapsed()
    );

    // The server went back clean: the session carries on.
    assert_eq!(first_column(&raw.simple_query("SELECT 3").await), ["3"]);
    proxy.stop().await;
}

/// The column values of a DataRow (none may be NULL).
fn columns(row: &Message) -> Vec<&[u8]> {
    let count = u16::from_be_bytes([row.body[0], row.body[1]]);
    let mut rest = &row.body[2..];
    (0..count)
        .map(|_| {
            let (len, tail) = rest.split_at(4);
            let len = i32::from_be_bytes(len.try_into().expect("4 bytes"));
            let len = usize::try_from(len).expect("no NULL column");
            let (value, tail) = tail.split_at(len);
            rest = tail;
            value
        })
        .collect()
}
