#!/bin/sh
# HEALTHCHECK of the softadastra image (installed as
# /usr/local/bin/softadastra-healthcheck).  Asks the node in this container
# through the softadastra executable itself: no curl in the image.
#
# The URL is SOFTADASTRA_HEALTH_URL when set, otherwise loopback on the port
# of SOFTADASTRA_LISTEN (so changing the listen port moves the check too).
# Exit 0 healthy, 1 unhealthy (Docker reserves 2).
listen="${SOFTADASTRA_LISTEN:-127.0.0.1:8080}"
port="${listen##*:}"
case "$listen" in
  \[*) host="[::1]" ;;      # [IPv6]:port
  *) host="127.0.0.1" ;;    # 0.0.0.0, 127.0.0.1, localhost, an IPv4 address
esac
url="${SOFTADASTRA_HEALTH_URL:-http://$host:$port}"

# `softadastra health` asks GET /healthz, which needs no token.
softadastra health --url "$url" >/dev/null 2>&1
rc=$?
[ "$rc" -eq 0 ] && exit 0
if [ "$rc" -eq 2 ]; then
  # Exit 2 is a usage error: an executable without the `health` command.
  # Fall back to `softadastra status` (GET /v1/status), which needs the
  # token when the node has one (SOFTADASTRA_TOKEN or SOFTADASTRA_AUTH_TOKEN).
  softadastra status --url "$url" --token "${SOFTADASTRA_TOKEN:-${SOFTADASTRA_AUTH_TOKEN:-}}" >/dev/null && exit 0
fi
exit 1
