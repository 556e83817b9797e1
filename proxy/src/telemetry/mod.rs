//! Why capacity ends: during a run, the target's `/metrics` (about twice a second) and the
//! GPUs of this machine (about once a second), published live on the run's time axis, appended
//! to `server_metrics.csv` and `gpu.csv` in the run's folder, and summed up per cell.
//!
//! A target without `/metrics` (`transformers serve` answers 404) or a machine without an
//! NVIDIA GPU only hides a panel and says why; nothing fails. For the built-in simulator the
//! GPU readings are its model of the GPU, labelled simulated.

pub mod gpu;
pub mod prom;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use caplab_shared::{GpuCellStats, GpuSample, ServerCellStats, ServerMsg, ServerSample, TargetInfo, TelemetrySources};
use reqwest::header::HeaderValue;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::runs::Run;
use prom::Snapshot;

/// How often `/metrics` is scraped.
pub const SCRAPE_EVERY: Duration = Duration::from_millis(500);
/// A server whose CPU is saturated by its own load (vLLM's CPU build on a 2-core machine) can
/// take seconds to answer; a slow answer only thins the series (ticks are delayed, not queued).
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// A run's telemetry: started with the run, asked for each cell's summary, stopped at its end.
pub struct Telemetry {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

struct Shared {
    run: Arc<Run>,
    start: Instant,
    scraper: Option<Scraper>,
    simulated_gpu: bool,
    state: Mutex<State>,
}

#[derive(Clone)]
struct Scraper {
    client: reqwest::Client,
    url: String,
    auth: Option<HeaderValue>,
}

#[derive(Default)]
struct State {
    /// The run's first scrape: counters are shown as growth since it.
    first: Option<Snapshot>,
    cell_start: Option<Snapshot>,
    cell: CellMaxima,
    /// Each GPU's latest reading (nvidia-smi reports one GPU a line).
    latest_gpu: BTreeMap<u32, GpuSample>,
    server_csv: Option<std::fs::File>,
    gpu_csv: Option<std::fs::File>,
}

/// What the scrapes and readings of the cell going on peaked at.
#[derive(Default)]
struct CellMaxima {
    kv: Option<f64>,
    waiting: Option<f64>,
    running: Option<f64>,
    gpu_memory_used: Option<f64>,
    gpu_memory_total: Option<f64>,
    gpu_util_sum: f64,
    gpu_util_n: u32,
    gpu_power: Option<f64>,
    gpu_temp: Option<f64>,
}

impl CellMaxima {
    /// Gauges are read only when a scrape is answered, and a server whose CPU its own load
    /// saturates (vLLM's CPU build) answers at its lulls: when no scrape of the cell found a
    /// request running, waiting or holding KV cache, what the scrapes read of the load (the
    /// server's peaks, the simulator's GPU utilization) is unknown, not the 0 % that the idle
    /// readings show (a cell with 33 preemptions once read "KV cache peaked at 0%").
    fn caught_load(&self) -> bool {
        [self.kv, self.waiting, self.running].iter().any(|v| v.is_some_and(|v| v > 0.0))
    }
}

fn max(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

const SERVER_CSV_HEADER: &str = "t_s,running,waiting,kv_cache_usage,preemptions,prompt_tokens,generation_tokens\n";
const GPU_CSV_HEADER: &str = "t_s,gpu,memory_used_mib,memory_total_mib,util_pct,power_w,sm_clock_mhz,temp_c,simulated\n";

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{:?}", (v * 1000.0).round() / 1000.0)).unwrap_or_default()
}

impl Telemetry {
    /// Starts reading the target's `/metrics` and the GPUs for `run` (times from `start`).
    pub async fn start(run: Arc<Run>, client: &reqwest::Client, target: &TargetInfo, auth: Option<HeaderValue>, start: Instant) -> Telemetry {
        let mut sources = TelemetrySources::default();
        let scraper = Scraper { client: client.clone(), url: format!("{}/metrics", target.url), auth };
        let first = match scraper.scrape().await {
            Ok(snap) => {
                sources.server = Some(format!("GET {} every {} s", scraper.url, SCRAPE_EVERY.as_secs_f64()));
                Some(snap)
            }
            Err(why) => {
                sources.server_missing = Some(why);
                None
            }
        };
        let simulated_gpu = target.simulated && first.as_ref().is_some_and(|s| s.get(prom::SIM_GPU_TOTAL).is_some());
        let gpu_source = if target.simulated {
            if simulated_gpu {
                sources.gpu = Some("simulated: the simulator's model of its GPU's memory (weights + KV cache) and load".into());
                sources.gpu_simulated = true;
            } else {
                sources.gpu_missing = Some("the simulator models no GPU memory".into());
            }
            None
        } else if !is_local(&target.url) {
            sources.gpu_missing = Some(format!(
                "the target ({}) is not on this machine: caplab reads the GPUs of the machine it runs on; run it on the pod",
                target.url
            ));
            None
        } else {
            match gpu::Source::open().await {
                Ok((source, said)) => {
                    sources.gpu = Some(said);
                    Some(source)
                }
                Err(why) => {
                    sources.gpu_missing = Some(why);
                    None
                }
            }
        };
        run.publish(ServerMsg::Telemetry { sources });
        let has_server = first.is_some();
        let state = State {
            server_csv: has_server.then(|| run.series("server_metrics.csv", SERVER_CSV_HEADER)).flatten(),
            gpu_csv: (simulated_gpu || gpu_source.is_some()).then(|| run.series("gpu.csv", GPU_CSV_HEADER)).flatten(),
            first,
            ..State::default()
        };
        let shared = Arc::new(Shared { run, start, scraper: has_server.then_some(scraper), simulated_gpu, state: Mutex::new(state) });
        let cancel = CancellationToken::new();
        let mut tasks = Vec::new();
        if has_server {
            let (shared, cancel) = (shared.clone(), cancel.clone());
            tasks.push(tokio::spawn(async move {
                let mut every = tokio::time::interval(SCRAPE_EVERY);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = every.tick() => { shared.scrape_and_publish().await; }
                        _ = cancel.cancelled() => return,
                    }
                }
            }));
        }
        if let Some(source) = gpu_source {
            let (shared, cancel) = (shared.clone(), cancel.clone());
            tasks.push(tokio::spawn(async move { source.follow(start, cancel, |readings| shared.gpu_readings(readings)).await }));
        }
        Telemetry { shared, cancel, tasks }
    }

    /// Marks the start of a cell: its server statistics count from here.
    pub async fn cell_begin(&self) {
        let snap = self.shared.scrape_and_publish().await;
        let mut st = lock(&self.shared.state);
        st.cell = CellMaxima::default();
        st.cell_start = snap;
    }

    /// The server's and the GPUs' side of the cell that just ended (a fresh scrape closes it).
    pub async fn cell_end(&self) -> (Option<ServerCellStats>, Option<GpuCellStats>) {
        let now = self.shared.scrape_and_publish().await;
        let st = lock(&self.shared.state);
        let caught = st.cell.caught_load();
        let seen = |v: Option<f64>| v.filter(|_| caught);
        let server = match (now, &st.cell_start) {
            (Some(now), Some(before)) => Some(ServerCellStats {
                max_kv_usage: seen(st.cell.kv),
                max_waiting: seen(st.cell.waiting),
                max_running: seen(st.cell.running),
                preemptions: now.growth(before, prom::PREEMPTIONS),
                ttft_p50_ms: now.quantile_ms_since(before, prom::TTFT, 0.5),
                ttft_p95_ms: now.quantile_ms_since(before, prom::TTFT, 0.95),
                e2e_p50_ms: now.quantile_ms_since(before, prom::E2E, 0.5),
                e2e_p95_ms: now.quantile_ms_since(before, prom::E2E, 0.95),
                queue_p50_ms: now.quantile_ms_since(before, prom::QUEUE, 0.5),
                queue_p95_ms: now.quantile_ms_since(before, prom::QUEUE, 0.95),
                requests: now.count_since(before, prom::E2E),
                prefix_cache_hit_rate: match (now.growth(before, prom::PREFIX_HITS), now.growth(before, prom::PREFIX_QUERIES)) {
                    (Some(hits), Some(queries)) if queries > 0.0 => Some(hits / queries),
                    _ => None,
                },
            }),
            _ => None,
        };
        let c = &st.cell;
        let gpu = (c.gpu_memory_total.is_some() || c.gpu_util_n > 0).then(|| GpuCellStats {
            max_memory_used_mib: c.gpu_memory_used,
            memory_total_mib: c.gpu_memory_total,
            // The simulator's GPU is read in the same scrapes as its gauges (a real one by nvidia-smi,
            // whose utilization covers the whole interval between its readings).
            mean_util_pct: (c.gpu_util_n > 0 && (caught || !self.shared.simulated_gpu)).then(|| c.gpu_util_sum / f64::from(c.gpu_util_n)),
            max_power_w: c.gpu_power,
            max_temp_c: c.gpu_temp,
        });
        (server, gpu)
    }

    /// Stops reading; the series files are complete.
    pub async fn stop(self) {
        self.cancel.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        let mut st = lock(&self.shared.state);
        for f in [st.server_csv.take(), st.gpu_csv.take()].into_iter().flatten() {
            let _ = f.sync_all();
        }
    }
}

