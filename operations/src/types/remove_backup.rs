//! `remove-backup`: removes backups from a node's storage, or with `globalRequest` from every node's prefix
//! ([`crate::cluster::remove`]); the removal itself is [`crate::removal`]'s, which never deletes an object that
//! another of the node's manifests still refers to.

use serde::{Deserialize, Serialize};

use super::list::open_node_storage;
use crate::decode::{self, HumanDuration};
use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::removal::{self, RemovalPlan, RemovedBackup, Topology};
use crate::storage::remote::skipped_objects;
use crate::storage::request::{self as storage, Connection, StorageFields, StorageRequest};
use crate::storage::skipped::SkippedObject;
use crate::validation::Violations;

/// What `remove-backup` answers: the backups removed (or, `dry`, that would be), from every node with
/// `globalRequest`; and, only when a listing passed over some, the objects skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoveBackupResponse {
    pub dry: bool,
    pub removed: Vec<RemovedBackup>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_objects: Vec<SkippedObject>,
}

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
            return context.respond(&RemoveBackupResponse {
                dry: request.dry,
                removed,
                skipped_objects: Vec::new(),
            });
        }
        let remote = open_node_storage(&context, &connection, request.resolve_nodes).await?;
        let (removed, skipped) = crate::operation_store::releasing_memory(
            removal::remove_reporting(&context, &remote, &request.plan(), Topology::Delete),
        )
        .await?;
        context.respond(&RemoveBackupResponse {
            dry: request.dry,
            removed,
            skipped_objects: skipped_objects(&skipped),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::storage::skipped::{SkipReason, SkippedEntry};

    /// The response is what the `json!` it replaced wrote (`skippedObjects` appended only when there are some),
    /// and reads back as itself.
    #[test]
    fn the_response_keeps_its_json() {
        let removed = vec![RemovedBackup {
            name: "tag-s-1".into(),
            removed_objects: 3,
            reclaimed_space: 30,
            node: None,
        }];
        let skipped = vec![SkippedEntry {
            name: "c/d/n/manifests/evil\\nname.json".into(),
            reason: SkipReason::NotAKey,
        }];
        for skipped in [vec![], skipped] {
            let mut before = json!({ "dry": true, "removed": removed });
            if !skipped.is_empty() {
                before["skippedObjects"] = skipped
                    .iter()
                    .map(|entry| json!({"key": entry.name, "reason": entry.reason.to_string()}))
                    .collect();
            }
            let typed = RemoveBackupResponse {
                dry: true,
                removed: removed.clone(),
                skipped_objects: skipped_objects(&skipped),
            };
            let written = serde_json::to_string(&typed).unwrap();
            assert_eq!(written, serde_json::to_string(&before).unwrap());
            let read: RemoveBackupResponse = serde_json::from_str(&written).unwrap();
            assert_eq!(read, typed);
        }
    }
}
