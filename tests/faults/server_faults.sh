#!/usr/bin/env bash
# Fault injection against the running server (issue: reliability suite).
#
# Drives `softadastra-faults` (the real server plus core/io_faults.c) over
# HTTP on 127.0.0.1, arming faults at run time through a spec file:
#   ENOSPC at WAL write: 507, nothing visible, the node stays writable and
#     recovers when the fault clears;
#   ENOSPC at a store commit: with room in the map the write was answered
#     before its commit (it is in the WAL): reads of it get 507, the node
#     turns read-only, and the restart brings the write back; with a map too
#     small for that (--store-max-bytes 32 MiB) every write is answered after
#     its commit, and a failed commit fails the write as at WAL write;
#   EIO at fdatasync and at WAL write: 500, /readyz turns 503, writes get 503
#     read_only, reads keep working;
#   short writes: the core completes them;
#   EIO at a store sync point (background): the node turns read-only, and
#     nothing acknowledged is lost.
# After each fault the node is restarted (SIGTERM, then a new process without
# faults) and every acknowledged write must be there with its value.
#
# usage: server_faults.sh PATH/TO/softadastra-faults
set -euo pipefail
bin=$1
tmp=$(mktemp -d)
pid=""
url=""
spec="$tmp/faults.spec"
pass=0
fail=0

cleanup() {
  if [ -n "$pid" ]; then kill -9 "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

start() {
  : >"$tmp/out.log"
  SOFTADASTRA_FAULTS_FILE="$spec" "$bin" serve --listen 127.0.0.1:0 --data-dir "$tmp/data" \
    ${extra_args:-} >"$tmp/out.log" 2>>"$tmp/err.log" &
  pid=$!
  for _ in $(seq 100); do
    url=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$tmp/out.log" | head -1 || true)
    [ -n "$url" ] && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "FAIL: server did not start"; cat "$tmp/err.log"; exit 1
}

stop() {
  kill -TERM "$pid"
  local rc=0
  wait "$pid" || rc=$?
  pid=""
  check "graceful stop exits 0" 0 "$rc"
}

arm() { printf '%s' "$1" >"$spec"; sleep 0.01; touch "$spec"; }

check() { # name expected got
  if [ "$2" = "$3" ]; then
    pass=$((pass + 1)); echo "ok   $1"
  else
    fail=$((fail + 1)); echo "FAIL $1: expected '$2', got '$3'"
  fi
}

# HTTP status of a request; the body goes to $tmp/body.
http() { curl -s -o "$tmp/body" -w '%{http_code}' "$@"; }
code_of() { grep -o '"code":"[a-z_]*"' "$tmp/body" | head -1 | cut -d'"' -f4; }

declare -A acked=()
put_ok() { # key value: a write that must be acknowledged
  local st
  st=$(http -X PUT --data-binary "$2" "$url/v1/store/$1")
  case $st in 200 | 201) st=2xx ;; esac # 201 when the key is created
  check "PUT $1 acknowledged" 2xx "$st"
  [ "$st" = 2xx ] && acked[$1]=$2
  return 0
}

verify_acked() { # every acknowledged write holds its value
  local k st bad=0
  for k in "${!acked[@]}"; do
    st=$(http "$url/v1/store/$k?raw=1")
    if [ "$st" != 200 ] || [ "$(cat "$tmp/body")" != "${acked[$k]}" ]; then
      bad=$((bad + 1)); echo "  lost: $k (status $st)"
    fi
  done
  check "all ${#acked[@]} acknowledged writes present after $1" 0 "$bad"
}

arm ""
start
for i in $(seq 0 9); do put_ok "k$i" "value-$i"; done

echo "--- ENOSPC at WAL write"
arm "wal_write=ENOSPC"
check "PUT under ENOSPC -> 507" 507 "$(http -X PUT --data-binary x "$url/v1/store/enospc")"
check "error code" insufficient_storage "$(code_of)"
check "failed PUT not visible" 404 "$(http "$url/v1/store/enospc")"
check "batch under ENOSPC -> 507" 507 "$(http -X POST -H 'Content-Type: application/json' \
  --data '{"ops":[{"op":"put","key":"b1","value":"1"},{"op":"put","key":"b2","value":"2"}]}' \
  "$url/v1/batch")"
