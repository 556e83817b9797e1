//! The files of a run's folder (`<data-dir>/<id>/`), written whole or not at all: `run.json`
//! (the view) and `info.json` (what the index needs), `summary.csv`, `surface.svg`,
//! `frontier.svg`, the telemetry series (`server_metrics.csv`, `gpu.csv`), and the folder as
//! one tar archive; and reading a folder back for the index, recovering a run caplab was
//! killed in the middle of.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use caplab_shared::decide::Headline;
use caplab_shared::{RequestSample, RunInfo, RunStatus, RunView};

use super::disk_words;
use crate::export;

/// An ended run's result files from its view: `summary.csv`, `surface.svg`, `frontier.svg`, then
/// `run.json` and `info.json` (`write_view`).
pub fn write_results(path: &Path, view: &RunView) -> std::io::Result<()> {
    write_atomic(&path.join("summary.csv"), &export::summary_csv(&view.info, &view.cells)?)?;
    write_atomic(&path.join("surface.svg"), export::surface_svg(view).as_bytes())?;
    write_atomic(&path.join("frontier.svg"), export::frontier_svg(view).as_bytes())?;
    write_view(path, view)
}

/// `run.json` (the whole view) and `info.json` (what the index needs), each replaced atomically;
/// `info.json` last, so an index entry never points at an older view.
pub fn write_view(path: &Path, view: &RunView) -> std::io::Result<()> {
    write_atomic(&path.join("run.json"), &serde_json::to_vec_pretty(view)?)?;
    write_atomic(&path.join("info.json"), &serde_json::to_vec_pretty(&view.info)?)
}

/// The extension a file has while `write_atomic` writes it (followed by who and which write).
const PARTIAL: &str = "tmp";

/// A copy `write_atomic` is still writing (or one a crash left behind): never part of the run.
pub fn is_partial(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.to_string_lossy().starts_with(PARTIAL))
}

/// Replaces a file whole or not at all: written beside it, flushed to disk, renamed over it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
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
pub fn remove_partials(folder: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(folder) else { return 0 };
    entries.flatten().map(|e| e.path()).filter(|p| p.is_file() && is_partial(p)).filter(|p| std::fs::remove_file(p).is_ok()).count()
}

pub fn read_view(path: &Path) -> anyhow::Result<RunView> {
    Ok(serde_json::from_slice(&std::fs::read(path.join("run.json"))?)?)
}

/// What a run folder gives the index.
pub enum Indexed {
    Saved(RunInfo),
    /// A run recovered whose files could not be rewritten: its view, held in memory.
    Unwritten(RunView),
}

/// The index entry of one run folder (None: an empty folder, such as an id just claimed).
/// A run that was going on when caplab died is recovered here, once: marked `interrupted`,
/// its cells recomputed from its journal, and its files rewritten as final (when they cannot
/// be, say on a full disk, the recovered view is returned to be held in memory, and the
/// recovery is done again at the next start).
pub fn index_entry(path: &Path) -> anyhow::Result<Option<Indexed>> {
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

/// Run `id`'s folder `path` as one tar archive (`<id>/info.json`, `run.json`, the CSVs and
/// SVGs), written to an unnamed temporary file (a run's requests can be hundreds of MB) and
/// returned open, for streaming. Symlinks and half-written temporary files are left out.
pub fn archive(path: &Path, id: &str) -> std::io::Result<std::fs::File> {
    use std::io::Seek;
    let tmp = std::env::temp_dir().join(format!("caplab-archive-{id}-{:08x}.tar", rand::random::<u32>()));
    let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&tmp)?;
    // Unlinked at once: the open file lives until the download ends, then vanishes.
    let _ = std::fs::remove_file(&tmp);
    let mut tar = tar::Builder::new(file);
    tar.mode(tar::HeaderMode::Deterministic);
    tar.follow_symlinks(false);
    let mut names: Vec<PathBuf> = std::fs::read_dir(path)?.flatten().map(|e| e.path()).collect();
    names.sort();
    for file in names.iter().filter(|p| p.is_file() && !is_partial(p)) {
        let name = Path::new(id).join(file.file_name().unwrap_or_default());
        tar.append_path_with_name(file, name)?;
    }
    let mut file = tar.into_inner()?;
    file.rewind()?;
    Ok(file)
}

/// The run folders under the data folder `dir` (none when it cannot be read).
pub fn run_folders(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).map(|entries| entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect()).unwrap_or_default()
}

/// Claims `dir/id` for a new run: false when it exists already (another process's run, say).
/// Other failures (a read-only folder) surface when the run's files are begun.
pub fn claim_folder(dir: &Path, id: &str) -> bool {
    let path = dir.join(id);
    if path.exists() {
        return false;
    }
    let _ = std::fs::create_dir_all(dir);
    !std::fs::create_dir(&path).is_err_and(|e| e.kind() == std::io::ErrorKind::AlreadyExists)
}

/// Removes a run's folder and everything in it (gone already is fine).
pub fn remove_folder(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A saved run's `requests.csv`, open for reading.
pub fn requests(folder: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::open(folder.join("requests.csv"))
}

/// A telemetry series in `folder` (`server_metrics.csv`, `gpu.csv`), opened for appending, with
/// `header` when it is new.
pub fn series(folder: &Path, name: &str, header: &str) -> std::io::Result<std::fs::File> {
    use std::io::Write;
    let path = folder.join(name);
    let fresh = !path.exists();
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
    if fresh {
        file.write_all(header.as_bytes())?;
    }
    Ok(file)
}
