//! vLLM's API server as the simulator models it: one Python event loop on one core, pure and
//! clock-free (the caller says when; `replay` drives it on the virtual clock). Each iteration
//! of the loop
//! 1. takes every engine output that has arrived and handles its tokens (detokenizing, stats:
//!    `token_us` each, more with more streams open),
//! 2. lets every stream with tokens waiting write one chunk holding all of them (`chunk_us`
//!    each): a busy loop merges tokens into fewer, larger chunks, as vLLM's does,
//! 3. reads at most one new request (parsing, chat template, tokenizing: `request_ms`).
//!
//! So while streams are few, requests are read back to back; when many stream, every request
//! waits a whole loop iteration, which grows with the streams: the last of 512 requests sent at
//! once reaches the engine seconds after the first, and past the front end's ceiling the
//! tokens queue, however fast the GPU is. The anchors show both (data/anchors/h200-vllm-0.26-*).

use std::collections::VecDeque;

use super::profile::FrontendCosts;

/// A token handed to a client: (request, index, last, when).
pub type Delivered = (u32, u32, bool, f64);

/// What one loop iteration did.
#[derive(Debug, Default)]
pub struct Iteration {
    pub start: f64,
    pub end: f64,
    pub delivered: Vec<Delivered>,
    /// A request read and handed to the engine, and when.
    pub handed: Option<(u32, f64)>,
    /// Seconds of work in it.
    pub busy: f64,
}

/// The API server's state (see the module's doc).
#[derive(Debug, Default)]
pub struct FrontEnd {
    costs: FrontendCosts,
    free_at: f64,
    /// Engine outputs not yet taken, (ready at, tokens (request, index, last)), ready times
    /// non-decreasing.
    outputs: VecDeque<(f64, Vec<(u32, u32, bool)>)>,
    /// Requests sent and not yet read, (sent at, request), in order.
    sends: VecDeque<(f64, u32)>,
    /// Per request: tokens taken but not yet written to its stream.
    waiting: Vec<Vec<(u32, bool)>>,
    /// Requests with tokens waiting, in the order their first one came.
    streams: Vec<u32>,
    /// Streams open: sent and not yet ended.
    open: u32,
}

impl FrontEnd {
    pub fn new(costs: FrontendCosts) -> FrontEnd {
        FrontEnd { costs, ..FrontEnd::default() }
    }

    /// A client sends request `id` at `at` (non-decreasing).
    pub fn send(&mut self, at: f64, id: u32) {
        self.sends.push_back((at, id));
        self.open += 1;
    }

    /// An engine step's tokens arrive at `at` (clamped to be non-decreasing).
    pub fn output(&mut self, at: f64, tokens: Vec<(u32, u32, bool)>) {
        let at = self.outputs.back().map_or(at, |b| b.0.max(at));
        self.outputs.push_back((at, tokens));
    }

    /// When the next iteration can start, if there is anything to do.
    pub fn next_start(&self) -> Option<f64> {
        let output = self.outputs.front().map(|o| o.0);
        let send = self.sends.front().map(|s| s.0);
        let first = match (output, send) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(first.max(self.free_at))
    }

    /// Runs one iteration starting at `start` (from `next_start`).
    pub fn iterate(&mut self, start: f64) -> Iteration {
        let c = &self.costs;
        let mut busy = 0.0;
        let mut it = Iteration { start, ..Iteration::default() };
        let per_token = (c.token_us + c.token_us_per_1k_streams * f64::from(self.open) / 1000.0) / 1e6;
        while self.outputs.front().is_some_and(|o| o.0 <= start) {
            let Some((_, tokens)) = self.outputs.pop_front() else { break };
            busy += per_token * tokens.len() as f64;
            for (id, index, last) in tokens {
                let i = id as usize;
                if self.waiting.len() <= i {
                    self.waiting.resize_with(i + 1, Vec::new);
                }
                if self.waiting[i].is_empty() {
                    self.streams.push(id);
                }
                self.waiting[i].push((index, last));
            }
        }
        for id in std::mem::take(&mut self.streams) {
            busy += c.chunk_us / 1e6;
            let at = start + busy;
            for (index, last) in std::mem::take(&mut self.waiting[id as usize]) {
                it.delivered.push((id, index, last, at));
                if last {
                    self.open = self.open.saturating_sub(1);
                }
            }
        }
        if self.sends.front().is_some_and(|s| s.0 <= start) {
            if let Some((_, id)) = self.sends.pop_front() {
                busy += c.request_ms / 1e3;
                it.handed = Some((id, start + busy));
            }
        }
        it.end = start + busy;
        it.busy = busy;
        self.free_at = it.end;
        it
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_one_an_iteration_and_streams_merge_tokens() {
        let mut fe = FrontEnd::new(FrontendCosts { request_ms: 1.0, token_us: 10.0, chunk_us: 100.0, token_us_per_1k_streams: 0.0 });
        for id in 0..3 {
            fe.send(0.0, id);
        }
        // Idle loop: requests back to back, 1 ms each.
        let handed: Vec<f64> = (0..3).map(|_| fe.iterate(fe.next_start().unwrap()).handed.unwrap().1).collect();
        assert!(handed.iter().zip([0.001, 0.002, 0.003]).all(|(a, b)| (a - b).abs() < 1e-9), "{handed:?}");
        // Two steps' tokens for request 0 arrive before the loop looks: one chunk, both tokens.
        fe.output(0.004, vec![(0, 0, false), (1, 0, false)]);
        fe.output(0.005, vec![(0, 1, false)]);
        let it = fe.iterate(0.006);
        assert_eq!(it.delivered.len(), 3);
        let at0: Vec<f64> = it.delivered.iter().filter(|d| d.0 == 0).map(|d| d.3).collect();
        assert_eq!(at0.len(), 2);
        assert_eq!(at0[0], at0[1], "request 0's two tokens leave in one chunk");
        // 3 tokens (30 µs) and two chunks (200 µs).
        assert!((it.end - 0.006 - 0.000_23).abs() < 1e-12, "{}", it.end);
        assert!(fe.next_start().is_none());
    }

    #[test]
    fn a_busy_loop_reads_requests_slowly() {
        let costs = FrontendCosts { request_ms: 0.5, token_us: 20.0, chunk_us: 30.0, token_us_per_1k_streams: 0.0 };
        let mut fe = FrontEnd::new(costs);
        // 300 streams each get a token every iteration; 10 new requests wait.
        for id in 0..310 {
            fe.send(0.0, id);
        }
        for _ in 0..300 {
            fe.iterate(fe.next_start().unwrap());
        }
        let t0 = fe.next_start().unwrap();
        let mut last = t0;
        for _ in 0..10 {
            fe.output(last, (0..300).map(|id| (id, 1, false)).collect());
            let it = fe.iterate(fe.next_start().unwrap());
            last = it.handed.unwrap().1;
        }
        // Each of the 10 waits 300 × (20 + 30) µs of streaming plus its own 0.5 ms: 15.5 ms.
        assert!(((last - t0) / 10.0 - 0.0155).abs() < 1e-6, "{}", (last - t0) / 10.0);
    }
}

/// The front end in real time, for the HTTP simulator: a task that runs `FrontEnd`'s loop on
/// the wall clock, hands the requests it has read to the engine and the tokens to the streams.
pub mod live {
    use std::collections::HashMap;

