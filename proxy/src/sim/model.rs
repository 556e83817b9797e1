//! The simulated server's engine in real time: one task runs the scheduler (`scheduler`),
//! sleeping each step for as long as the timing model says it takes, and hands every token to
//! its request's stream. Requests arrive through a channel; a client that goes away is aborted
//! and its KV blocks freed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::metrics::Metrics;
use super::profile::{Deployment, BLOCK_SIZE};
use super::frontend::live::Live;
use super::scheduler::{Event, Limits, Scheduler, Timing};

/// Knobs of the simulated server. With `deployment`, the GPU and model decide the limits and
/// the timing; without it, the fixed costs below do (all times in ms).
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub model: String,
    /// Requests decoded at once; more wait (vLLM's `--max-num-seqs`).
    pub max_num_seqs: u32,
    pub max_model_len: u32,
    /// KV cache size in tokens.
    pub kv_cache_tokens: u64,
    /// Prefill: fixed part plus a part per 1 000 prompt tokens, per step that prefills.
    pub prefill_ms: f64,
    pub prefill_ms_per_1k_tokens: f64,
    /// Decode step: fixed part plus a part per running sequence.
    pub itl_ms: f64,
    pub itl_ms_per_seq: f64,
    /// The simulated GPU's memory, and the share vLLM reserves of it at start (weights, KV cache
    /// and activations), which is what `nvidia-smi` shows as used while it serves.
    pub gpu_memory_bytes: u64,
    pub gpu_memory_utilization: f64,
    /// A GPU and model profile (`caplab sim --gpu … --model …`).
    pub deployment: Option<Deployment>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            model: "sim-qwen2.5-1.5b".into(),
            max_num_seqs: 64,
            max_model_len: 4096,
            kv_cache_tokens: 131_072,
            prefill_ms: 20.0,
            prefill_ms_per_1k_tokens: 40.0,
            itl_ms: 12.0,
            itl_ms_per_seq: 0.35,
            gpu_memory_bytes: 16 << 30,
            gpu_memory_utilization: 0.9,
            deployment: None,
        }
    }
}

impl SimConfig {
    /// The config of a profiled deployment: its served name, context, and memory.
    pub fn for_deployment(d: Deployment) -> SimConfig {
        SimConfig {
            model: d.model.served_name.clone(),
            max_num_seqs: d.max_num_seqs,
            max_model_len: d.max_model_len,
            kv_cache_tokens: u64::from(d.kv_blocks) * u64::from(BLOCK_SIZE),
            gpu_memory_bytes: (d.gpu.memory_gib * 1024.0 * 1024.0 * 1024.0) as u64,
            gpu_memory_utilization: d.utilization,
            deployment: Some(d),
            ..SimConfig::default()
        }
    }

    pub fn limits(&self) -> Limits {
        match &self.deployment {
            Some(d) => Limits { max_num_seqs: d.max_num_seqs, max_num_batched_tokens: d.max_num_batched_tokens, kv_blocks: d.kv_blocks },
            None => Limits {
                max_num_seqs: self.max_num_seqs.max(1),
                max_num_batched_tokens: 8192,
                // The cache holds at least one sequence of the full context, as vLLM requires.
                kv_blocks: (self.kv_cache_tokens.max(u64::from(self.max_model_len)).div_ceil(u64::from(BLOCK_SIZE))).clamp(1, u64::from(u32::MAX)) as u32,
            },
        }
    }

    pub fn timing(&self) -> Timing {
        match &self.deployment {
            Some(d) => Timing::Roofline(Box::new(d.clone())),
            None => Timing::Fixed {
                itl_ms: self.itl_ms,
                itl_ms_per_seq: self.itl_ms_per_seq,
                prefill_ms: self.prefill_ms,
                prefill_ms_per_1k_tokens: self.prefill_ms_per_1k_tokens,
            },
        }
    }
}

/// The engine's gauges, for `/metrics`.
#[derive(Default)]
pub struct Gauges {
    pub running: AtomicU32,
    pub waiting: AtomicU32,
    /// KV-cache usage × 1e6.
    pub kv_usage_ppm: AtomicU64,
    pub preemptions: AtomicU64,
}

pub struct Sim {
    pub config: SimConfig,
    pub gauges: Gauges,
    pub metrics: Mutex<Metrics>,
    /// Which prompt blocks the KV cache still holds (`prefix_cache`).
    pub prefix: Mutex<super::prefix_cache::PrefixCache>,
    submit: mpsc::UnboundedSender<Submit>,
}

#[derive(Clone, Copy, Debug)]
pub struct Job {
    pub prompt_tokens: u32,
    /// Of them, found in the prefix cache (not computed again).
    pub cached_tokens: u32,
    pub out_tokens: u32,
}

/// One token of a request: its index and whether it is the last.
pub type Token = (u32, bool);

