//! Calibration: the engine's costs (`EngineCosts`) fitted to measured runs of a real vLLM, the
//! calibration file that holds them with the fit's error per cell, and the default one the GPU
//! profiles use (`data/calibration/vllm-0.26-h200.json`).
//!
//! `caplab sim --calibrate RUN_DIR…` reads caplab run folders (`run.json`; and, when the folder
//! has them, full `/metrics` scrapes from before and after the run, `metrics_start.txt[.gz]` and
//! `metrics_end.txt[.gz]`, whose histograms give the engine's own decode pace, prefill and
//! queue times and whose counters give the prefix-cache hit rate), refuses what cannot be fitted
//! honestly (`CalibrationError`), replays every cell on the virtual clock (`replay`) and
//! searches the costs that bring the replays closest to the measurements (`fit`). Leaving one
//! model out (`leave_one_model_out`) fits on the others and predicts it: the published error.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::profile::{self, Deployment, EngineArgs, EngineCosts, FrontendCosts, Model};
use super::replay::{replay, CellLoad, Replayed};
use super::scheduler::{Limits, Timing};

/// The calibration shipped for vLLM 0.26 on the H200 anchors: the GPU profiles' default.
const DEFAULT: &str = include_str!("../../../data/calibration/vllm-0.26-h200.json");

/// Cells a calibration needs at least (the costs are seven numbers).
pub const MIN_CELLS: usize = 12;
/// Distinct concurrencies it needs at least (the per-sequence and front-end costs only show
/// as the batch grows).
pub const MIN_CONCURRENCIES: usize = 3;

/// The default calibration (parsed once).
pub fn default_calibration() -> &'static Calibration {
    static CAL: OnceLock<Calibration> = OnceLock::new();
    CAL.get_or_init(|| serde_json::from_str(DEFAULT).unwrap_or_else(|e| panic!("data/calibration/vllm-0.26-h200.json is not a calibration: {e}")))
}

/// Reads a calibration file written by `caplab sim --calibrate`.
pub fn load(path: &Path) -> Result<Calibration, CalibrationError> {
    let text = std::fs::read_to_string(path).map_err(|e| CalibrationError::Read { path: path.to_path_buf(), why: e.to_string() })?;
    serde_json::from_str(&text).map_err(|e| CalibrationError::Read { path: path.to_path_buf(), why: format!("not a calibration file: {e}") })
}

/// Why runs cannot be calibrated on.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CalibrationError {
    #[error("{path}: {why}")]
    Read { path: PathBuf, why: String },
    #[error("{run}: a simulated run (caplab's own simulator): calibrate on a real server's runs")]
    Simulated { run: String },
    #[error("{run}: the target was {server:?}, not vLLM: the simulator models vLLM's engine")]
    NotVllm { run: String, server: String },
    #[error("{run}: the run did not record the server's version (/version), so it cannot be told apart from another vLLM")]
    NoVersion { run: String },
    #[error("the runs come from different engine versions ({versions}): a calibration is one engine's; calibrate each version on its own runs")]
    Versions { versions: String },
    #[error("{run}: the run is {status}, not finished: calibrate on whole runs")]
    NotFinished { run: String, status: String },
    #[error("{run}: cell {cell} had {failed} failed request(s): a run with failures measures the failures too; fix them and measure again")]
    Failures { run: String, cell: String, failed: u64 },
    #[error("{run}: cell {cell} was cut short (partial)")]
    Partial { run: String, cell: String },
    #[error("{run}: cell {cell} is open loop (a request rate): the calibration replays closed loops only")]
    OpenLoop { run: String, cell: String },
    #[error("{run}: cannot tell which model it served ({model}); name it with --model (a profile: {profiles})")]
    UnknownModel { run: String, model: String, profiles: String },
    #[error("{run}: cannot tell which GPU it ran on ({gpu}); name it with --gpu (a profile: {profiles})")]
    UnknownGpu { run: String, gpu: String, profiles: String },
    #[error("{run}: {why}")]
    Deployment { run: String, why: String },
    #[error("too few cells to fit: {cells} cell(s) at {concurrencies} concurrency level(s); a calibration needs at least {MIN_CELLS} cells at {MIN_CONCURRENCIES} or more concurrency levels (the costs are seven numbers)")]
    TooFewCells { cells: usize, concurrencies: usize },
    #[error("leaving one model out needs runs of at least 3 models; these have {models}")]
    TooFewModels { models: usize },
}

/// One cell's numbers, measured or simulated (ms and tokens/s).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default)]
pub struct CellNumbers {
    pub output_tok_s: f64,
    pub ttft_p50_ms: f64,
    pub ttft_p95_ms: f64,
    pub tpot_p50_ms: f64,
    pub tpot_p95_ms: f64,
    /// p95 end to end (the frontier's latency); not fitted, reported. 0 in files made before it.
    #[serde(default)]
    pub e2e_p95_ms: f64,
}

