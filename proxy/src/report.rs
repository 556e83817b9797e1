//! The notes, filled: `data/notes/report_template.md` (the report structure of the user's lab
//! notes, data/notes/day003_tier2_batch_and_gpu_anchor.md) with every cell replaced by a value
//! measured in the given runs, or by the reason the runs cannot give it. Used by `caplab report`
//! and `GET /api/report`.

use std::collections::BTreeMap;

use caplab_shared::decide::{cost_per_million_tokens, not_comparable, speedup, verdict, Comparison, GpuPrice, Verdict};
use caplab_shared::frontier::{self, Series};
use caplab_shared::{RunView, Workload};

use crate::sim::profile;

const TEMPLATE: &str = include_str!("../../data/notes/report_template.md");

/// A GPU in the report: its label (the runs' `gpu`), and what the profiles know of it.
struct Gpu {
    label: String,
    vram: Option<String>,
    price: Option<f64>,
}

fn n0(v: f64) -> String {
    let s = format!("{v:.0}");
    // Thousands separators, as the notes' tables read.
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

/// The notes filled from `runs` (finished or stopped views, any order). The first GPU label met
/// is "A" (the notes' RTX), the second "B" (the notes' A100). `prices`: $/hour by GPU label or
/// profile key, overriding the profiles' typical prices.
pub fn notes(runs: &[RunView], prices: &BTreeMap<String, f64>) -> String {
    let mut labels: Vec<String> = Vec::new();
    for r in runs {
        if !labels.contains(&r.info.spec.gpu) {
            labels.push(r.info.spec.gpu.clone());
        }
    }
    let gpu = |i: usize| {
        labels.get(i).map(|label| {
            let p = profile_of(label);
            Gpu { label: label.clone(), vram: p.as_ref().map(|p| format!("{:.0} GiB", p.memory_gib)), price: price_of(label, prices).usd_per_hour }
        })
    };
    let (a, b) = (gpu(0), gpu(1));
    // The latest run of a workload on a GPU.
    let pick = |g: &Option<Gpu>, w: Workload| -> Option<&RunView> {
        let g = g.as_ref()?;
        runs.iter().filter(|r| r.info.spec.gpu == g.label && r.info.spec.workload == w && !r.cells.is_empty()).max_by_key(|r| r.info.started_unix_ms)
    };
    let mut f: BTreeMap<String, String> = BTreeMap::new();
    let name = |g: &Option<Gpu>, fallback: &str| g.as_ref().map_or(fallback.to_string(), |g| md(&g.label));
    let (a_name, b_name) = (name(&a, "GPU A (no run)"), name(&b, "GPU B (no run)"));
    f.insert("gpu_a".to_string(), a_name.clone());
    f.insert("gpu_b".to_string(), b_name.clone());
    for (key_vram, key_price, g, gname) in [("gpu_a_vram", "gpu_a_price", &a, &a_name), ("gpu_b_vram", "gpu_b_price", &b, &b_name)] {
        f.insert(key_vram.to_string(), g.as_ref().and_then(|g| g.vram.clone()).unwrap_or_else(|| format!("n/a: {gname} matches no GPU profile")));
        f.insert(key_price.to_string(), g.as_ref().and_then(|g| g.price).map_or_else(|| format!("n/a: give caplab report --price \"{gname}=USD\""), |p| format!("~${p:.2}/hr")));
    }

    let verdicts: BTreeMap<(usize, Workload), (&RunView, Verdict)> = [(0, &a), (1, &b)]
        .into_iter()
        .flat_map(|(i, g)| [Workload::Chat, Workload::Batch].map(move |w| (i, g, w)))
        .filter_map(|(i, g, w)| pick(g, w).map(|r| ((i, w), (r, verdict(&r.cells)))))
        .collect();
    let missing = |i: usize, w: Workload| {
        let gname = if i == 0 { &a_name } else { &b_name };
        format!("n/a: no {} run on {gname}", w.as_str())
    };
    let fmt_or = |i: usize, w: Workload, get: &dyn Fn(&Verdict) -> Option<String>| -> String {
        match verdicts.get(&(i, w)) {
            None => missing(i, w),
            Some((_, v)) => get(v).unwrap_or_else(|| format!("n/a: {}", v.why_none.clone().unwrap_or_else(|| "no value".into()))),
        }
    };
    // Best configuration and chat vs batch, on GPU A.
    for (w, prefix) in [(Workload::Batch, "batch"), (Workload::Chat, "chat")] {
        f.insert(format!("{prefix}_best_concurrency"), fmt_or(0, w, &|v| v.best.as_ref().map(|p| p.rate.map_or(p.concurrency.to_string(), |r| format!("{r} rps")))));
        f.insert(format!("{prefix}_best_max_new_tokens"), fmt_or(0, w, &|v| v.best.as_ref().map(|p| p.max_new_tokens.to_string())));
        f.insert(format!("{prefix}_best_throughput"), fmt_or(0, w, &|v| v.best.as_ref().map(|p| n0(p.output_tok_s))));
        f.insert(format!("{prefix}_best_p95"), fmt_or(0, w, &|v| v.best.as_ref().and_then(|p| p.e2e_p95_ms).map(n0)));
    }
    let best = |i: usize, w: Workload| verdicts.get(&(i, w)).and_then(|(_, v)| v.best.clone());
    f.insert(
        "chat_vs_batch_observation".to_string(),
        match (best(0, Workload::Chat), best(0, Workload::Batch)) {
            (Some(c), Some(bt)) => format!(
                "On {a_name}, batch peaked at {} tok/s ({}) against chat's {} tok/s ({}): {:.1}× the throughput, at a p95 of {} ms against chat's {} ms",
                n0(bt.output_tok_s),
                bt.label(),
                n0(c.output_tok_s),
                c.label(),
                bt.output_tok_s / c.output_tok_s.max(1e-9),
                bt.e2e_p95_ms.map_or("–".into(), n0),
                c.e2e_p95_ms.map_or("–".into(), n0)
            ),
            _ => "n/a: needs a chat run and a batch run on the same GPU, each with a cell meeting its SLO".into(),
        },
    );
    // GPU scaling, per workload.
    let mut caveats = Vec::new();
    for (w, prefix) in [(Workload::Chat, "chat"), (Workload::Batch, "batch")] {
        let va = verdicts.get(&(0, w)).map(|x| &x.1);
        let vb = verdicts.get(&(1, w)).map(|x| &x.1);
        for (i, side) in [(0, "a"), (1, "b")] {
            f.insert(format!("{prefix}_{side}_max_stable"), fmt_or(i, w, &|v| v.max_stable_concurrency.map(|m| {
                if v.grid_ceiling == Some(m) { format!("≥ {m} (the grid's highest)") } else { m.to_string() }
            })));
            f.insert(format!("{prefix}_{side}_peak"), fmt_or(i, w, &|v| v.best.as_ref().map(|p| n0(p.output_tok_s))));
            f.insert(format!("{prefix}_{side}_p95"), fmt_or(i, w, &|v| v.at_max_stable.as_ref().and_then(|p| p.e2e_p95_ms).map(n0)));
            let g = if i == 0 { &a } else { &b };
            let price = g.as_ref().and_then(|g| g.price);
            f.insert(format!("{prefix}_{side}_cost"), fmt_or(i, w, &|v| {
                let cost = cost_per_million_tokens(price?, v.best.as_ref()?.output_tok_s)?;
                Some(format!("${cost:.3}"))
            }));
        }
        let conc = speedup(va.and_then(|v| v.max_stable_concurrency).map(f64::from), vb.and_then(|v| v.max_stable_concurrency).map(f64::from));
        let tput = speedup(va.and_then(|v| v.best.as_ref().map(|p| p.output_tok_s)), vb.and_then(|v| v.best.as_ref().map(|p| p.output_tok_s)));
        let na = || format!("n/a: needs a {} run meeting the SLO on both GPUs", w.as_str());
        f.insert(format!("{prefix}_speedup_concurrency"), conc.map_or_else(na, |s| format!("{s:.1}")));
        f.insert(format!("{prefix}_speedup_throughput"), tput.map_or_else(na, |s| format!("{s:.1}")));
        if let (Some((ra, _)), Some((rb, _))) = (verdicts.get(&(0, w)), verdicts.get(&(1, w))) {
            let why = not_comparable(&ra.info.spec, &rb.info.spec);
            if !why.is_empty() {
                caveats.push(format!("The {} runs {} and {} are not like for like: {}.", w.as_str(), ra.info.id, rb.info.id, why.join("; ")));
            }
        }
    }
    // Key insights and recommendations, from the numbers above.
    let stable = |i: usize, w: Workload| verdicts.get(&(i, w)).and_then(|(_, v)| v.max_stable_concurrency);
    f.insert("insight_b_concurrency".to_string(), stable(1, Workload::Chat).map_or_else(|| missing(1, Workload::Chat), |m| format!("{m} concurrent chat users")));
    let scaling = [Workload::Chat, Workload::Batch].into_iter().find_map(|w| {
        speedup(best(0, w).map(|p| p.output_tok_s), best(1, w).map(|p| p.output_tok_s)).map(|s| (w, s))
    });
    f.insert("insight_scaling".to_string(), scaling.map_or_else(|| "n/a".into(), |(w, s)| format!("{s:.1} ({} peak throughput)", w.as_str())));
    let cost = |i: usize, w: Workload| {
        let g = if i == 0 { &a } else { &b };
        cost_per_million_tokens(g.as_ref()?.price?, best(i, w)?.output_tok_s)
    };
    f.insert(
        "insight_cost".to_string(),
        [Workload::Batch, Workload::Chat]
            .into_iter()
            .find_map(|w| {
                let (ca, cb) = (cost(0, w)?, cost(1, w)?);
                let (cheap, dear, ratio) = if ca <= cb { (&a_name, &b_name, cb / ca) } else { (&b_name, &a_name, ca / cb) };
                Some(format!(
                    "at their {} peaks, {a_name} costs ${ca:.3} and {b_name} ${cb:.3} per million output tokens: {cheap} is {ratio:.1}× cheaper per token than {dear}",
                    w.as_str()
                ))
            })
            .unwrap_or_else(|| "n/a: needs a price and a run meeting the SLO on both GPUs".into()),
    );
    f.insert("recommend_users".to_string(), stable(0, Workload::Chat).map_or_else(|| missing(0, Workload::Chat), |m| format!("{m} (the most {a_name} held within the chat SLO)")));
    f.insert(
        "recommend_throughput".to_string(),
        best(0, Workload::Batch).map_or_else(|| missing(0, Workload::Batch), |p| format!("{} (the batch peak of {a_name})", n0(p.output_tok_s))),
    );
    let chat_slo = verdicts.get(&(0, Workload::Chat)).and_then(|(r, _)| r.info.spec.slo.effective(Workload::Chat).e2e_ms);
    f.insert("recommend_latency".to_string(), chat_slo.map_or_else(|| missing(0, Workload::Chat), |s| format!("{s:.0} (the chat SLO, p95 end to end)")));
    f.insert(
        "sufficient_chat".to_string(),
        stable(0, Workload::Chat).map_or_else(|| format!("Chat: {}", missing(0, Workload::Chat)), |m| format!("Chat with up to {m} concurrent users within the SLO")),
    );
    f.insert(
        "sufficient_batch".to_string(),
        match (best(0, Workload::Batch), cost(0, Workload::Batch)) {
            (Some(p), Some(c)) => format!("Batch jobs that need at most {} tok/s, at ${c:.3} per million output tokens", n0(p.output_tok_s)),
            (Some(p), None) => format!("Batch jobs that need at most {} tok/s", n0(p.output_tok_s)),
            _ => format!("Batch: {}", missing(0, Workload::Batch)),
        },
    );
    // Where the numbers come from.
    let used: Vec<&RunView> = verdicts.values().map(|(r, _)| *r).collect();
    let mut sources = String::from("Runs used (caplab run ids):\n");
    for r in &used {
        let kind = match (r.info.target.simulated, &r.info.imported_from) {
            (true, _) => "SIMULATED".to_string(),
            (false, Some(from)) => format!("IMPORTED: measured by another tool ({from})"),
            _ if r.info.target.name == "imported" => "IMPORTED: measured by another tool".to_string(),
            _ => "measured".to_string(),
        };
        sources.push_str(&format!(
            "- `{}`: {} on {} ({}), model {}, target {} ({}), SLO p95 end-to-end ≤ {} ms\n",
            md(&r.info.id),
            r.info.spec.workload.as_str(),
            md(&r.info.spec.gpu),
            md(&kind),
            md(&r.info.spec.model),
            md(&r.info.target.name),
            r.info.target.server.label(),
            r.info.spec.slo.effective(r.info.spec.workload).e2e_ms.unwrap_or_default()
        ));
    }
    if used.is_empty() {
        sources.push_str("- none: no run with a finished cell was given\n");
    }
    if used.iter().any(|r| r.info.target.simulated) {
        caveats.push("Runs marked SIMULATED come from caplab's simulator: their numbers are a model's, not a GPU's.".into());
    }
    if labels.len() > 2 {
        caveats.push(format!("Runs on more GPUs were given than the notes compare; the first two were used ({a_name}, {b_name})."));
    }
    f.insert("sources".to_string(), sources.trim_end().to_string());
    f.insert("caveats".to_string(), if caveats.is_empty() { String::new() } else { format!("## Caveats\n\n{}", caveats.iter().map(|c| format!("- {c}")).collect::<Vec<_>>().join("\n")) });
    fill(TEMPLATE, &f)
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

/// A run's name in a comparison's legend: its name or id, workload, and how its numbers were got.
fn series_name(r: &RunView) -> String {
    let name = if r.info.spec.name.is_empty() { r.info.spec.gpu.split(" · ").next().unwrap_or(&r.info.spec.gpu).to_string() } else { r.info.spec.name.clone() };
    let how = if r.info.target.simulated { " (sim)" } else if r.info.imported_from.is_some() { " (imported)" } else { "" };
    format!("{name} {}{how}", r.info.spec.workload.as_str())
}

/// A label from a run (a GPU, a model, a file name: anything a results file from elsewhere may
/// set) made literal in markdown: its metacharacters escaped, so it can neither break a table
/// nor become a link.
fn md(text: &str) -> String {
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

/// Replaces every `{{name}}`; a name without a value says so instead of staying a placeholder.
fn fill(template: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(template.len() * 2);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let key = &after[..end];
        out.push_str(values.get(key).map_or("n/a (not computed)", String::as_str));
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use caplab_shared::{CellResult, Dist, ExperimentSpec, RunInfo, RunStatus, Slo, TargetInfo};

    fn run(id: &str, gpu: &str, workload: Workload, cells: &[(u32, u32, f64, f64, bool)]) -> RunView {
        let info = RunInfo {
            id: id.into(),
            spec: ExperimentSpec { workload, gpu: gpu.into(), model: "m".into(), max_new_tokens: vec![128, 256], ..Default::default() },
            target: TargetInfo { name: "t".into(), simulated: gpu.contains("simulated"), ..Default::default() },
            status: RunStatus::Finished,
            started_unix_ms: 0,
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
            .map(|&(c, n, tok_s, p95, pass)| CellResult {
                concurrency: c,
                max_new_tokens: n,
                output_tok_s: tok_s,
                requests_ok: (2 * c).max(10),
                peak_concurrency: c,
                slo_pass: pass,
                e2e: Dist { p95: Some(p95), ..Default::default() },
                slo: Slo { e2e_ms: Some(3000.0), ..Default::default() },
                ..Default::default()
            })
            .collect();
        v
    }

    #[test]
    fn the_notes_are_filled_from_known_numbers() {
        let rtx = "NVIDIA RTX 2000 Ada 16GB · m (simulated)";
        let a100 = "NVIDIA A100 80GB SXM · m (simulated)";
        let runs = vec![
            run("c-rtx", rtx, Workload::Chat, &[(1, 128, 40.0, 900.0, true), (8, 128, 280.0, 2500.0, true), (16, 128, 400.0, 4200.0, false)]),
            run("b-rtx", rtx, Workload::Batch, &[(8, 256, 500.0, 9000.0, true), (16, 256, 700.0, 14000.0, true), (32, 256, 800.0, 31000.0, false)]),
            run("c-a100", a100, Workload::Chat, &[(8, 128, 900.0, 800.0, true), (32, 128, 2800.0, 1900.0, true), (64, 128, 4000.0, 3300.0, false)]),
            run("b-a100", a100, Workload::Batch, &[(16, 256, 2000.0, 5000.0, true), (32, 256, 3500.0, 8000.0, true)]),
        ];
        let md = notes(&runs, &BTreeMap::new());
        assert!(!md.contains("{{") && !md.contains("[FILL]"), "{md}");
        // Best batch configuration on the RTX: c16 × 256 (c32 broke the SLO).
        assert!(md.contains("| 16 | 256 | 700 | 14,000 |"), "{md}");
        assert!(md.contains("| Chat | 8 | 280 tok/s | 2,500 ms |"), "{md}");
        // Scaling: chat max stable 8 → 32 (4.0×), peak 280 → 2,800 (10.0×).
        assert!(md.contains("| Max stable concurrency | 8 | 32 | 4.0x |"), "{md}");
        assert!(md.contains("| Peak throughput (tok/s) | 280 | 2,800 | 10.0x |"), "{md}");
        // The A100 batch grid stopped at c32 with every cell passing: its limit may be higher.
        assert!(md.contains("| Max stable concurrency | 16 | ≥ 32 (the grid's highest) | 2.0x |"), "{md}");
        // Cost from the profiles: RTX $0.24/h at 700 tok/s batch = $0.095/M; A100 $1.49/h at 3,500 = $0.118/M.
        assert!(md.contains("$0.095") && md.contains("$0.118"), "{md}");
        assert!(md.contains("NVIDIA RTX 2000 Ada 16GB · m (simulated) is 1.2× cheaper per token"), "{md}");
        assert!(md.contains("On NVIDIA RTX 2000 Ada 16GB · m (simulated), batch peaked at 700 tok/s (c16 × 256) against chat's 280 tok/s (c8 × 128): 2.5× the throughput"), "{md}");
        assert!(md.contains("SIMULATED"), "simulated runs are labelled");
    }

    #[test]
    fn what_the_runs_cannot_give_says_why() {
        let runs = vec![run("c-rtx", "rtx-pod", Workload::Chat, &[(8, 128, 300.0, 4000.0, false)])];
        let md = notes(&runs, &BTreeMap::new());
        assert!(!md.contains("{{"), "{md}");
        assert!(md.contains("n/a: no batch run on rtx-pod"), "{md}");
        assert!(md.contains("n/a: no chat run on GPU B (no run)"), "{md}");
        assert!(md.contains("n/a: no cell met the SLO (p95 end-to-end ≤ 3000 ms): the lowest p95 was 4000 ms at c8 × 128"), "{md}");
        assert!(md.contains("n/a: rtx-pod matches no GPU profile"), "{md}");
        let priced = notes(&runs, &BTreeMap::from([("rtx-pod".to_string(), 0.3)]));
        assert!(priced.contains("~$0.30/hr"), "{priced}");
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
