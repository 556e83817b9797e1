//! Runs: each run's live view and fan-out, the registry of all runs, and their files on disk
//! (`<data-dir>/<id>/info.json`, `run.json`, `requests.csv`, `summary.csv`).
//!
//! Memory stays bounded however many runs there are and however long they last: a running
//! run holds its view (ticks thinned, see `caplab_shared::MAX_TICKS`) and streams every completed
//! request to its `requests.csv`; a finished run is only its `RunInfo` in the index, read back
//! from disk when someone asks for it. The engine keeps one cell's requests in memory while
//! that cell runs (its exact percentiles need them), bounded by `--max-requests-per-run`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};

use caplab_shared::decide::Headline;
use caplab_shared::{RequestSample, RunInfo, RunStatus, RunView, ServerMsg};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::export;

/// Messages a slow viewer may fall behind by before it is resent a snapshot.
const FANOUT_CAPACITY: usize = 1024;

/// One run: its view (changed only through `publish`), where its requests are kept, and its
/// stop switch.
pub struct Run {
    pub id: String,
    view: Mutex<RunView>,
    tx: broadcast::Sender<ServerMsg>,
    requests: Mutex<Requests>,
    /// Its final files are written (or it was read from them): it may be deleted.
    settled: AtomicBool,
    /// Wakes whoever waits for `settled` (`wait_settled`).
    settled_now: tokio::sync::Notify,
    pub cancel: CancellationToken,
}

/// Where a run's completed requests are: its `requests.csv` (the journal, appended to on every
/// aggregator tick, so a `kill -9` loses at most the requests still in flight; `run.json`
/// beside it says the run was running, and a restart finds it `interrupted` and rebuilds its
/// cells from these rows), and, only when that file cannot be written, memory.
///
/// The file only ever holds whole rows: an append that fails (a full disk) is cut back to the
/// last whole row, and the batch is kept in memory, so no row is on disk twice or torn, and a
/// download (the file's whole rows, then the rows in memory) never repeats one.
#[derive(Default)]
struct Requests {
    path: Option<PathBuf>,
    /// Open for appending while the run goes on.
    journal: Option<std::fs::File>,
    /// Bytes of the file that are whole rows (its header included).
    whole: u64,
    /// Requests whose rows are in the file.
    rows: u64,
    /// Requests that could not be written to the file (kept until they are).
    unwritten: Vec<RequestSample>,
    /// Why the file could not be written, once it could not.
    fault: Option<String>,
}

/// Appends `batch`'s rows to `file`, whose whole rows end at `whole`, in one write: either all
/// of them are there after, or the file is cut back to `whole` and the error returned.
fn append_whole(file: &mut std::fs::File, whole: &mut u64, info: &RunInfo, batch: &[RequestSample]) -> std::io::Result<()> {
    use std::io::Write;
    let bytes = export::request_rows(info, batch)?;
    match file.write_all(&bytes).and_then(|()| file.flush()) {
        Ok(()) => {
            *whole += bytes.len() as u64;
            Ok(())
        }
        Err(e) => {
            let _ = file.set_len(*whole);
            Err(e)
        }
    }
}

