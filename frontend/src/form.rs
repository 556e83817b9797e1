//! The experiment form. Values are kept as typed text; the server validates the
//! spec and its field errors are shown next to the fields they concern.

use caplab_shared::{ExperimentSpec, FieldError, LengthControl, RunInfo};
use leptos::prelude::*;
use serde_json::{json, Map, Value};

use crate::{api, live, runs_list, Ctx};

/// One text input per spec field.
#[derive(Clone, Copy)]
struct Fields {
    name: RwSignal<String>,
    target: RwSignal<String>,
    workload: RwSignal<String>,
    model: RwSignal<String>,
    gpu: RwSignal<String>,
    mode: RwSignal<String>,
    concurrency: RwSignal<String>,
    rate: RwSignal<String>,
    burstiness: RwSignal<String>,
    max_in_flight: RwSignal<String>,
    max_new_tokens: RwSignal<String>,
    requests: RwSignal<String>,
    repeat: RwSignal<String>,
    requests_per_worker: RwSignal<String>,
    warmup: RwSignal<String>,
    timeout_s: RwSignal<String>,
    slo_e2e: RwSignal<String>,
    slo_ttft: RwSignal<String>,
    slo_tpot: RwSignal<String>,
}

impl Fields {
    fn new() -> Self {
        let s = |v: &str| RwSignal::new(v.to_string());
        Fields {
            name: s(""),
            target: s(""),
            workload: s("batch"),
            model: s(""),
            gpu: s(""),
            mode: s("closed"),
            concurrency: s("16"),
            rate: s("4"),
            burstiness: s("1"),
            max_in_flight: s("0"),
            max_new_tokens: s("256"),
            requests: s("0"),
            repeat: s("4"),
            requests_per_worker: s("0"),
            warmup: s("0"),
            timeout_s: s("300"),
            slo_e2e: s(""),
            slo_ttft: s(""),
            slo_tpot: s(""),
        }
    }

    /// Puts a run's settings back into the form (after a reload, or when another run is
    /// shown), so it can be rerun or changed. The results label's "(simulated)" is left out:
    /// caplab adds it again for a simulated target only.
    fn load(self, spec: &ExperimentSpec, allowed: &[crate::AllowedTarget]) {
        let list = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
        let opt = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
        let gpu = spec.gpu.trim_end_matches(" (simulated)");
        self.name.set(spec.name.clone());
        // The run's target by name, when it is still one of this server's allowed targets
        // (runs from before named targets, or from another caplab, keep the default).
        let known = allowed.iter().any(|t| t.name == spec.target);
        self.target.set(if known { spec.target.clone() } else { String::new() });
        self.workload.set(spec.workload.as_str().into());
        self.model.set(spec.model.clone());
        self.gpu.set(if gpu == "simulated" || gpu == "unlabelled" { String::new() } else { gpu.to_string() });
        // The SLO search is a closed loop that picks its cells: the form shows it as a mode.
        self.mode.set(if spec.search { format!("{}-search", spec.mode.as_str()) } else { spec.mode.as_str().into() });
        if !spec.concurrency.is_empty() {
            self.concurrency.set(list(&spec.concurrency));
        }
        if !spec.rate.is_empty() {
            self.rate.set(spec.rate.iter().map(f64::to_string).collect::<Vec<_>>().join(", "));
        }
        self.burstiness.set(spec.burstiness.to_string());
        self.max_in_flight.set(spec.max_in_flight.to_string());
        self.max_new_tokens.set(list(&spec.max_new_tokens));
        self.requests.set(spec.requests.to_string());
        self.repeat.set(spec.repeat.to_string());
        self.requests_per_worker.set(spec.requests_per_worker.to_string());
        self.warmup.set(spec.warmup.to_string());
        self.timeout_s.set(spec.timeout_s.to_string());
        self.slo_e2e.set(opt(spec.slo.e2e_ms));
        self.slo_ttft.set(opt(spec.slo.ttft_ms));
        self.slo_tpot.set(opt(spec.slo.tpot_ms));
    }

