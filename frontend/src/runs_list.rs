//! Earlier and current runs; clicking one shows it.

use caplab_shared::RunInfo;
use leptos::prelude::*;

use crate::{api, live, Ctx};

pub async fn refresh(ctx: Ctx) {
    if let Ok(runs) = api::get_json::<Vec<RunInfo>>("api/runs").await {
        ctx.runs.set(runs);
    }
}

#[component]
pub fn RunsList() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let shown = move || ctx.current.with(|c| c.as_ref().map(|v| v.info.id.clone()));
    view! {
        <div class="card runs">
            <div class="row">
                <h2>"Runs"</h2>
                <Show when=move || ctx.runs.with(|r| !r.is_empty())>
                    <a id="download-notes" class="button" href="api/report" download=""
                        title="The lab notes' tables filled from the latest chat and batch run of the two most recent GPUs: best configuration, chat vs batch, GPU scaling, cost per token">"Notes (markdown)"</a>
                </Show>
            </div>
            <Show when=move || ctx.runs.with(|r| r.is_empty())>
                <p class="muted">"No runs yet."</p>
            </Show>
            <ul>
                <For each=move || ctx.runs.get() key=|r| (r.id.clone(), r.status.as_str()) let:run>
                    {
                        let id = run.id.clone();
                        let id_for_class = run.id.clone();
                        let cells = run.spec.cells();
                        let what = if cells.len() == 1 { cells[0].label() } else { format!("{} cells", cells.len()) };
                        view! {
                            <li class:selected=move || shown() == Some(id_for_class.clone())
                                on:click=move |_| live::watch(ctx, id.clone())>
                                <span class="run-id">{run.id.clone()}</span>
                                {(!run.spec.name.is_empty()).then(|| view! { <strong>{run.spec.name.clone()}</strong> })}
                                <span>{run.spec.workload.as_str()} " · " {what} " · " {run.spec.gpu.clone()}</span>
                                <span class=format!("status {}", run.status.as_str())>{run.status.as_str()}</span>
                                {run.target.simulated.then(|| view! { <span class="sim-tag">"simulated"</span> })}
                            </li>
                        }
                    }
                </For>
            </ul>
        </div>
    }
}
