#!/usr/bin/env bash
# End-to-end test of the fleet example (docker/compose.fleet.yaml): three
# NATS servers in a JetStream cluster and three nodes syncing through them,
# in containers.  The daemon, base image, builds and cleanup are shared with
# tests/docker/run.sh (tests/docker/lib.sh).
#
#   1. a Docker daemon (or dockerd started here), docker compose (the
#      plugin, or Debian's docker-compose, installed when neither is there),
#      a bookworm base image;
#   2. builds docker/Dockerfile and docker/nats.Dockerfile;
#   3. `compose up -d` under a project name of its own, every published
#      port on a free 127.0.0.1 port; checks the six containers have a
#      read-only root and publish on 127.0.0.1 only, the nodes run the nats
#      transport (startup line, /v1/sync/status) and see the hub connected,
#      and the stream has 3 replicas;
#   4. writes keys on node-1 and node-2 (and one key on both: the later
#      write wins everywhere; one put then deleted): every node's digest
#      (GET /v1/sync/digest) equal, every key read back on all three;
#   5. kills one NATS server (docker kill): writes on node-1 and node-3 are
#      acknowledged by the hub (the R3 stream's quorum of 2) and reach every
#      node;
#   6. stops node-3 (docker stop: exit 0), writes, overwrites and deletes on
#      node-1 and node-2, starts node-3: it catches up from its durable
#      consumer (digests equal, every key as expected);
#   7. starts the NATS server again (healthy), a last write reaches all;
#   8. `compose stop`: every container exits 0 (nodes on SIGTERM, servers on
#      SIGINT); `compose down -v`: no container, volume or network of the
#      project left.
#
# Every wait is bounded (FLEET_WAIT_S, default 60 s); timings are printed
# (no assertion on them).  Prints PASS/FAIL lines and "docker: N passed,
# N failed"; exits 1 on any failure; "SKIPPED: <reason>" (exit 0) only when
# no Docker daemon or compose can be had.  Every container, volume and
# network of the project is removed at exit, on failure too (compose down
# -v, then by the project's label and name), with the images the run built
# and the daemon it started.  Kept, as for run.sh: the base image and the
# daemon's data root.
#
# Environment: those of lib.sh (SA_DOCKER_BASE_IMAGE, SA_DOCKER_KEEP_IMAGE=1
# keeps the images as softadastra:fleet-test and softadastra-nats:fleet-test
# and their build cache, SA_DOCKER_DATA_ROOT, SA_DOCKER_DEADLINE), and
#   FLEET_WAIT_S   seconds for each wait (convergence, catch-up, health)
set -uo pipefail

DT_NAME=docker-fleet
# shellcheck source=tests/docker/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WAIT_S="${FLEET_WAIT_S:-60}"
WRITES_DONE=""
COMPOSE=()
PROJECT=""
declare -A CID    # service -> container ID
declare -A EXPECT # key -> value, or the marker below for a deleted key
GONE=$'\x01deleted'
PORTS=()          # PORTS[1..3]: host ports of node-1..3
MON_PORT=""
COMPOSE_FILE_ARG=""
TIMINGS=()

project_leftovers() { # prints what of the project is still there
  [ -n "$PROJECT" ] || return 0
  docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" 2>/dev/null | sed 's/^/container /'
  { docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT" 2>/dev/null
    docker volume ls -q 2>/dev/null | grep "^${PROJECT}_"; } | sort -u | sed 's/^/volume /'
  { docker network ls -q --filter "label=com.docker.compose.project=$PROJECT" 2>/dev/null
    docker network ls --format '{{.Name}}' 2>/dev/null | grep "^${PROJECT}_"; } | sort -u | sed 's/^/network /'
}

