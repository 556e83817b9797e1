//! The experiment specification: what the form, the API, the CLI's TOML files and
//! the engine all speak, and its validation (one error per offending field).

use serde::{Deserialize, Serialize};

/// Which workload from the user's notes a run executes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// Streaming chat completions (`/v1/chat/completions`) over the chat prompts.
    Chat,
    /// Batch summarization (`/v1/completions`) of the `[DOC]` documents with the notes' prompt.
    Batch,
}

impl Workload {
    pub fn as_str(self) -> &'static str {
        match self {
            Workload::Chat => "chat",
            Workload::Batch => "batch",
        }
    }

    /// The notes' default SLO: chat p95 end-to-end < 3 s, batch < 30 s.
    pub fn default_e2e_slo_ms(self) -> f64 {
        match self {
            Workload::Chat => 3_000.0,
            Workload::Batch => 30_000.0,
        }
    }
}

/// The user's own documents (batch) or prompts (chat), used instead of the built-in ones. Given
/// by `id` (an upload to this caplab, `POST /api/inputs`) or, in `caplab run`'s files, by `file`
/// (a path, relative to the experiment file); caplab fills in the rest when it admits the run,
/// so a run's spec says what it sent: name, format, count and content hash.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct InputsRef {
    /// The first 16 hex digits of the content's SHA-256: the same inputs have the same id.
    pub id: String,
    /// `caplab run` only: the file or folder to read.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub file: String,
    /// The file's name as given.
    pub name: String,
    /// How it was read, e.g. "[DOC] documents", "JSONL messages", "ShareGPT".
    pub format: String,
    /// Documents or prompts it holds.
    pub items: u32,
    /// Which workload they are for.
    pub workload: Option<Workload>,
    /// A trace (arrival times with their lengths): the time from its first arrival to its
    /// last, in seconds. None: documents or prompts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
}

impl InputsRef {
    /// Whether these inputs are a trace to replay.
    pub fn is_trace(&self) -> bool {
        self.duration_s.is_some()
    }
}

/// A distribution of lengths in tokens, each request drawing its own (seeded), clamped to
/// [min, max] (GuideLLM's and vLLM's benchmarks describe synthetic lengths so).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LengthDist {
    pub kind: DistKind,
    pub mean: f64,
    /// Uniform: ignored (min..=max is the range).
    #[serde(default)]
    pub stdev: f64,
    pub min: u32,
    pub max: u32,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DistKind {
    Uniform,
    Normal,
    /// Log-normal with the given mean and standard deviation (of the lengths, not their logs).
    Lognormal,
}

impl LengthDist {
    /// Why this distribution cannot be drawn from, naming `field`.
    fn problems(&self, field: &str) -> Option<FieldError> {
        let ok = self.min >= 1
            && self.min <= self.max
            && self.max <= limits::MAX_INPUT_TOKENS
            && self.mean.is_finite()
            && self.stdev.is_finite()
            && self.stdev >= 0.0
            && (self.kind == DistKind::Uniform || (self.mean >= f64::from(self.min) && self.mean <= f64::from(self.max)));
        (!ok).then(|| FieldError::new(field, format!("give 1 ≤ min ≤ max ≤ {}, a mean between them and a stdev ≥ 0", limits::MAX_INPUT_TOKENS)))
    }
}

/// How requests are issued.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LoadMode {
    /// Closed loop: `concurrency` workers, each sends its next request when the last one ends.
    #[default]
    Closed,
    /// Open loop: arrivals at `rate` requests/s with gamma-distributed gaps
    /// (`burstiness` = shape; 1 = Poisson), optionally capped at `max_in_flight`.
    Rate,
}

impl LoadMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LoadMode::Closed => "closed",
            LoadMode::Rate => "rate",
        }
    }
}

/// In a closed-loop SLO search, each probe sends at least this many measured requests per
/// worker (`cell_requests` raises it), so every candidate concurrency is actually reached.
pub const SEARCH_REQUESTS_PER_WORKER: u32 = 2;

/// Service-level objectives. A cell passes when every set objective holds at p95;
/// a request is "good" (counts toward goodput) when it meets every set objective.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Slo {
    /// End-to-end latency bound in ms; absent = the workload's default (chat 3 000, batch 30 000).
    pub e2e_ms: Option<f64>,
    /// Time-to-first-token bound in ms (optional).
    pub ttft_ms: Option<f64>,
    /// Time-per-output-token bound in ms (optional).
    pub tpot_ms: Option<f64>,
}

impl Slo {
    /// The objectives in words: "p95 end-to-end ≤ 3000 ms" (then TTFT and TPOT where set).
    pub fn words(&self) -> String {
        let parts: Vec<String> = [("end-to-end", self.e2e_ms), ("TTFT", self.ttft_ms), ("TPOT", self.tpot_ms)]
            .into_iter()
            .filter_map(|(name, v)| v.map(|v| format!("p95 {name} ≤ {v:.0} ms")))
            .collect();
        if parts.is_empty() {
            "no latency objective".into()
        } else {
            parts.join(", ")
        }
    }