/// A file error in words that name the cause: a full disk says so.
pub fn disk_words(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(28) => format!("the disk is full ({e})"),
        Some(122) => format!("the disk quota is used up ({e})"),
        _ => e.to_string(),
    }
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
            requests: Mutex::default(),
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
        lock(&run.requests).path = Some(requests_csv);
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
        lock(&self.requests).path.as_ref().and_then(|p| p.parent()).map(Path::to_path_buf)
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
        let mut guard = lock(&self.requests);
        let requests = &mut *guard;
        if let Some(file) = requests.journal.as_mut() {
            match append_whole(file, &mut requests.whole, &info, batch) {
                Ok(()) => {
                    requests.rows += batch.len() as u64;
                    return;
                }
                Err(e) => {
                    let cause = disk_words(&e);
                    tracing::error!("run {}: cannot append to {} ({cause}): the run is stopped; its requests are kept in memory", self.id, requests.path.as_deref().unwrap_or(Path::new("its journal")).display());
                    requests.fault.get_or_insert(cause);
                    requests.journal = None;
                    self.cancel.cancel();
                }
            }
        }
        requests.unwritten.extend(batch.iter().map(|s| RequestSample { itl_gaps_ms: Vec::new(), ..s.clone() }));
    }

    /// Why this run's requests could not all be kept on disk, with the counts, if they could not.
    pub fn disk_fault(&self) -> Option<String> {
        let requests = lock(&self.requests);
        let cause = requests.fault.as_ref()?;
        Some(format!("{cause}: {} of the run's requests are on disk, {} more held in memory", requests.rows, requests.unwritten.len()))
    }

    /// Requests held in memory because the disk would not take them.
    pub fn unwritten(&self) -> usize {
        lock(&self.requests).unwritten.len()
    }

    /// `requests.csv` as it stands: the bytes on disk (up to the last whole batch written; the
    /// caller reads them from `path`) and the rows of any requests only in memory.
    pub fn requests_csv(&self) -> std::io::Result<(Option<(PathBuf, u64)>, Vec<u8>)> {
        let requests = lock(&self.requests);
        let on_disk = match &requests.path {
            // While the run writes its journal, only its whole rows (an append in progress or
            // cut back is not served); once settled, the file as it is.
            Some(p) if requests.whole > 0 => Some((p.clone(), requests.whole)),
            Some(p) => match std::fs::metadata(p) {
                Ok(m) => Some((p.clone(), m.len())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        let info = self.info();
        let tail = match on_disk {
            Some(_) => export::request_rows(&info, &requests.unwritten)?,
            None => export::requests_csv(&info, &requests.unwritten)?,
        };
        Ok((on_disk, tail))
    }
}

/// Why an ended run's files could not be read or changed as asked.
#[derive(Debug)]
pub enum FilesError {
    /// No run has this id.
    NoRun(String),
    /// The run is still going on (or its files are being written).
    Live(String),
    /// Its files could not be read or written.
    Io(String),
}

impl std::fmt::Display for FilesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FilesError::NoRun(m) | FilesError::Live(m) | FilesError::Io(m) => f.write_str(m),
        }
    }
}

/// A run the registry knows: one going on in this process, or one whose files are final.
enum Entry {
    Live(Arc<Run>),
    Saved(RunInfo),
}

impl Entry {
    fn info(&self) -> RunInfo {
        match self {
            Entry::Live(run) => run.info(),
            Entry::Saved(info) => info.clone(),
        }
    }
}

/// Every run in the data folder: the ones going on here, and an index of the finished ones.
pub struct Registry {
    runs: RwLock<BTreeMap<String, Entry>>,
    dir: PathBuf,
    seq: AtomicU64,
    /// Held while an ended run's files are read whole, rewritten or removed (rename, archive,
    /// delete), so none of them sees another half done.
    files: Mutex<()>,
    /// Ended runs read back from disk and still held by someone (a viewer's socket, a
    /// download): every viewer of one run shares one copy (2,000 viewers once held 2,000).
    read_back: Mutex<HashMap<String, Weak<Run>>>,
}