    /// A warning when a concurrency is above the requests a cell sends: then at most that many
    /// are ever in flight, whatever the label says.
    fn concurrency_warning(self, documents: u32) -> Option<String> {
        if self.mode.get().starts_with("rate") {
            return None;
        }
        let requests: u32 = self.requests.get().trim().parse().unwrap_or(0);
        let repeat: u32 = self.repeat.get().trim().parse().unwrap_or(1);
        let per_worker: u32 = self.requests_per_worker.get().trim().parse().unwrap_or(0);
        let planned = match (requests, self.workload.get().as_str()) {
            (r, _) if r > 0 => r,
            (_, "chat") => 64,
            _ => documents.saturating_mul(repeat).max(1),
        };
        let over: Vec<String> = self
            .concurrency
            .get()
            .split([',', ' '])
            .filter_map(|c| c.trim().parse::<u32>().ok())
            .filter(|&c| c > planned.max(per_worker.saturating_mul(c)))
            .map(|c| c.to_string())
            .collect();
        (!over.is_empty()).then(|| {
            format!("concurrency {} is above the {planned} requests per cell: at most {planned} will be in flight (raise requests, repeat or requests per worker)", over.join(", "))
        })
    }

    /// The spec as JSON, or the fields that cannot even be read as numbers.
    fn to_spec(self) -> Result<Value, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut spec = Map::new();
        let mut put = |key: &str, v: Value| {
            spec.insert(key.to_string(), v);
        };
        put("name", json!(self.name.get_untracked().trim()));
        put("workload", json!(self.workload.get_untracked()));
        put("model", json!(self.model.get_untracked().trim()));
        put("target", json!(self.target.get_untracked().trim()));
        put("gpu", json!(self.gpu.get_untracked().trim()));
        let mode = self.mode.get_untracked();
        let search = mode.ends_with("-search");
        put("mode", json!(mode.trim_end_matches("-search")));
        put("search", json!(search));
        let rate_mode = self.mode.get_untracked().starts_with("rate");
        let list = |key: &str, sig: RwSignal<String>, integers: bool, errors: &mut Vec<FieldError>| -> Option<Value> {
            let text = sig.get_untracked();
            let parts: Vec<&str> = text.split([',', ' ']).map(str::trim).filter(|p| !p.is_empty()).collect();
            let mut out = Vec::new();
            for p in parts {
                match (integers, p.parse::<i64>(), p.parse::<f64>()) {
                    (true, Ok(i), _) => out.push(json!(i)),
                    (false, _, Ok(f)) if f.is_finite() => out.push(json!(f)),
                    _ => {
                        let what = if integers { "whole numbers" } else { "numbers" };
                        errors.push(FieldError::new(key, format!("{p:?} is not a number: give {what} separated by commas")));
                        return None;
                    }
                }
            }
            Some(Value::Array(out))
        };
        let concurrency = list("concurrency", self.concurrency, true, &mut errors);
        let max_new_tokens = list("max_new_tokens", self.max_new_tokens, true, &mut errors);
        let rate = if rate_mode { list("rate", self.rate, false, &mut errors) } else { Some(json!([])) };
        let number = |key: &str, sig: RwSignal<String>, integer: bool, errors: &mut Vec<FieldError>| -> Option<Value> {
            let text = sig.get_untracked();
            let text = text.trim();
            if text.is_empty() {
                return None;
            }
            let parsed = if integer { text.parse::<i64>().ok().map(|i| json!(i)) } else { text.parse::<f64>().ok().filter(|f| f.is_finite()).map(|f| json!(f)) };
            if parsed.is_none() {
                errors.push(FieldError::new(key, format!("{text:?} is not a {}", if integer { "whole number" } else { "number" })));
            }
            parsed
        };
        let mut optional = Vec::new();
        for (key, sig, integer) in [
            ("requests", self.requests, true),
            ("repeat", self.repeat, true),
            ("requests_per_worker", self.requests_per_worker, true),
            ("warmup", self.warmup, true),
            ("timeout_s", self.timeout_s, false),
            ("burstiness", self.burstiness, false),
            ("max_in_flight", self.max_in_flight, true),
        ] {
            if let Some(v) = number(key, sig, integer, &mut errors) {
                optional.push((key, v));
            }
        }
        let mut slo = Map::new();
        for (key, sig) in [("e2e_ms", self.slo_e2e), ("ttft_ms", self.slo_ttft), ("tpot_ms", self.slo_tpot)] {
            if let Some(v) = number(&format!("slo.{key}"), sig, false, &mut errors) {
                slo.insert(key.into(), v);
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        if let Some(c) = concurrency {
            put("concurrency", c);
        }
        if let Some(m) = max_new_tokens {
            put("max_new_tokens", m);
        }
        if let Some(r) = rate {
            put("rate", r);
        }
        for (k, v) in optional {
            put(k, v);
        }
        put("slo", Value::Object(slo));
        Ok(Value::Object(spec))
    }
}

#[component]
pub fn ExperimentForm() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let f = Fields::new();
    let errors = RwSignal::new(Vec::<FieldError>::new());
    let general_error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);

    // What the chosen target is (models, engine): the default one until another is picked.
    let chosen = RwSignal::new(None::<caplab_shared::TargetInfo>);
    Effect::new(move |_| {
        let name = f.target.get();
        if name.is_empty() {
            chosen.set(ctx.target.get());
            return;
        }
        leptos::task::spawn_local(async move {
            let info = api::get_json::<caplab_shared::TargetInfo>(&format!("api/target?name={name}")).await.ok();
            if f.target.get_untracked() == name {
                chosen.set(info);
            }
        });
    });

    // The shown run's settings fill the form whenever another run is shown (a reload included).
    let loaded = RwSignal::new(None::<String>);
    Effect::new(move |_| {
        let shown = ctx.current.with(|c| c.as_ref().map(|v| (v.info.id.clone(), v.info.spec.clone())));
        if let Some((id, spec)) = shown {
            if loaded.get_untracked().as_deref() != Some(id.as_str()) {
                f.load(&spec, &ctx.targets.get_untracked());
                loaded.set(Some(id));
            }
        }
    });
    // A refusal ("run X is still loading …") no longer holds once the shown run has ended.
    Effect::new(move |_| {
        if ctx.current.with(|c| c.as_ref().is_some_and(|v| v.info.status.is_terminal())) {
            general_error.set(None);
        }
    });
    let concurrency_warning = move || f.concurrency_warning(ctx.documents.get());
    let length_warning = move || {
        chosen.with(|t| {
            t.as_ref().filter(|t| t.server.length_control() == LengthControl::None).map(|t| {
                format!("{} cannot force the output length: outputs may be shorter than max_new_tokens (each request's real length is recorded)", t.server.label())
            })
        })
    };

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        general_error.set(None);
        let spec = match f.to_spec() {
            Ok(s) => s,
            Err(e) => {
                errors.set(e);
                return;
            }
        };
        errors.set(vec![]);
        busy.set(true);
        leptos::task::spawn_local(async move {
            match api::post_json::<RunInfo>("api/runs", &spec).await {
                Ok(info) => {
                    live::watch(ctx, info.id.clone());
                    runs_list::refresh(ctx).await;
                }
                Err(e) if !e.fields.is_empty() => errors.set(e.fields),
                Err(e) => general_error.set(Some(e.error)),
            }
            busy.set(false);
        });
    };
    let rate_mode = move || f.mode.get().starts_with("rate");
    let other_errors = move || errors.with(|all| all.iter().filter(|e| !KNOWN.contains(&e.field.as_str())).cloned().collect::<Vec<_>>());
    let models = move || chosen.with(|t| t.as_ref().map(|t| t.models.clone()).unwrap_or_default());
    let model_placeholder = move || {
        chosen.with(|t| match t.as_ref().map(|t| t.models.first()) {
            Some(Some(first)) => format!("{first} (first listed)"),
            Some(None) => "required: this server lists no models".to_string(),
            None => String::new(),
        })
    };
    let default_slo = move || if f.workload.get() == "chat" { "3000 (chat default)".to_string() } else { "30000 (batch default)".to_string() };

    view! {
        <form class="card" id="experiment-form" on:submit=submit novalidate>
            <h2>"New experiment"</h2>
            <div class="grid2">
                <Field label="Workload" key="workload" errors hint="chat: streaming /v1/chat/completions over the chat prompts; batch: /v1/completions summarizing the [DOC] file">
                    <select id="f-workload" on:change=move |ev| {
                        let w = event_target_value(&ev);
                        f.max_new_tokens.set(if w == "chat" { "128".into() } else { "256".into() });
                        f.workload.set(w);
                    } prop:value=move || f.workload.get()>
                        <option value="batch">"batch"</option>
                        <option value="chat">"chat"</option>
                    </select>
                </Field>
                <Field label="Model" key="model" errors hint="the model name sent in requests; suggestions from the target's /v1/models (some servers list none: type the name)">
                    <input id="f-model" type="text" list="f-model-list" placeholder=model_placeholder
                        prop:value=move || f.model.get() on:input=move |ev| f.model.set(event_target_value(&ev))/>
                    <datalist id="f-model-list">
                        <For each=models key=|m| m.clone() let:m>
                            <option value=m.clone()></option>
                        </For>
                    </datalist>
                </Field>
                <Field label="Load mode" key="mode" errors hint="closed: N workers back to back; rate: timed arrivals (Poisson when burstiness is 1); SLO search: the highest of the concurrency (or rate) candidates that meets the SLO, running only the cells needed (bracket, then bisect; at least 20 requests a probe), with how sure the answer is">
                    <select id="f-mode" on:change=move |ev| f.mode.set(event_target_value(&ev)) prop:value=move || f.mode.get()>
                        <option value="closed">"closed loop"</option>
                        <option value="closed-search">"closed loop: SLO search"</option>
                        <option value="rate-search">"rate: SLO search"</option>
                        <option value="rate">"open loop (rate)"</option>
                    </select>
                    {move || errors.with(|e| e.iter().find(|x| x.field == "search").map(|x| view! { <span class="field-error" data-field="search">{x.message.clone()}</span> }))}
                </Field>
                <Show when=move || !rate_mode()>
                    <Field label="Concurrency" key="concurrency" errors hint="one value, or a list for a grid: 8, 16, 32">
                        <TextInput id="f-concurrency" sig=f.concurrency/>
                        {move || concurrency_warning().map(|w| view! { <span class="form-warn" id="concurrency-warning">{w}</span> })}
                    </Field>
                </Show>
                <Show when=rate_mode>
                    <Field label="Rate (req/s)" key="rate" errors hint="one value or a list: 1, 2, 4">
                        <TextInput id="f-rate" sig=f.rate/>
                    </Field>
                    <Field label="Burstiness" key="burstiness" errors hint="gamma shape of arrival gaps; 1 = Poisson, lower = burstier">
                        <TextInput id="f-burstiness" sig=f.burstiness/>
                    </Field>
                    <Field label="Max in flight" key="max_in_flight" errors hint="0 = unbounded; extra arrivals wait client-side (counted in latency)">
                        <TextInput id="f-max_in_flight" sig=f.max_in_flight/>
                    </Field>
                </Show>
                <Field label="max_new_tokens" key="max_new_tokens" errors hint="one value or a list: 256, 512">
                    <TextInput id="f-max_new_tokens" sig=f.max_new_tokens/>
                    {move || length_warning().map(|w| view! { <span class="form-warn" id="length-warning">{w}</span> })}
                </Field>
                <Field label="Requests per cell" key="requests" errors hint="0 = default: chat 64, batch documents × repeat">
                    <TextInput id="f-requests" sig=f.requests/>
                </Field>
                <Field label="Repeat (batch)" key="repeat" errors hint="batch: the document set is sent this many times">
                    <TextInput id="f-repeat" sig=f.repeat/>
                </Field>
                <Field label="Requests per worker" key="requests_per_worker" errors hint="closed loop: each cell sends at least this × concurrency requests, so big cells run several waves; 0 = off">
                    <TextInput id="f-requests_per_worker" sig=f.requests_per_worker/>
                </Field>
                <Field label="Warm-up requests" key="warmup" errors hint="sent first in each cell and left out of all statistics">
                    <TextInput id="f-warmup" sig=f.warmup/>
                </Field>
                <Field label="GPU label" key="gpu" errors hint="written into every result row; a simulated target's results are marked (simulated)">
                    <TextInput id="f-gpu" sig=f.gpu placeholder="e.g. RunPod-RTX2000-16GB"/>
                </Field>
                <Field label="SLO p95 end-to-end (ms)" key="slo.e2e_ms" errors hint="empty = the workload's default">
                    <TextInput id="f-slo-e2e" sig=f.slo_e2e placeholder=Signal::derive(default_slo)/>
                </Field>
                <Field label="SLO p95 TTFT (ms)" key="slo.ttft_ms" errors hint="optional">
                    <TextInput id="f-slo-ttft" sig=f.slo_ttft/>
                </Field>
                <Field label="SLO p95 TPOT (ms)" key="slo.tpot_ms" errors hint="optional">
                    <TextInput id="f-slo-tpot" sig=f.slo_tpot/>
                </Field>
                <Field label="Timeout per request (s)" key="timeout_s" errors hint="a request still running then is ended as a timeout error">
                    <TextInput id="f-timeout" sig=f.timeout_s/>
                </Field>
                <Field label="Target" key="target" errors hint="the servers the operator allowed when starting caplab (--target NAME=URL); sim is the built-in simulator">
                    <select id="f-target" on:change=move |ev| f.target.set(event_target_value(&ev)) prop:value=move || f.target.get()>
                        <option value="">"(default)"</option>
                        <For each=move || ctx.targets.get() key=|t| t.name.clone() let:t>
                            <option value=t.name.clone()>{format!("{} · {}", t.name, t.url)}</option>
                        </For>
                    </select>
                </Field>
                <Field label="Name" key="name" errors hint="optional label">
                    <TextInput id="f-name" sig=f.name/>
                </Field>
            </div>
            <Show when=move || general_error.get().is_some()>
                <p class="form-error" id="form-error">{move || general_error.get().unwrap_or_default()}</p>
            </Show>
            <For each=other_errors key=|e| e.field.clone() let:e>
                <p class="form-error">{e.field.clone()} ": " {e.message.clone()}</p>
            </For>
            <button id="start" type="submit" disabled=move || busy.get()>
                {move || if busy.get() { "Starting…" } else { "Start" }}
            </button>
        </form>
    }
}

