//! The expiry sweeper, and handing the memory of dropped operations back to the system.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::OperationStore;

/// Periodically drops terminal operations whose completion is older than `expiration`, and gives the memory of
/// those dropped, and of those the store evicted since the last sweep, back to the system.
///
/// Icarus sweeps once per expiration period, so an operation lingers for up to twice the period. Sweeping ten
/// times per period keeps that overshoot to a tenth, bounded to [100 ms, 60 s] so short periods in tests do not
/// spin and long ones still sweep every minute.
pub fn spawn_expiry_sweeper(
    store: Arc<dyn OperationStore>,
    expiration: Duration,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let period = (expiration / 10).clamp(Duration::from_millis(100), Duration::from_secs(60));
    tokio::spawn(async move {
        let mut evicted_before = store.evicted();
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            // An expiration too large for chrono, or a cutoff older than anything representable, means nothing
            // can have expired: the sweep only gives evicted operations' memory back.
            let cutoff = chrono::Duration::from_std(expiration)
                .ok()
                .and_then(|age| Utc::now().checked_sub_signed(age));
            let removed = cutoff.map_or(0, |cutoff| store.remove_completed_before(cutoff));
            // Eviction happens as operations are stored, too often to trim each time; once a sweep is enough.
            let evicted = store.evicted();
            let newly_evicted = evicted.saturating_sub(evicted_before);
            evicted_before = evicted;
            if removed > 0 || newly_evicted > 0 {
                let released = release_freed_memory();
                tracing::debug!(
                    removed,
                    evicted = newly_evicted,
                    released,
                    "dropped finished operations"
                );
            }
        }
    })
}

/// [`release_freed_memory`] once `work` is done, whatever its outcome: for operations that hold a whole manifest (up
/// to [`crate::esop::manifest::MAX_MANIFEST_BYTES`] and its parsed form), so the sidecar does not keep their peak.
pub async fn releasing_memory<T>(work: impl Future<Output = T>) -> T {
    let output = work.await;
    let _ = tokio::task::spawn_blocking(release_freed_memory).await;
    output
}

/// Hands memory the allocator keeps after frees back to the system; returns whether any was released.
///
/// glibc's malloc keeps freed memory in its arenas, so after a burst of operations expires the process would stay at
/// its peak size for good (about 155 MB after 100,000 operations, from 10 MB at start). `malloc_trim(0)` returns the
/// free pages of every arena. Other targets have no such call and do nothing here.
pub fn release_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks and shrinks the allocator's own free lists; it takes the arena locks itself
        // and has no preconditions.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
