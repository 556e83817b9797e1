//! The throughput–latency frontier of a grid: one point per finished cell (output tokens/s
//! across, p95 end-to-end latency up), one line per max_new_tokens in order of concurrency (or
//! rate), the SLO drawn as a horizontal line, and the best configuration ringed. One renderer
//! (an SVG string) serves the dashboard, `frontier.svg` and the run folder.

use std::fmt::Write;

use crate::decide::verdict;
use crate::plot::{nice_max, short_label, ticks, xml_escape, Scale};
use crate::prediction::{PredictedCell, Prediction};
use crate::result::{CellResult, SloState};

const W: f64 = 640.0;
const H: f64 = 360.0;
const LEFT: f64 = 64.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 44.0;
/// Series colours, each at least 4.5:1 against the white chart (WCAG AA, text included).
pub const COLOURS: [&str; 8] = ["#2563eb", "#15803d", "#c2410c", "#9333ea", "#0e7490", "#be123c", "#854d0e", "#4b5563"];

/// One run's cells on a frontier chart, named in the legend (empty name: a single run's chart).
pub struct Series<'a> {
    pub name: String,
    pub cells: &'a [CellResult],
}

/// The frontier of one run as a standalone SVG titled `title`.
pub fn svg(cells: &[CellResult], title: &str) -> String {
    svg_series(&[Series { name: String::new(), cells }], title)
}

/// Several runs' frontiers overlaid (one line per run and max_new_tokens, each run's SLO and
/// best configuration drawn), for comparing GPUs or workloads.
pub fn svg_series(series: &[Series], title: &str) -> String {
    render(series, None, title)
}

/// A measured run's frontier with a prediction of it on another GPU overlaid: dashed lines,
/// hollow diamonds, and a shaded box per cell spanning the ranges its published errors give.
pub fn svg_with_prediction(cells: &[CellResult], prediction: &Prediction, title: &str) -> String {
    // The title names both GPUs; the legend says which line is which in a word.
    render(&[Series { name: "measured".into(), cells }], Some(prediction), title)
}

