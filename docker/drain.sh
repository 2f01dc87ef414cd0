#!/usr/bin/env bash
# Drains weir before it is stopped: the Kubernetes preStop hook in
# kubernetes/deployment.yaml (installed in the image as /usr/local/bin/weir-drain).
#
#  1. Sleeps DRAIN_DELAY seconds (default 5). weir keeps serving meanwhile, while the
#     endpoint removal of the terminating pod reaches every load balancer, so that no
#     new client is sent here after step 2.
#  2. PAUSE on the admin console: returns once no transaction is running; transactions
#     that clients start afterwards wait instead of running. It is given DRAIN_TIMEOUT
#     seconds (default 20); a transaction still running then is left to step 3.
#  3. Exits. Kubernetes then sends SIGTERM: weir stops listening, lets running
#     transactions finish (listen.shutdown_timeout), and closes every client with
#     57P01 "terminating connection", which pools and drivers answer by reconnecting,
#     through the Service, to a pod that is not going away.
#
# Environment: DRAIN_HOST (default 127.0.0.1), DRAIN_PORT (default 6432), DRAIN_USER (an
# admin.users entry, default admin) with its password in PGPASSWORD (or a PGPASSFILE);
# DRAIN_DELAY, DRAIN_TIMEOUT. A failure is reported but does not stop the shutdown.
set -uo pipefail

sleep "${DRAIN_DELAY:-5}"
if PGCONNECT_TIMEOUT=5 timeout "${DRAIN_TIMEOUT:-20}" \
    psql -X -q -w -v ON_ERROR_STOP=1 -h "${DRAIN_HOST:-127.0.0.1}" -p "${DRAIN_PORT:-6432}" \
    -U "${DRAIN_USER:-admin}" -d weir -c PAUSE; then
    echo "weir-drain: paused; no transaction is running"
else
    echo "weir-drain: PAUSE did not complete; shutting down anyway" >&2
    exit 1
fi
