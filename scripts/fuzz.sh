#!/usr/bin/env bash
# Fuzzes roverd's parsers of hostile input, each for a bounded time:
#   protocol  a data-channel message (and a session of them through the motor rules)
#   config    a config file's text
#   offer     the body of a POST /api/offer, up to webrtc-rs's SDP parser
#   negotiate the same body on through webrtc-rs's negotiation (sans-IO): the answer
#   convert   one camera picture (YUYV, NV12, MJPEG; any size, any bytes) to I420
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 s, every target)
#   scripts/fuzz.sh --minimize [SECONDS] [TARGET...]     (shrink the finds; no fuzzing)
#
# Needs the nightly toolchain (`rustup toolchain install nightly`); installs cargo-fuzz if
# it is missing. The named seeds are in fuzz/corpus/<target>/; inputs the fuzzer finds that
# reach new code go to fuzz/corpus/<target>/found/ (`scripts/fuzz.sh --minimize` shrinks
# that to the inputs that add coverage beyond the seeds, before committing). A crash is
# saved in fuzz/artifacts/<target>/ and makes this script exit non-zero. Extra libFuzzer flags can
# be passed in FUZZ_ARGS, e.g. FUZZ_ARGS="-jobs=2 -workers=2". FUZZ_SANITIZER (default
# "address") is passed to cargo fuzz as --sanitizer.
set -euo pipefail

cd "$(dirname "$0")/.."

minimize=false
if [ "${1:-}" = "--minimize" ]; then
    minimize=true
    shift
fi
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(protocol config offer negotiate convert)
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
        offer | negotiate) echo 16384 ;;
        *) echo 4096 ;;
    esac
}

echo "fuzz.sh: building the targets (nightly, sanitizer: $sanitizer)" >&2
cargo +nightly fuzz build --sanitizer "$sanitizer" >&2

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
failed=()
summary=()
for target in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$target/found" "fuzz/artifacts/$target"
    if $minimize; then
        # Keep a small set of finds that covers the edges the seeds miss: merge them into a copy
        # of the seeds, and keep what the merge added.
        work="$logs/$target-min"
        mkdir -p "$work/merged"
        find "fuzz/corpus/$target" -maxdepth 1 -type f -exec cp {} "$work/merged/" \;
        before="$(find "$work/merged" -type f | wc -l)"
        cargo +nightly fuzz run --sanitizer "$sanitizer" "$target" \
            "$work/merged" "fuzz/corpus/$target/found" -- \
            -set_cover_merge=1 -use_counters=0 -max_len="$(max_len "$target")" >"$logs/$target-min.log" 2>&1 || {
            tail -n 30 "$logs/$target-min.log" >&2
            exit 1
        }
        find "fuzz/corpus/$target/found" -type f -delete
        # The merge names what it adds by the SHA-1 of its content; the seeds keep theirs.
        for file in "$work/merged"/*; do
            if [ ! -e "fuzz/corpus/$target/$(basename "$file")" ]; then
                mv "$file" "fuzz/corpus/$target/found/"
            fi
        done
        echo "fuzz.sh: $target: $(find "fuzz/corpus/$target/found" -type f | wc -l) finds" \
            "kept beyond the $before seeds" >&2
        continue
    fi
    echo "fuzz.sh: $target: fuzzing for ${seconds}s" \
        "($(find "fuzz/corpus/$target" -type f | wc -l) inputs in its corpus)" >&2
    log="$logs/$target.log"
    status=0
    started=$SECONDS
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    cargo +nightly fuzz run --sanitizer "$sanitizer" "$target" \
        "fuzz/corpus/$target/found" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -max_len="$(max_len "$target")" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 ${FUZZ_ARGS:-} \
        >"$log" 2>&1 || status=$?
    # libFuzzer prints "stat::number_of_executed_units: N" at the end of a run.
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)"
    line="$target: ${execs:-?} executions in $((SECONDS - started))s (${rate:-?} exec/s, ${cov:-cov: ?})"
    if [ "$status" -ne 0 ]; then
        failed+=("$target")
        line="$line: FAILED (exit $status)"
        echo "fuzz.sh: $target failed; the end of its log:" >&2
        tail -n 60 "$log" >&2
    fi
    echo "fuzz.sh: $line" >&2
    summary+=("$line")
done

if $minimize; then
    exit 0
fi
echo
echo "fuzzing summary ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(rustup run nightly rustc --version)):"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "crashed: ${failed[*]}; the inputs are in fuzz/artifacts/<target>/" >&2
    exit 1
fi
