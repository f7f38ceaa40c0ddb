//! `remove-backup`: removes backups from a node's storage, or with `globalRequest` from every node's prefix
//! ([`crate::cluster::remove`]); the removal itself is [`crate::removal`]'s, which never deletes an object that
//! another of the node's manifests still refers to. Beyond Esop: `keepLast` and `snapshotTag` (retention of one
//! tag's backups), `dryRun` for `dry`, and backups that stay whatever the selection: the newest, and those an
//! unfinished `restore` or `verify` reads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::list::open_node_storage;
use crate::decode::{self, HumanDuration};
use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::operation_store::OperationFilter;
use crate::removal::{
    self, KeptBackup, Reader, ReaderSchema, RemovalPlan, RemovedBackup, Topology,
};
use crate::storage::remote::skipped_objects;
use crate::storage::request::{self as storage, Connection, StorageFields, StorageRequest};
use crate::storage::skipped::SkippedObject;
use crate::validation::Violations;

/// What `remove-backup` answers: the backups removed (or, `dry`, that would be), from every node with
/// `globalRequest`; only when there are some, the backups the selection took but that stay (`kept`, each with
/// why), and the objects a listing passed over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoveBackupResponse {
    pub dry: bool,
    pub removed: Vec<RemovedBackup>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<KeptBackup>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_objects: Vec<SkippedObject>,
}

/// Esop's `RemoveBackupRequest`: exactly one of `backupName`, `removeOldest`, and `olderThan` and/or `keepLast`.
pub type RemoveBackupRequest = StorageRequest<RemoveBackupFields>;

/// The operation types whose unfinished operations read a backup named by their `snapshotTag`.
const READING_TYPES: [&str; 2] = ["restore", "verify"];

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
    /// Every backup but the this many newest; with `olderThan`, a backup goes when either takes it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "decode::option_i32"
    )]
    pub keep_last: Option<i32>,
    /// `removeOldest`, `olderThan` and `keepLast` choose among the backups of this tag only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_tag: Option<String>,
    /// Only report what would be removed (also read as `dryRun`; echoed as `dry`).
    #[serde(default, alias = "dryRun", deserialize_with = "decode::bool")]
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
        // The choices, each with the fields that make it; olderThan and keepLast make one together.
        let given: Vec<&str> = [
            ("backupName", self.backup_name.is_some()),
            ("removeOldest", self.remove_oldest),
            ("olderThan", older_than),
            ("keepLast", self.keep_last.is_some()),
        ]
        .into_iter()
        .filter_map(|(field, given)| given.then_some(field))
        .collect();
        fn choice(field: &str) -> &str {
            match field {
                "keepLast" => "olderThan",
                other => other,
            }
        }
        match given.first() {
            None => violations.add("backupName", ONE_CHOICE),
            Some(first) => {
                for field in &given[1..] {
                    if choice(field) != choice(first) {
                        violations.add(*field, format!("cannot go with {first}: {ONE_CHOICE}"));
                    }
                }
            }
        }
        if let Some(name) = &self.backup_name
            && (name.is_empty() || name.contains('/'))
        {
            violations.add("backupName", format!("'{name}' is not a backup name"));
        }
        if let Some(keep) = self.keep_last
            && keep < 1
        {
            violations.add("keepLast", format!("must be 1 or more, got {keep}"));
        }
        if let Some(tag) = &self.snapshot_tag {
            if tag.is_empty() || tag.contains('/') {
                violations.add("snapshotTag", format!("'{tag}' is not a backup tag"));
            } else if self.backup_name.is_some() {
                violations.add(
                    "snapshotTag",
                    "chooses among the backups for removeOldest, olderThan and keepLast; backupName names one \
                     already",
                );
            }
        }
    }
}

const ONE_CHOICE: &str = "give exactly one of backupName, removeOldest and olderThan/keepLast (olderThan and \
                          keepLast may go together: a backup then goes when either takes it)";

