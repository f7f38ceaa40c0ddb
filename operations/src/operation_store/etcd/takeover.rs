//! Taking over cluster-wide operations whose coordinating sidecar died.
//!
//! - Each sidecar holds a session lease, kept alive while it runs. The coordinator of a resumable operation (see
//!   `Operation::resumable`) holds the key `<prefix>coordinators/<id>` under that lease.
//! - When the sidecar dies, its lease runs out (after [`LEASE_TTL_SECS`]) and etcd deletes the key. Every sidecar
//!   looks for unfinished resumable operations without a coordinator once a second; the first to create the key
//!   (a compare-and-swap on its absence) takes the operation over and runs it on from what it recorded.
//! - A sidecar that restarts finds its own operations still under its name and takes them back at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use uuid::Uuid;

use super::members::Members;
use super::settings::EtcdSettings;
use crate::record::OperationRecord;

/// How long a dead sidecar's operations wait before another takes them over.
pub const LEASE_TTL_SECS: i64 = 10;
/// How often the lease is renewed, and unattended operations looked for.
pub(super) const TICK: Duration = Duration::from_secs(1);
const REQUEST_WITHIN: Duration = Duration::from_secs(3);

#[derive(Debug)]
pub(super) struct Session {
    members: Arc<Members>,
    settings: EtcdSettings,
    /// 0 while there is none (etcd unreachable since it ran out).
    lease: AtomicI64,
}

impl Session {
    pub(super) fn new(members: Arc<Members>, settings: EtcdSettings) -> Self {
        Self {
            members,
            settings,
            lease: AtomicI64::new(0),
        }
    }

    fn key(&self, id: &Uuid) -> String {
        format!("{}coordinators/{id}", self.settings.prefix)
    }

    /// Renews the lease, or grants a new one when it ran out; returns whether a new one was granted (the keys held
    /// under the old one are gone then, and must be claimed again).
    pub(super) async fn renew(&self) -> Result<bool, etcd_client::Error> {
        let lease = self.lease.load(Ordering::Relaxed);
        if lease != 0 {
            let alive = self
                .members
                .run(REQUEST_WITHIN, |mut client| async move {
                    let (mut keeper, mut stream) = client.lease_keep_alive(lease).await?;
                    keeper.keep_alive().await?;
                    Ok(stream
                        .message()
                        .await?
                        .map(|r| r.ttl() > 0)
                        .unwrap_or(false))
                })
                .await?;
            if alive {
                return Ok(false);
            }
            tracing::warn!(
                lease,
                "the sidecar's etcd lease ran out; the operations it coordinated may have been taken over"
            );
        }
        let granted = self
            .members
            .run(REQUEST_WITHIN, |mut client| async move {
                client.lease_grant(LEASE_TTL_SECS, None).await
            })
            .await?
            .id();
        self.lease.store(granted, Ordering::Relaxed);
        Ok(lease != 0)
    }

    /// Makes this sidecar the coordinator of `id`, unless another sidecar is. Returns whether it is now.
    pub(super) async fn claim(&self, id: &Uuid) -> Result<bool, etcd_client::Error> {
        let lease = self.lease.load(Ordering::Relaxed);
        if lease == 0 {
            return Ok(false);
        }
        let key = self.key(id);
        let me = self.settings.sidecar.clone();
        let put = || {
            TxnOp::put(
                key.clone(),
                me.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )
        };
        // Free, or held by this sidecar under an earlier lease (before a restart): take it.
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([put()])
            .or_else([TxnOp::txn(
                Txn::new()
                    .when([Compare::value(key.clone(), CompareOp::Equal, me.clone())])
                    .and_then([put()]),
            )]);
        let response = self
            .members
            .run(REQUEST_WITHIN, |mut client| {
                let txn = txn.clone();
                async move { client.txn(txn).await }
            })
            .await?;
        if response.succeeded() {
            return Ok(true);
        }
        Ok(response.op_responses().into_iter().any(|op| match op {
            TxnOpResponse::Txn(inner) => inner.succeeded(),
            _ => false,
        }))
    }

    /// Gives up coordinating `id` (it finished).
    pub(super) async fn release(&self, id: &Uuid) -> Result<(), etcd_client::Error> {
        let key = self.key(id);
        let txn = Txn::new()
            .when([Compare::value(
                key.clone(),
                CompareOp::Equal,
                self.settings.sidecar.clone(),
            )])
            .and_then([TxnOp::delete(key, None)]);
        self.members
            .run(REQUEST_WITHIN, |mut client| {
                let txn = txn.clone();
                async move { client.txn(txn).await }
            })
            .await?;
        Ok(())
    }
}

/// Whether a copy is one another sidecar could take over: resumable and unfinished.
pub(super) fn unattended_candidate(copy: &OperationRecord) -> bool {
    copy.resumable() && !copy.state().is_terminal()
}
