//! The load engine: runs an experiment's cells one after another. Per cell, a
//! scheduler's workers produce one `RequestSample` per request into a channel;
//! the aggregator drains it on a fixed tick, publishes live ticks, and computes
//! the cell's result. Workers know nothing of display; only the aggregator
//! touches the run's shared state, once per tick.

mod aggregate;
mod breaker;
mod guard;
pub mod http;
pub mod request;
mod schedule;
pub mod tokens;
pub mod sse;

use std::sync::Arc;
use std::time::Duration;

use caplab_shared::{CellResult, CellSpec, ExperimentSpec, FieldError, LoadMode, RunInfo, RunStatus, ServerMsg, TargetInfo};
use tokio::time::Instant;

use crate::runs::Run;
use crate::telemetry::Telemetry;
use caplab_shared::search::Search;
use crate::workload::store::InputStore;
use crate::workload::{request_set, Inputs, RequestSet};
use aggregate::Aggregator;
pub use request::LiveCounters;

/// How often live ticks are published (the dashboard redraws on each).
pub const TICK: Duration = Duration::from_millis(250);

/// What every run shares: two pooled HTTP clients, the built-in inputs and the user's.
#[derive(Clone)]
pub struct Engine {
    /// For the probe, `/metrics` and tokenize: everything but the load.
    pub client: reqwest::Client,
    /// For the load's requests (`http.rs`).
    pub load: http::LoadClient,
    /// The built-in documents and prompts.
    pub inputs: Arc<Inputs>,
    /// The user's own (uploaded, or read from a file by `caplab run`), by id.
    pub store: Arc<InputStore>,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl Engine {
    pub fn new() -> Self {
        // No redirects for the probe, /metrics and tokenize, as none for the load (`http.rs`):
        // a target answering 3xx could otherwise send caplab's requests (bodies and credentials
        // included) to an address the operator never allowed. A 3xx is the `redirect` error class.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .pool_max_idle_per_host(usize::MAX)
            .pool_idle_timeout(Duration::from_secs(90))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Engine { client, load: http::LoadClient::new(), inputs: Arc::new(Inputs::default()), store: Arc::new(InputStore::new(None)) }
    }

    /// An engine keeping the user's inputs in `dir` (the data folder's `inputs/`).
    pub fn with_inputs_in(dir: std::path::PathBuf) -> Self {
        Engine { store: Arc::new(InputStore::new(Some(dir))), ..Self::new() }
    }

    /// The inputs a spec sends: the user's set it names, else the built-in ones. A named set
    /// this caplab does not have is refused at admission (`lab.rs`), before this is asked.
    pub fn inputs_for(&self, spec: &ExperimentSpec) -> Arc<Inputs> {
        spec.inputs.as_ref().and_then(|r| self.store.get(&r.id)).map_or_else(|| self.inputs.clone(), |(_, inputs)| inputs)
    }

    /// Measured requests of one cell of this spec.
    pub fn cell_requests(&self, spec: &ExperimentSpec, cell: &CellSpec) -> u32 {
        spec.cell_requests(cell, self.inputs_for(spec).documents.len())
    }

    /// Every request a run of this spec sends, warm-ups included.
    pub fn total_requests(&self, spec: &ExperimentSpec) -> u64 {
        spec.total_requests(self.inputs_for(spec).documents.len())
    }

    /// Runs every cell of `run`'s spec, publishing as it goes, and sets the final status.
    /// `auth`: the target's `Authorization`, sent with every request (never stored in the run).
    /// `max_duration`: past it, the run stops itself (and says so).
    pub async fn run(&self, run: Arc<Run>, auth: Option<reqwest::header::HeaderValue>, max_duration: Option<Duration>) {
        let info = run.info();
        let spec = info.spec.clone();
        let run_start = Instant::now();
        let live = Arc::new(LiveCounters::with_breaker(spec.max_error_rate, spec.error_window));
        // Ends the duration timer below when this run ends, whichever way.
        let run_over = tokio_util::sync::CancellationToken::new();
        let _end_timer = run_over.clone().drop_guard();
        if let Some(limit) = max_duration {
            let (live, cancel) = (live.clone(), run.cancel.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(limit) => {
                        let reason = format!("stopped by itself after {:.0} s, this caplab's limit on a run's duration (--max-run-duration-s)", limit.as_secs_f64());
                        live.stop_because(reason);
                        cancel.cancel();
                    }
                    _ = run_over.cancelled() => {}
                }
            });
        }
        let total = self.total_requests(&spec);
        let telemetry = Telemetry::start(run.clone(), &self.client, &info.target, auth.clone(), run_start).await;
        let mut agg = Aggregator::new(&run, live.clone(), run_start, total);
        let cells = spec.cells();
        // A grid runs every cell in order; an SLO search picks each next cell from the last.
        let mut search = spec.search.then(|| Search::new(&cells));
        let mut next = 0usize;
        loop {
            let index = match &search {
                Some(s) => match s.next() {
                    Some(i) => i as usize,
                    None => break,
                },
                None => next,
            };
            let Some(cell) = cells.get(index) else { break };
            if run.cancel.is_cancelled() {
                break;
            }
            telemetry.cell_begin().await;
            let mut result = self.run_cell(&run, &info, auth.clone(), cell, &live, &mut agg).await;
            (result.server, result.gpu) = telemetry.cell_end().await;
            if let Some(s) = search.as_mut() {
                s.record(cell.index, &result);
            }
            run.publish(ServerMsg::CellDone { result: Box::new(result) });
            if let Some(s) = &search {
                if s.next().is_some() && !run.cancel.is_cancelled() {
                    run.publish(ServerMsg::Status { status: RunStatus::Running, message: Some(s.describe()) });
                }
            }
            next += 1;
        }
        telemetry.stop().await;
        let view = run.view();
        let (status, message) = if run.cancel.is_cancelled() {
            let why = live.stop_reason().map(|r| format!("{r}; ")).unwrap_or_default();
            (RunStatus::Stopped, Some(format!("{why}stopped before the end: cells marked partial cover only the requests that ended")))
        } else if view.every_request_failed() {
            (RunStatus::Finished, Some("every request failed: see the error classes and requests.csv".to_string()))
        } else if let Some(s) = &search {
            (RunStatus::Finished, Some(s.describe()))
        } else {
            (RunStatus::Finished, None)
        };
        run.publish(ServerMsg::Status { status, message });
    }

    async fn run_cell(
        &self,
        run: &Arc<Run>,
        info: &RunInfo,
        auth: Option<reqwest::header::HeaderValue>,
        cell: &CellSpec,
        live: &Arc<LiveCounters>,
        agg: &mut Aggregator<'_>,
    ) -> CellResult {
        let (target, spec) = (&info.target, &info.spec);
        let mut set: RequestSet = request_set(&self.inputs_for(spec), spec.workload, &spec.model, cell.max_new_tokens, target.server, spec.ignore_eos);
        let mut notes = Vec::new();
        let inputs = self.inputs_for(spec);
        if let Some(tokens) = cell.input_tokens {
            (set, notes) = self.synthetic(set, info, auth.clone(), tokens, cell.index).await;
        } else if !inputs.trace.is_empty() {
            (set, notes) = self.replay(set, info, auth.clone(), &inputs.trace, cell).await;
        } else if spec.input_dist.is_some() || spec.output_dist.is_some() {
            (set, notes) = self.drawn_lengths(set, info, auth.clone(), cell).await;
        } else if spec.recorded_output_lengths {
            (set, notes) = self.recorded_lengths(set, info, auth.clone(), cell).await;
        }
        let uri = http::parse_uri(&format!("{}{}", target.url, set.path));
        let set_is_replay = set.arrivals.is_some();
        let ctx = Arc::new(schedule::CellCtx {
            client: self.load.clone(),
            uri,
            set,
            timeout: Duration::from_secs_f64(spec.timeout_s),
            live: live.clone(),
            cancel: run.cancel.clone(),
            usage_required: target.server.sends_usage(),
            redactor: crate::secrets::Redactor::for_auth(auth.as_ref()),
            auth,
            cell: cell.index,
            warmup: spec.warmup,
            total: spec.warmup + self.cell_requests(spec, cell),
            start: Instant::now(),
            turns: spec.turns.max(1),
            think: Duration::from_secs_f64(spec.think_time_s.max(0.0)),
        });
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut load = tokio::spawn(schedule::drive(ctx, spec.clone(), cell.clone(), tx));
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => agg.tick(cell.index, &mut rx),
                _ = &mut load => break,
            }
        }
        agg.tick(cell.index, &mut rx);
        let slo = spec.slo.effective(spec.workload);
        let mut result = CellResult::compute(cell, &agg.take_cell_samples(), &slo, self.cell_requests(spec, cell));
        result.notes.extend(notes);
        if set_is_replay {
            // How far the replay kept to the trace's schedule: each request's wait between its
            // scheduled and actual send (a cap on requests in flight, or caplab falling behind).
            result.notes.push(format!(
                "arrivals: {} requests sent {} / {} / {} ms (p50 / p95 / max) after their time in the trace",
                result.requests_ok + result.requests_failed,
                crate::fmt_ms(result.queue.p50),
                crate::fmt_ms(result.queue.p95),
                crate::fmt_ms(result.queue.max)
            ));
        }
        result
    }

    /// Synthetic prompts' maker, measured with the target's own tokenizer, and a note when its
    /// lengths can only be estimates.
    async fn prompt_maker(&self, info: &RunInfo, auth: Option<reqwest::header::HeaderValue>) -> (crate::workload::synthetic::Synthetic, Vec<String>) {
        let counter = tokens::TargetCounter::for_target(self, &info.target, auth, &info.spec.model);
        let maker = crate::workload::synthetic::Synthetic::measure(&counter, info.spec.workload).await;
        let notes = maker.approximate.iter().cloned().collect();
        (maker, notes)
    }

    /// The cell's requests with lengths drawn per request: synthetic prompts from `input_dist`
    /// (measured with the target's tokenizer), output caps from `output_dist` (else the cell's).
    async fn drawn_lengths(&self, set: RequestSet, info: &RunInfo, auth: Option<reqwest::header::HeaderValue>, cell: &CellSpec) -> (RequestSet, Vec<String>) {
        let spec = &info.spec;
        let n = (spec.warmup + self.cell_requests(spec, cell)) as usize;
        let seed = prompt_seed(info) ^ (u64::from(cell.index) << 32);
        let outputs = spec.output_dist.as_ref().map(|d| crate::workload::lengths::draw(d, n, seed ^ 0x07_u64));
        let Some(input) = &spec.input_dist else {
            return (set.with_output_lengths(outputs.unwrap_or_default()), vec![]);
        };
        let inputs = crate::workload::lengths::draw(input, n, seed ^ 0x1u64);
        let (maker, mut notes) = self.prompt_maker(info, auth).await;
        let short = inputs.iter().filter(|&&t| maker.words_for(t).is_err()).count();
        if short > 0 {
            notes.push(format!("{short} drawn prompt lengths are shorter than the prompt template: each was sent one word"));
        }
        let lengths = inputs
            .iter()
            .enumerate()
            .map(|(i, &t)| crate::workload::trace::TraceRequest { at_s: 0.0, input_tokens: t, output_tokens: outputs.as_ref().map_or(cell.max_new_tokens, |o| o[i]), hash_ids: vec![] })
            .collect();
        (set.with_lengths(maker, lengths, seed, spec.workload), notes)
    }

    /// The cell's requests with each one's `max_tokens` the length of its conversation's recorded
    /// answer (ShareGPT), counted by the target as a completion prompt without its special tokens
    /// (the count of an empty prompt is taken off), each answer once.
    async fn recorded_lengths(&self, set: RequestSet, info: &RunInfo, auth: Option<reqwest::header::HeaderValue>, cell: &CellSpec) -> (RequestSet, Vec<String>) {
        use crate::workload::tokens::CountTokens;
        let (spec, inputs) = (&info.spec, self.inputs_for(&info.spec));
        let counter = tokens::TargetCounter::for_target(self, &info.target, auth, &spec.model);
        let n = (spec.warmup + self.cell_requests(spec, cell)) as usize;
        let used = n.min(inputs.answers.len());
        let base = counter.count(caplab_shared::Workload::Batch, "").await.unwrap_or(0);
        let mut lengths = Vec::with_capacity(used);
        let mut unknown = 0;
        for answer in &inputs.answers[..used] {
            match counter.count(caplab_shared::Workload::Batch, answer).await {
                Ok(t) if !answer.is_empty() => lengths.push(t.saturating_sub(base).max(1)),
                _ => {
                    unknown += 1;
                    lengths.push(cell.max_new_tokens);
                }
            }
        }
        let mean = lengths.iter().map(|&t| f64::from(t)).sum::<f64>() / lengths.len().max(1) as f64;
        let mut notes = vec![format!("output lengths from the {} recorded answers, as the target counts them (mean {mean:.0} tokens)", used - unknown)];
        if unknown > 0 {
            notes.push(format!("{unknown} answers were empty or could not be counted: those requests asked for max_new_tokens {}", cell.max_new_tokens));
        }
        (set.with_output_lengths(lengths), notes)
    }

    /// The cell's requests as a replay of `trace` at the cell's speedup: each request's recorded
    /// prompt and output lengths (prompts measured with the target's tokenizer, as synthetic
    /// ones), sent at its recorded time divided by the speedup.
    async fn replay(&self, set: RequestSet, info: &RunInfo, auth: Option<reqwest::header::HeaderValue>, trace: &[crate::workload::trace::TraceRequest], cell: &CellSpec) -> (RequestSet, Vec<String>) {
        let spec = &info.spec;
        let (maker, mut notes) = self.prompt_maker(info, auth).await;
        let speedup = match (cell.load.rate(), spec.trace_rate(1.0)) {
            (Some(r), Some(base)) if base > 0.0 => r / base,
            _ => 1.0,
        };
        let short = trace.iter().filter(|r| maker.words_for(r.input_tokens).is_err()).count();
        if short > 0 {
            notes.push(format!("{short} trace requests are shorter than the prompt template: each was sent one word"));
        }
        notes.push(format!("replay of {} at {speedup:.3}× its recorded pace: prompt and output lengths from the trace", spec.trace().map_or("the trace".to_string(), |t| t.name.clone())));
        (set.with_trace(maker, std::sync::Arc::new(trace.to_vec()), speedup, prompt_seed(info), spec.workload), notes)
    }

    /// The cell's requests with synthetic prompts of `tokens` tokens, measured with the
    /// target's own tokenizer; notes say when the length is an estimate or cannot be met.
    async fn synthetic(&self, set: RequestSet, info: &RunInfo, auth: Option<reqwest::header::HeaderValue>, tokens: u32, cell: u32) -> (RequestSet, Vec<String>) {
        let spec = &info.spec;
        let (maker, mut notes) = self.prompt_maker(info, auth).await;
        let words = maker.words_for(tokens).unwrap_or_else(|why| {
            notes.push(format!("{why}: its prompts have one word"));
            1
        });
        let seed = prompt_seed(info) ^ (u64::from(cell) << 32);
        let prefix = crate::workload::synthetic::Prefix { words: spec.prefix_tokens, groups: spec.prefix_groups };
        (set.with_synthetic(maker, words, prefix, tokens, seed, spec.workload), notes)
    }
}

