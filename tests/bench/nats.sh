#!/usr/bin/env bash
# tests/bench/nats.sh -- the NATS transport's benchmark (issue 23,
# "Performance"): ops/s through the hub (the publisher's rate, and end to
# end to a consuming node) beside raw nats.c async publish and pull-fetch
# rates in the same run (tests/bench/nats_raw.c), on one nats-server and on
# a 3-server cluster with an R3 stream; the lag at paced rates
# (tests/bench/sync_lag.c: a write on node A until it shows in node B's
# change feed); and the cost on local PUT (wrk, c16 and c64) with the NATS
# transport on against off.
#
#   bash tests/bench/nats.sh                  3 rounds (~4 min)
#   BENCH_SMOKE=1 bash tests/bench/nats.sh    1 round, small counts (figures meaningless)
#
# Knobs: NATS_ROUNDS (3), NATS_OPS (60000: ops written for the hub rates),
# NATS_RAW_MSGS (100000), NATS_LAG_RATES ("1000 5000"), NATS_LAG_SECONDS (5),
# BENCH_DURATION (5: seconds per wrk cell), BENCH_CONCURRENCY ("16 64"),
# BENCH_PORT_BASE (18700: 127.0.0.1 ports BASE+1..BASE+12), BENCH_BUILD_DIR
# (build-bench, Release), BENCH_SKIP_BUILD=1, BENCH_TMPDIR (/var/tmp),
# NATS_PARTS (a subset of "rates lag put", all by default), NATS_CLUSTERS
# (a subset of "1 3": one server, three servers with an R3 stream).
#
# Prints figures; asserts nothing about times.  Every server is started on
# 127.0.0.1 and stopped by PID (trap); every wait is bounded.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/tests/bench
if [ "${BENCH_SMOKE:-0}" = 1 ]; then
  ROUNDS=${NATS_ROUNDS:-1} OPS=${NATS_OPS:-2000} RAW=${NATS_RAW_MSGS:-5000}
  LAG_S=${NATS_LAG_SECONDS:-1} DUR=${BENCH_DURATION:-1}
else
  ROUNDS=${NATS_ROUNDS:-3} OPS=${NATS_OPS:-60000} RAW=${NATS_RAW_MSGS:-100000}
  LAG_S=${NATS_LAG_SECONDS:-5} DUR=${BENCH_DURATION:-5}
fi
LAG_RATES=${NATS_LAG_RATES:-"1000 5000"}
PARTS=${NATS_PARTS:-"rates lag put"}
CLUSTERS=${NATS_CLUSTERS:-"1 3"}
want_part() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
CONCS=${BENCH_CONCURRENCY:-"16 64"}
BUILD=${BENCH_BUILD_DIR:-$ROOT/build-bench}
PB=${BENCH_PORT_BASE:-18700}
WORK=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/sa-nats-bench.XXXXXX")
PIDS=()

