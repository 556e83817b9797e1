//! `caplab sim --calibrate RUN_DIR… [--out FILE] [--report FILE]`: reads the runs, fits,
//! writes the calibration file, and with `--report` a markdown report: the fitted costs, the
//! same cells measured twice, every model left out in turn and predicted by a fit on the
//! others (the published error), and the calibrated simulator's predictions for the other GPU
//! profiles with intervals taken from those errors.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::calibrate::{self, BandError, Calibration, CellFit, CellNumbers, LeftOut, MeasuredRun, RunHints};
use super::profile::{self, Deployment, EngineArgs, EngineCosts};
use super::replay::{CellLoad, Replayed};
use crate::cli::ProfileArgs;

#[derive(Args, Debug, Clone, Default)]
pub struct CalibrateArgs {
    /// Fit the engine's costs to these measured runs (caplab run folders from a real vLLM,
    /// one engine version, no failed requests) and print the fit per cell. --gpu and --model
    /// (or --model-config) name the GPU and model when a run's files cannot
    #[arg(long, num_args = 1.., value_name = "RUN_DIR")]
    pub calibrate: Vec<PathBuf>,
    /// Where --calibrate writes the calibration file (JSON)
    #[arg(long, value_name = "FILE", requires = "calibrate")]
    pub out: Option<PathBuf>,
    /// Also leave each model out in turn (fit on the others, predict it), predict the other
    /// GPU profiles with intervals, and write it all as markdown here
    #[arg(long, value_name = "FILE", requires = "calibrate")]
    pub report: Option<PathBuf>,
    /// Replays of the whole set of cells each fit may spend
    #[arg(long, default_value_t = 900, requires = "calibrate")]
    pub fit_evals: usize,
}

fn say(s: &str) {
    eprintln!("caplab calibrate: {s}");
}

/// Runs `caplab sim --calibrate …`.
pub fn run(args: &CalibrateArgs, profile: &ProfileArgs) -> anyhow::Result<ExitCode> {
    let model = match (&profile.model_config, &profile.model) {
        (Some(p), _) => Some(super::hf_config::read(p)?),
        (None, Some(m)) => Some(profile::model(m).map_err(anyhow::Error::msg)?),
        _ => None,
    };
    let hints = RunHints { gpu: profile.gpu.clone(), model };
    let mut runs = Vec::new();
    for dir in &args.calibrate {
        runs.push(calibrate::read_run(dir, &hints)?);
    }
    if let Some(path) = &profile.calibration {
        // Check a calibration against these runs instead of fitting one.
        let cal = calibrate::load(path)?;
        let (cells, _) = calibrate::compare(&runs, &cal.costs);
        println!("{} (vLLM {}) against {} runs, loss {:.3}:\n\n{}\n{}", path.display(), cal.engine_version, runs.len(), calibrate::loss(&runs, &cal.costs), summary(&cells), cells_table(&cells, "simulated"));
        return Ok(ExitCode::SUCCESS);
    }
    calibrate::check(&runs)?;
    say(&format!(
        "{} runs, {} cells, vLLM {}; fitting (at most {} replays of every cell)…",
        runs.len(),
        runs.iter().map(|r| r.cells.len()).sum::<usize>(),
        runs[0].engine_version,
        args.fit_evals
    ));
    let mut cal = calibrate::calibrate(&runs, args.fit_evals, &say)?;
    print!("{}", fit_table(&cal));
    // With a report, the models left out give the error every prediction is published with.
    let loo = match &args.report {
        Some(_) => {
            let loo = calibrate::leave_one_model_out(&runs, args.fit_evals, &say)?;
            cal.prediction_error = band_errors(&loo.iter().flat_map(|l| l.cells.clone()).collect::<Vec<_>>());
            Some(loo)
        }
        None => None,
    };
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&cal)? + "\n")?;
        say(&format!("wrote {}", out.display()));
    }
    if let (Some(path), Some(loo)) = (&args.report, &loo) {
        let command = std::iter::once("caplab".to_string()).chain(std::env::args().skip(1).map(|a| if a.contains(' ') { format!("'{a}'") } else { a })).collect::<Vec<_>>().join(" ");
        std::fs::write(path, report(&command, &runs, &cal, loo))?;
        say(&format!("wrote {}", path.display()));
    }
    Ok(ExitCode::SUCCESS)
}

