//! A grid cell's result row and how it is computed from its request samples.
//! This is the only place the summary statistics are defined.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::sample::{ErrorClass, RequestSample};
use crate::spec::{CellSpec, Load, Slo};
pub use crate::stats::Dist;
use crate::token_hist::TokenHist;

/// One row of the results: everything measured for one grid cell.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct CellResult {
    pub cell: u32,
    /// Closed loop: workers; rate mode: 0.
    pub concurrency: u32,
    pub max_new_tokens: u32,
    /// Rate mode: offered requests/s.
    pub rate: Option<f64>,
    /// Synthetic prompts of this many tokens (the spec's `input_tokens` axis); None: the workload's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u32>,
    /// Measurement window: first measured request's scheduled time → last measured response's end (s).
    pub total_time_s: f64,
    /// Measured requests that completed without error.
    pub requests_ok: u32,
    /// Measured requests that failed (any class but `cancelled`), kept out of latency and throughput.
    pub requests_failed: u32,
    /// Measured requests ended by a stop of the run (counted apart from failures).
    pub requests_cancelled: u32,
    /// The run was stopped before every planned request of this cell ended: its numbers cover
    /// only the requests that did.
    pub partial: bool,
    /// Warm-up requests sent before the measured ones (not in any statistic).
    pub warmup_requests: u32,
    /// Failed measured requests per error class.
    pub errors: BTreeMap<ErrorClass, u32>,
    /// Sum of the server's `usage.prompt_tokens` over successful measured requests.
    pub prompt_tokens: u64,
    /// Sum of the server's `usage.completion_tokens` over successful measured requests.
    pub completion_tokens: u64,
    /// Output tokens/s: completion_tokens / total_time_s (the notes' `throughput_tok_s`).
    pub output_tok_s: f64,
    /// (prompt + completion tokens) / total_time_s.
    pub total_tok_s: f64,
    /// Successful measured requests / total_time_s.
    pub requests_per_s: f64,
    /// Time to first token (ms, from the scheduled time).
    pub ttft: Dist,
    /// Inter-token latency: every gap between text-bearing events after the first (ms).
    pub itl: Dist,
    /// Time per output token after the first, per request (ms).
    pub tpot: Dist,
    /// End-to-end latency (ms, from the scheduled time).
    pub e2e: Dist,
    /// Client-side queueing: scheduled → actually sent (ms).
    pub queue: Dist,
    /// Most requests in flight at once (from send/end times of all requests of the cell).
    pub peak_concurrency: u32,
    /// Steady state: from when in-flight first reached its peak to when it last left it (s since cell start).
    pub steady_start_s: f64,
    pub steady_end_s: f64,
    /// The objectives checked (defaults filled in).
    pub slo: Slo,
    /// Every set objective holds at p95 over the requests measured, and none of them failed.
    /// For a partial cell (cut by a stop) that covers only the requests that ended: read
    /// `slo_state()` for the cell's verdict, which never calls a partial cell a pass.
    pub slo_pass: bool,
    /// Why the cell missed its SLO, one entry per broken objective (empty when it passed).
    pub slo_missed: Vec<String>,
    /// Measured requests that succeeded and met every objective.
    pub good_requests: u32,
    /// good_requests / total_time_s.
    pub goodput_rps: f64,
    /// Successful measured requests with fewer output tokens than `max_new_tokens` (ended at
    /// end-of-sequence where the server cannot force the length, or clamped to the context).
    #[serde(default)]
    pub short_outputs: u32,
    /// Successful measured requests whose stream carried no `usage` (from a server not known to
    /// send it): their tokens are unknown and missing from every token count and rate.
    #[serde(default)]
    pub tokens_unknown: u32,
    /// Successful measured requests whose stream ended with `data: [DONE]` (a fact about the
    /// server; streams without it are complete too).
    #[serde(default)]
    pub done_markers: u32,
    /// What a reader must know to read this row, in words (e.g. concurrency above the cell's
    /// request count, outputs shorter than asked).
    #[serde(default)]
    pub notes: Vec<String>,
    /// What the target's `/metrics` said during the cell (None: the target has none).
    #[serde(default)]
    pub server: Option<crate::telemetry::ServerCellStats>,
    /// What the GPUs did during the cell (None: no GPU could be read).
    #[serde(default)]
    pub gpu: Option<crate::telemetry::GpuCellStats>,
    /// Conversations (the spec's `turns`): the successful measured requests of each turn number,
    /// first turn first. Empty for single requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_turn: Vec<TurnStats>,
    /// The successful measured requests by their prompt tokens and by their output tokens, as
    /// the server counted them (`usage`); requests without usage are not in them.
    #[serde(default, skip_serializing_if = "TokenHist::is_empty")]
    pub prompt_tokens_hist: TokenHist,
    #[serde(default, skip_serializing_if = "TokenHist::is_empty")]
    pub completion_tokens_hist: TokenHist,
}

