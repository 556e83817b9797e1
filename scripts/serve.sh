#!/usr/bin/env bash
# Builds the release binary (the committed dashboard, frontend/dist, is embedded) and runs
# `caplab serve` (on the built-in simulator unless you pass --target NAME=URL).
#   scripts/serve.sh                                   # simulator, http://127.0.0.1:8080/
#   scripts/serve.sh --target vllm=http://127.0.0.1:8000 --listen 0.0.0.0:8080
set -euo pipefail
cd "$(dirname "$0")/.."
# Only after an edit of the dashboard's sources: rebuild it (installs the wasm toolchain once).
scripts/build-frontend.sh --check 2>/dev/null || scripts/build-frontend.sh
cargo build --release -p caplab
exec "${CARGO_TARGET_DIR:-target}/release/caplab" serve "$@"
