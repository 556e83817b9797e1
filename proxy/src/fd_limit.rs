//! caplab's own open-file limit. Every in-flight request holds a socket, so a run at
//! concurrency 1,200 cannot fit the common soft limit of 1,024: caplab raises the soft limit to
//! the hard one at start, and refuses a run whose connections cannot fit what it got, saying
//! why, instead of recording its own shortage as the target's connect errors.

use std::sync::OnceLock;

use caplab_shared::{ExperimentSpec, FieldError, LoadMode};

/// Descriptors kept free for caplab itself: listeners, viewers' sockets, files, the simulator.
pub const RESERVE: u64 = 256;

static LIMIT: OnceLock<u64> = OnceLock::new();

/// Raises the soft open-file limit as far as the hard limit allows; returns the limit in force.
pub fn raise() -> u64 {
    *LIMIT.get_or_init(|| match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(_) => rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft),
    })
}

/// Descriptors this process has open now (Linux: `/proc/self/fd`), if it can tell.
pub fn open_now() -> Option<usize> {
    std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count().saturating_sub(1))
}

/// Whether an error's words say the process is out of descriptors (EMFILE, or ENFILE for the machine).
pub fn is_shortage(words: &str) -> bool {
    words.contains("Too many open files") || words.contains("os error 24") || words.contains("os error 23")
}

/// caplab's own shortage in numbers, for a message: never the target's fault.
pub fn shortage() -> String {
    let open = open_now().map_or_else(|| "?".to_string(), |n| n.to_string());
    format!("caplab itself ran out of open files ({open} open, its limit is {}): not the target's fault; lower the concurrency, close viewers, or raise ulimit -n before starting caplab", raise())
}

/// Why `spec` cannot run within `limit` open files, if it cannot: its largest concurrency (or
/// in-flight cap) needs one connection per request in flight.
pub fn check(spec: &ExperimentSpec, limit: u64) -> Option<FieldError> {
    let room = limit.saturating_sub(RESERVE);
    let (field, needed) = match spec.mode {
        LoadMode::Closed => ("concurrency", spec.concurrency.iter().copied().max().unwrap_or(0)),
        LoadMode::Rate => ("max_in_flight", spec.max_in_flight),
    };
    (u64::from(needed) > room).then(|| {
        FieldError::new(
            field,
            format!(
                "{needed} requests in flight need {needed} connections, but caplab may open only {room} (its open-file limit is {limit}, {RESERVE} kept for itself): lower it, or raise the hard limit (ulimit -Hn) before starting caplab"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_concurrency_that_cannot_fit_is_refused_with_the_reason() {
        let spec = ExperimentSpec { concurrency: vec![8, 1200], ..Default::default() };
        let e = check(&spec, 1024).unwrap();
        assert_eq!(e.field, "concurrency");
        assert!(e.message.starts_with("1200 requests in flight need 1200 connections, but caplab may open only 768"), "{}", e.message);
        assert!(check(&spec, 65_536).is_none());
        let rate = ExperimentSpec { mode: LoadMode::Rate, rate: vec![10.0], max_in_flight: 5000, concurrency: vec![], ..Default::default() };
        assert_eq!(check(&rate, 1024).unwrap().field, "max_in_flight");
        assert!(raise() >= 1024, "the limit in force is read");
    }
}
