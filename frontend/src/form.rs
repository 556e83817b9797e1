//! The experiment form, drawn from `caplab_shared::form::FIELDS` (one table says each field's
//! key, label, hint, default and how it is read). The form starts from the spec's defaults and
//! follows the chosen target: a new target clears the model and GPU label, whose placeholders
//! then say what that target will use. "Run again" on a run copies its settings on purpose;
//! "New experiment" resets. Every bad field is shown beside it at once, before anything is sent.

use std::collections::BTreeMap;

use caplab_shared::form::{self, FormMode, Input, FIELDS};
use caplab_shared::{ExperimentSpec, FieldError, InputsRef, LengthControl, RunInfo, TargetInfo, Workload};
use leptos::prelude::*;

use crate::{api, live, Ctx};

/// The form's texts by field key.
type Texts = RwSignal<BTreeMap<&'static str, String>>;

fn text(texts: Texts, key: &str) -> String {
    texts.with(|t| t.get(key).cloned().unwrap_or_default())
}

fn text_untracked(texts: Texts, key: &str) -> String {
    texts.with_untracked(|t| t.get(key).cloned().unwrap_or_default())
}

fn load(texts: Texts, spec: &ExperimentSpec, allowed: &[caplab_shared::api::AllowedTarget]) {
    let mut all: BTreeMap<&'static str, String> = form::texts(spec).into_iter().collect();
    // A run's target by name, when it is still one this server allows; else the default.
    if !allowed.iter().any(|t| t.name == spec.target) {
        all.insert("target", String::new());
    }
    texts.set(all);
}

/// A warning when a concurrency is above the requests a cell sends: then at most that many
/// are ever in flight, whatever the label says.
fn concurrency_warning(spec: &ExperimentSpec, documents: u32) -> Option<String> {
    if spec.mode != caplab_shared::LoadMode::Closed {
        return None;
    }
    let over: Vec<String> = spec
        .cells()
        .iter()
        .filter(|c| c.load.concurrency() > spec.cell_requests(c, documents as usize))
        .map(|c| format!("{} gets {}", c.load.label(), spec.cell_requests(c, documents as usize)))
        .collect();
    (!over.is_empty()).then(|| {
        format!("fewer requests than workers ({}): at most that many will be in flight (raise requests, repeat or requests per worker)", over.join(", "))
    })
}

/// The input's element id: `f-KEY`, the SLO fields as `f-slo-e2e`…, the timeout as `f-timeout`.
fn dom_id(key: &str) -> String {
    match key {
        "timeout_s" => "f-timeout".into(),
        k => format!("f-{}", k.replace("slo.", "slo-").trim_end_matches("_ms")),
    }
}

