#!/bin/sh
# run_example.sh -- runs one of the guide's example programs the way the
# guide does, in a fresh directory, and checks its output.
#
#   run_example.sh EXE EXPECTED      mkdir -p data; run EXE twice (the second
#                                    run reopens and recovers the WAL the
#                                    first left); stdout must equal EXPECTED
#                                    both times, exit status 0
#   run_example.sh EXE --no-data     no data/ directory: EXE must exit 1 and
#                                    its error must say to create it (mkdir)
#
# The temporary directory is removed on every exit path.
set -u

exe=$1
mode=$2

work=$(mktemp -d "${TMPDIR:-/tmp}/sa-example-XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT INT TERM
cd "$work" || exit 1

if [ "$mode" = "--no-data" ]; then
  "$exe" >out.txt 2>err.txt
  status=$?
  if [ "$status" -ne 1 ]; then
    echo "expected exit status 1 without data/, got $status"; cat out.txt err.txt; exit 1
  fi
  if ! grep -q "mkdir" err.txt || ! grep -q "data" err.txt; then
    echo "the error does not say to create the data directory:"; cat err.txt; exit 1
  fi
  if [ -e data ]; then
    echo "the program created data/ (the library must not create directories)"; exit 1
  fi
  echo "ok: $(cat err.txt)"
  exit 0
fi

mkdir -p data
for run in 1 2; do
  "$exe" >out.txt 2>err.txt
  status=$?
  if [ "$status" -ne 0 ]; then
    echo "run $run: exit status $status"; cat err.txt; exit 1
  fi
  if ! diff -u "$mode" out.txt; then
    echo "run $run: output differs from $mode"; exit 1
  fi
  if [ -s err.txt ]; then
    echo "run $run: unexpected stderr:"; cat err.txt; exit 1
  fi
done
cat out.txt
