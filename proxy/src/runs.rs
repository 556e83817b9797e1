//! Runs: each run's live view, samples and fan-out, the registry of all runs, and
//! their files on disk (`<data-dir>/<id>/run.json`, `requests.csv`, `summary.csv`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use caplab_shared::{RequestSample, RunInfo, RunStatus, RunView, ServerMsg};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::export;

/// Messages a slow viewer may fall behind by before it is resent a snapshot.
const FANOUT_CAPACITY: usize = 1024;

/// One run: its view (changed only through `publish`), its samples, and its stop switch.
pub struct Run {
    pub id: String,
    view: Mutex<RunView>,
    tx: broadcast::Sender<ServerMsg>,
    samples: Mutex<Vec<RequestSample>>,
    /// Where completed requests are appended as they come in (None: not saved).
    journal: Mutex<Option<Journal>>,
    /// Its final files are written (or it was loaded from them): it may be deleted.
    settled: std::sync::atomic::AtomicBool,
    pub cancel: CancellationToken,
}

/// A running run's `requests.csv`, appended to on every aggregator tick, so a `kill -9` loses at
/// most the requests still in flight. `run.json` beside it says the run was running; a restart
/// then finds it `interrupted` and rebuilds its cells from these rows.
struct Journal {
    file: std::fs::File,
    info: RunInfo,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Run {
    /// A run that stops when `parent` (the process's shutdown) is cancelled, or on its own stop.
    pub fn new(info: RunInfo, samples: Vec<RequestSample>, parent: &CancellationToken) -> Arc<Run> {
        let (tx, _) = broadcast::channel(FANOUT_CAPACITY);
        Arc::new(Run {
            id: info.id.clone(),
            view: Mutex::new(RunView::new(info)),
            tx,
            samples: Mutex::new(samples),
            journal: Mutex::new(None),
            settled: std::sync::atomic::AtomicBool::new(false),
            cancel: parent.child_token(),
        })
    }

    fn from_view(view: RunView, samples: Vec<RequestSample>) -> Arc<Run> {
        let run = Run::new(view.info.clone(), samples, &CancellationToken::new());
        *lock(&run.view) = view;
        run.settle();
        run
    }

    /// Marks the run's files as final: nothing will write them again.
    pub fn settle(&self) {
        self.settled.store(true, Ordering::Release);
    }

    pub fn is_settled(&self) -> bool {
        self.settled.load(Ordering::Acquire)
    }

    /// Applies `msg` to the view and sends it to every viewer, atomically with `subscribe`.
    pub fn publish(&self, msg: ServerMsg) {
        let mut view = lock(&self.view);
        view.apply(&msg);
        let _ = self.tx.send(msg);
    }

    /// The current view and a receiver of every message after it (no gap, no duplicate).
    pub fn subscribe(&self) -> (RunView, broadcast::Receiver<ServerMsg>) {
        let view = lock(&self.view);
        (view.clone(), self.tx.subscribe())
    }

    pub fn view(&self) -> RunView {
        lock(&self.view).clone()
    }

    pub fn info(&self) -> RunInfo {
        lock(&self.view).info.clone()
    }

    /// Keeps a batch of completed requests: appended to the journal first (when the run has
    /// one), then to memory. A journal that cannot be written is reported once and dropped; the
    /// run goes on and is still saved whole at its end.
    pub fn append_samples(&self, batch: &mut Vec<RequestSample>) {
        if batch.is_empty() {
            return;
        }
        let mut journal = lock(&self.journal);
        if let Some(j) = journal.as_mut() {
            if let Err(e) = export::append_requests(&mut j.file, &j.info, batch) {
                tracing::error!("run {}: cannot append to its journal ({e}); completed requests are kept in memory only", self.id);
                *journal = None;
            }
        }
        drop(journal);
        lock(&self.samples).append(batch);
    }

    pub fn sample_count(&self) -> usize {
        lock(&self.samples).len()
    }

    pub fn with_samples<R>(&self, f: impl FnOnce(&[RequestSample]) -> R) -> R {
        f(&lock(&self.samples))
    }

    pub fn with_samples_mut<R>(&self, f: impl FnOnce(&mut [RequestSample]) -> R) -> R {
        f(&mut lock(&self.samples))
    }
}

/// All runs of this process, plus those found on disk at start.
pub struct Registry {
    runs: RwLock<BTreeMap<String, Arc<Run>>>,
    dir: Option<PathBuf>,
    seq: AtomicU64,
}

impl Registry {
    /// A registry persisting under `dir` (None: memory only). Loads the runs already there;
    /// returns the names of run folders it could not read, so the caller can say so.
    pub fn open(dir: Option<PathBuf>) -> (Registry, Vec<String>) {
        let mut runs = BTreeMap::new();
        let mut unreadable = Vec::new();
        if let Some(dir) = &dir {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for entry in entries.flatten() {
                    match load_run(&entry.path()) {
                        Ok(run) => {
                            runs.insert(run.id.clone(), run);
                        }
                        Err(e) => unreadable.push(format!("{}: {e}", entry.path().display())),
                    }
                }
            }
        }
        (Registry { runs: RwLock::new(runs), dir, seq: AtomicU64::new(0) }, unreadable)
    }

    /// A registry that saves under `dir` without loading what is already there (`caplab run`).
    pub fn writing_to(dir: PathBuf) -> Registry {
        Registry { runs: RwLock::new(BTreeMap::new()), dir: Some(dir), seq: AtomicU64::new(0) }
    }

