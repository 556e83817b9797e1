//! `max_error_rate`: a run stops itself when its target keeps failing, instead of burning the
//! rest of its requests against a dead or overloaded server.

use std::collections::VecDeque;

/// Stops a run whose target keeps failing: at least `rate` of the last `window` finished requests.
pub struct ErrorBreaker {
    rate: f64,
    window: usize,
    last: VecDeque<bool>,
    failed: usize,
}

impl ErrorBreaker {
    pub fn new(rate: f64, window: u32) -> Self {
        ErrorBreaker { rate, window: window.max(1) as usize, last: VecDeque::new(), failed: 0 }
    }

    /// Records one finished request; returns why the run must stop, once the window is full
    /// and enough of it failed.
    pub fn record(&mut self, failed: bool) -> Option<String> {
        self.last.push_back(failed);
        self.failed += usize::from(failed);
        if self.last.len() > self.window {
            self.failed -= usize::from(self.last.pop_front() == Some(true));
        }
        let tripped = self.last.len() == self.window && self.failed as f64 >= self.rate * self.window as f64;
        tripped.then(|| {
            format!(
                "stopped by itself: {} of the last {} requests failed (max_error_rate {}): the target looks down or overloaded",
                self.failed, self.window, self.rate
            )
        })
    }
}



#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_trips_on_a_full_window_of_failures_only() {
        let mut b = ErrorBreaker::new(0.5, 4);
        assert_eq!((0..3).filter_map(|_| b.record(true)).count(), 0, "the window is not full yet");
        assert!(b.record(false).unwrap().starts_with("stopped by itself: 3 of the last 4 requests failed"));
        let mut dead = ErrorBreaker::new(1.0, 3);
        assert!(dead.record(true).is_none() && dead.record(false).is_none() && dead.record(true).is_none());
        assert!(dead.record(true).is_none(), "2 of the last 3");
        assert!(dead.record(true).is_some(), "all of the last 3 failed");
    }


}
