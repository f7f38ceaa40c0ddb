//! One bandwidth limit for a whole transfer, shared by all of its connections (Esop limits each connection on its
//! own, so the total depends on how many run).

use std::sync::Mutex;
use std::time::Duration;

use crate::sync::lock;
use tokio::time::Instant;

/// A byte-rate limit: each `acquire(n)` waits until `n` more bytes fit under the rate since the transfer began.
/// Unlimited when built with no rate.
#[derive(Debug)]
pub struct Throttle {
    bytes_per_second: Option<f64>,
    /// When the bytes granted so far will have been "paid for" at the rate.
    next_free: Mutex<Option<Instant>>,
}

impl Throttle {
    pub fn new(bytes_per_second: Option<u64>) -> Self {
        Throttle {
            bytes_per_second: bytes_per_second.filter(|&rate| rate > 0).map(|r| r as f64),
            next_free: Mutex::new(None),
        }
    }

    pub fn unlimited() -> Self {
        Self::new(None)
    }

    pub fn rate(&self) -> Option<u64> {
        self.bytes_per_second.map(|rate| rate as u64)
    }

    /// Waits until `bytes` may be sent: until the bytes granted before, and these, fit under the rate.
    pub async fn acquire(&self, bytes: u64) {
        let Some(rate) = self.bytes_per_second else {
            return;
        };
        let cost = Duration::from_secs_f64(bytes as f64 / rate);
        let ready = {
            let now = Instant::now();
            let mut next = lock(&self.next_free);
            // Idle time does not bank credit beyond the present: a burst after a pause is still paced.
            let start = next.map_or(now, |at| at.max(now));
            *next = Some(start + cost);
            // Paid for before it is sent: even the first part of a transfer is paced.
            start + cost
        };
        tokio::time::sleep_until(ready).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paces_all_callers_together() {
        let throttle = std::sync::Arc::new(Throttle::new(Some(1_000)));
        let began = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let throttle = throttle.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..5 {
                    throttle.acquire(100).await;
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        // 2,000 bytes at 1,000 B/s: two seconds, whoever sent them.
        let elapsed = began.elapsed();
        assert!(
            elapsed >= Duration::from_millis(2_000) && elapsed < Duration::from_millis(2_050),
            "{elapsed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits() {
        let began = Instant::now();
        Throttle::unlimited().acquire(u64::MAX).await;
        assert_eq!(began.elapsed(), Duration::ZERO);
    }
}
