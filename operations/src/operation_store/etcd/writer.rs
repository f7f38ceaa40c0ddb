//! Writing the operations this sidecar runs: each write a compare-and-swap on the key's revision, so two writers
//! never interleave and a sidecar that took an operation over is noticed; changes kept while etcd is away are
//! written once a second.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use uuid::Uuid;

use super::{Document, FLUSH_INTERVAL, Inner, WRITE_DEADLINE};
use crate::operation_store::StoreError;
use crate::record::OperationRecord;

/// A record this sidecar runs, with what was last written of it.
#[derive(Debug)]
pub(super) struct Owned {
    pub(super) record: Arc<OperationRecord>,
    /// Serializes writes of one record, so the revision each compares against is the one the previous wrote.
    pub(super) written: tokio::sync::Mutex<Written>,
}

#[derive(Debug, Default)]
pub(super) struct Written {
    /// The key's revision after our last write; 0 before the first (the key does not exist then).
    pub(super) revision: i64,
    /// The record's change count that write reflected.
    pub(super) changes: Option<u64>,
}

impl Inner {
    /// Writes the record's current status if it changed since the last write (or was never written).
    pub(super) async fn write(&self, owned: &Owned) -> Result<(), StoreError> {
        let mut written = owned.written.lock().await;
        let changes = owned.record.change_count();
        if written.changes == Some(changes) {
            return Ok(());
        }
        let document = Document::of(&owned.record, &self.settings.sidecar);
        let bytes = document.to_bytes();
        let key = self.settings.key_of(&owned.record.id());
        let lease = match owned.record.completion_time() {
            Some(completed) => Some(
                self.leases
                    .lease_for(completed, WRITE_DEADLINE)
                    .await
                    .map_err(|e| self.unavailable(e))?,
            ),
            None => None,
        };
        let deadline = tokio::time::Instant::now() + WRITE_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    written.revision,
                )])
                .and_then([TxnOp::put(
                    key.clone(),
                    bytes.clone(),
                    lease.map(|id| PutOptions::new().with_lease(id)),
                )])
                .or_else([TxnOp::get(key.clone(), None)]);
            let response = self
                .members
                .run(left, |mut client| {
                    let txn = txn.clone();
                    async move { client.txn(txn).await }
                })
                .await
                .map_err(|e| self.unavailable(e))?;
            let revision = response.header().map(|h| h.revision()).unwrap_or(0);
            if response.succeeded() {
                // A key this write created was created at this revision, which orders the listing.
                let created = if written.revision == 0 { revision } else { 0 };
                written.revision = revision;
                written.changes = Some(changes);
                self.take(&document, created, revision);
                self.stale.store(false, Ordering::Relaxed);
                return Ok(());
            }
            // Someone else wrote the key since our last write: a repeat of ours that etcd had applied after all,
            // or another sidecar that took the operation over.
            let current = response.op_responses().into_iter().find_map(|op| match op {
                TxnOpResponse::Get(get) => get.kvs().first().cloned(),
                _ => None,
            });
            match current {
                Some(kv) if kv.value() == bytes.as_slice() => {
                    written.revision = kv.mod_revision();
                    written.changes = Some(changes);
                    self.take(&document, kv.create_revision(), kv.mod_revision());
                    return Ok(());
                }
                Some(kv) => {
                    let holder = Document::from_bytes(kv.value())
                        .map(|d| d.sidecar)
                        .unwrap_or_else(|_| "unknown".into());
                    if holder != self.settings.sidecar {
                        return Err(StoreError::TakenOver(owned.record.id(), holder));
                    }
                    // Our own earlier write (a restart marking, an import): continue from it.
                    written.revision = kv.mod_revision();
                }
                // Deleted under us (someone removed the key by hand): write it anew.
                None => written.revision = 0,
            }
            if left.is_zero() {
                return Err(StoreError::Unavailable(format!(
                    "etcd at {} kept changing operation {} under this sidecar",
                    self.endpoints(),
                    owned.record.id()
                )));
            }
        }
    }

    pub(super) fn unavailable(&self, error: etcd_client::Error) -> StoreError {
        StoreError::Unavailable(format!("etcd at {}: {error}", self.endpoints()))
    }

    pub(super) async fn save(&self, id: &Uuid) -> Result<(), StoreError> {
        let Some(owned) = self.owned.get(id).map(|o| Arc::clone(o.value())) else {
            return Ok(());
        };
        let outcome = self.write(&owned).await;
        match &outcome {
            Ok(())
                if owned.record.state().is_terminal()
                    && owned.written.lock().await.changes == Some(owned.record.change_count()) =>
            {
                self.owned.remove(id);
                if owned.record.resumable()
                    && let Err(error) = self.session.release(id).await
                {
                    // The key goes with this sidecar's lease anyway; nobody takes a finished operation over.
                    tracing::debug!(operation = %id, %error, "could not give up coordinating a finished operation");
                }
            }
            Err(StoreError::TakenOver(_, by)) => {
                self.owned.remove(id);
                tracing::warn!(operation = %id, sidecar = %by, "another sidecar took this operation over: it stops here, leaving its parts to that one");
                owned.record.abandon();
            }
            _ => {}
        }
        if let Err(StoreError::Unavailable(_)) = &outcome {
            // Reads may miss changes etcd could not take; cleared by the next write or reload that succeeds.
            self.stale.store(true, Ordering::Relaxed);
        }
        outcome
    }

    /// Writes every owned record that changed since it was last written.
    pub(super) async fn flush(&self) {
        let ids: Vec<Uuid> = self.owned.iter().map(|entry| *entry.key()).collect();
        for id in ids {
            if let Err(error) = self.save(&id).await {
                tracing::debug!(operation = %id, %error, "operation not written yet");
            }
        }
    }

    pub(super) async fn flush_regularly(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(FLUSH_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = ticks.tick() => self.flush().await,
            }
        }
    }
}
