#!/usr/bin/env bash
# Installs what roverd needs on Debian or Raspberry Pi OS, and only what is missing.
#   scripts/deps.sh build   the packages to build roverd
#   scripts/deps.sh test    the above, plus what the tests use (Chromium, Node packages)
set -euo pipefail
cd "$(dirname "$0")/.."

want=${1:-build}
# Build: openh264's C++ and libopus's CMake build; nasm gives openh264 its x86 assembly;
# libclang-dev for the bindgen step of the V4L2 bindings (the camera); ALSA's headers
# for microphone capture (cpal). The microphone tests need nothing more: their capture
# device is ALSA's file plugin, part of libasound itself.
packages=(build-essential cmake pkg-config nasm libclang-dev libasound2-dev)
if [ "$want" = test ]; then
  # Browser tests drive Debian's Chromium through Node; systemd-analyze checks the unit.
  # python3-venv: tests/rtcbot.rs makes a venv for RTCBot (the Python client it connects).
  # debootstrap and systemd-container: systemd/nspawn-test.sh boots the .deb in a container.
  packages+=(chromium nodejs npm systemd python3-venv debootstrap systemd-container)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# A Node.js from elsewhere (nvm, NodeSource) is as good as Debian's.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
read -r -a missing <<<"${missing[*]:-}"

if [ "${#missing[@]}" -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # A mirror mid-sync can fail one index (often a foreign architecture's): go on, and let
  # the install say if a package really is missing.
  $sudo apt-get update -qq || echo "deps: apt-get update reported errors; trying the install anyway"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "deps: system packages present"
fi

[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null; then
  echo "deps: Rust is not installed. Install it with rustup (https://rustup.rs), then run this again." >&2
  exit 1
fi

if [ "$want" = test ]; then
  if ! command -v cargo-deb >/dev/null; then
    echo "deps: installing cargo-deb (systemd/check.sh packages a .deb)"
    cargo install --locked --quiet cargo-deb
  fi
  if [ ! -d tests/browser/node_modules/playwright-core ]; then
    echo "deps: installing the browser tests' Node packages"
    npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
  fi
fi
