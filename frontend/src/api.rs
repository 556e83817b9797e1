//! Talking to the caplab server. Every URL is relative to the page, so the
//! dashboard works behind RunPod's https proxy under any path.

use caplab_shared::FieldError;
use gloo_net::http::Request;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// The server's error body.
#[derive(Deserialize, Debug, Clone, Default)]
pub struct ApiError {
    pub error: String,
    #[serde(default)]
    pub fields: Vec<FieldError>,
}

impl ApiError {
    fn plain(msg: impl Into<String>) -> Self {
        ApiError { error: msg.into(), fields: vec![] }
    }
}

async fn read<T: DeserializeOwned>(resp: gloo_net::http::Response) -> Result<T, ApiError> {
    if resp.ok() {
        resp.json::<T>().await.map_err(|e| ApiError::plain(format!("unreadable answer: {e}")))
    } else {
        let status = resp.status();
        match resp.json::<ApiError>().await {
            Ok(e) => Err(e),
            Err(_) => Err(ApiError::plain(format!("HTTP {status}"))),
        }
    }
}

pub async fn get_json<T: DeserializeOwned>(path: &str) -> Result<T, String> {
    let resp = Request::get(path).send().await.map_err(|e| format!("cannot reach caplab: {e}"))?;
    read(resp).await.map_err(|e| e.error)
}

pub async fn post_json<T: DeserializeOwned>(path: &str, body: &serde_json::Value) -> Result<T, ApiError> {
    let req = Request::post(path).json(body).map_err(|e| ApiError::plain(e.to_string()))?;
    let resp = req.send().await.map_err(|e| ApiError::plain(format!("cannot reach caplab: {e}")))?;
    read(resp).await
}

/// The run's WebSocket URL: same host and path as the page, `wss://` when the page is https.
pub fn ws_url(id: &str) -> String {
    let loc = web_sys::window().map(|w| w.location());
    let (protocol, host, path) = loc
        .map(|l| (l.protocol().unwrap_or_default(), l.host().unwrap_or_default(), l.pathname().unwrap_or_default()))
        .unwrap_or_default();
    let scheme = if protocol == "https:" { "wss" } else { "ws" };
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    let dir = if dir.is_empty() { "/" } else { dir };
    format!("{scheme}://{host}{dir}api/runs/{id}/ws")
}

/// DELETE; Ok on any 2xx.
pub async fn delete(path: &str) -> Result<(), String> {
    let resp = Request::delete(path).send().await.map_err(|e| format!("cannot reach caplab: {e}"))?;
    if resp.ok() {
        Ok(())
    } else {
        let status = resp.status();
        Err(resp.json::<ApiError>().await.map_or_else(|_| format!("HTTP {status}"), |e| e.error))
    }
}
