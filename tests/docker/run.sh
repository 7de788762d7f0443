#!/usr/bin/env bash
# End-to-end test of the container image (docker/Dockerfile); what it shares
# with tests/docker/fleet.sh (daemon, base image, build, cleanup) is in
# tests/docker/lib.sh:
#
#   1. finds a Docker daemon, or installs docker.io and starts dockerd itself
#      (private socket, data root /var/lib/softadastra-docker-test);
#   2. finds a bookworm base: debian:bookworm-slim when it can be had, else
#      the cached softadastra-base:bookworm, else makes that one with
#      docker/make-base-image.sh (debootstrap + docker import);
#   3. builds the image with --network=host (classic builder) and checks its
#      size and configuration (non-root user, SIGTERM, healthcheck, /data,
#      linked with libnats);
#   4. runs it on a fresh volume (host network, node on 127.0.0.1:<free port>,
#      read-only root, no capabilities), writes keys with curl, checks the
#      process is not root, stops it with `docker stop` (SIGTERM): exit 0;
#   5. starts a new container on the same volume, reads the keys back over
#      HTTP and with the in-image CLI, waits for the HEALTHCHECK to report
#      healthy, stops it;
#   6. backs the volume up with tar (node stopped) and restores it into a
#      new volume, as docker/README.md shows;
#   7. starts one with the image defaults (0.0.0.0:8080 in its own network
#      namespace, --network=none) on the restored volume: healthy, keys there.
#
# Prints PASS/FAIL lines and "docker: N passed, N failed"; exits 1 on any
# failure.  Exits 0 with "SKIPPED: <reason>" only when no Docker daemon can be
# had (not root and none running, docker.io cannot be installed, dockerd does
# not start).  Every container, volume and image it makes, and the daemon it
# starts, is removed at exit, by ID, on failure too.  Kept on purpose, as a
# cache: the base image softadastra-base:bookworm (remove with
# `docker rmi softadastra-base:bookworm`) and the data root of the daemon.
#
# Environment:
#   SA_DOCKER_BASE_IMAGE   use this base image and nothing else
#   SA_DOCKER_MAX_MB       image size limit in MB (default 100)
#   SA_DOCKER_KEEP_IMAGE=1 keep the built image (tagged softadastra:test) and
#                          its build cache, for debugging and faster reruns
#   SA_DOCKER_DATA_ROOT    data root of a daemon this script starts
#   SA_DOCKER_DEADLINE     seconds for the whole run (default 1500): the long
#                          steps are stopped there, and everything cleaned up
set -uo pipefail

MAX_MB="${SA_DOCKER_MAX_MB:-100}"
CONTAINERS=()
VOLUMES=()
IMAGE_ID=""
IMAGE_TAG=""

DT_NAME=docker-test
# shellcheck source=tests/docker/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Called by lib.sh's cleanup (at exit, on failure too), before the images
# and the daemon go: every container and volume this script made, by ID.
cleanup_own() {
  local c v
  for c in "${CONTAINERS[@]}"; do
    docker rm -f -v "$c" >/dev/null 2>&1
  done
  for v in "${VOLUMES[@]}"; do
    docker volume rm -f "$v" >/dev/null 2>&1
  done
}

dt_start

# ---- 1. a Docker daemon ------------------------------------------------------
dt_daemon

# ---- 2. a bookworm base image -------------------------------------------------
dt_base

# ---- 3. build ------------------------------------------------------------------
if [ "${SA_DOCKER_KEEP_IMAGE:-0}" = 1 ]; then IMAGE_TAG="softadastra:test"; else IMAGE_TAG="softadastra-test:$RUN_ID"; fi
dt_build docker/Dockerfile "$IMAGE_TAG" --build-arg SA_BUILD_JOBS=2 || fatal "docker build (log above)"
IMAGE_ID="$(docker image inspect -f '{{.Id}}' "$IMAGE_TAG")"
ok "image built in ${BUILD_S}s: ${IMAGE_ID:7:12}"

size=$(docker image inspect -f '{{.Size}}' "$IMAGE_ID")
size_mb=$(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1000000 }')
if [ "$size" -lt $((MAX_MB * 1000000)) ]; then
  ok "image size ${size_mb} MB (limit $MAX_MB MB)"
else
  bad "image size ${size_mb} MB is over $MAX_MB MB"
fi

inspect() { docker image inspect -f "$1" "$IMAGE_ID"; }
user="$(inspect '{{.Config.User}}')"
case "${user%%:*}" in
  "" | 0 | root) bad "image user is '${user}' (root)" ;;
  *) ok "image user $user (not root)" ;;
esac
sig="$(inspect '{{.Config.StopSignal}}')"
[ "$sig" = SIGTERM ] && ok "STOPSIGNAL $sig" || bad "STOPSIGNAL is '$sig', want SIGTERM"
hc="$(inspect '{{if .Config.Healthcheck}}{{json .Config.Healthcheck.Test}}{{end}}')"
case "$hc" in
  *softadastra*) ok "HEALTHCHECK $hc" ;;
  *) bad "HEALTHCHECK is '$hc', want one through the softadastra executable" ;;