    /// The objectives in force for `workload`, with the default end-to-end bound filled in.
    pub fn effective(&self, workload: Workload) -> Slo {
        Slo {
            e2e_ms: Some(self.e2e_ms.unwrap_or_else(|| workload.default_e2e_slo_ms())),
            ttft_ms: self.ttft_ms,
            tpot_ms: self.tpot_ms,
        }
    }
}

/// A whole experiment: one cell, or a grid of cells (every combination of the lists).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ExperimentSpec {
    /// Free label shown in lists and files.
    pub name: String,
    pub workload: Workload,
    /// Which server to load: over HTTP, the name of a target the operator allowed
    /// (`--target NAME=URL`; `sim` is the built-in simulator); in `caplab run`'s files, a URL.
    /// Empty = the default target.
    pub target: String,
    /// Model id sent in requests; empty = the first model the target lists.
    pub model: String,
    /// GPU label written into results (the notes' `gpu` column).
    pub gpu: String,
    pub mode: LoadMode,
    /// Closed loop: one cell per value. Rate mode: ignored.
    pub concurrency: Vec<u32>,
    /// One cell per value (`max_tokens` of each request).
    pub max_new_tokens: Vec<u32>,
    /// Synthetic prompts of exactly this many tokens, as the target counts them (its tokenize
    /// endpoint), each request's unique (a random head, so the prefix cache does not flatter
    /// them); one cell per value. Empty: the workload's documents or prompts.
    pub input_tokens: Vec<u32>,
    /// Synthetic prompts whose lengths are drawn per request from this distribution (instead of
    /// the `input_tokens` axis).
    pub input_dist: Option<LengthDist>,
    /// Output lengths drawn per request from this distribution (`max_tokens` of each request;
    /// exact where the server can be made to, as with `ignore_eos`), instead of max_new_tokens.
    pub output_dist: Option<LengthDist>,
    /// Chat from a ShareGPT file: each request's `max_tokens` is its conversation's recorded
    /// answer's length in tokens, as the target counts it (as `vllm bench serve` does), instead
    /// of max_new_tokens.
    pub recorded_output_lengths: bool,
    /// Synthetic prompts: their first this many tokens are shared (as a system prompt would
    /// be), so the server's prefix cache can serve them; 0 = every prompt its own from the start.
    pub prefix_tokens: u32,
    /// How many different shared prefixes requests take in turn (1 = all share one).
    pub prefix_groups: u32,
    /// Chat, closed loop: each worker is a user holding a conversation of this many turns;
    /// every turn resends the whole history (the earlier prompts and the server's own replies)
    /// with a new user message. Each turn is one request. 1 = single requests.
    pub turns: u32,
    /// Seconds a user waits after a reply before sending the next turn of its conversation (the
    /// next turn's scheduled time is when the wait ends: it is not counted in any latency).
    pub think_time_s: f64,
    /// Rate mode: one cell per value, in requests/s.
    pub rate: Vec<f64>,
    /// Trace replay (`inputs` a trace, rate mode): one cell per value, the trace's arrival times
    /// divided by it (10 = ten times faster); each cell replays every request of the trace.
    pub speedup: Vec<f64>,
    /// Rate mode: gamma shape of the inter-arrival gaps (1 = Poisson; lower = burstier).
    pub burstiness: f64,
    /// Rate mode: most requests in flight at once (0 = unbounded); extra arrivals wait client-side.
    pub max_in_flight: u32,
    /// Measured requests per cell; 0 = the workload's default (chat 64, batch documents × repeat).
    pub requests: u32,
    /// Batch: how many times the document set is repeated when `requests` is 0.
    pub repeat: u32,
    /// Closed loop: each cell sends at least `requests_per_worker × concurrency` measured
    /// requests, so a high-concurrency cell of a grid still runs several full waves; 0 = off.
    pub requests_per_worker: u32,
    /// Requests per cell sent first and left out of every statistic.
    pub warmup: u32,
    /// A request that has not finished after this many seconds is ended as a `timeout` error.
    pub timeout_s: f64,
    /// Ask for exactly `max_new_tokens`, by the target's own means (`ignore_eos` on vLLM, SGLang,
    /// llama.cpp and the simulator); servers with none get no such field (`ServerKind::length_control`).
    pub ignore_eos: bool,
    pub slo: Slo,
    /// Seed for arrival times in rate mode.
    pub seed: u64,
    /// The run stops itself when at least this share of the last `error_window` finished requests
    /// failed (0 < x ≤ 1; the default 1 stops it only when all of them failed: a dead target is
    /// not hammered for the rest of the run).
    pub max_error_rate: f64,
    /// How many of the latest finished requests `max_error_rate` looks at.
    pub error_window: u32,
    /// SLO search (one max_new_tokens): instead of the whole grid, run only the cells needed to
    /// find the highest of the `concurrency` (closed loop) or `rate` (open loop) candidates
    /// that meets the SLO (bracket, then bisect; see the `search` module), each probe measuring
    /// at least 20 requests and, in a closed loop, at least 2 × its concurrency (raised by
    /// `cell_requests`). Cells it did not need are left out.
    pub search: bool,
    /// The user's own documents or prompts (None: the built-in ones, `data/`).
    pub inputs: Option<InputsRef>,
}

