//! Keeps the shown run in step with the server over its WebSocket, reconnecting
//! (and so getting a fresh snapshot) whenever the connection drops mid-run.

use caplab_shared::ServerMsg;
use futures::StreamExt;
use gloo_net::websocket::futures::WebSocket;
use gloo_net::websocket::Message;
use leptos::prelude::*;

use crate::{api, Ctx};

/// The run named in the page address (`#run=ID`), if any.
pub fn linked_run() -> Option<String> {
    let hash = web_sys::window()?.location().hash().ok()?;
    hash.strip_prefix("#run=").filter(|id| !id.is_empty()).map(String::from)
}

/// Shows run `id` and follows it until it ends or another run is shown.
pub fn watch(ctx: Ctx, id: String) {
    ctx.watching.set(Some(id.clone()));
    // The address names the run for the operator's reloads and links; a client's shows no id.
    if ctx.is_operator() {
        if let Some(location) = web_sys::window().map(|w| w.location()) {
            let _ = location.set_hash(&format!("run={id}"));
        }
    }
    let generation = ctx.watch_gen.get_untracked() + 1;
    ctx.watch_gen.set(generation);
    if ctx.current.with_untracked(|c| c.as_ref().map(|v| v.info.id != id).unwrap_or(true)) {
        ctx.current.set(None);
    }
    leptos::task::spawn_local(async move {
        let mut delay_ms = 500;
        while ctx.watch_gen.get_untracked() == generation {
            if let Ok(ws) = WebSocket::open(&api::ws_url(&id)) {
                ctx.connected.set(true);
                let (_sink, mut stream) = ws.split();
                while let Some(Ok(msg)) = stream.next().await {
                    if ctx.watch_gen.get_untracked() != generation {
                        return;
                    }
                    let text = match msg {
                        Message::Text(t) => t,
                        Message::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
                    };
                    let Ok(msg) = serde_json::from_str::<ServerMsg>(&text) else { continue };
                    let status_changed = matches!(&msg, ServerMsg::Status { .. });
                    apply(ctx, msg);
                    if status_changed {
                        ctx.refresh_runs().await;
                    }
                    delay_ms = 500;
                }
                ctx.connected.set(false);
            }
            let finished = ctx.current.with_untracked(|c| c.as_ref().is_some_and(|v| v.info.status.is_terminal()));
            if finished || ctx.watch_gen.get_untracked() != generation {
                return;
            }
            // A link that no longer opens caplab (rotated): say so instead of retrying forever.
            if api::get_json::<caplab_shared::api::WhoAmI>("api/whoami").await.is_err_and(|e| e.contains("401") || e.contains("token")) {
                ctx.revoked.set(true);
                ctx.connected.set(false);
                return;
            }
            gloo_timers::future::TimeoutFuture::new(delay_ms).await;
            delay_ms = (delay_ms * 2).min(5_000);
        }
    });
}

fn apply(ctx: Ctx, msg: ServerMsg) {
    match msg {
        ServerMsg::Snapshot { view } => ctx.current.set(Some(*view)),
        other => ctx.current.update(|c| {
            if let Some(v) = c {
                v.apply(&other);
            }
        }),
    }
}
