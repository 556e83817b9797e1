//! Reports from runs: the notes filled from them (`notes`, markdown), the comparison the
//! dashboard shows (`comparison`), and one self-contained HTML file per run or comparison to
//! send a client (`html`). Used by `caplab report` and `GET /api/report`, `/api/compare`,
//! `/api/runs/{id}/report.html` and `/api/compare/report.html`.

mod charts;
pub mod html;
pub mod inputs;
mod notes;
pub mod samples;
mod template;

use std::collections::BTreeMap;
use std::path::Path;

use caplab_shared::decide::{Comparison, GpuPrice};
use caplab_shared::frontier::{self, Series};
use caplab_shared::RunView;

use crate::sim::profile;

pub use notes::notes;

/// A whole number with thousands separators, as the notes' tables read: 14000 → "14,000".
pub(crate) fn n0(v: f64) -> String {
    let s = format!("{v:.0}");
    let (neg, digits) = s.strip_prefix('-').map_or((false, s.as_str()), |d| (true, d));
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if neg { format!("-{out}") } else { out }
}

/// The profile whose name the label carries (e.g. "NVIDIA A100 80GB SXM · … (simulated)"), or
/// whose key it is.
fn profile_of(label: &str) -> Option<profile::Gpu> {
    let lower = label.to_ascii_lowercase();
    profile::gpus().into_iter().find(|g| lower.contains(&g.name.to_ascii_lowercase()) || lower.contains(&g.key))
}

/// The $/hour for a GPU label: given (by label or profile key), else its profile's typical price.
pub fn price_of(label: &str, prices: &BTreeMap<String, f64>) -> GpuPrice {
    let p = profile_of(label);
    let (usd_per_hour, from) = match (prices.get(label).or_else(|| p.as_ref().and_then(|p| prices.get(&p.key))), &p) {
        (Some(v), _) => (Some(*v), "given".to_string()),
        (None, Some(p)) => (Some(p.price_usd_h), format!("profile: {} (typical on-demand price, data/profiles/gpus.toml)", p.name)),
        (None, None) => (None, "no GPU profile matches this label: give its price".to_string()),
    };
    GpuPrice { gpu: label.to_string(), usd_per_hour, from }
}

/// The runs side by side for the dashboard: the notes (markdown and HTML), the frontiers
/// overlaid, and the price of each GPU.
pub fn comparison(runs: &[RunView], prices: &BTreeMap<String, f64>) -> Comparison {
    let markdown = notes(runs, prices);
    let series: Vec<Series> = runs.iter().map(|r| Series { name: series_name(r), cells: &r.cells }).collect();
    let mut gpus: Vec<String> = runs.iter().map(|r| r.info.spec.gpu.clone()).collect();
    gpus.dedup();
    gpus.sort();
    gpus.dedup();
    Comparison {
        runs: runs.iter().map(|r| r.info.id.clone()).collect(),
        html: html(&markdown),
        markdown,
        frontier_svg: frontier::svg_series(&series, "Throughput vs p95 latency, runs compared"),
        prices: gpus.iter().map(|g| price_of(g, prices)).collect(),
    }
}

/// Now, in ms since the Unix epoch (the date a report is made).
fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// One run's HTML report (`html::run`), its per-request samples read from `folder` when it has
/// one (blocking: call off the async runtime), priced from `prices` or the GPU profiles.
pub fn run_html(view: &RunView, folder: Option<&Path>, prices: &BTreeMap<String, f64>) -> String {
    let samples = folder.and_then(samples::of_folder);
    let report = html::RunReport { view, samples: samples.as_ref(), usd_per_hour: price_of(&view.info.spec.gpu, prices).usd_per_hour };
    html::run(&report, now_ms())
}

/// Runs compared as one HTML report (`html::comparison`); each run's samples read from its
/// folder (blocking, as `run_html`).
pub fn comparison_html(runs: &[(RunView, Option<std::path::PathBuf>)], prices: &BTreeMap<String, f64>) -> String {
    let views: Vec<RunView> = runs.iter().map(|(v, _)| v.clone()).collect();
    let cmp = comparison(&views, prices);
    let samples: Vec<Option<samples::Samples>> = runs.iter().map(|(_, f)| f.as_deref().and_then(samples::of_folder)).collect();
    let reports: Vec<html::RunReport> = runs
        .iter()
        .zip(&samples)
        .map(|((view, _), s)| html::RunReport { view, samples: s.as_ref(), usd_per_hour: price_of(&view.info.spec.gpu, prices).usd_per_hour })
        .collect();
    html::comparison(&reports, &cmp.html, &cmp.frontier_svg, now_ms())
}

/// A run's name in a comparison's legend: its name or id, workload, and how its numbers were got.
fn series_name(r: &RunView) -> String {
    let name = if r.info.spec.name.is_empty() { r.info.spec.gpu.split(" · ").next().unwrap_or(&r.info.spec.gpu).to_string() } else { r.info.spec.name.clone() };
    let how = if r.info.target.simulated { " (sim)" } else if r.info.imported_from.is_some() { " (imported)" } else { "" };
    format!("{name} {}{how}", r.info.spec.workload.as_str())
}

