//! The operator's read-only link for clients: shown, copied by hand, rotated (old links stop
//! working). A viewer sees the runs and downloads, never the form or the Stop button.

use leptos::prelude::*;

use crate::{api, Ctx};

/// What `GET /api/whoami` says about this page's session.
#[derive(serde::Deserialize, Clone, Debug, Default, PartialEq)]
pub struct WhoAmI {
    /// "operator" or "viewer".
    pub role: String,
    /// Whether tokens are required at all (false under `--no-auth`).
    pub auth: bool,
    /// The operator's viewer link (a path with its token).
    pub viewer_link: Option<String>,
}

impl WhoAmI {
    pub fn is_operator(&self) -> bool {
        self.role == "operator"
    }
}

fn absolute(path: &str) -> String {
    let origin = web_sys::window().and_then(|w| w.location().origin().ok()).unwrap_or_default();
    format!("{origin}{path}")
}

#[component]
pub fn ShareCard() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let link = move || ctx.me.with(|m| m.as_ref().and_then(|m| m.viewer_link.clone()));
    let error = RwSignal::new(None::<String>);
    let rotate = move |_| {
        leptos::task::spawn_local(async move {
            match api::post_json::<WhoAmI>("api/viewer-link/rotate", &serde_json::json!({})).await {
                Ok(new) => ctx.me.update(|m| {
                    if let Some(m) = m {
                        m.viewer_link = new.viewer_link;
                    }
                }),
                Err(e) => error.set(Some(e.error)),
            }
        });
    };
    move || {
        link().map(|l| {
            view! {
                <div class="card share">
                    <h2>"Read-only link for clients"</h2>
                    <p class="muted small">"Whoever opens it sees the live runs and can download results, but cannot start, stop or change anything."</p>
                    <input id="viewer-link" type="text" readonly prop:value=absolute(&l)/>
                    <button id="rotate-viewer-link" type="button" on:click=rotate title="make a new link; the old one stops working at once">"New link"</button>
                    {move || error.get().map(|e| view! { <p class="form-error">{e}</p> })}
                </div>
            }
        })
    }
}
