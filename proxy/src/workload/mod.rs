//! The workloads' inputs — built in (embedded from `data/`, so the binary alone suffices) or the
//! user's own (`sources`: read from their files; `store`: kept by content hash) — and the request
//! bodies built from them.

pub mod context;
pub mod lengths;
pub mod sources;
pub mod store;
pub mod synthetic;
pub mod tokens;
pub mod trace;

use bytes::Bytes;
use caplab_shared::{LengthControl, ServerKind, Workload};
use serde_json::json;

const DOCS: &str = include_str!("../../../data/docs_sample.txt");
const SUMMARIZE_TEMPLATE: &str = include_str!("../../../data/summarize_prompt.txt");
const CHAT_PROMPTS: &str = include_str!("../../../data/chat_prompts.txt");

/// Splits a `[DOC]`-delimited file into its documents (trimmed, empty ones dropped).
pub fn parse_documents(text: &str) -> Vec<String> {
    text.split("[DOC]").map(str::trim).filter(|d| !d.is_empty()).map(String::from).collect()
}

/// One prompt per non-empty line; `#` starts a comment line.
pub fn parse_prompts(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect()
}

/// The notes' summarization prompt for one document.
pub fn summarize_prompt(doc: &str) -> String {
    SUMMARIZE_TEMPLATE.replace("{doc}", doc)
}

/// One chat message, as OpenAI's API takes it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn user(content: String) -> Message {
        Message { role: "user".into(), content }
    }
}

/// A workload's inputs: documents for batch, each chat request's messages for chat.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Inputs {
    pub documents: Vec<String>,
    pub chats: Vec<Vec<Message>>,
    /// A trace to replay (arrival times and lengths; prompts are made to its lengths).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trace: Vec<trace::TraceRequest>,
    /// Chat from ShareGPT: each conversation's recorded answer (its first gpt turn after the
    /// prompt; empty where it has none), one per entry of `chats`, for `recorded_output_lengths`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<String>,
}

impl Default for Inputs {
    /// The built-in ones: the notes' five `[DOC]` documents and the chat prompts in `data/`.
    fn default() -> Self {
        Inputs { documents: parse_documents(DOCS), chats: parse_prompts(CHAT_PROMPTS).into_iter().map(|p| vec![Message::user(p)]).collect(), trace: vec![], answers: vec![] }
    }
}

/// What each request of a cell needs: the endpoint path and its bodies, pre-serialized per
/// prompt, or made per request for synthetic prompts (each its own words) and trace replays.
#[derive(Clone, Debug)]
pub struct RequestSet {
    pub path: &'static str,
    pub bodies: Vec<Bytes>,
    /// A body without its prompt: synthetic prompts are put into it.
    template: serde_json::Value,
    /// The field that caps the output (`max_tokens`, or chat's name for it on this server).
    max_field: &'static str,
    /// Synthetic prompts: how they are made, and how long each is.
    synthetic: Option<SyntheticBodies>,
    /// A replay: when each request is sent, in seconds after the cell starts.
    pub arrivals: Option<Vec<f64>>,
    /// Each request's own output cap (an output length distribution), for bodies made ahead.
    max_tokens_each: Option<std::sync::Arc<Vec<u32>>>,
}

#[derive(Clone, Debug)]
struct SyntheticBodies {
    maker: synthetic::Synthetic,
    lengths: Lengths,
    seed: u64,
    workload: Workload,
}

/// How long each synthetic prompt is.
#[derive(Clone, Debug)]
enum Lengths {
    /// Every prompt `tokens` tokens (`words` words), after the shared prefix.
    Fixed { words: u32, tokens: u32, prefix: synthetic::Prefix },
    /// Each as its trace request: prompt and output lengths, shared blocks.
    Trace(std::sync::Arc<Vec<trace::TraceRequest>>),
}

