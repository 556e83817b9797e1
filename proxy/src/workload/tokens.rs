//! Counting tokens as the target counts them, through its own tokenize endpoint: vLLM's (and
//! the simulator's) `POST /tokenize` with a prompt or chat messages (the chat template
//! included), llama.cpp's `POST /tokenize {"content"}`, TGI's `POST /tokenize {"inputs"}`.
//! A server without one gets an error saying so. Then the model's own `tokenizer.json`
//! (`LocalTokenizer`: on a pod it sits next to vLLM, in the model's folder or the Hugging Face
//! cache) counts completion prompts, and `engine::tokens` asks the server by `usage` for the rest.
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

/// A model's `tokenizer.json`, read with the field's maintained crate (`tokenizers`). It counts a
/// completion prompt exactly (special tokens included, as the server adds them); a chat
/// message's template is the server's to apply, so chat is not counted here.
pub struct LocalTokenizer {
    pub path: std::path::PathBuf,
    tokenizer: tokenizers::Tokenizer,
}

impl LocalTokenizer {
    /// `path`: a `tokenizer.json`, or a folder holding one.
    pub fn open(path: &std::path::Path) -> Result<LocalTokenizer, String> {
        let file = if path.is_dir() { path.join("tokenizer.json") } else { path.to_path_buf() };
        let tokenizer = tokenizers::Tokenizer::from_file(&file).map_err(|e| format!("{}: not a tokenizer.json caplab can read ({e})", file.display()))?;
        Ok(LocalTokenizer { path: file, tokenizer })
    }

    /// The tokenizer of the model a target serves as `model`: the model's folder when the name is
    /// a path on this machine (vLLM serving `--model /workspace/model`), else the Hugging Face
    /// cache's copy of a hub name (`HF_HUB_CACHE`, `HF_HOME/hub`, `~/.cache/huggingface/hub`).
    pub fn find(model: &str) -> Option<LocalTokenizer> {
        let as_path = std::path::Path::new(model);
        if as_path.join("tokenizer.json").is_file() {
            return Self::open(as_path).ok();
        }
        let (org, name) = model.split_once('/').filter(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'))?;
        let env = |k: &str| std::env::var_os(k).map(std::path::PathBuf::from);
        let hub = env("HF_HUB_CACHE").or_else(|| env("HF_HOME").map(|h| h.join("hub"))).or_else(|| env("HOME").map(|h| h.join(".cache/huggingface/hub")))?;
        let snapshots = hub.join(format!("models--{org}--{name}")).join("snapshots");
        let mut found: Vec<std::path::PathBuf> = std::fs::read_dir(snapshots).ok()?.flatten().map(|e| e.path().join("tokenizer.json")).filter(|p| p.is_file()).collect();
        found.sort();
        Self::open(found.last()?).ok()
    }

    pub fn count(&self, workload: Workload, text: &str) -> Result<u32, String> {
        if workload == Workload::Chat {
            return Err("a chat message's template is the server's to apply: tokenizer.json alone cannot count it".into());
        }
        let encoding = self.tokenizer.encode(text, true).map_err(|e| format!("{}: {e}", self.path.display()))?;
        u32::try_from(encoding.len()).map_err(|e| e.to_string())
    }
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

    /// The CPU engine's test model's tokenizer.json (tests/fixtures/tokenizer/, made by
    /// scripts/make_test_model.py): found from the model's folder, one token per word with the
    /// special tokens counted once, as the server adds them.
    #[test]
    fn a_models_own_tokenizer_json_counts_completion_prompts() {
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tokenizer");
        let local = LocalTokenizer::find(folder.to_str().unwrap()).expect("found from the model's folder");
        let one = local.count(Workload::Batch, " the").unwrap();
        let nine = local.count(Workload::Batch, &" the".repeat(9)).unwrap();
        assert_eq!(nine - one, 8, "one token per word, the special tokens once");
        assert!(local.count(Workload::Chat, "hi").is_err(), "a chat template is not guessed");
        assert!(LocalTokenizer::find("no-such-org/no-such-model").is_none());
        assert!(LocalTokenizer::open(std::path::Path::new("Cargo.toml")).err().unwrap().contains("not a tokenizer.json"));
    }
}
