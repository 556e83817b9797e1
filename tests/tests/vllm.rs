//! Against a REAL vLLM (CPU build) server: `scripts/test.sh` starts one with
//! `scripts/cpu-engine.sh vllm` and passes its URL in CAPLAB_VLLM_URL. Ignored by a plain
//! `cargo test`; run with `-- --ignored --test-threads=1` (the tests read the
//! server's cumulative /metrics, so they must not overlap).

use std::collections::BTreeMap;
use std::time::Duration;

use caplab::engine::http::{parse_uri, LoadClient};
use caplab::engine::request::{execute, Call, LiveCounters, Worker};
use caplab_shared::{ErrorClass, RunStatus};
use caplab_tests::{start_run, wait_for_end, Caplab};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn vllm_url() -> String {
    std::env::var("CAPLAB_VLLM_URL").expect("CAPLAB_VLLM_URL: start a vLLM with scripts/cpu-engine.sh vllm")
}

/// Prometheus text → (metric name with labels stripped, `le` label or "") → value, summed over other labels.
async fn metrics(c: &reqwest::Client) -> BTreeMap<(String, String), f64> {
    let text = c.get(format!("{}/metrics", vllm_url())).send().await.unwrap().text().await.unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("vllm:")) {
        let Some((lhs, value)) = line.rsplit_once(' ') else { continue };
        let Ok(value) = value.parse::<f64>() else { continue };
        let name = lhs.split('{').next().unwrap().to_string();
        let le = lhs.split("le=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("").to_string();
        *out.entry((name, le)).or_insert(0.0) += value;
    }
    out
}

fn delta(before: &BTreeMap<(String, String), f64>, after: &BTreeMap<(String, String), f64>, name: &str, le: &str) -> f64 {
    let key = (name.to_string(), le.to_string());
    after.get(&key).copied().unwrap_or(0.0) - before.get(&key).copied().unwrap_or(0.0)
}

/// The histogram's finite bucket bounds, ascending.
fn bounds(m: &BTreeMap<(String, String), f64>, name: &str) -> Vec<f64> {
    let bucket = format!("{name}_bucket");
    let mut b: Vec<f64> = m.keys().filter(|(n, le)| *n == bucket && le != "+Inf").filter_map(|(_, le)| le.parse().ok()).collect();
    b.sort_by(f64::total_cmp);
    b
}

/// Slack for what happens after vLLM stamps a token and before caplab reads it: vLLM's own
/// detokenizing and streaming (another process), the HTTP hop, and caplab's parsing, all on a
/// 2-core machine that vLLM keeps busy. Seen here: 5–10 ms.
const PIPELINE_SLACK_S: f64 = 0.025;

/// How caplab's values (s) must compare with the server's histogram.
#[derive(Clone, Copy, PartialEq)]
enum Check {
    /// Never below the server's: for every bound b, ours(≤ b) ≤ server(≤ b).
    NeverBelow,
    /// Within one bucket or PIPELINE_SLACK_S (whichever is wider) of the server's, either way:
    /// server(≤ b_lo) ≤ ours(≤ b) ≤ server(≤ b_hi), b_lo the largest bound ≤ min(b_prev, b − slack),
    /// b_hi the smallest bound ≥ max(b_next, b + slack).
    Within,
}

