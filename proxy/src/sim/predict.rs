//! "What would this run do on another GPU?": each closed-loop cell of a finished, measured run
//! replayed on the virtual clock (`replay`) with the calibrated engine costs and another GPU
//! profile's roofline: the same concurrency, requests, prompt length (the server's count) and
//! prefix-cache share, the same output length. Every number carries the interval the
//! calibration's published leave-one-model-out errors give for its concurrency band.

use caplab_shared::prediction::{PredictedCell, Prediction};
use caplab_shared::{CellResult, RunView};

use super::calibrate::{BandError, Calibration};
use super::profile::{self, Deployment, EngineArgs, EngineCosts, Gpu, Model};
use super::replay::{replay, CellLoad, Replayed};
use super::scheduler::{Limits, Timing};

/// One cell replayed on `d` with `costs`.
pub fn replay_cell(d: &Deployment, costs: &EngineCosts, load: &CellLoad) -> Replayed {
    let d = d.clone().with_costs(costs.clone());
    let limits = Limits { max_num_seqs: d.max_num_seqs, max_num_batched_tokens: d.max_num_batched_tokens, kv_blocks: d.kv_blocks };
    replay(limits, &Timing::Roofline(Box::new(d)), &costs.frontend, costs.output_lag_steps, load)
}

/// What bounds a replayed cell: the API server's one core, the engine core's CPU, or the GPU.
pub fn bound_by(r: &Replayed) -> &'static str {
    let (g, e, f) = (r.gpu_busy_s, r.engine_cpu_busy_s, r.frontend_busy_s);
    if f >= 0.85 * r.duration_s && f >= g {
        "front end"
    } else if e > g {
        "engine CPU"
    } else {
        "GPU"
    }
}

/// The GPU profiles a prediction can be made for (those with a roofline; not the CPU's).
pub fn gpus() -> Vec<Gpu> {
    profile::gpus().into_iter().filter(|g| g.step_overhead_ms.is_none()).collect()
}

/// The model profile a run's model name names: `key` when given, else the profile whose key or
/// served name the run's model contains ("/tmp/model-qwen2.5-1.5b", "Qwen/Qwen2.5-1.5B-Instruct").
fn model_for(run_model: &str, key: Option<&str>) -> Result<Model, String> {
    if let Some(k) = key.filter(|k| !k.is_empty()) {
        return profile::model(k);
    }
    let lower = run_model.to_ascii_lowercase();
    let mut found: Vec<Model> = profile::models().into_iter().filter(|m| lower.contains(&m.key) || lower.contains(&m.served_name.to_ascii_lowercase())).collect();
    // "qwen2.5-1.5b" also contains no other key, but a name could contain two: the longest wins.
    found.sort_by_key(|m| std::cmp::Reverse(m.key.len()));
    found.into_iter().next().ok_or_else(|| {
        let keys: Vec<String> = profile::models().into_iter().map(|m| m.key).collect();
        format!("no model profile matches the run's model {run_model:?}: name one with model= ({})", keys.join(", "))
    })
}

