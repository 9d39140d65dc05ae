#!/usr/bin/env bash
# The README's two commands on a freshly debootstrapped Debian, as a new user runs them.
#
#   scripts/testing/fresh-root.sh [--keep] [DIR]      (root; default DIR /var/tmp/airlock-fresh-root)
#
# --keep keeps the clone (and its build) after a run, and a later --keep run brings it to
# HEAD instead of cloning anew: quicker, and no longer a first build.
#
# Makes a minbase bookworm root in DIR (debootstrap, from the machine's Debian mirror), adds
# only what Swift itself needs (swift.org's list for Debian 12) and the Swift toolchain this
# machine has (bind-mounted read-only at the same path, like an install in /opt/swift), clones
# this repository's HEAD into /root/airlock there (mode 0700, as on Debian), makes it the
# root of a private mount namespace (pivot_root: a chroot would be refused user namespaces),
# and runs, as root with sudo's PATH (no Swift on it):
#
#     cd /root/airlock && scripts/demo && scripts/test
#
# exactly as the README says. airlock's own packages are installed by those commands, not
# here. Run on demand, not in CI: it needs the Debian mirror, about 3 GB in DIR, and 40 to 60
# minutes on 2 cores (a full build from nothing and the whole test suite).
#
# The root runs in a private mount namespace: its /proc, /sys, /dev, /run and /tmp are mounted
# there and vanish with it; nothing is mounted on the host. Swift packages come from the
# machine's local mirror (/opt/swift-packages, which the machine's /etc/gitconfig names in
# place of https://github.com/), bind-mounted read-only with the same rewrite, since there is
# no other way to GitHub here; the machine's trusted CAs for its egress and /etc/pip.conf are
# copied in, for PyPI. The root is kept between runs (debootstrap is skipped when DIR
# has one); the clone is made anew each run unless --keep. Exit status: the commands'.
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
keep=false
if [ "${1:-}" = "--keep" ]; then keep=true; shift; fi
dir="${1:-/var/tmp/airlock-fresh-root}"
suite=bookworm
log() { echo "fresh-root: $*" >&2; }

[ "$(id -u)" = 0 ] || { log "run as root (debootstrap, chroot and mounts need it)"; exit 2; }
. "$here/scripts/lib/swift.sh"
airlock_find_swift || exit 2
toolchain="$(cd "$(dirname "$(readlink -f "$(command -v swift)")")/../.." && pwd)"
command -v debootstrap >/dev/null || { log "installing debootstrap"; apt-get install -y -qq debootstrap >/dev/null; }
# The machine's own mirror (deb822 or one-line sources).
mirror="$(sed -n 's/^URIs: *\([^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)"
[ -n "$mirror" ] || mirror="$(awk '$1 == "deb" && $2 ~ /debian$/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)"
mirror="${mirror:-http://deb.debian.org/debian}"

if [ ! -e "$dir/etc/debian_version" ]; then
  log "debootstrap --variant=minbase $suite $dir $mirror"
  mkdir -p "$dir"
  debootstrap --variant=minbase "$suite" "$dir" "$mirror" >"$dir.debootstrap.log" 2>&1 \
    || { log "debootstrap failed; see $dir.debootstrap.log"; exit 1; }
fi
cp /etc/resolv.conf "$dir/etc/resolv.conf"

# Everything inside runs in one private mount namespace.
inner=$(cat <<'INNER'
set -euo pipefail
dir="$1"; toolchain="$2"; here="$3"; keep="$4"
mount --make-rprivate /
# The root is a mount point, as on a booted system (tools that change mount propagation,
# such as scripts/in-throwaway-ns, need one).
mount --bind "$dir" "$dir"
mount -t proc proc "$dir/proc"
mount --rbind /sys "$dir/sys"
mount --rbind /dev "$dir/dev"
mount -t tmpfs -o mode=0755 tmpfs "$dir/run"
mount -t tmpfs -o mode=1777 tmpfs "$dir/tmp"
mkdir -p "$dir$toolchain" "$dir/opt/swift-packages"
mount --bind -o ro "$toolchain" "$dir$toolchain"
mount --bind -o ro /opt/swift-packages "$dir/opt/swift-packages"
in_root() { chroot "$dir" /usr/bin/env -i HOME=/root TERM="${TERM:-dumb}" LANG=C.UTF-8 \
              PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
# What Swift itself needs on Debian 12 (swift.org), nothing of airlock's.
in_root sh -c 'export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq --no-install-recommends \
    binutils binutils-gold ca-certificates gcc git gnupg2 libc6-dev libcurl4-openssl-dev libedit2 libgcc-12-dev \
    libncurses-dev libpython3-dev libsqlite3-0 libstdc++-12-dev libxml2-dev libz3-dev pkg-config tzdata unzip zlib1g-dev >/dev/null'
# The local package mirror stands in for GitHub, as on the machine itself.
in_root git config --system 'url./opt/swift-packages/.insteadOf' https://github.com/
# The machine's own network settings: the CAs it trusts for its egress (PyPI is reached
# through it) and its pip configuration. A fresh install on this machine would have them.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  mkdir -p "$dir/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$dir/usr/local/share/ca-certificates/"
  in_root update-ca-certificates >/dev/null 2>&1
fi
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$dir/etc/pip.conf"
chmod 0700 "$dir/root"
if [ "$keep" = true ] && [ -d "$dir/root/airlock/.git" ]; then
  # --keep: the clone of an earlier run is brought to HEAD, its build kept.
  git -C "$dir/root/airlock" fetch -q "$here" HEAD
  git -C "$dir/root/airlock" reset -q --hard FETCH_HEAD
else
  rm -rf "$dir/root/airlock"
  git clone -q "$here" "$dir/root/airlock"
fi
# What Debian's installer writes and debootstrap does not.
[ -e "$dir/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$dir/etc/hosts"
[ -e "$dir/etc/hostname" ] || echo fresh-root >"$dir/etc/hostname"
echo "fresh-root: inside: cd /root/airlock && scripts/demo && scripts/test (PATH without Swift, as under sudo)" >&2
# The root becomes the mount namespace's root (pivot_root), not a chroot: the kernel refuses
# user namespaces to a chrooted process, and a booted machine is not one.
cd "$dir"
mkdir -p .old-root
pivot_root . .old-root
umount -l /.old-root
rmdir /.old-root
exec /usr/bin/env -i HOME=/root TERM="${TERM:-dumb}" LANG=C.UTF-8 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    sh -c 'cd /root/airlock && scripts/demo && CI=true scripts/test'
INNER
)
status=0
unshare --mount --propagation private bash -c "$inner" inner "$dir" "$toolchain" "$here" "$keep" || status=$?
if [ "$status" = 0 ]; then log "both README commands passed"; else log "failed with status $status"; fi
if ! $keep && [ "$status" = 0 ]; then rm -rf "$dir/root/airlock"; fi
exit "$status"
