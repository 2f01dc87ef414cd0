#!/usr/bin/env bash
# routing-overhead.sh -- what read/write splitting costs (issue 4: under 10%).
#
# Usage:   benches/routing-overhead.sh [WEIR_BIN]
#          REPS=3 DURATION=10 CLIENTS="16 64" benches/routing-overhead.sh target/release/weir
#
# What it does
#   1. Starts a throwaway primary (initdb, trust auth, loopback, fsync=off) and a streaming
#      replica of it (pg_basebackup -R), as RUN_USER when we are root; `pgbench -i -s SCALE`.
#   2. Starts two weir processes on the same two hosts, transaction mode, pool size POOL_SIZE:
#      "routed" (routing = "read_write": pgbench -S's SELECTs go to the replica) and
#      "primary" (routing = "primary_only": everything to the primary).
#   3. For each client count and each of REPS rounds, runs `pgbench -S -n -M MODE` for DURATION
#      seconds through each weir in turn (alternating, so drift hits both), and prints the TPS
#      of each and the ratio routed / primary per round, then the median ratio.
#   The ratio is the routing overhead (parsing is cached; the replica check and the
#   one-request-at-a-time relay remain), plus whatever differs between the two servers.
#   4. Read-your-writes: a third weir, "no-ryw" (read_write with routing.read_your_writes =
#      false), and the default pgbench (tpcb-like: BEGIN, three UPDATEs, an INSERT, a SELECT,
#      END) through "routed" and "no-ryw" alternately at RYW_CLIENTS clients: the ratio is
#      what learning each commit's WAL position costs (one round trip per write transaction).
#
# Environment (defaults in brackets)
#   REPS [3]  DURATION [10] s  CLIENTS ["16 64"]  MODES ["simple extended"]  SCALE [10]
#   POOL_SIZE [20]  PG_BIN [/usr/lib/postgresql/15/bin]  RUN_USER [postgres]
#   RYW_CLIENTS ["16"] ("" skips step 4)
#   PRIMARY_PORT [28532]  REPLICA_PORT [28533]  ROUTED_PORT [29532]  PRIMARY_ONLY_PORT [29533]
#   NO_RYW_PORT [29534]
#   WORKERS [0] (listen.workers of both weirs)  KEEP_WORKDIR [0]

set -uo pipefail
export LC_ALL=C
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WEIR_BIN=${1:-${WEIR_BIN:-$repo/target/release/weir}}
REPS=${REPS:-3}; DURATION=${DURATION:-10}; CLIENTS=${CLIENTS:-"16 64"}
MODES=${MODES:-"simple extended"}; SCALE=${SCALE:-10}; POOL_SIZE=${POOL_SIZE:-20}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}; RUN_USER=${RUN_USER:-postgres}
PRIMARY_PORT=${PRIMARY_PORT:-28532}; REPLICA_PORT=${REPLICA_PORT:-28533}
ROUTED_PORT=${ROUTED_PORT:-29532}; PRIMARY_ONLY_PORT=${PRIMARY_ONLY_PORT:-29533}
NO_RYW_PORT=${NO_RYW_PORT:-29534}; RYW_CLIENTS=${RYW_CLIENTS-16}
WORKERS=${WORKERS:-0}; KEEP_WORKDIR=${KEEP_WORKDIR:-0}
export WEIR_LOG=${WEIR_LOG:-warn}

