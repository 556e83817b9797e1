//! From a grid's cells to the answers the notes ask for (data/notes/report_template.md): the
//! best configuration, the largest concurrency that still meets the SLO, the p95 there, speedups
//! between GPUs, cost per million output tokens, and what makes two runs not comparable.

use serde::{Deserialize, Serialize};

use crate::live::{RunInfo, RunStatus, RunView};
use crate::result::{CellResult, SloState};
use crate::server::ServerKind;
use crate::spec::ExperimentSpec;

/// The cell a verdict points at, with the numbers it is chosen by.
#[derive(Clone, Debug, PartialEq)]
pub struct Pick {
    pub concurrency: u32,
    pub rate: Option<f64>,
    pub max_new_tokens: u32,
    pub output_tok_s: f64,
    pub e2e_p95_ms: Option<f64>,
    /// The most requests it had in flight at once (`CellResult::reached_concurrency`).
    pub reached: u32,
    /// Its synthetic prompt length, on a grid with that axis.
    pub input_tokens: Option<u32>,
}

impl Pick {
    fn of(c: &CellResult) -> Pick {
        Pick {
            concurrency: c.concurrency,
            rate: c.rate,
            max_new_tokens: c.max_new_tokens,
            output_tok_s: c.output_tok_s,
            e2e_p95_ms: c.e2e.p95,
            reached: c.reached_concurrency(),
            input_tokens: c.input_tokens,
        }
    }

    /// "c16 × 256", "4 rps × 256", or with a prompt length "c16 × 256 (2048 in)".
    pub fn label(&self) -> String {
        let base = format!("{} × {}", crate::spec::Load::of(self.concurrency, self.rate).label(), self.max_new_tokens);
        let base = match self.input_tokens {
            Some(n) => format!("{base} ({n} in)"),
            None => base,
        };
        // A configuration is named by what it carried: a cell that never had its concurrency
        // in flight says so.
        if self.rate.is_none() && self.reached > 0 && self.reached < self.concurrency {
            format!("{base} (only {} in flight)", self.reached)
        } else {
            base
        }
    }
}

/// What one grid says.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The highest output throughput among the cells that passed (`SloState::Pass`: ran to
    /// their end, met every objective, no failure).
    pub best: Option<Pick>,
    /// The most requests a passing closed-loop cell actually had in flight: its concurrency,
    /// unless it had fewer requests than workers or never reached it (then what it reached).
    pub max_stable_concurrency: Option<u32>,
    /// The passing cell that reached it (the fastest, at a tie); its p95 is "p95 @ peak".
    pub at_max_stable: Option<Pick>,
    /// The grid's highest concurrency asked for.
    pub grid_ceiling: Option<u32>,
    /// No cell that had more in flight than the max stable concurrency failed: the true
    /// maximum may lie above it.
    pub open_ended: bool,
    /// When open-ended although the grid asked for more: why the cells above say nothing
    /// ("c256 reached only 64 in flight", "c128 was cut short by the stop", "c128 could not be
    /// judged").
    pub unreached: Option<String>,
    /// Why there is no answer, in words (None when there is one).
    pub why_none: Option<String>,
}

impl Verdict {
    /// The max stable concurrency as every view states it: "16" (a cell above it failed),
    /// "≥ 64 (the grid's highest)", or "≥ 64 (c256 reached only 64 in flight)".
    pub fn max_stable_words(&self) -> Option<String> {
        let m = self.max_stable_concurrency?;
        Some(match (self.open_ended, &self.unreached) {
            (false, _) => m.to_string(),
            (true, Some(why)) => format!("≥ {m} ({why})"),
            (true, None) => format!("≥ {m} (the grid's highest)"),
        })
    }
}

/// The verdict of a grid. Only cells that passed count (`SloState::Pass`): partial cells (cut by
/// a stop), cells without requests, and imported cells without a p95 never do. No concurrency
/// is claimed that was not reached in flight.
pub fn verdict(cells: &[CellResult]) -> Verdict {
    let passing: Vec<&CellResult> = cells.iter().filter(|c| c.slo_state() == SloState::Pass).collect();
    let best = passing.iter().copied().max_by(|a, b| a.output_tok_s.total_cmp(&b.output_tok_s)).map(Pick::of);
    let at_max_stable = passing
        .iter()
        .filter(|c| c.rate.is_none())
        .max_by(|a, b| a.reached_concurrency().cmp(&b.reached_concurrency()).then(a.output_tok_s.total_cmp(&b.output_tok_s)))
        .map(|c| Pick::of(c));
    let max_stable_concurrency = at_max_stable.as_ref().map(|p| p.reached);
    let grid_ceiling = cells.iter().filter(|c| c.rate.is_none()).map(|c| c.concurrency).max();
    let open_ended = max_stable_concurrency.is_some_and(|m| {
        !cells.iter().any(|c| c.rate.is_none() && c.slo_state() == SloState::Fail && c.reached_concurrency() > m)
    });
    let unreached = max_stable_concurrency.filter(|_| open_ended).and_then(|m| above_the_claim(cells, m));
    let why_none = if best.is_none() { Some(why_none(cells)) } else { None };
    Verdict { best, max_stable_concurrency, at_max_stable, grid_ceiling, open_ended, unreached, why_none }
}

