//! Nothing measured is lost: a `kill -9` of the real binary mid-run loses at most the requests
//! in flight, and a restart lists the run as interrupted with every completed request intact.

use std::time::Duration;

use caplab_shared::{RunStatus, RunView};
use caplab_tests::{client, start_run, temp_dir, Caplab};
use serde_json::json;

#[tokio::test]
async fn kill_9_mid_run_loses_no_completed_request() {
    let dir = temp_dir("kill9");
    let c = client();
    let sim = ["--sim-itl-ms", "5", "--sim-itl-ms-per-seq", "0", "--sim-prefill-ms", "2"];
    let caplab = Caplab::start_in(dir.clone(), &sim).await.unwrap();
    let id = start_run(&c, &caplab, json!({"workload": "chat", "concurrency": [4], "max_new_tokens": [32], "requests": 2000})).await.unwrap();
    // Wait until a good number of requests have completed, as the live view reports them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let done_seen = loop {
        let view: RunView = c.get(caplab.api(&format!("runs/{id}"))).send().await.unwrap().json().await.unwrap();
        let done = view.ticks.last().map_or(0, |t| t.requests_done);
        if done >= 40 {
            break done;
        }
        assert!(tokio::time::Instant::now() < deadline, "the run did not progress");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    caplab.kill().await; // SIGKILL: no chance to save anything more

    let on_disk = std::fs::read_to_string(dir.join(&id).join("requests.csv")).unwrap();
    let rows = on_disk.lines().count() - 1;
    assert!(rows as u64 >= done_seen, "every request the live view had counted is on disk: {rows} rows < {done_seen}");
    assert!(rows < 2000, "the run was cut short");

    // A restart lists it as interrupted, with every journalled request and cells rebuilt from them.
    let caplab = Caplab::start_in(dir.clone(), &sim).await.unwrap();
    let view: RunView = c.get(caplab.api(&format!("runs/{id}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(view.info.status, RunStatus::Interrupted);
    assert!(view.info.message.as_deref().unwrap().contains(&format!("the {rows} requests that completed")), "{:?}", view.info.message);
    let cell = &view.cells[0];
    assert_eq!((cell.requests_ok + cell.requests_failed) as usize, rows);
    assert!(cell.partial && cell.output_tok_s > 0.0);
    assert_eq!(cell.completion_tokens, 32 * u64::from(cell.requests_ok));
    let served = c.get(caplab.api(&format!("runs/{id}/requests.csv"))).send().await.unwrap().text().await.unwrap();
    assert_eq!(served.lines().count() - 1, rows);
    let runs: Vec<serde_json::Value> = c.get(caplab.api("runs")).send().await.unwrap().json().await.unwrap();
    assert_eq!(runs[0]["status"], "interrupted");
    // The restarted server is not blocked by it: a new run on the same target starts.
    assert!(start_run(&c, &caplab, json!({"workload": "chat", "concurrency": [1], "max_new_tokens": [4], "requests": 1})).await.is_ok());
    drop(caplab);
    let _ = std::fs::remove_dir_all(dir);
}
