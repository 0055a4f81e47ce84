#!/usr/bin/env bash
# Sets up and runs every test roverd has: formatting, lints, unit and integration tests
# (real WebRTC peers on 127.0.0.1), the systemd unit and .deb (in a booted Debian container,
# which needs root: sudo), and the headless-Chromium tests of the page.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n== %s\n' "$*"; }
step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
step "cargo test"
cargo test --locked
step "systemd unit (systemd-analyze verify, security) and .deb"
systemd/check.sh
step "the .deb in a booted Debian container (systemd-nspawn): service, watchdog, motors off after a kill"
# Root for systemd-nspawn; sudo keeps PATH so that the script finds cargo-deb.
if [ "$(id -u)" -eq 0 ]; then systemd/nspawn-test.sh; else sudo env "PATH=$PATH" systemd/nspawn-test.sh; fi
step "browser tests (headless Chromium)"
ROVERD_BIN="$PWD/target/debug/roverd" node --test tests/browser/
