//! Command-line entry points: `caplab serve`, `caplab sim`, `caplab run`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio::net::TcpListener;

use crate::engine::Engine;
use crate::runs::Registry;
use crate::server::auth::{new_token, Access};
use crate::lab::Lab;
use crate::limits::Limits;
use crate::server::listen::ConnLimits;
use crate::server::{app, AppState};
use crate::sim::{self, SimConfig};
use crate::targets::Targets;

#[derive(Parser, Debug)]
#[command(name = "caplab", version, about = "LLM-serving capacity lab: load, measure and compare vLLM servers")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the dashboard and API. Without --target, runs against the built-in simulated vLLM.
    Serve(ServeArgs),
    /// Run the built-in simulated vLLM server on its own: with --gpu and --model, as vLLM would
    /// serve that model on that GPU; without, with fixed per-token costs (--sim-itl-ms …).
    Sim {
        #[arg(long, default_value = "127.0.0.1:8000")]
        listen: SocketAddr,
        #[command(flatten)]
        profile: ProfileArgs,
        #[command(flatten)]
        sim: SimArgs,
        #[command(flatten)]
        calibrate: crate::sim::calibrate_cli::CalibrateArgs,
    },
    /// Fill the notes (data/notes/report_template.md) from saved runs, with no server running:
    /// best configuration, chat vs batch, GPU scaling, cost per token, recommendations; and
    /// with --html, a self-contained HTML report to send.
    Report {
        /// Run folders (each with its run.json, e.g. caplab-runs/20261129-101010-abcd), folders
        /// of runs (a `caplab run --out` folder, the data folder) or result files from other tools
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Where to write the markdown (default: print it, unless --html is given)
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also write one self-contained HTML report (capacity cards, charts, tables, latency
        /// distributions, environment, workload; it loads nothing): of the run, or of the runs
        /// compared when there are several
        #[arg(long)]
        html: Option<PathBuf>,
        /// A GPU's price, LABEL=USD_PER_HOUR (the runs' GPU label or a profile key; repeatable);
        /// defaults come from data/profiles/gpus.toml
        #[arg(long)]
        price: Vec<String>,
        /// The GPU label of the result files given (vllm bench serve files do not say it)
        #[arg(long)]
        imported_gpu: Option<String>,
        /// The model of result files that do not name it (vllm bench serve files name it in
        /// model_id, GuideLLM reports in their backend)
        #[arg(long)]
        imported_model: Option<String>,
        /// The workload of the result files given: chat or batch
        #[arg(long, default_value = "chat")]
        imported_workload: String,
    },
    /// Run an experiment file headless: progress bar, results table, CSV/JSON files.
    Run {
        /// Experiment file (TOML, the same fields as the dashboard's form; see data/experiments/)
        experiment: PathBuf,
        /// Base URL of the server to load; overrides the file's `target`. Neither: the built-in simulator
        #[arg(long)]
        target: Option<String>,
        /// Folder for the results (one sub-folder per run)
        #[arg(long, default_value = "caplab-runs")]
        out: PathBuf,
        /// GPU label for the results; overrides the file's `gpu`
        #[arg(long)]
        gpu: Option<String>,
        /// Model name sent in requests; overrides the file's `model` (needed where the server
        /// does not list its models, e.g. `transformers serve` with a local model)
        #[arg(long)]
        model: Option<String>,
        /// Batch: your own documents instead of the built-in ones: a `[DOC]`-delimited file (as
        /// the notes' --docs-file), JSONL with a "text" field, or a folder of .txt/.md files
        #[arg(long, conflicts_with = "prompts")]
        docs: Option<PathBuf>,
        /// Chat: your own prompts: one per line, JSONL of OpenAI "messages", or ShareGPT JSON
        /// (each record's first human turn)
        #[arg(long)]
        prompts: Option<PathBuf>,
    },
}

