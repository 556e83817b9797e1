#!/usr/bin/env bash
# Sets up what is missing and runs every caplab test: unit tests, the real binary against its
# simulator and a fault-injecting server, a real headless Chromium, and (unless
# CAPLAB_SKIP_ENGINES=1) two real engines on this CPU started by scripts/cpu-engine.sh:
# vLLM (CPU build) and `transformers serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
# Machines of this kind differ (AVX-512 or only AVX2): say which one this is.
flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
has() { [[ " $flags " == *" $1 "* ]] && echo yes || echo no; }
echo "[test] CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs) · $(nproc) cores · avx2 $(has avx2) · avx512f $(has avx512f) · avx512_bf16 $(has avx512_bf16)"
echo "[test] disk: $(df -h --output=avail . | tail -1 | xargs) free here (a clean build of the tests takes about 2 GB)"
# A one-off build (CI) keeps no incremental cache: it would only take disk.
if [[ -n "${CI:-}" ]]; then export CARGO_INCREMENTAL=0; fi
scripts/setup.sh browser
scripts/build-frontend.sh --check
cargo build -p caplab
cargo test
# The peer benchmark in its quick mode (a few seconds): it must still run end to end.
bench/peers/run.sh --quick
if [[ "${CAPLAB_SKIP_ENGINES:-${CAPLAB_SKIP_VLLM:-0}}" != 1 ]]; then
  trap 'scripts/cpu-engine.sh vllm stop >/dev/null; scripts/cpu-engine.sh transformers stop >/dev/null' EXIT
  url=$(scripts/cpu-engine.sh vllm start)
  CAPLAB_VLLM_URL="$url" cargo test -p caplab-tests --test vllm -- --ignored --test-threads=1
  scripts/cpu-engine.sh vllm stop   # the two engines would share the 2 cores
  # The same vLLM with 8 sequence slots and 16 KV blocks: the run queues and preempts.
  url=$(MAX_MODEL_LEN=1024 VLLM_EXTRA_ARGS="--max-num-seqs 8 --num-gpu-blocks-override 16" scripts/cpu-engine.sh vllm start)
  CAPLAB_VLLM_SMALL_KV_URL="$url" cargo test -p caplab-tests --test vllm_small_kv -- --ignored --test-threads=1
  scripts/cpu-engine.sh vllm stop
  url=$(scripts/cpu-engine.sh transformers start)
  CAPLAB_TRANSFORMERS_URL="$url" CAPLAB_TRANSFORMERS_MODEL=$(scripts/cpu-engine.sh transformers model) cargo test -p caplab-tests --test transformers_serve -- --ignored --test-threads=1
fi