esac
env_list="$(inspect '{{range .Config.Env}}{{println .}}{{end}}')"
grep -qx 'SOFTADASTRA_LISTEN=0.0.0.0:8080' <<<"$env_list" &&
  grep -qx 'SOFTADASTRA_DATA_DIR=/data' <<<"$env_list" &&
  ok "image listens on 0.0.0.0:8080 with its data in /data" ||
  bad "image environment lacks SOFTADASTRA_LISTEN=0.0.0.0:8080 / SOFTADASTRA_DATA_DIR=/data"
vols="$(inspect '{{json .Config.Volumes}}')"
[[ "$vols" == *'"/data"'* ]] && ok "VOLUME /data" || bad "VOLUME is '$vols', want /data"

# The NATS transport is in (docker/Dockerfile builds with libnats-dev and
# installs libnats3.4); tests/docker/fleet.sh runs it.
CONTAINERS+=("$RUN_ID-ldd")
# (the output first, then grep: grep -q would close the pipe early and,
# with pipefail, fail the pipeline)
libs="$(docker run --rm --name "$RUN_ID-ldd" --network=none --entrypoint ldd "$IMAGE_ID" \
  /usr/local/bin/softadastra 2>&1)"
if grep -q 'libnats\.so.* => /' <<<"$libs"; then
  ok "the executable is linked with libnats (the NATS transport)"
else
  bad "the executable is not linked with libnats: --transport nats would say 'built without libnats' ($(grep -c . <<<"$libs") lines of ldd)"
fi

c="$RUN_ID-nocurl"
CONTAINERS+=("$c")
if docker run --rm --name "$c" --network=none --entrypoint /bin/sh "$IMAGE_ID" \
  -c 'command -v curl || command -v wget' >/dev/null 2>&1; then
  bad "the image contains curl or wget"
else
  ok "no curl or wget in the image"
fi

# ---- helpers for the containers (state, show_logs, pick_port: lib.sh) ------
# wait_http CONTAINER: until GET /healthz answers 200 on $PORT (30 s).
wait_http() {
  local i
  for i in $(seq 60); do
    curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/healthz" && return 0
    [ "$(state "$1" '{{.State.Running}}')" = true ] || break
    sleep 0.5
  done
  show_logs "$1"
  return 1
}

# wait_healthy CONTAINER: until Docker's HEALTHCHECK says healthy (90 s).
wait_healthy() {
  local i s t=$SECONDS
  for i in $(seq 90); do
    s="$(state "$1" '{{.State.Health.Status}}')"
    if [ "$s" = healthy ]; then
      ok "$2: HEALTHCHECK reports healthy after $((SECONDS - t))s"
      return 0
    fi
    [ "$s" = unhealthy ] && break
    [ "$(state "$1" '{{.State.Running}}')" = true ] || break
    sleep 1
  done
  bad "$2: HEALTHCHECK status '$s' (want healthy)"
  state "$1" '{{json .State.Health.Log}}' | tail -c 1500
  echo
  show_logs "$1"
  return 1
}

# stop_graceful CONTAINER LABEL: docker stop (SIGTERM, 30 s grace) must end
# with exit code 0, before the grace period would turn into SIGKILL.
stop_graceful() {
  local t=$SECONDS code
  docker stop -t 30 "$1" >/dev/null 2>&1
  code="$(state "$1" '{{.State.ExitCode}}')"
  if [ "$code" = 0 ]; then
    ok "$2: docker stop (SIGTERM) -> exit 0 after $((SECONDS - t))s"
  else
    bad "$2: docker stop (SIGTERM) -> exit code '$code' after $((SECONDS - t))s (137 = needed SIGKILL)"
    show_logs "$1"
  fi
}

# not_root CONTAINER LABEL: id -u inside and the real UIDs in /proc.
not_root() {
  local uid pid uids
  uid="$(docker exec "$1" id -u 2>/dev/null)"
  pid="$(state "$1" '{{.State.Pid}}')"
  uids="$(awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$pid/status" 2>/dev/null)"
  if [ -n "$uid" ] && [ "$uid" != 0 ] && [ -n "$uids" ] && [[ " $uids " != *" 0 "* ]]; then
    ok "$2: node runs as uid $uid (host /proc/$pid: uids $uids)"
  else
    bad "$2: node runs as root or unknown (id -u: '$uid', /proc/$pid uids: '$uids')"
  fi
}

# ---- 4. first container: write -----------------------------------------------
VOL="$RUN_ID-data"
docker volume create "$VOL" >/dev/null || fatal "docker volume create"
VOLUMES+=("$VOL")
PORT="$(pick_port)" || fatal "no free port on 127.0.0.1"
KEY1="docker/test-$RUN_ID"
VAL1="written before a container restart $RANDOM$RANDOM"
KEY2="settings/theme"
VAL2="dark"

