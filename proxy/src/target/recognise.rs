//! Telling engines apart from what they answer. Pure: the probe gathers `Signals`,
//! this decides, so every engine's answers can be tested as recorded.
//!
//! Clues, strongest first: `/v1/models` `owned_by`; the name prefixes in `/metrics`
//! (`vllm:`, `sglang:`, `tgi_`, `llamacpp:`); TGI's `/info` router; Ollama's `/api/version`;
//! llama.cpp's `server` header and `/props`; OpenAI's host; and last the `server: uvicorn`
//! header with a JSON `/health` of `transformers serve`.

use caplab_shared::{ServerKind, TargetInfo};
use serde_json::Value;

use super::SIM_OWNER;

/// One probe answer (status 0 = no answer).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    pub status: u16,
    /// The `server` response header.
    pub server: Option<String>,
    pub body: String,
}

impl Answer {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
    fn json(&self) -> Option<Value> {
        if self.ok() { serde_json::from_str(&self.body).ok() } else { None }
    }
}

/// Everything the probe asked the target.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    /// Base URL, without `/v1`.
    pub url: String,
    pub models: Answer,
    pub health: Answer,
    pub metrics: Answer,
    pub version: Answer,
    /// TGI's `/info`.
    pub info: Answer,
    /// Ollama's `/api/version`.
    pub api_version: Answer,
    /// llama.cpp's `/props`.
    pub props: Answer,
}

/// Metric name prefixes of each engine's `/metrics`.
const METRIC_PREFIXES: [(&str, ServerKind); 4] =
    [("vllm:", ServerKind::Vllm), ("sglang:", ServerKind::Sglang), ("tgi_", ServerKind::Tgi), ("llamacpp:", ServerKind::LlamaCpp)];

/// `owned_by` values that name their engine.
fn owner_kind(owner: &str) -> Option<ServerKind> {
    match owner {
        SIM_OWNER => Some(ServerKind::CaplabSim),
        "vllm" => Some(ServerKind::Vllm),
        "sglang" => Some(ServerKind::Sglang),
        "llamacpp" => Some(ServerKind::LlamaCpp),
        // Not "openai"/"system": gateways such as LiteLLM report those for any engine behind them.
        _ => None,
    }
}

