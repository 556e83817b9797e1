//! Scale and axis maths for the dashboard's SVG charts (pure, tested natively).

/// Maps a data interval linearly onto a pixel interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scale {
    pub domain: (f64, f64),
    pub range: (f64, f64),
}

impl Scale {
    pub fn new(domain: (f64, f64), range: (f64, f64)) -> Self {
        Scale { domain, range }
    }

    pub fn map(&self, v: f64) -> f64 {
        let (d0, d1) = self.domain;
        let (r0, r1) = self.range;
        if (d1 - d0).abs() < f64::EPSILON {
            return r0;
        }
        r0 + (v - d0) / (d1 - d0) * (r1 - r0)
    }
}

/// A round step (1, 2 or 5 × 10^k) that splits `span` into about `count` parts.
pub fn nice_step(span: f64, count: usize) -> f64 {
    if !(span.is_finite() && span > 0.0) || count == 0 {
        return 1.0;
    }
    let raw = span / count as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// The smallest multiple of a nice step at or above `max` (at least `step`), for a y axis from 0.
pub fn nice_max(max: f64, count: usize) -> f64 {
    if !(max.is_finite() && max > 0.0) {
        return 1.0;
    }
    let step = nice_step(max, count);
    (max / step).ceil() * step
}

/// Tick values from 0 to `max` inclusive at nice steps.
pub fn ticks(max: f64, count: usize) -> Vec<f64> {
    let top = nice_max(max, count);
    let step = nice_step(top, count);
    let n = (top / step).round() as usize;
    (0..=n).map(|i| i as f64 * step).collect()
}

/// An SVG path through the points; a `None` value breaks the line.
pub fn line_path(points: &[(f64, Option<f64>)], x: &Scale, y: &Scale) -> String {
    let mut d = String::new();
    let mut pen_down = false;
    for &(px, py) in points {
        match py {
            Some(v) if v.is_finite() => {
                let cmd = if pen_down { 'L' } else { 'M' };
                d.push_str(&format!("{cmd}{:.1},{:.1} ", x.map(px), y.map(v)));
                pen_down = true;
            }
            _ => pen_down = false,
        }
    }
    d.trim_end().to_string()
}

/// Text made safe to put inside SVG/XML text and attribute values.
pub fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A compact label for an axis value: 1200 → "1.2k", 0.5 → "0.5".
pub fn short_label(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if a >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

/// The value a line shows at `x`: its last point at or before `x` that has one (None before
/// the first, or where the line is broken).
pub fn value_at(points: &[(f64, Option<f64>)], x: f64) -> Option<(f64, f64)> {
    let i = points.partition_point(|p| p.0 <= x);
    let (t, v) = *points.get(i.checked_sub(1)?)?;
    v.map(|v| (t, v))
}

/// Where a run moved to another cell: (time, the new cell) for each change in `(t, cell)`.
pub fn cell_starts(ticks: impl IntoIterator<Item = (f64, u32)>) -> Vec<(f64, u32)> {
    let mut out: Vec<(f64, u32)> = Vec::new();
    let mut last = None;
    for (t, cell) in ticks {
        if last.is_some_and(|c| c != cell) {
            out.push((t, cell));
        }
        last = Some(cell);
    }
    out
}

/// A chart's bold title at (x, y), never wider than `max_width`: a long one is set smaller, and
/// squeezed to fit past that (so an SVG never clips its own title).
pub fn title_text(x: f64, y: f64, title: &str, max_width: f64) -> String {
    // Bold sans-serif at 14 px averages about 8 px a character.
    let chars = title.chars().count() as f64;
    let size = (14.0 * max_width / (chars * 8.0)).clamp(10.0, 14.0);
    let width = chars * 8.0 * size / 14.0;
    let fit = if width > max_width { format!(r#" textLength="{max_width:.0}" lengthAdjust="spacingAndGlyphs""#) } else { String::new() };
    format!(r#"<text class="chart-title" x="{x}" y="{y}" font-size="{size:.1}" font-weight="bold"{fit}>{}</text>"#, xml_escape(title))
}

/// WCAG 2 contrast ratio of two `#rrggbb` colours (1 to 21); None for another syntax.
pub fn contrast_ratio(a: &str, b: &str) -> Option<f64> {
    fn luminance(hex: &str) -> Option<f64> {
        let h = hex.strip_prefix('#').filter(|h| h.len() == 6)?;
        let channel = |i: usize| -> Option<f64> {
            let c = f64::from(u8::from_str_radix(&h[i..i + 2], 16).ok()?) / 255.0;
            Some(if c <= 0.039_28 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) })
        };
        Some(0.2126 * channel(0)? + 0.7152 * channel(2)? + 0.0722 * channel(4)?)
    }
    let (la, lb) = (luminance(a)?, luminance(b)?);
    Some((la.max(lb) + 0.05) / (la.min(lb) + 0.05))
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_line_is_read_at_its_last_point_and_cells_start_where_they_change() {
        let pts = [(0.0, Some(1.0)), (1.0, None), (2.0, Some(3.0))];
        assert_eq!(value_at(&pts, -1.0), None);
        assert_eq!(value_at(&pts, 0.5), Some((0.0, 1.0)));
        assert_eq!(value_at(&pts, 1.5), None, "a break shows no value");
        assert_eq!(value_at(&pts, 9.0), Some((2.0, 3.0)));
        assert_eq!(cell_starts([(0.0, 0), (0.25, 0), (0.5, 1), (0.75, 1), (1.0, 3)]), [(0.5, 1), (1.0, 3)]);
        assert!(cell_starts([(0.0, 2)]).is_empty());
    }

    #[test]
    fn a_long_title_is_set_smaller_then_squeezed_never_clipped() {
        let short = title_text(10.0, 20.0, "chat · A100", 600.0);
        assert!(short.contains(r#"font-size="14.0""#) && !short.contains("textLength"), "{short}");
        let long = title_text(10.0, 20.0, &"x".repeat(70), 500.0);
        assert!(long.contains(r#"font-size="12.5""#) && !long.contains("textLength"), "{long}");
        let very = title_text(10.0, 20.0, &"x".repeat(200), 500.0);
        assert!(very.contains(r#"font-size="10.0""#) && very.contains(r#"textLength="500""#), "{very}");
        assert!(title_text(0.0, 0.0, "<b>", 100.0).contains("&lt;b&gt;"));
    }

    #[test]
    fn contrast_ratios_follow_wcag() {
        assert!((contrast_ratio("#000000", "#ffffff").unwrap() - 21.0).abs() < 1e-9);
        assert!((contrast_ratio("#777777", "#ffffff").unwrap() - 4.48).abs() < 0.01);
        assert_eq!(contrast_ratio("red", "#ffffff"), None);
        // The charts' series colours read on their white background (WCAG AA, 4.5:1).
        for c in crate::frontier::COLOURS {
            assert!(contrast_ratio(c, "#ffffff").unwrap() >= 4.5, "{c}");
        }
    }

    use super::*;

    #[test]
    fn scale_maps_and_inverts_axes() {
        let y = Scale::new((0.0, 100.0), (200.0, 0.0));
        assert_eq!(y.map(0.0), 200.0);
        assert_eq!(y.map(25.0), 150.0);
        assert_eq!(Scale::new((5.0, 5.0), (0.0, 10.0)).map(5.0), 0.0);
    }

    #[test]
    fn nice_axes() {
        assert_eq!(nice_step(100.0, 5), 20.0);
        assert_eq!(nice_step(7.0, 5), 2.0);
        assert_eq!(nice_max(93.0, 5), 100.0);
        assert_eq!(nice_max(0.0, 5), 1.0);
        assert_eq!(ticks(93.0, 5), vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_eq!(short_label(1200.0), "1.2k");
        assert_eq!(short_label(0.5), "0.5");
        assert_eq!(short_label(40.0), "40");
    }

    #[test]
    fn path_breaks_on_missing_values() {
        let x = Scale::new((0.0, 2.0), (0.0, 20.0));
        let y = Scale::new((0.0, 10.0), (10.0, 0.0));
        let d = line_path(&[(0.0, Some(0.0)), (1.0, None), (2.0, Some(10.0))], &x, &y);
        assert_eq!(d, "M0.0,10.0 M20.0,0.0");
        let d = line_path(&[(0.0, Some(0.0)), (2.0, Some(10.0))], &x, &y);
        assert_eq!(d, "M0.0,10.0 L20.0,0.0");
    }
}