impl Default for ExperimentSpec {
    fn default() -> Self {
        ExperimentSpec {
            name: String::new(),
            workload: Workload::Batch,
            target: String::new(),
            model: String::new(),
            gpu: "unlabelled".into(),
            mode: LoadMode::Closed,
            concurrency: vec![16],
            max_new_tokens: vec![256],
            input_tokens: vec![],
            input_dist: None,
            output_dist: None,
            recorded_output_lengths: false,
            prefix_tokens: 0,
            prefix_groups: 1,
            turns: 1,
            think_time_s: 0.0,
            rate: vec![],
            speedup: vec![],
            burstiness: 1.0,
            max_in_flight: 0,
            requests: 0,
            repeat: 4,
            requests_per_worker: 0,
            warmup: 0,
            timeout_s: 300.0,
            ignore_eos: true,
            slo: Slo::default(),
            seed: 0,
            max_error_rate: 1.0,
            error_window: 50,
            search: false,
            inputs: None,
        }
    }
}

/// How hard a cell loads the server: a closed loop's workers, or an open loop's arrivals.
/// One value, so a cell is never both (or neither).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Load {
    /// `concurrency` workers, each sending its next request when its last one ends.
    Closed { concurrency: u32 },
    /// Arrivals at `rps` requests/s.
    Rate { rps: f64 },
}

impl Load {
    /// The level on the load axis, for ordering cells: workers or requests/s.
    pub fn level(self) -> f64 {
        match self {
            Load::Closed { concurrency } => f64::from(concurrency),
            Load::Rate { rps } => rps,
        }
    }

    /// Closed-loop workers; 0 in an open loop (as files and tables write it).
    pub fn concurrency(self) -> u32 {
        match self {
            Load::Closed { concurrency } => concurrency,
            Load::Rate { .. } => 0,
        }
    }

    /// Open-loop requests/s; None in a closed loop.
    pub fn rate(self) -> Option<f64> {
        match self {
            Load::Closed { .. } => None,
            Load::Rate { rps } => Some(rps),
        }
    }

    /// The pair results and files carry (`concurrency`, `rate`) read back: a rate makes it open.
    pub fn of(concurrency: u32, rate: Option<f64>) -> Load {
        match rate {
            Some(rps) => Load::Rate { rps },
            None => Load::Closed { concurrency },
        }
    }

    /// "c16" or "2.5 rps".
    pub fn label(self) -> String {
        match self {
            Load::Closed { concurrency } => format!("c{concurrency}"),
            Load::Rate { rps } => format!("{rps} rps"),
        }
    }
}

/// One cell of a grid: the parameters a single measured run uses. Written as before the `Load`
/// enum (`concurrency`, 0 in an open loop, and `rate`), so older files read back.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(from = "CellSpecFile", into = "CellSpecFile")]
pub struct CellSpec {
    pub index: u32,
    pub load: Load,
    pub max_new_tokens: u32,
    /// Synthetic prompts of this many tokens (the spec's `input_tokens` axis); None: the workload's own.
    pub input_tokens: Option<u32>,
}

/// `CellSpec` as files and the API write it.
#[derive(Serialize, Deserialize)]
struct CellSpecFile {
    index: u32,
    concurrency: u32,
    max_new_tokens: u32,
    rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input_tokens: Option<u32>,
}

impl From<CellSpecFile> for CellSpec {
    fn from(f: CellSpecFile) -> Self {
        CellSpec { index: f.index, load: Load::of(f.concurrency, f.rate), max_new_tokens: f.max_new_tokens, input_tokens: f.input_tokens }
    }
}

impl From<CellSpec> for CellSpecFile {
    fn from(c: CellSpec) -> Self {
        CellSpecFile { index: c.index, concurrency: c.load.concurrency(), max_new_tokens: c.max_new_tokens, rate: c.load.rate(), input_tokens: c.input_tokens }
    }
}

impl CellSpec {
    /// A short human label, e.g. `c16 × 256`, `2.5 rps × 256`, or with synthetic prompts
    /// `c16 × 256 (2048 in)`.
    pub fn label(&self) -> String {
        let base = format!("{} × {}", self.load.label(), self.max_new_tokens);
        match self.input_tokens {
            Some(n) => format!("{base} ({n} in)"),
            None => base,
        }
    }
}

