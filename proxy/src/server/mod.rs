//! The HTTP edge: the JSON API, the run WebSocket, downloads and the dashboard.

mod api;
pub mod assets;
mod error;
mod ws;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::routing::{get, post};
use axum::Router;
use caplab_shared::{ExperimentSpec, RunInfo, RunStatus, TargetInfo};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::engine::Engine;
use crate::runs::Registry;
pub use error::{ApiError, ErrorBody};

/// What every handler shares.
pub struct AppState {
    pub registry: Arc<Registry>,
    pub engine: Engine,
    /// Base URL used when an experiment names no target.
    pub default_target: String,
    /// Cancelled when the process is asked to stop: runs stop, sockets close.
    pub shutdown: CancellationToken,
    /// Every run's task, so shutdown can wait until each has saved its files.
    pub tasks: TaskTracker,
}

impl AppState {
    pub fn new(registry: Registry, engine: Engine, default_target: String) -> Self {
        AppState {
            registry: Arc::new(registry),
            engine,
            default_target,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// A new run's identity for a prepared spec against a probed target.
    pub fn new_run_info(&self, spec: ExperimentSpec, target: TargetInfo) -> RunInfo {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let cells = spec.cells().len() as u32;
        RunInfo {
            id: self.registry.next_id(now_ms),
            cells_total: cells,
            requests_total: self.engine.total_requests(&spec),
            spec,
            target,
            status: RunStatus::Running,
            started_unix_ms: now_ms,
            message: None,
        }
    }

    /// Runs `run` to its end in the background, then saves it.
    pub fn spawn_run(&self, run: Arc<crate::runs::Run>) {
        let (engine, registry) = (self.engine.clone(), self.registry.clone());
        self.tasks.spawn(async move {
            engine.run(run.clone()).await;
            match registry.persist(&run) {
                Ok(Some(path)) => tracing::info!("run {} saved in {}", run.id, path.display()),
                Ok(None) => {}
                Err(e) => tracing::error!("could not save run {}: {e}", run.id),
            }
        });
    }

    /// Stops every run, closes every socket, and waits (up to `limit`) for runs to be saved.
    pub async fn shut_down(&self, limit: std::time::Duration) {
        self.shutdown.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(limit, self.tasks.wait()).await;
    }
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
