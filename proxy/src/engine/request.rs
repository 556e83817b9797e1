//! Sends one request and measures it: the only code that touches a response.

use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use caplab_shared::{ErrorClass, RequestSample};
use http_body_util::BodyExt;
use hyper::header::{HeaderValue, LOCATION, RETRY_AFTER};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::guard::{Guard, Stopped};
use super::http::LoadClient;
use super::sse::{chunk_text, error_message, parse_chunk, SseParser, Usage};
use crate::fd_limit;
use crate::secrets::Redactor;
use crate::target::root_cause;

/// Counters every in-flight request updates; read by the aggregator on its tick.
#[derive(Default)]
pub struct LiveCounters {
    pub in_flight: AtomicU32,
    /// Output tokens so far: +1 per text event as it arrives, corrected to `usage` at the end.
    pub output_tokens: AtomicI64,
    /// Watches failures as each request ends (not on the aggregator's tick: a dead target
    /// fails hundreds of requests in 250 ms). None: never stops the run.
    pub breaker: Option<std::sync::Mutex<super::breaker::ErrorBreaker>>,
    /// Why the run stopped itself, once it did (the first reason is kept).
    stop_reason: std::sync::Mutex<Option<String>>,
    /// A redirect's Location has been logged for the operator (once a run).
    redirect_logged: std::sync::atomic::AtomicBool,
}

impl LiveCounters {
    pub fn with_breaker(max_error_rate: f64, error_window: u32) -> Self {
        LiveCounters { breaker: Some(std::sync::Mutex::new(super::breaker::ErrorBreaker::new(max_error_rate, error_window))), ..Default::default() }
    }

    /// Records how a request ended; true when the run must stop now (its reason is kept).
    pub fn record_outcome(&self, error: Option<ErrorClass>) -> bool {
        let Some(breaker) = &self.breaker else { return false };
        if error == Some(ErrorClass::Cancelled) {
            return false;
        }
        let tripped = breaker.lock().unwrap_or_else(|p| p.into_inner()).record(error);
        tripped.map(|reason| self.stop_because(reason)).is_some()
    }

    /// Keeps why the run stops itself (the first reason given wins).
    pub fn stop_because(&self, reason: String) {
        self.stop_reason.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(reason);
    }

    pub fn stop_reason(&self) -> Option<String> {
        self.stop_reason.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Tells the operator (caplab's log, never a file or a view) where the target redirected
    /// a request to: once a run.
    fn log_redirect(&self, url: &str, status: u16, location: &str) {
        if !self.redirect_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!("{url} answered {status} redirecting to {location:?}; caplab follows no redirects: give the final URL with --target");
        }
    }
}

/// Largest error body kept (bytes).
const MAX_ERROR_BODY: usize = 16 * 1024;

/// What a request needs besides its body.
pub struct Call<'a> {
    pub client: &'a LoadClient,
    /// Where it goes; why caplab cannot send there, if it cannot (each request then fails so).
    pub uri: &'a Result<hyper::Uri, String>,
    pub timeout: Duration,
    pub live: &'a LiveCounters,
    /// The server is known to send `usage` when asked (`ServerKind::sends_usage`): a stream
    /// without it is then a `protocol` error; otherwise it succeeds with its tokens unknown.
    pub usage_required: bool,
    /// `Authorization` for the target (its API key or URL credentials), if it needs one.
    pub auth: Option<&'a HeaderValue>,
    /// Takes those credentials out of anything the target sends back.
    pub redactor: &'a Redactor,
}

/// What one worker keeps from request to request: its one deadline timer and watch on the
/// run's cancellation, and its stream's read buffers.
pub struct Worker {
    pub guard: Guard,
    parser: SseParser,
    /// Token gaps its last request had: the next one's gap list is made that long at once.
    gaps_hint: usize,
}

impl Worker {
    pub fn new(cancel: &CancellationToken) -> Self {
        Worker { guard: Guard::new(cancel), parser: SseParser::default(), gaps_hint: 0 }
    }
}