impl Scraper {
    async fn scrape(&self) -> Result<Snapshot, String> {
        let mut req = self.client.get(&self.url).timeout(SCRAPE_TIMEOUT);
        if let Some(a) = &self.auth {
            req = req.header(reqwest::header::AUTHORIZATION, a.clone());
        }
        let mut resp = req.send().await.map_err(|e| format!("GET {} failed: {e}", self.url))?;
        let status = resp.status();
        if status.is_redirection() {
            return Err(format!("GET {} answered {status}, a redirect, and caplab follows none: there is no server-side panel", self.url));
        }
        if !status.is_success() {
            return Err(format!("GET {} answered {status}: this server publishes no Prometheus metrics, so there is no server-side panel", self.url));
        }
        // vLLM's is ~30 KB; a body past this cap is not a metrics page worth reading twice a second.
        const MAX_BODY: usize = 8 << 20;
        if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
            return Err(format!("GET {} is larger than {} MiB", self.url, MAX_BODY >> 20));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("GET {}: {e}", self.url))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(format!("GET {} is larger than {} MiB", self.url, MAX_BODY >> 20));
            }
            body.extend_from_slice(&chunk);
        }
        let snap = Snapshot::parse(&String::from_utf8_lossy(&body));
        if snap.values.is_empty() && snap.histograms.is_empty() {
            return Err(format!("GET {} holds no metrics caplab can read", self.url));
        }
        Ok(snap)
    }
}

