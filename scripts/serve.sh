#!/usr/bin/env bash
# Sets up what is missing, builds the dashboard and the release binary, and runs
# `caplab serve` (on the built-in simulator unless you pass --target URL).
#   scripts/serve.sh                                   # simulator, http://127.0.0.1:8080/
#   scripts/serve.sh --target http://127.0.0.1:8000 --listen 0.0.0.0:8080
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-frontend.sh
cargo build --release -p caplab
exec target/release/caplab serve "$@"
