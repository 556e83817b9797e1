//! caplab: an LLM-serving capacity lab that runs next to vLLM on a GPU pod.
//!
//! Data flows one way: spec (form, API or TOML) → `engine` (scheduler → workers →
//! samples → aggregator) → `runs` (view, samples, files) → `server` (WebSocket,
//! downloads) and `headless` (terminal). `telemetry` reads the target's /metrics and the
//! GPUs beside each run. `sim` is the built-in simulated vLLM.

pub mod cli;
pub mod engine;
pub mod export;
pub mod fd_limit;
pub mod headless;
pub mod import;
pub mod lab;
pub mod limits;
pub mod report;
pub mod runs;
pub mod secrets;
pub mod server;
pub mod sim;
pub mod spec_input;
pub mod store;
pub mod target;
pub mod targets;
pub mod telemetry;
pub mod workload;

/// Milliseconds for a note: "12.3", or "–" when unknown.
pub fn fmt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{v:.1}"))
}
