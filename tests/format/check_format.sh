#!/usr/bin/env bash
# check_format.sh -- fails when a C file differs from what clang-format makes
# of it with the repository's .clang-format (clang-format --dry-run -Werror).
#
#   tests/format/check_format.sh [FILE|DIR ...]
#
# With no argument: every tracked *.c and *.h file of the repository
# (git ls-files), except the fuzz corpora.  A directory means the *.c and
# *.h files under it.  Prints each file that differs and how to fix it;
# exits 0 when all are clean, 1 when one is not, 2 on a usage error, 77
# (skip) when clang-format is not installed.  CLANG_FORMAT picks the binary.
#
# What it is not: a formatter.  Fix with: clang-format -i FILE...
set -u
cf=${CLANG_FORMAT:-clang-format}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 2
if ! command -v "$cf" >/dev/null 2>&1; then
  echo "check_format: $cf not found; skipped" >&2
  exit 77
fi

files=()
if [ $# -eq 0 ]; then
  while IFS= read -r f; do files+=("$f"); done < <(git ls-files '*.c' '*.h' | grep -v '^tests/fuzz/corpus/')
else
  for a in "$@"; do
    if [ -d "$a" ]; then
      while IFS= read -r f; do files+=("$f"); done < <(find "$a" -type f \( -name '*.c' -o -name '*.h' \) | sort)
    elif [ -f "$a" ]; then
      files+=("$a")
    else
      echo "check_format: no such file or directory: $a" >&2
      exit 2
    fi
  done
fi

bad=0
for f in "${files[@]}"; do
  if ! "$cf" --dry-run -Werror "$f" >/dev/null 2>&1; then
    echo "not formatted: $f"
    bad=$((bad + 1))
  fi
done
if [ "$bad" -gt 0 ]; then
  echo "check_format: $bad of ${#files[@]} files differ from clang-format; fix with: $cf -i FILE..." >&2
  exit 1
fi
echo "check_format: ${#files[@]} files clean"
