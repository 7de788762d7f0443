#!/usr/bin/env bash
# tests/bench/discovery.sh -- the figures of UDP discovery (issue 22 item 8):
# how long nodes started with --discovery udp (no --peer) take to find each
# other, and how many datagrams a node sends per second at the default
# interval.  See tests/bench/README.md ("Discovery").
#
#   bash tests/bench/discovery.sh                 3 rounds of 3 nodes, 10 s of counting
#   BENCH_SMOKE=1 bash tests/bench/discovery.sh   1 round, 2 s of counting
#
# Knobs (environment): DISC_ROUNDS (3), DISC_NODES (3), DISC_SECONDS (10:
# the span over which datagrams are counted), DISC_INTERVAL_MS (empty: the
# default, 2000), BENCH_PORT_BASE (18600: HTTP ports BASE+1.., the discovery
# port BASE+99 over UDP), BENCH_BUILD_DIR (build: an existing build, this
# script does not build), BENCH_TMPDIR (/var/tmp), BENCH_KEEP=1 (keep the
# nodes' logs), BENCH_OUT (a file that also receives the report).
#
# Per round, the nodes are started one after the other (each start waits
# for its listening line); once every node is connected to every other one
# (GET /v1/sync/status polled), "found" is the time from the first node's
# spawn (and from the last node's) to the latest first `sync_peer ...
# state=connected` line of any node toward any peer in the nodes' logs
# (the time to be pulling each other, not only to have heard).  Then the datagrams each node
# sent (softadastra_discovery_datagrams_sent_total) are counted over
# DISC_SECONDS.  Prints figures; asserts nothing about times.  Exits
# non-zero only when something could not run.  Every node listens on
# 127.0.0.1 and is stopped by PID (trap); every wait is bounded.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SMOKE=${BENCH_SMOKE:-0}
ROUNDS=${DISC_ROUNDS:-$([ "$SMOKE" = 1 ] && echo 1 || echo 3)}
NODES=${DISC_NODES:-3}
SECONDS_COUNT=${DISC_SECONDS:-$([ "$SMOKE" = 1 ] && echo 2 || echo 10)}
INTERVAL=${DISC_INTERVAL_MS:-}
PORT_BASE=${BENCH_PORT_BASE:-18600}
UDP_PORT=$((PORT_BASE + 99))
BUILD=${BENCH_BUILD_DIR:-$ROOT/build}
BIN=$BUILD/server/softadastra
TMP=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/sa-disc-bench.XXXXXX")
OUT=${BENCH_OUT:-/dev/null}
PIDS=()
SPAWN=()

log() { printf '%s\n' "$*" >&2; }
die() { log "discovery.sh: $*"; exit 1; }
say() { printf '%s\n' "$*" | tee -a "$OUT"; }
now_ms() { date +%s%3N; }
med() { tr ' ' '\n' | awk 'NF { a[n++] = $1 + 0 } END {
  if (!n) { print "-"; exit } for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
  print (n % 2) ? a[(n - 1) / 2] : (a[n / 2 - 1] + a[n / 2]) / 2 }'; }
