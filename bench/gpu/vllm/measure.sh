#!/usr/bin/env bash
# One device call per model, right after the previous call while the machine is warm:
#   bash bench/gpu/vllm/measure.sh SHAPE [--unpack .vx/b] [--small-kv] [--then-make SHAPE2] [--input-lengths]
# --unpack DIR   (the first of these calls, carry DIR): unpack part B (the rest of vLLM + dependencies)
#                and caplab from DIR, check the imports.
# Then: wait for the model made in the background since call 1, start vLLM on it (fallback ladder:
# defaults, then --enforce-eager, then eager + Triton attention), probe it, and measure, in this
# order, each step only if the call still has the time for it:
#   1. caplab chat grid, max_new_tokens 128, concurrency 1 ... 512 (chat_128.toml)
#   2. `vllm bench serve` at the same points: random prompts of ~caplab's length, 128 out
#   3. caplab batch grid (batch_grid.toml, the notes' grid)
#   4. caplab chat grid, max_new_tokens 256 (chat_256.toml)
#   5. `vllm bench serve` with caplab's own 16 chat prompts, 128 out (same prompts as 1)
#   6. with --small-kv: vLLM restarted with 128 KV blocks and 32 sequence slots, chat_small_kv.toml
# --then-make SHAPE2: once vLLM is stopped, start making model SHAPE2 in the background for the next call.
# --input-lengths: instead of steps 1-6, vLLM with --max-model-len 17408 (VX_MAX_MODEL_LEN) and only
#   I1. caplab chat at input lengths 128, 1k, 4k, 16k (chat_input_len.toml: its concurrency and
#       input_tokens lists are the points), 128 out
#   I2. `vllm bench serve` at the same points: random prompts of N tokens (--random-input-len N), 128 out,
#       vLLM's own count of each point's prompt tokens from /metrics
#   Results: $OUT/SHAPE-input-lengths.tgz. The model's tokenizer must read caplab's words as one token
#   each: make it with VX_WORD_TOKENS=1 in stage1.sh's environment (make_model.py).
# /metrics is saved between steps, nvidia-smi samples every 500 ms. Results: $OUT/SHAPE.tgz
# (packed after every step, so a call killed at its limit still returns what it had).
set -u
shape=${1:?SHAPE}; shift
unpack=""; smallkv=""; then_make=""; inlen=""
while [ $# -gt 0 ]; do
  case "$1" in
    --unpack) unpack=$2; shift 2 ;;
    --small-kv) smallkv=1; shift ;;
    --then-make) then_make=$2; shift 2 ;;
    --input-lengths) inlen=1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
tag=$shape${inlen:+-input-lengths}
RES=${VX_HOME:-/root/vx}/res/$tag; mkdir -p "$RES/runs"
[ -n "$inlen" ] && export VX_MAX_MODEL_LEN=${VX_MAX_MODEL_LEN:-17408} VX_WORD_TOKENS=1   # (a model made here, too)
source "$(dirname "$0")/lib.sh"
DEADLINE=${VX_DEADLINE:-565}   # the call's limit is 600 s
VX_MODEL=$VX_MODELS/model-$shape
finish() {
  stop_vllm
  if [ -n "$then_make" ] && [ ! -f "$VX_MODELS/model-$then_make/done" ]; then
    setsid $PY "$VX_HERE/make_model.py" "$VX_MODELS/model-$then_make" "$then_make" > "$VX_HOME/make_model.log" 2>&1 < /dev/null &
    echo $! > "$VX_HOME/make_model.pid"; log "make_model $then_make started (pid $!)"
  fi
  log "measure $tag: done at +$(el)s"
  pack "$tag"
}
trap finish EXIT
log "measure $tag on $(hostname) (unpack: ${unpack:-no}, small-kv: ${smallkv:-no}, input lengths: ${inlen:-no}, deadline +${DEADLINE}s)"

