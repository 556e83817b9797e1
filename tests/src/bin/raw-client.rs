//! The benchmark's baseline (bench/peers): a minimal raw-HTTP streaming client, the least any
//! load generator must do. `concurrency` tasks share one pooled hyper client; each sends its
//! next request as soon as its last one ended, reads the body frame by frame, and times the
//! first frame carrying a token (TTFT, from the send) and the gaps between such frames (ITL).
//! No JSON parsing, no aggregation while it runs. Prints one JSON object.
//!
//!   raw-client URL CONCURRENCY REQUESTS MAX_TOKENS

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use caplab_shared::stats::Dist;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, concurrency, requests, max_tokens] = args.as_slice() else {
        eprintln!("usage: raw-client URL CONCURRENCY REQUESTS MAX_TOKENS");
        std::process::exit(2);
    };
    let (concurrency, requests, max_tokens): (u32, u32, u32) = (concurrency.parse().unwrap(), requests.parse().unwrap(), max_tokens.parse().unwrap());
    let uri: hyper::Uri = format!("{url}/v1/completions").parse().unwrap();
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(usize::MAX).build(connector);
    let body = Bytes::from(format!(r#"{{"model":"bench","prompt":"hello","max_tokens":{max_tokens},"stream":true,"ignore_eos":true,"stream_options":{{"include_usage":true}}}}"#));
    let next = Arc::new(AtomicU32::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, uri, body, next) = (client.clone(), uri.clone(), body.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ttft, mut itl, mut e2e, mut failed) = (Vec::new(), Vec::new(), Vec::new(), 0u32);
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                let sent = Instant::now();
                let req = hyper::Request::post(uri.clone()).header("content-type", "application/json").body(Full::new(body.clone())).unwrap();
                let Ok(resp) = client.request(req).await else {
                    failed += 1;
                    continue;
                };
                let mut body = resp.into_body();
                let mut last: Option<Instant> = None;
                while let Some(Ok(frame)) = body.frame().await {
                    let Some(data) = frame.data_ref() else { continue };
                    // A frame with a token: vLLM's text chunks carry `"text":"`, the usage chunk does not.
                    if memchr_text(data) {
                        let now = Instant::now();
                        match last {
                            None => ttft.push(now.duration_since(sent).as_secs_f64() * 1000.0),
                            Some(l) => itl.push(now.duration_since(l).as_secs_f64() * 1000.0),
                        }
                        last = Some(now);
                    }
                }
                e2e.push(sent.elapsed().as_secs_f64() * 1000.0);
            }
            (ttft, itl, e2e, failed)
        }));
    }
    let (mut ttft, mut itl, mut e2e, mut failed) = (Vec::new(), Vec::new(), Vec::new(), 0);
    for t in tasks {
        let (a, b, c, f) = t.await.unwrap();
        ttft.extend(a);
        itl.extend(b);
        e2e.extend(c);
        failed += f;
    }
    let wall = start.elapsed().as_secs_f64();
    let completed = e2e.len();
    println!(
        "{}",
        serde_json::json!({"tool": "raw-client", "completed": completed, "failed": failed, "wall_s": wall, "token_events": itl.len() + ttft.len(),
                           "ttft_ms": Dist::of(&mut ttft), "itl_ms": Dist::of(&mut itl), "e2e_ms": Dist::of(&mut e2e)})
    );
}

fn memchr_text(data: &[u8]) -> bool {
    data.windows(8).any(|w| w == b"\"text\":\"")
}