fn pct(e: f64) -> String {
    format!("{:+.0} %", e * 100.0)
}

fn thousands(x: f64) -> String {
    let n = x.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn ms(x: f64) -> String {
    if x >= 100.0 {
        thousands(x)
    } else if x >= 10.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

fn costs_rows(c: &EngineCosts) -> String {
    let f = &c.frontend;
    format!(
        "| GPU: compute efficiency (share of dense bf16 peak) | {:.2} |\n\
         | GPU: bandwidth efficiency (share of peak memory bandwidth) | {:.2} |\n\
         | engine core CPU per step | {:.2} ms |\n\
         | engine core CPU per sequence in a step | {:.1} µs |\n\
         | CPU overlaps GPU (async scheduling): step = max(GPU, CPU) | {} |\n\
         | engine output lag (async scheduling), steps | {:.2} |\n\
         | API server per request (parse, template, tokenize) | {:.2} ms |\n\
         | API server per output token (detokenize, stats) | {:.1} µs |\n\
         | … plus per 1,000 open streams | {:.1} µs |\n\
         | API server per chunk written to a stream | {:.1} µs |\n\
         | front-end ceiling: output tok/s at 128 / 512 open streams, 2 tokens a chunk | {} / {} |\n",
        c.compute_efficiency,
        c.bandwidth_efficiency,
        c.step_ms,
        c.seq_us,
        if c.overlap { "yes" } else { "no" },
        c.output_lag_steps,
        f.request_ms,
        f.token_us,
        f.token_us_per_1k_streams,
        f.chunk_us,
        thousands(f.ceiling_tok_s(128.0, 2.0)),
        thousands(f.ceiling_tok_s(512.0, 2.0)),
    )
}

/// The fit, per cell, for the terminal.
pub fn fit_table(cal: &Calibration) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Calibration of vLLM {} ({} cells, loss {:.3}):\n| cost | value |\n|---|---|", cal.engine_version, cal.cells.len(), cal.loss);
    s.push_str(&costs_rows(&cal.costs));
    let _ = writeln!(s, "\n{}", cells_table(&cal.cells, "simulated"));
    s
}

pub(crate) fn cells_table(cells: &[CellFit], what: &str) -> String {
    let mut s = format!(
        "| model | run | cell | out tok/s measured | {what} | error | p95 TTFT ms measured | {what} | error | p95 TPOT ms measured | {what} | error |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    for c in cells {
        let run = c.run.rsplit('/').find(|p| !p.is_empty()).unwrap_or(&c.run);
        let _ = writeln!(
            s,
            "| {} | {run} | c{} × {}{} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            c.model,
            c.concurrency,
            c.max_new_tokens,
            c.input_tokens.map(|n| format!(" ({} in)", thousands(f64::from(n)))).unwrap_or_default(),
            thousands(c.measured.output_tok_s),
            thousands(c.simulated.output_tok_s),
            mark(c.error.output_tok_s, TOK_TARGET),
            ms(c.measured.ttft_p95_ms),
            ms(c.simulated.ttft_p95_ms),
            mark(c.error.ttft_p95_ms, LAT_TARGET),
            ms(c.measured.tpot_p95_ms),
            ms(c.simulated.tpot_p95_ms),
            mark(c.error.tpot_p95_ms, LAT_TARGET),
        );
    }
    s
}

/// The issue's targets: output tok/s within 15 %, p95 TTFT and TPOT within 25 %.
const TOK_TARGET: f64 = 0.15;
const LAT_TARGET: f64 = 0.25;

/// An error, in bold when it misses its target.
fn mark(e: f64, target: f64) -> String {
    if e.abs() <= target {
        pct(e)
    } else {
        format!("**{}**", pct(e))
    }
}

/// Concurrency bands the errors are summarised (and the intervals taken) by: the GPU-bound
/// start, the knee where the front end saturates, and past it.
const BANDS: [(&str, u32, u32); 3] = [("c1–c32", 1, 32), ("c64–c128", 64, 128), ("c256–c512", 256, u32::MAX)];


/// The range of errors per concurrency band, over `cells` (each left out and predicted).
pub fn band_errors(cells: &[CellFit]) -> Vec<BandError> {
    let range = |cs: &[&CellFit], f: fn(&CellNumbers) -> f64| cs.iter().map(|c| f(&c.error)).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), e| (lo.min(e), hi.max(e)));
    BANDS
        .iter()
        .filter_map(|&(band, lo, hi)| {
            let cs: Vec<&CellFit> = cells.iter().filter(|c| c.concurrency >= lo && c.concurrency <= hi).collect();
            (!cs.is_empty()).then(|| BandError {
                band: band.to_string(),
                min_concurrency: lo,
                max_concurrency: hi,
                cells: cs.len() as u32,
                output_tok_s: range(&cs, |e| e.output_tok_s),
                ttft_p95_ms: range(&cs, |e| e.ttft_p95_ms),
                tpot_p95_ms: range(&cs, |e| e.tpot_p95_ms),
                e2e_p95_ms: range(&cs, |e| e.e2e_p95_ms),
            })
        })
        .collect()
}

