//! Nobody locks the dashboard out: silent connections are closed (and make room when the caps
//! are reached), WebSockets count among the connections and have a cap of their own, and the
//! open-file limit is shared out so that caplab never runs out of descriptors itself.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use caplab_shared::{ErrorClass, RunStatus};
use caplab_tests::faults::{self, Fault};
use caplab_tests::{client, start_run, wait_for_end, Caplab, TEST_TOKEN};
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// A client with the operator token that opens a new connection for every request.
fn fresh_client() -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(reqwest::header::AUTHORIZATION, format!("Bearer {TEST_TOKEN}").parse().unwrap());
    reqwest::Client::builder().default_headers(h).pool_max_idle_per_host(0).build().unwrap()
}

/// Whether the server closed `s` within `limit`.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(tokio::time::timeout(limit, s.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    let caplab = Caplab::start(&["--header-read-timeout-s", "1"]).await.unwrap();
    let addr = caplab.url.trim_start_matches("http://").to_string();
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await, "a silent connection is kept open");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_silent_connections_never_lock_the_operator_out() {
    let _ = rlimit::increase_nofile_limit(16_384);
    // 1,000 silent connections fill every place the dashboard has.
    let caplab = Caplab::start(&["--max-connections", "1000"]).await.unwrap();
    let addr = caplab.url.trim_start_matches("http://").to_string();
    let mut silent = VecDeque::new();
    for _ in 0..1000 {
        silent.push_back(TcpStream::connect(&addr).await.unwrap());
    }
    // The attacker keeps them all open and opens 20 more every 100 ms.
    let attacker_addr = addr.clone();
    let attacker = tokio::spawn(async move {
        loop {
            for _ in 0..20 {
                if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(50), TcpStream::connect(&attacker_addr)).await {
                    silent.push_back(s);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // Meanwhile the operator's page keeps asking, each time on a new connection, for 12 s
    // (past the 10 s first-byte timeout).
    let c = fresh_client();
    let (started, mut worst, mut answered) = (Instant::now(), Duration::ZERO, 0);
    while started.elapsed() < Duration::from_secs(12) {
        let t = Instant::now();
        let r = c.get(caplab.api("runs")).timeout(Duration::from_secs(5)).send().await;
        let took = t.elapsed();
        assert!(r.as_ref().is_ok_and(|r| r.status() == 200), "after {answered} answers: {r:?}");
        assert!(took < Duration::from_secs(1), "an answer took {took:?} after {answered} answers");
        worst = worst.max(took);
        answered += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    attacker.abort();
    eprintln!("{answered} answers, the slowest in {worst:?}");
    assert!(answered >= 50);
}

#[tokio::test]
async fn websockets_are_capped_and_keep_their_connection_s_place() {
    use futures_util::StreamExt;
    let caplab = Caplab::start(&["--max-connections", "4", "--max-websockets", "3", "--max-connections-per-client", "4"]).await.unwrap();
    let c = client();
    let id = start_run(&c, &caplab, json!({"workload": "chat", "target": "sim", "concurrency": [1], "max_new_tokens": [4], "requests": 1})).await.unwrap();
    wait_for_end(&c, &caplab, &id, Duration::from_secs(30)).await.unwrap();
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let (mut ws, _) = tokio_tungstenite::connect_async(caplab.ws_request(&format!("runs/{id}/ws"))).await.unwrap();
        assert!(matches!(ws.next().await, Some(Ok(_))), "a snapshot first");
        sockets.push(ws);
    }
    // A fourth live view is refused, saying why.
    match tokio_tungstenite::connect_async(caplab.ws_request(&format!("runs/{id}/ws"))).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 503);
            let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned();
            assert!(body.contains("--max-websockets"), "{body}");
        }
        other => panic!("a fourth socket: {:?}", other.map(|_| ())),
    }
    // Three sockets hold three of the four places: one request at a time still gets in…
    let fresh = fresh_client();
    assert_eq!(fresh.get(caplab.api("runs")).send().await.unwrap().status(), 200);
    drop(sockets.pop());
    // A closed socket gives its place back.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match tokio_tungstenite::connect_async(caplab.ws_request(&format!("runs/{id}/ws"))).await {
            Ok((ws, _)) => {
                sockets.push(ws);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "the place was not given back: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn open_websockets_count_among_the_connections() {
    use futures_util::StreamExt;
    let caplab = Caplab::start(&["--max-connections", "3", "--max-websockets", "3", "--max-connections-per-client", "3"]).await.unwrap();
    let c = client();
    let id = start_run(&c, &caplab, json!({"workload": "chat", "target": "sim", "concurrency": [1], "max_new_tokens": [4], "requests": 1})).await.unwrap();
    wait_for_end(&c, &caplab, &id, Duration::from_secs(30)).await.unwrap();
    drop(c);
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let (mut ws, _) = tokio_tungstenite::connect_async(caplab.ws_request(&format!("runs/{id}/ws"))).await.unwrap();
        assert!(matches!(ws.next().await, Some(Ok(_))));
        sockets.push(ws);
    }
    // Every place is a socket: a new connection is not served until one closes.
    let fresh = fresh_client();
    let waited = fresh.get(caplab.api("runs")).timeout(Duration::from_secs(2)).send().await;
    assert!(waited.is_err(), "three sockets and a request open at once with --max-connections 3: {waited:?}");
    sockets.pop();
    let r = fresh.get(caplab.api("runs")).timeout(Duration::from_secs(5)).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn one_client_address_cannot_take_every_place() {
    use futures_util::StreamExt;
    let caplab = Caplab::start(&["--max-connections", "8", "--max-websockets", "8", "--max-connections-per-client", "2"]).await.unwrap();
    let c = client();
    let id = start_run(&c, &caplab, json!({"workload": "chat", "target": "sim", "concurrency": [1], "max_new_tokens": [4], "requests": 1})).await.unwrap();
    wait_for_end(&c, &caplab, &id, Duration::from_secs(30)).await.unwrap();
    drop(c);
    let mut sockets = Vec::new();
    for _ in 0..2 {
        let (mut ws, _) = tokio_tungstenite::connect_async(caplab.ws_request(&format!("runs/{id}/ws"))).await.unwrap();
        assert!(matches!(ws.next().await, Some(Ok(_))));
        sockets.push(ws);
    }
    // 127.0.0.1 holds its two places with busy sockets: a third connection from it is closed…
    assert!(tokio_tungstenite::connect_async(caplab.ws_request(&format!("runs/{id}/ws"))).await.is_err());
    // …while another address still gets in.
    let port = caplab.url.rsplit(':').next().unwrap();
    let other = reqwest::Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, 2])).build().unwrap();
    let url = format!("http://127.0.0.1:{port}/api/runs");
    let r = other.get(&url).header("authorization", format!("Bearer {TEST_TOKEN}")).timeout(Duration::from_secs(5)).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// Under `ulimit -n 1024`, 500 silent connections and a run at concurrency 560 against a real
