//! `list` and `remove-backup`: a node's backups as the bucket holds them. Both read the manifests straight from the
//! bucket (Esop reads a local cache that only `list` fills), and removal never deletes an object that another of
//! the node's manifests still refers to.

use serde::{Deserialize, Serialize};

use crate::decode::{self, HumanDuration};
use std::collections::{BTreeSet, HashSet};

use crate::esop::manifest::{Manifest, manifest_key};
use crate::esop::report::{AllManifestsReport, ManifestReport};
use crate::node_storage::{self, BucketCheck, NodePath};
use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::storage::RemoteStorage;
use crate::storage::remote::skipped_json;
use crate::storage::request::{self as storage, Connection, StorageFields, StorageRequest};
use crate::storage::skipped::SkippedEntry;
use crate::validation::Violations;

/// Esop's `ListOperationRequest`. The printing options of the Esop CLI (`json`, `humanUnits`, `toFile`, ...) are
/// accepted and echoed; the report is always in the operation's `response`.
pub type ListRequest = StorageRequest<ListFields>;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListFields {
    /// Fill an incomplete location with this node's cluster, data centre and host id.
    #[serde(default, deserialize_with = "decode::bool")]
    pub resolve_nodes: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub to_request: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub json: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub human_units: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub simple_format: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_file: Option<String>,
    /// Only backups taken at or before this instant (epoch millis).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "decode::option_i64"
    )]
    pub from_timestamp: Option<i64>,
    /// Only the N oldest of those.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "decode::option_i32"
    )]
    pub last_n: Option<i32>,
    #[serde(default, deserialize_with = "decode::bool")]
    pub skip_download: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<String>,
}

impl StorageFields for ListFields {
    fn validate(&self, connection: &Connection, violations: &mut Violations) {
        storage::node_location(
            violations,
            connection,
            Some(("resolveNodes", self.resolve_nodes)),
        );
        if let Some(n) = self.last_n
            && n < 1
        {
            violations.add("lastN", format!("must be 1 or more, got {n}"));
        }
    }
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

/// The node's storage, the location completed from Cassandra when asked.
async fn open_node_storage(
    context: &OperationContext,
    connection: &Connection,
    resolve_nodes: bool,
) -> Result<RemoteStorage, OperationFailure> {
    let node_path = if resolve_nodes {
        NodePath::FromCassandra
    } else {
        NodePath::AsGiven
    };
    node_storage::open(
        context,
        connection,
        node_path,
        BucketCheck::of(connection, false),
    )
    .await
}

/// A node's manifests as read from the bucket: (name, manifest object size, manifest) each.
type Manifests = Vec<(String, u64, Manifest)>;

/// Every manifest of the node, read from the bucket, and the entries of `manifests/` the listing passed over.
async fn manifests(
    context: &OperationContext,
    remote: &RemoteStorage,
) -> Result<(Manifests, Vec<SkippedEntry>), OperationFailure> {
    manifests_except(context, remote, &BTreeSet::new()).await
}

/// The node's manifests but those named in `known`, and the entries the listing passed over.
async fn manifests_except(
    context: &OperationContext,
    remote: &RemoteStorage,
    known: &BTreeSet<&str>,
) -> Result<(Manifests, Vec<SkippedEntry>), OperationFailure> {
    let listing = context
        .cancellable(remote.list_reporting("manifests/"))
        .await??;
    let mut manifests = Vec::new();
    for object in listing.objects {
        let Some(name) = object
            .key
            .strip_prefix("manifests/")
            .and_then(|name| name.strip_suffix(".json"))
            .filter(|name| !known.contains(name))
        else {
            continue;
        };
        let manifest =
            crate::restore::choice::read_manifest(context, remote, &object.key, Some(object.size))
                .await?;
        manifests.push((name.to_string(), object.size, manifest));
    }
    Ok((manifests, listing.skipped))
}

/// Esop's report over the node's manifests.
fn report_of(
    remote: &RemoteStorage,
    manifests: &[(String, u64, Manifest)],
) -> Result<AllManifestsReport, OperationFailure> {
    AllManifestsReport::compute(manifests)
        .map_err(|error| OperationFailure::Failed(format!("{}: {error}", remote.location())))
}

pub struct List;

impl Operation for List {
    const TYPE: &'static str = "list";
    type Request = ListRequest;

    async fn run(
        &self,
        request: ListRequest,
        context: OperationContext,
    ) -> Result<(), OperationFailure> {
        let StorageRequest {
            connection,
            fields: request,
        } = request;
        let remote = open_node_storage(&context, &connection, request.resolve_nodes).await?;
        let (mut report, skipped) = crate::operation_store::releasing_memory(async {
            let (manifests, skipped) = manifests(&context, &remote).await?;
            Ok::<_, OperationFailure>((report_of(&remote, &manifests)?, skipped))
        })
        .await?;
        if let Some(until) = request.from_timestamp {
            report.retain_up_to(until);
        }
        if let Some(n) = request.last_n {
            report.retain_oldest(usize::try_from(n).unwrap_or(0));
        }
        let mut response = serde_json::to_value(&report).map_err(|error| {
            OperationFailure::Failed(format!("cannot describe the backups: {error}"))
        })?;
        // Beside Esop's report, only when there is something to say.
        if !skipped.is_empty() {
            response["skippedObjects"] = skipped_json(&skipped);
        }
        context.set_response(response);
        Ok(())
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
            let removed = crate::cluster::remove::remove(&connection, &request, &context).await?;
            context.set_response(serde_json::json!({ "dry": request.dry, "removed": removed }));
            return Ok(());
        }
        let remote = open_node_storage(&context, &connection, request.resolve_nodes).await?;
        let (removed, skipped) = crate::operation_store::releasing_memory(remove_reporting(
            &context,
            &remote,
            &request,
            Topology::Delete,
        ))
        .await?;
        let mut response = serde_json::json!({ "dry": request.dry, "removed": removed });
        if !skipped.is_empty() {
            response["skippedObjects"] = skipped_json(&skipped);
        }
        context.set_response(response);
        Ok(())
    }
}

