//! The live view of a run: what the WebSocket carries and how a viewer folds it.
//!
//! The server keeps a `RunView` and changes it only by `apply`ing the same
//! `ServerMsg`s it broadcasts; a new viewer gets `Snapshot(view)` first and then
//! applies the increments, so every viewer's state equals the server's.

use serde::{Deserialize, Serialize};

use crate::result::CellResult;
use crate::server::ServerKind;
use crate::spec::ExperimentSpec;
use crate::telemetry::{push_bounded, push_gpu_bounded, GpuSample, ServerSample, TelemetrySources};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Waiting for the runs ahead of it on the same target to end (two runs loading one server
    /// at once would each measure the other's load).
    Queued,
    Running,
    /// Every cell ran to its end.
    Finished,
    /// Stopped by a user before its end; finished cells are kept.
    Stopped,
    /// Could not run (the message says why).
    Failed,
    /// caplab itself stopped (killed, crashed, the machine went down) while it ran: every
    /// request that completed before was journalled and is kept, cells recomputed from them.
    Interrupted,
}

impl RunStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(self, RunStatus::Running | RunStatus::Queued)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Finished => "finished",
            RunStatus::Stopped => "stopped",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

/// The server a run measures.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct TargetInfo {
    /// The name the operator gave it (`--target NAME=URL`; `sim` for the built-in simulator).
    #[serde(default)]
    pub name: String,
    /// Base URL (without `/v1`, without credentials).
    pub url: String,
    /// True when this is caplab's built-in simulator: its numbers are not a GPU's.
    pub simulated: bool,
    /// Which engine it is (`vllm`, `sglang`, `tgi`, `llama.cpp`, `transformers-serve`, `ollama`,
    /// `openai`, `caplab-sim`, or `openai-compatible` when not recognised).
    pub server: ServerKind,
    /// What the recognition rests on (e.g. `/v1/models owned_by "vllm"`), one item per clue.
    #[serde(default)]
    pub evidence: Vec<String>,
    /// The engine's version, when it states one (`/version`, `/info`, `/api/version`).
    #[serde(default)]
    pub version: Option<String>,
    /// Model ids from `GET /v1/models` (empty when the server does not list them).
    pub models: Vec<String>,
    /// The first model's context length, when `/v1/models` states it (vLLM does).
    #[serde(default)]
    pub max_model_len: Option<u32>,
}

/// How a profiled simulator's `/version` starts; what follows is its GPU and model.
pub const SIM_VERSION_PREFIX: &str = "caplab-sim · ";

impl TargetInfo {
    /// The GPU a simulated target models, from its `/version` ("caplab-sim · GPU · MODEL"):
    /// the label its runs get when the form leaves the GPU empty.
    pub fn simulated_gpu(&self) -> Option<&str> {
        self.version.as_deref()?.strip_prefix(SIM_VERSION_PREFIX).filter(|_| self.simulated)
    }
}

/// A run's identity and state, without its data.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RunInfo {
    pub id: String,
    /// The spec as run: `model` and `target` resolved.
    pub spec: ExperimentSpec,
    pub target: TargetInfo,
    pub status: RunStatus,
    /// Wall-clock start, ms since the Unix epoch.
    pub started_unix_ms: u64,
    /// Why it failed or stopped, when it did.
    pub message: Option<String>,
    pub cells_total: u32,
    /// Requests the whole run will send, warm-ups included.
    pub requests_total: u64,
    /// The run's answer (best configuration, max stable concurrency, p95 there), set when it ends.
    #[serde(default)]
    pub headline: Option<crate::decide::Headline>,
    /// Set when caplab did not measure these numbers: which tool did, and from which file(s)
    /// (e.g. "vllm bench serve: c16.json, c32.json"). Labelled "imported" wherever shown.
    #[serde(default)]
    pub imported_from: Option<String>,
    /// Whether viewers (the read-only link) may see this run once it has ended; the operator
    /// sets it. A run still going on, and the newest run, are always visible to them
    /// (the server's `Registry::visible_to_viewers`).
    #[serde(default)]
    pub shared: bool,
}

impl RunInfo {
    /// The run as a viewer sees it: the target's internal address and the evidence naming it
    /// left out.
    pub fn for_viewer(&self) -> RunInfo {
        let mut info = self.clone();
        info.target.url = String::new();
        info.target.evidence.clear();
        info.spec.target = String::new();
        info
    }
}