/// (out-of-process) target: the dashboard's share is capped so the run never runs short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_low_open_file_limit_the_load_never_runs_short() {
    let _ = rlimit::increase_nofile_limit(16_384);
    let (target, server) = faults::start(vec![Fault::Ok], 4, Duration::from_millis(100), true).await;
    let caplab = Caplab::start_with_nofile(&["--target", &format!("f={target}")], 1024).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let said = caplab.output();
    assert!(said.contains("connections: at most 216 open (108 live views, 54 per client address); runs may use 648 open files (limit 1024)"), "{said}");
    let addr = caplab.url.trim_start_matches("http://").to_string();
    let mut silent = Vec::new();
    for _ in 0..500 {
        silent.push(TcpStream::connect(&addr).await.unwrap());
    }
    let c = fresh_client();
    // 560 in flight and an eighth more for connection churn: 630 of the 648 the load may open.
    let spec = json!({"workload": "chat", "target": "f", "concurrency": [560], "max_new_tokens": [4], "requests": 1120, "warmup": 0, "timeout_s": 30});
    let id = start_run(&c, &caplab, spec).await.unwrap();
    let view = wait_for_end(&c, &caplab, &id, Duration::from_secs(90)).await.unwrap();
    let cell = &view.cells[0];
    assert_eq!(view.info.status, RunStatus::Finished, "{:?}", view.info.message);
    assert_eq!((cell.requests_ok, cell.errors.get(&ErrorClass::Client).copied()), (1120, None), "{:?}", cell.errors);
    assert!(cell.reached_concurrency() >= 500, "the run reached its concurrency: {}", cell.reached_concurrency());
    assert_eq!(server.served.load(std::sync::atomic::Ordering::SeqCst), 1120);
    // What does not fit is refused before anything is sent, with the numbers.
    for (spec, words) in [
        (json!({"workload": "chat", "target": "f", "concurrency": [600], "requests": 600}), "600 requests in flight need 675 open files (one a request, and an eighth more for connections being replaced), but caplab may open only 648 for the load (its open-file limit is 1024"),
        (json!({"workload": "chat", "target": "sim", "concurrency": [400], "requests": 400}), "400 requests in flight need 900 open files (an eighth more for connections being replaced; the simulator inside caplab"),
    ] {
        let r = c.post(caplab.api("runs")).json(&spec).send().await.unwrap();
        assert_eq!(r.status(), 422);
        let body = r.text().await.unwrap();
        assert!(body.contains(words), "{body}");
    }
    let said = caplab.output();
    assert!(!said.contains("Too many open files") && !said.contains("looks down"), "{said}");
    drop(silent);
}

#[tokio::test]
async fn a_body_left_unread_closes_the_connection_and_says_so() {
    let caplab = Caplab::start(&[]).await.unwrap();
    let big = vec![b' '; 200_000];
    let r = client().post(caplab.api("runs")).header("content-type", "application/json").body(big).send().await.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers().get("connection").map(|v| v.to_str().unwrap().to_ascii_lowercase()), Some("close".into()));
    // A request whose body was read keeps its connection.
    let read = client().post(caplab.api("runs")).json(&json!({"workload": "chat", "concurrency": [0]})).send().await.unwrap();
    assert_eq!(read.status(), 422);
    assert_eq!(read.headers().get("connection"), None);
}
