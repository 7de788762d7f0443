#!/usr/bin/env bash
# tests/bench/sync.sh -- the sync benchmark of issue 22 ("Performance"):
# catch-up of a new node, live lag, the cost of two pulling peers on the
# write path, and bytes written per PUT with and without them; beside the
# anchor, pouchdb-server replicating one-shot to a second pouchdb-server.
# See tests/bench/README.md ("Sync").
#
#   bash tests/bench/sync.sh                 3 rounds, 100,000 keys, 5 s cells (~6 min)
#   BENCH_SMOKE=1 bash tests/bench/sync.sh   1 round, 2,000 keys, 1 s cells (figures meaningless)
#
# Knobs (environment): SYNC_ROUNDS (3: medians of 3, parts interleaved),
# SYNC_KEYS (100000: the catch-up's keys, 100-byte values), SYNC_POUCH_DOCS
# (20000, ~95-byte docs), SYNC_LAG_SECONDS (5: seconds of paced writes per
# lag cell), SYNC_LAG_RATES ("1000 5000"), BENCH_DURATION (5: seconds per wrk
# cell), BENCH_CONCURRENCY ("16 64"), BENCH_PORT_BASE (18500: ports BASE+1..
# BASE+9 on 127.0.0.1), BENCH_BUILD_DIR (build-bench, Release),
# BENCH_SKIP_BUILD=1, BENCH_TMPDIR (/var/tmp: a real disk, never tmpfs),
# SYNC_PEERS_DIR (the write path's two peers keep their data in a new
# directory under it, e.g. /dev/shm: a disk of their own, as peers on
# other machines have; the hub's stays on BENCH_TMPDIR), SYNC_PEER_FLAGS
# (more serve flags for the write path's two peers only, e.g.
# "--store-sync-interval-ms 2000"; printed in the report),
# SYNC_POUCH=0 (skip the anchor), SYNC_PARTS (a subset of "catchup lag
# write", all by default: 1, 2, 3-4), BENCH_KEEP=1, BENCH_OUT (a file that also
# receives the report).
#
# Prints figures and "met"/"MISSED" beside each target; asserts nothing about
# times.  Exits non-zero only when something could not run.  Every server is
# started on 127.0.0.1 and stopped by PID (trap); every wait is bounded.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/tests/bench
SMOKE=${BENCH_SMOKE:-0}
if [ "$SMOKE" = 1 ]; then
  ROUNDS=${SYNC_ROUNDS:-1}
  NKEYS=${SYNC_KEYS:-2000}
  NDOCS=${SYNC_POUCH_DOCS:-1000}
  LAG_S=${SYNC_LAG_SECONDS:-1}
  DUR=${BENCH_DURATION:-1}
else
  ROUNDS=${SYNC_ROUNDS:-3}
  NKEYS=${SYNC_KEYS:-100000}
  NDOCS=${SYNC_POUCH_DOCS:-20000}
  LAG_S=${SYNC_LAG_SECONDS:-5}
  DUR=${BENCH_DURATION:-5}
fi
LAG_RATES=${SYNC_LAG_RATES:-"1000 5000"}
CONCS=${BENCH_CONCURRENCY:-"16 64"}
BUILD=${BENCH_BUILD_DIR:-$ROOT/build-bench}
PORT_BASE=${BENCH_PORT_BASE:-18500}
POUCH=${SYNC_POUCH:-1}
PARTS=${SYNC_PARTS:-"catchup lag write"}
PEERS_DIR="" # set in main: SYNC_PEERS_DIR's directory of this run
want_part() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
WRK_KEYS=10000 # the write-path cells: load.lua's key space
VALUE=100
P_SRC=$((PORT_BASE + 1))  # catch-up source, then the lag cells' writer node
P_NEW=$((PORT_BASE + 2))  # the new node of each catch-up, then the lag cells' peer
P_POUCH1=$((PORT_BASE + 3))
P_POUCH2=$((PORT_BASE + 4))
P_SOLO=$((PORT_BASE + 5)) # write path: no sync
P_HUB=$((PORT_BASE + 6))  # write path: two peers pull from it
P_PEER1=$((PORT_BASE + 7))
P_PEER2=$((PORT_BASE + 8))