impl RemoveBackupFields {
    /// Which backups the removal engine removes for this request; `readers` are the unfinished operations that
    /// read backups, whose backups stay.
    pub fn plan(&self, readers: Vec<Reader>) -> RemovalPlan {
        RemovalPlan {
            backup_name: self.backup_name.clone(),
            remove_oldest: self.remove_oldest,
            older_than: self.older_than.map(|age| age.0),
            keep_last: self.keep_last.and_then(|keep| usize::try_from(keep).ok()),
            snapshot_tag: self.snapshot_tag.clone(),
            readers,
            dry: self.dry,
        }
    }
}

/// The unfinished `restore` and `verify` operations but this one, cluster-wide ones included: this sidecar's, and
/// with a shared store (etcd) every sidecar's; each with the `snapshotTag` it reads.
fn readers(context: &OperationContext) -> Vec<Reader> {
    let mut unfinished: BTreeMap<uuid::Uuid, _> = context
        .services()
        .store
        .list(&OperationFilter::unfinished())
        .into_iter()
        .chain(context.other_unfinished_operations())
        .filter(|record| record.id() != context.id())
        .map(|record| (record.id(), record))
        .collect();
    unfinished.retain(|_, record| READING_TYPES.contains(&record.type_id()));
    unfinished
        .into_values()
        .filter_map(|record| {
            let read: ReadBackup =
                serde_json::from_value(serde_json::Value::Object(record.request().clone())).ok()?;
            let schema = match (read.exact_schema_version, read.schema_version) {
                (false, _) => ReaderSchema::Any,
                (true, Some(version)) => ReaderSchema::Exact(version),
                (true, None) => ReaderSchema::Own,
            };
            Some(Reader {
                operation: record.id(),
                type_id: record.type_id().to_string(),
                snapshot_tag: read.snapshot_tag,
                schema,
                global: read.global_request,
            })
        })
        .collect()
}

