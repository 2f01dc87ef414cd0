//! The pool's checkout and return without servers: a place found free, and a place
//! handed from a returning client to a waiting one (the busy pool's path). Outside a
//! runtime no sweeper is started, so the waiting case leaves out the sweeper's share.
//!
//!     cargo bench --bench pool
//!
//! Results: docs/benchmarks.md ("Criterion benchmarks of the hot paths").

use criterion::{criterion_group, criterion_main, Criterion};
use weir::benching::Pool;

fn bench(c: &mut Criterion) {
    let pool = Pool::new(20);
    assert!(pool.take_and_return());
    c.bench_function("checkout and return, place free", |b| {
        b.iter(|| pool.take_and_return());
    });
    let pool = Pool::new(1);
    assert!(pool.hand_off());
    c.bench_function("checkout while full, hand-off on return", |b| {
        b.iter(|| pool.hand_off());
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