/// The seed of a run's synthetic prompts: the spec's, salted with the run's id (FNV-1a), so a
/// later run's prompts are not the ones an earlier run left in the server's prefix cache.
fn prompt_seed(info: &RunInfo) -> u64 {
    info.spec.seed ^ info.id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// The spec as it will run against `target` (already validated on its own): the model
/// resolved (empty = the first one listed), checked against what the target serves, unused
/// axes dropped, and the GPU label marked when the target is simulated.
pub fn prepare(mut spec: ExperimentSpec, target: &TargetInfo) -> Result<ExperimentSpec, Vec<FieldError>> {
    if spec.model.is_empty() {
        match target.models.first() {
            Some(m) => spec.model = m.clone(),
            None => return Err(vec![FieldError::new("model", "the target lists no models (GET /v1/models); name the model")]),
        }
    }
    let errors = spec.check_against(target);
    if !errors.is_empty() {
        return Err(errors);
    }
    if spec.mode == LoadMode::Rate {
        spec.concurrency.clear();
    }
    // A simulated GPU and model label the run unless the user gave a label.
    if let (Some(profile), "" | "unlabelled") = (target.simulated_gpu(), spec.gpu.trim()) {
        spec.gpu = profile.to_string();
    }
    spec.gpu = spec.results_label(target.simulated);
    Ok(spec)
}