    /// A new id, sortable by creation time and unique even across processes sharing the data
    /// folder: `YYYYMMDD-HHMMSS-xxxx` (random hex), never one in use here or on disk.
    pub fn next_id(&self, unix_ms: u64) -> String {
        let stamp = utc_stamp(unix_ms / 1000);
        loop {
            let salt = rand::random::<u16>() ^ (self.seq.fetch_add(1, Ordering::Relaxed) as u16);
            let id = format!("{stamp}-{salt:04x}");
            let on_disk = self.dir.as_ref().is_some_and(|d| d.join(&id).exists());
            if !on_disk && self.get(&id).is_none() {
                if let Some(d) = &self.dir {
                    // Claim the folder now so a concurrent process picks another id. Other
                    // failures (say, a read-only folder) surface when the run is saved.
                    let _ = std::fs::create_dir_all(d);
                    if std::fs::create_dir(d.join(&id)).is_err_and(|e| e.kind() == std::io::ErrorKind::AlreadyExists) {
                        continue;
                    }
                }
                return id;
            }
        }
    }

    /// Adds a new run; returns how many runs are ahead of it on the same target (running or
    /// queued), counted under the same lock that adds it.
    pub fn insert_counting_ahead(&self, run: Arc<Run>) -> usize {
        let mut runs = self.runs.write().unwrap_or_else(|p| p.into_inner());
        let url = run.info().target.url;
        let ahead = runs.values().map(|r| r.info()).filter(|i| !i.status.is_terminal() && i.target.url == url).count();
        runs.insert(run.id.clone(), run);
        ahead
    }

    pub fn get(&self, id: &str) -> Option<Arc<Run>> {
        self.runs.read().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// Every run, newest first.
    pub fn list(&self) -> Vec<RunInfo> {
        let runs = self.runs.read().unwrap_or_else(|p| p.into_inner());
        let mut infos: Vec<RunInfo> = runs.values().map(|r| r.info()).collect();
        infos.sort_by(|a, b| b.started_unix_ms.cmp(&a.started_unix_ms).then(b.id.cmp(&a.id)));
        infos
    }

    /// Starts a run's files: `run.json` (status running) and a `requests.csv` with its header,
    /// to which every completed request is then appended (`Run::append_samples`).
    pub fn begin(&self, run: &Run) -> std::io::Result<()> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let path = dir.join(&run.id);
        std::fs::create_dir_all(&path)?;
        let view = run.view();
        write_atomic(&path.join("run.json"), &serde_json::to_vec_pretty(&view)?)?;
        write_atomic(&path.join("requests.csv"), &export::requests_csv(&view.info, &[])?)?;
        let file = std::fs::OpenOptions::new().append(true).open(path.join("requests.csv"))?;
        *lock(&run.journal) = Some(Journal { file, info: view.info });
        Ok(())
    }

    /// Forgets a run and removes its folder (the id is one this registry holds, never a path).
    pub fn delete(&self, id: &str) -> std::io::Result<()> {
        let removed = self.runs.write().unwrap_or_else(|p| p.into_inner()).remove(id);
        match (&self.dir, removed) {
            (Some(dir), Some(_)) => match std::fs::remove_dir_all(dir.join(id)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// Writes a finished run's files. Errors are returned, never fatal: the run stays in memory.
    pub fn persist(&self, run: &Run) -> std::io::Result<Option<PathBuf>> {
        let Some(dir) = &self.dir else { return Ok(None) };
        let path = dir.join(&run.id);
        std::fs::create_dir_all(&path)?;
        let view = run.view();
        let requests = run.with_samples(|s| export::requests_csv(&view.info, s));
        write_atomic(&path.join("requests.csv"), &requests?)?;
        write_atomic(&path.join("summary.csv"), &export::summary_csv(&view.info, &view.cells)?)?;
        write_atomic(&path.join("run.json"), &serde_json::to_vec_pretty(&view)?)?;
        Ok(Some(path))
    }
}

/// Replaces a file whole or not at all: written beside it, flushed to disk, renamed over it.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(tmp, path)
}

fn load_run(path: &Path) -> anyhow::Result<Arc<Run>> {
    let mut view: RunView = serde_json::from_slice(&std::fs::read(path.join("run.json"))?)?;
    let samples = export::read_requests_csv(&std::fs::read(path.join("requests.csv"))?)?;
    if !view.info.status.is_terminal() {
        // caplab died mid-run (or before a queued run began): what its journal holds is what it measured.
        view.info.status = RunStatus::Interrupted;
        view.cells = recompute_cells(&view.info.spec, &samples);
        view.info.message = Some(format!(
            "caplab stopped (killed or crashed) while this run was in progress: the {} requests that completed before are kept, and its cells are recomputed from them",
            samples.len()
        ));
    }
    Ok(Run::from_view(view, samples))
}

/// The cells of an interrupted run, from its journalled requests (cells with none are left out).
fn recompute_cells(spec: &caplab_shared::ExperimentSpec, samples: &[RequestSample]) -> Vec<caplab_shared::CellResult> {
    let documents = crate::workload::Inputs::default().documents.len();
    let slo = spec.slo.effective(spec.workload);
    spec.cells()
        .iter()
        .filter_map(|cell| {
            let of_cell: Vec<RequestSample> = samples.iter().filter(|s| s.cell == cell.index).cloned().collect();
            (!of_cell.is_empty()).then(|| caplab_shared::CellResult::compute(cell, &of_cell, &slo, spec.cell_requests(cell, documents)))
        })
        .collect()
}

/// `YYYYMMDD-HHMMSS` in UTC for a Unix time (days-from-civil inverse, Howard Hinnant's algorithm).
pub fn utc_stamp(unix_s: u64) -> String {
    let days = (unix_s / 86_400) as i64;
    let secs = unix_s % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc_calendar_times() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(1_795_894_517), "20261128-193517");
        assert_eq!(utc_stamp(951_782_400), "20000229-000000");
    }
}