/// One sample of the run's live state, taken on a fixed interval.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct LiveTick {
    /// Seconds since the run started.
    pub t_s: f64,
    /// The cell running at this moment.
    pub cell: u32,
    /// Requests sent and not yet finished.
    pub in_flight: u32,
    /// Requests finished so far in the whole run (ok, failed and warm-up).
    pub requests_done: u64,
    /// Requests failed so far in the whole run (requests cut short by a stop are not failures).
    pub errors: u64,
    /// Output tokens per second over the last second. Live estimate: streamed text events
    /// are counted as they arrive and corrected to the server's `usage` when each request ends.
    pub output_tok_s: f64,
    /// TTFT / end-to-end percentiles of the successful requests that ended in the last 5 s (ms).
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p95_ms: Option<f64>,
    pub e2e_p50_ms: Option<f64>,
    pub e2e_p95_ms: Option<f64>,
    /// Estimated seconds left, from the pace so far.
    pub eta_s: Option<f64>,
}

/// Everything a viewer shows for one run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RunView {
    pub info: RunInfo,
    pub ticks: Vec<LiveTick>,
    /// Finished cells, in cell order.
    pub cells: Vec<CellResult>,
    /// The target's `/metrics`, scraped about twice a second (thinned like the ticks).
    #[serde(default)]
    pub server: Vec<ServerSample>,
    /// Every GPU, about once a second (thinned like the ticks).
    #[serde(default)]
    pub gpu: Vec<GpuSample>,
    /// Where those come from, or why they are missing.
    #[serde(default)]
    pub telemetry: TelemetrySources,
}

/// Server → viewer messages on a run's WebSocket.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// The whole current state; sent first, and again if a viewer fell behind.
    Snapshot { view: Box<RunView> },
    Tick { tick: LiveTick },
    CellDone { result: Box<CellResult> },
    Status { status: RunStatus, message: Option<String> },
    /// One scrape of the target's `/metrics`.
    Server { sample: ServerSample },
    /// One reading of every GPU.
    Gpu { samples: Vec<GpuSample> },
    /// Where the telemetry comes from (sent when it is known, and when a source goes away).
    Telemetry { sources: TelemetrySources },
}

/// Most ticks a view keeps. Past it, the older half is thinned to every other tick, so the
/// latest stretch keeps its full 250 ms resolution, a day-long run's snapshot stays a few hundred
/// KB, and the page's charts stay light. Server and page thin the same way (this function).
pub const MAX_TICKS: usize = 2_400;

impl RunView {
    pub fn new(info: RunInfo) -> Self {
        RunView { info, ticks: Vec::new(), cells: Vec::new(), server: Vec::new(), gpu: Vec::new(), telemetry: TelemetrySources::default() }
    }

    /// Folds one message into the view.
    pub fn apply(&mut self, msg: &ServerMsg) {
        match msg {
            ServerMsg::Snapshot { view } => *self = (**view).clone(),
            ServerMsg::Tick { tick } => push_bounded(&mut self.ticks, tick.clone(), MAX_TICKS),
            ServerMsg::Server { sample } => push_bounded(&mut self.server, sample.clone(), MAX_TICKS),
            ServerMsg::Gpu { samples } => push_gpu_bounded(&mut self.gpu, samples, 2 * MAX_TICKS),
            ServerMsg::Telemetry { sources } => self.telemetry = sources.clone(),
            ServerMsg::CellDone { result } => {
                match self.cells.iter_mut().find(|c| c.cell == result.cell) {
                    Some(existing) => *existing = (**result).clone(),
                    None => self.cells.push((**result).clone()),
                }
                self.cells.sort_by_key(|c| c.cell);
                // The run's one-line answer follows its cells (the same on the server and in
                // every viewer folding these messages).
                self.info.headline = crate::decide::Headline::of(&self.cells);
            }
            ServerMsg::Status { status, message } => {
                self.info.status = *status;
                self.info.message.clone_from(message);
            }
        }
    }

    /// Every cell ran and none had a successful request (said by the run's message and by
    /// `caplab run`'s exit code).
    pub fn every_request_failed(&self) -> bool {
        !self.cells.is_empty() && self.cells.iter().all(|c| c.requests_ok == 0 && c.requests_failed > 0)
    }

    /// The title of the run's charts (dashboard and downloads alike): what it measured, and
    /// SIMULATED where so.
    pub fn chart_title(&self) -> String {
        let info = &self.info;
        let simulated = if info.target.simulated { " — SIMULATED" } else { "" };
        let model = info.spec.model_beside_gpu().map_or(String::new(), |m| format!(" · {m}"));
        format!("{} · {}{model} · run {}{simulated}", info.spec.workload.as_str(), info.spec.gpu, info.id)
    }

    /// While the run goes on: for how long (s) no request has ended, when that is at least
    /// `threshold_s` and requests are in flight (a cell of long requests shows it is alive).
    pub fn waiting_for_an_end(&self, threshold_s: f64) -> Option<f64> {
        if self.info.status.is_terminal() {
            return None;
        }
        let last = self.ticks.last().filter(|t| t.in_flight > 0)?;
        // `requests_done` counts the whole run: the first tick with today's count saw the last end.
        let first_same = self.ticks.iter().rposition(|t| t.requests_done != last.requests_done).map_or(0, |i| i + 1);
        let since = self.ticks[first_same].t_s;
        let waited = last.t_s - since;
        (waited >= threshold_s).then_some(waited)
    }

