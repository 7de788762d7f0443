#!/usr/bin/env bash
# valgrind memcheck on the end-to-end tests and on the crash/soak harnesses.
#
#   1. every tests/e2e binary runs under valgrind with --trace-children=yes,
#      so the `softadastra serve` nodes and CLI processes it starts run under
#      memcheck too;
#   2. sa_walrot, sa_soak (short) and sa_crash (a few cycles) start their
#      nodes through SA_SERVER_WRAPPER=valgrind...;
# then every valgrind log is checked: no memory error of any kind, no
# definitely-lost block.  Processes killed with SIGKILL print no summary;
# their logs are still searched for error reports.
#
# Everything runs many times slower under memcheck: SA_TEST_SLOW=1 tells
# the e2e tests to widen their waits and time-outs (e2e_util.h), and
# CK_TIMEOUT_MULTIPLIER stretches the check framework's test time-outs.
#
# usage: tests/crash/valgrind.sh BUILD_DIR      (a normal, non-sanitizer build)
# environment: VG_E2E (1: run step 1), VG_HARNESS (1: run step 2)
set -uo pipefail
export SA_TEST_SLOW=1 CK_TIMEOUT_MULTIPLIER=4
build=$(cd "${1:?usage: valgrind.sh BUILD_DIR}" && pwd)
logs="$build/valgrind-logs"
rm -rf "$logs"
mkdir -p "$logs"
bin="$build/server/softadastra"
vg="valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite --num-callers=30"
rc=0
step() { # name command...
  local name=$1 t0=$SECONDS st=0
  shift
  "$@" >"$logs/$name.out" 2>&1 || st=$?
  echo "$name: exit $st ($((SECONDS - t0)) s)"
  if [ "$st" -ne 0 ]; then
    rc=1
    tail -n 30 "$logs/$name.out"
  fi
}

if [ "${VG_E2E:-1}" = 1 ]; then
  for t in "$build"/tests/e2e/test_e2e_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    # shellcheck disable=SC2086
    step "$name" $vg --trace-children=yes --trace-children-skip='*/curl,*/rm,*/sh,*/bash' \
      --log-file="$logs/vg.$name.%p.log" "$t"
  done
fi
if [ "${VG_HARNESS:-1}" = 1 ]; then
  export SA_SERVER_WRAPPER="$vg --log-file=$logs/vg.harness.%p.log"
  step walrot env SA_WALROT_TRIALS=7 "$build/tests/crash/sa_walrot" "$bin"
  step soak env SA_SOAK_SECONDS=20 SA_SOAK_WORKERS=4 "$build/tests/soak/sa_soak" "$bin"
  step crash env SA_CRASH_CYCLES=3 "$build/tests/crash/sa_crash" "$bin"
  unset SA_SERVER_WRAPPER
fi

# Judge every log (the test binaries' own, the nodes', the CLI's).
bad=0 n=0 nodes=0
for f in "$logs"/vg.*.log; do
  [ -e "$f" ] || continue
  n=$((n + 1))
  grep -q "softadastra serve" "$f" && nodes=$((nodes + 1))
  if grep -qE "ERROR SUMMARY: [1-9]|definitely lost: [1-9]|Invalid (read|write|free)|uninitialised|Syscall param|Mismatched free|overlap" "$f"; then
    bad=$((bad + 1))
    echo "--- memcheck findings in $f:"
    grep -m1 "Command:" "$f"
    grep -E -A25 "Invalid|uninitialised|Syscall param|definitely lost in|Mismatched|overlap" "$f" | head -60
  fi
done
echo "valgrind: $n process logs ($nodes of them softadastra serve), $bad with findings"
[ "$bad" -eq 0 ] || rc=1
exit "$rc"