struct InFlight<'a>(&'a AtomicU32);
impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Sends `body` now and measures it against `scheduled` (the time it was due).
/// Never fails: a fault of the server becomes the sample's error class.
pub async fn execute(call: &Call<'_>, worker: &mut Worker, body: Bytes, scheduled: Instant) -> RequestSample {
    measure(call, worker, body, Measure::new(scheduled, Instant::now())).await.0
}

/// As `execute`, and keeps the reply's text (a conversation resends it with the next turn).
pub async fn execute_keeping_reply(call: &Call<'_>, worker: &mut Worker, body: Bytes, scheduled: Instant) -> (RequestSample, String) {
    let mut m = Measure::new(scheduled, Instant::now());
    m.reply = Some(String::new());
    measure(call, worker, body, m).await
}

async fn measure(call: &Call<'_>, worker: &mut Worker, body: Bytes, mut m: Measure) -> (RequestSample, String) {
    let sent = m.sent;
    call.live.in_flight.fetch_add(1, Ordering::Relaxed);
    let _guard = InFlight(&call.live.in_flight);
    worker.parser.reset();
    m.gaps.reserve(worker.gaps_hint);
    let outcome = match worker.guard.run(sent + call.timeout, stream(call, &mut worker.parser, body, &mut m)).await {
        Ok(r) => r,
        Err(Stopped::Cancelled) => Err((ErrorClass::Cancelled, "the run was stopped".to_string())),
        Err(Stopped::TimedOut) => Err((ErrorClass::Timeout, format!("no complete response within {:.0} s", call.timeout.as_secs_f64()))),
    };
    let reply = m.reply.take().unwrap_or_default();
    let sample = m.finish(outcome, call.live, call.redactor);
    worker.gaps_hint = sample.itl_gaps_ms.len().min(MAX_GAPS_HINT);
    (sample, reply)
}

/// The most gap slots a request is given ahead (64 KiB of them).
const MAX_GAPS_HINT: usize = 16 * 1024;

/// Per-request measurement state.
struct Measure {
    scheduled: Instant,
    sent: Instant,
    first: Option<Instant>,
    last: Option<Instant>,
    gaps: Vec<f32>,
    events: u32,
    usage: Option<Usage>,
    finish_reason: Option<String>,
    status: Option<u16>,
    done_marker: bool,
    /// The reply's text so far, when it is kept (conversations).
    reply: Option<String>,
    /// Text events not yet in the live count, and when it was last brought up to date.
    live_pending: u32,
    live_flushed: Option<Instant>,
}

/// How stale a request's share of the live token count may grow (the dashboard's tick is 250 ms).
const LIVE_FLUSH: Duration = Duration::from_millis(50);

impl Measure {
    fn new(scheduled: Instant, sent: Instant) -> Self {
        Measure { scheduled, sent, first: None, last: None, gaps: Vec::new(), events: 0, usage: None, finish_reason: None, status: None, done_marker: false, reply: None, live_pending: 0, live_flushed: None }
    }

    fn on_text(&mut self, now: Instant, live: &LiveCounters) {
        match self.last {
            None => self.first = Some(now),
            Some(prev) => self.gaps.push(ms(now - prev) as f32),
        }
        self.last = Some(now);
        self.events += 1;
        self.live_pending += 1;
        // The live count feeds a display (tok/s over seconds): it is brought up to date at most
        // every LIVE_FLUSH, not at each event (its cache line is shared by every request).
        if self.live_flushed.is_none_or(|t| now - t >= LIVE_FLUSH) {
            live.output_tokens.fetch_add(i64::from(self.live_pending), Ordering::Relaxed);
            self.live_pending = 0;
            self.live_flushed = Some(now);
        }
    }