    use tokio::sync::mpsc;
    use tokio::time::{Duration, Instant};

    use super::{FrontEnd, FrontendCosts};

    /// One token for a stream: (index, last).
    pub type Token = (u32, bool);

    enum Msg {
        Send { id: u32, out: mpsc::UnboundedSender<Token> },
        Output { at: Instant, tokens: Vec<(u32, u32, bool)> },
    }

    /// The engine's side of the live front end.
    pub struct Live {
        tx: mpsc::UnboundedSender<Msg>,
        /// Requests the front end has read, for the engine.
        pub handed: mpsc::UnboundedReceiver<u32>,
    }

    impl Live {
        /// Starts the task (call from within the runtime); it ends when `Live` is dropped.
        pub fn spawn(costs: FrontendCosts) -> Live {
            let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
            let (handed_tx, handed) = mpsc::unbounded_channel();
            tokio::spawn(async move {
                let base = Instant::now();
                let secs = |t: Instant| t.saturating_duration_since(base).as_secs_f64();
                let at = |s: f64| base + Duration::from_secs_f64(s.max(0.0));
                let mut fe = FrontEnd::new(costs);
                let mut streams: HashMap<u32, mpsc::UnboundedSender<Token>> = HashMap::new();
                let take = |m: Msg, fe: &mut FrontEnd, streams: &mut HashMap<u32, mpsc::UnboundedSender<Token>>| match m {
                    Msg::Send { id, out } => {
                        streams.insert(id, out);
                        fe.send(secs(Instant::now()), id);
                    }
                    Msg::Output { at, tokens } => fe.output(secs(at), tokens),
                };
                loop {
                    while let Ok(m) = rx.try_recv() {
                        take(m, &mut fe, &mut streams);
                    }
                    let Some(start) = fe.next_start() else {
                        match rx.recv().await {
                            Some(m) => take(m, &mut fe, &mut streams),
                            None => return,
                        }
                        continue;
                    };
                    // Wait for the iteration's start, unless something new comes first.
                    if at(start) > Instant::now() {
                        tokio::select! {
                            _ = tokio::time::sleep_until(at(start)) => {}
                            m = rx.recv() => {
                                match m {
                                    Some(m) => take(m, &mut fe, &mut streams),
                                    None => return,
                                }
                                continue;
                            }
                        }
                    }
                    let it = fe.iterate(start);
                    tokio::time::sleep_until(at(it.end)).await;
                    for (id, index, last, _) in it.delivered {
                        if let Some(out) = streams.get(&id) {
                            // A client that went away is noticed by the engine (its sender closes).
                            let _ = out.send((index, last));
                        }
                        if last {
                            streams.remove(&id);
                        }
                    }
                    if let Some((id, _)) = it.handed {
                        if handed_tx.send(id).is_err() {
                            return;
                        }
                    }
                }
            });
            Live { tx, handed }
        }

        /// A client's request arrives; its tokens go to `out` when the front end writes them.
        pub fn send(&self, id: u32, out: mpsc::UnboundedSender<Token>) {
            let _ = self.tx.send(Msg::Send { id, out });
        }

        /// An engine step's tokens, (request, index, last), handed out at `at`.
        pub fn output(&self, at: Instant, tokens: Vec<(u32, u32, bool)>) {
            if !tokens.is_empty() {
                let _ = self.tx.send(Msg::Output { at, tokens });
            }
        }
    }
}