fn within(cells: &[&CellFit], f: impl Fn(&CellNumbers) -> f64, target: f64) -> String {
    let n = cells.iter().filter(|c| f(&c.error).abs() <= target).count();
    format!("{n} / {}", cells.len())
}

fn summary(cells: &[CellFit]) -> String {
    let mut s = String::from("| cells | out tok/s within 15 % | p95 TTFT within 25 % | p95 TPOT within 25 % | median abs error tok/s / TTFT / TPOT |\n|---|---:|---:|---:|---:|\n");
    let mut rows: Vec<(String, Vec<&CellFit>)> = BANDS.iter().map(|b| (b.0.to_string(), cells.iter().filter(|c| c.concurrency >= b.1 && c.concurrency <= b.2).collect())).collect();
    rows.push(("all".into(), cells.iter().collect()));
    for (name, cs) in rows {
        if cs.is_empty() {
            continue;
        }
        let med = |f: fn(&CellNumbers) -> f64| {
            let mut v: Vec<f64> = cs.iter().map(|c| f(&c.error).abs()).collect();
            caplab_shared::stats::percentile(&mut v, 50.0).unwrap_or(0.0)
        };
        let _ = writeln!(
            s,
            "| {name} ({}) | {} | {} | {} | {} / {} / {} |",
            cs.len(),
            within(&cs, |e| e.output_tok_s, TOK_TARGET),
            within(&cs, |e| e.ttft_p95_ms, LAT_TARGET),
            within(&cs, |e| e.tpot_p95_ms, LAT_TARGET),
            pct(med(|e| e.output_tok_s)).trim_start_matches('+'),
            pct(med(|e| e.ttft_p95_ms)).trim_start_matches('+'),
            pct(med(|e| e.tpot_p95_ms)).trim_start_matches('+'),
        );
    }
    s
}

/// The notes' chat grid on another GPU: the anchors' prompts (47 tokens, 85 % from the prefix
/// cache), 128 tokens out, two requests a client.
const GRID: [u32; 6] = [1, 16, 64, 128, 256, 512];

fn predict(d: &Deployment, costs: &EngineCosts, c: u32) -> Replayed {
    super::predict::replay_cell(d, costs, &CellLoad { concurrency: c, requests: 2 * c, prompt_tokens: 47, cached_tokens: 40, max_new_tokens: 128 })
}

