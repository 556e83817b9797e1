# Sourced by stage1.sh and measure.sh (on the GPU machine). Everything that must outlive one
# device call lives under VX_HOME and VX_SITE (outside the repo copy), which survive between
# back-to-back calls while the machine stays warm (30 s after each call). vLLM's torch.compile
# cache lives in /root/.cache/vllm (its default), so it survives too.
: "${VX_HOME:=/root/vx}"                     # stash: logs, results, pids, caplab
: "${VX_SITE:=/root/site}"                   # the carried Python packages (vLLM + deps)
: "${VX_GSITE:=/root/gsite}"                 # GuideLLM and what it needs beyond VX_SITE and the image (peers.sh)
: "${VX_CHROME:=/root/chrome}"               # headless Chromium + chromedriver + their libraries (peers.sh --live)
: "${VX_MODELS:=/tmp}"                       # random-weight models: VX_MODELS/model-SHAPE (make_model.py)
: "${VX_PORT:=8000}"
: "${PY:=python3}"                           # the image's python3 (torch 2.11.0+cu130)
: "${OUT:=/tmp/vx-out}"                      # set by the device tool; a local default for rehearsals
# VX_FAKE_SERVER: rehearsal hook only. A command (e.g. a fixed-timing test server) started instead of vLLM
# on the CPU machine, to rehearse the scripts without a GPU. Unset on the device.
# VX_FAKE_BENCH: rehearsal hook only: skip `vllm bench serve`.
# VX_SERVED: rehearsal hook only: the model name caplab asks for (the fake server's; default: VX_MODEL,
# the path under which vLLM lists the model).
: "${VX_MAX_MODEL_LEN:=4096}"                # vLLM's --max-model-len (measure.sh --input-lengths: 17408)
VX_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
URL=http://127.0.0.1:$VX_PORT
CAPLAB=$VX_HOME/caplab
export PYTHONPATH=$VX_SITE${PYTHONPATH:+:$PYTHONPATH}
unset PYTHONDONTWRITEBYTECODE   # let the first import write .pyc for the next processes
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
# vLLM 0.26 defaults to FlashInfer's top-k/top-p sampler and raises ImportError at start-up
# without flashinfer-python (not carried: it needs nvidia-cutlass-dsl, ~100 MB): use PyTorch's.
export VLLM_USE_FLASHINFER_SAMPLER=0
T0=${T0:-$(date +%s)}
mkdir -p "$VX_HOME" "$OUT"

el() { echo $(( $(date +%s) - T0 )); }
log() { echo "[$(date -u +%T) +$(el)s] $*" | tee -a "$RES/log.txt" >&2; }
left() { echo $(( DEADLINE - $(el) )); }   # seconds left before this call's own deadline
min() { echo $(( $1 < $2 ? $1 : $2 )); }

# extract TAR.XZ... into VX_SITE (Python's tarfile: no dependence on an xz binary there)
extract() {
  $PY - "$VX_SITE" "$@" <<'EOF'
import sys, tarfile, time
dest = sys.argv[1]
for p in sys.argv[2:]:
    t = time.time()
    with tarfile.open(p) as tf:
        tf.extractall(dest, filter="tar")
    print(f"extracted {p} in {time.time() - t:.1f}s", file=sys.stderr)
EOF
}

# pack NAME: RES -> $OUT/NAME.tgz (called after every step, so a killed call still returns files)
pack() {
  local smi; smi=$(cat "$VX_HOME/smi.file" 2>/dev/null)
  [ -n "$smi" ] && [ -f "$smi" ] && cp "$smi" "$RES/nvidia-smi.csv"
  tar czf "$OUT/$1.tgz.part" -C "$RES" . && mv "$OUT/$1.tgz.part" "$OUT/$1.tgz"
}

