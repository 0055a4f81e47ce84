#!/usr/bin/env bash
# Fuzzes roverd's parsers of hostile input, each for a bounded time:
#   protocol  a data-channel message (and a session of them through the motor rules)
#   config    a config file's text
#   offer     the body of a POST /api/offer, up to webrtc-rs's SDP parser
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 s, every target)
#
# Needs the nightly toolchain (`rustup toolchain install nightly`); installs cargo-fuzz if
# it is missing. New inputs that reach new code are added to fuzz/corpus/<target>/ (shrink
# it with `cargo +nightly fuzz cmin <target>` before committing); a crash is saved in
# fuzz/artifacts/<target>/ and makes this script exit non-zero. Extra libFuzzer flags can
# be passed in FUZZ_ARGS, e.g. FUZZ_ARGS="-jobs=2 -workers=2". FUZZ_SANITIZER (default
# "address") is passed to cargo fuzz as --sanitizer.
set -euo pipefail

cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(protocol config offer)
fi
case "$seconds" in
    '' | *[!0-9]*)
        echo "fuzz.sh: SECONDS_PER_TARGET must be a whole number, got '$seconds'" >&2
        exit 2
        ;;
esac
sanitizer="${FUZZ_SANITIZER:-address}"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz.sh: the nightly toolchain is needed (cargo-fuzz uses -Z flags);" \
        "install it with: rustup toolchain install nightly" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

# The longest input each target gets: a data-channel message is refused over 4 KiB, an offer
# body over 64 KiB (a browser's offer is 3 to 8 KiB).
max_len() {
    case "$1" in
        protocol) echo 4200 ;;
        config) echo 8192 ;;
        offer) echo 16384 ;;
        *) echo 4096 ;;
    esac
}

echo "fuzz.sh: building the targets (nightly, sanitizer: $sanitizer)" >&2
cargo +nightly fuzz build --sanitizer "$sanitizer" "${targets[@]:0:1}" >&2
if [ ${#targets[@]} -gt 1 ]; then
    cargo +nightly fuzz build --sanitizer "$sanitizer" >&2
fi

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
failed=()
summary=()
for target in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
    echo "fuzz.sh: $target: fuzzing for ${seconds}s" \
        "($(find "fuzz/corpus/$target" -type f | wc -l) inputs in its corpus)" >&2
    log="$logs/$target.log"
    status=0
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    cargo +nightly fuzz run --sanitizer "$sanitizer" "$target" -- \
        -max_total_time="$seconds" -max_len="$(max_len "$target")" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 ${FUZZ_ARGS:-} \
        >"$log" 2>&1 || status=$?
    # libFuzzer prints "stat::number_of_executed_units: N" at the end of a run.
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)"
    line="$target: ${execs:-?} executions in ${seconds}s (${rate:-?} exec/s, ${cov:-cov: ?})"
    if [ "$status" -ne 0 ]; then
        failed+=("$target")
        line="$line: FAILED (exit $status)"
        echo "fuzz.sh: $target failed; the end of its log:" >&2
        tail -n 60 "$log" >&2
    fi
    echo "fuzz.sh: $line" >&2
    summary+=("$line")
done

echo
echo "fuzzing summary ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(rustup run nightly rustc --version)):"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "crashed: ${failed[*]}; the inputs are in fuzz/artifacts/<target>/" >&2
    exit 1
fi
