#!/usr/bin/env bash
# The image's HEALTHCHECK (installed as /usr/local/bin/weir-healthcheck): GET /health on
# weir's metrics listener, healthy on 200. weir answers 200 when it accepts clients and
# every database knows its primary, 503 (with the reason, printed here) otherwise.
# Plain bash (/dev/tcp), so the image needs no curl or wget.
#
# Environment: HEALTH_HOST (default 127.0.0.1), HEALTH_PORT (default 9930, the port of
# metrics.listen), HEALTH_PATH (default /health), HEALTH_TIMEOUT seconds (default 3).
set -euo pipefail

host=${HEALTH_HOST:-127.0.0.1}
port=${HEALTH_PORT:-9930}
path=${HEALTH_PATH:-/health}
limit=${HEALTH_TIMEOUT:-3}

if ! { exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null; then
    echo "weir-healthcheck: nothing listens on $host:$port (is metrics.listen set?)" >&2
    exit 1
fi
printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$host" >&3
IFS= read -r -t "$limit" status <&3 || true
status=${status%$'\r'}
body=""
while IFS= read -r -t "$limit" line <&3; do
    body+="${line%$'\r'}"$'\n'
done
case "$status" in
HTTP/1.?" 200 "*) exit 0 ;;
esac
# The body follows the blank line that ends the head.
echo "weir-healthcheck: ${status:-no answer} ${body#*$'\n\n'}" >&2
exit 1
