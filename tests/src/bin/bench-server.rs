//! The benchmark's fixed-timing streaming server (bench/peers): every request's first token
//! 50 ms after it arrives, then one token every 10 ms on an absolute schedule, exactly
//! `max_tokens` (or `max_completion_tokens`) of them, with `usage` when asked, in vLLM's wire
//! format. It logs, per request, when it arrived and when each chunk was handed to the
//! connection, so a load generator's TTFT and ITL can be set against the server's own.
//!
//!   bench-server [--listen 127.0.0.1:0] [--ttft-ms 50] [--itl-ms 10]
//!   GET /bench/stats   the server-side distributions since the last call, which clears them

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use caplab_shared::stats::Dist;
use serde_json::{json, Value};

/// One request as the server saw it (µs since the server started).
struct Served {
    recv_us: u64,
    first_us: u64,
    last_us: u64,
    tokens: u32,
    /// Gaps between consecutive token chunks, µs.
    gaps: Vec<u32>,
}

struct Server {
    start: Instant,
    ttft: Duration,
    itl: Duration,
    log: Mutex<Vec<Served>>,
    /// Chunks (SSE events with a token) handed to connections.
    chunks: std::sync::atomic::AtomicU64,
}

impl Server {
    fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }
}

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| default.to_string())
}

#[tokio::main]
async fn main() {
    let listen = arg("--listen", "127.0.0.1:0");
    let server = Arc::new(Server {
        start: Instant::now(),
        ttft: Duration::from_secs_f64(arg("--ttft-ms", "50").parse::<f64>().expect("--ttft-ms") / 1000.0),
        itl: Duration::from_secs_f64(arg("--itl-ms", "10").parse::<f64>().expect("--itl-ms") / 1000.0),
        log: Mutex::new(Vec::new()),
        chunks: Default::default(),
    });
    let app = Router::new()
        .route("/v1/models", get(|| async { Json(json!({"object": "list", "data": [{"id": "bench", "object": "model", "owned_by": "vllm", "max_model_len": 1_000_000}]})) }))
        .route("/health", get(|| async { "" }))
        .route("/v1/completions", post(|st, body| generate(st, body, false)))
        .route("/v1/chat/completions", post(|st, body| generate(st, body, true)))
        .route("/bench/stats", get(stats))
        .with_state(server);
    // A deep accept queue (the kernel caps it at net.core.somaxconn): with tokio's default of
    // 1,024, a wave of 1,000 connections on two busy cores overflowed it, and the connections
    // whose handshake was dropped waited for a retransmission, ~0.7 s, in every tool's TTFT p99.
    let addr: std::net::SocketAddr = listen.parse().expect("--listen ADDR:PORT");
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }.expect("socket");
    socket.set_reuseaddr(true).expect("reuseaddr");
    socket.bind(addr).expect("bind");
    let listener = socket.listen(16_384).expect("listen");
    println!("bench-server listening on http://{}", listener.local_addr().unwrap());
    axum::serve(listener, app).await.unwrap();
}

fn chunk(chat: bool, i: u32, last: bool) -> String {
    let finish = if last { "\"length\"" } else { "null" };
    if chat {
        format!("data: {{\"id\":\"chatcmpl-b\",\"object\":\"chat.completion.chunk\",\"model\":\"bench\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" t{i}\"}},\"finish_reason\":{finish}}}]}}\n\n")
    } else {
        format!("data: {{\"id\":\"cmpl-b\",\"object\":\"text_completion\",\"model\":\"bench\",\"choices\":[{{\"index\":0,\"text\":\" t{i}\",\"finish_reason\":{finish}}}]}}\n\n")
    }
}

