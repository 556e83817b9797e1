//! The SLO search: the highest concurrency among a spec's candidates that meets the SLO, found
//! by running only the cells needed — bracket (the 1st, 2nd, 4th, 8th … candidate while they
//! meet it), then bisect between the highest that met it and the lowest that did not. The
//! answer is exact to one step of the candidate list, and never vouches for a concurrency that
//! was not reached: a closed-loop probe sends at least 2 × its concurrency
//! (`ExperimentSpec::cell_requests`), and a probe that still had fewer in flight says so.

use std::collections::BTreeMap;

use crate::result::{CellResult, SloState};
use crate::spec::{CellSpec, ExperimentSpec, FieldError, Load};

/// The fewest measured requests an SLO search probe may send: below it a p95 is one or two
/// requests' luck (`probe_error`).
pub const MIN_PROBE_REQUESTS: u32 = 20;

/// Why an SLO search's probes would be too small to trust, if they would: each must measure
/// at least `MIN_PROBE_REQUESTS` requests (`documents`: the batch workload's).
pub fn probe_error(spec: &ExperimentSpec, documents: usize) -> Option<FieldError> {
    let min = MIN_PROBE_REQUESTS;
    let smallest = spec.cells().iter().map(|c| spec.cell_requests(c, documents)).min()?;
    (spec.search && smallest < min).then(|| {
        FieldError::new("requests", format!("an SLO search probe needs at least {min} measured requests for its p95 to mean anything; this one would send {smallest}: raise requests (or requests_per_worker)"))
    })
}

/// The share of a probe's requests that must meet the SLO for its p95 to meet it.
const SHARE: f64 = 0.95;

#[derive(Clone, Debug)]
pub struct Search {
    /// (load: concurrency or requests/s, cell index), by load.
    candidates: Vec<(f64, u32)>,
    /// Whether the load is a request rate (open loop) rather than a concurrency.
    rate: bool,
    /// Index into `candidates` of the highest that met the SLO / the lowest that did not.
    met: Option<usize>,
    missed: Option<usize>,
    ran: Vec<u32>,
    /// Per cell run: (requests within every objective, requests measured).
    evidence: BTreeMap<u32, (u32, u32)>,
    /// Per closed-loop cell run: the most requests it had in flight, when below its concurrency.
    short: BTreeMap<u32, u32>,
}

