#!/usr/bin/env bash
# On demand (not in CI: it makes a release build): builds the package with scripts/package,
# checks SHA256SUMS, installs the .deb into an empty root with its own dpkg database, runs
# the installed binary, purges it, and fails if any file is left behind.
#
#   scripts/testing/package-test.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(mktemp -d)
root=$(mktemp -d)
trap 'rm -rf "$out" "$root"' EXIT
scripts/package "$out"
(cd "$out" && sha256sum -c SHA256SUMS)
deb=$(ls "$out"/airlock_*.deb)
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
touch "$root/var/lib/dpkg/status"
# The empty root has no libraries: dependencies are the host's to satisfy, not checked here.
# AppArmor 4's abi in the root: the package puts its profile in /etc/apparmor.d (and purges it).
mkdir -p "$root/etc/apparmor.d/abi" && touch "$root/etc/apparmor.d/abi/4.0"
dpkg --root="$root" --force-depends --force-script-chrootless --log=/dev/null -i "$deb"
"$root/usr/bin/airlock" --version
test -f "$root/etc/airlock/policy" && test -f "$root/usr/lib/systemd/system/airlock-gateway@.service"
test -f "$root/usr/share/airlock/apparmor/airlock" && grep -q '^  userns,$' "$root/etc/apparmor.d/airlock"
dpkg --root="$root" --force-script-chrootless --log=/dev/null --purge airlock
if [ -e "$root/etc/apparmor.d/airlock" ]; then echo "package-test: the AppArmor profile is left after purge" >&2; exit 1; fi
rm -r "$root/etc/apparmor.d"
rmdir "$root/etc" 2>/dev/null || true   # made above for the abi; anything left in it is reported below
left=$(find "$root" -mindepth 1 -not -path "$root/var*" | head)
if [ -n "$left" ]; then echo "package-test: left after purge:" >&2; echo "$left" >&2; exit 1; fi
echo "package-test: installed, ran and purged cleanly"
