//! The leases that expire finished operations.
//!
//! One lease per operation would be a grant per finish and thousands of leases. Finishes are grouped instead into
//! windows of a tenth of the expiration period (1 s to 60 s, as the in-memory sweeper's period), and each window
//! shares one lease that ends an expiration period after the window closes: an operation stays at most a tenth
//! longer than asked, as with the sweeper.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::members::Members;

pub(super) struct ExpiryLeases {
    members: Arc<Members>,
    expiration: Duration,
    window_secs: i64,
    /// Lease id by the end of its window (Unix seconds).
    by_window: tokio::sync::Mutex<BTreeMap<i64, i64>>,
}

impl std::fmt::Debug for ExpiryLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExpiryLeases")
            .field("window_secs", &self.window_secs)
            .finish_non_exhaustive()
    }
}

impl ExpiryLeases {
    pub(super) fn new(members: Arc<Members>, expiration: Duration) -> Self {
        let window = (expiration / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
        Self {
            members,
            expiration,
            window_secs: i64::try_from(window.as_secs()).unwrap_or(60),
            by_window: Default::default(),
        }
    }

    /// The lease for an operation that finished at `completed`.
    pub(super) async fn lease_for(
        &self,
        completed: DateTime<Utc>,
        within: Duration,
    ) -> Result<i64, etcd_client::Error> {
        let window_end =
            (completed.timestamp().div_euclid(self.window_secs) + 1) * self.window_secs;
        let mut by_window = self.by_window.lock().await;
        // Windows that closed are never asked for again (finishes are written in time order, give or take a
        // retry); their leases run out by themselves.
        let now = Utc::now().timestamp();
        by_window.retain(|end, _| *end + self.window_secs >= now);
        if let Some(lease) = by_window.get(&window_end) {
            return Ok(*lease);
        }
        let expiration = i64::try_from(self.expiration.as_secs()).unwrap_or(i64::MAX / 4);
        // At least a second: etcd refuses a TTL of 0 (and raises short ones to its own minimum).
        let ttl = (window_end + expiration - now).max(1);
        // A grant repeated on another member leaves an unused lease behind, which runs out by itself.
        let lease = self
            .members
            .run(within, |mut client| async move {
                client.lease_grant(ttl, None).await
            })
            .await?
            .id();
        by_window.insert(window_end, lease);
        Ok(lease)
    }
}