/// A label from a run (a GPU, a model, a file name: anything a results file from elsewhere may
/// set) made literal in markdown: its metacharacters escaped, so it can neither break a table
/// nor become a link.
pub(crate) fn md(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '\\' | '`' | '[' | ']' | '<' | '>' | '|' => {
                out.push('\\');
                out.push(ch);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Markdown as HTML for the dashboard (shown with `inner_html`): HTML inside the markdown is
/// shown as text, never interpreted; links and images keep only their text (the notes have
/// none of their own, so one can only come from a label); the template's comments are dropped.
pub fn html(markdown: &str) -> String {
    use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
    // A comment spans several Html events (one per line): dropped from its `<!--` to its `-->`.
    let mut in_comment = false;
    let events = Parser::new_ext(markdown, Options::ENABLE_TABLES).filter_map(move |e| match e {
        Event::Html(t) | Event::InlineHtml(t) if in_comment || t.trim_start().starts_with("<!--") => {
            in_comment = !t.contains("-->");
            None
        }
        Event::Html(t) | Event::InlineHtml(t) => Some(Event::Text(t)),
        Event::Start(Tag::Link { .. } | Tag::Image { .. }) | Event::End(TagEnd::Link | TagEnd::Image) => None,
        e => Some(e),
    });
    let mut out = String::new();
    pulldown_cmark::html::push_html(&mut out, events);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use caplab_shared::{CellResult, Dist, ExperimentSpec, RunInfo, RunStatus, Slo, TargetInfo, Workload};

    /// A finished run on `gpu` with one cell per (concurrency, max_new_tokens, tok/s, p95, pass):
    /// 2 × c requests (at least 10) with c in flight, under the workload's default SLO.
    pub(crate) fn run(id: &str, gpu: &str, workload: Workload, cells: &[(u32, u32, f64, f64, bool)]) -> RunView {
        let info = RunInfo {
            id: id.into(),
            spec: ExperimentSpec { workload, gpu: gpu.into(), model: "m".into(), max_new_tokens: vec![128, 256], ..Default::default() },
            target: TargetInfo { name: "t".into(), simulated: gpu.contains("simulated"), ..Default::default() },
            status: RunStatus::Finished,
            started_unix_ms: 1_700_000_000_000,
            message: None,
            cells_total: cells.len() as u32,
            requests_total: 0,
            headline: None,
            imported_from: None,
            shared: false,
        };
        let mut v = RunView::new(info);
        v.cells = cells
            .iter()
            .enumerate()
            .map(|(i, &(c, n, tok_s, p95, pass))| CellResult {
                cell: i as u32,
                concurrency: c,
                max_new_tokens: n,
                output_tok_s: tok_s,
                requests_ok: (2 * c).max(10),
                peak_concurrency: c,
                slo_pass: pass,
                e2e: Dist { p95: Some(p95), ..Default::default() },
                slo: Slo::default().effective(workload),
                ..Default::default()
            })
            .collect();
        v
    }

    #[test]
    fn a_comparison_prices_each_gpu_and_never_runs_html_from_a_name() {
        let rtx = "NVIDIA RTX 2000 Ada 16GB · m (simulated)";
        let mut chat = run("c-rtx", rtx, Workload::Chat, &[(1, 128, 40.0, 900.0, true), (8, 128, 280.0, 2500.0, true)]);
        chat.info.spec.name = "<img src=x onerror=alert(1)>".into();
        chat.info.spec.model = "[click](javascript:alert(1)) <javascript:alert(2)> ![](https://evil/x.png)".into();
        chat.info.imported_from = Some("<script>alert(3)</script>".into());
        let other = run("c-pod", "my-pod", Workload::Chat, &[(8, 128, 500.0, 1000.0, true)]);
        let c = comparison(&[chat.clone(), other.clone()], &BTreeMap::new());
        assert_eq!(c.runs, ["c-rtx", "c-pod"]);
        assert!(c.html.contains("<table>") && c.html.contains("<td>"), "the notes' tables as HTML");
        assert!(!c.html.contains("<img") && !c.html.contains("<a ") && !c.html.contains("<script") && !c.html.contains("href"), "{}", c.html);
        assert!(c.html.contains("javascript:alert(1)"), "the label is shown as text: {}", c.html);
        assert!(!c.html.contains("&lt;!--") && !c.html.contains("--&gt;") && !c.html.contains("placeholder"), "no line of the template's comment is shown: {}", c.html);
        assert!(html("a\n\n<b>x</b>\n").contains("&lt;b&gt;x&lt;/b&gt;"), "other HTML still shows as text");
        assert!(!c.frontier_svg.contains("<img"));
        // A GPU label with a | keeps the tables' columns.
        let piped = comparison(&[run("p", "A|B pod", Workload::Chat, &[(8, 128, 500.0, 1000.0, true)])], &BTreeMap::new());
        assert!(piped.markdown.contains("A\\|B pod"), "{}", piped.markdown);
        assert_eq!(c.prices.len(), 2);
        let rtx_price = c.prices.iter().find(|p| p.gpu == rtx).unwrap();
        assert_eq!(rtx_price.usd_per_hour, Some(0.24));
        assert!(rtx_price.from.starts_with("profile: NVIDIA RTX 2000 Ada"), "{}", rtx_price.from);
        let pod = c.prices.iter().find(|p| p.gpu == "my-pod").unwrap();
        assert_eq!(pod.usd_per_hour, None);
        let given = comparison(&[chat, other], &BTreeMap::from([("my-pod".to_string(), 2.0), (rtx.to_string(), 0.5)]));
        assert!(given.prices.iter().all(|p| p.from == "given"));
        // $2/h at 500 tok/s = $1.111 per million output tokens.
        assert!(given.markdown.contains("$1.111"), "{}", given.markdown);
    }
}