fn assert_agrees(name: &str, ours_s: &[f64], before: &BTreeMap<(String, String), f64>, after: &BTreeMap<(String, String), f64>, check: Check) {
    let bounds = bounds(after, name);
    assert!(!bounds.is_empty(), "vLLM exposes {name}");
    let bucket = format!("{name}_bucket");
    let server_le = |b: f64| {
        let le = after.keys().find(|(n, le)| *n == bucket && le.parse::<f64>().ok() == Some(b)).map(|k| k.1.clone()).unwrap();
        delta(before, after, &bucket, &le)
    };
    let count_total = delta(before, after, &format!("{name}_count"), "");
    assert_eq!(count_total as usize, ours_s.len(), "{name}: the server saw exactly our requests");
    for (i, &b) in bounds.iter().enumerate() {
        let ours = ours_s.iter().filter(|&&v| v <= b).count() as f64;
        let (lower, upper) = match check {
            Check::NeverBelow => (0.0, server_le(b)),
            Check::Within => {
                let floor = if i == 0 { f64::NEG_INFINITY } else { bounds[i - 1].min(b - PIPELINE_SLACK_S) };
                let ceiling = bounds.get(i + 1).copied().unwrap_or(f64::INFINITY).max(b + PIPELINE_SLACK_S);
                let lower = bounds.iter().rev().find(|&&x| x <= floor + 1e-12).map_or(0.0, |&x| server_le(x));
                let upper = bounds.iter().find(|&&x| x >= ceiling - 1e-12).map_or(count_total, |&x| server_le(x));
                (lower, upper)
            }
        };
        assert!(ours <= upper && ours >= lower, "{name} bucket le={b}: ours {ours}, server {lower}..{upper} (ours: {ours_s:?})");
    }
}

#[tokio::test]
#[ignore = "needs a real vLLM: scripts/test.sh starts one"]
async fn grid_on_real_vllm_has_exact_tokens_and_agrees_with_its_metrics() {
    let caplab = Caplab::start(&["--target", &vllm_url()]).await.unwrap();
    let c = caplab_tests::client();
    let target: serde_json::Value = c.get(caplab.api("target")).send().await.unwrap().json().await.unwrap();
    assert_eq!(target["server"], "vllm", "{target}");
    assert!(target["evidence"][0].as_str().unwrap().contains("owned_by"), "{target}");
    assert_eq!(target["simulated"], false);

    let before = metrics(&c).await;
    let id = start_run(
        &c,
        &caplab,
        json!({"workload": "batch", "concurrency": [2, 4], "max_new_tokens": [16, 32], "requests": 6, "gpu": "cpu-vllm", "timeout_s": 120}),
    )
    .await
    .unwrap();
    let view = wait_for_end(&c, &caplab, &id, Duration::from_secs(600)).await.unwrap();
    let after = metrics(&c).await;
    assert_eq!(view.info.status, RunStatus::Finished);
    assert_eq!(view.cells.len(), 4);

    let csv = c.get(caplab.api(&format!("runs/{id}/requests.csv"))).send().await.unwrap().text().await.unwrap();
    let mut rdr = csv::Reader::from_reader(csv.as_bytes());
    let h = rdr.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|x| x == n).unwrap();
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 24);
    let mut ttft = Vec::new();
    let mut e2e = Vec::new();
    let mut tokens = 0u64;
    for r in &rows {
        assert_eq!(&r[col("error_class")], "", "no request failed: {:?}", r);
        // ignore_eos was sent (vLLM accepts it), so every request produced exactly max_new_tokens.
        assert_eq!(r[col("completion_tokens")], r[col("max_new_tokens")], "{r:?}");
        assert_eq!(&r[col("finish_reason")], "length");
        tokens += r[col("completion_tokens")].parse::<u64>().unwrap();
        ttft.push(r[col("ttft_ms")].parse::<f64>().unwrap() / 1000.0);
        e2e.push(r[col("e2e_ms")].parse::<f64>().unwrap() / 1000.0);
    }
    // Our token count equals what the server says it generated.
    assert_eq!(delta(&before, &after, "vllm:generation_tokens_total", "") as u64, tokens);
    assert_eq!(view.cells.iter().map(|c| c.completion_tokens).sum::<u64>(), tokens);
    // vLLM stamps times in its HTTP front end (a Python process). On 2 cores shared with its
    // engine and caplab, that process is sometimes starved: it then stamps a request's arrival
    // late, and holds a stream's chunks and sends them in one burst (seen here with `ss`: the
    // bytes reach the socket all at once). A client sees that delay; vLLM's histograms do not.
    // So under load TTFT and E2E are checked one way: caplab's are never below vLLM's.
    assert_agrees("vllm:time_to_first_token_seconds", &ttft, &before, &after, Check::NeverBelow);
    assert_agrees("vllm:e2e_request_latency_seconds", &e2e, &before, &after, Check::NeverBelow);

    // One request at a time, end-to-end latency must also agree the other way, within a bucket
    // (or PIPELINE_SLACK_S); TTFT, which a held-back first chunk can delay, stays one-way.
    let before = metrics(&c).await;
    let id = start_run(&c, &caplab, json!({"workload": "chat", "concurrency": [1], "max_new_tokens": [200], "requests": 6})).await.unwrap();
    let view = wait_for_end(&c, &caplab, &id, Duration::from_secs(300)).await.unwrap();
    let after = metrics(&c).await;
    assert_eq!(view.cells[0].requests_ok, 6);
    let csv = c.get(caplab.api(&format!("runs/{id}/requests.csv"))).send().await.unwrap().text().await.unwrap();
    let mut rdr = csv::Reader::from_reader(csv.as_bytes());
    let h = rdr.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|x| x == n).unwrap();
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    let ms = |r: &csv::StringRecord, name: &str| r[col(name)].parse::<f64>().unwrap();
    let e2e: Vec<f64> = rows.iter().map(|r| ms(r, "e2e_ms") / 1000.0).collect();
    assert_agrees("vllm:e2e_request_latency_seconds", &e2e, &before, &after, Check::Within);
    let ttft: Vec<f64> = rows.iter().map(|r| ms(r, "ttft_ms") / 1000.0).collect();
    assert_agrees("vllm:time_to_first_token_seconds", &ttft, &before, &after, Check::NeverBelow);
}

