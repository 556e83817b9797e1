//! One cell of a closed loop replayed on the virtual clock, engine and API server together:
//! what the calibration fits and what a prediction reports. The engine is the scheduler
//! (`scheduler`) stepping at `Timing`'s pace; the API server is one core (`FrontendCosts`) that
//! takes, one after another in the order they became ready, each new request (its parsing and
//! tokenizing, before the engine sees it) and each step's output tokens (before the client
//! sees them). A client sends its next request when the last token of its previous one
//! reaches it. No time passes: a cell of 1,024 requests replays in milliseconds.
//!
//! Besides the client's view (TTFT, TPOT, end to end, tokens/s) it keeps the engine's own, as
//! vLLM's `/metrics` histograms time it: the interval between a request's tokens inside the
//! engine (`vllm:inter_token_latency_seconds`), scheduled → first token
//! (`vllm:request_prefill_time_seconds`) and arrival in the engine → scheduled
//! (`vllm:request_queue_time_seconds`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::frontend::FrontEnd;
use super::profile::FrontendCosts;
use super::scheduler::{Event, Limits, Scheduler, Timing};

/// The load of one cell: `concurrency` clients send `requests` in all, each of
/// `prompt_tokens` (the first `cached_tokens` of them found in vLLM's prefix cache) for
/// `max_new_tokens` tokens, the next as soon as the previous one has ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CellLoad {
    pub concurrency: u32,
    pub requests: u32,
    pub prompt_tokens: u32,
    pub cached_tokens: u32,
    pub max_new_tokens: u32,
}

/// What a replayed cell measured, client side (seconds) and engine side (sums, seconds).
#[derive(Clone, Debug, Default)]
pub struct Replayed {
    /// First send to the last token received.
    pub duration_s: f64,
    pub output_tokens: u64,
    pub ttft_s: Vec<f64>,
    pub e2e_s: Vec<f64>,
    /// (E2E − TTFT) / (tokens − 1), per request of more than one token.
    pub tpot_s: Vec<f64>,
    pub engine_itl_sum_s: f64,
    pub engine_itl_count: u64,
    pub prefill_sum_s: f64,
    pub queue_sum_s: f64,
    pub preemptions: u64,
    /// Busy time of the GPU, the engine core's CPU and the API server's CPU, seconds: which
    /// one bounds the cell.
    pub gpu_busy_s: f64,
    pub engine_cpu_busy_s: f64,
    pub frontend_busy_s: f64,
}

impl Replayed {
    pub fn output_tok_s(&self) -> f64 {
        if self.duration_s > 0.0 {
            self.output_tokens as f64 / self.duration_s
        } else {
            0.0
        }
    }
}

#[derive(Clone, Copy, Default)]
struct Req {
    sent: f64,
    added: f64,
    scheduled: Option<f64>,
    engine_last: f64,
    first: f64,
}

/// Non-negative times ordered by their bits (the order of non-negative f64s).
fn key(t: f64) -> u64 {
    t.max(0.0).to_bits()
}

