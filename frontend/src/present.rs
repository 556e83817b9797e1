//! The presentation: what a client sees through the viewer link (and the operator at a click).
//! The answer first — a capacity card (`caplab_shared::decide::capacity`, the same card as the
//! HTML report) — then, while the run goes on, big live tiles, then a large frontier; the other
//! runs the client may see below, as small cards. No run ids, no target addresses.

use caplab_shared::decide::{capacity, Capacity, Provenance};
use caplab_shared::{RunInfo, RunStatus, RunView};
use leptos::prelude::*;

use crate::{fmt_opt, live, thousands as n0, when, with_view, Ctx};


/// A run's title for clients: its name, else what it ran on what.
fn title_of(info: &RunInfo) -> String {
    if info.spec.name.is_empty() {
        format!("{} on {}", info.spec.workload.as_str(), info.spec.gpu)
    } else {
        info.spec.name.clone()
    }
}

#[component]
pub fn Presentation() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let card = move || {
        with_view(ctx, |v| {
            let price = ctx.defaults.with(|d| d.price_for(&v.info.spec.gpu));
            (capacity(v, price), title_of(&v.info))
        })
    };
    let live = move || with_view(ctx, |v| !v.info.status.is_terminal()).unwrap_or(false);
    let frontier = move || {
        with_view(ctx, |v| {
            (!v.cells.is_empty()).then(|| {
                // Short: the card above names the model; a long title would be clipped.
                let gpu = v.info.spec.gpu.split(" · ").next().unwrap_or_default();
                let title = format!("{} · {gpu}", v.info.spec.workload.as_str());
                caplab_shared::frontier::svg(&v.cells, &title)
            })
        })
        .flatten()
    };
    let others = move || {
        let shown = ctx.watching.get();
        ctx.runs.with(|r| r.iter().filter(|i| Some(&i.id) != shown.as_ref()).take(12).cloned().collect::<Vec<_>>())
    };
    view! {
        <div class="present" id="presentation">
            {move || match card() {
                None => view! {
                    <section class="capacity-card empty" id="capacity-card">
                        <h2>"No run to show yet"</h2>
                        <p class="muted">"The results appear here as soon as a run starts."</p>
                    </section>
                }.into_any(),
                Some((c, title)) => view! { <CapacityCard c=c title=title/> }.into_any(),
            }}
            <Show when=live>
                <LiveTiles/>
            </Show>
            {move || frontier().map(|svg| view! {
                <section class="present-frontier" id="present-frontier">
                    <h3>"Throughput vs latency"</h3>
                    <p class="muted small">"Each point is one load level: its output tokens/s against its p95 end-to-end latency. Filled points meet the SLO (dashed line); the ring is the best configuration."</p>
                    <div class="chart-white" inner_html=svg></div>
                </section>
            })}
            <Show when=move || !others().is_empty()>
                <section class="present-runs">
                    <h3>"Other runs"</h3>
                    <div class="run-cards">
                        <For each=others key=|i| (i.id.clone(), i.status.as_str(), i.headline.is_some()) let:info>
                            {
                                let id = info.id.clone();
                                let tag = if info.imported_from.is_some() { "IMPORTED" } else if info.target.simulated { "SIMULATED" } else { "" };
                                let line = info.headline.as_ref().and_then(|h| match (&h.best, &h.max_stable) {
                                    (Some(b), Some(m)) => Some(format!("best {b} · {} tok/s · max stable {m}", fmt_opt(h.best_tok_s, 0))),
                                    (Some(b), None) => Some(format!("best {b} · {} tok/s", fmt_opt(h.best_tok_s, 0))),
                                    _ => h.why_none.clone(),
                                }).unwrap_or_else(|| info.status.as_str().to_string());
                                view! {
                                    <button type="button" class="run-card" on:click=move |_| live::watch(ctx, id.clone())>
                                        <strong>{title_of(&info)}</strong>
                                        {(!tag.is_empty()).then(|| view! { <span class="tag">{tag}</span> })}
                                        <span class="muted small">{line}</span>
                                    </button>
                                }
                            }
                        </For>
                    </div>
                </section>
            </Show>
        </div>
    }
}

