//! COPY through weir in transaction mode: a million rows each way with a checksum while
//! other clients share the pool, and CopyFail from the client.

mod common;

use common::{config_toml, fresh_database, simple_value, sqlstate, Proxy};
use futures_util::{SinkExt, StreamExt};
use sha2::{Digest, Sha256};

/// Rows sent per CopyData message.
const ROWS_PER_CHUNK: u32 = 10_000;
/// Rows copied each way.
const ROWS: u32 = 1_000_000;

/// The text line of row `i`.
fn line(i: u32) -> String {
    format!("{i}\trow {i} {}\n", i.wrapping_mul(2_654_435_761))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_rows_in_and_out_with_checksum() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "size = 2", "")).await;
    let c = proxy.client(&db).await;
    c.batch_execute("CREATE TABLE big (id int, label text)")
        .await
        .expect("create");
    // Others use the pool's second server all along.
    let busy = proxy.client(&db).await;
    let others = tokio::spawn(async move {
        for i in 0..200 {
            assert_eq!(
                simple_value(&busy, &format!("SELECT {i}")).await,
                i.to_string()
            );
        }
    });

    let mut sent = Sha256::new();
    let sink = c.copy_in("COPY big FROM STDIN").await.expect("copy in");
    futures_util::pin_mut!(sink);
    for start in (0..ROWS).step_by(ROWS_PER_CHUNK as usize) {
        let mut chunk = String::new();
        for i in start..start + ROWS_PER_CHUNK {
            chunk.push_str(&line(i));
        }
        sent.update(chunk.as_bytes());
        sink.send(bytes::Bytes::from(chunk)).await.expect("send");
    }
    assert_eq!(sink.finish().await.expect("finish"), u64::from(ROWS));

    // What the server stored, checked on the server itself.
    let stored = c
        .query_one("SELECT count(*), sum(id::bigint)::text FROM big", &[])
        .await
        .expect("check");
    assert_eq!(stored.get::<_, i64>(0), i64::from(ROWS));
    let ids: i64 = (0..i64::from(ROWS)).sum();
    assert_eq!(stored.get::<_, String>(1), ids.to_string());

    // And back out, byte for byte.
    let stream = c
        .copy_out("COPY (SELECT * FROM big ORDER BY id) TO STDOUT")
        .await
        .expect("copy out");
    futures_util::pin_mut!(stream);
    let mut received = Sha256::new();
    let mut bytes = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("chunk");
        bytes += chunk.len();
        received.update(&chunk);
    }
    assert!(bytes > 20 * 1024 * 1024, "only {bytes} bytes came back");
    assert_eq!(received.finalize(), sent.finalize());
    others.await.expect("other client");
    proxy.stop().await;
}

#[tokio::test]
async fn copy_fail_from_the_client_aborts_only_that_copy() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "size = 1", "")).await;
    let c = proxy.client(&db).await;
    c.batch_execute("CREATE TABLE target (id int)")
        .await
        .expect("create");
    {
        let sink = c
            .copy_in::<_, bytes::Bytes>("COPY target FROM STDIN")
            .await
            .expect("copy in");
        futures_util::pin_mut!(sink);
        sink.send(bytes::Bytes::from_static(b"1\n2\n"))
            .await
            .expect("send");
        // Dropped unfinished: tokio-postgres sends CopyFail.
    }
    // The server rolled the COPY back; the client and the pool's only server go on.
    assert_eq!(simple_value(&c, "SELECT count(*) FROM target").await, "0");
    let other = proxy.client(&db).await;
    assert_eq!(simple_value(&other, "SELECT 7").await, "7");
    // A COPY the server refuses midway (bad data) ends with its error, then work goes on.
    let sink = c
        .copy_in::<_, bytes::Bytes>("COPY target FROM STDIN")
        .await
        .expect("copy in");
    futures_util::pin_mut!(sink);
    let _ = sink
        .send(bytes::Bytes::from_static(b"1\nnot a number\n"))
        .await;
    let err = sink.finish().await.expect_err("bad row");
    assert_eq!(sqlstate(&err).as_deref(), Some("22P02"));
    assert_eq!(simple_value(&c, "SELECT count(*) FROM target").await, "0");
    proxy.stop().await;
}
