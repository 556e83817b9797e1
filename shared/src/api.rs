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
}

/// `POST /api/runs/{id}/share`: whether viewers may see a run.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShareRequest {
    pub shared: bool,
}
