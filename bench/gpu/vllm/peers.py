#!/usr/bin/env python3
"""The peer comparison on a real vLLM on the H200 (issue 20, deliverable 3), run by peers.sh.

Four tools, one after another against the same vLLM, at each number of streams C: caplab, the raw
hyper client (tests/src/bin/raw-client.rs), `vllm bench serve` and GuideLLM. Every tool sends the
same load: chat on /v1/chat/completions, caplab's 16 chat prompts (data/chat_prompts.txt) as the user
message, 256 output tokens with `ignore_eos`, 2 x C requests, C at a time (closed loop). The tools'
order turns by one at each C, so no tool always runs first on a cold server.

Per tool run: CPU seconds and peak RSS of its whole process tree (bench/peers/bench.py's `measure`:
the kernel's count, or the sum of /proc readings, whichever is larger; RSS summed over the tree every
50 ms), the output tok/s the tool itself reports, its TTFT/ITL/E2E as it reports them, and vLLM's
own view from its /metrics, read every 0.25 s while the tool ran: the tokens it generated (exactly
2 x C x 256 when every request completed) and its generation rate from the first to the last
increase of `vllm:generation_tokens_total`. A tool whose own tok/s is below vLLM's rate measured the
client, not the server.

With --live C (deliverable 4), after the tools: one `caplab serve` run of C streams (chat, 256 tokens,
2 x C requests, `ignore_eos`) against the same vLLM, followed over its WebSocket by one viewer and by the
dashboard in headless Chromium (tests/src/bin/bench-live.rs: WebSocket bytes/s, the snapshot a late
viewer gets, frame times, JS heap), with `caplab serve`'s own CPU seconds and peak RSS (VmHWM) beside it.

Writes OUT/peers.json (and a copy in --mirror, the call's $OUT) after every run, so a call killed at
its limit keeps what it measured.

usage: peers.py --url URL --model PATH --caplab BIN --raw-client BIN --gsite DIR --site DIR
                --prompts data/chat_prompts.txt --out DIR --mirror DIR --deadline EPOCH_S
                [--live C --bench-live BIN] [C ...]
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "bench" / "peers"))
from bench import Proc, ServerView, cpu_ticks, measure, read_guidellm, read_vllm_bench  # noqa: E402  (as the CPU benchmark measures and reads)

TOKENS = int(os.environ.get("PEERS_TOKENS", "256"))  # a rehearsal on the CPU vLLM sets fewer
VLLM_BENCH = ("from vllm.benchmarks.serve import add_cli_args, main; "
              "from vllm.utils.argparse_utils import FlexibleArgumentParser as P; "
              "p = P(); add_cli_args(p); main(p.parse_args())")
TOOLS = ["caplab", "raw-client", "vllm bench serve", "GuideLLM"]


def prompts(path):
    return [l.strip() for l in open(path) if l.strip() and not l.lstrip().startswith("#")]


def run_caplab(a, c, out):
    spec = out / "spec.toml"
    spec.write_text(f'name = "H200 peers c{c}"\nworkload = "chat"\nmodel = "{a.model}"\ngpu = "NVIDIA-H200-141GB"\n'
                    f'mode = "closed"\nconcurrency = [{c}]\nmax_new_tokens = [{TOKENS}]\nrequests = {2 * c}\n'
                    f'warmup = 0\ntimeout_s = 300\nignore_eos = true\n')
    cmd = [a.caplab, "run", str(spec), "--target", a.url, "--model", a.model, "--out", str(out / "runs")]
    rc, so, se, cpu, rss, wall = measure(cmd, timeout=a.timeout)
    res = {"cmd": cmd, "rc": rc, "cpu_s": cpu, "rss_mb": rss, "wall_s": wall,
           "prompts": "caplab's 16 chat prompts (built in: data/chat_prompts.txt)"}
    runs = list((out / "runs").glob("*/run.json"))
    if runs:
        cell = json.loads(runs[0].read_text())["cells"][0]
        res.update(completed=cell["requests_ok"], failed=cell["requests_failed"], tok_s=cell["output_tok_s"],
                   ttft=cell["ttft"], itl=cell["itl"], e2e=cell["e2e"])
    else:
        res["error"] = (se or so)[-800:]
    return res


def run_raw(a, c, out):
    cmd = [a.raw_client, a.url, str(c), str(2 * c), str(TOKENS), a.model, a.prompts]
    rc, so, se, cpu, rss, wall = measure(cmd, timeout=a.timeout)
    res = {"cmd": cmd, "rc": rc, "cpu_s": cpu, "rss_mb": rss, "wall_s": wall, "prompts": a.prompts + ", in turn"}
    try:
        r = json.loads(so.strip().splitlines()[-1])
        res.update(completed=r["completed"], failed=r["failed"], ttft=r["ttft_ms"], itl=r["itl_ms"], e2e=r["e2e_ms"],
                   tok_s=TOKENS * r["completed"] / r["wall_s"])
    except Exception:  # noqa: BLE001
        res["error"] = (se or so)[-800:]
    return res


def run_vllm_bench(a, c, out):
    cmd = [a.vllm_python, "-c", VLLM_BENCH, "--backend", "openai-chat", "--endpoint", "/v1/chat/completions",
           "--base-url", a.url, "--model", a.model, "--tokenizer", a.tokenizer,
           "--dataset-name", "custom", "--dataset-path", a.prompts_jsonl, "--custom-output-len", str(TOKENS),
           "--skip-chat-template", "--seed", "0", "--max-concurrency", str(c), "--num-prompts", str(2 * c),
           "--num-warmups", "0", "--ignore-eos", "--disable-tqdm", "--percentile-metrics", "ttft,tpot,itl,e2el",
           "--metric-percentiles", "50,99", "--save-result", "--result-dir", str(out), "--result-filename", "vllm.json"]
    rc, so, se, cpu, rss, wall = measure(cmd, env={"PYTHONPATH": a.site}, timeout=a.timeout)
    res = {"cmd": cmd, "rc": rc, "cpu_s": cpu, "rss_mb": rss, "wall_s": wall,
           "prompts": "the same 16 prompts (--dataset-name custom, sampled with replacement)"}
    return read_vllm_bench(out / "vllm.json", res, so, se)


def run_guidellm(a, c, out):
    path = out / "guidellm.json"
    # GuideLLM sends each row of its data once: 2 x C rows, the prompts in turn
    rows = [json.loads(l) for l in open(a.prompts_guidellm)]
    data = out / "prompts_guidellm.jsonl"
    data.write_text("".join(json.dumps(rows[i % len(rows)]) + "\n" for i in range(2 * c)))
    cmd = [a.guidellm_python, "-m", "guidellm", "run",
           "--backend", f"kind=openai_http,target={a.url},request_format=/v1/chat/completions",
           "--profile", f"kind=concurrent,streams={c}", "--constraint", f"kind=max_requests,count={2 * c}",
           "--data", f"kind=json_file,path={data}", "--tokenizer", f"kind=huggingface_auto,model={a.tokenizer}",
           "--output", f"kind=json,path={path}", "--disable-console-interactive"]
    env = {"PYTHONPATH": f"{a.gsite}:{a.site}"}
    rc, so, se, cpu, rss, wall = measure(cmd, env=env, timeout=a.timeout)
    res = {"cmd": cmd, "rc": rc, "cpu_s": cpu, "rss_mb": rss, "wall_s": wall,
           "prompts": "the same 16 prompts (a JSONL file, prompt + output_tokens_count 256: max_tokens and ignore_eos)"}
    return read_guidellm(path, res, so, se)


def peak_rss_mb(pid):
    """The process's peak resident memory (the kernel's high-water mark)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def live_path(a, c):
    """`caplab serve` at C streams with a WebSocket viewer and the dashboard in headless Chromium."""
    data = tempfile.mkdtemp(prefix="live-", dir=a.out)
    res = {"tool": "caplab serve + dashboard (live path)", "streams": c, "requests": 2 * c, "max_tokens": TOKENS}
    try:
        serve = Proc([a.caplab, "serve", "--listen", "127.0.0.1:0", "--no-auth", "--target", f"vllm={a.url}", "--data-dir", data],
                     r"(http://127\.0\.0\.1:[0-9]+)")
    except RuntimeError as e:
        res["error"] = str(e)
        return res
    hz = os.sysconf("SC_CLK_TCK")
    try:
        cpu0 = cpu_ticks(serve.p.pid)
        expected_s = 2 * c * TOKENS / 14_000 + 3
        cmd = [a.bench_live, serve.url, "vllm", "closed", str(c), str(2 * c), str(TOKENS), a.model, f"{expected_s:.0f}"]
        with ServerView(a.url) as view:
            rc, so, se, cpu, rss, wall = measure(cmd, timeout=min(300, a.deadline - time.time()))
        res.update(view.summary(), cmd=cmd, rc=rc, viewer_cpu_s=cpu, viewer_rss_mb=rss, wall_s=wall,
                   caplab_serve_cpu_s=(cpu_ticks(serve.p.pid) - cpu0) / hz, caplab_serve_peak_rss_mb=peak_rss_mb(serve.p.pid))
        try:
            res.update(json.loads(so.strip().splitlines()[-1]))
        except Exception:  # noqa: BLE001
            res["error"] = (se or so)[-1500:]
        res["stderr_tail"] = se[-1500:]
    finally:
        serve.stop()
        Path(serve.log.name).replace(Path(a.out) / "caplab_serve.log")
    return res