# time each step needs before it is started (a caplab run stopped by its timeout keeps only the cells it finished)
case "$shape" in
  *7b|*8b) need=(150 120 100 180 120) ;;
  *)       need=(90 80 70 110 80) ;;
esac
# seconds vLLM's start must leave for the steps after it (the main grids; the input-length steps: the
# caplab run, ~30 s for the 1.5B; a caplab run stopped by its timeout keeps the cells it finished)
reserve=180; [ -n "$inlen" ] && reserve=60

if [ -n "$unpack" ]; then
  extract "$unpack/partB.tar.xz" 2>&1 | tee -a "$RES/log.txt"
  unxz_exe "$unpack/caplab.xz" "$CAPLAB"
  unpack_tools "$unpack/tools"   # for peers.sh, if carried (pack_tools.sh)
  timeout 40 $PY -m compileall -q -j 16 "$VX_SITE/vllm" > /dev/null 2>&1; log "compileall exit $?"
  timeout 120 $PY -c "
import vllm, vllm._C_stable_libtorch, vllm.vllm_flash_attn.flash_attn_interface as fa
from vllm.entrypoints.openai import api_server
from vllm.platforms import current_platform as p
print('vllm', vllm.__version__, '| platform', p.device_name, p.get_device_name(), p.get_device_capability(), '| FA3', fa.FA3_AVAILABLE, fa.FA3_UNAVAILABLE_REASON or '')
" > "$RES/import_check.txt" 2>&1
  log "import check exit $?"; tail -n 25 "$RES/import_check.txt" >&2
fi
if [ ! -x "$CAPLAB" ] || [ ! -d "$VX_SITE/vllm" ]; then
  log "FATAL: no payload on this machine ($CAPLAB, $VX_SITE/vllm): a fresh machine? run stage1.sh and measure.sh --unpack again"
  exit 3
fi
"$CAPLAB" --version >&2
$PY - "$VX_HERE/../../../data/chat_prompts.txt" "$VX_HOME/chat_prompts.jsonl" <<'PYEOF'
import json, sys
ps = [l.strip() for l in open(sys.argv[1]) if l.strip() and not l.lstrip().startswith("#")]
with open(sys.argv[2], "w") as f:
    for p in ps:
        f.write(json.dumps({"prompt": p}) + "\n")
PYEOF
pack "$tag"

# the model (made in the background since call 1); the maker must be finished too, since it holds
# GPU memory and vLLM checks at start-up that the memory it asks for is free
for _ in $(seq 1 "$(min 300 $(( $(left) - reserve - 70 )))"); do
  mp=$(cat "$VX_HOME/make_model.pid" 2>/dev/null)
  { [ -z "$mp" ] || ! kill -0 "$mp" 2>/dev/null; } && break
  sleep 1
done
cp "$VX_HOME/make_model.log" "$RES/" 2>/dev/null
if [ ! -f "$VX_MODEL/done" ]; then
  mp=$(cat "$VX_HOME/make_model.pid" 2>/dev/null)
  [ -n "$mp" ] && kill -0 "$mp" 2>/dev/null && { log "model maker still running: stopping it"; kill "$mp"; sleep 3; }
  log "model $shape missing: making it now"
  $PY "$VX_HERE/make_model.py" "$VX_MODEL" "$shape" > "$RES/make_model_now.log" 2>&1
  log "make_model exit $?"; tail -n 5 "$RES/make_model_now.log" >&2
fi
log "make_model.log: $(grep -c params "$VX_HOME/make_model.log" 2>/dev/null) models made"; cat "$VX_HOME/make_model.log" >&2
{ ls -la "$VX_MODEL"; cat "$VX_MODEL/config.json"; } > "$RES/model_ls.txt" 2>&1
nvidia-smi --query-gpu=memory.used,memory.total --format=csv >&2 2>/dev/null