impl CellNumbers {
    fn of(r: &Replayed) -> CellNumbers {
        let q = |v: &[f64], p: f64| caplab_shared::stats::percentile(&mut v.to_vec(), p).unwrap_or(0.0) * 1e3;
        CellNumbers {
            output_tok_s: r.output_tok_s(),
            ttft_p50_ms: q(&r.ttft_s, 50.0),
            ttft_p95_ms: q(&r.ttft_s, 95.0),
            tpot_p50_ms: q(&r.tpot_s, 50.0),
            tpot_p95_ms: q(&r.tpot_s, 95.0),
            e2e_p95_ms: q(&r.e2e_s, 95.0),
        }
    }

    /// Relative errors, simulated / measured − 1.
    fn error(&self, measured: &CellNumbers) -> CellNumbers {
        let e = |s: f64, m: f64| if m > 0.0 { s / m - 1.0 } else { 0.0 };
        CellNumbers {
            output_tok_s: e(self.output_tok_s, measured.output_tok_s),
            ttft_p50_ms: e(self.ttft_p50_ms, measured.ttft_p50_ms),
            ttft_p95_ms: e(self.ttft_p95_ms, measured.ttft_p95_ms),
            tpot_p50_ms: e(self.tpot_p50_ms, measured.tpot_p50_ms),
            tpot_p95_ms: e(self.tpot_p95_ms, measured.tpot_p95_ms),
            e2e_p95_ms: e(self.e2e_p95_ms, measured.e2e_p95_ms),
        }
    }
}

/// The engine's side of a whole run, from vLLM's histograms (means, ms) and prefix-cache counters.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default)]
pub struct EngineNumbers {
    /// `vllm:inter_token_latency_seconds`: the engine's interval between a request's tokens.
    pub itl_mean_ms: f64,
    /// `vllm:request_prefill_time_seconds`: scheduled → first token.
    pub prefill_mean_ms: f64,
    /// `vllm:request_queue_time_seconds`: waiting in the engine before being scheduled.
    pub queue_mean_ms: f64,
}

/// One measured cell.
#[derive(Clone, Debug, PartialEq)]
pub struct MeasuredCell {
    pub load: CellLoad,
    /// The prompt length the cell asked for (the `input_tokens` axis), if it had one.
    pub input_tokens: Option<u32>,
    pub numbers: CellNumbers,
    /// vLLM's preemptions during the cell (`vllm:num_preemptions_total`), when scraped.
    pub preemptions: Option<f64>,
}

/// One measured run, ready to replay.
#[derive(Clone, Debug)]
pub struct MeasuredRun {
    /// The folder as given.
    pub path: String,
    pub run_id: String,
    pub engine_version: String,
    pub workload: String,
    pub model: Model,
    pub deployment: Deployment,
    pub cells: Vec<MeasuredCell>,
    /// From the folder's `/metrics` scrapes, when it has them.
    pub engine: Option<EngineNumbers>,
    /// Share of prompt tokens vLLM's prefix cache served (0 when unknown).
    pub prefix_hit: f64,
}

impl MeasuredRun {
    /// The limits the engine ran under.
    pub fn limits(&self) -> Limits {
        let d = &self.deployment;
        Limits { max_num_seqs: d.max_num_seqs, max_num_batched_tokens: d.max_num_batched_tokens, kv_blocks: d.kv_blocks }
    }
}

/// Which GPU and model a run used, when its files cannot say (`--gpu`, `--model`).
#[derive(Clone, Debug, Default)]
pub struct RunHints {
    pub gpu: Option<String>,
    pub model: Option<Model>,
}

fn read_text(path: &Path) -> Option<String> {
    let gz = PathBuf::from(format!("{}.gz", path.display()));
    if let Ok(t) = std::fs::read_to_string(path) {
        return Some(t);
    }
    let bytes = std::fs::read(&gz).ok()?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut text).ok()?;
    Some(text)
}

/// A `/metrics` scrape reduced to sums per metric name (over all label sets), for the
/// counters and the histograms' `_sum` and `_count` series.
fn scrape_sums(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else { continue };
        if name.ends_with("_sum") || name.ends_with("_count") || name.ends_with("_total") {
            *out.entry(name.to_string()).or_insert(0.0) += value;
        }
    }
    out
}

