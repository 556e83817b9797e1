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
mod run_panel;
mod runs_list;
mod share;
mod surface;
mod telemetry;

use caplab_shared::{RunInfo, RunView, TargetInfo};
use leptos::prelude::*;
use wasm_bindgen::prelude::*;

/// A server the operator allowed (`GET /api/targets`).
#[derive(serde::Deserialize, Clone, Debug, PartialEq)]
pub struct AllowedTarget {
    pub name: String,
    pub url: String,
}

/// State shared by all components.
#[derive(Clone, Copy)]
pub struct Ctx {
    /// The default target, as the server sees it.
    pub target: RwSignal<Option<TargetInfo>>,
    /// Why the target could not be read, if it could not.
    pub target_error: RwSignal<Option<String>>,
    /// The run being shown.
    pub current: RwSignal<Option<RunView>>,
    /// All runs the server knows, newest first.
    pub runs: RwSignal<Vec<RunInfo>>,
    /// Bumped whenever another run is shown, which ends the previous run's socket loop.
    pub watch_gen: RwSignal<u64>,
    /// The id of the run being followed (the page address says it too: `#run=ID`).
    pub watching: RwSignal<Option<String>>,
    /// Whether the live socket is connected.
    pub connected: RwSignal<bool>,
    /// Documents in the batch workload (a batch cell's default requests = documents × repeat).
    pub documents: RwSignal<u32>,
    /// The servers this caplab may load (`GET /api/targets`), the default first.
    pub targets: RwSignal<Vec<AllowedTarget>>,
    /// Who this page is (operator or viewer); None until known.
    pub me: RwSignal<Option<share::WhoAmI>>,
    /// Runs ticked in the list, to be compared.
    pub selected: RwSignal<Vec<String>>,
    /// The runs being compared (empty: no comparison shown).
    pub compare: RwSignal<Vec<String>>,
}

impl Ctx {
    /// Only the operator sees the controls that start, stop or change anything.
    pub fn is_operator(&self) -> bool {
        self.me.with(|m| m.as_ref().is_some_and(share::WhoAmI::is_operator))
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
        documents: RwSignal::new(5),
        me: RwSignal::new(None),
        targets: RwSignal::new(Vec::new()),
        selected: RwSignal::new(Vec::new()),
        compare: RwSignal::new(Vec::new()),
    };
    provide_context(ctx);
    leptos::task::spawn_local(async move {
        if let Ok(me) = api::get_json::<share::WhoAmI>("api/whoami").await {
            ctx.me.set(Some(me));
        }
        if let Ok(t) = api::get_json::<Vec<AllowedTarget>>("api/targets").await {
            ctx.targets.set(t);
        }
        if let Ok(d) = api::get_json::<serde_json::Value>("api/defaults").await {
            if let Some(n) = d["documents"].as_u64() {
                ctx.documents.set(n as u32);
            }
        }
        match api::get_json::<TargetInfo>("api/target").await {
            Ok(t) => ctx.target.set(Some(t)),
            Err(e) => ctx.target_error.set(Some(e)),
        }
        runs_list::refresh(ctx).await;
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
    view! {
        <header>
            <h1>"caplab"</h1>
            <span class="tagline">"LLM-serving capacity lab"</span>
            <TargetBadge/>
        </header>
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
    }
}

/// Says what the numbers come from (a simulated target is flagged loudly), which engine
/// answered and why caplab thinks so, and what caplab cannot do with it.
#[component]
fn TargetBadge() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    move || match (ctx.target.get(), ctx.target_error.get()) {
        (Some(t), _) if t.simulated => view! {
            <span class="badge simulated" id="target-badge" title="caplab's built-in simulator: every number it produces is simulated, not measured on a GPU">
                "SIMULATED vLLM · " {t.models.first().cloned().unwrap_or_default()}
            </span>
        }
        .into_any(),
        (Some(t), _) => {
            let version = t.version.as_ref().map(|v| format!(" {v}")).unwrap_or_default();
            let models = if t.models.is_empty() { "models not listed".to_string() } else { t.models.join(", ") };
            let why = format!("recognised by: {}", t.evidence.join("; "));
            let missing = t.server.unavailable();
            view! {
                <span class="badge real" id="target-badge" title=why>
                    {t.server.label()} {version} " · " {t.url.clone()} " · " {models}
                </span>
                {(!missing.is_empty()).then(|| view! {
                    <span class="badge warn" id="target-limits" title=missing.join("\n")>
                        {format!("unavailable with this server: {}", missing.iter().map(|m| m.split(':').next().unwrap_or(m)).collect::<Vec<_>>().join(", "))}
                    </span>
                })}
            }
            .into_any()
        }
        (None, Some(e)) => view! { <span class="badge error">"target unreachable: " {e}</span> }.into_any(),
        (None, None) => view! { <span class="badge">"reading target…"</span> }.into_any(),
    }
}

/// Formats an optional number with `digits` decimals, or a dash.
pub fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{v:.digits$}"))
}