/// Decides which engine answered, and fills the target info (models, context, version).
pub fn recognise(s: &Signals) -> TargetInfo {
    let mut evidence = Vec::new();
    let models_json = s.models.json();
    let data: Vec<Value> = models_json.as_ref().and_then(|v| v.get("data")?.as_array().cloned()).unwrap_or_default();
    let owner = data.first().and_then(|m| m.get("owned_by")?.as_str()).unwrap_or("").to_string();
    let metric_kind = if s.metrics.ok() {
        METRIC_PREFIXES.iter().find(|(prefix, _)| s.metrics.body.lines().any(|l| l.starts_with(prefix))).map(|&(p, k)| (p, k))
    } else {
        None
    };
    let tgi_router = s.info.json().and_then(|v| v.get("router")?.as_str().map(String::from)).filter(|r| r.contains("text-generation"));
    let ollama = s.api_version.json().and_then(|v| v.get("version")?.as_str().map(String::from));
    let header = |a: &Answer| a.server.clone().unwrap_or_default().to_ascii_lowercase();
    let llama_header = [&s.models, &s.health, &s.props].into_iter().any(|a| header(a).starts_with("llama.cpp"));
    let llama_props = s.props.json().is_some_and(|v| v.get("default_generation_settings").is_some());
    let openai_host = url::Url::parse(&s.url).ok().and_then(|u| u.host_str().map(String::from)).is_some_and(|h| h == "api.openai.com");
    let health_json = serde_json::from_str::<Value>(&s.health.body).ok();
    let uvicorn = header(&s.models) == "uvicorn" || header(&s.health) == "uvicorn";

    let mut kind = ServerKind::OpenAiCompatible;
    if let Some(k) = owner_kind(&owner) {
        kind = k;
        evidence.push(format!("/v1/models owned_by {owner:?}"));
    }
    if let Some((prefix, k)) = metric_kind {
        if kind == ServerKind::OpenAiCompatible || kind == k {
            kind = k;
            evidence.push(format!("/metrics has {prefix} names"));
        }
    }
    let mut clue = |found: bool, k: ServerKind, why: &str| {
        if found && (kind == ServerKind::OpenAiCompatible || kind == k) {
            kind = k;
            evidence.push(why.to_string());
        }
    };
    clue(tgi_router.is_some(), ServerKind::Tgi, "/info router is text-generation-router");
    clue(ollama.is_some(), ServerKind::Ollama, "/api/version answers");
    clue(llama_header, ServerKind::LlamaCpp, "server header llama.cpp");
    clue(llama_props, ServerKind::LlamaCpp, "/props has default_generation_settings");
    clue(openai_host, ServerKind::OpenAi, "host api.openai.com");
    // transformers serve: FastAPI on uvicorn with a JSON /health and no /metrics (vLLM and
    // SGLang, also on uvicorn, answer /health with an empty body and serve /metrics).
    let transformers = uvicorn && health_json.as_ref().is_some_and(|h| h.get("status").is_some()) && !s.metrics.ok();
    clue(transformers, ServerKind::TransformersServe, "server header uvicorn, JSON /health, no /metrics");
    if kind == ServerKind::OpenAiCompatible {
        evidence.push("no engine-specific answer: treated as plain OpenAI-compatible".into());
    }
    if !s.models.ok() {
        evidence.push(format!("/v1/models answered {}: the model is taken from the experiment", status_text(s.models.status)));
    }

    let version = match kind {
        ServerKind::Tgi => s.info.json().and_then(|v| v.get("version")?.as_str().map(String::from)),
        ServerKind::Ollama => ollama,
        _ => s.version.json().and_then(|v| v.get("version")?.as_str().map(String::from)),
    };
    let max_model_len = data
        .first()
        .and_then(|m| m.get("max_model_len").or_else(|| m.get("meta")?.get("n_ctx_train"))?.as_u64())
        .and_then(|n| u32::try_from(n).ok());
    TargetInfo {
        name: String::new(),
        url: s.url.clone(),
        simulated: kind == ServerKind::CaplabSim,
        server: kind,
        evidence,
        version,
        models: data.iter().filter_map(|m| m.get("id")?.as_str().map(String::from)).collect(),
        max_model_len,
    }
}