/// The engine's numbers and the prefix-cache hit rate between two scrapes.
fn engine_between(start: &str, end: &str) -> Option<(EngineNumbers, f64)> {
    let (a, b) = (scrape_sums(start), scrape_sums(end));
    let delta = |n: &str| b.get(n).copied().unwrap_or(0.0) - a.get(n).copied().unwrap_or(0.0);
    let mean_ms = |h: &str| {
        let count = delta(&format!("vllm:{h}_count"));
        (count > 0.0).then(|| delta(&format!("vllm:{h}_sum")) / count * 1e3)
    };
    let engine = EngineNumbers {
        itl_mean_ms: mean_ms("inter_token_latency_seconds")?,
        prefill_mean_ms: mean_ms("request_prefill_time_seconds")?,
        queue_mean_ms: mean_ms("request_queue_time_seconds")?,
    };
    let queries = delta("vllm:prefix_cache_queries_total");
    let hit = if queries > 0.0 { (delta("vllm:prefix_cache_hits_total") / queries).clamp(0.0, 1.0) } else { 0.0 };
    Some((engine, hit))
}

fn norm(s: &str) -> String {
    s.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' }).collect()
}

/// The profile a model name refers to: the longest profile key it contains.
fn model_of(name: &str) -> Option<Model> {
    let n = norm(name);
    profile::models().into_iter().filter(|m| n.contains(&m.key) || norm(&m.served_name) == n).max_by_key(|m| m.key.len())
}

/// The GPU profile a GPU label refers to.
fn gpu_of(label: &str) -> Option<profile::Gpu> {
    let n = norm(label);
    profile::gpus().into_iter().filter(|g| n.contains(&g.key) || n.contains(&norm(&g.name))).max_by_key(|g| g.key.len())
}

/// Reads a caplab run folder (see the module's doc).
pub fn read_run(dir: &Path, hints: &RunHints) -> Result<MeasuredRun, CalibrationError> {
    let path = dir.display().to_string();
    let run = path.clone();
    let text = read_text(&dir.join("run.json")).ok_or_else(|| CalibrationError::Read { path: dir.join("run.json"), why: "cannot read it (is this a caplab run folder?)".into() })?;
    let v: Value = serde_json::from_str(&text).map_err(|e| CalibrationError::Read { path: dir.join("run.json"), why: e.to_string() })?;
    let info = &v["info"];
    let target = &info["target"];
    if target["simulated"].as_bool() == Some(true) {
        return Err(CalibrationError::Simulated { run });
    }
    let server = target["server"].as_str().unwrap_or("unknown").to_string();
    if server != "vllm" {
        return Err(CalibrationError::NotVllm { run, server });
    }
    let engine_version = target["version"].as_str().filter(|s| !s.is_empty()).ok_or(CalibrationError::NoVersion { run: run.clone() })?.to_string();
    let status = info["status"].as_str().unwrap_or("unknown");
    if status != "finished" {
        return Err(CalibrationError::NotFinished { run, status: status.to_string() });
    }
    let spec = &info["spec"];
    let model_name = target["models"][0].as_str().or_else(|| spec["model"].as_str()).unwrap_or("").to_string();
    let model = match &hints.model {
        Some(m) => m.clone(),
        None => match super::hf_config::read(&dir.join("config.json")).ok().or_else(|| model_of(&model_name)) {
            Some(m) => m,
            None => return Err(CalibrationError::UnknownModel { run, model: model_name, profiles: profile::models().iter().map(|m| m.key.clone()).collect::<Vec<_>>().join(", ") }),
        },
    };
    let gpu_label = spec["gpu"].as_str().unwrap_or("").to_string();
    let gpu = match hints.gpu.as_deref() {
        Some(g) => profile::gpu(g).map_err(|why| CalibrationError::Deployment { run: run.clone(), why })?,
        None => gpu_of(&gpu_label).ok_or_else(|| CalibrationError::UnknownGpu { run: run.clone(), gpu: gpu_label, profiles: profile::gpus().iter().map(|g| g.key.clone()).collect::<Vec<_>>().join(", ") })?,
    };
    let args = EngineArgs { max_model_len: target["max_model_len"].as_u64().map(|n| n as u32), ..EngineArgs::default() };
    let deployment = Deployment::new(gpu, model.clone(), &args).map_err(|why| CalibrationError::Deployment { run: run.clone(), why })?;
    let (engine, prefix_hit) = match (read_text(&dir.join("metrics_start.txt")), read_text(&dir.join("metrics_end.txt"))) {
        (Some(a), Some(b)) => engine_between(&a, &b).map_or((None, 0.0), |(e, h)| (Some(e), h)),
        _ => (None, 0.0),
    };
    let mut cells = Vec::new();
    for c in v["cells"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let conc = c["concurrency"].as_u64().unwrap_or(0) as u32;
        let out = c["max_new_tokens"].as_u64().unwrap_or(0) as u32;
        let name = format!("c{conc} × {out}");
        if !c["rate"].is_null() {
            return Err(CalibrationError::OpenLoop { run, cell: name });
        }
        let failed = c["requests_failed"].as_u64().unwrap_or(0);
        if failed > 0 {
            return Err(CalibrationError::Failures { run, cell: name, failed });
        }
        if c["partial"].as_bool() == Some(true) {
            return Err(CalibrationError::Partial { run, cell: name });
        }
        let ok = c["requests_ok"].as_u64().unwrap_or(0) as u32;
        if ok == 0 || conc == 0 {
            continue;
        }
        let prompt = (c["prompt_tokens"].as_f64().unwrap_or(0.0) / f64::from(ok)).round().max(1.0) as u32;
        // The cell's own prefix-cache hit rate when caplab recorded it, else the run's.
        let hit = c["server"]["prefix_cache_hit_rate"].as_f64().unwrap_or(prefix_hit).clamp(0.0, 1.0);
        let get = |k: &str, q: &str| c[k][q].as_f64().unwrap_or(0.0);
        cells.push(MeasuredCell {
            load: CellLoad { concurrency: conc, requests: ok, prompt_tokens: prompt, cached_tokens: (f64::from(prompt) * hit).floor() as u32, max_new_tokens: out },
            input_tokens: c["input_tokens"].as_u64().map(|n| n as u32),
            numbers: CellNumbers {
                output_tok_s: c["output_tok_s"].as_f64().unwrap_or(0.0),
                ttft_p50_ms: get("ttft", "p50"),
                ttft_p95_ms: get("ttft", "p95"),
                tpot_p50_ms: get("tpot", "p50"),
                tpot_p95_ms: get("tpot", "p95"),
                e2e_p95_ms: get("e2e", "p95"),
            },
            preemptions: c["server"]["preemptions"].as_f64(),
        });
    }
    Ok(MeasuredRun {
        path,
        run_id: info["id"].as_str().unwrap_or("").to_string(),
        engine_version,
        workload: spec["workload"].as_str().unwrap_or("").to_string(),
        model,
        deployment,
        cells,
        engine,
        prefix_hit,
    })
}

