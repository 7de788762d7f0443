#!/usr/bin/env bash
# tests/bench/ab.sh -- interleaved A/B of two builds of the node: the same
# cells run against binary A, then B, then A ... (the order flips every
# round), each on a fresh data directory, and the table gives each cell's
# median per binary and the ratio B/A.  Used to show a change costs nothing
# (or what it costs) on this noisy 2-core machine, where two runs made
# minutes apart differ more than most changes do.
#
#   bash tests/bench/ab.sh OLD_BINARY NEW_BINARY
#
# Cells: PUT and GET of one key (the store's hot routes, wrk + load.lua,
# 10,000 keys, 100-byte values) at c1, c16, c64, and routes libmicrohttpd
# serves (GET /v1/status, GET /v1/store?limit=10, POST /v1/batch of two puts)
# at c16.  Environment: AB_ROUNDS (3), AB_DURATION (5 s), AB_CONCURRENCY
# ("1 16 64"), AB_ROUTES=0 skips the routes, AB_PORT (18490), AB_TMPDIR
# (/var/tmp: a real disk).  Prints figures; asserts nothing about times.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 OLD_BINARY NEW_BINARY" >&2; exit 2; }
A=$(realpath "$1")
B=$(realpath "$2")
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROUNDS=${AB_ROUNDS:-3}
DUR=${AB_DURATION:-5}
CONCS=${AB_CONCURRENCY:-"1 16 64"}
PORT=${AB_PORT:-18490}
TMP=$(mktemp -d "${AB_TMPDIR:-/var/tmp}/sa-ab.XXXXXX")
command -v wrk >/dev/null || { echo "ab.sh: wrk is missing (apt-get install wrk)" >&2; exit 77; }
PID=
stop() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=; fi; }
trap 'stop; rm -rf "$TMP"' EXIT

start() { # $1 binary
  stop
  rm -rf "$TMP/data"
  "$1" serve --listen "127.0.0.1:$PORT" --data-dir "$TMP/data" >"$TMP/out" 2>"$TMP/err" &
  PID=$!
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
    sleep 0.05
  done
  BENCH_OP=fill BENCH_THREADS=4 wrk -t4 -c16 -d60s -s "$HERE/load.lua" \
    "http://127.0.0.1:$PORT" >/dev/null 2>&1 || true
}

cell() { # $1 label, $2 conns, then env assignments for load.lua
  local label=$1 c=$2 t
  shift 2
  t=$((c < 2 ? 1 : 2))
  env "$@" wrk -t"$t" -c"$c" -d"${DUR}s" -s "$HERE/load.lua" "http://127.0.0.1:$PORT" 2>/dev/null |
    awk -v l="$label" '/^BENCH/ { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      printf "%s %s %s %s\n", l, v["rps"], v["p99_ms"], v["non2xx"] + v["errors"] }'
}

run_all() { # $1 tag (A or B), $2 binary
  start "$2"
  for c in $CONCS; do
    cell "$1 put c$c" "$c" BENCH_OP=put
    cell "$1 get c$c" "$c" BENCH_OP=get
  done
  if [ "${AB_ROUTES:-1}" = 1 ]; then
    cell "$1 status c16" 16 BENCH_OP=route BENCH_METHOD=GET BENCH_PATH=/v1/status
    cell "$1 list c16" 16 BENCH_OP=route BENCH_METHOD=GET "BENCH_PATH=/v1/store?limit=10"
    cell "$1 batch c16" 16 BENCH_OP=route BENCH_METHOD=POST BENCH_PATH=/v1/batch \
      'BENCH_BODY={"ops":[{"op":"put","key":"ab/1","value":"x"},{"op":"delete","key":"ab/2"}]}'
  fi
  stop
}

for r in $(seq "$ROUNDS"); do
  echo "[ab] round $r/$ROUNDS" >&2
  if [ $((r % 2)) = 1 ]; then run_all A "$A"; run_all B "$B"; else run_all B "$B"; run_all A "$A"; fi
done >"$TMP/cells"

echo "cell          A req/s (median)   B req/s (median)   B/A    A p99 ms  B p99 ms  errors A/B   per round (A | B)"
awk '{ k = $2 " " $3; key[k] = 1; n[$1, k]++; r[$1, k, n[$1, k]] = $4; p[$1, k, n[$1, k]] = $5; e[$1, k] += $6 }
  function med(t, k, arr,   i, j, m, x, tmp) {
    m = n[t, k]; for (i = 1; i <= m; i++) tmp[i] = arr[t, k, i]
    for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (tmp[j] + 0 < tmp[i] + 0) { x = tmp[i]; tmp[i] = tmp[j]; tmp[j] = x }
    return m % 2 ? tmp[(m + 1) / 2] : (tmp[m / 2] + tmp[m / 2 + 1]) / 2 }
  function all(t, k,   i, s) { s = ""; for (i = 1; i <= n[t, k]; i++) s = s sprintf("%.0f ", r[t, k, i]); return s }
  END { for (k in key) { a = med("A", k, r); b = med("B", k, r)
      printf "%-13s %14.0f %18.0f %9.2f %9.2f %9.2f   %s/%s   %s| %s\n", k, a, b, (a > 0 ? b / a : 0),
        med("A", k, p), med("B", k, p), e["A", k] + 0, e["B", k] + 0, all("A", k), all("B", k) } }' "$TMP/cells" | sort
