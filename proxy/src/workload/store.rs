//! The user's inputs kept by this caplab: each set once, by its content's hash, in memory and
//! (for `caplab serve`) as `inputs/ID.json` in the data folder, so a run's spec can name it, a
//! restart still finds it, and two uploads of the same file are one set.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use caplab_shared::{InputsRef, Workload};
use sha2::{Digest, Sha256};

use super::sources::Parsed;
use super::Inputs;

/// A kept set: what it is, and its inputs.
#[derive(serde::Serialize, serde::Deserialize)]
struct Kept {
    reference: InputsRef,
    inputs: Inputs,
}

#[derive(Default)]
pub struct InputStore {
    /// Where sets are written; None: kept in memory only (`caplab run`).
    dir: Option<PathBuf>,
    sets: RwLock<HashMap<String, (InputsRef, Arc<Inputs>)>>,
}

/// An id is 16 lower-case hex digits: anything else never reaches the file system.
fn valid_id(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl InputStore {
    pub fn new(dir: Option<PathBuf>) -> InputStore {
        InputStore { dir, sets: RwLock::default() }
    }

    /// Keeps `parsed` (read from a file named `name`) for `workload`; the same content gives the same id.
    pub fn put(&self, name: &str, workload: Workload, parsed: Parsed) -> std::io::Result<InputsRef> {
        let inputs = Inputs { documents: parsed.documents.clone(), chats: parsed.chats.clone(), trace: parsed.trace.clone(), answers: parsed.answers.clone() };
        let canonical = serde_json::to_vec(&(workload, &inputs)).map_err(std::io::Error::other)?;
        let digest = Sha256::digest(&canonical);
        let id: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        let reference = InputsRef { id: id.clone(), file: String::new(), name: name.to_string(), format: parsed.format.to_string(), items: parsed.items() as u32, workload: Some(workload), duration_s: parsed.trace.last().map(|t| t.at_s) };
        if let Some(dir) = &self.dir {
            std::fs::create_dir_all(dir)?;
            let path = dir.join(format!("{id}.json"));
            if !path.exists() {
                let tmp = dir.join(format!("{id}.json.tmp{}", std::process::id()));
                std::fs::write(&tmp, serde_json::to_vec(&Kept { reference: reference.clone(), inputs: inputs.clone() }).map_err(std::io::Error::other)?)?;
                std::fs::rename(&tmp, &path)?;
            }
        }
        self.sets.write().unwrap_or_else(|p| p.into_inner()).insert(id, (reference.clone(), Arc::new(inputs)));
        Ok(reference)
    }

    /// The set with this id: from memory, else from the data folder.
    pub fn get(&self, id: &str) -> Option<(InputsRef, Arc<Inputs>)> {
        if !valid_id(id) {
            return None;
        }
        if let Some(found) = self.sets.read().unwrap_or_else(|p| p.into_inner()).get(id) {
            return Some(found.clone());
        }
        let path = self.dir.as_ref()?.join(format!("{id}.json"));
        let kept: Kept = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        let found = (kept.reference, Arc::new(kept.inputs));
        self.sets.write().unwrap_or_else(|p| p.into_inner()).insert(id.to_string(), found.clone());
        Some(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::sources::parse;

    #[test]
    fn the_same_content_is_one_set_and_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("caplab-inputs-{}", std::process::id()));
        let store = InputStore::new(Some(dir.clone()));
        let a = store.put("docs.txt", Workload::Batch, parse("docs.txt", b"[DOC] one [DOC] two", Workload::Batch).unwrap()).unwrap();
        let b = store.put("again.txt", Workload::Batch, parse("again.txt", b"[DOC]one\n[DOC]two\n", Workload::Batch).unwrap()).unwrap();
        assert_eq!(a.id, b.id, "same documents, same id");
        assert_eq!((a.items, a.format.as_str()), (2, "[DOC] documents"));
        let other = store.put("p.txt", Workload::Chat, parse("p.txt", b"one\ntwo", Workload::Chat).unwrap()).unwrap();
        assert_ne!(other.id, a.id);
        let restarted = InputStore::new(Some(dir.clone()));
        let (found, inputs) = restarted.get(&a.id).expect("read back from the data folder");
        assert_eq!((found.name.as_str(), inputs.documents.len()), ("docs.txt", 2), "kept as first written");
        assert!(restarted.get("../../etc/passwd").is_none() && restarted.get("0123456789abcdeg").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