/// A validation failure tied to the spec field (JSON key) it concerns.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), message: message.into() }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Upper bounds that reject absurd input before any request is sent.
pub mod limits {
    pub const MAX_CONCURRENCY: u32 = 10_000;
    pub const MAX_NEW_TOKENS: u32 = 131_072;
    pub const MAX_INPUT_TOKENS: u32 = 1_048_576;
    /// Turns of one conversation (each resends the whole history).
    pub const MAX_TURNS: u32 = 100;
    pub const MAX_THINK_TIME_S: f64 = 600.0;
    pub const MAX_REQUESTS: u32 = 1_000_000;
    pub const MAX_WARMUP: u32 = 10_000;
    pub const MAX_REPEAT: u32 = 10_000;
    pub const MAX_RATE: f64 = 100_000.0;
    /// One request a minute: below it a cell's few requests would hold the target for hours
    /// (1e-7 requests/s once held it for a day) and measure nothing but idle gaps.
    pub const MIN_RATE: f64 = 1.0 / 60.0;
    pub const MAX_CELLS: usize = 256;
    pub const MAX_TIMEOUT_S: f64 = 24.0 * 3600.0;
    pub const MAX_LABEL: usize = 200;
}

/// Fields a spec must state itself, with the hint shown when one is missing: no load starts
/// from an empty body or file.
pub const REQUIRED_FIELDS: &[(&str, &str)] = &[("workload", "required: \"chat\" or \"batch\"")];

impl ExperimentSpec {
    /// One error per required field that `has` says the input lacks.
    pub fn missing_required(has: impl Fn(&str) -> bool) -> Vec<FieldError> {
        REQUIRED_FIELDS.iter().filter(|(field, _)| !has(field)).map(|(field, hint)| FieldError::new(field, *hint)).collect()
    }