log() { printf '[sync-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---- processes: every server is stopped by PID on exit ----------------------
PIDS=()
WORK=""
cleanup() {
  local pid
  for pid in "${PIDS[@]+"${PIDS[@]}"}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
  if [ -n "$WORK" ] && [ -d "$WORK" ] && [ "${BENCH_KEEP:-0}" != 1 ]; then rm -rf "$WORK"; fi
  if [ -n "$PEERS_DIR" ] && [ -d "$PEERS_DIR" ] && [ "${BENCH_KEEP:-0}" != 1 ]; then rm -rf "$PEERS_DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'log "stopped by a failed command at line $LINENO"' ERR

stop_pid() {
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local keep=() p
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  PIDS=("${keep[@]+"${keep[@]}"}")
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_http() { # URL PID SECONDS
  local url=$1 pid=$2 deadline=$((SECONDS + $3))
  while [ $SECONDS -lt $deadline ]; do
    kill -0 "$pid" 2>/dev/null || return 1
    curl -fs -o /dev/null --max-time 1 "$url" && return 0
    sleep 0.05
  done
  return 1
}

now_ms() { date +%s%3N; }
jnum() { { grep -o "\"$1\":[0-9]*" || true; } | head -1 | cut -d: -f2; } # first integer member NAME of stdin ("" if none)
med() { tr ' ' '\n' | awk 'NF { a[n++] = $1 + 0 } END {
  if (!n) { print "-"; exit } for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
  print (n % 2) ? a[(n - 1) / 2] : (a[n / 2 - 1] + a[n / 2]) / 2 }'; }
io_field() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/io" 2>/dev/null || echo 0; } # PID wchar|write_bytes
# Bytes written to the block device that holds the data dirs, by every
# process, from /proc/diskstats (sectors are 512 bytes there whatever the
# device's); "-" when the dirs are not on a block device (tmpfs).  Per
# process, write_bytes is no measure on kernels with large folios: it
# charges a whole folio each time a page of it is dirtied again (105 KB per
# PUT against 5 KB that reached the disk, measured on a solo node).
disk_bytes() {
  local dev
  dev=$(df --output=source "$WORK" 2>/dev/null | awk 'NR == 2 {print $1}')
  dev=${dev#/dev/}
  awk -v d="$dev" '$3 == d { printf "%.0f\n", $10 * 512; f = 1 } END { if (!f) print "-" }' /proc/diskstats
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# the machine's busy ticks (every process and the kernel: user nice system
# irq softirq steal) and all ticks, from /proc/stat
machine_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; exit }' /proc/stat; }
# CPU ticks per thread name ("name ticks" lines, threads of one name summed;
# utime and stime are the 12th and 13th fields after the ")" that ends the name)
thread_ticks() {
  local t
  for t in /proc/"$1"/task/*; do
    printf '%s %s\n' "$(tr -c 'A-Za-z0-9_.:\n-' '_' <"$t/comm")" "$(sed 's/.*) //' "$t/stat" | awk '{print $12 + $13}')"
  done 2>/dev/null | awk 'NF == 2 {a[$1] += $2} END {for (k in a) print k, a[k]}' | sort
}
# metric_sum NAME [LABEL_FILTER] < /metrics text: the sum of the samples of NAME
metric_sum() { awk -v n="$1" -v f="${2:-}" '{ k = $1; sub(/\{.*/, "", k) } k == n && index($1, f) { s += $NF } END { printf "%.0f", s }'; }
metric_real() { awk -v n="$1" '{ k = $1; sub(/\{.*/, "", k) } k == n { s += $NF } END { printf "%.6f", s }'; }

# ---- dependencies and build ---------------------------------------------------
install_deps() {
  local t
  for t in wrk curl cc pkg-config; do command -v "$t" >/dev/null || die "$t is missing (apt-get install wrk curl build-essential pkg-config)"; done
  pkg-config --exists libcurl jansson || die "libcurl and jansson development files are missing (.ci/deps installs them)"
  if [ "$POUCH" = 1 ]; then
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
      log "node/npm missing: the pouchdb-server anchor is skipped"
      POUCH=0
    fi
  fi
}

build() {
  if [ "${BENCH_SKIP_BUILD:-0}" = 1 ]; then
    log "using the existing build in $BUILD (BENCH_SKIP_BUILD=1)"
  else
    log "building the node (Release) in $BUILD"
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DSA_BUILD_TESTS=OFF >"$WORK/cmake.log" 2>&1 ||
      { cat "$WORK/cmake.log" >&2; die "cmake configure failed"; }
    cmake --build "$BUILD" -j"$(nproc)" >>"$WORK/cmake.log" 2>&1 || { tail -40 "$WORK/cmake.log" >&2; die "build failed"; }
  fi
  SOFTADASTRA=$BUILD/server/softadastra
  [ -x "$SOFTADASTRA" ] || die "no $SOFTADASTRA"
  local cflags="-O2 -g -Wall -Wextra"
  # shellcheck disable=SC2046
  cc $cflags -I "$ROOT/core" -o "$WORK/core_put" "$HERE/core_put.c" "$BUILD/core/libsoftadastra.a" \
    $(pkg-config --libs lmdb) -lpthread || die "cannot build core_put"
  # shellcheck disable=SC2046
  cc $cflags -o "$WORK/sync_lag" "$HERE/sync_lag.c" $(pkg-config --cflags --libs libcurl jansson) -lpthread ||
    die "cannot build sync_lag"
}

# The pinned pouchdb-server (npm ci follows package-lock.json exactly), once.
install_pouch() {
  [ "$POUCH" = 1 ] && want_part catchup || return 0
  local dir=$HERE/pouch
  local want have
  want=$(sed -n 's/.*"pouchdb-server": *"\([^"]*\)".*/\1/p' "$dir/package.json" | head -1)
  have=$({ sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$dir/node_modules/pouchdb-server/package.json" 2>/dev/null || true; } | head -1)
  if [ "$have" != "$want" ] || [ ! -d "$dir/node_modules/leveldown" ]; then
    # --omit=optional: sqlite3 (optional, built from source here) is not
    # needed; the LevelDB adapter and leveldown (prebuilt) are direct deps
    log "installing pouchdb-server $want into $dir/node_modules (npm ci)"
    (cd "$dir" && timeout 900 npm ci --omit=optional --no-audit --no-fund --loglevel=error) >"$WORK/npm.log" 2>&1 ||
      { tail -20 "$WORK/npm.log" >&2; log "npm ci failed: the pouchdb-server anchor is skipped"; POUCH=0; return 0; }
  fi
  POUCHDB_SERVER=$dir/node_modules/.bin/pouchdb-server
}

# ---- servers ------------------------------------------------------------------
start_node() { # NAME PORT [serve flags...]: prints nothing, sets NODE_PID
  local name=$1 port=$2 dir=$WORK/$1
  shift 2
  local more=()
  case "$name" in
    peer1 | peer2)
      [ -z "$PEERS_DIR" ] || dir=$PEERS_DIR/$name
      read -r -a more <<<"${SYNC_PEER_FLAGS:-}"
      ;;
  esac
  mkdir -p "$dir"
  "$SOFTADASTRA" serve --node-id "$name" --listen "127.0.0.1:$port" --data-dir "$dir" \
    --log-level warn "$@" "${more[@]}" >"$WORK/$name.log" 2>&1 &
  NODE_PID=$!
  PIDS+=("$NODE_PID")
  wait_http "http://127.0.0.1:$port/readyz" "$NODE_PID" 30 || { cat "$WORK/$name.log" >&2; die "node $name did not start"; }
}

start_pouch() { # PORT DIR: sets POUCH_PID
  local port=$1 dir=$2
  mkdir -p "$dir"
  (cd "$dir" && exec "$POUCHDB_SERVER" --host 127.0.0.1 --port "$port" --dir "$dir" --no-stdout-logs) \
    >"$dir.log" 2>&1 &
  POUCH_PID=$!
  PIDS+=("$POUCH_PID")
  wait_http "http://127.0.0.1:$port/" "$POUCH_PID" 60 || { tail -20 "$dir.log" >&2; die "pouchdb-server on $port did not start"; }
}

# ---- loads ----------------------------------------------------------------------
# fill_batches PORT N: N keys sync-%07d with 100-byte values, POST /v1/batch of 1,000 ops.
fill_batches() {
  local port=$1 n=$2 b nb
  nb=$(((n + 999) / 1000))
  for b in $(seq 0 $((nb - 1))); do
    awk -v b="$b" -v n="$n" 'BEGIN { v = ""; for (i = 0; i < 100; i++) v = v substr("abcdefghijklmnopqrstuvwxyz0123456789", i % 36 + 1, 1)
      printf "{\"ops\":["; s = ""
      for (i = b * 1000; i < (b + 1) * 1000 && i < n; i++) { printf "%s{\"op\":\"put\",\"key\":\"sync-%07d\",\"value\":\"%s\"}", s, i, v; s = "," }
      printf "]}" }' |
      curl -fsS -o /dev/null --max-time 60 -X POST -H 'Content-Type: application/json' --data-binary @- \
        "http://127.0.0.1:$port/v1/batch" || die "batch $b into port $port failed"
  done
}

# fill_pouch PORT DB N: N docs of ~95 bytes each, _bulk_docs of 1,000.
fill_pouch() {
  local port=$1 db=$2 n=$3 b nb
  nb=$(((n + 999) / 1000))
  curl -fsS -o /dev/null --max-time 30 -X PUT "http://127.0.0.1:$port/$db" || die "pouchdb: cannot create $db"
  for b in $(seq 0 $((nb - 1))); do
    awk -v b="$b" -v n="$n" 'BEGIN { v = ""; for (i = 0; i < 68; i++) v = v substr("abcdefghijklmnopqrstuvwxyz0123456789", i % 36 + 1, 1)
      printf "{\"docs\":["; s = ""
      for (i = b * 1000; i < (b + 1) * 1000 && i < n; i++) { printf "%s{\"_id\":\"doc-%06d\",\"v\":\"%s\"}", s, i, v; s = "," }
      printf "]}" }' |
      curl -fsS -o /dev/null --max-time 120 -X POST -H 'Content-Type: application/json' --data-binary @- \
        "http://127.0.0.1:$port/$db/_bulk_docs" || die "pouchdb: _bulk_docs $b failed"
  done
}

# wrk_fill PORT: every key of load.lua's space once.
wrk_fill() {
  local port=$1 out=$WORK/fill.$1.out
  BENCH_SYS=ours BENCH_OP=fill BENCH_KEYS=$WRK_KEYS BENCH_VALUE=$VALUE BENCH_THREADS=2 \
    wrk -t2 -c64 -d300s --timeout 10s -s "$HERE/load.lua" "http://127.0.0.1:$port" >"$out" 2>&1 &
  local wpid=$! deadline=$((SECONDS + 300))
  while kill -0 "$wpid" 2>/dev/null; do
    [ "$({ cat "$out" 2>/dev/null || true; } | grep -c FILLDONE || true)" -ge 2 ] && break
    [ $SECONDS -lt $deadline ] || break
    sleep 0.1
  done
  kill -TERM "$wpid" 2>/dev/null || true
  wait "$wpid" 2>/dev/null || true
  [ "$(grep -c FILLDONE "$out" || true)" -ge 2 ] || die "filling port $port did not finish"
}

# ---- 1. catch-up ------------------------------------------------------------------
SRC_LSN=0
SRC_DIGEST=""
POUCH_DISK="?"
CU_RATES=""
CU_WCHAR=""
CU_LINES=""
catchup_round() { # ROUND
  local r=$1 name="new-$1" t0 t1 pid deadline cur dg="" st
  rm -rf "${WORK:?}/$name"
  t0=$(now_ms)
  mkdir -p "$WORK/$name"
  "$SOFTADASTRA" serve --node-id "$name" --listen "127.0.0.1:$P_NEW" --data-dir "$WORK/$name" \
    --log-level warn --transport http --peer "http://127.0.0.1:$P_SRC" >"$WORK/$name.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  deadline=$((SECONDS + 600))
  # Its status is cheap: poll the cursor every 20 ms; the digest (a walk of
  # every key) only once the cursor reached the source's last LSN.
  while [ $SECONDS -lt $deadline ] && kill -0 "$pid" 2>/dev/null; do
    st=$(curl -fs --max-time 2 "http://127.0.0.1:$P_NEW/v1/sync/status" 2>/dev/null || true)
    cur=$(jnum cursor <<<"$st")
    if [ -n "$cur" ] && [ "$cur" -ge "$SRC_LSN" ]; then
      dg=$(curl -fs --max-time 10 "http://127.0.0.1:$P_NEW/v1/sync/digest" | grep -o '"digest":"[0-9a-f]*"' || true)
      [ "$dg" = "$SRC_DIGEST" ] && break
      sleep 0.2
      continue
    fi
    sleep 0.02
  done
  t1=$(now_ms)
  local wchar
  wchar=$(io_field "$pid" wchar)
  stop_pid "$pid"
  rm -rf "${WORK:?}/$name"
  if [ "$dg" != "$SRC_DIGEST" ]; then
    log "catch-up round $r: digest not equal after $(((t1 - t0) / 1000)) s (cursor ${cur:-?} of $SRC_LSN)"
    return 0
  fi
  local rate
  rate=$(awk -v n="$NKEYS" -v ms=$((t1 - t0)) 'BEGIN { printf "%.0f", n * 1000 / ms }')
  CU_RATES+=" $rate"
  CU_WCHAR+=" $(awk -v w="$wchar" -v n="$NKEYS" 'BEGIN { printf "%.0f", w / n }')"
  CU_LINES+="    round $r: $((t1 - t0)) ms from start to equal digests, $rate ops/s"$'\n'
  log "catch-up round $r: $NKEYS keys in $((t1 - t0)) ms = $rate ops/s (the new node wrote $wchar bytes)"
}

POUCH_RATES=""
pouch_round() { # ROUND
  local r=$1 t0 t1 out n
  t0=$(now_ms)
  out=$(curl -fsS --max-time 900 -X POST -H 'Content-Type: application/json' \
    --data-binary "{\"source\":\"http://127.0.0.1:$P_POUCH1/src\",\"target\":\"dst$r\",\"create_target\":true}" \
    "http://127.0.0.1:$P_POUCH2/_replicate" 2>&1) || { log "pouchdb replicate round $r failed: $out"; return 0; }
  t1=$(now_ms)
  n=$(curl -fs --max-time 30 "http://127.0.0.1:$P_POUCH2/dst$r" | jnum doc_count)
  [ "${n:-0}" = "$NDOCS" ] || log "pouchdb round $r: the target holds ${n:-?} docs of $NDOCS"
  local rate
  rate=$(awk -v n="$NDOCS" -v ms=$((t1 - t0)) 'BEGIN { printf "%.0f", n * 1000 / ms }')
  POUCH_RATES+=" $rate"
  log "pouchdb one-shot round $r: $NDOCS docs in $((t1 - t0)) ms = $rate docs/s"
}

CORE_RATES=""
core_round() { # ROUND
  local r=$1 d=$WORK/core-$1 line rate
  mkdir -p "$d"
  line=$(timeout $((DUR + 120)) "$WORK/core_put" "$d" 64 "$DUR" 2>&1 | grep '^CORE ' || true)
  rm -rf "$d"
  [ -n "$line" ] || { log "core_put round $r failed"; return 0; }
  rate=$(sed -E 's/.* rate=([0-9.]+).*/\1/' <<<"$line")
  CORE_RATES+=" ${rate%.*}"
  log "core_put c64 round $r: $rate puts/s"
}

part_catchup() {
  log "1. catch-up: source node with $NKEYS keys"
  start_node src "$P_SRC"
  local src_pid=$NODE_PID
  fill_batches "$P_SRC" "$NKEYS"
  local d
  d=$(curl -fsS --max-time 30 "http://127.0.0.1:$P_SRC/v1/sync/digest")
  SRC_DIGEST=$(grep -o '"digest":"[0-9a-f]*"' <<<"$d")
  SRC_LSN=$(jnum last_lsn <<<"$d")
  [ "$(jnum keys <<<"$d")" = "$NKEYS" ] || die "the source holds $(jnum keys <<<"$d") keys, not $NKEYS"
  local p1="" p2=""
  if [ "$POUCH" = 1 ]; then
    log "pouchdb-server: two servers, $NDOCS docs into the source"
    start_pouch "$P_POUCH1" "$WORK/pouch1"
    p1=$POUCH_PID
    start_pouch "$P_POUCH2" "$WORK/pouch2"
    p2=$POUCH_PID
    fill_pouch "$P_POUCH1" src "$NDOCS"
  fi
  local r
  for r in $(seq "$ROUNDS"); do # interleaved, the order turning every round
    case $((r % 3)) in
      1) catchup_round "$r"; [ "$POUCH" != 1 ] || pouch_round "$r"; core_round "$r" ;;
      2) [ "$POUCH" != 1 ] || pouch_round "$r"; core_round "$r"; catchup_round "$r" ;;
      0) core_round "$r"; catchup_round "$r"; [ "$POUCH" != 1 ] || pouch_round "$r" ;;
    esac
  done
  stop_pid "$src_pid"
  stop_pid "$p1"
  stop_pid "$p2"
  if [ "$POUCH" = 1 ]; then # the anchor is disk-backed: its target's LevelDB files
    POUCH_DISK="$(find "$WORK/pouch2" -name '*.ldb' | wc -l) .ldb files, $(du -sh "$WORK/pouch2" | cut -f1) in its data dir"
  fi
  rm -rf "${WORK:?}/src" "$WORK/pouch1" "$WORK/pouch2"
}