log() { printf '%s\n' "$*" >&2; }
die() {
  log "nats.sh: $*"
  exit 1
}
cleanup() {
  # start_node runs in a command substitution: its PIDs are in node.pids
  [ ! -f "$WORK/node.pids" ] || while read -r p; do PIDS+=("$p"); done <"$WORK/node.pids"
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

NATS=$(command -v nats-server || ls /usr/sbin/nats-server 2>/dev/null || true)
[ -n "$NATS" ] || die "nats-server is missing (apt-get install nats-server)"
for t in wrk curl cc pkg-config; do command -v "$t" >/dev/null || die "$t is missing"; done
pkg-config --exists libnats || die "libnats is missing (apt-get install libnats-dev)"
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" -j2 --target softadastra >/dev/null
fi
BIN=$BUILD/server/softadastra
[ -x "$BIN" ] || die "no $BIN"
cc -O2 -o "$WORK/nats_raw" "$HERE/nats_raw.c" $(pkg-config --cflags --libs libnats) -lpthread ||
  die "cannot build nats_raw"
cc -O2 -o "$WORK/sync_lag" "$HERE/sync_lag.c" $(pkg-config --cflags --libs libcurl jansson) \
  -lpthread || die "cannot build sync_lag"

wait_port() { # port: bounded wait until it accepts
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  die "nothing listens on $1"
}
# start_hubs N: N nats-server (cluster when N > 1) on PB+1.. (client) and PB+11.. (routes)
start_hubs() {
  local n=$1 i k routes
  HUB_PIDS=() HUB_URLS=""
  for i in $(seq 0 $((n - 1))); do
    routes=""
    for k in $(seq 0 $((n - 1))); do
      [ "$k" = "$i" ] || routes="$routes${routes:+,} \"nats-route://127.0.0.1:$((PB + 11 + k))\""
    done
    mkdir -p "$WORK/hub$n-$i"
    {
      echo "server_name: \"hub$i\""
      echo "listen: \"127.0.0.1:$((PB + 1 + i))\""
      echo "jetstream { store_dir: \"$WORK/hub$n-$i/js\" }"
      [ "$n" = 1 ] || printf 'cluster {\n name: "b"\n listen: "127.0.0.1:%d"\n routes: [%s ]\n}\n' \
        $((PB + 11 + i)) "$routes"
    } >"$WORK/hub$n-$i/nats.conf"
    "$NATS" -c "$WORK/hub$n-$i/nats.conf" >"$WORK/hub$n-$i/log" 2>&1 &
    HUB_PIDS+=($!) PIDS+=($!)
    HUB_URLS="$HUB_URLS${HUB_URLS:+,}nats://127.0.0.1:$((PB + 1 + i))"
  done
  for i in $(seq 0 $((n - 1))); do wait_port $((PB + 1 + i)); done
  sleep $((n > 1 ? 3 : 0)) # a cluster elects its meta leader
}
stop_pids() { for p in "$@"; do kill "$p" 2>/dev/null || true; done; for p in "$@"; do wait "$p" 2>/dev/null || true; done; }
# start_node NAME PORT [args...]: prints its PID
start_node() {
  local name=$1 port=$2
  shift 2
  "$BIN" serve --node-id "$name" --listen "127.0.0.1:$port" --data-dir "$WORK/$name" \
    --log-level warn "$@" >"$WORK/$name.log" 2>&1 &
  local p=$!
  PIDS+=("$p")
  echo "$p" >>"$WORK/node.pids"
  wait_port "$port"
  echo "$p"
}
HZ=$(getconf CLK_TCK)
ticks() { # PID...: their utime + stime, in clock ticks
  local p t=0
  for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done
  echo "$t"
}
machine_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; exit }' /proc/stat; }
# put_summary LINES: per concurrency, the medians over the rounds of the
# on/off rate ratio; of the node's own share (its CPU per PUT off / on: the
# ratio a CPU-bound node would show with the hub and the peer on other
# machines); and of the ceiling this machine sets: the hub's servers and the
# peer run on the same cores, so even a node whose transport cost nothing
# could not pass cores / (the off cell's machine CPU per PUT + the on
# cell's hub and peer CPU per PUT), as a ratio to the off cell's rate.
put_summary() {
  local c
  for c in $CONCS; do
    awk -v c="$c" -v cores="$(nproc)" '
      function get(k,   i, kv) { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) return kv[2] } }
      function med(v, n,   i, j, t, m) { for (i = 1; i <= n; i++) m[i] = v[i]
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (m[j] < m[i]) { t = m[i]; m[i] = m[j]; m[j] = t }
        return n % 2 ? m[(n + 1) / 2] : (m[n / 2] + m[n / 2 + 1]) / 2 }
      $1 == "PUT" && get("c") == c { r = get("round"); o = get("nats"); rate[r, o] = get("req_per_s"); node[r, o] = get("node_us")
        mach[r, o] = get("machine_us"); other[r, o] = get("hub_us") + get("peer_us"); rs[r] = 1 }
      END { for (r in rs) if (rate[r, "off"] > 0 && rate[r, "on"] > 0) {
          n++; x[n] = rate[r, "on"] / rate[r, "off"]; s = s sprintf(" %.2f", x[n])
          y[n] = node[r, "on"] > 0 ? node[r, "off"] / node[r, "on"] : 0
          b = mach[r, "off"] + other[r, "on"] > 0 ? cores * 1e6 / (mach[r, "off"] + other[r, "on"]) / rate[r, "off"] : 1
          if (b > 1) b = 1; z[n] = b; w[n] = x[n] / b }
        if (!n) exit
        m = med(x, n)
        printf "PUT c%s, transport on / off: %.2fx   (target >= 0.8x: %s)   per round:%s\n", c, m, (m >= 0.8 ? "met" : "MISSED"), s
        printf "PUT c%s, node CPU per PUT off / on: %.2fx   (informative: the node'"'"'s own share)\n", c, med(y, n)
        printf "PUT c%s ceiling: the hub'"'"'s servers and the peer on these %d cores cap the ratio at %.2fx; the node reached %.0f%% of it   (bound: this machine)\n", c, cores, med(z, n), 100 * med(w, n) }' <<<"$1"
  done
}
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 ~ "^"m"[{ ]" {print $2; exit}'; }
keys_of() { curl -s "http://127.0.0.1:$1/v1/sync/digest" | sed -n 's/.*"keys":\([0-9]*\).*/\1/p'; }
now() { date +%s.%N; }