    /// Every problem with the spec, one entry per field; empty when it can run.
    pub fn validate(&self) -> Vec<FieldError> {
        use limits::*;
        let mut errs = Vec::new();
        let mut check = |ok: bool, field: &str, msg: String| {
            if !ok {
                errs.push(FieldError::new(field, msg));
            }
        };
        check(self.name.len() <= MAX_LABEL, "name", format!("at most {MAX_LABEL} characters"));
        check(self.gpu.len() <= MAX_LABEL, "gpu", format!("at most {MAX_LABEL} characters"));
        check(self.model.len() <= MAX_LABEL, "model", format!("at most {MAX_LABEL} characters"));
        check(self.target.len() <= MAX_LABEL, "target", format!("at most {MAX_LABEL} characters"));
        match self.mode {
            LoadMode::Closed => {
                check(self.rate.is_empty(), "rate", "rates apply only to mode = \"rate\" (open loop)".into());
                check(!self.concurrency.is_empty(), "concurrency", "give at least one concurrency".into());
                check(
                    self.concurrency.iter().all(|&c| (1..=MAX_CONCURRENCY).contains(&c)),
                    "concurrency",
                    format!("each concurrency must be between 1 and {MAX_CONCURRENCY}"),
                );
            }
            LoadMode::Rate if self.trace().is_some() => {
                check(self.rate.is_empty(), "rate", "a trace sets its own arrival times: give speedup (1 = as recorded, 10 = ten times faster), not rate".into());
                check(!self.speedup.is_empty(), "speedup", "give at least one speedup for the trace (1 = as recorded)".into());
                check(self.speedup.iter().all(|&x| x.is_finite() && x > 0.0 && x <= 10_000.0), "speedup", "each speedup must be above 0 and at most 10000".into());
                check(self.input_tokens.is_empty(), "input_tokens", "a trace gives each request's prompt length".into());
                check(self.max_new_tokens.len() == 1, "max_new_tokens", "a trace gives each request's output length: leave one max_new_tokens (it is not used)".into());
            }
            LoadMode::Rate => {
                check(!self.rate.is_empty(), "rate", "give at least one rate (requests/s)".into());
                check(
                    self.rate.iter().all(|&r| r.is_finite() && (MIN_RATE..=MAX_RATE).contains(&r)),
                    "rate",
                    format!("each rate must be at least one request a minute ({MIN_RATE:.4} requests/s: slower, a cell would hold the target for hours) and at most {MAX_RATE} requests/s"),
                );
                check(
                    self.burstiness.is_finite() && self.burstiness > 0.0 && self.burstiness <= 100.0,
                    "burstiness",
                    "must be above 0 and at most 100 (1 = Poisson)".into(),
                );
                check(
                    self.max_in_flight <= MAX_CONCURRENCY,
                    "max_in_flight",
                    format!("at most {MAX_CONCURRENCY} (0 = unbounded)"),
                );
            }
        }
        check(
            self.trace().is_none() || self.mode == LoadMode::Rate,
            "mode",
            "a trace is replayed in open loop: give mode = \"rate\" and a speedup".into(),
        );
        check(self.trace().is_some() || self.speedup.is_empty(), "speedup", "speedup replays a trace: give a trace file as the inputs".into());
        check(!self.max_new_tokens.is_empty(), "max_new_tokens", "give at least one max_new_tokens".into());
        check(
            self.max_new_tokens.iter().all(|&m| (1..=MAX_NEW_TOKENS).contains(&m)),
            "max_new_tokens",
            format!("each max_new_tokens must be between 1 and {MAX_NEW_TOKENS}"),
        );
        check(
            self.input_tokens.iter().all(|&n| (1..=MAX_INPUT_TOKENS).contains(&n)),
            "input_tokens",
            format!("each input_tokens must be between 1 and {MAX_INPUT_TOKENS}"),
        );
        check(
            self.input_tokens.is_empty() || self.inputs.is_none(),
            "input_tokens",
            "give synthetic input lengths or your own documents/prompts, not both".into(),
        );
        check(
            self.prefix_tokens == 0 || (!self.input_tokens.is_empty() && self.input_tokens.iter().all(|&n| n > self.prefix_tokens)),
            "prefix_tokens",
            "a shared prefix is part of synthetic prompts: give input_tokens, each longer than the prefix".into(),
        );
        check((1..=MAX_REPEAT).contains(&self.prefix_groups), "prefix_groups", format!("must be between 1 and {MAX_REPEAT}"));
        check((1..=MAX_TURNS).contains(&self.turns), "turns", format!("must be between 1 and {MAX_TURNS} (1 = single requests)"));
        check(
            self.turns == 1 || (self.workload == Workload::Chat && self.mode == LoadMode::Closed),
            "turns",
            "conversations are chat in a closed loop: each worker is one user; give workload = \"chat\" and mode = \"closed\"".into(),
        );
        check(
            self.think_time_s.is_finite() && (0.0..=MAX_THINK_TIME_S).contains(&self.think_time_s),
            "think_time_s",
            format!("must be between 0 and {MAX_THINK_TIME_S} s"),
        );
        check(self.think_time_s == 0.0 || self.turns > 1, "think_time_s", "a think time separates the turns of a conversation: give turns above 1".into());
        for (field, dist) in [("input_dist", &self.input_dist), ("output_dist", &self.output_dist)] {
            if let Some(e) = dist.as_ref().and_then(|d| d.problems(field)) {
                check(false, field, e.message);
            }
        }
        check(
            self.input_dist.is_none() || (self.input_tokens.is_empty() && self.inputs.is_none()),
            "input_dist",
            "give a length distribution, the input_tokens axis or your own inputs: one of them".into(),
        );
        check(
            !self.recorded_output_lengths || (self.workload == Workload::Chat && self.inputs.is_some() && self.output_dist.is_none() && self.max_new_tokens.len() == 1),
            "recorded_output_lengths",
            "output lengths from recorded answers need chat on your own ShareGPT file, one max_new_tokens (it is not used) and no output_dist".into(),
        );
        check(
            self.output_dist.is_none() || self.max_new_tokens.len() == 1,
            "output_dist",
            "output lengths come from the distribution: leave one max_new_tokens (it is not used)".into(),
        );
        check(self.requests <= MAX_REQUESTS, "requests", format!("at most {MAX_REQUESTS} per cell"));
        check(
            (1..=MAX_REPEAT).contains(&self.repeat),
            "repeat",
            format!("must be between 1 and {MAX_REPEAT}"),
        );
        check(self.warmup <= MAX_WARMUP, "warmup", format!("at most {MAX_WARMUP} per cell"));
        check(
            self.max_error_rate.is_finite() && self.max_error_rate > 0.0 && self.max_error_rate <= 1.0,
            "max_error_rate",
            "must be above 0 and at most 1 (a share of the last error_window requests)".into(),
        );
        check((1..=MAX_WARMUP).contains(&self.error_window), "error_window", format!("must be between 1 and {MAX_WARMUP}"));
        if self.search {
            let candidates = if self.mode == LoadMode::Closed { self.concurrency.len() } else { self.rate.len() };
            check(candidates >= 2, "search", format!("give at least two {} candidates to search between", if self.mode == LoadMode::Closed { "concurrency" } else { "rate" }));
            check(self.max_new_tokens.len() == 1, "search", "give one max_new_tokens: the search looks for the highest load at one output length".into());
        }
        check(self.requests_per_worker <= MAX_REPEAT, "requests_per_worker", format!("at most {MAX_REPEAT} (0 = off)"));
        check(
            self.mode == LoadMode::Rate || self.concurrency.iter().all(|&c| c.saturating_mul(self.requests_per_worker) <= MAX_REQUESTS),
            "requests_per_worker",
            format!("requests_per_worker × concurrency must stay at most {MAX_REQUESTS} per cell"),
        );
        check(
            self.timeout_s.is_finite() && self.timeout_s > 0.0 && self.timeout_s <= MAX_TIMEOUT_S,
            "timeout_s",
            format!("must be above 0 and at most {MAX_TIMEOUT_S} s"),
        );
        for (field, v) in [("slo.e2e_ms", self.slo.e2e_ms), ("slo.ttft_ms", self.slo.ttft_ms), ("slo.tpot_ms", self.slo.tpot_ms)] {
            if let Some(v) = v {
                check(v.is_finite() && v > 0.0, field, "must be a positive number of milliseconds".into());
            }
        }
        let cells = self.axis_len() * self.max_new_tokens.len() * self.input_tokens.len().max(1);
        let (axis, bigger) = match self.mode {
            LoadMode::Closed => ("concurrency", self.concurrency.len() >= self.max_new_tokens.len()),
            LoadMode::Rate => ("rate", self.rate.len() >= self.max_new_tokens.len()),
        };
        let field = if bigger { axis } else { "max_new_tokens" };
        check(cells <= MAX_CELLS, field, format!("the grid has {cells} cells; at most {MAX_CELLS}"));
        errs
    }

