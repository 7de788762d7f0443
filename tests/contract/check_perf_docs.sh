#!/bin/sh
# check_perf_docs.sh -- README's Performance section holds the current
# table only; the history lives in docs/performance.md.  Checks: the
# section has exactly one table, names the command that made it and what
# bounds the figures, links docs/performance.md, and holds none of the
# history's paragraphs, which docs/performance.md holds instead.
# Not a check of the figures themselves.
# usage: check_perf_docs.sh SOURCE_DIR
set -eu
src=$1
fail() { echo "FAIL: $*"; exit 1; }
sec=$(awk '/^## Performance$/ {s = 1; next} s && /^## / {exit} s' "$src/README.md")
[ -n "$sec" ] || fail "README.md has no Performance section"
doc=$src/docs/performance.md
[ -f "$doc" ] || fail "docs/performance.md is missing"

# One current table for the node's bench, and at most one per subsection
# (### Sync, ...): the history lives in docs/performance.md.
main=$(printf '%s\n' "$sec" | awk '/^### / {exit} {print}')
tables=$(printf '%s\n' "$main" | grep -c '^|---' || true)
[ "$tables" = 1 ] || fail "README's Performance section holds $tables tables before its subsections, want 1"
bad=$(printf '%s\n' "$sec" | awk '/^### / {name = $0; n[name] = 0; next} name && /^\|---/ {n[name]++}
  END {for (k in n) if (n[k] > 1) print k}')
[ -z "$bad" ] || fail "README's Performance subsection holds more than one table: $bad"
# shellcheck disable=SC2016 # backquotes are Markdown here
printf '%s\n' "$sec" | grep -q 'come from `BENCH_ROUNDS=[0-9]* bash tests/bench/run.sh`' ||
  fail "README's Performance section does not name the command behind its table"
for bound in 'What is left between PUT and the targets.' 'What bounds durable PUT now.'; do
  printf '%s\n' "$sec" | grep -qF "$bound" || fail "README's Performance section lost: $bound"
done
printf '%s\n' "$sec" | grep -qF '(docs/performance.md)' ||
  fail "README's Performance section does not link docs/performance.md"
for hist in 'The table before this one' 'The table two before' 'The table three before' \
  'The change four tables before' "The PUT tail no longer grows with the store's age" \
  'Replaying 1,000,000 WAL records' 'Tried and not kept'; do
  if printf '%s\n' "$sec" | grep -qF "$hist"; then fail "README still holds history: $hist"; fi
  grep -qF "$hist" "$doc" || fail "docs/performance.md lacks: $hist"
done
echo "performance docs check passed"
