//! How many tokens requests had, as the server counted them (`usage`): prompt and output, one
//! histogram each per cell, on fixed bins a quarter of an octave wide (so cells add up into the
//! run's), and drawn as an SVG bar chart. A bin's range is shown with its bars, so a reader sees
//! "1,024–1,217 tokens: 40 requests", never a made-up exact value.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::plot::{nice_max, short_label, ticks, xml_escape, Scale};

/// Bins per doubling.
const PER_OCTAVE: f64 = 4.0;

/// Counts of requests by bin (`bin_of`); sparse. Written as a list of [bin, count] pairs: a
/// map with number keys would not read back inside the tagged live messages.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct TokenHist {
    #[serde(with = "pairs")]
    pub bins: BTreeMap<u16, u32>,
}

mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(bins: &BTreeMap<u16, u32>, s: S) -> Result<S::Ok, S::Error> {
        bins.iter().map(|(b, n)| (*b, *n)).collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<u16, u32>, D::Error> {
        Ok(Vec::<(u16, u32)>::deserialize(d)?.into_iter().collect())
    }
}

/// The bin of a token count: 0 holds 0 tokens, then bin b ≥ 1 holds [2^((b−1)/4), 2^(b/4)).
pub fn bin_of(tokens: u32) -> u16 {
    if tokens == 0 {
        return 0;
    }
    ((f64::from(tokens).log2() * PER_OCTAVE).floor() as u16).saturating_add(1)
}

/// The whole token counts bin `b` holds: (lowest, highest), or None when it holds none.
pub fn bin_range(b: u16) -> Option<(u32, u32)> {
    if b == 0 {
        return Some((0, 0));
    }
    let lo = 2f64.powf(f64::from(b - 1) / PER_OCTAVE).ceil() as u32;
    let hi = (2f64.powf(f64::from(b) / PER_OCTAVE).ceil() as u32).saturating_sub(1);
    // Small bins can hold no whole number; checked against bin_of so edges never disagree.
    let lo = (lo.saturating_sub(1)..=lo + 1).find(|&n| bin_of(n) == b)?;
    let hi = (hi.saturating_sub(1)..=hi + 1).rev().find(|&n| bin_of(n) == b)?;
    (lo <= hi).then_some((lo, hi))
}

impl TokenHist {
    pub fn of(counts: impl IntoIterator<Item = u32>) -> TokenHist {
        let mut h = TokenHist::default();
        for n in counts {
            *h.bins.entry(bin_of(n)).or_insert(0) += 1;
        }
        h
    }

    pub fn add(&mut self, other: &TokenHist) {
        for (b, n) in &other.bins {
            *self.bins.entry(*b).or_insert(0) += n;
        }
    }

    pub fn total(&self) -> u32 {
        self.bins.values().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.bins.is_empty()
    }