/// Why a cell misses `slo`, one entry per reason (empty: it passes): no successful request,
/// failed requests, and each objective its p95 (end to end, TTFT, TPOT, in that order) breaks.
pub fn slo_misses(slo: &Slo, ok: u32, failed: u32, p95: [Option<f64>; 3]) -> Vec<String> {
    let mut missed = Vec::new();
    if ok == 0 {
        missed.push("no successful request".to_string());
    }
    if failed > 0 {
        missed.push(format!("{failed} failed request{}", if failed == 1 { "" } else { "s" }));
    }
    for (name, bound, p95) in [("E2E", slo.e2e_ms, p95[0]), ("TTFT", slo.ttft_ms, p95[1]), ("TPOT", slo.tpot_ms, p95[2])] {
        if let (Some(b), Some(v)) = (bound, p95) {
            if v > b {
                missed.push(format!("{name} p95 {v:.0} ms > {b:.0} ms"));
            }
        }
    }
    missed
}

/// One turn number of a cell's conversations: every turn resends the history, so later turns
/// carry longer prompts, which the prefix cache may serve.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct TurnStats {
    /// 1 = the conversations' first turn.
    pub turn: u32,
    /// Successful measured requests of this turn.
    pub requests: u32,
    /// Their time to first token (ms, from the scheduled time).
    pub ttft: Dist,
    /// Mean of the server's `usage.prompt_tokens` over them (the history grows each turn).
    pub prompt_tokens_mean: Option<f64>,
}

impl TurnStats {
    /// Per turn number, from the successful measured requests that have one.
    pub fn of(ok: &[&RequestSample]) -> Vec<TurnStats> {
        let mut turns: BTreeMap<u32, Vec<&RequestSample>> = BTreeMap::new();
        for s in ok {
            if let Some(t) = s.turn {
                turns.entry(t).or_default().push(s);
            }
        }
        turns
            .into_iter()
            .map(|(turn, of)| {
                TurnStats {
                    turn,
                    requests: of.len() as u32,
                    ttft: Dist::of(&mut of.iter().filter_map(|s| s.ttft_ms).collect::<Vec<_>>()),
                    prompt_tokens_mean: Dist::of(&mut of.iter().filter_map(|s| s.prompt_tokens.map(f64::from)).collect::<Vec<_>>()).mean,
                }
            })
            .collect()
    }

    /// "TTFT by turn (p50 / p95 ms, mean prompt tokens): 1: 41 / 52 (38 tok) · 2: …".
    pub fn words(turns: &[TurnStats]) -> Option<String> {
        let ms = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.0}"));
        let each: Vec<String> = turns
            .iter()
            .map(|t| {
                let tokens = t.prompt_tokens_mean.map(|p| format!(" ({p:.0} tok)")).unwrap_or_default();
                format!("{}: {} / {}{tokens}", t.turn, ms(t.ttft.p50), ms(t.ttft.p95))
            })
            .collect();
        (!each.is_empty()).then(|| format!("TTFT by turn (p50 / p95 ms, mean prompt tokens): {}", each.join(" · ")))
    }
}

impl CellResult {
    /// The cell's load level, from the pair the row carries (`concurrency`, `rate`).
    pub fn load(&self) -> Load {
        Load::of(self.concurrency, self.rate)
    }