/// `caplab serve`'s flags.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// A server caplab may load, as NAME=URL (repeatable; a bare URL is named `default`),
    /// e.g. --target vllm=http://127.0.0.1:8000. The first is the default; the built-in
    /// simulator is always there as `sim` (the default when none is given). An API key is
    /// read from CAPLAB_API_KEY_<NAME> (or --target-key-file), a Basic password for the URL's
    /// user (http://USER@host) from CAPLAB_TARGET_PASSWORD_<NAME> (or --target-password-file)
    #[arg(long)]
    target: Vec<String>,
    /// A target's API key from a file, NAME=PATH (its first line; repeatable): sent as a bearer
    /// token, kept off the command line where `ps` would show it
    #[arg(long)]
    target_key_file: Vec<String>,
    /// A target's Basic password from a file, NAME=PATH (its first line; repeatable), for the
    /// user named in its URL (http://USER@host:port)
    #[arg(long)]
    target_password_file: Vec<String>,
    /// Address to listen on (use 0.0.0.0:PORT on a pod to reach it through the pod's proxy)
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Folder where finished runs are saved (and loaded from at start)
    #[arg(long, default_value = "caplab-runs")]
    data_dir: PathBuf,
    #[command(flatten)]
    auth: AuthArgs,
    /// Seconds a client may take to send its first byte, and then its request headers, before
    /// its connection is closed
    #[arg(long, default_value_t = 10.0)]
    header_read_timeout_s: f64,
    /// Most connections to the dashboard open at once, WebSockets included; at the cap the
    /// oldest idle one is closed, and when none is idle more wait to be accepted. Default: a
    /// quarter of the open-file limit (less 64), at most 1,024; never more than half of it
    #[arg(long)]
    max_connections: Option<usize>,
    /// Most live views (WebSockets) open at once (default: half of --max-connections)
    #[arg(long)]
    max_websockets: Option<usize>,
    /// Most connections from one client address (default: a quarter of --max-connections, at
    /// least 8; behind a proxy every client has the proxy's address)
    #[arg(long)]
    max_connections_per_client: Option<usize>,
    #[command(flatten)]
    limits: LimitArgs,
    /// Seconds between pings of each viewer's WebSocket (well inside proxies' 100 s idle
    /// limit); a viewer silent for two pings and 10 s more is closed
    #[arg(long, default_value_t = 20.0)]
    ws_ping_s: f64,
    #[command(flatten)]
    sim: SimArgs,
    /// A simulated GPU and model to offer as a target, GPU/MODEL (repeatable), e.g.
    /// --sim-profile h100-80gb/qwen2.5-7b: the target `sim-h100-80gb-qwen2.5-7b`, sized and
    /// timed as vLLM on that GPU (see `caplab sim --help` for the profiles). Default: the
    /// notes' RTX 2000 Ada and A100 with Qwen2.5-1.5B, and an H100 with Qwen2.5-7B
    #[arg(long, default_values_t = DEFAULT_SIM_PROFILES.map(String::from))]
    sim_profile: Vec<String>,
}

/// The simulated GPUs and models `caplab serve` offers unless told otherwise.
const DEFAULT_SIM_PROFILES: [&str; 3] = ["rtx2000-ada-16gb/qwen2.5-1.5b", "a100-80gb/qwen2.5-1.5b", "h100-80gb/qwen2.5-7b"];