/// Why a prediction was refused: the request's field at fault ("gpu", "model") or the run.
#[derive(Debug, PartialEq)]
pub enum Refused {
    Run(String),
    Field(&'static str, String),
}

/// Predicts `view`'s grid on GPU `gpu_key` (model shapes from `model_key`, else found from the
/// run's model name) with `cal`'s costs. Refused, with the reason, for a run that is simulated,
/// not finished, in open loop, or whose model no profile has, and for a GPU it does not fit.
pub fn predict(view: &RunView, gpu_key: &str, model_key: Option<&str>, cal: &Calibration) -> Result<Prediction, Refused> {
    let info = &view.info;
    if info.target.simulated {
        return Err(Refused::Run("this run's numbers are the simulator's already: predict from a run measured on a real server".into()));
    }
    if !info.status.is_terminal() {
        return Err(Refused::Run("the run is still going: predict from it once it has ended".into()));
    }
    if info.spec.mode != caplab_shared::LoadMode::Closed {
        return Err(Refused::Run("predictions replay closed-loop grids (concurrency × max_new_tokens); this run is open loop".into()));
    }
    let gpu = gpus().into_iter().find(|g| g.key == gpu_key).ok_or_else(|| {
        let keys: Vec<String> = gpus().into_iter().map(|g| g.key).collect();
        Refused::Field("gpu", format!("unknown GPU {gpu_key:?}; the profiles are: {}", keys.join(", ")))
    })?;
    let model = model_for(&info.spec.model, model_key).map_err(|why| Refused::Field("model", why))?;
    let args = EngineArgs { max_model_len: Some(info.target.max_model_len.unwrap_or(4096).min(model.max_context)), ..EngineArgs::default() };
    let deployment = Deployment::new(gpu.clone(), model.clone(), &args).map_err(|why| Refused::Field("gpu", format!("vLLM would not start: {why}")))?;
    let cells: Vec<&CellResult> = view.cells.iter().filter(|c| c.rate.is_none() && c.concurrency > 0 && c.requests_ok > 0).collect();
    if cells.is_empty() {
        return Err(Refused::Run("the run has no finished cell with a successful request to replay".into()));
    }
    let predicted = cells.iter().map(|c| predict_cell(c, &deployment, cal)).collect();
    let mut caveats = vec![
        format!(
            "PREDICTED, not measured: caplab's simulator with the engine costs calibrated on vLLM {} (H200 anchors) and {}'s roofline (memory, bandwidth, bf16 peak from data/profiles/gpus.toml).",
            cal.engine_version, gpu.name
        ),
        format!("Each cell replays the measured one: its concurrency, requests, prompt length as the server counted it and share served from the prefix cache, its output length, with {}'s shapes.", model.served_name),
    ];
    if cal.prediction_error.is_empty() {
        caveats.push("This calibration publishes no leave-one-out error: the predictions carry no interval.".into());
    } else {
        let bands: Vec<String> = cal.prediction_error.iter().map(|b| format!("{} ({} cells)", b.band, b.cells)).collect();
        caveats.push(format!(
            "The shaded boxes and ranges are the leave-one-model-out errors of the calibration in the cell's concurrency band ({}): how far predictions of a model left out of the fit fell from its measurements on the H200. Nothing widens them for another GPU.",
            bands.join(", ")
        ));
    }
    if !gpu.key.starts_with("h200") {
        caveats.push(format!(
            "No measurement has checked {}: not its efficiencies, not its host CPU (the engine and API-server costs are the H200 host's), not vLLM's kernels on it.",
            gpu.name
        ));
    }
    if cells.iter().any(|c| c.requests_ok > 0 && c.prompt_tokens / u64::from(c.requests_ok) >= 512) && !cal.caveats.is_empty() {
        caveats.push(cal.caveats[0].clone());
    }
    let mut p = Prediction {
        run_id: info.id.clone(),
        gpu_key: gpu.key.clone(),
        gpu: gpu.name.clone(),
        model: model.served_name.clone(),
        run_model: info.spec.model.clone(),
        measured_gpu: info.spec.gpu.clone(),
        engine: format!("vLLM {}", cal.engine_version),
        usd_per_hour: Some(gpu.price_usd_h).filter(|p| *p > 0.0),
        cells: predicted,
        caveats,
        frontier_svg: String::new(),
    };
    let title = format!("{} measured on {} · PREDICTED on {}", info.spec.model, info.spec.gpu, gpu.name);
    p.frontier_svg = caplab_shared::frontier::svg_with_prediction(&view.cells, &p, &title);
    Ok(p)
}

/// The prediction as a run the notes can compare with the measured one: `view` with each
/// cell's numbers replaced by the predicted ones (its SLO judged on them), labelled
/// "PREDICTED <GPU>" and marked simulated, so no sentence about it reads as measured.
pub fn as_run(view: &RunView, p: &Prediction) -> RunView {
    let mut run = view.clone();
    run.info.id = format!("{}-predicted-{}", view.info.id, p.gpu_key);
    run.info.spec.gpu = format!("PREDICTED {}", p.gpu);
    run.info.target.simulated = true;
    run.info.imported_from = None;
    run.ticks.clear();
    run.server.clear();
    run.gpu.clear();
    run.cells = view
        .cells
        .iter()
        .filter_map(|c| {
            let q = p.cells.iter().find(|q| q.concurrency == c.concurrency && q.max_new_tokens == c.max_new_tokens && q.input_tokens == c.input_tokens)?;
            let mut cell = c.clone();
            let scale = if c.output_tok_s > 0.0 { q.output_tok_s / c.output_tok_s } else { 1.0 };
            cell.output_tok_s = q.output_tok_s;
            cell.total_tok_s = c.total_tok_s * scale;
            cell.requests_per_s = c.requests_per_s * scale;
            cell.total_time_s = if scale > 0.0 { c.total_time_s / scale } else { c.total_time_s };
            cell.e2e.p95 = Some(q.e2e_p95_ms);
            cell.ttft.p95 = Some(q.ttft_p95_ms);
            cell.tpot.p95 = Some(q.tpot_p95_ms);
            // Only the p95s were predicted: the other percentiles are left out, not carried over.
            for d in [&mut cell.e2e, &mut cell.ttft, &mut cell.tpot] {
                (d.p50, d.p90, d.p99, d.mean, d.max) = (None, None, None, None, None);
            }
            cell.itl = Default::default();
            cell.server = None;
            cell.gpu = None;
            cell.by_turn.clear();
            cell.slo_missed = caplab_shared::result::slo_misses(&c.slo, c.requests_ok, c.requests_failed, [Some(q.e2e_p95_ms), Some(q.ttft_p95_ms), Some(q.tpot_p95_ms)]);
            cell.slo_pass = cell.slo_missed.is_empty();
            cell.good_requests = if cell.slo_pass { c.requests_ok } else { 0 };
            cell.goodput_rps = if cell.slo_pass { cell.requests_per_s } else { 0.0 };
            cell.notes = vec![format!("PREDICTED on {}: the calibrated simulator's replay of the measured cell, not a measurement", p.gpu)];
            Some(cell)
        })
        .collect();
    run
}

fn predict_cell(c: &CellResult, d: &Deployment, cal: &Calibration) -> PredictedCell {
    let ok = c.requests_ok.max(1);
    let prompt = ((c.prompt_tokens as f64 / f64::from(ok)).round() as u32).max(1);
    let hit = c.server.as_ref().and_then(|s| s.prefix_cache_hit_rate).unwrap_or(0.0).clamp(0.0, 1.0);
    let cached = (f64::from(prompt) * hit).floor() as u32;
    // The output length each request had (ended early where the server could not be made to go on).
    let out = if c.completion_tokens > 0 { ((c.completion_tokens as f64 / f64::from(ok)).round() as u32).clamp(1, c.max_new_tokens.max(1)) } else { c.max_new_tokens };
    let load = CellLoad { concurrency: c.concurrency, requests: c.requests_ok + c.requests_failed, prompt_tokens: prompt, cached_tokens: cached, max_new_tokens: out };
    let r = replay_cell(d, &cal.costs, &load);
    let p95 = |v: &[f64]| caplab_shared::stats::percentile(&mut v.to_vec(), 95.0).unwrap_or(0.0) * 1e3;
    let band = cal.error_at(c.concurrency);
    let range = |pred: f64, f: fn(&BandError) -> (f64, f64)| band.map(|b| BandError::interval(pred, f(b))).filter(|(lo, hi)| lo.is_finite() && hi.is_finite());
    let (tok, e2e, ttft, tpot) = (r.output_tok_s(), p95(&r.e2e_s), p95(&r.ttft_s), p95(&r.tpot_s));
    PredictedCell {
        concurrency: c.concurrency,
        max_new_tokens: c.max_new_tokens,
        input_tokens: c.input_tokens,
        prompt_tokens: prompt,
        cached_tokens: cached,
        output_tok_s: tok,
        output_tok_s_range: range(tok, |b| b.output_tok_s),
        e2e_p95_ms: e2e,
        e2e_p95_range: range(e2e, |b| b.e2e_p95_ms),
        ttft_p95_ms: ttft,
        ttft_p95_range: range(ttft, |b| b.ttft_p95_ms),
        tpot_p95_ms: tpot,
        tpot_p95_range: range(tpot, |b| b.tpot_p95_ms),
        bound_by: bound_by(&r).to_string(),
        measured_output_tok_s: c.output_tok_s,
        measured_e2e_p95_ms: c.e2e.p95,
    }
}