    /// Problems only the target can reveal: a model it does not serve, outputs longer than its context.
    pub fn check_against(&self, target: &crate::TargetInfo) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if !target.models.is_empty() && !target.models.contains(&self.model) {
            errs.push(FieldError::new("model", format!("the target serves {}, not {:?}", target.models.join(", "), self.model)));
        }
        if let Some(ctx) = target.max_model_len {
            if let Some(&m) = self.max_new_tokens.iter().find(|&&m| m >= ctx) {
                errs.push(FieldError::new(
                    "max_new_tokens",
                    format!("{m} does not fit the target's context of {ctx} tokens (prompt included)"),
                ));
            }
        }
        errs
    }

    /// "3-turn conversations, 2 s think time" for a run of conversations; None for single requests.
    pub fn conversation_words(&self) -> Option<String> {
        (self.turns > 1).then(|| {
            let think = if self.think_time_s > 0.0 { format!(", {} s think time", self.think_time_s) } else { String::new() };
            format!("{}-turn conversations{think}", self.turns)
        })
    }

    /// The model, where a label beside the GPU's should name it: not when the GPU label names
    /// it already (a simulated GPU's "NVIDIA A100 80GB SXM · Qwen/… (simulated)"), so it is said once.
    pub fn model_beside_gpu(&self) -> Option<&str> {
        (!self.model.is_empty() && !self.gpu.contains(&self.model)).then_some(self.model.as_str())
    }

    /// The GPU label results carry: a simulated target's numbers never carry a bare GPU name.
    pub fn results_label(&self, simulated: bool) -> String {
        let gpu = self.gpu.trim();
        match (simulated, gpu) {
            (false, _) => gpu.to_string(),
            (true, "" | "unlabelled") => "simulated".into(),
            (true, g) if g.to_ascii_lowercase().contains("simulated") => g.to_string(),
            (true, g) => format!("{g} (simulated)"),
        }
    }

    fn axis_len(&self) -> usize {
        match self.mode {
            LoadMode::Closed => self.concurrency.len(),
            LoadMode::Rate if self.trace().is_some() => self.speedup.len(),
            LoadMode::Rate => self.rate.len(),
        }
    }

    /// The trace these inputs are, if they are one.
    pub fn trace(&self) -> Option<&InputsRef> {
        self.inputs.as_ref().filter(|r| r.is_trace())
    }

    /// A replay's mean offered rate at `speedup` (requests/s), once its trace is known.
    pub fn trace_rate(&self, speedup: f64) -> Option<f64> {
        let t = self.trace()?;
        let span = t.duration_s.filter(|d| *d > 0.0)?;
        Some((f64::from(t.items) / span * speedup * 1000.0).round() / 1000.0)
    }

    /// The grid's cells in run order: outer loop over concurrency (or rate), then input_tokens
    /// (when given), inner over max_new_tokens, as the notes' grid script does.
    pub fn cells(&self) -> Vec<CellSpec> {
        let mut out = Vec::new();
        let axis: Vec<Load> = match self.mode {
            LoadMode::Closed => self.concurrency.iter().map(|&concurrency| Load::Closed { concurrency }).collect(),
            // A replay's cells by speedup, each at the trace's mean offered rate.
            LoadMode::Rate if self.trace().is_some() => self.speedup.iter().map(|&x| Load::Rate { rps: self.trace_rate(x).unwrap_or(x) }).collect(),
            LoadMode::Rate => self.rate.iter().map(|&rps| Load::Rate { rps }).collect(),
        };
        let inputs: Vec<Option<u32>> = if self.input_tokens.is_empty() { vec![None] } else { self.input_tokens.iter().map(|&n| Some(n)).collect() };
        for load in axis {
            for &input_tokens in &inputs {
                for &max_new_tokens in &self.max_new_tokens {
                    out.push(CellSpec { index: out.len() as u32, load, max_new_tokens, input_tokens });
                }
            }
        }
        out
    }

    /// Measured requests of `cell`, given how many documents (batch) the workload has: `requests`
    /// (0 = chat 64, batch documents × repeat), raised to `requests_per_worker × concurrency`,
    /// and in a closed-loop SLO search to `SEARCH_REQUESTS_PER_WORKER × concurrency`, so that
    /// every candidate is loaded at its concurrency (a probe of 64 requests at c256 never has
    /// more than 64 in flight, and would vouch for a load it never carried).
    pub fn cell_requests(&self, cell: &CellSpec, documents: usize) -> u32 {
        // A replay sends every request of its trace, once.
        if let Some(t) = self.trace() {
            return t.items.max(1);
        }
        let base = if self.requests > 0 {
            self.requests
        } else {
            match self.workload {
                Workload::Chat => 64,
                Workload::Batch => (documents as u32).saturating_mul(self.repeat).max(1),
            }
        };
        let per_worker = if self.search && self.mode == LoadMode::Closed {
            self.requests_per_worker.max(SEARCH_REQUESTS_PER_WORKER)
        } else {
            self.requests_per_worker
        };
        base.max(per_worker.saturating_mul(cell.load.concurrency()))
    }

    /// Every request the run sends, warm-ups included.
    pub fn total_requests(&self, documents: usize) -> u64 {
        self.cells().iter().map(|c| u64::from(self.cell_requests(c, documents)) + u64::from(self.warmup)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spec_is_valid_and_one_cell() {
        let s = ExperimentSpec::default();
        assert!(s.validate().is_empty());
        assert_eq!(s.cells().len(), 1);
        assert_eq!(s.cell_requests(&s.cells()[0], 5), 20);
        assert_eq!(s.total_requests(5), 20);
    }

    #[test]
    fn grid_order_matches_the_notes_script() {
        let s = ExperimentSpec { concurrency: vec![8, 16, 32], max_new_tokens: vec![256, 512], ..Default::default() };
        let cells: Vec<(u32, u32)> = s.cells().iter().map(|c| (c.load.concurrency(), c.max_new_tokens)).collect();
        assert_eq!(cells, vec![(8, 256), (8, 512), (16, 256), (16, 512), (32, 256), (32, 512)]);
        assert_eq!(s.cells()[5].index, 5);
    }

    #[test]
    fn bad_values_name_their_field() {
        let s = ExperimentSpec {
            concurrency: vec![0],
            max_new_tokens: vec![10_000_000],
            timeout_s: -1.0,
            target: "x".repeat(201),
            ..Default::default()
        };
        let fields: Vec<String> = s.validate().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, vec!["target", "concurrency", "max_new_tokens", "timeout_s"]);
    }

    #[test]
    fn requests_per_worker_fills_high_concurrency_cells() {
        let s = ExperimentSpec {
            workload: Workload::Chat,
            concurrency: vec![1, 128],
            requests: 8,
            requests_per_worker: 2,
            warmup: 1,
            ..Default::default()
        };
        let cells = s.cells();
        assert_eq!((s.cell_requests(&cells[0], 5), s.cell_requests(&cells[1], 5)), (8, 256));
        assert_eq!(s.total_requests(5), 8 + 1 + 256 + 1);
        let too_many = ExperimentSpec { concurrency: vec![10_000], requests_per_worker: 1_000, ..Default::default() };
        assert_eq!(too_many.validate()[0].field, "requests_per_worker");
    }

    #[test]
    fn input_length_is_a_third_axis() {
        let s = ExperimentSpec { concurrency: vec![8, 16], input_tokens: vec![512, 8192], max_new_tokens: vec![128], ..Default::default() };
        let cells: Vec<(u32, Option<u32>)> = s.cells().iter().map(|c| (c.load.concurrency(), c.input_tokens)).collect();
        assert_eq!(cells, vec![(8, Some(512)), (8, Some(8192)), (16, Some(512)), (16, Some(8192))]);
        assert_eq!(s.cells()[1].label(), "c8 × 128 (8192 in)");
        assert!(s.validate().is_empty());
        let both = ExperimentSpec { input_tokens: vec![0], inputs: Some(InputsRef::default()), ..Default::default() };
        let errs: Vec<String> = both.validate().into_iter().map(|e| e.message).collect();
        assert_eq!(errs.len(), 2, "{errs:?}");
        let big = ExperimentSpec { concurrency: (1..=16).collect(), input_tokens: (1..=4).collect(), max_new_tokens: (1..=5).collect(), ..Default::default() };
        assert!(big.validate().iter().any(|e| e.message.contains("320 cells")), "three axes multiply");
    }

    #[test]
    fn a_cells_load_is_written_as_files_always_had_it() {
        let closed = CellSpec { index: 0, load: Load::Closed { concurrency: 16 }, max_new_tokens: 256, input_tokens: None };
        let open = CellSpec { index: 1, load: Load::Rate { rps: 2.5 }, max_new_tokens: 64, input_tokens: Some(512) };
        assert_eq!(serde_json::to_value(&closed).unwrap(), serde_json::json!({"index": 0, "concurrency": 16, "max_new_tokens": 256, "rate": null}));
        assert_eq!(serde_json::to_value(&open).unwrap(), serde_json::json!({"index": 1, "concurrency": 0, "max_new_tokens": 64, "rate": 2.5, "input_tokens": 512}));
        for c in [closed, open] {
            assert_eq!(serde_json::from_value::<CellSpec>(serde_json::to_value(&c).unwrap()).unwrap(), c);
        }
        assert_eq!((Load::Closed { concurrency: 8 }.level(), Load::Rate { rps: 0.5 }.level()), (8.0, 0.5));
    }

    #[test]
    fn rate_mode_needs_rates() {
        let s = ExperimentSpec { mode: LoadMode::Rate, ..Default::default() };
        assert_eq!(s.validate()[0].field, "rate");
        let s = ExperimentSpec { mode: LoadMode::Rate, rate: vec![1.5, 3.0], ..Default::default() };
        assert!(s.validate().is_empty());
        assert_eq!(s.cells()[1].load, Load::Rate { rps: 3.0 });
        assert_eq!(s.cells()[1].label(), "3 rps × 256");
    }

    #[test]
    fn a_rate_below_one_request_a_minute_is_refused_with_the_reason() {
        let slow = ExperimentSpec { mode: LoadMode::Rate, rate: vec![1e-7], ..Default::default() };
        let e = &slow.validate()[0];
        assert_eq!(e.field, "rate");
        assert!(e.message.contains("at least one request a minute") && e.message.contains("hold the target for hours"), "{}", e.message);
        assert!(ExperimentSpec { mode: LoadMode::Rate, rate: vec![1.0 / 60.0, 0.5], ..Default::default() }.validate().is_empty());
    }

    #[test]
    fn target_checks_and_simulated_labels() {
        let target = crate::TargetInfo { models: vec!["m".into()], max_model_len: Some(2048), ..Default::default() };
        let ok = ExperimentSpec { model: "m".into(), max_new_tokens: vec![256, 512], ..Default::default() };
        assert!(ok.check_against(&target).is_empty());
        let bad = ExperimentSpec { model: "x".into(), max_new_tokens: vec![256, 4096], ..Default::default() };
        let fields: Vec<String> = bad.check_against(&target).into_iter().map(|e| e.field).collect();
        assert_eq!(fields, vec!["model", "max_new_tokens"]);
        let s = |gpu: &str| ExperimentSpec { gpu: gpu.into(), ..Default::default() };
        assert_eq!(s("RTX").results_label(true), "RTX (simulated)");
        assert_eq!(s("unlabelled").results_label(true), "simulated");
        assert_eq!(s("sim A100 (simulated)").results_label(true), "sim A100 (simulated)");
        assert_eq!(s(" RTX ").results_label(false), "RTX");
    }

    #[test]
    fn closed_loop_refuses_rates_and_big_grids_name_their_axis() {
        let s = ExperimentSpec { rate: vec![2.0], ..Default::default() };
        assert_eq!(s.validate()[0].field, "rate");
        let s = ExperimentSpec { concurrency: (1..=200).collect(), max_new_tokens: vec![1, 2], ..Default::default() };
        assert_eq!(s.validate()[0].field, "concurrency");
    }

    #[test]
    fn the_workload_must_be_stated() {
        assert_eq!(ExperimentSpec::missing_required(|_| false)[0].field, "workload");
        assert!(ExperimentSpec::missing_required(|k| k == "workload").is_empty());
    }

    #[test]
    fn slo_defaults_come_from_the_workload() {
        let slo = Slo { ttft_ms: Some(500.0), ..Default::default() };
        assert_eq!(slo.effective(Workload::Chat).e2e_ms, Some(3_000.0));
        assert_eq!(slo.effective(Workload::Batch).e2e_ms, Some(30_000.0));
        assert_eq!(slo.effective(Workload::Batch).ttft_ms, Some(500.0));
        assert_eq!(slo.effective(Workload::Chat).words(), "p95 end-to-end ≤ 3000 ms, p95 TTFT ≤ 500 ms");
        assert_eq!(Slo::default().words(), "no latency objective");
    }

    #[test]
    fn a_closed_loop_search_loads_every_candidate_at_its_concurrency() {
        // The issue's spec: c1…c256 with 64 requests a probe. Each probe is raised to 2 × c, and
        // the run's total counts the raised probes.
        let s = ExperimentSpec { workload: Workload::Chat, concurrency: vec![1, 16, 64, 256], requests: 64, search: true, max_new_tokens: vec![128], ..Default::default() };
        let per_cell: Vec<u32> = s.cells().iter().map(|c| s.cell_requests(c, 5)).collect();
        assert_eq!(per_cell, [64, 64, 128, 512]);
        assert_eq!(s.total_requests(5), 64 + 64 + 128 + 512);
        // A grid (no search) keeps what was asked: its cells say when they were not reached.
        let grid = ExperimentSpec { search: false, ..s.clone() };
        assert_eq!(grid.cell_requests(&grid.cells()[3], 5), 64);
        // requests_per_worker above 2 still wins.
        let more = ExperimentSpec { requests_per_worker: 3, ..s };
        assert_eq!(more.cell_requests(&more.cells()[3], 5), 768);
    }

    #[test]
    fn unknown_workload_is_a_deserialize_error() {
        let err = serde_json::from_str::<ExperimentSpec>(r#"{"workload":"video"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{err}");
    }
}