/// Why a grid that asked for more than `m` in flight says nothing above `m`: the highest cell
/// asked for more but never had more in flight, or was cut short, or could not be judged.
fn above_the_claim(cells: &[CellResult], m: u32) -> Option<String> {
    let closed = || cells.iter().filter(|c| c.rate.is_none() && c.concurrency > m);
    if let Some(c) = closed().filter(|c| c.reached_concurrency() <= m).max_by_key(|c| c.concurrency) {
        return Some(format!("c{} reached only {} in flight", c.concurrency, c.reached_concurrency()));
    }
    if let Some(c) = closed().filter(|c| c.slo_state() == SloState::Partial).max_by_key(|c| c.concurrency) {
        return Some(format!("c{} was cut short by the stop", c.concurrency));
    }
    closed().filter(|c| matches!(c.slo_state(), SloState::Unknown | SloState::NoRequests)).max_by_key(|c| c.concurrency).map(|c| format!("c{} could not be judged", c.concurrency))
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Why no cell of `cells` passed, in words true for finished, stopped and imported runs alike.
fn why_none(cells: &[CellResult]) -> String {
    let Some(first) = cells.first() else { return "the run has no finished cell".to_string() };
    let slo = first.slo.words();
    let of = |state: SloState| cells.iter().filter(move |c| c.slo_state() == state);
    let cut: Vec<&CellResult> = of(SloState::Partial).collect();
    let cut_note = match cut.len() {
        0 => String::new(),
        1 => format!("; {} was cut short by the stop and is not judged", Pick::of(cut[0]).label()),
        n => format!("; {n} cells cut short by the stop are not judged"),
    };
    if of(SloState::Fail).next().is_some() {
        let lowest = of(SloState::Fail).filter(|c| c.requests_ok > 0 && c.e2e.p95.is_some()).min_by(|a, b| a.e2e.p95.unwrap_or(f64::MAX).total_cmp(&b.e2e.p95.unwrap_or(f64::MAX)));
        return match lowest {
            Some(c) => format!("no cell met the SLO ({slo}): the lowest p95 was {:.0} ms at {}{cut_note}", c.e2e.p95.unwrap_or_default(), Pick::of(c).label()),
            None => format!("no cell met the SLO ({slo}): no request succeeded{cut_note}"),
        };
    }
    match cut.as_slice() {
        [] => {}
        [c] => {
            let measured = c.requests_ok + c.requests_failed;
            let so_far = match c.e2e.p95 {
                Some(p) if measured > 0 => format!(" after {} ended (p95 so far {p:.0} ms)", plural(measured as usize, "request", "requests")),
                _ => " before any request ended".to_string(),
            };
            return format!("the run was stopped before any cell ran to its end: {} was cut short by the stop{so_far}, so it is not judged against the SLO ({slo})", Pick::of(c).label());
        }
        many => {
            let labels: Vec<String> = many.iter().map(|c| Pick::of(c).label()).collect();
            return format!("the run was stopped before any cell ran to its end: {} were cut short by the stop, so none is judged against the SLO ({slo})", labels.join(", "));
        }
    }
    if let Some(c) = of(SloState::Unknown).next() {
        let why = c.slo_missed.first().cloned().unwrap_or_else(|| "the file holds no p95 end-to-end".into());
        return format!("the SLO ({slo}) cannot be judged: {why}");
    }
    "no measured request ended in any cell".to_string()
}

/// A finished run's answer in a few numbers, kept in its index entry so the run list can show
/// it without reading the run (set when the run ends; absent for runs saved before it existed).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Headline {
    /// The best configuration ("c16 × 256"), when a cell passed.
    pub best: Option<String>,
    /// Its output tokens/s.
    pub best_tok_s: Option<f64>,
    /// The max stable concurrency, as `Verdict::max_stable_words` says it ("16", "≥ 64 (the
    /// grid's highest)", "≥ 64 (c256 reached only 64 in flight)").
    pub max_stable: Option<String>,
    /// p95 end-to-end (ms) at the max stable concurrency.
    pub p95_at_peak_ms: Option<f64>,
    /// Why there is no best configuration, in words.
    pub why_none: Option<String>,
}

