//! What `caplab report` reads: run folders (each with its `run.json`), folders of runs (a
//! `caplab run EXP --out DIR` folder, the data folder of `caplab serve`), and result files
//! from other tools (read by `crate::import`).

use std::path::{Path, PathBuf};

use caplab_shared::{RunView, Workload};

use crate::import::ImportError;

/// A run to report on, and its folder when it has one (where its `requests.csv` is).
pub struct Found {
    pub view: RunView,
    pub folder: Option<PathBuf>,
}

/// Why the paths given could not be read as runs.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{path}: cannot be read (give run folders, folders of runs or result files): {source}")]
    Unreadable { path: String, source: std::io::Error },
    #[error("{path}: no caplab run in it: neither a run folder (with run.json) nor a folder of run folders")]
    NoRun { path: String },
    #[error("{path}: not a caplab run.json: {why}")]
    BadRun { path: String, why: String },
    #[error("{path}: not JSON ({why})")]
    NotJson { path: String, why: String },
    #[error(transparent)]
    Import(#[from] ImportError),
}

/// The labels given for result files that do not carry them, and their workload.
pub struct ImportLabels<'a> {
    pub gpu: Option<&'a str>,
    pub model: Option<&'a str>,
    pub workload: Workload,
}

fn read_run(folder: &Path) -> Result<Found, InputError> {
    let file = folder.join("run.json");
    let bytes = std::fs::read(&file).map_err(|source| InputError::Unreadable { path: file.display().to_string(), source })?;
    let view: RunView = serde_json::from_slice(&bytes).map_err(|e| InputError::BadRun { path: file.display().to_string(), why: e.to_string() })?;
    Ok(Found { view, folder: Some(folder.to_path_buf()) })
}

/// The runs of a folder: itself when it is a run folder, else every run folder directly in it
/// (in name order, which is the order of their ids' times). Folders without a `run.json` (an
/// id claimed by a run that never began) are passed over.
fn folder_runs(path: &Path) -> Result<Vec<Found>, InputError> {
    if path.join("run.json").is_file() {
        return Ok(vec![read_run(path)?]);
    }
    let entries = std::fs::read_dir(path).map_err(|source| InputError::Unreadable { path: path.display().to_string(), source })?;
    let mut folders: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.join("run.json").is_file()).collect();
    folders.sort();
    if folders.is_empty() {
        return Err(InputError::NoRun { path: path.display().to_string() });
    }
    folders.iter().map(|f| read_run(f)).collect()
}

/// Every run the paths hold: folders as `folder_runs`, files as result files (all of them
/// imported together, so the `vllm bench serve` files of one GPU make one run).
pub fn read(paths: &[PathBuf], labels: &ImportLabels) -> Result<Vec<Found>, InputError> {
    let mut found = Vec::new();
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            found.extend(folder_runs(path)?);
            continue;
        }
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| InputError::Unreadable { path: name.clone(), source })?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| InputError::NotJson { path: name.clone(), why: e.to_string() })?;
        files.push((path.file_name().map_or(name, |n| n.to_string_lossy().into_owned()), value));
    }
    let imported = crate::import::runs(&files, labels.gpu, labels.model, labels.workload)?;
    found.extend(imported.into_iter().map(|view| Found { view, folder: None }));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("caplab-inputs-{tag}-{}-{:x}", std::process::id(), rand::random::<u32>()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn save(dir: &Path, id: &str) {
        let view = crate::report::tests::run(id, "pod", Workload::Chat, &[(8, 128, 300.0, 900.0, true)]);
        std::fs::create_dir_all(dir.join(id)).unwrap();
        std::fs::write(dir.join(id).join("run.json"), serde_json::to_vec(&view).unwrap()).unwrap();
    }

    #[test]
    fn run_folders_and_folders_of_runs_are_read() {
        let labels = ImportLabels { gpu: None, model: None, workload: Workload::Chat };
        let out = temp("out");
        save(&out, "20261129-101010-bbbb");
        save(&out, "20261129-101010-aaaa");
        std::fs::create_dir_all(out.join("20261129-101011-cccc")).unwrap();
        let ids = |f: Vec<Found>| f.into_iter().map(|f| f.view.info.id).collect::<Vec<_>>();
        assert_eq!(ids(read(&[out.clone()], &labels).unwrap()), ["20261129-101010-aaaa", "20261129-101010-bbbb"], "a folder of runs, the claimed empty id passed over");
        let one = read(&[out.join("20261129-101010-aaaa")], &labels).unwrap();
        assert_eq!(one[0].folder.as_deref(), Some(out.join("20261129-101010-aaaa").as_path()));
        let empty = temp("empty");
        let e = read(&[empty.clone()], &labels).err().unwrap();
        assert!(e.to_string().ends_with("no caplab run in it: neither a run folder (with run.json) nor a folder of run folders"), "{e}");
        let e = read(&[PathBuf::from("/nonexistent-run-dir")], &labels).err().unwrap();
        assert!(e.to_string().starts_with("/nonexistent-run-dir: cannot be read (give run folders, folders of runs or result files)"), "{e}");
        let _ = std::fs::remove_dir_all(out);
        let _ = std::fs::remove_dir_all(empty);
    }
}
