//! The HTTP edge: the JSON API, the run WebSocket, downloads and the dashboard.

mod api;
pub mod assets;
pub mod auth;
mod error;
pub mod limits;
pub mod listen;
mod ws;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::routing::{get, post, MethodRouter};
use axum::Router;
use caplab_shared::{ExperimentSpec, RunInfo, RunStatus, TargetInfo};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::engine::Engine;
use crate::runs::Registry;
use crate::targets::Targets;
pub use error::{ApiError, ErrorBody};

/// What every handler shares.
pub struct AppState {
    pub registry: Arc<Registry>,
    pub engine: Engine,
    /// The servers this caplab may load (the first is the default).
    pub targets: Targets,
    /// Cancelled when the process is asked to stop: runs stop, sockets close.
    pub shutdown: CancellationToken,
    /// Every run's task, so shutdown can wait until each has saved its files.
    pub tasks: TaskTracker,
    /// Who may do what (tokens, allowed host names).
    pub access: auth::Access,
    /// What runs started over HTTP may ask for (`GET /api/limits`).
    pub limits: limits::Limits,
    /// One gate per target URL: runs on one target take turns, first come first served.
    gates: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>>,
    /// How often viewers' WebSockets are pinged; one that answers nothing for two pings and
    /// 10 s more is closed.
    pub ws_ping: std::time::Duration,
}

impl AppState {
    pub fn new(registry: Registry, engine: Engine, targets: Targets, access: auth::Access) -> Self {
        AppState {
            registry: Arc::new(registry),
            engine,
            targets,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            access,
            limits: limits::Limits::default(),
            gates: Default::default(),
            ws_ping: std::time::Duration::from_secs(20),
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

    /// The gate of one target: a single permit, handed out in the order runs asked for it.
    fn gate(&self, url: &str) -> Arc<tokio::sync::Semaphore> {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        gates.entry(url.to_string()).or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(1))).clone()
    }

    /// Runs `run` in the background once its target is free (until then it is `queued`, and a
    /// stop takes it out of the queue), journalling every completed request; then saves it.
    pub fn spawn_run(&self, run: Arc<crate::runs::Run>, auth: Option<reqwest::header::HeaderValue>) {
        if let Err(e) = self.registry.begin(&run) {
            tracing::error!("run {}: cannot start its files ({e}); it is saved only when it ends", run.id);
        }
        let (engine, registry) = (self.engine.clone(), self.registry.clone());
        let deadline = std::time::Duration::from_secs_f64(self.limits.max_run_duration_s);
        let gate = self.gate(&run.info().target.url);
        self.tasks.spawn(async move {
            let turn = tokio::select! {
                permit = gate.acquire_owned() => permit.ok(),
                _ = run.cancel.cancelled() => None,
            };
            match turn {
                Some(_permit) => {
                    if run.info().status == RunStatus::Queued {
                        run.publish(caplab_shared::ServerMsg::Status { status: RunStatus::Running, message: None });
                    }
                    engine.run(run.clone(), auth, Some(deadline)).await;
                }
                None => {
                    let message = Some("taken out of the queue before it began: nothing was sent".to_string());
                    run.publish(caplab_shared::ServerMsg::Status { status: RunStatus::Stopped, message });
                }
            }
            match registry.persist(&run) {
                Ok(Some(path)) => tracing::info!("run {} saved in {}", run.id, path.display()),
                Ok(None) => {}
                Err(e) => tracing::error!("could not save run {}: {e}", run.id),
            }
            run.settle();
        });
    }

    /// Stops every run, closes every socket, and waits (up to `limit`) for runs to be saved.
    pub async fn shut_down(&self, limit: std::time::Duration) {
        self.shutdown.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(limit, self.tasks.wait()).await;
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
    ("/api/runs/{id}/ws", &["GET"]),
    ("/api/runs/{id}/requests.csv", &["GET"]),
    ("/api/runs/{id}/summary.csv", &["GET"]),
    ("/api/runs/{id}/results.json", &["GET"]),
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
        "/api/runs/{id}/ws" => get(ws::watch),
        "/api/runs/{id}/requests.csv" => get(api::requests_csv),
        "/api/runs/{id}/summary.csv" => get(api::summary_csv),
        "/api/runs/{id}/results.json" => get(api::results_json),
        _ => get(api::no_such_api).post(api::no_such_api),
    }
}

pub fn app(state: Arc<AppState>) -> Router {
    let api = API_ROUTES.iter().fold(Router::new(), |router, (path, _)| router.route(path, handlers(path)));
    // Every route and every file of the dashboard pass the gate first; no body may be larger
    // than an experiment ever needs.
    api.fallback(assets::serve)
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::guard))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(state.limits.max_body_bytes))
        .with_state(state)
}
