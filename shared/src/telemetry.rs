//! What the target server (`/metrics`) and the GPU said during a run: live samples, and each
//! cell's summary of them, side by side with the client-side numbers.

use serde::{Deserialize, Serialize};

/// One scrape of the target's `/metrics` (vLLM names; see `caplab::telemetry::prom`).
/// Counters are counted from the run's first scrape, so they start at 0.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ServerSample {
    /// Seconds since the run started (the client-side ticks' axis).
    pub t_s: f64,
    /// Requests the engine is running (`vllm:num_requests_running`).
    pub running: Option<f64>,
    /// Requests waiting in the engine's queue (`vllm:num_requests_waiting`).
    pub waiting: Option<f64>,
    /// KV-cache blocks in use, 0..1 (`vllm:kv_cache_usage_perc`; older: `gpu_cache_usage_perc`).
    pub kv_usage: Option<f64>,
    /// Preemptions since the run started (`vllm:num_preemptions_total`).
    pub preemptions: Option<f64>,
    /// Prompt tokens processed since the run started (`vllm:prompt_tokens_total`).
    pub prompt_tokens: Option<f64>,
    /// Tokens generated since the run started (`vllm:generation_tokens_total`).
    pub generation_tokens: Option<f64>,
}

/// One reading of one GPU.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct GpuSample {
    pub t_s: f64,
    /// The GPU's index on its machine.
    pub gpu: u32,
    pub memory_used_mib: Option<f64>,
    pub memory_total_mib: Option<f64>,
    /// Percent of time a kernel ran over the last sample period (NVML's utilization.gpu).
    pub util_pct: Option<f64>,
    pub power_w: Option<f64>,
    pub sm_clock_mhz: Option<f64>,
    pub temp_c: Option<f64>,
}

/// Where a run's telemetry comes from, or why there is none. Shown above its panel.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct TelemetrySources {
    /// e.g. "GET http://…/metrics every 0.5 s"; None until known.
    pub server: Option<String>,
    /// Set when the target has no usable `/metrics` (the panel is hidden and this says why).
    pub server_missing: Option<String>,
    /// e.g. "NVML (driver 550.54)", "nvidia-smi", "simulated: A100 80GB as the simulator models it".
    pub gpu: Option<String>,
    /// Set when no GPU can be read (e.g. "no NVIDIA driver on this machine").
    pub gpu_missing: Option<String>,
    /// The GPU readings are the simulator's model, not a real GPU's.
    #[serde(default)]
    pub gpu_simulated: bool,
}

/// The server's side of one cell: from the scrapes during it and its histograms' growth.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ServerCellStats {
    pub max_kv_usage: Option<f64>,
    pub max_waiting: Option<f64>,
    pub max_running: Option<f64>,
    /// Preemptions during the cell.
    pub preemptions: Option<f64>,
    /// Server-side percentiles (ms), estimated from the histogram buckets filled during the
    /// cell, as Prometheus' `histogram_quantile` does (linear within a bucket).
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p95_ms: Option<f64>,
    pub e2e_p50_ms: Option<f64>,
    pub e2e_p95_ms: Option<f64>,
    pub queue_p50_ms: Option<f64>,
    pub queue_p95_ms: Option<f64>,
    /// Requests the server's E2E histogram counted during the cell.
    pub requests: Option<f64>,
    /// The share of the cell's prompt tokens found in the server's prefix cache
    /// (`vllm:prefix_cache_hits_total` ÷ `vllm:prefix_cache_queries_total`, their growth).
    #[serde(default)]
    pub prefix_cache_hit_rate: Option<f64>,
}

/// The GPUs during one cell (all GPUs together: memory summed, utilization averaged).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct GpuCellStats {
    pub max_memory_used_mib: Option<f64>,
    pub memory_total_mib: Option<f64>,
    pub mean_util_pct: Option<f64>,
    pub max_power_w: Option<f64>,
    pub max_temp_c: Option<f64>,
}

