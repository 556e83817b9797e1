//! One cell's latency distributions as an inline SVG for the HTML report: TTFT, inter-token
//! latency (each request's mean) and end-to-end latency side by side, each a histogram of the
//! cell's successful requests with its p50 and p95 marked. A cell without per-request samples
//! (files from other tools keep only summaries) shows the percentiles it has instead.

use std::fmt::Write;

use caplab_shared::plot::{nice_max, nice_step, short_label, ticks, xml_escape, Scale};
use caplab_shared::stats::percentile_sorted;
use caplab_shared::{CellResult, Dist};

use super::samples::CellSamples;

const PANEL_W: f64 = 250.0;
const PANEL_H: f64 = 170.0;
const TOP: f64 = 28.0;
const BINS: usize = 24;
const BAR: &str = "#2563eb";
const MARK: &str = "#b91c1c";

/// The three panels of a cell: (metric key, title, the request values, the cell's summary).
fn panels<'a>(cell: &'a CellResult, samples: Option<&'a CellSamples>) -> [(&'static str, &'static str, Option<&'a [f64]>, &'a Dist); 3] {
    [
        ("ttft", "TTFT (ms)", samples.map(|s| s.ttft.as_slice()), &cell.ttft),
        ("itl", "ITL, mean per request (ms)", samples.map(|s| s.itl.as_slice()), &cell.itl),
        ("e2e", "End-to-end (ms)", samples.map(|s| s.e2e.as_slice()), &cell.e2e),
    ]
}