/// Fields that show their own errors; any other field's error is listed under the form.
const KNOWN: &[&str] = &[
    "workload", "model", "mode", "concurrency", "rate", "burstiness", "max_in_flight", "max_new_tokens", "requests",
    "repeat", "requests_per_worker", "warmup", "gpu", "slo.e2e_ms", "slo.ttft_ms", "slo.tpot_ms", "timeout_s", "name", "target",
];

#[component]
fn TextInput(id: &'static str, sig: RwSignal<String>, #[prop(into, optional)] placeholder: Signal<String>) -> impl IntoView {
    view! {
        <input id=id type="text" placeholder=move || placeholder.get()
            prop:value=move || sig.get() on:input=move |ev| sig.set(event_target_value(&ev))/>
    }
}

#[component]
fn Field(label: &'static str, key: &'static str, errors: RwSignal<Vec<FieldError>>, hint: &'static str, children: Children) -> impl IntoView {
    let message = move || errors.with(|e| e.iter().find(|e| e.field == key).map(|e| e.message.clone()));
    view! {
        <label class="field" title=hint>
            <span class="label">{label}</span>
            {children()}
            <Show when=move || message().is_some()>
                <span class="field-error" data-field=key>{move || message().unwrap_or_default()}</span>
            </Show>
        </label>
    }
}
