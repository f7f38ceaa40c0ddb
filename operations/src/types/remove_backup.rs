//! `remove-backup`: removes backups from a node's storage, or with `globalRequest` from every node's prefix
//! ([`crate::cluster::remove`]); the removal itself is [`crate::removal`]'s, which never deletes an object that
//! another of the node's manifests still refers to.

use serde::{Deserialize, Serialize};

use super::list::open_node_storage;
use crate::decode::{self, HumanDuration};
use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::removal::{self, RemovalPlan, Topology};
use crate::storage::remote::skipped_json;
use crate::storage::request::{self as storage, Connection, StorageFields, StorageRequest};
use crate::validation::Violations;

/// Esop's `RemoveBackupRequest`: exactly one of `backupName`, `removeOldest`, `olderThan`.
pub type RemoveBackupRequest = StorageRequest<RemoveBackupFields>;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoveBackupFields {
    /// A manifest name without `.json`, e.g. `daily-<schema>-<millis>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_name: Option<String>,
    #[serde(default, deserialize_with = "decode::bool")]
    pub remove_oldest: bool,
    /// Every backup older than this, e.g. `"14d"` or `{"value": 14, "unit": "DAYS"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub older_than: Option<HumanDuration>,
    /// Only report what would be removed.
    #[serde(default, deserialize_with = "decode::bool")]
    pub dry: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub resolve_nodes: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub global_request: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<String>,
}

impl StorageFields for RemoveBackupFields {
    fn validate(&self, connection: &Connection, violations: &mut Violations) {
        storage::node_location(
            violations,
            connection,
            Some((
                "resolveNodes or globalRequest",
                self.resolve_nodes || self.global_request,
            )),
        );
        // Zero is "not given": Esop's request defaults olderThan to zero, and its Java clients send it so.
        let older_than = self.older_than.is_some_and(|d| !d.0.is_zero());
        let chosen = [self.backup_name.is_some(), self.remove_oldest, older_than]
            .iter()
            .filter(|chosen| **chosen)
            .count();
        if chosen != 1 {
            violations.add(
                "backupName",
                "give exactly one of backupName, removeOldest and olderThan",
            );
        }
        if let Some(name) = &self.backup_name
            && (name.is_empty() || name.contains('/'))
        {
            violations.add("backupName", format!("'{name}' is not a backup name"));
        }
    }
}

impl RemoveBackupFields {
    /// Which backups the removal engine removes for this request.
    pub fn plan(&self) -> RemovalPlan {
        RemovalPlan {
            backup_name: self.backup_name.clone(),
            remove_oldest: self.remove_oldest,
            older_than: self.older_than.map(|age| age.0),
            dry: self.dry,
        }
    }
}

pub struct RemoveBackup;

impl Operation for RemoveBackup {
    const TYPE: &'static str = "remove-backup";
    type Request = RemoveBackupRequest;

    async fn run(
        &self,
        request: RemoveBackupRequest,
        context: OperationContext,
    ) -> Result<(), OperationFailure> {
        let StorageRequest {
            connection,
            fields: request,
        } = request;
        if request.global_request {
            let removed = crate::cluster::remove::remove(
                &connection,
                &request.plan(),
                request.resolve_nodes,
                &context,
            )
            .await?;
            context.set_response(serde_json::json!({ "dry": request.dry, "removed": removed }));
            return Ok(());
        }
        let remote = open_node_storage(&context, &connection, request.resolve_nodes).await?;
        let (removed, skipped) = crate::operation_store::releasing_memory(
            removal::remove_reporting(&context, &remote, &request.plan(), Topology::Delete),
        )
        .await?;
        let mut response = serde_json::json!({ "dry": request.dry, "removed": removed });
        if !skipped.is_empty() {
            response["skippedObjects"] = skipped_json(&skipped);
        }
        context.set_response(response);
        Ok(())
    }
}
