#!/usr/bin/env bash
# Entrypoint of the streaming replica in docker-compose.yml: waits for the primary,
# clones it with `pg_basebackup -R` into an empty $PGDATA, then runs postgres in its place
# (exec, as the postgres user), so the container's stop signal reaches the server.
# A $PGDATA that already holds a cluster is started as it is.
#
# It needs the PostgreSQL server binaries on PATH (the postgres image has them) and
# nothing Docker-specific, so it also runs on a plain host, e.g.
#   PRIMARY_HOST=127.0.0.1 REPLICATION_PASSWORD=... PGDATA=/tmp/replica \
#   docker/replica-entrypoint.sh -c port=5433
#
# Environment:
#   PRIMARY_HOST, PRIMARY_PORT   the primary (port default 5432)
#   REPLICATION_USER, REPLICATION_PASSWORD   the role made by primary-init.sh
#                                (default user replicator)
#   PGDATA                       the replica's data directory (empty or missing at first)
#   REPLICA_NAME                 application_name, shown in the primary's
#                                pg_stat_replication (default: the host name)
#   PRIMARY_WAIT_SECONDS         how long to wait for the primary (default 120)
# Arguments are passed to postgres (a leading `postgres`, the image's CMD, is dropped).
set -euo pipefail

: "${PRIMARY_HOST:?set PRIMARY_HOST, the primary to clone}"
: "${REPLICATION_PASSWORD:?set REPLICATION_PASSWORD, the password of the replication role}"
: "${PGDATA:?set PGDATA, the replica data directory}"
primary_port=${PRIMARY_PORT:-5432}
repl_user=${REPLICATION_USER:-replicator}
name=${REPLICA_NAME:-${HOSTNAME:-replica}}
wait_seconds=${PRIMARY_WAIT_SECONDS:-120}
if [ "${1:-}" = postgres ]; then
    shift
fi
cd /

# As root (the image's default), make $PGDATA the postgres user's and run the server
# programs as that user: gosu in the postgres image, setpriv (util-linux) elsewhere.
as_postgres=()
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA"
    chown postgres: "$PGDATA"
    chmod 700 "$PGDATA"
    if command -v gosu >/dev/null; then
        as_postgres=(gosu postgres)
    else
        as_postgres=(setpriv --reuid=postgres --regid=postgres --init-groups)
    fi
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    echo "replica-entrypoint: waiting for the primary at $PRIMARY_HOST:$primary_port"
    deadline=$((SECONDS + wait_seconds))
    until pg_isready -q -h "$PRIMARY_HOST" -p "$primary_port" -t 2; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "replica-entrypoint: no primary at $PRIMARY_HOST:$primary_port after ${wait_seconds}s" >&2
            exit 1
        fi
        sleep 1
    done
    echo "replica-entrypoint: cloning the primary into $PGDATA"
    # -R writes primary_conninfo and standby.signal; -X stream copies the WAL the backup
    # needs over a second connection; -c fast asks for an immediate checkpoint.
    PGPASSWORD=$REPLICATION_PASSWORD "${as_postgres[@]}" pg_basebackup \
        --dbname="host=$PRIMARY_HOST port=$primary_port user=$repl_user application_name=$name" \
        --pgdata="$PGDATA" --write-recovery-conf --wal-method=stream --checkpoint=fast \
        --no-password
fi

# The walreceiver authenticates with primary_conninfo (which -R wrote with the password)
# or, failing that, with PGPASSWORD from this environment.
export PGPASSWORD=$REPLICATION_PASSWORD
echo "replica-entrypoint: starting the replica"
exec "${as_postgres[@]}" postgres -D "$PGDATA" "$@"