log_ms() { local t=${1#ts=}; date -d "${t%% *}" +%s%3N; } # a log line's ts= in unix ms
metric() { curl -fs --max-time 2 "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n {print $2}'; }

stop_all() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 200); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$p" 2>/dev/null || true
  done
  PIDS=()
}
cleanup() {
  stop_all
  if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

[ -x "$BIN" ] || die "no $BIN: build first (cmake -S . -B build && cmake --build build -j2)"
command -v curl >/dev/null || die "curl is missing"

# Starts node i of the round; waits for its listening line (bounded).
start_node() {
  local i=$1 r=$2 port=$((PORT_BASE + $1 + 1))
  local args=(serve --node-id "disc-$i" --listen "127.0.0.1:$port" --data-dir "$TMP/r$r-n$i"
    --discovery udp --discovery-port "$UDP_PORT")
  [ -n "$INTERVAL" ] && args+=(--discovery-interval-ms "$INTERVAL")
  SPAWN[i]=$(now_ms)
  "$BIN" "${args[@]}" >"$TMP/r$r-n$i.out" 2>"$TMP/r$r-n$i.log" &
  PIDS+=($!)
  for _ in $(seq 1 400); do
    grep -q "listening on" "$TMP/r$r-n$i.out" 2>/dev/null && return 0
    sleep 0.01
  done
  die "node $i did not start (see $TMP/r$r-n$i.log)"
}

# True when every node lists every other one as connected.
all_found() {
  local i s
  for i in $(seq 0 $((NODES - 1))); do
    s=$(curl -fs --max-time 1 "http://127.0.0.1:$((PORT_BASE + i + 1))/v1/sync/status") || return 1
    [ "$(grep -o '"state":"connected"' <<<"$s" | wc -l)" -ge $((NODES - 1)) ] || return 1
  done
}

say "discovery benchmark: $NODES nodes on 127.0.0.1, discovery port $UDP_PORT, interval ${INTERVAL:-default (2000)} ms, $ROUNDS round(s), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
FIRST=() LAST=() RATE=()
for r in $(seq 1 "$ROUNDS"); do
  for i in $(seq 0 $((NODES - 1))); do start_node "$i" "$r"; done
  found=0
  for _ in $(seq 1 4000); do # at most ~20 s
    if all_found; then found=1; break; fi
    sleep 0.005
  done
  [ "$found" = 1 ] || die "round $r: the nodes did not find each other in 20 s (logs in $TMP)"
  # From the first node's spawn, and the last one's, to the latest first
  # "connected" of any node toward any peer in the nodes' own log lines
  # (curl's polling is coarser).
  t_first=${SPAWN[0]}
  t_last=${SPAWN[$((NODES - 1))]}
  t_done=0
  for i in $(seq 0 $((NODES - 1))); do
    while read -r line; do
      t=$(log_ms "$line")
      [ "$t" -gt "$t_done" ] && t_done=$t
    done < <(grep 'event=sync_peer .*state=connected' "$TMP/r$r-n$i.log" | awk '{ for (k = 1; k <= NF; k++) if ($k ~ /^peer=/) p = $k } !seen[p]++')
  done
  FIRST+=($((t_done - t_first)))
  LAST+=($((t_done - t_last)))
  # datagrams sent per node over DISC_SECONDS
  declare -a s0=()
  for i in $(seq 0 $((NODES - 1))); do s0[i]=$(metric $((PORT_BASE + i + 1)) softadastra_discovery_datagrams_sent_total); done
  c0=$(now_ms)
  sleep "$SECONDS_COUNT"
  c1=$(now_ms)
  for i in $(seq 0 $((NODES - 1))); do
    s1=$(metric $((PORT_BASE + i + 1)) softadastra_discovery_datagrams_sent_total)
    RATE+=("$(awk -v a="${s0[i]}" -v b="$s1" -v ms=$((c1 - c0)) 'BEGIN { printf "%.3f", (b - a) * 1000 / ms }')")
  done
  say "round $r: all found ${FIRST[-1]} ms after the first start, ${LAST[-1]} ms after the last; datagrams/s per node: ${RATE[*]: -$NODES}"
  stop_all
done
say ""
say "| figure | median | rounds |"
say "|---|---|---|"
say "| all $NODES nodes connected to each other, from the first start | $(echo "${FIRST[*]}" | med) ms | ${FIRST[*]} |"
say "| the same, from the last node's start | $(echo "${LAST[*]}" | med) ms | ${LAST[*]} |"
say "| datagrams sent per node per second (interval ${INTERVAL:-2000} ms) | $(echo "${RATE[*]}" | med) | ${RATE[*]} |"
say "(a node listening on 127.0.0.1 announces to 127.255.255.255 only: one datagram per interval; one listening elsewhere adds one per up IPv4 broadcast interface)"
