//! The operator's read-only link for clients: shown, copied by hand, rotated after a
//! confirmation (the old link stops working and every viewer on it is disconnected at once).
//! A viewer sees the presentation and the downloads, never the form or the Stop button.

use caplab_shared::api::WhoAmI;
use leptos::prelude::*;

use crate::{api, Ctx};

fn absolute(path: &str) -> String {
    let origin = web_sys::window().and_then(|w| w.location().origin().ok()).unwrap_or_default();
    format!("{origin}{path}")
}

#[component]
pub fn ShareCard() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let link = move || ctx.me.with(|m| m.as_ref().and_then(|m| m.viewer_link.clone()));
    let error = RwSignal::new(None::<String>);
    let rotated = RwSignal::new(false);
    let rotate = move |_| {
        let Some(window) = web_sys::window() else { return };
        let asked = "Make a new viewer link? The current one stops working now, and everyone watching through it is disconnected.";
        if !window.confirm_with_message(asked).unwrap_or(false) {
            return;
        }
        leptos::task::spawn_local(async move {
            match api::post_json::<WhoAmI>("api/viewer-link/rotate", &serde_json::json!({})).await {
                Ok(me) => {
                    error.set(None);
                    rotated.set(true);
                    ctx.me.set(Some(me));
                }
                Err(e) => error.set(Some(e.error)),
            }
        });
    };
    move || {
        link().map(|l| {
            view! {
                <div class="card share">
                    <h2>"Read-only link for clients"</h2>
                    <p class="muted small">"Whoever opens it sees the presentation of the runs you share (and the one going on) and can download their results, but cannot start, stop or change anything."</p>
                    <input id="viewer-link" type="text" readonly prop:value=absolute(&l)/>
                    <button id="rotate-viewer-link" type="button" on:click=rotate title="make a new link; the old one stops working at once">"New link"</button>
                    {move || rotated.get().then(|| view! { <p class="muted small" id="viewer-link-rotated">"New link made: the old one no longer works, and its viewers were disconnected."</p> })}
                    {move || error.get().map(|e| view! { <p class="form-error">{e}</p> })}
                </div>
            }
        })
    }
}
