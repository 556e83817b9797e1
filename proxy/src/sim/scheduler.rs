//! The simulator's engine, after vLLM's V1 scheduler: continuous batching in steps. Each step
//! decodes one token for every running sequence and spends what is left of
//! `max_num_batched_tokens` on prefill (chunked), admitting waiting requests first come first
//! served while sequence slots and KV-cache blocks last. When a running sequence needs a block
//! and none is free, the most recently admitted one is preempted: its blocks are freed and it
//! goes back to the front of the queue, to be recomputed (vLLM's only mode).
//!
//! Pure and clock-free: `plan` picks a step, the caller decides how long it took (`Timing`) and
//! calls `finish`. The HTTP simulator drives it in real time; `virtual_closed_loop` drives it on
//! a virtual clock, so a test of queueing and preemption runs in milliseconds.

use std::collections::VecDeque;

use super::profile::{Deployment, BLOCK_SIZE};

/// How long a step takes.
#[derive(Clone, Debug)]
pub enum Timing {
    /// Fixed costs (ms): a step is `itl_ms + itl_ms_per_seq × sequences`, plus
    /// `prefill_ms + prefill_ms_per_1k_tokens × tokens / 1000` when it prefills.
    Fixed { itl_ms: f64, itl_ms_per_seq: f64, prefill_ms: f64, prefill_ms_per_1k_tokens: f64 },
    /// A roofline of the deployment's GPU and model (`Deployment::step_seconds`).
    Roofline(Box<Deployment>),
}

impl Timing {
    /// A step's GPU and engine-CPU seconds (the fixed costs count as GPU time).
    pub fn parts(&self, step: &Step) -> (f64, f64) {
        match self {
            Timing::Fixed { .. } => (self.seconds(step), 0.0),
            Timing::Roofline(d) => {
                let decode: Vec<u32> = step.decode.iter().map(|d| d.1).collect();
                let prefill: Vec<(u32, u32)> = step.prefill.iter().map(|p| (p.1, p.2)).collect();
                (d.gpu_seconds(&decode, &prefill), d.costs.cpu_seconds(decode.len() + prefill.len()))
            }
        }
    }

    /// How long the tokens of `step` wait, after it ends, before the engine hands them out:
    /// `lag_steps` steps like the ones that follow it, in which every sequence of `step` decodes
    /// (a prompt just prefilled now decodes too). Timed on the step itself, a long prefill
    /// would hold its first token for several prefills' time while the next short steps' tokens
    /// overtook it.
    pub fn output_lag_seconds(&self, step: &Step, lag_steps: f64) -> f64 {
        if lag_steps <= 0.0 {
            return 0.0;
        }
        let next = Step { decode: step.decode.iter().map(|&(id, ctx)| (id, ctx + 1)).chain(step.prefill.iter().map(|&(id, now, before)| (id, now + before + 1))).collect(), prefill: Vec::new() };
        lag_steps * self.seconds(&next)
    }

    pub fn seconds(&self, step: &Step) -> f64 {
        match self {
            Timing::Fixed { itl_ms, itl_ms_per_seq, prefill_ms, prefill_ms_per_1k_tokens } => {
                let seqs = (step.decode.len() + step.prefill.len()) as f64;
                let prefill_tokens: f64 = step.prefill.iter().map(|p| f64::from(p.1)).sum();
                let prefill = if step.prefill.is_empty() { 0.0 } else { prefill_ms + prefill_ms_per_1k_tokens * prefill_tokens / 1000.0 };
                (itl_ms + itl_ms_per_seq * seqs + prefill) / 1000.0
            }
            Timing::Roofline(d) => {
                let decode: Vec<u32> = step.decode.iter().map(|d| d.1).collect();
                let prefill: Vec<(u32, u32)> = step.prefill.iter().map(|p| (p.1, p.2)).collect();
                d.step_seconds(&decode, &prefill)
            }
        }
    }
}

/// The limits of the engine.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_num_seqs: u32,
    pub max_num_batched_tokens: u32,
    pub kv_blocks: u32,
}

#[derive(Clone, Debug)]
struct Seq {
    id: u64,
    prompt: u32,
    max_out: u32,
    generated: u32,
    /// Tokens whose KV is in the cache.
    computed: u32,
    blocks: u32,
}

impl Seq {
    fn tokens(&self) -> u32 {
        self.prompt + self.generated
    }
}