/// Refuses a set of runs that cannot be calibrated on together (versions, too few cells).
pub fn check(runs: &[MeasuredRun]) -> Result<(), CalibrationError> {
    let versions: BTreeSet<&str> = runs.iter().map(|r| r.engine_version.as_str()).collect();
    if versions.len() > 1 {
        let list: Vec<String> = runs.iter().map(|r| format!("{} in {}", r.engine_version, r.path)).collect();
        return Err(CalibrationError::Versions { versions: list.join(", ") });
    }
    let cells: usize = runs.iter().map(|r| r.cells.len()).sum();
    let concurrencies: BTreeSet<u32> = runs.iter().flat_map(|r| r.cells.iter().map(|c| c.load.concurrency)).collect();
    if cells < MIN_CELLS || concurrencies.len() < MIN_CONCURRENCIES {
        return Err(CalibrationError::TooFewCells { cells, concurrencies: concurrencies.len() });
    }
    Ok(())
}

/// A run replayed with given costs: each cell's numbers, and the run's engine numbers.
#[derive(Clone, Debug)]
pub struct Simulated {
    pub cells: Vec<CellNumbers>,
    pub engine: EngineNumbers,
}

/// Replays every cell of `run` with `costs` (cells spread over the machine's cores).
pub fn simulate(run: &MeasuredRun, costs: &EngineCosts) -> Simulated {
    let d = run.deployment.clone().with_costs(costs.clone());
    let timing = Timing::Roofline(Box::new(d));
    let limits = run.limits();
    let replays = par_map(&run.cells, |c| replay(limits, &timing, &costs.frontend, costs.output_lag_steps, &c.load));
    let (mut itl, mut itl_n, mut prefill, mut queue, mut reqs) = (0.0, 0u64, 0.0, 0.0, 0usize);
    for r in &replays {
        itl += r.engine_itl_sum_s;
        itl_n += r.engine_itl_count;
        prefill += r.prefill_sum_s;
        queue += r.queue_sum_s;
        reqs += r.e2e_s.len();
    }
    let per = |s: f64, n: f64| if n > 0.0 { s / n * 1e3 } else { 0.0 };
    Simulated {
        cells: replays.iter().map(CellNumbers::of).collect(),
        engine: EngineNumbers { itl_mean_ms: per(itl, itl_n as f64), prefill_mean_ms: per(prefill, reqs as f64), queue_mean_ms: per(queue, reqs as f64) },
    }
}

/// Maps over items on up to four threads, keeping their order.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    if threads <= 1 || items.len() < 2 {
        return items.iter().map(&f).collect();
    }
    // Interleaved, so the costly high-concurrency cells spread over the threads.
    let f = &f;
    let mut out: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
    let parts: Vec<Vec<(usize, R)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|k| s.spawn(move || items.iter().enumerate().skip(k).step_by(threads).map(|(i, x)| (i, f(x))).collect::<Vec<_>>())).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    for (i, r) in parts.into_iter().flatten() {
        out[i] = Some(r);
    }
    out.into_iter().map(|r| r.expect("every item mapped")).collect()
}

