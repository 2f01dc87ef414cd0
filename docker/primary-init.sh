#!/usr/bin/env bash
# Primary setup for docker-compose.yml: the replication role, the application's role and
# database, and the pg_hba.conf line that lets replicas stream.
#
# In the postgres image it runs from /docker-entrypoint-initdb.d/ while the entrypoint's
# temporary server is up (on the Unix socket, as POSTGRES_USER). Anywhere else it runs
# against any server its environment points psql at, e.g.
#   PGHOST=127.0.0.1 PGPORT=5432 POSTGRES_USER=postgres APP_PASSWORD=... \
#   REPLICATION_PASSWORD=... docker/primary-init.sh
# and it can run again: what exists is kept (passwords are set again).
#
# Environment:
#   POSTGRES_USER         superuser to connect as (default postgres)
#   POSTGRES_DB           database to connect to (default: POSTGRES_USER)
#   PGHOST, PGPORT, PGPASSWORD   where and how psql connects (libpq's own variables)
#   APP_USER, APP_PASSWORD       the application's login role (default user app)
#   APP_DB                       its database, owned by APP_USER (default appdb)
#   REPLICATION_USER, REPLICATION_PASSWORD   the role replicas stream as (default replicator)
#   REPLICATION_HBA_ADDRESS      who may stream, a pg_hba.conf address (default samenet:
#                                the networks the server is on, e.g. the compose network)
#   HBA_FILE                     pg_hba.conf to add to (default: the server's hba_file;
#                                it must be a file this script can write)

# The entrypoint sources a .sh that is not executable: keep our shell options and exits
# inside a subshell so they never leak into it.
weir_primary_init() (
    set -euo pipefail

    local superuser=${POSTGRES_USER:-postgres}
    local app_user=${APP_USER:-app}
    local app_db=${APP_DB:-appdb}
    local repl_user=${REPLICATION_USER:-replicator}
    local hba_address=${REPLICATION_HBA_ADDRESS:-samenet}
    : "${APP_PASSWORD:?set APP_PASSWORD, the password of $app_user}"
    : "${REPLICATION_PASSWORD:?set REPLICATION_PASSWORD, the password of $repl_user}"

    local psql=(psql -X -q -v ON_ERROR_STOP=1 --no-password
        --username "$superuser" --dbname "${POSTGRES_DB:-$superuser}")

    # Values travel as psql variables (:'name' quotes a literal, :"name" an identifier),
    # so a password with quotes in it cannot break the SQL.
    "${psql[@]}" \
        -v app_user="$app_user" -v app_password="$APP_PASSWORD" -v app_db="$app_db" \
        -v repl_user="$repl_user" -v repl_password="$REPLICATION_PASSWORD" <<'SQL'
SELECT format(CASE WHEN EXISTS (SELECT FROM pg_roles WHERE rolname = :'repl_user')
                   THEN 'ALTER ROLE %I WITH REPLICATION LOGIN PASSWORD %L'
                   ELSE 'CREATE ROLE %I WITH REPLICATION LOGIN PASSWORD %L' END,
              :'repl_user', :'repl_password') \gexec
SELECT format(CASE WHEN EXISTS (SELECT FROM pg_roles WHERE rolname = :'app_user')
                   THEN 'ALTER ROLE %I WITH LOGIN PASSWORD %L'
                   ELSE 'CREATE ROLE %I WITH LOGIN PASSWORD %L' END,
              :'app_user', :'app_password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'app_db', :'app_user')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'app_db') \gexec
SQL

    local hba=${HBA_FILE:-}
    if [ -z "$hba" ]; then
        hba=$("${psql[@]}" -A -t -c 'SHOW hba_file')
    fi
    local line="host replication $repl_user $hba_address scram-sha-256"
    if ! grep -qxF -- "$line" "$hba"; then
        printf '# replicas (docker/primary-init.sh)\n%s\n' "$line" >>"$hba"
    fi
    "${psql[@]}" -A -t -c 'SELECT pg_reload_conf()' >/dev/null
    echo "primary-init: roles $repl_user and $app_user, database $app_db, and '$line' in $hba"
)

weir_primary_init "$@"
