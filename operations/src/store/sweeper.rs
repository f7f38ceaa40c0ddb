use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::OperationStore;

/// Periodically drops terminal operations whose completion is older than `expiration`.
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
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let Ok(age) = chrono::Duration::from_std(expiration) else {
                // An expiration too large for chrono means "never expire".
                return;
            };
            let Some(cutoff) = Utc::now().checked_sub_signed(age) else {
                // Older than anything representable: nothing can have completed before it.
                continue;
            };
            let removed = store.remove_completed_before(cutoff);
            if removed > 0 {
                tracing::debug!(removed, "expired finished operations");
            }
        }
    })
}