/// One planned step: (id, context length) decoding; (id, tokens now, tokens cached before) prefilling.
#[derive(Clone, Debug, Default)]
pub struct Step {
    pub decode: Vec<(u64, u32)>,
    pub prefill: Vec<(u64, u32, u32)>,
}

/// What a step produced for one sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new token (`index` from 0); `last`: the sequence is finished.
    Token { id: u64, index: u32, last: bool },
    /// Left the running set for the queue: its blocks are freed; it will be recomputed.
    Preempted { id: u64 },
    /// Admitted from the queue (first time or after a preemption).
    Admitted { id: u64 },
}

pub struct Scheduler {
    limits: Limits,
    waiting: VecDeque<Seq>,
    running: Vec<Seq>,
    free_blocks: u32,
    pub preemptions: u64,
    events: Vec<Event>,
    /// What the last `plan` scheduled, as (index in `running`, tokens computed): lets `finish`
    /// apply a step without looking each sequence up (a step of 500 sequences would cost
    /// 500 × 500 comparisons, which the calibration's thousands of replays cannot afford).
    planned: Vec<(usize, u32)>,
}

fn blocks_for(tokens: u32) -> u32 {
    tokens.div_ceil(BLOCK_SIZE)
}

impl Scheduler {
    pub fn new(limits: Limits) -> Scheduler {
        Scheduler { limits, waiting: VecDeque::new(), running: Vec::new(), free_blocks: limits.kv_blocks, preemptions: 0, events: Vec::new(), planned: Vec::new() }
    }

    pub fn add(&mut self, id: u64, prompt: u32, max_out: u32) {
        self.add_cached(id, prompt, 0, max_out);
    }

    /// Queues a request whose first `cached` prompt tokens are already in vLLM's prefix cache:
    /// they hold blocks but are not computed again (at most all but the last prompt token is
    /// cached, as in vLLM, which always computes the last one to sample from). A preempted
    /// sequence is recomputed in full.
    pub fn add_cached(&mut self, id: u64, prompt: u32, cached: u32, max_out: u32) {
        let prompt = prompt.max(1);
        self.waiting.push_back(Seq { id, prompt, max_out: max_out.max(1), generated: 0, computed: cached.min(prompt - 1), blocks: 0 });
    }

    /// Drops a sequence (its client went away), freeing its blocks.
    pub fn abort(&mut self, id: u64) {
        self.planned.clear();
        if let Some(i) = self.running.iter().position(|s| s.id == id) {
            let s = self.running.remove(i);
            self.free_blocks += s.blocks;
        }
        self.waiting.retain(|s| s.id != id);
    }

    pub fn is_idle(&self) -> bool {
        self.running.is_empty() && self.waiting.is_empty()
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn kv_usage(&self) -> f64 {
        1.0 - f64::from(self.free_blocks) / f64::from(self.limits.kv_blocks.max(1))
    }

    /// Grows sequence `i` of `running` to hold `tokens`; false when the blocks are not there.
    fn grow(&mut self, i: usize, tokens: u32) -> bool {
        let need = blocks_for(tokens).saturating_sub(self.running[i].blocks);
        if need > self.free_blocks {
            return false;
        }
        self.free_blocks -= need;
        self.running[i].blocks += need;
        true
    }

    /// Chooses the next step (None when there is nothing to do); preemptions and admissions
    /// are reported by the following `finish`.
    pub fn plan(&mut self) -> Option<Step> {
        let mut step = Step::default();
        self.planned.clear();
        let mut budget = self.limits.max_num_batched_tokens;
        let mut preempted = false;
        // Running sequences first, oldest first; the newest are preempted when blocks run out.
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let s = &self.running[i];
            let (n, before) = ((s.tokens() - s.computed).min(budget), s.computed);
            let target = before + n;
            while !self.grow(i, target) {
                // Preempt the newest running sequence (possibly this one).
                let Some(mut victim) = self.running.pop() else { break };
                self.free_blocks += victim.blocks;
                victim.blocks = 0;
                victim.computed = 0;
                self.preemptions += 1;
                preempted = true;
                self.events.push(Event::Preempted { id: victim.id });
                self.waiting.push_front(victim);
                if i >= self.running.len() {
                    break;
                }
            }
            if i >= self.running.len() {
                break;
            }
            let s = &self.running[i];
            if s.generated > 0 && before + 1 == s.tokens() {
                step.decode.push((s.id, s.tokens()));
            } else {
                step.prefill.push((s.id, n, before));
            }
            self.planned.push((i, n));
            budget -= n;
            i += 1;
        }
        // Then the queue, first come first served, unless this step had to preempt.
        while !preempted && budget > 0 && (self.running.len() as u32) < self.limits.max_num_seqs {
            let Some(s) = self.waiting.front() else { break };
            let (n, before) = ((s.tokens() - s.computed).min(budget), s.computed);
            if blocks_for(before + n) > self.free_blocks {
                break;
            }
            let Some(mut s) = self.waiting.pop_front() else { break };
            s.blocks = blocks_for(before + n);
            self.free_blocks -= s.blocks;
            self.events.push(Event::Admitted { id: s.id });
            step.prefill.push((s.id, n, before));
            self.planned.push((self.running.len(), n));
            budget -= n;
            self.running.push(s);
        }
        (!step.decode.is_empty() || !step.prefill.is_empty()).then_some(step)
    }

