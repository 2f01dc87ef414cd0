#!/usr/bin/env bash
# idle-clients.sh -- weir's memory with N idle client connections held open (issue 2: 10,000 < 150 MB).
#
# Usage:   benches/idle-clients.sh [WEIR_BIN]
#          N=10000 benches/idle-clients.sh /tmp/weir-bench/target/release/weir
#
# What it does
#   1. Starts a throwaway PostgreSQL cluster (initdb + pg_ctl from PG_BIN, run as RUN_USER via runuser
#      when we are root; trust auth; loopback only; fsync=off -- never point it at data you care about).
#   2. Writes a weir configuration (transaction mode, pool.size = POOL_SIZE, auth.method = "trust",
#      max_client_conn = N + 100) and starts WEIR_BIN (default: target/release/weir of this repo; it is
#      not built here) in the background with `ulimit -n NOFILE`.
#   3. Samples weir's VmRSS/VmHWM (/proc/PID/status) before any client ("baseline").
#   4. A python3 asyncio client opens N TCP connections (CONCURRENCY logins in flight), sends a
#      StartupMessage on each, reads until ReadyForQuery ('Z') and then holds the socket, sending
#      nothing more. Errors from weir are counted by SQLSTATE.
#   5. With the N clients held: samples weir's RSS right away and again after SETTLE seconds (weir
#      frees the buffers of clients idle for two seconds), runs a few queries with psql on a normal
#      connection through weir, and a short `pgbench -n -f SELECT 1` at 1 client (latency), to show
#      weir still serves. Then checks every held socket is still open, closes them all, and samples
#      RSS once more.
#   6. Prints a summary (RSS total and per client). Everything it started is stopped by pid on exit
#      (trap), and the work directory is removed unless KEEP_WORKDIR=1.
#
# Environment (defaults in brackets)
#   N [10000] idle clients   CONCURRENCY [200] logins in flight   SETTLE [5] s with all N held
#   NOFILE [65536] fd limit for weir and the client (falls back to the hard limit if it cannot be raised)
#   PG_BIN [/usr/lib/postgresql/15/bin]   HOST [127.0.0.1]   PG_PORT [28432]   WEIR_PORT [29432]
#   POOL_SIZE [5]   DB [bench]   DB_USER [bench]   RUN_USER [postgres] (OS user for the server when root)
#   PGBENCH_SECS [3] (0 = skip the pgbench latency check)   KEEP_WORKDIR [0]   WEIR_LOG [warn]
#
# Output: the summary on stdout; also written as key=value lines to $OUT (if set).
# Exit status: 0 when all N clients logged in and stayed connected and the queries worked, 1 otherwise.

set -uo pipefail
export LC_ALL=C

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WEIR_BIN=${1:-${WEIR_BIN:-$repo/target/release/weir}}
N=${N:-10000}
CONCURRENCY=${CONCURRENCY:-200}
SETTLE=${SETTLE:-5}
NOFILE=${NOFILE:-65536}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
HOST=${HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-28432}
WEIR_PORT=${WEIR_PORT:-29432}
POOL_SIZE=${POOL_SIZE:-5}
DB=${DB:-bench}
DB_USER=${DB_USER:-bench}
RUN_USER=${RUN_USER:-postgres}
PGBENCH_SECS=${PGBENCH_SECS:-3}
KEEP_WORKDIR=${KEEP_WORKDIR:-0}
OUT=${OUT:-}
export WEIR_LOG=${WEIR_LOG:-warn}

