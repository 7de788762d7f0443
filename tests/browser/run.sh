#!/bin/sh
# run.sh -- the browser test under ctest: makes sure Debian's chromium and the
# pinned playwright-core (package.json / package-lock.json, installed into
# tests/browser/node_modules) are there, then runs dashboard.test.mjs.
#
# Usage: run.sh SOFTADASTRA_BIN OUT_DIR
# Exit 0 with "SKIPPED: ..." only when chromium is missing and cannot be
# installed (not root, no apt-get, or apt-get fails).  Everything else that
# goes wrong is a failure.
set -u
bin=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
rm -f "$out"/dashboard.png "$out"/dashboard-failure.png

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "chromium is missing: apt-get install -y chromium (log: $out/apt.log)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >"$out/apt.log" 2>&1 ||
      { apt-get update >>"$out/apt.log" 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >>"$out/apt.log" 2>&1; }
  fi
  if [ ! -x /usr/bin/chromium ]; then
    echo "SKIPPED: /usr/bin/chromium is not installed and cannot be installed here" \
         "(needs root and apt-get; see $out/apt.log)"
    exit 0
  fi
fi
for tool in node npm curl; do
  command -v $tool >/dev/null 2>&1 || { echo "FAIL: $tool is required"; exit 1; }
done

# The pinned playwright-core, once (npm ci follows package-lock.json exactly).
want=$(sed -n 's/.*"playwright-core": *"\([^"]*\)".*/\1/p' "$here/package.json" | head -n 1)
have=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' \
  "$here/node_modules/playwright-core/package.json" 2>/dev/null | head -n 1)
# Several build trees may run this at once: one npm ci at a time.
if command -v flock >/dev/null 2>&1; then
  exec 9>/tmp/softadastra-browser-npm.lock
  flock -w 600 9 || { echo "FAIL: waited 600 s for another npm ci"; exit 1; }
  have=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' \
    "$here/node_modules/playwright-core/package.json" 2>/dev/null | head -n 1)
fi
if [ "$have" != "$want" ]; then
  echo "installing playwright-core $want into $here/node_modules"
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) || {
    echo "FAIL: npm ci could not install playwright-core $want"
    exit 1
  }
fi
exec 9>&-
exec node "$here/dashboard.test.mjs" "$bin" "$out"