#[tokio::test]
#[ignore = "needs a real vLLM: scripts/test.sh starts one"]
async fn real_vllm_errors_become_distinct_classes() {
    let caplab = Caplab::start(&["--target", &vllm_url()]).await.unwrap();
    let c = caplab_tests::client();

    // Both are refused before any load is sent, naming the field, from what vLLM's /v1/models says…
    for (spec, field) in [
        (json!({"workload": "chat", "max_new_tokens": [4096]}), "max_new_tokens"),
        (json!({"workload": "chat", "model": "no-such-model"}), "model"),
    ] {
        let r = c.post(caplab.api("runs")).json(&spec).send().await.unwrap();
        assert_eq!(r.status(), 422);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["fields"][0]["field"], field, "{body}");
    }
    // …and when a request reaches vLLM anyway, the engine tells its two refusals apart.
    let live = LiveCounters::default();
    let mut worker = Worker::new(&CancellationToken::new());
    let uri = parse_uri(&format!("{}/v1/completions", vllm_url()));
    let client = LoadClient::new();
    let call = Call { client: &client, uri: &uri, timeout: Duration::from_secs(30), live: &live, usage_required: true, auth: None, redactor: &caplab::secrets::Redactor::default() };
    let unknown = execute(&call, &mut worker, serde_json::to_vec(&json!({"model": "no-such-model", "prompt": "hi", "max_tokens": 4, "stream": true})).unwrap().into(), tokio::time::Instant::now()).await;
    assert_eq!(unknown.error, Some(ErrorClass::UnknownModel), "{:?}", unknown.error_message);
    assert_eq!(unknown.http_status, Some(404));
    let too_long = execute(&call, &mut worker, serde_json::to_vec(&json!({"model": "tiny", "prompt": "hi", "max_tokens": 4096, "stream": true})).unwrap().into(), tokio::time::Instant::now()).await;
    assert_eq!(too_long.error, Some(ErrorClass::ContextLength), "{:?}", too_long.error_message);
    assert_eq!(too_long.http_status, Some(400));

    // prompt + max_tokens over the context is clamped by vLLM, not an error: fewer tokens, finish "length".
    let id = start_run(&c, &caplab, json!({"workload": "batch", "concurrency": [1], "max_new_tokens": [2040], "requests": 1})).await.unwrap();
    let view = wait_for_end(&c, &caplab, &id, Duration::from_secs(300)).await.unwrap();
    let cell = &view.cells[0];
    assert_eq!(cell.requests_ok, 1, "{:?}", cell.errors);
    assert!(cell.completion_tokens < 2040 && cell.completion_tokens > 1000, "clamped to the context: {}", cell.completion_tokens);
}