impl Headline {
    /// None for a run without a finished cell.
    pub fn of(cells: &[CellResult]) -> Option<Headline> {
        if cells.is_empty() {
            return None;
        }
        let v = verdict(cells);
        Some(Headline {
            best: v.best.as_ref().map(Pick::label),
            best_tok_s: v.best.as_ref().map(|b| b.output_tok_s),
            max_stable: v.max_stable_words(),
            p95_at_peak_ms: v.at_max_stable.as_ref().and_then(|p| p.e2e_p95_ms),
            why_none: v.why_none,
        })
    }
}

/// Where a run's numbers come from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Provenance {
    /// caplab measured a real server.
    Measured,
    /// caplab measured its own simulator: the numbers are a model's, not a GPU's.
    Simulated,
    /// Another tool measured them (or another caplab, whose run may itself be simulated).
    Imported {
        /// Which tool, and which file(s).
        from: String,
        #[serde(default)]
        simulated: bool,
    },
}

impl Provenance {
    pub fn of(info: &RunInfo) -> Provenance {
        match &info.imported_from {
            Some(from) => Provenance::Imported { from: from.clone(), simulated: info.target.simulated },
            None if info.target.simulated => Provenance::Simulated,
            None => Provenance::Measured,
        }
    }

    /// The banner word: "MEASURED", "SIMULATED", "IMPORTED" ("IMPORTED · SIMULATED" for a
    /// simulated run read from another caplab's results.json).
    pub fn banner(&self) -> &'static str {
        match self {
            Provenance::Measured => "MEASURED",
            Provenance::Simulated => "SIMULATED",
            Provenance::Imported { simulated: true, .. } => "IMPORTED · SIMULATED",
            Provenance::Imported { .. } => "IMPORTED",
        }
    }

    /// One sentence saying what the banner means.
    pub fn words(&self) -> String {
        match self {
            Provenance::Measured => "measured by caplab against the server named below".into(),
            Provenance::Simulated => "SIMULATED: measured against caplab's built-in simulator; the numbers are a model's, not a GPU's".into(),
            Provenance::Imported { from, simulated } => {
                let sim = if *simulated { "; that run was itself SIMULATED" } else { "" };
                format!("IMPORTED: measured elsewhere ({from}); caplab did not see these requests{sim}")
            }
        }
    }
}

/// One run's answer for a client, as a card: what it can carry under its SLO, at what cost,
/// on what, and how sure. Every text in it is true of finished, stopped, running, imported and
/// empty runs alike.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Capacity {
    pub run_id: String,
    /// The run's name (empty when it has none).
    pub name: String,
    /// "chat" or "batch".
    pub workload: String,
    pub status: RunStatus,
    /// Cells that have a result, and cells the run was to run.
    pub cells_done: u32,
    pub cells_total: u32,
    /// The best configuration ("c16 × 256"), the fastest cell that passed.
    pub best: Option<String>,
    /// Output tokens/s of the best configuration.
    pub output_tok_s: Option<f64>,
    /// p95 end-to-end (ms) of the best configuration.
    pub p95_ms: Option<f64>,
    /// The most requests a passing closed-loop cell had in flight (never more than reached).
    pub max_stable_concurrency: Option<u32>,
    /// The same in words: "16", "≥ 64 (the grid's highest)", "≥ 64 (c256 reached only 64 in
    /// flight)"; for an open loop "4 rps" or "≥ 8 rps (the grid's highest)".
    pub max_stable: Option<String>,
    /// The peak in flight caplab measured in the max-stable cell (None when not measured, as
    /// in files from other tools).
    pub peak_in_flight: Option<u32>,
    /// p95 end-to-end (ms) at the max stable concurrency.
    pub p95_at_max_stable_ms: Option<f64>,
    /// The SLO in words: "p95 end-to-end ≤ 3000 ms".
    pub slo: String,
    /// The GPU's price used, and the cost per million output tokens at the best configuration
    /// (None without a price or a best configuration).
    pub usd_per_hour: Option<f64>,
    pub usd_per_million_tokens: Option<f64>,
    /// The run's GPU and model labels (empty when not recorded).
    pub gpu: String,
    pub model: String,
    /// The engine and its version where known: "vLLM 0.11.0", "caplab simulator", or for files
    /// from other tools "not stated in the imported file".
    pub engine: String,
    /// When the run started (ms since the Unix epoch); for files from other tools, when they
    /// were imported. None when unknown.
    pub date_unix_ms: Option<u64>,
    pub provenance: Provenance,
    /// Why there is no best configuration (None when there is one).
    pub why_none: Option<String>,
    /// What a reader must know to trust the card: a stop, cells not run, loads not reached.
    pub caveats: Vec<String>,
}

