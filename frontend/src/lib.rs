//! The caplab dashboard: compose an experiment, watch it live, compare and download results.
//!
//! State lives in one `Ctx` provided to every component. A run's view changes only by
//! applying the server's messages (`caplab_shared::RunView::apply`), the same function
//! the server uses, so the page always shows what the server holds.

mod api;
mod charts;
mod compare;
mod download;
mod form;
mod import;
mod live;
mod present;
mod run_panel;
mod runs_list;
mod share;
mod surface;
mod telemetry;
mod tokens;

use caplab_shared::api::{AllowedTarget, Defaults, WhoAmI};
use caplab_shared::{ExperimentSpec, RunInfo, RunView, TargetInfo};
use leptos::prelude::*;
use wasm_bindgen::prelude::*;

/// Which face the page shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Face {
    /// The operator's lab: the form, every chart, the runs, imports and comparisons.
    Lab,
    /// For clients: the answer first, large, nothing internal (the viewer link's default).
    Presentation,
}

/// State shared by all components.
#[derive(Clone, Copy)]
pub struct Ctx {
    /// The default target, as the server sees it (operator only).
    pub target: RwSignal<Option<TargetInfo>>,
    /// Why the target could not be read, if it could not.
    pub target_error: RwSignal<Option<String>>,
    /// The run being shown.
    pub current: RwSignal<Option<RunView>>,
    /// All runs the server lets this page see, newest first.
    pub runs: RwSignal<Vec<RunInfo>>,
    /// Bumped whenever another run is shown, which ends the previous run's socket loop.
    pub watch_gen: RwSignal<u64>,
    /// The id of the run being followed (the page address says it too: `#run=ID`).
    pub watching: RwSignal<Option<String>>,
    /// Whether the live socket is connected.
    pub connected: RwSignal<bool>,
    /// What the form starts from (`GET /api/defaults`).
    pub defaults: RwSignal<Defaults>,
    /// The servers this caplab may load (`GET /api/targets`), the default first.
    pub targets: RwSignal<Vec<AllowedTarget>>,
    /// Who this page is (operator or viewer); None until known.
    pub me: RwSignal<Option<WhoAmI>>,
    /// Runs ticked in the list, to be compared.
    pub selected: RwSignal<Vec<String>>,
    /// The runs being compared (empty: no comparison shown).
    pub compare: RwSignal<Vec<String>>,
    /// A spec for the form to take ("Run again"); the form clears it once taken.
    pub form_load: RwSignal<Option<ExperimentSpec>>,
    pub face: RwSignal<Face>,
    /// High-contrast dark colours (for projectors).
    pub dark: RwSignal<bool>,
    /// This page's link no longer opens caplab (a viewer link the operator replaced).
    pub revoked: RwSignal<bool>,
}

impl Ctx {
    /// Only the operator sees the controls that start, stop or change anything.
    pub fn is_operator(&self) -> bool {
        self.me.with(|m| m.as_ref().is_some_and(WhoAmI::is_operator))
    }

    /// Reads the run list again.
    pub async fn refresh_runs(self) {
        if let Ok(runs) = api::get_json::<Vec<RunInfo>>("api/runs").await {
            self.runs.set(runs);
        }
    }
}

/// Reads the shown run, if there is one (tracked: the caller re-runs when it changes).
pub fn with_view<T>(ctx: Ctx, f: impl FnOnce(&RunView) -> T) -> Option<T> {
    ctx.current.with(|c| c.as_ref().map(f))
}

#[wasm_bindgen(start)]
pub fn start() {
    leptos::mount::mount_to_body(App);
}

/// `#present` in the address (or a viewer link) opens the presentation face.
fn face_in_address() -> Option<Face> {
    let hash = web_sys::window()?.location().hash().ok()?;
    hash.contains("present").then_some(Face::Presentation)
}