/// A simulated deployment: a GPU and a model profile (data/profiles/) and vLLM's engine
/// arguments; unset ones take vLLM's defaults for that GPU.
#[derive(Args, Debug, Clone)]
pub struct ProfileArgs {
    /// GPU profile: rtx2000-ada-16gb, l4-24gb, a10g-24gb, rtx4090-24gb, l40s-48gb, a100-40gb, a100-80gb,
    /// h100-pcie-80gb, h100-80gb, h200-141gb, cpu-2core
    #[arg(long = "gpu", id = "profile_gpu")]
    pub gpu: Option<String>,
    /// Model profile: qwen2.5-0.5b, qwen2.5-1.5b, qwen2.5-7b, llama-3.1-8b, tiny-4.5m
    #[arg(long = "model", id = "profile_model", conflicts_with = "profile_model_config")]
    pub model: Option<String>,
    /// The model from its Hugging Face config.json (the file or the model's folder) instead of
    /// a profile: Qwen2, Qwen3, Llama and Mistral dense models; served under the folder's path
    #[arg(long = "model-config", id = "profile_model_config", value_name = "PATH")]
    pub model_config: Option<PathBuf>,
    /// The engine's costs from this calibration file (`caplab sim --calibrate … --out FILE`)
    /// instead of the default (vLLM 0.26 on the H200 anchors, data/calibration/). With
    /// --calibrate: check this calibration against those runs instead of fitting one
    #[arg(long = "calibration", id = "profile_calibration", value_name = "FILE")]
    pub calibration: Option<PathBuf>,
    /// The simulator's assumed costs instead of a calibration (efficiencies 0.55 and 0.8, 2 ms a
    /// step, no model of vLLM's API server), as before calibrations: for driving caplab itself
    /// with thousands of streams; the numbers are then nobody's measurement
    #[arg(long = "assumed-costs", id = "profile_assumed_costs", conflicts_with = "profile_calibration")]
    pub assumed_costs: bool,
    /// Share of GPU memory vLLM may take (vLLM 0.32's default: 0.92)
    #[arg(long = "gpu-memory-utilization", id = "profile_gpu_memory_utilization")]
    pub gpu_memory_utilization: Option<f64>,
    /// Sequences running at once (vLLM's default: 1024 on H100/H200, else 256)
    #[arg(long = "max-num-seqs", id = "profile_max_num_seqs")]
    pub max_num_seqs: Option<u32>,
    /// Tokens per engine step (vLLM's default: 8192 on H100/H200, else 2048)
    #[arg(long = "max-num-batched-tokens", id = "profile_max_num_batched_tokens")]
    pub max_num_batched_tokens: Option<u32>,
    /// Context length (default: the model's)
    #[arg(long = "max-model-len", id = "profile_max_model_len")]
    pub max_model_len: Option<u32>,
    /// GPUs the model is split over
    #[arg(long = "tensor-parallel-size", id = "profile_tensor_parallel_size", default_value_t = 1)]
    pub tensor_parallel_size: u32,
    /// KV-cache blocks, instead of what memory allows (as vLLM's flag)
    #[arg(long = "num-gpu-blocks-override", id = "profile_num_gpu_blocks_override")]
    pub num_gpu_blocks_override: Option<u32>,
}

impl Default for ProfileArgs {
    fn default() -> Self {
        ProfileArgs {
            gpu: None,
            model: None,
            model_config: None,
            calibration: None,
            assumed_costs: false,
            gpu_memory_utilization: None,
            max_num_seqs: None,
            max_num_batched_tokens: None,
            max_model_len: None,
            tensor_parallel_size: 1,
            num_gpu_blocks_override: None,
        }
    }
}