/// The engine a run measured, in words.
fn engine_words(info: &RunInfo) -> String {
    let from_caplab = info.imported_from.as_deref().is_none_or(|f| f.starts_with("caplab results.json"));
    if !from_caplab {
        return "not stated in the imported file".into();
    }
    let t = &info.target;
    match (t.server, t.version.as_deref().map(str::trim).filter(|v| !v.is_empty())) {
        (ServerKind::CaplabSim, _) => "caplab simulator (SIMULATED vLLM)".into(),
        (_, _) if t.simulated => "caplab simulator (SIMULATED vLLM)".into(),
        (kind, Some(v)) => format!("{} {v}", kind.label()),
        (kind, None) => format!("{} (version not stated)", kind.label()),
    }
}

/// The capacity card of a run (any state), priced at `usd_per_hour` when given.
pub fn capacity(view: &RunView, usd_per_hour: Option<f64>) -> Capacity {
    let info = &view.info;
    let v = verdict(&view.cells);
    let rate_mode = view.cells.iter().any(|c| c.rate.is_some());
    let slo = view.cells.first().map_or_else(|| info.spec.slo.effective(info.spec.workload), |c| c.slo.clone());
    let best = v.best.as_ref();
    let max_stable = if rate_mode {
        let passing = |c: &&CellResult| c.slo_state() == SloState::Pass;
        let top = view.cells.iter().filter(passing).filter_map(|c| c.rate).fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
        top.map(|r| {
            let bounded = view.cells.iter().any(|c| c.slo_state() == SloState::Fail && c.rate.is_some_and(|x| x > r));
            if bounded { format!("{r} rps") } else { format!("≥ {r} rps (the grid's highest)") }
        })
    } else {
        v.max_stable_words()
    };
    let at_max = v.at_max_stable.as_ref();
    let peak_in_flight = at_max.and_then(|p| {
        view.cells.iter().find(|c| c.rate.is_none() && c.concurrency == p.concurrency && c.max_new_tokens == p.max_new_tokens).map(|c| c.peak_concurrency).filter(|p| *p > 0)
    });
    let provenance = Provenance::of(info);
    let mut caveats = Vec::new();
    let done = view.cells.len() as u32;
    let cut = view.cells.iter().filter(|c| c.slo_state() == SloState::Partial).count();
    let cut_words = if cut > 0 { format!(" ({} cut short)", plural(cut, "cell", "cells")) } else { String::new() };
    match info.status {
        RunStatus::Running | RunStatus::Queued => caveats.push(format!(
            "still {}: {done} of {} cells have a result so far; this card changes as cells finish",
            info.status.as_str(),
            info.cells_total
        )),
        RunStatus::Stopped => caveats.push(format!("stopped before its end: {done} of {} cells have a result{cut_words}", info.cells_total)),
        RunStatus::Interrupted => caveats.push(format!("caplab stopped while this run was in progress: {done} of {} cells rebuilt from the requests that completed{cut_words}", info.cells_total)),
        RunStatus::Failed => caveats.push(format!("the run failed: {}", info.message.as_deref().unwrap_or("see its message"))),
        RunStatus::Finished if info.spec.search => {
            if let Some(m) = &info.message {
                caveats.push(m.clone());
            }
        }
        RunStatus::Finished => {}
    }
    for c in view.cells.iter().filter(|c| c.slo_state() == SloState::Pass && c.under_reached()) {
        caveats.push(format!("c{} × {} reached only {} in flight (it measured {} requests)", c.concurrency, c.max_new_tokens, c.reached_concurrency(), c.requests_ok + c.requests_failed));
    }
    if !matches!(provenance, Provenance::Measured) {
        caveats.push(provenance.words());
    }
    Capacity {
        run_id: info.id.clone(),
        name: info.spec.name.clone(),
        workload: info.spec.workload.as_str().into(),
        status: info.status,
        cells_done: done,
        cells_total: info.cells_total,
        best: best.map(Pick::label),
        output_tok_s: best.map(|b| b.output_tok_s),
        p95_ms: best.and_then(|b| b.e2e_p95_ms),
        max_stable_concurrency: if rate_mode { None } else { v.max_stable_concurrency },
        max_stable,
        peak_in_flight,
        p95_at_max_stable_ms: at_max.and_then(|p| p.e2e_p95_ms),
        slo: slo.words(),
        usd_per_hour,
        usd_per_million_tokens: usd_per_hour.zip(best).and_then(|(p, b)| cost_per_million_tokens(p, b.output_tok_s)),
        gpu: info.spec.gpu.clone(),
        model: info.spec.model.clone(),
        engine: engine_words(info),
        date_unix_ms: (info.started_unix_ms > 0).then_some(info.started_unix_ms),
        provenance,
        why_none: match (&v.why_none, done, info.status.is_terminal()) {
            (Some(_), 0, false) => Some("no cell has finished yet".into()),
            (why, _, _) => why.clone(),
        },
        caveats,
    }
}

