//! The server's and the GPU's side of the shown run, on the run's time axis: the target's
//! `/metrics` (queue, KV cache, preemptions) and the GPUs (memory, utilization, power). A
//! source that is missing hides its charts and says why.

use caplab_shared::GpuSample;
use leptos::prelude::*;

use crate::charts::{LineChart, Series};
use crate::{with_view, Ctx};

/// All GPUs at each reading time: memory and power summed, utilization averaged.
fn per_reading(samples: &[GpuSample]) -> Vec<(f64, GpuSample)> {
    let mut out: Vec<(f64, GpuSample, u32)> = Vec::new();
    for s in samples {
        let add = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        match out.last_mut() {
            // nvidia-smi stamps each GPU's line a few ms apart: one reading.
            Some((t, acc, n)) if (s.t_s - *t).abs() < 0.2 && s.gpu != acc.gpu => {
                acc.memory_used_mib = add(acc.memory_used_mib, s.memory_used_mib);
                acc.memory_total_mib = add(acc.memory_total_mib, s.memory_total_mib);
                acc.power_w = add(acc.power_w, s.power_w);
                acc.util_pct = add(acc.util_pct, s.util_pct);
                acc.gpu = s.gpu;
                *n += 1;
            }
            _ => out.push((s.t_s, s.clone(), 1)),
        }
    }
    out.into_iter().map(|(t, mut s, n)| {
        s.util_pct = s.util_pct.map(|u| u / f64::from(n));
        (t, s)
    }).collect()
}

#[component]
pub fn TelemetryPanel() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let has_server = move || with_view(ctx, |v| !v.server.is_empty()).unwrap_or(false);
    let has_gpu = move || with_view(ctx, |v| !v.gpu.is_empty()).unwrap_or(false);
    let server_note = move || with_view(ctx, |v| v.telemetry.server_missing.clone().or_else(|| v.telemetry.server.clone())).flatten();
    let gpu_note = move || with_view(ctx, |v| v.telemetry.gpu_missing.clone().or_else(|| v.telemetry.gpu.clone())).flatten();
    let simulated_gpu = move || with_view(ctx, |v| v.telemetry.gpu_simulated).unwrap_or(false);
    let server = move |f: fn(&caplab_shared::ServerSample) -> Option<f64>| -> Vec<(f64, Option<f64>)> {
        with_view(ctx, |v| v.server.iter().map(|s| (s.t_s, f(s))).collect()).unwrap_or_default()
    };
    let gpu = move |f: fn(&GpuSample) -> Option<f64>| -> Vec<(f64, Option<f64>)> {
        with_view(ctx, |v| per_reading(&v.gpu).iter().map(|(t, s)| (*t, f(s))).collect()).unwrap_or_default()
    };
    let queue = Signal::derive(move || {
        vec![
            Series { name: "running", class: "c1", points: server(|s| s.running) },
            Series { name: "waiting", class: "c5", points: server(|s| s.waiting) },
        ]
    });
    let kv = Signal::derive(move || vec![Series { name: "KV cache used", class: "c3", points: server(|s| s.kv_usage.map(|k| k * 100.0)) }]);
    let preemptions = Signal::derive(move || vec![Series { name: "preemptions", class: "c5", points: server(|s| s.preemptions) }]);
    let memory = Signal::derive(move || {
        vec![
            Series { name: "used", class: "c2", points: gpu(|s| s.memory_used_mib) },
            Series { name: "total", class: "c4", points: gpu(|s| s.memory_total_mib) },
        ]
    });
    let util = Signal::derive(move || {
        vec![
            Series { name: "utilization %", class: "c1", points: gpu(|s| s.util_pct) },
            Series { name: "power W", class: "c3", points: gpu(|s| s.power_w) },
        ]
    });
    view! {
        <div class="card" id="telemetry">
            <h2>"Server and GPU"</h2>
            <Show when=has_server fallback=move || view! { <p class="muted small" id="server-metrics-missing">{move || format!("No server metrics: {}", server_note().unwrap_or_else(|| "waiting for the first scrape".into()))}</p> }>
                <p class="muted small">{move || format!("From the target's /metrics ({}), on the same time axis as the charts above.", server_note().unwrap_or_default())}</p>
                <div class="charts">
                    <LineChart id="chart-server-queue" title="Server queue" unit="requests" series=queue integer=true
                        help="vllm:num_requests_running and vllm:num_requests_waiting: requests the engine runs, and those waiting for a sequence slot or KV blocks"/>
                    <LineChart id="chart-kv" title="KV cache" unit="% used" series=kv
                        help="vllm:kv_cache_usage_perc: the share of KV-cache blocks in use; near 100% new requests wait and running ones get preempted"/>
                    <LineChart id="chart-preemptions" title="Preemptions" unit="since run start" series=preemptions integer=true
                        help="vllm:num_preemptions_total since the run started: requests evicted from the KV cache and recomputed later"/>
                </div>
            </Show>
            <Show when=has_gpu fallback=move || view! { <p class="muted small" id="gpu-missing">{move || format!("No GPU telemetry: {}", gpu_note().unwrap_or_else(|| "waiting for the first reading".into()))}</p> }>
                <p class="muted small">{move || format!("GPU{}: {}", if simulated_gpu() { " (SIMULATED)" } else { "" }, gpu_note().unwrap_or_default())}</p>
                <div class="charts">
                    <LineChart id="chart-gpu-memory" title=if simulated_gpu() { "GPU memory (simulated)" } else { "GPU memory" } unit="MiB" series=memory
                        help="Memory used and total, all GPUs together; vLLM reserves most of it for the KV cache at start"/>
                    <LineChart id="chart-gpu-util" title=if simulated_gpu() { "GPU load (simulated)" } else { "GPU load" } unit="% · W" series=util
                        help="Utilization (share of time a kernel ran, averaged over GPUs) and power draw (summed)"/>
                </div>
            </Show>
        </div>
    }
}
