//! Issue 19 through the real binary: `caplab sim --calibrate` on the committed vLLM anchors
//! (refusals with their reasons, a calibration file that `caplab sim --calibration` then
//! serves with), and `caplab sim --model-config` serving a model from its Hugging Face
//! config.json under a small chat grid.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use caplab_tests::{caplab_bin, client, start_run, temp_dir, wait_for_end, Caplab};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn anchor(model: &str, run: &str) -> String {
    repo(&format!("data/anchors/h200-vllm-0.26-{model}/{run}")).display().to_string()
}

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

/// Runs caplab with `args` to its end: (success, stdout, stderr).
async fn run_caplab(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(caplab_bin()).args(args).output().await.unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string())
}

/// A copy of an anchor run's run.json in a folder of its own, changed by `edit`.
fn edited_run(tag: &str, model: &str, run: &str, edit: impl Fn(&mut Value)) -> String {
    let dir = temp_dir(tag);
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(Path::new(&anchor(model, run)).join("run.json")).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(dir.join("run.json"), v.to_string()).unwrap();
    dir.display().to_string()
}

#[tokio::test]
async fn calibrating_refuses_what_cannot_be_fitted_naming_why() {
    // One grid of 9 cells: too few for seven costs.
    let (ok, _, e) = run_caplab(&["sim", "--calibrate", &anchor("qwen2.5-7b", "chat_128")]).await;
    assert!(!ok && e.contains("too few cells to fit: 9 cell(s)"), "{e}");
    // A run with failed requests.
    let failed = edited_run("cal-failed", "qwen2.5-7b", "batch", |v| v["cells"][2]["requests_failed"] = 3.into());
    let (ok, _, e) = run_caplab(&["sim", "--calibrate", &anchor("qwen2.5-7b", "chat_128"), &failed]).await;
    assert!(!ok && e.contains("cell c16 × 256 had 3 failed request(s)"), "{e}");
    // Runs of two engine versions.
    let newer = edited_run("cal-version", "qwen2.5-7b", "batch", |v| v["info"]["target"]["version"] = "0.27.1".into());
    let (ok, _, e) = run_caplab(&["sim", "--calibrate", &anchor("qwen2.5-7b", "chat_128"), &newer]).await;
    assert!(!ok && e.contains("different engine versions") && e.contains("0.26.0 in") && e.contains("0.27.1 in"), "{e}");
    // The simulator's own runs, and another server.
    let simulated = edited_run("cal-sim", "qwen2.5-7b", "batch", |v| v["info"]["target"]["simulated"] = true.into());
    let (ok, _, e) = run_caplab(&["sim", "--calibrate", &simulated]).await;
    assert!(!ok && e.contains("a simulated run"), "{e}");
    let (ok, _, e) = run_caplab(&["sim", "--calibrate", &repo("data/anchors/h200-transformers-serve-5.17-qwen2.5-1.5b-random/chat_grid").display().to_string()]).await;
    assert!(!ok && (e.contains("not vLLM") || e.contains("cannot read")), "{e}");
    // A model nobody can name.
    let unknown = edited_run("cal-model", "qwen2.5-7b", "batch", |v| {
        v["info"]["target"]["models"] = json!(["/models/mystery"]);
        v["info"]["spec"]["model"] = "/models/mystery".into();
    });
    let (ok, _, e) = run_caplab(&["sim", "--calibrate", &unknown, &anchor("qwen2.5-7b", "chat_128")]).await;
    assert!(!ok && e.contains("cannot tell which model it served (/models/mystery)") && e.contains("--model"), "{e}");
}