die() { echo "idle-clients: ERROR: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
isint() { [[ $1 =~ ^[0-9]+$ ]]; }

case ${1:-} in -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0;; esac
for v in N CONCURRENCY SETTLE NOFILE PG_PORT WEIR_PORT POOL_SIZE PGBENCH_SECS; do
    isint "${!v}" || die "$v must be a non-negative integer (got '${!v}')"
done
[ "$N" -ge 1 ] || die "N must be >= 1"
[ -x "$WEIR_BIN" ] || die "no weir binary at $WEIR_BIN (build it: cargo build --release)"
[ -x "$PG_BIN/initdb" ] || die "no initdb in PG_BIN=$PG_BIN"
command -v python3 >/dev/null || die "python3 is needed"

# ---------------------------------------------------------------- state + cleanup
WORK= ; PG_STARTED=0 ; WEIR_PID= ; CLIENT_PID=

stop_pid() {                     # TERM, wait <= 15 s, then KILL
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }; sleep 0.1; done
    log "pid $pid did not stop on TERM, sending KILL"
    kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
    return 0
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    [ -n "$CLIENT_PID" ] && stop_pid "$CLIENT_PID"
    [ -n "$WEIR_PID" ] && stop_pid "$WEIR_PID"
    if [ "$PG_STARTED" = 1 ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -m immediate -w stop >/dev/null 2>&1 ||
            { pm=$(head -1 "$WORK/data/postmaster.pid" 2>/dev/null); [ -n "$pm" ] && kill -KILL "$pm" 2>/dev/null; }
    fi
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ "$KEEP_WORKDIR" = 1 ]; then log "work dir kept: $WORK"; else rm -rf -- "$WORK"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

if [ "$(id -u)" = 0 ]; then
    id "$RUN_USER" >/dev/null 2>&1 || die "running as root needs the OS user RUN_USER=$RUN_USER"
    as_pg() { runuser -u "$RUN_USER" -- "$@"; }
else
    as_pg() { "$@"; }
fi

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }
wait_port() {                    # wait_port PORT SECONDS
    local i n=$(( $2 * 10 ))
    for ((i = 0; i < n; i++)); do port_open "$1" && return 0; sleep 0.1; done
    return 1
}
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null; }
mib() { awk -v kb="$1" 'BEGIN { printf "%.1f", kb / 1024 }'; }
fd_count() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
SUMMARY=()
note() { SUMMARY+=("$1=$2"); }
sample() {                       # sample LABEL: weir's RSS, peak RSS, threads, fds
    local rss hwm thr fds
    rss=$(status_kb "$WEIR_PID" VmRSS); hwm=$(status_kb "$WEIR_PID" VmHWM)
    thr=$(status_kb "$WEIR_PID" Threads); fds=$(fd_count "$WEIR_PID")
    [ -n "$rss" ] || die "weir (pid $WEIR_PID) is gone; see its log"
    note "${1}_rss_kb" "$rss"; note "${1}_hwm_kb" "$hwm"; note "${1}_threads" "$thr"; note "${1}_fds" "$fds"
    log "$1: VmRSS $(mib "$rss") MiB, VmHWM $(mib "$hwm") MiB, threads $thr, fds $fds"
    eval "RSS_$1=$rss HWM_$1=$hwm"
}

# ---------------------------------------------------------------- limits, server, weir
ulimit -n "$NOFILE" 2>/dev/null || { h=$(ulimit -Hn); [ "$h" = unlimited ] || ulimit -n "$h"
    log "cannot raise ulimit -n to $NOFILE (hard limit $h): using $(ulimit -n)"; }
[ "$(ulimit -n)" -ge $(( N + 200 )) ] || die "ulimit -n is $(ulimit -n): too low for N=$N (raise the hard limit)"
port_open "$PG_PORT" && die "port $PG_PORT is in use (set PG_PORT)"
port_open "$WEIR_PORT" && die "port $WEIR_PORT is in use (set WEIR_PORT)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/weir-idle-clients.XXXXXX") || die "mktemp failed"
chmod 755 "$WORK"
mkdir "$WORK/data"
[ "$(id -u)" = 0 ] && chown "$RUN_USER" "$WORK" "$WORK/data"     # the server's socket lock file goes here
log "work dir $WORK; weir $WEIR_BIN; N=$N; ulimit -n $(ulimit -n)"

