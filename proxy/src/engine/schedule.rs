//! Issuing a cell's requests: closed loop (N workers) or open loop (timed arrivals).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use caplab_shared::{CellSpec, ErrorClass, ExperimentSpec, Load, RequestSample};
use rand::SeedableRng;
use rand_distr::{Distribution, Gamma};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::http::LoadClient;
use super::request::{execute, execute_keeping_reply, Call, LiveCounters, Worker};
use crate::workload::RequestSet;

/// Everything a cell's workers share.
pub struct CellCtx {
    pub client: LoadClient,
    /// Where the requests go (why not, when caplab cannot send there: every request fails so).
    pub uri: Result<hyper::Uri, String>,
    pub set: RequestSet,
    pub timeout: Duration,
    pub live: Arc<LiveCounters>,
    pub cancel: CancellationToken,
    pub usage_required: bool,
    pub auth: Option<reqwest::header::HeaderValue>,
    /// Takes `auth`'s secrets out of what the target sends back.
    pub redactor: crate::secrets::Redactor,
    pub cell: u32,
    pub warmup: u32,
    /// Requests in the cell, warm-ups included.
    pub total: u32,
    pub start: Instant,
    /// Turns of each conversation (1: single requests) and the think time between them.
    pub turns: u32,
    pub think: Duration,
}

impl CellCtx {
    fn call(&self) -> Call<'_> {
        Call { client: &self.client, uri: &self.uri, timeout: self.timeout, live: &self.live, usage_required: self.usage_required, auth: self.auth.as_ref(), redactor: &self.redactor }
    }

    /// Files request `i`'s sample under its cell and schedule (and stops the run if the error
    /// breaker trips).
    fn stamp(&self, s: &mut RequestSample, i: u32, scheduled: Instant) {
        if self.live.record_outcome(s.error) {
            self.cancel.cancel();
        }
        s.cell = self.cell;
        s.index = i;
        s.prompt_tokens_requested = self.set.prompt_tokens(i);
        s.warmup = i < self.warmup;
        s.scheduled_s = (scheduled - self.start).as_secs_f64();
    }

    async fn one(&self, worker: &mut Worker, i: u32, scheduled: Instant) -> RequestSample {
        let mut s = execute(&self.call(), worker, self.set.body(i), scheduled).await;
        self.stamp(&mut s, i, scheduled);
        s
    }

    /// Request `i` as turn `turn` (1 = first) of a conversation: its new user message after
    /// `history`, which then holds the message and the server's reply. The body is made before
    /// the request's scheduled time: building it is not counted in its latency.
    async fn turn(&self, worker: &mut Worker, i: u32, turn: u32, history: &mut Vec<serde_json::Value>) -> RequestSample {
        let mut v: serde_json::Value = serde_json::from_slice(&self.set.body(i)).unwrap_or_default();
        if let Some(serde_json::Value::Array(new)) = v.get_mut("messages").map(serde_json::Value::take) {
            history.extend(new);
        }
        v["messages"] = serde_json::Value::Array(history.clone());
        let body = bytes::Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
        let scheduled = Instant::now();
        let (mut s, reply) = execute_keeping_reply(&self.call(), worker, body, scheduled).await;
        self.stamp(&mut s, i, scheduled);
        s.turn = Some(turn);
        if turn > 1 {
            // Only the new message was made to a length; the history's tokens are the server's count.
            s.prompt_tokens_requested = None;
        }
        if s.error.is_none() {
            history.push(serde_json::json!({ "role": "assistant", "content": reply }));
        }
        s
    }
}

/// Sends the cell's requests and returns when all have ended (or the run was stopped).
pub async fn drive(ctx: Arc<CellCtx>, spec: ExperimentSpec, cell: CellSpec, tx: UnboundedSender<RequestSample>) {
    match cell.load {
        Load::Closed { concurrency } if ctx.turns > 1 => conversations(ctx, concurrency, tx).await,
        Load::Closed { concurrency } => closed_loop(ctx, concurrency, tx).await,
        Load::Rate { rps } => {
            // A replay's arrivals are the trace's; otherwise drawn for the rate.
            let offsets = match &ctx.set.arrivals {
                Some(trace) => trace.clone(),
                None => arrival_offsets(rps, spec.burstiness, ctx.total, spec.seed.wrapping_add(u64::from(cell.index))),
            };
            open_loop(ctx, offsets, spec.max_in_flight, tx).await
        }
    }
}

