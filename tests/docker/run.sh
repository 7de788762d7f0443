#!/usr/bin/env bash
# End-to-end test of the container image (docker/Dockerfile):
#
#   1. finds a Docker daemon, or installs docker.io and starts dockerd itself
#      (private socket, data root /var/lib/softadastra-docker-test);
#   2. finds a bookworm base: debian:bookworm-slim when it can be had, else
#      the cached softadastra-base:bookworm, else makes that one with
#      docker/make-base-image.sh (debootstrap + docker import);
#   3. builds the image with --network=host (classic builder) and checks its
#      size and configuration (non-root user, SIGTERM, healthcheck, /data);
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

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHED_BASE="softadastra-base:bookworm"
MAX_MB="${SA_DOCKER_MAX_MB:-100}"
DATA_ROOT="${SA_DOCKER_DATA_ROOT:-/var/lib/softadastra-docker-test}"
DEADLINE="${SA_DOCKER_DEADLINE:-1500}"
T0=$SECONDS

pass=0
fail=0
WORK=""
DOCKERD_PID=""
CONTAINERS=()
VOLUMES=()
IMAGES_BEFORE=""
IMAGE_ID=""
IMAGE_TAG=""
BG_PID=""

log() { echo "docker-test: $*"; }
ok() { echo "PASS: $*"; pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }
elapsed() { echo "$((SECONDS - T0))s"; }

# long LOG CMD...: runs a long step in the background (output to the file
# LOG, or here for -), bounded by what is left of the deadline, and waits for
# it: bash runs a trap only between foreground commands, so this keeps an
# interrupt (or ctest's timeout) from waiting for a whole build before
# cleaning up.
long() {
  local out="$1" left=$((DEADLINE - (SECONDS - T0))) rc
  shift
  if [ "$left" -le 10 ]; then
    echo "docker-test: the deadline of ${DEADLINE}s is reached"
    return 124
  fi
  if [ "$out" = - ]; then
    timeout "$left" "$@" &
  else
    timeout "$left" "$@" >"$out" 2>&1 &
  fi
  BG_PID=$!
  wait "$BG_PID"
  rc=$?
  BG_PID=""
  [ "$rc" -eq 124 ] && echo "docker-test: '$1' stopped at the deadline of ${DEADLINE}s"
  return "$rc"
}

cleanup() {
  trap - EXIT INT TERM
  local c v id left
  if [ -n "$BG_PID" ]; then
    kill -TERM "$BG_PID" 2>/dev/null
    wait "$BG_PID" 2>/dev/null
  fi
  for c in "${CONTAINERS[@]}"; do
    docker rm -f -v "$c" >/dev/null 2>&1
  done
  for v in "${VOLUMES[@]}"; do
    docker volume rm -f "$v" >/dev/null 2>&1
  done
  if [ -n "$IMAGES_BEFORE" ] && [ "${SA_DOCKER_KEEP_IMAGE:-0}" != 1 ]; then
    # The tag of the built image, then every image the build made (the
    # final and intermediate images of both stages): new IDs only, never one
    # that was there before (a build entirely from cache gives an old ID).
    [ -n "$IMAGE_TAG" ] && docker rmi "$IMAGE_TAG" >/dev/null 2>&1
    local pass_no
    for pass_no in 1 2 3 4 5; do
      left=0
      for id in $(comm -13 <(echo "$IMAGES_BEFORE") <(docker images -aq --no-trunc 2>/dev/null | sort -u)); do
        docker rmi "$id" >/dev/null 2>&1 || left=1
      done
      [ "$left" = 0 ] && break
    done
    left=$(comm -13 <(echo "$IMAGES_BEFORE") <(docker images -aq --no-trunc 2>/dev/null | sort -u) | wc -l)
    [ "$left" = 0 ] || log "warning: $left image(s) made by this run could not be removed"
  fi
  if [ -n "$DOCKERD_PID" ]; then
    kill -TERM "$DOCKERD_PID" 2>/dev/null
    local i
    for i in $(seq 60); do
      kill -0 "$DOCKERD_PID" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$DOCKERD_PID" 2>/dev/null; then
      log "dockerd (pid $DOCKERD_PID) did not stop on SIGTERM: SIGKILL"
      kill -KILL "$DOCKERD_PID" 2>/dev/null
    fi
    wait "$DOCKERD_PID" 2>/dev/null
    # dockerd leaves the bind mount of its network namespace in its exec root.
    awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r |
      while read -r m; do umount -l "$m" 2>/dev/null; done
  fi
  [ -n "$WORK" ] && rm -rf --one-file-system "$WORK"
}

finish() {
  cleanup
  echo "docker: $pass passed, $fail failed ($(elapsed))"
  [ "$fail" -eq 0 ] && [ "$pass" -gt 0 ] && exit 0
  exit 1
}

skip() {
  echo "SKIPPED: $*"
  cleanup
  exit 0
}

# A failure after which the remaining steps make no sense.
fatal() {
  bad "$*"
  finish
}

trap finish EXIT
trap 'bad "interrupted"; finish' INT TERM

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sa-docker-test.XXXXXX")"
RUN_ID="sa-test-$$-$RANDOM"

# One run at a time on this machine (several build trees may run ctest at
# once): two daemons on one data root, or two debootstraps of one base, would
# trip over each other.  The lock is held by fd 9 until this script exits.
LOCK=/tmp/softadastra-docker-test.lock
if ! { exec 9>>"$LOCK"; } 2>/dev/null; then
  log "warning: cannot open $LOCK (another user's?): running without the lock"