#[tokio::test]
async fn a_calibration_is_written_then_served_with() {
    // 15 cells of the 7B (chat and batch grids) and a short search: a real fit, small enough
    // for a debug build.
    let dir = temp_dir("calibration");
    let out = dir.join("cal.json");
    let (ok, stdout, e) = run_caplab(&[
        "sim",
        "--calibrate",
        &anchor("qwen2.5-7b", "chat_128"),
        &anchor("qwen2.5-7b", "batch"),
        "--fit-evals",
        "25",
        "--out",
        out.to_str().unwrap(),
    ])
    .await;
    assert!(ok, "{e}");
    assert!(stdout.contains("| qwen2.5-7b | chat_128 | c128 × 128 | 16,732 |"), "the fit's table names every cell: {stdout}");
    let cal: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(cal["engine_version"], "0.26.0");
    assert_eq!(cal["cells"].as_array().unwrap().len(), 15);
    // The file's errors are its own numbers: simulated / measured − 1, per cell.
    for c in cal["cells"].as_array().unwrap() {
        let (m, s, err) = (c["measured"]["output_tok_s"].as_f64().unwrap(), c["simulated"]["output_tok_s"].as_f64().unwrap(), c["error"]["output_tok_s"].as_f64().unwrap());
        assert!((s / m - 1.0 - err).abs() < 1e-9, "{c}");
    }
    // The engine's numbers came from the runs' /metrics scrapes.
    assert!(cal["runs"][0]["engine_measured"]["itl_mean_ms"].as_f64().unwrap() > 1.0, "{}", cal["runs"][0]);
    assert!((cal["runs"][0]["prefix_cache_hit"].as_f64().unwrap() - 0.853).abs() < 0.01);

    // Checked against the same runs, it gives the loss it was fitted to.
    let (ok, stdout, e) = run_caplab(&["sim", "--calibrate", &anchor("qwen2.5-7b", "chat_128"), &anchor("qwen2.5-7b", "batch"), "--calibration", out.to_str().unwrap()]).await;
    assert!(ok, "{e}");
    assert!(stdout.contains(&format!("loss {:.3}", cal["loss"].as_f64().unwrap())), "{stdout}");
    assert!(stdout.contains("| all (15) |"), "{stdout}");

    // The simulator serves with it, and refuses a file that is not one.
    let (_sim, url) = sim(&["--gpu", "h200-141gb", "--model", "qwen2.5-7b", "--calibration", out.to_str().unwrap()]).await;
    let version: Value = reqwest::get(format!("{url}/version")).await.unwrap().json().await.unwrap();
    assert!(version["version"].as_str().unwrap().contains("NVIDIA H200 141GB"), "{version}");
    std::fs::write(dir.join("bad.json"), "{\"costs\": 1}").unwrap();
    let (ok, _, e) = run_caplab(&["sim", "--gpu", "h200-141gb", "--model", "qwen2.5-7b", "--calibration", dir.join("bad.json").to_str().unwrap()]).await;
    assert!(!ok && e.contains("bad.json") && e.contains("not a calibration file"), "{e}");
    // The assumed costs (for driving caplab at scale) are not a calibration's.
    let (ok, _, e) = run_caplab(&["sim", "--gpu", "h200-141gb", "--model", "qwen2.5-7b", "--assumed-costs", "--calibration", out.to_str().unwrap()]).await;
    assert!(!ok && e.contains("cannot be used with"), "{e}");
}

#[tokio::test]
async fn a_model_from_its_config_json_serves_a_chat_grid() {
    let config = repo("tests/fixtures/model-configs/qwen3-0.6b.json");
    let folder = config.parent().unwrap().display().to_string();
    let (_sim, url) = sim(&["--gpu", "l40s-48gb", "--model-config", config.to_str().unwrap(), "--max-model-len", "4096"]).await;
    let http = reqwest::Client::new();
    let models: Value = http.get(format!("{url}/v1/models")).send().await.unwrap().json().await.unwrap();
    assert_eq!(models["data"][0]["id"], folder.as_str(), "served under its folder, as vllm serve FOLDER names it");
    assert_eq!(models["data"][0]["max_model_len"], 4096);
    let version: Value = http.get(format!("{url}/version")).send().await.unwrap().json().await.unwrap();
    assert!(version["version"].as_str().unwrap().contains("NVIDIA L40S 48GB"), "{version}");

    // A small grid through caplab: every request answered, more workers more tokens/s.
    let caplab = Caplab::start(&["--target", &format!("mine={url}")]).await.unwrap();
    let c = client();
    let id = start_run(&c, &caplab, json!({"workload": "chat", "target": "mine", "model": folder, "concurrency": [1, 8], "max_new_tokens": [32], "requests": 16}))
        .await
        .unwrap();
    let view = wait_for_end(&c, &caplab, &id, Duration::from_secs(120)).await.unwrap();
    assert_eq!(view.cells.len(), 2);
    for cell in &view.cells {
        assert_eq!(cell.requests_failed, 0, "{:?}", cell.errors);
        assert_eq!(cell.requests_ok, 16, "c{}", cell.concurrency);
    }
    assert!(view.cells[1].output_tok_s > 3.0 * view.cells[0].output_tok_s, "c8 {} vs c1 {}", view.cells[1].output_tok_s, view.cells[0].output_tok_s);
    assert!(view.info.target.simulated && view.info.spec.gpu.contains("NVIDIA L40S 48GB"), "{}", view.info.spec.gpu);

    // What it cannot model is refused, naming the field.
    for (file, says) in [("refused-moe.json", "`num_local_experts` is 8"), ("refused-quantized.json", "`quantization_config` (awq)")] {
        let path = repo(&format!("tests/fixtures/model-configs/{file}"));
        let (ok, _, e) = run_caplab(&["sim", "--gpu", "h100-80gb", "--model-config", path.to_str().unwrap()]).await;
        assert!(!ok && e.contains(says), "{file}: {e}");
    }
    // A config and a profile at once is a mistake.
    let (ok, _, e) = run_caplab(&["sim", "--gpu", "h100-80gb", "--model", "qwen2.5-7b", "--model-config", config.to_str().unwrap()]).await;
    assert!(!ok && e.contains("cannot be used with"), "{e}");
}

/// An engine flag without a simulated GPU or model is refused, not silently ignored (the
/// fixed-timing simulator has flags of its own).
#[tokio::test]
async fn engine_flags_without_a_gpu_or_model_are_refused() {
    let (ok, _, e) = run_caplab(&["sim", "--listen", "127.0.0.1:0", "--max-model-len", "512", "--max-num-seqs", "8"]).await;
    assert!(!ok);
    assert!(e.contains("--max-num-seqs, --max-model-len apply to a simulated GPU and model") && e.contains("--sim-max-model-len"), "{e}");
}
