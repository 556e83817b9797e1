//! The grid views of the shown run, drawn by `caplab_shared` (the same SVGs as the downloads):
//! the OOM surface (one tile per finished cell, coloured by how it ended; hover a tile for its
//! cause, click it for the numbers behind it) and the throughput–latency frontier.

use caplab_shared::surface::{cause, Outcome};
use caplab_shared::CellResult;
use leptos::prelude::*;
use wasm_bindgen::JsCast;

use crate::{fmt_opt, Ctx};

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
    let svg = move || {
        ctx.current.with(|c| {
            c.as_ref().map(|v| caplab_shared::frontier::svg(&v.cells, &v.chart_title()))
        })
    };
    let id = move || ctx.current.with(|c| c.as_ref().map(|v| v.info.id.clone())).unwrap_or_default();
    view! {
        <Show when=move || ctx.current.with(|c| c.as_ref().is_some_and(|v| !v.cells.is_empty()))>
            <div class="card" id="frontier">
                <div class="row">
                    <h2>"Throughput vs latency"</h2>
                    <a id="download-frontier" class="button" href=move || format!("api/runs/{}/frontier.svg", id()) download="">"Download SVG"</a>
                </div>
                <p class="muted small">"Each finished cell at its output tokens/s and p95 end-to-end latency; a line per max_new_tokens in order of load; filled points meet the SLO (dashed line); the ring is the best configuration."</p>
                <div class="surface-wrap" inner_html=svg></div>
            </div>
        </Show>
    }
}

fn detail_of(c: &CellResult) -> (String, Vec<String>) {
    let x = c.rate.map_or(format!("c{}", c.concurrency), |r| format!("{r} rps"));
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