as_pg "$PG_BIN/initdb" -D "$WORK/data" -U postgres -A trust -E UTF8 --no-locale >"$WORK/initdb.log" 2>&1 ||
    { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
pg_opts="-c listen_addresses=$HOST -c port=$PG_PORT -c unix_socket_directories=$WORK -c max_connections=$(( POOL_SIZE + 20 ))"
pg_opts+=" -c shared_buffers=32MB -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c autovacuum=off"
touch "$WORK/postgres.log"; [ "$(id -u)" = 0 ] && chown "$RUN_USER" "$WORK/postgres.log"
as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/postgres.log" -w -t 60 -o "$pg_opts" start >/dev/null ||
    { tail -20 "$WORK/postgres.log" >&2; die "postgres did not start"; }
PG_STARTED=1
"$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$PG_PORT" -U postgres -d postgres \
    -c "CREATE ROLE \"$DB_USER\" LOGIN" -c "CREATE DATABASE \"$DB\" OWNER \"$DB_USER\"" ||
    die "cannot create role/database"

cat >"$WORK/weir.toml" <<TOML
[listen]
addr = "$HOST:$WEIR_PORT"
shutdown_timeout = "5s"

[pool]
mode = "transaction"
size = $POOL_SIZE
max_client_conn = $(( N + 100 ))

[auth]
method = "trust"

[[users]]
name = "$DB_USER"

[[databases]]
name = "$DB"
hosts = ["$HOST:$PG_PORT"]
routing = "primary_only"
TOML
"$WEIR_BIN" --config "$WORK/weir.toml" >"$WORK/weir.log" 2>&1 </dev/null &
WEIR_PID=$!
wait_port "$WEIR_PORT" 30 || { tail -20 "$WORK/weir.log" >&2; die "weir is not listening on $HOST:$WEIR_PORT"; }
log "weir pid $WEIR_PID on $HOST:$WEIR_PORT (fd limit $(awk '/open files/{print $4}' "/proc/$WEIR_PID/limits"))"
sleep 1
sample baseline

# ---------------------------------------------------------------- the idle clients
cat >"$WORK/idle_clients.py" <<'PY'
"""Open N PostgreSQL client connections, log each in (StartupMessage, read to ReadyForQuery), hold them.

Prints one status line when all logins are done, then waits for SIGUSR1 (or stdin EOF), checks that
every held socket is still open, prints a second line and closes them all."""
import asyncio, collections, os, signal, socket, struct, sys, time

host, port, n, conc, user, db = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]

def startup_message():
    body = struct.pack("!I", 196608)
    for k, v in (("user", user), ("database", db), ("application_name", "idle-clients")):
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body

STARTUP = startup_message()

async def recv_exact(loop, s, k):
    buf = b""
    while len(buf) < k:
        chunk = await loop.sock_recv(s, k - len(buf))
        if not chunk:
            raise ConnectionError("closed by weir")
        buf += chunk
    return buf

def sqlstate(body):
    for field in body.split(b"\0"):
        if field[:1] == b"C":
            return field[1:].decode(errors="replace")
    return "?"

async def login(loop, sem, held, errors):
    async with sem:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            await loop.sock_connect(s, (host, port))
            await loop.sock_sendall(s, STARTUP)
            while True:
                hdr = await recv_exact(loop, s, 5)
                tag, length = hdr[:1], struct.unpack("!I", hdr[1:])[0]
                body = await recv_exact(loop, s, length - 4)
                if tag == b"E":
                    raise ConnectionError("ErrorResponse " + sqlstate(body))
                if tag == b"R" and struct.unpack("!I", body[:4])[0] != 0:
                    raise ConnectionError("asked for a password: auth.method is not trust")
                if tag == b"Z":
                    held.append(s)
                    return
        except (OSError, ConnectionError) as e:
            errors[str(e)[:80]] += 1
            s.close()

async def main():
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(conc)
    held, errors = [], collections.Counter()
    t0 = time.monotonic()
    await asyncio.gather(*(login(loop, sem, held, errors) for _ in range(n)))
    dt = time.monotonic() - t0
    print(f"logged_in={len(held)} failed={sum(errors.values())} login_s={dt:.2f} errors={dict(errors)}", flush=True)
    release = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, release.set)
    loop.add_reader(sys.stdin.fileno(), release.set)  # stdin EOF (the script died) also releases
    await release.wait()
    alive = 0
    for s in held:
        try:
            alive += s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""  # data: unexpected but open
        except BlockingIOError:
            alive += 1                                                        # nothing to read: open
        except OSError:
            pass
    print(f"still_open={alive}", flush=True)
    for s in held:
        s.close()

asyncio.run(main())
PY

mkfifo "$WORK/client.stdin"
python3 "$WORK/idle_clients.py" "$HOST" "$WEIR_PORT" "$N" "$CONCURRENCY" "$DB_USER" "$DB" \
    <"$WORK/client.stdin" >"$WORK/client.out" 2>"$WORK/client.err" &
CLIENT_PID=$!
exec 7>"$WORK/client.stdin"        # keep the client's stdin open until we release it
log "opening $N connections ($CONCURRENCY logins in flight)"
while ! grep -q '^logged_in=' "$WORK/client.out" 2>/dev/null; do
    kill -0 "$CLIENT_PID" 2>/dev/null || { cat "$WORK/client.err" >&2; die "the client exited early"; }
    sleep 0.2
done
login_line=$(grep '^logged_in=' "$WORK/client.out")
log "client: $login_line"
logged_in=$(sed -n 's/^logged_in=\([0-9]*\).*/\1/p' <<<"$login_line")
note client_login "\"$login_line\""
sample held_0s
sleep "$SETTLE"
sample "held_${SETTLE}s"