    fn finish(mut self, outcome: Result<(), (ErrorClass, String)>, live: &LiveCounters, redactor: &Redactor) -> RequestSample {
        let end = Instant::now();
        // The live token estimate counted events; replace those it has by the server's count.
        let counted = self.usage.map_or(0, |u| i64::from(u.completion_tokens));
        live.output_tokens.fetch_add(counted - i64::from(self.events - self.live_pending), Ordering::Relaxed);
        let (error, error_message) = match outcome {
            Ok(()) => (None, None),
            // The target's words may echo the credentials it was sent: never kept.
            Err((class, msg)) => (Some(class), Some(redactor.redact(&msg))),
        };
        let ttft_ms = self.first.map(|f| ms(f - self.scheduled));
        let e2e_ms = ms(end - self.scheduled);
        let completion = self.usage.map(|u| u.completion_tokens);
        let tpot_ms = match (ttft_ms, completion) {
            (Some(t), Some(n)) if n > 1 && error.is_none() => Some((e2e_ms - t) / f64::from(n - 1)),
            _ => None,
        };
        let itl_mean_ms = (!self.gaps.is_empty()).then(|| self.gaps.iter().map(|&g| f64::from(g)).sum::<f64>() / self.gaps.len() as f64);
        let itl_max_ms = self.gaps.iter().copied().reduce(f32::max).map(f64::from);
        RequestSample {
            queue_ms: ms(self.sent - self.scheduled),
            ttft_ms,
            e2e_ms,
            tpot_ms,
            itl_mean_ms,
            itl_max_ms,
            events: self.events,
            prompt_tokens: self.usage.map(|u| u.prompt_tokens),
            completion_tokens: completion,
            finish_reason: self.finish_reason.take(),
            http_status: self.status,
            error,
            error_message,
            done_marker: self.done_marker,
            itl_gaps_ms: std::mem::take(&mut self.gaps),
            ..Default::default()
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn stream(call: &Call<'_>, parser: &mut SseParser, body: Bytes, m: &mut Measure) -> Result<(), (ErrorClass, String)> {
    let uri = call.uri.as_ref().map_err(|why| (ErrorClass::Client, why.clone()))?;
    let resp = call.client.post_json(uri, call.auth, body).await.map_err(|e| {
        let cause = root_cause(&e);
        // Out of file descriptors is caplab's own shortage, never the target's fault.
        if fd_limit::is_shortage(&cause) {
            (ErrorClass::Client, format!("{}: {cause}", fd_limit::shortage()))
        } else {
            (ErrorClass::Connect, cause)
        }
    })?;
    let status = resp.status();
    m.status = Some(status.as_u16());
    if status.is_redirection() {
        // Where it points is the operator's to see (the log), not a file's a viewer downloads.
        let location = resp.headers().get(LOCATION).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).unwrap_or_default();
        call.live.log_redirect(&uri.to_string(), status.as_u16(), &call.redactor.redact(&location));
        return Err((ErrorClass::Redirect, redirect_message(status.as_u16())));
    }
    if !status.is_success() {
        let retry_after = resp.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).map(String::from);
        let (class, mut message) = classify_status(status.as_u16(), &read_error_body(resp.into_body()).await);
        if let Some(r) = retry_after {
            message.push_str(&format!(" (Retry-After: {r})"));
        }
        return Err((class, message));
    }
    let mut body = resp.into_body();
    let mut fault: Option<(ErrorClass, String)> = None;
    // `at_end`: the body has ended, so an event still open was cut off, not malformed.
    let mut on_data = |data: &[u8], m: &mut Measure, at_end: bool| {
        if fault.is_some() {
            return;
        }
        if data == b"[DONE]" {
            m.done_marker = true;
            return;
        }
        match parse_chunk(data) {
            Ok(info) => {
                if let Some(msg) = info.error {
                    let class = if says_out_of_memory(&msg.to_ascii_lowercase()) { ErrorClass::OutOfMemory } else { ErrorClass::Stream };
                    fault = Some((class, format!("error event in stream: {msg}")));
                    return;
                }
                if info.has_text {
                    m.on_text(Instant::now(), call.live);
                    // Only a conversation keeps the text: the plain path never parses a chunk whole.
                    if let Some(reply) = m.reply.as_mut() {
                        reply.push_str(&chunk_text(data).unwrap_or_default());
                    }
                }
                if info.finish_reason.is_some() {
                    m.finish_reason = info.finish_reason;
                }
                if info.usage.is_some() {
                    m.usage = info.usage;
                }
            }
            Err(e) => {
                let shown = String::from_utf8_lossy(&data[..data.len().min(200)]).into_owned();
                fault = Some(if at_end {
                    (ErrorClass::Stream, format!("the stream ended in the middle of an event: {shown}"))
                } else {
                    (ErrorClass::Protocol, format!("unreadable stream chunk ({e}): {shown}"))
                });
            }
        }
    };
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                let Some(bytes) = frame.data_ref() else { continue };
                parser.push(bytes, |d| on_data(d, m, false));
                if parser.pending() > MAX_EVENT_BYTES {
                    return Err((ErrorClass::Protocol, format!("a stream event ran past {} KiB without ending: not a server-sent event stream", MAX_EVENT_BYTES / 1024)));
                }
            }
            Err(e) => return Err((ErrorClass::Stream, format!("response broke off: {}", root_cause(&e)))),
        }
    }
    parser.finish(|d| on_data(d, m, true));
    match fault {
        Some(f) => Err(f),
        None => stream_verdict(m, call.usage_required),
    }
}

