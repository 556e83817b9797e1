//! A run's WebSocket: the current view first, then every increment; a viewer that
//! falls behind is sent a fresh snapshot instead of being dropped. Pings keep
//! proxies (RunPod's Cloudflare) from closing an idle socket.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use caplab_shared::ServerMsg;
use tokio::sync::broadcast::error::RecvError;

use super::{ApiError, AppState};
use crate::runs::Run;

const PING_EVERY: Duration = Duration::from_secs(20);

pub async fn watch(ws: WebSocketUpgrade, State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let run = st.registry.get(&id).ok_or_else(|| ApiError::NotFound(format!("no run with id {id:?}")))?;
    let shutdown = st.shutdown.clone();
    Ok(ws.on_upgrade(move |socket| stream_run(socket, run, shutdown)))
}

async fn send(socket: &mut WebSocket, msg: &ServerMsg) -> bool {
    match serde_json::to_string(msg) {
        Ok(text) => socket.send(Message::Text(text.into())).await.is_ok(),
        Err(_) => false,
    }
}

async fn stream_run(mut socket: WebSocket, run: Arc<Run>, shutdown: tokio_util::sync::CancellationToken) {
    let (view, mut rx) = run.subscribe();
    if !send(&mut socket, &ServerMsg::Snapshot { view: Box::new(view) }).await {
        return;
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Ok(m) => if !send(&mut socket, &m).await { break },
                Err(RecvError::Lagged(_)) => {
                    let (view, fresh) = run.subscribe();
                    rx = fresh;
                    if !send(&mut socket, &ServerMsg::Snapshot { view: Box::new(view) }).await { break }
                }
                Err(RecvError::Closed) => break,
            },
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => if socket.send(Message::Ping(Default::default())).await.is_err() { break },
            // Let the last messages of stopped runs through, then close so the server can exit.
            _ = shutdown.cancelled() => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                while let Ok(m) = rx.try_recv() {
                    if !send(&mut socket, &m).await { break }
                }
                let _ = socket.send(Message::Close(None)).await;
                break;
            }
        }
    }
}
