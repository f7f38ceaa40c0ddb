//! `daedalus store export` and `store import`: every document under the prefix, read or written without opening
//! the store (no cache, no watch, no takeovers).

use std::sync::Arc;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};

use super::cache::range;
use super::leases::ExpiryLeases;
use super::{Document, DocumentError, EtcdError, EtcdSettings, EtcdStore, WRITE_DEADLINE};

impl EtcdStore {
    /// Every document under the prefix, as etcd holds them now (`daedalus store export`).
    pub async fn documents_in(settings: EtcdSettings) -> Result<Vec<Document>, EtcdError> {
        let endpoints = settings.endpoints.join(",");
        let members = settings.members()?;
        let (kvs, _) = range(&members, &settings)
            .await
            .map_err(|source| EtcdError::Request { endpoints, source })?;
        Ok(kvs
            .iter()
            .filter_map(|kv| Document::from_bytes(kv.value()).ok())
            .collect())
    }

    /// Writes each document whose operation is not under the prefix yet (`daedalus store import`); a finished one
    /// expires an expiration period after it finished. Returns how many were written and how many were there.
    pub async fn import_into(
        settings: EtcdSettings,
        documents: &[Document],
    ) -> Result<(usize, usize), EtcdError> {
        let endpoints = settings.endpoints.join(",");
        let request = |source| EtcdError::Request {
            endpoints: endpoints.clone(),
            source,
        };
        let members = Arc::new(settings.members()?);
        let leases = ExpiryLeases::new(Arc::clone(&members), settings.expiration);
        let (mut written, mut present) = (0, 0);
        for document in documents {
            let invalid =
                |e: DocumentError| request(etcd_client::Error::InvalidArgs(e.to_string()));
            let id = document.id().map_err(invalid)?;
            let status = document.status().map_err(invalid)?;
            let key = settings.key_of(&id);
            let options = match status.completion_time {
                Some(completed) if status.state.is_terminal() => Some(
                    PutOptions::new().with_lease(
                        leases
                            .lease_for(completed, WRITE_DEADLINE)
                            .await
                            .map_err(request)?,
                    ),
                ),
                _ => None,
            };
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key, document.to_bytes(), options)]);
            let response = members
                .run(WRITE_DEADLINE, |mut client| {
                    let txn = txn.clone();
                    async move { client.txn(txn).await }
                })
                .await
                .map_err(request)?;
            if response.succeeded() {
                written += 1;
            } else {
                present += 1;
            }
        }
        Ok((written, present))
    }
}
