#!/usr/bin/env bash
# Checks a roverd .deb: architecture, files, conffile, maintainer scripts, binary's machine.
#   systemd/check-deb.sh DEB ARCH   check a built package (cross/build.sh runs this)
#   systemd/check-deb.sh            package the native target/debug/roverd (stripped, so it
#                                   takes seconds) with cargo-deb, and check that
set -euo pipefail
cd "$(dirname "$0")/.."

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "check-deb: $*" >&2; exit 1; }

if [ $# -eq 0 ]; then
  [ -x target/debug/roverd ] || fail "build roverd first (cargo build)"
  command -v cargo-deb >/dev/null || fail "cargo-deb is missing: cargo install --locked cargo-deb"
  # cargo-deb packages <target dir>/release/roverd: give it a stripped copy of the debug
  # build instead of spending minutes on a release build.
  mkdir -p "$tmp/target/release"
  strip -o "$tmp/target/release/roverd" target/debug/roverd
  CARGO_TARGET_DIR="$tmp/target" cargo deb --no-build --no-strip --fast --quiet -o "$tmp/" >/dev/null
  deb=$(ls "$tmp"/roverd_*.deb)
  arch=$(dpkg --print-architecture)
else
  deb=$1 arch=${2:?usage: systemd/check-deb.sh DEB ARCH}
fi

field() { dpkg-deb --field "$deb" "$1"; }
[ "$(field Package)" = roverd ] || fail "Package is $(field Package)"
[ "$(field Architecture)" = "$arch" ] || fail "Architecture is $(field Architecture), not $arch"
field Depends | grep -q adduser || fail "Depends lacks adduser: $(field Depends)"

contents=$(dpkg-deb --contents "$deb")
for f in ./usr/bin/roverd ./usr/lib/systemd/system/roverd.service ./etc/roverd/roverd.toml \
         ./usr/share/doc/roverd/README.md; do
  echo "$contents" | grep -q " $f\$" || fail "$f is not in the package:"$'\n'"$contents"
done
echo "$contents" | grep -q '^-rwxr-xr-x .* ./usr/bin/roverd$' || fail "/usr/bin/roverd is not 0755"

dpkg-deb --control "$deb" "$tmp/control"
[ "$(cat "$tmp/control/conffiles")" = /etc/roverd/roverd.toml ] \
  || fail "conffiles: $(cat "$tmp/control/conffiles")"
for s in postinst prerm postrm; do
  [ -x "$tmp/control/$s" ] || fail "no executable $s"
  sh -n "$tmp/control/$s" || fail "$s is not valid sh"
done
# postinst: the user before the service starts; then enable and start.
user_line=$(grep -n 'adduser --system' "$tmp/control/postinst" | head -n1 | cut -d: -f1)
enable_line=$(grep -n 'deb-systemd-helper enable roverd.service' "$tmp/control/postinst" | cut -d: -f1)
start_line=$(grep -n 'deb-systemd-invoke $_dh_action roverd.service' "$tmp/control/postinst" | cut -d: -f1)
[ -n "$user_line" ] && [ -n "$enable_line" ] && [ -n "$start_line" ] \
  || fail "postinst does not create the user, enable and start roverd"
[ "$user_line" -lt "$enable_line" ] || fail "postinst enables roverd before creating its user"
grep -q 'deb-systemd-invoke stop roverd.service' "$tmp/control/prerm" || fail "prerm does not stop roverd"
grep -q 'deb-systemd-helper purge roverd.service' "$tmp/control/postrm" || fail "postrm does not purge the unit"
[ "$(grep -c 'Automatically added by cargo-deb' "$tmp/control/postinst")" -eq 2 ] \
  || fail "postinst has its systemd part more or less than once (a stray #DEBHELPER# marker?)"

# The binary is for the package's machine (ELF e_machine at byte 18).
dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/bin/roverd >"$tmp/roverd"
machine=$(od -An -tu2 -j18 -N2 "$tmp/roverd" | tr -d ' ')
case "$arch:$machine" in
  amd64:62 | arm64:183 | armhf:40) ;;
  *) fail "the binary's ELF machine is $machine, not $arch's" ;;
esac

echo "check-deb: $(basename "$deb") ($arch, $(du -h "$deb" | cut -f1)): files, conffile, scripts ok"
