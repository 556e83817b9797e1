//! A fault-injecting OpenAI-compatible server. Request n (counted from 0 across
//! both endpoints) gets fault `plan[n % plan.len()]`, so a test knows exactly how
//! many of each fault a run meets.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A correct stream of `tokens` tokens with usage.
    Ok,
    /// HTTP 500 with a JSON error.
    Status500,
    /// HTTP 404: the model does not exist (vLLM's words).
    UnknownModel,
    /// HTTP 400: the prompt exceeds the context (vLLM's words).
    ContextLength,
    /// A few tokens, then the connection is dropped mid-body.
    Disconnect,
    /// A few tokens, then nothing ever again.
    Stall,
    /// A chunk that is not JSON.
    Malformed,
    /// A correct stream without the usage chunk.
    NoUsage,
    /// An error event inside an otherwise normal stream.
    ErrorEvent,
    /// A correct stream that ends without `data: [DONE]` (as `transformers serve` does): complete.
    NoDone,
    /// The body ends cleanly after a few tokens, before any finish reason: broken.
    NoFinish,
    /// HTTP 200 with an empty body.
    EmptyBody,
    /// HTTP 429 with `Retry-After: 7`.
    RateLimited,
    /// HTTP 524 with Cloudflare's HTML error page, as RunPod's proxy sends it.
    Html524,
    /// The connection is accepted and the request read, but no response headers ever come.
    NoHeaders,
    /// A correct stream whose only text event is one 1 MiB chunk.
    BigChunk,
    /// HTTP 200 as an event stream, whose body is one 9 MiB line that never ends.
    EndlessLine,
}

pub struct FaultServer {
    pub plan: Vec<Fault>,
    /// Answer like `transformers serve` (`server: uvicorn`, JSON `/health`, no `/metrics`), so
    /// caplab knows this server sends `usage`; otherwise it is an unrecognised server.
    pub transformers_like: bool,
    pub tokens: u32,
    pub token_delay: Duration,
    pub served: AtomicUsize,
    /// The `Authorization` header of the last generation request, if any.
    pub last_auth: std::sync::Mutex<Option<String>>,
    /// Every generation request's body, in the order served (unreadable ones as null).
    pub bodies: std::sync::Mutex<Vec<serde_json::Value>>,
}

/// Starts the server on 127.0.0.1:0; returns its base URL.
pub async fn start(plan: Vec<Fault>, tokens: u32, token_delay: Duration, transformers_like: bool) -> (String, Arc<FaultServer>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (url, state, _task) = serve_on(listener, plan, tokens, token_delay, transformers_like);
    (url, state)
}

/// Serves on `listener`. Aborting the returned task kills the server outright: its listener
/// and every open connection close at once (a crash), and its port is free for a server that
/// comes back.
pub fn serve_on(
    listener: tokio::net::TcpListener,
    plan: Vec<Fault>,
    tokens: u32,
    token_delay: Duration,
    transformers_like: bool,
) -> (String, Arc<FaultServer>, tokio::task::JoinHandle<()>) {
    let state = Arc::new(FaultServer { plan, transformers_like, tokens, token_delay, served: AtomicUsize::new(0), last_auth: Default::default(), bodies: Default::default() });
    let mut app = Router::new()
        .route("/v1/models", get(|| async { Json(json!({"object":"list","data":[{"id":"m","object":"model","owned_by":"faulty"}]})) }))
        .route("/v1/completions", post(generate))
        .route("/v1/chat/completions", post(generate))
        .with_state(state.clone());
    if transformers_like {
        app = app
            .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
            .layer(axum::middleware::map_response(|mut r: Response| async move {
                r.headers_mut().insert(header::SERVER, header::HeaderValue::from_static("uvicorn"));
                r
            }));
    }
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        // Connections live in this task's set, so aborting the task drops them all.
        let mut connections = tokio::task::JoinSet::new();
        loop {
            while connections.try_join_next().is_some() {}
            let Ok((stream, _)) = listener.accept().await else { continue };
            let service = hyper_util::service::TowerToHyperService::new(app.clone());
            connections.spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
            });
        }
    });
    (url, state, task)
}

