#!/bin/sh
# run.sh -- the OpenAPI tests under ctest.  Makes sure the pinned npm
# packages (package.json / package-lock.json: @redocly/cli, ajv,
# ajv-formats, yaml) are installed in tests/contract/node_modules, then runs
# one of:
#   run.sh lint SPEC               Redocly's lint of SPEC (redocly.yaml: the
#                                  recommended rules, every warning an error)
#   run.sh api SOFTADASTRA_BIN SPEC  contract.test.mjs: real nodes' answers
#                                  checked against SPEC
# Not: a skip.  node, npm and the packages are needed; missing, or an npm ci
# that fails, is a failure ("FAIL:"), as in tests/browser/run.sh.
# Several build trees may run this at once: the install holds an exclusive
# lock on this directory, a run a shared one, so no run sees node_modules
# half installed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
mode=${1:-}
for tool in node npm; do
  command -v $tool >/dev/null 2>&1 || { echo "FAIL: $tool is required"; exit 1; }
done
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true NO_UPDATE_NOTIFIER=1

# The installed packages are the locked ones when the stamp npm ci left
# names the lock file's checksum.
want=$(cksum <"$here/package-lock.json")
installed() { [ "$(cat "$here/node_modules/.softadastra-lock" 2>/dev/null)" = "$want" ]; }
exec 9<"$here"
if command -v flock >/dev/null 2>&1; then
  flock -s -w 600 9 || { echo "FAIL: waited 600 s for another npm ci"; exit 1; }
  if ! installed; then
    flock -x -w 600 9 || { echo "FAIL: waited 600 s for another npm ci"; exit 1; }
  fi
fi
if ! installed; then
  echo "installing the pinned packages into $here/node_modules (npm ci)"
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) || {
    echo "FAIL: npm ci could not install tests/contract's packages"
    exit 1
  }
  echo "$want" >"$here/node_modules/.softadastra-lock"
  command -v flock >/dev/null 2>&1 && flock -s 9
fi

case $mode in
lint)
  [ $# -eq 2 ] || { echo "usage: run.sh lint SPEC"; exit 2; }
  "$here/node_modules/.bin/redocly" lint "$2" --config "$here/redocly.yaml" --format=stylish ||
    { echo "FAIL: redocly lint found problems in $2"; exit 1; }
  ;;
api)
  [ $# -eq 3 ] || { echo "usage: run.sh api SOFTADASTRA_BIN SPEC"; exit 2; }
  node "$here/contract.test.mjs" "$2" "$3"
  ;;
*)
  echo "usage: run.sh lint SPEC | run.sh api SOFTADASTRA_BIN SPEC"
  exit 2
  ;;
esac
