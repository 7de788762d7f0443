#!/usr/bin/env bash
# tests/bench/backup.sh -- the online backup's figures (issue 24 item 5):
#   1. a node's store file is filled to BACKUP_BENCH_MB (1024) MiB over
#      HTTP (batches of 64 KiB values; the store keeps each value twice,
#      in the key and in the change feed's operation, so about half as
#      many MiB of values);
#   2. `softadastra backup` of that running node (GET /v1/backup, streamed
#      to a file and checked) against `mdb_copy -c` (LMDB's compacting copy,
#      the same library call without HTTP or the container) of the same
#      store in the same run, alternated, BACKUP_BENCH_ROUNDS (2) each: MB/s;
#   3. the PUT rate at c16 (wrk, tests/bench/load.lua, 100-byte values)
#      without a backup, then with backups running back to back for the
#      whole window, BACKUP_BENCH_SECONDS (10) each.
# Prints figures; asserts nothing about times.  The store is read from the
# page cache in both copies (the machine just wrote it): the figures compare
# the two copies, not the disk.
#
# Knobs: BACKUP_BENCH_MB, BACKUP_BENCH_ROUNDS, BACKUP_BENCH_SECONDS,
# BENCH_BUILD_DIR (build-bench: built Release when softadastra is missing
# there), BENCH_SKIP_BUILD=1, BENCH_TMPDIR (/var/tmp, a real disk),
# BENCH_PORT_BASE (18480: uses BASE+7), BENCH_NO_INSTALL=1 (never apt-get;
# a missing tool exits 77), BENCH_KEEP=1 (keep the temp dir).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/tests/bench
MB=${BACKUP_BENCH_MB:-1024}
ROUNDS=${BACKUP_BENCH_ROUNDS:-2}
SECS=${BACKUP_BENCH_SECONDS:-10}
BUILD=${BENCH_BUILD_DIR:-$ROOT/build-bench}
PORT=$((${BENCH_PORT_BASE:-18480} + 7))
URL=http://127.0.0.1:$PORT

log() { printf '[backup-bench] %s\n' "$*" >&2; }

need() { # need TOOL PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "${BENCH_NO_INSTALL:-0}" = 1 ]; then
    log "missing $1 (package $2); BENCH_NO_INSTALL=1"
    exit 77
  fi
  log "installing $2 for $1"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi
  $SUDO apt-get install -y "$2" >/dev/null 2>&1 || {
    $SUDO apt-get update >/dev/null 2>&1 && $SUDO apt-get install -y "$2" >/dev/null 2>&1
  } || {
    log "cannot install $2"
    exit 77
  }
}
need mdb_copy lmdb-utils
need wrk wrk
need python3 python3
need curl curl