elif ! flock -n 9; then
  log "waiting for another run of this test (lock $LOCK)"
  long - flock 9 || fatal "another run of this test held $LOCK until the deadline"
fi
chmod 0666 "$LOCK" 2>/dev/null

# ---- 1. a Docker daemon ------------------------------------------------------
apt_install() {
  log "installing: $*"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >"$WORK/apt.log" 2>&1 &&
    apt-get install -y -qq --no-install-recommends "$@" >>"$WORK/apt.log" 2>&1
}

if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
  # No daemon answers where the client looks (DOCKER_HOST or the default
  # socket): start our own, as root.
  [ "$(id -u)" -eq 0 ] || skip "no Docker daemon answers and starting one needs root"
  if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    if ! command -v apt-get >/dev/null 2>&1 || ! apt_install docker.io; then
      tail -n 5 "$WORK/apt.log" 2>/dev/null
      skip "no Docker daemon and docker.io cannot be installed"
    fi
  fi
  mkdir -p "$DATA_ROOT"
  sock="$WORK/docker.sock"
  log "starting dockerd (socket $sock, data root $DATA_ROOT)"
  dockerd --host "unix://$sock" --data-root "$DATA_ROOT" --exec-root "$WORK/exec" \
    --pidfile "$WORK/dockerd.pid" --iptables=false --ip-masq=false --bridge=none \
    >"$WORK/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  export DOCKER_HOST="unix://$sock"
  for i in $(seq 120); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$DOCKERD_PID" 2>/dev/null || break
    sleep 0.5
  done
  if ! docker info >/dev/null 2>&1; then
    tail -n 15 "$WORK/dockerd.log"
    skip "dockerd does not start here (log above)"
  fi
  log "dockerd $(docker version -f '{{.Server.Version}}' 2>/dev/null) started, pid $DOCKERD_PID ($(elapsed))"
else
  log "using the running Docker daemon $(docker version -f '{{.Server.Version}}' 2>/dev/null)"
fi
# The classic builder: the Dockerfile must not need BuildKit.
export DOCKER_BUILDKIT=0

if ! command -v curl >/dev/null 2>&1; then
  [ "$(id -u)" -eq 0 ] && apt_install curl || fatal "curl is needed on the host"
fi

# ---- 2. a bookworm base image -------------------------------------------------
if [ -n "${SA_DOCKER_BASE_IMAGE:-}" ]; then
  BASE="$SA_DOCKER_BASE_IMAGE"
elif docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
  BASE="debian:bookworm-slim"
elif docker image inspect "$CACHED_BASE" >/dev/null 2>&1; then
  BASE="$CACHED_BASE"
elif long "$WORK/pull.log" timeout 120 docker pull -q debian:bookworm-slim; then
  BASE="debian:bookworm-slim"
else
  log "debian:bookworm-slim cannot be pulled ($(tail -n 1 "$WORK/pull.log")): making $CACHED_BASE with debootstrap"
  if ! command -v debootstrap >/dev/null 2>&1; then
    apt_install debootstrap || fatal "debootstrap cannot be installed"
  fi
  t=$SECONDS
  if ! long - bash "$ROOT/docker/make-base-image.sh" "$CACHED_BASE"; then
    fatal "making the base image with debootstrap"
  fi
  log "base image made in $((SECONDS - t))s"
  BASE="$CACHED_BASE"
fi
docker image inspect "$BASE" >/dev/null 2>&1 || fatal "base image $BASE is not there"
ok "base image: $BASE"

# ---- 3. build ------------------------------------------------------------------
IMAGES_BEFORE="$(docker images -aq --no-trunc | sort -u)"
if [ "${SA_DOCKER_KEEP_IMAGE:-0}" = 1 ]; then IMAGE_TAG="softadastra:test"; else IMAGE_TAG="softadastra-test:$RUN_ID"; fi
log "building docker/Dockerfile (BASE_IMAGE=$BASE) as $IMAGE_TAG"
t=$SECONDS
if ! long "$WORK/build.log" docker build --network=host --force-rm --build-arg "BASE_IMAGE=$BASE" \
  -f "$ROOT/docker/Dockerfile" -t "$IMAGE_TAG" "$ROOT"; then
  tail -n 40 "$WORK/build.log"
  fatal "docker build (log above)"
fi
IMAGE_ID="$(docker image inspect -f '{{.Id}}' "$IMAGE_TAG")"
ok "image built in $((SECONDS - t))s: ${IMAGE_ID:7:12}"

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

c="$RUN_ID-nocurl"
CONTAINERS+=("$c")
if docker run --rm --name "$c" --network=none --entrypoint /bin/sh "$IMAGE_ID" \
  -c 'command -v curl || command -v wget' >/dev/null 2>&1; then
  bad "the image contains curl or wget"
else
  ok "no curl or wget in the image"
fi

# ---- helpers for the containers -------------------------------------------------
pick_port() {
  local p i
  for i in $(seq 100); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

state() { docker inspect -f "$2" "$1" 2>/dev/null; }

show_logs() {
  echo "---- docker logs $1 (last 20 lines) ----"
  docker logs --tail 20 "$1" 2>&1
  echo "----"
}

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
