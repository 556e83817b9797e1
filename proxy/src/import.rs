//! Result files from elsewhere, read into caplab's cells so they can be compared and put in the
//! notes: caplab's own `results.json` from another pod, `vllm bench serve` result JSON (one
//! file per load level; field names as vLLM 0.32's vllm/benchmarks/serve.py writes them) and
//! GuideLLM's benchmark report (one file, a benchmark per load level; as GuideLLM 0.8.1 writes
//! it with `--outputs json`). Anything else is refused with what was expected and what the
//! file has. An imported run says what its files hold: the model from the file (`model_id`,
//! GuideLLM's backend model), the GPU given with the import (no tool's file names it); a label
//! neither the files nor the import give is asked for (`ImportError::Missing`), never stored
//! blank.

use caplab_shared::stats::Dist;
use caplab_shared::{CellResult, RunView, Slo, Workload};
use serde_json::Value;

/// Why files could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file is not a result caplab can read (the message names it and says why).
    #[error("{0}")]
    File(String),
    /// A label the files do not carry and the import did not give: `field` is `gpu` or `model`.
    #[error("{message}")]
    Missing { field: &'static str, message: String },
}

/// What a file turned out to be.
pub enum Imported {
    /// A whole caplab run.
    Caplab(Box<RunView>),
    /// One load level of `vllm bench serve`, and the model its `model_id` names.
    VllmBench { cell: Box<CellResult>, model: Option<String> },
    /// A GuideLLM report: one cell per benchmark (load level), and the model its backend names.
    GuideLlm { cells: Vec<CellResult>, model: Option<String> },
}

/// A label from a file: trimmed, None when absent or blank.
fn label(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(String::from)
}

/// Reads one result file (already parsed as JSON). `name` is only for messages.
pub fn read(name: &str, v: &Value, workload: Workload) -> Result<Imported, String> {
    let Some(obj) = v.as_object() else {
        return Err(format!("{name}: not a result file: expected a JSON object, found {}", kind(v)));
    };
    if obj.contains_key("info") && obj.contains_key("cells") {
        let view: RunView = serde_json::from_value(v.clone()).map_err(|e| format!("{name}: looks like a caplab results.json but cannot be read: {e}"))?;
        return Ok(Imported::Caplab(Box::new(view)));
    }
    if obj.contains_key("benchmarks") {
        let model = obj.get("benchmarks").and_then(Value::as_array).and_then(|b| b.iter().find_map(|b| label(b.pointer("/config/backend/model"))));
        let model = model.or_else(|| label(v.pointer("/config/spec/backend/model")));
        return guidellm(name, obj, workload).map(|cells| Imported::GuideLlm { cells, model });
    }
    let has = |k: &str| obj.contains_key(k);
    if (has("backend") || has("endpoint_type")) && has("completed") && has("output_throughput") && has("duration") {
        let model = label(obj.get("model_id"));
        return vllm_bench(name, obj, workload).map(|c| Imported::VllmBench { cell: Box::new(c), model });
    }
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).take(12).collect();
    keys.sort_unstable();
    Err(format!(
        "{name}: not a recognised result: expected a caplab results.json (with info and cells), a vllm bench serve result (with backend, completed, output_throughput, duration) or a GuideLLM report (with benchmarks); this one has {}",
        if keys.is_empty() { "no keys".to_string() } else { keys.join(", ") }
    ))
}

