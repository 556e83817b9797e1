#!/usr/bin/env bash
# GPU telemetry on a real GPU, in ONE device call (run from the repository root on the GPU machine):
#   bash bench/gpu/telemetry_h200.sh
# Carry target/release/caplab and .whl/ (bench/gpu/fetch_wheels.sh .whl). It starts
# `transformers serve` on the Qwen2.5-1.5B-shaped random model, then runs one small chat grid
# with caplab reading the GPU through NVML, and the same grid reading it through nvidia-smi
# (CAPLAB_GPU_READER=nvidia-smi), and packs both runs' folders into $OUT/telemetry.tgz.
set -u
here=$(cd "$(dirname "$0")" && pwd); root=$(cd "$here/../.." && pwd)
out=${OUT:-/tmp/telemetry-out}; work=/tmp/telemetry; rm -rf "$work"; mkdir -p "$work" "$out"
bin=$root/target/release/caplab
log() { echo "[telemetry $(date -u +%T)] $*" | tee -a "$work/log.txt" >&2; }
trap 'tar czf "$out/telemetry.tgz" -C "$work" .' EXIT
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$work/gpu.txt" 2>&1
ls -l /usr/lib/x86_64-linux-gnu/libnvidia-ml* /usr/lib64/libnvidia-ml* 2>/dev/null >> "$work/gpu.txt"
url=$(timeout 240 bash "$here/serve_transformers.sh" "$root/.whl" qwen2.5-1.5b 8000) || { log "server did not start"; cp /tmp/serve.log "$work/"; exit 1; }
model=/tmp/model-qwen2.5-1.5b
cat > "$work/grid.toml" <<TOML
workload = "chat"
model = "$model"
gpu = "NVIDIA-H200-141GB"
concurrency = [1, 16, 64]
max_new_tokens = [128]
requests_per_worker = 2
TOML
log "NVML run"
timeout 280 "$bin" run "$work/grid.toml" --target "$url" --out "$work/nvml" > "$work/nvml.txt" 2> "$work/nvml.log"
log "exited $?"
log "nvidia-smi run"
CAPLAB_GPU_READER=nvidia-smi timeout 280 "$bin" run "$work/grid.toml" --target "$url" --out "$work/smi" > "$work/smi.txt" 2> "$work/smi.log"
log "exited $?"
cp /tmp/serve.log "$work/transformers-serve.log" 2>/dev/null
