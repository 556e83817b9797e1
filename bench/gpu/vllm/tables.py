#!/usr/bin/env python3
"""Markdown tables for an anchor folder (data/anchors/h200-vllm-0.26-MODEL/), from caplab's run folders
and `vllm bench serve`'s result JSONs in it. Prints to stdout; the anchors' README.md tables were made
with it.

usage: tables.py ANCHOR_DIR

(An input-lengths anchor, h200-vllm-0.26-MODEL-input-lengths/: chat_input_len/ and vllm_bench/random_input_len_*.)
"""
import csv
import json
import os
import sys


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def f(x, nd=0):
    if x in (None, ""):
        return "-"
    v = float(x)
    return f"{v:,.{nd}f}"


def bench(d, name, c):
    p = os.path.join(d, "vllm_bench", f"{name}_c{c}.json")
    if not os.path.exists(p):
        return None
    with open(p) as fh:
        return json.load(fh)


def chat_table(d, out_len, run):
    s = rows(os.path.join(d, run, "summary.csv"))
    head = ("| cell | ok/failed | out tok/s | TTFT p50 / p95 ms | TPOT p50 ms | E2E p95 ms | max KV % | preempt |"
            + (" vllm bench random: out tok/s | TTFT p50 / p95 | TPOT p50 | E2E p95 | caplab prompts: out tok/s | TTFT p50 | TPOT p50 |"
               if out_len == 128 else ""))
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in s:
        c = int(r["concurrency"])
        line = (f"| c{c} × {r['max_new_tokens']} | {r['requests_ok']}/{r['requests_failed']} | {f(r['throughput_tok_s'])} | "
                f"{f(r['ttft_p50_ms'])} / {f(r['ttft_p95_ms'])} | {f(r['tpot_p50_ms'], 2)} | {f(r['p95_latency_ms'])} | "
                f"{f(float(r['server_max_kv_usage'] or 0) * 100, 1)} | {f(r['server_preemptions'])} |")
        if out_len == 128:
            b = bench(d, "random_128", c)
            k = bench(d, "caplab_128", c)
            line += (f" {f(b['output_throughput'])} | {f(b['median_ttft_ms'])} / {f(b['p95_ttft_ms'])} | "
                     f"{f(b['median_tpot_ms'], 2)} | {f(b['p95_e2el_ms'])} |" if b else " - | - | - | - |")
            line += (f" {f(k['output_throughput'])} | {f(k['median_ttft_ms'])} | {f(k['median_tpot_ms'], 2)} |"
                     if k else " - | - | - |")
        print(line)


def plain_table(d, run):
    s = rows(os.path.join(d, run, "summary.csv"))
    print("| cell | ok/failed | out tok/s | TTFT p50 / p95 ms | TPOT p50 ms | E2E p95 ms | max KV % | preempt | max waiting |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in s:
        print(f"| c{r['concurrency']} × {r['max_new_tokens']} | {r['requests_ok']}/{r['requests_failed']} | "
              f"{f(r['throughput_tok_s'])} | {f(r['ttft_p50_ms'])} / {f(r['ttft_p95_ms'])} | {f(r['tpot_p50_ms'], 2)} | "
              f"{f(r['p95_latency_ms'])} | {f(float(r['server_max_kv_usage'] or 0) * 100, 1)} | "
              f"{f(r['server_preemptions'])} | {f(r['server_max_waiting'])} |")


def input_len_table(d, run="chat_input_len"):
    """caplab's chat at several prompt lengths with `vllm bench serve` (random, --random-input-len N) at
    the same points; prompt tokens per request as vLLM counted them (caplab: its usage.prompt_tokens;
    bench: vllm:prompt_tokens_total over the point, bench_loop.py's NAME_counted.json)."""
    s = rows(os.path.join(d, run, "summary.csv"))
    counted = {}
    p = os.path.join(d, "vllm_bench", "random_input_len_counted.json")
    if os.path.exists(p):
        with open(p) as fh:
            counted = {k.replace("bench_", "", 1): v for k, v in json.load(fh).items()}
    head = ("| cell | input tokens | ok/failed | prompt tokens (vLLM) | out tok/s | TTFT p50 / p95 ms | TPOT p50 ms | E2E p95 ms | max KV % | "
            "preempt | vllm bench random: prompt tokens (vLLM) | out tok/s | TTFT p50 / p95 | TPOT p50 | E2E p95 |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in s:
        c, n = int(r["concurrency"]), int(r["input_tokens"])
        ok = int(r["requests_ok"])
        line = (f"| c{c} × {r['max_new_tokens']} | {n:,} | {ok}/{r['requests_failed']} | "
                f"{f(float(r['prompt_tokens']) / ok if ok else None)} | {f(r['throughput_tok_s'])} | "
                f"{f(r['ttft_p50_ms'])} / {f(r['ttft_p95_ms'])} | {f(r['tpot_p50_ms'], 2)} | {f(r['p95_latency_ms'])} | "
                f"{f(float(r['server_max_kv_usage'] or 0) * 100, 1)} | {f(r['server_preemptions'])} |")
        name = f"random_input_len_c{c}_in{n}.json"
        b = bench(d, "random_input_len", f"{c}_in{n}")
        k = counted.get(name)
        if b:
            pt = k["prompt_tokens_vllm"] / b["completed"] if k and b["completed"] else None
            line += (f" {f(pt)} | {f(b['output_throughput'])} | {f(b['median_ttft_ms'])} / {f(b['p95_ttft_ms'])} | "
                     f"{f(b['median_tpot_ms'], 2)} | {f(b['p95_e2el_ms'])} |")
        else:
            line += " - | - | - | - | - |"
        print(line)


def main():
    d = sys.argv[1]
    if os.path.exists(os.path.join(d, "chat_input_len", "summary.csv")):
        print("### Chat at input lengths 128 – 16k, 128 output tokens (caplab) with `vllm bench serve` beside it\n")
        input_len_table(d)
        print()
    for run, title in [("chat_128", "Chat grid, 128 output tokens (caplab) with `vllm bench serve` beside it"),
                       ("chat_256", "Chat grid, 256 output tokens (caplab)")]:
        if os.path.exists(os.path.join(d, run, "summary.csv")):
            print(f"### {title}\n")
            chat_table(d, 128 if run == "chat_128" else 256, run)
            print()
    for run, title in [("batch", "Batch grid (caplab, the notes' grid)"), ("small_kv", "Small KV cache (caplab)"),
                       ("chat_128_repeat", "Chat grid, 128 output tokens, repeated on a fresh server (caplab)")]:
        if os.path.exists(os.path.join(d, run, "summary.csv")):
            print(f"### {title}\n")
            plain_table(d, run)
            print()


if __name__ == "__main__":
    main()
