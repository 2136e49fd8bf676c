#!/usr/bin/env bash
# The build stage of deploy/Containerfile: the release `joyrt` binary into $1 (run from anywhere
# inside the repository). Also run by cli/tests/deploy.rs, so the image's build step is the one
# the tests exercise.
set -euo pipefail
out=${1:?usage: deploy/build-binary.sh OUT_DIR}
cd "$(dirname "$0")/.."
cargo build --release --locked -p joyrt
target=${CARGO_TARGET_DIR:-target}
install -D -m 0755 "$target/release/joyrt" "$out/joyrt"
"$out/joyrt" --version