#[tokio::test]
#[ignore = "needs a real vLLM: scripts/test.sh starts one"]
async fn synthetic_prompts_arrive_with_the_tokens_asked_for() {
    let caplab = Caplab::start(&["--target", &vllm_url()]).await.unwrap();
    let c = caplab_tests::client();
    for workload in ["batch", "chat"] {
        let spec = json!({"workload": workload, "concurrency": [2], "input_tokens": [256, 1024], "max_new_tokens": [8], "requests": 4});
        let id = start_run(&c, &caplab, spec).await.unwrap();
        let view = wait_for_end(&c, &caplab, &id, Duration::from_secs(300)).await.unwrap();
        assert_eq!(view.info.status, RunStatus::Finished);
        for cell in &view.cells {
            assert!(cell.notes.iter().all(|n| !n.contains("estimate") && !n.contains("assume")), "measured with vLLM's /tokenize: {:?}", cell.notes);
            assert_eq!((cell.requests_ok, cell.requests_failed), (4, 0), "{workload} {:?}", cell.input_tokens);
        }
        let csv_text = c.get(caplab.api(&format!("runs/{id}/requests.csv"))).send().await.unwrap().text().await.unwrap();
        let mut rdr = csv::Reader::from_reader(csv_text.as_bytes());
        let h = rdr.headers().unwrap().clone();
        let (asked, counted) = (h.iter().position(|x| x == "prompt_tokens_requested").unwrap(), h.iter().position(|x| x == "prompt_tokens").unwrap());
        let mut rows = 0;
        for r in rdr.records().map(Result::unwrap) {
            let (a, n): (f64, f64) = (r[asked].parse().unwrap(), r[counted].parse().unwrap());
            assert!((n - a).abs() <= a * 0.01, "{workload}: usage.prompt_tokens {n} is not within 1 % of the {a} asked for");
            rows += 1;
        }
        assert_eq!(rows, 8);
    }
}

#[tokio::test]
#[ignore = "needs a real vLLM: scripts/test.sh starts one"]
async fn a_shared_prefix_is_served_from_the_prefix_cache_and_answers_sooner() {
    let caplab = Caplab::start(&["--target", &vllm_url()]).await.unwrap();
    let c = caplab_tests::client();
    let run = |prefix: u32| {
        let (c, caplab_api) = (c.clone(), caplab.api("runs"));
        let spec = json!({"workload": "chat", "concurrency": [1], "input_tokens": [1500], "prefix_tokens": prefix, "max_new_tokens": [4], "requests": 12, "warmup": 1});
        async move {
            let r = c.post(caplab_api).json(&spec).send().await.unwrap();
            assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
            r.json::<caplab_shared::RunInfo>().await.unwrap().id
        }
    };
    let own = run(0).await;
    let own = wait_for_end(&c, &caplab, &own, Duration::from_secs(300)).await.unwrap();
    let shared = run(1400).await;
    let shared = wait_for_end(&c, &caplab, &shared, Duration::from_secs(300)).await.unwrap();
    let hit = |v: &caplab_shared::RunView| v.cells[0].server.as_ref().and_then(|s| s.prefix_cache_hit_rate).expect("vLLM's prefix-cache counters");
    assert!(hit(&own) < 0.2, "every prompt its own: {}", hit(&own));
    // 1,400 of 1,500 tokens shared, cached by whole 16-token blocks; the cell counts its
    // warm-up request too, which finds nothing cached.
    assert!(hit(&shared) > 0.7, "1,400 of 1,500 tokens shared: {}", hit(&shared));
    let ttft = |v: &caplab_shared::RunView| v.cells[0].ttft.p50.unwrap();
    assert!(ttft(&shared) < ttft(&own), "a cached prefix answers sooner: {} vs {} ms", ttft(&shared), ttft(&own));
}

