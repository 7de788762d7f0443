#!/usr/bin/env bash
# Installs the project into a temporary prefix and builds a small program
# against it the way an application would: with pkg-config, linked
# dynamically and then statically.  Both programs must run and print the
# value they wrote.   usage: check_install.sh BUILD_DIR
set -euo pipefail
build=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
[ -f "$tmp/prefix/include/softadastra.h" ] || { echo "missing after install: softadastra.h"; exit 1; }
pc=$(find "$tmp/prefix" -name softadastra.pc | head -1)
[ -n "$pc" ] || { echo "missing after install: softadastra.pc"; exit 1; }
libdir=$(dirname "$(dirname "$pc")")
ls "$libdir/libsoftadastra.a" "$libdir/libsoftadastra.so" >/dev/null
cat >"$tmp/app.c" <<'APP'
#include <softadastra.h>
#include <stdio.h>
int main(void) {
  sa_options o = sa_options_persistent("node-app", "data/node-app.wal");
  sa_client *c;
  sa_error e;
  sa_value v;
  if (sa_client_open(&c, &o, &e) || sa_client_put(c, "app/k", "installed", &e) ||
      sa_client_get(c, "app/k", &v, &e)) {
    fprintf(stderr, "%s\n", e.message);
    return 1;
  }
  printf("%s %s\n", sa_version(), v.data);
  sa_value_free(&v);
  sa_client_close(c);
  return 0;
}
APP
export PKG_CONFIG_PATH="$libdir/pkgconfig"
cd "$tmp" && mkdir data
cc app.c $(pkg-config --cflags --libs softadastra) -Wl,-rpath,"$libdir" -o app-dyn
cc app.c $(pkg-config --cflags softadastra) -static-libgcc \
   -Wl,-Bstatic $(pkg-config --static --libs-only-l softadastra | sed 's/-lpthread//') -Wl,-Bdynamic \
   $(pkg-config --static --libs-only-L softadastra) -lpthread -o app-static
# ldd's output is captured first: with pipefail, `ldd | grep -q` fails at
# random when grep exits before ldd has written everything (SIGPIPE).
dyn_libs=$(ldd app-dyn); static_libs=$(ldd app-static 2>&1 || true)
grep -q libsoftadastra <<<"$dyn_libs" || { echo "app-dyn does not link libsoftadastra.so"; exit 1; }
if grep -q -e libsoftadastra -e liblmdb <<<"$static_libs"; then
  echo "app-static still links a shared libsoftadastra or liblmdb"; exit 1
fi
out1=$(./app-dyn); out2=$(./app-static)
echo "dynamic: $out1"; echo "static:  $out2"
[ "$out1" = "0.1.0 installed" ] && [ "$out2" = "0.1.0 installed" ]
echo "install check passed"
