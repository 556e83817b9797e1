#!/usr/bin/env python3
"""Rehearsal only (CPU machine, no vLLM): stands in front of the project's fixed-timing bench-server
so that what caplab and `vllm bench serve` ask of vLLM's own endpoints can be rehearsed with the
model's real tokenizer. Started by lib.sh's start_vllm as VX_FAKE_SERVER:

  VX_FAKE_SERVER="WORK/venv/bin/python bench/gpu/vllm/rehearsal_proxy.py --bench-server target/release/bench-server --ttft-ms 20 --itl-ms 2"
  (start_vllm appends --port P --model-name MODEL_DIR)

It starts the bench-server on port P+1 and serves on P, as vLLM would for MODEL_DIR:
  POST /tokenize           the prompt's or the chat messages' tokens (chat template, generation prompt)
                           with MODEL_DIR's tokenizer, as vLLM counts them; POST /detokenize
  GET  /v1/models          MODEL_DIR with --max-model-len (default 17408)
  GET  /metrics            vllm:prompt_tokens_total, vllm:generation_tokens_total, vllm:request_success_total
  POST /v1/chat/completions, /v1/completions
                           prompt counted (400 if prompt + max_tokens exceed the context, as vLLM), then
                           forwarded to the bench-server and streamed back, usage.prompt_tokens replaced
                           by the real count; each request's count is appended to --log (default
                           /tmp/rehearsal_prompts.tsv)
  GET  /health, /version   as vLLM
"""
import argparse
import asyncio
import json
import re
import subprocess

from aiohttp import ClientSession, ClientTimeout, web
from transformers import AutoTokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench-server", required=True, help="the bench-server binary")
    ap.add_argument("--ttft-ms", default="20")
    ap.add_argument("--itl-ms", default="2")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--model-name", required=True)
    ap.add_argument("--max-model-len", type=int, default=17408)
    ap.add_argument("--log", default="/tmp/rehearsal_prompts.tsv")
    a = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(a.model_name)
    up_port = a.port + 1
    bench = subprocess.Popen([a.bench_server, "--ttft-ms", a.ttft_ms, "--itl-ms", a.itl_ms, "--listen", f"127.0.0.1:{up_port}"])
    upstream = f"http://127.0.0.1:{up_port}"
    counters = {"vllm:prompt_tokens_total": 0, "vllm:generation_tokens_total": 0, "vllm:request_success_total": 0}
    log = open(a.log, "a")

    def flat(m):
        # content as a list of parts (`vllm bench serve`'s openai-chat): joined as vLLM does for a
        # template that prints the content as a string
        c = m.get("content")
        return dict(m, content="\n".join(p.get("text", "") for p in c)) if isinstance(c, list) else m

    def count(body):
        if "messages" in body:
            msgs = [flat(m) for m in body["messages"]]
            r = tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=body.get("add_generation_prompt", True))
            return len(r["input_ids"] if hasattr(r, "keys") else r)
        return len(tok.encode(body.get("prompt", "")))

    async def tokenize(req):
        body = await req.json()
        if "messages" in body:
            return web.json_response({"count": count(body), "max_model_len": a.max_model_len, "tokens": []})
        ids = tok.encode(body.get("prompt", ""), add_special_tokens=body.get("add_special_tokens", True))
        return web.json_response({"count": len(ids), "max_model_len": a.max_model_len, "tokens": ids})

    async def detokenize(req):
        body = await req.json()
        return web.json_response({"prompt": tok.decode(body.get("tokens", []))})

    async def models(_req):
        return web.json_response({"object": "list", "data": [{"id": a.model_name, "object": "model", "owned_by": "vllm",
                                                              "root": a.model_name, "max_model_len": a.max_model_len}]})

    async def metrics(_req):
        return web.Response(text="".join(f"# TYPE {k} counter\n{k}{{model_name=\"{a.model_name}\"}} {v}.0\n" for k, v in counters.items()))

    async def generate(req):
        raw = await req.read()
        body = json.loads(raw)
        n = count(body)
        out = body.get("max_completion_tokens") or body.get("max_tokens") or 16
        if n + out > a.max_model_len:
            return web.json_response({"error": {"message": f"This model's maximum context length is {a.max_model_len} tokens. "
                                                            f"However, you requested {n + out} tokens", "type": "BadRequestError", "code": 400}}, status=400)
        log.write(f"{req.path}\t{n}\t{out}\n")
        log.flush()
        counters["vllm:prompt_tokens_total"] += n
        async with ClientSession(timeout=ClientTimeout(total=None)) as s:
            async with s.post(upstream + req.path, data=raw, headers={"content-type": "application/json"}) as r:
                resp = web.StreamResponse(status=r.status, headers={"content-type": r.headers.get("content-type", "application/json")})
                await resp.prepare(req)
                async for chunk in r.content.iter_any():
                    await resp.write(re.sub(rb'"prompt_tokens":\s*\d+', b'"prompt_tokens":%d' % n, chunk))
                await resp.write_eof()
        counters["vllm:generation_tokens_total"] += out
        counters["vllm:request_success_total"] += 1
        return resp

    async def health(_req):
        return web.Response(text="")

    async def version(_req):
        return web.json_response({"version": "rehearsal-proxy"})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/tokenize", tokenize)
    app.router.add_post("/detokenize", detokenize)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/v1/chat/completions", generate)
    app.router.add_post("/v1/completions", generate)
    app.router.add_get("/health", health)
    app.router.add_get("/version", version)
    try:
        web.run_app(app, host="127.0.0.1", port=a.port, print=None)
    finally:
        bench.terminate()


if __name__ == "__main__":
    asyncio.set_event_loop(asyncio.new_event_loop())
    main()
