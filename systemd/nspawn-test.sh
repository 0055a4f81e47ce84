#!/usr/bin/env bash
# Installs roverd's .deb in a throwaway Debian container that boots a real systemd
# (systemd-nspawn), and checks what a robot owner relies on: the package creates the user
# and starts the service; Type=notify readiness; the page answers; the hardening is in
# force; the journal gets priority and module; a hung video source trips the watchdog and
# systemd restarts roverd; stop, remove and purge are clean.
#
#   systemd/nspawn-test.sh          package the native target/debug/roverd and test that
#   systemd/nspawn-test.sh DEB      test that amd64 package
#
# The watchdog check uses a test hook (ROVERD_TEST_STALL_VIDEO_AFTER_FRAMES) that only a
# build with the test-support feature has: `cargo build --features test-support`.
#
# Needs root and a kernel that lets systemd-nspawn boot a container. Installs debootstrap
# and systemd-container if missing; the Debian root is made once (about 2 minutes, 250 MB)
# in target/nspawn/root and each run boots a throwaway copy of it (--ephemeral).
# Not part of scripts/test.sh: it downloads a Debian system and needs a privileged host.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'nspawn-test: %s\n' "$*"; }
fail() { printf 'nspawn-test: FAILED: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "run as root (sudo)"

missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

root="$PWD/target/nspawn/root"
# The container has no network (--private-network), so apt inside it cannot fetch the
# package's dependencies: the root is made with them. Change the list, and the stamp
# makes the root anew.
include=systemd,systemd-sysv,dbus,adduser,libstdc++6,libasound2
if [ ! -x "$root/lib/systemd/systemd" ] || [ "$(cat "$root.include" 2>/dev/null)" != "$include" ]; then
  say "making a minimal Debian bookworm with systemd in $root (once)"
  rm -rf "$root" "$root.partial"
  mkdir -p "$(dirname "$root")"
  debootstrap --variant=minbase --include="$include" \
    bookworm "$root.partial" http://deb.debian.org/debian >/dev/null
  mv "$root.partial" "$root"
  echo "$include" >"$root.include"
fi

tmp=$(mktemp -d)
nspawn_pid=""
cleanup() {
  [ -n "$nspawn_pid" ] && kill "$nspawn_pid" 2>/dev/null && wait "$nspawn_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

if [ $# -ge 1 ]; then
  cp "$1" "$tmp/"
else
  [ -x target/debug/roverd ] || fail "build roverd first (cargo build --features test-support)"
  mkdir -p "$tmp/target/release"
  strip -o "$tmp/target/release/roverd" target/debug/roverd
  CARGO_TARGET_DIR="$tmp/target" cargo deb --no-build --no-strip --fast --quiet -o "$tmp/" >/dev/null
  rm -rf "$tmp/target"
fi

say "booting the container"
systemd-nspawn --quiet -D "$root" --ephemeral --register=no --keep-unit --private-network \
  --console=passive --bind-ro="$tmp:/mnt" -b >"$tmp/console.log" 2>&1 &
nspawn_pid=$!
init=""
for _ in $(seq 1 100); do
  init=$(pgrep -P "$nspawn_pid" -x systemd || true)
  [ -n "$init" ] && break
  sleep 0.1
done
[ -n "$init" ] || fail "the container did not boot: $(cat "$tmp/console.log")"
box() { nsenter -t "$init" -a "$@"; }
# Wait until the container's systemd has finished booting.
for _ in $(seq 1 100); do
  state=$(box systemctl is-system-running 2>/dev/null || true)
  case "$state" in running | degraded) break ;; esac
  sleep 0.2
done

say "sudo apt install ./roverd_*.deb"
box sh -c 'cd /mnt && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ./roverd_*.deb' >"$tmp/apt.log" 2>&1 \
  || fail "install: $(cat "$tmp/apt.log")"
box systemctl is-enabled -q roverd || fail "roverd is not enabled"
box systemctl is-active -q roverd || fail "roverd is not running: $(box systemctl status roverd --no-pager)"
status=$(box systemctl show roverd -p StatusText --value)
[[ "$status" == "serving on http://"* ]] || fail "no READY=1/STATUS from roverd: '$status'"
box id roverd | grep -q video || fail "roverd is not in the video group: $(box id roverd)"
perm=$(box stat -c '%a %U:%G' /etc/roverd/roverd.toml)
[ "$perm" = "640 root:roverd" ] || fail "/etc/roverd/roverd.toml is $perm"
say "installed, enabled, running as roverd, ready: $status"

http() {
  box bash -c "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET $1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3 && head -n 1 <&3"
}
http /healthz | grep -q "200 OK" || fail "/healthz: $(http /healthz)"

main_pid=$(box systemctl show roverd -p MainPID --value)
proc=$(box cat "/proc/$main_pid/status")
grep -q '^NoNewPrivs:[[:space:]]1' <<<"$proc" || fail "NoNewPrivs is not set"
grep -q '^Seccomp:[[:space:]]2' <<<"$proc" || fail "no seccomp filter"
grep -q '^CapEff:[[:space:]]0000000000000000' <<<"$proc" || fail "roverd has capabilities"
say "the page answers under the hardening (seccomp, no capabilities, no new privileges)"

fields=$(box journalctl -u roverd SYSLOG_IDENTIFIER=roverd -o verbose --no-pager)
grep -q '^ *TARGET=roverd::server$' <<<"$fields" || fail "no TARGET field in the journal"
grep -q '^ *PRIORITY=5$' <<<"$fields" || fail "no PRIORITY field in the journal"
say "journal records carry PRIORITY and TARGET"

say "a hung video source: systemd's watchdog restarts roverd"
box mkdir -p /etc/systemd/system/roverd.service.d
box sh -c 'printf "[Service]\nEnvironment=ROVERD_TEST_STALL_VIDEO_AFTER_FRAMES=30\nWatchdogSec=2s\n" \
  >/etc/systemd/system/roverd.service.d/stall.conf'
box systemctl daemon-reload
box systemctl restart roverd
for _ in $(seq 1 150); do
  [ "$(box systemctl show roverd -p NRestarts --value)" -ge 1 ] && break
  sleep 0.2
done
[ "$(box systemctl show roverd -p NRestarts --value)" -ge 1 ] || fail "no restart after the stall"
box journalctl -u roverd --no-pager | grep -q "Watchdog timeout" || fail "the restart was not the watchdog's"
box rm -r /etc/systemd/system/roverd.service.d
box systemctl daemon-reload
box systemctl restart roverd
say "watchdog timeout, restarted"

box systemctl stop roverd
[ "$(box systemctl show roverd -p Result --value)" = success ] || fail "stop: $(box systemctl show roverd -p Result)"
[ "$(box systemctl show roverd -p ExecMainStatus --value)" = 0 ] || fail "roverd did not exit 0 on stop"
box systemctl start roverd
box sh -c 'DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq roverd' >/dev/null 2>&1 || fail "apt remove"
box systemctl is-active -q roverd && fail "roverd still runs after apt remove"
box test -f /etc/roverd/roverd.toml || fail "apt remove deleted the config"
box sh -c 'DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq roverd' >/dev/null 2>&1 || fail "apt purge"
box test -e /etc/roverd && fail "apt purge left /etc/roverd"
say "stop exits 0; remove stops it and keeps the config; purge removes the config"

box systemctl poweroff >/dev/null 2>&1 || true
wait "$nspawn_pid" 2>/dev/null || true
nspawn_pid=""
say "all passed"