impl Registry {
    /// A registry persisting under `dir`, indexing the runs already there (each folder's small
    /// `info.json`; a run caplab was killed in the middle of is recovered first). Returns the
    /// folders it could not read, so the caller can say so.
    pub fn open(dir: PathBuf) -> (Registry, Vec<String>) {
        let mut runs = BTreeMap::new();
        let mut unreadable = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten().filter(|e| e.path().is_dir()) {
                let removed = remove_partials(&entry.path());
                if removed > 0 {
                    tracing::info!("removed {removed} half-written file(s) from {}", entry.path().display());
                }
                match index_entry(&entry.path()) {
                    Ok(Some(Indexed::Saved(info))) => {
                        runs.insert(info.id.clone(), Entry::Saved(info));
                    }
                    // Recovered, but its files could not be rewritten (a full disk): listed from
                    // memory, with the reason; rewritten at the next start with room.
                    Ok(Some(Indexed::Unwritten(view))) => {
                        let run = Run::saved(view, entry.path().join("requests.csv"));
                        runs.insert(run.id.clone(), Entry::Live(run));
                    }
                    Ok(None) => {}
                    Err(e) => unreadable.push(format!("{}: {e}", entry.path().display())),
                }
            }
        }
        (Registry { runs: RwLock::new(runs), dir, seq: AtomicU64::new(0), files: Mutex::new(()), read_back: Mutex::default() }, unreadable)
    }

    /// A registry that saves under `dir` without reading the runs already there (`caplab run`).
    pub fn writing_to(dir: PathBuf) -> Registry {
        Registry { runs: RwLock::new(BTreeMap::new()), dir, seq: AtomicU64::new(0), files: Mutex::new(()), read_back: Mutex::default() }
    }

    /// A new id, sortable by creation time and unique even across processes sharing the data
    /// folder: `YYYYMMDD-HHMMSS-xxxx` (random hex), never one in use here or on disk.
    pub fn next_id(&self, unix_ms: u64) -> String {
        let stamp = utc_stamp(unix_ms / 1000);
        loop {
            let salt = rand::random::<u16>() ^ (self.seq.fetch_add(1, Ordering::Relaxed) as u16);
            let id = format!("{stamp}-{salt:04x}");
            if self.dir.join(&id).exists() || self.contains(&id) {
                continue;
            }
            // Claim the folder now so a concurrent process picks another id. Other failures
            // (say, a read-only folder) surface when the run is saved.
            let _ = std::fs::create_dir_all(&self.dir);
            if std::fs::create_dir(self.dir.join(&id)).is_err_and(|e| e.kind() == std::io::ErrorKind::AlreadyExists) {
                continue;
            }
            return id;
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.runs.read().unwrap_or_else(|p| p.into_inner()).contains_key(id)
    }

    /// Adds a new run; returns how many runs are ahead of it on the same target (running or
    /// queued), counted under the same lock that adds it.
    pub fn insert_counting_ahead(&self, run: Arc<Run>) -> usize {
        let mut runs = self.runs.write().unwrap_or_else(|p| p.into_inner());
        let url = run.info().target.url;
        let ahead = runs
            .values()
            .filter_map(|e| match e {
                Entry::Live(r) => Some(r.info()),
                Entry::Saved(_) => None,
            })
            .filter(|i| !i.status.is_terminal() && i.target.url == url)
            .count();
        runs.insert(run.id.clone(), Entry::Live(run));
        ahead
    }

    /// The run with this id: the live one, or a finished one read back from its folder.
    pub fn find(&self, id: &str) -> Result<Arc<Run>, String> {
        let saved = match self.runs.read().unwrap_or_else(|p| p.into_inner()).get(id) {
            None => return Err(format!("no run with id {id:?}")),
            Some(Entry::Live(run)) => return Ok(run.clone()),
            Some(Entry::Saved(_)) => self.dir.join(id),
        };
        if let Some(run) = lock(&self.read_back).get(id).and_then(Weak::upgrade) {
            return Ok(run);
        }
        let run = read_view(&saved)
            .map(|view| Run::saved(view, saved.join("requests.csv")))
            .map_err(|e| format!("run {id}'s files in {} cannot be read: {e}", saved.display()))?;
        let mut read_back = lock(&self.read_back);
        read_back.retain(|_, held| held.strong_count() > 0);
        read_back.insert(id.to_string(), Arc::downgrade(&run));
        Ok(run)
    }

    /// Forgets the copy of an ended run read back from disk (its files are changing).
    fn forget_read_back(&self, id: &str) {
        lock(&self.read_back).remove(id);
    }

    /// Every run, newest first.
    pub fn list(&self) -> Vec<RunInfo> {
        let runs = self.runs.read().unwrap_or_else(|p| p.into_inner());
        let mut infos: Vec<RunInfo> = runs.values().map(Entry::info).collect();
        infos.sort_by(|a, b| b.started_unix_ms.cmp(&a.started_unix_ms).then(b.id.cmp(&a.id)));
        infos
    }

    /// A run's identity from the index (no file read), for decisions that need no more.
    pub fn info(&self, id: &str) -> Option<RunInfo> {
        self.runs.read().unwrap_or_else(|p| p.into_inner()).get(id).map(Entry::info)
    }

    /// How many runs there are, going on and saved.
    pub fn len(&self) -> usize {
        self.runs.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Runs that have ended but are held in memory because their files could not be written.
    pub fn ended_unsaved(&self) -> Vec<Arc<Run>> {
        let runs = self.runs.read().unwrap_or_else(|p| p.into_inner());
        runs.values()
            .filter_map(|e| match e {
                Entry::Live(run) if run.info().status.is_terminal() => Some(run.clone()),
                _ => None,
            })
            .collect()
    }

    /// The folder runs are saved in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many runs are held whole in memory (those going on, and any whose files failed).
    pub fn live(&self) -> usize {
        self.runs.read().unwrap_or_else(|p| p.into_inner()).values().filter(|e| matches!(e, Entry::Live(_))).count()
    }

    /// Starts a run's files: `run.json` and `info.json` (status running) and a `requests.csv`
    /// with its header, to which every completed request is then appended (`Run::record`).
    pub fn begin(&self, run: &Run) -> std::io::Result<()> {
        let path = self.dir.join(&run.id);
        std::fs::create_dir_all(&path)?;
        let view = run.view();
        write_view(&path, &view)?;
        let csv = path.join("requests.csv");
        write_atomic(&csv, &export::requests_csv(&view.info, &[])?)?;
        let mut requests = lock(&run.requests);
        let journal = std::fs::OpenOptions::new().append(true).open(&csv)?;
        requests.whole = journal.metadata()?.len();
        requests.journal = Some(journal);
        requests.path = Some(csv);
        Ok(())
    }

    /// Renames a finished run (its `spec.name`), in its files and in the index.
    pub fn rename(&self, id: &str, name: &str) -> Result<RunInfo, FilesError> {
        self.update_saved(id, |view| view.info.spec.name = name.to_string())
    }

    /// Lets viewers see a finished run, or no longer (its `shared` flag), in its files and index.
    pub fn set_shared(&self, id: &str, shared: bool) -> Result<RunInfo, FilesError> {
        self.update_saved(id, |view| view.info.shared = shared)
    }

    /// Whether a viewer may see run `id`: shared, still going on, or the newest run started
    /// here (the one being shown to a client; it stays visible after it ends until the next).
    pub fn visible_to_viewers(&self, id: &str) -> bool {
        let runs = self.runs.read().unwrap_or_else(|p| p.into_inner());
        let Some(info) = runs.get(id).map(Entry::info) else { return false };
        if info.shared || !info.status.is_terminal() {
            return true;
        }
        let newest = runs.values().map(Entry::info).filter(|i| i.imported_from.is_none()).max_by(|a, b| a.started_unix_ms.cmp(&b.started_unix_ms).then(a.id.cmp(&b.id)));
        newest.is_some_and(|n| n.id == id)
    }

    /// Changes a finished run's view with `change`, in its files and in the index.
    fn update_saved(&self, id: &str, change: impl FnOnce(&mut RunView)) -> Result<RunInfo, FilesError> {
        let _files = lock(&self.files);
        let path = self.saved_folder(id)?;
        self.forget_read_back(id);
        let mut view = read_view(&path).map_err(|e| FilesError::Io(format!("run {id}'s files in {} cannot be read: {e}", path.display())))?;
        change(&mut view);
        view.info.headline = Headline::of(&view.cells);
        write_view(&path, &view).map_err(|e| FilesError::Io(format!("could not write run {id}'s files: {e}")))?;
        let mut runs = self.runs.write().unwrap_or_else(|p| p.into_inner());
        if runs.contains_key(id) {
            runs.insert(id.to_string(), Entry::Saved(view.info.clone()));
        }
        Ok(view.info)
    }

    /// Keeps results measured elsewhere (`crate::import`) as a finished run of their own, with
    /// a new id, so they are listed, compared and put in the notes like any other.
    pub fn add_imported(&self, mut view: RunView, unix_ms: u64) -> std::io::Result<RunInfo> {
        let id = self.next_id(unix_ms);
        view.info.id = id.clone();
        // A caplab run keeps its own date; files that carry none get the import's.
        if view.info.started_unix_ms == 0 {
            view.info.started_unix_ms = unix_ms;
        }
        // A results.json saved while its run was going on holds the cells finished by then;
        // kept as ended, or it would be taken for a run interrupted here at the next start.
        if !view.info.status.is_terminal() {
            view.info.status = RunStatus::Interrupted;
            view.info.message = Some("imported while its run was still going on: the cells finished by then are kept".into());
        }
        view.info.headline = Headline::of(&view.cells);
        let path = self.dir.join(&id);
        std::fs::create_dir_all(&path)?;
        write_atomic(&path.join("requests.csv"), &export::requests_csv(&view.info, &[])?)?;
        write_results(&path, &view)?;
        self.runs.write().unwrap_or_else(|p| p.into_inner()).insert(id, Entry::Saved(view.info.clone()));
        Ok(view.info)
    }

    /// A finished run's folder as one tar archive (`<id>/info.json`, `run.json`, the CSVs and
    /// SVGs), written to an unnamed temporary file (a run's requests can be hundreds of MB) and
    /// returned open, for streaming. Symlinks and half-written temporary files are left out.
    pub fn archive(&self, id: &str) -> Result<std::fs::File, FilesError> {
        use std::io::Seek;
        let _files = lock(&self.files);
        let path = self.saved_folder(id)?;
        let fail = |e: std::io::Error| FilesError::Io(format!("could not archive run {id}'s files in {}: {e}", path.display()));
        let tmp = std::env::temp_dir().join(format!("caplab-archive-{id}-{:08x}.tar", rand::random::<u32>()));
        let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&tmp).map_err(fail)?;
        // Unlinked at once: the open file lives until the download ends, then vanishes.
        let _ = std::fs::remove_file(&tmp);
        let mut tar = tar::Builder::new(file);
        tar.mode(tar::HeaderMode::Deterministic);
        tar.follow_symlinks(false);
        let mut names: Vec<PathBuf> = std::fs::read_dir(&path).map_err(fail)?.flatten().map(|e| e.path()).collect();
        names.sort();
        for file in names.iter().filter(|p| p.is_file() && !is_partial(p)) {
            let name = Path::new(id).join(file.file_name().unwrap_or_default());
            tar.append_path_with_name(file, name).map_err(fail)?;
        }
        let mut file = tar.into_inner().map_err(fail)?;
        file.rewind().map_err(fail)?;
        Ok(file)
    }

    /// The folder of a finished run (a running one is refused: its files are not final yet).
    fn saved_folder(&self, id: &str) -> Result<PathBuf, FilesError> {
        match self.runs.read().unwrap_or_else(|p| p.into_inner()).get(id) {
            None => Err(FilesError::NoRun(format!("no run with id {id:?}"))),
            Some(Entry::Live(_)) => Err(FilesError::Live(format!("run {id} is still going on (or its files are being written): try again once it has ended"))),
            Some(Entry::Saved(_)) => Ok(self.dir.join(id)),
        }
    }

    /// Forgets a run and removes its folder (the id is one this registry holds, never a path).
    pub fn delete(&self, id: &str) -> std::io::Result<()> {
        let _files = lock(&self.files);
        self.forget_read_back(id);
        if self.runs.write().unwrap_or_else(|p| p.into_inner()).remove(id).is_some() {
            match std::fs::remove_dir_all(self.dir.join(id)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Writes an ended run's final files and, once they are on disk, lets go of it: from then
    /// on the index holds its `RunInfo` only. On an error the run stays whole in memory (its
    /// downloads still work) and the error is returned.
    pub fn save(&self, run: &Arc<Run>) -> std::io::Result<PathBuf> {
        let path = self.dir.join(&run.id);
        let saved = self.write_final(run, &path);
        run.settle();
        if let Ok(info) = &saved {
            let mut runs = self.runs.write().unwrap_or_else(|p| p.into_inner());
            if runs.contains_key(&run.id) {
                runs.insert(run.id.clone(), Entry::Saved(info.clone()));
            }
        }
        saved.map(|_| path)
    }

    /// Writes the final files; returns the index entry (the info with its headline).
    fn write_final(&self, run: &Run, path: &Path) -> std::io::Result<RunInfo> {
        std::fs::create_dir_all(path)?;
        let mut view = run.view();
        view.info.headline = Headline::of(&view.cells);
        {
            let mut guard = lock(&run.requests);
            let requests = &mut *guard;
            let csv = path.join("requests.csv");
            if let Some(file) = requests.journal.take() {
                file.sync_all()?;
            }
            if !requests.unwritten.is_empty() || !csv.exists() {
                // Requests the journal could not take (or no journal at all): written now,
                // after the file's whole rows (it is cut back to them if this fails too).
                let mut file = match std::fs::OpenOptions::new().append(true).open(&csv) {
                    Ok(f) if requests.path.is_some() => f,
                    _ => {
                        write_atomic(&csv, &export::requests_csv(&view.info, &[])?)?;
                        requests.whole = std::fs::metadata(&csv)?.len();
                        requests.rows = 0;
                        std::fs::OpenOptions::new().append(true).open(&csv)?
                    }
                };
                file.set_len(requests.whole)?;
                append_whole(&mut file, &mut requests.whole, &view.info, &requests.unwritten)?;
                file.sync_all()?;
                requests.rows += requests.unwritten.len() as u64;
                requests.unwritten = Vec::new();
                requests.path = Some(csv);
            }
        }
        write_results(path, &view)?;
        Ok(view.info)
    }
}

/// An ended run's result files from its view: `summary.csv`, `surface.svg`, `frontier.svg`, then
/// `run.json` and `info.json` (`write_view`).
fn write_results(path: &Path, view: &RunView) -> std::io::Result<()> {
    write_atomic(&path.join("summary.csv"), &export::summary_csv(&view.info, &view.cells)?)?;
    write_atomic(&path.join("surface.svg"), export::surface_svg(view).as_bytes())?;
    write_atomic(&path.join("frontier.svg"), export::frontier_svg(view).as_bytes())?;
    write_view(path, view)
}

/// `run.json` (the whole view) and `info.json` (what the index needs), each replaced atomically;
/// `info.json` last, so an index entry never points at an older view.
fn write_view(path: &Path, view: &RunView) -> std::io::Result<()> {
    write_atomic(&path.join("run.json"), &serde_json::to_vec_pretty(view)?)?;
    write_atomic(&path.join("info.json"), &serde_json::to_vec_pretty(&view.info)?)
}

/// The extension a file has while `write_atomic` writes it (followed by who and which write).
const PARTIAL: &str = "tmp";

/// A copy `write_atomic` is still writing (or one a crash left behind): never part of the run.
fn is_partial(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.to_string_lossy().starts_with(PARTIAL))
}

/// Replaces a file whole or not at all: written beside it, flushed to disk, renamed over it.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    // A name of its own, so two writers of one file never share a half-written copy.
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = path.with_extension(format!("{PARTIAL}{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    let done = written.and_then(|()| std::fs::rename(&tmp, path));
    if done.is_err() {
        // A full disk leaves no half-written copy behind.
        let _ = std::fs::remove_file(&tmp);
    }
    done
}

/// Removes the half-written copies a crash or a full disk left in a run's folder; how many.
fn remove_partials(folder: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(folder) else { return 0 };
    entries.flatten().map(|e| e.path()).filter(|p| p.is_file() && is_partial(p)).filter(|p| std::fs::remove_file(p).is_ok()).count()
}

fn read_view(path: &Path) -> anyhow::Result<RunView> {
    Ok(serde_json::from_slice(&std::fs::read(path.join("run.json"))?)?)
}

/// What a run folder gives the index.
enum Indexed {
    Saved(RunInfo),
    /// A run recovered whose files could not be rewritten: its view, held in memory.
    Unwritten(RunView),
}

/// The index entry of one run folder (None: an empty folder, such as an id just claimed).
/// A run that was going on when caplab died is recovered here, once: marked `interrupted`,
/// its cells recomputed from its journal, and its files rewritten as final (when they cannot
/// be, say on a full disk, the recovered view is returned to be held in memory, and the
/// recovery is done again at the next start).
fn index_entry(path: &Path) -> anyhow::Result<Option<Indexed>> {
    let info_json = path.join("info.json");
    let info: RunInfo = match std::fs::read(&info_json) {
        Ok(bytes) => serde_json::from_slice(&bytes)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !path.join("run.json").exists() {
                return Ok(None);
            }
            // A folder from a caplab before the index: its info.json is written once.
            let view = read_view(path)?;
            if write_atomic(&info_json, &serde_json::to_vec_pretty(&view.info)?).is_err() && view.info.status.is_terminal() {
                return Ok(Some(Indexed::Unwritten(view)));
            }
            view.info
        }
        Err(e) => return Err(e.into()),
    };
    let folder = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if info.id != folder {
        anyhow::bail!("its run id {:?} is not its folder's name (a copied or renamed folder?)", info.id);
    }
    if info.status.is_terminal() {
        return Ok(Some(Indexed::Saved(info)));
    }
    let mut view = read_view(path)?;
    // A journal cut mid-row (a kill during an append) keeps every whole row before the cut; a
    // run killed before its journal existed has none.
    let (samples, torn) = match std::fs::read(path.join("requests.csv")) {
        Ok(bytes) => export::read_journal(&bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), 0),
        Err(e) => return Err(e.into()),
    };
    view.info.status = RunStatus::Interrupted;
    view.cells = recompute_cells(&view.info.spec, &samples);
    view.info.headline = Headline::of(&view.cells);
    let torn = if torn > 0 { format!(" ({torn} unreadable line(s) at the journal's end, cut by the stop, were left out)") } else { String::new() };
    view.info.message = Some(format!(
        "caplab stopped (killed or crashed) while this run was in progress: the {} requests that completed before are kept, and its cells are recomputed from them{torn}",
        samples.len()
    ));
    let rewritten = write_atomic(&path.join("summary.csv"), &export::summary_csv(&view.info, &view.cells)?).and_then(|()| write_view(path, &view));
    match rewritten {
        Ok(()) => Ok(Some(Indexed::Saved(view.info))),
        Err(e) => {
            let _ = remove_partials(path);
            if let Some(m) = view.info.message.as_mut() {
                m.push_str(&format!("; its files could not be updated ({}): they will be when caplab starts with room on the disk", disk_words(&e)));
            }
            Ok(Some(Indexed::Unwritten(view)))
        }
    }
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
    use caplab_shared::{CellResult, ExperimentSpec};

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("caplab-runs-{tag}-{}-{}", std::process::id(), rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A run of one cell with `n` completed requests, journalled; `finish` also saves it.
    fn make_run(reg: &Registry, n: u32, finish: bool) -> Arc<Run> {
        let info = RunInfo {
            id: reg.next_id(1_795_894_517_000),
            spec: ExperimentSpec { concurrency: vec![2], max_new_tokens: vec![8], ..Default::default() },
            target: Default::default(),
            status: RunStatus::Running,
            started_unix_ms: 1_795_894_517_000,
            message: None,
            cells_total: 1,
            requests_total: u64::from(n),
            headline: None,
            imported_from: None,
            shared: false,
        };
        let run = Run::new(info, &CancellationToken::new());
        reg.insert_counting_ahead(run.clone());
        reg.begin(&run).unwrap();
        let samples: Vec<RequestSample> = (0..n)
            .map(|i| RequestSample { index: i, e2e_ms: 100.0 + f64::from(i), ttft_ms: Some(10.0), completion_tokens: Some(8), ..Default::default() })
            .collect();
        run.record(&samples[..n as usize / 2]);
        run.record(&samples[n as usize / 2..]);
        if finish {
            let spec = run.info().spec;
            let cell = CellResult::compute(&spec.cells()[0], &samples, &spec.slo.effective(spec.workload), n);
            run.publish(ServerMsg::CellDone { result: Box::new(cell) });
            run.publish(ServerMsg::Status { status: RunStatus::Finished, message: None });
            reg.save(&run).unwrap();
        }
        run
    }

    #[tokio::test]
    async fn a_delete_waits_for_the_files_without_polling() {
        let dir = temp_dir("settle");
        let reg = Registry::writing_to(dir.clone());
        let run = make_run(&reg, 4, false);
        assert!(!run.wait_settled(std::time::Duration::from_millis(30)).await, "not settled: the wait gives up at its limit");
        let later = run.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            later.settle();
        });
        let t = std::time::Instant::now();
        assert!(run.wait_settled(std::time::Duration::from_secs(10)).await);
        assert!(t.elapsed() < std::time::Duration::from_secs(2), "woken when settled, not at the limit");
        assert!(run.wait_settled(std::time::Duration::ZERO).await, "already settled: at once");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn finished_runs_are_indexed_not_held_and_read_back_on_demand() {
        let dir = temp_dir("index");
        let reg = Registry::writing_to(dir.clone());
        let ids: Vec<String> = (0..5).map(|_| make_run(&reg, 10, true).id.clone()).collect();
        assert_eq!(reg.live(), 0, "a saved run is let go of");
        assert_eq!(reg.len(), 5);

        let (reopened, unreadable) = Registry::open(dir.clone());
        assert!(unreadable.is_empty(), "{unreadable:?}");
        assert_eq!((reopened.len(), reopened.live()), (5, 0), "opening reads the index only");
        let run = reopened.find(&ids[2]).unwrap();
        let view = run.view();
        assert_eq!(view.info.status, RunStatus::Finished);
        assert_eq!(view.cells[0].requests_ok, 10);
        let (on_disk, tail) = run.requests_csv().unwrap();
        let (path, len) = on_disk.expect("requests.csv on disk");
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(bytes.len() as u64, len);
        assert!(tail.is_empty());
        assert_eq!(export::read_requests_csv(&bytes).unwrap().len(), 10);
        assert_eq!(reopened.live(), 0, "reading a saved run does not keep it");
        // Its viewers share one copy while any holds it; a change to its files makes a new one.
        assert!(Arc::ptr_eq(&run, &reopened.find(&ids[2]).unwrap()), "one copy for every viewer");
        reopened.rename(&ids[2], "renamed").unwrap();
        let after = reopened.find(&ids[2]).unwrap();
        assert!(!Arc::ptr_eq(&run, &after) && after.info().spec.name == "renamed");
        drop((run, after));
        assert_eq!(reopened.find(&ids[2]).unwrap().info().spec.name, "renamed");

        // A folder whose run.json is damaged: listed from its index, and its reading says why.
        std::fs::write(dir.join(&ids[0]).join("run.json"), b"{ not json").unwrap();
        let err = reopened.find(&ids[0]).err().unwrap();
        assert!(err.contains("cannot be read"), "{err}");
        assert!(reopened.find("nope").err().unwrap().contains("no run with id"));
    }

    #[test]
    fn a_run_killed_midway_is_recovered_once_as_interrupted() {
        let dir = temp_dir("interrupted");
        let reg = Registry::writing_to(dir.clone());
        let id = make_run(&reg, 7, false).id.clone();
        drop(reg); // as a kill -9 would: run.json still says running

        let (reopened, _) = Registry::open(dir.clone());
        let view = reopened.find(&id).unwrap().view();
        assert_eq!(view.info.status, RunStatus::Interrupted);
        assert_eq!(view.cells.len(), 1);
        assert_eq!(view.cells[0].requests_ok, 7, "every journalled request counts");
        assert!(dir.join(&id).join("summary.csv").exists(), "its files are made final");
        let info: RunInfo = serde_json::from_slice(&std::fs::read(dir.join(&id).join("info.json")).unwrap()).unwrap();
        assert_eq!(info.status, RunStatus::Interrupted, "the index says so too: recovery happens once");
    }

    #[test]
    fn a_journal_torn_mid_row_keeps_every_whole_row_and_a_copied_folder_is_refused() {
        let dir = temp_dir("torn");
        let reg = Registry::writing_to(dir.clone());
        let id = make_run(&reg, 6, false).id.clone();
        drop(reg);
        // A kill in the middle of an append leaves half a row.
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(dir.join(&id).join("requests.csv")).unwrap();
        f.write_all(b"r,batch,unlabelled,false,0,2,8,,6,fal").unwrap();
        drop(f);
        std::fs::create_dir(dir.join("copy-of-run")).unwrap();
        std::fs::copy(dir.join(&id).join("info.json"), dir.join("copy-of-run").join("info.json")).unwrap();
        let (reopened, unreadable) = Registry::open(dir.clone());
        let view = reopened.find(&id).unwrap().view();
        assert_eq!(view.info.status, RunStatus::Interrupted);
        assert_eq!(view.cells[0].requests_ok, 6, "the six whole rows are kept");
        assert!(view.info.message.unwrap().contains("1 unreadable line(s)"));
        assert_eq!(unreadable.len(), 1, "{unreadable:?}");
        assert!(unreadable[0].contains("not its folder's name"), "{unreadable:?}");
    }

    #[test]
    fn a_journal_the_disk_will_not_take_stops_the_run_and_keeps_its_rows_once() {
        let dir = temp_dir("full");
        let reg = Registry::writing_to(dir.clone());
        let run = make_run(&reg, 4, false);
        let sample = |i| RequestSample { cell: 0, index: i, e2e_ms: 1.0, ..Default::default() };
        // The disk fills: /dev/full answers every write with ENOSPC.
        lock(&run.requests).journal = Some(std::fs::OpenOptions::new().append(true).open("/dev/full").unwrap());
        run.record(&[sample(4), sample(5)]);
        run.record(&[sample(6)]);
        assert!(run.cancel.is_cancelled(), "a run that cannot keep its requests stops");
        let fault = run.disk_fault().unwrap();
        assert!(fault.starts_with("the disk is full") && fault.ends_with(": 4 of the run's requests are on disk, 3 more held in memory"), "{fault}");
        // Served: the file's whole rows, then memory's, none twice.
        let (on_disk, tail) = run.requests_csv().unwrap();
        let (path, len) = on_disk.unwrap();
        let mut bytes = std::fs::read(path).unwrap()[..len as usize].to_vec();
        bytes.extend_from_slice(&tail);
        let rows = export::read_requests_csv(&bytes).unwrap();
        assert_eq!(rows.iter().map(|s| s.index).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4, 5, 6]);
        // Saved once there is room: every row in the file, once.
        run.publish(ServerMsg::Status { status: RunStatus::Stopped, message: None });
        reg.save(&run).unwrap();
        let saved = export::read_requests_csv(&std::fs::read(dir.join(&run.id).join("requests.csv")).unwrap()).unwrap();
        assert_eq!(saved.len(), 7);
        assert_eq!(run.unwritten(), 0);
    }

    #[test]
    fn half_written_files_are_removed_at_start() {
        let dir = temp_dir("partials");
        let reg = Registry::writing_to(dir.clone());
        let id = make_run(&reg, 2, true).id.clone();
        std::fs::write(dir.join(&id).join("summary.tmp5303-0"), b"half").unwrap();
        let (reopened, _) = Registry::open(dir.clone());
        assert_eq!(reopened.len(), 1);
        assert!(!dir.join(&id).join("summary.tmp5303-0").exists());
    }

    #[test]
    fn stamps_are_utc_calendar_times() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(1_795_894_517), "20261128-193517");
        assert_eq!(utc_stamp(951_782_400), "20000229-000000");
    }
}
