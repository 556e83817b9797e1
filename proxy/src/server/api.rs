//! JSON API handlers: start, stop, list and read experiments; downloads.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use caplab_shared::api::{AllowedTarget, Defaults, GpuPrice, ShareRequest, WhoAmI};
use caplab_shared::{ExperimentSpec, RunInfo, RunView, TargetInfo};
use serde::Deserialize;

use super::auth::Role;
use super::{ApiError, AppState};
use crate::export;
use crate::spec_input::spec_from_value;
use crate::runs::Run;
use crate::lab::Refusal;
use crate::target::probe;

#[derive(Deserialize)]
pub struct TargetQuery {
    name: Option<String>,
    url: Option<String>,
}

/// What an allowed target (the default one, or `?name=`) is and which models it serves.
pub async fn target(State(st): State<Arc<AppState>>, Query(q): Query<TargetQuery>) -> Result<Json<TargetInfo>, ApiError> {
    if q.url.is_some() {
        return Err(ApiError::field("target", "give ?name= of an allowed target (GET /api/targets lists them); URLs are not probed from here"));
    }
    let target = st.lab.targets.resolve(q.name.as_deref().unwrap_or("")).map_err(|e| ApiError::Invalid(vec![e]))?;
    let mut info = probe(&st.lab.engine.client, &target.url, target.auth.as_ref()).await.map_err(|e| ApiError::field("target", e.to_string()))?;
    info.name = target.name.clone();
    Ok(Json(info))
}

/// The targets this caplab may load, the default first (no credentials; a viewer gets the
/// names alone).
pub async fn targets(State(st): State<Arc<AppState>>, Extension(role): Extension<Role>) -> Json<Vec<AllowedTarget>> {
    let shown = |url: &str| if role == Role::Operator { url.to_string() } else { String::new() };
    Json(st.lab.targets.all().iter().map(|t| AllowedTarget { name: t.name.clone(), url: shown(&t.url) }).collect())
}

/// A spec to start the form from, what the built-in workloads hold, and a first run worth seeing.
pub async fn defaults(State(st): State<Arc<AppState>>) -> Json<Defaults> {
    Json(Defaults {
        spec: ExperimentSpec::default(),
        documents: st.lab.engine.inputs.documents.len() as u32,
        chat_prompts: st.lab.engine.inputs.chats.len() as u32,
        default_target: st.lab.targets.default_target().name.clone(),
        quick_start: st.lab.targets.all().iter().find(|t| t.name.starts_with("sim-")).map(|t| quick_start(&t.name)),
        gpu_prices: crate::sim::profile::gpus().into_iter().map(|g| GpuPrice { key: g.key, name: g.name, usd_per_hour: g.price_usd_h }).collect(),
    })
}

/// The notes' chat grid (data/experiments/chat_grid.toml) made small enough to end in about a
/// minute on a simulated GPU: two requests a worker, the same concurrencies and SLO.
fn quick_start(target: &str) -> ExperimentSpec {
    ExperimentSpec {
        name: "chat capacity grid (quick start)".into(),
        workload: caplab_shared::Workload::Chat,
        target: target.to_string(),
        gpu: String::new(),
        concurrency: vec![1, 4, 8, 16, 32, 64],
        max_new_tokens: vec![128],
        requests: 16,
        requests_per_worker: 2,
        timeout_s: 120.0,
        ..Default::default()
    }
}

/// The caller's role, and for the operator the read-only viewer link to hand a client.
pub async fn whoami(State(st): State<Arc<AppState>>, Extension(role): Extension<Role>) -> Json<WhoAmI> {
    Json(who(&st, role))
}

fn who(st: &AppState, role: Role) -> WhoAmI {
    let viewer_link = (role == Role::Operator && !st.access.open()).then(|| format!("/?token={}", st.access.viewer_token()));
    WhoAmI { role: role.as_str().into(), auth: !st.access.open(), viewer_link }
}

/// A new viewer token: every viewer link given out before stops working, and the viewers'
/// open WebSockets are closed. Answers as `whoami`, with the new link.
pub async fn rotate_viewer_link(State(st): State<Arc<AppState>>) -> Result<Json<WhoAmI>, ApiError> {
    if st.access.open() {
        return Err(ApiError::Conflict("this caplab runs with --no-auth: there is no viewer link to rotate".into()));
    }
    st.access.rotate_viewer();
    Ok(Json(who(&st, Role::Operator)))
}