impl ProfileArgs {
    /// The deployment, when a GPU or model is named (the other defaults to RTX 2000 Ada /
    /// Qwen2.5-1.5B); None for the fixed-cost simulator.
    pub fn deployment(&self) -> anyhow::Result<Option<crate::sim::profile::Deployment>> {
        if self.gpu.is_none() && self.model.is_none() && self.model_config.is_none() {
            if self.calibration.is_some() {
                anyhow::bail!("--calibration applies to a simulated GPU and model: give --gpu and --model (or --model-config)");
            }
            // An engine flag without a GPU or model would be silently ignored: say so instead.
            let given: Vec<&str> = [
                ("--gpu-memory-utilization", self.gpu_memory_utilization.is_some()),
                ("--max-num-seqs", self.max_num_seqs.is_some()),
                ("--max-num-batched-tokens", self.max_num_batched_tokens.is_some()),
                ("--max-model-len", self.max_model_len.is_some()),
                ("--num-gpu-blocks-override", self.num_gpu_blocks_override.is_some()),
                ("--tensor-parallel-size", self.tensor_parallel_size != 1),
                ("--assumed-costs", self.assumed_costs),
            ]
            .into_iter()
            .filter_map(|(flag, set)| set.then_some(flag))
            .collect();
            if !given.is_empty() {
                anyhow::bail!(
                    "{} appl{} to a simulated GPU and model: give --gpu and --model (or --model-config); the fixed-timing simulator takes --sim-max-num-seqs and --sim-max-model-len",
                    given.join(", "),
                    if given.len() == 1 { "ies" } else { "y" }
                );
            }
            return Ok(None);
        }
        let gpu = crate::sim::profile::gpu(self.gpu.as_deref().unwrap_or("rtx2000-ada-16gb")).map_err(anyhow::Error::msg)?;
        let model = match &self.model_config {
            Some(path) => crate::sim::hf_config::read(path)?,
            None => crate::sim::profile::model(self.model.as_deref().unwrap_or("qwen2.5-1.5b")).map_err(anyhow::Error::msg)?,
        };
        let defaults = crate::sim::profile::EngineArgs::default();
        let args = crate::sim::profile::EngineArgs {
            gpu_memory_utilization: self.gpu_memory_utilization.unwrap_or(defaults.gpu_memory_utilization),
            max_num_seqs: self.max_num_seqs,
            max_num_batched_tokens: self.max_num_batched_tokens,
            max_model_len: self.max_model_len,
            tensor_parallel_size: self.tensor_parallel_size,
            num_gpu_blocks_override: self.num_gpu_blocks_override,
        };
        let d = crate::sim::profile::Deployment::new(gpu, model, &args).map_err(anyhow::Error::msg)?;
        let costs = match &self.calibration {
            Some(path) => crate::sim::calibrate::load(path)?.costs,
            None if self.assumed_costs => crate::sim::profile::EngineCosts::assumed(d.gpu.step_overhead_ms.unwrap_or(2.0)),
            None => d.costs.clone(),
        };
        Ok(Some(d.with_costs(costs)))
    }
}

/// What runs started over HTTP may ask for (see `GET /api/limits`).
#[derive(Args, Debug, Clone)]
pub struct LimitArgs {
    /// Largest concurrency (or open-loop in-flight cap) of a cell
    #[arg(long, default_value_t = Limits::default().max_concurrency)]
    pub max_concurrency: u32,
    /// Most requests one run may send, warm-ups included
    #[arg(long, default_value_t = Limits::default().max_requests_per_run)]
    pub max_requests_per_run: u64,
    /// Largest max_new_tokens
    #[arg(long, default_value_t = Limits::default().max_new_tokens)]
    pub max_new_tokens: u32,
    /// Most cells in a grid
    #[arg(long, default_value_t = Limits::default().max_cells)]
    pub max_cells: usize,
    /// A run still going after this many seconds stops itself
    #[arg(long, default_value_t = Limits::default().max_run_duration_s)]
    pub max_run_duration_s: f64,
    /// Largest request body in bytes
    #[arg(long, default_value_t = Limits::default().max_body_bytes)]
    pub max_body_bytes: usize,
    /// Largest body of an import of result files (POST /api/import) in bytes
    #[arg(long, default_value_t = Limits::default().max_import_bytes)]
    pub max_import_bytes: usize,
    /// Most runs kept; a new run is refused beyond it until one is deleted
    #[arg(long, default_value_t = Limits::default().runs_kept)]
    pub runs_kept: usize,
    /// A run is refused while the data folder's disk has less free than this many MB (0: no floor)
    #[arg(long, default_value_t = Limits::default().min_free_mb)]
    pub min_free_mb: u64,
}