/// The SVG of one cell (`title` names it, e.g. "c16 × 256").
pub fn distributions(title: &str, cell: &CellResult, samples: Option<&CellSamples>) -> String {
    let width = PANEL_W * 3.0 + 20.0;
    let height = TOP + PANEL_H + 8.0;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="dist" data-cell="{}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11" role="img" aria-label="latency distributions of {}">"#,
        cell.cell,
        xml_escape(title)
    );
    let _ = write!(out, r#"<text x="6" y="16" font-size="13" font-weight="bold">{}</text>"#, xml_escape(title));
    for (i, (key, name, values, dist)) in panels(cell, samples).into_iter().enumerate() {
        let x0 = 10.0 + PANEL_W * i as f64;
        let _ = write!(out, r#"<g class="panel" data-metric="{key}" transform="translate({x0} {TOP})">"#);
        match values.filter(|v| !v.is_empty()) {
            Some(v) => histogram(&mut out, name, v),
            None => summary(&mut out, name, dist),
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>");
    out
}

/// A latency for a label: whole ms with thousands separators from 100 ms, else one decimal.
fn ms(v: f64) -> String {
    if v.abs() >= 100.0 { super::n0(v) } else { format!("{v:.1}") }
}

/// The axis of values from `min` to `max`: from 0 unless the values sit far from it (then from
/// a round value below `min`, so they are not squeezed into one bar), to a round value at or
/// above `max`; with its ticks.
fn axis(min: f64, max: f64) -> (f64, f64, Vec<f64>) {
    let top = nice_max(max, 4);
    if min < 0.25 * top || max <= min {
        return (0.0, top, ticks(top, 4));
    }
    let step = nice_step(max - min, 4);
    let lo = (min / step).floor() * step;
    let hi = ((max / step).ceil() * step).max(lo + step);
    let n = ((hi - lo) / step).round() as usize;
    (lo, hi, (0..=n).map(|i| lo + step * i as f64).collect())
}

/// A histogram of `values` in a panel at the origin, outliers beyond 1.5 × p99 gathered in the
/// last bar, with p50 and p95 lines (their values in the panel's heading).
fn histogram(out: &mut String, name: &str, values: &[f64]) {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let (p50, p95, p99) = (percentile_sorted(&v, 50.0), percentile_sorted(&v, 95.0), percentile_sorted(&v, 99.0).unwrap_or(0.0));
    let (min, max) = (v.first().copied().unwrap_or(0.0), v.last().copied().unwrap_or(0.0));
    let clipped = max > p99 * 1.5 && p99 > 0.0;
    let (lo, top, tick_values) = axis(min, if clipped { p99 * 1.5 } else { max });
    let width = (top - lo).max(f64::EPSILON);
    let mut counts = [0u32; BINS];
    for x in &v {
        let b = (((x - lo) / width) * BINS as f64).floor().max(0.0) as usize;
        counts[b.min(BINS - 1)] += 1;
    }
    let (left, right, bottom) = (34.0, PANEL_W - 12.0, PANEL_H - 34.0);
    let peak = f64::from(counts.iter().copied().max().unwrap_or(1).max(1));
    let xs = Scale::new((lo, top), (left, right));
    let ys = Scale::new((0.0, peak), (bottom, 30.0));
    let _ = write!(out, r#"<text x="{left}" y="10" font-weight="bold">{}</text>"#, xml_escape(name));
    let marks: Vec<String> = [("p50", p50), ("p95", p95)].iter().filter_map(|(l, p)| p.map(|p| format!("{l} {}", ms(p)))).collect();
    let _ = write!(out, r#"<text x="{left}" y="23" fill="{MARK}" font-size="10">{}</text>"#, marks.join(" · "));
    let bw = (right - left) / BINS as f64;
    for (b, &n) in counts.iter().enumerate() {
        if n == 0 {
            continue;
        }
        let (x, y) = (left + bw * b as f64, ys.map(f64::from(n)));
        let from = lo + width * b as f64 / BINS as f64;
        let to = lo + width * (b + 1) as f64 / BINS as f64;
        let range = if clipped && b == BINS - 1 { format!("≥ {}", short_label(from)) } else { format!("{}–{}", short_label(from), short_label(to)) };
        let _ = write!(
            out,
            r#"<rect class="bar" x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{BAR}"><title>{range} ms: {n} request{}</title></rect>"#,
            (bw - 1.0).max(0.5),
            bottom - y,
            if n == 1 { "" } else { "s" }
        );
    }
    let _ = write!(out, r##"<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="#555"/>"##);
    for t in tick_values {
        let _ = write!(out, r##"<text x="{:.1}" y="{}" text-anchor="middle" fill="#444">{}</text>"##, xs.map(t), bottom + 13.0, short_label(t));
    }
    let beyond = if clipped { format!(", {} beyond the axis in the last bar", v.iter().filter(|x| **x >= top).count()) } else { String::new() };
    let _ = write!(out, r##"<text x="{left}" y="{}" fill="#444">n = {}{beyond}</text>"##, bottom + 27.0, v.len());
    for p in [p50, p95].into_iter().flatten() {
        let px = xs.map(p.clamp(lo, top));
        let _ = write!(out, r#"<line class="mark" x1="{px:.1}" x2="{px:.1}" y1="28" y2="{bottom}" stroke="{MARK}" stroke-dasharray="3 2"/>"#);
    }
}

/// The percentiles a cell has (no per-request samples), on one axis.
fn summary(out: &mut String, name: &str, d: &Dist) {
    let (left, right, axis) = (34.0, PANEL_W - 12.0, PANEL_H / 2.0);
    let _ = write!(out, r#"<text x="{left}" y="10" font-weight="bold">{}</text>"#, xml_escape(name));
    let marks: Vec<(&str, f64)> = [("p50", d.p50), ("p90", d.p90), ("p95", d.p95), ("p99", d.p99), ("max", d.max)].into_iter().filter_map(|(l, v)| v.map(|v| (l, v))).collect();
    if marks.is_empty() {
        let _ = write!(out, r##"<text x="{left}" y="{axis}" fill="#555">not in the file</text>"##);
        return;
    }
    let top = nice_max(marks.iter().map(|m| m.1).fold(0.0, f64::max), 4);
    let xs = Scale::new((0.0, top), (left, right));
    let _ = write!(out, r##"<line x1="{left}" x2="{right}" y1="{axis}" y2="{axis}" stroke="#555"/>"##);
    for t in ticks(top, 4) {
        let _ = write!(out, r##"<text x="{:.1}" y="{}" text-anchor="middle" fill="#444">{}</text>"##, xs.map(t), axis + 14.0, short_label(t));
    }
    for (k, (label, v)) in marks.iter().enumerate() {
        let px = xs.map(*v);
        let _ = write!(
            out,
            r#"<line class="mark" x1="{px:.1}" x2="{px:.1}" y1="{}" y2="{axis}" stroke="{MARK}"/><text x="{px:.1}" y="{}" text-anchor="middle" fill="{MARK}" font-size="10">{label} {}</text>"#,
            axis - 16.0 - 11.0 * (k % 2) as f64,
            axis - 19.0 - 11.0 * (k % 2) as f64,
            short_label(*v)
        );
    }
    let _ = write!(out, r##"<text x="{left}" y="{}" fill="#555">percentiles from the file: no per-request samples</text>"##, PANEL_H - 8.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_per_metric_with_its_percentiles_or_the_summary_without_samples() {
        let cell = CellResult { cell: 3, ..Default::default() };
        let samples = CellSamples { ttft: (1..=100).map(f64::from).collect(), itl: vec![10.0; 100], e2e: (1..=99).map(f64::from).chain([100_000.0]).collect() };
        let svg = distributions("c16 × <256>", &cell, Some(&samples));
        assert!(svg.starts_with(r#"<svg class="dist" data-cell="3""#) && svg.contains("c16 × &lt;256&gt;"));
        assert_eq!(svg.matches(r#"class="panel""#).count(), 3);
        assert!(svg.contains(r#"data-metric="itl""#) && svg.contains("ITL, mean per request (ms)"));
        assert!(svg.contains("p50 50.5 · p95 95.0"), "{svg}");
        assert!(svg.contains("1 beyond the axis in the last bar"), "the 100 s outlier is gathered, not stretching the axis: {svg}");
        let bars: u32 = svg.matches("<title>").count() as u32;
        assert!(bars >= 3, "{svg}");
        let imported = CellResult { e2e: Dist { p50: Some(900.0), p95: Some(2400.0), ..Default::default() }, ..Default::default() };
        let svg = distributions("c8 × 128", &imported, None);
        assert_eq!(svg.matches(r#"class="panel""#).count(), 3);
        assert!(svg.contains("p95 2.4k") && svg.contains("percentiles from the file") && svg.contains("not in the file"), "{svg}");
        assert!(!svg.contains("http"), "inline: no namespace URL, no link");
    }

    #[test]
    fn values_far_from_zero_get_an_axis_of_their_own() {
        assert_eq!((axis(10.0, 93.0).0, axis(10.0, 93.0).1), (0.0, 100.0), "near zero: from 0");
        let (lo, hi, ticks) = axis(1590.0, 1620.0);
        assert_eq!((lo, hi), (1590.0, 1620.0), "{ticks:?}");
        assert!(ticks.len() >= 3 && ticks.windows(2).all(|w| w[1] > w[0]));
        assert_eq!(axis(5.0, 5.0).0, 0.0, "one value: from 0");
    }
}
