//! From a grid's cells to the answers the notes ask for (data/notes/report_template.md): the
//! best configuration, the largest concurrency that still meets the SLO, the p95 there, speedups
//! between GPUs, cost per million output tokens, and what makes two runs not comparable.

use serde::{Deserialize, Serialize};

use crate::result::CellResult;
use crate::spec::ExperimentSpec;

/// The cell a verdict points at, with the numbers it is chosen by.
#[derive(Clone, Debug, PartialEq)]
pub struct Pick {
    pub concurrency: u32,
    pub rate: Option<f64>,
    pub max_new_tokens: u32,
    pub output_tok_s: f64,
    pub e2e_p95_ms: Option<f64>,
}

impl Pick {
    fn of(c: &CellResult) -> Pick {
        Pick { concurrency: c.concurrency, rate: c.rate, max_new_tokens: c.max_new_tokens, output_tok_s: c.output_tok_s, e2e_p95_ms: c.e2e.p95 }
    }

    /// "c16 × 256" or "4 rps × 256".
    pub fn label(&self) -> String {
        match self.rate {
            Some(r) => format!("{r} rps × {}", self.max_new_tokens),
            None => format!("c{} × {}", self.concurrency, self.max_new_tokens),
        }
    }
}

/// What one grid says.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The highest output throughput among the cells that meet the SLO (and had no failure).
    pub best: Option<Pick>,
    /// The largest concurrency with a cell meeting the SLO.
    pub max_stable_concurrency: Option<u32>,
    /// At that concurrency, the passing cell with the highest throughput (its p95 is "p95 @ peak").
    pub at_max_stable: Option<Pick>,
    /// The grid's concurrency went no higher than this, so the true maximum may be above it.
    pub grid_ceiling: Option<u32>,
    /// Why there is no answer, in words (None when there is one).
    pub why_none: Option<String>,
}

/// The verdict of a grid; partial cells (cut by a stop) and cells with no successful request
/// never count as meeting the SLO.
pub fn verdict(cells: &[CellResult]) -> Verdict {
    let passing: Vec<&CellResult> = cells.iter().filter(|c| c.slo_pass && !c.partial && c.requests_ok > 0).collect();
    let best = passing.iter().copied().max_by(|a, b| a.output_tok_s.total_cmp(&b.output_tok_s)).map(Pick::of);
    let closed: Vec<&&CellResult> = passing.iter().filter(|c| c.rate.is_none()).collect();
    let max_stable_concurrency = closed.iter().map(|c| c.concurrency).max();
    let at_max_stable = max_stable_concurrency.and_then(|m| {
        closed.iter().filter(|c| c.concurrency == m).max_by(|a, b| a.output_tok_s.total_cmp(&b.output_tok_s)).map(|c| Pick::of(c))
    });
    let grid_ceiling = cells.iter().filter(|c| c.rate.is_none()).map(|c| c.concurrency).max();
    let why_none = if cells.is_empty() {
        Some("the run has no finished cell".to_string())
    } else if best.is_none() {
        let lowest = cells.iter().filter(|c| c.requests_ok > 0).min_by(|a, b| a.e2e.p95.unwrap_or(f64::MAX).total_cmp(&b.e2e.p95.unwrap_or(f64::MAX)));
        let slo = cells[0].slo.e2e_ms.map_or(String::new(), |s| format!(" (p95 end-to-end ≤ {s:.0} ms)"));
        Some(match lowest {
            Some(c) => format!(
                "no cell met the SLO{slo}: the lowest p95 was {:.0} ms at {}",
                c.e2e.p95.unwrap_or_default(),
                Pick::of(c).label()
            ),
            None => format!("no cell met the SLO{slo}: no request succeeded"),
        })
    } else {
        None
    };
    Verdict { best, max_stable_concurrency, at_max_stable, grid_ceiling, why_none }
}

/// A finished run's answer in a few numbers, kept in its index entry so the run list can show
/// it without reading the run (set when the run ends; absent for runs saved before it existed).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Headline {
    /// The best configuration ("c16 × 256"), when a cell met the SLO.
    pub best: Option<String>,
    /// Its output tokens/s.
    pub best_tok_s: Option<f64>,
    /// The max stable concurrency ("16", or "≥ 64" when the grid's highest still met the SLO).
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
            max_stable: v.max_stable_concurrency.map(|m| if v.grid_ceiling == Some(m) { format!("≥ {m}") } else { m.to_string() }),
            p95_at_peak_ms: v.at_max_stable.and_then(|p| p.e2e_p95_ms),
            why_none: v.why_none,
        })
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

    /// A finished cell with the numbers a verdict reads (10 requests, SLO p95 ≤ 3 s); also the
    /// frontier's tests' cells.
    pub(crate) fn cell(c: u32, n: u32, tok_s: f64, p95: f64, pass: bool) -> CellResult {
        CellResult {
            concurrency: c,
            max_new_tokens: n,
            output_tok_s: tok_s,
            requests_ok: 10,
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
        let best = v.best.unwrap();
        assert_eq!((best.concurrency, best.max_new_tokens, best.output_tok_s), (32, 128, 900.0), "the fastest failing cell does not count");
        assert_eq!(v.max_stable_concurrency, Some(32));
        assert_eq!(v.at_max_stable.unwrap().e2e_p95_ms, Some(2800.0));
        assert_eq!(v.grid_ceiling, Some(64));
        assert!(v.why_none.is_none());
    }

    #[test]
    fn no_passing_cell_says_why_instead_of_inventing_a_value() {
        let v = verdict(&[cell(16, 256, 500.0, 4000.0, false), cell(32, 256, 700.0, 7000.0, false)]);
        assert!(v.best.is_none() && v.max_stable_concurrency.is_none());
        assert_eq!(v.why_none.unwrap(), "no cell met the SLO (p95 end-to-end ≤ 3000 ms): the lowest p95 was 4000 ms at c16 × 256");
        // A partial cell (stopped) never counts.
        let partial = CellResult { partial: true, ..cell(8, 128, 300.0, 100.0, true) };
        assert!(verdict(&[partial]).best.is_none());
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
}
