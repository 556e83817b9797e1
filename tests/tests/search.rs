//! The SLO search on a simulated vLLM with a knee: 8 sequence slots, so past 8 workers requests
//! queue and end-to-end latency climbs. The search must land on the same answer as the full
//! grid over the same candidates (to one grid step), running fewer cells.

use std::time::Duration;

use caplab_shared::decide::verdict;
use caplab_tests::{client, start_run, wait_for_end, Caplab};
use serde_json::json;

#[tokio::test]
async fn the_search_finds_the_knee_of_the_full_grid_with_fewer_cells() {
    // ~5 ms a step: 16 tokens take ~0.1 s at 8 running; each extra wave of 8 adds as much again.
    let caplab = Caplab::start(&["--sim-max-num-seqs", "8", "--sim-itl-ms", "5", "--sim-itl-ms-per-seq", "0.1", "--sim-prefill-ms", "2"]).await.unwrap();
    let c = client();
    let candidates = [1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64];
    let spec = |search: bool| {
        json!({"workload": "chat", "target": "sim", "concurrency": candidates, "max_new_tokens": [16], "requests": 20,
               "requests_per_worker": 2, "slo": {"e2e_ms": 250.0}, "search": search})
    };
    let grid_id = start_run(&c, &caplab, spec(false)).await.unwrap();
    let grid = wait_for_end(&c, &caplab, &grid_id, Duration::from_secs(240)).await.unwrap();
    let truth = verdict(&grid.cells).max_stable_concurrency.expect("the grid has cells that meet the SLO");
    assert!(truth >= 4 && truth < 64, "the knee lies inside the candidates: c{truth}");

    let search_id = start_run(&c, &caplab, spec(true)).await.unwrap();
    let search = wait_for_end(&c, &caplab, &search_id, Duration::from_secs(240)).await.unwrap();
    let found = verdict(&search.cells).max_stable_concurrency.expect("the search found a cell that meets the SLO");
    let step = |x: u32| candidates.iter().position(|&k| k == x).unwrap() as i64;
    assert!((step(found) - step(truth)).abs() <= 1, "search c{found} vs grid c{truth}: within one grid step");
    assert!(search.cells.len() < grid.cells.len(), "{} cells instead of {}", search.cells.len(), grid.cells.len());
    let message = search.info.message.unwrap_or_default();
    assert!(message.contains(&format!("c{found} is the highest concurrency that meets the SLO")), "{message}");
    assert!(message.contains("confidence") && message.contains("requests within the SLO (95 % interval"), "the answer says how sure it is: {message}");
    assert!(search.info.headline.as_ref().and_then(|h| h.max_stable.clone()).is_some(), "the run list's headline is set");

    // Refusals name the field.
    let bad = c.post(caplab.api("runs")).json(&json!({"workload": "chat", "concurrency": [4, 8], "max_new_tokens": [16, 32], "search": true})).send().await.unwrap();
    assert_eq!(bad.status(), 422);
    let body: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(body["fields"][0]["field"], "search", "{body}");
    // A probe of 5 requests is refused: its p95 would be one request's luck.
    let small = c.post(caplab.api("runs")).json(&json!({"workload": "chat", "concurrency": [4, 8], "max_new_tokens": [16], "requests": 5, "search": true})).send().await.unwrap();
    assert_eq!(small.status(), 422);
    let body: serde_json::Value = small.json().await.unwrap();
    assert_eq!(body["fields"][0]["field"], "requests", "{body}");
    assert!(body["fields"][0]["message"].as_str().unwrap().contains("at least 20 measured requests"), "{body}");
}
