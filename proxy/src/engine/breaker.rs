//! `max_error_rate`: a run stops itself when its target keeps failing, instead of burning the
//! rest of its requests against a dead or overloaded server.

use std::collections::VecDeque;

use caplab_shared::ErrorClass;

/// Stops a run whose target keeps failing: at least `rate` of the last `window` finished requests.
pub struct ErrorBreaker {
    rate: f64,
    window: usize,
    /// Each request of the window: None (it succeeded) or its error class.
    last: VecDeque<Option<ErrorClass>>,
    failed: usize,
}

impl ErrorBreaker {
    pub fn new(rate: f64, window: u32) -> Self {
        ErrorBreaker { rate, window: window.max(1) as usize, last: VecDeque::new(), failed: 0 }
    }

    /// Records one finished request; returns why the run must stop, once the window is full
    /// and enough of it failed. The reason names the cause the failures share: caplab's own
    /// shortage, a redirect, refused credentials, or else the target.
    pub fn record(&mut self, error: Option<ErrorClass>) -> Option<String> {
        self.last.push_back(error);
        self.failed += usize::from(error.is_some());
        if self.last.len() > self.window {
            self.failed -= usize::from(self.last.pop_front().flatten().is_some());
        }
        let tripped = self.last.len() == self.window && self.failed as f64 >= self.rate * self.window as f64;
        tripped.then(|| {
            let count = |class| self.last.iter().filter(|e| **e == Some(class)).count();
            let most = |class| 2 * count(class) > self.failed;
            let why = if most(ErrorClass::Client) {
                crate::fd_limit::shortage()
            } else if most(ErrorClass::Redirect) {
                "the target redirects its requests, and caplab follows no redirects: give the final URL with --target".to_string()
            } else if most(ErrorClass::Unauthorized) {
                "the target refuses caplab's credentials (401/403): check its API key (CAPLAB_API_KEY_<NAME>) or password".to_string()
            } else {
                "the target looks down or overloaded".to_string()
            };
            format!("stopped by itself: {} of the last {} requests failed (max_error_rate {}): {why}", self.failed, self.window, self.rate)
        })
    }
}



#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_trips_on_a_full_window_of_failures_only() {
        let failed = Some(ErrorClass::Connect);
        let mut b = ErrorBreaker::new(0.5, 4);
        assert_eq!((0..3).filter_map(|_| b.record(failed)).count(), 0, "the window is not full yet");
        let why = b.record(None).unwrap();
        assert!(why.starts_with("stopped by itself: 3 of the last 4 requests failed") && why.ends_with("the target looks down or overloaded"), "{why}");
        let mut dead = ErrorBreaker::new(1.0, 3);
        assert!(dead.record(failed).is_none() && dead.record(None).is_none() && dead.record(failed).is_none());
        assert!(dead.record(failed).is_none(), "2 of the last 3");
        assert!(dead.record(failed).is_some(), "all of the last 3 failed");
    }

    #[test]
    fn caplab_s_own_shortage_is_never_blamed_on_the_target() {
        let mut b = ErrorBreaker::new(0.5, 2);
        b.record(Some(ErrorClass::Client));
        let why = b.record(Some(ErrorClass::Client)).unwrap();
        assert!(why.contains("caplab itself ran out of open files") && why.contains("its limit is") && !why.contains("looks down"), "{why}");
        let mut r = ErrorBreaker::new(1.0, 1);
        assert!(r.record(Some(ErrorClass::Redirect)).unwrap().contains("follows no redirects"));
        let mut u = ErrorBreaker::new(1.0, 1);
        assert!(u.record(Some(ErrorClass::Unauthorized)).unwrap().contains("credentials"));
    }


}
