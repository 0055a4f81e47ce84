#!/usr/bin/env bash
# Cross-builds roverd for a Raspberry Pi on an x86_64 Debian (or Ubuntu) desktop, without
# Docker: Debian's cross gcc, multiarch -dev packages, and cargo-deb.
#
#   cross/build.sh aarch64          Raspberry Pi OS 64-bit (Pi 3B+, 4, 5, Zero 2 W)
#   cross/build.sh armv7            Raspberry Pi OS 32-bit (same boards; not ARMv6 Pi Zero/1)
#   cross/build.sh aarch64 --test   also runs the library's unit tests under qemu-user;
#                                   arguments after --test go to the test binary, e.g.
#                                   `--test --skip control::` or `--test config::`
#
# Only the library's unit tests run under qemu: the integration tests in tests/ start the
# roverd binary, which qemu-user can run only with binfmt_misc set up for the target.
# It installs whatever is missing (apt packages, the Rust target, cargo-deb), builds the
# release binary and the .deb, and prints where they are:
#   target/cross/<triple>/release/roverd
#   target/cross/<triple>/debian/roverd_<version>-1_<arm64|armhf>.deb
# Builds go to target/cross so that they never invalidate the native build in target/.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: cross/build.sh aarch64|armv7 [--test [TEST ARGUMENTS...]]" >&2
  exit 2
}
[ $# -ge 1 ] || usage
run_tests=false
case "${2:-}" in
  "") ;;
  --test) run_tests=true ;;
  *) usage ;;
esac
target_arg=$1
shift $(($# >= 2 ? 2 : 1))   # what remains goes to the test binary

case "$target_arg" in
  aarch64 | arm64 | aarch64-unknown-linux-gnu)
    triple=aarch64-unknown-linux-gnu deb_arch=arm64 gnu=aarch64-linux-gnu qemu=qemu-aarch64-static ;;
  armv7 | armhf | armv7-unknown-linux-gnueabihf)
    triple=armv7-unknown-linux-gnueabihf deb_arch=armhf gnu=arm-linux-gnueabihf qemu=qemu-arm-static ;;
  *) usage ;;
esac
TRIPLE_ENV=$(echo "$triple" | tr 'a-z-' 'A-Z_')   # AARCH64_UNKNOWN_LINUX_GNU
triple_env=${triple//-/_}                          # aarch64_unknown_linux_gnu

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
say() { printf 'cross: %s\n' "$*"; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# A mirror in the middle of a sync fails part of an update now and then: try again, then
# go on with what was fetched (the install below says clearly if a package is missing).
apt_update() {
  for attempt in 1 2 3; do
    $sudo apt-get update -qq && return 0
    [ "$attempt" -lt 3 ] && { say "apt-get update failed; trying again in 10 s"; sleep 10; }
  done
  say "apt-get update failed 3 times; going on with the package lists it could fetch"
}

# --- Host packages: what a native build needs (cmake, nasm, ...), then the cross toolchain.
scripts/deps.sh build

if ! dpkg --print-foreign-architectures | grep -qx "$deb_arch"; then
  # One architecture at a time, each followed by its own update: adding two and
  # updating once has left apt with half-known package lists.
  say "adding the $deb_arch architecture to dpkg"
  $sudo dpkg --add-architecture "$deb_arch"
  apt_update
fi
# The cross compilers, and the target's ALSA headers (audio capture links libasound);
# libstdc++6 of the target for running the tests under qemu (openh264 is C++).
packages=("gcc-$gnu" "g++-$gnu" "libasound2-dev:$deb_arch" "libstdc++6:$deb_arch")
$run_tests && packages+=(qemu-user-static)
missing=()
for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]}"
  apt_update
  # Multiarch needs the amd64 and target versions of shared libraries to match: apt may
  # upgrade a few amd64 libraries to do so.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- Rust side: the target's standard library and cargo-deb.
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
if ! rustup target list --installed | grep -qx "$triple"; then
  say "adding the Rust target $triple"
  rustup target add "$triple"
fi
if ! cargo deb --version >/dev/null 2>&1; then
  say "installing cargo-deb (from crates.io)"
  cargo install --locked cargo-deb
fi

# --- The environment of a cross build. Set here rather than in a .cargo/config.toml so
# that native builds in this tree never see any of it.
export CARGO_TARGET_DIR="$PWD/target/cross"
export "CARGO_TARGET_${TRIPLE_ENV}_LINKER=$gnu-gcc"
export "CARGO_TARGET_${TRIPLE_ENV}_RUNNER=$qemu"
export "CC_${triple_env}=$gnu-gcc" "CXX_${triple_env}=$gnu-g++" "AR_${triple_env}=$gnu-ar"
# pkg-config must find the target's .pc files (libasound), never the host's.
export PKG_CONFIG_ALLOW_CROSS=1
export "PKG_CONFIG_LIBDIR_${triple_env}=/usr/lib/$gnu/pkgconfig:/usr/share/pkgconfig"
if [ "$deb_arch" = armhf ]; then
  # libopus's NEON code does not build for armv7 with the compiler's default FPU.
  export "CFLAGS_${triple_env}=-mfpu=neon-vfpv4" "CXXFLAGS_${triple_env}=-mfpu=neon-vfpv4"
fi

jobs=()
[ -n "${CARGO_BUILD_JOBS:-}" ] && jobs=(--jobs "$CARGO_BUILD_JOBS")

say "building roverd for $triple (release; the first build takes several minutes)"
start=$(date +%s)
# cargo-deb runs `cargo build --release --target ...` itself, then packages the binary
# (stripped with the target's strip) with the unit, the config and the maintainer scripts.
mkdir -p "target/cross/$triple/debian"
cargo deb --locked --target "$triple" "${jobs[@]}" -o "target/cross/$triple/debian/" -- --quiet
say "built in $(($(date +%s) - start)) s"

bin="target/cross/$triple/release/roverd"
deb=$(ls -t "target/cross/$triple/debian/"roverd_*_"$deb_arch".deb | head -n 1)  # the newest
say "binary: $bin ($(du -h "$bin" | cut -f1), unstripped)"
say "package: $deb ($(du -h "$deb" | cut -f1))"
systemd/check-deb.sh "$deb" "$deb_arch"

if $run_tests; then
  say "running the library's unit tests under $qemu"
  # No QEMU_LD_PREFIX: the multiarch loader and libraries are where qemu looks by default,
  # and pointing it at /usr/$gnu makes the tests hang.
  unset QEMU_LD_PREFIX
  start=$(date +%s)
  cargo test --locked --target "$triple" "${jobs[@]}" --lib -- "$@"
  say "tests built and ran in $(($(date +%s) - start)) s"
fi