/// A worker whose request could not reach the target (no connection, or one cut before the
/// response ended) waits this long before its next request, doubling up to
/// `UNREACHABLE_BACKOFF_MAX` while it stays so: a server that is restarting is not sent the
/// rest of the cell in milliseconds. So does one that failed for want of caplab's own open files
/// (`client`): descriptors being released come back, and a run must not burn its requests (and
/// trip its error breaker) in the meantime. The wait is caplab's choice, not queueing: the next
/// request is scheduled when it ends.
const UNREACHABLE_BACKOFF: Duration = Duration::from_millis(50);
const UNREACHABLE_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The wait before a worker's next request after one that ended with `error`.
fn backoff_after(backoff: Duration, error: Option<ErrorClass>) -> Duration {
    match error {
        Some(ErrorClass::Connect | ErrorClass::Stream | ErrorClass::Client) => (backoff * 2).clamp(UNREACHABLE_BACKOFF, UNREACHABLE_BACKOFF_MAX),
        _ => Duration::ZERO,
    }
}

/// Sleeps `wait` on the worker's timer unless the run is stopped first (false then).
async fn pause(worker: &mut Worker, wait: Duration) -> bool {
    if wait.is_zero() {
        // Lets the connection the last request used go back to the pool first (a task of the
        // pool's, woken as the response ended): sent at once, the next request could miss it
        // and open one more, a descriptor more per worker.
        tokio::task::yield_now().await;
        return true;
    }
    worker.guard.sleep_until(Instant::now() + wait).await
}

/// `concurrency` workers; each sends its next request as soon as its last one ends (after a
/// short backoff when the target could not be reached). A request's scheduled time is the
/// moment its worker became free to send it.
async fn closed_loop(ctx: Arc<CellCtx>, concurrency: u32, tx: UnboundedSender<RequestSample>) {
    let next = Arc::new(AtomicU32::new(0));
    run_all(concurrency.min(ctx.total), move || {
        let (ctx, next, tx) = (ctx.clone(), next.clone(), tx.clone());
        async move {
            let mut worker = Worker::new(&ctx.cancel);
            let mut backoff = Duration::ZERO;
            while !ctx.cancel.is_cancelled() {
                if !pause(&mut worker, backoff).await {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= ctx.total {
                    break;
                }
                let sample = ctx.one(&mut worker, i, Instant::now()).await;
                backoff = backoff_after(backoff, sample.error);
                if tx.send(sample).is_err() {
                    break;
                }
            }
        }
    })
    .await;
}

/// Runs `n` tasks made by `make` until all have ended. They are started from outside the
/// runtime's worker threads, as the first wave of a load arriving from elsewhere would start.
/// Spawned from a worker (where the cell's scheduler runs), they queue on that worker behind
/// one another: with 1,000 workers the first wave's TTFT p99 rose by ~30 ms, the raw client's
/// as much when it spawned the same way.
async fn run_all<F>(n: u32, make: impl Fn() -> F + Send + 'static)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let runtime = tokio::runtime::Handle::current();
    let tasks: Vec<_> = tokio::task::spawn_blocking(move || (0..n).map(|_| runtime.spawn(make())).collect()).await.unwrap_or_default();
    for t in tasks {
        let _ = t.await;
    }
}

/// `concurrency` users, each holding conversations of `ctx.turns` turns one after another: a
/// user takes the next block of `turns` request numbers and sends them in order, each turn
/// after the last one's reply and the think time. A failed turn leaves no reply to resend: the
/// user starts a new conversation with the block's next request, so the cell still sends
/// every planned request.
async fn conversations(ctx: Arc<CellCtx>, concurrency: u32, tx: UnboundedSender<RequestSample>) {
    let next_block = Arc::new(AtomicU32::new(0));
    run_all(concurrency.min(ctx.total.div_ceil(ctx.turns)), move || {
        let (ctx, next_block, tx) = (ctx.clone(), next_block.clone(), tx.clone());
        async move {
            let mut worker = Worker::new(&ctx.cancel);
            let mut backoff = Duration::ZERO;
            'users: while !ctx.cancel.is_cancelled() {
                let first = next_block.fetch_add(1, Ordering::Relaxed).saturating_mul(ctx.turns);
                let mut history = Vec::new();
                for i in first..first.saturating_add(ctx.turns).min(ctx.total) {
                    let wait = if history.is_empty() { backoff } else { backoff.max(ctx.think) };
                    if !pause(&mut worker, wait).await {
                        break 'users;
                    }
                    let turn = history.iter().filter(|m: &&serde_json::Value| m["role"] == "assistant").count() as u32 + 1;
                    let sample = ctx.turn(&mut worker, i, turn, &mut history).await;
                    backoff = backoff_after(backoff, sample.error);
                    if sample.error.is_some() {
                        history.clear();
                    }
                    if tx.send(sample).is_err() {
                        break 'users;
                    }
                }
                if first.saturating_add(ctx.turns) >= ctx.total {
                    break;
                }
            }
        }
    })
    .await;
}

