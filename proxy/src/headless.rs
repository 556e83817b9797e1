//! `caplab run EXPERIMENT.toml`: the same engine and files as the dashboard, in a terminal.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use caplab_shared::{ExperimentSpec, FieldError, InputsRef, RunStatus, ServerMsg, Workload};

use crate::engine::Engine;
use crate::lab::{Lab, Refusal};
use crate::runs::Registry;
use crate::spec_input::spec_from_value;
use crate::targets::{Target, Targets};

/// What the command line overrides in the experiment file.
#[derive(Default)]
pub struct Overrides {
    pub target: Option<String>,
    pub gpu: Option<String>,
    pub model: Option<String>,
    /// `--docs FILE` (batch) and `--prompts FILE` (chat): the user's own inputs.
    pub docs: Option<std::path::PathBuf>,
    pub prompts: Option<std::path::PathBuf>,
}

/// The user's inputs for `spec`: `--docs`/`--prompts`, else the file the experiment names
/// (`[inputs] file = …`, relative to the experiment file); read, checked and kept in `engine`.
fn read_inputs(spec: &mut ExperimentSpec, experiment: &Path, overrides: &Overrides, engine: &Engine) -> anyhow::Result<()> {
    let (flag, other) = match spec.workload {
        Workload::Batch => (&overrides.docs, overrides.prompts.as_ref().map(|_| "--prompts is for chat runs; this one is batch: give --docs")),
        Workload::Chat => (&overrides.prompts, overrides.docs.as_ref().map(|_| "--docs is for batch runs; this one is chat: give --prompts")),
    };
    if let Some(why) = other {
        bail!("{why}");
    }
    let path = match (flag, spec.inputs.as_ref().map(|r| r.file.as_str()).filter(|f| !f.is_empty())) {
        (Some(p), _) => p.clone(),
        (None, Some(f)) => experiment.parent().unwrap_or(Path::new(".")).join(f),
        (None, None) => return Ok(()),
    };
    let name = path.display().to_string();
    let parsed = if path.is_dir() {
        crate::workload::sources::folder(&path)?
    } else {
        let bytes = std::fs::read(&path).with_context(|| format!("{name}: cannot be read"))?;
        crate::workload::sources::parse(&name, &bytes, spec.workload)?
    };
    let kept = engine.store.put(&name, spec.workload, parsed)?;
    spec.inputs = Some(InputsRef { file: name, ..kept });
    Ok(())
}

pub async fn run(file: &Path, overrides: Overrides, out: &Path) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let invalid = || format!("{} is not a valid experiment", file.display());
    let value: serde_json::Value = toml::from_str(&text).with_context(invalid)?;
    let mut spec = spec_from_value(value).map_err(|errors| anyhow::anyhow!("{}:\n  {}", invalid(), listed(&errors)))?;
    let overrides_inputs = Overrides { docs: overrides.docs.clone(), prompts: overrides.prompts.clone(), ..Default::default() };
    if let Some(t) = overrides.target {
        spec.target = t;
    }
    if let Some(g) = overrides.gpu {
        spec.gpu = g;
    }
    if let Some(m) = overrides.model {
        spec.model = m;
    }
    // The person at the terminal is the operator: any URL may be loaded from here.
    let in_process = spec.target.is_empty();
    if in_process {
        spec.target = crate::cli::spawn_sim(Default::default()).await?;
    }
    let key = std::env::var("CAPLAB_API_KEY").ok();
    let password = std::env::var("CAPLAB_TARGET_PASSWORD").ok();
    let mut target = Target::from_url("cli", &spec.target, key.as_deref(), password.as_deref()).map_err(|e| anyhow::anyhow!("target: {e}"))?;
    target.in_process = in_process;
    spec.target = target.url.clone();
    // Saves into `out` without reading the runs already there; no limits but the machine's.
    let targets = Targets::new(&[], &target.url, |_| None).map_err(anyhow::Error::msg)?;
    let engine = Engine::new();
    read_inputs(&mut spec, file, &overrides_inputs, &engine)?;
    let lab = Lab::new(Registry::writing_to(out.to_path_buf()), engine, targets, None);
    let run = match lab.admit(spec, &target).await {
        Ok(run) => run,
        Err(Refusal::Invalid(errors)) => bail!("{} (with --target, --gpu and --model applied):\n  {}", invalid(), listed(&errors)),
        Err(Refusal::Conflict(why)) => bail!("{why}"),
    };
    let run_info = run.info();
    let sim_note = if run_info.target.simulated { " — SIMULATED target" } else { "" };
    eprintln!(
        "caplab run {}: {} {} cells, {} requests against {} ({}, model {}){sim_note}",
        run.id,
        run_info.spec.workload.as_str(),
        run_info.cells_total,
        run_info.requests_total,
        run_info.target.url,
        run_info.target.server.label(),
        run_info.spec.model
    );
    for missing in run_info.target.server.unavailable() {
        eprintln!("  unavailable with this server: {missing}");
    }
    let (_, mut rx) = run.subscribe();
    lab.launch(run.clone(), target.auth.clone());
    let stop = lab.shutdown.clone();
    tokio::spawn(async move {
        crate::cli::shutdown_signal().await;
        stop.cancel();
    });
    let terminal = std::io::stderr().is_terminal();
    while let Ok(msg) = rx.recv().await {
        match msg {
            ServerMsg::Tick { tick } if terminal => {
                let frac = tick.requests_done as f64 / run_info.requests_total.max(1) as f64;
                let bar: String = (0..30).map(|i| if (i as f64) < frac * 30.0 { '#' } else { '.' }).collect();
                let eta = tick.eta_s.map_or("?".into(), |e| format!("{e:.0}s"));
                eprint!(
                    "\r[{bar}] {:>3.0}%  cell {}/{}  in flight {:>4}  {:>8.1} tok/s  errors {}  eta {eta}   ",
                    frac * 100.0,
                    tick.cell + 1,
                    run_info.cells_total,
                    tick.in_flight,
                    tick.output_tok_s,
                    tick.errors
                );
            }
            ServerMsg::CellDone { result } if !terminal => {
                eprintln!("cell {}/{} done: {} ok, {} failed", result.cell + 1, run_info.cells_total, result.requests_ok, result.requests_failed);
            }
            ServerMsg::Status { status, .. } if status.is_terminal() => break,
            _ => {}
        }
    }
    eprintln!();
    // Wait until the run's files are written.
    lab.tasks.close();
    lab.tasks.wait().await;
    let view = run.view();
    print!("{}", table(&view));
    if let Some(m) = &view.info.message {
        println!("{m}");
    }
    let folder = out.join(&run.id);
    if folder.join("summary.csv").exists() {
        eprintln!("results: {}/summary.csv, requests.csv, run.json", folder.display());
    } else {
        eprintln!("results were not saved (see the error above)");
    }
    // 0: every cell ran; 2: stopped (by a user, a signal or max_error_rate); 3: every request
    // failed; 4: what it measured could not all be saved (a full disk: the message says how much).
    Ok(match view.info.status {
        RunStatus::Finished if view.every_request_failed() => ExitCode::from(3),
        RunStatus::Finished => ExitCode::SUCCESS,
        RunStatus::Failed => ExitCode::from(4),
        _ => ExitCode::from(2),
    })
}