# Called by lib.sh's cleanup (at exit, on failure too): compose down -v,
# then whatever is left of the project, by label and by name.
cleanup_own() {
  [ -n "$PROJECT" ] || return 0
  if [ ${#COMPOSE_CMD[@]} -gt 0 ]; then
    timeout 120 "${COMPOSE_CMD[@]}" down -v --remove-orphans -t 10 >"$WORK/down.log" 2>&1
  fi
  local kind id
  project_leftovers | while read -r kind id; do
    case "$kind" in
      container) docker rm -f -v "$id" >/dev/null 2>&1 ;;
      volume) docker volume rm -f "$id" >/dev/null 2>&1 ;;
      network) docker network rm "$id" >/dev/null 2>&1 ;;
    esac
  done
  [ -z "$(project_leftovers)" ] || log "warning: left of project $PROJECT: $(project_leftovers | tr '\n' ' ')"
}

# compose ARGS...: docker compose on the fleet file, this run's project,
# images and ports; the shell's settings (a token, a log level) and an .env
# file beside the compose file are not read.  COMPOSE_CMD is the same as a
# command (for long, which runs commands, not functions).
COMPOSE_CMD=()
compose() { [ ${#COMPOSE_CMD[@]} -gt 0 ] && "${COMPOSE_CMD[@]}" "$@"; }

now_ms() { date +%s%3N; }
url() { echo "http://127.0.0.1:${PORTS[$1]}"; }

# wait_for LABEL CMD...: CMD until it succeeds, every 0.2 s, at most WAIT_S.
# Sets WAITED_MS: from WAIT_T0 (ms, then cleared) when set, else from now.
# A failure prints LABEL.
WAIT_T0=""
wait_for() {
  local label="$1" t0 deadline
  shift
  t0="${WAIT_T0:-$(now_ms)}"
  WAIT_T0=""
  deadline=$((t0 + WAIT_S * 1000))
  while :; do
    if "$@"; then
      WAITED_MS=$(($(now_ms) - t0))
      return 0
    fi
    [ "$(now_ms)" -lt "$deadline" ] || break
    sleep 0.2
  done
  WAITED_MS=$(($(now_ms) - t0))
  log "$label: not within ${WAIT_S}s"
  return 1
}

# What a node says: digest, hub state, outbox.
digest() { curl -s --max-time 5 "$(url "$1")/v1/sync/digest" | sed -n 's/.*"digest":"\([0-9a-f]*\)".*/\1/p'; }
status() { curl -s --max-time 5 "$(url "$1")/v1/sync/status"; }
answers() { curl -sf -o /dev/null --max-time 2 "$(url "$1")/healthz"; }
hub_connected() { [[ "$(status "$1")" == *'"node_id":"nats.SOFTADASTRA","state":"connected"'* ]]; }
all_hub_connected() { hub_connected 1 && hub_connected 2 && hub_connected 3; }
# Every op of the node acknowledged by JetStream (nothing queued or in flight).
hub_acked() {
  local s
  s="$(status "$1")"
  [[ "$s" == *'"queued":0,"in_flight":0,'* ]] && [[ "$s" == *'"failed":0,'* ]]
}
# digests_equal N...: the nodes' digests, all there and equal.
digests_equal() {
  local first d n
  first="$(digest "$1")"
  [ -n "$first" ] || return 1
  for n in "${@:2}"; do
    d="$(digest "$n")"
    [ "$d" = "$first" ] || return 1
  done
}

put() { # NODE KEY VALUE
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X PUT --data-binary "$3" "$(url "$1")/v1/store/$2")
  if [ "$code" = 200 ] || [ "$code" = 201 ]; then
    EXPECT[$2]="$3"
    return 0
  fi
  log "PUT $2 on node-$1: HTTP $code"
  return 1
}
del() { # NODE KEY
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X DELETE "$(url "$1")/v1/store/$2")
  if [ "$code" = 200 ]; then
    EXPECT[$2]="$GONE"
    return 0
  fi
  log "DELETE $2 on node-$1: HTTP $code"
  return 1
}
# put_many NODE PREFIX COUNT: PREFIX01.. with values naming node and round.
put_many() {
  local i bad=0
  for i in $(seq -w 1 "$3"); do
    put "$1" "$2$i" "value $2$i from node-$1 ($RUN_ID)" || bad=1
  done
  return "$bad"
}

# check_values LABEL NODE...: every expected key, as expected, on each node.
check_values() {
  local label="$1" n k got code wrong=0 shown=0
  shift
  for n in "$@"; do
    for k in "${!EXPECT[@]}"; do
      got="$(curl -s --max-time 5 -w '\n%{http_code}' "$(url "$n")/v1/store/$k?raw=1")"
      code="${got##*$'\n'}"
      got="${got%$'\n'*}"
      if [ "${EXPECT[$k]}" = "$GONE" ]; then
        [ "$code" = 404 ] && continue
      elif [ "$code" = 200 ] && [ "$got" = "${EXPECT[$k]}" ]; then
        continue
      fi
      wrong=$((wrong + 1))
      if [ "$shown" -lt 5 ]; then
        shown=$((shown + 1))
        if [ "${EXPECT[$k]}" = "$GONE" ]; then
          log "node-$n: $k: HTTP $code '$got', want 404 (deleted)"
        else
          log "node-$n: $k: HTTP $code '$got', want '${EXPECT[$k]}'"
        fi
      fi
    done
  done
  if [ "$wrong" -eq 0 ]; then
    ok "$label: all ${#EXPECT[@]} keys as expected on node(s) $*"
  else
    bad "$label: $wrong key reads wrong on node(s) $*"
  fi
}

# dump: what the nodes and servers say, for a failure.
dump() {
  local n s
  for n in 1 2 3; do
    echo "---- node-$n: digest $(digest "$n" || true)"
    status "$n" | head -c 1500
    echo
  done
  compose ps 2>&1
  for s in nats-1 nats-2 nats-3 node-1 node-2 node-3; do
    [ -n "${CID[$s]:-}" ] && show_logs "${CID[$s]}" 12 | sed "s/^---- docker logs [0-9a-f]*/---- $s/"
  done
}

# converge LABEL NODE...: the nodes' digests equal (bounded), then every key
# read back on each.  The time, from the last write (WRITES_DONE, ms), goes
# to TIMINGS.
converge() {
  local label="$1"
  shift
  WAIT_T0="$WRITES_DONE"
  if wait_for "$label: digests of node(s) $* equal" digests_equal "$@"; then
    ok "$label: digests of node(s) $* equal ${WAITED_MS} ms after the last write ($(digest "$1"))"
    TIMINGS+=("$label: digests equal ${WAITED_MS} ms after the last write")
    check_values "$label" "$@"
  else
    bad "$label: digests of node(s) $* still differ after ${WAIT_S}s"
    dump
  fi
}

dt_start

# ---- 1. daemon, compose, base image -------------------------------------------
dt_daemon
if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  COMPOSE=(docker-compose)
elif [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1 && apt_install docker-compose &&
  command -v docker-compose >/dev/null 2>&1; then
  COMPOSE=(docker-compose)
else
  tail -n 5 "$WORK/apt.log" 2>/dev/null
  skip "neither 'docker compose' nor docker-compose, and docker-compose cannot be installed"
fi
log "compose: ${COMPOSE[*]} ($("${COMPOSE[@]}" version 2>/dev/null | head -n 1))"
dt_base

# ---- 2. images -------------------------------------------------------------------
if [ "${SA_DOCKER_KEEP_IMAGE:-0}" = 1 ]; then
  NODE_IMAGE="softadastra:fleet-test"
  NATS_IMAGE="softadastra-nats:fleet-test"
else
  NODE_IMAGE="softadastra-test:$RUN_ID"
  NATS_IMAGE="softadastra-nats-test:$RUN_ID"
fi
dt_build docker/Dockerfile "$NODE_IMAGE" --build-arg SA_BUILD_JOBS=2 || fatal "docker build of the node image (log above)"
ok "node image built in ${BUILD_S}s"
TIMINGS+=("node image build: ${BUILD_S} s")
dt_build docker/nats.Dockerfile "$NATS_IMAGE" || fatal "docker build of the NATS image (log above)"
ok "NATS image built in ${BUILD_S}s ($(docker run --rm --network=none --entrypoint nats-server "$NATS_IMAGE" --version 2>&1))"
TIMINGS+=("NATS image build: ${BUILD_S} s")

# ---- 3. the fleet up ---------------------------------------------------------------
# A project name of its own (letters and digits: compose v1 and v2 alike),
# free ports on the host's loopback.
: >"$WORK/empty.env"
COMPOSE_FILE_ARG="$ROOT/docker/compose.fleet.yaml"
PROJECT="safleet$$x$RANDOM" # from here on, cleanup_own takes the project down

# fleet_ports: four free loopback ports, and the compose command with them.
fleet_ports() {
  local i
  for i in 1 2 3; do
    PORTS[i]="$(pick_port)" || return 1
  done
  MON_PORT="$(pick_port)" || return 1
  [ "$(printf '%s\n' "${PORTS[1]}" "${PORTS[2]}" "${PORTS[3]}" "$MON_PORT" | sort -u | wc -l)" = 4 ] ||
    return 1
  COMPOSE_CMD=(env SOFTADASTRA_IMAGE="$NODE_IMAGE" SOFTADASTRA_NATS_IMAGE="$NATS_IMAGE" BASE_IMAGE="$BASE"
    FLEET_PORT_1="${PORTS[1]}" FLEET_PORT_2="${PORTS[2]}" FLEET_PORT_3="${PORTS[3]}"
    FLEET_NATS_MONITOR_PORT="$MON_PORT" SOFTADASTRA_AUTH_TOKEN= SOFTADASTRA_LOG_LEVEL=info
    "${COMPOSE[@]}" --env-file "$WORK/empty.env" -p "$PROJECT" -f "$COMPOSE_FILE_ARG")
}
fleet_ports || fatal "no four free ports on 127.0.0.1"

compose config -q >"$WORK/config.log" 2>&1 && ok "compose.fleet.yaml is valid for ${COMPOSE[*]}" ||
  { cat "$WORK/config.log"; fatal "compose config"; }

# Another program on the machine may take a port between pick_port and
# compose's bind: then down, other ports, up again (3 tries).
for try in 1 2 3; do
  log "compose up (project $PROJECT; nodes on 127.0.0.1:${PORTS[1]},${PORTS[2]},${PORTS[3]}, nats-1 monitoring on 127.0.0.1:$MON_PORT)"
  t0=$(now_ms)
  long "$WORK/up.log" "${COMPOSE_CMD[@]}" up -d --no-build && break
  if [ "$try" -lt 3 ] && grep -q "address already in use" "$WORK/up.log"; then
    log "a port was taken meanwhile: $(grep -m 1 -o 'listen tcp[0-9]* [0-9.]*:[0-9]*' "$WORK/up.log"); again with other ports"
    long "$WORK/down.log" "${COMPOSE_CMD[@]}" down -v --remove-orphans -t 10
    fleet_ports || fatal "no four free ports on 127.0.0.1"
    continue
  fi
  tail -n 30 "$WORK/up.log"
  dump
  fatal "compose up (log above)"
done
up_ms=$(($(now_ms) - t0))
for s in nats-1 nats-2 nats-3 node-1 node-2 node-3; do
  CID[$s]="$(compose ps -q "$s" 2>/dev/null)"
  [ -n "${CID[$s]}" ] || fatal "compose ps: no container for $s"
done
ok "compose up -d: six containers in ${up_ms} ms (the nodes start once the three servers are healthy)"
if wait_for "the nodes answer and see the hub connected" all_hub_connected; then
  ok "fleet up: every node answers and has the hub connected $((up_ms + WAITED_MS)) ms after compose up"
  TIMINGS+=("fleet up (compose up until every node has the hub connected): $((up_ms + WAITED_MS)) ms")
else
  dump
  fatal "the fleet does not come up"
fi

# The hardening and the loopback-only publishing of the file.
wrong=""
for s in "${!CID[@]}"; do
  [ "$(state "${CID[$s]}" '{{.HostConfig.ReadonlyRootfs}}')" = true ] || wrong+=" $s:writable-root"
  ips="$(state "${CID[$s]}" '{{range $p, $b := .HostConfig.PortBindings}}{{range $b}}{{.HostIp}} {{end}}{{end}}')"
  for ip in $ips; do
    [ "$ip" = 127.0.0.1 ] || wrong+=" $s:published-on-$ip"
  done
done
[ -z "$wrong" ] && ok "six containers with a read-only root, published on 127.0.0.1 only" ||
  bad "hardening / publishing:$wrong"

# The nodes run the NATS transport (not "built without libnats").
for n in 1 2 3; do
  logs="$(docker logs "${CID[node-$n]}" 2>&1)"
  st="$(status "$n")"
  if [[ "$logs" == *"event=sync_transport kind=nats"* ]] && [[ "$st" == *'"kind":"nats"'* ]] &&
    [[ "$logs" != *"built without libnats"* ]]; then
    ok "node-$n: the NATS transport runs (startup line and /v1/sync/status)"
  else
    bad "node-$n: no NATS transport: $(grep -m 2 -E 'sync_transport|nats' <<<"$logs")"
  fi
done

# The stream node-1 made has three replicas (nats-1's monitoring port).
jsz() { curl -s --max-time 5 "http://127.0.0.1:$MON_PORT/jsz?streams=true&config=true"; }
r3() { # (a variable, not a pipe into grep -q: pipefail)
  local j
  j="$(jsz | tr -d ' \n')"
  [[ "$j" =~ \"name\":\"SOFTADASTRA\".*\"num_replicas\":3[,}] ]]
}
if wait_for "the stream SOFTADASTRA with 3 replicas" r3; then
  ok "the stream SOFTADASTRA has 3 replicas (127.0.0.1:$MON_PORT/jsz)"
else
  bad "the stream SOFTADASTRA with 3 replicas: $(jsz | tr -d ' \n' | grep -o '"stream_detail".\{0,400\}')"
fi

# ---- 4. writes on node-1 and node-2, read on all three ----------------------------
t0=$(now_ms)
if put_many 1 "fleet/n1/k" 20 && put_many 2 "fleet/n2/k" 20 &&
  put 1 fleet/both "from node-1" && put 2 fleet/both "from node-2 (later: wins)" &&
  put 1 fleet/gone "deleted next" && del 1 fleet/gone; then
  ok "44 writes on node-1 and node-2 in $(($(now_ms) - t0)) ms (20 keys each, one key on both, a put then a delete)"
else
  bad "writes on node-1 and node-2"
fi
WRITES_DONE=$(now_ms)
converge "first writes" 1 2 3

# ---- 5. one NATS server killed: the R3 stream goes on with 2 -----------------------
docker kill "${CID[nats-2]}" >/dev/null 2>&1
if [ "$(state "${CID[nats-2]}" '{{.State.Running}}')" = false ]; then
  ok "nats-2 killed (docker kill: SIGKILL)"
else
  bad "nats-2 still running after docker kill"
fi
put_many 1 "fleet/a1/k" 10 && put_many 3 "fleet/a3/k" 10 ||
  bad "writes on node-1 and node-3 with nats-2 down"
WRITES_DONE=$(now_ms)
converge "one server down" 1 2 3
# The outbox entry of an op is acknowledged once JetStream stored it on a
# quorum of the stream's replicas: 2 of 3 here.  (An op in flight to the
# killed server waits for its ack timeout, 5 s, and is published again.)
WAIT_T0="$WRITES_DONE"
if wait_for "node-1's and node-3's ops acknowledged by the hub" eval 'hub_acked 1 && hub_acked 3'; then
  ok "with nats-2 down, node-1's and node-3's writes acknowledged by the R3 stream ${WAITED_MS} ms after the last write"
  TIMINGS+=("one server down: every op acknowledged by the hub: ${WAITED_MS} ms")
else
  bad "with nats-2 down, writes not acknowledged by the hub: node-1 $(status 1 | head -c 200), node-3 $(status 3 | head -c 200)"
fi

# ---- 6. node-3 stopped, writes elsewhere, node-3 back: catch-up -------------------
t0=$(now_ms)
docker stop -t 30 "${CID[node-3]}" >/dev/null 2>&1
code="$(state "${CID[node-3]}" '{{.State.ExitCode}}')"
[ "$code" = 0 ] && ok "node-3 stopped (docker stop: SIGTERM) -> exit 0 in $(($(now_ms) - t0)) ms" ||
  bad "node-3: docker stop -> exit code '$code' (137: needed SIGKILL)"
if put_many 1 "fleet/b1/k" 10 && put_many 2 "fleet/b2/k" 10 &&
  put 1 fleet/a3/k01 "overwritten on node-1 while node-3 was down" && del 2 fleet/a3/k02; then
  ok "node-3 down: 22 writes on node-1 and node-2 (one of node-3's keys overwritten, one deleted)"
else
  bad "writes with node-3 down"
fi
WRITES_DONE=$(now_ms)
converge "node-3 down" 1 2
docker start "${CID[node-3]}" >/dev/null 2>&1 || bad "docker start node-3"
t0=$(now_ms)
if wait_for "node-3 answers again" answers 3; then
  answered_ms=$WAITED_MS
  if wait_for "node-3 caught up" digests_equal 1 2 3; then
    ok "node-3 caught up $((answered_ms + WAITED_MS)) ms after docker start (answering after $answered_ms ms)"
    TIMINGS+=("node-3 catch-up from docker start: $((answered_ms + WAITED_MS)) ms")
    check_values "node-3 after its restart" 3
  else
    bad "node-3 did not catch up within ${WAIT_S}s of answering"
    dump
  fi
else
  bad "node-3 does not answer after docker start"
  dump
fi

# A killed container counts as stopped by hand: its restart policy
# (unless-stopped) left it down through steps 5 and 6.
[ "$(state "${CID[nats-2]}" '{{.State.Running}}')" = false ] &&
  ok "nats-2 stayed down through the writes and node-3's catch-up" ||
  bad "nats-2 was restarted (restart policy?) before step 7: the steps above ran with three servers"

# ---- 7. the server back ------------------------------------------------------------
docker start "${CID[nats-2]}" >/dev/null 2>&1 || bad "docker start nats-2"
healthy() { [ "$(state "${CID[nats-2]}" '{{.State.Health.Status}}')" = healthy ]; }
if wait_for "nats-2 healthy" healthy; then
  ok "nats-2 back and healthy after ${WAITED_MS} ms"
else
  bad "nats-2 not healthy after docker start: $(state "${CID[nats-2]}" '{{json .State.Health}}' | tail -c 600)"
fi
put 2 fleet/last "after nats-2 returned" || bad "a last write on node-2"
WRITES_DONE=$(now_ms)
converge "all servers back" 1 2 3

# ---- 8. graceful stop, then nothing left ---------------------------------------------
t0=$(now_ms)
long "$WORK/stop.log" "${COMPOSE_CMD[@]}" stop -t 30 || { tail -n 20 "$WORK/stop.log"; bad "compose stop"; }
stop_ms=$(($(now_ms) - t0))
codes=""
for s in nats-1 nats-2 nats-3 node-1 node-2 node-3; do
  c="$(state "${CID[$s]}" '{{.State.ExitCode}}')"
  [ "$c" = 0 ] || codes+=" $s:$c"
done
[ -z "$codes" ] && ok "compose stop: the six containers exit 0 (graceful) in ${stop_ms} ms" ||
  bad "compose stop: exit codes not 0:$codes"
TIMINGS+=("compose stop: ${stop_ms} ms")
long "$WORK/down.log" "${COMPOSE_CMD[@]}" down -v --remove-orphans -t 10 || { tail -n 20 "$WORK/down.log"; bad "compose down -v"; }
left="$(project_leftovers)"
[ -z "$left" ] && ok "compose down -v: no container, volume or network of project $PROJECT left" ||
  bad "left after compose down -v: $(tr '\n' ' ' <<<"$left")"

log "timings (this machine, figures only):"
for t in "${TIMINGS[@]}"; do
  log "  $t"
done
finish