    /// Computes the row from all samples of one cell (warm-up ones included; they are skipped).
    /// `planned` is the number of measured requests the cell was to send.
    pub fn compute(cell: &CellSpec, samples: &[RequestSample], slo: &Slo, planned: u32) -> CellResult {
        let mut errors = BTreeMap::new();
        for s in samples.iter().filter(|s| !s.warmup) {
            if let Some(class) = s.error {
                *errors.entry(class).or_insert(0u32) += 1;
            }
        }
        let cancelled = errors.get(&ErrorClass::Cancelled).copied().unwrap_or(0);
        // Requests cut short by a stop say nothing about the server: they are left out entirely.
        let measured: Vec<&RequestSample> =
            samples.iter().filter(|s| !s.warmup && s.error != Some(ErrorClass::Cancelled)).collect();
        let ok: Vec<&RequestSample> = measured.iter().copied().filter(|s| s.error.is_none()).collect();
        let window_start = measured.iter().map(|s| s.scheduled_s).fold(f64::INFINITY, f64::min);
        let window_end = measured.iter().map(|s| s.end_s()).fold(f64::NEG_INFINITY, f64::max);
        let total_time_s = if measured.is_empty() { 0.0 } else { (window_end - window_start).max(0.0) };
        let per_s = |x: f64| if total_time_s > 0.0 { x / total_time_s } else { 0.0 };

        let prompt_tokens: u64 = ok.iter().map(|s| u64::from(s.prompt_tokens.unwrap_or(0))).sum();
        let completion_tokens: u64 = ok.iter().map(|s| u64::from(s.completion_tokens.unwrap_or(0))).sum();
        let collect = |f: &dyn Fn(&RequestSample) -> Option<f64>| -> Vec<f64> { ok.iter().filter_map(|s| f(s)).collect() };
        let mut itl: Vec<f64> = ok.iter().flat_map(|s| s.itl_gaps_ms.iter().map(|&g| f64::from(g))).collect();
        let e2e = Dist::of(&mut collect(&|s| Some(s.e2e_ms)));
        let ttft = Dist::of(&mut collect(&|s| s.ttft_ms));
        let tpot = Dist::of(&mut collect(&|s| s.tpot_ms));

        let failed = (measured.len() - ok.len()) as u32;
        let slo_missed = slo_misses(slo, ok.len() as u32, failed, [e2e.p95, ttft.p95, tpot.p95]);
        let slo_pass = slo_missed.is_empty();
        let meets = |bound: Option<f64>, v: Option<f64>| bound.is_none_or(|b| v.is_some_and(|v| v <= b));
        let good_requests = ok
            .iter()
            .filter(|s| meets(slo.e2e_ms, Some(s.e2e_ms)) && meets(slo.ttft_ms, s.ttft_ms) && meets(slo.tpot_ms, s.tpot_ms))
            .count() as u32;
        let (peak_concurrency, steady_start_s, steady_end_s) = steady_state(samples);
        let short_outputs = ok.iter().filter(|s| s.completion_tokens.is_some_and(|n| n < cell.max_new_tokens)).count() as u32;
        let tokens_unknown = ok.iter().filter(|s| s.completion_tokens.is_none()).count() as u32;
        let done_markers = ok.iter().filter(|s| s.done_marker).count() as u32;
        let mut notes = Vec::new();
        if let Load::Closed { concurrency } = cell.load {
            if concurrency > planned {
                notes.push(format!("concurrency {concurrency} exceeds the cell's {planned} requests: at most {planned} were ever in flight"));
            }
        }
        if short_outputs > 0 {
            notes.push(format!("{short_outputs} of {} outputs shorter than max_new_tokens {}", ok.len(), cell.max_new_tokens));
        }
        if tokens_unknown > 0 {
            notes.push(format!("{tokens_unknown} of {} responses had no usage: their tokens are not counted", ok.len()));
        }
        let by_turn = TurnStats::of(&ok);
        notes.extend(TurnStats::words(&by_turn));

        CellResult {
            cell: cell.index,
            concurrency: cell.load.concurrency(),
            max_new_tokens: cell.max_new_tokens,
            rate: cell.load.rate(),
            input_tokens: cell.input_tokens,
            total_time_s,
            requests_ok: ok.len() as u32,
            requests_failed: failed,
            requests_cancelled: cancelled,
            partial: cancelled > 0 || (measured.len() as u32) < planned,
            warmup_requests: samples.iter().filter(|s| s.warmup).count() as u32,
            errors,
            prompt_tokens,
            completion_tokens,
            output_tok_s: per_s(completion_tokens as f64),
            total_tok_s: per_s((prompt_tokens + completion_tokens) as f64),
            requests_per_s: per_s(ok.len() as f64),
            ttft,
            itl: Dist::of(&mut itl),
            tpot,
            e2e,
            queue: Dist::of(&mut measured.iter().map(|s| s.queue_ms).collect::<Vec<_>>()),
            peak_concurrency,
            steady_start_s,
            steady_end_s,
            slo: slo.clone(),
            slo_pass,
            slo_missed,
            good_requests,
            goodput_rps: per_s(f64::from(good_requests)),
            short_outputs,
            tokens_unknown,
            done_markers,
            notes,
            by_turn,
            prompt_tokens_hist: TokenHist::of(ok.iter().filter_map(|s| s.prompt_tokens)),
            completion_tokens_hist: TokenHist::of(ok.iter().filter_map(|s| s.completion_tokens)),
            server: None,
            gpu: None,
        }
    }