/// Result files (name, parsed JSON) as runs: each caplab results.json its own run (labelled
/// imported), every `vllm bench serve` file together as one run (one cell per file), each
/// GuideLLM report a run (one cell per benchmark). The GPU comes from `gpu` (no tool's file but
/// caplab's names it); the model from the files, else from `model`. A label that neither gives
/// is refused with `ImportError::Missing`; so are `vllm bench serve` files naming different models.
pub fn runs(files: &[(String, Value)], gpu: Option<&str>, model: Option<&str>, workload: Workload) -> Result<Vec<RunView>, ImportError> {
    let given = |v: Option<&str>| v.map(str::trim).filter(|g| !g.is_empty()).map(String::from);
    let (gpu, model) = (given(gpu), given(model));
    let mut views = Vec::new();
    let (mut bench_cells, mut bench_files, mut bench_models) = (Vec::new(), Vec::new(), Vec::new());
    for (name, value) in files {
        match read(name, value, workload).map_err(ImportError::File)? {
            Imported::Caplab(mut view) => {
                if view.info.imported_from.is_none() {
                    view.info.imported_from = Some(format!("caplab results.json: {name} (run {} on another caplab)", view.info.id));
                }
                let what = format!("this caplab results.json ({name})");
                if view.info.spec.gpu.trim().is_empty() {
                    view.info.spec.gpu = need("gpu", gpu.clone(), &what, "it does not name its GPU")?;
                }
                if view.info.spec.model.trim().is_empty() {
                    view.info.spec.model = need("model", model.clone(), &what, "it does not name its model")?;
                }
                views.push(*view);
            }
            Imported::VllmBench { cell, model: m } => {
                bench_cells.push(*cell);
                bench_files.push(name.clone());
                if let Some(m) = m {
                    if !bench_models.contains(&m) {
                        bench_models.push(m);
                    }
                }
            }
            Imported::GuideLlm { cells, model: m } => {
                let what = format!("this GuideLLM report ({name})");
                let gpu = need("gpu", gpu.clone(), &what, "it does not say")?;
                let model = match m {
                    Some(m) => m,
                    None => need("model", model.clone(), &what, "it names no model")?,
                };
                views.push(run_of("GuideLLM", cells, &gpu, &model, workload, std::slice::from_ref(name)));
            }
        }
    }
    if !bench_cells.is_empty() {
        let what = format!("these vllm bench serve results ({})", bench_files.join(", "));
        let gpu = need("gpu", gpu.clone(), &what, "the files do not say")?;
        let model = match bench_models.as_slice() {
            [] => need("model", model.clone(), &what, "the files have no model_id")?,
            [one] => one.clone(),
            many => return Err(ImportError::File(format!("{what} name different models ({}): import each model's files on their own", many.join(", ")))),
        };
        views.push(run_of("vllm bench serve", bench_cells, &gpu, &model, workload, &bench_files));
    }
    Ok(views)
}

/// A label the files lack, from the import, or the error that asks for it (`why`: what the
/// files lack, in words).
fn need(field: &'static str, given: Option<String>, what: &str, why: &str) -> Result<String, ImportError> {
    given.ok_or_else(|| {
        let ask = if field == "gpu" { "the GPU" } else { "the model" };
        let verb = if field == "gpu" { "were measured on" } else { "were measured with" };
        let verb = if what.starts_with("this") { verb.replacen("were", "was", 1) } else { verb.to_string() };
        ImportError::Missing { field, message: format!("give {ask} {what} {verb}: {why}") }
    })
}

