//! The codec on the transaction path: the relay's scanners walking pgbench -S's Query
//! (client side) and its four-message reply (server side), without a server.
//!
//!     cargo bench --bench codec
//!
//! Results: docs/benchmarks.md ("Criterion benchmarks of the hot paths").

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use weir::benching::{pgbench_query, pgbench_reply, scan_backend, scan_frontend};

fn bench(c: &mut Criterion) {
    let query = pgbench_query();
    assert_eq!(scan_frontend(&query), 1);
    c.bench_function("scan client Query", |b| {
        b.iter(|| scan_frontend(black_box(&query)));
    });
    let reply = pgbench_reply();
    assert_eq!(scan_backend(&reply), 4);
    c.bench_function("scan server reply (4 messages)", |b| {
        b.iter(|| scan_backend(black_box(&reply)));
    });
    // A result of 100 rows: the DataRow walk dominates.
    let rows: Vec<u8> = std::iter::repeat_n(reply.as_slice(), 100)
        .flatten()
        .copied()
        .collect();
    c.bench_function("scan server replies (100 x 4 messages)", |b| {
        b.iter(|| scan_backend(black_box(&rows)));
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
