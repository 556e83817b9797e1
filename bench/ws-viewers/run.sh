#!/usr/bin/env bash
# caplab serve's memory with N live views (WebSockets) that read nothing, and after they close
# (issue 18: 2,000 such viewers took RSS from 27 MB to 683 MB, about 330 KB a socket for a 33 KB
# snapshot, and it stayed there after they closed).
# One sim run (a 4-cell grid) is made through the API; then N sockets are opened on it, each
# reading only the 101 answer, held 5 s, and closed; twice, to show the memory is reused.
# Usage: bench/ws-viewers/run.sh [path/to/caplab] [N]   (default target/release/caplab, 2000)
set -euo pipefail
BIN=${1:-target/release/caplab}
N=${2:-2000}
DIR=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$DIR"' EXIT
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
TOKEN=bench-token
H=(-H "Authorization: Bearer $TOKEN")
# Caps above N, so that every socket is accepted and the figure is per socket.
"$BIN" serve --listen 127.0.0.1:$PORT --data-dir "$DIR" --token $TOKEN --sim-itl-ms 0.2 \
  --max-connections $((N + 100)) --max-websockets $((N + 50)) --max-connections-per-client $((N + 100)) >/dev/null 2>&1 &
PID=$!
until curl -sf "${H[@]}" http://127.0.0.1:$PORT/api/limits >/dev/null; do sleep 0.1; done
rss() { echo $(($(awk '/VmRSS/{print $2}' /proc/$PID/status) / 1024)); }
ID=$(curl -sf "${H[@]}" -H 'Content-Type: application/json' http://127.0.0.1:$PORT/api/runs \
  -d '{"workload":"chat","target":"sim","concurrency":[1,2,4,8],"max_new_tokens":[16],"requests":200}' | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
until curl -sf "${H[@]}" http://127.0.0.1:$PORT/api/runs/$ID | grep -q '"status": *"finished"'; do sleep 0.2; done
echo "snapshot: $(curl -sf "${H[@]}" http://127.0.0.1:$PORT/api/runs/$ID | wc -c) bytes of JSON"
echo "RSS before the viewers: $(rss) MB"
python3 - "$PORT" "$ID" "$TOKEN" "$N" "$PID" <<'PY'
import os, resource, socket, sys, time
port, rid, token, n, pid = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
rss = lambda: int(next(l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")).split()[1]) // 1024
req = (f"GET /api/runs/{rid}/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
       "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode()
for round in (1, 2):
    socks, t = [], time.time()
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(req)
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)  # the 101 answer only, byte by byte: nothing of the snapshot
        assert head.startswith(b"HTTP/1.1 101"), head[:80]
        socks.append(s)
    print(f"round {round}: {n} viewers open in {time.time() - t:.1f} s")
    time.sleep(5)
    print(f"round {round}: RSS with {n} viewers that read nothing: {rss()} MB")
    for s in socks:
        s.close()
    time.sleep(3)
    print(f"round {round}: RSS 3 s after they closed: {rss()} MB")
PY
