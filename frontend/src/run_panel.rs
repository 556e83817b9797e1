//! The shown run: progress, live charts, the results table filling in cell by cell,
//! the summary, and downloads.

use caplab_shared::{CellResult, LengthControl, RunStatus, RunView};
use leptos::prelude::*;

use crate::charts::{LineChart, Series};
use crate::{api, fmt_opt, with_view, Ctx};

#[component]
pub fn RunPanel() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    view! {
        <Show when=move || ctx.current.with(|c| c.is_some())
            fallback=|| view! { <FirstContact/> }>
            <RunHeader/>
            <Summary/>
            // An imported run has no timeline: only what its file holds is shown.
            <Show when=move || !imported_run(ctx)>
                <Charts/>
                <crate::telemetry::TelemetryPanel/>
            </Show>
            <crate::surface::FrontierPanel/>
            <crate::surface::SurfacePanel/>
            <crate::tokens::TokensPanel/>
            <ResultsTable/>
        </Show>
    }
}


fn imported_run(ctx: Ctx) -> bool {
    with_view(ctx, |v| v.info.imported_from.is_some()).unwrap_or(false)
}

/// What a newcomer meets before any run: what caplab answers, and one click to see it.
#[component]
fn FirstContact() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let error = RwSignal::new(None::<String>);
    let quick = move || ctx.defaults.with(|d| d.quick_start.clone());
    let start = move |_| {
        let Some(spec) = quick() else { return };
        leptos::task::spawn_local(async move {
            match api::post_json::<caplab_shared::RunInfo>("api/runs", &serde_json::to_value(&spec).unwrap_or_default()).await {
                Ok(info) => {
                    crate::live::watch(ctx, info.id);
                    ctx.refresh_runs().await;
                }
                Err(e) => error.set(Some(e.fields.first().map_or(e.error.clone(), |f| format!("{}: {}", f.field, f.message)))),
            }
        });
    };
    view! {
        <div class="card first-contact" id="first-contact">
            <h2>"How much can this GPU carry?"</h2>
            <p>"caplab loads an LLM server with concurrent chat users or a batch job, measures every request, and answers: the most users that stay within your latency SLO, the tokens/s there, where requests start to queue or fail, and what a million tokens cost."</p>
            {move || quick().map(|spec| {
                let target = spec.target.clone();
                view! {
                    <button type="button" id="quick-start" on:click=start disabled=move || !ctx.is_operator()>
                        {format!("Run the notes' chat grid on {target} (simulated, about a minute)")}
                    </button>
                    <p class="muted small">{format!("c{} × {} tokens, SLO p95 end-to-end ≤ 3 s. Or compose your own experiment on the left.", spec.concurrency.iter().map(u32::to_string).collect::<Vec<_>>().join("/c"), spec.max_new_tokens[0])}</p>
                }
            })}
            {move || error.get().map(|e| view! { <p class="form-error">{e}</p> })}
        </div>
    }
}

