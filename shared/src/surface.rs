//! The OOM surface: one tile per grid cell (concurrency or rate × max_new_tokens), coloured by
//! how the cell ended and why; cells of the grid not run are grey. One renderer (an SVG string)
//! serves the dashboard, the `surface.svg` download, the HTML report and the run folder; `table`
//! serves `caplab run`'s terminal.
//!
//! Each tile is `<g class="tile" data-cell="N" data-outcome="OUTCOME">` with a
//! `<rect class="outcome-OUTCOME">` (a cell not run: `<g class="tile-not-run"
//! data-outcome="not_run">`), OUTCOME one of `Outcome::as_str`, so a page's CSS can restyle them.

use std::fmt::Write;

use crate::live::RunView;
use crate::plot::xml_escape;
use crate::result::{CellResult, SloState};
use crate::sample::ErrorClass;
use crate::spec::CellSpec;

/// How a cell ended, worst first: the first that applies is the tile's colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Requests failed because the server ran out of memory.
    OutOfMemory,
    /// Requests failed because prompt + max_tokens exceed the model's context.
    ContextLength,
    /// Requests failed for another reason (see the error classes).
    Errors,
    /// The server preempted running requests (KV cache exhausted: recompute or swap).
    Preemptions,
    /// Requests waited in the server's queue (all its sequence slots or KV blocks were taken).
    Queueing,
    /// Every request succeeded, but a latency objective was broken at p95.
    MissesSlo,
    /// Cut short by a stop (`SloState::Partial`): neither meets nor misses the SLO.
    Partial,
    /// Ran, but the SLO cannot be judged: no measured request, or a file without a p95.
    NotJudged,
    /// Ran to its end; every request succeeded and every objective held.
    MeetsSlo,
    /// In the grid, but not run (a search did not need it, or the run ended before it).
    /// Never the outcome of a cell with a result.
    NotRun,
}

impl Outcome {
    pub const ALL: [Outcome; 10] = [
        Outcome::MeetsSlo,
        Outcome::MissesSlo,
        Outcome::Partial,
        Outcome::Queueing,
        Outcome::Preemptions,
        Outcome::Errors,
        Outcome::ContextLength,
        Outcome::OutOfMemory,
        Outcome::NotJudged,
        Outcome::NotRun,
    ];

    pub fn of(c: &CellResult) -> Outcome {
        let failed = |class| c.errors.get(&class).copied().unwrap_or(0) > 0;
        let server = c.server.as_ref();
        if failed(ErrorClass::OutOfMemory) {
            Outcome::OutOfMemory
        } else if failed(ErrorClass::ContextLength) {
            Outcome::ContextLength
        } else if c.requests_failed > 0 {
            Outcome::Errors
        } else if server.and_then(|s| s.preemptions).is_some_and(|p| p > 0.0) {
            Outcome::Preemptions
        } else if server.and_then(|s| s.max_waiting).is_some_and(|w| w >= 1.0) {
            Outcome::Queueing
        } else {
            match c.slo_state() {
                SloState::Pass => Outcome::MeetsSlo,
                SloState::Fail => Outcome::MissesSlo,
                SloState::Partial => Outcome::Partial,
                SloState::NoRequests | SloState::Unknown => Outcome::NotJudged,
            }
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::OutOfMemory => "out_of_memory",
            Outcome::ContextLength => "context_length",
            Outcome::Errors => "errors",
            Outcome::Preemptions => "preemptions",
            Outcome::Queueing => "queueing",
            Outcome::MissesSlo => "misses_slo",
            Outcome::Partial => "partial",
            Outcome::NotJudged => "not_judged",
            Outcome::MeetsSlo => "meets_slo",
            Outcome::NotRun => "not_run",
        }
    }

