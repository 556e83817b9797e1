//! What one `caplab serve` accepts from the people who may start runs on it: set by flags,
//! shown by `GET /api/limits`, checked when a run is admitted (`lab`; every breach named at once).

use caplab_shared::{ExperimentSpec, FieldError, LoadMode};
use serde::Serialize;

/// The operator's limits on runs started over HTTP.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Limits {
    /// Largest concurrency (closed loop) or in-flight cap (open loop) of any cell.
    pub max_concurrency: u32,
    /// Most requests one run may send, warm-ups included.
    pub max_requests_per_run: u64,
    pub max_new_tokens: u32,
    pub max_cells: usize,
    /// A run still going after this many seconds stops itself.
    pub max_run_duration_s: f64,
    /// Largest request body accepted (bytes).
    pub max_body_bytes: usize,
    /// Largest body of `POST /api/import` (result files dropped on the page).
    pub max_import_bytes: usize,
    /// Most runs kept; beyond it, a new run is refused until one is deleted.
    pub runs_kept: usize,
    /// A run is refused while the data folder's filesystem has less free than this (MB; 0: no floor).
    pub min_free_mb: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_concurrency: 4096,
            max_requests_per_run: 1_000_000,
            max_new_tokens: 32_768,
            max_cells: 256,
            max_run_duration_s: 24.0 * 3600.0,
            max_body_bytes: 64 * 1024,
            max_import_bytes: 16 * 1024 * 1024,
            runs_kept: 10_000,
            min_free_mb: 64,
        }
    }
}

impl Limits {
    /// Every way `spec` (sending `total_requests`) goes beyond these limits.
    pub fn check(&self, spec: &ExperimentSpec, total_requests: u64) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let (field, widest) = match spec.mode {
            LoadMode::Closed => ("concurrency", spec.concurrency.iter().copied().max().unwrap_or(0)),
            LoadMode::Rate => ("max_in_flight", spec.max_in_flight),
        };
        if widest > self.max_concurrency {
            errors.push(FieldError::new(field, format!("{widest} is above this caplab's limit of {} (--max-concurrency)", self.max_concurrency)));
        }
        if let Some(&m) = spec.max_new_tokens.iter().find(|&&m| m > self.max_new_tokens) {
            errors.push(FieldError::new("max_new_tokens", format!("{m} is above this caplab's limit of {} (--max-new-tokens)", self.max_new_tokens)));
        }
        let cells = spec.cells().len();
        if cells > self.max_cells {
            errors.push(FieldError::new("max_new_tokens", format!("the grid has {cells} cells; this caplab allows {} (--max-cells)", self.max_cells)));
        }
        if total_requests > self.max_requests_per_run {
            errors.push(FieldError::new(
                "requests",
                format!("the run would send {total_requests} requests; this caplab allows {} per run (--max-requests-per-run)", self.max_requests_per_run),
            ));
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_breach_is_named() {
        let limits = Limits { max_concurrency: 64, max_requests_per_run: 1000, max_new_tokens: 512, max_cells: 2, ..Limits::default() };
        let spec = ExperimentSpec { concurrency: vec![8, 128], max_new_tokens: vec![256, 1024], ..Default::default() };
        let fields: Vec<String> = limits.check(&spec, 5000).into_iter().map(|e| e.field).collect();
        assert_eq!(fields, vec!["concurrency", "max_new_tokens", "max_new_tokens", "requests"]);
        let ok = ExperimentSpec { concurrency: vec![8], max_new_tokens: vec![256], ..Default::default() };
        assert!(limits.check(&ok, 20).is_empty());
        let open = ExperimentSpec { mode: LoadMode::Rate, rate: vec![5.0], concurrency: vec![], max_in_flight: 100, ..Default::default() };
        assert_eq!(limits.check(&open, 20)[0].field, "max_in_flight");
    }
}
