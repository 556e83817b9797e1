//! The OpenAI-compatible engines a pod may run, and what each one accepts and sends.
//! caplab recognises the engine when it probes a target (`proxy/src/target/recognise.rs`)
//! and shapes every request by this table: one place says which server takes which field.

use serde::{Deserialize, Serialize};

/// Which engine a target is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ServerKind {
    /// caplab's own simulated vLLM: its numbers are not a GPU's.
    #[serde(rename = "caplab-sim")]
    CaplabSim,
    #[serde(rename = "vllm")]
    Vllm,
    #[serde(rename = "sglang")]
    Sglang,
    /// Hugging Face text-generation-inference.
    #[serde(rename = "tgi")]
    Tgi,
    /// llama.cpp's `llama-server`.
    #[serde(rename = "llama.cpp")]
    LlamaCpp,
    /// Hugging Face `transformers serve`.
    #[serde(rename = "transformers-serve")]
    TransformersServe,
    #[serde(rename = "ollama")]
    Ollama,
    /// OpenAI's own API.
    #[serde(rename = "openai")]
    OpenAi,
    /// Not recognised: spoken to as plain OpenAI, with nothing engine-specific.
    #[default]
    #[serde(rename = "openai-compatible", other)]
    OpenAiCompatible,
}

/// How a server can be made to produce exactly `max_tokens` output tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LengthControl {
    /// `"ignore_eos": true`: generation runs to `max_tokens` (vLLM, SGLang, llama.cpp, the simulator).
    IgnoreEos,
    /// `"min_tokens": max_tokens` (servers that take a lower bound but not `ignore_eos`).
    MinTokens,
    /// No way: outputs may end early at the model's end-of-sequence token.
    None,
}

impl ServerKind {
    pub const ALL: [ServerKind; 9] = [
        ServerKind::CaplabSim,
        ServerKind::Vllm,
        ServerKind::Sglang,
        ServerKind::Tgi,
        ServerKind::LlamaCpp,
        ServerKind::TransformersServe,
        ServerKind::Ollama,
        ServerKind::OpenAi,
        ServerKind::OpenAiCompatible,
    ];

    /// The name people know it by.
    pub fn label(self) -> &'static str {
        match self {
            ServerKind::CaplabSim => "caplab simulator",
            ServerKind::Vllm => "vLLM",
            ServerKind::Sglang => "SGLang",
            ServerKind::Tgi => "TGI",
            ServerKind::LlamaCpp => "llama.cpp server",
            ServerKind::TransformersServe => "transformers serve",
            ServerKind::Ollama => "Ollama",
            ServerKind::OpenAi => "OpenAI",
            ServerKind::OpenAiCompatible => "OpenAI-compatible (not recognised)",
        }
    }

    /// The field that forces the output length, if the server has one.
    pub fn length_control(self) -> LengthControl {
        match self {
            ServerKind::CaplabSim | ServerKind::Vllm | ServerKind::Sglang | ServerKind::LlamaCpp => LengthControl::IgnoreEos,
            ServerKind::Tgi | ServerKind::TransformersServe | ServerKind::Ollama | ServerKind::OpenAi | ServerKind::OpenAiCompatible => {
                LengthControl::None
            }
        }
    }

    /// The chat request's output bound: OpenAI has replaced `max_tokens` by
    /// `max_completion_tokens` (its newer models refuse the old name); the others read `max_tokens`.
    pub fn chat_max_tokens_field(self) -> &'static str {
        match self {
            ServerKind::OpenAi => "max_completion_tokens",
            _ => "max_tokens",
        }
    }

    /// Known to send `usage` in a stream when `stream_options.include_usage` asks for it: a
    /// stream without it is then a `protocol` error. From an unrecognised server it is not an
    /// error; the request counts as successful with its token counts unknown.
    pub fn sends_usage(self) -> bool {
        self != ServerKind::OpenAiCompatible
    }

    /// Serves Prometheus `/metrics` by default.
    pub fn has_metrics(self) -> bool {
        matches!(self, ServerKind::CaplabSim | ServerKind::Vllm | ServerKind::Sglang | ServerKind::Tgi)
    }

    /// What caplab cannot do with this server, in words for the target info.
    pub fn unavailable(self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.length_control() == LengthControl::None {
            out.push("exact output length: the server has no way to force it, so outputs may end early (each request's real length is in completion_tokens)");
        }
        if !self.sends_usage() {
            out.push("token counts are trusted only from usage: a stream without usage counts as successful with tokens unknown");
        }
        if !self.has_metrics() {
            out.push("server metrics (/metrics)");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_plain_openai() {
        for kind in ServerKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(serde_json::from_str::<ServerKind>(&json).unwrap(), kind);
        }
        assert_eq!(serde_json::from_str::<ServerKind>("\"something-new\"").unwrap(), ServerKind::OpenAiCompatible);
    }

    #[test]
    fn only_unforceable_servers_say_so() {
        assert!(ServerKind::Vllm.unavailable().is_empty());
        assert!(ServerKind::TransformersServe.unavailable()[0].starts_with("exact output length"));
        assert_eq!(ServerKind::OpenAiCompatible.unavailable().len(), 3);
        assert_eq!(ServerKind::OpenAi.chat_max_tokens_field(), "max_completion_tokens");
    }
}