/// Keeps a live series bounded: past `max`, the older half is thinned to every other point, so
/// the latest stretch keeps full resolution. The server and the page thin the same way.
pub fn push_bounded<T>(series: &mut Vec<T>, item: T, max: usize) {
    series.push(item);
    if series.len() > max {
        let half = series.len() / 2;
        let mut i = 0;
        series.retain(|_| {
            i += 1;
            i > half || i % 2 == 1
        });
    }
}

/// Keeps GPU readings bounded like `push_bounded`, thinning whole readings (every GPU of one
/// second together), so no GPU drops out of the older stretch.
pub fn push_gpu_bounded(series: &mut Vec<GpuSample>, readings: &[GpuSample], max: usize) {
    series.extend_from_slice(readings);
    if series.len() > max {
        // Readings are a second apart: samples of one second are one reading. Every other
        // reading of the older half goes, counted in order (so each pass halves it again).
        let half_t = series[series.len() / 2].t_s;
        let (mut reading, mut last) = (0u64, None);
        series.retain(|s| {
            if s.t_s >= half_t {
                return true;
            }
            let second = s.t_s.floor() as u64;
            if last != Some(second) {
                reading += 1;
                last = Some(second);
            }
            reading % 2 == 1
        });
    }
}

/// Quantile `q` (0..1) of the observations a cumulative histogram gained between two readings,
/// as Prometheus' `histogram_quantile`: linear within the bucket it falls in; a quantile in the
/// `+Inf` bucket is the highest finite bound. `buckets`: (upper bound, cumulative count growth),
/// sorted by bound, `+Inf` last. None when nothing was observed.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let rank = q * total;
    let mut lower = 0.0;
    let mut below = 0.0;
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return Some(lower);
            }
            let in_bucket = count - below;
            return Some(if in_bucket <= 0.0 { bound } else { lower + (bound - lower) * (rank - below) / in_bucket });
        }
        lower = bound;
        below = count;
    }
    Some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_buckets_like_prometheus() {
        // 10 observations ≤ 0.1, 10 more in (0.1, 0.5], none above.
        let b = [(0.1, 10.0), (0.5, 20.0), (f64::INFINITY, 20.0)];
        assert_eq!(histogram_quantile(0.5, &b), Some(0.1));
        assert!((histogram_quantile(0.75, &b).unwrap() - 0.3).abs() < 1e-12);
        assert!((histogram_quantile(0.25, &b).unwrap() - 0.05).abs() < 1e-12);
        // In the +Inf bucket: the highest finite bound.
        assert_eq!(histogram_quantile(0.99, &[(1.0, 1.0), (f64::INFINITY, 10.0)]), Some(1.0));
        assert_eq!(histogram_quantile(0.5, &[(1.0, 0.0), (f64::INFINITY, 0.0)]), None);
    }

    #[test]
    fn thinning_gpu_readings_keeps_every_gpu() {
        let mut s = Vec::new();
        for t in 0..20_000 {
            let reading: Vec<GpuSample> = (0..4).map(|g| GpuSample { t_s: f64::from(t) + 0.001 * f64::from(g), gpu: g, ..Default::default() }).collect();
            push_gpu_bounded(&mut s, &reading, 4_800);
        }
        assert!(s.len() <= 4_800 + 4, "{}", s.len());
        for g in 0..4 {
            assert!(s[..s.len() / 2].iter().filter(|x| x.gpu == g).count() > 100, "GPU {g} is kept in the older stretch");
        }
        assert_eq!(s.last().unwrap().t_s.floor(), 19_999.0);
    }

    #[test]
    fn series_stay_bounded_and_keep_the_latest() {
        let mut s = Vec::new();
        for i in 0..10_000 {
            push_bounded(&mut s, i, 100);
        }
        assert!(s.len() <= 100);
        assert_eq!(*s.last().unwrap(), 9_999);
        assert_eq!(s[0], 0);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
    }
}