/// The fitted parameters, as the optimiser sees them: unconstrained numbers.
const PARAMS: usize = 9;

fn costs_of(z: &[f64; PARAMS]) -> EngineCosts {
    let logistic = |x: f64| 1.0 / (1.0 + (-x).exp());
    EngineCosts {
        compute_efficiency: logistic(z[0]),
        bandwidth_efficiency: logistic(z[1]),
        step_ms: z[2].exp(),
        seq_us: z[3].exp(),
        overlap: true,
        output_lag_steps: z[7].exp(),
        frontend: FrontendCosts { request_ms: z[4].exp(), token_us: z[5].exp(), chunk_us: z[8].exp(), token_us_per_1k_streams: z[6].exp() },
    }
}

fn z_of(c: &EngineCosts) -> [f64; PARAMS] {
    let logit = |p: f64| (p.clamp(1e-4, 1.0 - 1e-4) / (1.0 - p.clamp(1e-4, 1.0 - 1e-4))).ln();
    let ln = |x: f64| x.max(1e-6).ln();
    [
        logit(c.compute_efficiency),
        logit(c.bandwidth_efficiency),
        ln(c.step_ms),
        ln(c.seq_us),
        ln(c.frontend.request_ms),
        ln(c.frontend.token_us),
        ln(c.frontend.token_us_per_1k_streams),
        ln(c.output_lag_steps),
        ln(c.frontend.chunk_us),
    ]
}

/// How much each number counts in the fit (squared log errors, softened past ±30 %).
const WEIGHTS: CellNumbers = CellNumbers { output_tok_s: 1.0, ttft_p50_ms: 0.5, ttft_p95_ms: 0.5, tpot_p50_ms: 0.5, tpot_p95_ms: 0.5, e2e_p95_ms: 0.0 };
/// A run's engine numbers count as this many cells.
const ENGINE_WEIGHT: f64 = 3.0;

fn soft(x: f64) -> f64 {
    // Pseudo-Huber on the log ratio: quadratic near 0, linear beyond ±0.3, so the noisiest
    // cells (the saturated front end) do not pull every other cell off.
    const D: f64 = 0.3;
    D * D * ((1.0 + (x / D).powi(2)).sqrt() - 1.0)
}

fn log_err(sim: f64, meas: f64) -> f64 {
    if sim > 0.0 && meas > 0.0 {
        (sim / meas).ln()
    } else {
        0.0
    }
}

/// The loss of `costs` over `runs`.
pub fn loss(runs: &[MeasuredRun], costs: &EngineCosts) -> f64 {
    let mut total = 0.0;
    for run in runs {
        let sim = simulate(run, costs);
        for (m, s) in run.cells.iter().zip(&sim.cells) {
            let (m, w) = (&m.numbers, &WEIGHTS);
            total += w.output_tok_s * soft(log_err(s.output_tok_s, m.output_tok_s))
                + w.ttft_p50_ms * soft(log_err(s.ttft_p50_ms, m.ttft_p50_ms))
                + w.ttft_p95_ms * soft(log_err(s.ttft_p95_ms, m.ttft_p95_ms))
                + w.tpot_p50_ms * soft(log_err(s.tpot_p50_ms, m.tpot_p50_ms))
                + w.tpot_p95_ms * soft(log_err(s.tpot_p95_ms, m.tpot_p95_ms));
        }
        if let Some(e) = &run.engine {
            total += ENGINE_WEIGHT * (soft(log_err(sim.engine.itl_mean_ms, e.itl_mean_ms)) + 0.5 * soft(log_err(sim.engine.prefill_mean_ms, e.prefill_mean_ms)));
        }
    }
    total
}

/// Nelder–Mead's simplex search from `start`, at most `evals` evaluations.
fn nelder_mead(f: &dyn Fn(&[f64; PARAMS]) -> f64, start: [f64; PARAMS], step: f64, evals: usize) -> ([f64; PARAMS], f64, usize) {
    let mut pts: Vec<([f64; PARAMS], f64)> = Vec::with_capacity(PARAMS + 1);
    pts.push((start, f(&start)));
    for i in 0..PARAMS {
        let mut p = start;
        p[i] += step;
        pts.push((p, f(&p)));
    }
    let mut n = PARAMS + 1;
    while n < evals {
        pts.sort_by(|a, b| a.1.total_cmp(&b.1));
        if (pts[PARAMS].1 - pts[0].1).abs() < 1e-6 * (1.0 + pts[0].1.abs()) {
            break;
        }
        let mut centroid = [0.0; PARAMS];
        for (p, _) in &pts[..PARAMS] {
            for i in 0..PARAMS {
                centroid[i] += p[i] / PARAMS as f64;
            }
        }
        let along = |t: f64| {
            let mut q = [0.0; PARAMS];
            for i in 0..PARAMS {
                q[i] = centroid[i] + t * (pts[PARAMS].0[i] - centroid[i]);
            }
            q
        };
        let r = along(-1.0);
        let fr = f(&r);
        n += 1;
        if fr < pts[0].1 {
            let e = along(-2.0);
            let fe = f(&e);
            n += 1;
            pts[PARAMS] = if fe < fr { (e, fe) } else { (r, fr) };
        } else if fr < pts[PARAMS - 1].1 {
            pts[PARAMS] = (r, fr);
        } else {
            let c = if fr < pts[PARAMS].1 { along(-0.5) } else { along(0.5) };
            let fc = f(&c);
            n += 1;
            if fc < fr.min(pts[PARAMS].1) {
                pts[PARAMS] = (c, fc);
            } else {
                // Shrink towards the best.
                let best = pts[0].0;
                for p in pts.iter_mut().skip(1) {
                    for i in 0..PARAMS {
                        p.0[i] = best[i] + 0.5 * (p.0[i] - best[i]);
                    }
                    p.1 = f(&p.0);
                    n += 1;
                }
            }
        }
    }
    pts.sort_by(|a, b| a.1.total_cmp(&b.1));
    (pts[0].0, pts[0].1, n)
}