impl RequestSet {
    /// Body for the i-th request (prompts cycle in order, like the notes' `docs * repeat`;
    /// synthetic prompts are made for `i` alone).
    pub fn body(&self, i: u32) -> Bytes {
        let Some(s) = &self.synthetic else {
            let body = self.bodies[i as usize % self.bodies.len()].clone();
            let Some(each) = &self.max_tokens_each else { return body };
            // This request's own output length, written into its prompt's body.
            let mut v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let n = each[i as usize % each.len()];
            v[self.max_field] = json!(n);
            if v.get("min_tokens").is_some() {
                v["min_tokens"] = json!(n);
            }
            return Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
        };
        let mut v = self.template.clone();
        let text = match &s.lengths {
            Lengths::Fixed { words, prefix, .. } => s.maker.text(*words, s.seed, i, *prefix),
            Lengths::Trace(trace) => {
                let r = &trace[i as usize % trace.len()];
                v[self.max_field] = json!(r.output_tokens);
                if v.get("min_tokens").is_some() {
                    v["min_tokens"] = json!(r.output_tokens);
                }
                // A prompt too short for the template still sends one word (the cell says so).
                s.maker.blocks_text(s.maker.words_for(r.input_tokens).unwrap_or(1), &r.hash_ids, s.seed, i)
            }
        };
        match s.workload {
            Workload::Batch => v["prompt"] = json!(text),
            Workload::Chat => v["messages"] = json!([{ "role": "user", "content": text }]),
        }
        Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
    }

    /// The prompt tokens request `i` was made to have (synthetic prompts and replays).
    pub fn prompt_tokens(&self, i: u32) -> Option<u32> {
        match &self.synthetic.as_ref()?.lengths {
            Lengths::Fixed { tokens, .. } => Some(*tokens),
            Lengths::Trace(trace) => trace.get(i as usize % trace.len().max(1)).map(|r| r.input_tokens),
        }
    }

    /// The same requests with synthetic prompts of `tokens` tokens (`words` words from `maker`).
    pub fn with_synthetic(mut self, maker: synthetic::Synthetic, words: u32, prefix: synthetic::Prefix, tokens: u32, seed: u64, workload: Workload) -> RequestSet {
        self.synthetic = Some(SyntheticBodies { maker, lengths: Lengths::Fixed { words, tokens, prefix }, seed, workload });
        self
    }

    /// Each request with its own output cap (drawn from a distribution).
    pub fn with_output_lengths(mut self, each: Vec<u32>) -> RequestSet {
        self.max_tokens_each = Some(std::sync::Arc::new(each));
        self
    }

    /// Synthetic prompts with each request's own lengths (drawn from distributions): `lengths`
    /// as trace requests without arrival times.
    pub fn with_lengths(mut self, maker: synthetic::Synthetic, lengths: Vec<trace::TraceRequest>, seed: u64, workload: Workload) -> RequestSet {
        self.synthetic = Some(SyntheticBodies { maker, lengths: Lengths::Trace(std::sync::Arc::new(lengths)), seed, workload });
        self
    }

    /// A replay of `trace`, its arrival times divided by `speedup`: each request with the
    /// recorded prompt and output lengths (prompts from `maker`, equal blocks equal).
    pub fn with_trace(mut self, maker: synthetic::Synthetic, trace: std::sync::Arc<Vec<trace::TraceRequest>>, speedup: f64, seed: u64, workload: Workload) -> RequestSet {
        self.arrivals = Some(trace.iter().map(|r| r.at_s / speedup).collect());
        self.synthetic = Some(SyntheticBodies { maker, lengths: Lengths::Trace(trace), seed, workload });
        self
    }
}

