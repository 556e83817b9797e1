//! Finding out what a target server is before load is sent to it.

use std::time::Duration;

use caplab_shared::TargetInfo;

/// The `owned_by` the built-in simulator reports, so any caplab can tell it is simulated.
pub const SIM_OWNER: &str = "caplab-sim";

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
}

/// Asks `GET /v1/models` (and `GET /metrics` when needed) what the server is.
/// A server that answers `/v1/models` with an error still counts as reachable.
pub async fn probe(client: &reqwest::Client, url: &str) -> Result<TargetInfo, ProbeError> {
    let base = url.trim_end_matches('/').trim_end_matches("/v1").to_string();
    let unreachable = |e: reqwest::Error| ProbeError::Unreachable { url: base.clone(), reason: root_cause(&e) };
    let resp = client.get(format!("{base}/v1/models")).timeout(Duration::from_secs(10)).send().await.map_err(unreachable)?;
    let mut info = TargetInfo { url: base.clone(), server: "openai-compatible".into(), ..Default::default() };
    if resp.status().is_success() {
        if let Ok(v) = resp.json::<serde_json::Value>().await {
            let data = v.get("data").and_then(|d| d.as_array()).cloned().unwrap_or_default();
            info.models = data.iter().filter_map(|m| m.get("id")?.as_str().map(String::from)).collect();
            info.max_model_len = data.first().and_then(|m| m.get("max_model_len")?.as_u64()).and_then(|n| u32::try_from(n).ok());
            let owner = data.first().and_then(|m| m.get("owned_by")?.as_str()).unwrap_or("");
            if owner == SIM_OWNER {
                info.simulated = true;
                info.server = SIM_OWNER.into();
            } else if owner == "vllm" {
                info.server = "vllm".into();
            }
        }
    }
    if info.server == "openai-compatible" && serves_vllm_metrics(client, &base).await {
        info.server = "vllm".into();
    }
    Ok(info)
}

async fn serves_vllm_metrics(client: &reqwest::Client, base: &str) -> bool {
    match client.get(format!("{base}/metrics")).timeout(Duration::from_secs(5)).send().await {
        Ok(r) if r.status().is_success() => r.text().await.is_ok_and(|t| t.contains("vllm:")),
        _ => false,
    }
}

/// Whether the server accepts vLLM-only request fields such as `ignore_eos`
/// (others, e.g. `transformers serve`, refuse unknown fields with 422).
pub fn accepts_vllm_fields(info: &TargetInfo) -> bool {
    info.server == "vllm" || info.simulated
}

/// The innermost error message, which says what actually went wrong (e.g. "Connection refused").
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &dyn std::error::Error = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    let inner = cur.to_string();
    let outer = e.to_string();
    if inner == outer { outer } else { format!("{outer} ({inner})") }
}