impl LimitArgs {
    fn limits(&self) -> anyhow::Result<Limits> {
        if !(self.max_run_duration_s.is_finite() && self.max_run_duration_s > 0.0) {
            anyhow::bail!("--max-run-duration-s must be a positive number of seconds");
        }
        Ok(Limits {
            max_concurrency: self.max_concurrency.max(1),
            max_requests_per_run: self.max_requests_per_run.max(1),
            max_new_tokens: self.max_new_tokens.max(1),
            max_cells: self.max_cells.max(1),
            max_run_duration_s: self.max_run_duration_s,
            max_body_bytes: self.max_body_bytes.max(1024),
            max_import_bytes: self.max_import_bytes.max(1024),
            runs_kept: self.runs_kept.max(1),
            min_free_mb: self.min_free_mb,
        })
    }
}

/// Who may use `caplab serve`.
#[derive(Args, Debug, Clone)]
pub struct AuthArgs {
    /// The operator's token (default: a random one, made at start and printed in the URL)
    #[arg(long, env = "CAPLAB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// No token at all: anyone who reaches the port may start load. Prints a warning
    #[arg(long, conflicts_with = "token")]
    pub no_auth: bool,
    /// Another name (host or host:port) this server may be reached by, e.g. a pod's proxy
    /// name; repeatable. Requests naming any other host are refused (DNS rebinding)
    #[arg(long = "allow-host")]
    pub allow_host: Vec<String>,
}

/// The simulator's knobs (used by `sim`, and by `serve` without --target).
#[derive(Args, Debug, Clone)]
pub struct SimArgs {
    /// Model name the simulator serves
    #[arg(long = "sim-model", default_value = "sim-qwen2.5-1.5b")]
    pub model: String,
    /// Sequences decoded at once; more requests wait
    #[arg(long = "sim-max-num-seqs", default_value_t = 64)]
    pub max_num_seqs: u32,
    /// Context length in tokens
    #[arg(long = "sim-max-model-len", default_value_t = 4096)]
    pub max_model_len: u32,
    /// Decode step in ms with no other sequence running
    #[arg(long = "sim-itl-ms", default_value_t = 12.0)]
    pub itl_ms: f64,
    /// Extra decode ms per running sequence
    #[arg(long = "sim-itl-ms-per-seq", default_value_t = 0.35)]
    pub itl_ms_per_seq: f64,
    /// Fixed prefill ms
    #[arg(long = "sim-prefill-ms", default_value_t = 20.0)]
    pub prefill_ms: f64,
}

impl SimArgs {
    pub fn config(&self) -> SimConfig {
        SimConfig {
            model: self.model.clone(),
            max_num_seqs: self.max_num_seqs.max(1),
            max_model_len: self.max_model_len.max(16),
            itl_ms: self.itl_ms.max(0.0),
            itl_ms_per_seq: self.itl_ms_per_seq.max(0.0),
            prefill_ms: self.prefill_ms.max(0.0),
            ..SimConfig::default()
        }
    }
}

pub fn main(cli: Cli) -> ExitCode {
    crate::fd_limit::raise();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("CAPLAB_LOG").unwrap_or_else(|_| "caplab=info".into()))
        .with_writer(std::io::stderr)
        // Colour only for a terminal: a log written to a file or pipe stays plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("caplab: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Sim { calibrate, profile, .. } if !calibrate.calibrate.is_empty() => {
                tokio::task::spawn_blocking(move || crate::sim::calibrate_cli::run(&calibrate, &profile)).await?
            }
            Command::Sim { listen, profile, sim, .. } => run_sim(listen, profile, sim).await,
            Command::Report { runs, out, html, price, imported_gpu, imported_model, imported_workload } => {
                let labels = ReportLabels { gpu: imported_gpu.as_deref(), model: imported_model.as_deref(), workload: &imported_workload };
                report(&runs, out.as_deref(), html.as_deref(), &price, &labels)
            }
            Command::Run { experiment, target, out, gpu, model, docs, prompts } => {
                crate::headless::run(&experiment, crate::headless::Overrides { target, gpu, model, docs, prompts }, &out).await
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("caplab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))
}

/// The address to print for a listener: 0.0.0.0 is shown as 127.0.0.1.
fn shown(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

/// Starts the simulator on a loopback port of its own; returns its base URL.
pub async fn spawn_sim(config: SimConfig) -> anyhow::Result<String> {
    let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, sim::router(config)).await });
    Ok(url)
}