# ---- 2. live lag ------------------------------------------------------------------
LAG_TSV=""
part_lag() {
  log "2. live lag: node lag-a written at ${LAG_RATES// //s, }/s, lag-b pulling it (each pulls the other)"
  start_node lag-a "$P_SRC" --transport http --peer "http://127.0.0.1:$P_NEW"
  local a=$NODE_PID
  start_node lag-b "$P_NEW" --transport http --peer "http://127.0.0.1:$P_SRC"
  local b=$NODE_PID r rate conns line
  sleep 1
  for r in $(seq "$ROUNDS"); do
    for rate in $LAG_RATES; do
      conns=$((rate >= 4000 ? 32 : 8))
      line=$(timeout $((LAG_S + 90)) "$WORK/sync_lag" "http://127.0.0.1:$P_SRC" "http://127.0.0.1:$P_NEW" \
        "$rate" "$LAG_S" "$conns" "lag$r-$rate-" 2>&1 | grep '^LAG ' || true)
      [ -n "$line" ] || { log "sync_lag $rate/s round $r failed"; continue; }
      log "lag $rate/s round $r: $line"
      LAG_TSV+="$rate $line"$'\n'
    done
  done
  stop_pid "$b"
  stop_pid "$a"
}

# ---- 3, 4. the write path with and without pulling peers --------------------------
WP_TSV=""
WP_ROUND=0
DIAG_TXT=""
wp_cell() { # LABEL PORT PID C [PEER_PIDS...]
  local label=$1 port=$2 pid=$3 c=$4
  shift 4
  local t=$((c < 2 ? c : 2)) w0 w1 b0 b1 cpu0 cpu1 pw0=0 pw1=0 pc0=0 pc1=0 p out line th0 th1 m0 m1 pm0="" pm1=""
  local mb0 mt0 mb1 mt1
  w0=$(io_field "$pid" wchar); b0=$(disk_bytes); cpu0=$(cpu_ticks "$pid"); th0=$(thread_ticks "$pid")
  read -r mb0 mt0 < <(machine_ticks)
  m0=$(curl -fs --max-time 5 "http://127.0.0.1:$port/metrics" || true)
  for p in "$@"; do pw0=$((pw0 + $(io_field "$p" wchar))); pc0=$((pc0 + $(cpu_ticks "$p"))); done
  [ $# -eq 0 ] || pm0=$(curl -fs --max-time 5 "http://127.0.0.1:$P_PEER1/metrics" || true)
  out=$(BENCH_SYS=ours BENCH_OP=put BENCH_KEYS=$WRK_KEYS BENCH_VALUE=$VALUE \
    timeout $((DUR + 60)) wrk -t"$t" -c"$c" -d"${DUR}s" --timeout 10s -s "$HERE/load.lua" \
    "http://127.0.0.1:$port" 2>&1) || { log "wrk failed for $label c$c"; return 0; }
  read -r mb1 mt1 < <(machine_ticks)
  w1=$(io_field "$pid" wchar); b1=$(disk_bytes); cpu1=$(cpu_ticks "$pid"); th1=$(thread_ticks "$pid")
  m1=$(curl -fs --max-time 5 "http://127.0.0.1:$port/metrics" || true)
  for p in "$@"; do pw1=$((pw1 + $(io_field "$p" wchar))); pc1=$((pc1 + $(cpu_ticks "$p"))); done
  [ $# -eq 0 ] || pm1=$(curl -fs --max-time 5 "http://127.0.0.1:$P_PEER1/metrics" || true)
  line=$(grep '^BENCH ' <<<"$out" | tail -1)
  [ -n "$line" ] || { log "no result from wrk for $label c$c"; return 0; }
  local rps n p99 err catch="-"
  rps=$(sed -E 's/.* rps=([0-9.]+).*/\1/' <<<"$line")
  n=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$line")
  p99=$(sed -E 's/.* p99_ms=([0-9.]+).*/\1/' <<<"$line")
  err=$(($(sed -E 's/.* errors=([0-9]+).*/\1/' <<<"$line") + $(sed -E 's/.* non2xx=([0-9]+).*/\1/' <<<"$line")))
  if [ $# -gt 0 ]; then # how long the peers took to hold everything once the load stopped
    local lsn t0 deadline ok
    lsn=$(curl -fs --max-time 5 "http://127.0.0.1:$port/v1/status" | grep -o '"last_lsn":[0-9]*' | head -1 | cut -d: -f2)
    t0=$(now_ms)
    deadline=$((SECONDS + 120))
    while [ $SECONDS -lt $deadline ]; do
      ok=1
      for p in $P_PEER1 $P_PEER2; do
        local cur
        cur=$(curl -fs --max-time 2 "http://127.0.0.1:$p/v1/sync/status" | jnum cursor || true)
        [ -n "$cur" ] && [ "$cur" -ge "${lsn:-0}" ] || ok=0
      done
      [ "$ok" = 1 ] && break
      sleep 0.02
    done
    [ "$ok" = 1 ] && catch=$(($(now_ms) - t0))
  fi
  local wpp bpp ppp cpu
  wpp=$(awk -v a="$w0" -v b="$w1" -v n="$n" 'BEGIN { printf "%.0f", (b - a) / n }')
  bpp=$(awk -v a="$b0" -v b="$b1" -v n="$n" 'BEGIN { if (a == "-" || b == "-") print "-"; else printf "%.0f", (b - a) / n }')
  ppp=$(awk -v a="$pw0" -v b="$pw1" -v n="$n" -v k=$# 'BEGIN { if (k) printf "%.0f", (b - a) / n / k; else print "-" }')
  cpu=$(awk -v a="$cpu0" -v b="$cpu1" -v hz="$(getconf CLK_TCK)" -v n="$n" 'BEGIN { printf "%.1f", (b - a) * 1e6 / hz / n }')
  local mcpu mbusy pcpu
  mcpu=$(awk -v a="$mb0" -v b="$mb1" -v hz="$(getconf CLK_TCK)" -v n="$n" 'BEGIN { printf "%.1f", (b - a) * 1e6 / hz / n }')
  mbusy=$(awk -v a="$mb0" -v b="$mb1" -v x="$mt0" -v y="$mt1" 'BEGIN { printf "%.2f", (y > x ? (b - a) / (y - x) : 0) }')
  pcpu=$(awk -v a="$pc0" -v b="$pc1" -v hz="$(getconf CLK_TCK)" -v n="$n" -v k=$# 'BEGIN { if (k) printf "%.1f", (b - a) * 1e6 / hz / n; else print "-" }')
  WP_TSV+="$label $c $rps $p99 $err $wpp $bpp $ppp $cpu $catch $WP_ROUND $mcpu $mbusy $pcpu"$'\n'
  # where the CPU goes (us per PUT by thread name), and for the hub: the
  # pages its feed served and their size, the store commits of both sides
  local hz by diag
  hz=$(getconf CLK_TCK)
  by=$(join <(echo "$th0") <(echo "$th1") | awk -v hz="$hz" -v n="$n" \
    'n > 0 { us = ($3 - $2) * 1e6 / hz / n; if (us >= 0.5) printf "%s%s %.1f", (k++ ? ", " : ""), $1, us }')
  local fs
  fs=$(awk -v s0="$(metric_real softadastra_wal_fsync_duration_seconds_sum <<<"$m0")" -v s1="$(metric_real softadastra_wal_fsync_duration_seconds_sum <<<"$m1")" \
    -v c0="$(metric_real softadastra_wal_fsync_duration_seconds_count <<<"$m0")" -v c1="$(metric_real softadastra_wal_fsync_duration_seconds_count <<<"$m1")" -v d="$DUR" \
    'BEGIN { if (c1 > c0) printf "%.2f ms x %.0f/s", (s1 - s0) * 1000 / (c1 - c0), (c1 - c0) / d; else printf "-" }')
  diag="machine CPU $mcpu us/PUT (busy $mbusy of its cores); WAL fdatasync $fs; store commits/s $(awk -v a="$(metric_sum softadastra_store_commits_total <<<"$m0")" -v b="$(metric_sum softadastra_store_commits_total <<<"$m1")" -v d="$DUR" 'BEGIN { printf "%.0f", (b - a) / d }')"
  if [ $# -gt 0 ]; then
    local pages items
    pages=$(($(metric_sum softadastra_http_requests_total 'route="/v1/sync/ops"' <<<"$m1") - $(metric_sum softadastra_http_requests_total 'route="/v1/sync/ops"' <<<"$m0")))
    items=$(($(metric_sum softadastra_sync_peer_ops_sent_total <<<"$m1") - $(metric_sum softadastra_sync_peer_ops_sent_total <<<"$m0")))
    diag+="; its feed served $pages pages to the 2 peers, $(awk -v i="$items" -v p="$pages" 'BEGIN { printf "%.1f", p ? i / p : 0 }') items/page"
    # pages with changes, and of them the copies of a page read for the other peer (api_sync.c)
    diag+=", $(($(metric_sum softadastra_sync_feed_pages_shared_total <<<"$m1") - $(metric_sum softadastra_sync_feed_pages_shared_total <<<"$m0"))) of $(($(metric_sum softadastra_sync_feed_pages_total <<<"$m1") - $(metric_sum softadastra_sync_feed_pages_total <<<"$m0"))) with changes shared"
    diag+=" ($(awk -v p="$pages" -v n="$n" 'BEGIN { printf "%.2f", n ? p / n : 0 }') pages/PUT); peer1: $(awk -v a="$(metric_sum softadastra_store_commits_total <<<"$pm0")" -v b="$(metric_sum softadastra_store_commits_total <<<"$pm1")" -v d="$DUR" 'BEGIN { printf "%.0f", (b - a) / d }') store commits/s"
    diag+=", the 2 peers' CPU $(awk -v a="$pc0" -v b="$pc1" -v hz="$hz" -v n="$n" 'BEGIN { printf "%.1f", (b - a) * 1e6 / hz / n }') us/PUT"
  fi
  DIAG_TXT+="   $label c$c: $diag"$'\n'"     threads (us/PUT): ${by:-none measurable}"$'\n'
  log "$(printf '%-6s c%-3s %8.0f req/s  p99 %7s ms  errors %s  wchar %s B/PUT  disk %s B/PUT  peer wchar %s B/PUT each  cpu %s us/PUT  peers caught up %s ms after' \
    "$label" "$c" "$rps" "$p99" "$err" "$wpp" "$bpp" "$ppp" "$cpu" "$catch")"
}

part_write_path() {
  log "3-4. write path: node solo (no sync) and node hub (two peers pull from it)"
  start_node solo "$P_SOLO"
  local solo=$NODE_PID
  start_node hub "$P_HUB" --transport http --peer "http://127.0.0.1:$P_PEER1" --peer "http://127.0.0.1:$P_PEER2"
  local hub=$NODE_PID
  start_node peer1 "$P_PEER1" --transport http --peer "http://127.0.0.1:$P_HUB"
  local p1=$NODE_PID
  start_node peer2 "$P_PEER2" --transport http --peer "http://127.0.0.1:$P_HUB"
  local p2=$NODE_PID
  wrk_fill "$P_SOLO"
  wrk_fill "$P_HUB"
  local r c
  for r in $(seq "$ROUNDS"); do
    WP_ROUND=$r
    for c in $CONCS; do
      if [ $((r % 2)) = 1 ]; then
        wp_cell solo "$P_SOLO" "$solo" "$c"
        wp_cell hub "$P_HUB" "$hub" "$c" "$p1" "$p2"
      else
        wp_cell hub "$P_HUB" "$hub" "$c" "$p1" "$p2"
        wp_cell solo "$P_SOLO" "$solo" "$c"
      fi
    done
  done
  local dh dp
  dh=$(curl -fs --max-time 30 "http://127.0.0.1:$P_HUB/v1/sync/digest" | grep -o '"digest":"[0-9a-f]*"' || true)
  for p in $P_PEER1 $P_PEER2; do
    dp=$(curl -fs --max-time 30 "http://127.0.0.1:$p/v1/sync/digest" | grep -o '"digest":"[0-9a-f]*"' || true)
    [ "$dp" = "$dh" ] || log "peer on $p: digest differs from the hub's after the cells ($dp vs $dh)"
  done
  for p in "$p2" "$p1" "$hub" "$solo"; do stop_pid "$p"; done
}

# ---- report -----------------------------------------------------------------------
report() {
  echo
  echo "== Softadastra sync benchmark: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "machine: $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
  echo "data dirs on: $(df -T "$WORK" | awk 'NR == 2 {print $2, $1}')"
  [ -z "${SYNC_PEER_FLAGS:-}" ] || echo "the write path's two peers ran with: $SYNC_PEER_FLAGS (SYNC_PEER_FLAGS)"
  [ -z "$PEERS_DIR" ] || echo "the write path's two peers' data on: $(df -T "$PEERS_DIR" | awk 'NR == 2 {print $2, $1}') (SYNC_PEERS_DIR)"
  echo "load average: $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end (a shared machine: other work adds noise)"
  echo "rounds: $ROUNDS, parts interleaved within each; each figure is the median over the rounds"
  echo
  local cu pouch core
  if want_part catchup; then
  cu=$(med <<<"$CU_RATES")
  pouch=$(med <<<"$POUCH_RATES")
  core=$(med <<<"$CORE_RATES")
  echo "1. catch-up: a new empty node (--transport http --peer SOURCE) pulls $NKEYS keys of 100-byte values"
  echo "   (the time runs from its start until its digest equals the source's)"
  printf '%s' "$CU_LINES"
  printf '   %-58s %10s ops/s   (per round:%s)\n' "catch-up, median" "$cu" "$CU_RATES"
  printf '   %-58s %10s B/op\n' "bytes the new node wrote per key (wchar), median" "$(med <<<"$CU_WCHAR")"
  printf '   %-58s %10s puts/s  (per round:%s)\n' "local durable PUT, C API, 64 threads (core_put), median" "$core" "$CORE_RATES"
  if [ "$POUCH" = 1 ]; then
    printf '   %-58s %10s docs/s  (per round:%s)\n' "anchor: pouchdb-server one-shot pull, $NDOCS docs, median" "$pouch" "$POUCH_RATES"
    echo "   (pouchdb-server $(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$HERE/pouch/node_modules/pouchdb-server/package.json" | head -1), LevelDB (leveldown): the target server held $POUCH_DISK; POST /_replicate to the target, source = the other server's URL)"
    awk -v a="$cu" -v b="$pouch" 'BEGIN { if (b > 0 && a != "-") printf "   catch-up / pouchdb-server: %.1fx   (target >= 20x: %s)\n", a / b, (a / b >= 20 ? "met" : "MISSED") }'
  fi
  awk -v a="$cu" -v b="$core" 'BEGIN { if (b > 0 && a != "-") printf "   catch-up / local durable PUT c64 (C API): %.2fx   (target >= 0.5x: %s)\n", a / b, (a / b >= 0.5 ? "met" : "MISSED") }'
  echo
  fi
  if want_part lag; then  echo "2. live lag: paced PUTs on one node (keep-alive connections), the peer's change feed followed"
  echo "   (ms from a write's send to its first sight in the peer's feed; median over the rounds of each percentile;"
  echo "    ack: the writer's own round trip; own feed: the same follower on the written node's feed, no sync in the path)"
  printf '   %6s %8s %8s %8s %8s %8s %8s %12s %10s %6s\n' "rate" achieved p50 p90 p99 max "ack p99" "own feed p99" "late/seen" errors
  local rate
  for rate in $LAG_RATES; do
    grep "^$rate " <<<"$LAG_TSV" | awk -v rate="$rate" '
      function get(k,   i, kv) { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) return kv[2] } }
      { n++; a[n] = get("rate"); p50[n] = get("p50_ms"); p90[n] = get("p90_ms"); p99[n] = get("p99_ms"); mx[n] = get("max_ms")
        ak[n] = get("ack_p99_ms"); lp[n] = get("local_p99_ms"); late += get("late"); seen += get("seen"); w += get("writes"); e += get("errors") }
      function med(v,   i, j, t, m) { for (i = 1; i <= n; i++) m[i] = v[i] + 0
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (m[j] < m[i]) { t = m[i]; m[i] = m[j]; m[j] = t }
        return n % 2 ? m[(n + 1) / 2] : (m[n / 2] + m[n / 2 + 1]) / 2 }
      END { if (!n) exit; printf "   %6s %8.0f %8.1f %8.1f %8.1f %8.1f %8.1f %12.1f %10s %6d\n", rate "/s", med(a), med(p50), med(p90), med(p99), med(mx), med(ak), med(lp), late "/" seen, e
        if (rate == 1000) printf "   p99 at 1,000/s: %.1f ms   (target < 50 ms: %s)\n", med(p99), (med(p99) < 50 ? "met" : "MISSED")
        if (seen < w) printf "   %d of %d writes never seen on the peer within the deadline\n", w - seen, w }'
  done
  echo
  fi
  want_part write || return 0
  echo "3-4. the write path: durable PUT (wrk + load.lua, $WRK_KEYS keys, 100-byte values, $DUR s cells),"
  echo "   solo = no sync; hub = --transport http with two peers pulling from it (each on the same 2 cores)"
  printf '   %-6s %4s %10s %9s %7s %12s %12s %14s %10s %12s\n' node c "req/s" "p99 ms" errors "wchar B/PUT" "disk B/PUT" "peer wchar/PUT" "cpu us/PUT" "peers caught up ms"
  awk 'NF >= 10 { k = $1 " " $2; if (!(k in n)) o[++nk] = k; n[k]++; for (f = 3; f <= 10; f++) v[k, f] = v[k, f] " " $f }
    function med(s,   a, m, i, j, t) { m = split(s, a, " "); if (!m || a[1] == "-") return "-"
      for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
      return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2 }
    END { for (i = 1; i <= nk; i++) { k = o[i]; split(k, kk, " ")
      printf "   %-6s %4s %10.0f %9s %7s %12s %12s %14s %10s %12s\n", kk[1], kk[2], med(v[k, 3]), med(v[k, 4]), med(v[k, 5]), med(v[k, 6]), med(v[k, 7]), med(v[k, 8]), med(v[k, 9]), med(v[k, 10]) } }' <<<"$WP_TSV"
  local c
  for c in $CONCS; do # the ratio of each round's adjacent pair of cells, then their median
    awk -v c="$c" '$2 == c && NF >= 11 { v[$1, $11] = $3; r[$11] = 1 }
      END { for (k in r) if (v["solo", k] > 0 && v["hub", k] != "") { x[++n] = v["hub", k] / v["solo", k]; s = s sprintf(" %.2f", v["hub", k] / v["solo", k]) }
        if (!n) exit
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
        m = n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2
        printf "   PUT c%s, two peers pulling / no sync: %.2fx   (target >= 0.8x: %s)   per round:%s\n", c, m, (m >= 0.8 ? "met" : "MISSED"), s }' <<<"$WP_TSV"
    # the node's own share: its CPU per PUT without sync over with the peers
    # (the ratio a CPU-bound node would show with its peers on other machines)
    awk -v c="$c" '$2 == c && NF >= 11 { v[$1, $11] = $9; r[$11] = 1 }
      END { for (k in r) if (v["hub", k] > 0 && v["solo", k] != "") x[++n] = v["solo", k] / v["hub", k]
        if (!n) exit
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
        printf "   node CPU per PUT c%s, no sync / two peers pulling: %.2fx   (informative: the node'"'"'s own share)\n", c, n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2 }' <<<"$WP_TSV"
    # The physical bound of the ratio on this machine: the peers apply every
    # PUT on the same cores, so even a hub whose sync cost nothing could not
    # pass cores / (the solo cell's machine CPU per PUT + the peers' CPU per
    # PUT); as a ratio to the solo cell's rate, at most 1.
    awk -v c="$c" -v cores="$(nproc)" '$2 == c && NF >= 14 { r[$11] = 1; if ($1 == "solo") { s[$11] = $3; m[$11] = $12 } else { h[$11] = $3; p[$11] = $14 } }
      END { for (k in r) if (s[k] > 0 && m[k] > 0 && p[k] != "" && p[k] != "-") {
          b = cores * 1e6 / (m[k] + p[k]) / s[k]; if (b > 1) b = 1; x[++n] = b; y[n] = h[k] / s[k] / b }
        if (!n) exit
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) { if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t } if (y[j] < y[i]) { t = y[i]; y[i] = y[j]; y[j] = t } }
        printf "   ceiling c%s: the peers'"'"' CPU on these %d cores caps the ratio at %.2fx; the hub reached %.0f%% of it   (bound: this machine)\n", c, cores, n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2, 100 * (n % 2 ? y[(n + 1) / 2] : (y[n / 2] + y[n / 2 + 1]) / 2) }' <<<"$WP_TSV"
  done
  echo "   per cell:"
  printf '%s' "$DIAG_TXT"
  echo "   (wchar: bytes the node passed to write calls, /proc/PID/io, over the cell / requests; disk: bytes written"
  echo "    to the data dirs' device by every process, /proc/diskstats, the peers' included (- on tmpfs);"
  echo "    peer wchar: what each pulling peer wrote per PUT of the hub)"
}

main() {
  install_deps
  LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
  WORK=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/sa-sync-bench.XXXXXX")
  if [ -n "${SYNC_PEERS_DIR:-}" ]; then # the write path's two peers elsewhere (another disk)
    PEERS_DIR=$(mktemp -d "$SYNC_PEERS_DIR/sa-sync-peers.XXXXXX")
  fi
  build
  install_pouch
  local p
  for p in $(seq $((PORT_BASE + 1)) $((PORT_BASE + 8))); do port_free "$p" || die "port $p on 127.0.0.1 is in use (set BENCH_PORT_BASE)"; done
  ! want_part catchup || part_catchup
  ! want_part lag || part_lag
  ! want_part write || part_write_path
  if [ -n "${BENCH_OUT:-}" ]; then report | tee "$BENCH_OUT"; else report; fi
}

main "$@"
