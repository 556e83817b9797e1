//! caplab's own open-file limit. Every in-flight request holds a socket, so a run at
//! concurrency 1,200 cannot fit the common soft limit of 1,024: caplab raises the soft limit to
//! the hard one at start, and refuses a run whose connections cannot fit what it got, saying
//! why, instead of recording its own shortage as the target's connect errors.
//!
//! The limit is shared out once, at start: `INTERNAL` descriptors for caplab's files,
//! listeners and simulators, the dashboard's connections (`dashboard`: at most half of the
//! rest, WebSockets included), and what is left for the load (`check`).

use std::sync::OnceLock;

use caplab_shared::{ExperimentSpec, FieldError, LoadMode};

/// Descriptors kept free for caplab itself when it serves no dashboard (`caplab run`).
pub const RESERVE: u64 = 256;

/// Descriptors kept for caplab's own files, listeners, simulators and logs, besides the
/// dashboard's connections, with room for the moments a connection is accepted past a cap
/// before the oldest idle one is closed (64 was seen to run short under a loaded CPU).
pub const INTERNAL: u64 = 160;

static LIMIT: OnceLock<u64> = OnceLock::new();
static RESERVED: OnceLock<u64> = OnceLock::new();

/// Keeps `n` descriptors out of the load's reach (set once by `caplab serve`: `INTERNAL` plus
/// its connections).
pub fn keep_reserved(n: u64) {
    let _ = RESERVED.set(n);
}

/// Descriptors the load may not take.
pub fn reserved() -> u64 {
    RESERVED.get().copied().unwrap_or(RESERVE)
}

/// The dashboard's connection caps, from the open-file limit and what the operator asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct Dashboard {
    /// Connections open at once, WebSockets included.
    pub max_connections: usize,
    /// Of those, WebSockets.
    pub max_websockets: usize,
    /// From one client address.
    pub max_per_client: usize,
    /// What was asked for and lowered to fit, in words.
    pub lowered: Vec<String>,
}

/// The caps that fit `limit`: by default a quarter of what `INTERNAL` leaves (at most 1,024),
/// never more than half of it (the rest is the load's); WebSockets at most half the
/// connections by default; one client address at most a quarter (at least 8).
pub fn dashboard(limit: u64, connections: Option<usize>, websockets: Option<usize>, per_client: Option<usize>) -> Dashboard {
    let left = limit.saturating_sub(INTERNAL);
    let fits = usize::try_from(left / 2).unwrap_or(usize::MAX).max(16);
    let mut lowered = Vec::new();
    let mut fit = |flag: &str, asked: Option<usize>, default: usize, most: usize, why: &str| match asked {
        Some(n) if n > most => {
            lowered.push(format!("{flag} {n} lowered to {most} ({why})"));
            most
        }
        Some(n) => n.max(1),
        None => default.min(most),
    };
    let why = format!("caplab's open-file limit is {limit}: {INTERNAL} for itself, at least half of the rest for the load");
    let max_connections = fit("--max-connections", connections, usize::try_from(left / 4).unwrap_or(usize::MAX).clamp(16, 1024), fits, &why);
    let max_websockets = fit("--max-websockets", websockets, (max_connections / 2).max(1), max_connections, "they count among --max-connections");
    let max_per_client = fit("--max-connections-per-client", per_client, (max_connections / 4).max(8), max_connections, "at most --max-connections");
    Dashboard { max_connections, max_websockets, max_per_client, lowered }
}

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

/// Why `spec` cannot run within `limit` open files of which `reserved` are kept for caplab
/// itself, if it cannot: its largest concurrency (or in-flight cap) needs one descriptor per
/// request in flight, two when the target is a simulator inside caplab (it holds the other end).
pub fn check(spec: &ExperimentSpec, limit: u64, reserved: u64, in_process: bool) -> Option<FieldError> {
    let room = limit.saturating_sub(reserved);
    let (field, in_flight) = match spec.mode {
        LoadMode::Closed => ("concurrency", spec.concurrency.iter().copied().max().unwrap_or(0)),
        LoadMode::Rate => ("max_in_flight", spec.max_in_flight),
    };
    // A connection being replaced (its response read, not yet back in the pool, when its worker
    // sends again) is open beside its successor: an eighth more, at least 8, covers that churn,
    // which once ran a run admitted with 48 descriptors to spare out of them on a busy machine.
    let connections = u64::from(in_flight) + u64::from(in_flight).div_ceil(8).max(8).min(u64::from(in_flight));
    let needed = connections * if in_process { 2 } else { 1 };
    let each = if in_process {
        " (an eighth more for connections being replaced; the simulator inside caplab holds the other end of each: two descriptors a connection)"
    } else {
        " (one a request, and an eighth more for connections being replaced)"
    };
    (needed > room).then(|| {
        FieldError::new(
            field,
            format!(
                "{in_flight} requests in flight need {needed} open files{each}, but caplab may open only {room} for the load (its open-file limit is {limit}, {reserved} kept for itself and the dashboard's connections): lower it, or raise the hard limit (ulimit -Hn) before starting caplab"
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
        let e = check(&spec, 1024, RESERVE, false).unwrap();
        assert_eq!(e.field, "concurrency");
        assert!(e.message.starts_with("1200 requests in flight need 1350 open files (one a request, and an eighth more for connections being replaced), but caplab may open only 768"), "{}", e.message);
        assert!(check(&spec, 65_536, RESERVE, false).is_none());
        let rate = ExperimentSpec { mode: LoadMode::Rate, rate: vec![10.0], max_in_flight: 5000, concurrency: vec![], ..Default::default() };
        assert_eq!(check(&rate, 1024, RESERVE, false).unwrap().field, "max_in_flight");
        assert!(raise() >= 1024, "the limit in force is read");
        // On the simulator inside caplab, each request holds both ends.
        let sim = ExperimentSpec { concurrency: vec![500], ..Default::default() };
        assert!(check(&sim, 1024, RESERVE, false).is_none());
        assert!(check(&sim, 1024, RESERVE, true).unwrap().message.contains("500 requests in flight need 1126 open files"));
    }

    #[test]
    fn the_dashboard_never_takes_more_than_half_of_what_is_left() {
        let d = dashboard(1024, None, None, None);
        assert_eq!((d.max_connections, d.max_websockets, d.max_per_client), (216, 108, 54));
        assert!(d.lowered.is_empty());
        assert_eq!(dashboard(1 << 20, None, None, None).max_connections, 1024, "at most 1,024 by default");
        let asked = dashboard(1024, Some(1024), Some(2000), None);
        assert_eq!((asked.max_connections, asked.max_websockets), (432, 432));
        assert!(asked.lowered[0].starts_with("--max-connections 1024 lowered to 432 (caplab's open-file limit is 1024"), "{:?}", asked.lowered);
        assert_eq!(dashboard(65_536, Some(50), Some(10), Some(5)), Dashboard { max_connections: 50, max_websockets: 10, max_per_client: 5, lowered: vec![] });
    }
}
