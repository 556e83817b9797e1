//! The dashboard's files, embedded at build time from `frontend/dist` (see build.rs).

use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

struct Asset {
    path: &'static str,
    mime: &'static str,
    bytes: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// Serves an embedded file; any other non-API path gets the dashboard's index page.
pub async fn serve(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    let Some(asset) = find(path).or_else(|| find("index.html")) else {
        return (StatusCode::NOT_FOUND, "dashboard not built").into_response();
    };
    let cache = if asset.path == "index.html" { "no-cache" } else { "public, max-age=300" };
    ([(header::CONTENT_TYPE, asset.mime), (header::CACHE_CONTROL, cache)], asset.bytes).into_response()
}

/// True when the real dashboard (not the placeholder page) is embedded.
pub fn dashboard_built() -> bool {
    DASHBOARD_BUILT
}