die() { echo "routing-overhead: ERROR: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
case ${1:-} in -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0;; esac
[ -x "$WEIR_BIN" ] || die "no weir binary at $WEIR_BIN (build it: cargo build --release)"
[ -x "$PG_BIN/initdb" ] || die "no initdb in PG_BIN=$PG_BIN"
command -v pgbench >/dev/null || die "pgbench is needed"

if [ "$(id -u)" = 0 ]; then as_pg() { runuser -u "$RUN_USER" -- "$@"; }; else as_pg() { "$@"; }; fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/weir-routing.XXXXXX") || die "mktemp failed"
chmod 755 "$WORK"; [ "$(id -u)" = 0 ] && chown "$RUN_USER" "$WORK"
PIDS=()
cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    for d in replica primary; do
        [ -f "$WORK/$d/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$WORK/$d" -m immediate -w stop >/dev/null 2>&1
    done
    if [ "$KEEP_WORKDIR" = 1 ]; then log "work dir kept: $WORK"; else rm -rf -- "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT; trap 'exit 130' INT; trap 'exit 143' TERM

log "primary on $PRIMARY_PORT, replica on $REPLICA_PORT, work dir $WORK"
as_pg "$PG_BIN/initdb" -D "$WORK/primary" -A trust -U postgres >/dev/null || die "initdb failed"
cat >>"$WORK/primary/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PRIMARY_PORT
unix_socket_directories = '$WORK'
fsync = off
synchronous_commit = off
max_connections = 200
shared_buffers = 128MB
CONF
echo "host replication all 127.0.0.1/32 trust" >>"$WORK/primary/pg_hba.conf"
as_pg "$PG_BIN/pg_ctl" -D "$WORK/primary" -l "$WORK/primary.log" -w start >/dev/null || die "primary did not start"
pgbench -i -q -s "$SCALE" -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres postgres >/dev/null 2>&1 || die "pgbench -i failed"
as_pg "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -D "$WORK/replica" -R -X stream >/dev/null ||
    die "pg_basebackup failed"
sed -i "s/^port = $PRIMARY_PORT/port = $REPLICA_PORT/" "$WORK/replica/postgresql.conf"
as_pg "$PG_BIN/pg_ctl" -D "$WORK/replica" -l "$WORK/replica.log" -w start >/dev/null || die "replica did not start"

start_weir() {                   # start_weir PORT ROUTING [READ_YOUR_WRITES]
    cat >"$WORK/weir-$1.toml" <<TOML
[listen]
addr = "127.0.0.1:$1"
workers = $WORKERS
[pool]
size = $POOL_SIZE
[auth]
method = "trust"
[[users]]
name = "postgres"
[[databases]]
name = "postgres"
hosts = ["127.0.0.1:$PRIMARY_PORT", "127.0.0.1:$REPLICA_PORT"]
routing = "$2"
[routing]
read_your_writes = ${3:-true}
TOML
    "$WEIR_BIN" --config "$WORK/weir-$1.toml" >"$WORK/weir-$1.log" 2>&1 &
    PIDS+=($!)
}
start_weir "$ROUTED_PORT" read_write
start_weir "$PRIMARY_ONLY_PORT" primary_only
start_weir "$NO_RYW_PORT" read_write false
sleep 2
on_port() { psql -XAtq -h 127.0.0.1 -p "$1" -U postgres -d postgres -c "SELECT current_setting('port')"; }
[ "$(on_port "$ROUTED_PORT")" = "$REPLICA_PORT" ] || die "the routed weir does not read from the replica"
[ "$(on_port "$PRIMARY_ONLY_PORT")" = "$PRIMARY_PORT" ] || die "the primary_only weir does not read from the primary"

tps() {                          # tps PORT CLIENTS MODE [PGBENCH_ARGS...]
    local port=$1 clients=$2 mode=$3; shift 3
    pgbench "$@" -n -M "$mode" -c "$clients" -j 2 -T "$DURATION" -h 127.0.0.1 -p "$port" -U postgres postgres 2>/dev/null |
        awk '/^tps = / { print $3; exit }'
}
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
compare() {                      # compare LABEL CLIENTS PORT_A PORT_B MODE [PGBENCH_ARGS...]: REPS rounds, A/B
    local label=$1 c=$2 port_a=$3 port_b=$4 mode=$5 r a b ratio ratios=()
    shift 5
    for ((r = 1; r <= REPS; r++)); do
        a=$(tps "$port_a" "$c" "$mode" "$@"); b=$(tps "$port_b" "$c" "$mode" "$@")
        ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }')
        ratios+=("$ratio")
        echo "| $label | $c | $r | $a | $b | $ratio |"
    done
    echo "| $label | $c | median | | | **$(median "${ratios[@]}")** |"
}
echo "| mode | clients | round | routed TPS (replica) | primary_only TPS | ratio |"
echo "|---|---|---|---|---|---|"
for mode in $MODES; do
    for c in $CLIENTS; do compare "$mode" "$c" "$ROUTED_PORT" "$PRIMARY_ONLY_PORT" "$mode" -S; done
done
[ -n "$RYW_CLIENTS" ] || exit 0
echo
echo "| workload | clients | round | read_your_writes = true TPS | = false TPS | ratio |"
echo "|---|---|---|---|---|---|"
for c in $RYW_CLIENTS; do compare tpcb-like "$c" "$ROUTED_PORT" "$NO_RYW_PORT" simple; done
