//! Every run in the data folder: the ones going on here, and an index of the finished ones
//! (their `info.json`), read back from the store when someone asks for one.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use caplab_shared::decide::Headline;
use caplab_shared::{RunInfo, RunStatus, RunView};

use super::{lock, Run};
use crate::export;
use crate::store::files;

/// Why an ended run's files could not be read or changed as asked.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// No run has this id.
    #[error("{0}")]
    NoRun(String),
    /// The run is still going on (or its files are being written).
    #[error("{0}")]
    Live(String),
    /// Its files could not be read or written.
    #[error("{0}")]
    Io(String),
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
        for folder in files::run_folders(&dir) {
            let removed = files::remove_partials(&folder);
            if removed > 0 {
                tracing::info!("removed {removed} half-written file(s) from {}", folder.display());
            }
            match files::index_entry(&folder) {
                Ok(Some(files::Indexed::Saved(info))) => {
                    runs.insert(info.id.clone(), Entry::Saved(info));
                }
                // Recovered, but its files could not be rewritten (a full disk): listed from
                // memory, with the reason; rewritten at the next start with room.
                Ok(Some(files::Indexed::Unwritten(view))) => {
                    let run = Run::saved(view, folder.join("requests.csv"));
                    runs.insert(run.id.clone(), Entry::Live(run));
                }
                Ok(None) => {}
                Err(e) => unreadable.push(format!("{}: {e}", folder.display())),
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
            if self.contains(&id) || !files::claim_folder(&self.dir, &id) {
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
    pub fn find(&self, id: &str) -> Result<Arc<Run>, FilesError> {
        let saved = match self.runs.read().unwrap_or_else(|p| p.into_inner()).get(id) {
            None => return Err(FilesError::NoRun(format!("no run with id {id:?}"))),
            Some(Entry::Live(run)) => return Ok(run.clone()),
            Some(Entry::Saved(_)) => self.dir.join(id),
        };
        if let Some(run) = lock(&self.read_back).get(id).and_then(Weak::upgrade) {
            return Ok(run);
        }
        let run = files::read_view(&saved)
            .map(|view| Run::saved(view, saved.join("requests.csv")))
            .map_err(|e| FilesError::Io(format!("run {id}'s files in {} cannot be read: {e}", saved.display())))?;
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
        files::write_view(&path, &view)?;
        lock(&run.journal).begin(path.join("requests.csv"), &view.info)
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
        let mut view = files::read_view(&path).map_err(|e| FilesError::Io(format!("run {id}'s files in {} cannot be read: {e}", path.display())))?;
        change(&mut view);
        view.info.headline = Headline::of(&view.cells);
        files::write_view(&path, &view).map_err(|e| FilesError::Io(format!("could not write run {id}'s files: {e}")))?;
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
        files::write_atomic(&path.join("requests.csv"), &export::requests_csv(&view.info, &[])?)?;
        files::write_results(&path, &view)?;
        self.runs.write().unwrap_or_else(|p| p.into_inner()).insert(id, Entry::Saved(view.info.clone()));
        Ok(view.info)
    }

    /// A finished run's folder as one tar archive (`<id>/info.json`, `run.json`, the CSVs and
    /// SVGs), written to an unnamed temporary file (a run's requests can be hundreds of MB) and
    /// returned open, for streaming. Symlinks and half-written temporary files are left out.
    pub fn archive(&self, id: &str) -> Result<std::fs::File, FilesError> {
        let _files = lock(&self.files);
        let path = self.saved_folder(id)?;
        files::archive(&path, id).map_err(|e| FilesError::Io(format!("could not archive run {id}'s files in {}: {e}", path.display())))
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
            files::remove_folder(&self.dir.join(id))?;
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
        // Its headline came with its cells (`RunView::apply`).
        let view = run.view();
        lock(&run.journal).finish(&path.join("requests.csv"), &view.info)?;
        files::write_results(path, &view)?;
        Ok(view.info)
    }
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
    use caplab_shared::{CellResult, ExperimentSpec, RequestSample, ServerMsg};
    use tokio_util::sync::CancellationToken;

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
        assert!(err.to_string().contains("cannot be read"), "{err}");
        assert!(matches!(&err, FilesError::Io(_)));
        assert!(matches!(reopened.find("nope").err().unwrap(), FilesError::NoRun(m) if m.contains("no run with id")));
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
        lock(&run.journal).write_to(std::fs::OpenOptions::new().append(true).open("/dev/full").unwrap());
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