/// Builds the bodies once per cell so no request serializes JSON while the clock runs. Each
/// body holds only fields `server` accepts (`transformers serve` refuses unknown ones with 422),
/// and, when `exact` asks for exactly `max_tokens` output tokens, that server's own way of
/// forcing it (see `ServerKind::length_control`; none for servers that have none).
pub fn request_set(inputs: &Inputs, workload: Workload, model: &str, max_tokens: u32, server: ServerKind, exact: bool) -> RequestSet {
    let body = |mut v: serde_json::Value, max_field: &str| {
        v["model"] = json!(model);
        v[max_field] = json!(max_tokens);
        v["stream"] = json!(true);
        v["stream_options"] = json!({ "include_usage": true });
        match (exact, server.length_control()) {
            (true, LengthControl::IgnoreEos) => v["ignore_eos"] = json!(true),
            (true, LengthControl::MinTokens) => v["min_tokens"] = json!(max_tokens),
            _ => {}
        }
        Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
    };
    let (path, max_field) = match workload {
        Workload::Batch => ("/v1/completions", "max_tokens"),
        Workload::Chat => ("/v1/chat/completions", server.chat_max_tokens_field()),
    };
    let bodies = match workload {
        Workload::Batch => inputs.documents.iter().map(|d| body(json!({ "prompt": summarize_prompt(d) }), max_field)).collect(),
        Workload::Chat => inputs.chats.iter().map(|m| body(json!({ "messages": m }), max_field)).collect(),
    };
    let template = serde_json::from_slice(&body(json!({}), max_field)).unwrap_or_default();
    RequestSet { path, bodies, template, max_field, synthetic: None, arrivals: None, max_tokens_each: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_inputs_parse() {
        let inputs = Inputs::default();
        assert_eq!(inputs.documents.len(), 5);
        assert!(inputs.documents[0].starts_with("Large language models for finance"));
        assert!(inputs.chats.len() >= 8);
        assert!(inputs.chats.iter().all(|m| m.len() == 1 && m[0].role == "user" && !m[0].content.starts_with('#')));
    }

    #[test]
    fn documents_split_on_markers() {
        assert_eq!(parse_documents("[DOC]\na\n\n[DOC]\n\n[DOC] b "), vec!["a", "b"]);
    }

    #[test]
    fn bodies_carry_the_notes_prompt_and_stream_usage() {
        let set = request_set(&Inputs::default(), Workload::Batch, "m", 256, ServerKind::Vllm, false);
        assert_eq!(set.path, "/v1/completions");
        let v: serde_json::Value = serde_json::from_slice(&set.body(6)).unwrap();
        let prompt = v["prompt"].as_str().unwrap();
        assert!(prompt.starts_with("Summarize the following technical document in 5 bullet points."));
        assert!(prompt.contains("Document:\nInference engineering in practice"), "request 6 cycles to doc 1");
        assert!(prompt.ends_with("\n\nSummary:"));
        assert_eq!(v["max_tokens"], 256);
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert!(v.get("ignore_eos").is_none());
        let chat = request_set(&Inputs::default(), Workload::Chat, "m", 8, ServerKind::Vllm, true);
        let v: serde_json::Value = serde_json::from_slice(&chat.body(0)).unwrap();
        assert_eq!(v["messages"][0]["role"], "user");
        assert_eq!(v["ignore_eos"], true);
    }

    /// Each engine gets only the fields it takes: exactly this set of keys.
    #[test]
    fn each_server_gets_only_its_fields() {
        let keys = |kind: ServerKind, workload: Workload| {
            let set = request_set(&Inputs::default(), workload, "m", 8, kind, true);
            let v: serde_json::Value = serde_json::from_slice(&set.body(0)).unwrap();
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k.join(",")
        };
        let plain = "max_tokens,messages,model,stream,stream_options";
        assert_eq!(keys(ServerKind::TransformersServe, Workload::Chat), plain);
        assert_eq!(keys(ServerKind::Tgi, Workload::Chat), plain);
        assert_eq!(keys(ServerKind::OpenAiCompatible, Workload::Chat), plain);
        assert_eq!(keys(ServerKind::Vllm, Workload::Chat), "ignore_eos,max_tokens,messages,model,stream,stream_options");
        assert_eq!(keys(ServerKind::Sglang, Workload::Batch), "ignore_eos,max_tokens,model,prompt,stream,stream_options");
        assert_eq!(keys(ServerKind::OpenAi, Workload::Chat), "max_completion_tokens,messages,model,stream,stream_options");
        assert_eq!(keys(ServerKind::OpenAi, Workload::Batch), "max_tokens,model,prompt,stream,stream_options");
    }
}

#[cfg(test)]
mod shipped_experiments {
    use caplab_shared::ExperimentSpec;

    #[test]
    fn every_shipped_experiment_file_is_valid() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let dir = root.join("data/experiments");
        let mut seen = 0;
        let files = std::fs::read_dir(&dir).unwrap().chain(std::fs::read_dir(root.join("bench/gpu")).unwrap());
        for entry in files {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let spec: ExperimentSpec = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(spec.validate().is_empty(), "{}: {:?}", path.display(), spec.validate());
            seen += 1;
        }
        assert!(seen >= 5);
        let batch: ExperimentSpec = toml::from_str(&std::fs::read_to_string(dir.join("batch_grid.toml")).unwrap()).unwrap();
        assert_eq!(batch.cells().len(), 6, "the notes' 3 × 2 batch grid");
    }
}
