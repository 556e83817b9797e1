//! Every run on this pod (and every imported one): what it ran, on which GPU, when, and its
//! answer in a few numbers; filtered by workload and GPU; opened with a click, ticked to be
//! compared; renamed, deleted (operator) or downloaded whole.

use caplab_shared::{RunInfo, Workload};
use leptos::prelude::*;

use crate::{api, live, when, Ctx};


/// The run's answer in one line: best configuration, its tok/s, max stable concurrency, p95 there.
fn headline(run: &RunInfo) -> String {
    match &run.headline {
        None if run.status.is_terminal() => "no finished cell".into(),
        None => String::new(),
        Some(h) => match (&h.best, &h.why_none) {
            // Only what the run measured: no unit after a missing value.
            (Some(best), _) => [
                Some(format!("best {best}")),
                h.best_tok_s.map(|t| format!("{} tok/s", crate::thousands(t))),
                h.max_stable.clone().map(|m| format!("max stable {m}")),
                h.p95_at_peak_ms.map(|p| format!("p95 {} ms", crate::thousands(p))),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" · "),
            (None, Some(why)) => why.clone(),
            (None, None) => String::new(),
        },
    }
}

/// How the run's numbers were got.
fn provenance(run: &RunInfo) -> Option<(&'static str, String)> {
    if let Some(from) = &run.imported_from {
        Some(("imported-tag", format!("imported · {from}")))
    } else {
        run.target.simulated.then(|| ("sim-tag", "simulated".to_string()))
    }
}

/// The GPU label without the "(simulated)" its tag already says.
fn gpu_shown(run: &RunInfo) -> String {
    let g = run.spec.gpu.trim_end_matches(" (simulated)");
    if g == "simulated" { String::new() } else { g.to_string() }
}

fn share(ctx: Ctx, run: &RunInfo, shared: bool, error: RwSignal<Option<String>>) {
    let id = run.id.clone();
    act(ctx, async move { api::post_json::<RunInfo>(&format!("api/runs/{id}/share"), &serde_json::json!({ "shared": shared })).await.map(|_| ()).map_err(|e| e.error) }, error);
}

fn act(ctx: Ctx, request: impl std::future::Future<Output = Result<(), String>> + 'static, error: RwSignal<Option<String>>) {
    leptos::task::spawn_local(async move {
        match request.await {
            Ok(()) => error.set(None),
            Err(e) => error.set(Some(e)),
        }
        ctx.refresh_runs().await;
    });
}

fn rename(ctx: Ctx, run: &RunInfo, error: RwSignal<Option<String>>) {
    let Some(window) = web_sys::window() else { return };
    let Ok(Some(name)) = window.prompt_with_message_and_default(&format!("Name for run {}", run.id), &run.spec.name) else { return };
    let id = run.id.clone();
    act(ctx, async move {
        api::post_json::<RunInfo>(&format!("api/runs/{id}/rename"), &serde_json::json!({ "name": name })).await.map_err(|e| e.error)?;
        // The shown run's heading says its new name at once.
        if ctx.watching.get_untracked().as_deref() == Some(id.as_str()) {
            live::watch(ctx, id);
        }
        Ok(())
    }, error);
}

fn delete(ctx: Ctx, run: &RunInfo, error: RwSignal<Option<String>>) {
    let Some(window) = web_sys::window() else { return };
    if !window.confirm_with_message(&format!("Delete run {} and all its files?", run.id)).unwrap_or(false) {
        return;
    }
    let id = run.id.clone();
    ctx.selected.update(|s| s.retain(|i| *i != id));
    act(ctx, async move {
        api::delete(&format!("api/runs/{id}")).await?;
        // A deleted run is not left on screen with links that no longer work.
        if ctx.watching.get_untracked().as_deref() == Some(id.as_str()) {
            ctx.watch_gen.update(|g| *g += 1);
            ctx.watching.set(None);
            ctx.current.set(None);
            if let Some(location) = web_sys::window().map(|w| w.location()) {
                let _ = location.set_hash("");
            }
        }
        Ok(())
    }, error);
}

