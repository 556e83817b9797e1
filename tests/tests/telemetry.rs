//! Telemetry end to end on the real binary: the simulator's `/metrics` (vLLM names) and its
//! modelled GPU become live samples, per-cell server statistics, `server_metrics.csv`,
//! `gpu.csv`, summary columns and the OOM surface; a server without `/metrics` and a machine
//! without a GPU only hide their panels. The real-vLLM case is in tests/tests/vllm.rs.

use std::time::Duration;

use caplab_tests::{client, faults, start_run, wait_for_end, Caplab};
use serde_json::json;

async fn get_text(http: &reqwest::Client, caplab: &Caplab, path: &str) -> (u16, String) {
    let resp = http.get(caplab.api(path)).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn column(csv_text: &str, name: &str) -> Vec<String> {
    let mut rdr = csv::Reader::from_reader(csv_text.as_bytes());
    let i = rdr.headers().unwrap().iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}"));
    rdr.records().map(|r| r.unwrap()[i].to_string()).collect()
}

#[tokio::test]
async fn simulator_runs_carry_server_metrics_gpu_readings_and_a_surface() {
    let caplab = Caplab::start(&["--sim-itl-ms", "10", "--sim-itl-ms-per-seq", "0.05"]).await.unwrap();
    let http = client();
    let spec = json!({"workload": "chat", "target": "sim", "concurrency": [1, 8], "max_new_tokens": [16, 64], "requests": 8});
    let id = start_run(&http, &caplab, spec).await.unwrap();
    let view = wait_for_end(&http, &caplab, &id, Duration::from_secs(120)).await.unwrap();
    assert_eq!(view.info.status, caplab_shared::RunStatus::Finished);

    // Where the numbers come from.
    assert!(view.telemetry.server.as_deref().is_some_and(|s| s.contains("/metrics")), "{:?}", view.telemetry);
    assert!(view.telemetry.server_missing.is_none());
    assert!(view.telemetry.gpu_simulated, "the simulator's GPU is labelled simulated");

    // Live server samples on the run's time axis; the engine's own running count shows the load.
    assert!(view.server.len() >= 4, "{} scrapes", view.server.len());
    assert!(view.server.windows(2).all(|w| w[0].t_s <= w[1].t_s));
    let peak_running = view.server.iter().filter_map(|s| s.running).fold(0.0, f64::max);
    assert!((2.0..=8.0).contains(&peak_running), "running peaked at {peak_running} with 8 workers");
    let last = view.server.last().unwrap();
    assert_eq!(last.generation_tokens, Some(f64::from(8 * (16 + 64) * 2)), "every generated token counted by the server since the run began");

    for cell in &view.cells {
        let s = cell.server.as_ref().expect("server stats per cell");
        assert_eq!(s.requests, Some(f64::from(cell.requests_ok)), "the server's E2E histogram saw every request of cell {}", cell.cell);
        assert!(s.e2e_p50_ms.is_some() && s.ttft_p95_ms.is_some());
        assert_eq!(s.preemptions, Some(0.0));
        let g = cell.gpu.as_ref().expect("GPU stats per cell");
        assert_eq!(g.memory_total_mib, Some(16384.0), "the simulated GPU's memory");
    }
    // c8 × 64 lasts about 1.4 s: scrapes land inside it.
    let c8 = view.cells.iter().find(|c| c.concurrency == 8 && c.max_new_tokens == 64).unwrap();
    assert!(c8.server.as_ref().unwrap().max_running.unwrap() >= 2.0, "{:?}", c8.server);
    assert!(c8.gpu.as_ref().unwrap().mean_util_pct.is_some_and(|u| u > 0.0), "the simulated GPU's load, read in those scrapes: {:?}", c8.gpu);
    // A cell no scrape caught running (c1 × 16 lasts ~0.2 s) claims no peak and no utilization.
    for cell in &view.cells {
        let (s, g) = (cell.server.as_ref().unwrap(), cell.gpu.as_ref().unwrap());
        if s.max_running.is_none() {
            assert_eq!((s.max_kv_usage, s.max_waiting, g.mean_util_pct), (None, None, None), "cell {}: {s:?} {g:?}", cell.cell);
            assert!(caplab_shared::surface::cause(cell).contains("peaks are unknown"), "{}", caplab_shared::surface::cause(cell));
        }
    }

    // Saved series, served for download.
    let (status, server_csv) = get_text(&http, &caplab, &format!("runs/{id}/server_metrics.csv")).await;
    assert_eq!(status, 200);
    assert!(server_csv.starts_with("t_s,running,waiting,kv_cache_usage,preemptions,prompt_tokens,generation_tokens\n"));
    assert_eq!(server_csv.lines().count() - 1, view.server.len(), "one row per scrape");
    let (status, gpu_csv) = get_text(&http, &caplab, &format!("runs/{id}/gpu.csv")).await;
    assert_eq!(status, 200);
    assert!(column(&gpu_csv, "simulated").iter().all(|v| *v == "true"));
    assert!(caplab.data_dir.join(&id).join("server_metrics.csv").exists());

    // The summary's columns, from one table.
    let (_, summary) = get_text(&http, &caplab, &format!("runs/{id}/summary.csv")).await;
    assert_eq!(column(&summary, "errors_out_of_memory"), ["0"; 4]);
    assert_eq!(column(&summary, "server_preemptions"), ["0.0"; 4]);
    assert_eq!(column(&summary, "gpu_memory_total_mib"), ["16384.0"; 4]);
    assert!(column(&summary, "ttft_p95_client_minus_server_ms").iter().all(|v| v.parse::<f64>().is_ok()));
    assert!(column(&summary, "outcome").iter().all(|o| ["meets_slo", "misses_slo"].contains(&o.as_str())), "{summary}");

    // The OOM surface: a tile per cell.
    let (status, svg) = get_text(&http, &caplab, &format!("runs/{id}/surface.svg")).await;
    assert_eq!(status, 200);
    assert_eq!(svg.matches(r#"class="tile""#).count(), 4);
    assert!(svg.contains("SIMULATED"));
    assert!(caplab.data_dir.join(&id).join("surface.svg").exists());
    // The throughput–latency frontier: a point per cell, the SLO line.
    let (status, frontier) = get_text(&http, &caplab, &format!("runs/{id}/frontier.svg")).await;
    assert_eq!(status, 200);
    assert_eq!(frontier.matches(r#"class="point""#).count(), 4);
    assert!(frontier.contains(r#"class="slo""#));
    assert!(caplab.data_dir.join(&id).join("frontier.svg").exists());
}

#[tokio::test]
async fn a_server_without_metrics_and_a_machine_without_a_gpu_break_nothing() {
    // Answers like transformers serve: /metrics is a 404.
    let (url, _server) = faults::start(vec![faults::Fault::Ok], 4, Duration::from_millis(1), true).await;
    let target = format!("plain={url}");
    let caplab = Caplab::start(&["--target", &target]).await.unwrap();
    let http = client();
    let id = start_run(&http, &caplab, json!({"workload": "batch", "target": "plain", "concurrency": [2], "max_new_tokens": [4], "requests": 6}))
        .await
        .unwrap();
    let view = wait_for_end(&http, &caplab, &id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(view.info.status, caplab_shared::RunStatus::Finished);
    assert_eq!(view.cells[0].requests_ok, 6);
    let missing = view.telemetry.server_missing.as_deref().unwrap_or_default();
    assert!(missing.contains("404"), "says why there is no server panel: {missing:?}");
    assert!(view.server.is_empty() && view.cells[0].server.is_none());
    // This machine has no NVIDIA driver (CI's neither); on a GPU pod this is where readings start.
    if view.gpu.is_empty() {
        let why = view.telemetry.gpu_missing.as_deref().unwrap_or_default();
        assert!(why.contains("no NVIDIA GPU"), "{why:?}");
    }
    let (status, body) = get_text(&http, &caplab, &format!("runs/{id}/server_metrics.csv")).await;
    assert_eq!(status, 404);
    assert!(body.contains("no server_metrics.csv"), "{body}");
    let (_, summary) = get_text(&http, &caplab, &format!("runs/{id}/summary.csv")).await;
    assert_eq!(column(&summary, "server_max_kv_usage"), [""], "empty, not zero, where nothing was read");
}
