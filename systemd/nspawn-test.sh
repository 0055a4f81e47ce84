#!/usr/bin/env bash
# Installs roverd's .deb in a throwaway Debian container that boots a real systemd
# (systemd-nspawn), and checks what a robot owner relies on: the package creates the user
# and starts the service; Type=notify readiness; the page answers; the hardening is in
# force; the journal gets priority and module; motors that were driving are stopped by the
# unit's ExecStopPost= (roverd motors-off) when roverd is killed (SIGKILL) and when a hung
# video source trips the watchdog, and systemd restarts roverd; stop, remove and purge are
# clean. scripts/test.sh runs it after systemd/check.sh.
#
#   systemd/nspawn-test.sh          package the native target/debug/roverd and test that
#   systemd/nspawn-test.sh DEB      test that amd64 package
#
# The motors are the sim backend with motors.sim_file, a file that keeps the last speeds
# after roverd dies, as GPIO levels do. Two test hooks that only a build with the
# test-support feature has (`cargo test` builds target/debug/roverd with it) make roverd
# drive and hang: ROVERD_TEST_DRIVE (a pretend peer repeats a drive every 50 ms) and
# ROVERD_TEST_STALL_VIDEO_AFTER_FRAMES (the video source hangs).
#
# Needs root and a kernel that lets systemd-nspawn boot a container. Installs debootstrap
# and systemd-container if missing; the Debian root is made once (about 2 minutes, 250 MB,
# downloaded from deb.debian.org) in target/nspawn/root and each run boots a throwaway copy
# of it (--ephemeral). Delete target/nspawn to make it anew. A run takes about a minute.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'nspawn-test: %s\n' "$*"; }
fail() { printf 'nspawn-test: FAILED: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "run as root (sudo)"

missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]}"
  apt-get update -qq || say "apt-get update reported errors; trying the install anyway"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    || fail "could not install ${missing[*]}"
fi

root="$PWD/target/nspawn/root"
# The container has no network (--private-network), so apt inside it cannot fetch the
# package's dependencies: the root is made with them. Change the list, and the stamp
# makes the root anew.
include=systemd,systemd-sysv,dbus,adduser,libstdc++6,libasound2
if [ ! -x "$root/lib/systemd/systemd" ] || [ "$(cat "$root.include" 2>/dev/null)" != "$include" ]; then
  say "making a minimal Debian bookworm with systemd in $root (once, a few minutes)"
  rm -rf "$root" "$root.partial" "$root.include"
  mkdir -p "$(dirname "$root")"
  debootstrap --variant=minbase --include="$include" \
    bookworm "$root.partial" http://deb.debian.org/debian >"$root.log" 2>&1 \
    || fail "debootstrap failed (network? see $root.log): $(tail -n 5 "$root.log")"
  mv "$root.partial" "$root"
  echo "$include" >"$root.include"
fi

tmp=$(mktemp -d)
nspawn_pid=""
cleanup() {
  if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
    # SIGTERM asks the container to power off; give it 15 s, then end it.
    kill "$nspawn_pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$nspawn_pid" 2>/dev/null || true
    wait "$nspawn_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ $# -ge 1 ]; then
  cp "$1" "$tmp/"
else
  [ -x target/debug/roverd ] || fail "build roverd first (cargo test builds it with the test hooks)"
  command -v cargo-deb >/dev/null || fail "cargo-deb is missing: cargo install --locked cargo-deb"
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
for _ in $(seq 1 200); do
  init=$(pgrep -P "$nspawn_pid" -x systemd || true)
  [ -n "$init" ] && break
  kill -0 "$nspawn_pid" 2>/dev/null || break
  sleep 0.1
done
[ -n "$init" ] || fail "the container did not boot: $(cat "$tmp/console.log")"
# Every command in the container is bounded: a hung one fails the test instead of hanging it.
box() { timeout 120 nsenter -t "$init" -a "$@"; }
state=""
for _ in $(seq 1 300); do
  state=$(box systemctl is-system-running 2>/dev/null || true)
  case "$state" in running | degraded) break ;; esac
  sleep 0.2
done
case "$state" in running | degraded) ;; *) fail "the container's systemd did not finish booting: '$state'" ;; esac

# Bounded polls. until_true TENTHS_OF_A_SECOND COMMAND...: true once COMMAND is.
until_true() {
  local n=$1; shift
  for _ in $(seq 1 "$n"); do "$@" && return 0; sleep 0.1; done
  "$@"
}

say "sudo apt install ./roverd_*.deb"
box sh -c 'cd /mnt && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ./roverd_*.deb' >"$tmp/apt.log" 2>&1 \
  || fail "install: $(cat "$tmp/apt.log")"
box systemctl is-enabled -q roverd || fail "roverd is not enabled"
until_true 100 box systemctl is-active -q roverd \
  || fail "roverd is not running: $(box systemctl status roverd --no-pager)"
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

# --- Motors that outlive roverd: the sim backend writes its speeds to a file, and only
# the unit's ExecStopPost= (roverd motors-off) can set it to 0 after a kill.
sim=/var/lib/roverd/motors.json
driving='{"left":0.5,"right":0.5}'
stopped='{"left":0.0,"right":0.0}'
box sed -i "s|^# *sim_file = \"[^\"]*\"|sim_file = \"$sim\"|" /etc/roverd/roverd.toml
box grep -q "^sim_file = \"$sim\"" /etc/roverd/roverd.toml \
  || fail "could not set motors.sim_file in /etc/roverd/roverd.toml (is its commented example gone?)"