# ---------------------------------------------------------------- weir still serves
queries_ok=1
log "queries through weir on a normal connection, with $logged_in clients held:"
q_start=$(date +%s.%N)
"$PG_BIN/psql" -X -v ON_ERROR_STOP=1 -h "$HOST" -p "$WEIR_PORT" -U "$DB_USER" -d "$DB" -c '\timing on' \
    -c "SELECT 1 AS one" \
    -c "SELECT count(*) AS server_backends FROM pg_stat_activity WHERE backend_type = 'client backend'" \
    -c "SELECT sum(i) FROM generate_series(1, 100000) AS i" >"$WORK/psql.out" 2>&1 || queries_ok=0
q_end=$(date +%s.%N)
sed 's/^/    /' "$WORK/psql.out" >&2
note psql_ok "$queries_ok"
note psql_wall_ms "$(awk -v a="$q_start" -v b="$q_end" 'BEGIN { printf "%.0f", (b - a) * 1000 }')"
if [ "$PGBENCH_SECS" -gt 0 ]; then
    printf 'SELECT 1;\n' >"$WORK/select1.sql"
    if "$PG_BIN/pgbench" -n -f "$WORK/select1.sql" -c 1 -T "$PGBENCH_SECS" -h "$HOST" -p "$WEIR_PORT" \
        -U "$DB_USER" "$DB" >"$WORK/pgbench.out" 2>&1; then
        lat=$(awk '/latency average/ { print $4 }' "$WORK/pgbench.out")
        tps=$(awk '/^tps/ { printf "%.0f", $3 }' "$WORK/pgbench.out")
        log "pgbench SELECT 1, 1 client, ${PGBENCH_SECS}s: latency ${lat} ms, ${tps} tps"
        note pgbench_select1_latency_ms "$lat"; note pgbench_select1_tps "$tps"
    else
        queries_ok=0; tail -5 "$WORK/pgbench.out" >&2
    fi
fi
sample held_after_queries

# ---------------------------------------------------------------- release
kill -USR1 "$CLIENT_PID"
wait "$CLIENT_PID"; CLIENT_PID=
exec 7>&-
still_open=$(sed -n 's/^still_open=//p' "$WORK/client.out")
log "client: still_open=$still_open of $logged_in"
note still_open "$still_open"
sleep 3
sample released

# ---------------------------------------------------------------- summary
held_rss=$RSS_held_after_queries
eval "settled=\$RSS_held_${SETTLE}s"
per_client() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { if (n > 0) printf "%.2f", (a - b) / n; else print "" }'; }
ok=1
[ "${logged_in:-0}" = "$N" ] || ok=0
[ "${still_open:-0}" = "$N" ] || ok=0
[ "$queries_ok" = 1 ] || ok=0
{
    echo "== weir with $N idle clients (binary $WEIR_BIN, $("$WEIR_BIN" --version 2>/dev/null))"
    printf '%-34s %10s %12s\n' "sample" "VmRSS MiB" "per client KiB"
    printf '%-34s %10s %12s\n' "baseline (no clients)" "$(mib "$RSS_baseline")" "-"
    printf '%-34s %10s %12s\n' "all $N logged in (0 s)" "$(mib "$RSS_held_0s")" "$(per_client "$RSS_held_0s" "$RSS_baseline" "$N")"
    printf '%-34s %10s %12s\n' "held ${SETTLE} s (idle buffers freed)" "$(mib "$settled")" "$(per_client "$settled" "$RSS_baseline" "$N")"
    printf '%-34s %10s %12s\n' "held, after the queries" "$(mib "$held_rss")" "$(per_client "$held_rss" "$RSS_baseline" "$N")"
    printf '%-34s %10s %12s\n' "after the clients closed" "$(mib "$RSS_released")" "-"
    printf '%-34s %10s\n' "VmHWM (peak) while held" "$(mib "$HWM_held_after_queries")"
    echo "logins: $login_line"
    echo "still open at release: $still_open / $N; queries while held: $([ "$queries_ok" = 1 ] && echo ok || echo FAILED)"
    echo "result: $([ "$ok" = 1 ] && echo ok || echo FAILED)"
} | tee "$WORK/summary.txt"
note n "$N"; note ok "$ok"
[ -n "$OUT" ] && printf '%s\n' "${SUMMARY[@]}" >"$OUT"
[ "$ok" = 1 ]