#[component]
pub fn ExperimentForm() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let texts: Texts = RwSignal::new(form::texts(&ExperimentSpec::default()).into_iter().collect());
    let errors = RwSignal::new(Vec::<FieldError>::new());
    let general_error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    // What the inputs field holds: the user's file as caplab read it (None: the built-in ones).
    let inputs_info = RwSignal::new(None::<InputsRef>);
    let set = move |key: &'static str, value: String| texts.update(|t| {
        t.insert(key, value);
    });

    // The defaults the server sends (the same spec; its workload counts).
    Effect::new(move |_| {
        let spec = ctx.defaults.with(|d| d.spec.clone());
        if ctx.form_load.with_untracked(Option::is_none) {
            load(texts, &spec, &ctx.targets.get_untracked());
            inputs_info.set(spec.inputs.clone());
        }
    });
    // "Run again" hands a run's spec over.
    Effect::new(move |_| {
        if let Some(spec) = ctx.form_load.get() {
            load(texts, &spec, &ctx.targets.get_untracked());
            inputs_info.set(spec.inputs.clone());
            errors.set(vec![]);
            ctx.form_load.set(None);
        }
    });

    // What the chosen target is (models, engine, GPU): the default one until another is picked.
    let chosen = RwSignal::new(None::<TargetInfo>);
    Effect::new(move |_| {
        let name = text(texts, "target");
        if name.is_empty() {
            chosen.set(ctx.target.get());
            return;
        }
        leptos::task::spawn_local(async move {
            let enc = js_sys::encode_uri_component(&name).as_string().unwrap_or_default();
            let info = api::get_json::<TargetInfo>(&format!("api/target?name={enc}")).await.ok();
            if text_untracked(texts, "target") == name {
                chosen.set(info);
            }
        });
    });
    // A refusal ("run X is still loading …") no longer holds once the shown run has ended.
    Effect::new(move |_| {
        if ctx.current.with(|c| c.as_ref().is_some_and(|v| v.info.status.is_terminal())) {
            general_error.set(None);
        }
    });
    let mode = move || FormMode::from_value(&text(texts, "mode")).unwrap_or(FormMode::Closed);
    let parsed = move || form::read_with_inputs(|k| text(texts, k), inputs_info.get().as_ref()).ok();
    let concurrency_warning = move || parsed().and_then(|s| concurrency_warning(&s, ctx.defaults.with(|d| d.documents)));
    let length_warning = move || {
        chosen.with(|t| {
            t.as_ref().filter(|t| t.server.length_control() == LengthControl::None).map(|t| {
                format!("{} cannot force the output length: outputs may be shorter than max_new_tokens (each request's real length is recorded)", t.server.label())
            })
        })
    };
    let placeholder = move |key: &'static str| -> String {
        match key {
            "model" => chosen.with(|t| match t.as_ref().map(|t| t.models.first()) {
                Some(Some(first)) => format!("{first} (first listed)"),
                Some(None) => "required: this server lists no models".to_string(),
                None => String::new(),
            }),
            "gpu" => chosen.with(|t| t.as_ref().and_then(|t| t.simulated_gpu().map(|g| format!("{g} (from the simulator)")))).unwrap_or_else(|| "e.g. RunPod-RTX2000-16GB".into()),
            "slo.e2e_ms" => format!("{} ({} default)", if text(texts, "workload") == "chat" { 3000 } else { 30000 }, text(texts, "workload")),
            _ => String::new(),
        }
    };

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        general_error.set(None);
        let spec = match form::read_with_inputs(|k| text_untracked(texts, k), inputs_info.get_untracked().as_ref()) {
            Ok(s) => s,
            Err(e) => return errors.set(e),
        };
        errors.set(vec![]);
        busy.set(true);
        let body = serde_json::to_value(&spec).unwrap_or_default();
        leptos::task::spawn_local(async move {
            match api::post_json::<RunInfo>("api/runs", &body).await {
                Ok(info) => {
                    live::watch(ctx, info.id.clone());
                    ctx.refresh_runs().await;
                }
                Err(e) if !e.fields.is_empty() => errors.set(e.fields),
                Err(e) => general_error.set(Some(e.error)),
            }
            busy.set(false);
        });
    };
    let reset = move |_| {
        load(texts, &ctx.defaults.with_untracked(|d| d.spec.clone()), &[]);
        inputs_info.set(None);
        errors.set(vec![]);
        general_error.set(None);
    };
    let models = move || chosen.with(|t| t.as_ref().map(|t| t.models.clone()).unwrap_or_default());
    let other_errors = move || errors.with(|all| all.iter().filter(|e| form::field(&e.field).is_none()).cloned().collect::<Vec<_>>());

    let input_of = move |f: &'static form::FormField| {
        let key = f.key;
        let id = dom_id(key);
        match f.input {
            Input::Workload => view! {
                <select id=id on:change=move |ev| {
                    let w = event_target_value(&ev);
                    // Chat was tuned for ~128 output tokens, batch for 256+ (the notes).
                    set("max_new_tokens", if w == "chat" { "128".into() } else { "256".into() });
                    // Documents are not prompts: inputs for the other workload are let go.
                    if inputs_info.with_untracked(|i| i.as_ref().is_some_and(|r| r.workload.map(|x| x.as_str()) != Some(w.as_str()))) {
                        inputs_info.set(None);
                        set("inputs", String::new());
                    }
                    set(key, w);
                } prop:value=move || text(texts, key)>
                    {[Workload::Chat, Workload::Batch].map(|w| view! { <option value=w.as_str()>{w.as_str()}</option> }).collect_view()}
                </select>
            }
            .into_any(),
            Input::Mode => view! {
                <select id=id on:change=move |ev| set(key, event_target_value(&ev)) prop:value=move || text(texts, key)>
                    {FormMode::ALL.map(|m| view! { <option value=m.value()>{m.label()}</option> }).collect_view()}
                </select>
            }
            .into_any(),
            Input::Target => view! {
                <select id=id on:change=move |ev| {
                    // Another server: its own model and GPU, never the last ones typed.
                    set(key, event_target_value(&ev));
                    set("model", String::new());
                    set("gpu", String::new());
                } prop:value=move || text(texts, key)>
                    <option value="">{move || format!("(default: {})", ctx.defaults.with(|d| d.default_target.clone()))}</option>
                    <For each=move || ctx.targets.get() key=|t| t.name.clone() let:t>
                        <option value=t.name.clone()>{format!("{} · {}", t.name, t.url)}</option>
                    </For>
                </select>
            }
            .into_any(),
            Input::Model => view! {
                <input id=id type="text" list="f-model-list" placeholder=move || placeholder(key)
                    prop:value=move || text(texts, key) on:input=move |ev| set(key, event_target_value(&ev))/>
                <datalist id="f-model-list">
                    <For each=models key=|m| m.clone() let:m>
                        <option value=m.clone()></option>
                    </For>
                </datalist>
            }
            .into_any(),
            Input::Inputs => {
                let upload = move |list: Vec<web_sys::File>| {
                    let Some(file) = list.into_iter().next() else { return };
                    let workload = text_untracked(texts, "workload");
                    leptos::task::spawn_local(async move {
                        let fail = |e: String| errors.update(|all| {
                            all.retain(|x| x.field != "inputs");
                            all.push(FieldError::new("inputs", e));
                        });
                        // Said before sending: past the server's limit the upload would get a bare 413.
                        if let Ok(limits) = api::get_json::<serde_json::Value>("api/limits").await {
                            if let Some(max) = limits["max_import_bytes"].as_f64().filter(|max| file.size() > *max) {
                                return fail(format!("{} is {:.1} MiB, more than this caplab takes ({:.0} MiB, its --max-import-bytes)", file.name(), file.size() / 1_048_576.0, max / 1_048_576.0));
                            }
                        }
                        let Ok(text) = wasm_bindgen_futures::JsFuture::from(file.text()).await else { return fail(format!("{}: cannot be read", file.name())) };
                        let body = serde_json::json!({ "name": file.name(), "workload": workload, "text": text.as_string().unwrap_or_default() });
                        match api::post_json::<InputsRef>("api/inputs", &body).await {
                            Ok(r) => {
                                errors.update(|all| all.retain(|x| x.field != "inputs"));
                                set("inputs", r.id.clone());
                                inputs_info.set(Some(r));
                            }
                            Err(e) => fail(e.fields.first().map_or(e.error.clone(), |f| f.message.clone())),
                        }
                    });
                };
                let on_pick = move |ev: web_sys::Event| {
                    use wasm_bindgen::JsCast;
                    let input = ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok());
                    if let Some(list) = input.as_ref().and_then(web_sys::HtmlInputElement::files) {
                        upload((0..list.length()).filter_map(|i| list.get(i)).collect());
                    }
                    if let Some(input) = input {
                        input.set_value("");
                    }
                };
                let on_drop = move |ev: web_sys::DragEvent| {
                    ev.prevent_default();
                    if let Some(list) = ev.data_transfer().and_then(|d| d.files()) {
                        upload((0..list.length()).filter_map(|i| list.get(i)).collect());
                    }
                };
                let described = move || {
                    let builtin = if text(texts, "workload") == "chat" {
                        format!("built-in: {} chat prompts (data/chat_prompts.txt)", ctx.defaults.with(|d| d.chat_prompts))
                    } else {
                        format!("built-in: the notes' {} documents (data/docs_sample.txt)", ctx.defaults.with(|d| d.documents))
                    };
                    match (text(texts, "inputs").is_empty(), inputs_info.get()) {
                        (true, _) => builtin,
                        (false, Some(r)) if r.is_trace() => format!("{} · {} requests over {:.0} s ({}): replay it in the rate mode with a speedup", r.name, r.items, r.duration_s.unwrap_or_default(), r.format),
                        (false, Some(r)) => format!("{} · {} {} ({})", r.name, r.items, if r.workload == Some(Workload::Chat) { "chat requests" } else { "documents" }, r.format),
                        (false, None) => format!("inputs {}", text(texts, "inputs")),
                    }
                };
                view! {
                    <div class="inputs-field dropzone" on:dragover=move |ev: web_sys::DragEvent| ev.prevent_default() on:drop=on_drop>
                        <span id="f-inputs-shown">{described}</span>
                        <input id=id type="file" accept=".txt,.md,.json,.jsonl,text/plain,application/json" on:change=on_pick/>
                        <Show when=move || !text(texts, "inputs").is_empty()>
                            <button type="button" class="link" id="f-inputs-clear" on:click=move |_| { set("inputs", String::new()); inputs_info.set(None); }>"use the built-in ones"</button>
                        </Show>
                    </div>
                }
                .into_any()
            }
            Input::Text => view! {
                <input id=id type="text" placeholder=move || placeholder(key)
                    prop:value=move || text(texts, key) on:input=move |ev| set(key, event_target_value(&ev))/>
            }
            .into_any(),
        }
    };
    let field_view = move |f: &'static form::FormField| {
        let key = f.key;
        let message = move || errors.with(|e| e.iter().filter(|e| e.field == key).map(|e| e.message.clone()).collect::<Vec<_>>().join("; "));
        let extra = move || match key {
            "concurrency" => concurrency_warning().map(|w| view! { <span class="form-warn" id="concurrency-warning">{w}</span> }.into_any()),
            "max_new_tokens" => length_warning().map(|w| view! { <span class="form-warn" id="length-warning">{w}</span> }.into_any()),
            // The search's own refusals are about the mode.
            "mode" => errors.with(|e| e.iter().find(|x| x.field == "search").map(|x| view! { <span class="field-error" data-field="search">{x.message.clone()}</span> }.into_any())),
            _ => None,
        };
        view! {
            <Show when=move || f.shown.applies(mode())>
                <label class="field" title=f.hint>
                    <span class="label">{f.label}</span>
                    {input_of(f)}
                    {extra}
                    <Show when=move || !message().is_empty()>
                        <span class="field-error" data-field=key>{message}</span>
                    </Show>
                </label>
            </Show>
        }
    };

    view! {
        <form class="card" id="experiment-form" on:submit=submit novalidate>
            <div class="row">
                <h2>"New experiment"</h2>
                <button type="button" id="form-reset" class="ghost small" on:click=reset title="every field back to its default">"Reset"</button>
            </div>
            <div class="grid2">
                {FIELDS.iter().map(field_view).collect_view()}
            </div>
            <Show when=move || general_error.get().is_some()>
                <p class="form-error" id="form-error">{move || general_error.get().unwrap_or_default()}</p>
            </Show>
            <For each=other_errors key=|e| (e.field.clone(), e.message.clone()) let:e>
                <p class="form-error" data-field=e.field.clone()>{e.field.clone()} ": " {e.message.clone()}</p>
            </For>
            <button id="start" type="submit" disabled=move || busy.get()>
                {move || if busy.get() { "Starting…" } else { "Start" }}
            </button>
        </form>
    }
}