/// Three-turn conversations: every turn resends the history with vLLM's own replies, so the
/// prompt vLLM counts grows turn over turn, the history is served from its prefix cache, and
/// the cell reports TTFT per turn.
#[tokio::test]
#[ignore = "needs a real vLLM: scripts/test.sh starts one"]
async fn a_three_turn_conversation_reports_ttft_per_turn() {
    let caplab = Caplab::start(&["--target", &vllm_url()]).await.unwrap();
    let c = caplab_tests::client();
    let spec = json!({"workload": "chat", "concurrency": [2], "input_tokens": [200], "max_new_tokens": [16], "requests": 6, "turns": 3, "think_time_s": 0.1});
    let id = start_run(&c, &caplab, spec).await.unwrap();
    let view = wait_for_end(&c, &caplab, &id, Duration::from_secs(300)).await.unwrap();
    let cell = &view.cells[0];
    assert_eq!((cell.requests_ok, cell.requests_failed), (6, 0), "{:?}", cell.errors);
    let turns: Vec<(u32, u32)> = cell.by_turn.iter().map(|t| (t.turn, t.requests)).collect();
    assert_eq!(turns, vec![(1, 2), (2, 2), (3, 2)]);
    let prompt = |i: usize| cell.by_turn[i].prompt_tokens_mean.unwrap();
    // Each turn adds vLLM's 16-token reply and a new 200-token message (plus the template's tokens).
    for i in 1..3 {
        assert!(prompt(i) >= prompt(i - 1) + 216.0, "turn {} prompt {} after {}", i + 1, prompt(i), prompt(i - 1));
    }
    assert!(cell.by_turn.iter().all(|t| t.ttft.p50.is_some_and(|v| v > 0.0)));
    assert!(cell.notes.iter().any(|n| n.starts_with("TTFT by turn")), "{:?}", cell.notes);
    let hit = cell.server.as_ref().and_then(|s| s.prefix_cache_hit_rate).expect("vLLM's prefix-cache counters");
    assert!(hit > 0.2, "later turns resend the history, which vLLM has cached: hit rate {hit}");
}

#[tokio::test]
#[ignore = "needs a real vLLM: scripts/test.sh starts one"]
async fn an_azure_trace_replays_at_ten_times_with_its_lengths() {
    let caplab = Caplab::start(&["--target", &vllm_url()]).await.unwrap();
    let c = caplab_tests::client();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../data/traces/azure_sample.csv")).unwrap();
    let trace: caplab_shared::InputsRef =
        c.post(caplab.api("inputs")).json(&json!({"name": "azure_sample.csv", "workload": "chat", "text": text})).send().await.unwrap().json().await.unwrap();
    let id = start_run(&c, &caplab, json!({"workload": "chat", "mode": "rate", "speedup": [10], "max_new_tokens": [16], "inputs": {"id": trace.id}})).await.unwrap();
    let view = wait_for_end(&c, &caplab, &id, Duration::from_secs(300)).await.unwrap();
    let cell = &view.cells[0];
    assert_eq!((cell.requests_ok, cell.requests_failed), (40, 0));
    assert!(cell.notes.iter().any(|n| n.starts_with("arrivals: 40 requests sent")), "{:?}", cell.notes);
    let csv_text = c.get(caplab.api(&format!("runs/{id}/requests.csv"))).send().await.unwrap().text().await.unwrap();
    let mut rdr = csv::Reader::from_reader(csv_text.as_bytes());
    let h = rdr.headers().unwrap().clone();
    let at = |n: &str| h.iter().position(|x| x == n).unwrap();
    let (asked, counted, out) = (at("prompt_tokens_requested"), at("prompt_tokens"), at("completion_tokens"));
    let mut outputs: Vec<u32> = Vec::new();
    for r in rdr.records().map(Result::unwrap) {
        let (a, n): (f64, f64) = (r[asked].parse().unwrap(), r[counted].parse().unwrap());
        assert!((n - a).abs() <= a * 0.01, "usage.prompt_tokens {n} vs the trace's {a}");
        outputs.push(r[out].parse().unwrap());
    }
    let mut recorded: Vec<u32> = text.lines().skip(1).map(|l| l.split(',').nth(2).unwrap().parse().unwrap()).collect();
    outputs.sort_unstable();
    recorded.sort_unstable();
    assert_eq!(outputs, recorded, "vLLM generated each request's recorded output length (ignore_eos)");
}
