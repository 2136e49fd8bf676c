#!/usr/bin/env bash
# The demo's browser test (also run by .ci/run): builds web/dist and joyrt, makes the references
# with the native CPU backend (`joyrt edit --backend cpu`: the built-in model, and the tiny model
# quantized to int8 and int4 by `joyrt quantize`), then drives the page in headless Chromium
# (web/test/browser.mjs: the cases are listed there), in wasm mode from a static server and in
# server mode from `joyrt serve`. Artifacts: web/test-output/ (screenshots, PNGs, result.json).
# Needs /usr/bin/chromium (Debian `chromium`; .ci/run installs it).
# CI runs the smallest meaningful set (SwiftShader takes ~20 s a step); JOYRT_WEB_TEST_FULL=1 also
# edits with the picked int8 folder.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=web/test-output
STEPS=2
SEED=0
PROMPT="Make it blue"
INPUT=tests/fixtures/pipeline/input.png
JOYRT=target/release/joyrt
mkdir -p "$OUT"

web/build.sh
cargo build -q --release -p joyrt
native_edit() { # OUTPUT [--model DIR]
    local out=$1
    shift
    "$JOYRT" edit --backend cpu --dtype f32 --quiet --overwrite --image "$INPUT" --prompt "$PROMPT" \
        --steps "$STEPS" --seed "$SEED" -o "$out" "$@"
}
native_edit "$OUT/reference.png"
"$JOYRT" make-model --config tiny --overwrite -o "$OUT/tiny-model" 2>/dev/null
for format in int8 int4; do
    rm -rf "$OUT/tiny-$format"
    "$JOYRT" quantize --model "$OUT/tiny-model" --format "$format" -o "$OUT/tiny-$format" >/dev/null 2>&1
    native_edit "$OUT/reference-$format.png" --model "$OUT/tiny-$format"
done

CASES='"builtin", "nonimage", "cancel", "memory", "url", "server"'
FULL=false
if [ "${JOYRT_WEB_TEST_FULL:-0}" = 1 ]; then FULL=true; fi
cat > "$OUT/plan.json" <<EOF
{
  "dist": "web/dist", "outDir": "$OUT", "joyrt": "$JOYRT",
  "input": "$INPUT", "prompt": "$PROMPT", "steps": $STEPS, "seed": $SEED, "reference": "$OUT/reference.png",
  "folders": {
    "int8": { "dir": "$OUT/tiny-int8", "reference": "$OUT/reference-int8.png" },
    "int4": { "dir": "$OUT/tiny-int4", "reference": "$OUT/reference-int4.png" }
  },
  "cases": [$CASES], "full": $FULL
}
EOF
# The script stops itself (JOYRT_WEB_TEST_LIMIT_S); the outer timeout is a last resort.
timeout 1200 node web/test/browser.mjs "$OUT/plan.json"