/// Largest event (or line) a stream may hold unfinished. vLLM's longest, the usage chunk, is
/// a few hundred bytes; a body that never ends a line is not an event stream.
const MAX_EVENT_BYTES: usize = 8 << 20;

/// Whether a stream that ended cleanly is complete. `[DONE]` is a convention servers follow
/// unevenly (`transformers serve` never sends it), so the finish reason decides: a stream is
/// complete once a chunk carried one, with or without `[DONE]`, and broken if its body stopped
/// before. Without `usage` the tokens are unknown: an error when the server is known to send it.
fn stream_verdict(m: &Measure, usage_required: bool) -> Result<(), (ErrorClass, String)> {
    if m.finish_reason.is_none() {
        let what = match (m.events, m.done_marker) {
            (_, true) => "the stream sent [DONE] without any finish_reason".to_string(),
            (0, false) => "the stream ended before any event or finish_reason".to_string(),
            (n, false) => format!("the stream ended after {n} text event{} without a finish_reason", if n == 1 { "" } else { "s" }),
        };
        let class = if m.done_marker { ErrorClass::Protocol } else { ErrorClass::Stream };
        return Err((class, what));
    }
    if m.usage.is_none() && usage_required {
        return Err((ErrorClass::Protocol, "no usage in the stream although this server sends it when asked (stream_options.include_usage); tokens unknown".into()));
    }
    Ok(())
}

async fn read_error_body(mut body: hyper::body::Incoming) -> String {
    let mut out = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        let Some(piece) = frame.data_ref() else { continue };
        out.extend_from_slice(piece);
        if out.len() >= MAX_ERROR_BODY {
            out.truncate(MAX_ERROR_BODY);
            break;
        }
    }
    match serde_json::from_slice::<serde_json::Value>(&out) {
        Ok(v) => error_message(&v),
        Err(_) => {
            let text = String::from_utf8_lossy(&out).trim().to_string();
            html_title(&text).map_or(text, |title| format!("an HTML error page, as a proxy sends (e.g. Cloudflare in front of a pod): {title}"))
        }
    }
}

