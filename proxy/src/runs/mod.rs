//! Runs: each run's live view and fan-out (here), and the registry of all runs (`registry`).
//! Their files on disk are the store's (`crate::store`): a run holds its journal, nothing more.
//!
//! Memory stays bounded however many runs there are and however long they last: a running
//! run holds its view (ticks thinned, see `caplab_shared::MAX_TICKS`) and streams every completed
//! request to its `requests.csv`; a finished run is only its `RunInfo` in the index, read back
//! from disk when someone asks for it. The engine keeps one cell's requests in memory while
//! that cell runs (its exact percentiles need them), bounded by `--max-requests-per-run`.

mod registry;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use caplab_shared::{RequestSample, RunInfo, RunView, ServerMsg};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::store::Journal;
pub use registry::{utc_stamp, FilesError, Registry};

/// Messages a slow viewer may fall behind by before it is resent a snapshot.
const FANOUT_CAPACITY: usize = 1024;

/// One run: its view (changed only through `publish`), its journal, and its stop switch.
pub struct Run {
    pub id: String,
    view: Mutex<RunView>,
    tx: broadcast::Sender<ServerMsg>,
    /// Its `requests.csv` (the store's).
    journal: Mutex<Journal>,
    /// Its final files are written (or it was read from them): it may be deleted.
    settled: AtomicBool,
    /// Wakes whoever waits for `settled` (`wait_settled`).
    settled_now: tokio::sync::Notify,
    pub cancel: CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Run {
    /// A run that stops when `parent` (the process's shutdown) is cancelled, or on its own stop.
    pub fn new(info: RunInfo, parent: &CancellationToken) -> Arc<Run> {
        Self::with_fanout(info, parent, FANOUT_CAPACITY)
    }

    /// A run whose viewers may fall `capacity` messages behind (its channel holds that many
    /// from the start: about 150 KB at 1,024).
    fn with_fanout(info: RunInfo, parent: &CancellationToken, capacity: usize) -> Arc<Run> {
        let (tx, _) = broadcast::channel(capacity);
        Arc::new(Run {
            id: info.id.clone(),
            view: Mutex::new(RunView::new(info)),
            tx,
            journal: Mutex::default(),
            settled: AtomicBool::new(false),
            settled_now: tokio::sync::Notify::new(),
            cancel: parent.child_token(),
        })
    }

    /// A finished run as read back from its folder: it publishes nothing, so its channel is one
    /// message long.
    fn saved(view: RunView, requests_csv: PathBuf) -> Arc<Run> {
        let run = Run::with_fanout(view.info.clone(), &CancellationToken::new(), 1);
        *lock(&run.view) = view;
        *lock(&run.journal) = Journal::finished(requests_csv);
        run.settle();
        run
    }

    /// Marks the run's files as final: nothing will write them again.
    pub fn settle(&self) {
        self.settled.store(true, Ordering::Release);
        self.settled_now.notify_waiters();
    }

    pub fn is_settled(&self) -> bool {
        self.settled.load(Ordering::Acquire)
    }

    /// Waits until the run's files are final, at most `limit`; whether they are.
    pub async fn wait_settled(&self, limit: std::time::Duration) -> bool {
        let woken = self.settled_now.notified();
        tokio::pin!(woken);
        // Registered before the check: a settle between the two still wakes it.
        woken.as_mut().enable();
        if self.is_settled() {
            return true;
        }
        let _ = tokio::time::timeout(limit, woken).await;
        self.is_settled()
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

    /// The run's folder on disk, once its files are begun.
    pub fn folder(&self) -> Option<PathBuf> {
        lock(&self.journal).folder()
    }

    /// Keeps a batch of completed requests: appended to the journal. A journal that cannot be
    /// written (a full disk) stops the run: what it measured could no longer be kept. The file
    /// is cut back to its last whole row, the batch (and any later one) kept in memory, and
    /// the cause kept for the run's final status (`disk_fault`).
    pub fn record(&self, batch: &[RequestSample]) {
        if batch.is_empty() {
            return;
        }
        let info = self.info();
        if let Err(why) = lock(&self.journal).record(&info, batch) {
            tracing::error!("run {}: {why}: the run is stopped; its requests are kept in memory", self.id);
            self.cancel.cancel();
        }
    }

    /// Why this run's requests could not all be kept on disk, with the counts, if they could not.
    pub fn disk_fault(&self) -> Option<String> {
        lock(&self.journal).fault()
    }

    /// Requests held in memory because the disk would not take them.
    pub fn unwritten(&self) -> usize {
        lock(&self.journal).unwritten()
    }

    /// `requests.csv` as it stands: the bytes on disk (up to the last whole batch written; the
    /// caller reads them from `path`) and the rows of any requests only in memory.
    pub fn requests_csv(&self) -> std::io::Result<(Option<(PathBuf, u64)>, Vec<u8>)> {
        let info = self.info();
        lock(&self.journal).requests_csv(&info)
    }

    /// A telemetry series in the run's folder (`store::files::series`); None before its files
    /// are begun or when it cannot be opened.
    pub fn series(&self, name: &str, header: &str) -> Option<std::fs::File> {
        crate::store::files::series(&self.folder()?, name, header).ok()
    }
}
