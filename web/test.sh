#!/usr/bin/env bash
# The demo's browser test (also run by .ci/run): builds web/dist, makes the reference with the
# native CPU backend (`joyrt edit --backend cpu`, the built-in model), then drives the page in
# headless Chromium (web/test/browser.mjs). Artifacts: web/test-output/ (screenshot.png, the two
# PNGs, result.json). Needs /usr/bin/chromium (Debian `chromium`; .ci/run installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=web/test-output
STEPS=4
SEED=0
mkdir -p "$OUT"

web/build.sh
cargo build -q --release -p joyrt
target/release/joyrt edit --backend cpu --quiet --overwrite --image tests/fixtures/pipeline/input.png \
    --prompt "Make it blue" --steps "$STEPS" --seed "$SEED" -o "$OUT/reference.png"
target/release/joyrt make-model --config tiny --overwrite -o "$OUT/tiny-model" 2>/dev/null
# The script stops itself (JOYRT_WEB_TEST_LIMIT_S); the outer timeout is a last resort.
timeout 1200 node web/test/browser.mjs web/dist tests/fixtures/pipeline/input.png "$OUT/reference.png" "$OUT" "$STEPS" "$SEED" "$OUT/tiny-model"
