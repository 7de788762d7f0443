#!/usr/bin/env bash
# tests/bench/run.sh -- side-by-side benchmark of the Softadastra node against
# etcd 3.4 (v2 API), Redis 7 (AOF, appendfsync always / everysec) and a bare
# libmicrohttpd handler (the HTTP ceiling), plus recovery speed.  See
# tests/bench/README.md.
#
#   bash tests/bench/run.sh              5 s per cell, c = 1 16 64, recovery of 1M records
#   LONG=1 bash tests/bench/run.sh       30 s per cell
#   BENCH_SMOKE=1 bash tests/bench/run.sh   1 s per cell, c1, ours + ceiling only
#
# Other knobs (environment): BENCH_DURATION (seconds per cell), BENCH_CONCURRENCY
# ("1 16 64"), BENCH_PORT_BASE (18480: ports BASE+1..BASE+6 on 127.0.0.1),
# BENCH_BUILD_DIR (build-bench), BENCH_TMPDIR (/var/tmp: data dirs, on a real
# disk, never tmpfs), BENCH_RECOVERY_RECORDS (1000000; 0 skips), BENCH_OUT (a
# file that receives the result table), BENCH_NO_INSTALL=1 (never apt-get),
# BENCH_THREADS (HTTP worker threads of our node and the ceiling: one per online
# CPU, the node's default),
# BENCH_KEYS (key space: 10000; 1000 in smoke mode), BENCH_WIDE_THREADS (64; 0
# skips the wide node), BENCH_SKIP_BUILD=1 (use BENCH_BUILD_DIR as it is),
# BENCH_KEEP=1 (keep the temp dir), BENCH_SYSTEMS (which systems run: a subset
# of "ours wide core etcd redis ceiling", all by default; smoke mode: ours and
# the ceiling), BENCH_OPS (a subset of "put get", both by default),
# BENCH_ROUNDS (1: each concurrency's cells run this many times, interleaved,
# and the table gives medians; use 3 or more on a busy machine).  With
# BENCH_NO_INSTALL=1 a missing tool makes the script exit 77 (ctest: skipped).
#
#   BENCH_SYSTEMS="ours ceiling" BENCH_OPS=get BENCH_CONCURRENCY="16 64" \
#     BENCH_RECOVERY_RECORDS=0 bash tests/bench/run.sh   the GET/ceiling ratios alone
#
# Prints figures; asserts nothing about times.  Exits non-zero only when
# something could not run (a server did not start, a tool is missing, a load
# produced errors is reported in the table, not fatal).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/tests/bench
SMOKE=${BENCH_SMOKE:-0}
if [ "$SMOKE" = 1 ]; then
  DUR=${BENCH_DURATION:-1}
  CONCS=${BENCH_CONCURRENCY:-1}
  RECORDS=${BENCH_RECOVERY_RECORDS:-0}
elif [ "${LONG:-0}" = 1 ]; then
  DUR=${BENCH_DURATION:-30}
  CONCS=${BENCH_CONCURRENCY:-"1 16 64"}
  RECORDS=${BENCH_RECOVERY_RECORDS:-1000000}
else
  DUR=${BENCH_DURATION:-5}
  CONCS=${BENCH_CONCURRENCY:-"1 16 64"}
  RECORDS=${BENCH_RECOVERY_RECORDS:-1000000}
fi
BUILD=${BENCH_BUILD_DIR:-$ROOT/build-bench}
if [ "$SMOKE" = 1 ]; then NKEYS=${BENCH_KEYS:-1000}; else NKEYS=${BENCH_KEYS:-10000}; fi
PORT_BASE=${BENCH_PORT_BASE:-18480}
VALUE=100
SRV_THREADS=${BENCH_THREADS:-$(nproc)}
P_OURS=$((PORT_BASE + 1))
P_ETCD=$((PORT_BASE + 2))
P_ETCD_PEER=$((PORT_BASE + 3))
P_REDIS=$((PORT_BASE + 4))
P_CEIL=$((PORT_BASE + 5))
P_WIDE=$((PORT_BASE + 6))
WIDE_THREADS=${BENCH_WIDE_THREADS:-64}  # 0: no wide variant
if [ "$SMOKE" = 1 ]; then SYSTEMS=${BENCH_SYSTEMS:-"ours ceiling"}; else SYSTEMS=${BENCH_SYSTEMS:-"ours wide core etcd redis ceiling"}; fi
OPS=${BENCH_OPS:-"put get"}
ROUNDS=${BENCH_ROUNDS:-1}
want_sys() { case " $SYSTEMS " in *" $1 "*) return 0 ;; esac; return 1; }
want_op() { case " $OPS " in *" $1 "*) return 0 ;; esac; return 1; }

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---- dependencies -----------------------------------------------------------
need_pkgs=(wrk)
! want_sys etcd || need_pkgs+=(etcd-server)
! want_sys redis || need_pkgs+=(redis-server redis-tools)
install_deps() {
  if [ "${BENCH_NO_INSTALL:-0}" != 1 ]; then
    bash "$ROOT/.ci/deps"
    local missing=() p
    for p in "${need_pkgs[@]}"; do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
      log "installing: ${missing[*]}"
      local sudo=""
      [ "$(id -u)" -eq 0 ] || sudo=sudo
      # The packages' own services (redis on 6379, etcd on 2379) may be started
      # by the package scripts; this benchmark never uses them.
      DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
  fi
  local t tools=(wrk cc pkg-config curl)
  [ "${BENCH_SKIP_BUILD:-0}" = 1 ] || tools+=(cmake)
  ! want_sys etcd || tools+=(etcd)
  ! want_sys redis || tools+=(redis-server redis-cli redis-benchmark)
  for t in "${tools[@]}"; do
    command -v "$t" >/dev/null && continue
    if [ "${BENCH_NO_INSTALL:-0}" = 1 ]; then
      log "$t is missing and BENCH_NO_INSTALL=1: skipped"
      exit 77 # ctest's SKIP_RETURN_CODE
    fi
    die "$t is missing"
  done
}