#[component]
fn RunHeader() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let id = move || with_view(ctx, |v| v.info.id.clone()).unwrap_or_default();
    let status = move || with_view(ctx, |v| v.info.status).unwrap_or(RunStatus::Running);
    let progress = move || with_view(ctx, |v| v.progress()).unwrap_or(0.0);
    let line = move || {
        with_view(ctx, |v| {
            let last = v.ticks.last();
            let done = last.map_or(0, |t| t.requests_done);
            let eta = match (v.info.status, last.and_then(|t| t.eta_s)) {
                (RunStatus::Running, Some(e)) => format!(" · ETA {}", crate::duration(e)),
                _ => String::new(),
            };
            let cells = v.info.cells_total;
            let cell = last.map_or(0, |t| t.cell + 1).min(cells);
            format!("{done} / {} requests · cell {cell} of {cells}{eta}", v.info.requests_total)
        })
        .unwrap_or_default()
    };
    let what = move || {
        with_view(ctx, |v| {
            let s = &v.info.spec;
            let t = &v.info.target;
            let model = s.model_beside_gpu().map_or(String::new(), |m| format!(" · {m}"));
            let target = if t.url.is_empty() { String::new() } else { format!(" · target {} ({})", t.url, t.server.label()) };
            let talk = s.conversation_words().map_or(String::new(), |w| format!(" · {w}"));
            format!("{} · {}{talk}{model} · {}{target}", s.workload.as_str(), s.mode.as_str(), s.gpu)
        })
        .unwrap_or_default()
    };
    let simulated = move || with_view(ctx, |v| v.info.target.simulated).unwrap_or(false);
    let imported = move || with_view(ctx, |v| v.info.imported_from.clone()).flatten();
    let name = move || with_view(ctx, |v| v.info.spec.name.clone()).unwrap_or_default();
    let message = move || with_view(ctx, |v| v.info.message.clone()).flatten();
    // What the streams showed about the engine: caplab's own measurement only.
    let stream_facts = move || with_view(ctx, |v| if v.info.imported_from.is_some() { None } else { stream_facts(v) }).flatten();
    let again = move |_| {
        if let Some(spec) = with_view(ctx, |v| v.info.spec.clone()) {
            ctx.form_load.set(Some(spec));
        }
    };
    let stop = move |_| {
        let id = id();
        leptos::task::spawn_local(async move {
            let _ = api::post_json::<serde_json::Value>(&format!("api/runs/{id}/stop"), &serde_json::json!({})).await;
        });
    };
    view! {
        <div class="card run-header">
            <div class="row">
                <h2>{move || if name().is_empty() { "Run ".to_string() } else { format!("{} · run ", name()) }} <span id="run-id">{id}</span></h2>
                <span id="run-status" class=move || format!("status {}", status().as_str())>{move || status().as_str()}</span>
                <Show when=simulated>
                    <span class="badge simulated" title="numbers from caplab's built-in simulator, not a GPU">"SIMULATED"</span>
                </Show>
                {move || imported().map(|from| view! { <span class="badge imported" id="run-imported" title=format!("measured by another tool, not caplab: {from}")>"IMPORTED"</span> })}
                <Show when=move || !status().is_terminal()>
                    <span class="conn" title="live connection to caplab">{move || if ctx.connected.get() { "● live" } else { "○ reconnecting…" }}</span>
                </Show>
                <Show when=move || !status().is_terminal() && ctx.is_operator()>
                    <button id="stop" class="danger" on:click=stop>"Stop"</button>
                </Show>
            </div>
            <p class="muted" id="run-what">{what}</p>
            {move || imported().map(|from| view! { <p class="imported-banner" id="imported-banner">{format!("IMPORTED: these numbers were measured by another tool ({from}), not by caplab. Only what the file holds is shown: no timeline, no server or GPU telemetry.")}</p> })}
            <Show when=move || imported().is_none()>
                <div class="progress" title="requests finished / requests planned">
                    <div class="bar" id="progress-bar" style:width=move || format!("{:.1}%", progress() * 100.0)></div>
                    <span class="progress-text" id="progress-text">{move || format!("{:.0}% · ", progress() * 100.0)}{line}</span>
                </div>
            </Show>
            {move || message().map(|m| view! { <p class="muted">{m}</p> })}
            {move || stream_facts().map(|m| view! { <p class="muted small" id="stream-facts">{m}</p> })}
            <div class="downloads">
                <Show when=move || imported().is_none()>
                    <a id="download-csv" class="button" href=move || format!("api/runs/{}/requests.csv", id()) download="">"Download CSV (one row per request)"</a>
                </Show>
                <a id="download-summary" class="button" href=move || format!("api/runs/{}/summary.csv", id()) download="">"Summary CSV (one row per cell)"</a>
                <a id="download-json" class="button" href=move || format!("api/runs/{}/results.json", id()) download="">"JSON"</a>
                <Show when=move || status().is_terminal()>
                    <a id="download-report" class="button" href=move || format!("api/runs/{}/report.html", id()) download="" title="one self-contained HTML file to send: capacity card, frontier, OOM surface, distributions, environment">"Report (HTML)"</a>
                </Show>
                <Show when=move || ctx.is_operator() && imported().is_none()>
                    <button type="button" id="run-again" class="ghost" on:click=again title="copy this run's settings into the form">"Run again"</button>
                </Show>
                <Show when=move || status().is_terminal()>
                    <a id="download-archive" class="button" href=move || format!("api/runs/{}/archive.tar", id()) download="" title="every file of the run (requests, summary, telemetry, charts, run.json) in one tar archive">"Archive (.tar)"</a>
                </Show>
            </div>
        </div>
    }
}

