#!/usr/bin/env python3
"""The H200 peer comparison (peers.py's peers.json) as markdown: BENCHMARKS.md's "On a real GPU"
section (bench/peers/bench.py imports `section`), or printed:

  peers_report.py data/anchors/h200-vllm-0.26-qwen2.5-1.5b-peers/peers.json
"""
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "bench" / "peers"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import f0, f1  # noqa: E402
from peers import TOOLS  # noqa: E402


def span(lo_hi, fmt):
    lo, hi = (fmt(v) for v in lo_hi)
    return lo if lo == hi else f"{lo}–{hi}"


def both(runs, key, fmt=f0):
    return " · ".join(fmt(r.get(key)) for r in runs)


def complete(r):
    """A run that sent the whole load (GuideLLM's first runs sent each of its 16 data rows once)."""
    return r.get("completed") == r.get("requests") and not r.get("error")


def section(path):
    p = Path(path).resolve()
    if not p.exists():
        return []
    if p.is_relative_to(ROOT):
        p = p.relative_to(ROOT)
    rows = json.loads((ROOT / p).read_text())
    tools = [r for r in rows if r.get("tool") in TOOLS]
    live = [r for r in rows if r.get("tool", "").startswith("caplab serve")]
    short = [r for r in tools if not complete(r)]
    kept = [r for r in tools if complete(r)]
    streams = sorted({r["streams"] for r in kept})
    exact = all(r.get("server_generated_tokens") == r["requests"] * r["max_tokens"] for r in kept)
    counted = ("the tokens it counted were exactly 2 × C × 256 in every run below" if exact
               else "the tokens it counted in each run are in peers.json (`server_generated_tokens`)")
    out = ["## On a real GPU: vLLM 0.26 on an H200, four tools side by side", "",
           f"From `{p}` (made by `bench/gpu/vllm/peers.sh`, calls in bench/gpu/vllm/README.md), 2026-12-03: vLLM 0.26.0 serving "
           "a random-weight model of Qwen2.5-1.5B's exact shape (bf16, `--max-model-len 4096`, defaults otherwise) on one "
           "NVIDIA H200, each tool a process on the same 16-core host, one after another against the same server. Every "
           "tool sends the same load: chat on `/v1/chat/completions`, caplab's 16 chat prompts (`data/chat_prompts.txt`) "
           "as the user message, 256 output tokens with `ignore_eos`, 2 × C requests, C at a time. Each tool's prompt "
           "source: caplab its built-in chat prompts (that file); the raw client the file, in turn; `vllm bench serve` the "
           "same 16 as `--dataset-name custom`, sampled with replacement; GuideLLM a JSONL of them, 2 × C rows, with "
           "`output_tokens_count` 256 (it then sets `max_tokens` and `ignore_eos`). The tools' order turns at each C; "
           "each point ran twice (two rounds, the second in another order): both runs are shown, first · second.", "",
           "**vLLM's own rate** is its `vllm:generation_tokens_total` read every 0.25 s while the tool ran, from the first "
           f"to the last increase; {counted}. CPU-s and peak RSS: the tool's whole process tree (as on the CPU machine).", "",
           "| streams | tool | requests ok | its output tok/s | vLLM's rate while it ran (tok/s) | CPU-s | peak RSS (MB) | its TTFT p50 (ms) |",
           "|---|---|---|---|---|---|---|---|"]
    for c in streams:
        for tool in TOOLS:
            runs = [r for r in kept if r["streams"] == c and r["tool"] == tool]
            if not runs:
                continue
            ttft = " · ".join(f0((r.get("ttft") or {}).get("p50")) for r in runs)
            out.append(f"| {c:,} | {tool} | {both(runs, 'completed')} | {both(runs, 'tok_s')} | {both(runs, 'server_tok_s')} | "
                       f"{both(runs, 'cpu_s', f1)} | {both(runs, 'rss_mb')} | {ttft} |")
    out.append("")
    if short:
        out += [f"Left out: {len(short)} runs of GuideLLM that sent only {short[0].get('completed')} requests each (its data "
                "file then held the 16 prompts once, and GuideLLM sends each row once); they ran again with 2 × C rows.", ""]


    def rate(tool, c):
        return [r["server_tok_s"] for r in kept if r["tool"] == tool and r["streams"] == c and r.get("server_tok_s")]

    agree = [abs(r["tok_s"] / r["server_tok_s"] - 1) for r in kept if r.get("server_tok_s") and r.get("tok_s")]
    # per C: the largest difference between one tool's two runs, and between the tools' means
    within = max(((max(v) / min(v) - 1, t, c) for c in streams for t in TOOLS if len(v := rate(t, c)) > 1), default=None)
    between = max(((max(m) / min(m) - 1, c) for c in streams
                   if len(m := [statistics.mean(v) for t in TOOLS if (v := rate(t, c))]) > 1), default=None)
    top = max(streams) if streams else 0
    cost = {t: [r for r in kept if r["tool"] == t and r["streams"] == top] for t in TOOLS}
    cpu = {t: (min(r["cpu_s"] for r in rs), max(r["cpu_s"] for r in rs)) for t, rs in cost.items() if rs}
    rss = {t: (min(r["rss_mb"] for r in rs), max(r["rss_mb"] for r in rs)) for t, rs in cost.items() if rs}
    cores = [r["cpu_s"] / r["wall_s"] for r in kept if r["tool"] == "vllm bench serve" and r.get("wall_s")]
    out += ["What this run shows:", ""]
    if agree:
        out.append(f"- **Every tool reported what the server made.** Its own output tok/s and vLLM's rate while it ran agree "
                   f"within {statistics.median(agree) * 100:.1f} % (median; at most {max(agree) * 100:.0f} %, in the shortest runs, "
                   "where the 0.25 s reading of vLLM's counter is a tenth of the run).")
    if within and between:
        headline = "more between runs than between tools" if within[0] > between[0] else "between runs, and between tools"
        out.append(f"- **The server's own rate moved {headline}.** Between the two runs of one "
                   f"tool vLLM's rate differed by up to {within[0] * 100:.0f} % ({within[1]}, {within[2]:,} streams"
                   + ("; the raw client costs next to nothing, so that is the server's own spread" if within[1] == "raw-client" else "")
                   + f"); the tools' means at one C differ by "
                   f"up to {between[0] * 100:.0f} % ({between[1]:,} streams). Two runs per tool cannot rank them by throughput. "
                   "This run does not reproduce the earlier session's reading (`vllm bench serve` about 22 % below the "
                   "server at 256 and 512 streams, one core at 100 %): here `vllm bench serve`'s CPU-s over its wall time, "
                   f"imports included, was {min(cores):.2f}–{max(cores):.2f} cores.")
    if cpu:
        overlap = "caplab" in cpu and "raw-client" in cpu and cpu["caplab"][0] <= cpu["raw-client"][1] and cpu["raw-client"][0] <= cpu["caplab"][1]
        out.append(f"- **What each tool costs to drive the same {top:,}-stream load** (two runs): " + "; ".join(
            f"{t} {span(cpu[t], f1)} CPU-s and {span(rss[t], f0)} MB" for t in TOOLS if t in cpu) +
            (". caplab's CPU lies within the raw client's run-to-run range" if overlap else ". caplab's CPU is outside the raw client's range") +
            ", a fraction of the Python tools'; its RSS is the raw client's plus what it keeps (every request's sample, for "
            "exact percentiles and requests.csv).")
    out.append("")
    for r in live:
        if r.get("error") or r.get("rc") != 0:
            out += [f"Live path: failed: {str(r.get('error'))[-300:]}", ""]
            continue
        ws, fr = r["ws_bytes_per_s"], r["frame_ms"]
        heap = lambda b: "–" if b is None else f"{b / 1e6:,.1f} MB"
        out += [f"### The live path at {r['streams']:,} streams on the H200", "",
                f"One `caplab serve` run of {r['streams']:,} streams (chat, 256 tokens, {r['requests']:,} requests, `ignore_eos`) "
                f"against the same vLLM, one WebSocket viewer from the start and the dashboard open in headless Chromium "
                f"(Debian's 156, carried) on the same host: {r['requests_ok']:,} ok, {r['requests_failed']} failed, "
                f"{f0(r.get('output_tok_s'))} output tok/s by caplab, {f0(r.get('server_tok_s'))} by vLLM's counter, "
                f"peak concurrency {r.get('peak_concurrency')}, {r['run_s']:.0f} s.", "",
                "| what | measured |", "|---|---|",
                f"| WebSocket bytes/s, one viewer (1 s windows: p50 / p95 / max) | {f0(ws.get('p50'))} / {f0(ws.get('p95'))} / {f0(ws.get('max'))} B/s |",
                f"| first snapshot / a late viewer's (joining at {r['late_snapshot_at_s']:.0f} s) | {r['first_snapshot_bytes']:,} B / {r['late_snapshot_bytes']:,} B |",
                f"| dashboard frame time (requestAnimationFrame gaps, {r['frames']:,} frames: p50 / p95 / max) | {f1(fr.get('p50'))} / {f1(fr.get('p95'))} / {f1(fr.get('max'))} ms |",
                f"| page JS heap, early → late | {heap(r.get('heap_early_bytes'))} → {heap(r.get('heap_late_bytes'))} |",
                f"| `caplab serve` during the run: CPU-s / peak RSS | {f1(r.get('caplab_serve_cpu_s'))} / {f0(r.get('caplab_serve_peak_rss_mb'))} MB |",
                "", f"The run's folder, as `caplab serve` saved it: `{p.parent / 'live_run'}`.", ""]
    return out


if __name__ == "__main__":
    print("\n".join(section(sys.argv[1])))