struct Submit {
    job: Job,
    out: mpsc::UnboundedSender<Token>,
}

/// What the engine keeps about a request while it runs, for the metrics.
struct Tracked {
    job: Job,
    out: mpsc::UnboundedSender<Token>,
    arrived: Instant,
    admitted: Option<Instant>,
    first: Option<Instant>,
    last: Option<Instant>,
    itl: Vec<f64>,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

const PIECES: &[&str] = &[
    " The", " model", " serves", " tokens", " quickly", ",", " and", " the", " batch", " grows", ".", " Latency",
    " stays", " low", " while", " throughput", " rises", " under", " load", ";", " caches", " fill", " up", " too",
];

/// The text of token `index` of a request `seed`.
pub fn piece(seed: u64, index: u32) -> &'static str {
    PIECES[((seed as usize) * 7 + index as usize) % PIECES.len()]
}

impl Sim {
    /// Starts the engine task (call from within the runtime).
    pub fn new(config: SimConfig) -> Arc<Sim> {
        let (tx, rx) = mpsc::unbounded_channel();
        let prefix = Mutex::new(super::prefix_cache::PrefixCache::new((config.kv_cache_tokens / u64::from(super::profile::BLOCK_SIZE)) as usize));
        let sim = Arc::new(Sim { config, gauges: Gauges::default(), metrics: Mutex::new(Metrics::default()), prefix, submit: tx });
        tokio::spawn(run_engine(Arc::downgrade(&sim), sim.config.limits(), sim.config.timing(), rx));
        sim
    }

    /// Queues a request; its tokens arrive on the receiver as the engine produces them.
    pub fn submit(&self, job: Job) -> mpsc::UnboundedReceiver<Token> {
        let (out, rx) = mpsc::unbounded_channel();
        let _ = self.submit.send(Submit { job, out });
        rx
    }
}

async fn run_engine(sim: std::sync::Weak<Sim>, limits: Limits, timing: Timing, mut rx: mpsc::UnboundedReceiver<Submit>) {
    let mut sched = Scheduler::new(limits);
    let mut tracked: HashMap<u64, Tracked> = HashMap::new();
    let mut deadline = Instant::now();
    let mut last_out = Instant::now();
    // A calibrated deployment's API server (sim::frontend): requests reach the engine and tokens
    // the streams through its event loop, as in vLLM; without one, directly.
    let (mut front, lag) = match &timing {
        Timing::Roofline(d) if d.costs.frontend != Default::default() => (Some((Live::spawn(d.costs.frontend.clone()), HashMap::<u32, u64>::new())), d.costs.output_lag_steps),
        _ => (None, 0.0),
    };
    // The front end knows a request by the low 32 bits of its id (unique among those open).
    let admit = |sched: &mut Scheduler, tracked: &mut HashMap<u64, Tracked>, front: &mut Option<(Live, HashMap<u32, u64>)>, s: Submit| {
        let id = SEQ.fetch_add(1, Ordering::Relaxed);
        match front {
            Some((live, ids)) => {
                ids.insert(id as u32, id);
                live.send(id as u32, s.out.clone());
            }
            None => sched.add_cached(id, s.job.prompt_tokens, s.job.cached_tokens, s.job.out_tokens),
        }
        tracked.insert(id, Tracked { job: s.job, out: s.out, arrived: Instant::now(), admitted: None, first: None, last: None, itl: Vec::new() });
    };
    loop {
        while let Ok(s) = rx.try_recv() {
            admit(&mut sched, &mut tracked, &mut front, s);
        }
        if let Some((live, ids)) = &mut front {
            while let Ok(h) = live.handed.try_recv() {
                if let Some(t) = ids.get(&h).and_then(|id| tracked.get(id).map(|t| (*id, t.job))) {
                    sched.add_cached(t.0, t.1.prompt_tokens, t.1.cached_tokens, t.1.out_tokens);
                }
            }
        }
        let gone: Vec<u64> = tracked.iter().filter(|(_, t)| t.out.is_closed()).map(|(id, _)| *id).collect();
        for id in gone {
            sched.abort(id);
            tracked.remove(&id);
            if let Some((_, ids)) = &mut front {
                ids.remove(&(id as u32));
            }
        }
        let Some(step) = sched.plan() else {
            publish(&sim, &sched);
            // Nothing to run: wait for the next request (or the server's end).
            let next = match &mut front {
                Some((live, _)) => tokio::select! {
                    s = rx.recv() => s.map(Ok),
                    h = live.handed.recv() => h.map(Err),
                },
                None => rx.recv().await.map(Ok),
            };
            match next {
                Some(Ok(s)) => admit(&mut sched, &mut tracked, &mut front, s),
                Some(Err(h)) => {
                    if let Some((id, job)) = front.as_ref().and_then(|f| f.1.get(&h)).and_then(|id| tracked.get(id).map(|t| (*id, t.job))) {
                        sched.add_cached(id, job.prompt_tokens, job.cached_tokens, job.out_tokens);
                    }
                }
                None => return,
            }
            deadline = Instant::now();
            continue;
        };
        // Steps follow one another on a running deadline, so timer granularity does not add up.
        let step_s = timing.seconds(&step);
        deadline = deadline.max(Instant::now() - Duration::from_millis(5)) + Duration::from_secs_f64(step_s);
        tokio::time::sleep_until(deadline).await;
        let now = Instant::now();
        let mut to_front: Vec<(u32, u32, bool)> = Vec::new();
        let Some(strong) = sim.upgrade() else { return };
        for event in sched.finish(&step) {
            match event {
                Event::Admitted { id } => {
                    if let Some(t) = tracked.get_mut(&id) {
                        t.admitted.get_or_insert(now);
                    }
                }
                Event::Preempted { .. } => {}
                Event::Token { id, index, last } => {
                    let Some(t) = tracked.get_mut(&id) else { continue };
                    match t.last {
                        None => t.first = Some(now),
                        Some(prev) => t.itl.push((now - prev).as_secs_f64()),
                    }
                    t.last = Some(now);
                    if last {
                        // Counted before the client can read its usage, as vLLM's metrics are.
                        let admitted = t.admitted.unwrap_or(t.arrived);
                        let ttft = t.first.map_or(0.0, |f| (f - t.arrived).as_secs_f64());
                        strong.metrics.lock().unwrap_or_else(|p| p.into_inner()).record(
                            t.job.prompt_tokens,
                            t.job.out_tokens,
                            (admitted - t.arrived).as_secs_f64(),
                            ttft,
                            (now - t.arrived).as_secs_f64(),
                            &t.itl,
                        );
                    }
                    if let Some((_, ids)) = &mut front {
                        // The front end writes it; a client gone is seen by its closed sender.
                        to_front.push((id as u32, index, last));
                        if last {
                            ids.remove(&(id as u32));
                            tracked.remove(&id);
                        }
                    } else if t.out.send((index, last)).is_err() {
                        sched.abort(id);
                        tracked.remove(&id);
                    } else if last {
                        tracked.remove(&id);
                    }
                }
            }
        }
        if let Some((live, _)) = &front {
            // Handed out in step order (see Timing::output_lag_seconds).
            let at = (now + Duration::from_secs_f64(timing.output_lag_seconds(&step, lag))).max(last_out);
            last_out = at;
            live.output(at, to_front);
        }
        drop(strong);
        publish(&sim, &sched);
    }
}

