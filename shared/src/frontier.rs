//! The throughput–latency frontier of a grid: one point per finished cell (output tokens/s
//! across, p95 end-to-end latency up), one line per max_new_tokens in order of concurrency (or
//! rate), the SLO drawn as a horizontal line, and the best configuration ringed. One renderer
//! (an SVG string) serves the dashboard, `frontier.svg` and the run folder.

use std::fmt::Write;

use crate::decide::verdict;
use crate::plot::{nice_max, short_label, ticks, xml_escape, Scale};
use crate::result::CellResult;

const W: f64 = 640.0;
const H: f64 = 360.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 44.0;
const COLOURS: [&str; 6] = ["#2563eb", "#16a34a", "#ea580c", "#9333ea", "#0891b2", "#be123c"];

/// The frontier as a standalone SVG titled `title`.
pub fn svg(cells: &[CellResult], title: &str) -> String {
    let points: Vec<&CellResult> = cells.iter().filter(|c| c.requests_ok > 0 && c.e2e.p95.is_some()).collect();
    let slo = cells.iter().find_map(|c| c.slo.e2e_ms);
    let x_top = nice_max(points.iter().map(|c| c.output_tok_s).fold(0.0, f64::max), 5);
    let y_max = points.iter().filter_map(|c| c.e2e.p95).fold(slo.unwrap_or(0.0), f64::max);
    let y_top = nice_max(y_max * 1.05, 5);
    let x = Scale::new((0.0, x_top), (LEFT, W - RIGHT));
    let y = Scale::new((0.0, y_top), (H - BOTTOM, TOP));
    let mut out = String::new();
    let _ = write!(out, r#"<svg xmlns="http://www.w3.org/2000/svg" class="frontier" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#);
    let _ = write!(out, r#"<text x="10" y="20" font-size="14" font-weight="bold">{}</text>"#, xml_escape(title));
    for v in ticks(y_top, 5) {
        let py = y.map(v);
        let _ = write!(out, r##"<line x1="{LEFT}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#e5e7eb"/><text x="{}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##, W - RIGHT, LEFT - 6.0, py + 4.0, short_label(v));
    }
    for v in ticks(x_top, 5) {
        let px = x.map(v);
        let _ = write!(out, r##"<text x="{px:.1}" y="{}" text-anchor="middle" fill="#555">{}</text>"##, H - BOTTOM + 16.0, short_label(v));
    }
    let _ = write!(out, r##"<text x="{}" y="{}" text-anchor="middle" fill="#333">output tokens/s →</text>"##, (LEFT + W - RIGHT) / 2.0, H - 8.0);
    let _ = write!(out, r##"<text x="14" y="{}" transform="rotate(-90 14 {})" text-anchor="middle" fill="#333">p95 end-to-end (ms) →</text>"##, (TOP + H - BOTTOM) / 2.0, (TOP + H - BOTTOM) / 2.0);
    if let Some(s) = slo {
        let py = y.map(s);
        let _ = write!(out, r##"<line class="slo" x1="{LEFT}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#dc2626" stroke-dasharray="6 4"/><text x="{}" y="{:.1}" fill="#dc2626">SLO p95 ≤ {} ms</text>"##, W - RIGHT, W - RIGHT + 6.0, py + 4.0, short_label(s));
    }
    let mut lengths: Vec<u32> = points.iter().map(|c| c.max_new_tokens).collect();
    lengths.sort_unstable();
    lengths.dedup();
    for (k, n) in lengths.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let mut line: Vec<&&CellResult> = points.iter().filter(|c| c.max_new_tokens == *n).collect();
        line.sort_by(|a, b| a.rate.unwrap_or(f64::from(a.concurrency)).total_cmp(&b.rate.unwrap_or(f64::from(b.concurrency))));
        let d: Vec<String> = line.iter().enumerate().map(|(i, c)| format!("{}{:.1},{:.1}", if i == 0 { 'M' } else { 'L' }, x.map(c.output_tok_s), y.map(c.e2e.p95.unwrap_or(0.0)))).collect();
        let _ = write!(out, r#"<path d="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#, d.join(" "));
        for c in &line {
            let at = c.rate.map_or(format!("c{}", c.concurrency), |r| format!("{r} rps"));
            let (px, py) = (x.map(c.output_tok_s), y.map(c.e2e.p95.unwrap_or(0.0)));
            let _ = write!(
                out,
                r##"<g class="point" data-cell="{}"><title>{at} × {n}: {:.0} tok/s, p95 {:.0} ms{}</title><circle cx="{px:.1}" cy="{py:.1}" r="4" fill="{}"/><text x="{:.1}" y="{:.1}" fill="#333" font-size="10">{at}</text></g>"##,
                c.cell,
                c.output_tok_s,
                c.e2e.p95.unwrap_or(0.0),
                if c.slo_pass { ", meets the SLO" } else { ", misses the SLO" },
                if c.slo_pass { colour } else { "#fff" },
                px + 6.0,
                py - 6.0
            );
        }
        let ly = TOP + 20.0 * k as f64 + 30.0;
        let _ = write!(out, r#"<rect x="{}" y="{}" width="14" height="3" fill="{colour}"/><text x="{}" y="{ly}">{n} new tokens</text>"#, W - RIGHT + 6.0, ly - 5.0, W - RIGHT + 24.0);
    }
    if let Some(best) = verdict(cells).best {
        let (px, py) = (x.map(best.output_tok_s), y.map(best.e2e_p95_ms.unwrap_or(0.0)));
        let _ = write!(out, r##"<circle class="best" cx="{px:.1}" cy="{py:.1}" r="9" fill="none" stroke="#111" stroke-width="2"><title>best configuration: {}</title></circle>"##, xml_escape(&best.label()));
        let ly = TOP + 20.0 * lengths.len() as f64 + 40.0;
        let _ = write!(out, r##"<circle cx="{}" cy="{}" r="6" fill="none" stroke="#111" stroke-width="2"/><text x="{}" y="{ly}">best: {}</text>"##, W - RIGHT + 13.0, ly - 4.0, W - RIGHT + 24.0, xml_escape(&best.label()));
    }
    if points.is_empty() {
        let _ = write!(out, r##"<text x="{}" y="{}" text-anchor="middle" fill="#555">no finished cell with a successful request yet</text>"##, (LEFT + W - RIGHT) / 2.0, (TOP + H - BOTTOM) / 2.0);
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::Dist;
    use crate::spec::Slo;

    fn cell(i: u32, c: u32, n: u32, tok_s: f64, p95: f64, pass: bool) -> CellResult {
        CellResult {
            cell: i,
            concurrency: c,
            max_new_tokens: n,
            output_tok_s: tok_s,
            requests_ok: 4,
            slo_pass: pass,
            e2e: Dist { p95: Some(p95), ..Default::default() },
            slo: Slo { e2e_ms: Some(3000.0), ..Default::default() },
            ..Default::default()
        }
    }

    #[test]
    fn one_point_per_cell_a_line_per_length_the_slo_and_the_best_ringed() {
        let cells = vec![cell(0, 1, 128, 40.0, 900.0, true), cell(1, 8, 128, 300.0, 2500.0, true), cell(2, 32, 128, 800.0, 4500.0, false), cell(3, 8, 256, 310.0, 2900.0, true)];
        let s = svg(&cells, "chat on <RTX>");
        assert_eq!(s.matches(r#"class="point""#).count(), 4);
        assert_eq!(s.matches("<path ").count(), 2, "one line per max_new_tokens");
        assert!(s.contains(r#"class="slo""#) && s.contains("SLO p95 ≤ 3k ms"));
        assert!(s.contains("best configuration: c8 × 256"), "the fastest passing cell, not the faster failing one");
        assert!(s.contains("chat on &lt;RTX&gt;"));
        assert!(svg(&[], "x").contains("no finished cell"));
    }
}
