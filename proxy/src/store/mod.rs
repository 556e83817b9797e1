//! The store: the only code that writes or reads a run's folder. The journal of a run going
//! on (`journal`), and the files of its folder (`files`). The runs (`crate::runs`) hold what
//! is shown and sent; whatever touches the disk is here.

pub mod files;
mod journal;

pub use journal::Journal;

/// Why the journal could not keep a batch.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The file would not take it (the cause in `disk_words`' words: a full disk says so).
    #[error("cannot append to {path} ({cause})")]
    Append { path: String, cause: String },
}

/// Runs `work` (disk I/O) from async code without holding up the runtime's other tasks: on a
/// multi-thread runtime (caplab's) they move to another worker while it runs; elsewhere (a
/// test's single-thread runtime, no runtime) it simply runs.
pub fn blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(work),
        _ => work(),
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
