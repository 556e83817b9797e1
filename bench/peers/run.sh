#!/usr/bin/env bash
# caplab beside the peer tools (vllm bench serve, GuideLLM, the notes' own script, a minimal
# raw-HTTP client), on this machine, in one run; writes BENCHMARKS.md. See bench/peers/bench.py.
#   bench/peers/run.sh            everything (about 20-30 min on 2 cores)
#   bench/peers/run.sh --quick    a few seconds: 100 streams, caplab and the raw client, debug
#                                 builds, results in a temporary folder (BENCHMARKS.md untouched);
#                                 the test command runs it so the benchmark cannot rot unnoticed
#   bench/peers/run.sh --streams 100 --no-real-vllm --tools caplab,raw-client   any other subset
# It builds every binary it runs and installs what it needs, idempotently: the CPU vLLM venv (its
# `vllm bench serve` and the test model's tokenizer) and GuideLLM 0.8.1 in its own venv. Results
# are written after every scenario, so a failure keeps what was measured and names the scenario.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE="${CAPLAB_CACHE:-$HOME/.cache/caplab}"
BINS=(--bin caplab --bin bench-server --bin raw-client --bin bench-live)
if [[ "${1:-}" == --quick ]]; then
  shift
  cargo build -q -p caplab -p caplab-tests "${BINS[@]}"
  out=$(mktemp -d)
  BENCH_BIN_DIR="${CARGO_TARGET_DIR:-$PWD/target}/debug" python3 bench/peers/bench.py --streams 100 --tools caplab,raw-client --rate 0 --live-requests 0 \
    --no-real-vllm --target-repeats 0 --out "$out/BENCHMARKS.md" --results "$out/results.json" --command "bench/peers/run.sh --quick" "$@"
  # It ran: both tools finished their 100 streams (no timing is judged here).
  python3 - "$out/results.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
done = {x["tool"]: x for x in r["results"] if x.get("streams") == 100}
for tool in ("caplab", "raw-client"):
    assert tool in done and "error" not in done[tool] and done[tool].get("completed", 0) > 0, f"{tool} did not finish: {done.get(tool)}"
print(f"[bench] quick mode ran: " + ", ".join(f"{t} {done[t]['completed']} requests" for t in ("caplab", "raw-client")))
PY
  exit 0
fi
cargo build --release -p caplab -p caplab-tests "${BINS[@]}"
export BENCH_BIN_DIR="${CARGO_TARGET_DIR:-$PWD/target}/release"
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