/// The access rules for a server listening on `addr`: its token (refused when empty), and the
/// host names it answers to (a loopback listener: its own names only; all interfaces: any,
/// unless `--allow-host` names them, with the RunPod proxy name added on a pod).
fn access_for(addr: SocketAddr, auth: &AuthArgs) -> anyhow::Result<Access> {
    let operator = match (&auth.token, auth.no_auth) {
        (_, true) => None,
        (Some(t), false) if t.trim().is_empty() => anyhow::bail!("--token / CAPLAB_TOKEN is empty: give a token, or pass --no-auth explicitly"),
        (Some(t), false) => Some(t.trim().to_string()),
        (None, false) => Some(new_token()),
    };
    let port = addr.port();
    let mut hosts: Vec<String> = auth.allow_host.iter().map(|h| h.trim().to_string()).filter(|h| !h.is_empty()).collect();
    if let Ok(pod) = std::env::var("RUNPOD_POD_ID") {
        hosts.push(format!("{pod}-{port}.proxy.runpod.net"));
    }
    // All interfaces and no names given: any Host (the token still guards everything).
    if !addr.ip().is_unspecified() || !hosts.is_empty() {
        hosts.extend([format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}"), addr.to_string()]);
    }
    // A name given without a port is allowed with or without this server's port.
    let with_ports: Vec<String> = hosts.iter().filter(|h| !h.contains(':')).map(|h| format!("{h}:{port}")).collect();
    hosts.extend(with_ports);
    Ok(Access::new(operator, hosts))
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let ServeArgs {
        target,
        target_key_file,
        target_password_file,
        listen,
        data_dir,
        auth,
        header_read_timeout_s,
        max_connections,
        max_websockets,
        max_connections_per_client,
        limits,
        ws_ping_s,
        sim,
        sim_profile,
    } = args;
    let run_limits = limits.limits()?;
    // The open-file limit is shared out once: caplab itself, the dashboard, the load.
    let nofile = crate::fd_limit::raise();
    let dashboard = crate::fd_limit::dashboard(nofile, max_connections, max_websockets, max_connections_per_client);
    crate::fd_limit::keep_reserved(crate::fd_limit::INTERNAL + dashboard.max_connections as u64);
    let limits = ConnLimits {
        header_read_timeout: std::time::Duration::from_secs_f64(header_read_timeout_s.clamp(0.1, 3600.0)),
        max_connections: dashboard.max_connections,
        max_per_client: dashboard.max_per_client,
    };
    if !(0.1..=90.0).contains(&ws_ping_s) {
        anyhow::bail!("--ws-ping-s {ws_ping_s}: give 0.1 to 90 seconds (proxies close a socket idle for 100 s)");
    }
    let sim_url = spawn_sim(sim.config()).await?;
    // Secrets from files stand for the variables they replace; the environment for the rest.
    let mut from_files = std::collections::HashMap::new();
    let mut warnings = Vec::new();
    for (flag, files, variable) in [
        ("--target-key-file", &target_key_file, crate::targets::key_variable as fn(&str) -> String),
        ("--target-password-file", &target_password_file, crate::targets::password_variable),
    ] {
        for f in files {
            let (name, path) = f.split_once('=').ok_or_else(|| anyhow::anyhow!("{flag} {f}: give NAME=PATH"))?;
            let secret = crate::targets::read_secret_file(std::path::Path::new(path.trim()), &mut warnings).map_err(|e| anyhow::anyhow!("{flag} {name}: {e}"))?;
            from_files.insert(variable(name.trim()), secret);
        }
    }
    for arg in &target {
        let (name, url) = arg.split_once('=').filter(|(n, _)| !n.contains("://")).unwrap_or(("default", arg));
        if url::Url::parse(url.trim()).is_ok_and(|u| u.password().is_some()) {
            warnings.push(format!(
                "--target {name}: the password in its URL is visible to every user of this machine (ps): give it in {} or --target-password-file {name}=PATH",
                crate::targets::password_variable(name)
            ));
        }
    }
    let mut targets = Targets::new(&target, &sim_url, |k| from_files.get(k).cloned().or_else(|| std::env::var(k).ok())).map_err(anyhow::Error::msg)?;
    for w in &warnings {
        eprintln!("caplab: warning: {w}");
    }
    // Each simulated GPU and model is a target of its own, after the built-in `sim`.
    for p in sim_profile.iter().filter(|p| !p.is_empty()) {
        let (gpu, model) = p.split_once('/').ok_or_else(|| anyhow::anyhow!("--sim-profile {p}: give GPU/MODEL, e.g. h100-80gb/qwen2.5-7b"))?;
        let profile = ProfileArgs { gpu: Some(gpu.into()), model: Some(model.into()), ..ProfileArgs::default() };
        let d = profile.deployment().map_err(|e| anyhow::anyhow!("--sim-profile {p}: {e}"))?.expect("named");
        let url = spawn_sim(SimConfig::for_deployment(d)).await?;
        targets.add_simulated(format!("sim-{gpu}-{model}"), &url);
    }
    let (registry, unreadable) = Registry::open(data_dir.clone());
    for u in unreadable {
        eprintln!("caplab: skipped a saved run that could not be read: {u}");
    }
    let listener = bind(listen).await?;
    let addr = listener.local_addr()?;
    let access = access_for(addr, &auth)?;
    let links = |token: Option<&str>| token.map(|t| format!("?token={t}")).unwrap_or_default();
    let operator_link = links(access.operator_token());
    let viewer_link = if access.open() { None } else { Some(links(Some(&access.viewer_token()))) };
    let mut state = AppState::new(Lab::new(registry, Engine::with_inputs_in(data_dir.join("inputs")), targets.clone(), Some(run_limits)), access);
    state.ws_ping = std::time::Duration::from_secs_f64(ws_ping_s);
    state.ws_slots = Arc::new(tokio::sync::Semaphore::new(dashboard.max_websockets));
    let state = Arc::new(state);
    println!("caplab dashboard: http://{}/{operator_link}", shown(addr));
    if let Some(v) = &viewer_link {
        println!("read-only viewer link (for clients; it cannot start or stop anything): http://{}/{v}", shown(addr));
        if let Ok(pod) = std::env::var("RUNPOD_POD_ID") {
            println!("on this pod's public proxy: https://{pod}-{}.proxy.runpod.net/{operator_link} (operator), …/{v} (viewer)", addr.port());
        }
    } else {
        println!("WARNING: --no-auth: anyone who can reach {} can start load against the target and read every result", shown(addr));
    }
    for (i, t) in targets.all().iter().enumerate() {
        let default = if i == 0 { " (default)" } else { "" };
        let what = if t.name == crate::targets::SIM {
            " — built-in SIMULATED vLLM (fixed costs): its numbers are simulated, not a GPU's"
        } else if t.name.starts_with("sim-") {
            " — SIMULATED vLLM on that GPU and model (data/profiles): its numbers are simulated"
        } else {
            ""
        };
        let key = if t.auth.is_some() { ", with credentials" } else { "" };
        println!("target {}{default}: {}{key}{what}", t.name, t.url);
    }
    println!("runs are saved under {}", data_dir.display());
    for lowered in &dashboard.lowered {
        println!("caplab: {lowered}");
    }
    println!(
        "connections: at most {} open ({} live views, {} per client address); runs may use {} open files (limit {nofile})",
        dashboard.max_connections,
        dashboard.max_websockets,
        dashboard.max_per_client,
        nofile.saturating_sub(crate::fd_limit::reserved())
    );
    if !crate::server::assets::dashboard_built() {
        println!("note: this build has no dashboard; run scripts/build-frontend.sh and rebuild");
    }
    let stopping = state.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        println!("caplab: stopping; runs in progress are stopped and saved");
        stopping.lab.shutdown.cancel();
    });
    crate::server::listen::serve(listener, app(state.clone()), limits, state.lab.shutdown.clone()).await;
    state.lab.shut_down(std::time::Duration::from_secs(30)).await;
    Ok(ExitCode::SUCCESS)
}

