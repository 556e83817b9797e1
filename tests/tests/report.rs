//! The notes, filled from two simulated GPUs (the RTX 2000 Ada and the A100 80GB that
//! `caplab serve` offers by default, both with Qwen2.5-1.5B): a chat and a batch grid on each,
//! then the notes from the dashboard's API and from `caplab report` on the run folders.

use std::time::Duration;

use caplab_tests::{caplab_bin, client, start_run, wait_for_end, Caplab};
use serde_json::json;

#[tokio::test]
async fn two_simulated_gpus_fill_the_notes_from_the_api_and_from_caplab_report() {
    let caplab = Caplab::start(&[]).await.unwrap();
    let c = client();
    let mut ids = Vec::new();
    for target in ["sim-rtx2000-ada-16gb-qwen2.5-1.5b", "sim-a100-80gb-qwen2.5-1.5b"] {
        for workload in ["chat", "batch"] {
            let spec = json!({"workload": workload, "target": target, "concurrency": [2, 8], "max_new_tokens": [32], "requests": 8});
            let id = start_run(&c, &caplab, spec).await.unwrap();
            let view = wait_for_end(&c, &caplab, &id, Duration::from_secs(120)).await.unwrap();
            assert!(view.cells.iter().all(|cell| cell.requests_ok == 8), "{target} {workload}: {:?}", view.cells);
            ids.push(id);
        }
    }
    let resp = c.get(caplab.api("report")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-disposition"].to_str().unwrap().contains("caplab_notes.md"));
    let md = resp.text().await.unwrap();
    assert!(!md.contains("{{"), "{md}");
    // Every table cell is filled; the GPUs are ordered by measured capacity (the simulated A100
    // beats the RTX 2000: it is B), and each speedup reads "B is N× A" with N ≥ 1.
    let rtx = "NVIDIA RTX 2000 Ada 16GB · Qwen/Qwen2.5-1.5B-Instruct (simulated)";
    let a100 = "NVIDIA A100 80GB SXM · Qwen/Qwen2.5-1.5B-Instruct (simulated)";
    assert!(md.contains(&format!("# Day 003 – GPU Scaling Notes ({rtx} vs {a100})")), "{md}");
    assert!(md.contains(&format!("## When to Recommend {a100}")), "{md}");
    for line in md.lines().filter(|l| l.starts_with("| Peak throughput")) {
        let cell = line.rsplit('|').nth(1).unwrap().trim();
        let n: f64 = cell.strip_prefix("B is ").and_then(|r| r.strip_suffix("× A")).unwrap_or_else(|| panic!("B is N× A: {line}")).parse().unwrap();
        assert!(n >= 1.0, "{line}");
    }
    assert!(!md.contains("n/a"), "{md}");
    // Both grids' highest cells (c8) met the SLO: neither GPU's limit is known, so no
    // concurrency ratio is claimed (the notes once said 1.0x) and the notes say why.
    assert!(md.lines().any(|l| l.starts_with("| Max stable concurrency | ≥ 8 (the grid's highest) | ≥ 8 (the grid's highest) | — |")), "{md}");
    assert!(md.contains("## Not measured") && md.contains("neither maximum is known"), "{md}");
    assert!(md.contains("Cost per 1M output tokens (USD) | $"), "{md}");
    assert!(md.contains("SIMULATED"), "{md}");

    // The same notes from the run folders, with no server.
    let dirs: Vec<std::path::PathBuf> = ids.iter().map(|id| caplab.data_dir.join(id)).collect();
    let out = caplab.data_dir.join("notes.md");
    let status = tokio::process::Command::new(caplab_bin()).arg("report").args(&dirs).arg("--out").arg(&out).status().await.unwrap();
    assert!(status.success());
    let from_files = std::fs::read_to_string(&out).unwrap();
    let tables = |s: &str| s.lines().filter(|l| l.starts_with('|')).map(String::from).collect::<Vec<_>>();
    assert_eq!(tables(&from_files).len(), tables(&md).len());
    assert!(from_files.contains("| Max stable concurrency |"));

    // A GPU measured elsewhere with `vllm bench serve` (one file per concurrency), beside the
    // RTX 2000 runs of this pod: its chat column comes from the files, labelled imported.
    let bench = |c: u32, tok_s: f64, p95: f64| {
        json!({"endpoint_type": "openai-chat", "backend": "openai-chat", "model_id": "Qwen/Qwen2.5-1.5B-Instruct", "num_prompts": 64,
               "request_rate": "inf", "max_concurrency": c, "duration": 10.0, "completed": 64, "failed": 0, "total_input_tokens": 6400,
               "total_output_tokens": 2048, "request_throughput": 6.4, "output_throughput": tok_s, "total_token_throughput": tok_s * 4.0,
               "mean_ttft_ms": 40.0, "median_ttft_ms": 38.0, "p95_ttft_ms": 60.0, "mean_e2el_ms": p95 * 0.8, "median_e2el_ms": p95 * 0.7, "p95_e2el_ms": p95})
    };
    let files: Vec<std::path::PathBuf> = [(8, 2500.0, 400.0), (64, 9000.0, 2600.0), (256, 12000.0, 4500.0)]
        .iter()
        .map(|&(c, t, p)| {
            let f = caplab.data_dir.join(format!("bench_c{c}.json"));
            std::fs::write(&f, bench(c, t, p).to_string()).unwrap();
            f
        })
        .collect();
    let rtx_dirs: Vec<std::path::PathBuf> = dirs[..2].to_vec();
    let out = caplab.data_dir.join("notes-imported.md");
    let run = tokio::process::Command::new(caplab_bin())
        .arg("report")
        .args(&rtx_dirs)
        .args(&files)
        .args(["--imported-gpu", "A100 80GB (another pod)", "--imported-workload", "chat", "--out"])
        .arg(&out)
        .output()
        .await
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let md = std::fs::read_to_string(&out).unwrap();
    assert!(md.contains("vs A100 80GB (another pod))"), "{md}");
    assert!(md.contains("| Max stable concurrency |") && md.contains("| ≥ 64 (c256 reached only 64 in flight) |"), "c64 is the imported GPU's highest cell within 3 s; c256 with 64 prompts never had more in flight: {md}");
    assert!(md.contains("IMPORTED: measured by another tool (vllm bench serve: bench_c8.json"), "{md}");
    assert!(md.contains("## Not measured") && md.contains("- no batch run on A100 80GB (another pod)"), "{md}");
    assert!(!md.contains("n/a"), "{md}");
    // Without the GPU label the files are refused, saying why.
    let refused = tokio::process::Command::new(caplab_bin()).arg("report").args(&files).output().await.unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("give --imported-gpu LABEL"));
    let not_a_result = caplab.data_dir.join("random.json");
    std::fs::write(&not_a_result, r#"{"hello": "world"}"#).unwrap();
    let refused = tokio::process::Command::new(caplab_bin()).arg("report").arg(&not_a_result).output().await.unwrap();
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not a recognised result"), "{}", String::from_utf8_lossy(&refused.stderr));

    // The same files dropped on the page become an imported run of this pod's list.
    let dropped: Vec<serde_json::Value> = [(8, 2500.0, 400.0), (64, 9000.0, 2600.0), (256, 12000.0, 4500.0)]
        .iter()
        .map(|&(cc, t, p)| json!({"name": format!("bench_c{cc}.json"), "text": bench(cc, t, p).to_string()}))
        .collect();
    let resp = c.post(caplab.api("import")).json(&json!({"gpu": "A100 80GB (another pod)", "workload": "chat", "files": dropped})).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let imported: Vec<caplab_shared::RunInfo> = resp.json().await.unwrap();
    assert_eq!(imported.len(), 1);
    let a100_id = imported[0].id.clone();
    assert!(imported[0].imported_from.as_deref().unwrap().starts_with("vllm bench serve: bench_c8.json"), "{:?}", imported[0].imported_from);
    assert_eq!(imported[0].spec.model, "Qwen/Qwen2.5-1.5B-Instruct", "the model from the files' model_id");
    let h = imported[0].headline.clone().expect("a headline");
    assert_eq!((h.max_stable.as_deref(), h.best.as_deref()), (Some("≥ 64 (c256 reached only 64 in flight)"), Some("c64 × 32")), "{h:?}");
    // A GuideLLM report (96 KB: larger than an experiment's body limit) is read too.
    let guidellm = include_str!("../fixtures/guidellm_0.8.1_concurrent4.json");
    let resp = c.post(caplab.api("import")).json(&json!({"gpu": "L4 pod", "workload": "chat", "files": [{"name": "gl.json", "text": guidellm}]})).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let gl: Vec<caplab_shared::RunInfo> = resp.json().await.unwrap();
    assert_eq!(gl[0].imported_from.as_deref(), Some("GuideLLM: gl.json"));
    let listed: Vec<caplab_shared::RunInfo> = c.get(caplab.api("runs")).send().await.unwrap().json().await.unwrap();
    assert!(listed.iter().any(|r| r.id == gl[0].id && r.spec.gpu == "L4 pod"), "imported runs are listed");
    // What cannot be read is refused, naming the file and what is wrong.
    let refuse = |body: serde_json::Value| {
        let c = c.clone();
        let url = caplab.api("import");
        async move {
            let r = c.post(url).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 422);
            let b: serde_json::Value = r.json().await.unwrap();
            (b["fields"][0]["field"].as_str().unwrap().to_string(), b["fields"][0]["message"].as_str().unwrap().to_string())
        }
    };
    let (field, msg) = refuse(json!({"workload": "chat", "files": [{"name": "summary.csv", "text": "cell,concurrency\n0,8\n"}]})).await;
    assert!(field == "files" && msg.contains("summary.csv: not a result file: not JSON") && msg.contains("import its results.json"), "{msg}");
    let (field, msg) = refuse(json!({"workload": "chat", "files": [{"name": "c8.json", "text": bench(8, 1.0, 1.0).to_string()}]})).await;
    assert!(field == "gpu" && msg.contains("give the GPU these vllm bench serve results (c8.json) were measured on: the files do not say"), "{msg}");
    // A file without model_id: the model is asked for, never stored blank.
    let mut anonymous = bench(8, 1.0, 1.0);
    anonymous.as_object_mut().unwrap().remove("model_id");
    let (field, msg) = refuse(json!({"gpu": "pod", "workload": "chat", "files": [{"name": "c8.json", "text": anonymous.to_string()}]})).await;
    assert!(field == "model" && msg.contains("give the model these vllm bench serve results (c8.json) were measured with: the files have no model_id"), "{msg}");
    let resp = c.post(caplab.api("import")).json(&json!({"gpu": "pod", "model": "my-model", "workload": "chat", "files": [{"name": "c8.json", "text": anonymous.to_string()}]})).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let named: Vec<caplab_shared::RunInfo> = resp.json().await.unwrap();
    assert_eq!(named[0].spec.model, "my-model");
    let cli_file = caplab.data_dir.join("anonymous.json");
    std::fs::write(&cli_file, anonymous.to_string()).unwrap();
    let refused = tokio::process::Command::new(caplab_bin()).arg("report").arg(&cli_file).args(["--imported-gpu", "pod"]).output().await.unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("the files have no model_id: give --imported-model NAME"), "{}", String::from_utf8_lossy(&refused.stderr));
    let (field, msg) = refuse(json!({"workload": "chat", "files": [{"name": "x.json", "text": "{\"hello\": 1}"}]})).await;
    assert!(field == "files" && msg.contains("x.json: not a recognised result"), "{msg}");

    // Compared in the page: the notes as HTML, the frontiers overlaid, each GPU priced.
    let runs = format!("{},{},{a100_id}", ids[0], ids[1]);
    let cmp: caplab_shared::decide::Comparison = c.get(caplab.api(&format!("compare?runs={runs}"))).send().await.unwrap().json().await.unwrap();
    assert!(cmp.html.contains("<table>") && cmp.html.contains("IMPORTED"), "{}", cmp.html);
    assert_eq!(cmp.frontier_svg.matches("<path ").count(), 3, "one line per run");
    let rtx_price = cmp.prices.iter().find(|p| p.gpu == rtx).unwrap();
    assert_eq!(rtx_price.usd_per_hour, Some(0.24));
    assert_eq!(cmp.prices.iter().find(|p| p.gpu == "A100 80GB (another pod)").unwrap().usd_per_hour, None);
    // $2/h at the imported GPU's 9,000 tok/s: $0.062 per million output tokens.
    let prices = "%7B%22A100%2080GB%20(another%20pod)%22%3A2.0%7D";
    let cmp: caplab_shared::decide::Comparison = c.get(caplab.api(&format!("compare?runs={runs}&prices={prices}"))).send().await.unwrap().json().await.unwrap();
    assert!(cmp.markdown.contains("$0.062"), "{}", cmp.markdown);
    assert_eq!(c.get(caplab.api(&format!("compare?runs={runs}&prices=%7B%22x%22%3A-1%7D"))).send().await.unwrap().status(), 422);

    // Renamed, and downloaded whole.
    let resp = c.post(caplab.api(&format!("runs/{}/rename", ids[0]))).json(&json!({"name": "RTX chat grid"})).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let listed: Vec<caplab_shared::RunInfo> = c.get(caplab.api("runs")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed.iter().find(|r| r.id == ids[0]).unwrap().spec.name, "RTX chat grid");
    let view: caplab_shared::RunView = c.get(caplab.api(&format!("runs/{}", ids[0]))).send().await.unwrap().json().await.unwrap();
    assert_eq!(view.info.spec.name, "RTX chat grid", "the run's files say it too");
    assert_eq!(c.post(caplab.api(&format!("runs/{}/rename", ids[0]))).json(&json!({"name": "a\u{7}b"})).send().await.unwrap().status(), 422);
    assert_eq!(c.post(caplab.api("runs/nope/rename")).json(&json!({"name": "x"})).send().await.unwrap().status(), 404);
    let resp = c.get(caplab.api(&format!("runs/{}/archive.tar", ids[0]))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-tar");
    let tar = resp.bytes().await.unwrap();
    assert_eq!(tar.len() % 512, 0, "a tar file is whole 512-byte blocks");
    let text = String::from_utf8_lossy(&tar);
    for file in ["run.json", "info.json", "requests.csv", "summary.csv", "frontier.svg"] {
        assert!(text.contains(&format!("{}/{file}", ids[0])), "the archive holds {file}");
    }

    // The API reads a handful of runs, not any number.
    let many = vec!["a"; 9].iter().enumerate().map(|(i, _)| format!("r{i}")).collect::<Vec<_>>().join(",");
    let refused = c.get(caplab.api(&format!("report?runs={many}"))).send().await.unwrap();
    assert_eq!(refused.status(), 422);
    assert!(refused.text().await.unwrap().contains("at most 8 run ids"));

    // A results.json downloaded while its run was going on is kept as ended, with its cells,
    // and still so after a restart (not taken for a run interrupted here).
    let mut live: serde_json::Value = c.get(caplab.api(&format!("runs/{}/results.json", ids[1]))).send().await.unwrap().json().await.unwrap();
    live["info"]["status"] = json!("running");
    let resp = c.post(caplab.api("import")).json(&json!({"workload": "batch", "files": [{"name": "live.json", "text": live.to_string()}]})).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let kept: Vec<caplab_shared::RunInfo> = resp.json().await.unwrap();
    assert_eq!(kept[0].status.as_str(), "interrupted");
    let mut caplab = caplab;
    caplab.terminate(Duration::from_secs(10)).await.unwrap();
    let caplab = Caplab::start_in(caplab.data_dir.clone(), &[]).await.unwrap();
    let again: caplab_shared::RunView = c.get(caplab.api(&format!("runs/{}", kept[0].id))).send().await.unwrap().json().await.unwrap();
    assert_eq!(again.cells.len(), 2, "the imported cells survive a restart");

    // A folder that is not a run is refused by name.
    let bad = tokio::process::Command::new(caplab_bin()).args(["report", "/nonexistent-run-dir"]).output().await.unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/nonexistent-run-dir: cannot be read (give run folders, folders of runs or result files)"));
    // The data folder itself is a folder of runs: every run in it is read.
    let all = tokio::process::Command::new(caplab_bin()).arg("report").arg(&caplab.data_dir).output().await.unwrap();
    assert!(all.status.success(), "{}", String::from_utf8_lossy(&all.stderr));
    assert!(String::from_utf8_lossy(&all.stdout).contains("| Max stable concurrency |"));
}