# start_smi FILE: GPU telemetry every 500 ms into FILE, in its own session (it outlives the call);
# a sampler started earlier (by its saved pid) is stopped first.
start_smi() {
  command -v nvidia-smi >/dev/null || return 0
  stop_smi
  setsid nvidia-smi --query-gpu=timestamp,name,memory.used,memory.total,utilization.gpu,utilization.memory,power.draw,clocks.sm,clocks.mem,temperature.gpu \
    --format=csv,nounits -lms 500 > "$1" 2>&1 < /dev/null &
  echo $! > "$VX_HOME/smi.pid"; echo "$1" > "$VX_HOME/smi.file"
}
stop_smi() {
  local pid; pid=$(cat "$VX_HOME/smi.pid" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null; rm -f "$VX_HOME/smi.pid"
}

# start_vllm NAME TIMEOUT_S ARGS...: start the OpenAI server for VX_MODEL in its own session, wait for
# /health. Its log is RES/NAME.log; its pid (= its process group) goes to VX_HOME/vllm.pid.
start_vllm() {
  local name=$1 tmo=$2 t pid; shift 2
  t=$(date +%s)
  if [ -n "${VX_FAKE_SERVER:-}" ]; then
    setsid $VX_FAKE_SERVER --port "$VX_PORT" --model-name "$VX_MODEL" > "$RES/$name.log" 2>&1 < /dev/null &
  else
    setsid $PY -m vllm.entrypoints.openai.api_server --model "$VX_MODEL" --host 127.0.0.1 --port "$VX_PORT" \
      "$@" > "$RES/$name.log" 2>&1 < /dev/null &
  fi
  pid=$!; echo "$pid" > "$VX_HOME/vllm.pid"
  log "$name: pid $pid, args: $*"
  while :; do
    if curl -sf -m 2 "$URL/health" >/dev/null; then log "$name: healthy after $(( $(date +%s) - t ))s"; return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name: exited after $(( $(date +%s) - t ))s"; tail -n 60 "$RES/$name.log" >&2; return 1
    fi
    if (( $(date +%s) - t > tmo )); then
      log "$name: not healthy after ${tmo}s, stopping it"; tail -n 30 "$RES/$name.log" >&2; stop_vllm; return 1
    fi
    sleep 1
  done
}

# stop the server this script started (its process group, by the saved id)
stop_vllm() {
  local pid; pid=$(cat "$VX_HOME/vllm.pid" 2>/dev/null) || return 0
  kill -TERM -- "-$pid" 2>/dev/null
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -KILL -- "-$pid" 2>/dev/null
  rm -f "$VX_HOME/vllm.pid"
  sleep 2   # let the GPU memory go back
}

# metrics NAME: the server's full /metrics into RES/metrics_NAME.txt
metrics() { curl -s -m 5 "$URL/metrics" > "$RES/metrics_$1.txt" 2>&1; }

# caplab_run NAME FILE TIMEOUT_S: one caplab experiment against VX_MODEL; results in RES/runs/
caplab_run() {
  log "caplab run $1 ($(basename "$2"), timeout $3 s)"
  timeout "$3" "$CAPLAB" run "$2" --target "$URL" --model "${VX_SERVED:-$VX_MODEL}" --out "$RES/runs" > "$RES/$1.txt" 2> "$RES/$1.log"
  local rc=$?
  log "caplab run $1 exited $rc"; cat "$RES/$1.txt" >&2
  return $rc
}

# bench NAME DATASET OUT_LEN TIMEOUT_S C...: `vllm bench serve` (vLLM's own client) at each
# concurrency C with 2 x C requests (caplab's count), one Python process for all points
# (bench_loop.py: the CLI's own parser and main, imported once). DATASET: random (input RANDOM_IN
# tokens, ~ caplab's chat prompts) or caplab (caplab's 16 chat prompts, data/chat_prompts.txt).
# BENCH_INPUTS=N,N,... (random only): one point per concurrency and input length (N tokens each, the
# random dataset's length), files NAME_cC_inN.json, and vLLM's own count of each point's prompt
# tokens from /metrics (NAME_counted.json).
bench() {
  local name=$1 ds=$2 olen=$3 tmo=$4; shift 4
  log "vllm bench serve $name ($ds, out $olen, c$*; timeout $tmo s)"
  mkdir -p "$RES/bench"
  [ -n "${VX_FAKE_BENCH:-}" ] && { log "bench skipped (VX_FAKE_BENCH)"; return 0; }
  timeout "$tmo" $PY "$VX_HERE/bench_loop.py" --out "$RES/bench" --name "$name" --dataset "$ds" \
    --prompts "$VX_HOME/chat_prompts.jsonl" --random-in "${RANDOM_IN:-31}" --out-len "$olen" \
    ${BENCH_INPUTS:+--inputs "$BENCH_INPUTS" --metrics-url "$URL/metrics"} \
    --base-url "$URL" --model "$VX_MODEL" "$@" > "$RES/bench/$name.txt" 2>&1
  local rc=$?
  log "vllm bench serve $name exited $rc"; grep -E "^BENCH" "$RES/bench/$name.txt" >&2
  return $rc
}

# vllm_args VARIANT: the server's flags (A: defaults, torch.compile + CUDA graphs; B: eager;
# C: eager + Triton attention), common to every model; --max-model-len VX_MAX_MODEL_LEN (4096)
vllm_args() {
  local a=(--dtype bfloat16 --max-model-len "$VX_MAX_MODEL_LEN" --seed 0 --disable-uvicorn-access-log)
  case "$1" in
    B) a+=(--enforce-eager) ;;
    C) a+=(--enforce-eager --attention-backend TRITON_ATTN) ;;
  esac
  echo "${a[@]}"
}

