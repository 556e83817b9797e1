//! Counting a prompt's tokens as the target counts them: its tokenize endpoint
//! (`workload::tokens`), else the model's own `tokenizer.json` when this machine has it
//! (completion prompts), else one streamed request for a single output token, whose
//! `usage.prompt_tokens` is the server's own count (`transformers serve` and unrecognised
//! OpenAI-compatible servers have no tokenize endpoint), at the cost of a one-token generation.

use caplab_shared::Workload;
use serde_json::json;

use crate::workload::tokens::{CountTokens, LocalTokenizer, Tokenizer};

/// The target's count: its tokenize endpoint, else the model's tokenizer file, else its `usage`.
pub struct TargetCounter {
    pub tokenizer: Tokenizer,
    /// Sends the one-token request when nothing else can count.
    load: super::http::LoadClient,
    /// The served model's `tokenizer.json`, when this machine has it (`LocalTokenizer::find`),
    /// looked for once, and only for a target without a tokenize endpoint.
    local: std::sync::OnceLock<Option<LocalTokenizer>>,
}

impl TargetCounter {
    /// The counter for `model` as served by `target`, asked through `engine`'s clients with `auth`.
    pub fn for_target(engine: &super::Engine, target: &caplab_shared::TargetInfo, auth: Option<reqwest::header::HeaderValue>, model: &str) -> TargetCounter {
        let tokenizer = Tokenizer { client: engine.client.clone(), base_url: target.url.clone(), auth, server: target.server, model: model.to_string() };
        TargetCounter { tokenizer, load: engine.load.clone(), local: std::sync::OnceLock::new() }
    }

    /// Counts with the model's own tokenizer file, if there is one (read from disk once).
    fn with_local(&self, workload: Workload, text: &str) -> Option<u32> {
        // Reading the file and encoding a long prompt are blocking work.
        crate::store::blocking(|| self.local.get_or_init(|| LocalTokenizer::find(&self.tokenizer.model)).as_ref()?.count(workload, text).ok())
    }
}

impl CountTokens for TargetCounter {
    fn count(&self, workload: Workload, text: &str) -> impl std::future::Future<Output = Result<u32, String>> + Send {
        async move {
            let no_endpoint = match self.tokenizer.count(workload, text).await {
                Ok(n) => return Ok(n),
                Err(e) => e,
            };
            if let Some(n) = self.with_local(workload, text) {
                return Ok(n);
            }
            self.via_usage(workload, text).await.map_err(|e| format!("{no_endpoint}; {e}"))
        }
    }
}

impl TargetCounter {
    /// The count from one streamed request for a single output token: the server's `usage`.
    async fn via_usage(&self, workload: Workload, text: &str) -> Result<u32, String> {
        let (path, mut body) = match workload {
            Workload::Batch => ("/v1/completions", json!({ "prompt": text, "max_tokens": 1 })),
            Workload::Chat => {
                let mut b = json!({ "messages": [{ "role": "user", "content": text }] });
                b[self.tokenizer.server.chat_max_tokens_field()] = json!(1);
                ("/v1/chat/completions", b)
            }
        };
        body["model"] = json!(self.tokenizer.model);
        body["stream"] = json!(true);
        body["stream_options"] = json!({ "include_usage": true });
        let uri = super::http::parse_uri(&format!("{}{path}", self.tokenizer.base_url.trim_end_matches('/')));
        let (live, redactor) = (super::LiveCounters::default(), crate::secrets::Redactor::for_auth(self.tokenizer.auth.as_ref()));
        let call = super::request::Call {
            client: &self.load,
            uri: &uri,
            timeout: std::time::Duration::from_secs(60),
            live: &live,
            usage_required: true,
            auth: self.tokenizer.auth.as_ref(),
            redactor: &redactor,
        };
        let mut worker = super::request::Worker::new(&tokio_util::sync::CancellationToken::new());
        let sample = super::request::execute(&call, &mut worker, bytes::Bytes::from(body.to_string()), tokio::time::Instant::now()).await;
        match (sample.error, sample.prompt_tokens) {
            (None, Some(n)) => Ok(n),
            (Some(class), _) => Err(format!("a one-token request to count them failed ({}: {})", class.as_str(), sample.error_message.unwrap_or_default())),
            (None, None) => Err("a one-token request to count them had no usage".into()),
        }
    }
}
