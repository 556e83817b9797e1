//! The report to send: one self-contained HTML file per run and per comparison, from the API
//! (`GET /api/runs/{id}/report.html`, `GET /api/compare/report.html`) and from `caplab report
//! … --html FILE`, which also reads folders of runs (a `caplab run --out` folder, the data
//! folder). Chromium opens the saved file with the network off and finds every chart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use caplab_tests::chromium::browser_with;
use caplab_tests::{caplab_bin, client, start_run, temp_dir, wait_for_end, Caplab};
use serde_json::json;

/// Nothing in the file can be fetched: no URL, no script, no link, and a policy forbidding it.
fn assert_offline(html: &str) {
    for bad in ["http://", "https://", "src=", "href=", "url(", "@import", "<script", "<link", "<img", "<iframe"] {
        assert!(!html.contains(bad), "{bad} in the report");
    }
    assert!(html.contains(r#"<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">"#));
}

async fn two_runs(caplab: &Caplab) -> (String, String) {
    let c = client();
    let mut ids = Vec::new();
    for target in ["sim-rtx2000-ada-16gb-qwen2.5-1.5b", "sim-a100-80gb-qwen2.5-1.5b"] {
        let spec = json!({"workload": "chat", "target": target, "concurrency": [2, 8], "max_new_tokens": [16], "requests": 16});
        let id = start_run(&c, caplab, spec).await.unwrap();
        wait_for_end(&c, caplab, &id, Duration::from_secs(120)).await.unwrap();
        ids.push(id);
    }
    (ids[0].clone(), ids[1].clone())
}

#[tokio::test]
async fn the_api_serves_a_run_report_and_a_comparison_report() {
    let caplab = Caplab::start(&[]).await.unwrap();
    let c = client();
    let (rtx, a100) = two_runs(&caplab).await;

    let resp = c.get(caplab.api(&format!("runs/{rtx}/report.html"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    let disposition = resp.headers()["content-disposition"].to_str().unwrap().to_string();
    assert!(disposition.contains(&format!("_{rtx}_report.html")), "{disposition}");
    let html = resp.text().await.unwrap();
    assert_offline(&html);
    assert_eq!(html.matches("<svg").count(), 2 + 2, "frontier, surface and one distribution per cell");
    assert_eq!(html.matches(r#"<svg class="dist""#).count(), 2);
    assert!(html.contains(r#"<div class="banner simulated">SIMULATED"#), "said prominently");
    for part in ["max stable concurrency (SLO: p95 end-to-end ≤ 3000 ms)", "NVIDIA RTX 2000 Ada 16GB", "Qwen/Qwen2.5-1.5B-Instruct", "caplab simulator (SIMULATED vLLM)", "Report made by", "concurrency 2, 8 × max_new_tokens 16 (2 cells)", "16 measured per cell", "built-in chat prompts"] {
        assert!(html.contains(part), "missing {part:?}");
    }
    // Priced as asked; a bad price and an unknown run are refused.
    let priced = c.get(caplab.api(&format!("runs/{rtx}/report.html?prices=%7B%22rtx2000-ada-16gb%22%3A0.5%7D"))).send().await.unwrap().text().await.unwrap();
    assert!(priced.contains("(at $0.50/h)"), "the profile key prices the run's GPU");
    assert_eq!(c.get(caplab.api(&format!("runs/{rtx}/report.html?prices=nope"))).send().await.unwrap().status(), 422);
    assert_eq!(c.get(caplab.api("runs/nope/report.html")).send().await.unwrap().status(), 404);

    let resp = c.get(caplab.api(&format!("compare/report.html?runs={rtx},{a100}"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-disposition"].to_str().unwrap().contains("caplab_comparison_report.html"));
    let html = resp.text().await.unwrap();
    assert_offline(&html);
    assert_eq!(html.matches(r#"class="card capacity""#).count(), 2);
    assert_eq!(html.matches("<svg").count(), 1 + 2 + 4, "the overlaid frontier, a surface per run, a distribution per cell");
    assert!(html.contains("<h2>Chat Workload Comparison</h2>") && html.contains("B is "), "the notes' tables: {html}");
    // Without a token, nothing.
    let anon = reqwest::Client::new().get(caplab.api(&format!("runs/{rtx}/report.html"))).send().await.unwrap();
    assert_eq!(anon.status(), 401);
}

/// `caplab run EXP --out DIR` then `caplab report DIR --html FILE`: the folder of runs is read.
async fn headless_run(out: &Path) -> PathBuf {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/small_grid.toml");
    let run = tokio::process::Command::new(caplab_bin()).args(["run", fixture, "--out"]).arg(out).output().await.unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    std::fs::read_dir(out).unwrap().flatten().map(|e| e.path()).find(|p| p.join("run.json").exists()).expect("a run folder")
}

#[tokio::test]
async fn caplab_report_reads_a_folder_of_runs_and_writes_html_that_chromium_opens_offline() {
    let out = temp_dir("html-report");
    let run_dir = headless_run(&out).await;
    // The --out folder itself (the run is in a subfolder): once "not a caplab run folder".
    let notes = tokio::process::Command::new(caplab_bin()).arg("report").arg(&out).output().await.unwrap();
    assert!(notes.status.success(), "{}", String::from_utf8_lossy(&notes.stderr));
    assert!(String::from_utf8_lossy(&notes.stdout).contains("## Batch Summarization Results"));
    let file = out.join("report.html");
    let html = tokio::process::Command::new(caplab_bin()).arg("report").arg(&out).arg("--html").arg(&file).output().await.unwrap();
    assert!(html.status.success(), "{}", String::from_utf8_lossy(&html.stderr));
    assert!(String::from_utf8_lossy(&html.stderr).contains("HTML report (1 run) written to"));
    assert!(html.stdout.is_empty(), "with --html alone the notes are not printed");
    let text = std::fs::read_to_string(&file).unwrap();
    assert_offline(&text);
    assert_eq!(text.matches(r#"<svg class="dist""#).count(), 4, "one distribution per cell of the 2 × 2 grid");
    // A folder with no run in it says so.
    let empty = temp_dir("html-report-empty");
    let refused = tokio::process::Command::new(caplab_bin()).arg("report").arg(&empty).output().await.unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no caplab run in it"), "{}", String::from_utf8_lossy(&refused.stderr));

    // Chromium, with a dead proxy for any request, opens the file and draws every chart.
    let b = browser_with(&["--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>"]).await;
    let c = &b.client;
    c.goto(&format!("file://{}", file.display())).await.unwrap();
    let counts = c
        .execute(
            "return [document.querySelectorAll('svg').length, document.querySelectorAll('svg.frontier').length, document.querySelectorAll('svg.surface').length,
                     document.querySelectorAll('svg.dist').length, performance.getEntriesByType('resource').length,
                     [...document.querySelectorAll('svg')].filter(s => { const r = s.getBoundingClientRect(); return r.width > 100 && r.height > 50; }).length,
                     document.querySelector('.banner.simulated') ? document.querySelector('.banner.simulated').innerText : '']",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(counts[0], 6, "frontier + surface + 4 distributions: {counts}");
    assert_eq!((counts[1].as_u64(), counts[2].as_u64(), counts[3].as_u64()), (Some(1), Some(1), Some(4)), "{counts}");
    assert_eq!(counts[4], 0, "nothing fetched: {counts}");
    assert_eq!(counts[5], 6, "every chart drawn at a readable size: {counts}");
    assert!(counts[6].as_str().unwrap().starts_with("SIMULATED"), "{counts}");
    // The run folder alone gives the same run.
    let single = out.join("single.html");
    let status = tokio::process::Command::new(caplab_bin()).arg("report").arg(&run_dir).arg("--html").arg(&single).status().await.unwrap();
    assert!(status.success());
    assert_eq!(std::fs::read_to_string(&single).unwrap().matches("<svg").count(), 6);
    let _ = std::fs::remove_dir_all(out);
    let _ = std::fs::remove_dir_all(empty);
}
