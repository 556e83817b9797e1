//! Faults of the target server are measured and classified, never fatal.

use std::time::Duration;

use caplab_shared::{ErrorClass, RunStatus};
use caplab_tests::faults::{self, Fault};
use caplab_tests::{start_run, wait_for_end, Caplab};
use serde_json::json;

#[tokio::test]
async fn every_fault_lands_in_its_class_and_the_rest_is_measured() {
    use Fault::*;
    let plan = vec![Ok, Status500, UnknownModel, ContextLength, Disconnect, Stall, Malformed, NoUsage, ErrorEvent, Ok, NoDone, NoFinish, EmptyBody];
    let (target, server) = faults::start(plan.clone(), 6, Duration::from_millis(5), true).await;
    let caplab = Caplab::start(&["--target", &format!("faulty={target}")]).await.unwrap();
    let c = caplab_tests::client();
    let probe: serde_json::Value = c.get(caplab.api("target?name=faulty")).send().await.unwrap().json().await.unwrap();
    assert_eq!(probe["simulated"], false);
    assert_eq!(probe["server"], "transformers-serve", "{probe}");

    // 26 requests = the plan twice; the stalled ones end by the 1 s timeout.
    let id = start_run(
        &c,
        &caplab,
        json!({"target": "faulty", "workload": "batch", "concurrency": [5], "max_new_tokens": [6], "requests": 26, "timeout_s": 1.0}),
    )
    .await
    .unwrap();
    let view = wait_for_end(&c, &caplab, &id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(view.info.status, RunStatus::Finished);
    assert!(!view.info.target.simulated);
    let cell = &view.cells[0];
    let count = |class| cell.errors.get(&class).copied().unwrap_or(0);
    assert_eq!(count(ErrorClass::Server), 2);
    assert_eq!(count(ErrorClass::UnknownModel), 2);
    assert_eq!(count(ErrorClass::ContextLength), 2);
    assert_eq!(count(ErrorClass::Stream), 8, "disconnects, in-stream error events, bodies ended before a finish reason, empty bodies");
    assert_eq!(count(ErrorClass::Timeout), 2);
    assert_eq!(count(ErrorClass::Protocol), 4, "malformed chunks and missing usage from a server known to send it");
    assert_eq!((cell.requests_ok, cell.requests_failed), (6, 20), "a stream without [DONE] is complete");
    assert_eq!(cell.done_markers, 4, "[DONE] is recorded, not required");
    assert_eq!(cell.completion_tokens, 6 * 6, "only successful requests count");
    assert!(!cell.slo_pass, "a cell with failures does not pass");
    assert_eq!(server.served.load(std::sync::atomic::Ordering::SeqCst), 26, "no retries");

    // The per-request file says what went wrong, in the server's words.
    let csv = c.get(caplab.api(&format!("runs/{id}/requests.csv"))).send().await.unwrap().text().await.unwrap();
    assert!(csv.contains("does not exist"));
    assert!(csv.contains("maximum context length"));
    assert!(csv.contains("no complete response within 1 s"));
    assert!(csv.contains("the stream ended after 2 text events without a finish_reason"));
    assert!(csv.contains("the stream ended before any event or finish_reason"));
    assert_eq!(csv.lines().count(), 27);
    // ignore_eos (on by default) is vLLM-only; this server refuses it like `transformers serve`,
    // so caplab must not have sent it.
    assert_eq!(count(ErrorClass::BadRequest), 0);
}

/// From a server caplab does not recognise, a stream without usage is not an error: the request
/// succeeds with its tokens unknown, and the cell says so.
#[tokio::test]
async fn an_unrecognised_server_without_usage_is_measured_with_tokens_unknown() {
    let (target, _server) = faults::start(vec![Fault::Ok, Fault::NoUsage], 4, Duration::from_millis(2), false).await;
    let caplab = Caplab::start(&["--target", &format!("faulty={target}")]).await.unwrap();
    let c = caplab_tests::client();
    let probe: serde_json::Value = c.get(caplab.api("target?name=faulty")).send().await.unwrap().json().await.unwrap();
    assert_eq!(probe["server"], "openai-compatible", "{probe}");
    let id = start_run(&c, &caplab, json!({"target": "faulty", "workload": "chat", "concurrency": [2], "max_new_tokens": [4], "requests": 6}))
        .await
        .unwrap();
    let view = wait_for_end(&c, &caplab, &id, Duration::from_secs(30)).await.unwrap();
    let cell = &view.cells[0];
    assert_eq!((cell.requests_ok, cell.requests_failed, cell.tokens_unknown), (6, 0, 3));
    assert_eq!(cell.completion_tokens, 3 * 4, "only usage counts");
    assert!(cell.notes.iter().any(|n| n.contains("3 of 6 responses had no usage")), "{:?}", cell.notes);
}

/// What proxies and overloaded servers send: 429 with Retry-After (its own class), an HTML error
/// page from Cloudflare (a server error, said so), headers that never come (a timeout), and one
/// 1 MiB chunk (measured like any other stream), and a body that never ends its line (a protocol
/// error once 8 MiB wait unfinished, not memory without bound).
#[tokio::test]
async fn proxy_pages_rate_limits_missing_headers_and_huge_chunks() {
    use Fault::*;
    let (target, _server) = faults::start(vec![RateLimited, Html524, NoHeaders, BigChunk, EndlessLine], 6, Duration::from_millis(1), true).await;
    let caplab = Caplab::start(&["--target", &format!("faulty={target}")]).await.unwrap();
    let c = caplab_tests::client();
    let spec = json!({"target": "faulty", "workload": "batch", "concurrency": [5], "max_new_tokens": [6], "requests": 5, "timeout_s": 1.0});
    let id = start_run(&c, &caplab, spec).await.unwrap();
    let view = wait_for_end(&c, &caplab, &id, Duration::from_secs(30)).await.unwrap();
    let cell = &view.cells[0];
    let count = |class| cell.errors.get(&class).copied().unwrap_or(0);
    assert_eq!((count(ErrorClass::RateLimited), count(ErrorClass::Server), count(ErrorClass::Timeout)), (1, 1, 1), "{:?}", cell.errors);
    assert_eq!(count(ErrorClass::BadRequest), 0, "429 is not a bad request");
    assert_eq!(count(ErrorClass::Protocol), 1, "the endless line: {:?}", cell.errors);
    assert_eq!((cell.requests_ok, cell.completion_tokens), (1, 6), "the 1 MiB chunk is measured");
    let csv = c.get(caplab.api(&format!("runs/{id}/requests.csv"))).send().await.unwrap().text().await.unwrap();
    assert!(csv.contains("Retry-After: 7"), "{csv}");
    assert!(csv.contains("an HTML error page") && csv.contains("524: A timeout occurred"), "{csv}");
    assert!(csv.contains("a stream event ran past 8192 KiB without ending"), "{csv}");
}

/// A target that keeps failing stops the run by itself (max_error_rate) instead of being hammered.
#[tokio::test]
async fn a_failing_target_stops_the_run_by_itself() {
    let (target, server) = faults::start(vec![Fault::Status500], 4, Duration::from_millis(1), true).await;
    let caplab = Caplab::start(&["--target", &format!("faulty={target}")]).await.unwrap();
    let c = caplab_tests::client();
    let spec = json!({"target": "faulty", "workload": "chat", "concurrency": [2], "max_new_tokens": [4], "requests": 5000, "max_error_rate": 0.5, "error_window": 20});
    let id = start_run(&c, &caplab, spec).await.unwrap();
    let view = wait_for_end(&c, &caplab, &id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(view.info.status, RunStatus::Stopped);
    let message = view.info.message.clone().unwrap();
    assert!(message.starts_with("stopped by itself: 20 of the last 20 requests failed (max_error_rate 0.5)"), "{message}");
    let served = server.served.load(std::sync::atomic::Ordering::SeqCst);
    assert!(served < 200, "the target was not hammered: {served} requests");
}

/// A target that dies mid-run (every connection cut) and comes back on the same port: the
/// requests it cut and the connections it refused are counted, caplab backs off instead of
/// burning the rest of the cell in milliseconds, and the run goes on once it is back.
#[tokio::test]
async fn a_target_that_dies_mid_run_and_comes_back() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (url, first, task) = faults::serve_on(listener, vec![Fault::Ok], 8, Duration::from_millis(5), true);
    let caplab = Caplab::start(&["--target", &format!("faulty={url}")]).await.unwrap();
    let c = caplab_tests::client();
    let id = start_run(&c, &caplab, json!({"target": "faulty", "workload": "chat", "concurrency": [2], "max_new_tokens": [8], "requests": 120}))
        .await
        .unwrap();
    while first.served.load(std::sync::atomic::Ordering::SeqCst) < 20 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task.abort(); // dies: listener and connections gone
    tokio::time::sleep(Duration::from_millis(500)).await;
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let (_, second, _task) = faults::serve_on(listener, vec![Fault::Ok], 8, Duration::from_millis(5), true);
    let view = wait_for_end(&c, &caplab, &id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(view.info.status, RunStatus::Finished, "{:?}", view.info.message);
    let cell = &view.cells[0];
    let down = cell.errors.get(&ErrorClass::Connect).copied().unwrap_or(0) + cell.errors.get(&ErrorClass::Stream).copied().unwrap_or(0);
    assert!(down >= 2, "the outage is measured: {:?}", cell.errors);
    assert!(down <= 30, "caplab backed off rather than burning the cell against a dead target: {:?}", cell.errors);
    assert_eq!(cell.requests_ok + cell.requests_failed, 120);
    assert!(second.served.load(std::sync::atomic::Ordering::SeqCst) >= 60, "the run went on against the server that came back");
}