    /// Words for the legend.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::OutOfMemory => "out of memory",
            Outcome::ContextLength => "context too long",
            Outcome::Errors => "errors",
            Outcome::Preemptions => "preemptions",
            Outcome::Queueing => "queueing",
            Outcome::MissesSlo => "misses SLO",
            Outcome::Partial => "partial (stopped)",
            Outcome::NotJudged => "SLO not judged",
            Outcome::MeetsSlo => "meets SLO",
            Outcome::NotRun => "not run",
        }
    }

    /// One letter for the terminal table.
    pub fn letter(self) -> char {
        match self {
            Outcome::OutOfMemory => 'M',
            Outcome::ContextLength => 'C',
            Outcome::Errors => 'E',
            Outcome::Preemptions => 'P',
            Outcome::Queueing => 'Q',
            Outcome::MissesSlo => 'x',
            Outcome::Partial => 'p',
            Outcome::NotJudged => '?',
            Outcome::MeetsSlo => '.',
            Outcome::NotRun => ' ',
        }
    }

    pub fn colour(self) -> &'static str {
        match self {
            Outcome::OutOfMemory => "#7f1d1d",
            Outcome::ContextLength => "#9d174d",
            Outcome::Errors => "#dc2626",
            Outcome::Preemptions => "#ea580c",
            Outcome::Queueing => "#f59e0b",
            Outcome::MissesSlo => "#fde047",
            Outcome::Partial => "#93c5fd",
            Outcome::NotJudged => "#cbd5e1",
            Outcome::MeetsSlo => "#16a34a",
            Outcome::NotRun => "#f3f4f6",
        }
    }

    /// The colour of a tile's text on `colour()`.
    pub fn text_colour(self) -> &'static str {
        match self {
            Outcome::MissesSlo | Outcome::Queueing | Outcome::Partial | Outcome::NotJudged => "#111",
            Outcome::NotRun => "#6b7280",
            _ => "#fff",
        }
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.0} ms"))
}

/// Why the cell has its outcome, with the numbers behind it.
pub fn cause(c: &CellResult) -> String {
    let mut parts = Vec::new();
    let measured = c.requests_ok + c.requests_failed;
    if c.requests_failed > 0 {
        let classes: Vec<String> = c.errors.iter().filter(|(k, n)| **k != ErrorClass::Cancelled && **n > 0).map(|(k, n)| format!("{} {n}", k.as_str())).collect();
        parts.push(format!("{} of {measured} requests failed ({})", c.requests_failed, classes.join(", ")));
    }
    if let Some(s) = &c.server {
        if let Some(p) = s.preemptions.filter(|p| *p > 0.0) {
            parts.push(format!("{p:.0} preemptions"));
        }
        if let Some(w) = s.max_waiting.filter(|w| *w >= 1.0) {
            parts.push(format!("up to {w:.0} requests waiting in the server's queue"));
        }
        if let Some(kv) = s.max_kv_usage {
            parts.push(format!("KV cache peaked at {:.0}%", kv * 100.0));
        } else if s.max_running.is_none() && s.max_waiting.is_none() && s.requests.is_some_and(|n| n > 0.0) {
            parts.push("no /metrics scrape caught requests running, so the server's queue and KV cache peaks are unknown".into());
        }
    }
    let state = c.slo_state();
    if state == SloState::Partial {
        parts.push(format!("cut short by the stop after {} requests ended: not judged against the SLO", c.requests_ok + c.requests_failed));
        if c.requests_ok > 0 {
            parts.push(format!("p95 e2e so far {}", ms(c.e2e.p95)));
        }
    } else if state == SloState::Unknown {
        parts.push(format!("SLO not judged: {}", c.slo_missed.join("; ")));
    } else if !c.slo_missed.is_empty() {
        parts.push(format!("SLO missed: {}", c.slo_missed.join("; ")));
    } else if c.requests_ok > 0 {
        parts.push(format!("p95 e2e {}, p95 TTFT {}", ms(c.e2e.p95), ms(c.ttft.p95)));
    }
    if c.requests_ok > 0 {
        parts.push(format!("{:.0} output tok/s", c.output_tok_s));
    }
    if parts.is_empty() {
        "no measured requests".into()
    } else {
        parts.join("; ")
    }
}

