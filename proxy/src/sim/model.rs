//! The simulator's timing model, deliberately simple (the GPU-aware model comes later):
//! at most `max_num_seqs` requests run at once and the rest wait in FIFO order; a
//! running request first pays a prefill time that grows with its prompt, then one
//! decode step per token whose length grows with the number of running sequences.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::metrics::Metrics;

/// Knobs of the simulated server (all times in ms).
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub model: String,
    /// Requests decoded at once; more wait (vLLM's `--max-num-seqs`).
    pub max_num_seqs: u32,
    pub max_model_len: u32,
    /// KV cache size in tokens, for `vllm:kv_cache_usage_perc`.
    pub kv_cache_tokens: u64,
    /// Prefill: fixed part plus a part per 1 000 prompt tokens.
    pub prefill_ms: f64,
    pub prefill_ms_per_1k_tokens: f64,
    /// Decode step: fixed part plus a part per running sequence.
    pub itl_ms: f64,
    pub itl_ms_per_seq: f64,
    /// The simulated GPU's memory, and the share vLLM reserves of it at start (weights, KV cache
    /// and activations), which is what `nvidia-smi` shows as used while it serves.
    pub gpu_memory_bytes: u64,
    pub gpu_memory_utilization: f64,
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
        }
    }
}

impl SimConfig {
    /// Decode step length with `running` sequences.
    pub fn step(&self, running: u32) -> Duration {
        Duration::from_secs_f64((self.itl_ms + self.itl_ms_per_seq * f64::from(running)) / 1000.0)
    }

    pub fn prefill(&self, prompt_tokens: u32) -> Duration {
        Duration::from_secs_f64((self.prefill_ms + self.prefill_ms_per_1k_tokens * f64::from(prompt_tokens) / 1000.0) / 1000.0)
    }
}

pub struct Sim {
    pub config: SimConfig,
    slots: Arc<Semaphore>,
    pub running: AtomicU32,
    pub waiting: AtomicU32,
    pub kv_tokens: AtomicU64,
    pub metrics: Mutex<Metrics>,
}

impl Sim {
    pub fn new(config: SimConfig) -> Self {
        Sim {
            slots: Arc::new(Semaphore::new(config.max_num_seqs.max(1) as usize)),
            config,
            running: AtomicU32::new(0),
            waiting: AtomicU32::new(0),
            kv_tokens: AtomicU64::new(0),
            metrics: Mutex::new(Metrics::default()),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Job {
    pub prompt_tokens: u32,
    pub out_tokens: u32,
}

/// A request admitted to run. Dropping it (client gone) frees its slot.
pub struct Admission {
    sim: Arc<Sim>,
    _slot: Option<OwnedSemaphorePermit>,
    job: Job,
    arrived: Instant,
    admitted: Instant,
    next_at: Instant,
    produced: u32,
    first: Option<Instant>,
    last: Option<Instant>,
    itl: Vec<f64>,
    seq: u64,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

const PIECES: &[&str] = &[
    " The", " model", " serves", " tokens", " quickly", ",", " and", " the", " batch", " grows", ".", " Latency",
    " stays", " low", " while", " throughput", " rises", " under", " load", ";", " caches", " fill", " up", " too",
];

impl Admission {
    /// Waits for a free slot (the request counts as waiting meanwhile).
    pub async fn wait(sim: &Arc<Sim>, job: Job) -> Admission {
        let arrived = Instant::now();
        sim.waiting.fetch_add(1, Ordering::Relaxed);
        let slot = sim.slots.clone().acquire_owned().await;
        sim.waiting.fetch_sub(1, Ordering::Relaxed);
        sim.running.fetch_add(1, Ordering::Relaxed);
        sim.kv_tokens.fetch_add(u64::from(job.prompt_tokens), Ordering::Relaxed);
        let admitted = Instant::now();
        Admission {
            sim: sim.clone(),
            _slot: slot.ok(),
            job,
            arrived,
            admitted,
            next_at: admitted + sim.config.prefill(job.prompt_tokens),
            produced: 0,
            first: None,
            last: None,
            itl: Vec::with_capacity(job.out_tokens as usize),
            seq: SEQ.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Waits one step and returns the next token's text; None when all are produced.
    pub async fn next_token(&mut self, sim: &Sim) -> Option<&'static str> {
        if self.produced >= self.job.out_tokens {
            return None;
        }
        tokio::time::sleep_until(self.next_at).await;
        let now = Instant::now();
        match self.last {
            None => self.first = Some(now),
            Some(prev) => self.itl.push((now - prev).as_secs_f64()),
        }
        self.last = Some(now);
        self.next_at = now.max(self.next_at) + sim.config.step(sim.running.load(Ordering::Relaxed));
        self.produced += 1;
        sim.kv_tokens.fetch_add(1, Ordering::Relaxed);
        Some(PIECES[((self.seq as usize) * 7 + self.produced as usize) % PIECES.len()])
    }

    /// Records a request that ran to its end.
    pub fn complete(&mut self, sim: &Sim) {
        let now = Instant::now();
        let ttft = self.first.map_or(0.0, |f| (f - self.arrived).as_secs_f64());
        let mut m = sim.metrics.lock().unwrap_or_else(|p| p.into_inner());
        m.record(
            self.job.prompt_tokens,
            self.produced,
            (self.admitted - self.arrived).as_secs_f64(),
            ttft,
            (now - self.arrived).as_secs_f64(),
            &self.itl,
        );
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.sim.running.fetch_sub(1, Ordering::Relaxed);
        self.sim.kv_tokens.fetch_sub(u64::from(self.job.prompt_tokens + self.produced), Ordering::Relaxed);
    }
}

/// Simulated tokenizer: one token per 4 bytes of text, at least one.
pub fn count_tokens(text: &str) -> u32 {
    (text.len() as u32).div_ceil(4).max(1)
}

/// Tokens of a chat prompt: its messages' text plus a chat-template overhead.
pub fn chat_tokens(messages: &[serde_json::Value]) -> u32 {
    let text: u32 = messages.iter().map(|m| m.get("content").and_then(|c| c.as_str()).map_or(0, count_tokens)).sum();
    text + 4 * messages.len() as u32 + 3
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
    fn timing_grows_with_load_and_prompt() {
        let c = SimConfig::default();
        assert_eq!(c.step(0), Duration::from_millis(12));
        assert!(c.step(64) > c.step(16));
        assert!(c.prefill(2000) > c.prefill(10));
        assert_eq!(count_tokens("abcdefgh"), 2);
        assert_eq!(count_tokens(""), 1);
    }
}
