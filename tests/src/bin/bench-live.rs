//! The live path under load (bench/peers, issue 11): one 100,000-request run through a real
//! `caplab serve`, watched over its WebSocket and in headless Chromium. Measures
//!   - WebSocket bytes per second for one viewer (every 1 s window), whatever the request rate;
//!   - the size of the snapshot a viewer gets on joining late (near the end of the run);
//!   - the dashboard's frame times while the run streams (requestAnimationFrame gaps, p50/p95/max);
//!   - the page's JavaScript heap early and late in the run.
//! Prints one JSON object.
//!
//!   bench-live CAPLAB_URL TARGET_NAME [REQUESTS] [RATE]
//!   bench-live CAPLAB_URL TARGET_NAME closed CONCURRENCY REQUESTS MAX_NEW_TOKENS MODEL EXPECTED_S
//! caplab must run with --no-auth. The first form: an open-loop chat run at RATE requests/s, 8
//! tokens each, against a fixed-timing server. The second (bench/gpu, a real vLLM): a closed-loop
//! chat run of CONCURRENCY streams, `ignore_eos`; EXPECTED_S, about how long the run lasts, places
//! the frame window (its middle 60 %) and the late viewer (at 90 %).

use std::time::{Duration, Instant};

use caplab_shared::stats::Dist;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Frame gaps of the page, collected by the page itself.
const FRAME_PROBE: &str = "window.__gaps = []; let last = performance.now(); \
    const tick = (t) => { window.__gaps.push(t - last); last = t; if (window.__gaps.length < 100000) requestAnimationFrame(tick); }; \
    requestAnimationFrame(tick); return true;";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).expect("CAPLAB_URL").trim_end_matches('/').to_string();
    let target = args.get(2).expect("TARGET_NAME").clone();
    let num = |i: usize, default: f64| args.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(default);
    let (spec, requests, rate, expected_s) = if args.get(3).map(String::as_str) == Some("closed") {
        let (concurrency, requests, tokens, expected_s) = (num(4, 1024.0) as u64, num(5, 2048.0) as u64, num(6, 256.0) as u64, num(8, 40.0));
        let model = args.get(7).expect("MODEL");
        let spec = json!({"workload": "chat", "target": target, "model": model, "mode": "closed", "concurrency": [concurrency],
                          "max_new_tokens": [tokens], "requests": requests, "ignore_eos": true, "warmup": 0, "timeout_s": 600});
        (spec, requests, None, expected_s)
    } else {
        let (requests, rate) = (num(3, 100_000.0) as u64, num(4, 2_000.0));
        let spec = json!({"workload": "chat", "target": target, "model": "bench", "mode": "rate", "rate": [rate],
                          "max_new_tokens": [8], "requests": requests, "timeout_s": 600});
        (spec, requests, Some(rate), requests as f64 / rate)
    };
    let http = reqwest::Client::new();
    let resp = http.post(format!("{url}/api/runs")).json(&spec).send().await.expect("caplab answers");
    let info: Value = resp.json().await.expect("a run");
    let id = info["id"].as_str().unwrap_or_else(|| panic!("the run was refused: {info}")).to_string();
    let ws_url = format!("{}/api/runs/{id}/ws", url.replacen("http", "ws", 1));
    let started = Instant::now();

    // One viewer from the start: bytes per 1 s window.
    let viewer = tokio::spawn({
        let ws_url = ws_url.clone();
        async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(ws_url.as_str()).await.expect("websocket");
            let (mut windows, mut current, mut window_start, mut total, mut first) = (Vec::new(), 0usize, Instant::now(), 0usize, None);
            while let Some(Ok(msg)) = ws.next().await {
                let n = match &msg {
                    Message::Text(t) => t.len(),
                    Message::Binary(b) => b.len(),
                    _ => 0,
                };
                first.get_or_insert(n);
                total += n;
                if window_start.elapsed() >= Duration::from_secs(1) {
                    windows.push(current as f64 / window_start.elapsed().as_secs_f64());
                    current = 0;
                    window_start = Instant::now();
                }
                current += n;
                if let Message::Text(t) = &msg {
                    if t.contains("\"type\":\"status\"") && (t.contains("\"finished\"") || t.contains("\"stopped\"")) {
                        break;
                    }
                }
            }
            (windows, total, first.unwrap_or(0))
        }
    });

    // The dashboard, following the run.
    let b = caplab_tests::chromium::browser().await;
    let c = &b.client;
    c.goto(&format!("{url}/#run={id}")).await.expect("the page");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let heap = |c: &fantoccini::Client| {
        let c = c.clone();
        async move { c.execute("return performance.memory ? performance.memory.usedJSHeapSize : null;", vec![]).await.ok().and_then(|v| v.as_f64()) }
    };
    let heap_early = heap(c).await;
    c.execute(FRAME_PROBE, vec![]).await.expect("the frame probe");
    let watch = Duration::from_secs_f64((expected_s * 0.6).clamp(5.0, 40.0));
    tokio::time::sleep(watch).await;
    let gaps: Vec<f64> = c.execute("return window.__gaps;", vec![]).await.ok().and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default();
    let heap_late = heap(c).await;
    let dom_nodes = c.execute("return document.getElementsByTagName('*').length;", vec![]).await.ok().and_then(|v| v.as_u64());

    // A late viewer: the snapshot it is sent first.
    let wait_late = Duration::from_secs_f64((expected_s * 0.9 - started.elapsed().as_secs_f64()).max(0.0));
    tokio::time::sleep(wait_late).await;
    let (mut late, _) = tokio_tungstenite::connect_async(ws_url.as_str()).await.expect("websocket");
    let late_at = started.elapsed().as_secs_f64();
    let snapshot = match late.next().await {
        Some(Ok(Message::Text(t))) => t.len(),
        _ => 0,
    };
    drop(late);
    let (windows, total, first) = viewer.await.unwrap();
    let run: Value = http.get(format!("{url}/api/runs/{id}")).send().await.unwrap().json().await.unwrap();
    let cell = &run["cells"][0];
    let _ = c.clone().close().await;
    let mut w = windows.clone();
    let mut g = gaps.clone();
    println!(
        "{}",
        json!({
            "run": id, "spec": spec, "requests": requests, "rate": rate, "run_s": started.elapsed().as_secs_f64(),
            "requests_ok": cell["requests_ok"], "requests_failed": cell["requests_failed"], "offered_rate": rate, "achieved_rate": cell["requests_per_s"],
            "output_tok_s": cell["output_tok_s"], "peak_concurrency": cell["peak_concurrency"],
            "ws_bytes_per_s": Dist::of(&mut w), "ws_total_bytes": total, "first_snapshot_bytes": first,
            "late_snapshot_bytes": snapshot, "late_snapshot_at_s": late_at,
            "frame_ms": Dist::of(&mut g), "frames": gaps.len(), "heap_early_bytes": heap_early, "heap_late_bytes": heap_late, "dom_nodes": dom_nodes,
        })
    );
}
