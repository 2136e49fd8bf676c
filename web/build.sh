#!/usr/bin/env bash
# Builds the browser demo into web/dist: the joyrt-web crate for wasm32 (release), its JS glue by
# wasm-bindgen-cli 0.2.130 (the version of the wasm-bindgen crate), wasm-opt -Os from npm's
# binaryen (Debian's binaryen 108 produces a module that fails to instantiate), and the page.
# Installs what is missing: the rustup target, wasm-bindgen-cli (under $JOYRT_WEB_TOOLS), npm deps.
set -euo pipefail
cd "$(dirname "$0")"
WEB="$PWD"
ROOT="$(cd .. && pwd)"
TOOLS="${JOYRT_WEB_TOOLS:-$HOME/.cache/joyrt-web-tools}"
BINDGEN_VERSION=0.2.130

rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || rustup target list --installed | grep -qx wasm32-unknown-unknown
if ! "$TOOLS/bin/wasm-bindgen" --version 2>/dev/null | grep -qF "$BINDGEN_VERSION"; then
    echo "installing wasm-bindgen-cli $BINDGEN_VERSION into $TOOLS (a few minutes, once)"
    # Not --locked: its lock file pins a yanked webpki-roots (docs/env-recipes in shared/).
    cargo install -q wasm-bindgen-cli --version "$BINDGEN_VERSION" --root "$TOOLS"
fi
if [ ! -x node_modules/.bin/wasm-opt ]; then
    npm ci --no-audit --no-fund --silent
fi

cargo build --release --target wasm32-unknown-unknown -p joyrt-web
WASM="${CARGO_TARGET_DIR:-$ROOT/target}/wasm32-unknown-unknown/release/joyrt_web.wasm"
rm -rf dist
mkdir -p dist/pkg
"$TOOLS/bin/wasm-bindgen" --target web --no-typescript --out-dir dist/pkg "$WASM"
node_modules/.bin/wasm-opt -Os dist/pkg/joyrt_web_bg.wasm -o dist/pkg/joyrt_web_bg.wasm
cp index.html main.js engine.js style.css favicon.svg dist/

raw=$(stat -c %s dist/pkg/joyrt_web_bg.wasm)
gz=$(gzip -9 -c dist/pkg/joyrt_web_bg.wasm | wc -c)
echo "built $WEB/dist: joyrt_web_bg.wasm $raw bytes ($gz gzipped)"