    /// Fraction of the run's requests finished, 0..=1.
    pub fn progress(&self) -> f64 {
        if self.info.status == RunStatus::Finished {
            return 1.0;
        }
        let done = self.ticks.last().map_or(0, |t| t.requests_done);
        if self.info.requests_total == 0 {
            0.0
        } else {
            (done as f64 / self.info.requests_total as f64).min(1.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> RunInfo {
        RunInfo {
            id: "r1".into(),
            spec: ExperimentSpec::default(),
            target: TargetInfo::default(),
            status: RunStatus::Running,
            started_unix_ms: 0,
            message: None,
            cells_total: 2,
            requests_total: 40,
            headline: None,
            imported_from: None,
            shared: false,
        }
    }

    #[test]
    fn apply_folds_messages_in_order() {
        let mut v = RunView::new(info());
        v.apply(&ServerMsg::Tick { tick: LiveTick { requests_done: 10, ..Default::default() } });
        assert_eq!(v.progress(), 0.25);
        v.apply(&ServerMsg::CellDone { result: Box::new(CellResult { cell: 1, ..Default::default() }) });
        v.apply(&ServerMsg::CellDone { result: Box::new(CellResult { cell: 0, ..Default::default() }) });
        v.apply(&ServerMsg::CellDone { result: Box::new(CellResult { cell: 1, requests_ok: 7, ..Default::default() }) });
        assert_eq!(v.cells.iter().map(|c| (c.cell, c.requests_ok)).collect::<Vec<_>>(), vec![(0, 0), (1, 7)]);
        v.apply(&ServerMsg::Status { status: RunStatus::Stopped, message: Some("stopped by user".into()) });
        assert_eq!(v.info.status, RunStatus::Stopped);
        assert!(v.info.status.is_terminal());

        let mut viewer = RunView::new(info());
        viewer.apply(&ServerMsg::Snapshot { view: Box::new(v.clone()) });
        assert_eq!(viewer, v);
    }

    #[test]
    fn a_run_waiting_for_long_requests_says_for_how_long() {
        let mut v = RunView::new(info());
        let tick = |t_s: f64, done: u64, in_flight: u32| ServerMsg::Tick { tick: LiveTick { t_s, requests_done: done, in_flight, ..Default::default() } };
        for m in [tick(0.0, 0, 4), tick(1.0, 2, 4), tick(2.0, 2, 4), tick(9.0, 2, 4)] {
            v.apply(&m);
        }
        assert_eq!(v.waiting_for_an_end(5.0), Some(8.0), "no request has ended since the tick at 1 s");
        assert_eq!(v.waiting_for_an_end(10.0), None);
        v.apply(&tick(10.0, 3, 4));
        assert_eq!(v.waiting_for_an_end(0.5), None, "one just ended");
        v.apply(&tick(11.0, 3, 4));
        assert_eq!(v.waiting_for_an_end(0.5), Some(1.0));
        v.apply(&tick(20.0, 4, 0));
        assert_eq!(v.waiting_for_an_end(0.5), None, "nothing in flight: nothing to wait for");
    }

    #[test]
    fn messages_round_trip_as_tagged_json() {
        let msg = ServerMsg::Status { status: RunStatus::Finished, message: None };
        let json = serde_json::to_string(&msg).unwrap();
        assert_eq!(json, r#"{"type":"status","status":"finished","message":null}"#);
        assert_eq!(serde_json::from_str::<ServerMsg>(&json).unwrap(), msg);
    }

    #[test]
    fn ticks_stay_bounded_keep_the_latest_at_full_resolution_and_stay_in_order() {
        let mut v = RunView::new(info());
        for i in 0..100_000u64 {
            v.apply(&ServerMsg::Tick { tick: LiveTick { t_s: i as f64 * 0.25, requests_done: i, ..Default::default() } });
        }
        assert!(v.ticks.len() <= MAX_TICKS, "{}", v.ticks.len());
        assert_eq!(v.ticks.first().unwrap().t_s, 0.0, "the start is kept");
        assert_eq!(v.ticks.last().unwrap().requests_done, 99_999, "the latest tick is kept");
        assert!(v.ticks.windows(2).all(|w| w[0].t_s < w[1].t_s));
        let tail = &v.ticks[v.ticks.len() - 100..];
        assert!(tail.windows(2).all(|w| (w[1].t_s - w[0].t_s - 0.25).abs() < 1e-9), "the latest ticks at full resolution");
        let snapshot = serde_json::to_string(&v).unwrap().len();
        assert!(snapshot < 600_000, "a late viewer's snapshot stays small: {snapshot} bytes");
    }
}
