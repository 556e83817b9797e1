//! One self-contained HTML file per run or comparison, to send a client: the capacity card(s),
//! the throughput–latency frontier, the OOM surface, the notes' tables (a comparison) or the
//! run's cells, each cell's TTFT, ITL and end-to-end distributions, the environment and the
//! workload. Everything is inline (CSS, SVG charts; no script, font, image or link to fetch, and
//! a Content-Security-Policy that forbids fetching any), so it opens offline and prints;
//! SIMULATED and IMPORTED are stated in a banner where true.

use std::fmt::Write;

use caplab_shared::decide::{capacity, Capacity, Provenance};
use caplab_shared::plot::xml_escape as esc;
use caplab_shared::{surface, CellResult, LoadMode, RunStatus, RunView, Workload};

use super::charts::distributions;
use super::n0;
use super::samples::Samples;

/// A run to put in a report, with what the report needs beside its view.
pub struct RunReport<'a> {
    pub view: &'a RunView,
    /// Its per-request latencies by cell (None: it keeps none, as an imported run).
    pub samples: Option<&'a Samples>,
    /// The $/hour its GPU is priced at (None: no price known).
    pub usd_per_hour: Option<f64>,
}

const CSS: &str = r#"
:root { --fg:#111827; --muted:#4b5563; --line:#d1d5db; --accent:#1d4ed8; }
* { box-sizing:border-box; }
body { margin:0; font:15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color:var(--fg); background:#fff; }
main { max-width:1000px; margin:0 auto; padding:24px 16px 48px; }
h1 { font-size:1.6rem; margin:0 0 4px; } h2 { font-size:1.3rem; margin:32px 0 8px; border-bottom:1px solid var(--line); padding-bottom:4px; }
h3 { font-size:1.05rem; margin:20px 0 6px; } .sub, .muted { color:var(--muted); } .sub { margin:0; }
.banner { margin:12px 0; padding:10px 14px; border-radius:6px; font-weight:600; border:2px solid; }
.banner.simulated { background:#fef3c7; border-color:#b45309; color:#78350f; }
.banner.imported { background:#e0e7ff; border-color:#4338ca; color:#1e1b4b; }
.banner.status { background:#fee2e2; border-color:#b91c1c; color:#7f1d1d; }
.card { border:1px solid var(--line); border-radius:8px; padding:14px 16px; margin:16px 0; break-inside:avoid; }
.card h3 { margin-top:0; } .badge { display:inline-block; padding:0 8px; margin-left:8px; border-radius:10px; font-size:.75rem; font-weight:700; border:1px solid currentColor; vertical-align:middle; }
.figures { display:flex; flex-wrap:wrap; gap:12px; margin:8px 0; }
.fig { flex:1 1 150px; border-left:4px solid var(--accent); padding:2px 10px; }
.fig .num { font-size:1.45rem; font-weight:700; overflow-wrap:anywhere; } .fig .lab { color:var(--muted); font-size:.85rem; }
dl.kv { display:grid; grid-template-columns:max-content 1fr; gap:2px 16px; margin:8px 0; } dl.kv dt { color:var(--muted); } dl.kv dd { margin:0; overflow-wrap:anywhere; }
table { border-collapse:collapse; width:100%; font-size:.85rem; margin:8px 0; } th, td { border:1px solid var(--line); padding:4px 6px; text-align:left; vertical-align:top; }
th { background:#f3f4f6; } td.n { text-align:right; white-space:nowrap; }
.slo-pass { background:#dcfce7; } .slo-fail { background:#fee2e2; } .slo-partial { background:#dbeafe; } .slo-no_requests, .slo-unknown { background:#f1f5f9; }
.table-wrap, figure.chart { overflow-x:auto; } figure.chart { margin:8px 0 16px; } figure.chart svg { max-width:100%; height:auto; }
ul.caveats { margin:6px 0 0; padding-left:20px; color:var(--muted); font-size:.9rem; }
footer { margin-top:40px; color:var(--muted); font-size:.8rem; }
@media print { main { max-width:none; padding:0; } h2 { break-after:avoid; } .card, figure.chart, tr { break-inside:avoid; } }
"#;

/// An SVG from the shared renderers, made inline: its namespace attribute (a URL, though never
/// fetched) is not needed inside HTML.
fn inline(svg: &str) -> String {
    svg.replacen(r#" xmlns="http://www.w3.org/2000/svg""#, "", 1)
}

fn opt(v: Option<f64>, unit: &str) -> String {
    v.map_or("—".to_string(), |v| format!("{}{unit}", n0(v)))
}

/// `YYYY-MM-DD HH:MM UTC` for a Unix time in ms.
fn date(unix_ms: u64) -> String {
    let s = crate::runs::utc_stamp(unix_ms / 1000);
    format!("{}-{}-{} {}:{} UTC", &s[0..4], &s[4..6], &s[6..8], &s[9..11], &s[11..13])
}

/// The page around `body`.
fn page(title: &str, body: &str, now_ms: u64) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n{body}\n<footer>Made by caplab {} on {}. Latencies count from each request's scheduled send time; percentiles interpolate linearly between ranks (numpy's default). This file is self-contained: it loads nothing.</footer>\n</main>\n</body>\n</html>\n",
        esc(title),
        env!("CARGO_PKG_VERSION"),
        date(now_ms)
    )
}

/// The banners a run's numbers need: SIMULATED, IMPORTED, and a run that did not finish.
fn banners(view: &RunView) -> String {
    let mut out = String::new();
    let p = Provenance::of(&view.info);
    match &p {
        Provenance::Simulated => {
            let _ = write!(out, r#"<div class="banner simulated">{}</div>"#, esc(&p.words()));
        }
        Provenance::Imported { simulated, .. } => {
            let _ = write!(out, r#"<div class="banner imported">{}</div>"#, esc(&p.words()));
            if *simulated {
                let _ = write!(out, r#"<div class="banner simulated">SIMULATED — the run imported was measured against caplab's simulator: its numbers are a model's, not a GPU's</div>"#);
            }
        }
        Provenance::Measured => {}
    }
    let status = view.info.status;
    if status != RunStatus::Finished {
        let what = match status {
            RunStatus::Running | RunStatus::Queued => "STILL RUNNING — this report is a snapshot of the cells finished so far",
            RunStatus::Stopped => "STOPPED — the run was stopped before its end: cells marked partial cover only the requests that ended, and are not judged",
            RunStatus::Interrupted => "INTERRUPTED — caplab stopped while the run was in progress: its cells are rebuilt from the requests that completed",
            _ => "FAILED — the run could not run to its end",
        };
        let msg = view.info.message.as_deref().map(|m| format!(" ({})", esc(m))).unwrap_or_default();
        let _ = write!(out, r#"<div class="banner status">{what}{msg}</div>"#);
    }
    out
}

/// A run's capacity card.
fn card(c: &Capacity) -> String {
    let title = if c.name.trim().is_empty() { format!("{} on {}", c.workload, if c.gpu.is_empty() { "an unnamed GPU" } else { &c.gpu }) } else { c.name.clone() };
    let mut out = format!(r#"<section class="card capacity" data-run="{}"><h3>{}<span class="badge">{}</span><span class="badge">{}</span></h3>"#, esc(&c.run_id), esc(&title), c.provenance.banner(), c.status.as_str());
    let cost_label = match c.usd_per_hour {
        Some(p) => format!("$ per million output tokens (at ${p:.2}/h)"),
        None => "$ per million output tokens (no price known for this GPU)".into(),
    };
    let figures = [
        (c.max_stable.clone().unwrap_or_else(|| "—".into()), format!("max stable concurrency (SLO: {})", c.slo)),
        (c.best.clone().unwrap_or_else(|| "—".into()), "best configuration".to_string()),
        (opt(c.output_tok_s, ""), "output tokens/s at the best configuration".to_string()),
        (opt(c.p95_ms, " ms"), "p95 end-to-end at the best configuration".to_string()),
        (c.usd_per_million_tokens.map_or("—".into(), |v| format!("${v:.3}")), cost_label),
    ];
    out.push_str(r#"<div class="figures">"#);
    for (num, lab) in figures {
        let _ = write!(out, r#"<div class="fig"><div class="num">{}</div><div class="lab">{}</div></div>"#, esc(&num), esc(&lab));
    }
    out.push_str("</div>");
    if let Some(why) = &c.why_none {
        let _ = write!(out, r#"<p class="why"><strong>No answer:</strong> {}</p>"#, esc(why));
    }
    let dash = |s: &str| if s.trim().is_empty() { "—".to_string() } else { s.to_string() };
    let peak = c.peak_in_flight.map_or(String::new(), |p| format!(" (peak measured in flight: {p})"));
    let rows = [
        ("GPU", dash(&c.gpu)),
        ("Model", dash(&c.model)),
        ("Engine", c.engine.clone()),
        (if matches!(c.provenance, Provenance::Imported { .. }) { "Imported" } else { "Measured" }, c.date_unix_ms.map_or("—".into(), date)),
        ("SLO", c.slo.clone()),
        ("Max stable", format!("{}{peak}", c.max_stable.clone().unwrap_or_else(|| "—".into()))),
        ("Cells", format!("{} of {} with a result", c.cells_done, c.cells_total)),
    ];
    out.push_str(r#"<dl class="kv">"#);
    for (k, v) in rows {
        let _ = write!(out, "<dt>{k}</dt><dd>{}</dd>", esc(&v));
    }
    out.push_str("</dl>");
    if !c.caveats.is_empty() {
        out.push_str(r#"<ul class="caveats">"#);
        for w in &c.caveats {
            let _ = write!(out, "<li>{}</li>", esc(w));
        }
        out.push_str("</ul>");
    }
    out.push_str("</section>");
    out
}

/// A chart's title inside the report, which says the rest: "chat · OOM surface (SIMULATED)".
fn short_title(view: &RunView, chart: &str) -> String {
    let sim = if view.info.target.simulated { " (SIMULATED)" } else { "" };
    format!("{} · {chart}{sim}", view.info.spec.workload.as_str())
}

/// "c16 × 256" or "4 rps × 256".
fn cell_label(c: &CellResult) -> String {
    let base = format!("{} × {}", c.load().label(), c.max_new_tokens);
    c.input_tokens.map_or(base.clone(), |n| format!("{base} ({n} in)"))
}

/// The run's cells, one row each, with the same SLO words as the dashboard.
fn cells_table(view: &RunView) -> String {
    if view.cells.is_empty() {
        return r#"<p class="muted">No cell has a result.</p>"#.into();
    }
    let mut out = String::from(r#"<div class="table-wrap"><table class="cells"><thead><tr><th>Cell</th><th>SLO</th><th>OK</th><th>Failed</th><th>Peak in flight</th><th>Output tok/s</th><th>TTFT p50 / p95 (ms)</th><th>E2E p50 / p95 (ms)</th><th>Why</th></tr></thead><tbody>"#);
    for c in &view.cells {
        let s = c.slo_state();
        let peak = if c.peak_concurrency > 0 { c.peak_concurrency.to_string() } else { "—".into() };
        let mut why: Vec<String> = c.slo_missed.clone();
        why.extend(c.notes.iter().cloned());
        let _ = write!(
            out,
            r#"<tr data-cell="{}"><td>{}</td><td class="slo slo-{}" title="{}">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{peak}</td><td class="n">{}</td><td class="n">{} / {}</td><td class="n">{} / {}</td><td>{}</td></tr>"#,
            c.cell,
            esc(&cell_label(c)),
            s.as_str(),
            esc(s.meaning()),
            s.word(),
            c.requests_ok,
            c.requests_failed,
            n0(c.output_tok_s),
            opt(c.ttft.p50, ""),
            opt(c.ttft.p95, ""),
            opt(c.e2e.p50, ""),
            opt(c.e2e.p95, ""),
            esc(&why.join("; "))
        );
    }
    out.push_str("</tbody></table></div>");
    out
}

/// Label and value rows as a definition list.
fn kv(rows: &[(&str, String)]) -> String {
    let mut out = String::from(r#"<dl class="kv">"#);
    for (k, v) in rows {
        let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
    }
    out.push_str("</dl>");
    out
}

fn list<T: std::fmt::Display>(v: &[T]) -> String {
    v.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// What the run put on the server: workload, load mode, grid, requests, prompts, SLO.
fn workload(view: &RunView) -> String {
    let spec = &view.info.spec;
    let imported = view.info.imported_from.is_some() && !view.info.imported_from.as_deref().unwrap_or_default().starts_with("caplab results.json");
    let inputs = crate::workload::Inputs::default();
    let what = match spec.workload {
        Workload::Chat => "chat: streaming chat completions",
        Workload::Batch => "batch: summarization of documents (completions)",
    };
    let mode = match spec.mode {
        LoadMode::Closed => "closed loop: N workers per cell, each sending its next request when the last ends".to_string(),
        LoadMode::Rate => format!(
            "open loop: arrivals at the offered rate (burstiness {}{})",
            spec.burstiness,
            if spec.max_in_flight > 0 { format!(", at most {} in flight", spec.max_in_flight) } else { String::new() }
        ),
    };
    let axis = match spec.mode {
        LoadMode::Closed => format!("concurrency {}", list(&spec.concurrency)),
        LoadMode::Rate => format!("rates {} requests/s", list(&spec.rate)),
    };
    let inputs_axis = if spec.input_tokens.is_empty() { String::new() } else { format!(" × prompt tokens {}", list(&spec.input_tokens)) };
    let mut grid = format!("{axis}{inputs_axis} × max_new_tokens {} ({} cells)", list(&spec.max_new_tokens), view.info.cells_total);
    if spec.search {
        grid.push_str("; an SLO search: only the cells needed to find the highest load within the SLO were run");
    }
    let (requests, prompts) = if imported {
        let per: Vec<String> = view.cells.iter().map(|c| format!("{}: {}", cell_label(c), c.requests_ok + c.requests_failed)).collect();
        (format!("as in the imported file(s): {}", per.join(", ")), "as the other tool sent them (the file does not record them)".to_string())
    } else {
        // The user's own inputs, when the run had them: their count is in the spec.
        let docs = spec.inputs.as_ref().filter(|_| spec.workload == Workload::Batch).map_or(inputs.documents.len(), |r| r.items as usize);
        let mut per: Vec<(u32, Vec<String>)> = Vec::new();
        for c in spec.cells() {
            let n = spec.cell_requests(&c, docs);
            match per.iter_mut().find(|(m, _)| *m == n) {
                Some((_, cells)) => cells.push(c.label()),
                None => per.push((n, vec![c.label()])),
            }
        }
        let requests = match per.as_slice() {
            [(n, _)] => format!("{n} measured per cell, after {} warm-up", spec.warmup),
            many => format!("{} (measured per cell), after {} warm-up each", many.iter().map(|(n, cells)| format!("{n} for {}", cells.join(", "))).collect::<Vec<_>>().join("; "), spec.warmup),
        };
        let prefix = if spec.prefix_tokens > 0 {
            format!(", the first {} tokens shared{}", spec.prefix_tokens, if spec.prefix_groups > 1 { format!(" in {} groups", spec.prefix_groups) } else { String::new() })
        } else {
            String::new()
        };
        let drawn = |d: &caplab_shared::spec::LengthDist| match d.kind {
            caplab_shared::spec::DistKind::Uniform => format!("uniform {}–{}", d.min, d.max),
            k => format!("{} mean {} stdev {} within {}–{}", if k == caplab_shared::spec::DistKind::Normal { "normal" } else { "log-normal" }, d.mean, d.stdev, d.min, d.max),
        };
        let outputs = spec.output_dist.as_ref().map_or(String::new(), |d| format!("; output lengths drawn per request ({})", drawn(d)));
        let prompts = match (spec.workload, &spec.inputs) {
            _ if !spec.input_tokens.is_empty() => format!("synthetic prompts of {} tokens as the target counts them, every request its own words{prefix}{outputs}", list(&spec.input_tokens)),
            _ if spec.input_dist.is_some() => format!("synthetic prompts with lengths drawn per request ({}){prefix}{outputs}", spec.input_dist.as_ref().map(drawn).unwrap_or_default()),
            (_, Some(r)) if r.is_trace() => format!("a replay of {} ({} requests over {:.0} s, content id {}) at speedup {}: each request's prompt and output lengths as recorded", r.name, r.items, r.duration_s.unwrap_or_default(), r.id, spec.speedup.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")),
            (Workload::Chat, Some(r)) => format!("the user's {} chat requests from {} ({}, content id {}), in turn", r.items, r.name, r.format, r.id),
            (Workload::Batch, Some(r)) => format!("the notes' summarization prompt over the user's {} documents from {} ({}, content id {}), {} passes", r.items, r.name, r.format, r.id, spec.repeat),
            (Workload::Chat, None) => format!("caplab's {} built-in chat prompts (data/chat_prompts.txt), in turn", inputs.chats.len()),
            (Workload::Batch, None) => format!("the notes' summarization prompt over caplab's {} built-in documents (data/docs_sample.txt), {} passes", docs, spec.repeat),
        };
        (requests, prompts)
    };
    let slo = view.cells.first().map_or_else(|| spec.slo.effective(spec.workload), |c| c.slo.clone()).words();
    let mut rows = vec![("Workload", what.to_string()), ("Load", mode), ("Grid", grid), ("Requests", requests), ("Prompts", prompts), ("SLO", format!("{slo}, and no failed request"))];
    if !imported {
        rows.push(("Request timeout", format!("{} s", spec.timeout_s)));
    }
    kv(&rows)
}

/// Where the numbers were measured.
fn environment(view: &RunView, c: &Capacity) -> String {
    let info = &view.info;
    let dash = |s: &str| if s.trim().is_empty() { "—".to_string() } else { s.to_string() };
    let mut rows = vec![
        ("Engine", c.engine.clone()),
        ("GPU", dash(&c.gpu)),
        ("Model", dash(&c.model)),
        ("Provenance", c.provenance.words()),
        ("Date", c.date_unix_ms.map_or("—".into(), date)),
        ("Run", format!("{} ({})", info.id, info.status.as_str())),
        ("Report made by", format!("caplab {}", env!("CARGO_PKG_VERSION"))),
    ];
    if let Some(m) = &info.message {
        rows.push(("Run message", m.clone()));
    }
    kv(&rows)
}

/// One run's charts and tables (`frontier`: with its own frontier, as in a run's report).
fn run_section(r: &RunReport, frontier: bool) -> String {
    let view = r.view;
    let c = capacity(view, r.usd_per_hour);
    let mut out = String::new();
    if frontier {
        let _ = write!(out, r#"<h2>Throughput vs latency</h2><p class="muted">Each cell at its output tokens/s and p95 end-to-end latency; a line per max_new_tokens in order of load; filled points meet the SLO (dashed line); the ring is the best configuration.</p><figure class="chart frontier">{}</figure>"#, inline(&caplab_shared::frontier::svg(&view.cells, &short_title(view, "throughput vs p95 latency"))));
    }
    let _ = write!(out, r#"<h2>OOM surface</h2><p class="muted">One tile per cell of the grid; the worst that happened in it sets its colour (grey: not run; blue: cut short by a stop).</p><figure class="chart surface">{}</figure>"#, inline(&surface::svg_grid(&view.cells, &view.info.spec.cells(), &short_title(view, "OOM surface"))));
    let _ = write!(out, "<h2>Cells</h2>{}", cells_table(view));
    out.push_str(r#"<h2>Latency distributions</h2><p class="muted">Per cell, the successful measured requests: time to first token, inter-token latency (each request's mean) and end-to-end latency, with p50 and p95 marked.</p>"#);
    if view.cells.is_empty() {
        out.push_str(r#"<p class="muted">No cell has a result.</p>"#);
    }
    for cell in &view.cells {
        let samples = r.samples.and_then(|s| s.get(&cell.cell));
        let title = format!("{} — {}", cell_label(cell), cell.slo_state().word());
        let _ = write!(out, r#"<figure class="chart dist">{}</figure>"#, distributions(&title, cell, samples));
    }
    let _ = write!(out, "<h2>Environment</h2>{}", environment(view, &c));
    let _ = write!(out, "<h2>Workload</h2>{}", workload(view));
    out
}

/// The report of one run.
pub fn run(r: &RunReport, now_ms: u64) -> String {
    let view = r.view;
    let c = capacity(view, r.usd_per_hour);
    let title = format!("caplab capacity report — {}", view.chart_title());
    let mut body = format!(r#"<header><h1>Capacity report</h1><p class="sub">{}</p>{}</header>"#, esc(&view.chart_title()), banners(view));
    let _ = write!(body, "<h2>The answer</h2>{}", card(&c));
    body.push_str(&run_section(r, true));
    page(&title, &body, now_ms)
}

/// The report of runs compared: a card each, their frontiers overlaid, the notes (as HTML, from
/// `report::html`), then each run's surface, cells, distributions, environment and workload.
pub fn comparison(runs: &[RunReport], notes_html: &str, frontier_svg: &str, now_ms: u64) -> String {
    let mut body = format!(r#"<header><h1>Capacity comparison</h1><p class="sub">{} runs compared</p>"#, runs.len());
    for r in runs {
        body.push_str(&banners(r.view).replace(r#"<div class="banner"#, &format!(r#"<div data-run="{}" class="banner"#, esc(&r.view.info.id))));
    }
    body.push_str("</header><h2>The answers</h2>");
    for r in runs {
        body.push_str(&card(&capacity(r.view, r.usd_per_hour)));
    }
    let _ = write!(body, r#"<h2>Throughput vs latency, runs compared</h2><figure class="chart frontier">{}</figure>"#, inline(frontier_svg));
    let _ = write!(body, r#"<section class="notes">{notes_html}</section>"#);
    for r in runs {
        let _ = write!(body, r#"<section class="run" id="run-{}"><h2 class="run-title">{}</h2>{}</section>"#, esc(&r.view.info.id), esc(&r.view.chart_title()), run_section(r, false));
    }
    page("caplab capacity comparison", &body, now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::samples::CellSamples;
    use crate::report::tests::run as fixture;

    fn samples(cells: &[u32]) -> Samples {
        cells.iter().map(|&c| (c, CellSamples { ttft: vec![50.0, 60.0, 70.0], itl: vec![10.0, 11.0, 12.0], e2e: vec![500.0, 800.0, 900.0] })).collect()
    }

    /// No URL to fetch anywhere: no src, href, url() or @import; inline SVGs without a namespace URL.
    fn offline(html: &str) {
        for bad in ["http://", "https://", "src=", "href=", "url(", "@import", "<script", "<link", "<img"] {
            assert!(!html.contains(bad), "{bad} in the report");
        }
        assert!(html.contains("content=\"default-src 'none'; style-src 'unsafe-inline'\""), "and the browser is told to fetch nothing");
    }

    #[test]
    fn a_run_report_holds_every_part_and_loads_nothing() {
        let mut v = fixture("r1", "NVIDIA A100 80GB SXM · m (simulated)", Workload::Chat, &[(1, 128, 40.0, 900.0, true), (8, 128, 280.0, 2500.0, true), (16, 128, 400.0, 4200.0, false)]);
        v.info.spec.concurrency = vec![1, 8, 16];
        v.info.spec.max_new_tokens = vec![128];
        let s = samples(&[0, 1, 2]);
        let html = run(&RunReport { view: &v, samples: Some(&s), usd_per_hour: Some(1.49) }, 1_700_000_000_000);
        offline(&html);
        assert!(html.starts_with("<!doctype html>"));
        assert_eq!(html.matches("<svg").count(), 2 + 3, "frontier, surface, one distribution per cell");
        assert!(html.contains(r#"class="frontier""#) && html.contains(r#"class="surface""#));
        assert!(html.contains(r#"<div class="banner simulated">SIMULATED"#), "said prominently");
        assert!(html.contains("max stable concurrency (SLO: p95 end-to-end ≤ 3000 ms)") && html.contains(r#"<div class="num">8</div>"#));
        assert!(html.contains("$ per million output tokens (at $1.49/h)"));
        assert!(html.contains(r#"<td class="slo slo-pass""#) && html.contains(r#"<td class="slo slo-fail""#));
        for part in ["<h2>Environment</h2>", "<h2>Workload</h2>", "Engine", "caplab simulator (SIMULATED vLLM)", "Report made by", "concurrency 1, 8, 16 × max_new_tokens 128", "built-in chat prompts", "p95 end-to-end ≤ 3000 ms, and no failed request", "2023-11-14 22:13 UTC"] {
            assert!(html.contains(part), "missing {part}");
        }
    }

    #[test]
    fn stopped_imported_and_hostile_runs_say_what_they_are() {
        let mut v = fixture("r2", "<b>pod</b>", Workload::Chat, &[(8, 128, 280.0, 1986.0, true)]);
        v.cells[0].partial = true;
        v.info.status = RunStatus::Stopped;
        v.info.imported_from = Some("vllm bench serve: <script>x</script>.json".into());
        v.info.spec.model = "javascript:alert(1)".into();
        let html = run(&RunReport { view: &v, samples: None, usd_per_hour: None }, 0);
        offline(&html);
        assert!(!html.contains("<b>pod") && html.contains("&lt;b&gt;pod&lt;/b&gt;"));
        assert!(html.contains(r#"<div class="banner imported">IMPORTED"#) && html.contains(r#"<div class="banner status">STOPPED"#));
        assert!(html.contains(r#"<td class="slo slo-partial""#) && !html.contains(r#"class="slo slo-pass""#), "a partial cell is never a pass");
        assert!(html.contains("cut short by the stop"), "why there is no answer");
        assert!(html.contains("percentiles from the file: no per-request samples"));
        assert!(html.contains("as the other tool sent them"));
        assert!(html.contains("no price known for this GPU"));
    }

    #[test]
    fn a_comparison_report_has_a_card_per_run_the_overlay_the_notes_and_each_run() {
        let a = fixture("ra", "NVIDIA RTX 2000 Ada 16GB · m (simulated)", Workload::Chat, &[(1, 128, 40.0, 900.0, true), (8, 128, 280.0, 2500.0, true)]);
        let b = fixture("rb", "NVIDIA A100 80GB SXM · m (simulated)", Workload::Chat, &[(8, 128, 900.0, 800.0, true)]);
        let cmp = crate::report::comparison(&[a.clone(), b.clone()], &Default::default());
        let (sa, sb) = (samples(&[0, 1]), samples(&[0]));
        let html = comparison(&[RunReport { view: &a, samples: Some(&sa), usd_per_hour: Some(0.24) }, RunReport { view: &b, samples: Some(&sb), usd_per_hour: None }], &cmp.html, &cmp.frontier_svg, 0);
        offline(&html);
        assert_eq!(html.matches(r#"class="card capacity""#).count(), 2);
        assert_eq!(html.matches("<svg").count(), 1 + 2 + 3, "the overlay, a surface per run, a distribution per cell");
        assert!(html.contains("<table>") && html.contains("Chat Workload Comparison"), "the notes' tables");
        assert!(html.contains(r#"id="run-ra""#) && html.contains(r#"id="run-rb""#));
    }
}
