//! The store's side of takeovers, once a second: keeping this sidecar's lease alive, claiming its resumable
//! operations again under a new lease, and claiming those of sidecars that died to hand them to the executor.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use uuid::Uuid;

use super::{Inner, takeover};
use crate::operation_store::{OperationFilter, OperationStore};
use crate::record::OperationRecord;
use crate::sync::lock;

impl Inner {
    /// Becomes the coordinator of a resumable operation this sidecar runs; if another sidecar already is (it took
    /// the operation over while this one was cut off from etcd), this one stops running it.
    pub(super) async fn claim_or_abandon(&self, record: &Arc<OperationRecord>) {
        match self.session.claim(&record.id()).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(operation = %record.id(), "another sidecar coordinates this operation now: it stops here");
                self.owned.remove(&record.id());
                record.abandon();
            }
            // Tried again at the next renewal of the lease.
            Err(error) => {
                tracing::warn!(operation = %record.id(), %error, "could not record this sidecar as the coordinator yet")
            }
        }
    }

    /// Once a second: keeps the sidecar's lease alive (claiming its operations again under a new one if it ran out),
    /// and takes over resumable operations whose coordinator died.
    pub(super) async fn tend(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(takeover::TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            match self.session.renew().await {
                Ok(true) => {
                    let mine: Vec<Arc<OperationRecord>> = self
                        .owned
                        .iter()
                        .map(|entry| Arc::clone(&entry.value().record))
                        .filter(|record| takeover::unattended_candidate(record))
                        .collect();
                    for record in mine {
                        self.claim_or_abandon(&record).await;
                    }
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::debug!(%error, "could not renew the sidecar's etcd lease");
                    continue;
                }
            }
            if self.taking_over.load(Ordering::Relaxed) {
                self.take_over_unattended().await;
            }
        }
    }

    pub(super) async fn take_over_unattended(&self) {
        let candidates: Vec<Arc<OperationRecord>> = self
            .cache
            .list(&OperationFilter::unfinished())
            .into_iter()
            .filter(|copy| takeover::unattended_candidate(copy))
            .filter(|copy| !self.owned.contains_key(&copy.id()))
            .collect();
        for copy in candidates {
            let id = copy.id();
            if self.lock_adopting().contains(&id) {
                continue;
            }
            match self.session.claim(&id).await {
                Ok(true) => {
                    tracing::warn!(operation = %id, r#type = copy.type_id(), from = copy.sidecar().unwrap_or("unknown"), "taking over an operation whose coordinating sidecar stopped");
                    self.lock_adopting().insert(id);
                    if self.takeovers.send(copy).is_err() {
                        // The receiver is gone (shutting down): leave it to the others.
                        let _ = self.session.release(&id).await;
                    }
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::debug!(operation = %id, %error, "could not claim an unattended operation")
                }
            }
        }
    }

    pub(super) fn lock_adopting(&self) -> std::sync::MutexGuard<'_, HashSet<Uuid>> {
        lock(&self.adopting)
    }
}
