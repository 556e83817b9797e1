//! The grid views of the shown run, drawn by `caplab_shared` (the same SVGs as the downloads):
//! the OOM surface (one tile per finished cell, coloured by how it ended; hover a tile for its
//! cause, click it for the numbers behind it) and the throughput–latency frontier.

use caplab_shared::prediction::Prediction;
use caplab_shared::surface::{cause, Outcome};
use caplab_shared::{CellResult, LoadMode};
use leptos::prelude::*;
use wasm_bindgen::JsCast;

use crate::{api, fmt_opt, Ctx};

#[component]
pub fn SurfacePanel() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let selected = RwSignal::new(None::<u32>);
    let svg = move || {
        ctx.current.with(|c| {
            // An ended run's grid whole, its cells not run in grey; a live one's next cells blank.
            c.as_ref().map(|v| if v.info.status.is_terminal() { caplab_shared::surface::svg_of(v) } else { caplab_shared::surface::svg(&v.cells, &v.chart_title()) })
        })
    };
    let id = move || ctx.current.with(|c| c.as_ref().map(|v| v.info.id.clone())).unwrap_or_default();
    let pick = move |ev: leptos::ev::MouseEvent| {
        let tile = ev.target().and_then(|t| t.dyn_into::<web_sys::Element>().ok()).and_then(|e| e.closest("[data-cell]").ok().flatten());
        selected.set(tile.and_then(|t| t.get_attribute("data-cell")).and_then(|c| c.parse().ok()));
    };
    let detail = move || {
        let cell = selected.get()?;
        ctx.current.with(|c| c.as_ref().and_then(|v| v.cells.iter().find(|r| r.cell == cell).cloned())).map(|c| detail_of(&c))
    };
    view! {
        <Show when=move || ctx.current.with(|c| c.as_ref().is_some_and(|v| !v.cells.is_empty()))>
            <div class="card" id="surface">
                <div class="row">
                    <h2>"OOM surface"</h2>
                    <a id="download-surface" class="button" href=move || format!("api/runs/{}/surface.svg", id()) download="">"Download SVG"</a>
                </div>
                <p class="muted small">"One tile per cell, filled in as cells finish; the worst that happened in it sets its colour. Hover a tile for why, click it for the numbers."</p>
                <div class="surface-wrap" on:click=pick inner_html=svg></div>
                {move || detail().map(|(title, lines)| view! {
                    <div class="surface-detail" id="surface-detail">
                        <strong>{title}</strong>
                        <ul>{lines.into_iter().map(|l| view! { <li>{l}</li> }).collect_view()}</ul>
                    </div>
                })}
            </div>
        </Show>
    }
}

#[component]
pub fn FrontierPanel() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    // A prediction of the shown run on another GPU, drawn over its frontier while it is the one shown.
    let prediction = RwSignal::new(None::<Prediction>);
    let predict_error = RwSignal::new(None::<String>);
    let id = move || ctx.current.with(|c| c.as_ref().map(|v| v.info.id.clone())).unwrap_or_default();
    let shown_prediction = move || prediction.get().filter(|p| p.run_id == id());
    let svg = move || match shown_prediction() {
        Some(p) => Some(p.frontier_svg),
        None => ctx.current.with(|c| c.as_ref().map(|v| caplab_shared::frontier::svg(&v.cells, &v.chart_title()))),
    };
    // Only a finished run measured on a real server can be replayed on another GPU.
    let predictable = move || ctx.current.with(|c| c.as_ref().is_some_and(|v| v.info.status.is_terminal() && !v.info.target.simulated && v.info.spec.mode == LoadMode::Closed));
    let gpu = RwSignal::new(String::new());
    let predict = move |_| {
        let (run, key) = (id(), gpu.get_untracked());
        if key.is_empty() {
            predict_error.set(Some("choose a GPU to predict".into()));
            return;
        }
        predict_error.set(None);
        leptos::task::spawn_local(async move {
            match api::get_json::<Prediction>(&format!("api/runs/{run}/predict?gpu={key}")).await {
                Ok(p) => prediction.set(Some(p)),
                Err(e) => predict_error.set(Some(e)),
            }
        });
    };
    view! {
        <Show when=move || ctx.current.with(|c| c.as_ref().is_some_and(|v| !v.cells.is_empty()))>
            <div class="card" id="frontier">
                <div class="row">
                    <h2>"Throughput vs latency"</h2>
                    <a id="download-frontier" class="button" href=move || format!("api/runs/{}/frontier.svg", id()) download="">"Download SVG"</a>
                </div>
                <p class="muted small">"Each finished cell at its output tokens/s and p95 end-to-end latency; a line per max_new_tokens in order of load; filled points meet the SLO (dashed line); the ring is the best configuration."</p>
                <div class="surface-wrap" id="frontier-chart" inner_html=svg></div>
                <Show when=predictable>
                    <div class="row predict" id="predict">
                        <label for="predict-gpu">"What would this do on another GPU?"</label>
                        <select id="predict-gpu" on:change=move |ev| gpu.set(event_target_value(&ev))>
                            <option value="">"choose a GPU"</option>
                            {move || ctx.defaults.with(|d| d.gpu_prices.iter().map(|g| view! { <option value=g.key.clone()>{g.name.clone()}</option> }).collect_view())}
                        </select>
                        <button type="button" id="predict-go" on:click=predict>"Predict"</button>
                        <Show when=move || shown_prediction().is_some()>
                            <button type="button" id="predict-clear" on:click=move |_| prediction.set(None)>"Measured only"</button>
                        </Show>
                    </div>
                </Show>
                {move || predict_error.get().map(|e| view! { <p class="form-error" id="predict-error">{e}</p> })}
                {move || shown_prediction().map(|p| predicted_table(&p))}
            </div>
        </Show>
    }
}

