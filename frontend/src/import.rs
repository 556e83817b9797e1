//! Result files from other pods and other tools, dropped on the page (or chosen): caplab's
//! results.json, `vllm bench serve` result JSON, GuideLLM reports. The server reads them
//! (`POST /api/import`, `proxy/src/import.rs`) and keeps them as imported runs, listed and
//! compared like the others; a file it cannot read is named with what is wrong with it.

use caplab_shared::RunInfo;
use leptos::prelude::*;
use wasm_bindgen::JsCast;

use crate::{api, Ctx};

/// The files of a list, taken now: an input's list empties when the input is reset.
fn files_of(list: &web_sys::FileList) -> Vec<web_sys::File> {
    (0..list.length()).filter_map(|i| list.get(i)).collect()
}

async fn read_files(list: Vec<web_sys::File>) -> Result<Vec<serde_json::Value>, String> {
    let mut files = Vec::new();
    for file in list {
        let text = wasm_bindgen_futures::JsFuture::from(file.text()).await.map_err(|_| format!("{}: cannot be read", file.name()))?;
        files.push(serde_json::json!({ "name": file.name(), "text": text.as_string().unwrap_or_default() }));
    }
    Ok(files)
}

#[component]
pub fn ImportCard() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let gpu = RwSignal::new(String::new());
    let model = RwSignal::new(String::new());
    let workload = RwSignal::new("chat".to_string());
    let message = RwSignal::new(None::<Result<String, String>>);
    let over = RwSignal::new(false);
    let send = move |list: Vec<web_sys::File>| {
        message.set(None);
        leptos::task::spawn_local(async move {
            // Said before reading: past the server's limit the upload would only get a bare 413.
            let size: f64 = list.iter().map(|f| f.size()).sum();
            if let Ok(limits) = api::get_json::<serde_json::Value>("api/limits").await {
                if let Some(max) = limits["max_import_bytes"].as_f64().filter(|max| size > *max) {
                    let mib = |b: f64| b / 1_048_576.0;
                    return message.set(Some(Err(format!(
                        "{:.1} MiB of files is more than this caplab imports at once ({:.0} MiB, its --max-import-bytes): import fewer files at a time",
                        mib(size),
                        mib(max)
                    ))));
                }
            }
            let files = match read_files(list).await {
                Ok(f) if f.is_empty() => return,
                Ok(f) => f,
                Err(e) => return message.set(Some(Err(e))),
            };
            let body = serde_json::json!({ "gpu": gpu.get_untracked(), "model": model.get_untracked(), "workload": workload.get_untracked(), "files": files });
            match api::post_json::<Vec<RunInfo>>("api/import", &body).await {
                Ok(runs) => {
                    let ids: Vec<String> = runs.iter().map(|r| r.id.clone()).collect();
                    message.set(Some(Ok(format!("imported as run{} {}", if ids.len() == 1 { "" } else { "s" }, ids.join(", ")))));
                    ctx.selected.update(|s| s.extend(ids));
                    ctx.refresh_runs().await;
                }
                Err(e) => message.set(Some(Err(e.error))),
            }
        });
    };
    let on_drop = move |ev: web_sys::DragEvent| {
        ev.prevent_default();
        over.set(false);
        if let Some(list) = ev.data_transfer().and_then(|d| d.files()) {
            send(files_of(&list));
        }
    };
    let on_pick = move |ev: web_sys::Event| {
        let input = ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok());
        if let Some(list) = input.as_ref().and_then(web_sys::HtmlInputElement::files) {
            send(files_of(&list));
        }
        if let Some(input) = input {
            input.set_value("");
        }
    };
    view! {
        <div class="card import">
            <h2>"Import results"</h2>
            <p class="muted small">"Runs from other pods or tools, to compare with this pod's: caplab's results.json, vllm bench serve result files (one per load level), a GuideLLM report (--outputs json). Their numbers are labelled imported."</p>
            <div class="row">
                <label>"GPU they ran on " <input id="import-gpu" type="text" placeholder="e.g. A100 80GB pod" prop:value=gpu on:input=move |ev| gpu.set(event_target_value(&ev))/></label>
                <label title="used when a file does not name its model (vllm bench serve files name it in model_id)">"model " <input id="import-model" type="text" placeholder="if the files do not say" prop:value=model on:input=move |ev| model.set(event_target_value(&ev))/></label>
                <label>"workload "
                    <select id="import-workload" on:change=move |ev| workload.set(event_target_value(&ev))>
                        <option value="chat">"chat"</option>
                        <option value="batch">"batch"</option>
                    </select>
                </label>
            </div>
            <div class="dropzone" class:over=over
                on:dragover=move |ev: web_sys::DragEvent| { ev.prevent_default(); over.set(true); }
                on:dragleave=move |_| over.set(false)
                on:drop=on_drop>
                "Drop result files here, or "
                <input id="import-files" type="file" multiple accept=".json,application/json" on:change=on_pick/>
            </div>
            {move || message.get().map(|m| match m {
                Ok(t) => view! { <p class="muted" id="import-message">{t}</p> }.into_any(),
                Err(e) => view! { <p class="form-error" id="import-error">{e}</p> }.into_any(),
            })}
        </div>
    }
}