impl Shared {
    /// Scrapes once (a failed scrape, say while the server restarts, is skipped), publishes the
    /// sample, and returns the snapshot.
    async fn scrape_and_publish(&self) -> Option<Snapshot> {
        let snap = match self.scraper.as_ref()?.scrape().await {
            Ok(snap) => snap,
            Err(why) => {
                tracing::warn!("run {}: a /metrics scrape was skipped: {why}", self.run.id);
                return None;
            }
        };
        let t_s = self.start.elapsed().as_secs_f64();
        let sample = {
            let mut st = lock(&self.state);
            let first = st.first.get_or_insert_with(|| snap.clone()).clone();
            let sample = ServerSample {
                t_s,
                running: snap.get(prom::RUNNING),
                waiting: snap.get(prom::WAITING),
                kv_usage: snap.first_of(prom::KV_USAGE),
                preemptions: snap.growth(&first, prom::PREEMPTIONS),
                prompt_tokens: snap.growth(&first, prom::PROMPT_TOKENS),
                generation_tokens: snap.growth(&first, prom::GENERATION_TOKENS),
            };
            st.cell.kv = max(st.cell.kv, sample.kv_usage);
            st.cell.waiting = max(st.cell.waiting, sample.waiting);
            st.cell.running = max(st.cell.running, sample.running);
            if let Some(f) = st.server_csv.as_mut() {
                let row = [sample.running, sample.waiting, sample.kv_usage, sample.preemptions, sample.prompt_tokens, sample.generation_tokens];
                let line = format!("{:.3},{}\n", t_s, row.map(opt).join(","));
                if f.write_all(line.as_bytes()).is_err() {
                    st.server_csv = None;
                }
            }
            sample
        };
        self.run.publish(ServerMsg::Server { sample });
        if self.simulated_gpu {
            let mib = |name| snap.get(name).map(|b| b / 1_048_576.0);
            let reading = GpuSample {
                t_s,
                gpu: 0,
                memory_used_mib: mib(prom::SIM_GPU_USED),
                memory_total_mib: mib(prom::SIM_GPU_TOTAL),
                util_pct: snap.get(prom::SIM_GPU_UTIL).map(|u| u * 100.0),
                ..Default::default()
            };
            self.gpu_readings(vec![reading]);
        }
        Some(snap)
    }

