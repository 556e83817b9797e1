//! The probe leaves nothing behind for the run: a server that closes a connection after an
//! error (transformers serve does after its 500 on `/v1/models`) must never get the run's first
//! request on that connection, which it has reset (seen on the H200: 1 of 1,016 requests).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use caplab::engine::http::parse_uri;
use caplab::engine::request::{execute, Call, LiveCounters, Worker};
use caplab::target::probe;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// A raw HTTP/1.1 server that answers every GET with a keep-alive 500 and every POST with a
/// complete stream; it records (connection number, request line) of each request.
async fn recording_server() -> (String, Arc<Mutex<Vec<(usize, String)>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        for conn in 0.. {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 4096];
                    let Ok(n) = sock.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    let length = head
                        .lines()
                        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
                        .unwrap_or(0);
                    if buf.len() < end + 4 + length {
                        continue;
                    }
                    buf.drain(..end + 4 + length);
                    let line = head.lines().next().unwrap_or("").to_string();
                    log.lock().unwrap().push((conn, line.clone()));
                    if line.starts_with("GET") {
                        let body = "Internal Server Error";
                        let _ = sock.write_all(format!("HTTP/1.1 500 Internal Server Error\r\ncontent-length: {}\r\n\r\n{body}", body.len()).as_bytes()).await;
                    } else {
                        let stream = "data: {\"choices\":[{\"index\":0,\"text\":\"hi\",\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n\n";
                        let _ = sock
                            .write_all(format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n{stream}").as_bytes())
                            .await;
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

#[tokio::test]
async fn the_first_request_never_reuses_a_probe_connection() {
    let (url, seen) = recording_server().await;
    // The engine's own two clients: the probe's and the load's.
    let engine = caplab::engine::Engine::new();
    let info = probe(&engine.client, &url, None).await.unwrap();
    assert!(info.models.is_empty(), "its /v1/models failed");
    let live = LiveCounters::default();
    let uri = parse_uri(&format!("{url}/v1/completions"));
    let call = Call { client: &engine.load, uri: &uri, timeout: Duration::from_secs(5), live: &live, usage_required: true, auth: None, redactor: &caplab::secrets::Redactor::default() };
    let sample = execute(&call, &mut Worker::new(&CancellationToken::new()), bytes::Bytes::from_static(b"{}"), tokio::time::Instant::now()).await;
    assert_eq!(sample.error, None, "{:?}", sample.error_message);
    let seen = seen.lock().unwrap().clone();
    let post_conn = seen.iter().find(|(_, l)| l.starts_with("POST")).map(|(c, _)| *c).unwrap();
    let probe_conns: Vec<usize> = seen.iter().filter(|(_, l)| l.starts_with("GET")).map(|(c, _)| *c).collect();
    assert_eq!(probe_conns.len(), 7, "the probe asked seven endpoints: {seen:?}");
    assert!(!probe_conns.contains(&post_conn), "the run's request went out on a probe connection: {seen:?}");
}
