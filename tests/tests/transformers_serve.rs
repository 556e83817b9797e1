//! Against a REAL `transformers serve` (continuous batching, CPU): `scripts/test.sh` starts one
//! with `scripts/cpu-engine.sh transformers` and passes its URL in CAPLAB_TRANSFORMERS_URL and
//! the model name its requests must use (the model's path) in CAPLAB_TRANSFORMERS_MODEL.
//! Ignored by a plain `cargo test`; run with `-- --ignored --test-threads=1`.
//!
//! This engine family differs from vLLM where a load tool most often breaks: `/v1/models`
//! answers 500, unknown request fields are refused with 422, streams end without
//! `data: [DONE]`, there is no `/metrics`, and the server is pinned to one model.

use std::time::Duration;

use caplab_shared::{ErrorClass, RunStatus};
use caplab_tests::{start_run, wait_for_end, Caplab};
use serde_json::json;

fn url() -> String {
    std::env::var("CAPLAB_TRANSFORMERS_URL").expect("CAPLAB_TRANSFORMERS_URL: start one with scripts/cpu-engine.sh transformers start")
}

fn model() -> String {
    std::env::var("CAPLAB_TRANSFORMERS_MODEL").expect("CAPLAB_TRANSFORMERS_MODEL: scripts/cpu-engine.sh transformers model")
}

#[tokio::test]
#[ignore = "needs a real transformers serve: scripts/test.sh starts one"]
async fn a_grid_on_transformers_serve_completes_with_exact_tokens() {
    let caplab = Caplab::start(&["--target", &url()]).await.unwrap();
    let c = caplab_tests::client();

    // Recognised from what it answers, and what follows from that is said.
    let target: serde_json::Value = c.get(caplab.api("target")).send().await.unwrap().json().await.unwrap();
    assert_eq!(target["server"], "transformers-serve", "{target}");
    assert_eq!(target["models"], json!([]), "its /v1/models fails: {target}");
    assert!(target["evidence"].to_string().contains("/v1/models answered HTTP 500"), "{target}");

    // With /v1/models failing, the model must come from the experiment, and caplab says so.
    let r = c.post(caplab.api("runs")).json(&json!({"workload": "chat", "max_new_tokens": [8]})).send().await.unwrap();
    assert_eq!(r.status(), 422);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["fields"][0]["field"], "model", "{body}");

    // A chat grid and a batch cell: no request fails (no vLLM-only field was sent, the missing
    // [DONE] is not an error), and every token count is the server's own.
    for (workload, concurrency, tokens) in [("chat", json!([1, 4]), json!([16, 32])), ("batch", json!([2]), json!([24]))] {
        let spec = json!({
            "workload": workload, "model": model(), "concurrency": concurrency, "max_new_tokens": tokens,
            "requests": 8, "timeout_s": 300, "gpu": "cpu-transformers"
        });
        let id = start_run(&c, &caplab, spec).await.unwrap();
        let view = wait_for_end(&c, &caplab, &id, Duration::from_secs(900)).await.unwrap();
        assert_eq!(view.info.status, RunStatus::Finished, "{:?}", view.info.message);
        let csv = c.get(caplab.api(&format!("runs/{id}/requests.csv"))).send().await.unwrap().text().await.unwrap();
        let mut rdr = csv::Reader::from_reader(csv.as_bytes());
        let h = rdr.headers().unwrap().clone();
        let col = |n: &str| h.iter().position(|x| x == n).unwrap();
        let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 8 * view.cells.len());
        let mut short = 0;
        for r in &rows {
            assert_eq!(&r[col("error_class")], "", "{r:?}");
            assert_eq!(&r[col("done_marker")], "false", "transformers serve sends no [DONE]: {r:?}");
            let (got, asked): (u32, u32) = (r[col("completion_tokens")].parse().unwrap(), r[col("max_new_tokens")].parse().unwrap());
            assert!(got >= 1 && got <= asked, "{r:?}");
            // It cannot be made to ignore EOS: an output ends at max_tokens ("length") or at EOS ("stop").
            match &r[col("finish_reason")] {
                "length" => assert_eq!(got, asked, "{r:?}"),
                "stop" => short += 1,
                other => panic!("finish_reason {other}: {r:?}"),
            }
        }
        let cells_short: u32 = view.cells.iter().map(|c| c.short_outputs).sum();
        assert_eq!(cells_short, short, "every early end is counted");
        for cell in &view.cells {
            assert_eq!((cell.requests_ok, cell.requests_failed, cell.done_markers), (8, 0, 0));
            assert!(cell.completion_tokens > 0 && cell.output_tok_s > 0.0);
        }
    }
}

#[tokio::test]
#[ignore = "needs a real transformers serve: scripts/test.sh starts one"]
async fn a_server_pinned_to_one_model_refuses_others_as_unknown_model() {
    let caplab = Caplab::start(&["--target", &url()]).await.unwrap();
    let c = caplab_tests::client();
    let id = start_run(&c, &caplab, json!({"workload": "chat", "model": "another-model", "concurrency": [1], "max_new_tokens": [8], "requests": 2}))
        .await
        .unwrap();
    let view = wait_for_end(&c, &caplab, &id, Duration::from_secs(120)).await.unwrap();
    let cell = &view.cells[0];
    assert_eq!(cell.errors.get(&ErrorClass::UnknownModel), Some(&2), "{:?}", cell.errors);
    let csv = c.get(caplab.api(&format!("runs/{id}/requests.csv"))).send().await.unwrap().text().await.unwrap();
    assert!(csv.contains("pinned to"), "the server's own words are kept: {csv}");
}

/// `transformers serve` has no tokenize endpoint: synthetic prompts are measured with one-token
/// requests whose `usage.prompt_tokens` is the server's own count, and arrive with exactly the
/// tokens asked for.
#[tokio::test]
#[ignore = "needs a real transformers serve: scripts/test.sh starts one"]
async fn synthetic_prompts_are_exact_without_a_tokenize_endpoint() {
    let caplab = Caplab::start(&["--target", &url()]).await.unwrap();
    let c = caplab_tests::client();
    let spec = json!({"workload": "chat", "model": model(), "concurrency": [2], "input_tokens": [64], "max_new_tokens": [4], "requests": 4, "ignore_eos": false});
    let id = start_run(&c, &caplab, spec).await.unwrap();
    let view = wait_for_end(&c, &caplab, &id, Duration::from_secs(300)).await.unwrap();
    let cell = &view.cells[0];
    assert_eq!(cell.requests_ok, 4, "{:?}", cell.errors);
    assert!(cell.notes.iter().all(|n| !n.contains("estimate") && !n.contains("assume")), "counted by the server's usage: {:?}", cell.notes);
    let csv_text = c.get(caplab.api(&format!("runs/{id}/requests.csv"))).send().await.unwrap().text().await.unwrap();
    let mut rdr = csv::Reader::from_reader(csv_text.as_bytes());
    let h = rdr.headers().unwrap().clone();
    let at = |name: &str| h.iter().position(|x| x == name).unwrap();
    let (asked, counted) = (at("prompt_tokens_requested"), at("prompt_tokens"));
    for r in rdr.records().map(Result::unwrap) {
        assert_eq!(&r[asked], "64");
        assert_eq!(&r[counted], "64", "usage.prompt_tokens is the length asked for");
    }
}
