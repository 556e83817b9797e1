#!/usr/bin/env python3
"""
Batch document summarization benchmark for vLLM.

Measures throughput-focused metrics for offline batch processing:
  - Total tokens/sec
  - p50/p95 latency per document
  - Aggregate processing time

Use this for 'batch' workloads:
  - Longer prompts (documents)
  - Higher concurrency
  - Throughput > latency priority
"""

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import aiohttp


def load_documents(filepath: str) -> list[str]:
    """Load documents from a [DOC] delimited file."""
    content = Path(filepath).read_text()
    docs = []
    for chunk in content.split("[DOC]"):
        chunk = chunk.strip()
        if chunk:
            docs.append(chunk)
    return docs


async def summarize_doc(session, url: str, doc: str, max_new_tokens: int):
    """Send a summarization request for a single document."""
    prompt = (
        "Summarize the following technical document in 5 bullet points. "
        "Be concise and focus on key insights.\n\n"
        f"Document:\n{doc}\n\n"
        "Summary:"
    )
    
    payload = {
        "model": "Qwen/Qwen2.5-1.5B-Instruct",
        "prompt": prompt,
        "max_tokens": max_new_tokens,
        "stream": False,
    }

    t_start = time.time()
    async with session.post(url, json=payload) as resp:
        data = await resp.json()
    t_end = time.time()

    latency_ms = (t_end - t_start) * 1000.0
    text = data["choices"][0]["text"]
    out_tokens = len(text.split())
    
    return latency_ms, out_tokens


async def run_batch_bench(
    url: str,
    docs: list[str],
    concurrency: int,
    max_new_tokens: int,
    repeat: int = 1,
):
    """Run batch summarization with given concurrency."""
    # Repeat docs to get more samples
    all_docs = docs * repeat
    
    latencies = []
    tokens = []
    semaphore = asyncio.Semaphore(concurrency)

    async def worker(doc: str):
        async with semaphore:
            async with aiohttp.ClientSession() as session:
                lat_ms, out_toks = await summarize_doc(
                    session, url, doc, max_new_tokens
                )
                latencies.append(lat_ms)
                tokens.append(out_toks)

    t_start = time.time()
    await asyncio.gather(*[worker(doc) for doc in all_docs])
    total_time_s = time.time() - t_start

    def p95(values):
        if not values:
            return 0.0
        values_sorted = sorted(values)
        idx = max(0, int(0.95 * len(values_sorted)) - 1)
        return values_sorted[idx]

    total_tokens = sum(tokens)
    throughput_tok_s = total_tokens / total_time_s if total_time_s > 0 else 0.0

    return {
        "workload": "batch_summarize",
        "n_documents": len(all_docs),
        "concurrency": concurrency,
        "max_new_tokens": max_new_tokens,
        "total_time_s": round(total_time_s, 2),
        "total_tokens": total_tokens,
        "throughput_tok_s": round(throughput_tok_s, 2),
        "p50_latency_ms": round(statistics.median(latencies), 2) if latencies else 0.0,
        "p95_latency_ms": round(p95(latencies), 2),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8000/v1/completions")
    parser.add_argument("--docs-file", default="data/day003_docs_sample.txt")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=4, 
                        help="Repeat docs N times for more samples")
    args = parser.parse_args()

    docs = load_documents(args.docs_file)
    print(f"[*] Loaded {len(docs)} documents, will process {len(docs) * args.repeat} total", 
          file=__import__('sys').stderr)

    res = asyncio.run(
        run_batch_bench(
            url=args.url,
            docs=docs,
            concurrency=args.concurrency,
            max_new_tokens=args.max_new_tokens,
            repeat=args.repeat,
        )
    )
    print(json.dumps(res, indent=2))
