//! The HTTP edge: the JSON API, the run WebSocket, downloads and the dashboard.

mod api;
pub mod assets;
pub mod auth;
mod error;
pub mod listen;
mod ws;

use std::sync::Arc;

use axum::routing::{get, post, MethodRouter};
use axum::Router;

use crate::lab::Lab;
use crate::limits::Limits;
pub use error::{ApiError, ErrorBody};

/// What every handler shares: the runs' home, and what only the HTTP edge needs.
pub struct AppState {
    pub lab: Lab,
    /// Who may do what (tokens, allowed host names).
    pub access: auth::Access,
    /// How often viewers' WebSockets are pinged; one that answers nothing for two pings and
    /// 10 s more is closed.
    pub ws_ping: std::time::Duration,
    /// Places for open WebSockets (`--max-websockets`); a socket also keeps the place of the
    /// connection it was upgraded from among `--max-connections`.
    pub ws_slots: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    pub fn new(lab: Lab, access: auth::Access) -> Self {
        AppState { lab, access, ws_ping: std::time::Duration::from_secs(20), ws_slots: Arc::new(tokio::sync::Semaphore::new(512)) }
    }

    /// The operator's limits on runs started over HTTP (a served lab always has them).
    pub fn limits(&self) -> Limits {
        self.lab.limits.clone().unwrap_or_default()
    }
}

/// Every API route and its methods. The router is built from this table (`app`), and the
/// tests walk it to check that each one refuses a missing or wrong token.
pub const API_ROUTES: &[(&str, &[&str])] = &[
    ("/api/health", &["GET"]),
    ("/api/whoami", &["GET"]),
    ("/api/limits", &["GET"]),
    ("/api/viewer-link/rotate", &["POST"]),
    ("/api/target", &["GET"]),
    ("/api/targets", &["GET"]),
    ("/api/defaults", &["GET"]),
    ("/api/runs", &["GET", "POST"]),
    ("/api/runs/{id}", &["GET", "DELETE"]),
    ("/api/runs/{id}/stop", &["POST"]),
    ("/api/runs/{id}/rename", &["POST"]),
    ("/api/runs/{id}/share", &["POST"]),
    ("/api/runs/{id}/archive.tar", &["GET"]),
    ("/api/runs/{id}/ws", &["GET"]),
    ("/api/runs/{id}/requests.csv", &["GET"]),
    ("/api/runs/{id}/summary.csv", &["GET"]),
    ("/api/runs/{id}/results.json", &["GET"]),
    ("/api/runs/{id}/server_metrics.csv", &["GET"]),
    ("/api/runs/{id}/gpu.csv", &["GET"]),
    ("/api/runs/{id}/surface.svg", &["GET"]),
    ("/api/runs/{id}/frontier.svg", &["GET"]),
    ("/api/runs/{id}/report.html", &["GET"]),
    ("/api/runs/{id}/predict", &["GET"]),
    ("/api/report", &["GET"]),
    ("/api/compare", &["GET"]),
    ("/api/compare/report.html", &["GET"]),
    ("/api/import", &["POST"]),
    ("/api/inputs", &["POST"]),
    ("/api/{*rest}", &["GET", "POST"]),
];

/// The handlers of one path of `API_ROUTES`.
fn handlers(path: &str) -> MethodRouter<Arc<AppState>> {
    match path {
        "/api/health" => get(|| async { "ok" }),
        "/api/whoami" => get(api::whoami),
        "/api/limits" => get(api::limits),
        "/api/viewer-link/rotate" => post(api::rotate_viewer_link),
        "/api/target" => get(api::target),
        "/api/targets" => get(api::targets),
        "/api/defaults" => get(api::defaults),
        "/api/runs" => get(api::list_runs).post(api::start_run),
        "/api/runs/{id}" => get(api::get_run).delete(api::delete_run),
        "/api/runs/{id}/stop" => post(api::stop_run),
        "/api/runs/{id}/rename" => post(api::rename_run),
        "/api/runs/{id}/share" => post(api::share_run),
        "/api/runs/{id}/archive.tar" => get(api::archive),
        "/api/runs/{id}/ws" => get(ws::watch),
        "/api/runs/{id}/requests.csv" => get(api::requests_csv),
        "/api/runs/{id}/summary.csv" => get(api::summary_csv),
        "/api/runs/{id}/results.json" => get(api::results_json),
        "/api/runs/{id}/server_metrics.csv" => get(|st, id| api::series_csv(st, id, "server_metrics.csv")),
        "/api/runs/{id}/gpu.csv" => get(|st, id| api::series_csv(st, id, "gpu.csv")),
        "/api/runs/{id}/surface.svg" => get(|st, id| api::chart_svg(st, id, "surface")),
        "/api/runs/{id}/frontier.svg" => get(|st, id| api::chart_svg(st, id, "frontier")),
        "/api/runs/{id}/report.html" => get(api::run_report_html),
        "/api/runs/{id}/predict" => get(api::predict),
        "/api/report" => get(api::report),
        "/api/compare" => get(api::compare),
        "/api/compare/report.html" => get(api::compare_report_html),
        "/api/import" => post(api::import),
        "/api/inputs" => post(api::upload_inputs),
        _ => get(api::no_such_api).post(api::no_such_api),
    }
}

pub fn app(state: Arc<AppState>) -> Router {
    // No body may be larger than an experiment ever needs; result files dropped on the page
    // (`/api/import`) may be larger.
    let (body, import) = (state.limits().max_body_bytes, state.limits().max_import_bytes);
    let api = API_ROUTES.iter().fold(Router::new(), |router, (path, _)| {
        router.route(path, handlers(path).layer(axum::extract::DefaultBodyLimit::max(if matches!(*path, "/api/import" | "/api/inputs") { import } else { body })))
    });
    // Every route and every file of the dashboard pass the gate first.
    api.fallback(assets::serve)
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::guard))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(import.max(body)))
        .with_state(state)
}