    /// The cell's verdict on its SLO, in the one set of words every view uses.
    pub fn slo_state(&self) -> SloState {
        let measured = self.requests_ok + self.requests_failed;
        if measured == 0 {
            return if self.partial { SloState::Partial } else { SloState::NoRequests };
        }
        if self.partial {
            return SloState::Partial;
        }
        if self.slo_pass {
            return SloState::Pass;
        }
        // Measured elsewhere without a p95 (and without failures): the SLO cannot be judged.
        if self.requests_failed == 0 && self.requests_ok > 0 && self.e2e.p95.is_none() && self.slo.e2e_ms.is_some() {
            return SloState::Unknown;
        }
        SloState::Fail
    }

    /// The most requests that can have been in flight at once: the concurrency (closed loop),
    /// held down by the requests the cell measured and by the peak it measured in flight (when it
    /// measured one: files from other tools do not say). Rate cells: the measured peak.
    pub fn reached_concurrency(&self) -> u32 {
        let measured = self.requests_ok + self.requests_failed + self.requests_cancelled;
        let nominal = if self.rate.is_some() { u32::MAX } else { self.concurrency };
        let by_requests = if measured > 0 { nominal.min(measured) } else { nominal };
        match self.peak_concurrency {
            0 => if self.rate.is_some() { 0 } else { by_requests },
            peak => by_requests.min(peak),
        }
    }

    /// True when fewer requests were in flight than the cell's concurrency asked for.
    pub fn under_reached(&self) -> bool {
        self.rate.is_none() && self.reached_concurrency() < self.concurrency
    }

    /// The notes' `p50_latency_ms` / `p95_latency_ms`: end-to-end percentiles.
    pub fn p50_latency_ms(&self) -> Option<f64> {
        self.e2e.p50
    }
    pub fn p95_latency_ms(&self) -> Option<f64> {
        self.e2e.p95
    }
}

/// A cell's verdict on its SLO: the one word the runs list, tabs, tiles, tables and notes use.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum SloState {
    /// Ran to its end; every objective held at p95 and no measured request failed.
    Pass,
    /// Ran to its end and broke an objective, or a measured request failed.
    Fail,
    /// Cut short by a stop: its numbers cover only the requests that ended, so it neither
    /// passes nor fails.
    Partial,
    /// Ran to its end without a single measured request.
    NoRequests,
    /// Measured elsewhere, and the file holds no p95 end-to-end to judge the SLO by.
    Unknown,
}

impl SloState {
    pub const ALL: [SloState; 5] = [SloState::Pass, SloState::Fail, SloState::Partial, SloState::NoRequests, SloState::Unknown];

