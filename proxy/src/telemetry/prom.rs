//! Reads the target's `/metrics` (Prometheus text format, parsed by the
//! `prom_text_format_parser` crate, which takes vLLM's `vllm:` names) into the numbers caplab uses, under vLLM's names (tests/fixtures/vllm_metrics.txt is
//! a verbatim vLLM 0.32 sample). Series of one name are summed over their labels (engines,
//! models), as a dashboard's `sum(...)` would.

use std::collections::BTreeMap;

use caplab_shared::telemetry::histogram_quantile;
use prom_text_format_parser::{parse_scrape, Type, ValueType};

/// One parsed scrape: gauges and counters by name, histograms by name as (bound, cumulative count).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub values: BTreeMap<String, f64>,
    pub histograms: BTreeMap<String, Vec<(f64, f64)>>,
}

pub const RUNNING: &str = "vllm:num_requests_running";
pub const WAITING: &str = "vllm:num_requests_waiting";
pub const KV_USAGE: &[&str] = &["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"];
pub const PREEMPTIONS: &str = "vllm:num_preemptions_total";
pub const PROMPT_TOKENS: &str = "vllm:prompt_tokens_total";
pub const GENERATION_TOKENS: &str = "vllm:generation_tokens_total";
/// Prompt tokens looked up in the prefix cache, and those found (vLLM V1's `loggers.py`).
pub const PREFIX_QUERIES: &str = "vllm:prefix_cache_queries_total";
pub const PREFIX_HITS: &str = "vllm:prefix_cache_hits_total";
pub const TTFT: &str = "vllm:time_to_first_token_seconds";
pub const E2E: &str = "vllm:e2e_request_latency_seconds";
pub const QUEUE: &str = "vllm:request_queue_time_seconds";
/// The simulator's model of its GPU (not vLLM names: a real vLLM has none).
pub const SIM_GPU_USED: &str = "caplab_sim:gpu_memory_used_bytes";
pub const SIM_GPU_TOTAL: &str = "caplab_sim:gpu_memory_total_bytes";
pub const SIM_GPU_UTIL: &str = "caplab_sim:gpu_utilization_perc";

/// Every family caplab reads from a scrape.
const USED: &[&str] = &[
    RUNNING, WAITING, KV_USAGE[0], KV_USAGE[1], PREEMPTIONS, PROMPT_TOKENS, GENERATION_TOKENS, PREFIX_QUERIES, PREFIX_HITS, TTFT, E2E, QUEUE, SIM_GPU_USED, SIM_GPU_TOTAL,
    SIM_GPU_UTIL,
];