/// What the run's streams showed about the server: whether it ends streams with `[DONE]`
/// (recorded, never required) and whether it could be made to give exact output lengths.
fn stream_facts(v: &RunView) -> Option<String> {
    let ok: u32 = v.cells.iter().map(|c| c.requests_ok).sum();
    if ok == 0 {
        return None;
    }
    let done: u32 = v.cells.iter().map(|c| c.done_markers).sum();
    let short: u32 = v.cells.iter().map(|c| c.short_outputs).sum();
    let marker = match done {
        0 => "streams end at their finish reason, without data: [DONE]".to_string(),
        d if d == ok => "streams end with data: [DONE]".to_string(),
        d => format!("{d} of {ok} streams ended with data: [DONE]"),
    };
    let can_force = v.info.target.server.length_control() != LengthControl::None;
    let length = match (can_force, v.info.spec.ignore_eos, short) {
        (false, _, 0) => "output length cannot be forced on this server, yet every output had max_new_tokens".to_string(),
        (false, _, s) => format!("output length cannot be forced on this server: {s} of {ok} outputs ended early (completion_tokens in the CSV)"),
        (true, false, s) => format!("exact output length was not asked for: {s} of {ok} outputs ended early"),
        (true, true, 0) => "every output had exactly max_new_tokens".to_string(),
        (true, true, s) => format!("{s} of {ok} outputs were shorter than max_new_tokens (clamped to the context)"),
    };
    Some(format!("{}: {marker}; {length}.", v.info.target.server.label()))
}

#[component]
fn Charts() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let series = move |f: fn(&caplab_shared::LiveTick) -> Option<f64>| -> Vec<(f64, Option<f64>)> {
        with_view(ctx, |v| v.ticks.iter().map(|t| (t.t_s, f(t))).collect()).unwrap_or_default()
    };
    let tokens = Signal::derive(move || vec![Series { name: "output tok/s", class: "c1", points: series(|t| Some(t.output_tok_s)) }]);
    let latency = Signal::derive(move || {
        vec![
            Series { name: "TTFT p50", class: "c2", points: series(|t| t.ttft_p50_ms) },
            Series { name: "TTFT p95", class: "c3", points: series(|t| t.ttft_p95_ms) },
            Series { name: "E2E p50", class: "c4", points: series(|t| t.e2e_p50_ms) },
            Series { name: "E2E p95", class: "c5", points: series(|t| t.e2e_p95_ms) },
        ]
    });
    let in_flight = Signal::derive(move || vec![Series { name: "in flight", class: "c1", points: series(|t| Some(f64::from(t.in_flight))) }]);
    let errors = Signal::derive(move || vec![Series { name: "failed requests", class: "c5", points: series(|t| Some(t.errors as f64)) }]);
    // A cell of long requests: nothing ends for a while, yet tokens stream; say so.
    let waiting = move || with_view(ctx, |v| v.waiting_for_an_end(3.0).map(|s| (s, v.ticks.last().map_or(0, |t| t.in_flight)))).flatten();
    view! {
        {move || waiting().map(|(s, n)| view! {
            <p class="waiting-note" id="waiting-note">{format!("No request has ended for {} · {n} in flight, still streaming: latency percentiles appear as requests end; output tokens/s counts tokens as they arrive.", crate::duration(s))}</p>
        })}
        <div class="charts">
            <LineChart id="chart-tokens" title="Output tokens/s" unit="tok/s" series=tokens
                help="Output tokens per second over the last second, sampled every 250 ms: streamed text events counted live, corrected to the server's usage when each request ends"/>
            <LineChart id="chart-latency" title="Latency" unit="ms" series=latency
                help="TTFT and end-to-end percentiles of the requests that ended in the last 5 s, measured from each request's scheduled time"/>
            <LineChart id="chart-inflight" title="Requests in flight" unit="requests" series=in_flight
                help="Requests sent and not yet finished"/>
            <LineChart id="chart-errors" title="Errors" unit="failed requests" series=errors integer=true
                help="Failed requests so far (any class; requests cut short by a stop are not counted); they are excluded from latency and throughput"/>
        </div>
        <p class="muted small chart-note">"Charts sample the run every 250 ms. Output tokens/s is averaged over the last second; the latency chart shows percentiles of the successful requests that ended in the last 5 s, measured from each request's scheduled send time."</p>
    }
}

