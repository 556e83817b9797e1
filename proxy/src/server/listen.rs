//! Serving the dashboard with the limits `axum::serve` lacks, so that nobody, token or not, can
//! lock the operator out:
//! - a connection that sends nothing is closed after `header_read_timeout` (hyper's own header
//!   timeout starts only once a first byte came: 1,100 silent connections once held every slot
//!   for over a minute), and one that does not finish its headers in that time is cut off too;
//! - at most `max_connections` are open at once, WebSockets included (a socket keeps the slot of
//!   the connection it was upgraded from), and at most `max_per_client` from one address;
//! - when either cap is reached, the oldest connection that is idle (silent since it opened, or
//!   between two requests) is closed to make room, so new clients get in while idle ones wait;
//!   only when every connection is busy do new ones wait (one accepted, the rest in the
//!   kernel's queue);
//! - running out of descriptors on `accept` is logged as caplab's own shortage, with numbers,
//!   at most once every 10 s;
//! - a response to a request whose body was not read (413, 415, 401 …) says `Connection: close`.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response};
use axum::Router;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Limits on the dashboard's own connections (sized from the open-file limit: `fd_limit::dashboard`).
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    /// A connection must send its first byte, and then its request headers, within this.
    pub header_read_timeout: Duration,
    /// Open at once, WebSockets included.
    pub max_connections: usize,
    /// Open at once from one client address (behind a proxy, every client shares its address).
    pub max_per_client: usize,
}

/// How long a shutdown waits for requests already being answered.
const DRAIN: Duration = Duration::from_secs(5);

/// How often a shortage on `accept` is logged at most.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// A connection's hold on its place among the `max_connections`: released when the connection
/// and any WebSocket upgraded from it have closed.
pub struct Slot {
    id: u64,
    ip: IpAddr,
    table: Arc<Table>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.release(self.id, self.ip);
    }
}

/// A request's handle on its connection's slot (a request extension): a WebSocket upgraded from
/// the request keeps it, so an open socket counts against `max_connections` and its client's cap.
#[derive(Clone)]
pub struct ConnHandle(#[allow(dead_code)] Arc<Slot>);

/// What the table knows of one open connection.
struct Entry {
    ip: IpAddr,
    /// Requests being answered on it now (their response bodies included).
    busy: Arc<AtomicUsize>,
    /// It has sent at least one byte.
    spoke: Arc<AtomicBool>,
    /// Its HTTP life is over (closed, or handed to a WebSocket): never idle again.
    done: Arc<AtomicBool>,
    /// Cancelled to close it.
    evict: CancellationToken,
}

impl Entry {
    fn idle(&self) -> bool {
        !self.done.load(Ordering::Relaxed) && self.busy.load(Ordering::Relaxed) == 0 && !self.evict.is_cancelled()
    }
}

/// Every open connection, oldest first, and how many each client address has.
#[derive(Default)]
struct Table {
    inner: Mutex<TableInner>,
}

#[derive(Default)]
struct TableInner {
    next_id: u64,
    entries: BTreeMap<u64, Entry>,
    per_client: HashMap<IpAddr, usize>,
}

impl Table {
    fn lock(&self) -> std::sync::MutexGuard<'_, TableInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open(self: &Arc<Self>, ip: IpAddr, permit: OwnedSemaphorePermit) -> (Arc<Slot>, Entry) {
        let mut t = self.lock();
        let id = t.next_id;
        t.next_id += 1;
        *t.per_client.entry(ip).or_default() += 1;
        let entry = Entry {
            ip,
            busy: Arc::default(),
            spoke: Arc::default(),
            done: Arc::default(),
            evict: CancellationToken::new(),
        };
        let mine = Entry { ip, busy: entry.busy.clone(), spoke: entry.spoke.clone(), done: entry.done.clone(), evict: entry.evict.clone() };
        t.entries.insert(id, entry);
        (Arc::new(Slot { id, ip, table: self.clone(), _permit: permit }), mine)
    }

    fn release(&self, id: u64, ip: IpAddr) {
        let mut t = self.lock();
        t.entries.remove(&id);
        if let Some(n) = t.per_client.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                t.per_client.remove(&ip);
            }
        }
    }

    fn count(&self, ip: IpAddr) -> usize {
        self.lock().per_client.get(&ip).copied().unwrap_or(0)
    }

    /// Closes the oldest idle connection (of `ip`, if given): one that never spoke first, then
    /// one waiting between requests. False when every such connection is busy.
    fn close_oldest_idle(&self, ip: Option<IpAddr>) -> bool {
        let t = self.lock();
        let mine = |e: &&Entry| ip.is_none_or(|ip| e.ip == ip) && e.idle();
        let silent = t.entries.values().filter(mine).find(|e| !e.spoke.load(Ordering::Relaxed));
        match silent.or_else(|| t.entries.values().find(mine)) {
            Some(e) => {
                tracing::debug!("closing an idle connection of {} to make room (it spoke: {})", e.ip, e.spoke.load(Ordering::Relaxed));
                e.evict.cancel();
                true
            }
            None => false,
        }
    }
}

/// Logs a shortage on `accept` at most once every `LOG_EVERY`, with how many were not logged.
struct AcceptLog {
    last: Option<std::time::Instant>,
    quiet: u64,
}