    /// Applies a step that has run: KV computed, tokens produced, finished sequences freed.
    /// Returns what happened, in order.
    pub fn finish(&mut self, step: &Step) -> Vec<Event> {
        let mut events = std::mem::take(&mut self.events);
        let planned = std::mem::take(&mut self.planned);
        let scheduled = step.decode.len() + step.prefill.len();
        // The step `plan` made last, in running order; any other is looked up by id.
        let order: Vec<(usize, u32)> = if planned.len() == scheduled && planned.iter().all(|&(i, _)| i < self.running.len()) {
            planned
        } else {
            let done = step.decode.iter().map(|d| (d.0, 1)).chain(step.prefill.iter().map(|p| (p.0, p.1)));
            done.filter_map(|(id, n)| self.running.iter().position(|s| s.id == id).map(|i| (i, n))).collect()
        };
        let mut finished = false;
        for (i, n) in order {
            let s = &mut self.running[i];
            s.computed += n;
            if s.computed == s.tokens() {
                let index = s.generated;
                s.generated += 1;
                let last = s.generated >= s.max_out;
                events.push(Event::Token { id: s.id, index, last });
                if last {
                    self.free_blocks += s.blocks;
                    s.blocks = 0;
                    finished = true;
                }
            }
        }
        if finished {
            self.running.retain(|s| s.generated < s.max_out);
        }
        events
    }
}