#[component]
fn ResultsTable() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let rows = move || {
        with_view(ctx, |v| {
            let running = v.ticks.last().map(|t| t.cell);
            v.info
                .spec
                .cells()
                .into_iter()
                .map(|cell| {
                    let result = v.cells.iter().find(|c| c.cell == cell.index).cloned();
                    let state = match (&result, v.info.status) {
                        (Some(_), _) => "done",
                        (None, RunStatus::Running) if running == Some(cell.index) => "running…",
                        (None, RunStatus::Running) => "next",
                        (None, RunStatus::Queued) => "waiting for the target",
                        (None, _) => "not run",
                    };
                    (cell.label(), state, result)
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
    };
    let slo_note = move || {
        with_view(ctx, |v| {
            let slo = v.info.spec.slo.effective(v.info.spec.workload);
            let mut parts = vec![format!("E2E p95 ≤ {} ms", slo.e2e_ms.unwrap_or_default())];
            if let Some(t) = slo.ttft_ms {
                parts.push(format!("TTFT p95 ≤ {t} ms"));
            }
            if let Some(t) = slo.tpot_ms {
                parts.push(format!("TPOT p95 ≤ {t} ms"));
            }
            format!("SLO checked per cell: {}, and no failed request.", parts.join(", "))
        })
        .unwrap_or_default()
    };
    view! {
        <div class="card">
            <h2>"Results by cell"</h2>
            <div class="table-wrap">
            <table id="results-table">
                <thead><tr>
                    <th title="closed loop: concurrency × max_new_tokens; open loop: offered rate × max_new_tokens">"cell"</th>
                    <th title="measured requests that succeeded / failed (requests cut short by a stop are not counted)">"ok / failed"</th>
                    <th title="the most requests in flight at once, as measured: a cell with fewer requests than workers never reaches its concurrency">"peak in flight"</th>
                    <th title="completion tokens (from the server's usage) / measurement window">"output tok/s"</th>
                    <th title="successful requests / measurement window">"req/s"</th>
                    <th title="time to first token, p50 / p95, from the scheduled send time">"TTFT p50 / p95 (ms)"</th>
                    <th title="end-to-end latency, p50 / p95, from the scheduled send time">"E2E p50 / p95 (ms)"</th>
                    <th title="time per output token after the first, p95">"TPOT p95 (ms)"</th>
                    <th title="client-side wait between scheduled and actual send, p95 (open loop with a max-in-flight cap)">"queue p95 (ms)"</th>
                    <th title="every SLO holds at p95 and no request failed; hover a result for the reason">"SLO"</th>
                    <th title="requests per second that met every SLO">"goodput (req/s)"</th>
                </tr></thead>
                <tbody>
                    {move || rows().into_iter().map(|(label, state, r)| match r {
                        Some(r) => result_row(label, &r).into_any(),
                        None => view! { <tr class="pending"><td>{label}</td><td colspan="10">{state}</td></tr> }.into_any(),
                    }).collect_view()}
                </tbody>
            </table>
            </div>
            <ul class="notes" id="cell-notes">
                {move || with_view(ctx, |v| v.cells.iter().flat_map(|c| {
                    let label = v.info.spec.cells().get(c.cell as usize).map(|s| s.label()).unwrap_or_default();
                    c.notes.iter().map(move |n| view! { <li>{format!("{label}: {n}")}</li> }).collect::<Vec<_>>()
                }).collect_view())}
            </ul>
            <p class="muted small" id="slo-note">{slo_note}</p>
            <p class="muted small">{move || if imported_run(ctx) {
                "These numbers are the imported file's, as the other tool measured and defined them (see each cell's notes): caplab did not measure them."
            } else {
                "Latencies count from each request's scheduled send time. Percentiles interpolate linearly between ranks (numpy's default). Token counts come from the server's usage, never from counting events. A cell marked partial was cut short by a stop: its numbers cover only the requests that ended."
            }}</p>
        </div>
    }
}

fn result_row(label: String, r: &CellResult) -> impl IntoView {
    let pair = |a: Option<f64>, b: Option<f64>| format!("{} / {}", fmt_opt(a, 0), fmt_opt(b, 0));
    let (slo_class, slo_text) = match (r.partial, r.slo_pass) {
        (true, _) => ("partial", "partial: cut short by the stop, not judged".to_string()),
        (false, true) => ("pass", "pass".to_string()),
        (false, false) => ("fail", format!("fail: {}", r.slo_missed.join("; "))),
    };
    view! {
        <tr class="done">
            <td>{label} {r.partial.then(|| view! { <span class="partial" title="the run was stopped during this cell">" partial"</span> })}</td>
            <td>{format!("{} / {}", r.requests_ok, r.requests_failed)}</td>
            <td class="num" class:under=r.rate.is_none() && r.peak_concurrency < r.concurrency title=if r.rate.is_none() && r.peak_concurrency < r.concurrency { format!("c{} reached only {} in flight", r.concurrency, r.peak_concurrency) } else { String::new() }>{r.peak_concurrency}</td>
            <td class="num">{format!("{:.1}", r.output_tok_s)}</td>
            <td class="num">{format!("{:.2}", r.requests_per_s)}</td>
            <td class="num">{pair(r.ttft.p50, r.ttft.p95)}</td>
            <td class="num">{pair(r.e2e.p50, r.e2e.p95)}</td>
            <td class="num">{fmt_opt(r.tpot.p95, 1)}</td>
            <td class="num">{fmt_opt(r.queue.p95, 0)}</td>
            <td class=slo_class title=slo_text.clone()>{slo_text.clone()}</td>
            <td class="num">{if r.partial { "–".to_string() } else { format!("{:.2}", r.goodput_rps) }}</td>
        </tr>
    }
}

/// The end-of-run summary: the best cell that meets its SLO (or the only cell).
#[component]
fn Summary() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let best = move || {
        with_view(ctx, |v| {
            if !v.info.status.is_terminal() || v.cells.is_empty() {
                return None;
            }
            // Whole cells first: a partial one is picked only when nothing else ran.
            let whole: Vec<&CellResult> = v.cells.iter().filter(|c| !c.partial).collect();
            let pool: Vec<&CellResult> = if whole.is_empty() { v.cells.iter().collect() } else { whole };
            let fastest = |cells: &mut dyn Iterator<Item = &&CellResult>| cells.max_by(|a, b| a.output_tok_s.total_cmp(&b.output_tok_s)).map(|c| (*c).clone());
            let (cell, passing) = match fastest(&mut pool.iter().filter(|c| c.slo_pass && !c.partial)) {
                Some(c) => (c, true),
                None => (fastest(&mut pool.iter())?, false),
            };
            let label = v.info.spec.cells().get(cell.cell as usize).map(|c| c.label()).unwrap_or_default();
            Some((cell, label, passing, v.cells.len(), v.info.target.simulated))
        })
        .flatten()
    };
    // The run's answer in words, the same card the presentation and the report show.
    let answer = move || {
        with_view(ctx, |v| {
            let price = ctx.defaults.with(|d| d.price_for(&v.info.spec.gpu));
            let c = caplab_shared::decide::capacity(v, price);
            let what = if c.max_stable.as_deref().is_some_and(|m| m.contains("rps")) { "highest rate" } else { "max stable concurrency" };
            let stable = c.max_stable.map(|m| format!("{what} {m} within {}", c.slo));
            let cost = c.usd_per_million_tokens.zip(c.usd_per_hour).map(|(d, h)| format!("${d:.3} per million output tokens at ${h:.2}/hour"));
            let parts: Vec<String> = [stable, cost, c.why_none].into_iter().flatten().collect();
            (!parts.is_empty()).then(|| parts.join(" · "))
        })
        .flatten()
    };
    move || {
        best().map(|(c, label, passing, n, simulated)| {
            let heading = match (n, passing) {
                (1, _) => format!("Summary · {label}"),
                (_, true) => format!("Best cell within SLO · {label}"),
                (_, false) => format!("No cell met its SLO · highest throughput: {label}"),
            };
            // Requests cut short by a stop are not failures: they are shown apart.
            let errors = c
                .errors
                .iter()
                .filter(|(k, _)| **k != caplab_shared::ErrorClass::Cancelled)
                .map(|(k, v)| format!("{} {v}", k.as_str()))
                .collect::<Vec<_>>()
                .join(", ");
            let cancelled = c.requests_cancelled;
            view! {
                <div class="card summary" id="summary">
                    <h2>{heading} {simulated.then_some(" (SIMULATED)")}</h2>
                    {answer().map(|a| view! { <p class="answer-line" id="answer-line">{a}</p> })}
                    <div class="stats">
                        <Stat label="output tok/s" value=crate::thousands(c.output_tok_s) help="completion tokens from usage / measurement window"/>
                        <Stat label="requests/s" value=format!("{:.2}", c.requests_per_s) help="successful requests / measurement window"/>
                        <Stat label="TTFT p50" value=format!("{} ms", fmt_opt(c.ttft.p50, 0)) help="time to first token, from the scheduled send time"/>
                        <Stat label="TTFT p95" value=format!("{} ms", fmt_opt(c.ttft.p95, 0)) help="95th percentile time to first token"/>
                        <Stat label="E2E p50" value=format!("{} ms", c.e2e.p50.map_or("–".into(), crate::thousands)) help="end-to-end latency, from the scheduled send time"/>
                        <Stat label="E2E p95" value=format!("{} ms", c.e2e.p95.map_or("–".into(), crate::thousands)) help="95th percentile end-to-end latency"/>
                        <Stat label="failed" value=c.requests_failed.to_string() help="failed measured requests (any error class), excluded from all latency and throughput numbers"/>
                    </div>
                    {(!errors.is_empty()).then(|| view! { <p class="muted">"failed by class: " {errors}</p> })}
                    {(cancelled > 0).then(|| view! { <p class="muted" id="summary-cancelled">{format!("{cancelled} requests cut short by the stop: not failures, and left out of every number")}</p> })}
                </div>
            }
        })
    }
}

#[component]
fn Stat(label: &'static str, value: String, help: &'static str) -> impl IntoView {
    view! { <div class="stat" title=help><div class="value">{value}</div><div class="label">{label}</div></div> }
}
