#!/usr/bin/env bash
# shellcheck disable=SC2016  # the README lines below are single-quoted on purpose: eval runs them
# check_install.sh -- the README's embedding steps, run as a user would:
# installs the project into a fresh temporary prefix, takes the README's C
# program and builds it against the install three ways, then runs each:
#   1. pkg-config, shared (with the run path the README gives for a prefix
#      the loader does not search; without it the program must not start)
#   2. pkg-config, static (libsoftadastra.a and liblmdb.a, no shared one)
#   3. CMake, find_package(softadastra): the shared and the static target
# Every command line of 1 and 2 and the README's two CMake lines are looked
# up in README.md verbatim first, so the README cannot drift from what runs.
# Not: an install into /usr/local or an ldconfig (nothing is written outside
# the temporary directory, which is removed at exit).
# usage: check_install.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
readme=$src/README.md
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# The README's lines, exactly; the test runs these strings.
pc_path='export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"'
cc_shared='cc app.c $(pkg-config --cflags --libs softadastra) -o app'
cc_rpath='cc app.c $(pkg-config --cflags --libs softadastra) -Wl,-rpath,$(pkg-config --variable=libdir softadastra) -o app'
cc_static='cc app.c $(pkg-config --cflags softadastra) -Wl,-Bstatic $(pkg-config --static --libs softadastra) -Wl,-Bdynamic -o app-static'
cm_find='find_package(softadastra 0.1 REQUIRED)'
cm_link='target_link_libraries(app PRIVATE softadastra::softadastra)'
for line in "$pc_path" "$cc_shared" "$cc_rpath" "$cc_static" "$cm_find" "$cm_link"; do
  grep -Fxq -- "$line" "$readme" || fail "README.md has no line: $line"
done

# The README's program: the first ```c block of its embedding section.
awk '/^## Embedding/ {s = 1} s && /^```c$/ {f = 1; next} f && /^```$/ {exit} f' \
  "$readme" >"$tmp/app.c"
grep -q 'sa_client_open' "$tmp/app.c" || fail "no C program in README.md's embedding section"
want=$(sed -n 's/.*printf("\([^%]*\)%s\\n", value.data).*/\1/p' "$tmp/app.c")
[ -n "$want" ] || fail "cannot tell what the README's program prints"

# A fresh prefix.
prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
for f in include/softadastra.h lib/libsoftadastra.a lib/libsoftadastra.so \
  lib/libsoftadastra.so.0 lib/pkgconfig/softadastra.pc bin/softadastra \
  lib/cmake/softadastra/softadastraConfig.cmake \
  lib/cmake/softadastra/softadastraConfigVersion.cmake \
  lib/cmake/softadastra/softadastraTargets.cmake; do
  [ -e "$prefix/$f" ] || fail "missing after install: $f"
done

# check_run NAME DIR: runs DIR/NAME in a directory with data/; it must
# print the value the program wrote.
check_run() {
  local out
  rm -rf "$2/data" && mkdir "$2/data"
  out=$(cd "$2" && "./$1" 2>&1) || fail "$1 failed: $out"
  [ "$out" = "${want}dark" ] || fail "$1 printed '$out', want '${want}dark'"
  echo "$1: $out"
}
# no_lib NAME DIR LIB...: DIR/NAME links none of LIB dynamically.  ldd's
# output is captured first: with pipefail, `ldd | grep -q` fails at random
# when grep exits before ldd has written everything (SIGPIPE).
no_lib() {
  local libs name=$1 dir=$2
  shift 2
  libs=$(ldd "$dir/$name" 2>&1 || true)
  for l in "$@"; do
    if grep -q "$l" <<<"$libs"; then fail "$name links $l dynamically"; fi
  done
}
has_lib() {
  local libs
  libs=$(ldd "$2/$1")
  grep -q "$3 => $prefix/" <<<"$libs" || fail "$1 does not load $3 from the prefix: $libs"
}

# 1 and 2: pkg-config, the README's commands for a prefix of one's own.
mkdir "$tmp/pc" && cp "$tmp/app.c" "$tmp/pc/"
(
  cd "$tmp/pc"
  eval "$pc_path"
  # The /usr/local line without the run path: builds, but cannot start
  # until the loader knows the directory (ldconfig there).
  eval "$cc_shared"
  if ./app >/dev/null 2>&1; then fail "a program without the run path started"; fi
  eval "$cc_rpath"
  eval "$cc_static"
)
check_run app "$tmp/pc"
has_lib app "$tmp/pc" libsoftadastra.so.0
check_run app-static "$tmp/pc"
no_lib app-static "$tmp/pc" libsoftadastra liblmdb

# 3: CMake's find_package, shared and static targets.
mkdir "$tmp/cm" && cp "$tmp/app.c" "$tmp/cm/"
cat >"$tmp/cm/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.25)
project(app C)
$cm_find
add_executable(app app.c)
$cm_link
add_executable(app-static app.c)
target_link_libraries(app-static PRIVATE softadastra::softadastra_static)
EOF
cmake -S "$tmp/cm" -B "$tmp/cm/build" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF >"$tmp/cm.log" 2>&1 ||
  { cat "$tmp/cm.log"; fail "cmake could not configure a find_package(softadastra) project"; }
grep -q "^softadastra_DIR:PATH=$prefix/" "$tmp/cm/build/CMakeCache.txt" ||
  fail "find_package(softadastra) found another install: $(grep softadastra_DIR "$tmp/cm/build/CMakeCache.txt")"
cmake --build "$tmp/cm/build" >>"$tmp/cm.log" 2>&1 ||
  { cat "$tmp/cm.log"; fail "the find_package(softadastra) project does not build"; }
check_run app "$tmp/cm/build"
has_lib app "$tmp/cm/build" libsoftadastra.so.0
check_run app-static "$tmp/cm/build"
no_lib app-static "$tmp/cm/build" libsoftadastra
echo "install check passed"