/// Replays one cell (see the module's doc). `output_lag_steps`: steps between a token being
/// computed and the engine handing it out (`EngineCosts::output_lag_steps`).
pub fn replay(limits: Limits, timing: &Timing, frontend: &FrontendCosts, output_lag_steps: f64, load: &CellLoad) -> Replayed {
    let n = load.requests.max(1);
    let out = load.max_new_tokens.max(1);
    let mut sched = Scheduler::new(limits);
    let mut reqs = vec![Req::default(); n as usize];
    let mut result = Replayed::default();
    let mut fe = FrontEnd::new(frontend.clone());
    // Requests handed to the engine, by the time they reach it.
    let mut arrivals: BinaryHeap<Reverse<(u64, u32)>> = BinaryHeap::new();
    let mut sent = 0u32;
    let mut last_delivery = 0.0f64;
    while sent < load.concurrency.max(1).min(n) {
        fe.send(0.0, sent);
        sent += 1;
    }
    let mut t = 0.0f64;
    let mut prev_step = 0.0f64;
    let mut last_out = 0.0f64;
    loop {
        // The API server runs every loop iteration that starts by now.
        while let Some(start) = fe.next_start().filter(|s| *s <= t) {
            let it = fe.iterate(start);
            result.frontend_busy_s += it.busy;
            if let Some((id, at)) = it.handed {
                arrivals.push(Reverse((key(at), id)));
            }
            for (id, index, last, at) in it.delivered {
                let r = &mut reqs[id as usize];
                if index == 0 {
                    r.first = at;
                }
                if last {
                    let (ttft, e2e) = (r.first - r.sent, at - r.sent);
                    result.ttft_s.push(ttft);
                    result.e2e_s.push(e2e);
                    if out > 1 {
                        result.tpot_s.push((e2e - ttft) / f64::from(out - 1));
                    }
                    result.output_tokens += u64::from(out);
                    last_delivery = last_delivery.max(at);
                    if sent < n {
                        reqs[sent as usize].sent = at;
                        fe.send(at, sent);
                        sent += 1;
                    }
                }
            }
        }
        // The engine takes the requests that have reached it.
        while let Some(&Reverse((at, id))) = arrivals.peek() {
            if at > key(t) {
                break;
            }
            arrivals.pop();
            reqs[id as usize].added = t;
            sched.add_cached(u64::from(id), load.prompt_tokens, load.cached_tokens, out);
        }
        if let Some(step) = sched.plan() {
            // With async scheduling the step was planned while the previous one ran.
            let (start, planned) = (t, t - prev_step);
            let (gpu, cpu) = timing.parts(&step);
            result.gpu_busy_s += gpu;
            result.engine_cpu_busy_s += cpu;
            let dur = timing.seconds(&step);
            t += dur;
            prev_step = dur;
            // Handed out in step order: never before the tokens of an earlier step.
            let out_at = (t + timing.output_lag_seconds(&step, output_lag_steps)).max(last_out);
            last_out = out_at;
            let mut tokens = Vec::with_capacity(step.decode.len() + step.prefill.len());
            for e in sched.finish(&step) {
                match e {
                    Event::Admitted { id } => {
                        let r = &mut reqs[id as usize];
                        if r.scheduled.is_none() {
                            r.scheduled = Some(planned);
                            result.queue_sum_s += start - r.added;
                        }
                    }
                    Event::Token { id, index, last } => {
                        let r = &mut reqs[id as usize];
                        if index == 0 {
                            result.prefill_sum_s += out_at - r.scheduled.unwrap_or(planned);
                        } else {
                            result.engine_itl_sum_s += out_at - r.engine_last;
                            result.engine_itl_count += 1;
                        }
                        r.engine_last = out_at;
                        tokens.push((id as u32, index, last));
                    }
                    Event::Preempted { .. } => {}
                }
            }
            if !tokens.is_empty() {
                fe.output(out_at, tokens);
            }
            continue;
        }
        // The engine is idle: on to whatever comes next.
        let next_arrival = arrivals.peek().map(|Reverse((at, _))| f64::from_bits(*at));
        match (next_arrival, fe.next_start()) {
            (None, None) => break,
            (a, w) => t = t.max(a.unwrap_or(f64::INFINITY).min(w.unwrap_or(f64::INFINITY))),
        }
    }
    result.duration_s = last_delivery;
    result.preemptions = sched.preemptions;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::scheduler::virtual_closed_loop;

    const LIMITS: Limits = Limits { max_num_seqs: 64, max_num_batched_tokens: 2048, kv_blocks: 100_000 };
    const TIMING: Timing = Timing::Fixed { itl_ms: 10.0, itl_ms_per_seq: 0.1, prefill_ms: 5.0, prefill_ms_per_1k_tokens: 20.0 };

    fn load(c: u32, n: u32) -> CellLoad {
        CellLoad { concurrency: c, requests: n, prompt_tokens: 100, cached_tokens: 0, max_new_tokens: 50 }
    }

    #[test]
    fn without_a_front_end_it_is_the_plain_closed_loop() {
        for c in [1, 8, 32, 128] {
            let r = replay(LIMITS, &TIMING, &FrontendCosts::default(), 0.0, &load(c, 2 * c));
            let (secs, done, _) = virtual_closed_loop(LIMITS, &TIMING, c, 100, 50, 2 * c);
            assert_eq!(r.e2e_s.len(), done.len());
            assert!((r.duration_s - secs).abs() < 1e-9, "c{c}: {} vs {secs}", r.duration_s);
            let mut a: Vec<f64> = r.e2e_s.clone();
            let mut b: Vec<f64> = done.iter().map(|d| d.1).collect();
            a.sort_by(f64::total_cmp);
            b.sort_by(f64::total_cmp);
            assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-9), "c{c}: the same latencies");
        }
    }

    #[test]
    fn a_saturated_front_end_caps_throughput_and_delays_first_tokens() {
        // 100 µs a token: at most 10,000 tokens/s, whatever the engine could do.
        let fast = Timing::Fixed { itl_ms: 1.0, itl_ms_per_seq: 0.01, prefill_ms: 0.5, prefill_ms_per_1k_tokens: 2.0 };
        let fe = FrontendCosts { request_ms: 1.0, token_us: 100.0, chunk_us: 0.0, token_us_per_1k_streams: 0.0 };
        let free = replay(LIMITS, &fast, &FrontendCosts::default(), 0.0, &load(64, 256));
        let capped = replay(LIMITS, &fast, &fe, 0.0, &load(64, 256));
        assert!(free.output_tok_s() > 20_000.0, "{}", free.output_tok_s());
        assert!(capped.output_tok_s() < 10_000.0 && capped.output_tok_s() > 7_000.0, "{}", capped.output_tok_s());
        // The 64th request of the first wave waits for 63 others to be read: TTFT ≥ 64 ms.
        let worst = capped.ttft_s.iter().cloned().fold(0.0, f64::max);
        assert!(worst > 0.064, "{worst}");
        // More open streams make every token dearer: throughput falls past the ceiling.
        let crowded = FrontendCosts { token_us_per_1k_streams: 100.0, ..fe.clone() };
        let t64 = replay(LIMITS, &fast, &crowded, 0.0, &load(64, 256)).output_tok_s();
        let t512 = replay(Limits { max_num_seqs: 1024, ..LIMITS }, &fast, &crowded, 0.0, &load(512, 1024)).output_tok_s();
        assert!(t512 < 0.9 * t64, "{t64} → {t512}");
    }

    #[test]
    fn engine_side_times_are_the_engine_steps() {
        // One request alone: its engine ITL is the decode step, its prefill one step; the
        // front end only adds to what the client sees.
        let fe = FrontendCosts { request_ms: 3.0, token_us: 50.0, chunk_us: 0.0, token_us_per_1k_streams: 0.0 };
        let r = replay(LIMITS, &TIMING, &fe, 0.0, &load(1, 1));
        assert_eq!(r.engine_itl_count, 49);
        let itl = r.engine_itl_sum_s / 49.0;
        assert!((itl - 0.0101).abs() < 1e-9, "{itl}");
        assert!((r.prefill_sum_s - (0.010 + 0.0001 + 0.005 + 0.002)).abs() < 1e-9, "{}", r.prefill_sum_s);
        assert!(r.queue_sum_s.abs() < 1e-12);
        assert!(r.ttft_s[0] > 0.003 + r.prefill_sum_s, "the request's parsing comes first");
    }
}