impl AcceptLog {
    fn failed(&mut self, e: &std::io::Error) {
        let now = std::time::Instant::now();
        if self.last.is_some_and(|t| now - t < LOG_EVERY) {
            self.quiet += 1;
            return;
        }
        let words = e.to_string();
        let more = if self.quiet > 0 { format!(" ({} more since the last line)", self.quiet) } else { String::new() };
        if crate::fd_limit::is_shortage(&words) {
            tracing::warn!("cannot accept a dashboard connection{more}: {}", crate::fd_limit::shortage());
        } else {
            tracing::warn!("cannot accept a dashboard connection{more}: {words}");
        }
        (self.last, self.quiet) = (Some(now), 0);
    }
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then lets the requests in progress
/// finish (up to 5 s). WebSocket upgrades are served; the upgraded sockets live on in their own
/// tasks, holding their connection's slot.
pub async fn serve(listener: TcpListener, app: Router, limits: ConnLimits, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let table = Arc::new(Table::default());
    let connections = TaskTracker::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let builder = Arc::new(builder);
    let mut log = AcceptLog { last: None, quiet: 0 };
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a client that vanished: wait a moment, never spin or exit.
                    log.failed(&e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // A place: free at once, or made by closing the oldest idle connection, or awaited
        // (this one connection waits; the next ones wait in the kernel's queue).
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(TryAcquireError::Closed) => break,
            Err(TryAcquireError::NoPermits) => {
                table.close_oldest_idle(None);
                tokio::select! {
                    p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                    _ = shutdown.cancelled() => break,
                }
            }
        };
        let ip = peer.ip();
        if table.count(ip) >= limits.max_per_client && !table.close_oldest_idle(Some(ip)) {
            // Every connection of this client is busy: it may not open more.
            tracing::debug!("{ip} has {} connections open, every one busy: a new one is closed", limits.max_per_client);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let (slot, entry) = table.open(ip, permit);
        let (app, builder, shutdown) = (app.clone(), builder.clone(), shutdown.clone());
        connections.spawn(async move {
            let Entry { busy, spoke, done, evict, .. } = entry;
            let stop = async {
                tokio::select! {
                    _ = evict.cancelled() => {},
                    _ = shutdown.cancelled() => {},
                }
            };
            tokio::pin!(stop);
            // The first byte, within the header timeout: a silent connection is closed.
            let mut first = [0u8; 1];
            let spoken = tokio::select! {
                r = tokio::time::timeout(limits.header_read_timeout, stream.peek(&mut first)) => matches!(r, Ok(Ok(n)) if n > 0),
                _ = &mut stop => false,
            };
            if !spoken {
                done.store(true, Ordering::Relaxed);
                return;
            }
            spoke.store(true, Ordering::Relaxed);
            let service = TowerToHyperService::new(PerConnection { app, slot: ConnHandle(slot), busy });
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = &mut stop => {
                    // Idle: closed now; busy: its request is answered first.
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(DRAIN, conn.as_mut()).await;
                }
            }
            done.store(true, Ordering::Relaxed);
        });
    }
    connections.close();
    let _ = tokio::time::timeout(DRAIN, connections.wait()).await;
}

/// The app as one connection serves it: each request carries the connection's slot, and counts
/// as busy until its response body has been sent.
#[derive(Clone)]
struct PerConnection {
    app: Router,
    slot: ConnHandle,
    busy: Arc<AtomicUsize>,
}

/// One request being answered; the count goes down when the response body ends or is dropped.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Busy(count.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl tower_service::Service<Request<hyper::body::Incoming>> for PerConnection {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<hyper::body::Incoming>) -> Self::Future {
        let busy = Busy::new(&self.busy);
        let read = Arc::new(AtomicBool::new(false));
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(self.slot.clone());
        let body = Watched { inner: body, read: read.clone() };
        if body.is_end_stream() {
            read.store(true, Ordering::Relaxed);
        }
        let req = Request::from_parts(parts, Body::new(body));
        let mut app = self.app.clone();
        Box::pin(async move {
            let Ok(mut resp) = tower_service::Service::call(&mut app, req).await;
            // A body left unread cannot be skipped on a kept-alive connection: say so, and close it.
            if !read.load(Ordering::Relaxed) {
                resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(resp.map(|inner| Body::new(Counted { inner, _busy: busy })))
        })
    }
}

/// A request body that records when it has been read to its end.
struct Watched<B> {
    inner: B,
    read: Arc<AtomicBool>,
}

impl<B: HttpBody<Data = Bytes> + Unpin> HttpBody for Watched<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.read.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its connection busy until it ends or is dropped.
struct Counted {
    inner: Body,
    _busy: Busy,
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_idle_connection_is_closed_first_silent_before_kept_alive() {
        let table = Arc::new(Table::default());
        let sem = Arc::new(Semaphore::new(8));
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let open = |ip| table.open(ip, sem.clone().try_acquire_owned().unwrap());
        let (_s1, kept_alive) = open(a);
        kept_alive.spoke.store(true, Ordering::Relaxed);
        let (_s2, busy) = open(a);
        busy.spoke.store(true, Ordering::Relaxed);
        busy.busy.store(1, Ordering::Relaxed);
        let (_s3, silent) = open(a);
        let (_s4, other) = open(b);
        assert_eq!(table.count(a), 3);
        assert!(table.close_oldest_idle(Some(a)));
        assert!(silent.evict.is_cancelled() && !kept_alive.evict.is_cancelled(), "a silent one goes first");
        assert!(table.close_oldest_idle(Some(a)));
        assert!(kept_alive.evict.is_cancelled() && !busy.evict.is_cancelled(), "then one between requests");
        assert!(!table.close_oldest_idle(Some(a)), "a busy one is never closed");
        assert!(!other.evict.is_cancelled());
        drop(_s3);
        assert_eq!(table.count(a), 2);
        assert_eq!(sem.available_permits(), 5);
    }
}
