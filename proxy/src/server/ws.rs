//! A run's WebSocket: the current view first, then every increment; a viewer that
//! falls behind is sent a fresh snapshot instead of being dropped. Pings keep
//! proxies (RunPod's Cloudflare) from closing an idle socket.
//!
//! Bounded: at most `--max-websockets` open (503 beyond), each keeping its connection's place
//! among `--max-connections`; small read and write buffers (what a socket holds is about one
//! message); a viewer that takes no message for as long as the ping silence limit is closed.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, Path, State};
use axum::response::Response;
use caplab_shared::ServerMsg;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::auth::Role;
use super::{ApiError, AppState};
use crate::runs::Run;

/// How long a shutdown waits for a run's final status before closing its viewers anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What a socket reads at a time: a viewer sends only pongs and closes.
const READ_BUFFER: usize = 4 * 1024;
/// Largest message a viewer may send (a pong or a close frame is a few bytes).
const MAX_INCOMING: usize = 64 * 1024;
/// Most bytes queued for one viewer: larger than any snapshot (ticks are thinned past 2,400, a
/// grid has at most --max-cells), so a message is never refused for its size; a viewer that
/// does not read is closed by the send limit long before its buffer fills.
const MAX_QUEUED: usize = 16 * 1024 * 1024;

pub async fn watch(
    ws: WebSocketUpgrade,
    State(st): State<Arc<AppState>>,
    Extension(role): Extension<Role>,
    conn: Option<Extension<super::listen::ConnHandle>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let run = {
        let (st, id) = (st.clone(), id.clone());
        tokio::task::spawn_blocking(move || st.lab.find(&id)).await.map_err(|e| ApiError::Internal(e.to_string()))??
    };
    let Ok(place) = st.ws_slots.clone().try_acquire_owned() else {
        return Err(ApiError::Unavailable(
            "this caplab has as many live views open as it allows (--max-websockets): close a tab, or ask the operator to raise it".into(),
        ));
    };
    let ws = ws.read_buffer_size(READ_BUFFER).write_buffer_size(0).max_write_buffer_size(MAX_QUEUED).max_message_size(MAX_INCOMING).max_frame_size(MAX_INCOMING);
    let shutdown = st.lab.shutdown.clone();
    // A viewer's socket ends when the viewer link is rotated; the operator's never does.
    let rotated = (role == Role::Viewer).then(|| st.access.rotations());
    // Tracked with the runs, so a shutdown waits for every viewer to get its last messages.
    let (tasks, ping_every) = (st.lab.tasks.clone(), st.ws_ping);
    let viewer = Viewer { role, rotated };
    Ok(ws.on_upgrade(move |socket| {
        tasks.track_future(async move {
            // Held while the socket is open: its place among the WebSockets and the connections.
            let _held = (place, conn);
            stream_run(socket, run, shutdown, ping_every, viewer).await;
        })
    }))
}

/// Who is on the other end of a socket.
struct Viewer {
    role: Role,
    /// For a viewer: changes when the link it came with is rotated.
    rotated: Option<tokio::sync::watch::Receiver<u64>>,
}

impl Viewer {
    /// What this socket may see of a message: a viewer gets no internal addresses.
    fn shown(&self, msg: ServerMsg) -> ServerMsg {
        match (self.role, msg) {
            (Role::Viewer, ServerMsg::Snapshot { mut view }) => {
                view.info = view.info.for_viewer();
                ServerMsg::Snapshot { view }
            }
            (_, msg) => msg,
        }
    }

    /// Resolves when the link this viewer came with is rotated (never for the operator).
    async fn rotation(&mut self) {
        match &mut self.rotated {
            Some(rx) => {
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    }
}

/// The text sent for a message. Made (and the message dropped) before the send is awaited, so
/// a viewer that reads slowly holds only these bytes, not a copy of the run's view as well.
fn encode(msg: ServerMsg) -> Option<String> {
    serde_json::to_string(&msg).ok()
}

/// Sends one message's text; false when the socket is gone or took nothing for `limit` (a
/// viewer that does not read would otherwise hold its task, and its buffers, for ever).
async fn send_within(socket: &mut WebSocket, text: Option<String>, limit: Duration) -> bool {
    let Some(text) = text else { return false };
    matches!(tokio::time::timeout(limit, socket.send(Message::Text(text.into()))).await, Ok(Ok(())))
}

async fn stream_run(mut socket: WebSocket, run: Arc<Run>, shutdown: tokio_util::sync::CancellationToken, ping_every: Duration, mut viewer: Viewer) {
    // A viewer that answers nothing (not even a pong), or takes no message, for this long is
    // gone: its socket is closed.
    let silence_limit = ping_every * 2 + Duration::from_secs(10);
    let (view, mut rx) = run.subscribe();
    let text = encode(viewer.shown(ServerMsg::Snapshot { view: Box::new(view) }));
    if !send_within(&mut socket, text, silence_limit).await {
        return;
    }
    let mut ping = tokio::time::interval(ping_every);
    ping.tick().await;
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Ok(m) => {
                    let text = encode(viewer.shown(m));
                    if !send_within(&mut socket, text, silence_limit).await { break }
                }
                Err(RecvError::Lagged(_)) => {
                    let (view, fresh) = run.subscribe();
                    rx = fresh;
                    let text = encode(viewer.shown(ServerMsg::Snapshot { view: Box::new(view) }));
                    if !send_within(&mut socket, text, silence_limit).await { break }
                }
                Err(RecvError::Closed) => break,
            },
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => last_heard = tokio::time::Instant::now(),
            },
            _ = viewer.rotation() => {
                let frame = CloseFrame { code: close_code::POLICY, reason: "the viewer link was rotated: ask for the new one".into() };
                let _ = tokio::time::timeout(Duration::from_secs(1), socket.send(Message::Close(Some(frame)))).await;
                break;
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > silence_limit {
                    let frame = CloseFrame { code: close_code::POLICY, reason: "no answer to pings".into() };
                    let _ = tokio::time::timeout(Duration::from_secs(1), socket.send(Message::Close(Some(frame)))).await;
                    break;
                }
                if !matches!(tokio::time::timeout(silence_limit, socket.send(Message::Ping(Default::default()))).await, Ok(Ok(()))) { break }
            }
            // Shutting down: forward the run's last messages up to its final status (its cells
            // and `stopped`), then say goodbye with a close frame so the page knows why.
            _ = shutdown.cancelled() => {
                let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
                loop {
                    // What is queued first; a run already ended has its final status in the queue
                    // (the view and the channel change together), so only a running one is awaited.
                    let next = match rx.try_recv() {
                        Ok(m) => Ok(m),
                        Err(TryRecvError::Lagged(_)) => continue,
                        Err(TryRecvError::Closed) => break,
                        Err(TryRecvError::Empty) if run.info().status.is_terminal() => break,
                        Err(TryRecvError::Empty) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                            Ok(Ok(m)) => Ok(m),
                            Ok(Err(RecvError::Lagged(_))) => continue,
                            Ok(Err(RecvError::Closed)) | Err(_) => Err(()),
                        },
                    };
                    let Ok(m) = next else { break };
                    let ended = matches!(&m, ServerMsg::Status { status, .. } if status.is_terminal());
                    if !send_within(&mut socket, encode(m), silence_limit).await { return }
                    if ended { break }
                }
                let frame = CloseFrame { code: close_code::AWAY, reason: "caplab is shutting down".into() };
                let _ = tokio::time::timeout(Duration::from_secs(1), socket.send(Message::Close(Some(frame)))).await;
                break;
            }
        }
    }
}
