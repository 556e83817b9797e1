//! The real `caplab serve` binary on port 0 with its built-in simulator: API,
//! WebSocket, downloads, bad input.

use std::time::Duration;

use caplab_shared::{ErrorClass, RunStatus, RunView, ServerMsg};
use caplab_tests::{client, start_run, wait_for_end, Caplab, FAST_SIM};
use futures_util::StreamExt;
use serde_json::json;

#[tokio::test]
async fn batch_run_on_the_simulator_end_to_end() {
    let caplab = Caplab::start(FAST_SIM).await.unwrap();
    let c = client();
    let target: serde_json::Value = c.get(caplab.api("target")).send().await.unwrap().json().await.unwrap();
    assert_eq!(target["simulated"], true, "{target}");
    assert_eq!(target["models"][0], "sim-qwen2.5-1.5b");

    let id = start_run(&c, &caplab, json!({"workload": "batch", "concurrency": [16], "max_new_tokens": [64], "gpu": "test-gpu"}))
        .await
        .unwrap();
    let view = wait_for_end(&c, &caplab, &id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(view.info.status, RunStatus::Finished);
    assert!(view.info.target.simulated);
    assert_eq!(view.cells.len(), 1);
    let cell = &view.cells[0];
    // 5 documents × repeat 4
    assert_eq!((cell.requests_ok, cell.requests_failed), (20, 0));
    assert_eq!(cell.completion_tokens, 20 * 64, "the simulator honours max_tokens exactly");
    assert_eq!(cell.peak_concurrency, 16);
    assert!(cell.output_tok_s > 0.0 && cell.ttft.p50.unwrap() < cell.e2e.p50.unwrap());
    assert!(!view.ticks.is_empty(), "live ticks were recorded");

    // Per-request CSV: one row per request, tokens from usage.
    let resp = c.get(caplab.api(&format!("runs/{id}/requests.csv"))).send().await.unwrap();
    assert!(resp.headers()["content-disposition"].to_str().unwrap().contains("simulated"));
    let text = resp.text().await.unwrap();
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let headers = rdr.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}"));
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 20);
    assert!(rows.iter().all(|r| &r[col("completion_tokens")] == "64" && &r[col("simulated")] == "true" && &r[col("http_status")] == "200"));
    let mut indices: Vec<u32> = rows.iter().map(|r| r[col("request")].parse().unwrap()).collect();
    indices.sort_unstable();
    assert_eq!(indices, (0..20).collect::<Vec<_>>());

    // Summary CSV starts with the notes' columns.
    let summary = c.get(caplab.api(&format!("runs/{id}/summary.csv"))).send().await.unwrap().text().await.unwrap();
    let mut lines = summary.lines();
    assert!(lines.next().unwrap().starts_with("workload,gpu,concurrency,max_new_tokens,total_time_s,throughput_tok_s,p50_latency_ms,p95_latency_ms,simulated"));
    assert!(lines.next().unwrap().starts_with("batch,test-gpu (simulated),16,64,"), "a simulated run never carries a bare GPU name");

    // Saved to disk and listed.
    assert!(caplab.data_dir.join(&id).join("requests.csv").exists());
    let runs: Vec<serde_json::Value> = c.get(caplab.api("runs")).send().await.unwrap().json().await.unwrap();
    assert_eq!(runs[0]["id"], id.as_str());
}

