//! The GPU- and model-aware simulator through the real binary: `caplab sim --gpu --model`
//! sized as vLLM would size that deployment (queueing, preemption, vLLM's context errors in
//! vLLM's words, `/metrics`), refusals that name the reason, and `caplab serve --sim-profile`
//! offering simulated GPUs and models as targets, labelled as such.

use std::process::Stdio;
use std::time::Duration;

use caplab_tests::{caplab_bin, client, start_run, temp_dir, wait_for_end, Caplab};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Starts `caplab sim ARGS` on a free port; returns it and its URL.
async fn sim(args: &[&str]) -> (tokio::process::Child, String) {
    let mut child = Command::new(caplab_bin())
        .args(["sim", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start caplab sim");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(u) = line.split_whitespace().find(|w| w.starts_with("http://")) {
                return u.to_string();
            }
        }
        panic!("caplab sim exited without a URL")
    })
    .await
    .unwrap();
    (child, url)
}

#[tokio::test]
async fn a_small_kv_cache_queues_preempts_and_refuses_long_requests_in_vllms_words() {
    // An A100 40GB with Qwen2.5-1.5B, its cache cut to 64 blocks (1 024 tokens) and 8 slots.
    let (_sim, url) = sim(&["--gpu", "a100-40gb", "--model", "qwen2.5-1.5b", "--num-gpu-blocks-override", "64", "--max-model-len", "1024", "--max-num-seqs", "8"]).await;
    let http = reqwest::Client::new();
    let models: serde_json::Value = http.get(format!("{url}/v1/models")).send().await.unwrap().json().await.unwrap();
    assert_eq!(models["data"][0]["id"], "Qwen/Qwen2.5-1.5B-Instruct");
    assert_eq!(models["data"][0]["max_model_len"], 1024);
    let version: serde_json::Value = http.get(format!("{url}/version")).send().await.unwrap().json().await.unwrap();
    assert!(version["version"].as_str().unwrap().contains("NVIDIA A100 40GB SXM"), "{version}");

    // vLLM 0.32's refusals, word for word.
    let too_long = http
        .post(format!("{url}/v1/completions"))
        .json(&json!({"model": "Qwen/Qwen2.5-1.5B-Instruct", "prompt": "x", "max_tokens": 2000}))
        .send()
        .await
        .unwrap();
    assert_eq!(too_long.status(), 400);
    let body: serde_json::Value = too_long.json().await.unwrap();
    assert_eq!(body["error"]["message"], "max_tokens=2000 cannot be greater than max_model_len=1024. Please request fewer output tokens.");
    assert_eq!(body["error"]["param"], "max_tokens");
    // Chat as the peer tools send it: `max_completion_tokens`, content as a list of text parts.
    let chat: serde_json::Value = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&json!({"model": "Qwen/Qwen2.5-1.5B-Instruct", "max_completion_tokens": 40, "ignore_eos": true,
                      "messages": [{"role": "user", "content": [{"type": "text", "text": "x".repeat(400)}]}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(chat["usage"]["completion_tokens"], 40, "{chat}");
    assert_eq!(chat["usage"]["prompt_tokens"], 100 + 4 + 3, "the parts' text counts: {chat}");

    // Through caplab: long summaries, 8 workers; 1 024 tokens of cache hold about two of them.
    // 16 of them, so the cell lasts several of caplab's half-second /metrics scrapes.
    let caplab = Caplab::start(&["--target", &format!("small={url}")]).await.unwrap();
    let c = client();
    let id = start_run(&c, &caplab, json!({"workload": "batch", "target": "small", "concurrency": [8], "max_new_tokens": [256], "requests": 16})).await.unwrap();
    let view = wait_for_end(&c, &caplab, &id, Duration::from_secs(120)).await.unwrap();
    let cell = &view.cells[0];
    assert_eq!(cell.requests_ok, 16, "{:?}", cell.errors);
    let server = cell.server.as_ref().unwrap();
    assert!(server.preemptions.unwrap() >= 1.0, "{server:?}");
    assert!(server.max_waiting.unwrap() >= 1.0, "{server:?}");
    // Scraped twice a second: the full cache itself (which the preemptions prove) may fall
    // between two scrapes.
    assert!(server.max_kv_usage.unwrap() > 0.6, "{server:?}");
    assert_eq!(caplab_shared::surface::Outcome::of(cell), caplab_shared::surface::Outcome::Preemptions);
    // The label says what was simulated.
    assert!(view.info.spec.gpu.contains("NVIDIA A100 40GB SXM") && view.info.spec.gpu.contains("(simulated)"), "{}", view.info.spec.gpu);
    assert!(view.info.target.simulated);
    // A request longer than the context, through caplab: its own class, vLLM's words.
    let id = start_run(&c, &caplab, json!({"workload": "chat", "target": "small", "concurrency": [1], "max_new_tokens": [2000], "requests": 1})).await;
    assert!(id.is_err(), "refused before it starts: max_new_tokens beyond the context the target reports");
}

#[tokio::test]
async fn bad_profiles_are_refused_with_the_reason() {
    let run = |args: &'static [&'static str]| async move {
        let out = Command::new(caplab_bin()).args(args).output().await.unwrap();
        assert!(!out.status.success(), "{args:?} must fail");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let e = run(&["sim", "--gpu", "a10g", "--model", "qwen2.5-1.5b"]).await;
    assert!(e.contains("unknown GPU \"a10g\"") && e.contains("h100-80gb"), "{e}");
    let e = run(&["sim", "--gpu", "h100-80gb", "--model", "gpt-5"]).await;
    assert!(e.contains("unknown model") && e.contains("llama-3.1-8b"), "{e}");
    let e = run(&["sim", "--gpu", "rtx2000-ada-16gb", "--model", "qwen2.5-7b"]).await;
    assert!(e.contains("does not fit"), "{e}");
    let e = run(&["sim", "--gpu", "h100-80gb", "--gpu-memory-utilization", "1.5"]).await;
    assert!(e.contains("at most 1, not 1.5"), "{e}");
    let e = run(&["serve", "--listen", "127.0.0.1:0", "--sim-profile", "l4-24gb/llama-3.1-8b"]).await;
    assert!(e.contains("--sim-profile l4-24gb/llama-3.1-8b") && e.contains("max seq len (131072)"), "{e}");
}

#[tokio::test]
async fn serve_offers_simulated_gpus_and_models_as_targets() {
    let caplab = Caplab::start_in(temp_dir("profiles"), &["--sim-profile", "h100-80gb/qwen2.5-0.5b"]).await.unwrap();
    let c = client();
    let targets: Vec<serde_json::Value> = c.get(caplab.api("targets")).send().await.unwrap().json().await.unwrap();
    let names: Vec<&str> = targets.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["sim", "sim-h100-80gb-qwen2.5-0.5b"], "the built-in sim stays the default; --sim-profile replaces the default profiles");
    let id = start_run(&c, &caplab, json!({"workload": "chat", "target": "sim-h100-80gb-qwen2.5-0.5b", "concurrency": [4], "max_new_tokens": [32], "requests": 8}))
        .await
        .unwrap();
    let view = wait_for_end(&c, &caplab, &id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(view.cells[0].requests_ok, 8);
    assert_eq!(view.info.spec.model, "Qwen/Qwen2.5-0.5B-Instruct");
    assert_eq!(view.info.spec.gpu, "NVIDIA H100 80GB SXM · Qwen/Qwen2.5-0.5B-Instruct (simulated)");
    let total = view.cells[0].gpu.as_ref().and_then(|g| g.memory_total_mib).unwrap();
    assert!((total - 81_559.0).abs() < 1.0, "the simulated H100's memory: {total} MiB");
    assert!(view.telemetry.gpu_simulated);
}