fn other_gpus(cal: &Calibration) -> String {
    let within = |pred: f64, c: u32, f: fn(&BandError) -> (f64, f64)| cal.error_at(c).map_or((f64::NAN, f64::NAN), |b| BandError::interval(pred, f(b)));
    let mut s = String::new();
    let gpus: Vec<profile::Gpu> = profile::gpus().into_iter().filter(|g| g.step_overhead_ms.is_none()).collect();
    for key in ["qwen2.5-1.5b", "qwen2.5-7b", "llama-3.1-8b"] {
        let Ok(model) = profile::model(key) else { continue };
        let _ = writeln!(s, "\n**{}** (chat, 47-token prompts, 128 out, 2 requests a client; output tok/s, in brackets the range the leave-one-out errors give)\n", model.served_name);
        let mut head = String::from("| GPU |");
        let mut rule = String::from("|---|");
        for c in GRID {
            let _ = write!(head, " c{c} |");
            rule.push_str("---:|");
        }
        let _ = writeln!(s, "{head} p95 TPOT at c1 / c64 ms | bound by at c1 / c64 / c256 |\n{rule}---:|---|");
        for g in &gpus {
            let d = match Deployment::new(g.clone(), model.clone(), &EngineArgs { max_model_len: Some(4096), ..EngineArgs::default() }) {
                Ok(d) => d,
                Err(_) => {
                    let _ = writeln!(s, "| {} | does not fit |{}", g.name, " |".repeat(GRID.len() + 1));
                    continue;
                }
            };
            let mut row = format!("| {} |", g.name);
            let mut by = Vec::new();
            let mut tpot = Vec::new();
            for c in GRID {
                let p = predict(&d, &cal.costs, c);
                let tok = p.output_tok_s();
                let (lo, hi) = within(tok, c, |b| b.output_tok_s);
                let _ = write!(row, " {} ({}–{}) |", thousands(tok), thousands(lo), thousands(hi));
                if [1, 64, 256].contains(&c) {
                    by.push(super::predict::bound_by(&p));
                }
                if [1, 64].contains(&c) {
                    let mut v = p.tpot_s.clone();
                    let t = caplab_shared::stats::percentile(&mut v, 95.0).unwrap_or(0.0) * 1e3;
                    let (lo, hi) = within(t, c, |b| b.tpot_p95_ms);
                    tpot.push(format!("{} ({}–{})", ms(t), ms(lo), ms(hi)));
                }
            }
            let _ = writeln!(s, "{row} {} | {} |", tpot.join(" / "), by.join(" / "));
        }
    }
    s
}

