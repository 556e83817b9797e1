//! `caplab run EXPERIMENT.toml` headless, against `caplab sim` started on its own.

use std::process::Stdio;

use caplab_tests::{caplab_bin, temp_dir};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

async fn start_sim() -> (tokio::process::Child, String) {
    let mut sim = Command::new(caplab_bin())
        .args(["sim", "--listen", "127.0.0.1:0", "--sim-itl-ms", "1", "--sim-itl-ms-per-seq", "0", "--sim-prefill-ms", "2"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start caplab sim");
    let mut lines = BufReader::new(sim.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().unwrap();
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_string();
    (sim, url)
}

#[tokio::test]
async fn run_a_grid_file_headless() {
    let (_sim, url) = start_sim().await;
    let out = temp_dir("cli");
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/small_grid.toml");
    let result = Command::new(caplab_bin()).args(["run", fixture, "--target", &url, "--out"]).arg(&out).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("SIMULATED target"), "{stdout}");
    for label in ["c2 × 8", "c2 × 16", "c4 × 8", "c4 × 16"] {
        assert!(stdout.lines().any(|l| l.starts_with(label) && l.contains(" pass ")), "{label} missing in\n{stdout}");
    }
    // stderr is not a terminal here, so progress comes as one line per cell instead of a redrawn bar.
    assert!(stderr.contains("cell 4/4 done: 6 ok, 0 failed"), "{stderr}");
    let run_dir = std::fs::read_dir(&out).unwrap().next().unwrap().unwrap().path();
    let summary = std::fs::read_to_string(run_dir.join("summary.csv")).unwrap();
    assert_eq!(summary.lines().count(), 5, "header + 4 cells:\n{summary}");
    let requests = std::fs::read_to_string(run_dir.join("requests.csv")).unwrap();
    assert_eq!(requests.lines().count(), 1 + 4 * 7, "6 measured + 1 warm-up per cell");
    let mut rdr = csv::Reader::from_reader(requests.as_bytes());
    let warmup_col = rdr.headers().unwrap().iter().position(|h| h == "warmup").unwrap();
    let warmups = rdr.records().filter(|r| &r.as_ref().unwrap()[warmup_col] == "true").count();
    assert_eq!(warmups, 4, "one warm-up request per cell, recorded but marked");
    let _ = std::fs::remove_dir_all(out);
}

#[tokio::test]
async fn a_bad_experiment_file_is_refused_with_the_reason() {
    let dir = temp_dir("cli-bad");
    let file = dir.join("bad.toml");
    std::fs::write(&file, "workload = \"batch\"\nconcurrency = [0]\nmax_new_tokens = [10]\n").unwrap();
    let result = Command::new(caplab_bin()).arg("run").arg(&file).arg("--out").arg(&dir).output().await.unwrap();
    assert_eq!(result.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("concurrency: each concurrency must be between 1 and 10000"), "{stderr}");
    std::fs::write(&file, "workload = \"video\"\n").unwrap();
    let result = Command::new(caplab_bin()).arg("run").arg(&file).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("workload: \"video\" is not one of: chat or batch"), "{stderr}");
    // Every wrong field at once, in words rather than Rust types.
    std::fs::write(&file, "workload = \"chat\"\nconcurrency = [-5]\ntimeout_s = \"soon\"\n").unwrap();
    let result = Command::new(caplab_bin()).arg("run").arg(&file).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("concurrency: each value must be a whole number ≥ 0, not -5"), "{stderr}");
    assert!(stderr.contains("timeout_s: must be a number, not the text \"soon\""), "{stderr}");
    assert!(!stderr.contains("u32") && !stderr.contains("f64"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

/// `caplab run` says by its exit code when every request failed (3), instead of 0.
#[tokio::test]
async fn every_request_failing_is_a_nonzero_exit() {
    let (target, _server) = caplab_tests::faults::start(vec![caplab_tests::faults::Fault::Status500], 4, std::time::Duration::from_millis(1), true).await;
    let dir = temp_dir("cli-failing");
    let file = dir.join("x.toml");
    std::fs::write(&file, "workload = \"chat\"\nconcurrency = [2]\nmax_new_tokens = [4]\nrequests = 6\n").unwrap();
    let result = Command::new(caplab_bin()).arg("run").arg(&file).args(["--target", &target, "--out"]).arg(&dir).output().await.unwrap();
    assert_eq!(result.status.code(), Some(3), "{}", String::from_utf8_lossy(&result.stderr));
    let _ = std::fs::remove_dir_all(dir);
}
