#!/usr/bin/env bash
# What 640 saved runs cost caplab serve at start and at rest (issue 7: "640 runs: 4.8 s, 433 MB").
# One sim run of 2,000 requests is made through the API, its folder copied 640 times under new
# ids, then caplab serve is started on that folder: time until it listens, its RSS, GET /api/runs.
# Usage: bench/runs-at-rest/run.sh [path/to/caplab]   (default target/release/caplab)
set -euo pipefail
BIN=${1:-target/release/caplab}
DIR=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$DIR"' EXIT
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
TOKEN=bench-token
H=(-H "Authorization: Bearer $TOKEN")
"$BIN" serve --listen 127.0.0.1:$PORT --data-dir "$DIR" --token $TOKEN --sim-itl-ms 0.2 >/dev/null 2>&1 &
until curl -sf "${H[@]}" http://127.0.0.1:$PORT/api/limits >/dev/null; do sleep 0.1; done
ID=$(curl -sf "${H[@]}" -H 'Content-Type: application/json' http://127.0.0.1:$PORT/api/runs \
  -d '{"workload":"chat","target":"sim","concurrency":[50],"max_new_tokens":[16],"requests":2000}' | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
until curl -sf "${H[@]}" http://127.0.0.1:$PORT/api/runs/$ID | grep -q '"status": *"finished"'; do sleep 0.2; done
kill %1; wait %1 2>/dev/null || true
echo "one run folder: $(du -sh "$DIR/$ID" | cut -f1) ($(($(wc -l < "$DIR/$ID/requests.csv") - 1)) requests)"
for i in $(seq 1 639); do
  new=$(printf '%s-%04x' "${ID%-*}" $i)
  [ "$new" = "$ID" ] && continue
  cp -r "$DIR/$ID" "$DIR/$new"
  sed -i "s/$ID/$new/g" "$DIR/$new/run.json" "$DIR/$new/info.json"
done
echo "runs on disk: $(ls "$DIR" | wc -l), $(du -sh "$DIR" | cut -f1)"
start=$(date +%s.%N)
"$BIN" serve --listen 127.0.0.1:$PORT --data-dir "$DIR" --token $TOKEN >/dev/null 2>&1 &
PID=$!
until curl -sf "${H[@]}" http://127.0.0.1:$PORT/api/limits >/dev/null; do sleep 0.02; done
echo "start to listening: $(python3 -c "print(round($(date +%s.%N) - $start, 2))") s"
echo "RSS after start: $(($(awk '/VmRSS/{print $2}' /proc/$PID/status) / 1024)) MB"
t=$(date +%s.%N); n=$(curl -sf "${H[@]}" http://127.0.0.1:$PORT/api/runs | python3 -c 'import json,sys;print(len(json.load(sys.stdin)))')
echo "GET /api/runs: $n runs in $(python3 -c "print(round(($(date +%s.%N) - $t)*1000))") ms"
for i in $(seq 1 50); do curl -sf "${H[@]}" -o /dev/null http://127.0.0.1:$PORT/api/runs/$ID/requests.csv; curl -sf "${H[@]}" -o /dev/null http://127.0.0.1:$PORT/api/runs/$(printf '%s-%04x' "${ID%-*}" $i); done
echo "RSS after 50 downloads and 50 run views: $(($(awk '/VmRSS/{print $2}' /proc/$PID/status) / 1024)) MB"
