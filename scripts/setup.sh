#!/usr/bin/env bash
# Installs what caplab's build and tests need, idempotently (each step is skipped when done):
#   scripts/setup.sh            wasm target, wasm-bindgen-cli (the version Cargo.lock pins), wasm-opt
#   scripts/setup.sh --browser  the same, plus Debian's chromium and chromedriver for browser tests
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "[setup] $*" >&2; }

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

WB_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [[ "$(wasm-bindgen --version 2>/dev/null || true)" != "wasm-bindgen $WB_VERSION" ]]; then
  say "installing wasm-bindgen-cli $WB_VERSION (about 3 minutes)"
  cargo install wasm-bindgen-cli --version "$WB_VERSION" --locked || cargo install wasm-bindgen-cli --version "$WB_VERSION"
fi

# wasm-opt from npm's binaryen (Debian's binaryen 108 produces a wasm that crashes at start).
if [[ ! -x .tools/node_modules/.bin/wasm-opt ]] && command -v npm >/dev/null; then
  say "installing wasm-opt (npm binaryen@132) under .tools/"
  mkdir -p .tools
  (cd .tools && npm install --silent --no-audit --no-fund binaryen@132 >/dev/null) || say "wasm-opt unavailable; the dashboard will be larger but works"
fi

if [[ "${1:-}" == "--browser" ]] && ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1; then
  say "installing chromium and chromedriver (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium chromium-driver >/dev/null
fi
say "ready"