RUN = {"caplab": run_caplab, "raw-client": run_raw, "vllm bench serve": run_vllm_bench, "GuideLLM": run_guidellm}


def main():
    ap = argparse.ArgumentParser()
    for k in ("url", "model", "caplab", "raw-client", "gsite", "site", "prompts", "out"):
        ap.add_argument(f"--{k}", required=True)
    ap.add_argument("--deadline", type=float, required=True, help="epoch seconds: start no tool run that cannot end before it")
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--mirror", default="")
    # rehearsals here: the venvs' Pythons (on the H200 the image's python3 runs both)
    ap.add_argument("--tokenizer", default="", help="default: --model (vLLM serves the model's folder)")
    ap.add_argument("--vllm-python", default=sys.executable)
    ap.add_argument("--guidellm-python", default=sys.executable)
    ap.add_argument("--live", type=int, default=0)
    ap.add_argument("--bench-live", default="")
    ap.add_argument("streams", type=int, nargs="*")
    a = ap.parse_args()
    a.tokenizer = a.tokenizer or a.model
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    ps = prompts(a.prompts)
    a.prompts_jsonl = str(out / "prompts.jsonl")
    a.prompts_guidellm = str(out / "prompts_guidellm.jsonl")
    Path(a.prompts_jsonl).write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ps))
    Path(a.prompts_guidellm).write_text("".join(json.dumps({"prompt": p, "output_tokens_count": TOKENS}) + "\n" for p in ps))
    results_file = out / "peers.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else []
    tools = a.tools.split(",")

    def save():
        text = json.dumps(results, indent=1)
        results_file.write_text(text)
        if a.mirror:
            Path(a.mirror).mkdir(parents=True, exist_ok=True)
            (Path(a.mirror) / "peers.json").write_text(text)

    # the live path's time, kept free of the tools' runs
    live_need = 2 * a.live * TOKENS / 10_000 + 40 if a.live else 0
    for i, c in enumerate(a.streams):
        order = tools[i % len(tools):] + tools[:i % len(tools)]
        for tool in order:
            # ~12,000 tok/s at these loads, + 25 s for a Python tool's imports and start
            need = 2 * c * TOKENS / 10_000 + 25
            left = a.deadline - time.time() - live_need
            if left < need:
                print(f"[peers] c{c} {tool}: skipped, {left:.0f} s left, {need:.0f} s needed", flush=True)
                continue
            a.timeout = min(300, left - 5)
            print(f"[peers] c{c} {tool} ...", flush=True)
            with tempfile.TemporaryDirectory(dir=out) as d:
                with ServerView(a.url) as view:
                    r = RUN[tool](a, c, Path(d))
            r.update(view.summary(), tool=tool, streams=c, requests=2 * c, max_tokens=TOKENS)
            results.append(r)
            save()
            print(f"[peers] c{c} {tool}: rc {r['rc']}, {r.get('completed')} ok, {r.get('failed')} failed, tool {r.get('tok_s') or 0:,.0f} tok/s, "
                  f"vLLM {r.get('server_tok_s') or 0:,.0f} tok/s ({r.get('server_generated_tokens')} tokens), "
                  f"{r['cpu_s']:.1f} CPU-s, {r['rss_mb']:.0f} MB, {r['wall_s']:.1f} s {r.get('error', '')[-300:]}", flush=True)

    if a.live:
        print(f"[peers] live path: caplab serve at {a.live} streams, a viewer, headless Chromium ...", flush=True)
        r = live_path(a, a.live)
        results.append(r)
        save()
        print(f"[peers] live path: {json.dumps({k: v for k, v in r.items() if k not in ('cmd', 'spec', 'stderr_tail')})[:1500]}", flush=True)
        if "error" in r:
            print(r.get("stderr_tail", ""), flush=True)


if __name__ == "__main__":
    main()
