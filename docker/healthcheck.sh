#!/bin/sh
# HEALTHCHECK of the softadastra image (installed as
# /usr/local/bin/softadastra-healthcheck): `softadastra health`, i.e.
# GET /healthz through the executable itself (no curl in the image, no token
# needed), on loopback at the port of SOFTADASTRA_LISTEN, so that changing
# the listen port moves the check too.  SOFTADASTRA_HEALTH_URL overrides the
# URL.  Exit 0 healthy, 1 unhealthy (Docker reserves 2).
listen="${SOFTADASTRA_LISTEN:-127.0.0.1:8080}"
port="${listen##*:}"
case "$listen" in
  \[*) host="[::1]" ;;   # [IPv6]:port
  *) host="127.0.0.1" ;; # 0.0.0.0, 127.0.0.1, localhost, an IPv4 address
esac
softadastra health --url "${SOFTADASTRA_HEALTH_URL:-http://$host:$port}" || exit 1