box grep -q '^driver = "sim"' /etc/roverd/roverd.toml || fail "the packaged config's motors.driver is not \"sim\""
dropin() {
  box mkdir -p /etc/systemd/system/roverd.service.d
  box sh -c "printf '[Service]\n$1' >/etc/systemd/system/roverd.service.d/test.conf"
  box systemctl daemon-reload
  # Each check restarts roverd on purpose: keep them clear of StartLimitBurst.
  box systemctl reset-failed roverd
}
sim_says() { [ "$(box cat "$sim" 2>/dev/null)" = "$1" ]; }
wait_driving() {
  until_true 150 sim_says "$driving" \
    || fail "roverd is not driving $1: $sim says '$(box cat "$sim" 2>&1)'; $(box systemctl status roverd --no-pager -n 20)"
}
# Waits (up to 15 s, polling every 10 ms in the container) until the sim file says 0 and
# prints when it was written, in seconds since the epoch.
stopped_at() {
  box sh -c "for i in \$(seq 1 1500); do
      [ \"\$(cat $sim 2>/dev/null)\" = '$stopped' ] && exec stat -c %.6Y $sim
      sleep 0.01
    done; exit 1"
}
# When systemd logged a line of roverd's unit matching $1 (the last one), in seconds.
logged_at() {
  { box journalctl -u roverd -o short-unix --no-pager | grep -- "$1" || true; } | tail -n 1 | cut -d' ' -f1
}
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%d", (b - a) * 1000 }'; }

say "driving (a pretend peer, ROVERD_TEST_DRIVE=0.5,0.5): SIGKILL, then ExecStopPost= stops the motors"
dropin 'Environment=ROVERD_TEST_DRIVE=0.5,0.5\n'
box systemctl restart roverd
wait_driving "with motors.sim_file and ROVERD_TEST_DRIVE"
killed=$(date +%s.%N)
box systemctl kill -s KILL roverd
off=$(stopped_at) || fail "$sim still says '$(box cat "$sim" 2>&1)' 15 s after SIGKILL: ExecStopPost= did not stop the motors"
noticed=$(logged_at 'Main process exited, code=killed, status=9/KILL')
[ -n "$noticed" ] || fail "systemd did not log roverd's death by SIGKILL: $(box journalctl -u roverd --no-pager -n 20)"
after_notice=$(ms "$noticed" "$off")
[ "$after_notice" -le 1000 ] \
  || fail "the motors stopped $after_notice ms after systemd noticed the SIGKILL (at most 1000 ms)"
box journalctl -u roverd --no-pager | grep -q 'roverd motors-off: simulated motors stopped' \
  || fail "the journal has no line from ExecStopPost='s roverd motors-off"
say "SIGKILL to motors off: $(ms "$killed" "$off") ms ($after_notice ms after systemd noticed the death)"
until_true 100 box sh -c '[ "$(systemctl show roverd -p NRestarts --value)" -ge 1 ]' \
  || fail "systemd did not restart roverd after the SIGKILL"
wait_driving "after the restart"
say "restarted, driving again"

say "driving, and a hung video source: the watchdog's abort, then ExecStopPost= stops the motors"
dropin 'Environment=ROVERD_TEST_DRIVE=0.5,0.5 ROVERD_TEST_STALL_VIDEO_AFTER_FRAMES=30\nWatchdogSec=2s\n'
box systemctl restart roverd
wait_driving "with the video stall hook"
off=$(stopped_at) || fail "$sim still says '$(box cat "$sim" 2>&1)': the watchdog did not fire or ExecStopPost= did not stop the motors"
abort=$(logged_at 'Watchdog timeout')
[ -n "$abort" ] || fail "the motors stopped, but not after a watchdog timeout: $(box journalctl -u roverd --no-pager -n 20)"
died=$(logged_at 'Main process exited')
after_death=$(ms "$died" "$off")
[ "$after_death" -le 1000 ] \
  || fail "the motors stopped $after_death ms after roverd died of the watchdog's SIGABRT (at most 1000 ms)"
say "watchdog timeout to motors off: $(ms "$abort" "$off") ms ($after_death ms after systemd noticed the death)"
until_true 100 box sh -c '[ "$(systemctl show roverd -p NRestarts --value)" -ge 2 ]' \
  || fail "systemd did not restart roverd after the watchdog timeout"
say "restarted by systemd"

box rm -r /etc/systemd/system/roverd.service.d
box systemctl daemon-reload
box systemctl reset-failed roverd
box systemctl restart roverd
until_true 100 box systemctl is-active -q roverd || fail "roverd did not start again without the test hooks"

box systemctl stop roverd
[ "$(box systemctl show roverd -p Result --value)" = success ] || fail "stop: $(box systemctl show roverd -p Result)"
[ "$(box systemctl show roverd -p ExecMainStatus --value)" = 0 ] || fail "roverd did not exit 0 on stop"
sim_says "$stopped" || fail "$sim says '$(box cat "$sim" 2>&1)' after systemctl stop"
box systemctl start roverd
box sh -c 'DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq roverd' >/dev/null 2>&1 || fail "apt remove"
box systemctl is-active -q roverd && fail "roverd still runs after apt remove"
box test -f /etc/roverd/roverd.toml || fail "apt remove deleted the config"
box sh -c 'DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq roverd' >/dev/null 2>&1 || fail "apt purge"
box test -e /etc/roverd && fail "apt purge left /etc/roverd"
say "stop exits 0 with the motors at 0; remove stops it and keeps the config; purge removes the config"

box systemctl poweroff >/dev/null 2>&1 || true
for _ in $(seq 1 300); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
say "all passed"