/// The $/hour a comparison prices a GPU at, and where that figure comes from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct GpuPrice {
    /// The runs' GPU label.
    pub gpu: String,
    pub usd_per_hour: Option<f64>,
    /// "given", "profile: NVIDIA A100 80GB SXM (typical on-demand price)" or why there is none.
    pub from: String,
}

/// Runs set side by side: the notes filled from them (markdown, and the same as HTML for the
/// dashboard), their frontiers overlaid, and the prices used.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Comparison {
    pub runs: Vec<String>,
    pub markdown: String,
    pub html: String,
    pub frontier_svg: String,
    pub prices: Vec<GpuPrice>,
}

/// Dollars per million output tokens at `tok_s` on a GPU rented at `usd_per_hour`.
pub fn cost_per_million_tokens(usd_per_hour: f64, tok_s: f64) -> Option<f64> {
    (tok_s > 0.0 && usd_per_hour >= 0.0).then(|| usd_per_hour / (tok_s * 3600.0) * 1e6)
}

/// b ÷ a, when both exist and a is not zero.
pub fn speedup(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if a > 0.0 => Some(b / a),
        _ => None,
    }
}

/// Why two runs' numbers cannot be set side by side as like for like (empty: they can).
pub fn not_comparable(a: &ExperimentSpec, b: &ExperimentSpec) -> Vec<String> {
    let mut why = Vec::new();
    if a.workload != b.workload {
        why.push(format!("different workloads ({} vs {})", a.workload.as_str(), b.workload.as_str()));
    }
    if a.mode != b.mode {
        why.push(format!("different load modes ({} vs {})", a.mode.as_str(), b.mode.as_str()));
    }
    let (mut ta, mut tb) = (a.max_new_tokens.clone(), b.max_new_tokens.clone());
    ta.sort_unstable();
    tb.sort_unstable();
    if ta != tb {
        why.push(format!("different output lengths ({ta:?} vs {tb:?} max_new_tokens)"));
    }
    if a.slo.effective(a.workload) != b.slo.effective(b.workload) {
        why.push("different SLOs".to_string());
    }
    if a.model != b.model {
        why.push(format!("different models ({} vs {})", a.model, b.model));
    }
    why
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::result::Dist;
    use crate::spec::{Slo, Workload};

    /// A finished cell with the numbers a verdict reads (2 × c requests, at least 10, with c in
    /// flight; SLO p95 ≤ 3 s); also the frontier's tests' cells.
    pub(crate) fn cell(c: u32, n: u32, tok_s: f64, p95: f64, pass: bool) -> CellResult {
        CellResult {
            concurrency: c,
            max_new_tokens: n,
            output_tok_s: tok_s,
            requests_ok: (2 * c).max(10),
            peak_concurrency: c,
            slo_pass: pass,
            e2e: Dist { p95: Some(p95), ..Default::default() },
            slo: Slo { e2e_ms: Some(3000.0), ..Default::default() },
            ..Default::default()
        }
    }

    #[test]
    fn best_and_max_stable_come_from_passing_cells_only() {
        let cells = vec![
            cell(1, 128, 40.0, 900.0, true),
            cell(8, 128, 300.0, 1500.0, true),
            cell(8, 256, 310.0, 2900.0, true),
            cell(32, 128, 900.0, 2800.0, true),
            cell(32, 256, 950.0, 5600.0, false),
            cell(64, 128, 1400.0, 4100.0, false),
        ];
        let v = verdict(&cells);
        let best = v.best.clone().unwrap();
        assert_eq!((best.concurrency, best.max_new_tokens, best.output_tok_s), (32, 128, 900.0), "the fastest failing cell does not count");
        assert_eq!(v.max_stable_concurrency, Some(32));
        assert_eq!(v.at_max_stable.clone().unwrap().e2e_p95_ms, Some(2800.0));
        assert_eq!(v.grid_ceiling, Some(64));
        assert!(!v.open_ended, "c64 failed with 64 in flight");
        assert_eq!(v.max_stable_words().as_deref(), Some("32"));
        assert!(v.why_none.is_none());
    }

    #[test]
    fn no_concurrency_is_claimed_that_was_not_reached() {
        // The grid: c256 with 64 requests never had more than 64 in flight.
        let c256 = CellResult { requests_ok: 64, peak_concurrency: 64, ..cell(256, 128, 2000.0, 2500.0, true) };
        let cells = vec![cell(16, 128, 600.0, 900.0, true), cell(64, 128, 1800.0, 2400.0, true), c256.clone()];
        let v = verdict(&cells);
        assert_eq!(v.max_stable_concurrency, Some(64), "never 256");
        assert_eq!(v.max_stable_words().as_deref(), Some("≥ 64 (c256 reached only 64 in flight)"));
        let h = Headline::of(&cells).unwrap();
        assert_eq!(h.max_stable.as_deref(), Some("≥ 64 (c256 reached only 64 in flight)"));
        // Imported cells carry no peak: the requests bound it.
        let imported = CellResult { peak_concurrency: 0, ..c256.clone() };
        assert_eq!(verdict(&[imported]).max_stable_concurrency, Some(64));
        // Every cell reached and passed: the grid's highest, open-ended.
        let v = verdict(&[cell(8, 128, 300.0, 900.0, true), cell(32, 128, 900.0, 2000.0, true)]);
        assert_eq!(v.max_stable_words().as_deref(), Some("≥ 32 (the grid's highest)"));
        // A failing cell that had more in flight bounds it; one that had fewer does not.
        let v = verdict(&[cell(8, 128, 300.0, 900.0, true), CellResult { requests_ok: 6, peak_concurrency: 6, ..cell(64, 128, 100.0, 4000.0, false) }]);
        assert_eq!(v.max_stable_words().as_deref(), Some("≥ 8 (c64 reached only 6 in flight)"), "c64 failed with only 6 in flight, below 8");
        // A failing cell that asked for more but reached no more says so too (an imported
        // vllm bench serve file at c256 with 64 prompts).
        let v = verdict(&[cell(64, 128, 9000.0, 2600.0, true), CellResult { requests_ok: 64, peak_concurrency: 0, ..cell(256, 128, 12000.0, 4500.0, false) }]);
        assert_eq!(v.max_stable_words().as_deref(), Some("≥ 64 (c256 reached only 64 in flight)"));
        // A cell cut short above the claim.
        let v = verdict(&[cell(8, 128, 300.0, 900.0, true), CellResult { partial: true, ..cell(32, 128, 900.0, 2000.0, true) }]);
        assert_eq!(v.max_stable_words().as_deref(), Some("≥ 8 (c32 was cut short by the stop)"));
    }

    #[test]
    fn a_stopped_run_never_calls_its_partial_cell_a_pass_nor_a_miss() {
        // The stopped run: its only cell was cut short with p95 1986 ms ≤ 3000 ms.
        let partial = CellResult { partial: true, requests_ok: 40, ..cell(8, 128, 300.0, 1986.0, true) };
        let v = verdict(std::slice::from_ref(&partial));
        assert!(v.best.is_none() && v.max_stable_concurrency.is_none());
        let why = v.why_none.unwrap();
        assert!(!why.contains("no cell met the SLO"), "{why}");
        assert_eq!(why, "the run was stopped before any cell ran to its end: c8 × 128 was cut short by the stop after 40 requests ended (p95 so far 1986 ms), so it is not judged against the SLO (p95 end-to-end ≤ 3000 ms)");
        // Cut short before any request ended.
        let empty = CellResult { partial: true, requests_ok: 0, e2e: Dist::default(), ..cell(8, 128, 0.0, 0.0, false) };
        assert!(verdict(&[empty]).why_none.unwrap().contains("c8 × 128 was cut short by the stop before any request ended"));
        // Two partial cells; a failing cell beside a partial one names only the failing one's p95.
        let two = [partial.clone(), CellResult { cell: 1, ..partial.clone() }];
        assert!(verdict(&two).why_none.unwrap().contains("c8 × 128, c8 × 128 were cut short by the stop, so none is judged"));
        let mixed = [cell(4, 128, 100.0, 3500.0, false), partial];
        assert_eq!(verdict(&mixed).why_none.unwrap(), "no cell met the SLO (p95 end-to-end ≤ 3000 ms): the lowest p95 was 3500 ms at c4 × 128; c8 × 128 was cut short by the stop and is not judged");
        // Imported files without a p95: the SLO cannot be judged.
        let unknown = CellResult { slo_pass: false, e2e: Dist::default(), slo_missed: vec!["p95 end-to-end is not in the file (run vllm bench serve with --metric-percentiles 50,95,99)".into()], ..cell(8, 128, 300.0, 0.0, false) };
        assert_eq!(verdict(&[unknown]).why_none.unwrap(), "the SLO (p95 end-to-end ≤ 3000 ms) cannot be judged: p95 end-to-end is not in the file (run vllm bench serve with --metric-percentiles 50,95,99)");
        assert_eq!(verdict(&[]).why_none.unwrap(), "the run has no finished cell");
    }

    #[test]
    fn no_passing_cell_says_why_instead_of_inventing_a_value() {
        let v = verdict(&[cell(16, 256, 500.0, 4000.0, false), cell(32, 256, 700.0, 7000.0, false)]);
        assert!(v.best.is_none() && v.max_stable_concurrency.is_none());
        assert_eq!(v.why_none.unwrap(), "no cell met the SLO (p95 end-to-end ≤ 3000 ms): the lowest p95 was 4000 ms at c16 × 256");
        // A partial cell (stopped) never counts.
        let partial = CellResult { partial: true, ..cell(8, 128, 300.0, 100.0, true) };
        assert!(verdict(&[partial]).best.is_none());
        let none = verdict(&[CellResult { requests_ok: 0, requests_failed: 10, e2e: Dist::default(), ..cell(8, 128, 0.0, 0.0, false) }]);
        assert_eq!(none.why_none.unwrap(), "no cell met the SLO (p95 end-to-end ≤ 3000 ms): no request succeeded");
    }

    #[test]
    fn costs_speedups_and_comparability() {
        // $1.49/h at 1,000 tok/s: 3.6 M tokens an hour, $0.414 per million.
        assert!((cost_per_million_tokens(1.49, 1000.0).unwrap() - 0.41389).abs() < 1e-4);
        assert_eq!(cost_per_million_tokens(1.0, 0.0), None);
        assert_eq!(speedup(Some(100.0), Some(250.0)), Some(2.5));
        assert_eq!(speedup(None, Some(1.0)), None);
        let chat = ExperimentSpec { workload: Workload::Chat, max_new_tokens: vec![128, 256], ..Default::default() };
        let batch = ExperimentSpec { workload: Workload::Batch, max_new_tokens: vec![256, 128], ..Default::default() };
        let why = not_comparable(&chat, &batch);
        assert!(why.iter().any(|w| w.contains("different workloads")), "{why:?}");
        assert!(!why.iter().any(|w| w.contains("output lengths")), "the same lengths in another order are the same");
        assert!(not_comparable(&chat, &chat).is_empty());
    }

    fn view(status: RunStatus, cells: Vec<CellResult>, cells_total: u32) -> RunView {
        // From JSON, as a run file holds it (fields added later take their defaults).
        let mut info: RunInfo = serde_json::from_value(serde_json::json!({
            "id": "r1", "spec": {"workload": "chat"}, "status": "finished", "started_unix_ms": 1_700_000_000_000u64,
            "message": null, "cells_total": cells_total, "requests_total": 0,
            "target": {"url": "", "simulated": true, "server": "caplab-sim", "version": "caplab-sim · A100 · Qwen", "models": []},
        }))
        .unwrap();
        info.status = status;
        info.spec.gpu = "NVIDIA A100 80GB SXM (simulated)".into();
        info.spec.model = "Qwen/Qwen2.5-1.5B-Instruct".into();
        let mut v = RunView::new(info);
        v.cells = cells;
        v
    }

    #[test]
    fn the_capacity_card_of_a_finished_simulated_run() {
        let v = view(RunStatus::Finished, vec![cell(8, 128, 300.0, 900.0, true), cell(32, 128, 1000.0, 2600.0, true), cell(64, 128, 1400.0, 4100.0, false)], 3);
        let c = capacity(&v, Some(1.49));
        assert_eq!(c.best.as_deref(), Some("c32 × 128"));
        assert_eq!((c.output_tok_s, c.p95_ms), (Some(1000.0), Some(2600.0)));
        assert_eq!((c.max_stable_concurrency, c.max_stable.as_deref(), c.peak_in_flight), (Some(32), Some("32"), Some(32)));
        assert_eq!(c.slo, "p95 end-to-end ≤ 3000 ms");
        // $1.49/h at 1,000 tok/s: $0.414 per million output tokens.
        assert!((c.usd_per_million_tokens.unwrap() - 0.41389).abs() < 1e-4);
        assert_eq!(c.engine, "caplab simulator (SIMULATED vLLM)");
        assert_eq!((c.gpu.as_str(), c.model.as_str(), c.date_unix_ms), ("NVIDIA A100 80GB SXM (simulated)", "Qwen/Qwen2.5-1.5B-Instruct", Some(1_700_000_000_000)));
        assert_eq!(c.provenance, Provenance::Simulated);
        assert_eq!(c.provenance.banner(), "SIMULATED");
        assert!(c.why_none.is_none());
        assert_eq!(c.caveats, vec![Provenance::Simulated.words()]);
        assert_eq!(capacity(&v, None).usd_per_million_tokens, None, "no price, no cost");
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["provenance"]["kind"], "simulated");
    }

    #[test]
    fn the_capacity_card_stays_true_for_stopped_running_imported_and_empty_runs() {
        let partial = CellResult { partial: true, requests_ok: 40, ..cell(8, 128, 300.0, 1986.0, true) };
        let stopped = capacity(&view(RunStatus::Stopped, vec![partial], 4), None);
        assert!(stopped.best.is_none() && stopped.max_stable.is_none());
        assert!(stopped.why_none.as_deref().unwrap().contains("cut short by the stop"), "{:?}", stopped.why_none);
        assert_eq!(stopped.caveats[0], "stopped before its end: 1 of 4 cells have a result (1 cell cut short)");
        let running = capacity(&view(RunStatus::Running, vec![], 4), None);
        assert_eq!(running.why_none.as_deref(), Some("no cell has finished yet"));
        assert!(running.caveats[0].starts_with("still running: 0 of 4 cells"));
        let empty = capacity(&view(RunStatus::Finished, vec![], 0), None);
        assert_eq!(empty.why_none.as_deref(), Some("the run has no finished cell"));
        let mut imported = view(RunStatus::Finished, vec![CellResult { peak_concurrency: 0, ..cell(64, 128, 9000.0, 2600.0, true) }], 1);
        imported.info.imported_from = Some("vllm bench serve: c64.json".into());
        imported.info.target = crate::TargetInfo { name: "imported".into(), server: ServerKind::Vllm, ..Default::default() };
        let c = capacity(&imported, None);
        assert_eq!(c.engine, "not stated in the imported file", "no engine claim from a file that does not make one");
        assert_eq!(c.provenance.banner(), "IMPORTED");
        assert_eq!(c.peak_in_flight, None, "not measured");
        assert!(c.caveats.iter().any(|w| w.starts_with("IMPORTED: measured elsewhere (vllm bench serve: c64.json)")), "{:?}", c.caveats);
        // A search that reached less than it asked says so.
        let short = CellResult { requests_ok: 64, peak_concurrency: 64, ..cell(256, 128, 2000.0, 2500.0, true) };
        let c = capacity(&view(RunStatus::Finished, vec![short], 1), None);
        assert_eq!(c.max_stable.as_deref(), Some("≥ 64 (c256 reached only 64 in flight)"));
        assert!(c.caveats.contains(&"c256 × 128 reached only 64 in flight (it measured 64 requests)".to_string()), "{:?}", c.caveats);
        // A real engine with a version.
        let mut real = view(RunStatus::Finished, vec![cell(8, 128, 300.0, 900.0, true)], 1);
        real.info.target = crate::TargetInfo { server: ServerKind::Vllm, version: Some("0.11.0".into()), ..Default::default() };
        let c = capacity(&real, None);
        assert_eq!((c.engine.as_str(), c.provenance.banner()), ("vLLM 0.11.0", "MEASURED"));
        real.info.target.version = None;
        assert_eq!(capacity(&real, None).engine, "vLLM (version not stated)");
        // An open loop states a rate.
        let rate = |r: f64, pass: bool| CellResult { rate: Some(r), concurrency: 0, ..cell(0, 128, 100.0 * r, if pass { 900.0 } else { 4000.0 }, pass) };
        let c = capacity(&view(RunStatus::Finished, vec![rate(2.0, true), rate(4.0, true), rate(8.0, false)], 3), None);
        assert_eq!((c.max_stable.as_deref(), c.max_stable_concurrency), (Some("4 rps"), None));
    }
}
