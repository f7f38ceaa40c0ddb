//! A small key-value face of the store's etcd for what else the sidecars of one prefix share (schedules): reads
//! under a prefix, create-if-absent (optionally under a lease of its own), compare-and-swap on a key's revision,
//! and deletes (also only while a key holds a given value). Keys are relative to the cluster's prefix; the member
//! failover is the store's ([`Members`]).

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
    TxnResponse,
};

use super::WRITE_DEADLINE;
use super::members::Members;

/// etcd did not answer (every member tried until the deadline).
#[derive(Debug, thiserror::Error)]
#[error("etcd at {endpoints} did not answer: {source}")]
pub struct KeysError {
    endpoints: String,
    source: etcd_client::Error,
}

/// A key as read: its value and the revision a compare-and-swap compares against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the cluster's prefix.
    pub key: String,
    pub value: Vec<u8>,
    pub revision: i64,
}

#[derive(Debug, Clone)]
pub struct EtcdKeys {
    members: Arc<Members>,
    prefix: String,
    sidecar: String,
}

impl EtcdKeys {
    pub(super) fn new(members: Arc<Members>, prefix: String, sidecar: String) -> Self {
        EtcdKeys {
            members,
            prefix,
            sidecar,
        }
    }

    /// This sidecar's name (`--sidecar-id`).
    pub fn sidecar(&self) -> &str {
        &self.sidecar
    }

    fn error(&self, source: etcd_client::Error) -> KeysError {
        KeysError {
            endpoints: self.members.endpoints(),
            source,
        }
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Every key under `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Entry>, KeysError> {
        let full = self.full(prefix);
        let mut response = self
            .members
            .run(WRITE_DEADLINE, |mut client| {
                let full = full.clone();
                async move {
                    client
                        .get(full, Some(GetOptions::new().with_prefix()))
                        .await
                }
            })
            .await
            .map_err(|error| self.error(error))?;
        Ok(response
            .take_kvs()
            .into_iter()
            .filter_map(|kv| {
                let key = kv.key_str().ok()?.strip_prefix(&self.prefix)?.to_string();
                Some(Entry {
                    key,
                    revision: kv.mod_revision(),
                    value: kv.value().to_vec(),
                })
            })
            .collect())
    }

    pub async fn get(&self, key: &str) -> Result<Option<Entry>, KeysError> {
        let full = self.full(key);
        let mut response = self
            .members
            .run(WRITE_DEADLINE, |mut client| {
                let full = full.clone();
                async move { client.get(full, None).await }
            })
            .await
            .map_err(|error| self.error(error))?;
        Ok(response.take_kvs().into_iter().next().map(|kv| Entry {
            key: key.to_string(),
            revision: kv.mod_revision(),
            value: kv.value().to_vec(),
        }))
    }

    /// Creates `key` unless it exists; with `ttl`, under a lease of that length, so etcd deletes it then. Whether
    /// this call created it: a retried attempt whose first one got through finds its own value there, and counts.
    pub async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<bool, KeysError> {
        let lease = match ttl {
            Some(ttl) => {
                let seconds = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX).max(1);
                let granted = self
                    .members
                    .run(WRITE_DEADLINE, |mut client| async move {
                        client.lease_grant(seconds, None).await
                    })
                    .await
                    .map_err(|error| self.error(error))?;
                Some(granted.id())
            }
            None => None,
        };
        let full = self.full(key);
        let options = lease.map(|lease| PutOptions::new().with_lease(lease));
        let txn = Txn::new()
            .when([Compare::create_revision(full.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(full.clone(), value.clone(), options)])
            .or_else([TxnOp::get(full.clone(), None)]);
        let response = self.transact(txn).await?;
        if response.succeeded() {
            return Ok(true);
        }
        let ours = response.op_responses().into_iter().any(|op| match op {
            TxnOpResponse::Get(get) => get.kvs().first().is_some_and(|kv| {
                kv.value() == value.as_slice() && kv.lease() == lease.unwrap_or(0)
            }),
            _ => false,
        });
        if !ours && let Some(lease) = lease {
            // Nothing was put under it: let it go now rather than at its end.
            let _ = self
                .members
                .run(WRITE_DEADLINE, |mut client| async move {
                    client.lease_revoke(lease).await
                })
                .await;
        }
        Ok(ours)
    }

    /// Replaces `key`'s value if its revision is still `revision`; whether it did.
    pub async fn swap(&self, key: &str, value: Vec<u8>, revision: i64) -> Result<bool, KeysError> {
        let full = self.full(key);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                full.clone(),
                CompareOp::Equal,
                revision,
            )])
            .and_then([TxnOp::put(full, value, None)]);
        let response = self.transact(txn).await?;
        Ok(response.succeeded())
    }

    /// Runs `txn` (again, should a member fail to answer).
    async fn transact(&self, txn: Txn) -> Result<TxnResponse, KeysError> {
        self.members
            .run(WRITE_DEADLINE, |mut client| {
                let txn = txn.clone();
                async move { client.txn(txn).await }
            })
            .await
            .map_err(|error| self.error(error))
    }

    /// Deletes `key`; whether it existed.
    pub async fn delete(&self, key: &str) -> Result<bool, KeysError> {
        let full = self.full(key);
        let response = self
            .members
            .run(WRITE_DEADLINE, |mut client| {
                let full = full.clone();
                async move { client.delete(full, None).await }
            })
            .await
            .map_err(|error| self.error(error))?;
        Ok(response.deleted() > 0)
    }

    /// Deletes `key` if it still holds `value` (a claim of this sidecar's, not one another sidecar made since);
    /// whether it did.
    pub async fn delete_if_value(&self, key: &str, value: Vec<u8>) -> Result<bool, KeysError> {
        let full = self.full(key);
        let txn = Txn::new()
            .when([Compare::value(full.clone(), CompareOp::Equal, value)])
            .and_then([TxnOp::delete(full, None)]);
        let response = self.transact(txn).await?;
        Ok(response.succeeded())
    }

    /// Deletes every key under `prefix`.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), KeysError> {
        let full = self.full(prefix);
        self.members
            .run(WRITE_DEADLINE, |mut client| {
                let full = full.clone();
                async move {
                    client
                        .delete(full, Some(DeleteOptions::new().with_prefix()))
                        .await
                }
            })
            .await
            .map_err(|error| self.error(error))?;
        Ok(())
    }
}
