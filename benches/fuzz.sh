#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 60), one after another.
#
#   bash benches/fuzz.sh [SECONDS] [TARGET...]
#
# Needs the nightly toolchain (`rustup toolchain install nightly`) and cargo-fuzz
# (installed here if missing), plus a C++ compiler for libFuzzer. A crash stops the run;
# its input is saved under fuzz/artifacts/TARGET/. Reproduce it with
#   cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/crash-...
# and turn it into a regression test: call weir::fuzzing::TARGET on those bytes in
# src/fuzzing.rs's tests, fix the parser, and keep the test.
set -euo pipefail
seconds=${1:-60}
shift || true
cd "$(dirname "$0")/../fuzz"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for target in "${targets[@]}"; do
    echo "== $target: ${seconds}s"
    # -rss_limit_mb: a parser that allocates without bound is a finding too.
    status=0
    cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" -rss_limit_mb=1024 \
        -print_final_stats=1 >"$log" 2>&1 || status=$?
    grep -E "^stat::(number_of_executed_units|peak_rss_mb)" "$log" || true
    if [ "$status" -ne 0 ]; then
        tail -40 "$log" >&2
        echo "$target: failed (exit $status); a crashing input is under fuzz/artifacts/$target/" >&2
        exit 1
    fi
done
echo "all targets ran ${seconds}s without a crash"
