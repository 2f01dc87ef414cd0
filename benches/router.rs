//! Classification cost per statement: `router::classify` (a cache miss: sqlparser runs)
//! against `ClassCache::classify` on a hit, for a short and a long statement.
//!
//!     cargo bench --bench router
//!
//! Results and what they mean for the hot path: docs/benchmarks.md ("Routing").

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use weir::router::{classify, ClassCache, WriteFunctions};

/// pgbench -S's statement.
const SHORT: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";

/// What an ORM writes for one page of a list: joins, a subquery, a window function.
const LONG: &str = "SELECT o.id, o.created_at, o.total, c.name AS customer_name, c.email, \
     a.city, a.country, (SELECT count(*) FROM order_items i WHERE i.order_id = o.id) AS items, \
     row_number() OVER (PARTITION BY o.customer_id ORDER BY o.created_at DESC) AS recent \
     FROM orders o JOIN customers c ON c.id = o.customer_id \
     LEFT JOIN addresses a ON a.id = o.shipping_address_id \
     WHERE o.status IN ('paid', 'shipped') AND o.created_at >= $1 AND c.tenant_id = $2 \
     ORDER BY o.created_at DESC LIMIT 50 OFFSET $3";

fn bench(c: &mut Criterion) {
    let functions = WriteFunctions::builtin();
    for (name, text) in [("short", SHORT), ("long", LONG)] {
        c.bench_function(&format!("classify {name} (miss: parse)"), |b| {
            b.iter(|| classify(black_box(text), &functions));
        });
        let mut cache = ClassCache::default();
        let _ = cache.classify(text, &functions);
        c.bench_function(&format!("classify {name} (cache hit)"), |b| {
            b.iter(|| cache.classify(black_box(text), &functions));
        });
    }
    // The simple protocol's literals: a different text each time, one cache entry.
    let texts: Vec<String> = (0..1000)
        .map(|aid| format!("SELECT abalance FROM pgbench_accounts WHERE aid = {aid};"))
        .collect();
    let mut cache = ClassCache::default();
    let mut i = 0;
    c.bench_function("classify short with a literal (cache hit)", |b| {
        b.iter(|| {
            i = (i + 1) % texts.len();
            cache.classify(black_box(&texts[i]), &functions)
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