# ---- processes: every server is stopped by PID on exit ----------------------
PIDS=()
WORK=""
cleanup() {
  local pid i
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
  if [ -n "$WORK" ] && [ -d "$WORK" ] && [ "${BENCH_KEEP:-0}" != 1 ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_pid() { # stop one server we started, by PID
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  PIDS=("${keep[@]+"${keep[@]}"}")
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_http() { # URL PID SECONDS
  local url=$1 pid=$2 deadline=$((SECONDS + $3))
  while [ $SECONDS -lt $deadline ]; do
    kill -0 "$pid" 2>/dev/null || return 1
    curl -fs -o /dev/null --max-time 1 "$url" && return 0
    sleep 0.1
  done
  return 1
}

# ---- build --------------------------------------------------------------------
build() {
  if [ "${BENCH_SKIP_BUILD:-0}" = 1 ]; then
    log "using the existing build in $BUILD (BENCH_SKIP_BUILD=1: not necessarily Release)"
  else
    log "building the node (Release) in $BUILD"
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DSA_BUILD_TESTS=OFF >"$WORK/cmake.log" 2>&1 ||
    { cat "$WORK/cmake.log" >&2; die "cmake configure failed"; }
    cmake --build "$BUILD" -j"$(nproc)" >>"$WORK/cmake.log" 2>&1 ||
      { tail -40 "$WORK/cmake.log" >&2; die "build failed"; }
  fi
  SOFTADASTRA=$BUILD/server/softadastra
  [ -x "$SOFTADASTRA" ] || die "no $SOFTADASTRA after the build"
  local cflags="-O2 -g -Wall -Wextra"
  # shellcheck disable=SC2046
  cc $cflags -o "$WORK/mhd_ceiling" "$HERE/mhd_ceiling.c" $(pkg-config --cflags --libs libmicrohttpd) ||
    die "cannot build mhd_ceiling"
  if want_sys core; then # links the static core: not in smoke mode (may be a sanitizer build)
    # shellcheck disable=SC2046
    cc $cflags -I "$ROOT/core" -o "$WORK/core_put" "$HERE/core_put.c" "$BUILD/core/libsoftadastra.a" \
      $(pkg-config --libs lmdb) -lpthread || die "cannot build core_put"
  fi
  if [ "$RECORDS" != 0 ]; then
    # shellcheck disable=SC2046
    cc $cflags -I "$ROOT/core" -o "$WORK/recovery" "$HERE/recovery.c" "$BUILD/core/libsoftadastra.a" \
      $(pkg-config --libs lmdb) -lpthread || die "cannot build recovery"
    # shellcheck disable=SC2046
    cc $cflags -o "$WORK/lmdb_bulk" "$HERE/lmdb_bulk.c" $(pkg-config --cflags --libs lmdb) ||
      die "cannot build lmdb_bulk"
  fi
}

# ---- servers ------------------------------------------------------------------
OURS_PID=""
ETCD_PID=""
REDIS_PID=""
CEIL_PID=""
WIDE_PID=""

start_ours() {
  mkdir -p "$WORK/ours"
  "$SOFTADASTRA" serve --listen "127.0.0.1:$P_OURS" --data-dir "$WORK/ours" --threads "$SRV_THREADS" \
    --log-level warn >"$WORK/ours.log" 2>&1 &
  OURS_PID=$!
  PIDS+=("$OURS_PID")
  wait_http "http://127.0.0.1:$P_OURS/readyz" "$OURS_PID" 20 || { cat "$WORK/ours.log" >&2; die "our node did not start"; }
}

# A second node with a larger HTTP thread pool (PUT cells only).  Once a
# durable put held its thread until its fdatasync, so the pool bounded the
# group size; writes now wait suspended, and this node shows the cost of
# many threads (more wake-ups per group) instead.
start_ours_wide() {
  mkdir -p "$WORK/ours-wide"
  "$SOFTADASTRA" serve --listen "127.0.0.1:$P_WIDE" --data-dir "$WORK/ours-wide" --threads "$WIDE_THREADS" \
    --log-level warn >"$WORK/ours-wide.log" 2>&1 &
  WIDE_PID=$!
  PIDS+=("$WIDE_PID")
  wait_http "http://127.0.0.1:$P_WIDE/readyz" "$WIDE_PID" 20 || { cat "$WORK/ours-wide.log" >&2; die "the wide node did not start"; }
}

start_ceiling() {
  "$WORK/mhd_ceiling" "$P_CEIL" "$SRV_THREADS" >"$WORK/ceiling.log" 2>&1 &
  CEIL_PID=$!
  PIDS+=("$CEIL_PID")
  wait_http "http://127.0.0.1:$P_CEIL/" "$CEIL_PID" 10 || { cat "$WORK/ceiling.log" >&2; die "the ceiling did not start"; }
}

start_etcd() {
  mkdir -p "$WORK/etcd"
  etcd --name bench --data-dir "$WORK/etcd/data" \
    --listen-client-urls "http://127.0.0.1:$P_ETCD" --advertise-client-urls "http://127.0.0.1:$P_ETCD" \
    --listen-peer-urls "http://127.0.0.1:$P_ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$P_ETCD_PEER" \
    --initial-cluster "bench=http://127.0.0.1:$P_ETCD_PEER" --enable-v2 --log-level warn \
    >"$WORK/etcd.log" 2>&1 &
  ETCD_PID=$!
  PIDS+=("$ETCD_PID")
  wait_http "http://127.0.0.1:$P_ETCD/v2/keys/" "$ETCD_PID" 30 || { tail -20 "$WORK/etcd.log" >&2; die "etcd did not start"; }
}

start_redis() {
  mkdir -p "$WORK/redis"
  redis-server --port "$P_REDIS" --bind 127.0.0.1 --dir "$WORK/redis" --save '' \
    --appendonly yes --appendfsync always --daemonize no --protected-mode yes \
    --logfile "$WORK/redis.log" >/dev/null 2>&1 &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  local deadline=$((SECONDS + 10))
  until [ "$(redis-cli -p "$P_REDIS" ping 2>/dev/null)" = PONG ]; do
    kill -0 "$REDIS_PID" 2>/dev/null && [ $SECONDS -lt $deadline ] || { cat "$WORK/redis.log" >&2; die "redis did not start"; }
    sleep 0.1
  done
}

redis_fsync() { # always | everysec
  [ "$(redis-cli -p "$P_REDIS" config set appendfsync "$1")" = OK ] || die "redis: cannot set appendfsync $1"
}

# ---- load ---------------------------------------------------------------------
RESULTS=$(mktemp)  # replaced by $WORK/results.tsv once WORK exists

# CPU time (user + system, clock ticks) a process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

# The same per thread name ("name ticks" lines, sorted; threads of one name
# summed): where a server's CPU goes (sa-http, MHD-worker, sa-writer, sa-commit ...).
# The fields after the ")" that ends the name: utime and stime are the
# 12th and 13th.
thread_ticks() {
  local t
  for t in /proc/"$1"/task/*; do
    printf '%s %s\n' "$(tr -c 'A-Za-z0-9_.:\n-' '_' <"$t/comm")" "$(sed 's/.*) //' "$t/stat" | awk '{print $12 + $13}')"
  done 2>/dev/null | awk 'NF == 2 {a[$1] += $2} END {for (k in a) print k, a[k]}' | sort
}
THREADS_TSV=""

# wrk_cell SYS OP C PORT [LABEL] [PID]: one cell of wrk load; appends to
# RESULTS.  With PID (the server's): also its CPU time per request, in us.
wrk_cell() {
  local sys=$1 op=$2 c=$3 port=$4 label=${5:-$1} pid=${6:-}
  local t=$((c < 2 ? c : 2))
  local out cpu0=0 cpu1=0 th0="" th1=""
  [ -z "$pid" ] || { cpu0=$(cpu_ticks "$pid"); th0=$(thread_ticks "$pid"); }
  out=$(BENCH_SYS=$sys BENCH_OP=$op BENCH_KEYS=$NKEYS BENCH_VALUE=$VALUE \
    timeout $((DUR + 60)) wrk -t"$t" -c"$c" -d"${DUR}s" --timeout 10s -s "$HERE/load.lua" \
    "http://127.0.0.1:$port" 2>&1) || { log "wrk failed for $label $op c$c: $out"; return 0; }
  [ -z "$pid" ] || { cpu1=$(cpu_ticks "$pid"); th1=$(thread_ticks "$pid"); }
  local line
  line=$(grep '^BENCH ' <<<"$out" | tail -1)
  [ -n "$line" ] || { log "no result from wrk for $label $op c$c: $out"; return 0; }
  local rps p50 p99 err non2xx
  rps=$(sed -E 's/.* rps=([0-9.]+).*/\1/' <<<"$line")
  p50=$(sed -E 's/.* p50_ms=([0-9.]+).*/\1/' <<<"$line")
  p99=$(sed -E 's/.* p99_ms=([0-9.]+).*/\1/' <<<"$line")
  err=$(sed -E 's/.* errors=([0-9]+).*/\1/' <<<"$line")
  non2xx=$(sed -E 's/.* non2xx=([0-9]+).*/\1/' <<<"$line")
  local cpu=- nreq
  nreq=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$line")
  if [ -n "$pid" ]; then
    cpu=$(awk -v a="$cpu0" -v b="$cpu1" -v hz="$(getconf CLK_TCK)" -v n="$nreq" \
      'BEGIN { if (n > 0) printf "%.2f", (b - a) * 1e6 / hz / n; else print "-" }')
    local by
    by=$(join <(echo "$th0") <(echo "$th1") | awk -v hz="$(getconf CLK_TCK)" -v n="$nreq" \
      'n > 0 { us = ($3 - $2) * 1e6 / hz / n; if (us >= 0.05) printf "%s%s %.1f", (k++ ? ", " : ""), $1, us }')
    THREADS_TSV+=$(printf '%s\t%s\t%s\t%s' "$label" "$op" "$c" "${by:-none measurable}")$'\n'
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$op" "$c" "$rps" "$p50" "$p99" "$((err + non2xx))" "$cpu" >>"$RESULTS"
  log "$(printf '%-16s %-4s c%-3s %10s req/s  p50 %7s ms  p99 %7s ms  errors %s  server cpu %s us/req' "$label" "$op" "$c" "$rps" "$p50" "$p99" "$((err + non2xx))" "$cpu")"
}

# wrk_fill SYS PORT: writes every key of the space once (64 connections).
wrk_fill() {
  local sys=$1 port=$2 out=$WORK/fill.$1.out
  BENCH_SYS=$sys BENCH_OP=fill BENCH_KEYS=$NKEYS BENCH_VALUE=$VALUE BENCH_THREADS=2 \
    wrk -t2 -c64 -d300s --timeout 10s -s "$HERE/load.lua" "http://127.0.0.1:$port" >"$out" 2>&1 &
  local wpid=$! deadline=$((SECONDS + 300))
  # the Lua script prints FILLDONE per thread once its share is answered; wrk
  # itself would sleep until -d, so it is stopped here, by its PID
  while kill -0 "$wpid" 2>/dev/null; do
    [ "$(grep -c FILLDONE "$out" 2>/dev/null || true)" -ge 2 ] && break
    [ $SECONDS -lt $deadline ] || break
    sleep 0.1
  done
  kill -TERM "$wpid" 2>/dev/null || true
  wait "$wpid" 2>/dev/null || true
  [ "$(grep -c FILLDONE "$out" || true)" -ge 2 ] || die "filling $sys did not finish: $(tail -5 "$out")"
}

# redis_cell MODE OP C: one cell of redis-benchmark (no pipelining, 1 client
# thread).  redis-benchmark counts requests, not seconds: a short pilot
# measures the rate, then the cell runs rate x DUR requests.
redis_cell() {
  local mode=$1 op=$2 c=$3 label="redis-$1"
  local t=set
  [ "$op" = get ] && t=get
  local pilot rate n out line
  pilot=$(timeout 60 redis-benchmark -p "$P_REDIS" -t "$t" -d "$VALUE" -r "$NKEYS" -c "$c" \
    -n $((c * 100 > 500 ? c * 100 : 500)) --csv 2>/dev/null | grep -i "^\"$t\"" || true)
  rate=$(awk -F'"' '{print int($4)}' <<<"$pilot")
  [ -n "$rate" ] && [ "$rate" -gt 0 ] || rate=1000
  n=$((rate * DUR))
  [ "$n" -ge 1000 ] || n=1000
  out=$(timeout $((DUR * 4 + 60)) redis-benchmark -p "$P_REDIS" -t "$t" -d "$VALUE" -r "$NKEYS" -c "$c" \
    -n "$n" --csv 2>&1) || { log "redis-benchmark failed for $label $op c$c: $out"; return 0; }
  line=$(grep -i "^\"$t\"" <<<"$out" | tail -1)
  [ -n "$line" ] || { log "no result from redis-benchmark for $label $op c$c: $out"; return 0; }
  # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
  local rps p50 p99
  rps=$(awk -F'"' '{print $4}' <<<"$line")
  p50=$(awk -F'"' '{print $10}' <<<"$line")
  p99=$(awk -F'"' '{print $14}' <<<"$line")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$op" "$c" "$rps" "$p50" "$p99" 0 - >>"$RESULTS"
  log "$(printf '%-16s %-4s c%-3s %10s req/s  p50 %7s ms  p99 %7s ms' "$label" "$op" "$c" "$rps" "$p50" "$p99")"
}

redis_fill() { # every key:000000000000 .. key:000000009999 that redis-benchmark -r uses
  awk -v n="$NKEYS" -v vl="$VALUE" 'BEGIN {
      v = ""; for (i = 0; i < vl; i++) v = v "x";
      for (i = 0; i < n; i++) {
        k = sprintf("key:%012d", i);
        printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, length(v), v;
      } }' | timeout 120 redis-cli -p "$P_REDIS" --pipe >/dev/null || die "filling redis failed"
}

# ---- our node's metrics: group commit, memory ------------------------------------
metric() { # NAME FILE: value of an unlabelled sample
  awk -v n="$1" '$1 == n {print $2; exit}' "$2"
}
scrape() { curl -fs --max-time 5 "http://127.0.0.1:$1/metrics" >"$2" || : >"$2"; } # PORT FILE

# A group-commit metric, if the node exports one: a histogram or summary whose
# name says group or batch (…_sum and …_count).  Prints its base name.
group_metric() {
  grep -v '^#' "$1" | awk '{print $1}' | sed -nE 's/^(softadastra_[a-z_]*(group|batch)[a-z_]*)_count$/\1/p' | head -1
}

PERF_OK=0
probe_perf() {
  command -v perf >/dev/null || return 0
  if perf stat -e 'syscalls:sys_enter_fdatasync' -- true >/dev/null 2>&1; then PERF_OK=1; fi
}
wal_fd() { # PID: the fd of that node's WAL
  local f
  for f in /proc/"$1"/fd/*; do
    case "$(readlink "$f" 2>/dev/null)" in *.wal) basename "$f"; return 0 ;; esac
  done
  return 1
}

rss_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null; }

GROUPS_TSV=""
MEM_TXT=""

# node_put_cell PID PORT LABEL C: a PUT cell of one of our nodes, with
# group-commit accounting.
node_put_cell() {
  local npid=$1 port=$2 label=$3 c=$4 before=$WORK/m.before after=$WORK/m.after perf_out=$WORK/perf.out ppid="" fd
  scrape "$port" "$before"
  rm -f "$perf_out"
  if [ "$PERF_OK" = 1 ] && fd=$(wal_fd "$npid"); then
    # counts until SIGINT (bounded by timeout); attached to the node only
    timeout -s INT $((DUR + 120)) perf stat -x, -e 'syscalls:sys_enter_fdatasync' --filter "fd == $fd" \
      -p "$npid" -o "$perf_out" >/dev/null 2>&1 &
    ppid=$!
    sleep 0.3
  fi
  wrk_cell ours put "$c" "$port" "$label" "$npid"
  if [ -n "$ppid" ]; then
    kill -INT "$ppid" 2>/dev/null || true
    wait "$ppid" 2>/dev/null || true
  fi
  scrape "$port" "$after"
  local l0 l1 recs syncs="" gm mean_metric="" mean_sync=""
  l0=$(metric softadastra_wal_last_lsn "$before")
  l1=$(metric softadastra_wal_last_lsn "$after")
  recs=$(( ${l1:-0} - ${l0:-0} ))
  gm=$(group_metric "$after")
  if [ -n "$gm" ]; then
    local s0 s1 n0 n1
    s0=$(metric "${gm}_sum" "$before"); s1=$(metric "${gm}_sum" "$after")
    n0=$(metric "${gm}_count" "$before"); n1=$(metric "${gm}_count" "$after")
    mean_metric=$(awk -v a="${s0:-0}" -v b="${s1:-0}" -v x="${n0:-0}" -v y="${n1:-0}" \
      'BEGIN { if (y - x > 0) printf "%.2f", (b - a) / (y - x); else print "-" }')
  fi
  if [ -n "$ppid" ] && [ -s "$perf_out" ]; then
    syncs=$(awk -F, '/sys_enter_fdatasync/ {print $1; exit}' "$perf_out")
    mean_sync=$(awk -v r="$recs" -v s="${syncs:-0}" 'BEGIN { if (s > 0) printf "%.2f", r / s; else print "-" }')
  fi
  GROUPS_TSV+=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s' "$label" "$c" "$recs" "${syncs:--}" "${mean_sync:--}" "${gm:--}" "${mean_metric:--}")$'\n'
}

# core_cell C: durable puts through the core API alone (no HTTP), C threads.
core_cell() {
  local c=$1 d=$WORK/core-put-$1 out=$WORK/core_put.out perf_out=$WORK/perf.core.out cpid ppid="" fd="" i
  mkdir -p "$d"
  rm -f "$perf_out"
  "$WORK/core_put" "$d" "$c" "$DUR" 1 >"$out" 2>&1 & # 1 s before the first put: perf attaches
  cpid=$!
  PIDS+=("$cpid")
  if [ "$PERF_OK" = 1 ]; then
    for i in $(seq 50); do fd=$(wal_fd "$cpid") && break; sleep 0.02; done
    if [ -n "$fd" ]; then
      timeout -s INT $((DUR + 60)) perf stat -x, -e 'syscalls:sys_enter_fdatasync' --filter "fd == $fd" \
        -p "$cpid" -o "$perf_out" >/dev/null 2>&1 &
      ppid=$!
    fi
  fi
  local deadline=$((SECONDS + DUR + 61))
  while kill -0 "$cpid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
  stop_pid "$cpid"
  if [ -n "$ppid" ]; then
    kill -INT "$ppid" 2>/dev/null || true
    wait "$ppid" 2>/dev/null || true
  fi
  rm -rf "$d"
  local line
  line=$(grep '^CORE ' "$out" | tail -1)
  [ -n "$line" ] || { log "core_put c$c failed: $(cat "$out")"; return 0; }
  local rate p50 p99 puts syncs="" mean="-"
  rate=$(sed -E 's/.* rate=([0-9.]+).*/\1/' <<<"$line")
  p50=$(sed -E 's/.* p50_ms=([0-9.]+).*/\1/' <<<"$line")
  p99=$(sed -E 's/.* p99_ms=([0-9.]+).*/\1/' <<<"$line")
  puts=$(sed -E 's/.* puts=([0-9]+).*/\1/' <<<"$line")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' core-api put "$c" "$rate" "$p50" "$p99" 0 - >>"$RESULTS"
  log "$(printf '%-16s %-4s c%-3s %10s req/s  p50 %7s ms  p99 %7s ms' core-api put "$c" "$rate" "$p50" "$p99")"
  if [ -s "$perf_out" ]; then
    syncs=$(awk -F, '/sys_enter_fdatasync/ {print $1; exit}' "$perf_out")
    mean=$(awk -v r="$puts" -v s="${syncs:-0}" 'BEGIN { if (s > 0) printf "%.2f", r / s; else print "-" }')
  fi
  GROUPS_TSV+=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s' core-api "$c" "$puts" "${syncs:--}" "$mean" - -)$'\n'
}

# ---- recovery -------------------------------------------------------------------
REC_TXT=""
run_recovery() {
  local d=$WORK/recovery-data out gen rep raw rawn
  mkdir -p "$d"
  log "recovery: writing a $RECORDS-record WAL through the core API (auto_flush off)"
  gen=$(timeout 900 "$WORK/recovery" gen "$d" "$RECORDS" 0) || die "recovery gen failed"
  log "$gen"
  log "recovery: replaying it into an empty store"
  rep=$(timeout 900 "$WORK/recovery" replay "$d" "$RECORDS" 2>&1) || { REC_TXT="replay FAILED: $rep"; log "$REC_TXT"; return 0; }
  log "$rep"
  log "recovery: raw LMDB bulk load of the same key/values"
  raw=$(timeout 900 "$WORK/lmdb_bulk" "$d/raw.mdb" "$RECORDS") || die "lmdb_bulk failed"
  rawn=$(timeout 900 "$WORK/lmdb_bulk" "$d/raw.mdb" "$RECORDS" nosync) || die "lmdb_bulk nosync failed"
  log "$raw"
  log "$rawn"
  rm -rf "$d"
  local f='s/.* rate=([0-9.]+).*/\1/'
  local r_rep r_raw r_rawn wal_bytes
  r_rep=$(sed -E "$f" <<<"$rep"); r_raw=$(sed -E "$f" <<<"$raw"); r_rawn=$(sed -E "$f" <<<"$rawn")
  wal_bytes=$(sed -E 's/.* wal_bytes=([0-9]+).*/\1/' <<<"$gen")
  REC_TXT=$(
    printf '  WAL: %s records, %s bytes (written at %s puts/s through the API, auto_flush off, one thread of asynchronous puts, keys in order)\n' \
      "$RECORDS" "$wal_bytes" "$(sed -E "$f" <<<"$gen")"
    printf '  %-44s %12s records/s  (%s s)\n' "replay into an empty store (sa_client_open)" "$r_rep" "$(sed -E 's/.* seconds=([0-9.]+).*/\1/' <<<"$rep")"
    printf '  %-44s %12s records/s  (%s s)\n' "raw LMDB, 8192 puts/txn, MDB_NOSYNC" "$r_rawn" "$(sed -E 's/.* seconds=([0-9.]+).*/\1/' <<<"$rawn")"
    printf '  %-44s %12s records/s  (%s s)\n' "raw LMDB, 8192 puts/txn, MDB_NOMETASYNC" "$r_raw" "$(sed -E 's/.* seconds=([0-9.]+).*/\1/' <<<"$raw")"
    awk -v a="$r_rep" -v b="$r_raw" -v c="$r_rawn" 'BEGIN {
      printf "  replay / raw (same sync flags: MDB_NOSYNC, one sync at the end): %.2fx   (target >= 0.5x: %s)\n", a / c, (a / c >= 0.5 ? "met" : "MISSED");
      printf "  replay / raw (raw syncing every txn, informative):               %.2fx\n", a / b }'
  )
}

# ---- report -----------------------------------------------------------------------
# summarize: one row per (system, op, c) of RESULTS, in first-seen order:
# the median of each figure over the rounds, the errors summed, the rounds.
summarize() {
  awk -F'\t' -v OFS='\t' '
    function med(s,   a, n, i, j, t) {
      n = split(s, a, " "); if (n == 0) return "-"
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    { k = $1 OFS $2 OFS $3; if (!(k in n)) order[++nk] = k; n[k]++
      rps[k] = rps[k] " " $4; p50[k] = p50[k] " " $5; p99[k] = p99[k] " " $6; err[k] += $7
      if ($8 != "-" && $8 != "") cpu[k] = cpu[k] " " $8 }
    END { for (i = 1; i <= nk; i++) { k = order[i]
      print k, med(rps[k]), med(p50[k]), med(p99[k]), err[k], (cpu[k] == "" ? "-" : med(cpu[k])), n[k] } }' "$RESULTS"
}
get_cell() { # LABEL OP C FIELD(4=rps 5=p50 6=p99 8=server cpu us/req): the median over the rounds
  summarize | awk -F'\t' -v l="$1" -v o="$2" -v c="$3" -v f="$4" '$1 == l && $2 == o && $3 == c && $f != "-" {print $f; exit}'
}
ratio_line() { # TEXT NUM DEN TARGET
  local text=$1 a=$2 b=$3 target=$4
  if [ -z "$a" ] || [ -z "$b" ]; then printf '  %-52s %8s\n' "$text" "n/a"; return; fi
  awk -v t="$text" -v a="$a" -v b="$b" -v g="$target" 'BEGIN {
    r = (b > 0) ? a / b : 0;
    if (g == "-") printf "  %-52s %7.2fx\n", t, r;
    else printf "  %-52s %7.2fx   (target >= %sx: %s)\n", t, r, g, (r >= g ? "met" : "MISSED") }'
}

report() {
  echo
  echo "== Softadastra node benchmark: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "machine: $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
  echo "data dirs on: $(df -T "$WORK" | awk 'NR == 2 {print $2, $1}')"
  echo "load average: $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end (other work on the machine adds noise)"
  echo "load: $DUR s per cell, keys over $NKEYS, $VALUE-byte values; wrk $(wrk -v 2>&1 | awk 'NR == 1 {print $2}') (threads = min(2, c)) beside the servers on the same cores"
  { ! want_sys etcd && ! want_sys redis; } || echo "peers: $(etcd --version 2>/dev/null | awk 'NR == 1 {print "etcd " $3}') (v2 API), $(redis-server --version | awk '{print $1, $3}') (AOF; redis-benchmark, 1 client thread, no pipelining)"
  echo "ours: softadastra serve, auto_flush on (durable), $SRV_THREADS HTTP threads (ours-tN: the same with --threads N, PUT only;"
  echo "      core-api: core_put.c, C threads calling sa_client_put_bytes, no HTTP); ceiling: bare libmicrohttpd, same daemon settings, 100-byte body"
  echo
  [ "$ROUNDS" = 1 ] || echo "each figure: the median of $ROUNDS rounds (cells interleaved: every system's cell once per round)"
  printf '%-16s %-4s %4s %12s %10s %10s %7s %12s\n' system op c "req/s" "p50 ms" "p99 ms" errors "srv us/req"
  summarize | awk -F'\t' '{ printf "%-16s %-4s %4s %12.0f %10.3f %10.3f %7s %12s\n", $1, $2, $3, $4, $5, $6, $7, $8 }'
  echo "  (srv us/req: CPU time, user + system, of the server process per request, where it is ours to measure)"
  echo
  echo "ratios (ours / peer, measured in this run):"
  local c
  for c in $CONCS; do
    case " $c " in
      " 16 " | " 64 ") ratio_line "PUT c$c / redis-always SET" "$(get_cell ours put "$c" 4)" "$(get_cell redis-always put "$c" 4)" 1.0 ;;
    esac
  done
  if [ -n "$WIDE_PID" ]; then
    for c in $CONCS; do
      case " $c " in
        " 16 " | " 64 ") ratio_line "PUT c$c, ours-t$WIDE_THREADS / redis-always SET (informative)" "$(get_cell "ours-t$WIDE_THREADS" put "$c" 4)" "$(get_cell redis-always put "$c" 4)" - ;;
      esac
    done
  fi
  for c in $CONCS; do
    ratio_line "PUT c$c / redis-everysec SET (informative)" "$(get_cell ours put "$c" 4)" "$(get_cell redis-everysec put "$c" 4)" -
  done
  for c in $CONCS; do ratio_line "PUT c$c / etcd v2 PUT" "$(get_cell ours put "$c" 4)" "$(get_cell etcd put "$c" 4)" 3.0; done
  for c in $CONCS; do ratio_line "GET c$c / libmicrohttpd ceiling" "$(get_cell ours get "$c" 4)" "$(get_cell ceiling get "$c" 4)" 0.75; done
  for c in $CONCS; do ratio_line "GET c$c server CPU/req, ceiling / ours (informative)" "$(get_cell ceiling get "$c" 8)" "$(get_cell ours get "$c" 8)" -; done
  for c in $CONCS; do ratio_line "GET c$c / etcd v2 GET" "$(get_cell ours get "$c" 4)" "$(get_cell etcd get "$c" 4)" 2.0; done
  for c in $CONCS; do ratio_line "PUT c$c / libmicrohttpd ceiling (informative)" "$(get_cell ours put "$c" 4)" "$(get_cell ceiling put "$c" 4)" -; done
  local p
  for c in $CONCS; do
    [ "$c" = 16 ] || continue
    for p in put get; do
      local v
      v=$(get_cell ours "$p" 16 6)
      [ -n "$v" ] && awk -v v="$v" -v p="$p" 'BEGIN { printf "  ours %s p99 at c16: %.3f ms   (target < 5 ms: %s)\n", toupper(p), v, (v < 5 ? "met" : "MISSED") }'
    done
  done
  echo
  echo "group commit (our nodes, PUT cells): WAL records / WAL fdatasyncs"
  printf '  %-10s %4s %10s %12s %12s  %s\n' node c records fdatasyncs "mean group" "group metric in /metrics"
  local label recs syncs mean gm gmean
  while IFS=$'\t' read -r label c recs syncs mean gm gmean; do
    [ -n "$label" ] || continue
    if [ "$gm" = - ]; then gm="none exported"; else gm="$gm: $gmean"; fi
    printf '  %-10s %4s %10s %12s %12s  %s\n' "$label" "$c" "$recs" "$syncs" "$mean" "$gm"
  done <<<"$GROUPS_TSV"
  [ "$PERF_OK" = 1 ] || echo "  (fdatasync counts need 'perf stat' with syscall tracepoints; not available here)"
  echo
  echo "server CPU per request by thread (us, user + system, each cell of each round; /proc/PID/task):"
  local op by
  while IFS=$'\t' read -r label op c by; do
    [ -n "$label" ] || continue
    printf '  %-16s %-4s c%-3s %s\n' "$label" "$op" "$c" "$by"
  done <<<"$THREADS_TSV"
  echo
  echo "memory (our node, /proc/PID/status):"
  echo "$MEM_TXT"
  if [ -n "$REC_TXT" ]; then
    echo
    echo "recovery ($RECORDS records):"
    echo "$REC_TXT"
  fi
}

