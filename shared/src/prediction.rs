//! "What would this run do on another GPU?" (`GET /api/runs/{id}/predict?gpu=KEY`): a finished
//! run's cells replayed by the calibrated simulator with another GPU's roofline, each number
//! with the interval the simulator's published (leave-one-model-out) errors give. Always shown
//! labelled PREDICTED: no measurement stands behind it.

use serde::{Deserialize, Serialize};

/// A prediction of a measured run's grid on another GPU.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Prediction {
    /// The run whose cells (loads, prompt lengths, prefix-cache hits) were replayed.
    pub run_id: String,
    /// The GPU predicted: its profile's key and name.
    pub gpu_key: String,
    pub gpu: String,
    /// The model profile the replay used (its shapes), and the run's own model name.
    pub model: String,
    pub run_model: String,
    /// The GPU label of the measured run.
    pub measured_gpu: String,
    /// The engine the calibration models, e.g. "vLLM 0.26.0".
    pub engine: String,
    /// The profile's typical $/hour, for $/M tokens.
    pub usd_per_hour: Option<f64>,
    pub cells: Vec<PredictedCell>,
    /// What no measurement has checked, and where the band comes from, in words.
    pub caveats: Vec<String>,
    /// The frontier: the measured run's cells with the prediction overlaid (dashed, banded).
    pub frontier_svg: String,
}

/// One cell of the run, predicted. A range is (lowest, highest) a measurement could take given
/// the published errors in the cell's concurrency band; None where the calibration publishes none.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct PredictedCell {
    pub concurrency: u32,
    pub max_new_tokens: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u32>,
    /// The prompt tokens a request of the measured cell had (mean of the server's count), and
    /// how many of them its prefix cache served.
    pub prompt_tokens: u32,
    pub cached_tokens: u32,
    pub output_tok_s: f64,
    pub output_tok_s_range: Option<(f64, f64)>,
    pub e2e_p95_ms: f64,
    pub e2e_p95_range: Option<(f64, f64)>,
    pub ttft_p95_ms: f64,
    pub ttft_p95_range: Option<(f64, f64)>,
    pub tpot_p95_ms: f64,
    pub tpot_p95_range: Option<(f64, f64)>,
    /// What bounds the cell in the replay: "GPU", "engine CPU" or "front end".
    pub bound_by: String,
    /// The measured cell's output tok/s, beside.
    pub measured_output_tok_s: f64,
    /// The measured cell's p95 end to end (ms), beside.
    pub measured_e2e_p95_ms: Option<f64>,
}

impl PredictedCell {
    pub fn label(&self) -> String {
        let base = format!("c{} × {}", self.concurrency, self.max_new_tokens);
        match self.input_tokens {
            Some(n) => format!("{base} ({n} in)"),
            None => base,
        }
    }
}

impl Prediction {
    /// $ per million output tokens at `usd_per_hour` and `tok_s` (None without a price or tokens).
    pub fn usd_per_m_tokens(usd_per_hour: Option<f64>, tok_s: f64) -> Option<f64> {
        usd_per_hour.filter(|_| tok_s > 0.0).map(|p| p / (tok_s * 3600.0) * 1e6)
    }
}