/// A closed loop on a virtual clock: `concurrency` clients each send a request of `prompt`
/// tokens for `max_out` tokens, and the next as soon as theirs ends, `requests` in all.
/// Returns (seconds from the first send to the last token, per request: (TTFT s, E2E s)) and the
/// preemptions. No time passes: it runs as fast as the steps can be planned.
pub fn virtual_closed_loop(limits: Limits, timing: &Timing, concurrency: u32, prompt: u32, max_out: u32, requests: u32) -> (f64, Vec<(f64, f64)>, u64) {
    let mut s = Scheduler::new(limits);
    let mut now = 0.0;
    let mut sent = 0u32;
    let mut start = std::collections::HashMap::new();
    let mut first = std::collections::HashMap::new();
    let mut results = Vec::new();
    while sent < concurrency.min(requests) {
        s.add(u64::from(sent), prompt, max_out);
        start.insert(u64::from(sent), 0.0);
        sent += 1;
    }
    while let Some(step) = s.plan() {
        now += timing.seconds(&step);
        for e in s.finish(&step) {
            if let Event::Token { id, index, last } = e {
                if index == 0 {
                    first.insert(id, now);
                }
                if last {
                    results.push((first[&id] - start[&id], now - start[&id]));
                    if sent < requests {
                        s.add(u64::from(sent), prompt, max_out);
                        start.insert(u64::from(sent), now);
                        sent += 1;
                    }
                }
            }
        }
    }
    (now, results, s.preemptions)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXED: Timing = Timing::Fixed { itl_ms: 10.0, itl_ms_per_seq: 0.0, prefill_ms: 0.0, prefill_ms_per_1k_tokens: 0.0 };

    fn run_all(s: &mut Scheduler) -> (u32, Vec<Event>) {
        let mut steps = 0;
        let mut all = Vec::new();
        while let Some(step) = s.plan() {
            steps += 1;
            all.extend(s.finish(&step));
            assert!(steps < 100_000, "the engine makes progress");
        }
        (steps, all)
    }

    #[test]
    fn one_request_prefills_then_decodes_a_token_a_step() {
        let mut s = Scheduler::new(Limits { max_num_seqs: 8, max_num_batched_tokens: 64, kv_blocks: 100 });
        s.add(1, 100, 5);
        let (steps, events) = run_all(&mut s);
        // 100 prompt tokens at 64 a step: 2 prefill steps (the 2nd yields token 0), then 4 decodes.
        assert_eq!(steps, 6);
        let tokens: Vec<u32> = events.iter().filter_map(|e| if let Event::Token { index, .. } = e { Some(*index) } else { None }).collect();
        assert_eq!(tokens, [0, 1, 2, 3, 4]);
        assert_eq!(s.free_blocks, 100, "every block is back");
    }

    #[test]
    fn sequence_slots_make_requests_wait() {
        let mut s = Scheduler::new(Limits { max_num_seqs: 2, max_num_batched_tokens: 1000, kv_blocks: 1000 });
        for id in 0..5 {
            s.add(id, 10, 3);
        }
        let step = s.plan().unwrap();
        assert_eq!((s.running(), s.waiting()), (2, 3));
        s.finish(&step);
        let (_, events) = run_all(&mut s);
        assert_eq!(events.iter().filter(|e| matches!(e, Event::Token { last: true, .. })).count(), 5);
    }

    #[test]
    fn a_full_kv_cache_preempts_the_newest_and_recomputes_it() {
        // 4 blocks of 16 tokens; two sequences of 16-token prompts growing to 40 tokens each need 6.
        let mut s = Scheduler::new(Limits { max_num_seqs: 8, max_num_batched_tokens: 512, kv_blocks: 4 });
        s.add(1, 16, 24);
        s.add(2, 16, 24);
        let (_, events) = run_all(&mut s);
        assert!(s.preemptions >= 1, "{events:?}");
        assert!(events.contains(&Event::Preempted { id: 2 }), "the newest goes first");
        for id in [1, 2] {
            let tokens: Vec<u32> = events.iter().filter_map(|e| match e { Event::Token { id: i, index, .. } if *i == id => Some(*index), _ => None }).collect();
            assert_eq!(tokens, (0..24).collect::<Vec<_>>(), "sequence {id} streams every token once, in order, despite recompute");
        }
        assert_eq!(s.free_blocks, 4);
    }

    #[test]
    fn a_client_that_goes_away_frees_its_slot_and_blocks() {
        let mut s = Scheduler::new(Limits { max_num_seqs: 1, max_num_batched_tokens: 256, kv_blocks: 8 });
        s.add(1, 40, 100);
        s.add(2, 40, 3);
        let step = s.plan().unwrap();
        s.finish(&step);
        assert_eq!((s.running(), s.waiting()), (1, 1), "one slot: the second waits");
        s.abort(1);
        assert_eq!(s.free_blocks, 8, "the aborted sequence's blocks are back");
        let (_, events) = run_all(&mut s);
        assert!(events.contains(&Event::Token { id: 2, index: 2, last: true }), "the waiting request runs to its end");
        assert!(!events.iter().any(|e| matches!(e, Event::Token { id: 1, .. })), "nothing more for the aborted one");
    }

    #[test]
    fn virtual_clock_shows_flat_latency_then_a_knee_and_saturating_throughput() {
        let limits = Limits { max_num_seqs: 16, max_num_batched_tokens: 2048, kv_blocks: 10_000 };
        let timing = Timing::Fixed { itl_ms: 10.0, itl_ms_per_seq: 0.2, prefill_ms: 5.0, prefill_ms_per_1k_tokens: 20.0 };
        let tput = |c: u32| {
            let (t, r, _) = virtual_closed_loop(limits, &timing, c, 200, 100, c * 4);
            (r.len() as f64 * 100.0 / t, r.iter().map(|x| x.1).fold(0.0, f64::max))
        };
        let (t1, e1) = tput(1);
        let (t8, e8) = tput(8);
        let (t16, _) = tput(16);
        let (t64, e64) = tput(64);
        assert!(t8 > 6.0 * t1 && t16 > t8, "throughput grows while slots last: {t1} {t8} {t16}");
        assert!(t64 < 1.1 * t16, "and saturates past max_num_seqs: {t16} {t64}");
        assert!(e8 < 1.5 * e1, "latency stays flat at first: {e1} {e8}");
        assert!(e64 > 3.0 * e8, "then the knee: queued requests wait: {e8} {e64}");
        let _ = FIXED;
    }
}