# ---- main -------------------------------------------------------------------------
main() {
  install_deps
  LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
  local tmpbase=${BENCH_TMPDIR:-/var/tmp}
  WORK=$(mktemp -d "$tmpbase/sa-bench.XXXXXX")
  rm -f "$RESULTS"
  RESULTS=$WORK/results.tsv
  : >"$RESULTS"
  build
  probe_perf
  local p
  for p in "$P_OURS" "$P_ETCD" "$P_ETCD_PEER" "$P_REDIS" "$P_CEIL" "$P_WIDE"; do
    port_free "$p" || die "port $p on 127.0.0.1 is in use (set BENCH_PORT_BASE)"
  done

  log "starting servers on 127.0.0.1 (data in $WORK)"
  start_ours
  sleep 1
  local idle_rss idle_detail
  idle_rss=$(rss_kb "$OURS_PID" VmRSS)
  idle_detail="anon $(rss_kb "$OURS_PID" RssAnon) kB, file $(rss_kb "$OURS_PID" RssFile) kB"
  ! want_sys ceiling || start_ceiling
  [ "$WIDE_THREADS" = 0 ] || ! want_sys wide || ! want_op put || start_ours_wide
  ! want_sys etcd || start_etcd
  ! want_sys redis || start_redis

  log "filling the key space ($NKEYS keys)"
  wrk_fill ours "$P_OURS"
  ! want_sys etcd || wrk_fill etcd "$P_ETCD"
  ! want_sys redis || redis_fill
  local filled_rss
  filled_rss=$(rss_kb "$OURS_PID" VmRSS)

  local c peak_rss=0 peak_hwm=0 sampler=""
  for c in $CONCS; do
    log "--- concurrency $c ---"
    if [ "$c" = "$(echo "$CONCS" | awk '{print $NF}')" ]; then
      # peak memory under the heaviest load: reset the high-water mark, sample
      echo 5 >"/proc/$OURS_PID/clear_refs" 2>/dev/null || true
      (while kill -0 "$OURS_PID" 2>/dev/null; do rss_kb "$OURS_PID" VmRSS; sleep 0.2; done) >"$WORK/rss.samples" 2>/dev/null &
      sampler=$!
    fi
    # the order of the systems is the same per concurrency: each ratio is
    # measured minutes apart at most, in the same run
    local round
    for round in $(seq "$ROUNDS"); do
      [ "$ROUNDS" = 1 ] || log "round $round of $ROUNDS"
      if want_sys ours; then
        ! want_op put || node_put_cell "$OURS_PID" "$P_OURS" ours "$c"
        ! want_op get || wrk_cell ours get "$c" "$P_OURS" ours "$OURS_PID"
      fi
      [ -z "$WIDE_PID" ] || node_put_cell "$WIDE_PID" "$P_WIDE" "ours-t$WIDE_THREADS" "$c"
      ! want_sys core || ! want_op put || core_cell "$c"
      if want_sys etcd; then
        ! want_op put || wrk_cell etcd put "$c" "$P_ETCD"
        ! want_op get || wrk_cell etcd get "$c" "$P_ETCD"
      fi
      if want_sys redis; then
        redis_fsync always
        ! want_op put || redis_cell always put "$c"
        ! want_op get || redis_cell always get "$c"
        redis_fsync everysec
        ! want_op put || redis_cell everysec put "$c"
        ! want_op get || redis_cell everysec get "$c"
      fi
      if want_sys ceiling; then
        ! want_op put || wrk_cell ceiling put "$c" "$P_CEIL" ceiling "$CEIL_PID"
        ! want_op get || wrk_cell ceiling get "$c" "$P_CEIL" ceiling "$CEIL_PID"
      fi
    done
    if [ -n "$sampler" ]; then
      peak_hwm=$(rss_kb "$OURS_PID" VmHWM)
      kill "$sampler" 2>/dev/null || true
      wait "$sampler" 2>/dev/null || true
      peak_rss=$(sort -n "$WORK/rss.samples" | tail -1)
    fi
  done
  local last_c
  last_c=$(echo "$CONCS" | awk '{print $NF}')
  MEM_TXT=$(
    printf '  %-28s VmRSS %6s kB  (%s)\n' "idle after start:" "$idle_rss" "$idle_detail"
    printf '  %-28s VmRSS %6s kB\n' "idle after the key fill:" "$filled_rss"
    printf '  %-28s VmHWM %6s kB  (max sampled VmRSS %s kB; HWM reset before these cells)\n' \
      "peak during the c$last_c cells:" "$peak_hwm" "${peak_rss:-?}"
    printf '  %-28s VmRSS %6s kB  (anon %s kB, file %s kB: the LMDB map counts as file)\n' "after the load:" \
      "$(rss_kb "$OURS_PID" VmRSS)" "$(rss_kb "$OURS_PID" RssAnon)" "$(rss_kb "$OURS_PID" RssFile)"
  )

  log "stopping the servers"
  for p in "$OURS_PID" "$WIDE_PID" "$CEIL_PID" "$ETCD_PID" "$REDIS_PID"; do [ -z "$p" ] || stop_pid "$p"; done

  if [ "$RECORDS" != 0 ]; then run_recovery || REC_TXT="  recovery benchmark failed (see the log above)"; fi

  if [ -n "${BENCH_OUT:-}" ]; then
    report | tee "$BENCH_OUT"
  else
    report
  fi
}

main "$@"