#[component]
pub fn RunsList() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let shown = move || ctx.current.with(|c| c.as_ref().map(|v| v.info.id.clone()));
    let workload = RwSignal::new(String::new());
    let gpu = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let gpus = move || {
        let mut g: Vec<String> = ctx.runs.with(|r| r.iter().map(|i| i.spec.gpu.clone()).collect());
        g.sort();
        g.dedup();
        g
    };
    let visible = move || {
        let (w, g) = (workload.get(), gpu.get());
        ctx.runs.with(|r| r.iter().filter(|i| (w.is_empty() || i.spec.workload.as_str() == w) && (g.is_empty() || i.spec.gpu == g)).cloned().collect::<Vec<_>>())
    };
    let compare = move |_| ctx.compare.set(ctx.selected.get_untracked());
    view! {
        <div class="card runs">
            <div class="row">
                <h2>"Runs"</h2>
                <Show when=move || ctx.runs.with(|r| !r.is_empty())>
                    <Show when=move || ctx.is_operator()>
                    <a id="download-notes" class="button" href="api/report" download=""
                        title="The lab notes' tables filled from the latest chat and batch run of the two most recent GPUs: best configuration, chat vs batch, GPU scaling, cost per token">"Notes (markdown)"</a>
                    </Show>
                    <button id="compare-selected" type="button" on:click=compare prop:disabled=move || ctx.selected.with(Vec::is_empty)
                        title="tick runs (a chat and a batch run, on one or two GPUs) and compare them: the notes' tables, overlaid frontiers, cost per token">
                        {move || format!("Compare ({})", ctx.selected.with(Vec::len))}
                    </button>
                </Show>
            </div>
            <Show when=move || ctx.runs.with(|r| !r.is_empty())>
                <div class="row filters">
                    <label>"workload "
                        <select id="filter-workload" on:change=move |ev| workload.set(event_target_value(&ev))>
                            <option value="">"all"</option>
                            <option value=Workload::Chat.as_str()>"chat"</option>
                            <option value=Workload::Batch.as_str()>"batch"</option>
                        </select>
                    </label>
                    <label>"GPU "
                        <select id="filter-gpu" on:change=move |ev| gpu.set(event_target_value(&ev)) prop:value=move || { ctx.runs.track(); gpu.get() }>
                            <option value="">"all"</option>
                            {move || gpus().into_iter().map(|g| view! { <option value=g.clone()>{g.clone()}</option> }).collect_view()}
                        </select>
                    </label>
                </div>
            </Show>
            {move || error.get().map(|e| view! { <p class="form-error" id="runs-error">{e}</p> })}
            <Show when=move || ctx.runs.with(|r| r.is_empty())>
                <p class="muted">"No runs yet."</p>
            </Show>
            <ul>
                <For each=visible key=|r| (r.id.clone(), r.status.as_str(), r.spec.name.clone(), r.headline.is_some(), r.shared) let:run>
                    {
                        let id = run.id.clone();
                        let id_for_class = run.id.clone();
                        let id_for_tick = run.id.clone();
                        let id_checked = run.id.clone();
                        let cells = run.spec.cells();
                        let what = if run.imported_from.is_some() { format!("{} cells", run.cells_total) } else if cells.len() == 1 { cells[0].label() } else { format!("{} cells", cells.len()) };
                        let (for_rename, for_delete) = (run.clone(), run.clone());
                        let terminal = run.status.is_terminal();
                        let target = if run.imported_from.is_some() || run.target.name.is_empty() { String::new() } else { format!(" · target {} ({})", run.target.name, run.target.server.label()) };
                        let shared = run.shared;
                        let for_share = run.clone();
                        let title = format!("{} · {} · model {}{target}\n{}", run.id, when(run.started_unix_ms), run.spec.model, headline(&run));
                        view! {
                            <li class:selected=move || shown() == Some(id_for_class.clone()) data-run=run.id.clone() title=title
                                on:click=move |_| live::watch(ctx, id.clone())>
                                <input type="checkbox" class="pick" title="compare this run"
                                    prop:checked=move || ctx.selected.with(|s| s.contains(&id_checked))
                                    on:click=move |ev| {
                                        ev.stop_propagation();
                                        let id = id_for_tick.clone();
                                        ctx.selected.update(|s| if let Some(i) = s.iter().position(|x| *x == id) { s.remove(i); } else { s.push(id); });
                                    }/>
                                <span class="run-name">{if run.spec.name.is_empty() { run.id.clone() } else { run.spec.name.clone() }}</span>
                                <span class="run-what">{run.spec.workload.as_str()} " · " {what} {(!gpu_shown(&run).is_empty()).then(|| format!(" · {}", gpu_shown(&run)))}</span>
                                <span class=format!("status {}", run.status.as_str())>{run.status.as_str()}</span>
                                {provenance(&run).map(|(class, text)| view! { <span class=class>{text}</span> })}
                                <span class="headline">{headline(&run)}</span>
                                <span class="run-meta muted">{when(run.started_unix_ms)}</span>
                                <span class="run-actions" on:click=|ev| ev.stop_propagation()>
                                    {(terminal && ctx.is_operator()).then(|| view! {
                                        <label class="share-flag" title="let viewers (the read-only link) see this run">
                                            <input type="checkbox" class="share" prop:checked=shared on:change=move |ev| share(ctx, &for_share, event_target_checked(&ev), error)/>
                                            "shared"
                                        </label>
                                    })}
                                    {terminal.then(|| view! { <a class="archive" href=format!("api/runs/{}/archive.tar", run.id) download="" title="every file of this run in one tar archive">"archive"</a> })}
                                    {(terminal && ctx.is_operator()).then(|| view! {
                                        <button type="button" class="link rename" on:click=move |_| rename(ctx, &for_rename, error)>"rename"</button>
                                        <button type="button" class="link delete" on:click=move |_| delete(ctx, &for_delete, error)>"delete"</button>
                                    })}
                                </span>
                            </li>
                        }
                    }
                </For>
            </ul>
        </div>
    }
}
