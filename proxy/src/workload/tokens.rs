//! Counting tokens as the target counts them, through its own tokenize endpoint: vLLM's (and
//! the simulator's) `POST /tokenize` with a prompt or chat messages (the chat template
//! included), llama.cpp's `POST /tokenize {"content"}`, TGI's `POST /tokenize {"inputs"}`.
//! A server without one gets an error saying so (`engine::tokens` then asks it by `usage`).
//! What counts tokens is a `CountTokens`: synthetic prompts and the context check take any.

use caplab_shared::{ServerKind, Workload};
use serde_json::{json, Value};

/// Counts the tokens of a prompt as some target would see it.
pub trait CountTokens: Sync {
    /// Tokens of `text` sent as `workload` sends it (a completion prompt, or one user message).
    fn count(&self, workload: Workload, text: &str) -> impl std::future::Future<Output = Result<u32, String>> + Send;
}

impl CountTokens for Tokenizer {
    fn count(&self, workload: Workload, text: &str) -> impl std::future::Future<Output = Result<u32, String>> + Send {
        Tokenizer::count(self, workload, text)
    }
}

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
