#!/usr/bin/env python3
"""Run `vllm bench serve` at several concurrencies in one Python process (on the GPU machine).

Each point is exactly what the CLI would run (`vllm bench serve ARGS`: vLLM's own argument parser
and `main`, imported once instead of once per point, which saves ~10 s of imports per point):

  --backend openai-chat --endpoint /v1/chat/completions --base-url URL --model M --tokenizer M
  --max-concurrency C --num-prompts 2C --num-warmups 0 --ignore-eos --disable-tqdm
  --percentile-metrics ttft,tpot,itl,e2el --metric-percentiles 50,90,95,99
  --save-result --result-dir OUT --result-filename NAME_cC.json
  and, by --dataset:
    random: --dataset-name random --random-input-len N --random-output-len L --random-range-ratio 0
            --seed C (a different seed per point, so that no point re-sends another's prompts)
    caplab: --dataset-name custom --dataset-path chat_prompts.jsonl --custom-output-len L
            --skip-chat-template --seed 0 (caplab's 16 chat prompts, sent as the user message, as caplab does)

With --inputs N,N,... (random only): one point per concurrency and input length, concurrency outer
(caplab's cell order), --random-input-len N, --seed C * 100000 + N (so that no point re-sends another's
prompts), files NAME_cC_inN.json. With --metrics-url: vLLM's /metrics read before and after each point,
its own count of the point's prompt tokens, generated tokens and finished requests saved to
NAME_counted.json and printed on the BENCH line (prompt_tokens_vllm=...).

Prints one line per point: BENCH name c=C ok=.. failed=.. out_tok_s=.. ttft_p50_ms=.. ...

usage: bench_loop.py --out DIR --name NAME --dataset random|caplab --prompts JSONL --random-in N
                     --out-len L --base-url URL --model M [--inputs N,N,...] [--metrics-url URL] C [C ...]
"""
import argparse
import json
import os
import sys
import time
import urllib.request

COUNTERS = {"prompt_tokens_vllm": "vllm:prompt_tokens_total", "generation_tokens_vllm": "vllm:generation_tokens_total",
            "requests_vllm": "vllm:request_success_total"}


def counters(url):
    """vLLM's counters (summed over their labels) from /metrics; {} if it cannot be read."""
    if not url:
        return {}
    try:
        text = urllib.request.urlopen(url, timeout=5).read().decode()
    except Exception as e:  # noqa: BLE001
        print(f"metrics: {e}", flush=True)
        return {}
    out = {k: 0.0 for k in COUNTERS}
    for line in text.splitlines():
        for k, name in COUNTERS.items():
            if line.startswith(name + "{") or line.startswith(name + " "):
                out[k] += float(line.rsplit(" ", 1)[1])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--dataset", choices=["random", "caplab"], required=True)
    ap.add_argument("--prompts", required=True)
    ap.add_argument("--random-in", type=int, default=31)
    ap.add_argument("--out-len", type=int, required=True)
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--inputs", default="", help="N,N,...: random prompts of each length at each concurrency")
    ap.add_argument("--metrics-url", default="")
    ap.add_argument("conc", type=int, nargs="+")
    a = ap.parse_args()

    t = time.time()
    from vllm.benchmarks.serve import add_cli_args, main as bench_main
    from vllm.utils.argparse_utils import FlexibleArgumentParser
    print(f"imported vllm.benchmarks.serve in {time.time() - t:.1f}s", flush=True)
    parser = FlexibleArgumentParser()
    add_cli_args(parser)

    inputs = [int(n) for n in a.inputs.split(",") if n] if a.inputs else [None]
    points = [(c, n) for c in a.conc for n in inputs]
    counted = {}
    for c, n in points:
        fname = f"{a.name}_c{c}.json" if n is None else f"{a.name}_c{c}_in{n}.json"
        label = f"c={c}" if n is None else f"c={c} in={n}"
        argv = ["--backend", "openai-chat", "--endpoint", "/v1/chat/completions", "--base-url", a.base_url,
                "--model", a.model, "--tokenizer", a.model, "--max-concurrency", str(c),
                "--num-prompts", str(max(4, 2 * c)), "--num-warmups", "0", "--ignore-eos", "--disable-tqdm",
                "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90,95,99",
                "--save-result", "--result-dir", a.out, "--result-filename", fname]
        if a.dataset == "random":
            argv += ["--dataset-name", "random", "--random-input-len", str(a.random_in if n is None else n),
                     "--random-output-len", str(a.out_len), "--random-range-ratio", "0",
                     "--seed", str(c if n is None else c * 100000 + n)]
        else:
            argv += ["--dataset-name", "custom", "--dataset-path", a.prompts, "--custom-output-len",
                     str(a.out_len), "--skip-chat-template", "--seed", "0"]
        print("ARGV vllm bench serve " + " ".join(argv), flush=True)
        t = time.time()
        before = counters(a.metrics_url)
        try:
            bench_main(parser.parse_args(argv))
        except BaseException as e:  # noqa: BLE001 - report and go on with the next point
            print(f"BENCH {a.name} {label} ERROR {type(e).__name__}: {e}", flush=True)
            if isinstance(e, KeyboardInterrupt):
                raise
            continue
        after = counters(a.metrics_url)
        delta = {k: round(after[k] - before[k]) for k in after if k in before}
        if delta:
            counted[fname] = delta
            with open(os.path.join(a.out, f"{a.name}_counted.json"), "w") as f:
                json.dump(counted, f, indent=1)
        try:
            with open(os.path.join(a.out, fname)) as f:
                r = json.load(f)
            keys = ["completed", "failed", "output_throughput", "mean_input_tokens" if "mean_input_tokens" in r else "total_input_tokens",
                    "median_ttft_ms", "p95_ttft_ms", "median_tpot_ms", "p95_tpot_ms", "median_itl_ms", "p95_e2el_ms",
                    "duration"]
            print(f"BENCH {a.name} {label} wall={time.time() - t:.1f}s " +
                  " ".join(f"{k}={r.get(k):.2f}" if isinstance(r.get(k), float) else f"{k}={r.get(k)}" for k in keys) +
                  "".join(f" {k}={v}" for k, v in delta.items()),
                  flush=True)
        except Exception as e:  # noqa: BLE001
            print(f"BENCH {a.name} {label} no result file: {e}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
