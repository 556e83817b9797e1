//! "What would this do on another GPU?" in a real Chromium: a run measured on a real vLLM on an
//! H200 (a committed anchor) gets the calibrated simulator's prediction for another GPU drawn
//! beside its measured frontier, labelled PREDICTED, with its error band; the API refuses what
//! it cannot predict, with the reason.

use std::time::Duration;

use caplab_tests::chromium::{browser, poll};
use caplab_tests::{client, start_run, temp_dir, wait_for_end, Caplab, TEST_TOKEN};
use fantoccini::Locator;
use serde_json::{json, Value};

const ANCHOR: &str = "data/anchors/h200-vllm-0.26-qwen2.5-1.5b/chat_128";

/// A data folder holding the anchor run (as `caplab serve` keeps runs: a folder per id).
fn data_with_anchor() -> (std::path::PathBuf, String) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(ANCHOR);
    let info: Value = serde_json::from_slice(&std::fs::read(root.join("info.json")).unwrap()).unwrap();
    let id = info["id"].as_str().unwrap().to_string();
    let dir = temp_dir("predict");
    let run = dir.join(&id);
    std::fs::create_dir_all(&run).unwrap();
    for entry in std::fs::read_dir(&root).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), run.join(entry.file_name())).unwrap();
    }
    (dir, id)
}

#[tokio::test]
async fn a_predicted_frontier_is_drawn_beside_the_measured_one() {
    let (dir, id) = data_with_anchor();
    let caplab = Caplab::start_in(dir.clone(), &[]).await.unwrap();
    let api = client();

    // The API: the prediction, and what it refuses.
    let p: Value = api.get(caplab.api(&format!("runs/{id}/predict?gpu=a100-80gb"))).send().await.unwrap().json().await.unwrap();
    let cells = p["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 9, "one prediction per measured cell");
    assert_eq!(p["gpu"], "NVIDIA A100 80GB SXM");
    assert_eq!(p["model"], "Qwen/Qwen2.5-1.5B-Instruct", "the model profile found from the run's model path");
    for c in cells {
        let (tok, range) = (c["output_tok_s"].as_f64().unwrap(), c["output_tok_s_range"].as_array().unwrap());
        let (lo, hi) = (range[0].as_f64().unwrap(), range[1].as_f64().unwrap());
        assert!(tok > 0.0 && lo < tok && tok < hi, "the band holds the prediction: {c}");
    }
    assert!(p["caveats"].as_array().unwrap().iter().any(|c| c.as_str().unwrap().starts_with("No measurement has checked NVIDIA A100 80GB SXM")));
    // The notes' GPU comparison takes the prediction as a GPU of its own, labelled the same.
    let notes = api.get(caplab.api(&format!("report?runs={id}&predict=a100-80gb"))).send().await.unwrap().text().await.unwrap();
    assert!(notes.contains("GPU Scaling Notes (PREDICTED NVIDIA A100 80GB SXM vs NVIDIA-H200-141GB)"), "{notes}");
    assert!(notes.contains("chat on PREDICTED NVIDIA A100 80GB SXM (SIMULATED)"), "{notes}");
    assert!(!notes.contains("measured peak"), "nothing about the prediction reads as measured");
    let refused = api.get(caplab.api(&format!("runs/{id}/predict?gpu=a200"))).send().await.unwrap();
    assert_eq!(refused.status(), 422);
    assert!(refused.text().await.unwrap().contains("the profiles are: a100-40gb"));
    let big = api.get(caplab.api(&format!("runs/{id}/predict?gpu=rtx2000-ada-16gb&model=llama-3.1-8b"))).send().await.unwrap();
    assert_eq!(big.status(), 422, "a model the GPU cannot hold is refused");
    assert!(big.text().await.unwrap().contains("does not fit on NVIDIA RTX 2000 Ada"));
    let sim = start_run(&api, &caplab, json!({"workload": "chat", "concurrency": [1], "max_new_tokens": [8], "requests": 2})).await.unwrap();
    wait_for_end(&api, &caplab, &sim, Duration::from_secs(60)).await.unwrap();
    let simulated = api.get(caplab.api(&format!("runs/{sim}/predict?gpu=a100-80gb"))).send().await.unwrap();
    assert_eq!(simulated.status(), 409);
    assert!(simulated.text().await.unwrap().contains("simulator's already"));

    // The page.
    let b = browser().await;
    let c = &b.client;
    c.set_window_size(1400, 1100).await.unwrap();
    c.goto(&format!("{}/?token={TEST_TOKEN}#run={id}", caplab.url)).await.unwrap();
    c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Id("predict-gpu")).await.expect("the prediction control under a measured run's frontier");
    let measured_only = c.find(Locator::Id("frontier-chart")).await.unwrap().html(true).await.unwrap();
    assert!(!measured_only.contains("class=\"predicted\""));
    c.execute("const s = document.getElementById('predict-gpu'); s.value = 'a100-80gb'; s.dispatchEvent(new Event('change', {bubbles: true}));", vec![]).await.unwrap();
    c.find(Locator::Id("predict-go")).await.unwrap().click().await.unwrap();
    let table = poll("the predicted table", Duration::from_secs(20), || async { c.find(Locator::Id("predicted")).await.ok() }).await;
    let text = table.text().await.unwrap();
    assert!(text.contains("PREDICTED") && text.contains("NVIDIA A100 80GB SXM") && text.contains("measured on NVIDIA-H200-141GB"), "{text}");
    assert!(text.contains("No measurement has checked NVIDIA A100 80GB SXM"), "{text}");
    let rows = c.find_all(Locator::Css("#predicted table tr")).await.unwrap().len();
    assert_eq!(rows, 10, "a header and one row per cell");
    let link = c.find(Locator::Id("predict-notes")).await.unwrap().attr("href").await.unwrap().unwrap_or_default();
    assert_eq!(link, format!("api/report?runs={id}&predict=a100-80gb"));
    let chart = c.find(Locator::Id("frontier-chart")).await.unwrap().html(true).await.unwrap();
    assert_eq!(chart.matches("class=\"point\"").count(), 9, "the measured cells stay");
    assert_eq!(chart.matches("class=\"predicted-point\"").count(), 9, "a predicted point per cell");
    assert_eq!(chart.matches("class=\"band\"").count(), 9, "each with its box of published error");
    assert!(chart.contains("class=\"predicted\"") && chart.contains("PREDICTED · 128 tok") && chart.contains("PREDICTED on NVIDIA A100 80GB SXM"), "a dashed line, PREDICTED in the legend and the title");
    if let Ok(shots) = std::env::var("CAPLAB_SCREENSHOTS") {
        let frontier = c.find(Locator::Id("frontier")).await.unwrap();
        frontier.screenshot().await.map(|png| std::fs::write(std::path::Path::new(&shots).join("predict.png"), png).unwrap()).unwrap();
    }
    c.find(Locator::Id("predict-clear")).await.unwrap().click().await.unwrap();
    poll("the measured frontier alone again", Duration::from_secs(10), || async {
        let html = c.find(Locator::Id("frontier-chart")).await.ok()?.html(true).await.ok()?;
        (!html.contains("predicted-point")).then_some(())
    })
    .await;
    drop(caplab);
    let _ = std::fs::remove_dir_all(dir);
}