/// The markdown report (see the module's doc).
pub fn report(command: &str, runs: &[MeasuredRun], cal: &Calibration, loo: &[LeftOut]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# vLLM {} calibration and leave-one-model-out prediction\n", cal.engine_version);
    let _ = writeln!(s, "Written by `caplab sim --calibrate … --report` ({}); do not edit by hand, run it again:\n\n```sh\n{command}\n```\n", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(s, "Runs ({}; engine numbers = means of vLLM's histograms between the run's /metrics scrapes):\n", runs.len());
    let _ = writeln!(s, "| run | model | GPU | workload | cells | prefix-cache hits | engine ITL ms measured / fitted | prefill ms measured / fitted |\n|---|---|---|---|---:|---:|---:|---:|");
    for r in &cal.runs {
        let (itl, pre) = match &r.engine_measured {
            Some(e) => (format!("{:.2} / {:.2}", e.itl_mean_ms, r.engine_simulated.itl_mean_ms), format!("{:.1} / {:.1}", e.prefill_mean_ms, r.engine_simulated.prefill_mean_ms)),
            None => (format!("— / {:.2}", r.engine_simulated.itl_mean_ms), format!("— / {:.1}", r.engine_simulated.prefill_mean_ms)),
        };
        let _ = writeln!(s, "| {} | {} | {} | {} | {} | {:.0} % | {itl} | {pre} |", r.run, r.model, r.gpu, r.workload, r.cells, r.prefix_cache_hit * 100.0);
    }
    let _ = writeln!(s, "\n## The costs fitted on every run\n\n| cost | value |\n|---|---|\n{}", costs_rows(&cal.costs));
    for c in &cal.caveats {
        let _ = writeln!(s, "- {c}");
    }
    s.push('\n');
    let _ = writeln!(s, "In-sample fit, every cell (simulated / measured − 1):\n\n{}", summary(&cal.cells));
    let _ = writeln!(s, "## The same cells measured twice\n");
    if cal.spread.is_empty() {
        let _ = writeln!(s, "No cell was measured twice: the runs say nothing about how far two measurements of one cell can differ.\n");
    } else {
        let _ = writeln!(s, "| model | workload | runs | cells | largest ratio: out tok/s | p95 TTFT | p95 TPOT |\n|---|---|---|---:|---:|---:|---:|");
        for sp in &cal.spread {
            let _ = writeln!(s, "| {} | {} | {} | {} | {:.2}× | {:.2}× | {:.2}× |", sp.model, sp.workload, sp.runs.join(", "), sp.cells, sp.max_ratio_tok_s, sp.max_ratio_ttft_p95, sp.max_ratio_tpot_p95);
        }
        let _ = writeln!(s, "\nNo single set of costs can be closer to both measurements of such a cell than half their ratio: the targets below are tighter than the spread.\n");
    }
    let all: Vec<CellFit> = loo.iter().flat_map(|l| l.cells.clone()).collect();
    let _ = writeln!(s, "## Leave one model out\n\nEach model in turn is left out; the costs are fitted on the other models' runs and the left-out model's cells are predicted. Targets: output tok/s within 15 %, p95 TTFT and p95 TPOT within 25 %; misses in **bold**.\n\n{}", summary(&all));
    let _ = writeln!(s, "Costs fitted without each model:\n\n| left out | compute eff. | bandwidth eff. | step ms | seq µs | lag steps | request ms | token µs | µs per 1k streams | chunk µs |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for l in loo {
        let (c, f) = (&l.costs, &l.costs.frontend);
        let _ = writeln!(
            s,
            "| {} | {:.2} | {:.2} | {:.2} | {:.1} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} |",
            l.model, c.compute_efficiency, c.bandwidth_efficiency, c.step_ms, c.seq_us, c.output_lag_steps, f.request_ms, f.token_us, f.token_us_per_1k_streams, f.chunk_us
        );
    }
    let mut by_model: BTreeMap<&str, Vec<CellFit>> = BTreeMap::new();
    for c in &all {
        by_model.entry(c.model.as_str()).or_default().push(c.clone());
    }
    for (m, cells) in by_model {
        let _ = writeln!(s, "\n### {m}, predicted by the fit on the others\n\n{}", cells_table(&cells, "predicted"));
    }
    let _ = writeln!(
        s,
        "## Other GPUs: the calibrated costs with each GPU's roofline\n\nThe engine's CPU costs and the API server's are the H200 host's; each GPU changes only the roofline (its memory, bandwidth and bf16 peak from `data/profiles/gpus.toml`, at the fitted efficiencies). The range in brackets is what the leave-one-out errors in the same concurrency band would make of the prediction (measured = predicted / (1 + error), the band's smallest and largest error): a statement about this simulator on the H200, widened by nothing for the GPU itself. **No measurement has checked any of these GPUs**: not their efficiencies, not their host CPUs (the front end and engine costs move with the CPU), not vLLM's kernels on them. A GPU whose rows say *front end* or *engine CPU* is predicted to be limited by the host, not by the card."
    );
    s.push_str(&other_gpus(cal));
    s
}
