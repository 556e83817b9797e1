//! The HTTP edge: the JSON API, the run WebSocket, downloads and the dashboard.

mod api;
pub mod assets;
mod error;
mod ws;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::engine::Engine;
use crate::runs::Registry;
pub use api::new_run_info as api_new_run_info;
pub use error::{ApiError, ErrorBody};

/// What every handler shares.
pub struct AppState {
    pub registry: Arc<Registry>,
    pub engine: Engine,
    /// Base URL used when an experiment names no target.
    pub default_target: String,
}

pub fn app(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/api/health", get(|| async { "ok" }))
        .route("/api/target", get(api::target))
        .route("/api/defaults", get(api::defaults))
        .route("/api/runs", get(api::list_runs).post(api::start_run))
        .route("/api/runs/{id}", get(api::get_run))
        .route("/api/runs/{id}/stop", post(api::stop_run))
        .route("/api/runs/{id}/ws", get(ws::watch))
        .route("/api/runs/{id}/requests.csv", get(api::requests_csv))
        .route("/api/runs/{id}/summary.csv", get(api::summary_csv))
        .route("/api/runs/{id}/results.json", get(api::results_json))
        .route("/api/{*rest}", get(api::no_such_api).post(api::no_such_api));
    api.fallback(assets::serve).with_state(state)
}
