#!/usr/bin/env bash
# caplab beside the peer tools (vllm bench serve, GuideLLM, the notes' own script, a minimal
# raw-HTTP client), on this machine, in one run; writes BENCHMARKS.md. See bench/peers/bench.py.
#   bench/peers/run.sh                      everything (about 20-30 min on 2 cores)
#   bench/peers/run.sh --streams 100 --no-real-vllm --tools caplab,raw-client   a quick look
# Installs what it needs, idempotently: the release binaries, the CPU vLLM venv (its
# `vllm bench serve` and the test model's tokenizer) and GuideLLM 0.8.1 in its own venv.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE="${CAPLAB_CACHE:-$HOME/.cache/caplab}"
cargo build --release -p caplab -p caplab-tests --bin caplab --bin bench-server --bin raw-client
scripts/cpu-engine.sh install
GL="$CACHE/guidellm-venv"
if [[ ! -f "$GL/.caplab-installed-0.8.1" ]]; then
  echo "[bench] installing GuideLLM 0.8.1 into $GL (a few minutes, ~6 GB with torch)" >&2
  rm -rf "$GL"; python3 -m venv "$GL"
  "$GL/bin/pip" install -q guidellm==0.8.1
  touch "$GL/.caplab-installed-0.8.1"
fi
TOKENIZER="$(scripts/cpu-engine.sh transformers model)"
exec python3 bench/peers/bench.py --tokenizer "$TOKENIZER" --command "bench/peers/run.sh $*" "$@"
