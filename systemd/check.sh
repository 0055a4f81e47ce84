#!/usr/bin/env bash
# Checks roverd's systemd unit and Debian package; scripts/test.sh runs it after cargo test.
#   1. `systemd-analyze verify`: no warning at all. It insists that the programs exist, so
#      it checks a copy of the unit whose ExecStart=, ExecStartPre= and ExecStopPost= run
#      the freshly built target/debug/roverd.
#   2. `systemd-analyze security --offline=true`: overall exposure 2.0 or lower.
#   3. systemd/check-deb.sh: a .deb packaged from the built binary has the right files,
#      conffile and maintainer scripts.
# Needs the systemd package (systemd-analyze), cargo-deb and a built target/debug/roverd.
set -euo pipefail
cd "$(dirname "$0")/.."

bin="$PWD/target/debug/roverd"
[ -x "$bin" ] || { echo "check: build roverd first (cargo build)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

sed -E "s#^(ExecStart|ExecStartPre|ExecStopPost)=/usr/bin/roverd #\1=$bin #" systemd/roverd.service >"$tmp/roverd.service"
for key in ExecStart ExecStartPre ExecStopPost; do
  grep -q "^$key=$bin " "$tmp/roverd.service" || { echo "check: no $key=/usr/bin/roverd in the unit" >&2; exit 1; }
done
out=$(systemd-analyze verify "$tmp/roverd.service" 2>&1) || { echo "$out" >&2; exit 1; }
if [ -n "$out" ]; then
  echo "check: systemd-analyze verify systemd/roverd.service is not clean:" >&2
  echo "$out" >&2
  exit 1
fi
echo "check: systemd-analyze verify systemd/roverd.service: clean"

# --threshold is the exposure times ten: fail above 2.0.
if ! out=$(systemd-analyze security --offline=true --threshold=20 systemd/roverd.service 2>&1); then
  echo "$out" >&2
  echo "check: the unit's exposure is above 2.0" >&2
  exit 1
fi
echo "check: systemd-analyze security --offline=true: $(echo "$out" | grep -o 'Overall exposure level.*')"

systemd/check-deb.sh