BIN=$BUILD/server/softadastra
if [ ! -x "$BIN" ] || [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  log "building $BUILD (Release)"
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target softadastra >/dev/null
fi

WORK=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/sa-backup-bench.XXXXXX")
PID=""
cleanup() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

"$BIN" serve --data-dir "$WORK/data" --node-id bench --listen "127.0.0.1:$PORT" \
  >"$WORK/node.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do
  curl -sf "$URL/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf "$URL/healthz" >/dev/null || { log "the node did not start"; cat "$WORK/node.log" >&2; exit 1; }

log "filling the store file to $MB MiB (64 KiB values, batches of 8 MiB)"
t0=$(date +%s.%N)
STORE=$WORK/data/bench.mdb
python3 - "$PORT" "$MB" "$STORE" <<'EOF'
import base64, http.client, json, os, sys
port, mb, store = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
per_batch, vbytes = 128, 64 * 1024
n = 4 * mb * 1024 * 1024 // vbytes  # a bound; the store file's size ends the fill
for start in range(0, n, per_batch):
    if os.stat(store).st_size >= mb * 1024 * 1024:
        break
    ops = []
    for i in range(start, min(n, start + per_batch)):
        v = base64.b64encode(os.urandom(vbytes * 3 // 4)).decode()[:vbytes]
        ops.append({"op": "put", "key": "fill-%07d" % i, "value": v})
    conn.request("POST", "/v1/batch", json.dumps({"ops": ops}),
                 {"Content-Type": "application/json"})
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        sys.exit("batch at %d: HTTP %d %s" % (start, r.status, body[:200]))
EOF
t1=$(date +%s.%N)
store_bytes=$(stat -c %s "$STORE")
log "filled in $(echo "$t1 - $t0" | bc) s; store file $((store_bytes / 1048576)) MiB"

mbps() { echo "scale=1; $1 / 1000000 / $2" | bc; }
secs() { echo "$2 - $1" | bc; }

echo "== backup of a $((store_bytes / 1048576)) MiB store (hot page cache), $ROUNDS rounds"
printf '%-28s %12s %10s %10s\n' "copy" "bytes" "seconds" "MB/s"
for r in $(seq 1 "$ROUNDS"); do
  rm -f "$WORK/b.sabackup" "$WORK/c.mdb"
  a=$(date +%s.%N)
  "$BIN" backup "$WORK/b.sabackup" --url "$URL" --quiet >"$WORK/b.out"
  b=$(date +%s.%N)
  bb=$(stat -c %s "$WORK/b.sabackup")
  # the transfer alone (the CLI's "took"), then with its check of the file
  xs=$(sed -n 's/^ *took *\([0-9.]*\) s.*/\1/p' "$WORK/b.out")
  printf '%-28s %12d %10.2f %10s\n' "softadastra backup (r$r)" "$bb" "$xs" "$(mbps "$bb" "$xs")"
  printf '%-28s %12d %10.2f %10s\n' "  + fsync, verify (r$r)" "$bb" "$(secs "$a" "$b")" \
    "$(mbps "$bb" "$(secs "$a" "$b")")"
  a=$(date +%s.%N)
  mdb_copy -n -c "$STORE" "$WORK/c.mdb"
  b=$(date +%s.%N)
  cb=$(stat -c %s "$WORK/c.mdb")
  printf '%-28s %12d %10.2f %10s\n' "mdb_copy -c (r$r)" "$cb" "$(secs "$a" "$b")" \
    "$(mbps "$cb" "$(secs "$a" "$b")")"
done
a=$(date +%s.%N)
"$BIN" backup verify "$WORK/b.sabackup" >/dev/null
b=$(date +%s.%N)
printf '%-28s %12d %10.2f %10s\n' "backup verify" "$bb" "$(secs "$a" "$b")" \
  "$(mbps "$bb" "$(secs "$a" "$b")")"
rm -f "$WORK/c.mdb"

wrk_put() { # prints the rps of SECS seconds of PUT at c16
  BENCH_SYS=ours BENCH_OP=put BENCH_KEYS=10000 BENCH_VALUE=100 \
    wrk -t2 -c16 -d"${SECS}s" --timeout 10s -s "$HERE/load.lua" "$URL" 2>&1 |
    sed -n 's/.*BENCH requests=[0-9]* duration_s=[0-9.]* rps=\([0-9.]*\) p50_ms=\([0-9.]*\) p99_ms=\([0-9.]*\).*/\1 \2 \3/p'
}

echo "== PUT c16 (100-byte values, $SECS s each)"
printf '%-28s %10s %10s %10s %8s\n' "load" "req/s" "p50 ms" "p99 ms" "backups"
read -r rps p50 p99 <<<"$(wrk_put)"
printf '%-28s %10s %10s %10s %8s\n' "PUT alone" "$rps" "$p50" "$p99" 0
: >"$WORK/loop.count"
(
  end=$(($(date +%s) + SECS))
  while [ "$(date +%s)" -lt "$end" ]; do
    rm -f "$WORK/l.sabackup"
    "$BIN" backup "$WORK/l.sabackup" --url "$URL" --quiet >/dev/null && echo x >>"$WORK/loop.count"
  done
) &
LOOP=$!
read -r rps p50 p99 <<<"$(wrk_put)"
wait "$LOOP" || true
printf '%-28s %10s %10s %10s %8s\n' "PUT during backups" "$rps" "$p50" "$p99" \
  "$(wc -l <"$WORK/loop.count")"
# The same with the backups thrown away by curl (no file written, no fsync,
# no check): what the node's side of a backup costs the PUTs by itself.
: >"$WORK/loop.count"
(
  end=$(($(date +%s) + SECS))
  while [ "$(date +%s)" -lt "$end" ]; do
    curl -sf "$URL/v1/backup" -o /dev/null && echo x >>"$WORK/loop.count"
  done
) &
LOOP=$!
read -r rps p50 p99 <<<"$(wrk_put)"
wait "$LOOP" || true
printf '%-28s %10s %10s %10s %8s\n' "PUT during backups to null" "$rps" "$p50" "$p99" \
  "$(wc -l <"$WORK/loop.count")"
curl -s "$URL/metrics" | grep -E '^softadastra_backup' || true
