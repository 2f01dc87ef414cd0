#!/usr/bin/env bash
# pgbench-compare.sh -- end-to-end comparison: pgbench through weir vs PgBouncer vs direct PostgreSQL.
#
# Usage:   benches/pgbench-compare.sh [OUT_DIR]
#          REPS=3 CLIENTS="1 64 256" WORKLOADS="select-simple" benches/pgbench-compare.sh /tmp/bench-select
#          WEIR_DIR=/tmp/weir-bench benches/pgbench-compare.sh /tmp/out   # a copied binary, not rebuilt
#
# A thin wrapper. It builds weir with `cargo build --release` (unless SKIP_BUILD=1 or WEIR_DIR is
# given: a copy of the binary, e.g. one kept away from a concurrent rebuild) and runs the
# shared harness pgbench-compare.sh with weir as its proxy under test (weir-as-proxy.sh, which
# writes a weir configuration from the harness's variables and runs WEIR_DIR/target/release/weir).
# Every other variable (REPS, DURATION, CLIENTS, WORKLOADS, POOL_SIZE, PG_AUTH, PGB_AUTH, ...) is
# passed through unchanged; `benches/pgbench-compare.sh --help` prints the harness's own header,
# which documents them and the CSV columns. docs/benchmarks.md has the commands and the figures.
#
# Where the harness comes from: it is not part of this repository. It lives in the `shared/bench/`
# directory of the workspace this project is developed in, which sits next to the checkout:
#     <workspace>/main/            this repository
#     <workspace>/shared/bench/    pgbench-compare.sh, weir-as-proxy.sh, pgbouncer-as-proxy.sh, ...
# On another machine, copy that `shared/bench/` directory next to your checkout (so that
# ../shared/bench/pgbench-compare.sh exists relative to the repository root), or point
# WEIR_BENCH_DIR at the directory holding it. It needs bash, pgbench and the PostgreSQL 15 server
# binaries (PG_BIN), PgBouncer (PGBOUNCER_BIN) and iproute2's `ss`.
#
# Environment (defaults in brackets), besides the harness's own:
#   WEIR_BENCH_DIR [<repo>/../shared/bench]   SKIP_BUILD [0; 1 when WEIR_DIR is set]
#   WEIR_DIR [<repo>]: the directory whose target/release/weir is measured
#   PROXY_PORT [27432]   PROXY_CMD [bash $WEIR_BENCH_DIR/weir-as-proxy.sh $WEIR_DIR]

set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bench_dir=${WEIR_BENCH_DIR:-$repo/../shared/bench}
compare=$bench_dir/pgbench-compare.sh
proxy=$bench_dir/weir-as-proxy.sh
if [ ! -f "$compare" ] || [ ! -f "$proxy" ]; then
    echo "benches/pgbench-compare.sh: no pgbench-compare.sh and weir-as-proxy.sh in $bench_dir." >&2
    echo "  Copy the workspace's shared/bench/ directory next to this checkout, or set WEIR_BENCH_DIR" >&2
    echo "  (see the comment at the top of this script)." >&2
    exit 1
fi
case ${1:-} in -h|--help) exec bash "$compare" --help;; esac

if [ -n "${WEIR_DIR:-}" ]; then SKIP_BUILD=1; else WEIR_DIR=$repo; fi
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    echo "benches/pgbench-compare.sh: cargo build --release" >&2
    (cd "$repo" && cargo build --release --locked)
fi
[ -x "$WEIR_DIR/target/release/weir" ] || { echo "no weir binary at $WEIR_DIR/target/release/weir" >&2; exit 1; }

export PROXY_PORT=${PROXY_PORT:-27432}
export PROXY_CMD=${PROXY_CMD:-"bash $(printf '%q' "$proxy") $(printf '%q' "$WEIR_DIR")"}
echo "benches/pgbench-compare.sh: weir $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')," \
     "binary $WEIR_DIR/target/release/weir, harness $compare" >&2
exec bash "$compare" "$@"