/// Field errors, one per line.
fn listed(errors: &[FieldError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  ")
}

/// The results as an aligned text table, one row per cell.
pub fn table(view: &caplab_shared::RunView) -> String {
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    let mut out = String::new();
    if view.info.target.simulated {
        out.push_str("SIMULATED target: these numbers come from caplab's simulator, not a GPU.\n");
    }
    out.push_str(&format!(
        "{:<16} {:>7} {:>7} {:>10} {:>8} {:>9} {:>9} {:>9} {:>9} {:>7} {:>11} {:>9}\n",
        "cell", "ok", "failed", "out tok/s", "req/s", "ttft p50", "ttft p95", "e2e p50", "e2e p95", "tpot95", "slo", "goodput"
    ));
    let cells = view.info.spec.cells();
    for c in &view.cells {
        let label = cells.get(c.cell as usize).map_or(c.cell.to_string(), |s| s.label());
        out.push_str(&format!(
            "{:<16} {:>7} {:>7} {:>10.1} {:>8.2} {:>9} {:>9} {:>9} {:>9} {:>7} {:>11} {:>9.2}\n",
            label,
            c.requests_ok,
            c.requests_failed,
            c.output_tok_s,
            c.requests_per_s,
            f(c.ttft.p50),
            f(c.ttft.p95),
            f(c.e2e.p50),
            f(c.e2e.p95),
            f(c.tpot.p95),
            c.slo_state().word(),
            c.goodput_rps
        ));
    }
    for c in &view.cells {
        let label = cells.get(c.cell as usize).map_or(c.cell.to_string(), |s| s.label());
        for note in &c.notes {
            out.push_str(&format!("note {label}: {note}\n"));
        }
    }
    out.push_str("latencies in ms from each request's scheduled time; percentiles interpolate linearly (numpy's default).\n");
    if view.cells.iter().any(|c| c.server.is_some() || c.gpu.is_some()) {
        out.push_str(&format!(
            "\n{:<16} {:>8} {:>8} {:>8} {:>11} {:>11} {:>10} {:>8}\n",
            "server / GPU", "max KV%", "preempt", "waiting", "srv ttft95", "srv e2e95", "GPU MiB", "GPU util"
        ));
        for c in &view.cells {
            let label = cells.get(c.cell as usize).map_or(c.cell.to_string(), |s| s.label());
            let s = c.server.clone().unwrap_or_default();
            let g = c.gpu.clone().unwrap_or_default();
            out.push_str(&format!(
                "{:<16} {:>8} {:>8} {:>8} {:>11} {:>11} {:>10} {:>8}\n",
                label,
                f(s.max_kv_usage.map(|k| k * 100.0)),
                f(s.preemptions),
                f(s.max_waiting),
                f(s.ttft_p95_ms),
                f(s.e2e_p95_ms),
                f(g.max_memory_used_mib),
                f(g.mean_util_pct)
            ));
        }
        if view.telemetry.gpu_simulated {
            out.push_str("GPU figures are the simulator's model, not a GPU's.\n");
        }
    }
    if let Some(why) = &view.telemetry.server_missing {
        out.push_str(&format!("server metrics: none ({why})\n"));
    }
    if let Some(why) = &view.telemetry.gpu_missing {
        out.push_str(&format!("GPU telemetry: none ({why})\n"));
    }
    if !view.cells.is_empty() {
        out.push_str("\nOOM surface (rows max_new_tokens, columns concurrency or rate):\n");
        out.push_str(&caplab_shared::surface::table(&view.cells));
        out.push('\n');
    }
    out
}