#[component]
fn CapacityCard(c: Capacity, title: String) -> impl IntoView {
    let (ribbon, ribbon_text) = match &c.provenance {
        Provenance::Simulated => (Some("simulated"), "SIMULATED: caplab's simulator, not a GPU".to_string()),
        Provenance::Imported { from, simulated: true } => (Some("imported"), format!("IMPORTED and SIMULATED: a simulated run from another caplab ({from})")),
        Provenance::Imported { from, .. } => (Some("imported"), format!("IMPORTED: measured by another tool ({from})")),
        Provenance::Measured => (None, String::new()),
    };
    let status = match c.status {
        RunStatus::Running | RunStatus::Queued => format!("live · {} of {} load levels done", c.cells_done, c.cells_total),
        RunStatus::Finished => String::new(),
        s => s.as_str().to_string(),
    };
    let big = |value: String, label: String, id: &'static str| view! { <div class="big-stat" id=id><div class="value">{value}</div><div class="label">{label}</div></div> };
    // The number large ("≥ 64 users"); what qualifies it ("the grid's highest") in the label.
    let (users, qualifier) = match (c.max_stable.clone(), c.max_stable_concurrency) {
        (Some(words), Some(n)) if !words.contains("rps") => {
            let open = if words.starts_with('≥') { "≥ " } else { "" };
            let unit = if c.workload == "chat" { " users" } else { " in flight" };
            let rest = words.split_once('(').map(|(_, r)| format!(" ({r}")).unwrap_or_default();
            (Some(format!("{open}{n}{unit}")), rest)
        }
        (words, _) => (words, String::new()),
    };
    view! {
        <section class="capacity-card" id="capacity-card">
            {ribbon.map(|r| view! { <div class=format!("ribbon {r}") id="capacity-ribbon">{ribbon_text.clone()}</div> })}
            <div class="card-head">
                <h2>{title}</h2>
                {(!status.is_empty()).then(|| view! { <span class="status-line">{status.clone()}</span> })}
            </div>
            <div class="big-stats">
                {big(users.unwrap_or_else(|| "—".into()), format!("{} within the SLO ({}){qualifier}", if c.max_stable.as_deref().is_some_and(|m| m.contains("rps")) { "highest request rate" } else { "max stable concurrency" }, c.slo), "cap-max-stable")}
                {big(c.output_tok_s.map_or("—".into(), |t| format!("{} tok/s", n0(t))), c.best.clone().map_or("output tokens/s".into(), |b| format!("output at the best configuration, {b}")), "cap-throughput")}
                {big(c.p95_ms.map_or("—".into(), |p| format!("{} ms", n0(p))), "p95 end-to-end latency there".into(), "cap-p95")}
                {big(c.usd_per_million_tokens.map_or("—".into(), |d| format!("${d:.3}")), c.usd_per_hour.map_or("per million output tokens: no price known for this GPU".into(), |h| format!("per million output tokens at ${h:.2}/hour")), "cap-cost")}
            </div>
            {c.why_none.clone().map(|w| view! { <p class="why-none" id="capacity-why-none">{w}</p> })}
            <dl class="environment">
                <dt>"GPU"</dt><dd>{if c.gpu.is_empty() { "not stated".to_string() } else { c.gpu.clone() }}</dd>
                <dt>"Model"</dt><dd>{if c.model.is_empty() { "not stated".to_string() } else { c.model.clone() }}</dd>
                <dt>"Engine"</dt><dd>{c.engine.clone()}</dd>
                <dt>"Date"</dt><dd>{c.date_unix_ms.map_or("not stated".to_string(), when)}</dd>
                <dt>"Workload"</dt><dd>{c.workload.clone()}</dd>
            </dl>
            {c.status.is_terminal().then(|| view! {
                <a class="button" id="present-report" href=format!("api/runs/{}/report.html", c.run_id) download="" title="one self-contained HTML file: the card, the charts, the numbers behind them">"Download the report (HTML)"</a>
            })}
            {(!c.caveats.is_empty()).then(|| view! {
                <ul class="caveats">{c.caveats.iter().map(|w| view! { <li>{w.clone()}</li> }).collect_view()}</ul>
            })}
        </section>
    }
}

/// While a run goes on: requests in flight, output tokens/s and p95 now, and how far it is.
#[component]
fn LiveTiles() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let last = move || with_view(ctx, |v: &RunView| v.ticks.last().cloned()).flatten();
    let progress = move || with_view(ctx, RunView::progress).unwrap_or(0.0);
    let eta = move || last().and_then(|t| t.eta_s).map(|e| format!(" · about {} left", crate::duration(e))).unwrap_or_default();
    view! {
        <section class="live-tiles" id="live-tiles">
            <div class="big-stat"><div class="value" id="live-in-flight">{move || last().map_or("—".into(), |t| t.in_flight.to_string())}</div><div class="label">"requests in flight"</div></div>
            <div class="big-stat"><div class="value" id="live-tok-s">{move || last().map_or("—".into(), |t| n0(t.output_tok_s))}</div><div class="label">"output tokens/s now"</div></div>
            <div class="big-stat"><div class="value" id="live-p95">{move || last().and_then(|t| t.e2e_p95_ms).map_or("—".into(), |p| format!("{} ms", n0(p)))}</div><div class="label">"p95 end-to-end, last 5 s"</div></div>
            <div class="progress big" title="requests finished / requests planned">
                <div class="bar" style:width=move || format!("{:.1}%", progress() * 100.0)></div>
                <span class="progress-text">{move || format!("{:.0}% done{}", progress() * 100.0, eta())}</span>
            </div>
        </section>
    }
}