check "no key of the failed batch visible" 404 "$(http "$url/v1/store/b1")"
check "readyz stays 200 (ENOSPC rolled back)" 200 "$(http "$url/readyz")"
arm ""
put_ok after-enospc ok
check "failed key still absent after the fault clears" 404 "$(http "$url/v1/store/enospc")"

echo "--- ENOSPC at store commit, write answered before its commit"
arm "store_commit=ENOSPC"
put_ok early-commitfail kept
check "read of the write whose commit failed -> 507" 507 "$(http "$url/v1/store/early-commitfail")"
check "error code" insufficient_storage "$(code_of)"
check "readyz 503 (read-only)" 503 "$(http "$url/readyz")"
arm ""
check "PUT after the lost commit -> 503 read_only" 503 "$(http -X PUT --data-binary x "$url/v1/store/later")"
stop
start
verify_acked "a lost store commit and restart"

echo "--- ENOSPC at store commit, write answered after its commit (small map)"
stop
extra_args="--store-max-bytes 33554432"
start
arm "store_commit=ENOSPC"
check "PUT under commit ENOSPC -> 507" 507 "$(http -X PUT --data-binary x "$url/v1/store/commitfail")"
check "failed PUT not visible" 404 "$(http "$url/v1/store/commitfail")"
check "readyz stays 200" 200 "$(http "$url/readyz")"
arm ""
put_ok after-commit ok
stop
extra_args=""
start
check "key of the failed commit absent after restart" 404 "$(http "$url/v1/store/commitfail")"
verify_acked "ENOSPC faults and restart"

echo "--- short writes"
arm "short_write=1"
for i in $(seq 0 4); do put_ok "short$i" "a-longer-value-to-split-$i-$(head -c 300 /dev/zero | tr '\0' x)"; done
arm ""

echo "--- EIO at fdatasync"
arm "wal_sync=EIO"
st=$(http -X PUT --data-binary x "$url/v1/store/eio")
check "PUT under fdatasync EIO -> 500" 500 "$st"
check "readyz 503 while read-only" 503 "$(http "$url/readyz")"
check "readyz code" read_only "$(code_of)"
arm "" # the disk "recovers": the node must not pretend the lost sync happened
check "PUT after failed fsync -> 503 read_only" 503 "$(http -X PUT --data-binary x "$url/v1/store/later")"
check "error code" read_only "$(code_of)"
check "reads still served" 200 "$(http "$url/v1/store/k3")"
check "healthz still 200" 200 "$(http "$url/healthz")"
stop
start
check "readyz 200 after reopen" 200 "$(http "$url/readyz")"
check "write refused while read-only never appears" 404 "$(http "$url/v1/store/later")"
verify_acked "EIO at fdatasync and restart"

echo "--- EIO at WAL write"
arm "wal_write=EIO"
check "PUT under write EIO -> 500" 500 "$(http -X PUT --data-binary x "$url/v1/store/weio")"
check "failed PUT not visible" 404 "$(http "$url/v1/store/weio")"
arm ""
put_ok after-weio ok
stop
start
verify_acked "EIO at WAL write and restart"

echo "--- EIO at a store sync point"
arm "store_sync=EIO"
put_ok during-ssync ok # answered: the WAL made it durable; the store syncs in the background
st=""
for _ in $(seq 100); do # bounded: 10 s, against a 200 ms sync period
  st=$(http "$url/readyz")
  [ "$st" = 503 ] && break
  sleep 0.1
done
check "readyz 503 after a failed sync point" 503 "$st"
check "the reason names the sync point" 1 "$(grep -c 'store sync point' "$tmp/body" || true)"
check "PUT after a failed sync point -> 503 read_only" 503 \
  "$(http -X PUT --data-binary x "$url/v1/store/after-ssync")"
arm ""
stop
start
check "readyz 200 after reopen" 200 "$(http "$url/readyz")"
verify_acked "EIO at a store sync point and restart"
stop

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