#[component]
pub fn App() -> impl IntoView {
    let ctx = Ctx {
        target: RwSignal::new(None),
        target_error: RwSignal::new(None),
        current: RwSignal::new(None),
        runs: RwSignal::new(Vec::new()),
        watch_gen: RwSignal::new(0),
        watching: RwSignal::new(None),
        connected: RwSignal::new(false),
        defaults: RwSignal::new(Defaults { documents: 5, ..Default::default() }),
        me: RwSignal::new(None),
        targets: RwSignal::new(Vec::new()),
        selected: RwSignal::new(Vec::new()),
        compare: RwSignal::new(Vec::new()),
        form_load: RwSignal::new(None),
        face: RwSignal::new(face_in_address().unwrap_or(Face::Lab)),
        dark: RwSignal::new(false),
        revoked: RwSignal::new(false),
    };
    provide_context(ctx);
    leptos::task::spawn_local(async move {
        if let Ok(me) = api::get_json::<WhoAmI>("api/whoami").await {
            // A viewer (a client) meets the presentation first.
            if !me.is_operator() {
                ctx.face.set(Face::Presentation);
            }
            ctx.me.set(Some(me));
        }
        if let Ok(t) = api::get_json::<Vec<AllowedTarget>>("api/targets").await {
            ctx.targets.set(t);
        }
        if let Ok(d) = api::get_json::<Defaults>("api/defaults").await {
            ctx.defaults.set(d);
        }
        if ctx.is_operator() {
            match api::get_json::<TargetInfo>("api/target").await {
                Ok(t) => ctx.target.set(Some(t)),
                Err(e) => ctx.target_error.set(Some(e)),
            }
        }
        ctx.refresh_runs().await;
        // Show the run the address names (`#run=ID`, a shareable link), else the newest one.
        let linked = live::linked_run().filter(|id| ctx.runs.with_untracked(|r| r.iter().any(|i| &i.id == id)));
        let newest = ctx.runs.with_untracked(|r| r.first().map(|i| i.id.clone()));
        if let Some(id) = linked.or(newest) {
            live::watch(ctx, id);
        }
    });
    // A link to another run opened in this tab (only the `#run=` part changes) shows that run.
    let hash_listener = window_event_listener(leptos::ev::hashchange, move |_| {
        if let Some(id) = live::linked_run().filter(|id| ctx.watching.with_untracked(|w| w.as_ref() != Some(id))) {
            live::watch(ctx, id);
        }
    });
    on_cleanup(move || hash_listener.remove());
    let presenting = move || ctx.face.get() == Face::Presentation;
    view! {
        <div class="app" class:dark=move || ctx.dark.get() class:presenting=presenting>
        <header>
            <h1>"caplab"</h1>
            <span class="tagline">"LLM-serving capacity lab"</span>
            <RunBadge/>
            <span class="face-switch">
                <Show when=move || ctx.is_operator()>
                    <button type="button" id="face-toggle" class="ghost" on:click=move |_| ctx.face.update(|f| *f = if *f == Face::Lab { Face::Presentation } else { Face::Lab })>
                        {move || if presenting() { "Lab view" } else { "Presentation" }}
                    </button>
                </Show>
                <button type="button" id="dark-toggle" class="ghost" title="high-contrast dark colours, for a projector" on:click=move |_| ctx.dark.update(|d| *d = !*d)>
                    {move || if ctx.dark.get() { "Light" } else { "Dark" }}
                </button>
            </span>
        </header>
        <Show when=move || ctx.revoked.get()>
            <p class="revoked" id="link-revoked">"This link no longer works: the person running caplab made a new one. What is on screen stopped updating; ask them for the new link."</p>
        </Show>
        <Show when=presenting fallback=move || view! {
            <main>
                <section class="left">
                    <Show when=move || ctx.is_operator()
                        fallback=move || view! { <div class="card" id="viewer-note"><p class="muted">"Read-only view: you can watch the runs and download their results."</p></div> }>
                        <form::ExperimentForm/>
                        <share::ShareCard/>
                    </Show>
                    <runs_list::RunsList/>
                    <Show when=move || ctx.is_operator()>
                        <import::ImportCard/>
                    </Show>
                </section>
                <section class="right">
                    <compare::ComparePanel/>
                    <run_panel::RunPanel/>
                </section>
            </main>
        }>
            <present::Presentation/>
        </Show>
        </div>
    }
}

/// Says what the shown run's numbers come from: its target's engine and version, GPU and model,
/// SIMULATED or IMPORTED loudly. With no run shown, the operator's default target.
#[component]
fn RunBadge() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    move || {
        if let Some((info, _)) = with_view(ctx, |v| (v.info.clone(), ())) {
            let t = &info.target;
            let version = t.version.as_ref().filter(|_| !t.simulated).map(|v| format!(" {v}")).unwrap_or_default();
            let (class, engine) = match (&info.imported_from, t.simulated) {
                (Some(_), _) => ("badge imported", "IMPORTED".to_string()),
                (None, true) => ("badge simulated", "SIMULATED vLLM".to_string()),
                (None, false) => ("badge real", format!("{}{version}", t.server.label())),
            };
            let model = info.spec.model_beside_gpu().unwrap_or_default().to_string();
            let text = [engine, info.spec.gpu.clone(), model].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" · ");
            let title = match (&info.imported_from, t.simulated) {
                (Some(from), _) => format!("measured by another tool, not caplab: {from}"),
                (None, true) => "caplab's built-in simulator: every number of this run is simulated, not measured on a GPU".to_string(),
                (None, false) => format!("recognised by: {}", t.evidence.join("; ")),
            };
            return view! { <span class=class id="target-badge" title=title>{text}</span> }.into_any();
        }
        match (ctx.target.get(), ctx.target_error.get()) {
            (Some(t), _) => {
                let what = if t.simulated { "SIMULATED vLLM".to_string() } else { t.server.label().to_string() };
                let model = t.models.first().cloned().unwrap_or_default();
                view! { <span class=if t.simulated { "badge simulated" } else { "badge real" } id="target-badge" title="the default target: no run is shown yet">{format!("default target: {what} · {model}")}</span> }.into_any()
            }
            (None, Some(e)) => view! { <span class="badge error">"target unreachable: " {e}</span> }.into_any(),
            (None, None) => ().into_any(),
        }
    }
}

/// Formats an optional number with `digits` decimals, or a dash.
pub fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{v:.digits$}"))
}

/// A duration for people: "2 h 05 min", "4 min 10 s", "35 s".
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, sec) => format!("{sec} s"),
        (0, min, sec) => format!("{min} min {sec:02} s"),
        (h, min, _) => format!("{h} h {min:02} min"),
    }
}

/// Thousands with separators: 14648.2 → "14,648".
pub fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if v < 0.0 && out != "0" { format!("-{out}") } else { out }
}

/// `2026-11-29 10:01 UTC` for a Unix time in ms.
pub fn when(unix_ms: u64) -> String {
    let iso = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(unix_ms as f64)).to_iso_string().as_string().unwrap_or_default();
    format!("{} UTC", iso.get(..16).unwrap_or_default().replace('T', " "))
}
