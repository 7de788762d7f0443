# shellcheck shell=bash
# Shared by the container tests (run.sh: the image; fleet.sh: the NATS
# fleet of docker/compose.fleet.yaml).  Sourced, not run.  It is:
#
#   - the PASS/FAIL bookkeeping: ok, bad, fatal, skip, finish (prints
#     "docker: N passed, N failed"; exits 1 on any failure);
#   - long: a long step in the background, bounded by the deadline, so that
#     an interrupt (or ctest's timeout) cleans up without waiting for it;
#   - dt_start: the work directory, RUN_ID, the EXIT/INT/TERM traps and the
#     lock that keeps one container test at a time on the machine (they
#     share the daemon's data root and the cached base image);
#   - dt_daemon: a Docker daemon, or dockerd started here (root, private
#     socket, data root /var/lib/softadastra-docker-test, --iptables=false,
#     --bridge=none: user-defined bridge networks, such as compose's, still
#     work);
#   - dt_base: a bookworm base image (debian:bookworm-slim, the cached
#     softadastra-base:bookworm, or one made with docker/make-base-image.sh);
#   - dt_build: docker build with the classic builder and --network=host;
#   - cleanup: at exit, on failure too: the script's own cleanup_own (its
#     containers, volumes, compose project), every image the run built (new
#     IDs only, unless SA_DOCKER_KEEP_IMAGE=1), the daemon it started, the
#     work directory.
#
# Not here: what a script checks.  Before sourcing, a script may set
# DT_NAME (log prefix); it must define cleanup_own (may do nothing).
#
# Environment (both scripts):
#   SA_DOCKER_BASE_IMAGE   use this base image and nothing else
#   SA_DOCKER_KEEP_IMAGE=1 keep the built images (their tags) and the build
#                          cache, for debugging and faster reruns
#   SA_DOCKER_DATA_ROOT    data root of a daemon the script starts
#   SA_DOCKER_DEADLINE     seconds for the whole run (default 1500): the long
#                          steps are stopped there, and everything cleaned up

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHED_BASE="softadastra-base:bookworm"
DATA_ROOT="${SA_DOCKER_DATA_ROOT:-/var/lib/softadastra-docker-test}"
DEADLINE="${SA_DOCKER_DEADLINE:-1500}"
DT_NAME="${DT_NAME:-docker-test}"
T0=$SECONDS

pass=0
fail=0
WORK=""
DOCKERD_PID=""
IMAGES_BEFORE=""
IMAGE_TAGS=()
BG_PID=""
BASE=""

log() { echo "$DT_NAME: $*"; }
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
    log "the deadline of ${DEADLINE}s is reached"
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
  [ "$rc" -eq 124 ] && log "'$1' stopped at the deadline of ${DEADLINE}s"
  return "$rc"
}

cleanup() {
  trap - EXIT INT TERM
  local id left
  if [ -n "$BG_PID" ]; then
    kill -TERM "$BG_PID" 2>/dev/null
    wait "$BG_PID" 2>/dev/null
  fi
  # Only once the daemon answers: before that the script made nothing.
  if docker info >/dev/null 2>&1; then
    cleanup_own
  fi
  if [ -n "$IMAGES_BEFORE" ] && [ "${SA_DOCKER_KEEP_IMAGE:-0}" != 1 ]; then
    # The tags of the built images, then every image the builds made (the
    # final and intermediate images of every stage): new IDs only, never one
    # that was there before (a build entirely from cache gives an old ID).
    for id in "${IMAGE_TAGS[@]}"; do
      docker rmi "$id" >/dev/null 2>&1
    done
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

apt_install() {
  log "installing: $*"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >"$WORK/apt.log" 2>&1 &&
    apt-get install -y -qq --no-install-recommends "$@" >>"$WORK/apt.log" 2>&1
}

# dt_start: traps, work directory, RUN_ID (a prefix for every name the run
# gives), and the lock (one run of a container test at a time on this
# machine: two daemons on one data root, or two debootstraps of one base,
# would trip over each other).  The lock is held by fd 9 until exit.
dt_start() {
  trap finish EXIT
  trap 'bad "interrupted"; finish' INT TERM
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/sa-docker-test.XXXXXX")"
  RUN_ID="sa-test-$$-$RANDOM"
  local lock=/tmp/softadastra-docker-test.lock
  if ! { exec 9>>"$lock"; } 2>/dev/null; then
    log "warning: cannot open $lock (another user's?): running without the lock"
  elif ! flock -n 9; then
    log "waiting for another run of a container test (lock $lock)"
    long - flock 9 || fatal "another run of a container test held $lock until the deadline"
  fi
  chmod 0666 "$lock" 2>/dev/null
}

# dt_daemon: a Docker daemon answering DOCKER_HOST, started here if needed.
dt_daemon() {
  local sock i
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
  # The classic builder: the Dockerfiles must not need BuildKit.
  export DOCKER_BUILDKIT=0

  if ! command -v curl >/dev/null 2>&1; then
    [ "$(id -u)" -eq 0 ] && apt_install curl || fatal "curl is needed on the host"
  fi
}

# dt_base: sets BASE to a bookworm base image.
dt_base() {
  local t
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
}

# dt_build DOCKERFILE TAG [docker build options...]: builds from the
# repository root with BASE_IMAGE=$BASE; the tag is
# removed at exit (unless SA_DOCKER_KEEP_IMAGE=1), with every image the
# build made.  Log in $WORK/build-<tag>.log, its tail printed on failure.
# Sets BUILD_S (seconds).
dt_build() {
  local file="$1" tag="$2" t=$SECONDS blog
  shift 2
  [ -n "$IMAGES_BEFORE" ] || IMAGES_BEFORE="$(docker images -aq --no-trunc | sort -u)"
  IMAGE_TAGS+=("$tag")
  blog="$WORK/build-${tag//[^A-Za-z0-9_.-]/_}.log"
  log "building $file (BASE_IMAGE=$BASE) as $tag"
  if ! long "$blog" docker build --network=host --force-rm --build-arg "BASE_IMAGE=$BASE" \
    "$@" -f "$ROOT/$file" -t "$tag" "$ROOT"; then
    tail -n 40 "$blog"
    return 1
  fi
  BUILD_S=$((SECONDS - t))
}

# The helpers for containers.
state() { docker inspect -f "$2" "$1" 2>/dev/null; }

show_logs() {
  echo "---- docker logs $1 (last ${2:-20} lines) ----"
  docker logs --tail "${2:-20}" "$1" 2>&1
  echo "----"
}

# pick_port: a port nothing listens on at 127.0.0.1, below the kernel's
# ephemeral range (a port from that range may be taken by some client's
# connection between this check and the bind).
pick_port() {
  local p i lo
  lo="$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)"
  [[ "$lo" =~ ^[0-9]+$ ]] && [ "$lo" -gt 12000 ] || lo=61000
  for i in $(seq 100); do
    p=$((10000 + RANDOM % (lo - 10000)))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}
