#!/usr/bin/env bash
# The H200 anchor, in ONE device call (run from the repository root on the GPU machine):
#   bash bench/gpu/h200.sh
# It needs, carried with the call: target/release/caplab (built on the CPU machine with
# `cargo build --release -p caplab`) and .whl/ (wheels from bench/gpu/fetch_wheels.sh .whl).
# On the GPU machine it:
#   1. samples every GPU once a second with nvidia-smi for the whole call;
#   2. starts `transformers serve --continuous-batching --cb-use-cuda-graph` on a random-weight
#      model with Qwen2.5-1.5B-Instruct's exact shape (make_model.py, bf16);
#   3. runs the notes' chat grid (+ c64, c128) and batch grid with `caplab run`;
#   4. drives one more experiment through `caplab serve`'s HTTP and WebSocket API (api_client.py);
#   5. packs everything into $OUT/h200-anchor.tgz (one file comes back).
# Every step is time-boxed so the archive always comes back within the 10-minute call.
set -u
here=$(cd "$(dirname "$0")" && pwd); root=$(cd "$here/../.." && pwd)
out=${OUT:-/tmp/h200-out}; work=/tmp/h200-anchor; rm -rf "$work"; mkdir -p "$work/runs" "$out"
bin=$root/target/release/caplab
log() { echo "[h200 $(date -u +%T)] $*" | tee -a "$work/log.txt" >&2; }
pack() { tar czf "$out/h200-anchor.tgz" -C "$work" . ; log "packed $(du -h "$out/h200-anchor.tgz" | cut -f1)"; }
trap pack EXIT

{
  date -u +%FT%TZ; uname -a; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, '| transformers', transformers.__version__)"
  "$bin" --version
} > "$work/versions.txt" 2>&1
cat "$work/versions.txt" >&2

nvidia-smi --query-gpu=timestamp,index,name,uuid,memory.used,memory.total,utilization.gpu,power.draw,clocks.sm,temperature.gpu \
  --format=csv,nounits -lms 1000 > "$work/nvidia-smi.csv" 2>&1 &
smi=$!

log "starting transformers serve"
url=$(timeout 240 bash "$here/serve_transformers.sh" "$root/.whl" qwen2.5-1.5b 8000) || { log "server did not start"; cp /tmp/serve.log "$work/" 2>/dev/null; exit 1; }
model=/tmp/model-qwen2.5-1.5b
log "server at $url"
for probe in /v1/models /health /metrics /version; do
  echo "== GET $probe"; curl -s -i -m 5 "$url$probe" | head -c 600; echo
done > "$work/probe.txt" 2>&1

curl -s -m 60 "$url/v1/chat/completions" -H 'content-type: application/json' \
  -d "{\"model\":\"$model\",\"messages\":[{\"role\":\"user\",\"content\":\"warm up\"}],\"max_tokens\":8}" > "$work/warmup.json"
run() {  # run NAME FILE SECONDS
  log "caplab run $1"
  timeout "$3" "$bin" run "$2" --target "$url" --out "$work/runs" > "$work/$1.txt" 2> "$work/$1.log"
  log "caplab run $1 exited $?"
}
run chat_grid "$here/chat_grid_h200.toml" 300
run batch_grid "$here/batch_grid_h200.toml" 150

log "caplab serve + scripted API client"
"$bin" serve --target "$url" --listen 127.0.0.1:8090 --data-dir "$work/serve-runs" > "$work/serve.log" 2>&1 &
serve=$!
for _ in $(seq 1 50); do curl -sf 127.0.0.1:8090/api/health >/dev/null && break; sleep 0.2; done
spec=$(printf '{"workload":"chat","name":"API client on H200","model":"%s","gpu":"NVIDIA-H200-141GB","concurrency":[32],"max_new_tokens":[128],"requests":64,"warmup":4}' "$model")
timeout 90 python3 "$here/api_client.py" http://127.0.0.1:8090 "$spec" "$work" > "$work/api_client.json" 2> "$work/api_client.log"
log "api client exited $?"
kill "$serve" 2>/dev/null; wait "$serve" 2>/dev/null
cp /tmp/serve.log "$work/transformers-serve.log" 2>/dev/null
kill "$smi" 2>/dev/null
log "done"