start_smi "$VX_HOME/smi_$shape.csv"
up=""
for v in A B C; do
  (( $(left) > reserve + 20 )) || break
  # shellcheck disable=SC2046
  start_vllm "vllm_$v" "$(min $(( $(left) - reserve )) 360)" $(vllm_args $v) && { up=$v; break; }
done
echo "${up:-none}" > "$VX_HOME/vllm_variant"
pack "$tag"
[ -n "$up" ] || { log "vLLM did not start"; exit 1; }
grep -E "Loading weights took|Model loading took|torch.compile took|Graph capturing finished|init engine|KV cache|Maximum concurrency|Using .*backend|max_num_seqs|Compiling a graph" "$RES/vllm_$up.log" | head -30 >&2
{
  for p in /health /version /v1/models; do echo "== GET $p"; curl -s -i -m 5 "$URL$p"; echo; done
  echo "== POST /v1/chat/completions (warm-up, max_tokens 8)"
  curl -s -i -m 60 "$URL/v1/chat/completions" -H 'content-type: application/json' \
    -d "{\"model\":\"$VX_MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"warm up\"}],\"max_tokens\":8}"; echo
  echo "== POST /v1/completions (stream, 4 tokens)"
  curl -s -N -m 60 "$URL/v1/completions" -H 'content-type: application/json' \
    -d "{\"model\":\"$VX_MODEL\",\"prompt\":\"hello\",\"max_tokens\":4,\"stream\":true,\"stream_options\":{\"include_usage\":true},\"ignore_eos\":true}"; echo
} > "$RES/probe.txt" 2>&1
head -c 1500 "$RES/probe.txt" >&2; echo >&2
metrics start
grep -o '^vllm:[a-z_:]*' "$RES/metrics_start.txt" | sort -u > "$RES/metric_names.txt"
pack "$tag"

if [ -n "$inlen" ]; then
  # the points: chat_input_len.toml's concurrency and input_tokens lists
  list() { sed -n "s/^$1 = \[\(.*\)\]/\1/p" "$VX_HERE/chat_input_len.toml" | tr -d ' '; }
  ins=$(list input_tokens); IFS=, read -r -a cs <<< "$(list concurrency)"
  (( $(left) > 30 )) && caplab_run chat_input_len "$(toml chat_input_len)" "$(min $(( $(left) - 10 )) 300)"
  metrics after_chat_input_len; pack "$tag"
  (( $(left) > 30 )) && BENCH_INPUTS=$ins bench bench_random_input_len random 128 "$(min $(( $(left) - 5 )) 300)" "${cs[@]}"
  metrics after_bench_random_input_len; pack "$tag"
  log "left: $(left) s"
  exit 0
fi

C=(1 4 8 16 32 64 128 256 512)
(( $(left) > need[0] )) && caplab_run chat_128 "$(toml chat_128)" "$(min $(( $(left) - 25 )) 300)"
metrics after_chat_128; pack "$shape"
(( $(left) > need[1] )) && bench bench_random_128 random 128 "$(min $(( $(left) - 25 )) 300)" "${C[@]}"
metrics after_bench_random_128; pack "$shape"
(( $(left) > need[2] )) && caplab_run batch "$(toml batch_grid)" "$(min $(( $(left) - 25 )) 300)"
metrics after_batch; pack "$shape"
(( $(left) > need[3] )) && caplab_run chat_256 "$(toml chat_256)" "$(min $(( $(left) - 25 )) 300)"
metrics after_chat_256; pack "$shape"
(( $(left) > need[4] )) && bench bench_caplab_128 caplab 128 "$(min $(( $(left) - 25 )) 300)" "${C[@]}"
metrics after_bench_caplab_128; pack "$shape"
if [ -n "$smallkv" ]; then
  if (( $(left) > 150 )); then small_kv "$(min $(( $(left) - 90 )) 200)"; else log "no time left for the small-KV run"; fi
fi
log "left: $(left) s"