# hub_rates N ROUND: OPS ops (batches of 500) written to node A with no
# transport; then A restarts with the NATS transport and publishes them all
# (its publisher starts from 0) while node B consumes: the publisher's rate
# (A's acked count reaches OPS) and the end-to-end rate (B holds them all),
# both from A's restart, so the write path is not measured.
hub_rates() {
  local n=$1 r=$2 a b t0 t1 t2 i
  a=$(start_node "a$n-$r" $((PB + 5)))
  b=$(start_node "b$n-$r" $((PB + 6)) --transport nats --nats-url "$HUB_URLS")
  for ((i = 0; i < OPS; i += 500)); do
    awk -v s="$i" -v r="$r" 'BEGIN { printf "{\"ops\":["; for (k = 0; k < 500; k++) printf "%s{\"op\":\"put\",\"key\":\"h%s/%08d\",\"value\":\"%0100d\"}", (k ? "," : ""), r, s + k, 0; printf "]}" }' |
      curl -s -o /dev/null -X POST -H 'Content-Type: application/json' --data-binary @- \
        "http://127.0.0.1:$((PB + 5))/v1/batch"
  done
  stop_pids "$a"
  sleep 1
  t0=$(now)
  a=$(start_node "a$n-$r" $((PB + 5)) --transport nats --nats-url "$HUB_URLS")
  # From the restart (the node's start, its connection and stream check
  # included), and from the first acknowledgement seen (what nats_raw times:
  # its connection is up and its stream made before its clock starts).
  local t1="" tf="" af=0 kf=0 ac kb
  for _ in $(seq 1200); do
    ac=$(metric $((PB + 5)) softadastra_nats_acked_total) || true
    kb=$(keys_of $((PB + 6))) || true
    if [ -z "$tf" ] && [ "${ac:-0}" -gt 0 ] 2>/dev/null; then tf=$(now) af=$ac kf=${kb:-0}; fi
    if [ -z "$t1" ] && [ "${ac:-0}" -ge "$OPS" ] 2>/dev/null; then t1=$(now); fi
    if [ "${kb:-0}" -ge $((OPS * r)) ] 2>/dev/null; then # B also gets the earlier rounds
      t2=$(now)
      [ -n "$t1" ] || t1=$t2
      [ -n "$tf" ] || tf=$t0
      break
    fi
    sleep 0.05
  done
  [ -n "${t2:-}" ] || { log "hub rates: B did not get every op"; stop_pids "$a" "$b"; return; }
  awk -v n="$n" -v r="$r" -v o="$OPS" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v tf="$tf" -v af="$af" -v kf="$kf" 'BEGIN {
    printf "HUB replicas=%s round=%s ops=%s publish_per_s=%.0f end_to_end_per_s=%.0f start_s=%.2f steady_publish_per_s=%.0f steady_end_to_end_per_s=%.0f\n",
      n, r, o, o / (t1 - t0), o / (t2 - t0), tf - t0, (t1 > tf ? (o - af) / (t1 - tf) : 0), (t2 > tf ? (o * r - kf) / (t2 - tf) : 0) }'
  stop_pids "$a" "$b"
}

