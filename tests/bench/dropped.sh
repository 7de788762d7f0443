#!/usr/bin/env bash
# dropped.sh -- the room and the decision cost of the dropped-tombstone
# records (issue 22's deleted-writes rule; tests/bench/dropped.c): builds
# dropped.c against an existing build's static core and runs it once in a
# temporary directory (under BENCH_TMPDIR, /var/tmp: a real disk), printing
# its figures.  Asserts nothing about time.
#
#   bash tests/bench/dropped.sh [BUILD_DIR] [N] [KEY_BYTES]   # build, 100000, 16
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD=${1:-$ROOT/build}
N=${2:-100000}
KB=${3:-16}
[ -f "$BUILD/core/libsoftadastra.a" ] || { echo "dropped.sh: no $BUILD/core/libsoftadastra.a (build first)" >&2; exit 1; }
WORK=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/sa-dropped.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# shellcheck disable=SC2046
cc -O2 -g -Wall -Wextra -I "$ROOT/core" -o "$WORK/dropped" "$HERE/dropped.c" \
  "$BUILD/core/libsoftadastra.a" $(pkg-config --libs lmdb) -lpthread
mkdir -p "$WORK/data"
echo "dropped.sh: $N records of $KB-byte keys (build: $BUILD)"
"$WORK/dropped" "$WORK/data" "$N" "$KB"
