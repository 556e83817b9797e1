//! The benchmark's baseline (bench/peers): a minimal raw-HTTP streaming client, the least any
//! load generator must do. `concurrency` tasks share one pooled hyper client; each sends its
//! next request as soon as its last one ended, reads the body frame by frame, and times the
//! first frame carrying a token (TTFT, from the send) and the gaps between such frames (ITL).
//! No JSON parsing, no aggregation while it runs. Prints one JSON object.
//!
//!   raw-client URL CONCURRENCY REQUESTS MAX_TOKENS [MODEL PROMPTS_FILE]
//! Without MODEL and PROMPTS_FILE: `/v1/completions`, model "bench", prompt "hello". With them
//! (bench/gpu, a real vLLM): `/v1/chat/completions`, each prompt of the file (one per line, `#`
//! lines skipped, as caplab's data/chat_prompts.txt) the user message in turn. Every body is
//! built before the clock starts.

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
    let (url, concurrency, requests, max_tokens, chat) = match args.as_slice() {
        [_, url, c, r, m] => (url, c, r, m, None),
        [_, url, c, r, m, model, prompts] => (url, c, r, m, Some((model, prompts))),
        _ => {
            eprintln!("usage: raw-client URL CONCURRENCY REQUESTS MAX_TOKENS [MODEL PROMPTS_FILE]");
            std::process::exit(2);
        }
    };
    let (concurrency, requests, max_tokens): (u32, u32, u32) = (concurrency.parse().unwrap(), requests.parse().unwrap(), max_tokens.parse().unwrap());
    let (path, bodies, token_key): (&str, Vec<Bytes>, &'static [u8]) = match chat {
        None => {
            let body = format!(r#"{{"model":"bench","prompt":"hello","max_tokens":{max_tokens},"stream":true,"ignore_eos":true,"stream_options":{{"include_usage":true}}}}"#);
            ("/v1/completions", vec![Bytes::from(body)], b"\"text\":\"")
        }
        Some((model, file)) => {
            let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
            let bodies: Vec<Bytes> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(|p| {
                    let body = serde_json::json!({"model": model, "messages": [{"role": "user", "content": p}], "max_tokens": max_tokens,
                                                  "stream": true, "ignore_eos": true, "stream_options": {"include_usage": true}});
                    Bytes::from(body.to_string())
                })
                .collect();
            assert!(!bodies.is_empty(), "{file} holds no prompt");
            ("/v1/chat/completions", bodies, b"\"content\":\"")
        }
    };
    let bodies = Arc::new(bodies);
    let uri: hyper::Uri = format!("{url}{path}").parse().unwrap();
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(usize::MAX).build(connector);
    let next = Arc::new(AtomicU32::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, uri, bodies, next) = (client.clone(), uri.clone(), bodies.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ttft, mut itl, mut e2e, mut failed) = (Vec::new(), Vec::new(), Vec::new(), 0u32);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                let body = bodies[i as usize % bodies.len()].clone();
                let sent = Instant::now();
                let req = hyper::Request::post(uri.clone()).header("content-type", "application/json").body(Full::new(body)).unwrap();
                let Ok(resp) = client.request(req).await else {
                    failed += 1;
                    continue;
                };
                let mut body = resp.into_body();
                let mut last: Option<Instant> = None;
                while let Some(Ok(frame)) = body.frame().await {
                    let Some(data) = frame.data_ref() else { continue };
                    // A frame with a token: vLLM's text chunks carry `"text":"x` (chat: `"content":"x`);
                    // the usage chunk and chat's opening role chunk (`"content":""`) do not.
                    if carries_token(data, token_key) {
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

/// Whether `data` holds `key` followed by at least one character of text.
fn carries_token(data: &[u8], key: &[u8]) -> bool {
    data.windows(key.len() + 1).any(|w| w.starts_with(key) && w[key.len()] != b'"')
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_token_is_text_after_the_key_never_an_empty_string() {
        let key: &[u8] = b"\"content\":\"";
        assert!(super::carries_token(br#"data: {"choices":[{"delta":{"content":"Hi"}}]}"#, key));
        assert!(!super::carries_token(br#"data: {"choices":[{"delta":{"role":"assistant","content":""}}]}"#, key));
        assert!(!super::carries_token(br#"data: {"usage":{"completion_tokens":8}}"#, key));
        assert!(super::carries_token(br#"{"text":" the"}"#, b"\"text\":\""));
    }
}
