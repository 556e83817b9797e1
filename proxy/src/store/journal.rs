//! A run's `requests.csv` while it goes on: the journal every completed request is appended
//! to, on every aggregator tick, so a `kill -9` loses at most the requests still in flight
//! (`run.json` beside it says the run was running; a restart finds it `interrupted` and
//! rebuilds its cells from these rows), and, only when that file cannot be written, memory.
//!
//! The file only ever holds whole rows: an append that fails (a full disk) is cut back to the
//! last whole row, and the batch is kept in memory, so no row is on disk twice or torn, and a
//! download (the file's whole rows, then the rows in memory) never repeats one.

use std::path::{Path, PathBuf};

use caplab_shared::{RequestSample, RunInfo};

use super::{disk_words, files::write_atomic, JournalError};
use crate::export;

#[derive(Default)]
pub struct Journal {
    path: Option<PathBuf>,
    /// Open for appending while the run goes on.
    file: Option<std::fs::File>,
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

impl Journal {
    /// The journal of a finished run, read back from its folder: its file, nothing to append.
    pub fn finished(csv: PathBuf) -> Journal {
        Journal { path: Some(csv), ..Journal::default() }
    }

    /// Starts `csv` with the header of `info`'s rows and opens it for appending.
    pub fn begin(&mut self, csv: PathBuf, info: &RunInfo) -> std::io::Result<()> {
        write_atomic(&csv, &export::requests_csv(info, &[])?)?;
        let file = std::fs::OpenOptions::new().append(true).open(&csv)?;
        self.whole = file.metadata()?.len();
        self.file = Some(file);
        self.path = Some(csv);
        Ok(())
    }

    /// Appends to `file` from now on (a test's failing disk).
    #[cfg(test)]
    pub fn write_to(&mut self, file: std::fs::File) {
        self.file = Some(file);
    }

    /// The run's folder, once its files are begun.
    pub fn folder(&self) -> Option<PathBuf> {
        self.path.as_ref().and_then(|p| p.parent()).map(Path::to_path_buf)
    }

    /// Appends a batch. A file that cannot take it (a full disk) is cut back to its last whole
    /// row and closed; the batch, and every later one, is kept in memory; the error says why.
    pub fn record(&mut self, info: &RunInfo, batch: &[RequestSample]) -> Result<(), JournalError> {
        let mut failed = None;
        if let Some(file) = self.file.as_mut() {
            match append_whole(file, &mut self.whole, info, batch) {
                Ok(()) => {
                    self.rows += batch.len() as u64;
                    return Ok(());
                }
                Err(e) => {
                    let cause = disk_words(&e);
                    failed = Some(JournalError::Append { path: self.path.as_deref().unwrap_or(Path::new("its journal")).display().to_string(), cause: cause.clone() });
                    self.fault.get_or_insert(cause);
                    self.file = None;
                }
            }
        }
        self.unwritten.extend(batch.iter().map(|s| RequestSample { itl_gaps_ms: Vec::new(), ..s.clone() }));
        failed.map_or(Ok(()), Err)
    }

    /// Why the run's requests could not all be kept on disk, with the counts, if they could not.
    pub fn fault(&self) -> Option<String> {
        let cause = self.fault.as_ref()?;
        Some(format!("{cause}: {} of the run's requests are on disk, {} more held in memory", self.rows, self.unwritten.len()))
    }

    /// Requests held in memory because the disk would not take them.
    pub fn unwritten(&self) -> usize {
        self.unwritten.len()
    }

    /// `requests.csv` as it stands: the bytes on disk (up to the last whole batch written; the
    /// caller reads them from `path`) and the rows of any requests only in memory.
    pub fn requests_csv(&self, info: &RunInfo) -> std::io::Result<(Option<(PathBuf, u64)>, Vec<u8>)> {
        let on_disk = match &self.path {
            // While the run writes its journal, only its whole rows (an append in progress or
            // cut back is not served); once settled, the file as it is.
            Some(p) if self.whole > 0 => Some((p.clone(), self.whole)),
            Some(p) => match std::fs::metadata(p) {
                Ok(m) => Some((p.clone(), m.len())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        let tail = match on_disk {
            Some(_) => export::request_rows(info, &self.unwritten)?,
            None => export::requests_csv(info, &self.unwritten)?,
        };
        Ok((on_disk, tail))
    }

    /// Makes `csv` the run's final `requests.csv`: the journal flushed to disk, and the requests
    /// it could not take (or every request, with no journal at all) written after its whole
    /// rows (it is cut back to them if this fails too).
    pub fn finish(&mut self, csv: &Path, info: &RunInfo) -> std::io::Result<()> {
        if let Some(file) = self.file.take() {
            file.sync_all()?;
        }
        if self.unwritten.is_empty() && csv.exists() {
            return Ok(());
        }
        let mut file = match std::fs::OpenOptions::new().append(true).open(csv) {
            Ok(f) if self.path.is_some() => f,
            _ => {
                write_atomic(csv, &export::requests_csv(info, &[])?)?;
                self.whole = std::fs::metadata(csv)?.len();
                self.rows = 0;
                std::fs::OpenOptions::new().append(true).open(csv)?
            }
        };
        file.set_len(self.whole)?;
        append_whole(&mut file, &mut self.whole, info, &self.unwritten)?;
        file.sync_all()?;
        self.rows += self.unwritten.len() as u64;
        self.unwritten = Vec::new();
        self.path = Some(csv.to_path_buf());
        Ok(())
    }
}