#[tokio::test]
async fn websocket_sends_snapshot_then_increments() {
    let caplab = Caplab::start(&["--sim-itl-ms", "5", "--sim-itl-ms-per-seq", "0"]).await.unwrap();
    let c = client();
    let id = start_run(&c, &caplab, json!({"workload": "chat", "concurrency": [4], "max_new_tokens": [40], "requests": 12}))
        .await
        .unwrap();
    let ws_path = format!("runs/{id}/ws");
    let (mut ws, _) = tokio_tungstenite::connect_async(caplab.ws_request(&ws_path)).await.unwrap();
    let mut view: Option<RunView> = None;
    let mut ticks = 0;
    let mut first = true;
    while let Some(msg) = tokio::time::timeout(Duration::from_secs(30), ws.next()).await.unwrap() {
        let msg = msg.unwrap();
        if !msg.is_text() {
            continue;
        }
        let msg: ServerMsg = serde_json::from_str(msg.to_text().unwrap()).unwrap();
        if first {
            assert!(matches!(msg, ServerMsg::Snapshot { .. }), "a viewer first gets the whole state");
            first = false;
        }
        if matches!(msg, ServerMsg::Tick { .. }) {
            ticks += 1;
        }
        let ended = matches!(&msg, ServerMsg::Status { status, .. } if status.is_terminal());
        match (&mut view, &msg) {
            (_, ServerMsg::Snapshot { view: v }) => view = Some((**v).clone()),
            (Some(v), m) => v.apply(m),
            (None, _) => unreachable!(),
        }
        if ended {
            break;
        }
    }
    let folded = view.unwrap();
    assert!(ticks >= 2, "at least two live ticks during a ~0.5 s run, got {ticks}");
    // The viewer's folded state equals the server's.
    let server: RunView = c.get(caplab.api(&format!("runs/{id}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(folded, server);
    assert_eq!(server.cells[0].requests_ok, 12);
    assert_eq!(server.cells[0].completion_tokens, 12 * 40);

    // A viewer arriving after the end gets the finished state at once.
    let (mut late, _) = tokio_tungstenite::connect_async(caplab.ws_request(&ws_path)).await.unwrap();
    let first = late.next().await.unwrap().unwrap();
    match serde_json::from_str::<ServerMsg>(first.to_text().unwrap()).unwrap() {
        ServerMsg::Snapshot { view } => assert_eq!(*view, server),
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

#[tokio::test]
async fn stop_keeps_finished_requests_and_marks_the_rest_cancelled() {
    // Slow enough that the run is still going when stopped.
    let caplab = Caplab::start(&["--sim-itl-ms", "20"]).await.unwrap();
    let c = client();
    let id = start_run(&c, &caplab, json!({"workload": "batch", "concurrency": [4], "max_new_tokens": [500]})).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let resp = c.post(caplab.api(&format!("runs/{id}/stop"))).json(&json!({})).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    let view = wait_for_end(&c, &caplab, &id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(view.info.status, RunStatus::Stopped);
    let cell = &view.cells[0];
    assert_eq!(cell.errors.get(&ErrorClass::Cancelled), Some(&4), "the 4 in-flight requests were cancelled");
    assert_eq!((cell.requests_ok, cell.requests_failed, cell.requests_cancelled), (0, 0, 4));
    assert!(cell.partial, "a stopped cell says it covers only part of its requests");
    let again = c.post(caplab.api(&format!("runs/{id}/stop"))).json(&json!({})).send().await.unwrap();
    assert_eq!(again.status(), 409, "stopping an ended run is refused");
}

/// Two runs loading one server would each measure the other's load: a run for a busy target
/// waits its turn in a visible queue, can be taken out of it, and starts when the target is free.
#[tokio::test]
async fn a_run_for_a_busy_target_waits_its_turn() {
    let caplab = Caplab::start(&["--sim-itl-ms", "20"]).await.unwrap();
    let c = client();
    let first = start_run(&c, &caplab, json!({"workload": "batch", "concurrency": [2], "max_new_tokens": [300]})).await.unwrap();
    let second: serde_json::Value = c.post(caplab.api("runs")).json(&json!({"workload": "chat", "max_new_tokens": [4], "requests": 2})).send().await.unwrap().json().await.unwrap();
    assert_eq!(second["status"], "queued", "{second}");
    assert!(second["message"].as_str().unwrap().starts_with("queued: 1 run ahead on sim"), "{second}");
    let third: serde_json::Value = c.post(caplab.api("runs")).json(&json!({"workload": "chat", "max_new_tokens": [4], "requests": 2})).send().await.unwrap().json().await.unwrap();
    assert!(third["message"].as_str().unwrap().starts_with("queued: 2 runs ahead"), "{third}");
    let (second, third) = (second["id"].as_str().unwrap().to_string(), third["id"].as_str().unwrap().to_string());
    // Taken out of the queue: it ends without sending anything.
    assert_eq!(c.post(caplab.api(&format!("runs/{second}/stop"))).json(&json!({})).send().await.unwrap().status(), 202);
    let view = wait_for_end(&c, &caplab, &second, Duration::from_secs(10)).await.unwrap();
    assert_eq!(view.info.status, RunStatus::Stopped);
    assert!(view.cells.is_empty() && view.ticks.is_empty(), "nothing was sent");
    let runs: Vec<serde_json::Value> = c.get(caplab.api("runs")).send().await.unwrap().json().await.unwrap();
    let status_of = |id: &str| runs.iter().find(|r| r["id"] == id).map(|r| r["status"].clone()).unwrap();
    assert_eq!((status_of(&first), status_of(&third)), (json!("running"), json!("queued")));
    // The first one ends: the third starts and finishes.
    c.post(caplab.api(&format!("runs/{first}/stop"))).json(&json!({})).send().await.unwrap();
    let view = wait_for_end(&c, &caplab, &third, Duration::from_secs(20)).await.unwrap();
    assert_eq!(view.info.status, RunStatus::Finished);
    assert_eq!(view.cells[0].requests_ok, 2);
    assert_ne!(third, first, "ids are unique");
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_the_server_keeps_serving() {
    let caplab = Caplab::start(FAST_SIM).await.unwrap();
    let c = client();
    let post = |body: String| {
        let c = c.clone();
        let url = caplab.api("runs");
        async move {
            let r = c.post(url).header("content-type", "application/json").body(body).send().await.unwrap();
            (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let cases = [
        (r#"{"workload": "batch", "concurrency": [0]}"#, 422, "concurrency"),
        (r#"{"workload": "batch", "max_new_tokens": [-5]}"#, 422, "max_new_tokens"),
        (r#"{"workload": "batch", "max_new_tokens": [100000000]}"#, 422, "max_new_tokens"),
        (r#"{"workload": "batch", "max_new_tokens": [5000]}"#, 422, "max_new_tokens"),
        (r#"{"workload": "video"}"#, 422, "workload"),
        (r#"{}"#, 422, "workload"),
        (r#"[]"#, 422, "spec"),
        (r#"{"workload": "chat", "rate": [2]}"#, 422, "rate"),
        (r#"{"workload": "chat", "warmup": 100000}"#, 422, "warmup"),
        (r#"{"workload": "batch", "bogus": true}"#, 422, "bogus"),
        (r#"{"workload": "batch", "target": "http://127.0.0.1:9"}"#, 422, "target"),
        (r#"{"workload": "batch", "model": "no-such-model"}"#, 422, "model"),
        (r#"{"workload": "batch", "timeout_s": 0}"#, 422, "timeout_s"),
    ];
    for (body, status, field) in cases {
        let (got, json) = post(body.to_string()).await;
        assert_eq!(got, status, "{body} → {json}");
        assert_eq!(json["fields"][0]["field"], field, "{body} → {json}");
        assert!(!json["fields"][0]["message"].as_str().unwrap().is_empty());
    }
    let (got, json) = post("{\"concurrency\": [8".to_string()).await;
    assert_eq!(got, 400);
    assert!(json["error"].as_str().unwrap().starts_with("malformed JSON"), "{json}");
    let r = c.get(caplab.api("runs/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(c.get(caplab.api("health")).send().await.unwrap().text().await.unwrap(), "ok");
    let runs: Vec<serde_json::Value> = c.get(caplab.api("runs")).send().await.unwrap().json().await.unwrap();
    assert!(runs.is_empty(), "no refused experiment became a run");
}

#[tokio::test]
async fn saved_runs_are_loaded_again_at_start() {
    let dir = caplab_tests::temp_dir("reload");
    let c = client();
    let (id, before) = {
        let caplab = Caplab::start_in(dir.clone(), FAST_SIM).await.unwrap();
        let id = start_run(&c, &caplab, json!({"workload": "batch", "concurrency": [2], "max_new_tokens": [8], "requests": 6})).await.unwrap();
        wait_for_end(&c, &caplab, &id, Duration::from_secs(30)).await.unwrap();
        let csv = c.get(caplab.api(&format!("runs/{id}/requests.csv"))).send().await.unwrap().text().await.unwrap();
        caplab.kill().await;
        (id, csv)
    };
    let caplab = Caplab::start_in(dir.clone(), FAST_SIM).await.unwrap();
    let after = c.get(caplab.api(&format!("runs/{id}/requests.csv"))).send().await.unwrap().text().await.unwrap();
    assert_eq!(after, before);
    let view: RunView = c.get(caplab.api(&format!("runs/{id}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(view.info.status, RunStatus::Finished);
    assert_eq!(view.cells[0].requests_ok, 6);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn open_loop_counts_client_queueing_in_latency() {
    // One slot on the client (max_in_flight 1) and requests of ~60 ms arriving at 50/s:
    // arrivals pile up client-side, and that wait must show in latency, not vanish.
    let caplab = Caplab::start(&["--sim-itl-ms", "5", "--sim-itl-ms-per-seq", "0", "--sim-prefill-ms", "5"]).await.unwrap();
    let c = client();
    let id = start_run(
        &c,
        &caplab,
        json!({"workload": "chat", "mode": "rate", "rate": [50.0], "max_in_flight": 1, "max_new_tokens": [10], "requests": 12, "seed": 7}),
    )
    .await
    .unwrap();
    let view = wait_for_end(&c, &caplab, &id, Duration::from_secs(30)).await.unwrap();
    let cell = &view.cells[0];
    assert_eq!(cell.requests_ok, 12);
    assert_eq!(cell.rate, Some(50.0));
    assert_eq!(cell.peak_concurrency, 1, "the in-flight cap held");
    let csv = c.get(caplab.api(&format!("runs/{id}/requests.csv"))).send().await.unwrap().text().await.unwrap();
    let mut rdr = csv::Reader::from_reader(csv.as_bytes());
    let h = rdr.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|x| x == n).unwrap();
    let mut rows: Vec<(f64, f64, f64, f64)> = rdr
        .records()
        .map(|r| {
            let r = r.unwrap();
            let f = |n: &str| r[col(n)].parse::<f64>().unwrap();
            (f("scheduled_s"), f("queue_ms"), f("ttft_ms"), f("e2e_ms"))
        })
        .collect();
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(rows[0].0, 0.0, "the first arrival is at 0");
    for &(_, queue, ttft, e2e) in &rows {
        assert!(e2e >= queue + 50.0, "latency includes the client-side wait and ≥ 10 tokens × 5 ms: {queue} {e2e}");
        assert!(ttft >= queue, "TTFT counts from the scheduled time too");
    }
    // 12 arrivals in ~0.22 s against ~0.06 s of service each: the last waits for most of the others.
    let last = rows.last().unwrap();
    assert!(last.1 > 200.0, "the last request queued client-side: {last:?}");
    assert!(cell.queue.p95.unwrap() > 200.0);
    assert!(cell.e2e.max.unwrap() > 3.0 * cell.e2e.p50.unwrap().min(rows[0].3), "later requests wait longer: {:?}", cell.e2e);
}

#[tokio::test]
async fn sigterm_mid_run_stops_and_saves_the_run() {
    let dir = caplab_tests::temp_dir("sigterm");
    let mut caplab = Caplab::start_in(dir.clone(), &["--sim-itl-ms", "20"]).await.unwrap();
    let c = client();
    let id = start_run(&c, &caplab, json!({"workload": "chat", "concurrency": [3], "max_new_tokens": [400], "requests": 9})).await.unwrap();
    // A viewer is connected: it gets the run's final `stopped` status, then a close frame.
    let (mut ws, _) = tokio_tungstenite::connect_async(caplab.ws_request(&format!("runs/{id}/ws"))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let viewer = tokio::spawn(async move {
        let (mut last_status, mut close) = (None, None);
        while let Some(Ok(msg)) = ws.next().await {
            match msg {
                tokio_tungstenite::tungstenite::Message::Text(t) => {
                    if let Ok(ServerMsg::Status { status, .. }) = serde_json::from_str::<ServerMsg>(&t) {
                        last_status = Some(status);
                    }
                }
                tokio_tungstenite::tungstenite::Message::Close(frame) => close = frame.map(|f| f.reason.to_string()),
                _ => {}
            }
        }
        (last_status, close)
    });
    let status = caplab.terminate(Duration::from_secs(20)).await.unwrap();
    assert!(status.success(), "{status:?}");
    let (last_status, close) = viewer.await.unwrap();
    assert_eq!(last_status, Some(RunStatus::Stopped), "the viewer saw the run end");
    assert_eq!(close.as_deref(), Some("caplab is shutting down"));
    let saved: RunView = serde_json::from_slice(&std::fs::read(dir.join(&id).join("run.json")).unwrap()).unwrap();
    assert_eq!(saved.info.status, RunStatus::Stopped);
    assert_eq!(saved.cells[0].errors.get(&ErrorClass::Cancelled), Some(&3), "the in-flight requests are recorded as cancelled");
    let rows = std::fs::read_to_string(dir.join(&id).join("requests.csv")).unwrap().lines().count();
    assert_eq!(rows, 1 + 3, "every request that was sent has its row");
    let _ = std::fs::remove_dir_all(dir);
}

/// A viewer that never answers a ping is closed, so dead sockets do not pile up; one that
/// answers (a client that reads pongs back automatically) stays.
#[tokio::test]
async fn a_viewer_that_never_answers_pings_is_closed() {
    let caplab = Caplab::start(&["--ws-ping-s", "0.5", "--sim-itl-ms", "20"]).await.unwrap();
    let c = client();
    let id = start_run(&c, &caplab, json!({"workload": "chat", "concurrency": [1], "max_new_tokens": [400], "requests": 50})).await.unwrap();
    let path = format!("runs/{id}/ws");
    let (mut silent, _) = tokio_tungstenite::connect_async(caplab.ws_request(&path)).await.unwrap();
    let (mut alive, _) = tokio_tungstenite::connect_async(caplab.ws_request(&path)).await.unwrap();
    // The live one reads (and so answers pings) for 13 s; the silent one reads nothing.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(13);
    while let Ok(next) = tokio::time::timeout_at(deadline, alive.next()).await {
        assert!(matches!(next, Some(Ok(_))), "an answering viewer stays connected: {next:?}");
    }
    // The silent one was closed: its stream ends (with our close frame, when it can still be read).
    let mut close = None;
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(msg) = silent.next().await {
            match msg {
                Ok(tokio_tungstenite::tungstenite::Message::Close(frame)) => close = frame.map(|f| f.reason.to_string()),
                Ok(_) => {}
                Err(_) => break,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the silent viewer's socket was closed by the server");
    assert!(close.is_none() || close.as_deref() == Some("no answer to pings"), "{close:?}");
}

/// The operator's limits: shown by /api/limits, every breach named at once, a run that goes on
/// too long stops itself and says why, and runs beyond --runs-kept wait for a delete.
#[tokio::test]
async fn limits_are_shown_enforced_and_runs_can_be_deleted() {
    let caplab = Caplab::start(&[
        "--max-concurrency", "8", "--max-new-tokens", "64", "--max-requests-per-run", "100", "--max-run-duration-s", "1",
        "--runs-kept", "1", "--sim-itl-ms", "20",
    ])
    .await
    .unwrap();
    let c = client();
    let limits: serde_json::Value = c.get(caplab.api("limits")).send().await.unwrap().json().await.unwrap();
    assert_eq!((limits["max_concurrency"].as_u64(), limits["runs_kept"].as_u64()), (Some(8), Some(1)));
    let r = c.post(caplab.api("runs")).json(&json!({"workload": "chat", "concurrency": [16], "max_new_tokens": [128], "requests": 500})).send().await.unwrap();
    assert_eq!(r.status(), 422);
    let body: serde_json::Value = r.json().await.unwrap();
    let fields: Vec<&str> = body["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
    assert_eq!(fields, vec!["concurrency", "max_new_tokens", "requests"], "{body}");

    // Within the limits but longer than 1 s: it stops itself, saying why.
    let id = start_run(&c, &caplab, json!({"workload": "chat", "concurrency": [2], "max_new_tokens": [64], "requests": 100})).await.unwrap();
    let view = wait_for_end(&c, &caplab, &id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(view.info.status, RunStatus::Stopped);
    assert!(view.info.message.as_deref().unwrap().starts_with("stopped by itself after 1 s"), "{:?}", view.info.message);

    // One run kept: the next is refused until it is deleted (files included).
    let r = c.post(caplab.api("runs")).json(&json!({"workload": "chat", "concurrency": [1], "max_new_tokens": [4], "requests": 1})).send().await.unwrap();
    assert_eq!(r.status(), 409);
    assert!(caplab.data_dir.join(&id).exists());
    assert_eq!(c.delete(caplab.api(&format!("runs/{id}"))).send().await.unwrap().status(), 204);
    assert!(!caplab.data_dir.join(&id).exists());
    assert_eq!(c.get(caplab.api(&format!("runs/{id}"))).send().await.unwrap().status(), 404);
    start_run(&c, &caplab, json!({"workload": "chat", "concurrency": [1], "max_new_tokens": [4], "requests": 1})).await.unwrap();
}
