#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (-fsanitize=fuzzer,address,undefined;
# the libraries under test with fuzzer-no-link coverage) in their own build
# directory, and runs each target for a bounded time from the committed seed
# corpus.  A crash leaves its input in BUILD/fuzz-artifacts/<target>/: copy it
# to tests/fuzz/crashes/<target>/ and it becomes a regression test
# (ctest -R fuzz.replay, in every build).
#
# usage: tests/fuzz/run_fuzz.sh [BUILD_DIR]       (default: build-fuzz)
# environment: FUZZ_SECONDS (20 per target), FUZZ_TARGETS (all),
#              CC (clang)
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$src/build-fuzz}
secs=${FUZZ_SECONDS:-20}
targets=${FUZZ_TARGETS:-"fuzz_wal_record fuzz_wal_scan fuzz_key fuzz_batch fuzz_request fuzz_cfg fuzz_http fuzz_disc"}
cc=${CC:-clang}
flags="-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all"

cmake -S "$src" -B "$build" -DCMAKE_C_COMPILER="$cc" -DSA_FUZZ=ON -DSA_WERROR=OFF \
  -DCMAKE_C_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
# shellcheck disable=SC2086
cmake --build "$build" -j"$(nproc)" --target $targets >/dev/null

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=()
for t in $targets; do
  work="$build/fuzz-corpus/$t"
  art="$build/fuzz-artifacts/$t"
  mkdir -p "$work" "$art"
  log="$build/fuzz-$t.log"
  echo "--- $t: ${secs}s"
  rc=0
  "$build/tests/fuzz/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$art/" "$work" "$src/tests/fuzz/corpus/$t" \
    >"$log" 2>&1 || rc=$?
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|^#[0-9]+.*DONE" "$log" || true
  if [ "$rc" -ne 0 ]; then
    failed+=("$t")
    echo "FAIL $t (exit $rc); the input is in $art/:"
    ls -l "$art"
    grep -E "ERROR|property failed|SUMMARY|#[0-9] 0x" "$log" | head -30
  fi
done
if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzzing found crashes in: ${failed[*]}"
  exit 1
fi
echo "fuzzing: no crash in $targets (${secs}s each)"
