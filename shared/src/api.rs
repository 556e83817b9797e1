//! The answers of the API's small routes (`/api/whoami`, `/api/targets`, `/api/defaults`,
//! `/api/runs/{id}/share`), typed once for the server and the dashboard.

use serde::{Deserialize, Serialize};

use crate::spec::ExperimentSpec;

/// Who the caller is (`GET /api/whoami`; also the answer of `POST /api/viewer-link/rotate`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct WhoAmI {
    /// "operator" or "viewer".
    pub role: String,
    /// Whether tokens are required at all (false under `--no-auth`).
    pub auth: bool,
    /// The operator's read-only viewer link (a path with its token); None for a viewer.
    pub viewer_link: Option<String>,
}

impl WhoAmI {
    pub fn is_operator(&self) -> bool {
        self.role == "operator"
    }
}

/// A server the operator allowed (`GET /api/targets`); a viewer gets the name alone.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct AllowedTarget {
    pub name: String,
    /// Empty for a viewer: internal addresses are the operator's.
    #[serde(default)]
    pub url: String,
}

/// What the form starts from (`GET /api/defaults`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Defaults {
    pub spec: ExperimentSpec,
    /// Documents in the built-in batch workload (a batch cell's default requests = documents × repeat).
    pub documents: u32,
    pub chat_prompts: u32,
    pub default_target: String,
    /// A first run worth seeing, one click away: the notes' chat grid, sized to end in about a
    /// minute, on a simulated GPU (None when this caplab has no simulated target).
    pub quick_start: Option<ExperimentSpec>,
    /// Typical on-demand $/hour of the GPUs caplab has profiles of (data/profiles/gpus.toml).
    #[serde(default)]
    pub gpu_prices: Vec<GpuPrice>,
}

/// A GPU profile's typical price.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct GpuPrice {
    /// The profile's key ("a100-80gb") and name ("NVIDIA A100 80GB SXM").
    pub key: String,
    pub name: String,
    pub usd_per_hour: f64,
}

impl Defaults {
    /// The typical $/hour of the GPU a run's label names (its profile's name or key), if any.
    pub fn price_for(&self, gpu_label: &str) -> Option<f64> {
        let lower = gpu_label.to_ascii_lowercase();
        self.gpu_prices.iter().find(|p| lower.contains(&p.name.to_ascii_lowercase()) || lower.contains(&p.key)).map(|p| p.usd_per_hour)
    }
}

/// `POST /api/runs/{id}/share`: whether viewers may see a run.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShareRequest {
    pub shared: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gpu_label_finds_its_profile_price() {
        let d = Defaults {
            gpu_prices: vec![GpuPrice { key: "a100-80gb".into(), name: "NVIDIA A100 80GB SXM".into(), usd_per_hour: 1.49 }],
            ..Default::default()
        };
        assert_eq!(d.price_for("NVIDIA A100 80GB SXM · Qwen2.5-1.5B (simulated)"), Some(1.49));
        assert_eq!(d.price_for("my a100-80gb pod"), Some(1.49));
        assert_eq!(d.price_for("rtx-pod"), None);
    }
}
