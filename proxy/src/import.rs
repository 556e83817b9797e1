//! Result files from elsewhere, read into caplab's cells so they can be compared and put in the
//! notes: caplab's own `results.json` from another pod, and `vllm bench serve` result JSON (one
//! file per load level; field names as vLLM 0.32's vllm/benchmarks/serve.py writes them).
//! Anything else is refused with what was expected and what the file has.

use caplab_shared::stats::Dist;
use caplab_shared::{CellResult, RunView, Slo, Workload};
use serde_json::Value;

/// What a file turned out to be.
pub enum Imported {
    /// A whole caplab run.
    Caplab(Box<RunView>),
    /// One load level of `vllm bench serve`.
    VllmBench(Box<CellResult>),
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
        return Err(format!("{name}: a GuideLLM report: not read yet (caplab reads its own results.json and vllm bench serve results)"));
    }
    let has = |k: &str| obj.contains_key(k);
    if (has("backend") || has("endpoint_type")) && has("completed") && has("output_throughput") && has("duration") {
        return vllm_bench(name, obj, workload).map(|c| Imported::VllmBench(Box::new(c)));
    }
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).take(12).collect();
    keys.sort_unstable();
    Err(format!(
        "{name}: not a recognised result: expected a caplab results.json (with info and cells) or a vllm bench serve result (with backend, completed, output_throughput, duration); this one has {}",
        if keys.is_empty() { "no keys".to_string() } else { keys.join(", ") }
    ))
}

/// `vllm bench serve` results of one GPU (one file per load level) as one run, labelled
/// imported; its cells sorted by concurrency (or rate).
pub fn run_of(mut cells: Vec<CellResult>, gpu: &str, workload: Workload, files: &[String]) -> RunView {
    cells.sort_by(|a, b| a.rate.unwrap_or(f64::from(a.concurrency)).total_cmp(&b.rate.unwrap_or(f64::from(b.concurrency))));
    for (i, c) in cells.iter_mut().enumerate() {
        c.cell = i as u32;
    }
    let mut lengths: Vec<u32> = cells.iter().map(|c| c.max_new_tokens).collect();
    lengths.sort_unstable();
    lengths.dedup();
    let info = caplab_shared::RunInfo {
        id: format!("imported-{}", files.first().map_or("none", String::as_str)),
        spec: caplab_shared::ExperimentSpec {
            name: "imported vllm bench serve results".into(),
            workload,
            gpu: gpu.to_string(),
            concurrency: cells.iter().map(|c| c.concurrency).collect(),
            max_new_tokens: lengths,
            ..Default::default()
        },
        target: caplab_shared::TargetInfo {
            name: "imported".into(),
            server: caplab_shared::ServerKind::Vllm,
            evidence: vec![format!("imported from vllm bench serve results: {}", files.join(", "))],
            ..Default::default()
        },
        status: caplab_shared::RunStatus::Finished,
        started_unix_ms: 0,
        message: Some(format!("imported from {} vllm bench serve file(s)", files.len())),
        cells_total: cells.len() as u32,
        requests_total: cells.iter().map(|c| u64::from(c.requests_ok + c.requests_failed)).sum(),
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
    let mut slo_missed = Vec::new();
    match (e2e.p95, slo.e2e_ms) {
        (Some(v), Some(b)) if v > b => slo_missed.push(format!("e2e p95 {v:.0} ms > {b:.0} ms")),
        (None, _) => slo_missed.push("p95 end-to-end is not in the file (run vllm bench serve with --metric-percentiles 50,95,99 or --save-detailed)".into()),
        _ => {}
    }
    if failed > 0 {
        slo_missed.push(format!("{failed} failed request{}", if failed == 1 { "" } else { "s" }));
    }
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
        let Imported::VllmBench(c) = read("c16.json", &bench(16, 602.4, 2400.0), Workload::Chat).unwrap() else { panic!("a vllm bench file") };
        assert_eq!((c.concurrency, c.max_new_tokens, c.requests_ok, c.requests_failed), (16, 128, 200, 0));
        assert_eq!(c.output_tok_s, 602.4);
        assert_eq!((c.e2e.p95, c.ttft.p95, c.ttft.p50), (Some(2400.0), Some(120.0), Some(70.0)));
        assert!(c.slo_pass, "2.4 s is within chat's 3 s: {:?}", c.slo_missed);
        let Imported::VllmBench(slow) = read("c64.json", &bench(64, 1500.0, 4100.0), Workload::Chat).unwrap() else { panic!() };
        assert!(!slow.slo_pass && slow.slo_missed[0].contains("e2e p95 4100 ms > 3000 ms"));
        // Without p95 the SLO cannot be checked, and the cell says how to get it.
        let mut no_p95 = bench(8, 300.0, 1000.0);
        no_p95.as_object_mut().unwrap().remove("p95_e2el_ms");
        let Imported::VllmBench(c) = read("c8.json", &no_p95, Workload::Chat).unwrap() else { panic!() };
        assert!(!c.slo_pass && c.slo_missed[0].contains("--metric-percentiles"), "{:?}", c.slo_missed);
        // Per-request latencies (--save-detailed) give exact percentiles.
        let mut detailed = bench(8, 300.0, 1000.0);
        detailed["latencies"] = json!((1..=100).map(|i| f64::from(i) / 100.0).collect::<Vec<_>>());
        let Imported::VllmBench(c) = read("d.json", &detailed, Workload::Chat).unwrap() else { panic!() };
        assert!((c.e2e.p95.unwrap() - 950.5).abs() < 1e-6, "{:?}", c.e2e.p95);
    }

    #[test]
    fn other_files_are_refused_with_what_is_wrong() {
        let e = read("x.json", &json!([1, 2]), Workload::Chat).err().unwrap();
        assert_eq!(e, "x.json: not a result file: expected a JSON object, found an array");
        let e = read("guide.json", &json!({"benchmarks": []}), Workload::Chat).err().unwrap();
        assert!(e.contains("GuideLLM") && e.contains("not read yet"), "{e}");
        let e = read("other.json", &json!({"foo": 1, "bar": 2}), Workload::Chat).err().unwrap();
        assert!(e.contains("not a recognised result") && e.contains("this one has bar, foo"), "{e}");
        let mut bad = bench(8, 1.0, 1.0);
        bad["duration"] = json!(0);
        assert!(read("b.json", &bad, Workload::Chat).err().unwrap().contains("`duration` is not a positive number"));
    }
}
