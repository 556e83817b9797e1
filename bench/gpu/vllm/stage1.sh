#!/usr/bin/env bash
# Device call 1 (carry .vx/a): unpack part A (vLLM's main CUDA extension) into VX_SITE, check that it
# loads into this machine's torch and that one of its kernels runs on the GPU, print the versions,
# start the GPU sampler, and start making the random-weight models in the background (they are made
# on the GPU, one after another, while call 2 unpacks part B; measure.sh waits for them).
#   bash bench/gpu/vllm/stage1.sh .vx/a/partA.tar.xz [SHAPE ...]   (default: qwen2.5-1.5b qwen2.5-0.5b qwen2.5-7b)
set -u
RES=${VX_HOME:-/root/vx}/res/stage1; mkdir -p "$RES"
source "$(dirname "$0")/lib.sh"
DEADLINE=240
trap 'pack stage1' EXIT
part=${1:?part A}; shift
shapes=("$@"); [ ${#shapes[@]} -gt 0 ] || shapes=(qwen2.5-1.5b qwen2.5-0.5b qwen2.5-7b)
log "stage1 on $(hostname), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GB RAM, disk: $(df -h /tmp | awk 'NR==2{print $4}') free"
start_smi "$VX_HOME/smi_stage.csv"
extract "$part" 2>&1 | tee -a "$RES/log.txt"
{
  date -u +%FT%TZ; uname -r
  nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.max.sm,power.limit --format=csv,noheader
  $PY -c "import sys, torch, triton, transformers; print(sys.version.split()[0], sys.executable, '| torch', torch.__version__, 'cuda', torch.version.cuda, '| triton', triton.__version__, '| transformers', transformers.__version__)"
  $PY -m pip list 2>/dev/null | grep -i -E "^(numpy|numba|llvmlite|aiohttp|anyio|typing.extensions|protobuf|setuptools|prometheus.client|pillow|pandas|huggingface.hub|tokenizers|safetensors|httpx|h11|uvloop|psutil|pyyaml|regex|requests|tqdm|einops|cloudpickle|msgpack|idna) "
  lscpu | grep -E "Model name|^CPU\(s\)"
} > "$RES/versions.txt" 2>&1
cat "$RES/versions.txt" >&2
# the stable-ABI extension loaded straight into torch, and one of its kernels run
$PY - "$VX_SITE" > "$RES/kernel_check.txt" 2>&1 <<'PYEOF'
import sys, time, torch
site = sys.argv[1]
t = time.time()
torch.ops.load_library(f"{site}/vllm/_C_stable_libtorch.abi3.so")
print(f"loaded in {time.time() - t:.2f}s")
x = torch.randn(8, 1536, device="cuda", dtype=torch.bfloat16)
w = torch.rand(1536, device="cuda", dtype=torch.bfloat16)
out = torch.empty_like(x)
torch.ops._C.rms_norm(out, x, w, 1e-6)
ref = (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6) * w.float()).to(x.dtype)
print("rms_norm max abs diff vs torch:", (out.float() - ref.float()).abs().max().item())
torch.cuda.synchronize()
print("OK: vLLM's _C kernels run on", torch.cuda.get_device_name(0))
PYEOF
log "kernel check exit $?"; cat "$RES/kernel_check.txt" >&2
# the models, in their own session so that they are made on past this call
margs=(); for s in "${shapes[@]}"; do margs+=("$VX_MODELS/model-$s" "$s"); done
setsid $PY "$VX_HERE/make_model.py" "${margs[@]}" > "$VX_HOME/make_model.log" 2>&1 < /dev/null &
echo $! > "$VX_HOME/make_model.pid"
log "make_model started (pid $!): ${shapes[*]}"
# wait for the first model (or an error) so that this call's output says whether making them works
mp=$(cat "$VX_HOME/make_model.pid")
for _ in $(seq 1 60); do
  grep -q -E '"params"|"exists"|Error|Traceback' "$VX_HOME/make_model.log" 2>/dev/null && break
  kill -0 "$mp" 2>/dev/null || break
  sleep 1
done
cat "$VX_HOME/make_model.log" >&2; cp "$VX_HOME/make_model.log" "$RES/" 2>/dev/null
log "stage1 done"