fn status_text(status: u16) -> String {
    if status == 0 { "nothing".into() } else { format!("HTTP {status}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> Answer {
        Answer { status: 200, server: None, body: body.into() }
    }
    fn with_server(mut a: Answer, server: &str) -> Answer {
        a.server = Some(server.into());
        a
    }
    fn status(code: u16, body: &str) -> Answer {
        Answer { status: code, server: None, body: body.into() }
    }

    /// Verbatim answers of a real vLLM 0.32 (CPU build): tests/fixtures/vllm_models.json, vllm_metrics.txt.
    #[test]
    fn real_vllm() {
        let s = Signals {
            url: "http://127.0.0.1:8000".into(),
            models: with_server(ok(include_str!("../../../tests/fixtures/vllm_models.json")), "uvicorn"),
            health: with_server(ok(""), "uvicorn"),
            metrics: ok(include_str!("../../../tests/fixtures/vllm_metrics.txt")),
            version: ok(r#"{"version":"0.32.0"}"#),
            ..Default::default()
        };
        let t = recognise(&s);
        assert_eq!(t.server, ServerKind::Vllm);
        assert_eq!(t.models, vec!["tiny"]);
        assert_eq!(t.max_model_len, Some(2048));
        assert_eq!(t.version.as_deref(), Some("0.32.0"));
        assert_eq!(t.evidence, vec!["/v1/models owned_by \"vllm\"", "/metrics has vllm: names"]);
        assert!(!t.simulated);
    }

    /// transformers serve 5.17 on the H200 (shared gpu samples): /v1/models 500 with a local
    /// model path, /metrics 404, /health {"status":"ok"}, uvicorn.
    #[test]
    fn transformers_serve_with_failing_models() {
        let s = Signals {
            url: "http://127.0.0.1:8000".into(),
            models: with_server(status(500, "Internal Server Error"), "uvicorn"),
            health: with_server(ok(r#"{"status":"ok"}"#), "uvicorn"),
            metrics: with_server(status(404, r#"{"detail":"Not Found"}"#), "uvicorn"),
            version: status(404, r#"{"detail":"Not Found"}"#),
            ..Default::default()
        };
        let t = recognise(&s);
        assert_eq!(t.server, ServerKind::TransformersServe);
        assert!(t.models.is_empty());
        assert!(t.evidence.iter().any(|e| e.contains("/v1/models answered HTTP 500")), "{:?}", t.evidence);
    }

    #[test]
    fn sglang_tgi_llamacpp_ollama_openai() {
        let base = |models: Answer| Signals { url: "http://10.0.0.1:30000".into(), models, ..Default::default() };
        let sglang = base(ok(r#"{"object":"list","data":[{"id":"qwen","object":"model","owned_by":"sglang","root":"qwen"}]}"#));
        assert_eq!(recognise(&sglang).server, ServerKind::Sglang);

        let mut tgi = base(ok(r#"{"object":"list","data":[{"id":"Qwen/Qwen2.5-1.5B-Instruct","object":"model","created":0,"owned_by":"Qwen/Qwen2.5-1.5B-Instruct"}]}"#));
        tgi.info = ok(r#"{"model_id":"Qwen/Qwen2.5-1.5B-Instruct","router":"text-generation-router","version":"3.3.4"}"#);
        tgi.metrics = ok("# TYPE tgi_request_count counter\ntgi_request_count 3\n");
        let t = recognise(&tgi);
        assert_eq!((t.server, t.version.as_deref()), (ServerKind::Tgi, Some("3.3.4")));

        let mut llama = base(with_server(ok(r#"{"object":"list","data":[{"id":"m.gguf","object":"model","owned_by":"llamacpp","meta":{"n_ctx_train":4096}}]}"#), "llama.cpp"));
        llama.health = ok(r#"{"status":"ok"}"#);
        let t = recognise(&llama);
        assert_eq!((t.server, t.max_model_len), (ServerKind::LlamaCpp, Some(4096)));

        let mut ollama = base(ok(r#"{"object":"list","data":[{"id":"llama3.2:latest","object":"model","created":0,"owned_by":"library"}]}"#));
        ollama.api_version = ok(r#"{"version":"0.12.3"}"#);
        ollama.health = status(404, "404 page not found");
        let t = recognise(&ollama);
        assert_eq!((t.server, t.version.as_deref()), (ServerKind::Ollama, Some("0.12.3")));

        let openai = Signals { url: "https://api.openai.com".into(), models: status(401, "{}"), ..Default::default() };
        assert_eq!(recognise(&openai).server, ServerKind::OpenAi);
        // A gateway that says owned_by "openai" for whatever it fronts is not taken for OpenAI.
        let gateway = base(ok(r#"{"object":"list","data":[{"id":"qwen","object":"model","owned_by":"openai"}]}"#));
        assert_eq!(recognise(&gateway).server, ServerKind::OpenAiCompatible);
    }

    #[test]
    fn unknown_servers_are_plain_openai_and_the_simulator_is_simulated() {
        let s = Signals { url: "http://127.0.0.1:9".into(), models: ok(r#"{"data":[{"id":"m","owned_by":"me"}]}"#), ..Default::default() };
        let t = recognise(&s);
        assert_eq!(t.server, ServerKind::OpenAiCompatible);
        assert!(t.evidence[0].starts_with("no engine-specific answer"));
        let sim = Signals { models: ok(r#"{"data":[{"id":"m","owned_by":"caplab-sim","max_model_len":4096}]}"#), ..Default::default() };
        let t = recognise(&sim);
        assert!(t.simulated && t.server == ServerKind::CaplabSim);
        // A /metrics page from another engine than owned_by says is not taken as evidence.
        let mixed = Signals { models: ok(r#"{"data":[{"id":"m","owned_by":"vllm"}]}"#), metrics: ok("sglang:x 1\n"), ..Default::default() };
        assert_eq!(recognise(&mixed).evidence, vec!["/v1/models owned_by \"vllm\""]);
    }
}
