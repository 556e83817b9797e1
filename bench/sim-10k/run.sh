#!/usr/bin/env bash
# 10,000 concurrent streams against the simulator on this machine (issue: "10,000 simulated
# streams on this 2-core machine"): `caplab sim` (H200 + Qwen2.5-0.5B profile, 10,000 sequence
# slots, with the simulator's assumed costs: the calibrated ones pace 10,000 streams as vLLM's
# single-process engine core and API server would, and this measures caplab, not vLLM) and
# `caplab run` with 10,000 workers, one request each, 64 new tokens. Prints the wall time, every
# request's outcome, and both processes' peak RSS.
# Usage: bench/sim-10k/run.sh [path/to/caplab]   (default target/release/caplab)
set -euo pipefail
BIN=${1:-target/release/caplab}
DIR=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$DIR"' EXIT
"$BIN" sim --listen 127.0.0.1:0 --gpu h200-141gb --model qwen2.5-0.5b --max-num-seqs 10000 --max-num-batched-tokens 65536 --assumed-costs > "$DIR/sim.out" &
SIM=$!
until grep -q http:// "$DIR/sim.out" 2>/dev/null; do sleep 0.1; done
URL=$(grep -o 'http://[0-9.:]*' "$DIR/sim.out" | head -1)
cat > "$DIR/e.toml" <<TOML
workload = "chat"
model = "Qwen/Qwen2.5-0.5B-Instruct"
concurrency = [10000]
max_new_tokens = [64]
requests = 10000
timeout_s = 600
TOML
start=$(date +%s.%N)
"$BIN" run "$DIR/e.toml" --target "$URL" --out "$DIR/runs" > "$DIR/run.out" 2> "$DIR/run.err" &
RUN=$!
peak_run=0; peak_sim=0
while kill -0 $RUN 2>/dev/null; do
  r=$(awk '/VmHWM/{print $2}' /proc/$RUN/status 2>/dev/null || echo 0); [ "${r:-0}" -gt $peak_run ] && peak_run=$r
  s=$(awk '/VmHWM/{print $2}' /proc/$SIM/status 2>/dev/null || echo 0); [ "${s:-0}" -gt $peak_sim ] && peak_sim=$s
  sleep 0.2
done
wait $RUN || true
echo "wall: $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s"
grep -E "^c10000" "$DIR/run.out" || tail -5 "$DIR/run.err"
echo "peak RSS: caplab run $((peak_run / 1024)) MB, caplab sim $((peak_sim / 1024)) MB"
