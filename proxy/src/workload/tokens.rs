//! Counting tokens as the target counts them, through its own tokenize endpoint: vLLM's (and
//! the simulator's) `POST /tokenize` with a prompt or chat messages (the chat template
//! included), llama.cpp's `POST /tokenize {"content"}`, TGI's `POST /tokenize {"inputs"}`.
//! A server without one (`transformers serve`, an unrecognised OpenAI-compatible server) is
//! asked instead for one output token of the same prompt, and its `usage.prompt_tokens` read:
//! the server's own count, at the cost of a (one-token) generation. A server that gives neither
//! gets an error saying so; callers fall back to an estimate and say it.

use caplab_shared::{ServerKind, Workload};
use serde_json::{json, Value};

/// A target's tokenizer, reached over HTTP.
pub struct Tokenizer {
    pub client: reqwest::Client,
    pub base_url: String,
    pub auth: Option<reqwest::header::HeaderValue>,
    pub server: ServerKind,
    pub model: String,
}

impl Tokenizer {
    /// Tokens of `text` sent as `workload` sends it: a completion prompt (batch) or one user
    /// message (chat, its template counted).
    pub async fn count(&self, workload: Workload, text: &str) -> Result<u32, String> {
        match self.via_tokenize(workload, text).await {
            Ok(n) => Ok(n),
            Err(no_endpoint) => self.via_usage(workload, text).await.map_err(|e| format!("{no_endpoint}; {e}")),
        }
    }

    /// The count from one streamed request for a single output token: the server's `usage`.
    async fn via_usage(&self, workload: Workload, text: &str) -> Result<u32, String> {
        let (path, mut body) = match workload {
            Workload::Batch => ("/v1/completions", json!({ "prompt": text, "max_tokens": 1 })),
            Workload::Chat => {
                let mut b = json!({ "messages": [{ "role": "user", "content": text }] });
                b[self.server.chat_max_tokens_field()] = json!(1);
                ("/v1/chat/completions", b)
            }
        };
        body["model"] = json!(self.model);
        body["stream"] = json!(true);
        body["stream_options"] = json!({ "include_usage": true });
        let url = format!("{}{path}", self.base_url.trim_end_matches('/'));
        let (live, cancel, redactor) = (crate::engine::LiveCounters::default(), tokio_util::sync::CancellationToken::new(), crate::secrets::Redactor::for_auth(self.auth.as_ref()));
        let call = crate::engine::request::Call {
            client: &self.client,
            url: &url,
            timeout: std::time::Duration::from_secs(60),
            live: &live,
            cancel: &cancel,
            usage_required: true,
            auth: self.auth.as_ref(),
            redactor: &redactor,
        };
        let sample = crate::engine::request::execute(&call, bytes::Bytes::from(body.to_string()), tokio::time::Instant::now()).await;
        match (sample.error, sample.prompt_tokens) {
            (None, Some(n)) => Ok(n),
            (Some(class), _) => Err(format!("a one-token request to count them failed ({}: {})", class.as_str(), sample.error_message.unwrap_or_default())),
            (None, None) => Err("a one-token request to count them had no usage".into()),
        }
    }

    async fn via_tokenize(&self, workload: Workload, text: &str) -> Result<u32, String> {
        let body = match (self.server, workload) {
            (ServerKind::Vllm | ServerKind::CaplabSim | ServerKind::Sglang, Workload::Batch) => json!({ "model": self.model, "prompt": text }),
            (ServerKind::Vllm | ServerKind::CaplabSim | ServerKind::Sglang, Workload::Chat) => {
                json!({ "model": self.model, "messages": [{ "role": "user", "content": text }] })
            }
            (ServerKind::LlamaCpp, Workload::Batch) => json!({ "content": text }),
            (ServerKind::Tgi, Workload::Batch) => json!({ "inputs": text }),
            (kind, w) => return Err(format!("{} has no tokenize endpoint caplab can use for {} prompts", kind.label(), w.as_str())),
        };
        let mut req = self.client.post(format!("{}/tokenize", self.base_url.trim_end_matches('/'))).json(&body).timeout(std::time::Duration::from_secs(10));
        if let Some(auth) = &self.auth {
            req = req.header(reqwest::header::AUTHORIZATION, auth.clone());
        }
        let resp = req.send().await.map_err(|e| format!("POST /tokenize failed: {e}"))?;
        let status = resp.status();
        let value: Value = resp.json().await.map_err(|e| format!("POST /tokenize answered {status} without JSON: {e}"))?;
        if !status.is_success() {
            return Err(format!("POST /tokenize answered {status}"));
        }
        count_of(&value).ok_or_else(|| "POST /tokenize answered without a count".to_string())
    }
}

/// The count in a tokenize answer: vLLM's `count`, else the length of its token list.
fn count_of(v: &Value) -> Option<u32> {
    if let Some(n) = v.get("count").and_then(Value::as_u64) {
        return u32::try_from(n).ok();
    }
    let list = v.get("tokens").unwrap_or(v).as_array()?;
    u32::try_from(list.len()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_engine_shape_gives_its_count() {
        assert_eq!(count_of(&json!({"count": 12, "max_model_len": 2048, "tokens": [1, 2]})), Some(12), "vLLM's count wins");
        assert_eq!(count_of(&json!({"tokens": [1, 2, 3]})), Some(3), "llama.cpp");
        assert_eq!(count_of(&json!([{"id": 1}, {"id": 2}])), Some(2), "TGI");
        assert_eq!(count_of(&json!({"error": "x"})), None);
    }
}