/// Every run the caller may see, newest first: a viewer sees the shared ones, the one going on
/// and the newest, without internal addresses.
pub async fn list_runs(State(st): State<Arc<AppState>>, Extension(role): Extension<Role>) -> Json<Vec<RunInfo>> {
    let all = st.lab.registry.list();
    Json(match role {
        Role::Operator => all,
        Role::Viewer => all.into_iter().filter(|i| st.lab.registry.visible_to_viewers(&i.id)).map(|i| i.for_viewer()).collect(),
    })
}

/// Parses a spec, naming every field that is wrong.
pub fn parse_spec(body: &[u8]) -> Result<ExperimentSpec, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| ApiError::BadJson(e.to_string()))?;
    spec_from_value(value).map_err(ApiError::Invalid)
}

/// Admits the spec against the allowed target it names and starts it in the background.
pub async fn start_run(State(st): State<Arc<AppState>>, body: Bytes) -> Result<Response, ApiError> {
    let mut spec = parse_spec(&body)?;
    let allowed = st.lab.targets.resolve(&spec.target).map_err(|e| ApiError::Invalid(vec![e]))?.clone();
    spec.target = allowed.name.clone();
    let run = st.lab.admit(spec, &allowed).await.map_err(|refusal| match refusal {
        Refusal::Invalid(fields) => ApiError::Invalid(fields),
        Refusal::Conflict(why) => ApiError::Conflict(why),
    })?;
    let info = run.info();
    st.lab.launch(run, allowed.auth);
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

/// The run with this id; a finished one is read back from its files off the runtime that
/// times requests.
async fn find(st: &Arc<AppState>, id: &str) -> Result<Arc<Run>, ApiError> {
    let (st, id) = (st.clone(), id.to_string());
    tokio::task::spawn_blocking(move || st.lab.find(&id)).await.map_err(|e| ApiError::Internal(e.to_string()))?.map_err(ApiError::from)
}

pub async fn get_run(State(st): State<Arc<AppState>>, Extension(role): Extension<Role>, Path(id): Path<String>) -> Result<Json<RunView>, ApiError> {
    let mut view = find(&st, &id).await?.view();
    if role == Role::Viewer {
        view.info = view.info.for_viewer();
    }
    Ok(Json(view))
}

/// Deletes a run that has ended: from the list and from disk.
pub async fn delete_run(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    // The index decides (a run whose files are damaged can still be deleted).
    let info = st.lab.registry.info(&id).ok_or_else(|| ApiError::NotFound(format!("no run with id {id:?}")))?;
    if !info.status.is_terminal() {
        return Err(ApiError::Conflict(format!("run {id} is still running: stop it first")));
    }
    let Ok(run) = find(&st, &id).await else {
        st.lab.registry.delete(&id).map_err(|e| ApiError::Internal(format!("could not delete run {id}'s files: {e}")))?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    // A run that has just ended may still be writing its files: let it finish first.
    if !run.wait_settled(std::time::Duration::from_secs(5)).await {
        return Err(ApiError::Conflict(format!("run {id} is still saving its files: try again in a moment")));
    }
    st.lab.registry.delete(&id).map_err(|e| ApiError::Internal(format!("could not delete run {id}'s files: {e}")))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// What runs started here may ask for.
pub async fn limits(State(st): State<Arc<AppState>>) -> Json<crate::limits::Limits> {
    Json(st.limits())
}

pub async fn stop_run(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let run = find(&st, &id).await?;
    let info = run.info();
    if info.status.is_terminal() {
        return Err(ApiError::Conflict(format!("run {id} has already ended ({})", info.status.as_str())));
    }
    run.cancel.cancel();
    Ok((StatusCode::ACCEPTED, Json(info)).into_response())
}

fn download(name: String, mime: &'static str, bytes: Vec<u8>) -> Response {
    download_body(name, mime, axum::body::Body::from(bytes))
}

fn download_body(name: String, mime: &'static str, body: axum::body::Body) -> Response {
    let disposition = format!("attachment; filename=\"{name}\"");
    ([(header::CONTENT_TYPE, mime.to_string()), (header::CONTENT_DISPOSITION, disposition)], body).into_response()
}

/// `caplab_<workload>_<mode>_<gpu>[_simulated]_<id>`: the GPU label made file-safe (runs of
/// other characters become one `_`), and `simulated` said once even when the label says it.
fn file_stem(info: &RunInfo) -> String {
    let mut gpu = String::new();
    for c in info.spec.gpu.chars() {
        if c.is_ascii_alphanumeric() || c == '-' {
            gpu.push(c);
        } else if !gpu.is_empty() && !gpu.ends_with('_') {
            gpu.push('_');
        }
    }
    let gpu = gpu.trim_end_matches('_');
    // The label of a simulated run already says so (`results_label`); the name says it once.
    let lower = gpu.to_ascii_lowercase();
    let gpu = match (info.target.simulated, lower.as_str()) {
        (true, "simulated") => "",
        (true, l) if l.ends_with("_simulated") => &gpu[..gpu.len() - "_simulated".len()],
        _ => gpu,
    };
    let parts = [
        "caplab",
        info.spec.workload.as_str(),
        info.spec.mode.as_str(),
        gpu,
        if info.target.simulated { "simulated" } else { "" },
        &info.id,
    ];
    parts.iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join("_")
}

/// `requests.csv`, streamed from disk (a run going on: up to its last journalled batch).
pub async fn requests_csv(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    use futures_util::StreamExt;
    use tokio::io::AsyncReadExt;
    let run = find(&st, &id).await?;
    let info = run.info();
    let (on_disk, tail) = run.requests_csv().map_err(|e| ApiError::Internal(format!("cannot read run {id}'s requests: {e}")))?;
    let name = format!("{}_requests.csv", file_stem(&info));
    let Some((path, len)) = on_disk else { return Ok(download(name, "text/csv; charset=utf-8", tail)) };
    let file = tokio::fs::File::open(&path).await.map_err(|e| ApiError::Internal(format!("cannot read {}: {e}", path.display())))?;
    let head = tokio_util::io::ReaderStream::new(file.take(len));
    let body = head.chain(futures_util::stream::once(async move { Ok(axum::body::Bytes::from(tail)) }));
    Ok(download_body(name, "text/csv; charset=utf-8", axum::body::Body::from_stream(body)))
}

pub async fn summary_csv(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let view = find(&st, &id).await?.view();
    let bytes = export::summary_csv(&view.info, &view.cells).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(download(format!("{}_summary.csv", file_stem(&view.info)), "text/csv; charset=utf-8", bytes))
}

pub async fn results_json(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let view = find(&st, &id).await?.view();
    let bytes = serde_json::to_vec_pretty(&view).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(download(format!("{}_results.json", file_stem(&view.info)), "application/json", bytes))
}

/// A time series saved beside the run (`server_metrics.csv`, `gpu.csv`), streamed from disk.
pub async fn series_csv(State(st): State<Arc<AppState>>, Path(id): Path<String>, name: &'static str) -> Result<Response, ApiError> {
    let run = find(&st, &id).await?;
    let info = run.info();
    let path = run.folder().map(|f| f.join(name)).filter(|p| p.exists()).ok_or_else(|| {
        let why = match name {
            "server_metrics.csv" => info.target.server.label().to_string() + " target: no /metrics was read during this run",
            _ => "no GPU was read during this run".to_string(),
        };
        ApiError::NotFound(format!("run {id} has no {name}: {why} (its results.json says why under telemetry)"))
    })?;
    let file = tokio::fs::File::open(&path).await.map_err(|e| ApiError::Internal(format!("cannot read {}: {e}", path.display())))?;
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok(download_body(format!("{}_{name}", file_stem(&info)), "text/csv; charset=utf-8", body))
}

/// A chart of the run as it stands (`surface`: the OOM surface; `frontier`: throughput vs
/// latency), as an SVG file.
pub async fn chart_svg(State(st): State<Arc<AppState>>, Path(id): Path<String>, chart: &'static str) -> Result<Response, ApiError> {
    let view = find(&st, &id).await?.view();
    let svg = if chart == "surface" { export::surface_svg(&view) } else { export::frontier_svg(&view) };
    Ok(download(format!("{}_{chart}.svg", file_stem(&view.info)), "image/svg+xml", svg.into_bytes()))
}

#[derive(Deserialize)]
pub struct ReportQuery {
    /// Run ids, comma-separated; none: the latest chat and batch run of each GPU.
    runs: Option<String>,
    /// $/hour by GPU label (or profile key), as a JSON object: `{"rtx-pod": 0.3}`.
    prices: Option<String>,
    /// A GPU profile's key: each measured run is also predicted on it (`sim::predict`) and
    /// compared as "PREDICTED <GPU>", marked simulated.
    predict: Option<String>,
}

/// $/hour by GPU label from a `prices` query value (a JSON object), each a number ≥ 0.
fn prices_of(text: Option<&str>) -> Result<std::collections::BTreeMap<String, f64>, ApiError> {
    let prices: std::collections::BTreeMap<String, f64> = match text.map(str::trim).filter(|p| !p.is_empty()) {
        None => Default::default(),
        Some(text) => serde_json::from_str(text).map_err(|e| ApiError::field("prices", format!("give $/hour by GPU label as a JSON object such as {{\"A100\": 1.49}}: {e}")))?,
    };
    if let Some((gpu, usd)) = prices.iter().find(|(_, v)| !v.is_finite() || **v < 0.0) {
        return Err(ApiError::field("prices", format!("the price of {gpu} must be a number of dollars per hour ≥ 0, not {usd}")));
    }
    Ok(prices)
}

/// The runs a report or comparison is about, read off the async runtime, and the prices given.
async fn report_input(st: &Arc<AppState>, q: &ReportQuery) -> Result<(Vec<RunView>, std::collections::BTreeMap<String, f64>), ApiError> {
    /// The notes compare two GPUs, a chat and a batch run each.
    const MOST: usize = 8;
    let prices = prices_of(q.prices.as_deref())?;
    let ids: Vec<String> = match q.runs.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
        Some(list) => {
            let mut ids: Vec<String> = Vec::new();
            for id in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if !ids.iter().any(|i| i == id) {
                    ids.push(id.to_string());
                }
            }
            if ids.len() > MOST {
                return Err(ApiError::field("runs", format!("at most {MOST} run ids (the notes compare two GPUs, a chat and a batch run each), not {}", ids.len())));
            }
            ids
        }
        None => {
            // Newest first: the first run of each (GPU, workload) is its latest; two GPUs.
            let mut seen = std::collections::BTreeSet::new();
            let mut gpus: Vec<String> = Vec::new();
            st.lab.registry.list().into_iter().filter(|i| i.status.is_terminal()).filter(|i| {
                if !gpus.contains(&i.spec.gpu) {
                    if gpus.len() == 2 {
                        return false;
                    }
                    gpus.push(i.spec.gpu.clone());
                }
                seen.insert((i.spec.gpu.clone(), i.spec.workload.as_str()))
            }).map(|i| i.id).collect()
        }
    };
    // Reading the runs' files is blocking work: off the runtime that times requests.
    let lab = st.clone();
    let views = tokio::task::spawn_blocking(move || ids.iter().map(|id| lab.lab.find(id).map(|r| r.view())).collect::<Result<Vec<_>, _>>())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let Some(key) = q.predict.as_deref().map(str::trim).filter(|k| !k.is_empty()) else { return Ok((views, prices)) };
    let mut with_predicted = views.clone();
    for v in &views {
        let p = crate::sim::predict::predict(v, key, None, crate::sim::calibrate::default_calibration()).map_err(|refused| match refused {
            crate::sim::predict::Refused::Run(why) | crate::sim::predict::Refused::Field(_, why) => ApiError::field("predict", format!("run {}: {why}", v.info.id)),
        })?;
        with_predicted.push(crate::sim::predict::as_run(v, &p));
    }
    Ok((with_predicted, prices))
}

/// The notes filled from runs (`crate::report`), as a markdown download.
pub async fn report(State(st): State<Arc<AppState>>, Query(q): Query<ReportQuery>) -> Result<Response, ApiError> {
    let (views, prices) = report_input(&st, &q).await?;
    let notes = crate::report::notes(&views, &prices);
    Ok(download("caplab_notes.md".into(), "text/markdown; charset=utf-8", notes.into_bytes()))
}

/// Runs side by side for the dashboard: the notes (markdown and HTML), the frontiers overlaid,
/// and each GPU's price.
pub async fn compare(State(st): State<Arc<AppState>>, Query(q): Query<ReportQuery>) -> Result<Json<caplab_shared::decide::Comparison>, ApiError> {
    let (views, prices) = report_input(&st, &q).await?;
    Ok(Json(crate::report::comparison(&views, &prices)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rename {
    name: String,
}

/// Gives a finished run a name (operator only; the name is the spec's `name`).
pub async fn rename_run(State(st): State<Arc<AppState>>, Path(id): Path<String>, body: Bytes) -> Result<Json<RunInfo>, ApiError> {
    let r: Rename = serde_json::from_slice(&body).map_err(|e| ApiError::BadJson(format!("give {{\"name\": \"...\"}}: {e}")))?;
    let name = r.name.trim();
    if name.chars().count() > 120 || name.chars().any(char::is_control) {
        return Err(ApiError::field("name", "a run's name is at most 120 characters, without control characters"));
    }
    let registry = st.clone();
    let (id2, name2) = (id.clone(), name.to_string());
    tokio::task::spawn_blocking(move || registry.lab.registry.rename(&id2, &name2))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map(Json)
        .map_err(ApiError::from)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputsUpload {
    /// The file's name, as the user's machine has it.
    name: String,
    /// Which workload the file is for: documents (batch) or prompts (chat).
    workload: caplab_shared::Workload,
    /// The file's text.
    text: String,
}

/// The user's own documents or prompts (operator): read, checked and kept by content hash; a
/// spec then names them by the id in the answer (`"inputs": {"id": …}`).
pub async fn upload_inputs(State(st): State<Arc<AppState>>, body: Bytes) -> Result<Json<caplab_shared::InputsRef>, ApiError> {
    let up: InputsUpload = serde_json::from_slice(&body).map_err(|e| ApiError::BadJson(format!("give {{\"name\": FILE NAME, \"workload\": \"chat\" or \"batch\", \"text\": FILE TEXT}}: {e}")))?;
    let engine = st.lab.engine.clone();
    tokio::task::spawn_blocking(move || {
        let parsed = crate::workload::sources::parse(&up.name, up.text.as_bytes(), up.workload).map_err(|e| ApiError::field("inputs", e.to_string()))?;
        engine.store.put(&up.name, up.workload, parsed).map_err(|e| ApiError::Internal(format!("could not keep {}: {e}", up.name)))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map(Json)
}

/// Lets viewers see a finished run, or no longer (operator only).
pub async fn share_run(State(st): State<Arc<AppState>>, Path(id): Path<String>, body: Bytes) -> Result<Json<RunInfo>, ApiError> {
    let r: ShareRequest = serde_json::from_slice(&body).map_err(|e| ApiError::BadJson(format!("give {{\"shared\": true}} or false: {e}")))?;
    let registry = st.clone();
    tokio::task::spawn_blocking(move || registry.lab.registry.set_shared(&id, r.shared))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map(Json)
        .map_err(ApiError::from)
}

/// A finished run's whole folder as one tar file, streamed (two archives are built at a time).
pub async fn archive(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    static BUILDING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
    let info = st.lab.registry.info(&id).ok_or_else(|| ApiError::NotFound(format!("no run with id {id:?}")))?;
    let _permit = BUILDING.acquire().await.map_err(|e| ApiError::Internal(e.to_string()))?;
    let registry = st.clone();
    let file = tokio::task::spawn_blocking(move || registry.lab.registry.archive(&id))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(ApiError::from)?;
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file)));
    Ok(download_body(format!("{}.tar", file_stem(&info)), "application/x-tar", body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportBody {
    /// The GPU the files were measured on (files other than caplab's do not say).
    #[serde(default)]
    gpu: Option<String>,
    /// The model they served, for files that do not name it (vllm bench serve writes `model_id`).
    #[serde(default)]
    model: Option<String>,
    /// chat or batch (files other than caplab's do not say).
    workload: caplab_shared::Workload,
    files: Vec<ImportFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportFile {
    name: String,
    /// The file's text (parsed here, so a file that is not JSON gets a message naming it).
    text: String,
}

/// Result files measured elsewhere (dropped on the page), kept as imported runs. Parsing up to
/// `--max-import-bytes` of JSON is done off the runtime that times requests.
pub async fn import(State(st): State<Arc<AppState>>, body: Bytes) -> Result<Json<Vec<RunInfo>>, ApiError> {
    let registry = st.clone();
    tokio::task::spawn_blocking(move || import_files(&registry, &body)).await.map_err(|e| ApiError::Internal(e.to_string()))?.map(Json)
}

fn import_files(st: &AppState, body: &[u8]) -> Result<Vec<RunInfo>, ApiError> {
    let b: ImportBody = serde_json::from_slice(body).map_err(|e| ApiError::BadJson(format!("give {{\"gpu\", \"workload\", \"files\": [{{\"name\", \"text\"}}]}}: {e}")))?;
    if b.files.is_empty() {
        return Err(ApiError::field("files", "no file was given"));
    }
    for (field, value) in [("gpu", &b.gpu), ("model", &b.model)] {
        if value.as_ref().is_some_and(|v| v.chars().count() > 200 || v.chars().any(char::is_control)) {
            return Err(ApiError::field(field, format!("a {} label is at most 200 characters, without control characters", if field == "gpu" { "GPU" } else { "model" })));
        }
    }
    let mut files = Vec::new();
    for f in &b.files {
        let value: serde_json::Value = serde_json::from_str(&f.text).map_err(|e| {
            let csv = f.name.ends_with(".csv").then_some(" (caplab's CSVs are for spreadsheets: import its results.json, which holds the same run whole)").unwrap_or("");
            ApiError::field("files", format!("{}: not a result file: not JSON ({e}){csv}", f.name))
        })?;
        files.push((f.name.clone(), value));
    }
    let views = crate::import::runs(&files, b.gpu.as_deref(), b.model.as_deref(), b.workload).map_err(|e| match e {
        crate::import::ImportError::Missing { field, message } => ApiError::field(field, message),
        crate::import::ImportError::File(message) => ApiError::field("files", message),
    })?;
    let kept = st.limits().runs_kept;
    if st.lab.registry.len() + views.len() > kept {
        return Err(ApiError::Conflict(format!("this caplab keeps at most {kept} runs (--runs-kept): delete some before importing {} more", views.len())));
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let mut infos: Vec<RunInfo> = Vec::new();
    for view in views {
        match st.lab.registry.add_imported(view, now) {
            Ok(info) => infos.push(info),
            Err(e) => {
                // All or nothing: a retry must not make duplicates.
                for done in &infos {
                    let _ = st.lab.registry.delete(&done.id);
                }
                return Err(ApiError::Internal(format!("could not save the imported runs: {e}")));
            }
        }
    }
    Ok(infos)
}

#[derive(Deserialize)]
pub struct PricesQuery {
    /// $/hour by GPU label (or profile key), as a JSON object: `{"rtx-pod": 0.3}`.
    prices: Option<String>,
}

/// A run's HTML report (`crate::report::run_html`): one self-contained file to send, its charts
/// inline, read from the run's files and drawn off the async runtime.
pub async fn run_report_html(State(st): State<Arc<AppState>>, Path(id): Path<String>, Query(q): Query<PricesQuery>) -> Result<Response, ApiError> {
    let prices = prices_of(q.prices.as_deref())?;
    let lab = st.clone();
    let (info, page) = tokio::task::spawn_blocking(move || {
        let run = lab.lab.find(&id)?;
        let view = run.view();
        let page = crate::report::run_html(&view, run.folder().as_deref(), &prices);
        Ok::<_, ApiError>((view.info, page))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(download(format!("{}_report.html", file_stem(&info)), "text/html; charset=utf-8", page.into_bytes()))
}

/// Runs compared as one HTML report (`crate::report::comparison_html`), the runs and prices
/// named as for `/api/compare`.
pub async fn compare_report_html(State(st): State<Arc<AppState>>, Query(q): Query<ReportQuery>) -> Result<Response, ApiError> {
    let (views, prices) = report_input(&st, &q).await?;
    let lab = st.clone();
    let page = tokio::task::spawn_blocking(move || {
        let runs: Vec<(RunView, Option<std::path::PathBuf>)> = views.into_iter().map(|v| {
            let folder = lab.lab.find(&v.info.id).ok().and_then(|r| r.folder());
            (v, folder)
        }).collect();
        crate::report::comparison_html(&runs, &prices)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(download("caplab_comparison_report.html".into(), "text/html; charset=utf-8", page.into_bytes()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictQuery {
    /// A GPU profile's key (`caplab sim --list`), e.g. "a100-80gb".
    gpu: String,
    /// A model profile's key; empty: the profile the run's model name names.
    #[serde(default)]
    model: String,
}

/// A finished run's grid predicted on another GPU by the calibrated simulator, with its frontier
/// drawn beside the measured one (`sim::predict`).
pub async fn predict(State(st): State<Arc<AppState>>, Path(id): Path<String>, Query(q): Query<PredictQuery>) -> Result<Json<caplab_shared::prediction::Prediction>, ApiError> {
    let view = find(&st, &id).await?.view();
    let cal = crate::sim::calibrate::default_calibration();
    let answer = tokio::task::spawn_blocking(move || crate::sim::predict::predict(&view, &q.gpu, Some(q.model.as_str()), cal))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    answer.map(Json).map_err(|refused| match refused {
        crate::sim::predict::Refused::Run(why) => ApiError::Conflict(why),
        crate::sim::predict::Refused::Field(field, why) => ApiError::field(field, &why),
    })
}

pub async fn no_such_api() -> ApiError {
    ApiError::NotFound("no such API endpoint".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(body: &str) -> String {
        match parse_spec(body.as_bytes()) {
            Err(ApiError::Invalid(f)) => f[0].field.clone(),
            Err(ApiError::BadJson(_)) => "<json>".into(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn download_names_say_simulated_once() {
        let info = |gpu: &str, simulated: bool| RunInfo {
            id: "20261129-101010-abcd".into(),
            spec: ExperimentSpec { gpu: gpu.into(), ..Default::default() },
            target: caplab_shared::TargetInfo { simulated, ..Default::default() },
            status: caplab_shared::RunStatus::Finished,
            started_unix_ms: 0,
            message: None,
            cells_total: 1,
            requests_total: 1,
            headline: None,
            imported_from: None,
            shared: false,
        };
        assert_eq!(file_stem(&info("RTX 2000 (simulated)", true)), "caplab_batch_closed_RTX_2000_simulated_20261129-101010-abcd");
        assert_eq!(file_stem(&info("simulated", true)), "caplab_batch_closed_simulated_20261129-101010-abcd");
        assert_eq!(file_stem(&info("H100 (Simulated)", true)), "caplab_batch_closed_H100_simulated_20261129-101010-abcd");
        assert_eq!(file_stem(&info("A100 simulated", false)), "caplab_batch_closed_A100_simulated_20261129-101010-abcd", "a real run keeps its label");
        assert_eq!(file_stem(&info("H200, 141GB", false)), "caplab_batch_closed_H200_141GB_20261129-101010-abcd");
        assert_eq!(file_stem(&info("", false)), "caplab_batch_closed_20261129-101010-abcd");
    }

    #[test]
    fn parse_errors_name_the_field() {
        assert_eq!(field_of(r#"{"workload":"video"}"#), "workload");
        assert_eq!(field_of(r#"{"workload":"chat","concurrency":[8,-1]}"#), "concurrency");
        assert_eq!(field_of(r#"{"workload":"chat","max_new_tokens":"lots"}"#), "max_new_tokens");
        assert_eq!(field_of(r#"{"workload":"chat","slo":{"e2e_ms":"x"}}"#), "slo.e2e_ms");
        assert_eq!(field_of(r#"{"workload":"batch","bogus":1}"#), "bogus");
        assert_eq!(field_of("[]"), "spec");
        assert_eq!(field_of("{}"), "workload");
        assert_eq!(field_of(r#"{"concurrency": [8"#), "<json>");
        assert!(parse_spec(br#"{"workload":"chat","concurrency":[4]}"#).is_ok());
    }
}
