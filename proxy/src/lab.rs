//! One home for a run's life, shared by `caplab serve` and `caplab run`: admission (validate →
//! the open-file limit and the operator's limits → probe the target → prepare the spec), the
//! queue (one run per target at a time), journalling and saving, finding a run, and shutdown.
//! The HTTP edge (`server`) and the terminal (`headless`) only read input and show results.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use caplab_shared::{ExperimentSpec, FieldError, InputsRef, LoadMode, RunInfo, RunStatus, ServerMsg, TargetInfo};
use reqwest::header::HeaderValue;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::engine::{prepare, Engine};
use crate::limits::Limits;
use crate::runs::{Registry, Run};
use crate::target::probe;
use crate::targets::{Target, Targets};

/// Why a run was not admitted.
#[derive(Debug)]
pub enum Refusal {
    /// Fields that are wrong, each with its reason.
    Invalid(Vec<FieldError>),
    /// The spec is fine but this caplab cannot take it now (e.g. `--runs-kept`).
    Conflict(String),
}

/// Everything runs share.
pub struct Lab {
    pub registry: Arc<Registry>,
    pub engine: Engine,
    /// The servers this caplab may load (the first is the default).
    pub targets: Targets,
    /// The operator's limits on runs started over HTTP; None for `caplab run` (the operator's own).
    pub limits: Option<Limits>,
    /// Cancelled when the process is asked to stop: runs stop, sockets close.
    pub shutdown: CancellationToken,
    /// Every run's task (and every viewer's), so shutdown waits until each has saved its files.
    pub tasks: TaskTracker,
    /// One gate per target URL: runs on one target take turns, first come first served.
    gates: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Lab {
    pub fn new(registry: Registry, engine: Engine, targets: Targets, limits: Option<Limits>) -> Lab {
        Lab {
            registry: Arc::new(registry),
            engine,
            targets,
            limits,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            gates: Mutex::default(),
        }
    }

    /// The run with this id (a finished one is read back from its files: blocking work).
    pub fn find(&self, id: &str) -> Result<Arc<Run>, crate::runs::FilesError> {
        self.registry.find(id)
    }

    /// Admits `spec` against `target`: checks it whole (every problem at once), probes the
    /// target, prepares the spec, and registers the run (`queued` when its target is busy).
    pub async fn admit(&self, mut spec: ExperimentSpec, target: &Target) -> Result<Arc<Run>, Refusal> {
        // The inputs first: what they are (a trace, say) decides what the rest must be.
        let mut errors = self.resolve_inputs(&mut spec);
        errors.extend(spec.validate());
        errors.extend(crate::fd_limit::check(&spec, crate::fd_limit::raise(), crate::fd_limit::reserved(), target.in_process));
        errors.extend(caplab_shared::search::probe_error(&spec, self.engine.inputs_for(&spec).documents.len()));
        if let Some(limits) = &self.limits {
            // An open loop without a cap is held to this caplab's limit on requests in flight.
            if spec.mode == LoadMode::Rate && spec.max_in_flight == 0 {
                spec.max_in_flight = limits.max_concurrency;
            }
            if errors.is_empty() {
                errors.extend(limits.check(&spec, self.engine.total_requests(&spec)));
            }
        }
        if !errors.is_empty() {
            return Err(Refusal::Invalid(errors));
        }
        if let Some(room) = self.short_of_room() {
            return Err(Refusal::Conflict(room));
        }
        if let Some(limits) = &self.limits {
            let kept = self.registry.len();
            if kept >= limits.runs_kept {
                return Err(Refusal::Conflict(format!(
                    "this caplab keeps at most {} runs (--runs-kept) and has {kept}: delete some first (DELETE /api/runs/ID)",
                    limits.runs_kept
                )));
            }
        }
        let mut info = probe(&self.engine.client, &target.url, target.auth.as_ref())
            .await
            .map_err(|e| Refusal::Invalid(vec![FieldError::new("target", e.to_string())]))?;
        info.name = target.name.clone();
        let spec = prepare(spec, &info).map_err(Refusal::Invalid)?;
        let counter = crate::engine::tokens::TargetCounter::for_target(&self.engine, &info, target.auth.clone(), &spec.model);
        if let Some(e) = crate::workload::context::too_long(&spec, &self.engine.inputs_for(&spec), &info, &counter).await {
            return Err(Refusal::Invalid(vec![e]));
        }
        let run = Run::new(self.new_run_info(spec, info), &self.shutdown);
        // Two runs loading one server at once would each measure the other's load: a run for a
        // busy target waits its turn, visibly, and can be taken out of the queue with Stop.
        let ahead = self.registry.insert_counting_ahead(run.clone());
        if ahead > 0 {
            let plural = if ahead == 1 { "" } else { "s" };
            let message = format!("queued: {ahead} run{plural} ahead on {} (Stop takes it out of the queue)", target.name);
            run.publish(ServerMsg::Status { status: RunStatus::Queued, message: Some(message) });
        }
        Ok(run)
    }

    /// Fills in the user's inputs the spec names (by id) from this caplab's store, or says why
    /// they cannot be used: unknown here, or meant for the other workload.
    fn resolve_inputs(&self, spec: &mut ExperimentSpec) -> Vec<FieldError> {
        let Some(given) = spec.inputs.take() else { return vec![] };
        let Some((kept, _)) = self.engine.store.get(&given.id) else {
            return vec![FieldError::new("inputs", format!("no inputs with id {:?} on this caplab: upload the file first (POST /api/inputs, or the form's file field)", given.id))];
        };
        if let Some(w) = kept.workload.filter(|w| *w != spec.workload) {
            return vec![FieldError::new("inputs", format!("{} holds {} inputs ({}); this is a {} run", kept.name, w.as_str(), kept.format, spec.workload.as_str()))];
        }
        if spec.recorded_output_lengths && self.engine.store.get(&given.id).is_none_or(|(_, inputs)| inputs.answers.iter().all(String::is_empty)) {
            return vec![FieldError::new("recorded_output_lengths", format!("{} ({}) holds no recorded answers to take output lengths from: give a ShareGPT file with gpt turns", kept.name, kept.format))];
        }
        spec.inputs = Some(InputsRef { file: given.file, ..kept });
        vec![]
    }

    /// A new run's identity: its id, and the requests it will send (the one place they are counted).
    fn new_run_info(&self, spec: ExperimentSpec, target: TargetInfo) -> RunInfo {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        RunInfo {
            id: self.registry.next_id(now_ms),
            cells_total: spec.cells().len() as u32,
            requests_total: self.engine.total_requests(&spec),
            headline: None,
            imported_from: None,
            shared: false,
            spec,
            target,
            status: RunStatus::Running,
            started_unix_ms: now_ms,
            message: None,
        }
    }

    /// The gate of one target: a single permit, handed out in the order runs asked for it.
    fn gate(&self, url: &str) -> Arc<Semaphore> {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        gates.entry(url.to_string()).or_insert_with(|| Arc::new(Semaphore::new(1))).clone()
    }

    /// Runs an admitted run in the background once its target is free (until then it is
    /// `queued`, and a stop takes it out of the queue), journalling every completed request;
    /// then saves it. `auth`: the target's credentials, sent and never stored.
    pub fn launch(&self, run: Arc<Run>, auth: Option<HeaderValue>) {
        if let Err(e) = self.registry.begin(&run) {
            tracing::error!("run {}: cannot start its files ({e}); it is saved only when it ends", run.id);
        }
        let (engine, registry) = (self.engine.clone(), self.registry.clone());
        let deadline = self.limits.as_ref().map(|l| Duration::from_secs_f64(l.max_run_duration_s));
        let gate = self.gate(&run.info().target.url);
        self.tasks.spawn(async move {
            let turn = tokio::select! {
                permit = gate.acquire_owned() => permit.ok(),
                _ = run.cancel.cancelled() => None,
            };
            match turn {
                Some(_permit) => {
                    if run.info().status == RunStatus::Queued {
                        run.publish(ServerMsg::Status { status: RunStatus::Running, message: None });
                    }
                    engine.run(run.clone(), auth, deadline).await;
                }
                None => {
                    let message = Some("taken out of the queue before it began: nothing was sent".to_string());
                    run.publish(ServerMsg::Status { status: RunStatus::Stopped, message });
                }
            }
            // A run whose requests the disk would not take was stopped by it: it failed, and says why.
            if let Some(fault) = run.disk_fault() {
                let message = format!("stopped: its requests could no longer be saved ({fault})");
                run.publish(ServerMsg::Status { status: RunStatus::Failed, message: Some(message) });
            }
            save_or_say_why(&registry, &run);
        });
    }

    /// Stops every run, closes every socket, and waits (up to `limit`) for runs to be saved.
    /// A run whose files could not be written is tried once more; what still cannot be written
    /// is named, with its count, before caplab exits.
    pub async fn shut_down(&self, limit: Duration) {
        self.shutdown.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(limit, self.tasks.wait()).await;
        for run in self.registry.ended_unsaved() {
            let held = run.unwritten();
            match self.registry.save(&run) {
                Ok(path) => tracing::info!("run {} saved in {} as caplab stops", run.id, path.display()),
                Err(e) => tracing::error!(
                    "run {} could not be saved as caplab stops ({}): its {held} requests held in memory are lost; the rest are in its folder, and the next start lists it",
                    run.id,
                    crate::store::disk_words(&e)
                ),
            }
        }
    }

    /// Why no run can start now for lack of room in the data folder (`--min-free-mb`), if so.
    pub fn short_of_room(&self) -> Option<String> {
        let floor = self.limits.as_ref()?.min_free_mb;
        if floor == 0 {
            return None;
        }
        let free = free_mb(self.registry.dir())?;
        (free < floor).then(|| {
            format!(
                "the data folder ({}) has {free} MB free, below this caplab's floor of {floor} MB (--min-free-mb): a run could not keep what it measures; free some space first",
                self.registry.dir().display()
            )
        })
    }
}

/// Saves an ended run's files; when they cannot be written, the run says so (status `failed`,
/// the cause and the counts) and stays in memory, to be tried again when caplab stops.
fn save_or_say_why(registry: &Registry, run: &Arc<Run>) {
    match registry.save(run) {
        Ok(path) => tracing::info!("run {} saved in {}", run.id, path.display()),
        Err(e) => {
            let cause = crate::store::disk_words(&e);
            tracing::error!("could not save run {} ({cause}): it stays in memory and is tried again when caplab stops", run.id);
            let before = run.info().message.map(|m| format!("{m}; ")).unwrap_or_default();
            let message = format!(
                "{before}not saved: its files could not be written ({cause}); {} requests are held in memory and written when caplab stops, if there is room by then",
                run.unwritten()
            );
            run.publish(ServerMsg::Status { status: RunStatus::Failed, message: Some(message) });
        }
    }
}

/// Megabytes free for an unprivileged writer on the filesystem holding `dir`.
fn free_mb(dir: &std::path::Path) -> Option<u64> {
    let dir = if dir.exists() { dir } else { dir.parent().filter(|p| p.exists()).unwrap_or(std::path::Path::new(".")) };
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize) / (1024 * 1024))
}
