//! Finding out what a target server is before load is sent to it: one probe asks every
//! endpoint that tells engines apart, and `recognise` decides from the answers.

mod recognise;

use std::time::Duration;

use caplab_shared::TargetInfo;
use reqwest::header::HeaderValue;
use futures_util::StreamExt;

use crate::secrets::Redactor;

pub use recognise::{recognise, Answer, Signals};

/// The `owned_by` the built-in simulator reports, so any caplab can tell it is simulated.
pub const SIM_OWNER: &str = "caplab-sim";

/// How long each probe request may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes read from any probe answer (a vLLM `/metrics` page is about 60 KB).
const PROBE_BODY_LIMIT: usize = 512 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// Shown to the operator only (admission and `GET /api/target` are theirs).
    #[error("{url}/v1/models answered {status} redirecting to {location:?}: caplab follows no redirects (they could take its load to an address the operator did not allow); give the final URL with --target")]
    Redirected { url: String, status: u16, location: String },
    #[error("{0}")]
    OwnShortage(String),
}

/// Asks the target's `/v1/models`, `/health`, `/metrics`, `/version`, `/info`, `/api/version`
/// and `/props` (at once, each within 5 s) and recognises the engine from the answers.
/// Only a target that answers none of them is unreachable; `/v1/models` failing (as on
/// `transformers serve` with a local model) just leaves the model list empty.
pub async fn probe(client: &reqwest::Client, url: &str, auth: Option<&HeaderValue>) -> Result<TargetInfo, ProbeError> {
    let base = url.trim_end_matches('/').trim_end_matches("/v1").to_string();
    let redactor = Redactor::for_auth(auth);
    let ask = |path: &'static str| fetch(client, format!("{base}{path}"), auth, &redactor);
    let (models, health, metrics, version, info, api_version, props) =
        tokio::join!(ask("/v1/models"), ask("/health"), ask("/metrics"), ask("/version"), ask("/info"), ask("/api/version"), ask("/props"));
    let models = match models {
        Ok(a) if (300..400).contains(&a.status) => {
            return Err(ProbeError::Redirected { url: base, status: a.status, location: a.body });
        }
        Ok(a) => a,
        Err(e) if crate::fd_limit::is_shortage(&e) => return Err(ProbeError::OwnShortage(format!("{}: {e}", crate::fd_limit::shortage()))),
        Err(e) => {
            let others = [&health, &metrics, &version, &info, &api_version, &props];
            match others.into_iter().find_map(|r| r.as_ref().ok()) {
                Some(_) => Answer::default(),
                None => return Err(ProbeError::Unreachable { url: base, reason: e }),
            }
        }
    };
    let signals = Signals {
        url: base.clone(),
        models,
        health: health.unwrap_or_default(),
        metrics: metrics.unwrap_or_default(),
        version: version.unwrap_or_default(),
        info: info.unwrap_or_default(),
        api_version: api_version.unwrap_or_default(),
        props: props.unwrap_or_default(),
    };
    Ok(recognise(&signals))
}

/// One GET: its status, `server` header and (bounded) body, each with the credentials' secrets
/// taken out (a target may echo them); for a redirect (which is not followed) the body holds
/// its Location. Err only when no answer came.
/// `Connection: close`, so no probe connection is left in the pool for the run: a server may
/// close it after an error (transformers serve does after its 500 on `/v1/models`), and the
/// run's first request would then be sent into a reset connection.
async fn fetch(client: &reqwest::Client, url: String, auth: Option<&HeaderValue>, redactor: &Redactor) -> Result<Answer, String> {
    let mut req = client.get(&url);
    if let Some(a) = auth {
        req = req.header(reqwest::header::AUTHORIZATION, a.clone());
    }
    let resp = req
        .header(reqwest::header::CONNECTION, "close")
        .timeout(PROBE_TIMEOUT)
        .send()
        .await
        .map_err(|e| redactor.redact(&root_cause(&e)))?;
    let status = resp.status().as_u16();
    let server = resp.headers().get(reqwest::header::SERVER).and_then(|v| v.to_str().ok()).map(|s| redactor.redact(s));
    if resp.status().is_redirection() {
        let location = resp.headers().get(reqwest::header::LOCATION).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).unwrap_or_default();
        return Ok(Answer { status, server, body: redactor.redact(&location) });
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(Ok(piece)) = stream.next().await {
        body.extend_from_slice(&piece);
        if body.len() >= PROBE_BODY_LIMIT {
            break;
        }
    }
    Ok(Answer { status, server, body: redactor.redact(&String::from_utf8_lossy(&body)) })
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
