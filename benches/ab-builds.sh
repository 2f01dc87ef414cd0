#!/usr/bin/env bash
# ab-builds.sh BEFORE_BIN NEW_BIN [CLIENTS] [SECONDS] [ROUNDS]
#
# Compares two weir builds and PgBouncer side by side on `pgbench -S` (select-only,
# simple protocol unless MODE=extended|prepared), interleaving the three targets in
# each round so they share the machine's noise. Prints TPS and the pooler's CPU
# microseconds per transaction (utime + stime from /proc over the run, per transaction
# pgbench reports), then the averages.
#
# It starts its own throwaway PostgreSQL (trust auth, fsync off) with pgbench data
# under WORK, weir BEFORE on 26432, weir NEW on 26433 and PgBouncer on 27432, all in
# transaction mode with a pool of 20. Loopback only. Run as root or as a user that can
# run initdb; as root the servers run as `postgres`.
#
# Example (what docs/benchmarks.md records):
#   git worktree add /tmp/wt-before 8f95d41 && (cd /tmp/wt-before && cargo build --release)
#   cargo build --release
#   benches/ab-builds.sh /tmp/wt-before/target/release/weir target/release/weir 64 5 5
set -u
BEFORE=${1:?weir binary before}; NEW=${2:?weir binary after}
C=${3:-64}; T=${4:-5}; R=${5:-3}; M=${MODE:-simple}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}; PGB=${PGBOUNCER_BIN:-/usr/sbin/pgbouncer}
WORK=${WORK:-/tmp/weir-ab}
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir -p "$WORK"; [ "$(id -u)" = 0 ] && chown postgres "$WORK"
if [ ! -d "$WORK/data" ]; then
  as_pg "$PG_BIN/initdb" -D "$WORK/data" -A trust -U postgres >/dev/null
  cat >> "$WORK/data/postgresql.conf" <<CONF
port = 25432
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 300
CONF
fi
as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/pg.log" -w start >/dev/null 2>&1 || true
if ! psql -h 127.0.0.1 -p 25432 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='bench'" | grep -q 1; then
  psql -h 127.0.0.1 -p 25432 -U postgres -qc "CREATE DATABASE bench"
  pgbench -h 127.0.0.1 -p 25432 -U postgres -i -s 10 -q bench >/dev/null 2>&1
fi
for port in 26432 26433; do cat > "$WORK/weir-$port.toml" <<TOML
[listen]
addr = "127.0.0.1:$port"
[pool]
size = 20
max_client_conn = 10000
query_wait_timeout = "120s"
[auth]
method = "trust"
[[users]]
name = "postgres"
[[databases]]
name = "bench"
hosts = ["127.0.0.1:25432"]
TOML
done
echo '"postgres" ""' > "$WORK/users.txt"
cat > "$WORK/pgbouncer.ini" <<INI
[databases]
bench = host=127.0.0.1 port=25432 dbname=bench
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = 27432
unix_socket_dir =
auth_type = trust
auth_file = $WORK/users.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 10000
logfile = $WORK/pgb.log
INI
[ "$(id -u)" = 0 ] && chown postgres "$WORK"/*.ini "$WORK"/users.txt
"$BEFORE" --config "$WORK/weir-26432.toml" >"$WORK/before.log" 2>&1 & PB=$!
"$NEW" --config "$WORK/weir-26433.toml" >"$WORK/new.log" 2>&1 & PN=$!
as_pg "$PGB" "$WORK/pgbouncer.ini" >/dev/null 2>&1 & PG=$!
trap 'kill $PB $PN $PG 2>/dev/null; pkill -f "$WORK/pgbouncer.ini" 2>/dev/null' EXIT
sleep 1
pid_of() { case $1 in 26432) echo $PB;; 26433) echo $PN;; 27432) pgrep -f "$WORK/pgbouncer.ini" | tail -1;; esac; }
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
tck=$(getconf CLK_TCK)
for r in $(seq "$R"); do
  for port in 26432 26433 27432; do
    p=$(pid_of $port); c0=$(cpu "$p")
    out=$(pgbench -h 127.0.0.1 -p $port -U postgres -S -M "$M" -c "$C" -j 2 -T "$T" bench 2>&1)
    c1=$(cpu "$p")
    tps=$(echo "$out" | grep -oP 'tps = \K[0-9.]+')
    n=$(echo "$out" | grep -oP 'actually processed: \K[0-9]+')
    us=$(echo "($c1 - $c0) * 1000000 / $tck / $n" | bc -l)
    printf "round %s port %s tps %8.0f cpu_us/tx %5.1f\n" "$r" $port "$tps" "$us"
  done
done | tee "$WORK/rounds.out"
awk '/26432/{a+=$8; at+=$6; n++} /26433/{b+=$8; bt+=$6} /27432/{c+=$8; ct+=$6}
  END {printf "average: before %.0f tps %.1f us/tx | new %.0f tps %.1f us/tx | pgbouncer %.0f tps %.1f us/tx\n", at/n, a/n, bt/n, b/n, ct/n, c/n}' "$WORK/rounds.out"
