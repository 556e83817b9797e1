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
    // Every table cell is filled (the simulated A100 beats the RTX 2000 on both workloads).
    let rtx = "NVIDIA RTX 2000 Ada 16GB · Qwen/Qwen2.5-1.5B-Instruct (simulated)";
    let a100 = "NVIDIA A100 80GB SXM · Qwen/Qwen2.5-1.5B-Instruct (simulated)";
    assert!(md.contains(&format!("# Day 003 – GPU Scaling Notes ({rtx} vs {a100})")) || md.contains(&format!("# Day 003 – GPU Scaling Notes ({a100} vs {rtx})")), "{md}");
    for line in md.lines().filter(|l| l.starts_with("| Peak throughput")) {
        let speedup: f64 = line.rsplit('|').nth(1).unwrap().trim().trim_end_matches('x').parse().unwrap_or_else(|_| panic!("a speedup: {line}"));
        assert!(speedup > 0.0, "{line}");
    }
    assert!(!md.contains("| n/a"), "no table cell left empty: {md}");
    assert!(md.contains("Cost per 1M output tokens | $"), "{md}");
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

    // The API reads a handful of runs, not any number.
    let many = vec!["a"; 9].iter().enumerate().map(|(i, _)| format!("r{i}")).collect::<Vec<_>>().join(",");
    let refused = c.get(caplab.api(&format!("report?runs={many}"))).send().await.unwrap();
    assert_eq!(refused.status(), 422);
    assert!(refused.text().await.unwrap().contains("at most 8 run ids"));

    // A folder that is not a run is refused by name.
    let bad = tokio::process::Command::new(caplab_bin()).args(["report", "/nonexistent-run-dir"]).output().await.unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/nonexistent-run-dir: not a caplab run folder"));
}
