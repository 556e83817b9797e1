//! The simulator's `/metrics`, in Prometheus text format with vLLM's metric names.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::model::Sim;

const LATENCY_BUCKETS: &[f64] =
    &[0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0];
const ITL_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0];
const E2E_BUCKETS: &[f64] =
    &[0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0];

/// A cumulative Prometheus histogram.
#[derive(Clone, Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram { bounds, counts: vec![0; bounds.len()], sum: 0.0, count: 0 }
    }

    fn observe(&mut self, v: f64) {
        for (b, c) in self.bounds.iter().zip(&mut self.counts) {
            if v <= *b {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b:?}\"}} {c}.0");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}.0", self.count);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}.0", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
    }
}

#[derive(Clone, Debug)]
pub struct Metrics {
    prompt_tokens: u64,
    generation_tokens: u64,
    success: u64,
    ttft: Histogram,
    itl: Histogram,
    e2e: Histogram,
    queue: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            prompt_tokens: 0,
            generation_tokens: 0,
            success: 0,
            ttft: Histogram::new(LATENCY_BUCKETS),
            itl: Histogram::new(ITL_BUCKETS),
            e2e: Histogram::new(E2E_BUCKETS),
            queue: Histogram::new(E2E_BUCKETS),
        }
    }
}

impl Metrics {
    /// One finished request (times in seconds).
    pub fn record(&mut self, prompt: u32, generated: u32, queue: f64, ttft: f64, e2e: f64, itl: &[f64]) {
        self.prompt_tokens += u64::from(prompt);
        self.generation_tokens += u64::from(generated);
        self.success += 1;
        self.queue.observe(queue);
        self.ttft.observe(ttft);
        self.e2e.observe(e2e);
        for &g in itl {
            self.itl.observe(g);
        }
    }
}

impl Sim {
    pub fn render_metrics(&self) -> String {
        let m = self.metrics.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let labels = format!("engine=\"0\",model_name=\"{}\"", self.config.model.replace('"', ""));
        let mut out = String::with_capacity(8192);
        let g = &self.gauges;
        let gauges = [
            ("vllm:num_requests_running", f64::from(g.running.load(Ordering::Relaxed))),
            ("vllm:num_requests_waiting", f64::from(g.waiting.load(Ordering::Relaxed))),
            ("vllm:kv_cache_usage_perc", g.kv_usage_ppm.load(Ordering::Relaxed) as f64 / 1e6),
        ];
        for (name, v) in gauges {
            let _ = writeln!(out, "# TYPE {name} gauge\n{name}{{{labels}}} {v:?}");
        }
        let (hits, queries) = {
            let p = self.prefix.lock().unwrap_or_else(|p| p.into_inner());
            (p.hits, p.queries)
        };
        let counters = [
            ("vllm:num_preemptions_total", g.preemptions.load(Ordering::Relaxed)),
            ("vllm:prompt_tokens_total", m.prompt_tokens),
            ("vllm:generation_tokens_total", m.generation_tokens),
            ("vllm:prefix_cache_queries_total", queries),
            ("vllm:prefix_cache_hits_total", hits),
        ];
        for (name, v) in counters {
            let _ = writeln!(out, "# TYPE {name} counter\n{name}{{{labels}}} {v}.0");
        }
        let _ = writeln!(
            out,
            "# TYPE vllm:request_success_total counter\nvllm:request_success_total{{{labels},finished_reason=\"length\"}} {}.0",
            m.success
        );
        m.ttft.render(&mut out, "vllm:time_to_first_token_seconds", &labels);
        m.itl.render(&mut out, "vllm:inter_token_latency_seconds", &labels);
        m.e2e.render(&mut out, "vllm:e2e_request_latency_seconds", &labels);
        m.queue.render(&mut out, "vllm:request_queue_time_seconds", &labels);
        // Not vLLM names: the simulator's model of its GPU, read by caplab's GPU panel.
        let total = self.config.gpu_memory_bytes as f64;
        let busy = if g.running.load(Ordering::Relaxed) > 0 { 1.0 } else { 0.0 };
        let sim_gpu = [
            ("caplab_sim:gpu_memory_total_bytes", total),
            ("caplab_sim:gpu_memory_used_bytes", (total * self.config.gpu_memory_utilization).round()),
            ("caplab_sim:gpu_utilization_perc", busy),
        ];
        for (name, v) in sim_gpu {
            let _ = writeln!(out, "# TYPE {name} gauge\n{name} {v:?}");
        }
        let _ = writeln!(
            out,
            "# TYPE vllm:cache_config_info gauge\nvllm:cache_config_info{{engine=\"0\",num_gpu_blocks=\"{}\",block_size=\"16\",simulated=\"true\"}} 1.0",
            self.config.kv_cache_tokens / 16
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let mut h = Histogram::new(&[0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(5.0);
        let mut s = String::new();
        h.render(&mut s, "x", "a=\"b\"");
        assert!(s.contains("x_bucket{a=\"b\",le=\"0.1\"} 1.0"));
        assert!(s.contains("x_bucket{a=\"b\",le=\"1.0\"} 2.0"));
        assert!(s.contains("x_bucket{a=\"b\",le=\"+Inf\"} 3.0"));
        assert!(s.contains("x_count{a=\"b\"} 3.0"));
    }
}