/// Requests start at `offsets` (s from cell start) whatever the server's pace; with a cap,
/// arrivals beyond it wait client-side, and that wait counts in their latency.
async fn open_loop(ctx: Arc<CellCtx>, offsets: Vec<f64>, max_in_flight: u32, tx: UnboundedSender<RequestSample>) {
    let cap = (max_in_flight > 0).then(|| Arc::new(Semaphore::new(max_in_flight as usize)));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, off) in offsets.into_iter().enumerate() {
        let due = ctx.start + Duration::from_secs_f64(off);
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = ctx.cancel.cancelled() => break,
        }
        let (ctx, cap, tx) = (ctx.clone(), cap.clone(), tx.clone());
        tasks.spawn(async move {
            // An arrival is a worker of its own, for one request.
            let mut worker = Worker::new(&ctx.cancel);
            let _permit = match cap {
                Some(sem) => tokio::select! {
                    p = sem.acquire_owned() => p.ok(),
                    _ = ctx.cancel.cancelled() => None,
                },
                None => None,
            };
            let _ = tx.send(ctx.one(&mut worker, i as u32, due).await);
        });
        // Finished tasks are reaped as arrivals go on: a JoinSet keeps each one (its whole
        // request future, ~1.8 KB) until joined, which grew a 100,000-request cell by 180 MB.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// Arrival times of `n` requests at `rate`/s: the first at 0, then gaps drawn from
/// gamma(shape = burstiness, scale = 1 / (rate · burstiness)), as `vllm bench serve` does.
pub fn arrival_offsets(rate: f64, burstiness: f64, n: u32, seed: u64) -> Vec<f64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let gamma = Gamma::new(burstiness, 1.0 / (rate * burstiness)).ok();
    let mut t = 0.0;
    (0..n)
        .map(|i| {
            if i > 0 {
                t += gamma.map_or(1.0 / rate, |g| g.sample(&mut rng));
            }
            t
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_have_the_asked_mean_rate() {
        let offs = arrival_offsets(50.0, 1.0, 20_001, 7);
        assert_eq!(offs[0], 0.0);
        assert!(offs.windows(2).all(|w| w[1] >= w[0]));
        let mean_gap = offs[20_000] / 20_000.0;
        assert!((mean_gap - 0.02).abs() < 0.0006, "mean gap {mean_gap}");
        assert_eq!(arrival_offsets(50.0, 1.0, 10, 7), arrival_offsets(50.0, 1.0, 10, 7), "seeded");
    }

    #[test]
    fn burstiness_changes_spread_not_mean() {
        let cv = |b: f64| {
            let o = arrival_offsets(10.0, b, 20_001, 3);
            let gaps: Vec<f64> = o.windows(2).map(|w| w[1] - w[0]).collect();
            let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
            let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
            (mean, var.sqrt() / mean)
        };
        let (m1, cv1) = cv(1.0);
        let (m2, cv2) = cv(0.25);
        assert!((m1 - 0.1).abs() < 0.005 && (m2 - 0.1).abs() < 0.01);
        // gamma coefficient of variation = 1/sqrt(shape): 1 for Poisson, 2 for shape 0.25
        assert!((cv1 - 1.0).abs() < 0.05, "{cv1}");
        assert!((cv2 - 2.0).abs() < 0.15, "{cv2}");
    }
}
