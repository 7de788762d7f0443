#!/usr/bin/env bash
# Makes a Debian bookworm base image locally, for machines that cannot pull
# debian:bookworm-slim from a registry but can reach a Debian mirror:
#
#   debootstrap --variant=minbase bookworm  ->  trimmed like the "slim" images
#   ->  tar | docker import  ->  image NAME (default softadastra-base:bookworm)
#
# Usage: docker/make-base-image.sh [NAME]
#   MIRROR=http://deb.debian.org/debian   Debian mirror (env)
#   SECURITY_MIRROR=http://deb.debian.org/debian-security
#
# Then: docker build --network=host --build-arg BASE_IMAGE=NAME -f docker/Dockerfile .
# Needs root (debootstrap), debootstrap and a running Docker daemon.  Does
# nothing when NAME already exists (delete it with `docker rmi NAME` to remake).
set -euo pipefail

name="${1:-softadastra-base:bookworm}"
mirror="${MIRROR:-http://deb.debian.org/debian}"
security_mirror="${SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

if docker image inspect "$name" >/dev/null 2>&1; then
  echo "make-base-image: $name already exists"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "make-base-image: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "make-base-image: debootstrap needs root" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/sa-base.XXXXXX")"
cleanup() {
  # An interrupted debootstrap can leave /proc or /sys mounted in the tree.
  awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null; done
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

root="$work/rootfs"
echo "make-base-image: debootstrap --variant=minbase bookworm from $mirror (log: $work/debootstrap.log)"
if ! debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
  tail -n 30 "$work/debootstrap.log" >&2
  echo "make-base-image: debootstrap failed" >&2
  exit 1
fi

# The same sources as the official image: updates and security too.
cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security_mirror bookworm-security main
EOF

# Trim like debian:bookworm-slim: no docs, man pages or translations, now and
# for every package installed later; apt keeps no caches in image layers.
cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
cat >"$root/etc/apt/apt.conf.d/docker-no-languages" <<'EOF'
Acquire::Languages "none";
EOF
find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
rm -rf "$root"/usr/share/man/* "$root"/usr/share/groff/* "$root"/usr/share/info/* \
       "$root"/usr/share/lintian/* "$root"/usr/share/linda/*
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
       "$root"/var/lib/apt/lists/* "$root"/var/log/*.log "$root"/var/log/apt/* \
       "$root"/tmp/* "$root"/var/tmp/*
# The container runtime provides these.
: >"$root/etc/resolv.conf"
: >"$root/etc/hostname"

echo "make-base-image: importing as $name ($(du -sh "$root" | cut -f1))"
tar --numeric-owner --xattrs -C "$root" -c . |
  docker import --change 'CMD ["bash"]' --message "debootstrap minbase bookworm, trimmed" - "$name" >/dev/null
echo "make-base-image: made $name"
