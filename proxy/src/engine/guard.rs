//! A worker's one timer and one cancellation watch, reused for every request it sends.
//!
//! A `select!` over a request, a fresh timeout and a fresh cancellation future polls all three
//! on every wake-up, so each chunk read re-registered the timer and took the cancellation
//! token's lock. Here the two watches wake the task through a flag of their own: a wake-up
//! caused by the response polls only the response; the watches are polled again only when one
//! of them fired. (Timers that fire on purpose, a pause's or a think time's, move the shared
//! counter below too: each other guard then reads its own flag once.)

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Why a guarded future was not let finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The run was stopped.
    Cancelled,
    /// The deadline passed first.
    TimedOut,
}

/// Moves whenever a watch fires, in any guard. Every read polls a guard, and its own flag sits in
/// a line of memory no read touches (a cache miss at each read, with a thousand streams): the
/// guard reads this shared, rarely written counter instead, and its own flag only when it moved.
static FIRED_ANYWHERE: AtomicU64 = AtomicU64::new(0);

/// Set when a watch fires; passes the wake-up on to the task polling the guarded future.
#[derive(Default)]
struct Fired {
    flag: AtomicBool,
    /// The task's waker. Kept (not taken) when woken: it is replaced only when the task's waker
    /// changes, so a poll checks a pointer instead of registering anew.
    task: Mutex<Option<Waker>>,
}

impl Wake for Fired {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.flag.store(true, Ordering::Release);
        FIRED_ANYWHERE.fetch_add(1, Ordering::Release);
        if let Some(task) = self.task.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            task.wake_by_ref();
        }
    }
}

/// One worker's deadline timer and watch on the run's cancellation.
pub struct Guard {
    token: CancellationToken,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    timer: Pin<Box<Sleep>>,
    fired: Arc<Fired>,
    /// Wakes `fired`: the waker both watches are polled with.
    watch_waker: Waker,
    /// The task waker last given to `fired`.
    task_waker: Option<Waker>,
    /// `FIRED_ANYWHERE` when this guard last read its flag; None: read it at the next poll.
    seen: Option<u64>,
    /// How often the watches were polled (for the test that they are not polled per read).
    watch_polls: u64,
}

impl Guard {
    pub fn new(cancel: &CancellationToken) -> Self {
        let fired = Arc::new(Fired::default());
        Guard {
            token: cancel.clone(),
            cancelled: Box::pin(cancel.clone().cancelled_owned()),
            timer: Box::pin(tokio::time::sleep_until(Instant::now())),
            watch_waker: Waker::from(fired.clone()),
            task_waker: None,
            seen: None,
            fired,
            watch_polls: 0,
        }
    }

    /// Runs `fut` until it finishes, the run is stopped, or `deadline` passes, whichever comes
    /// first; when two happen together, a stop wins over the deadline, and both over the result.
    pub async fn run<F: Future>(&mut self, deadline: Instant, fut: F) -> Result<F::Output, Stopped> {
        self.timer.as_mut().reset(deadline);
        // Polls the watches at the first poll: registers them for this deadline.
        self.fired.flag.store(true, Ordering::Release);
        self.seen = None;
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| {
            if !self.task_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                self.task_waker = Some(cx.waker().clone());
                *self.fired.task.lock().unwrap_or_else(|p| p.into_inner()) = self.task_waker.clone();
            }
            let epoch = FIRED_ANYWHERE.load(Ordering::Acquire);
            if self.seen != Some(epoch) {
                self.seen = Some(epoch);
                // A plain load first: a locked exchange at every check costs more than the read.
                if self.fired.flag.load(Ordering::Acquire) && self.fired.flag.swap(false, Ordering::AcqRel) {
                    if let Some(stop) = self.poll_watches() {
                        return Poll::Ready(Err(stop));
                    }
                }
            }
            fut.as_mut().poll(cx).map(Ok)
        })
        .await
    }

    /// Waits until `deadline` unless the run is stopped first (false then).
    pub async fn sleep_until(&mut self, deadline: Instant) -> bool {
        self.run(deadline, std::future::pending::<()>()).await == Err(Stopped::TimedOut)
    }

    fn poll_watches(&mut self) -> Option<Stopped> {
        self.watch_polls += 1;
        let mut cx = Context::from_waker(&self.watch_waker);
        if self.token.is_cancelled() || self.cancelled.as_mut().poll(&mut cx).is_ready() {
            return Some(Stopped::Cancelled);
        }
        self.timer.as_mut().poll(&mut cx).is_ready().then_some(Stopped::TimedOut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn finishes_times_out_or_stops() {
        let cancel = CancellationToken::new();
        let mut guard = Guard::new(&cancel);
        let soon = || Instant::now() + Duration::from_secs(1);
        assert_eq!(guard.run(soon(), async { 7 }).await, Ok(7));
        let slow = tokio::time::sleep(Duration::from_secs(5));
        assert_eq!(guard.run(soon(), slow).await, Err(Stopped::TimedOut));
        // The same guard, reset for the next request, lets a quick one finish.
        assert_eq!(guard.run(soon(), tokio::time::sleep(Duration::from_millis(500))).await, Ok(()));
        assert!(guard.sleep_until(soon()).await, "slept to its deadline");
        let stopper = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            stopper.cancel();
        });
        assert_eq!(guard.run(soon(), std::future::pending::<()>()).await, Err(Stopped::Cancelled));
        assert!(!guard.sleep_until(soon()).await, "a stopped run sleeps no more");
        assert_eq!(guard.run(soon(), async { 1 }).await, Err(Stopped::Cancelled), "a stop wins over a result");
    }

    /// A wake-up from the guarded future alone does not poll the watches.
    #[tokio::test(start_paused = true)]
    async fn reads_do_not_poll_the_watches() {
        let cancel = CancellationToken::new();
        let mut guard = Guard::new(&cancel);
        let mut polls = 0;
        let reads = std::future::poll_fn(|cx| {
            polls += 1;
            if polls == 100 {
                return Poll::Ready(polls);
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        });
        assert_eq!(guard.run(Instant::now() + Duration::from_secs(1), reads).await, Ok(100));
        assert_eq!(guard.watch_polls, 1, "the watches are polled once, when armed, not at each of 100 wake-ups");
    }
}