/// Whether removing a backup also deletes its topology file (a cluster-wide removal deletes it once, at the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    Delete,
    Keep,
}

/// Removes the backups `request` selects from one node's storage; returns what was removed, one JSON object per
/// backup (`name`, `removedObjects`, `reclaimedSpace`).
pub async fn remove_from_node(
    context: &OperationContext,
    remote: &RemoteStorage,
    request: &RemoveBackupFields,
    topology: Topology,
) -> Result<Vec<serde_json::Value>, OperationFailure> {
    Ok(remove_reporting(context, remote, request, topology)
        .await?
        .0)
}

/// [`remove_from_node`], and the entries of `manifests/` its listing passed over. A manifest the listing cannot
/// name cannot be read either, so what only it refers to may be deleted with the backups removed.
async fn remove_reporting(
    context: &OperationContext,
    remote: &RemoteStorage,
    request: &RemoveBackupFields,
    topology: Topology,
) -> Result<(Vec<serde_json::Value>, Vec<SkippedEntry>), OperationFailure> {
    let (manifests, skipped) = manifests(context, remote).await?;
    let report = report_of(remote, &manifests)?;
    let chosen: Vec<&ManifestReport> = if let Some(name) = &request.backup_name {
        let found = report.get(name).ok_or_else(|| {
            OperationFailure::Failed(format!("{}: no backup named {name}", remote.location()))
        })?;
        vec![found]
    } else if request.remove_oldest {
        report.oldest().into_iter().collect()
    } else {
        let age = request.older_than.map(|d| d.0).unwrap_or_default();
        // An age reaching back before the calendar's start leaves nothing older.
        let cutoff = chrono::Duration::from_std(age)
            .ok()
            .and_then(|age| chrono::Utc::now().checked_sub_signed(age));
        cutoff.map_or_else(Vec::new, |cutoff| {
            report.older_than(cutoff.timestamp_millis())
        })
    };
    let chosen_names: BTreeSet<&str> = chosen.iter().map(|entry| entry.name.as_str()).collect();
    // A backup that finished while the manifests were read refers to objects too; it is read just before
    // deleting (a backup still uploading checks its skipped objects again before writing its manifest).
    let known: BTreeSet<&str> = manifests.iter().map(|(name, _, _)| name.as_str()).collect();
    let newer = if request.dry {
        Vec::new()
    } else {
        manifests_except(context, remote, &known).await?.0
    };
    // What the backups that stay refer to is kept, even when several removed backups shared it (Esop counts
    // each removed backup against all the others, and so never deletes objects only they shared).
    let kept: HashSet<&str> = manifests
        .iter()
        .chain(&newer)
        .filter(|(name, _, _)| !chosen_names.contains(name.as_str()))
        .flat_map(|(_, _, manifest)| manifest.entries().map(|entry| entry.object_key.as_str()))
        .collect();
    // Keys come from the bucket: every object about to go must be one a backup writes, or nothing is deleted.
    for (name, _, manifest) in manifests
        .iter()
        .filter(|(name, _, _)| chosen_names.contains(name.as_str()))
    {
        if let Some(error) = manifest
            .entries()
            .find_map(|entry| crate::restore::tables::check_entry_key(entry).err())
        {
            return Err(OperationFailure::Failed(format!(
                "{}: backup {name}: {error}",
                remote.location()
            )));
        }
    }
    let mut deleted: HashSet<&str> = HashSet::new();
    let mut removed = Vec::new();
    for (name, _, manifest) in manifests
        .iter()
        .filter(|(name, _, _)| chosen_names.contains(name.as_str()))
    {
        let mut objects = Vec::new();
        let mut bytes = 0;
        for entry in manifest.entries() {
            let key = entry.object_key.as_str();
            if !kept.contains(key) && deleted.insert(key) {
                objects.push(key.to_string());
                bytes = u64::saturating_add(bytes, entry.size);
            }
        }
        tracing::info!(backup = %name, objects = objects.len(), dry = request.dry, "removing a backup");
        if !request.dry {
            // The manifest goes first: a removal cut short then leaves unreferenced objects (reused by a later
            // backup of the same SSTables, or deleted by hand), never a listed backup with files missing.
            context
                .cancellable(remote.delete(&[manifest_key(name)]))
                .await??;
            context
                    .cancellable(remote.delete(&objects))
                    .await?
                    .map_err(|error| {
                        OperationFailure::Failed(format!(
                            "backup {name} is removed from {} but not all of its {} objects are deleted: \
                             {error}; they are no longer referenced by any backup",
                            remote.location(),
                            objects.len()
                        ))
                    })?;
            if topology == Topology::Delete {
                context
                    .cancellable(remote.delete_in_bucket(&format!("topology/{name}.json")))
                    .await??;
            }
        }
        removed.push(serde_json::json!({
            "name": name,
            "removedObjects": objects.len(),
            "reclaimedSpace": bytes,
        }));
    }
    Ok((removed, skipped))
}
