//! What a sidecar finds at start of its own: operations it ran when it stopped, which cannot go on and are marked
//! FAILED in etcd.

use std::sync::Arc;

use chrono::Utc;

use super::Inner;
use super::writer::{Owned, Written};
use crate::operation_store::{OperationFilter, OperationStore};
use crate::record::{OperationRecord, ReportedError};
use crate::state::OperationState;

impl Inner {
    /// Operations this sidecar ran that are not finished in etcd: it stopped while they ran (a crash, a kill, a pod
    /// rescheduled). They cannot go on, so they end FAILED, saying why, rather than stay RUNNING for good.
    pub(super) async fn fail_interrupted(&self) -> Vec<Arc<OperationRecord>> {
        let mine: Vec<Arc<OperationRecord>> = self
            .cache
            .list(&OperationFilter::unfinished())
            .into_iter()
            .filter(|record| record.sidecar() == Some(self.settings.sidecar.as_str()))
            // Those go on: this sidecar (or another) takes them over.
            .filter(|record| !record.resumable())
            .collect();
        let mut failed = Vec::with_capacity(mine.len());
        for copy in mine {
            let id = copy.id();
            let Some(revision) = self.revisions.get(&id).map(|r| *r) else {
                continue;
            };
            let was = copy.state();
            let (status, _) = copy.stored_status();
            let record = Arc::new(
                OperationRecord::restored(
                    id,
                    copy.type_id(),
                    copy.request().clone(),
                    copy.creation_time(),
                    copy.sequence(),
                    status,
                )
                .with_sidecar(copy.sidecar().map(str::to_string)),
            );
            record.add_error(ReportedError {
                source: self.settings.sidecar.clone(),
                message: format!(
                    "the sidecar restarted while this operation was {was}; it did not finish and was not resumed"
                ),
            });
            record.finish(OperationState::Failed, Utc::now());
            let owned = Owned {
                record: Arc::clone(&record),
                written: tokio::sync::Mutex::new(Written {
                    revision,
                    changes: None,
                }),
            };
            match self.write(&owned).await {
                Ok(()) => {
                    tracing::warn!(operation = %id, r#type = record.type_id(), state = %was, "marked FAILED: the sidecar restarted while it ran");
                    failed.push(record);
                }
                Err(error) => {
                    tracing::warn!(operation = %id, %error, "could not mark an operation interrupted by the restart");
                }
            }
        }
        failed
    }
}