    /// Keeps, saves and publishes GPU readings, and folds them into the cell's figures.
    fn gpu_readings(&self, readings: Vec<GpuSample>) {
        if readings.is_empty() {
            return;
        }
        {
            let mut st = lock(&self.state);
            for r in &readings {
                st.latest_gpu.insert(r.gpu, r.clone());
            }
            let all: Vec<GpuSample> = st.latest_gpu.values().cloned().collect();
            let sum = |f: fn(&GpuSample) -> Option<f64>| all.iter().filter_map(f).reduce(|a, b| a + b);
            let c = &mut st.cell;
            c.gpu_memory_used = max(c.gpu_memory_used, sum(|g| g.memory_used_mib));
            c.gpu_memory_total = sum(|g| g.memory_total_mib).or(c.gpu_memory_total);
            c.gpu_power = max(c.gpu_power, sum(|g| g.power_w));
            c.gpu_temp = max(c.gpu_temp, all.iter().filter_map(|g| g.temp_c).reduce(f64::max));
            let utils: Vec<f64> = all.iter().filter_map(|g| g.util_pct).collect();
            if !utils.is_empty() {
                c.gpu_util_sum += utils.iter().sum::<f64>() / utils.len() as f64;
                c.gpu_util_n += 1;
            }
            let simulated = self.simulated_gpu;
            if let Some(f) = st.gpu_csv.as_mut() {
                let mut text = String::new();
                for r in &readings {
                    let row = [r.memory_used_mib, r.memory_total_mib, r.util_pct, r.power_w, r.sm_clock_mhz, r.temp_c];
                    text.push_str(&format!("{:.3},{},{},{simulated}\n", r.t_s, r.gpu, row.map(opt).join(",")));
                }
                if f.write_all(text.as_bytes()).is_err() {
                    st.gpu_csv = None;
                }
            }
        }
        self.run.publish(ServerMsg::Gpu { samples: readings });
    }
}

/// The target runs on this machine, so this machine's GPUs are the ones serving it.
fn is_local(url: &str) -> bool {
    match url::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_string)) {
        Some(h) => {
            let h = h.trim_start_matches('[').trim_end_matches(']');
            h == "localhost" || h == "0.0.0.0" || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_target_on_this_machine_has_its_gpus_read_here() {
        assert!(super::is_local("http://127.0.0.1:8000"));
        assert!(super::is_local("http://localhost:8000"));
        assert!(super::is_local("http://[::1]:8000"));
        assert!(!super::is_local("https://abc-8000.proxy.runpod.net"));
        assert!(!super::is_local("http://10.0.0.5:8000"));
    }

    #[test]
    fn gauge_peaks_are_unknown_when_no_scrape_caught_the_load() {
        let idle = CellMaxima { kv: Some(0.0), waiting: Some(0.0), running: Some(0.0), ..Default::default() };
        assert!(!idle.caught_load(), "idle readings are no peak");
        let busy = CellMaxima { kv: Some(0.4), waiting: Some(0.0), running: Some(3.0), ..Default::default() };
        assert!(busy.caught_load());
        // A server that publishes only the KV gauge still has its peak.
        let kv_only = CellMaxima { kv: Some(0.7), ..Default::default() };
        assert!(kv_only.caught_load());
    }
}