/// Whether a line of a scrape (`# HELP name …`, `# TYPE name …` or `name{labels} value`)
/// belongs to a family in `USED` (histogram series end in `_bucket`, `_sum`, `_count`;
/// a counter's TYPE line may leave out `_total`).
fn used(line: &str) -> bool {
    let name = match line.strip_prefix('#') {
        Some(comment) => comment.split_whitespace().nth(1).unwrap_or_default(),
        None => line.split(['{', ' ']).next().unwrap_or_default(),
    };
    if name.is_empty() {
        return false;
    }
    let base = ["_bucket", "_sum", "_count", "_created"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
    USED.iter().any(|u| *u == name || *u == base || u.strip_suffix("_total") == Some(name))
}

impl Snapshot {
    /// Parses a scrape. A metric the parser cannot read is skipped; the others are kept. Only
    /// the families caplab reads (`USED`) are handed to the parser: vLLM's page is ~50 KB,
    /// scraped twice a second on the machine being measured.
    pub fn parse(text: &str) -> Snapshot {
        let wanted: String = text.lines().filter(|l| used(l)).flat_map(|l| [l, "\n"]).collect();
        let (metrics, _skipped) = parse_scrape(&wanted);
        let mut snap = Snapshot::default();
        for m in metrics {
            for sample in &m.samples {
                let Some(v) = sample.value.value.parse::<f64>().ok().filter(|v| !v.is_nan()) else { continue };
                match (m.kind, sample.value.value_type) {
                    (Type::Histogram, ValueType::Sample) => {
                        let Some(le) = sample.labels.iter().find(|l| l.key == "le").and_then(|l| l.value.parse::<f64>().ok()) else { continue };
                        let into = snap.histograms.entry(m.name.clone()).or_default();
                        match into.iter_mut().find(|(bound, _)| *bound == le) {
                            Some(existing) => existing.1 += v,
                            None => into.push((le, v)),
                        }
                    }
                    (Type::Histogram | Type::Summary, _) => {}
                    (_, ValueType::Sample) if v.is_finite() => *snap.values.entry(m.name.clone()).or_default() += v,
                    _ => {}
                }
            }
        }
        for buckets in snap.histograms.values_mut() {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        snap
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.get(name).copied()
    }

    /// The first of `names` present (a metric renamed across versions).
    pub fn first_of(&self, names: &[&str]) -> Option<f64> {
        names.iter().find_map(|n| self.get(n))
    }

    /// How much a counter grew since `before` (None if either lacks it; a reset reads as growth
    /// from zero).
    pub fn growth(&self, before: &Snapshot, name: &str) -> Option<f64> {
        let now = self.get(name)?;
        let then = before.get(name)?;
        Some(if now >= then { now - then } else { now })
    }

    /// Quantile `q` (0..1, in ms) of the observations histogram `name` gained since `before`.
    pub fn quantile_ms_since(&self, before: &Snapshot, name: &str, q: f64) -> Option<f64> {
        let delta = self.histogram_growth(before, name)?;
        histogram_quantile(q, &delta).map(|s| s * 1000.0)
    }

    /// Observations histogram `name` gained since `before`.
    pub fn count_since(&self, before: &Snapshot, name: &str) -> Option<f64> {
        self.histogram_growth(before, name)?.last().map(|b| b.1)
    }

    fn histogram_growth(&self, before: &Snapshot, name: &str) -> Option<Vec<(f64, f64)>> {
        let now = self.histograms.get(name)?;
        // A server that restarted in between counts from zero again: all it has is new.
        let total = |h: &Vec<(f64, f64)>| h.last().map_or(0.0, |b| b.1);
        let then = before.histograms.get(name).filter(|t| total(t) <= total(now));
        Some(
            now.iter()
                .map(|&(bound, count)| {
                    let was = then.and_then(|t| t.iter().find(|b| b.0 == bound)).map_or(0.0, |b| b.1);
                    (bound, (count - was).max(0.0))
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VLLM: &str = include_str!("../../../tests/fixtures/vllm_metrics.txt");

    #[test]
    fn reads_the_verbatim_vllm_sample() {
        let s = Snapshot::parse(VLLM);
        assert_eq!(s.get(RUNNING), Some(0.0));
        assert_eq!(s.get(WAITING), Some(0.0));
        assert_eq!(s.first_of(KV_USAGE), Some(0.0));
        assert_eq!(s.get(PREEMPTIONS), Some(0.0));
        assert_eq!(s.get(PROMPT_TOKENS), Some(2060.0));
        assert_eq!(s.get(GENERATION_TOKENS), Some(109.0));
        for h in [TTFT, E2E, QUEUE] {
            let buckets = &s.histograms[h];
            assert!(buckets.last().unwrap().0.is_infinite(), "{h} ends with +Inf");
            assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "{h} is cumulative and sorted");
        }
        assert_eq!(s.count_since(&Snapshot::default(), E2E), Some(6.0));
    }

    #[test]
    fn quantiles_of_what_a_cell_added() {
        let before = Snapshot::parse(
            "# TYPE vllm:e2e_request_latency_seconds histogram\n\
             vllm:e2e_request_latency_seconds_bucket{le=\"0.5\"} 4.0\n\
             vllm:e2e_request_latency_seconds_bucket{le=\"1.0\"} 4.0\n\
             vllm:e2e_request_latency_seconds_bucket{le=\"+Inf\"} 4.0\n\
             vllm:e2e_request_latency_seconds_count 4.0\nvllm:e2e_request_latency_seconds_sum 1.0\n\
             # TYPE vllm:num_preemptions_total counter\nvllm:num_preemptions_total{engine=\"0\"} 2.0\nvllm:num_preemptions_total{engine=\"1\"} 1.0\n",
        );
        let after = Snapshot::parse(
            "# TYPE vllm:e2e_request_latency_seconds histogram\n\
             vllm:e2e_request_latency_seconds_bucket{le=\"0.5\"} 4.0\n\
             vllm:e2e_request_latency_seconds_bucket{le=\"1.0\"} 14.0\n\
             vllm:e2e_request_latency_seconds_bucket{le=\"+Inf\"} 14.0\n\
             vllm:e2e_request_latency_seconds_count 14.0\nvllm:e2e_request_latency_seconds_sum 9.0\n\
             # TYPE vllm:num_preemptions_total counter\nvllm:num_preemptions_total{engine=\"0\"} 7.0\nvllm:num_preemptions_total{engine=\"1\"} 1.0\n",
        );
        assert_eq!(after.get(PREEMPTIONS), Some(8.0), "summed over engines");
        assert_eq!(after.growth(&before, PREEMPTIONS), Some(5.0));
        assert_eq!(after.count_since(&before, E2E), Some(10.0));
        // The 10 new observations all lie in (0.5, 1.0]: the median is 0.75 s.
        assert!((after.quantile_ms_since(&before, E2E, 0.5).unwrap() - 750.0).abs() < 1e-9);
        assert_eq!(Snapshot::parse("not metrics at all {{{\n").values.len(), 0, "garbage reads as nothing, never a panic");
        assert!(used("# TYPE vllm:num_preemptions counter") && used("vllm:num_preemptions_total{engine=\"0\"} 3.0"));
        assert!(used("vllm:e2e_request_latency_seconds_bucket{le=\"0.3\"} 1.0") && used("# HELP vllm:time_to_first_token_seconds Histogram"));
        assert!(!used("vllm:iteration_tokens_total_bucket{le=\"1.0\"} 0.0") && !used("process_cpu_seconds_total 1.0"));
        // The server restarted between the two scrapes: only the new observations count.
        assert_eq!(before.count_since(&after, E2E), Some(4.0), "a reset reads as growth from zero");
    }
}
