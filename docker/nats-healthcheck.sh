#!/bin/bash
# HEALTHCHECK of docker/nats.Dockerfile (installed as
# /usr/local/bin/nats-healthcheck): GET /healthz on the server's monitoring
# port (127.0.0.1:8222, NATS_MONITOR_PORT overrides), through bash's
# /dev/tcp (no curl in the image).  nats-server answers 200 once it accepts
# clients and, with JetStream in a cluster, once it has found the meta
# leader: a server alone of three is not healthy until a second one is up.
# Exit 0 healthy, 1 unhealthy (Docker reserves 2).
port="${NATS_MONITOR_PORT:-8222}"
exec 3<>"/dev/tcp/127.0.0.1/$port" 2>/dev/null || exit 1
printf 'GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
IFS= read -r -t 3 status <&3 || exit 1
case "$status" in
  "HTTP/1."?" 200 "*) exit 0 ;;
  *) exit 1 ;;
esac