fn chunk(text: &str, finish: Option<&str>) -> Bytes {
    Bytes::from(format!("data: {}\n\n", json!({"id":"x","object":"text_completion","choices":[{"index":0,"text":text,"finish_reason":finish}]})))
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": {"message": message, "type": "Error", "code": status.as_u16()}}))).into_response()
}

/// Serves `body` verbatim as the event stream of every POST: a recorded engine stream replayed.
pub async fn replay(body: &'static [u8]) -> String {
    let app = Router::new().fallback(move || async move {
        // Sent in small pieces, so events straddle reads as they do on a real socket.
        let pieces = body.chunks(97).map(|c| Ok::<_, std::io::Error>(Bytes::from_static(c))).collect::<Vec<_>>();
        Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .body(Body::from_stream(futures_util::stream::iter(pieces)))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

async fn generate(State(s): State<Arc<FaultServer>>, headers: axum::http::HeaderMap, body: Bytes) -> Response {
    *s.last_auth.lock().unwrap_or_else(|p| p.into_inner()) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(String::from);
    // Like `transformers serve`: vLLM-only fields are refused.
    if body.windows(10).any(|w| w == b"ignore_eos") {
        let detail = json!({"detail": "Unexpected fields in the request: {'ignore_eos'}"});
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(detail)).into_response();
    }
    let n = {
        // Numbered and recorded under one lock, so bodies[n] is request n's.
        let mut bodies = s.bodies.lock().unwrap_or_else(|p| p.into_inner());
        bodies.push(serde_json::from_slice(&body).unwrap_or_default());
        s.served.fetch_add(1, Ordering::SeqCst)
    };
    let fault = s.plan[n % s.plan.len()];
    match fault {
        Fault::Status500 => return error(StatusCode::INTERNAL_SERVER_ERROR, "injected failure"),
        Fault::UnknownModel => return error(StatusCode::NOT_FOUND, "The model `x` does not exist."),
        Fault::ContextLength => {
            return error(StatusCode::BAD_REQUEST, "This model's maximum context length is 64 tokens. However, you requested 300 tokens.")
        }
        Fault::EmptyBody => return (StatusCode::OK, [(header::CONTENT_TYPE, "text/event-stream")], "").into_response(),
        Fault::RateLimited => {
            let body = Json(json!({"error": {"message": "rate limit exceeded", "code": 429}}));
            return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "7")], body).into_response();
        }
        Fault::Html524 => {
            let page = "<!DOCTYPE html>\n<html><head><title>pod.proxy.runpod.net | 524: A timeout occurred</title></head><body>Cloudflare</body></html>";
            let status = StatusCode::from_u16(524).unwrap_or(StatusCode::GATEWAY_TIMEOUT);
            return (status, [(header::CONTENT_TYPE, "text/html")], page).into_response();
        }
        Fault::NoHeaders => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return StatusCode::OK.into_response();
        }
        Fault::EndlessLine => {
            let line = format!("data: {}", "x".repeat(9 << 20));
            return ([(header::CONTENT_TYPE, "text/event-stream")], line).into_response();
        }
        Fault::BigChunk => {
            let text = "x".repeat(1 << 20);
            let stream = format!(
                "data: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
                json!({"choices":[{"index":0,"text":text,"finish_reason":"length"}]}),
                json!({"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":s.tokens}})
            );
            return ([(header::CONTENT_TYPE, "text/event-stream")], stream).into_response();
        }
        _ => {}
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let (tokens, delay) = (s.tokens, s.token_delay);
    tokio::spawn(async move {
        for i in 0..tokens {
            tokio::time::sleep(delay).await;
            if i == 2 {
                match fault {
                    Fault::Disconnect => {
                        let _ = tx.send(Err(std::io::Error::other("injected disconnect"))).await;
                        return;
                    }
                    Fault::Stall => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        return;
                    }
                    Fault::Malformed => {
                        let _ = tx.send(Ok(Bytes::from_static(b"data: {this is not json\n\n"))).await;
                    }
                    Fault::ErrorEvent => {
                        let _ = tx.send(Ok(Bytes::from_static(b"data: {\"error\":{\"message\":\"injected stream error\",\"code\":500}}\n\n"))).await;
                        return;
                    }
                    Fault::NoFinish => return,
                    _ => {}
                }
            }
            let finish = (i + 1 == tokens).then_some("length");
            if tx.send(Ok(chunk(" tok", finish))).await.is_err() {
                return;
            }
        }
        if fault != Fault::NoUsage {
            let usage = json!({"id":"x","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":tokens,"total_tokens":7 + tokens}});
            let _ = tx.send(Ok(Bytes::from(format!("data: {usage}\n\n")))).await;
        }
        if fault != Fault::NoDone {
            let _ = tx.send(Ok(Bytes::from_static(b"data: [DONE]\n\n"))).await;
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// A server that only counts the requests it gets (any method, any path) and answers each with
/// an OpenAI models list: where a redirect would lead.
pub async fn counter() -> (String, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let app = Router::new().fallback(move || {
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            Json(json!({"object":"list","data":[{"id":"m","object":"model","owned_by":"elsewhere"}]}))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, count)
}

/// A target that redirects to `to` (the same path there): `POST /v1/completions` with 302,
/// everything else with 307 (which keeps the method and body). `/v1/models` is answered
/// directly unless `models_too`, so a run can start. Returns its URL and how many requests it got.
pub async fn redirector(to: &str, models_too: bool) -> (String, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let (seen, to) = (count.clone(), to.to_string());
    let app = Router::new().fallback(move |method: axum::http::Method, uri: axum::http::Uri| {
        let (seen, to) = (seen.clone(), to.clone());
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            let path = uri.path();
            if path == "/v1/models" && !models_too {
                return Json(json!({"object":"list","data":[{"id":"m","object":"model","owned_by":"redirecting"}]})).into_response();
            }
            let status = if method == axum::http::Method::POST && path == "/v1/completions" { StatusCode::FOUND } else { StatusCode::TEMPORARY_REDIRECT };
            (status, [(header::LOCATION, format!("{to}{path}"))]).into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, count)
}

/// A target that refuses every generation request and `/metrics` with 401, echoing the
/// `Authorization` it was sent (and its Basic credentials decoded) in the body, as a careless
/// server does; `/v1/models` and `/version` echo it too. Returns its URL.
pub async fn echo_auth() -> String {
    fn echoed(headers: &axum::http::HeaderMap) -> String {
        let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("(none)").to_string();
        let decoded = auth.strip_prefix("Basic ").and_then(|b| decode_base64(b.trim())).unwrap_or_default();
        format!("invalid credentials: {auth} (decoded: {decoded})")
    }
    let app = Router::new()
        .route(
            "/v1/models",
            get(|h: axum::http::HeaderMap| async move { Json(json!({"object":"list","data":[{"id":"m","object":"model","owned_by":echoed(&h)}]})) }),
        )
        .route("/version", get(|h: axum::http::HeaderMap| async move { Json(json!({"version": echoed(&h)})) }))
        .fallback(|h: axum::http::HeaderMap| async move {
            let message = echoed(&h);
            (StatusCode::UNAUTHORIZED, [("x-echo", message.clone())], Json(json!({"error": {"message": message, "code": 401}}))).into_response()
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn decode_base64(s: &str) -> Option<String> {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let digits: Vec<u32> = s.trim_end_matches('=').bytes().map(|c| ABC.iter().position(|&a| a == c).map(|p| p as u32)).collect::<Option<_>>()?;
    let mut out = Vec::new();
    for chunk in digits.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, d)| n | (d << (18 - 6 * i)));
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    String::from_utf8(out).ok()
}
