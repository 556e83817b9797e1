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
    /// The requests of the cell going on (journalled as they come; kept for its percentiles).
    cell_samples: Vec<RequestSample>,
    eta: Eta,
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
            cell_samples: Vec::new(),
            eta: Eta::default(),
        }
    }

    /// Drains finished requests, stores them, and publishes one tick.
    pub fn tick(&mut self, cell: u32, rx: &mut UnboundedReceiver<RequestSample>) {
        let now = Instant::now();
        let first_new = self.cell_samples.len();
        while let Ok(s) = rx.try_recv() {
            self.done += 1;
            if s.error.is_some_and(|e| e != ErrorClass::Cancelled) {
                self.errors += 1;
            } else if s.error.is_none() && !s.warmup {
                self.recent.push_back((now, s.ttft_ms, s.e2e_ms));
            }
            self.cell_samples.push(s);
        }
        // The append is disk work: the runtime's other tasks (the requests being timed) move to
        // another worker while it runs.
        crate::store::blocking(|| self.run.record(&self.cell_samples[first_new..]));
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
        let eta_s = self.eta.update(now, cell, elapsed, self.done, self.total);
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

impl Aggregator<'_> {
    /// The requests of the cell that just ended; the next cell starts empty.
    pub fn take_cell_samples(&mut self) -> Vec<RequestSample> {
        std::mem::take(&mut self.cell_samples)
    }
}

/// The estimated time left, as a countdown. The pace so far (elapsed / requests done) is
/// re-read only when requests end; between ends the estimate counts down with the clock, and
/// within a cell it never rises (a cell's first wave of long requests would otherwise push it
/// up every tick until they end). A new cell, or a countdown run out, takes the fresh estimate.
#[derive(Default)]
struct Eta {
    /// (when it was set, seconds left then, the cell, requests done then)
    last: Option<(Instant, f64, u32, u64)>,
}

impl Eta {
    fn update(&mut self, now: Instant, cell: u32, elapsed_s: f64, done: u64, total: u64) -> Option<f64> {
        if done == 0 {
            return None;
        }
        let countdown = self.last.map(|(at, left, c, d)| (left - (now - at).as_secs_f64(), c, d));
        let value = match countdown {
            Some((left, c, d)) if d == done && c == cell => left.max(0.0),
            _ => {
                let estimate = elapsed_s / done as f64 * total.saturating_sub(done) as f64;
                match countdown {
                    Some((left, c, _)) if c == cell && left > 0.0 => estimate.min(left),
                    _ => estimate,
                }
            }
        };
        if countdown.is_none_or(|(left, c, d)| d != done || c != cell || left != value) {
            self.last = Some((now, value, cell, done));
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_counts_down_between_ends_and_never_rises_within_a_cell() {
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        let mut eta = Eta::default();
        assert_eq!(eta.update(at(1.0), 0, 1.0, 0, 10), None);
        // 1 of 10 done after 2 s: 18 s left.
        assert_eq!(eta.update(at(2.0), 0, 2.0, 1, 10), Some(18.0));
        // No request ended for 3 s: the estimate would rise (5/1×9 = 45 s); the countdown goes on.
        assert_eq!(eta.update(at(5.0), 0, 5.0, 1, 10), Some(15.0));
        // A slower pace within the cell does not raise it either…
        assert_eq!(eta.update(at(6.0), 0, 6.0, 2, 10), Some(14.0));
        // …and a faster one lowers it.
        assert_eq!(eta.update(at(7.0), 0, 7.0, 8, 10), Some(1.75));
        // A new cell takes the fresh estimate, up or down.
        assert_eq!(eta.update(at(8.0), 1, 8.0, 8, 12), Some(4.0));
        // A countdown that ran out takes the fresh estimate too.
        assert_eq!(eta.update(at(13.0), 1, 13.0, 8, 12), Some(0.0));
        assert_eq!(eta.update(at(13.5), 1, 13.5, 9, 12), Some(4.5));
    }
}