echo "== nats.sh: $(nproc) cores, nats-server $("$NATS" --version | awk '{print $NF}'), libnats $(pkg-config --modversion libnats), rounds $ROUNDS"
for n in $CLUSTERS; do
  start_hubs "$n"
  for r in $(seq "$ROUNDS"); do
    want_part rates || continue
    "$WORK/nats_raw" "nats://127.0.0.1:$((PB + 1))" "$RAW" "$n" || log "nats_raw failed"
    hub_rates "$n" "$r"
  done
  if [ "$n" = 1 ] && want_part lag; then
    # lag at paced rates, A -> hub -> B
    # streams (and subjects: JetStream refuses overlapping ones) of their own: the rates' ops
    # left in SOFTADASTRA are not theirs to catch up
    a=$(start_node lag-a $((PB + 7)) --transport nats --nats-url "$HUB_URLS" --nats-stream SALAG --nats-subject-prefix sa.lag)
    b=$(start_node lag-b $((PB + 8)) --transport nats --nats-url "$HUB_URLS" --nats-stream SALAG --nats-subject-prefix sa.lag)
    sleep 1
    for r in $(seq "$ROUNDS"); do
      for rate in $LAG_RATES; do
        conns=$((rate >= 4000 ? 32 : 8))
        timeout $((LAG_S + 90)) "$WORK/sync_lag" "http://127.0.0.1:$((PB + 7))" \
          "http://127.0.0.1:$((PB + 8))" "$rate" "$LAG_S" "$conns" "lag$r-$rate-" 2>&1 |
          grep '^LAG ' || log "lag $rate/s round $r failed"
      done
    done
    stop_pids "$a" "$b"
  fi
  if [ "$n" = 1 ] && want_part put; then
    # local PUT with the transport on against off, interleaved
    solo=$(start_node solo $((PB + 9)))
    hubn=$(start_node withnats $((PB + 10)) --transport nats --nats-url "$HUB_URLS" --nats-stream SAPUT --nats-subject-prefix sa.put)
    peer=$(start_node natspeer $((PB + 4)) --transport nats --nats-url "$HUB_URLS" --nats-stream SAPUT --nats-subject-prefix sa.put)
    local_put=""
    for r in $(seq "$ROUNDS"); do
      for c in $CONCS; do
        for port in $((PB + 9)) $((PB + 10)); do
          # CPU over the cell (utime + stime ticks): the node measured, the
          # hub's servers and the consuming peer, and the whole machine
          node=$([ "$port" = $((PB + 10)) ] && echo "$hubn" || echo "$solo")
          n0=$(ticks "$node") h0=$(ticks "${HUB_PIDS[@]}") p0=$(ticks "$peer") m0=$(machine_ticks)
          rps=$(BENCH_SYS=ours BENCH_OP=put timeout $((DUR + 60)) wrk -t2 -c"$c" -d"${DUR}s" --timeout 10s -s "$HERE/load.lua" \
            "http://127.0.0.1:$port" 2>&1 | awk '/Requests\/sec/ {print $2}')
          n1=$(ticks "$node") h1=$(ticks "${HUB_PIDS[@]}") p1=$(ticks "$peer") m1=$(machine_ticks)
          line=$(awk -v r="$r" -v c="$c" -v on="$([ "$port" = $((PB + 10)) ] && echo on || echo off)" -v rps="${rps:-0}" -v d="$DUR" -v hz="$HZ" \
            -v n0="$n0" -v n1="$n1" -v h0="$h0" -v h1="$h1" -v p0="$p0" -v p1="$p1" -v m0="$m0" -v m1="$m1" 'BEGIN {
              split(m0, a, " "); split(m1, b, " "); n = rps * d; k = n > 0 ? 1e6 / hz / n : 0
              printf "PUT round=%s c=%s nats=%s req_per_s=%s node_us=%.1f hub_us=%.1f peer_us=%.1f machine_us=%.1f busy=%.0f%%\n",
                r, c, on, rps, (n1 - n0) * k, (h1 - h0) * k, (p1 - p0) * k, (b[1] - a[1]) * k, (b[2] > a[2] ? 100 * (b[1] - a[1]) / (b[2] - a[2]) : 0) }')
          echo "$line"
          local_put+="$line"$'\n'
        done
      done
    done
    echo "PUT check: the node with the transport on had $(metric $((PB + 10)) softadastra_nats_acked_total || true) ops acknowledged by the hub; its consumer holds $(keys_of $((PB + 4)) || true) keys"
    put_summary "$local_put"
    stop_pids "$solo" "$hubn" "$peer"
  fi
  stop_pids "${HUB_PIDS[@]}"
done
