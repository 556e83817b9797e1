#!/usr/bin/env python3
"""A scripted client of `caplab serve`: starts one experiment over the HTTP API, follows it over
the run's WebSocket until it ends (standard library only: a minimal RFC 6455 client), fetches the
summary CSV, and prints a JSON report of what it saw.

usage: api_client.py CAPLAB_URL SPEC_JSON OUT_DIR
"""
import base64
import json
import os
import socket
import sys
import time
import urllib.request
from urllib.parse import urlparse


def http(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.read()


def ws_messages(url):
    """Yields the text messages of a ws:// URL until the server closes it."""
    u = urlparse(url)
    sock = socket.create_connection((u.hostname, u.port), timeout=60)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(4096)
    head, buf = buf.split(b"\r\n\r\n", 1)
    assert b" 101 " in head.split(b"\r\n")[0], head

    def read(n):
        nonlocal buf
        while len(buf) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError
            buf += chunk
        out, buf = buf[:n], buf[n:]
        return out

    message = b""
    while True:
        try:
            b0, b1 = read(2)
        except EOFError:
            return
        opcode, length = b0 & 0x0F, b1 & 0x7F
        if length == 126:
            length = int.from_bytes(read(2), "big")
        elif length == 127:
            length = int.from_bytes(read(8), "big")
        payload = read(length)
        if opcode == 8:  # close
            return
        if opcode == 9:  # ping: answer with a masked pong
            mask = os.urandom(4)
            sock.sendall(bytes([0x8A, 0x80 | len(payload)]) + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload)))
            continue
        if opcode in (0, 1, 2):
            message += payload
            if b0 & 0x80:
                yield message.decode()
                message = b""


def main():
    base, spec, out = sys.argv[1].rstrip("/"), json.loads(sys.argv[2]), sys.argv[3]
    t0 = time.time()
    status, body = http("POST", f"{base}/api/runs", spec)
    assert status == 201, (status, body)
    info = json.loads(body)
    run_id = info["id"]
    kinds, first_snapshot_bytes, last_tick, final = {}, None, None, None
    for text in ws_messages(f"ws://{urlparse(base).netloc}/api/runs/{run_id}/ws"):
        msg = json.loads(text)
        kind = msg.get("type") or next(iter(msg))
        kinds[kind] = kinds.get(kind, 0) + 1
        if first_snapshot_bytes is None:
            first_snapshot_bytes = len(text)
        if kind == "tick":
            last_tick = msg.get("tick")
        if kind == "status" and msg.get("status") != "running":
            final = msg
            break
    _, summary = http("GET", f"{base}/api/runs/{run_id}/summary.csv")
    with open(os.path.join(out, "api_run_summary.csv"), "wb") as f:
        f.write(summary)
    _, view = http("GET", f"{base}/api/runs/{run_id}")
    view = json.loads(view)
    report = {
        "run_id": run_id,
        "target": info["target"],
        "messages_by_type": kinds,
        "first_snapshot_bytes": first_snapshot_bytes,
        "final_status": final,
        "last_tick": last_tick,
        "cells": [{k: c[k] for k in ("concurrency", "max_new_tokens", "requests_ok", "requests_failed", "completion_tokens",
                                     "output_tok_s", "short_outputs", "done_markers")} for c in view["cells"]],
        "wall_s": round(time.time() - t0, 2),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