# Hardened as in compose.yaml: read-only root, no capabilities.
run_node() { # NAME [docker run options...]
  local name="$1"
  shift
  CONTAINERS+=("$name")
  docker run -d --name "$name" -v "$NODE_VOL:/data" --read-only --cap-drop ALL \
    --security-opt no-new-privileges -e SOFTADASTRA_NODE_ID=docker-test "$@" "$IMAGE_ID" >/dev/null
}

NODE_VOL="$VOL"
A="$RUN_ID-a"
run_node "$A" --network=host -e "SOFTADASTRA_LISTEN=127.0.0.1:$PORT" || fatal "docker run (first container)"
wait_http "$A" || fatal "first container: node does not answer on 127.0.0.1:$PORT"
ok "first container: node answers on 127.0.0.1:$PORT"

put() { # KEY VALUE -> prints the body, returns non-zero unless 200 or 201
  local code
  code=$(curl -s -o "$WORK/put.out" -w '%{http_code}' --max-time 10 -X PUT \
    --data-binary "$2" "http://127.0.0.1:$PORT/v1/store/$1")
  cat "$WORK/put.out"
  [ "$code" = 200 ] || [ "$code" = 201 ]
}
if body="$(put "$KEY1" "$VAL1")" && [[ "$body" == *'"durable":true'* ]] &&
  body2="$(put "$KEY2" "$VAL2")"; then
  ok "first container: PUT $KEY1 and $KEY2 over HTTP, durable"
else
  bad "first container: PUT over HTTP: '$body' '${body2:-}'"
fi
not_root "$A" "first container"
stop_graceful "$A" "first container"

# ---- 5. second container on the same volume: read back, healthy -------------
B="$RUN_ID-b"
run_node "$B" --network=host -e "SOFTADASTRA_LISTEN=127.0.0.1:$PORT" || fatal "docker run (second container)"
if wait_http "$B"; then
  got="$(curl -s --max-time 10 "http://127.0.0.1:$PORT/v1/store/$KEY1?raw=1")"
  got2="$(curl -s --max-time 10 "http://127.0.0.1:$PORT/v1/store/$KEY2?raw=1")"
  if [ "$got" = "$VAL1" ] && [ "$got2" = "$VAL2" ]; then
    ok "second container: keys read back over HTTP after the restart"
  else
    bad "second container: read back '$got' / '$got2', want '$VAL1' / '$VAL2'"
  fi
  cli="$(docker exec "$B" softadastra store get "$KEY1" --raw --url "http://127.0.0.1:$PORT" 2>&1)"
  [ "$cli" = "$VAL1" ] && ok "second container: the in-image CLI reads the key" ||
    bad "second container: softadastra store get gave '$cli'"
  wait_healthy "$B" "second container"
  # Not vacuous: the same check against a port where nothing listens fails.
  docker exec -e SOFTADASTRA_LISTEN=127.0.0.1:1 "$B" softadastra-healthcheck >/dev/null 2>&1
  rc=$?
  [ "$rc" = 1 ] && ok "second container: the healthcheck exits 1 when no node answers" ||
    bad "second container: the healthcheck against a dead port exited $rc, want 1"
  not_root "$B" "second container"
  stop_graceful "$B" "second container"
else
  bad "second container: node does not answer on 127.0.0.1:$PORT"
fi

# ---- 6. backup and restore of the volume, as in docker/README.md ------------
VOL2="$RUN_ID-restored"
docker volume create "$VOL2" >/dev/null || fatal "docker volume create (restore)"
VOLUMES+=("$VOL2")
CONTAINERS+=("$RUN_ID-backup" "$RUN_ID-restore")
if docker run --rm --name "$RUN_ID-backup" --network=none -v "$VOL:/data:ro" --entrypoint tar \
  "$IMAGE_ID" -C /data -cf - . >"$WORK/backup.tar" &&
  docker run --rm -i --name "$RUN_ID-restore" --network=none -v "$VOL2:/data" --entrypoint tar \
    "$IMAGE_ID" -C /data -xf - <"$WORK/backup.tar"; then
  ok "volume backed up ($(($(stat -c %s "$WORK/backup.tar") / 1024)) KiB tar) and restored into a new volume"
else
  bad "backup/restore of the volume with tar"
fi

# ---- 7. image defaults (0.0.0.0:8080 in the container's own network
# namespace) on the restored volume ---------------------------------------------
NODE_VOL="$VOL2"
C="$RUN_ID-c"
if run_node "$C" --network=none; then
  wait_healthy "$C" "default settings (--network=none, 0.0.0.0:8080)"
  cli="$(docker exec "$C" softadastra store get "$KEY1" --raw 2>&1)"
  [ "$cli" = "$VAL1" ] && ok "default settings: key there after the restore, CLI on the default URL" ||
    bad "default settings: softadastra store get gave '$cli'"
  stop_graceful "$C" "default settings"
else
  bad "docker run with the image defaults"
fi

finish