/// Where the search starts: costs of the right order for vLLM on a fast GPU.
fn start_costs() -> EngineCosts {
    EngineCosts {
        compute_efficiency: 0.5,
        bandwidth_efficiency: 0.7,
        step_ms: 2.0,
        seq_us: 10.0,
        overlap: true,
        output_lag_steps: 2.0,
        frontend: FrontendCosts { request_ms: 0.8, token_us: 15.0, chunk_us: 20.0, token_us_per_1k_streams: 5.0 },
    }
}

/// Fits the costs to `runs` (already checked): restarts of Nelder–Mead, `evals` in all.
/// The compute efficiency assumed when the runs cannot tell it (`compute_identified`).
pub const ASSUMED_COMPUTE_EFFICIENCY: f64 = 0.55;
/// Uncached prompt tokens per request from which a cell's prefill says something about the
/// GPU's compute.
const PREFILL_HEAVY_TOKENS: u32 = 512;

/// Whether any cell prefills enough (uncached) tokens for the GPU's compute to show. Without
/// one, every step is bound by memory bandwidth or CPU, and a fitted compute efficiency would
/// only soak up what another cost misses (on the H200 anchors it fell to 0.24 to slow the 7B
/// and 8B at c256–c512, where the 0.5B, with a tenth of the compute, slows the same: the API
/// server). It is then held at `ASSUMED_COMPUTE_EFFICIENCY` and the file says so.
pub fn compute_identified(runs: &[MeasuredRun]) -> bool {
    runs.iter().flat_map(|r| &r.cells).any(|c| c.load.prompt_tokens.saturating_sub(c.load.cached_tokens) >= PREFILL_HEAVY_TOKENS)
}

pub fn fit(runs: &[MeasuredRun], evals: usize, progress: &dyn Fn(&str)) -> (EngineCosts, f64) {
    let fixed = (!compute_identified(runs)).then_some(ASSUMED_COMPUTE_EFFICIENCY);
    let costs = |z: &[f64; PARAMS]| {
        let c = costs_of(z);
        EngineCosts { compute_efficiency: fixed.unwrap_or(c.compute_efficiency), ..c }
    };
    let f = |z: &[f64; PARAMS]| loss(runs, &costs(z));
    let mut best = z_of(&start_costs());
    let mut best_f = f64::INFINITY;
    let rounds = [(0.6, evals / 2), (0.25, evals / 4), (0.1, evals / 4)];
    for (k, (step, budget)) in rounds.into_iter().enumerate() {
        let (z, fz, used) = nelder_mead(&f, best, step, budget.max(PARAMS + 2));
        if fz < best_f {
            best = z;
            best_f = fz;
        }
        progress(&format!("fit round {}: loss {best_f:.4} after {used} replays of {} cells", k + 1, runs.iter().map(|r| r.cells.len()).sum::<usize>()));
    }
    (costs(&best), best_f)
}

/// One cell of a calibration or a prediction: measured, simulated, and the error.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CellFit {
    pub run: String,
    pub model: String,
    pub workload: String,
    pub concurrency: u32,
    pub max_new_tokens: u32,
    /// The prompt length the cell asked for, on an input-length axis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u32>,
    pub measured: CellNumbers,
    pub simulated: CellNumbers,
    /// simulated / measured − 1.
    pub error: CellNumbers,
}

/// A run's engine numbers, measured (vLLM's histograms) and simulated.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RunFit {
    pub run: String,
    pub run_id: String,
    pub model: String,
    pub gpu: String,
    pub workload: String,
    pub cells: usize,
    pub prefix_cache_hit: f64,
    pub engine_measured: Option<EngineNumbers>,
    pub engine_simulated: EngineNumbers,
}