    /// A bar chart of the histogram, bars from the lowest bin held to the highest (empty bins
    /// between them drawn as gaps), each bar's range and count in its tooltip.
    pub fn svg(&self, title: &str) -> String {
        const W: f64 = 420.0;
        const H: f64 = 180.0;
        const LEFT: f64 = 44.0;
        const RIGHT: f64 = 10.0;
        const TOP: f64 = 28.0;
        const BOTTOM: f64 = 36.0;
        let mut out = format!(r#"<svg xmlns="http://www.w3.org/2000/svg" class="token-hist" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">"#);
        let _ = write!(out, r##"<text x="6" y="16" font-weight="bold" fill="#333">{}</text>"##, xml_escape(title));
        let (Some(first), Some(last)) = (self.bins.keys().next().copied(), self.bins.keys().next_back().copied()) else {
            let _ = write!(out, r##"<text x="{}" y="{}" text-anchor="middle" fill="#555">no request with a token count yet</text></svg>"##, W / 2.0, H / 2.0);
            return out;
        };
        let n_bins = f64::from(last - first + 1);
        let y_top = nice_max(f64::from(self.bins.values().copied().max().unwrap_or(1)), 4).max(1.0);
        let y = Scale::new((0.0, y_top), (H - BOTTOM, TOP));
        let width = (W - LEFT - RIGHT) / n_bins;
        for v in ticks(y_top, 4) {
            let py = y.map(v);
            let _ = write!(out, r##"<line x1="{LEFT}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#e5e7eb"/><text x="{}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##, W - RIGHT, LEFT - 4.0, py + 4.0, short_label(v));
        }
        for (b, count) in &self.bins {
            let x = LEFT + f64::from(b - first) * width;
            let top = y.map(f64::from(*count));
            let range = match bin_range(*b) {
                Some((lo, hi)) if lo == hi => format!("{lo} tokens"),
                Some((lo, hi)) => format!("{lo}–{hi} tokens"),
                None => "tokens".into(),
            };
            let _ = write!(
                out,
                r##"<rect class="bar" x="{:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="#2563eb"><title>{range}: {count} request{}</title></rect>"##,
                x + 0.5,
                (width - 1.0).max(1.0),
                (H - BOTTOM - top).max(0.5),
                if *count == 1 { "" } else { "s" }
            );
        }
        // The lowest and highest token counts held, under the first and last bars.
        let low = bin_range(first).map_or(0, |r| r.0);
        let high = bin_range(last).map_or(0, |r| r.1);
        let _ = write!(out, r##"<text x="{LEFT}" y="{}" fill="#555">{}</text>"##, H - BOTTOM + 14.0, short_label(f64::from(low)));
        let _ = write!(out, r##"<text x="{}" y="{}" text-anchor="end" fill="#555">{}</text>"##, W - RIGHT, H - BOTTOM + 14.0, short_label(f64::from(high)));
        let _ = write!(out, r##"<text x="{}" y="{}" text-anchor="middle" fill="#333">tokens per request (server's count; bins a quarter octave wide) · {} requests</text>"##, (LEFT + W - RIGHT) / 2.0, H - 6.0, self.total());
        out.push_str("</svg>");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_tile_the_whole_numbers_without_gaps_or_overlaps() {
        let mut expected_lo = 1;
        for b in 1..=80u16 {
            if let Some((lo, hi)) = bin_range(b) {
                assert_eq!(lo, expected_lo, "bin {b} starts where the last ended");
                assert!((lo..=hi).all(|n| bin_of(n) == b));
                expected_lo = hi + 1;
            }
        }
        assert_eq!(bin_of(0), 0);
        assert_eq!(bin_of(1), 1);
        assert_eq!(bin_of(1024), 41);
        assert_eq!(bin_range(41).map(|r| r.0), Some(1024));
    }

    #[test]
    fn cells_add_up_and_the_chart_says_each_bars_range() {
        let mut run = TokenHist::of([1024, 1024, 1100, 40]);
        run.add(&TokenHist::of([1024]));
        assert_eq!(run.total(), 5);
        assert_eq!(run.bins[&bin_of(1024)], 4, "1,100 falls in 1,024's bin (1,024–1,217)");
        let svg = run.svg("prompt tokens");
        assert_eq!(svg.matches(r#"class="bar""#).count(), 2);
        assert!(svg.contains("1024–1217 tokens: 4 requests"), "{svg}");
        assert!(TokenHist::default().svg("x").contains("no request with a token count yet"));
        // It reads back inside the live messages (an internally tagged enum).
        let cell = crate::CellResult { prompt_tokens_hist: run.clone(), ..Default::default() };
        let msg = serde_json::to_string(&crate::ServerMsg::CellDone { result: Box::new(cell) }).unwrap();
        match serde_json::from_str::<crate::ServerMsg>(&msg).unwrap() {
            crate::ServerMsg::CellDone { result } => assert_eq!(result.prompt_tokens_hist, run),
            other => panic!("{other:?}"),
        }
    }
}
