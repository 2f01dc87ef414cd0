#!/usr/bin/env bash
# callgrind-tx.sh WEIR_BIN [CLIENTS] [TX_PER_CLIENT]
#
# Counts the user-space instructions weir executes per `pgbench -S` transaction, under
# valgrind's callgrind: repeatable on a noisy machine, where timings are not. Runs
# pgbench twice through weir, with TX_PER_CLIENT and 2 x TX_PER_CLIENT transactions per
# client, each against a fresh weir under callgrind; the difference in instructions
# divided by the difference in transactions leaves out start-up, logins and shutdown.
# Kernel time (the system calls themselves) is not counted.
#
# Needs the PostgreSQL that benches/ab-builds.sh starts (port 25432, database bench):
# run that script once first. MODE=extended|prepared as in pgbench's -M; MODE=churn opens
# a new connection per transaction (pgbench -C, trust), so the figure is per connection.
set -u
BIN=${1:?weir binary}; C=${2:-64}; N=${3:-200}; M=${MODE:-simple}
WORK=${WORK:-/tmp/weir-ab}; PORT=26439
CONF="$WORK/weir-cg.toml"
sed "s/26432/$PORT/" "$WORK/weir-26432.toml" > "$CONF"
run() {
  local out="$WORK/cg.$1.out"
  rm -f "$out"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN" --config "$CONF" >/dev/null 2>&1 &
  local vg=$!
  for _ in $(seq 100); do
    psql -h 127.0.0.1 -p $PORT -U postgres -tAc 'SELECT 1' bench >/dev/null 2>&1 && break
    sleep 0.2
  done
  local how=(-M "$M")
  [ "$M" = churn ] && how=(-M simple -C)
  pgbench -h 127.0.0.1 -p $PORT -U postgres -S "${how[@]}" -c "$C" -j 2 -t "$1" bench >/dev/null 2>&1
  kill -INT $vg; wait $vg
  callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'
}
a=$(run "$N"); b=$(run $((2 * N)))
echo "instructions: $a for $N tx/client, $b for $((2 * N)); per transaction: $(( (b - a) / (C * N) ))"