/// Cells another tool measured on one GPU (`files`: where they come from) as one run, labelled
/// imported from `tool`; its cells sorted by concurrency (or rate). The tool's file does not
/// say which engine served it: the target is left unrecognised.
fn run_of(tool: &str, mut cells: Vec<CellResult>, gpu: &str, model: &str, workload: Workload, files: &[String]) -> RunView {
    cells.sort_by(|a, b| a.load().level().total_cmp(&b.load().level()));
    for (i, c) in cells.iter_mut().enumerate() {
        c.cell = i as u32;
    }
    let mut lengths: Vec<u32> = cells.iter().map(|c| c.max_new_tokens).collect();
    lengths.sort_unstable();
    lengths.dedup();
    let info = caplab_shared::RunInfo {
        id: format!("imported-{}", files.first().map_or("none", String::as_str)),
        spec: caplab_shared::ExperimentSpec {
            name: format!("imported {tool} results"),
            workload,
            gpu: gpu.to_string(),
            model: model.to_string(),
            concurrency: cells.iter().map(|c| c.concurrency).collect(),
            max_new_tokens: lengths,
            ..Default::default()
        },
        target: caplab_shared::TargetInfo {
            name: "imported".into(),
            server: caplab_shared::ServerKind::OpenAiCompatible,
            evidence: vec![format!("imported from {tool} results: {}", files.join(", "))],
            models: vec![model.to_string()],
            ..Default::default()
        },
        status: caplab_shared::RunStatus::Finished,
        started_unix_ms: 0,
        message: Some(format!("imported from {} {tool} file(s), {} cell(s)", files.len(), cells.len())),
        cells_total: cells.len() as u32,
        requests_total: cells.iter().map(|c| u64::from(c.requests_ok + c.requests_failed)).sum(),
        headline: caplab_shared::decide::Headline::of(&cells),
        imported_from: Some(format!("{tool}: {}", files.join(", "))),
        shared: false,
    };
    let mut view = RunView::new(info);
    view.cells = cells;
    view
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A distribution from a per-request array (seconds, as `--save-detailed` writes them), else
/// from the summary fields (`mean_X_ms`, `median_X_ms`, `pNN_X_ms`: only the percentiles asked for
/// with `--metric-percentiles` are there).
fn dist(obj: &serde_json::Map<String, Value>, metric: &str, per_request: Option<&str>) -> Dist {
    if let Some(values) = per_request.and_then(|k| obj.get(k)).and_then(Value::as_array) {
        let mut ms: Vec<f64> = values.iter().filter_map(Value::as_f64).filter(|v| v.is_finite() && *v > 0.0).map(|s| s * 1000.0).collect();
        if !ms.is_empty() {
            return Dist::of(&mut ms);
        }
    }
    let f = |k: String| obj.get(&k).and_then(Value::as_f64);
    Dist {
        count: 0,
        mean: f(format!("mean_{metric}_ms")),
        p50: f(format!("median_{metric}_ms")).or_else(|| f(format!("p50_{metric}_ms"))),
        p90: f(format!("p90_{metric}_ms")),
        p95: f(format!("p95_{metric}_ms")),
        p99: f(format!("p99_{metric}_ms")),
        max: None,
    }
}

fn vllm_bench(name: &str, obj: &serde_json::Map<String, Value>, workload: Workload) -> Result<CellResult, String> {
    let num = |k: &str| obj.get(k).and_then(Value::as_f64);
    let completed = num("completed").filter(|c| *c >= 0.0).ok_or_else(|| format!("{name}: `completed` is not a number"))? as u32;
    let duration = num("duration").filter(|d| *d > 0.0).ok_or_else(|| format!("{name}: `duration` is not a positive number of seconds"))?;
    let failed = num("failed").map_or_else(|| num("num_prompts").map_or(0, |n| (n as u32).saturating_sub(completed)), |f| f as u32);
    let output_tokens = num("total_output_tokens").unwrap_or(0.0);
    let mut notes = vec![format!("imported from vllm bench serve ({name}): its client times from the actual send, not a schedule")];
    let max_new_tokens = match obj.get("output_lens").and_then(Value::as_array).filter(|a| !a.is_empty()) {
        Some(lens) => lens.iter().filter_map(Value::as_u64).max().unwrap_or(0) as u32,
        None => {
            notes.push("max_new_tokens taken as the mean output length (the file does not say what was asked)".into());
            (output_tokens / f64::from(completed.max(1))).round() as u32
        }
    };
    let rate = match obj.get("request_rate") {
        Some(Value::Number(n)) => n.as_f64().filter(|r| r.is_finite()),
        _ => None,
    };
    let concurrency = num("max_concurrency").map(|c| c as u32).unwrap_or_else(|| {
        if rate.is_none() {
            notes.push("no max_concurrency: every prompt was sent at once".into());
            num("num_prompts").unwrap_or(f64::from(completed)) as u32
        } else {
            0
        }
    });
    let e2e = dist(obj, "e2el", Some("latencies"));
    let ttft = dist(obj, "ttft", Some("ttfts"));
    let slo = Slo::default().effective(workload);
    let slo_missed = slo_misses(&slo, &e2e, failed, "run vllm bench serve with --metric-percentiles 50,95,99 or --save-detailed");
    Ok(CellResult {
        concurrency,
        max_new_tokens,
        rate,
        total_time_s: duration,
        requests_ok: completed,
        requests_failed: failed,
        prompt_tokens: num("total_input_tokens").unwrap_or(0.0) as u64,
        completion_tokens: output_tokens as u64,
        output_tok_s: num("output_throughput").unwrap_or(0.0),
        total_tok_s: num("total_token_throughput").unwrap_or(0.0),
        requests_per_s: num("request_throughput").unwrap_or(0.0),
        ttft,
        tpot: dist(obj, "tpot", None),
        itl: dist(obj, "itl", None),
        e2e,
        slo,
        slo_pass: slo_missed.is_empty() && completed > 0,
        slo_missed,
        notes,
        ..Default::default()
    })
}

/// How a cell measured elsewhere misses `slo` (the default SLO of its workload: the files do not
/// carry one): its p95 end to end, and any failed request. `how` says how to get a p95.
fn slo_misses(slo: &Slo, e2e: &Dist, failed: u32, how: &str) -> Vec<String> {
    let mut missed = Vec::new();
    match (e2e.p95, slo.e2e_ms) {
        (Some(v), Some(b)) if v > b => missed.push(format!("e2e p95 {v:.0} ms > {b:.0} ms")),
        (None, _) => missed.push(format!("p95 end-to-end is not in the file ({how})")),
        _ => {}
    }
    if failed > 0 {
        missed.push(format!("{failed} failed request{}", if failed == 1 { "" } else { "s" }));
    }
    missed
}

/// A GuideLLM distribution (`{mean, median, max, count, percentiles: {p50, p90, p95, p99}}`) of
/// the successful requests, scaled to ms.
fn guidellm_dist(metrics: &serde_json::Map<String, Value>, key: &str, to_ms: f64) -> Dist {
    let s = metrics.get(key).and_then(|m| m.get("successful"));
    let f = |path: &[&str]| {
        let mut v = s?;
        for p in path {
            v = v.get(p)?;
        }
        v.as_f64().filter(|x| x.is_finite()).map(|x| x * to_ms)
    };
    Dist {
        count: s.and_then(|s| s.get("count")).and_then(Value::as_u64).unwrap_or(0),
        mean: f(&["mean"]),
        p50: f(&["percentiles", "p50"]).or_else(|| f(&["median"])),
        p90: f(&["percentiles", "p90"]),
        p95: f(&["percentiles", "p95"]),
        p99: f(&["percentiles", "p99"]),
        max: f(&["max"]),
    }
}

/// The cells of a GuideLLM report, one per benchmark.
fn guidellm(name: &str, obj: &serde_json::Map<String, Value>, workload: Workload) -> Result<Vec<CellResult>, String> {
    let benchmarks = obj.get("benchmarks").and_then(Value::as_array).ok_or_else(|| format!("{name}: a GuideLLM report's `benchmarks` is not a list"))?;
    if benchmarks.is_empty() {
        return Err(format!("{name}: a GuideLLM report without benchmarks"));
    }
    let version = obj.get("metadata").and_then(|m| m.get("guidellm_version")).and_then(Value::as_str).unwrap_or("unknown version");
    let slo = Slo::default().effective(workload);
    let mut cells = Vec::new();
    for (i, b) in benchmarks.iter().enumerate() {
        let at = |what: &str| format!("{name}: benchmark {i}: {what}");
        let metrics = b.get("metrics").and_then(Value::as_object).ok_or_else(|| at("no metrics (not a GuideLLM benchmark report?)"))?;
        let total = |key: &str, kind: &str| metrics.get(key).and_then(|m| m.get(kind)).and_then(|m| m.get("total_sum")).and_then(Value::as_f64).unwrap_or(0.0);
        let count = |kind: &str| metrics.get("request_totals").and_then(|t| t.get(kind)).and_then(Value::as_u64);
        let ok = count("successful").ok_or_else(|| at("metrics.request_totals.successful is not a number"))? as u32;
        let failed = count("errored").unwrap_or(0) as u32;
        let duration = b.get("duration").and_then(Value::as_f64).filter(|d| *d > 0.0).ok_or_else(|| at("`duration` is not a positive number of seconds"))?;
        let strategy = b.get("config").and_then(|c| c.get("strategy"));
        let kind = strategy.and_then(|s| s.get("type_")).and_then(Value::as_str).unwrap_or("unknown");
        let mut notes = vec![format!("imported from GuideLLM {version} ({name}, benchmark {i}, {kind}); output tok/s = its successful output tokens ÷ its duration")];
        let num = |k: &str| strategy.and_then(|s| s.get(k)).and_then(Value::as_f64);
        let (concurrency, rate) = match kind {
            "synchronous" => (1, None),
            "concurrent" => (num("streams").or_else(|| num("max_concurrency")).unwrap_or(0.0) as u32, None),
            "constant" | "poisson" => (0, num("rate")),
            _ => {
                notes.push(format!("GuideLLM's {kind} strategy: the concurrency shown is its mean"));
                (guidellm_dist(metrics, "request_concurrency", 1.0).mean.unwrap_or(0.0).round() as u32, None)
            }
        };
        let output_tokens = total("output_token_count", "successful");
        let max_new_tokens = guidellm_dist(metrics, "output_token_count", 1.0).max.unwrap_or(0.0).round() as u32;
        let e2e = guidellm_dist(metrics, "request_latency", 1000.0);
        let slo_missed = slo_misses(&slo, &e2e, failed, "GuideLLM writes it for every benchmark: is the file cut?");
        cells.push(CellResult {
            concurrency,
            max_new_tokens: max_new_tokens.max(1),
            rate,
            total_time_s: duration,
            requests_ok: ok,
            requests_failed: failed,
            prompt_tokens: total("prompt_token_count", "successful") as u64,
            completion_tokens: output_tokens as u64,
            output_tok_s: output_tokens / duration,
            total_tok_s: (output_tokens + total("prompt_token_count", "successful")) / duration,
            requests_per_s: f64::from(ok) / duration,
            ttft: guidellm_dist(metrics, "time_to_first_token_ms", 1.0),
            tpot: guidellm_dist(metrics, "time_per_output_token_ms", 1.0),
            itl: guidellm_dist(metrics, "inter_token_latency_ms", 1.0),
            e2e,
            slo: slo.clone(),
            slo_pass: slo_missed.is_empty() && ok > 0,
            slo_missed,
            notes,
            ..Default::default()
        });
    }
    // One output length for the whole report (the longest seen): the outputs of a real dataset
    // vary, and each benchmark's own maximum would make every cell a length of its own.
    let longest = cells.iter().map(|c| c.max_new_tokens).max().unwrap_or(1);
    for c in cells.iter_mut().filter(|c| c.max_new_tokens != longest) {
        c.notes.push(format!("max_new_tokens shown as {longest}, the longest output in the report (this benchmark's longest was {})", c.max_new_tokens));
        c.max_new_tokens = longest;
    }
    // A sweep mixes load axes (synchronous, throughput, then constant rates): kept on the rate
    // axis, the benchmarks without a rate are left out and said so.
    if cells.iter().any(|c| c.rate.is_some()) && cells.iter().any(|c| c.rate.is_none()) {
        let dropped = cells.iter().filter(|c| c.rate.is_none()).count();
        cells.retain(|c| c.rate.is_some());
        if let Some(first) = cells.first_mut() {
            first.notes.push(format!("{dropped} benchmark(s) of this GuideLLM sweep without a request rate (synchronous, throughput) left out: the cells are on the rate axis"));
        }
    }
    Ok(cells)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A `vllm bench serve --max-concurrency 16 --metric-percentiles 50,95,99` result, with the
    /// keys vLLM 0.32's benchmarks/serve.py writes (values made up).
    fn bench(concurrency: u32, tok_s: f64, p95: f64) -> Value {
        json!({"date": "20261129-101010", "endpoint_type": "openai-chat", "backend": "openai-chat", "label": null,
               "model_id": "Qwen/Qwen2.5-1.5B-Instruct", "tokenizer_id": "Qwen/Qwen2.5-1.5B-Instruct", "num_prompts": 200,
               "request_rate": "inf", "burstiness": 1.0, "max_concurrency": concurrency, "duration": 42.5, "completed": 200,
               "failed": 0, "total_input_tokens": 40_000, "total_output_tokens": 25_600, "request_throughput": 4.7,
               "request_goodput": null, "output_throughput": tok_s, "total_token_throughput": tok_s * 2.5,
               "mean_ttft_ms": 80.0, "median_ttft_ms": 70.0, "std_ttft_ms": 10.0, "p50_ttft_ms": 70.0, "p95_ttft_ms": 120.0, "p99_ttft_ms": 150.0,
               "mean_tpot_ms": 20.0, "median_tpot_ms": 19.0, "p95_tpot_ms": 25.0, "mean_itl_ms": 20.0, "median_itl_ms": 19.0,
               "mean_e2el_ms": p95 * 0.8, "median_e2el_ms": p95 * 0.75, "p50_e2el_ms": p95 * 0.75, "p95_e2el_ms": p95, "p99_e2el_ms": p95 * 1.1})
    }

    #[test]
    fn a_vllm_bench_serve_result_becomes_a_cell() {
        let Imported::VllmBench { cell: c, model } = read("c16.json", &bench(16, 602.4, 2400.0), Workload::Chat).unwrap() else { panic!("a vllm bench file") };
        assert_eq!(model.as_deref(), Some("Qwen/Qwen2.5-1.5B-Instruct"), "the model from model_id");
        assert_eq!((c.concurrency, c.max_new_tokens, c.requests_ok, c.requests_failed), (16, 128, 200, 0));
        assert_eq!(c.output_tok_s, 602.4);
        assert_eq!((c.e2e.p95, c.ttft.p95, c.ttft.p50), (Some(2400.0), Some(120.0), Some(70.0)));
        assert!(c.slo_pass, "2.4 s is within chat's 3 s: {:?}", c.slo_missed);
        let Imported::VllmBench { cell: slow, .. } = read("c64.json", &bench(64, 1500.0, 4100.0), Workload::Chat).unwrap() else { panic!() };
        assert!(!slow.slo_pass && slow.slo_missed[0].contains("e2e p95 4100 ms > 3000 ms"));
        // Without p95 the SLO cannot be checked, and the cell says how to get it.
        let mut no_p95 = bench(8, 300.0, 1000.0);
        no_p95.as_object_mut().unwrap().remove("p95_e2el_ms");
        let Imported::VllmBench { cell: c, .. } = read("c8.json", &no_p95, Workload::Chat).unwrap() else { panic!() };
        assert!(!c.slo_pass && c.slo_missed[0].contains("--metric-percentiles"), "{:?}", c.slo_missed);
        // Per-request latencies (--save-detailed) give exact percentiles.
        let mut detailed = bench(8, 300.0, 1000.0);
        detailed["latencies"] = json!((1..=100).map(|i| f64::from(i) / 100.0).collect::<Vec<_>>());
        let Imported::VllmBench { cell: c, .. } = read("d.json", &detailed, Workload::Chat).unwrap() else { panic!() };
        assert!((c.e2e.p95.unwrap() - 950.5).abs() < 1e-6, "{:?}", c.e2e.p95);
    }

    #[test]
    fn a_guidellm_report_becomes_one_cell_per_benchmark() {
        // Captured from GuideLLM 0.8.1 against caplab's simulator: concurrent@4, 20 requests of 64 tokens.
        let v: Value = serde_json::from_str(include_str!("../../tests/fixtures/guidellm_0.8.1_concurrent4.json")).unwrap();
        let Imported::GuideLlm { cells, model } = read("gl.json", &v, Workload::Chat).unwrap() else { panic!("a GuideLLM report") };
        assert_eq!(model.as_deref(), Some("sim-qwen2.5-1.5b"), "the model its backend names");
        assert_eq!(cells.len(), 1);
        let c = &cells[0];
        assert_eq!((c.concurrency, c.rate, c.max_new_tokens, c.requests_ok, c.requests_failed), (4, None, 64, 20, 0));
        assert_eq!(c.completion_tokens, 1280);
        assert!((c.output_tok_s - 1280.0 / 4.684_752_225_875_854_5).abs() < 1e-6, "{}", c.output_tok_s);
        assert!((c.e2e.p95.unwrap() - 930.198_431_015_014_6).abs() < 1e-6, "request latency is in seconds there, ms here");
        assert!((c.ttft.p50.unwrap() - 60.404_300_689_697_266).abs() < 1e-9, "TTFT is in ms there");
        assert!(c.itl.p99.is_some() && c.slo_pass, "{:?}", c.slo_missed);
        assert!(c.notes[0].contains("GuideLLM 0.8.1"), "{:?}", c.notes);
        // As a run: the GPU must be given, and the run says where it comes from.
        let e = runs(&[("gl.json".into(), v.clone())], None, None, Workload::Chat).err().unwrap();
        assert!(matches!(&e, ImportError::Missing { field: "gpu", message } if message == "give the GPU this GuideLLM report (gl.json) was measured on: it does not say"), "{e}");
        let r = runs(&[("gl.json".into(), v)], Some("L4 pod"), None, Workload::Chat).unwrap();
        assert_eq!(r[0].info.imported_from.as_deref(), Some("GuideLLM: gl.json"));
        assert_eq!((r[0].info.spec.gpu.as_str(), r[0].info.spec.model.as_str()), ("L4 pod", "sim-qwen2.5-1.5b"));
    }

    #[test]
    fn a_guidellm_sweep_is_kept_on_the_rate_axis_with_one_length() {
        let v: Value = serde_json::from_str(include_str!("../../tests/fixtures/guidellm_0.8.1_concurrent4.json")).unwrap();
        let mut report = v.clone();
        let base = v["benchmarks"][0].clone();
        let with = |kind: &str, rate: Option<f64>, max_out: f64| {
            let mut b = base.clone();
            b["config"]["strategy"] = json!({"type_": kind, "rate": rate});
            b["metrics"]["output_token_count"]["successful"]["max"] = json!(max_out);
            b
        };
        report["benchmarks"] = json!([with("synchronous", None, 60.0), with("throughput", None, 64.0), with("constant", Some(2.0), 61.0), with("constant", Some(4.0), 64.0)]);
        let Imported::GuideLlm { cells, .. } = read("sweep.json", &report, Workload::Chat).unwrap() else { panic!() };
        assert_eq!(cells.iter().map(|c| c.rate).collect::<Vec<_>>(), [Some(2.0), Some(4.0)]);
        assert!(cells.iter().all(|c| c.max_new_tokens == 64), "one length for the report");
        assert!(cells[0].notes.iter().any(|n| n.contains("2 benchmark(s) of this GuideLLM sweep")), "{:?}", cells[0].notes);
    }

    #[test]
    fn other_files_are_refused_with_what_is_wrong() {
        let e = read("x.json", &json!([1, 2]), Workload::Chat).err().unwrap();
        assert_eq!(e, "x.json: not a result file: expected a JSON object, found an array");
        let e = read("guide.json", &json!({"benchmarks": []}), Workload::Chat).err().unwrap();
        assert_eq!(e, "guide.json: a GuideLLM report without benchmarks");
        let e = read("guide.json", &json!({"benchmarks": [{"duration": 3.0}]}), Workload::Chat).err().unwrap();
        assert!(e.contains("benchmark 0: no metrics"), "{e}");
        let e = read("other.json", &json!({"foo": 1, "bar": 2}), Workload::Chat).err().unwrap();
        assert!(e.contains("not a recognised result") && e.contains("this one has bar, foo"), "{e}");
        let mut bad = bench(8, 1.0, 1.0);
        bad["duration"] = json!(0);
        assert!(read("b.json", &bad, Workload::Chat).err().unwrap().contains("`duration` is not a positive number"));
    }

    #[test]
    fn an_imported_run_takes_its_model_from_the_files_and_asks_for_what_they_lack() {
        let files = |b: Vec<Value>| b.into_iter().enumerate().map(|(i, v)| (format!("c{i}.json"), v)).collect::<Vec<_>>();
        let r = runs(&files(vec![bench(8, 300.0, 900.0), bench(16, 600.0, 1900.0)]), Some("A100 pod"), None, Workload::Chat).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].info.spec.model, "Qwen/Qwen2.5-1.5B-Instruct", "from model_id, never blank");
        assert_eq!(r[0].info.target.server, caplab_shared::ServerKind::OpenAiCompatible, "the file names no engine");
        // The model given with the import fills only what the files lack.
        let r = runs(&files(vec![bench(8, 300.0, 900.0)]), Some("A100 pod"), Some("other"), Workload::Chat).unwrap();
        assert_eq!(r[0].info.spec.model, "Qwen/Qwen2.5-1.5B-Instruct");
        let mut anonymous = bench(8, 300.0, 900.0);
        anonymous.as_object_mut().unwrap().remove("model_id");
        let e = runs(&files(vec![anonymous.clone()]), Some("A100 pod"), None, Workload::Chat).err().unwrap();
        match &e {
            ImportError::Missing { field, message } => {
                assert_eq!(*field, "model");
                assert_eq!(message, "give the model these vllm bench serve results (c0.json) were measured with: the files have no model_id");
            }
            other => panic!("{other}"),
        }
        let r = runs(&files(vec![anonymous]), Some("A100 pod"), Some("  my-model "), Workload::Chat).unwrap();
        assert_eq!(r[0].info.spec.model, "my-model");
        let e = runs(&files(vec![bench(8, 300.0, 900.0)]), Some("  "), None, Workload::Chat).err().unwrap();
        assert!(matches!(e, ImportError::Missing { field: "gpu", .. }), "a blank GPU is no GPU");
        // Two models in one set of files.
        let mut other = bench(16, 600.0, 1900.0);
        other["model_id"] = json!("meta-llama/Llama-3.1-8B");
        let e = runs(&files(vec![bench(8, 300.0, 900.0), other]), Some("pod"), None, Workload::Chat).err().unwrap();
        assert!(matches!(&e, ImportError::File(m) if m.contains("name different models")), "{e}");
        // A caplab results.json without a model or GPU is asked for them too.
        let mut view = r[0].clone();
        view.info.spec.model = String::new();
        view.info.spec.gpu = String::new();
        let json = serde_json::to_value(&view).unwrap();
        let e = runs(&[("results.json".into(), json.clone())], None, None, Workload::Chat).err().unwrap();
        assert!(matches!(e, ImportError::Missing { field: "gpu", .. }));
        let e = runs(&[("results.json".into(), json.clone())], Some("pod"), None, Workload::Chat).err().unwrap();
        assert!(matches!(e, ImportError::Missing { field: "model", .. }));
        let ok = runs(&[("results.json".into(), json)], Some("pod"), Some("m"), Workload::Chat).unwrap();
        assert_eq!((ok[0].info.spec.gpu.as_str(), ok[0].info.spec.model.as_str()), ("pod", "m"));
    }
}