/// The 95 % Wilson score interval of a share `good / n`.
pub fn wilson(good: u32, n: u32) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (n, q, z) = (f64::from(n), f64::from(good) / f64::from(n), 1.96_f64);
    let centre = (q + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z * (q * (1.0 - q) / n + z * z / (4.0 * n * n)).sqrt() / (1.0 + z * z / n);
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

impl Search {
    /// Candidates are the cells' concurrencies, or their rates when the cells have rates.
    pub fn new(cells: &[CellSpec]) -> Search {
        let rate = cells.iter().any(|c| matches!(c.load, Load::Rate { .. }));
        let mut candidates: Vec<(f64, u32)> = cells.iter().map(|c| (c.load.level(), c.index)).collect();
        candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        candidates.dedup_by(|a, b| a.0 == b.0);
        Search { candidates, rate, met: None, missed: None, ran: Vec::new(), evidence: BTreeMap::new(), short: BTreeMap::new() }
    }

    /// The cell to run next; None once the answer is known.
    pub fn next(&self) -> Option<u32> {
        let n = self.candidates.len();
        let i = match (self.met, self.missed) {
            (_, Some(0)) => return None,
            (Some(m), _) if m + 1 == n => return None,
            (Some(m), Some(x)) if m + 1 >= x => return None,
            (None, None) => 0,
            // Bracketing: the 2nd, 4th, 8th … candidate.
            (Some(m), None) => (2 * m + 1).min(n - 1),
            (m, Some(x)) => {
                let lo = m.map_or(0, |m| m + 1);
                lo + (x - lo) / 2
            }
        };
        Some(self.candidates[i].1)
    }

    /// Records how the probe of cell `index` ended: it met the SLO when it passed (ran to its
    /// end and met every objective: a partial probe never counts), with its evidence (how many
    /// of its measured requests, failures included, met every objective) and the most requests
    /// it had in flight.
    pub fn record(&mut self, index: u32, result: &CellResult) {
        let met = result.slo_state() == SloState::Pass;
        let Some(i) = self.candidates.iter().position(|c| c.1 == index) else { return };
        self.ran.push(index);
        self.evidence.insert(index, (result.good_requests, result.requests_ok + result.requests_failed));
        if result.under_reached() {
            self.short.insert(index, result.reached_concurrency());
        }
        if met {
            self.met = Some(self.met.map_or(i, |m| m.max(i)));
        } else {
            self.missed = Some(self.missed.map_or(i, |x| x.min(i)));
        }
    }

    /// "c16" or "4 rps".
    fn at(&self, load: f64) -> String {
        if self.rate {
            format!("{load} rps")
        } else {
            format!("c{load}")
        }
    }

    /// "c256", or "c256 (only 64 in flight)" for a probe that never reached its concurrency.
    fn at_cand(&self, i: usize) -> String {
        let (load, index) = self.candidates[i];
        match self.short.get(&index) {
            Some(reached) => format!("{} (only {reached} in flight)", self.at(load)),
            None => self.at(load),
        }
    }

    fn what(&self) -> &'static str {
        if self.rate { "request rate" } else { "concurrency" }
    }

    /// The highest load (concurrency or rate) that met the SLO, if any.
    pub fn highest_met(&self) -> Option<f64> {
        self.met.map(|i| self.candidates[i].0)
    }

    /// The lowest load that missed it, if any.
    pub fn lowest_missed(&self) -> Option<f64> {
        self.missed.map(|i| self.candidates[i].0)
    }

    /// How sure the answer is: each boundary probe's share of requests within the SLO with its
    /// 95 % Wilson interval. A probe that met the SLO is sure when the whole interval lies at or
    /// above 95 % (the p95 line); one that missed, when it lies below. With every request within
    /// the SLO the lower bound reaches 95 % only from 73 requests, so smaller probes stay "low".
    pub fn confidence(&self) -> String {
        let mut parts = Vec::new();
        let mut unsure = Vec::new();
        for (i, met) in [(self.met, true), (self.missed, false)].into_iter().filter_map(|(i, m)| i.map(|i| (i, m))) {
            let (load, index) = self.candidates[i];
            let Some(&(good, n)) = self.evidence.get(&index) else { continue };
            let (lo, hi) = wilson(good, n);
            let share = if n > 0 { f64::from(good) / f64::from(n) } else { 0.0 };
            parts.push(format!("{}: {:.0} % of {n} requests within the SLO (95 % interval {:.0}–{:.0} %)", self.at(load), share * 100.0, lo * 100.0, hi * 100.0));
            let sure = if met { lo >= SHARE } else { hi < SHARE };
            if !sure {
                unsure.push(self.at(load));
            }
        }
        if parts.is_empty() {
            return String::new();
        }
        let verdict = if unsure.is_empty() {
            "confidence high: each boundary probe's interval lies on its side of the 95 % line".to_string()
        } else {
            format!("confidence low: the interval of {} reaches across the 95 % line; more requests per probe would settle it", unsure.join(" and "))
        };
        format!("{verdict} ({})", parts.join("; "))
    }

    /// Where the search stands (or ended), in words.
    pub fn describe(&self) -> String {
        let ran = format!("{} of {} candidate cells run", self.ran.len(), self.candidates.len());
        let done = self.next().is_none();
        let what = self.what();
        let conf = if done { format!(". {}", self.confidence()) } else { String::new() };
        match (self.met, self.missed, done) {
            (Some(m), Some(x), true) => {
                format!("SLO search: {} is the highest {what} that meets the SLO; {}, the next candidate, does not: the knee lies between them ({ran}){conf}", self.at_cand(m), self.at_cand(x))
            }
            (Some(m), None, true) => match self.short.get(&self.candidates[m].1) {
                Some(reached) => format!(
                    "SLO search: every candidate up to {} met the SLO, but the highest never had more than {reached} requests in flight: the server held {reached} within the SLO, and the knee lies above that ({ran}){conf}",
                    self.at(self.candidates[m].0)
                ),
                None => format!("SLO search: every candidate up to {} meets the SLO: the knee lies above the highest candidate ({ran}){conf}", self.at(self.candidates[m].0)),
            },
            (None, Some(x), true) => format!("SLO search: even {}, the lowest candidate, misses the SLO ({ran}){conf}", self.at_cand(x)),
            (m, x, _) => {
                let met = m.map_or("none yet".into(), |m| self.at_cand(m));
                let missed = x.map_or("none yet".into(), |x| self.at_cand(x));
                let next = self.next().and_then(|i| self.candidates.iter().find(|c| c.1 == i)).map_or(String::new(), |c| format!("; next {}", self.at(c.0)));
                format!("SLO search: meets at {met}, misses at {missed}{next} ({ran})")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A probe's result: met or not, with `good` of `measured` requests within the SLO.
    fn probe(met: bool, good: u32, measured: u32) -> CellResult {
        CellResult { requests_ok: measured, slo_pass: met, good_requests: good, ..Default::default() }
    }

    fn cells(cs: &[u32]) -> Vec<CellSpec> {
        cs.iter().enumerate().map(|(i, &c)| CellSpec { index: i as u32, load: Load::Closed { concurrency: c }, max_new_tokens: 64, input_tokens: None }).collect()
    }

    /// Runs the search against a knee: concurrencies up to `knee` meet the SLO.
    fn run(cs: &[u32], knee: u32) -> (Search, Vec<u32>) {
        let cells = cells(cs);
        let mut s = Search::new(&cells);
        let mut order = Vec::new();
        while let Some(i) = s.next() {
            let c = cells[i as usize].load.concurrency();
            order.push(c);
            s.record(i, &probe(c <= knee, if c <= knee { 64 } else { 40 }, 64));
            assert!(order.len() <= cells.len(), "the search ends");
        }
        (s, order)
    }

    #[test]
    fn finds_the_knee_to_one_step_with_few_cells() {
        let grid: Vec<u32> = (1..=64).collect();
        for knee in [1, 2, 7, 8, 9, 33, 63] {
            let (s, order) = run(&grid, knee);
            assert_eq!(s.highest_met(), Some(f64::from(knee)), "knee {knee}: {order:?}");
            assert_eq!(s.lowest_missed(), Some(f64::from(knee + 1)));
            assert!(order.len() <= 13, "knee {knee}: {} cells of 64: {order:?}", order.len());
            assert!(s.describe().contains(&format!("c{knee} is the highest")), "{}", s.describe());
        }
        // The bracket doubles through the candidate list, then bisects.
        let (_, order) = run(&[1, 2, 4, 8, 16, 32, 64, 128, 256], 24);
        assert_eq!(order, [1, 2, 8, 128, 32, 16], "{order:?}");
    }

    #[test]
    fn all_met_or_none_met_is_said_plainly() {
        let (s, order) = run(&[4, 8, 16], 1000);
        assert_eq!((s.highest_met(), s.lowest_missed(), order.len()), (Some(16.0), None, 3));
        assert!(s.describe().contains("above the highest candidate"));
        let (s, order) = run(&[4, 8, 16], 1);
        assert_eq!((s.highest_met(), order), (None, vec![4]));
        assert!(s.describe().contains("even c4, the lowest candidate, misses"));
    }

    #[test]
    fn a_probe_that_never_reached_its_concurrency_is_not_vouched_for() {
        // The run: c1…c256, 64 requests a probe, every probe within the SLO; at most 64
        // were ever in flight.
        let grid = cells(&[1, 2, 4, 8, 16, 32, 64, 128, 256]);
        let mut s = Search::new(&grid);
        while let Some(i) = s.next() {
            let c = grid[i as usize].load.concurrency();
            let r = CellResult { concurrency: c, requests_ok: 64, slo_pass: true, good_requests: 64, peak_concurrency: c.min(64), ..Default::default() };
            s.record(i, &r);
        }
        let d = s.describe();
        assert!(!d.contains("every candidate up to c256 meets the SLO"), "{d}");
        assert!(d.contains("every candidate up to c256 met the SLO, but the highest never had more than 64 requests in flight"), "{d}");
        // A boundary probe that fell short says so too.
        let grid = cells(&[32, 64, 128]);
        let mut s = Search::new(&grid);
        s.record(0, &CellResult { concurrency: 32, requests_ok: 64, slo_pass: true, good_requests: 64, peak_concurrency: 32, ..Default::default() });
        s.record(1, &CellResult { concurrency: 64, requests_ok: 100, slo_pass: true, good_requests: 100, peak_concurrency: 60, ..Default::default() });
        s.record(2, &CellResult { concurrency: 128, requests_ok: 256, slo_pass: false, good_requests: 10, peak_concurrency: 128, ..Default::default() });
        assert!(s.describe().contains("c64 (only 60 in flight) is the highest concurrency that meets the SLO; c128, the next"), "{}", s.describe());
        // A partial probe (cut by a stop) never counts as meeting it.
        let mut s = Search::new(&grid);
        s.record(0, &CellResult { partial: true, ..probe(true, 64, 64) });
        assert_eq!(s.highest_met(), None);
    }

    #[test]
    fn probes_too_small_to_trust_are_refused_and_searches_are_raised_to_reach_their_load() {
        use crate::spec::Workload;
        let spec = ExperimentSpec { workload: Workload::Chat, concurrency: vec![1, 4], requests: 8, search: true, max_new_tokens: vec![64], ..Default::default() };
        let e = probe_error(&spec, 5).expect("8 requests a probe is too few");
        assert_eq!(e.field, "requests");
        assert!(e.message.contains("at least 20 measured requests") && e.message.contains("would send 8"), "{}", e.message);
        assert!(probe_error(&ExperimentSpec { requests: 20, ..spec.clone() }, 5).is_none());
        // 16 requests at c16: raised to 32 by the search, so no refusal.
        assert!(probe_error(&ExperimentSpec { requests: 16, concurrency: vec![16, 32], ..spec.clone() }, 5).is_none());
        assert!(probe_error(&ExperimentSpec { search: false, ..spec }, 5).is_none(), "a grid is not a search");
    }

    #[test]
    fn a_rate_search_names_rates() {
        let cells: Vec<CellSpec> = [0.5, 1.0, 2.0, 4.0, 8.0].iter().enumerate().map(|(i, &r)| CellSpec { index: i as u32, load: Load::Rate { rps: r }, max_new_tokens: 64, input_tokens: None }).collect();
        let mut s = Search::new(&cells);
        while let Some(i) = s.next() {
            let r = cells[i as usize].load.rate().unwrap();
            s.record(i, &probe(r <= 2.0, if r <= 2.0 { 100 } else { 50 }, 100));
        }
        assert_eq!((s.highest_met(), s.lowest_missed()), (Some(2.0), Some(4.0)));
        assert!(s.describe().contains("2 rps is the highest request rate that meets the SLO; 4 rps"), "{}", s.describe());
    }

    #[test]
    fn confidence_says_whether_a_boundary_probe_could_fall_either_side() {
        // 100 of 100 within the SLO: interval 96–100 %, clearly above 95 %. 50 of 100: clearly below.
        let (lo, hi) = wilson(100, 100);
        assert!(lo > 0.95 && hi > 0.9999, "{lo} {hi}");
        let (lo, hi) = wilson(19, 20);
        assert!(lo < 0.95 && hi > 0.95, "19 of 20 could be either: {lo} {hi}");
        let cells = cells(&[1, 2, 4]);
        let mut s = Search::new(&cells);
        s.record(0, &probe(true, 100, 100));
        s.record(1, &probe(false, 50, 100));
        assert!(s.confidence().starts_with("confidence high"), "{}", s.confidence());
        let mut s = Search::new(&cells);
        s.record(0, &probe(true, 19, 20));
        s.record(1, &probe(false, 18, 20));
        let c = s.confidence();
        assert!(c.starts_with("confidence low: the interval of c1 and c2 reaches across"), "{c}");
        assert!(c.contains("c1: 95 % of 20 requests within the SLO"), "{c}");
        // Direction counts: a probe that met the SLO with 92 % of 300 within it is not sure
        // (its interval lies below 95 %), however narrow; nor is 64 of 64 (too few for 95 %).
        let mut s = Search::new(&cells);
        s.record(0, &probe(true, 276, 300));
        s.record(1, &probe(false, 10, 300));
        assert!(s.confidence().starts_with("confidence low: the interval of c1 reaches"), "{}", s.confidence());
        let mut s = Search::new(&cells);
        s.record(0, &probe(true, 64, 64));
        assert!(s.confidence().starts_with("confidence low"), "{}", s.confidence());
        let mut s = Search::new(&cells);
        s.record(0, &probe(true, 73, 73));
        assert!(s.confidence().starts_with("confidence high"), "73 of 73 is enough: {}", s.confidence());
    }
}