async fn generate(State(st): State<Arc<Server>>, body: Bytes, chat: bool) -> Response {
    let recv_us = st.now_us();
    let arrived = tokio::time::Instant::now();
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let n = req.get("max_completion_tokens").or_else(|| req.get("max_tokens")).and_then(Value::as_u64).unwrap_or(16).max(1) as u32;
    let prompt_tokens = (body.len() as u64 / 4).max(1);
    let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + u64::from(n)});
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if !stream {
        tokio::time::sleep_until(arrived + st.ttft + st.itl * (n - 1)).await;
        let now = st.now_us();
        st.log.lock().unwrap().push(Served { recv_us, first_us: now, last_us: now, tokens: n, gaps: Vec::new() });
        let text: String = (0..n).map(|i| format!(" t{i}")).collect();
        let choice = if chat { json!({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}) } else { json!({"index": 0, "text": text, "finish_reason": "length"}) };
        return Json(json!({"id": "b", "object": if chat { "chat.completion" } else { "text_completion" }, "model": "bench", "choices": [choice], "usage": usage})).into_response();
    }
    let with_usage = req.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        if chat && tx.send(Ok(Bytes::from("data: {\"id\":\"chatcmpl-b\",\"object\":\"chat.completion.chunk\",\"model\":\"bench\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n"))).await.is_err() {
            return;
        }
        let first_at = arrived + st.ttft;
        let mut served = Served { recv_us, first_us: 0, last_us: 0, tokens: 0, gaps: Vec::with_capacity(n as usize) };
        for i in 0..n {
            tokio::time::sleep_until(first_at + st.itl * i).await;
            if tx.send(Ok(Bytes::from(chunk(chat, i, i + 1 == n)))).await.is_err() {
                return;
            }
            let now = st.now_us();
            if i == 0 {
                served.first_us = now;
            } else {
                served.gaps.push((now - served.last_us) as u32);
            }
            served.last_us = now;
            served.tokens += 1;
            st.chunks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let tail = if with_usage {
            let id = if chat { "chatcmpl-b" } else { "cmpl-b" };
            let object = if chat { "chat.completion.chunk" } else { "text_completion" };
            format!("data: {{\"id\":\"{id}\",\"object\":\"{object}\",\"model\":\"bench\",\"choices\":[],\"usage\":{usage}}}\n\ndata: [DONE]\n\n")
        } else {
            "data: [DONE]\n\n".to_string()
        };
        let _ = tx.send(Ok(Bytes::from(tail))).await;
        st.log.lock().unwrap().push(served);
    });
    let body = Body::from_stream(tokio_stream_of(rx));
    ([("content-type", "text/event-stream"), ("cache-control", "no-cache")], body).into_response()
}

fn tokio_stream_of(mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The server's own view of the requests finished since the last call (each call clears the
/// log): TTFT (arrival → first token handed to the connection), ITL (gaps between token
/// chunks), E2E, token events and their rate, and the rate requests arrived at.
async fn stats(State(st): State<Arc<Server>>) -> Json<Value> {
    let served: Vec<Served> = std::mem::take(&mut *st.log.lock().unwrap());
    let ms = |us: u64| us as f64 / 1000.0;
    let mut ttft: Vec<f64> = served.iter().map(|s| ms(s.first_us - s.recv_us)).collect();
    let mut e2e: Vec<f64> = served.iter().map(|s| ms(s.last_us - s.recv_us)).collect();
    let mut itl: Vec<f64> = served.iter().flat_map(|s| s.gaps.iter().map(|g| f64::from(*g) / 1000.0)).collect();
    let first = served.iter().map(|s| s.recv_us).min().unwrap_or(0);
    let last = served.iter().map(|s| s.last_us).max().unwrap_or(0);
    let mut recv: Vec<u64> = served.iter().map(|s| s.recv_us).collect();
    recv.sort_unstable();
    let tokens: u64 = served.iter().map(|s| u64::from(s.tokens)).sum();
    let span_s = (last.saturating_sub(first)) as f64 / 1e6;
    let arrival_span_s = (recv.last().copied().unwrap_or(0).saturating_sub(recv.first().copied().unwrap_or(0))) as f64 / 1e6;
    Json(json!({
        "requests": served.len(),
        "ttft_ms": Dist::of(&mut ttft),
        "itl_ms": Dist::of(&mut itl),
        "e2e_ms": Dist::of(&mut e2e),
        "token_events": tokens,
        "span_s": span_s,
        "events_per_s": if span_s > 0.0 { tokens as f64 / span_s } else { 0.0 },
        "arrival_rate_per_s": if arrival_span_s > 0.0 { (recv.len() as f64 - 1.0) / arrival_span_s } else { 0.0 },
        "chunks_total": st.chunks.load(std::sync::atomic::Ordering::Relaxed),
    }))
}