fn render(series: &[Series], prediction: Option<&Prediction>, title: &str) -> String {
    let named = series.iter().any(|s| !s.name.is_empty());
    let right = if named { 230.0 } else { 150.0 };
    let points: Vec<(usize, &CellResult)> =
        series.iter().enumerate().flat_map(|(i, s)| s.cells.iter().filter(|c| c.requests_ok > 0 && c.e2e.p95.is_some()).map(move |c| (i, c))).collect();
    let mut slos: Vec<f64> = series.iter().filter_map(|s| s.cells.iter().find_map(|c| c.slo.e2e_ms)).collect();
    slos.sort_by(f64::total_cmp);
    slos.dedup();
    let predicted: &[PredictedCell] = prediction.map_or(&[], |p| &p.cells);
    let hi = |v: f64, r: Option<(f64, f64)>| r.map_or(v, |r| v.max(r.1));
    let x_top = nice_max(points.iter().map(|(_, c)| c.output_tok_s).chain(predicted.iter().map(|p| hi(p.output_tok_s, p.output_tok_s_range))).fold(0.0, f64::max), 5);
    let y_max = points
        .iter()
        .filter_map(|(_, c)| c.e2e.p95)
        .chain(predicted.iter().map(|p| hi(p.e2e_p95_ms, p.e2e_p95_range)))
        .fold(slos.last().copied().unwrap_or(0.0), f64::max);
    let y_top = nice_max(y_max * 1.05, 5);
    let x = Scale::new((0.0, x_top), (LEFT, W - right));
    let y = Scale::new((0.0, y_top), (H - BOTTOM, TOP));
    let mut out = String::new();
    let _ = write!(out, r#"<svg xmlns="http://www.w3.org/2000/svg" class="frontier" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#);
    out.push_str(&crate::plot::title_text(10.0, 20.0, title, W - 20.0));
    for v in ticks(y_top, 5) {
        let py = y.map(v);
        let _ = write!(out, r##"<line x1="{LEFT}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#e5e7eb"/><text x="{}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##, W - right, LEFT - 6.0, py + 4.0, short_label(v));
    }
    for v in ticks(x_top, 5) {
        let px = x.map(v);
        let _ = write!(out, r##"<text x="{px:.1}" y="{}" text-anchor="middle" fill="#555">{}</text>"##, H - BOTTOM + 16.0, short_label(v));
    }
    let _ = write!(out, r##"<text x="{}" y="{}" text-anchor="middle" fill="#333">output tokens/s →</text>"##, (LEFT + W - right) / 2.0, H - 8.0);
    let _ = write!(out, r##"<text x="14" y="{}" transform="rotate(-90 14 {})" text-anchor="middle" fill="#333">p95 end-to-end (ms) →</text>"##, (TOP + H - BOTTOM) / 2.0, (TOP + H - BOTTOM) / 2.0);
    for s in &slos {
        let py = y.map(*s);
        let _ = write!(out, r##"<line class="slo" x1="{LEFT}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#dc2626" stroke-dasharray="6 4"/><text x="{}" y="{:.1}" fill="#dc2626">SLO p95 ≤ {} ms</text>"##, W - right, LEFT + 4.0, py - 4.0, short_label(*s));
    }
    // A line per run and output length (and prompt length, on a grid with that axis).
    let mut lines: Vec<(usize, u32, Option<u32>)> = points.iter().map(|(i, c)| (*i, c.max_new_tokens, c.input_tokens)).collect();
    lines.sort_unstable();
    lines.dedup();
    let legend = |k: usize| TOP + 18.0 * k as f64 + 30.0;
    for (k, (si, n, input)) in lines.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let mut line: Vec<&CellResult> = points.iter().filter(|(i, c)| i == si && c.max_new_tokens == *n && c.input_tokens == *input).map(|(_, c)| *c).collect();
        line.sort_by(|a, b| a.load().level().total_cmp(&b.load().level()));
        let d: Vec<String> = line.iter().enumerate().map(|(i, c)| format!("{}{:.1},{:.1}", if i == 0 { 'M' } else { 'L' }, x.map(c.output_tok_s), y.map(c.e2e.p95.unwrap_or(0.0)))).collect();
        let _ = write!(out, r#"<path d="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#, d.join(" "));
        let who = if named { format!("{}: ", xml_escape(&series[*si].name)) } else { String::new() };
        for c in &line {
            let at = c.load().label();
            let (px, py) = (x.map(c.output_tok_s), y.map(c.e2e.p95.unwrap_or(0.0)));
            let _ = write!(
                out,
                r##"<g class="point" data-cell="{}"><title>{who}{at} × {n}: {:.0} tok/s, p95 {:.0} ms{}</title><circle cx="{px:.1}" cy="{py:.1}" r="4" fill="{}" stroke="{colour}"/><text x="{:.1}" y="{:.1}" fill="#333" font-size="10">{at}</text></g>"##,
                c.cell,
                c.output_tok_s,
                c.e2e.p95.unwrap_or(0.0),
                match c.slo_state() {
                    SloState::Pass => ", meets the SLO",
                    SloState::Fail => ", misses the SLO",
                    SloState::Partial => ", partial: cut short by a stop, not judged",
                    SloState::NoRequests | SloState::Unknown => ", SLO not judged",
                },
                if c.slo_state() == SloState::Pass { colour } else { "#fff" },
                px + 6.0,
                py - 6.0
            );
        }
        let prompt = input.map_or(String::new(), |p| format!(", {p} in"));
        let name = if named { format!("{} · {n} tok{prompt}", clip(&series[*si].name, 26)) } else { format!("{n} new tokens{prompt}") };
        let ly = legend(k);
        let _ = write!(out, r#"<rect x="{}" y="{}" width="14" height="3" fill="{colour}"/><text x="{}" y="{ly}">{}</text>"#, W - right + 6.0, ly - 5.0, W - right + 24.0, xml_escape(&name));
    }
    let mut k = lines.len();
    if let Some(p) = prediction {
        k += predicted_lines(&mut out, p, &x, &y, W - right, k, &legend);
    }
    for s in series {
        if let Some(best) = verdict(s.cells).best {
            let (px, py) = (x.map(best.output_tok_s), y.map(best.e2e_p95_ms.unwrap_or(0.0)));
            let label = if named { format!("{}: {}", s.name, best.label()) } else { best.label() };
            let _ = write!(out, r##"<circle class="best" cx="{px:.1}" cy="{py:.1}" r="9" fill="none" stroke="#111" stroke-width="2"><title>best configuration: {}</title></circle>"##, xml_escape(&label));
            let ly = legend(k) + 10.0;
            k += 1;
            let _ = write!(out, r##"<circle cx="{}" cy="{}" r="6" fill="none" stroke="#111" stroke-width="2"/><text x="{}" y="{ly}">best: {}</text>"##, W - right + 13.0, ly - 4.0, W - right + 24.0, xml_escape(&clip(&label, 30)));
        }
    }
    if points.is_empty() && predicted.is_empty() {
        let _ = write!(out, r##"<text x="{}" y="{}" text-anchor="middle" fill="#555">no finished cell with a successful request yet</text>"##, (LEFT + W - right) / 2.0, (TOP + H - BOTTOM) / 2.0);
    }
    out.push_str("</svg>");
    out
}

/// The prediction's lines (one per output and prompt length, dashed), each cell's box of
/// published error and its diamond; the legend from row `k`. Returns the legend rows used.
fn predicted_lines(out: &mut String, p: &Prediction, x: &Scale, y: &Scale, legend_x: f64, k: usize, legend: &dyn Fn(usize) -> f64) -> usize {
    const GREY: &str = "#4b5563";
    let mut lines: Vec<(u32, Option<u32>)> = p.cells.iter().map(|c| (c.max_new_tokens, c.input_tokens)).collect();
    lines.sort_unstable();
    lines.dedup();
    for (j, (n, input)) in lines.iter().enumerate() {
        let mut line: Vec<&PredictedCell> = p.cells.iter().filter(|c| c.max_new_tokens == *n && c.input_tokens == *input).collect();
        line.sort_by_key(|c| c.concurrency);
        for c in &line {
            if let (Some((x0, x1)), Some((y0, y1))) = (c.output_tok_s_range, c.e2e_p95_range) {
                let (px0, px1, py0, py1) = (x.map(x0), x.map(x1), y.map(y1), y.map(y0));
                let _ = write!(out, r#"<rect class="band" x="{px0:.1}" y="{py0:.1}" width="{:.1}" height="{:.1}" fill="{GREY}" fill-opacity="0.12"/>"#, (px1 - px0).max(1.0), (py1 - py0).max(1.0));
            }
        }
        let d: Vec<String> = line.iter().enumerate().map(|(i, c)| format!("{}{:.1},{:.1}", if i == 0 { 'M' } else { 'L' }, x.map(c.output_tok_s), y.map(c.e2e_p95_ms))).collect();
        let _ = write!(out, r#"<path class="predicted" d="{}" fill="none" stroke="{GREY}" stroke-width="2" stroke-dasharray="6 4"/>"#, d.join(" "));
        let range = |r: Option<(f64, f64)>| r.map_or(", no published error".to_string(), |(lo, hi)| format!(" ({}–{})", short_label(lo), short_label(hi)));
        for c in &line {
            let (px, py) = (x.map(c.output_tok_s), y.map(c.e2e_p95_ms));
            let _ = write!(
                out,
                r##"<g class="predicted-point"><title>PREDICTED on {}: {}: {} tok/s{}, p95 {} ms{}; bound by {}</title><path d="M{px:.1},{:.1} L{:.1},{py:.1} L{px:.1},{:.1} L{:.1},{py:.1} Z" fill="#fff" stroke="{GREY}" stroke-width="1.5"/></g>"##,
                xml_escape(&p.gpu),
                c.label(),
                short_label(c.output_tok_s),
                range(c.output_tok_s_range),
                short_label(c.e2e_p95_ms),
                range(c.e2e_p95_range),
                c.bound_by,
                py - 5.0,
                px + 5.0,
                py + 5.0,
                px - 5.0
            );
        }
        let prompt = input.map_or(String::new(), |i| format!(", {i} in"));
        let ly = legend(k + j);
        let name = format!("PREDICTED · {n} tok{prompt}");
        let _ = write!(out, r#"<line x1="{}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="{GREY}" stroke-width="2" stroke-dasharray="4 2"/><text x="{}" y="{ly}">{}</text>"#, legend_x + 6.0, legend_x + 20.0, ly - 4.0, ly - 4.0, legend_x + 24.0, xml_escape(&name));
    }
    lines.len()
}

/// At most `n` characters, with an ellipsis when cut.
fn clip(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        text.to_string()
    } else {
        text.chars().take(n - 1).chain(std::iter::once('…')).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::tests::cell;

    #[test]
    fn one_point_per_cell_a_line_per_length_the_slo_and_the_best_ringed() {
        let cells = vec![cell(1, 128, 40.0, 900.0, true), cell(8, 128, 300.0, 2500.0, true), cell(32, 128, 800.0, 4500.0, false), cell(8, 256, 310.0, 2900.0, true)];
        let s = svg(&cells, "chat on <RTX>");
        assert_eq!(s.matches(r#"class="point""#).count(), 4);
        assert_eq!(s.matches("<path ").count(), 2, "one line per max_new_tokens");
        assert!(s.contains(r#"class="slo""#) && s.contains("SLO p95 ≤ 3k ms"));
        assert!(s.contains("best configuration: c8 × 256"), "the fastest passing cell, not the faster failing one");
        assert!(s.contains("chat on &lt;RTX&gt;"));
        assert!(svg(&[], "x").contains("no finished cell"));
    }

    #[test]
    fn a_partial_cell_is_drawn_hollow_and_never_said_to_meet_the_slo() {
        let partial = CellResult { partial: true, ..cell(8, 128, 300.0, 1986.0, true) };
        let s = svg(&[partial], "stopped");
        assert!(s.contains("c8 × 128: 300 tok/s, p95 1986 ms, partial: cut short by a stop, not judged"), "{s}");
        assert!(!s.contains("meets the SLO") && s.contains(r##"fill="#fff""##), "{s}");
        assert!(!s.contains(r#"class="best""#), "no best configuration from a partial cell");
    }

    #[test]
    fn overlaid_runs_get_a_line_each_their_own_best_and_their_slo_lines() {
        let a = vec![cell(1, 128, 40.0, 900.0, true), cell(8, 128, 300.0, 2500.0, true)];
        let mut b = vec![cell(1, 128, 90.0, 400.0, true), cell(8, 128, 700.0, 1200.0, true), cell(32, 128, 1900.0, 2600.0, true)];
        b[2].slo.e2e_ms = Some(2000.0);
        b[2].slo_pass = false;
        let s = svg_series(&[Series { name: "RTX <chat>".into(), cells: &a }, Series { name: "A100 chat".into(), cells: &b }], "chat: RTX vs A100");
        assert_eq!(s.matches(r#"class="point""#).count(), 5);
        assert_eq!(s.matches("<path ").count(), 2, "one line per run and length");
        assert_eq!(s.matches(r#"class="best""#).count(), 2, "each run's best ringed");
        assert!(s.contains("best configuration: A100 chat: c8 × 128"), "{s}");
        assert!(s.contains("RTX &lt;chat&gt; · 128 tok"), "names escaped in the legend");
        assert_eq!(s.matches(r#"class="slo""#).count(), 1, "the first cell of each run carries its SLO (both 3 s here)");
    }
}