/// What of a reading operation's request chooses its backup, as restore and verify choose it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReadBackup {
    snapshot_tag: String,
    /// A restore's: only among the backups of one schema version, `schemaVersion` or the node's own.
    #[serde(default, deserialize_with = "decode::bool")]
    exact_schema_version: bool,
    #[serde(default)]
    schema_version: Option<String>,
    #[serde(default, deserialize_with = "decode::bool")]
    global_request: bool,
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
        let plan = request.plan(readers(&context));
        if request.global_request {
            let removal =
                crate::cluster::remove::remove(&connection, &plan, request.resolve_nodes, &context)
                    .await?;
            return context.respond(&RemoveBackupResponse {
                dry: request.dry,
                removed: removal.removed,
                kept: removal.kept,
                skipped_objects: Vec::new(),
            });
        }
        let remote = open_node_storage(&context, &connection, request.resolve_nodes).await?;
        let removal = crate::operation_store::releasing_memory(removal::remove_from_node(
            &context,
            &remote,
            &plan,
            Topology::Delete,
        ))
        .await?;
        context.respond(&RemoveBackupResponse {
            dry: request.dry,
            removed: removal.removed,
            kept: removal.kept,
            skipped_objects: skipped_objects(&removal.skipped),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::decode::DecodeRequest;
    use crate::storage::skipped::{SkipReason, SkippedEntry};
    use crate::validation::Validate;

    const NODE: &str = "s3://bucket/c/dc1/n1";

    /// The fields a body's violations name, in order; the request too when it decodes.
    fn violations(mut body: serde_json::Value) -> (Vec<String>, RemoveBackupRequest) {
        body["storageLocation"] = NODE.into();
        let request = RemoveBackupRequest::decode_request(body).unwrap();
        let mut violations = Violations::default();
        request.validate(&mut violations);
        let fields = violations
            .into_vec()
            .into_iter()
            .map(|violation| violation.field)
            .collect();
        (fields, request)
    }

    #[test]
    fn choices_are_validated_naming_the_field() {
        for (body, fields) in [
            (json!({}), vec!["backupName"]),
            (json!({"keepLast": 0}), vec!["keepLast"]),
            (json!({"keepLast": -3}), vec!["keepLast"]),
            (
                json!({"backupName": "b-s-1", "keepLast": 2}),
                vec!["keepLast"],
            ),
            (
                json!({"removeOldest": true, "olderThan": "1d"}),
                vec!["olderThan"],
            ),
            (
                json!({"removeOldest": true, "keepLast": 1, "olderThan": "1d"}),
                vec!["olderThan", "keepLast"],
            ),
            (
                json!({"backupName": "b-s-1", "snapshotTag": "daily"}),
                vec!["snapshotTag"],
            ),
            (
                json!({"keepLast": 1, "snapshotTag": ""}),
                vec!["snapshotTag"],
            ),
            (
                json!({"keepLast": 1, "snapshotTag": "a/b"}),
                vec!["snapshotTag"],
            ),
            // Accepted: each choice alone, keepLast with olderThan, a tag with any selection.
            (
                json!({"keepLast": 2, "olderThan": "30d", "snapshotTag": "x"}),
                vec![],
            ),
            (json!({"keepLast": "1"}), vec![]),
            (json!({"removeOldest": true, "snapshotTag": "x"}), vec![]),
            (
                json!({"olderThan": {"value": 0, "unit": "DAYS"}, "keepLast": 1}),
                vec![],
            ),
            (json!({"backupName": "b-s-1"}), vec![]),
        ] {
            assert_eq!(violations(body.clone()).0, fields, "{body}");
        }
    }

    /// `dryRun` is `dry`, echoed as `dry`; the new fields are echoed only when given, and the plan carries them.
    #[test]
    fn dry_run_is_dry_and_the_plan_has_the_retention() {
        let (none, request) = violations(
            json!({"keepLast": 2, "olderThan": "30d", "snapshotTag": "x", "dryRun": true}),
        );
        assert!(none.is_empty());
        assert!(request.fields.dry);
        let echo = serde_json::to_value(&request.fields).unwrap();
        assert_eq!(echo["dry"], true);
        assert_eq!(echo["keepLast"], 2);
        assert_eq!(echo["snapshotTag"], "x");
        assert!(echo.get("dryRun").is_none());
        let reader = Reader {
            operation: uuid::Uuid::nil(),
            type_id: "restore".into(),
            snapshot_tag: "x".into(),
            schema: ReaderSchema::Any,
            global: false,
        };
        let plan = request.fields.plan(vec![reader.clone()]);
        assert_eq!(
            plan,
            RemovalPlan {
                keep_last: Some(2),
                older_than: Some(std::time::Duration::from_secs(30 * 86_400)),
                snapshot_tag: Some("x".into()),
                readers: vec![reader],
                dry: true,
                ..RemovalPlan::default()
            }
        );
        // One field under two names: a body gives one of them, as the API contract says.
        let both = RemoveBackupRequest::decode_request(
            json!({"storageLocation": NODE, "keepLast": 1, "dry": true, "dryRun": true}),
        );
        assert!(both.is_err());
        let (_, plain) = violations(json!({"removeOldest": true}));
        let echo = serde_json::to_value(&plain.fields).unwrap();
        assert!(echo.get("keepLast").is_none() && echo.get("snapshotTag").is_none());
        assert_eq!(echo["dry"], false);
    }

    /// The backups read are those of unfinished restores and verifies, from the store (every sidecar's with etcd)
    /// and this sidecar's own, but this operation's; finished ones and other types read nothing.
    #[tokio::test]
    async fn readers_are_the_unfinished_restores_and_verifies() {
        use std::sync::Arc;

        use crate::operation::Services;
        use crate::operation_store::{InMemoryStore, OperationStore};
        use crate::record::OperationRecord;
        use crate::state::OperationState;
        use tokio_util::sync::CancellationToken;

        let store = Arc::new(InMemoryStore::new());
        let services = Arc::new(Services {
            source: "test-host".into(),
            jmx: crate::JmxConnector::new(Default::default(), tokio::runtime::Handle::current()),
            storage: Default::default(),
            cql: Default::default(),
            peers: Default::default(),
            metrics: Default::default(),
            store: Arc::clone(&store) as Arc<dyn OperationStore>,
            local: Default::default(),
            shutdown_request: CancellationToken::new(),
        });
        let now = chrono::Utc::now();
        let record = |type_id: &'static str, tag: &str, state: OperationState| {
            let mut body = json!({"type": type_id, "snapshotTag": tag});
            // A restore of one schema version (the node's own when none is given), cluster-wide.
            if tag.starts_with("monthly") {
                body["exactSchemaVersion"] = true.into();
                body["globalRequest"] = "true".into();
            } else if tag.starts_with("daily") {
                body["exactSchemaVersion"] = true.into();
                body["schemaVersion"] = "v1".into();
            }
            let record = Arc::new(OperationRecord::new(
                type_id,
                body.as_object().unwrap().clone(),
                CancellationToken::new(),
            ));
            if state != OperationState::Pending {
                record.start(now);
            }
            if state.is_terminal() {
                record.finish(state, now);
            }
            record
        };
        let running_restore = record("restore", "daily-s-1", OperationState::Running);
        let pending_verify = record("verify", "weekly", OperationState::Pending);
        let local_restore = record("restore", "monthly-s-9", OperationState::Running);
        let ignored = [
            record("restore", "done-s-1", OperationState::Completed),
            record("backup", "daily", OperationState::Running),
            record("verify", "failed-s-1", OperationState::Failed),
        ];
        let this = record("remove-backup", "daily", OperationState::Running);
        for stored in [&running_restore, &pending_verify, &this]
            .into_iter()
            .chain(&ignored)
        {
            store.insert(Arc::clone(stored)).await.unwrap();
        }
        // Only in this sidecar's own list (a store that lost it would not hide it), and the running ones twice.
        for local in [&local_restore, &running_restore, &this] {
            services.local.add(Arc::clone(local));
        }
        let context = OperationContext::new(Arc::clone(&this), services);
        let mut found: Vec<(String, String, uuid::Uuid, ReaderSchema, bool)> = readers(&context)
            .into_iter()
            .map(|reader| {
                (
                    reader.type_id,
                    reader.snapshot_tag,
                    reader.operation,
                    reader.schema,
                    reader.global,
                )
            })
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        let mut expected = vec![
            (
                "restore".to_string(),
                "daily-s-1".to_string(),
                running_restore.id(),
                ReaderSchema::Exact("v1".into()),
                false,
            ),
            (
                "restore".to_string(),
                "monthly-s-9".to_string(),
                local_restore.id(),
                ReaderSchema::Own,
                true,
            ),
            (
                "verify".to_string(),
                "weekly".to_string(),
                pending_verify.id(),
                ReaderSchema::Any,
                false,
            ),
        ];
        expected.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        assert_eq!(found, expected);
    }

    /// `kept` is written after `removed`, only when there are some, with the node in a cluster-wide removal.
    #[test]
    fn kept_backups_are_in_the_response() {
        let response = RemoveBackupResponse {
            dry: false,
            removed: vec![],
            kept: vec![KeptBackup {
                name: "daily-s-5".into(),
                reason: "the newest backup of tag daily is never removed by a selection".into(),
                node: Some("c/dc1/n1".into()),
            }],
            skipped_objects: vec![],
        };
        let written = serde_json::to_string(&response).unwrap();
        assert_eq!(
            written,
            r#"{"dry":false,"removed":[],"kept":[{"name":"daily-s-5","reason":"the newest backup of tag daily is never removed by a selection","node":"c/dc1/n1"}]}"#
        );
        assert_eq!(
            serde_json::from_str::<RemoveBackupResponse>(&written).unwrap(),
            response
        );
    }

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
                kept: Vec::new(),
                skipped_objects: skipped_objects(&skipped),
            };
            let written = serde_json::to_string(&typed).unwrap();
            assert_eq!(written, serde_json::to_string(&before).unwrap());
            let read: RemoveBackupResponse = serde_json::from_str(&written).unwrap();
            assert_eq!(read, typed);
        }
    }
}