    /// The word shown for it (also its serde name with `_` for the space, and a CSS class
    /// `slo-<as_str>`).
    pub fn word(self) -> &'static str {
        match self {
            SloState::Pass => "pass",
            SloState::Fail => "fail",
            SloState::Partial => "partial",
            SloState::NoRequests => "no requests",
            SloState::Unknown => "unknown",
        }
    }

    /// Its name in files and CSS classes: `pass`, `fail`, `partial`, `no_requests`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            SloState::Pass => "pass",
            SloState::Fail => "fail",
            SloState::Partial => "partial",
            SloState::NoRequests => "no_requests",
            SloState::Unknown => "unknown",
        }
    }

    /// What the word means, for a tooltip or a legend.
    pub fn meaning(self) -> &'static str {
        match self {
            SloState::Pass => "ran to its end and met every objective at p95, with no failed request",
            SloState::Fail => "ran to its end and broke an objective at p95, or a request failed",
            SloState::Partial => "cut short by a stop: its numbers cover only the requests that ended, so it neither passes nor fails",
            SloState::NoRequests => "no measured request ended",
            SloState::Unknown => "measured elsewhere: the file holds no p95 end-to-end to judge the SLO by",
        }
    }
}

/// Peak in-flight count over all requests (send → end) and the span during which it held.
fn steady_state(samples: &[RequestSample]) -> (u32, f64, f64) {
    let mut edges: Vec<(f64, i32)> = Vec::with_capacity(samples.len() * 2);
    for s in samples {
        edges.push((s.sent_s(), 1));
        edges.push((s.end_s(), -1));
    }
    // Ends before starts at equal times: a worker's next request is not double-counted.
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut cur, mut peak, mut first, mut last) = (0i32, 0i32, 0.0, 0.0);
    for &(t, d) in &edges {
        if d < 0 && cur == peak {
            last = t;
        }
        cur += d;
        if cur > peak {
            peak = cur;
            first = t;
            last = t;
        }
    }
    (peak.max(0) as u32, first, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(scheduled_s: f64, ttft: f64, e2e: f64, tokens: u32) -> RequestSample {
        RequestSample {
            scheduled_s,
            ttft_ms: Some(ttft),
            e2e_ms: e2e,
            tpot_ms: Some((e2e - ttft) / f64::from(tokens - 1)),
            prompt_tokens: Some(10),
            completion_tokens: Some(tokens),
            itl_gaps_ms: vec![10.0; (tokens - 1) as usize],
            ..Default::default()
        }
    }

    #[test]
    fn cell_result_by_hand() {
        let cell = CellSpec { index: 0, load: Load::Closed { concurrency: 2 }, max_new_tokens: 5, input_tokens: None };
        let mut samples = vec![
            RequestSample { warmup: true, e2e_ms: 99_999.0, ..Default::default() },
            sample(0.0, 100.0, 1000.0, 5),
            sample(0.0, 200.0, 2000.0, 5),
            sample(1.0, 100.0, 1000.0, 5),
            RequestSample { scheduled_s: 2.0, e2e_ms: 500.0, error: Some(ErrorClass::Server), ..Default::default() },
        ];
        samples[0].warmup = true;
        let slo = Slo { e2e_ms: Some(1500.0), ..Default::default() };
        let r = CellResult::compute(&cell, &samples, &slo, 4);
        assert!(!r.partial);
        assert_eq!(r.slo_missed, vec!["1 failed request", "E2E p95 1900 ms > 1500 ms"]);
        // window: scheduled 0.0 → latest end max(1.0, 2.0, 2.0, 2.5) = 2.5 s
        assert_eq!(r.total_time_s, 2.5);
        assert_eq!((r.requests_ok, r.requests_failed, r.warmup_requests), (3, 1, 1));
        assert_eq!(r.errors.get(&ErrorClass::Server), Some(&1));
        assert_eq!(r.completion_tokens, 15);
        assert_eq!(r.prompt_tokens, 30);
        assert_eq!(r.output_tok_s, 6.0);
        assert_eq!(r.total_tok_s, 18.0);
        assert_eq!(r.requests_per_s, 1.2);
        assert_eq!(r.e2e.p50, Some(1000.0));
        // e2e sorted [1000, 1000, 2000]: rank 0.95*2 = 1.9 → 1000 + 0.9*1000
        assert!((r.e2e.p95.unwrap() - 1900.0).abs() < 1e-9);
        assert_eq!(r.itl.count, 12);
        assert_eq!(r.itl.p99, Some(10.0));
        // tpot: (1000-100)/4 = 225, (2000-200)/4 = 450
        assert_eq!(r.tpot.max, Some(450.0));
        assert!(!r.slo_pass, "p95 1900 > 1500 and one failure");
        assert_eq!(r.good_requests, 2);
        assert_eq!(r.goodput_rps, 0.8);
        assert_eq!((r.short_outputs, r.tokens_unknown, r.done_markers), (0, 0, 0));
        assert!(r.notes.is_empty(), "{:?}", r.notes);
    }

    #[test]
    fn short_outputs_missing_usage_done_markers_and_small_cells_are_noted() {
        let cell = CellSpec { index: 0, load: Load::Closed { concurrency: 32 }, max_new_tokens: 5, input_tokens: None };
        let mut samples = vec![sample(0.0, 100.0, 1000.0, 5), sample(0.0, 100.0, 1000.0, 3), sample(0.0, 100.0, 1000.0, 5)];
        samples[0].done_marker = true;
        samples[2].completion_tokens = None;
        samples[2].prompt_tokens = None;
        let r = CellResult::compute(&cell, &samples, &Slo::default(), 20);
        assert_eq!((r.short_outputs, r.tokens_unknown, r.done_markers), (1, 1, 1));
        assert_eq!(r.completion_tokens, 8, "only usage counts");
        assert_eq!(
            r.notes,
            vec![
                "concurrency 32 exceeds the cell's 20 requests: at most 20 were ever in flight",
                "1 of 3 outputs shorter than max_new_tokens 5",
                "1 of 3 responses had no usage: their tokens are not counted",
            ]
        );
    }

    #[test]
    fn ttft_is_summarised_per_turn_over_successful_requests() {
        let s = |turn: u32, ttft: f64, prompt: u32, failed: bool| RequestSample {
            turn: Some(turn),
            ttft_ms: Some(ttft),
            e2e_ms: ttft + 10.0,
            prompt_tokens: Some(prompt),
            completion_tokens: Some(4),
            error: failed.then_some(ErrorClass::Server),
            ..Default::default()
        };
        let samples = [s(1, 10.0, 20, false), s(1, 30.0, 22, false), s(2, 50.0, 60, false), s(2, 999.0, 0, true), s(3, 70.0, 100, false)];
        let cell = CellSpec { index: 0, load: Load::Closed { concurrency: 2 }, max_new_tokens: 4, input_tokens: None };
        let r = CellResult::compute(&cell, &samples, &Slo::default(), 5);
        let turns: Vec<(u32, u32, Option<f64>, Option<f64>)> = r.by_turn.iter().map(|t| (t.turn, t.requests, t.ttft.p50, t.prompt_tokens_mean)).collect();
        assert_eq!(turns, vec![(1, 2, Some(20.0), Some(21.0)), (2, 1, Some(50.0), Some(60.0)), (3, 1, Some(70.0), Some(100.0))], "the failed turn is left out");
        assert!(r.notes.contains(&"TTFT by turn (p50 / p95 ms, mean prompt tokens): 1: 20 / 29 (21 tok) · 2: 50 / 50 (60 tok) · 3: 70 / 70 (100 tok)".to_string()), "{:?}", r.notes);
        let single = CellResult::compute(&cell, &[RequestSample { turn: None, ..samples[0].clone() }], &Slo::default(), 1);
        assert!(single.by_turn.is_empty() && !single.notes.iter().any(|n| n.contains("by turn")));
    }

    #[test]
    fn steady_state_of_two_workers() {
        // worker A: 0-1, 1-2 ; worker B: 0.5-2.5 → two in flight from 0.5 to 2.0
        let s = |sch: f64, e2e: f64| RequestSample { scheduled_s: sch, e2e_ms: e2e * 1000.0, ..Default::default() };
        let samples = vec![s(0.0, 1.0), s(1.0, 1.0), s(0.5, 2.0)];
        assert_eq!(steady_state(&samples), (2, 0.5, 2.0));
    }

    #[test]
    fn empty_cell_is_zero_and_fails_slo() {
        let cell = CellSpec { index: 3, load: Load::Closed { concurrency: 1 }, max_new_tokens: 1, input_tokens: None };
        let r = CellResult::compute(&cell, &[], &Slo::default(), 5);
        assert_eq!(r.total_time_s, 0.0);
        assert!(!r.slo_pass);
        assert!(r.partial, "none of the 5 planned requests ended");
        assert_eq!(r.slo_missed, vec!["no successful request"]);
        assert_eq!(r.cell, 3);
    }

    #[test]
    fn cancelled_requests_mark_the_cell_partial_not_failed() {
        let cell = CellSpec { index: 0, load: Load::Closed { concurrency: 2 }, max_new_tokens: 5, input_tokens: None };
        let samples = vec![
            sample(0.0, 100.0, 1000.0, 5),
            RequestSample { scheduled_s: 0.5, e2e_ms: 9_000.0, error: Some(ErrorClass::Cancelled), ..Default::default() },
        ];
        let r = CellResult::compute(&cell, &samples, &Slo { e2e_ms: Some(3000.0), ..Default::default() }, 10);
        assert!(r.partial);
        assert_eq!((r.requests_ok, r.requests_failed, r.requests_cancelled), (1, 0, 1));
        assert_eq!(r.total_time_s, 1.0, "the cancelled request does not stretch the window");
        assert!(r.slo_pass, "the requests that ended met the SLO");
        assert_eq!(r.errors.get(&ErrorClass::Cancelled), Some(&1));
        assert_eq!(r.slo_state(), SloState::Partial, "a stopped cell is never a pass");
        assert_eq!(r.slo_state().word(), "partial");
    }

    #[test]
    fn slo_states_cover_every_kind_of_cell() {
        let base = CellResult { concurrency: 8, requests_ok: 10, slo_pass: true, e2e: Dist { p95: Some(900.0), ..Default::default() }, slo: Slo { e2e_ms: Some(3000.0), ..Default::default() }, ..Default::default() };
        assert_eq!(base.slo_state(), SloState::Pass);
        assert_eq!(CellResult { slo_pass: false, ..base.clone() }.slo_state(), SloState::Fail);
        assert_eq!(CellResult { partial: true, ..base.clone() }.slo_state(), SloState::Partial);
        assert_eq!(CellResult { partial: true, slo_pass: false, ..base.clone() }.slo_state(), SloState::Partial, "missed so far, but cut short");
        assert_eq!(CellResult { partial: true, requests_ok: 0, slo_pass: false, ..base.clone() }.slo_state(), SloState::Partial);
        assert_eq!(CellResult { requests_ok: 0, slo_pass: false, ..base.clone() }.slo_state(), SloState::NoRequests);
        let imported = CellResult { slo_pass: false, e2e: Dist::default(), ..base.clone() };
        assert_eq!(imported.slo_state(), SloState::Unknown);
        assert_eq!(CellResult { requests_failed: 2, ..imported }.slo_state(), SloState::Fail, "a failed request fails the SLO whatever the p95");
        let words: Vec<&str> = SloState::ALL.iter().map(|s| s.word()).collect();
        assert_eq!(words, ["pass", "fail", "partial", "no requests", "unknown"]);
        assert_eq!(serde_json::to_string(&SloState::NoRequests).unwrap(), "\"no_requests\"");
    }

    #[test]
    fn reached_concurrency_is_held_down_by_requests_and_the_measured_peak() {
        let c = |conc: u32, ok: u32, peak: u32| CellResult { concurrency: conc, requests_ok: ok, peak_concurrency: peak, ..Default::default() };
        assert_eq!(c(256, 64, 0).reached_concurrency(), 64, "64 requests cannot keep 256 in flight");
        assert_eq!(c(256, 64, 60).reached_concurrency(), 60, "the measured peak when lower");
        assert_eq!(c(16, 64, 16).reached_concurrency(), 16);
        assert_eq!(c(16, 64, 0).reached_concurrency(), 16, "imported: no peak measured");
        assert!(c(256, 64, 64).under_reached() && !c(16, 64, 16).under_reached());
        let rate = CellResult { rate: Some(4.0), requests_ok: 40, peak_concurrency: 7, ..Default::default() };
        assert_eq!((rate.reached_concurrency(), rate.under_reached()), (7, false));
    }
}
