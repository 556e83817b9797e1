//! Folds request samples into live ticks. Called on a fixed interval; drains the
//! channel without waking per sample and touches the run's shared state once per tick.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use caplab_shared::stats::percentile;
use caplab_shared::{ErrorClass, LiveTick, RequestSample, ServerMsg};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

use super::request::LiveCounters;
use crate::runs::Run;

/// Requests that ended within this window feed the live latency percentiles.
const WINDOW: Duration = Duration::from_secs(5);
/// Live tokens/s is averaged over this window, so a request's end-of-stream
/// correction to its server-reported count does not spike a single short tick.
const RATE_WINDOW: Duration = Duration::from_secs(1);

pub struct Aggregator<'a> {
    run: &'a Run,
    live: Arc<LiveCounters>,
    run_start: Instant,
    /// (tick time, cumulative output tokens) over the last RATE_WINDOW.
    token_history: VecDeque<(Instant, i64)>,
    total: u64,
    done: u64,
    errors: u64,
    recent: VecDeque<(Instant, Option<f64>, f64)>,
    batch: Vec<RequestSample>,
}

impl<'a> Aggregator<'a> {
    pub fn new(run: &'a Run, live: Arc<LiveCounters>, run_start: Instant, total: u64) -> Self {
        Aggregator {
            run,
            live,
            run_start,
            token_history: VecDeque::from([(run_start, 0)]),
            total,
            done: 0,
            errors: 0,
            recent: VecDeque::new(),
            batch: Vec::new(),
        }
    }

    /// Drains finished requests, stores them, and publishes one tick.
    pub fn tick(&mut self, cell: u32, rx: &mut UnboundedReceiver<RequestSample>) {
        let now = Instant::now();
        while let Ok(s) = rx.try_recv() {
            self.done += 1;
            if s.error.is_some_and(|e| e != ErrorClass::Cancelled) {
                self.errors += 1;
            } else if s.error.is_none() && !s.warmup {
                self.recent.push_back((now, s.ttft_ms, s.e2e_ms));
            }
            self.batch.push(s);
        }
        self.run.append_samples(&mut self.batch);
        while self.recent.front().is_some_and(|r| now - r.0 > WINDOW) {
            self.recent.pop_front();
        }
        let tokens = self.live.output_tokens.load(Ordering::Relaxed);
        while self.token_history.len() > 1 && self.token_history.get(1).is_some_and(|h| now - h.0 >= RATE_WINDOW) {
            self.token_history.pop_front();
        }
        let (then, then_tokens) = self.token_history.front().copied().unwrap_or((now, tokens));
        let dt = (now - then).as_secs_f64();
        let output_tok_s = if dt > 0.0 { (tokens - then_tokens).max(0) as f64 / dt } else { 0.0 };
        self.token_history.push_back((now, tokens));
        let mut ttft: Vec<f64> = self.recent.iter().filter_map(|r| r.1).collect();
        let mut e2e: Vec<f64> = self.recent.iter().map(|r| r.2).collect();
        let elapsed = (now - self.run_start).as_secs_f64();
        let eta_s = (self.done > 0).then(|| elapsed / self.done as f64 * self.total.saturating_sub(self.done) as f64);
        let tick = LiveTick {
            t_s: elapsed,
            cell,
            in_flight: self.live.in_flight.load(Ordering::Relaxed),
            requests_done: self.done,
            errors: self.errors,
            output_tok_s,
            ttft_p50_ms: percentile(&mut ttft, 50.0),
            ttft_p95_ms: percentile(&mut ttft, 95.0),
            e2e_p50_ms: percentile(&mut e2e, 50.0),
            e2e_p95_ms: percentile(&mut e2e, 95.0),
            eta_s,
        };
        self.run.publish(ServerMsg::Tick { tick });
    }
}
