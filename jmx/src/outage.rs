//! While the agent does not answer: since when, why, and when the registry may be asked again.
//!
//! A restarted JVM has a new RMI server (often on a new port), so the client must go back to the registry; but it
//! must not make every caller wait for a connect attempt while the JVM is down. So one attempt at a time, spaced by a
//! short backoff capped at [`MAX_RETRY`], and callers in between get a fast [`JmxError::Unavailable`].
//!
//! [`JmxError::Unavailable`]: crate::JmxError::Unavailable

use std::time::{Duration, Instant};

/// The wait after the first failed attempt; it doubles with each failure after that.
pub(crate) const FIRST_RETRY: Duration = Duration::from_millis(200);
/// The longest wait between two attempts: the client finds the agent again at most this long after it answers.
pub(crate) const MAX_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub(crate) struct Outage {
    pub since: Instant,
    next_try: Instant,
    delay: Duration,
    pub last_error: String,
}

impl Outage {
    pub fn begin(now: Instant, error: String) -> Self {
        Self {
            since: now,
            next_try: now + FIRST_RETRY,
            delay: FIRST_RETRY,
            last_error: error,
        }
    }

    pub fn failed_again(&mut self, now: Instant, error: String) {
        self.delay = (self.delay * 2).min(MAX_RETRY);
        self.next_try = now + self.delay;
        self.last_error = error;
    }

    pub fn may_try(&self, now: Instant) -> bool {
        now >= self.next_try
    }

    pub fn retry_in(&self, now: Instant) -> Duration {
        self.next_try.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_up_to_the_cap_and_attempts_wait_for_it() {
        let start = Instant::now();
        let mut outage = Outage::begin(start, "refused".into());
        assert!(!outage.may_try(start));
        assert!(outage.may_try(start + FIRST_RETRY));
        let mut now = start;
        let mut waits = Vec::new();
        for _ in 0..6 {
            now += Duration::from_secs(5);
            outage.failed_again(now, "refused".into());
            waits.push(outage.retry_in(now));
        }
        assert_eq!(waits[0], FIRST_RETRY * 2);
        assert_eq!(waits[1], FIRST_RETRY * 4);
        assert!(waits.iter().all(|wait| *wait <= MAX_RETRY));
        assert_eq!(*waits.last().unwrap(), MAX_RETRY);
        assert_eq!(outage.since, start, "the outage began at the first failure");
    }
}