/// A row of the surface: a max_new_tokens, and the synthetic prompt length when the run has
/// that third axis (rows then go by prompt length, then output length).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row {
    pub input_tokens: Option<u32>,
    pub max_new_tokens: u32,
}

impl Row {
    fn of(c: &CellResult) -> Row {
        Row { input_tokens: c.input_tokens, max_new_tokens: c.max_new_tokens }
    }

    fn planned(c: &CellSpec) -> Row {
        Row { input_tokens: c.input_tokens, max_new_tokens: c.max_new_tokens }
    }

    /// "256", or "2048 in → 256" on a grid with prompt lengths.
    pub fn label(&self) -> String {
        match self.input_tokens {
            Some(n) => format!("{n} in → {}", self.max_new_tokens),
            None => self.max_new_tokens.to_string(),
        }
    }
}

/// The surface's axes: x = concurrency (or rate), rows = max_new_tokens (under each prompt
/// length when there is that axis), each sorted.
pub struct Grid<'a> {
    pub rate_mode: bool,
    pub xs: Vec<f64>,
    pub ys: Vec<Row>,
    pub cells: &'a [CellResult],
}

impl<'a> Grid<'a> {
    pub fn new(cells: &'a [CellResult]) -> Grid<'a> {
        Grid::planned(cells, &[])
    }

    /// The axes of the cells with a result and of the cells `planned` (the run's grid).
    pub fn planned(cells: &'a [CellResult], planned: &[CellSpec]) -> Grid<'a> {
        let rate_mode = cells.iter().any(|c| c.rate.is_some()) || planned.iter().any(|c| c.load.rate().is_some());
        let planned_x = |c: &CellSpec| if rate_mode { c.load.rate().unwrap_or(0.0) } else { f64::from(c.load.concurrency()) };
        let mut xs: Vec<f64> = cells.iter().map(|c| x_of(c, rate_mode)).chain(planned.iter().map(planned_x)).collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        let mut ys: Vec<Row> = cells.iter().map(Row::of).chain(planned.iter().map(Row::planned)).collect();
        ys.sort_unstable();
        ys.dedup();
        Grid { rate_mode, xs, ys, cells }
    }

    pub fn at(&self, x: f64, y: Row) -> Option<&'a CellResult> {
        self.cells.iter().find(|c| x_of(c, self.rate_mode) == x && Row::of(c) == y)
    }

    /// Whether the rows have a prompt-length axis.
    pub fn has_inputs(&self) -> bool {
        self.ys.iter().any(|r| r.input_tokens.is_some())
    }

    pub fn x_label(&self, x: f64) -> String {
        if self.rate_mode {
            format!("{x} rps")
        } else {
            format!("c{x}")
        }
    }
}

fn x_of(c: &CellResult, rate_mode: bool) -> f64 {
    if rate_mode {
        c.rate.unwrap_or(0.0)
    } else {
        f64::from(c.concurrency)
    }
}

/// The surface as a standalone SVG: a tile per finished cell (hover: its cause), a legend, and
/// `title` on top. Cells not yet finished are blank (`svg_of` draws the run's whole grid).
pub fn svg(cells: &[CellResult], title: &str) -> String {
    svg_grid(cells, &[], title)
}

/// A run's surface: its whole grid, a grey "not run" tile for every cell without a result.
pub fn svg_of(view: &RunView) -> String {
    svg_grid(&view.cells, &view.info.spec.cells(), &view.chart_title())
}

/// The surface of `cells` over the grid `planned` (a grey "not run" tile for every planned cell
/// without a result), titled `title`.
pub fn svg_grid(cells: &[CellResult], planned: &[CellSpec], title: &str) -> String {
    let g = Grid::planned(cells, planned);
    let planned_at = |x: f64, y: Row| {
        planned.iter().any(|c| Row::planned(c) == y && if g.rate_mode { c.load.rate() == Some(x) } else { f64::from(c.load.concurrency()) == x })
    };
    let left = if g.has_inputs() { 130.0 } else { 90.0 };
    let (tile_w, tile_h, top) = (96.0, 40.0, 56.0);
    let width = left + tile_w * g.xs.len().max(1) as f64 + 20.0;
    let legend_y = top + tile_h * g.ys.len().max(1) as f64 + 34.0;
    let height = legend_y + 24.0 * Outcome::ALL.len().div_ceil(3) as f64 + 10.0;
    let width = width.max(3.0 * 170.0 + 20.0);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="surface" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    out.push_str(&crate::plot::title_text(10.0, 20.0, title, width - 20.0));
    let x_axis = if g.rate_mode { "offered rate (requests/s) →" } else { "concurrency →" };
    let y_axis = if g.has_inputs() { "↓ prompt tokens → max_new_tokens" } else { "↓ max_new_tokens" };
    let _ = write!(out, r##"<text x="{left}" y="40" fill="#555">{x_axis}   {y_axis}</text>"##);
    for (i, x) in g.xs.iter().enumerate() {
        let cx = left + tile_w * i as f64 + tile_w / 2.0;
        let _ = write!(out, r#"<text x="{cx}" y="{}" text-anchor="middle">{}</text>"#, top - 4.0, xml_escape(&g.x_label(*x)));
    }
    for (j, y) in g.ys.iter().enumerate() {
        let ty = top + tile_h * j as f64;
        let _ = write!(out, r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#, left - 8.0, ty + tile_h / 2.0 + 4.0, y.label());
        // A line between prompt lengths, so each length reads as its own block.
        if j > 0 && g.ys[j - 1].input_tokens != y.input_tokens {
            let _ = write!(out, r##"<line x1="10" x2="{}" y1="{ty}" y2="{ty}" stroke="#6b7280" stroke-width="1.5"/>"##, width - 10.0);
        }
        for (i, x) in g.xs.iter().enumerate() {
            let tx = left + tile_w * i as f64;
            let Some(c) = g.at(*x, *y) else {
                if planned_at(*x, *y) {
                    let o = Outcome::NotRun;
                    let _ = write!(
                        out,
                        r#"<g class="tile-not-run" data-outcome="{0}"><title>{1} × {10}: not run</title><rect class="outcome-{0}" x="{2}" y="{3}" width="{4}" height="{5}" rx="4" fill="{6}" stroke="{7}" stroke-dasharray="4 3"/><text x="{8}" y="{9}" text-anchor="middle" fill="{7}">not run</text></g>"#,
                        o.as_str(),
                        xml_escape(&g.x_label(*x)),
                        tx + 2.0,
                        ty + 2.0,
                        tile_w - 4.0,
                        tile_h - 4.0,
                        o.colour(),
                        o.text_colour(),
                        tx + tile_w / 2.0,
                        ty + tile_h / 2.0 + 4.0,
                        xml_escape(&y.label()),
                    );
                }
                continue;
            };
            let o = Outcome::of(c);
            let text_colour = o.text_colour();
            let _ = write!(
                out,
                r#"<g class="tile" data-cell="{}" data-outcome="{}"><title>{} × {}: {} — {}</title><rect class="outcome-{}" x="{}" y="{}" width="{}" height="{}" rx="4" fill="{}"/><text x="{}" y="{}" text-anchor="middle" fill="{text_colour}">{:.0} tok/s</text></g>"#,
                c.cell,
                o.as_str(),
                xml_escape(&g.x_label(*x)),
                xml_escape(&y.label()),
                o.label(),
                xml_escape(&cause(c)),
                o.as_str(),
                tx + 2.0,
                ty + 2.0,
                tile_w - 4.0,
                tile_h - 4.0,
                o.colour(),
                tx + tile_w / 2.0,
                ty + tile_h / 2.0 + 4.0,
                c.output_tok_s
            );
        }
    }
    for (k, o) in Outcome::ALL.iter().enumerate() {
        let (lx, ly) = (10.0 + 170.0 * (k % 3) as f64, legend_y + 24.0 * (k / 3) as f64);
        let _ = write!(
            out,
            r##"<rect class="legend outcome-{}" x="{lx}" y="{}" width="14" height="14" rx="2" fill="{}" stroke="#9ca3af" stroke-width="0.5"/><text x="{}" y="{ly}">{}</text>"##,
            o.as_str(),
            ly - 11.0,
            o.colour(),
            lx + 20.0,
            o.label()
        );
    }
    out.push_str("</svg>");
    out
}

/// The surface as a compact text table for a terminal: one letter per cell (legend below).
pub fn table(cells: &[CellResult]) -> String {
    let g = Grid::new(cells);
    let mut out = String::new();
    let _ = write!(out, "{:>8}", "max_new");
    for x in &g.xs {
        let _ = write!(out, " {:>7}", g.x_label(*x));
    }
    out.push('\n');
    for y in &g.ys {
        let _ = write!(out, "{:>8}", y.label());
        for x in &g.xs {
            let letter = g.at(*x, *y).map_or(' ', |c| Outcome::of(c).letter());
            let _ = write!(out, " {letter:>7}");
        }
        out.push('\n');
    }
    let legend: Vec<String> = Outcome::ALL.iter().filter(|o| **o != Outcome::NotRun).map(|o| format!("{} {}", o.letter(), o.label())).collect();
    let _ = write!(out, "         {}", legend.join(" · "));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::ServerCellStats;
    use std::collections::BTreeMap;

    fn cell(i: u32, c: u32, n: u32) -> CellResult {
        CellResult { cell: i, concurrency: c, max_new_tokens: n, requests_ok: 10, slo_pass: true, output_tok_s: 100.0, ..Default::default() }
    }

    #[test]
    fn outcomes_name_the_worst_cause_first() {
        let ok = cell(0, 1, 64);
        assert_eq!(Outcome::of(&ok), Outcome::MeetsSlo);
        let slow = CellResult { slo_pass: false, slo_missed: vec!["p95 e2e 5000 ms > 3000 ms".into()], ..cell(1, 8, 64) };
        assert_eq!(Outcome::of(&slow), Outcome::MissesSlo);
        assert!(cause(&slow).contains("SLO missed: p95 e2e 5000 ms"));
        let queued = CellResult { server: Some(ServerCellStats { max_waiting: Some(9.0), max_kv_usage: Some(0.5), ..Default::default() }), ..slow.clone() };
        assert_eq!(Outcome::of(&queued), Outcome::Queueing);
        assert!(cause(&queued).contains("up to 9 requests waiting"), "{}", cause(&queued));
        let preempted = CellResult { server: Some(ServerCellStats { preemptions: Some(12.0), max_waiting: Some(3.0), ..Default::default() }), ..ok.clone() };
        assert_eq!(Outcome::of(&preempted), Outcome::Preemptions);
        // Gauges no scrape caught under load are unknown, and said to be.
        let unsampled = CellResult { server: Some(ServerCellStats { preemptions: Some(33.0), requests: Some(32.0), ..Default::default() }), ..ok.clone() };
        assert!(cause(&unsampled).contains("33 preemptions; no /metrics scrape caught requests running, so the server's queue and KV cache peaks are unknown"), "{}", cause(&unsampled));
        assert!(!cause(&preempted).contains("unknown"), "{}", cause(&preempted));
        let errors = |class| CellResult { requests_failed: 2, errors: BTreeMap::from([(class, 2)]), ..preempted.clone() };
        assert_eq!(Outcome::of(&errors(ErrorClass::Server)), Outcome::Errors);
        assert_eq!(Outcome::of(&errors(ErrorClass::ContextLength)), Outcome::ContextLength);
        assert_eq!(Outcome::of(&errors(ErrorClass::OutOfMemory)), Outcome::OutOfMemory);
        assert!(cause(&errors(ErrorClass::OutOfMemory)).starts_with("2 of 12 requests failed (out_of_memory 2)"), "{}", cause(&errors(ErrorClass::OutOfMemory)));
    }

    #[test]
    fn svg_and_table_place_cells_on_their_axes() {
        let cells = vec![
            cell(0, 1, 64),
            cell(1, 8, 64),
            CellResult { requests_failed: 1, errors: BTreeMap::from([(ErrorClass::OutOfMemory, 1)]), ..cell(2, 8, 512) },
        ];
        let svg = svg(&cells, "chat on <GPU> & friends");
        assert_eq!(svg.matches(r#"class="tile""#).count(), 3, "one tile per finished cell; (1, 512) not run");
        assert!(svg.contains(r#"data-cell="2" data-outcome="out_of_memory""#));
        assert!(svg.contains("chat on &lt;GPU&gt; &amp; friends"));
        let table = table(&cells);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].contains("c1") && lines[0].contains("c8"), "{table}");
        assert_eq!(lines[1].split_whitespace().collect::<Vec<_>>(), ["64", ".", "."]);
        assert_eq!(lines[2].split_whitespace().collect::<Vec<_>>(), ["512", "M"]);
    }

    #[test]
    fn partial_and_unjudged_cells_are_never_green_and_cells_not_run_are_grey() {
        let partial = CellResult { partial: true, e2e: crate::Dist { p95: Some(1986.0), ..Default::default() }, ..cell(0, 8, 64) };
        assert_eq!(Outcome::of(&partial), Outcome::Partial);
        assert!(cause(&partial).starts_with("cut short by the stop after 10 requests ended: not judged against the SLO; p95 e2e so far 1986 ms"), "{}", cause(&partial));
        let unknown = CellResult { slo_pass: false, slo_missed: vec!["p95 end-to-end is not in the file".into()], slo: crate::Slo { e2e_ms: Some(3000.0), ..Default::default() }, ..cell(1, 16, 64) };
        assert_eq!(Outcome::of(&unknown), Outcome::NotJudged);
        assert!(cause(&unknown).contains("SLO not judged: p95 end-to-end is not in the file"));
        let info: crate::RunInfo = serde_json::from_value(serde_json::json!({
            "id": "r", "spec": {"workload": "chat", "concurrency": [8, 16, 32], "max_new_tokens": [64]}, "status": "stopped",
            "started_unix_ms": 0, "message": null, "cells_total": 3, "requests_total": 0,
            "target": {"url": "", "simulated": false, "server": "vllm", "models": []},
        }))
        .unwrap();
        let mut view = RunView::new(info);
        view.cells = vec![partial, CellResult { cell: 1, ..unknown }];
        let svg = svg_of(&view);
        assert!(svg.contains(r#"data-cell="0" data-outcome="partial""#) && svg.contains(r#"class="outcome-partial""#), "{svg}");
        assert!(svg.contains(r#"data-cell="1" data-outcome="not_judged""#));
        assert_eq!(svg.matches(r#"class="tile""#).count(), 2);
        assert_eq!(svg.matches(r#"class="tile-not-run" data-outcome="not_run""#).count(), 1, "c32 was never run");
        assert!(svg.contains("c32 × 64: not run"));
        assert!(!svg.contains(r#"data-outcome="meets_slo""#));
        assert_eq!(svg.matches(r#"class="legend outcome-"#).count(), Outcome::ALL.len());
        assert!(table(&view.cells).lines().nth(1).unwrap().split_whitespace().eq(["64", "p", "?"]));
        let names: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(names, ["meets_slo", "misses_slo", "partial", "queueing", "preemptions", "errors", "context_length", "out_of_memory", "not_judged", "not_run"]);
    }
}