/// The prediction beside the measurement, cell by cell, with what stands behind it.
fn predicted_table(p: &Prediction) -> impl IntoView {
    let range = |r: Option<(f64, f64)>| r.map_or("no published error".to_string(), |(lo, hi)| format!("{:.0}–{:.0}", lo, hi));
    let usd = |tok: f64| Prediction::usd_per_m_tokens(p.usd_per_hour, tok).map_or("–".to_string(), |u| format!("${u:.2}"));
    view! {
        <div class="predicted" id="predicted">
            <p><span class="badge predicted-badge">"PREDICTED"</span>" "{format!("{} on {} ({}), from this run measured on {}: dashed lines, shaded boxes = the published error", p.model, p.gpu, p.engine, p.measured_gpu)}</p>
            <table class="cells">
                <tr>
                    <th>"cell"</th><th>"measured tok/s"</th><th>"PREDICTED tok/s"</th><th>"range"</th>
                    <th>"measured p95 E2E ms"</th><th>"PREDICTED p95 E2E ms"</th><th>"range"</th>
                    <th>{format!("PREDICTED $/M tokens at {}/h", p.usd_per_hour.map_or("–".to_string(), |u| format!("${u:.2}")))}</th><th>"bound by"</th>
                </tr>
                {p.cells.iter().map(|c| view! {
                    <tr>
                        <td>{c.label()}</td>
                        <td>{format!("{:.0}", c.measured_output_tok_s)}</td>
                        <td>{format!("{:.0}", c.output_tok_s)}</td>
                        <td>{range(c.output_tok_s_range)}</td>
                        <td>{fmt_opt(c.measured_e2e_p95_ms, 0)}</td>
                        <td>{format!("{:.0}", c.e2e_p95_ms)}</td>
                        <td>{range(c.e2e_p95_range)}</td>
                        <td>{usd(c.output_tok_s)}</td>
                        <td>{c.bound_by.clone()}</td>
                    </tr>
                }).collect_view()}
            </table>
            <ul class="muted small">{p.caveats.iter().map(|c| view! { <li>{c.clone()}</li> }).collect_view()}</ul>
            <a id="predict-notes" class="button" href=format!("api/report?runs={}&predict={}", p.run_id, p.gpu_key) download=""
                title="the notes' GPU comparison of this run against its prediction, the predicted GPU labelled PREDICTED">"Notes with this prediction (markdown)"</a>
        </div>
    }
}

fn detail_of(c: &CellResult) -> (String, Vec<String>) {
    let x = c.load().label();
    let title = format!("{x} × {}: {}", c.max_new_tokens, Outcome::of(c).label());
    let mut lines = vec![cause(c)];
    lines.push(format!(
        "client: {} ok, {} failed · TTFT p50/p95 {} / {} ms · E2E p50/p95 {} / {} ms",
        c.requests_ok,
        c.requests_failed,
        fmt_opt(c.ttft.p50, 0),
        fmt_opt(c.ttft.p95, 0),
        fmt_opt(c.e2e.p50, 0),
        fmt_opt(c.e2e.p95, 0)
    ));
    if let Some(s) = &c.server {
        lines.push(format!(
            "server (/metrics): TTFT p50/p95 {} / {} ms · E2E p50/p95 {} / {} ms · queue p95 {} ms · max KV {} · max waiting {} · preemptions {}",
            fmt_opt(s.ttft_p50_ms, 0),
            fmt_opt(s.ttft_p95_ms, 0),
            fmt_opt(s.e2e_p50_ms, 0),
            fmt_opt(s.e2e_p95_ms, 0),
            fmt_opt(s.queue_p95_ms, 0),
            s.max_kv_usage.map_or("–".into(), |k| format!("{:.0}%", k * 100.0)),
            fmt_opt(s.max_waiting, 0),
            fmt_opt(s.preemptions, 0)
        ));
        if let Some(h) = s.prefix_cache_hit_rate {
            lines.push(format!("prefix cache: {:.0}% of the prompt tokens were found cached (vllm:prefix_cache_hits_total ÷ queries_total)", h * 100.0));
        }
    }
    if let Some(g) = &c.gpu {
        lines.push(format!(
            "GPU: max memory {} of {} MiB · mean utilization {}% · max power {} W",
            fmt_opt(g.max_memory_used_mib, 0),
            fmt_opt(g.memory_total_mib, 0),
            fmt_opt(g.mean_util_pct, 0),
            fmt_opt(g.max_power_w, 0)
        ));
    }
    (title, lines)
}