/// The same cell measured twice (two runs of one model and workload): how far apart.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Spread {
    pub model: String,
    pub workload: String,
    pub runs: Vec<String>,
    pub cells: usize,
    /// The largest ratio, larger / smaller, of output tokens/s, p95 TTFT and p95 TPOT.
    pub max_ratio_tok_s: f64,
    pub max_ratio_ttft_p95: f64,
    pub max_ratio_tpot_p95: f64,
}

/// A calibration file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Calibration {
    /// What this file is.
    pub about: String,
    pub engine: String,
    pub engine_version: String,
    /// The fitted costs (`caplab sim --gpu G --model M --calibration FILE` uses them).
    pub costs: EngineCosts,
    /// The fit's loss (smaller is closer) and how it was searched.
    pub loss: f64,
    pub evaluations: usize,
    pub runs: Vec<RunFit>,
    /// Every cell, measured against the calibrated replay.
    pub cells: Vec<CellFit>,
    /// Cells measured twice, and how far apart: no prediction can be checked more finely.
    pub spread: Vec<Spread>,
    /// What the fit does not know.
    pub caveats: Vec<String>,
    /// The published error of a prediction: each model left out of the fit and predicted by
    /// the others (`--report`), the range of errors per concurrency band. Empty in a file made
    /// without `--report`: its predictions then carry no interval.
    #[serde(default)]
    pub prediction_error: Vec<BandError>,
}

/// The range of leave-one-model-out errors (simulated / measured − 1) over the cells of one
/// concurrency band: how far a prediction in that band has been from a measurement.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BandError {
    /// E.g. "c1–c32".
    pub band: String,
    pub min_concurrency: u32,
    pub max_concurrency: u32,
    /// Cells left out and predicted in this band.
    pub cells: u32,
    /// (smallest, largest) error of each number.
    pub output_tok_s: (f64, f64),
    pub ttft_p95_ms: (f64, f64),
    pub tpot_p95_ms: (f64, f64),
    pub e2e_p95_ms: (f64, f64),
}

impl BandError {
    /// The values a measurement could take given prediction `pred` and an error range: error =
    /// predicted / measured − 1, so measured = predicted / (1 + error).
    pub fn interval(pred: f64, (lo, hi): (f64, f64)) -> (f64, f64) {
        (pred / (1.0 + hi).max(0.05), pred / (1.0 + lo).max(0.05))
    }
}

impl Calibration {
    /// The band of published errors for concurrency `c` (the last band past its end).
    pub fn error_at(&self, c: u32) -> Option<&BandError> {
        self.prediction_error.iter().find(|b| c >= b.min_concurrency && c <= b.max_concurrency).or(self.prediction_error.last())
    }
}

/// The cells of `runs` replayed with `costs`, side by side with the measurements.
pub fn compare(runs: &[MeasuredRun], costs: &EngineCosts) -> (Vec<CellFit>, Vec<RunFit>) {
    let mut cells = Vec::new();
    let mut fits = Vec::new();
    for run in runs {
        let sim = simulate(run, costs);
        for (m, s) in run.cells.iter().zip(&sim.cells) {
            cells.push(CellFit {
                run: run.path.clone(),
                model: run.model.key.clone(),
                workload: run.workload.clone(),
                concurrency: m.load.concurrency,
                max_new_tokens: m.load.max_new_tokens,
                input_tokens: m.input_tokens,
                measured: m.numbers,
                simulated: *s,
                error: s.error(&m.numbers),
            });
        }
        fits.push(RunFit {
            run: run.path.clone(),
            run_id: run.run_id.clone(),
            model: run.model.key.clone(),
            gpu: run.deployment.gpu.key.clone(),
            workload: run.workload.clone(),
            cells: run.cells.len(),
            prefix_cache_hit: run.prefix_hit,
            engine_measured: run.engine,
            engine_simulated: sim.engine,
        });
    }
    (cells, fits)
}

/// Cells measured in more than one run of the same model and workload.
pub fn spread(runs: &[MeasuredRun]) -> Vec<Spread> {
    let mut groups: BTreeMap<(String, String), Vec<&MeasuredRun>> = BTreeMap::new();
    for r in runs {
        groups.entry((r.model.key.clone(), r.workload.clone())).or_default().push(r);
    }
    let mut out = Vec::new();
    for ((model, workload), group) in groups {
        let mut by_cell: BTreeMap<(u32, u32), Vec<CellNumbers>> = BTreeMap::new();
        for r in &group {
            for c in &r.cells {
                by_cell.entry((c.load.concurrency, c.load.max_new_tokens)).or_default().push(c.numbers);
            }
        }
        let repeated: Vec<&Vec<CellNumbers>> = by_cell.values().filter(|v| v.len() > 1).collect();
        if repeated.is_empty() {
            continue;
        }
        let ratio = |f: fn(&CellNumbers) -> f64| {
            repeated
                .iter()
                .map(|v| {
                    let xs: Vec<f64> = v.iter().map(f).filter(|x| *x > 0.0).collect();
                    let (lo, hi) = xs.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
                    if lo.is_finite() && lo > 0.0 {
                        hi / lo
                    } else {
                        1.0
                    }
                })
                .fold(1.0, f64::max)
        };
        out.push(Spread {
            model,
            workload,
            runs: group.iter().map(|r| r.path.clone()).collect(),
            cells: repeated.len(),
            max_ratio_tok_s: ratio(|c| c.output_tok_s),
            max_ratio_ttft_p95: ratio(|c| c.ttft_p95_ms),
            max_ratio_tpot_p95: ratio(|c| c.tpot_p95_ms),
        });
    }
    out
}