async fn run_sim(listen: SocketAddr, profile: ProfileArgs, sim: SimArgs) -> anyhow::Result<ExitCode> {
    let config = match profile.deployment()? {
        Some(d) => {
            println!(
                "SIMULATED {}: {} KV-cache blocks ({} tokens), max_num_seqs {}, max_num_batched_tokens {}, max_model_len {}",
                d.label(),
                d.kv_blocks,
                u64::from(d.kv_blocks) * u64::from(crate::sim::profile::BLOCK_SIZE),
                d.max_num_seqs,
                d.max_num_batched_tokens,
                d.max_model_len
            );
            SimConfig::for_deployment(d)
        }
        None => sim.config(),
    };
    let listener = bind(listen).await?;
    println!("caplab SIMULATED vLLM: http://{} (model {})", shown(listener.local_addr()?), config.model);
    axum::serve(listener, sim::router(config)).with_graceful_shutdown(shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// The labels `caplab report` gives result files that do not carry them.
struct ReportLabels<'a> {
    gpu: Option<&'a str>,
    model: Option<&'a str>,
    workload: &'a str,
}

/// `caplab report`: the notes, and with `html` the HTML report, from run folders, folders of
/// runs and imported result files.
fn report(paths: &[PathBuf], out: Option<&std::path::Path>, html: Option<&std::path::Path>, prices: &[String], labels: &ReportLabels) -> anyhow::Result<ExitCode> {
    use crate::import::ImportError;
    use crate::report::inputs::{self, InputError};
    let workload = match labels.workload {
        "chat" => caplab_shared::Workload::Chat,
        "batch" => caplab_shared::Workload::Batch,
        other => anyhow::bail!("--imported-workload {other:?}: give chat or batch"),
    };
    let found = inputs::read(paths, &inputs::ImportLabels { gpu: labels.gpu, model: labels.model, workload }).map_err(|e| match e {
        InputError::Import(ImportError::Missing { field, message }) => {
            anyhow::anyhow!("{message}: give {}", if field == "gpu" { "--imported-gpu LABEL" } else { "--imported-model NAME" })
        }
        e => anyhow::anyhow!(e),
    })?;
    let mut price_map = std::collections::BTreeMap::new();
    for p in prices {
        let (label, usd) = p.rsplit_once('=').ok_or_else(|| anyhow::anyhow!("--price {p}: give LABEL=USD_PER_HOUR"))?;
        let usd: f64 = usd.trim().parse().map_err(|_| anyhow::anyhow!("--price {p}: {usd:?} is not a number of dollars per hour"))?;
        price_map.insert(label.trim().to_string(), usd);
    }
    let views: Vec<caplab_shared::RunView> = found.iter().map(|f| f.view.clone()).collect();
    let notes = crate::report::notes(&views, &price_map);
    match (out, html) {
        (Some(path), _) => {
            std::fs::write(path, &notes).with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("notes written to {}", path.display());
        }
        (None, None) => print!("{notes}"),
        (None, Some(_)) => {}
    }
    if let Some(path) = html {
        let page = match found.as_slice() {
            [one] => crate::report::run_html(&one.view, one.folder.as_deref(), &price_map),
            many => crate::report::comparison_html(&many.iter().map(|f| (f.view.clone(), f.folder.clone())).collect::<Vec<_>>(), &price_map),
        };
        std::fs::write(path, page).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("HTML report ({} run{}) written to {}", found.len(), if found.len() == 1 { "" } else { "s" }, path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