fn publish(sim: &std::sync::Weak<Sim>, sched: &Scheduler) {
    if let Some(sim) = sim.upgrade() {
        let g = &sim.gauges;
        g.running.store(sched.running() as u32, Ordering::Relaxed);
        g.waiting.store(sched.waiting() as u32, Ordering::Relaxed);
        g.kv_usage_ppm.store((sched.kv_usage() * 1e6) as u64, Ordering::Relaxed);
        g.preemptions.store(sched.preemptions, Ordering::Relaxed);
    }
}

/// Simulated tokenizer: one token per 4 bytes of text, at least one.
pub fn count_tokens(text: &str) -> u32 {
    (text.len() as u32).div_ceil(4).max(1)
}

/// Tokens of a chat prompt: its messages' text (a string, or a list of parts whose `text`
/// counts) plus a chat-template overhead.
pub fn chat_tokens(messages: &[serde_json::Value]) -> u32 {
    let content = |m: &serde_json::Value| match m.get("content") {
        Some(serde_json::Value::String(s)) => count_tokens(s),
        Some(serde_json::Value::Array(parts)) => parts.iter().filter_map(|p| p.get("text").and_then(|t| t.as_str())).map(count_tokens).sum(),
        _ => 0,
    };
    messages.iter().map(content).sum::<u32>() + 4 * messages.len() as u32 + 3
}

pub fn unix_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A response id in vLLM's style.
pub fn ids(chat: bool) -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let mix = (unix_s() ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    format!("{}-{mix:016x}", if chat { "chatcmpl" } else { "cmpl" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_content_counts_as_a_string_or_as_text_parts() {
        let plain = [serde_json::json!({"role": "user", "content": "abcdefgh"})];
        let parts = [serde_json::json!({"role": "user", "content": [{"type": "text", "text": "abcd"}, {"type": "text", "text": "efgh"}]})];
        assert_eq!(chat_tokens(&plain), 2 + 4 + 3);
        assert_eq!(chat_tokens(&parts), 2 + 4 + 3, "parts count like the same text in one string");
    }

    #[test]
    fn simulated_tokenizer_counts_four_bytes_a_token() {
        assert_eq!(count_tokens("abcdefgh"), 2);
        assert_eq!(count_tokens(""), 1);
    }
}
