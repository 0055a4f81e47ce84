#!/usr/bin/env bash
# Sets up and runs roverd from the source tree. Without a camera, microphone or GPIO it
# streams its test pattern and test tone; open http://localhost:8080.
# Extra arguments go to roverd, e.g.: scripts/run.sh --simulate --listen 127.0.0.1:9000
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
echo "run: building roverd (the first build takes several minutes)"
cargo build --release --locked
exec target/release/roverd "$@"
