//! How close the simulator comes to real measurements: each committed anchor's grid is replayed
//! on the virtual clock (`scheduler::virtual_closed_loop`) with the anchor's own prompt sizes,
//! and the output tokens/s compared cell by cell. The README publishes the table this prints.

#[cfg(test)]
mod tests {
    use crate::sim::profile::{gpu, model, Deployment, EngineArgs};
    use crate::sim::scheduler::{virtual_closed_loop, Limits, Timing};

    /// (concurrency, max_new_tokens, measured output tok/s, prompt tokens per request, requests)
    fn cells(summary: &str) -> Vec<(u32, u32, f64, u32, u32)> {
        let mut rdr = csv::Reader::from_reader(summary.as_bytes());
        let h = rdr.headers().unwrap().clone();
        let col = |name: &str| h.iter().position(|c| c == name).unwrap();
        let (c, m, t, p, n) = (col("concurrency"), col("max_new_tokens"), col("throughput_tok_s"), col("prompt_tokens"), col("requests_ok"));
        rdr.records()
            .map(|r| {
                let r = r.unwrap();
                let ok: u32 = r[n].parse().unwrap();
                (r[c].parse().unwrap(), r[m].parse().unwrap(), r[t].parse().unwrap(), r[p].parse::<u32>().unwrap() / ok.max(1), ok)
            })
            .collect()
    }

    /// Simulated tok/s per cell, and the relative error of each against the measurement.
    fn compare(d: &Deployment, summary: &str) -> Vec<(u32, u32, f64, f64, f64)> {
        let limits = Limits { max_num_seqs: d.max_num_seqs, max_num_batched_tokens: d.max_num_batched_tokens, kv_blocks: d.kv_blocks };
        let timing = Timing::Roofline(Box::new(d.clone()));
        cells(summary)
            .into_iter()
            .map(|(c, m, measured, prompt, n)| {
                let (secs, done, _) = virtual_closed_loop(limits, &timing, c, prompt, m, n);
                let simulated = done.len() as f64 * f64::from(m) / secs;
                (c, m, measured, simulated, simulated / measured - 1.0)
            })
            .collect()
    }

    fn print(title: &str, rows: &[(u32, u32, f64, f64, f64)]) {
        println!("{title}\n  cell         measured  simulated   error");
        for (c, m, measured, simulated, err) in rows {
            println!("  c{c:<4} × {m:<5} {measured:>8.0} {simulated:>10.0} {:>+7.0}%", err * 100.0);
        }
    }

    #[test]
    fn the_cpu_vllm_anchor_at_its_own_size() {
        // The real vLLM 0.32 CPU server of data/anchors/cpu-vllm-0.32-tiny: the tiny model, 1 GiB
        // of KV cache (32 768 blocks of 16 tokens × 2 KiB), --max-model-len 2048.
        let args = EngineArgs { num_gpu_blocks_override: Some(32_768), max_model_len: Some(2048), ..Default::default() };
        let d = Deployment::new(gpu("cpu-2core").unwrap(), model("tiny-4.5m").unwrap(), &args).unwrap();
        let rows = compare(&d, include_str!("../../../data/anchors/cpu-vllm-0.32-tiny/summary.csv"));
        print("cpu-2core + tiny-4.5m vs the real vLLM 0.32 CPU server (batch grid):", &rows);
        let worst = rows.iter().map(|r| r.4.abs()).fold(0.0, f64::max);
        assert!(worst < 0.35, "every cell within 35% of the real server (worst {:.0}%)", worst * 100.0);
        // The shape: more workers give more tokens/s at every length, as measured.
        for m in [256, 512] {
            let sim: Vec<f64> = rows.iter().filter(|r| r.1 == m).map(|r| r.3).collect();
            assert!(sim.windows(2).all(|w| w[1] > w[0]), "{sim:?}");
        }
    }

    #[test]
    fn the_h200_anchor_is_transformers_serve_not_vllm() {
        // data/anchors/h200-…: transformers serve (continuous batching) on an H200, the Qwen2.5-1.5B
        // shape. The simulator models vLLM, whose engine loop is far leaner: it must come out
        // faster at every cell, and the published error says by how much.
        let d = Deployment::new(gpu("h200-141gb").unwrap(), model("qwen2.5-1.5b").unwrap(), &EngineArgs::default()).unwrap();
        let rows = compare(&d, include_str!("../../../data/anchors/h200-transformers-serve-5.17-qwen2.5-1.5b-random/chat_grid/summary.csv"));
        print("h200-141gb + qwen2.5-1.5b (vLLM model) vs transformers serve 5.17 measured on the H200 (chat grid):", &rows);
        assert!(rows.iter().all(|r| r.3 > r.2), "vLLM (simulated) ahead of transformers serve everywhere");
    }

    /// The "done when": the same grid on an RTX 2000 Ada and on an H100 — long chats
    /// (2 048-token prompts, 2 048 new tokens) with Qwen2.5-1.5B. The H100 is ahead at every
    /// cell; the RTX 2000's KV cache (about 97 such sequences) runs out inside the grid: its
    /// throughput stops growing and vLLM preempts, while the H100's cache never fills.
    #[test]
    fn rtx2000_and_h100_order_and_the_kv_knee() {
        let run = |g: &str, c: u32| {
            let d = Deployment::new(gpu(g).unwrap(), model("qwen2.5-1.5b").unwrap(), &EngineArgs::default()).unwrap();
            let limits = Limits { max_num_seqs: d.max_num_seqs, max_num_batched_tokens: d.max_num_batched_tokens, kv_blocks: d.kv_blocks };
            let (secs, done, preemptions) = virtual_closed_loop(limits, &Timing::Roofline(Box::new(d.clone())), c, 2048, 2048, c);
            (done.len() as f64 * 2048.0 / secs, preemptions, u64::from(d.kv_blocks) * 16 / 4096)
        };
        println!("long chats, qwen2.5-1.5b:  cell   rtx2000 tok/s (preempt)   h100 tok/s (preempt)");
        let mut rtx = Vec::new();
        for c in [16, 64, 128, 256] {
            let (r, rp, rcap) = run("rtx2000-ada-16gb", c);
            let (h, hp, hcap) = run("h100-80gb", c);
            println!("  c{c:<4} {r:>10.0} ({rp:>4})  {h:>10.0} ({hp:>4})   KV room for {rcap} / {hcap} sequences");
            assert!(h > 2.0 * r, "the H100 well ahead at c{c}");
            assert_eq!(hp, 0, "the H100's cache holds c{c}");
            rtx.push((c, r, rp, rcap));
        }
        let cap = rtx[0].3;
        assert!((64..128).contains(&cap), "the RTX 2000 holds about 97 such sequences: {cap}");
        for &(c, _, preemptions, _) in &rtx {
            assert_eq!(preemptions > 0, u64::from(c) > cap, "preemptions exactly past the KV capacity (c{c})");
        }
        // The knee: throughput grows up to the capacity, then stops (recompute eats the gain).
        let (t16, t64, t128, t256) = (rtx[0].1, rtx[1].1, rtx[2].1, rtx[3].1);
        assert!(t64 / t16 > 1.5, "{t16} → {t64}");
        assert!(t128 < 1.1 * t64 && t256 < 1.1 * t64, "flat past the KV capacity: {t64} {t128} {t256}");
    }
}