/// Calibrates on `runs`: checks them, fits, and writes up every cell.
pub fn calibrate(runs: &[MeasuredRun], evals: usize, progress: &dyn Fn(&str)) -> Result<Calibration, CalibrationError> {
    check(runs)?;
    let (costs, loss) = fit(runs, evals, progress);
    let (cells, fits) = compare(runs, &costs);
    let gpus: BTreeSet<&str> = runs.iter().map(|r| r.deployment.gpu.key.as_str()).collect();
    let mut caveats = Vec::new();
    if !compute_identified(runs) {
        caveats.push(format!(
            "The compute efficiency is assumed ({ASSUMED_COMPUTE_EFFICIENCY}), not fitted: no cell prefills {PREFILL_HEAVY_TOKENS} or more uncached prompt tokens a request, so no cell shows the GPU's compute. Predictions for long prompts, or for GPUs with little compute for their bandwidth, rest on that assumption."
        ));
    }
    caveats.extend([
        "The CPU costs (engine core per step and per sequence, the API server per request and per token) are this host's: vLLM's engine core and API server are one Python process each, so a faster or slower CPU moves every number that the GPU does not bound.".to_string(),
        "Prefix caching is replayed at each run's measured hit rate; speculative decoding, quantization, LoRA and multi-GPU runs were not measured.".to_string(),
    ]);
    if !runs.iter().all(|r| r.engine.is_some()) {
        caveats.push("Some runs had no /metrics scrapes from before and after (metrics_start.txt, metrics_end.txt): for them only the client's numbers were fitted, and no prefix caching was assumed.".into());
    }
    caveats.push(format!("Fitted on the GPU(s) {}: on another GPU only the roofline changes; the efficiencies are assumed to carry over, which no measurement here has checked.", gpus.into_iter().collect::<Vec<_>>().join(", ")));
    Ok(Calibration {
        about: "caplab simulator calibration: the engine's costs fitted to measured runs by `caplab sim --calibrate` (docs/simulator.md). simulated/measured − 1 per cell below; spread = the same cell measured twice.".into(),
        engine: "vllm".into(),
        engine_version: runs[0].engine_version.clone(),
        costs,
        loss,
        evaluations: evals,
        runs: fits,
        cells,
        spread: spread(runs),
        caveats,
        prediction_error: Vec::new(),
    })
}

/// One model predicted by a calibration fitted on the others.
#[derive(Clone, Debug)]
pub struct LeftOut {
    pub model: String,
    pub costs: EngineCosts,
    pub cells: Vec<CellFit>,
    pub runs: Vec<RunFit>,
}

/// Leaves each model out in turn: fits on the others' runs, predicts its cells.
pub fn leave_one_model_out(runs: &[MeasuredRun], evals: usize, progress: &dyn Fn(&str)) -> Result<Vec<LeftOut>, CalibrationError> {
    let models: BTreeSet<String> = runs.iter().map(|r| r.model.key.clone()).collect();
    if models.len() < 3 {
        return Err(CalibrationError::TooFewModels { models: models.len() });
    }
    let mut out = Vec::new();
    for m in models {
        let train: Vec<MeasuredRun> = runs.iter().filter(|r| r.model.key != m).cloned().collect();
        let test: Vec<MeasuredRun> = runs.iter().filter(|r| r.model.key == m).cloned().collect();
        check(&train)?;
        progress(&format!("leave {m} out: fitting on {} runs", train.len()));
        let (costs, _) = fit(&train, evals, progress);
        let (cells, fits) = compare(&test, &costs);
        out.push(LeftOut { model: m, costs, cells, runs: fits });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_calibration_loads_and_names_its_engine() {
        let c = default_calibration();
        assert_eq!((c.engine.as_str(), c.engine_version.as_str()), ("vllm", "0.26.0"));
        assert!(c.costs.overlap && c.costs.bandwidth_efficiency > 0.3 && c.costs.bandwidth_efficiency <= 1.0);
        assert!(!c.cells.is_empty() && !c.spread.is_empty());
    }
}