/// The `<title>` of an HTML page, if `text` is one.
fn html_title(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    if !(lower.starts_with("<!doctype html") || lower.starts_with("<html")) {
        return None;
    }
    let start = lower.find("<title>")? + "<title>".len();
    let end = start + lower[start..].find("</title>")?;
    Some(text[start..end].split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The server's words for running out of GPU (or host) memory: PyTorch's "CUDA out of memory",
/// vLLM's and others' "out of memory" / "OOM".
pub fn says_out_of_memory(lower: &str) -> bool {
    lower.contains("out of memory") || lower.contains("outofmemory") || lower.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| w == "oom")
}

/// What a request that was redirected records (its Location goes to the log only).
pub fn redirect_message(status: u16) -> String {
    format!("HTTP {status}: the target redirected this request and caplab follows no redirects (they could take the load to an address the operator did not allow); where it pointed is in caplab's log: give the final URL with --target")
}

/// Maps an error status and the server's message to a class.
pub fn classify_status(status: u16, message: &str) -> (ErrorClass, String) {
    let lower = message.to_ascii_lowercase();
    let class = match status {
        429 => ErrorClass::RateLimited,
        300..=399 => ErrorClass::Redirect,
        401 | 403 => ErrorClass::Unauthorized,
        404 if lower.contains("model") => ErrorClass::UnknownModel,
        // A server pinned to one model refuses any other name, often with 400
        // (`transformers serve`: "Server is pinned to 'PATH'; requested 'other'.").
        400 | 422
            if lower.contains("pinned to")
                || (lower.contains("model")
                    && ["not found", "does not exist", "not served", "unknown model", "invalid model", "no such model"]
                        .iter()
                        .any(|p| lower.contains(p))) =>
        {
            ErrorClass::UnknownModel
        }
        400 | 413 | 422
            if lower.contains("context length")
                || lower.contains("maximum context")
                || lower.contains("max_model_len")
                || lower.contains("too long")
                || (lower.contains("max_tokens") && lower.contains("too large")) =>
        {
            ErrorClass::ContextLength
        }
        400..=499 => ErrorClass::BadRequest,
        _ if says_out_of_memory(&lower) => ErrorClass::OutOfMemory,
        _ => ErrorClass::Server,
    };
    let shown = if message.is_empty() { "(empty body)" } else { message };
    (class, format!("HTTP {status}: {shown}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        let c = |s, m: &str| classify_status(s, m).0;
        assert_eq!(c(404, "The model `x` does not exist."), ErrorClass::UnknownModel);
        assert_eq!(
            c(400, "This model's maximum context length is 2048 tokens. However, you requested 3000 tokens"),
            ErrorClass::ContextLength
        );
        assert_eq!(c(400, "'max_tokens' (5000) is too large: larger than max_model_len"), ErrorClass::ContextLength);
        assert_eq!(c(422, "Unexpected fields in the request: {'ignore_eos'}"), ErrorClass::BadRequest);
        assert_eq!(c(404, "Not Found"), ErrorClass::BadRequest);
        assert_eq!(c(400, "The model `other` does not exist."), ErrorClass::UnknownModel);
        assert_eq!(c(400, "model 'x' not found, try pulling it first"), ErrorClass::UnknownModel);
        assert_eq!(c(400, "Server is pinned to '/tmp/m'; requested 'other'."), ErrorClass::UnknownModel);
        assert_eq!(c(503, ""), ErrorClass::Server);
        assert_eq!(c(500, r#"{"error":{"message":"CUDA out of memory. Tried to allocate 2.00 GiB"}}"#), ErrorClass::OutOfMemory);
        assert_eq!(c(500, "torch.OutOfMemoryError: ..."), ErrorClass::OutOfMemory);
        assert_eq!(c(503, "engine OOM"), ErrorClass::OutOfMemory);
        assert_eq!(c(500, "room for improvement"), ErrorClass::Server, "a word containing 'oom' is not an OOM");
        assert_eq!(classify_status(503, "").1, "HTTP 503: (empty body)");
        assert_eq!(c(429, "Too Many Requests"), ErrorClass::RateLimited, "not a bad request");
        assert_eq!((c(401, "invalid credentials"), c(403, "Forbidden")), (ErrorClass::Unauthorized, ErrorClass::Unauthorized));
        assert_eq!(c(307, ""), ErrorClass::Redirect);
        let page = "<!DOCTYPE html>\n<html><head><title>example.com | 524: A timeout occurred</title></head><body>…</body></html>";
        assert_eq!(html_title(page).as_deref(), Some("example.com | 524: A timeout occurred"));
        assert_eq!(html_title("{\"error\":1}"), None);
    }
}