# small_kv TIMEOUT: restart vLLM with a deliberately tiny KV cache (128 blocks x 16 tokens = 2,048
# tokens, --max-num-seqs 32) and run a short chat grid, so that requests queue and running ones get
# preempted; /metrics before and after. Keeps the main run's variant (eager / Triton).
small_kv() {
  stop_vllm
  # shellcheck disable=SC2046
  start_vllm vllm_smallkv "$1" $(vllm_args "$(cat "$VX_HOME/vllm_variant" 2>/dev/null)" | sed 's/--max-model-len [0-9]*/--max-model-len 2048/') \
    --num-gpu-blocks-override 128 --max-num-seqs 32 || return 1
  grep -i -E "KV cache|concurrency|blocks" "$RES/vllm_smallkv.log" | head -8 >&2
  metrics smallkv_start
  (( $(left) > 40 )) && caplab_run chat_small_kv "$(toml chat_small_kv)" "$(min $(( $(left) - 20 )) 200)"
  metrics smallkv_end
  grep -E "^vllm:num_preemptions|^vllm:request_success_total" "$RES/metrics_smallkv_start.txt" "$RES/metrics_smallkv_end.txt" >&2
  touch "$RES/smallkv.done"
  stop_vllm
}

# toml NAME: the experiment file bench/gpu/vllm/NAME.toml with this call's model path put in
toml() {
  sed "s#^model = .*#model = \"${VX_SERVED:-$VX_MODEL}\"#" "$VX_HERE/$1.toml" > "$RES/$1.toml"
  echo "$RES/$1.toml"
}

# unxz_exe FILE.xz DEST: an xz-compressed program, unpacked and made executable (Python's lzma: no
# dependence on an xz binary there)
unxz_exe() {
  $PY -c "import lzma, sys; open(sys.argv[2], 'wb').write(lzma.open(sys.argv[1]).read())" "$1" "$2" && chmod +x "$2"
}

# unpack_tools DIR: what the peer comparison (peers.sh) needs besides vLLM and caplab, carried in DIR
# (made by pack_tools.sh): GuideLLM's wheels (DIR/guidellm/*.whl, into VX_GSITE), the raw client and
# bench-live (DIR/*.xz, into VX_HOME). Nothing if DIR has none of them.
unpack_tools() {
  local d=$1 f
  if ls "$d"/guidellm/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$VX_GSITE" "$d"/guidellm/*.whl
    log "GuideLLM wheels into $VX_GSITE: exit $?"
  fi
  for f in raw-client bench-live; do
    [ -f "$d/$f.xz" ] || continue
    unxz_exe "$d/$f.xz" "$VX_HOME/$f"
    log "$f into $VX_HOME"
  done
}
