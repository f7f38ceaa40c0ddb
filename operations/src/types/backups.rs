//! `list` and `remove-backup`: a node's backups as the bucket holds them. Both read the manifests straight from the
//! bucket (Esop reads a local cache that only `list` fills), and removal never deletes an object that another of
//! the node's manifests still refers to.

use serde::{Deserialize, Serialize};

use crate::backup::run::node_location;
use crate::decode::{self, HumanDuration};
use std::collections::{BTreeSet, HashSet};

use crate::esop::manifest::{Manifest, manifest_key};
use crate::esop::report::{AllManifestsReport, ManifestReport};
use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::storage::request::{self as storage, ProxySettings, Retry};
use crate::storage::{RemoteStorage, StorageLocation, StorageOptions};
use crate::validation::{Validate, Violations};

/// Esop's `ListOperationRequest`. The printing options of the Esop CLI (`json`, `humanUnits`, `toFile`, ...) are
/// accepted and echoed; the report is always in the operation's `response`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_location: Option<String>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_timestamp: Option<i64>,
    /// Only the N oldest of those.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_n: Option<i32>,
    #[serde(default, deserialize_with = "decode::bool")]
    pub skip_download: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<String>,
    #[serde(default, deserialize_with = "decode::bool")]
    pub insecure: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub skip_bucket_verification: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_settings: Option<ProxySettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
}

impl Validate for ListRequest {
    fn validate(&self, violations: &mut Violations) {
        node_location_field(violations, &self.storage_location, self.resolve_nodes);
        if let Some(n) = self.last_n
            && n < 1
        {
            violations.add("lastN", format!("must be 1 or more, got {n}"));
        }
        storage::proxy_and_retry(violations, &self.proxy_settings, &self.retry);
    }
}

/// Esop's `RemoveBackupRequest`: exactly one of `backupName`, `removeOldest`, `olderThan`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoveBackupRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_location: Option<String>,
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
    #[serde(default, deserialize_with = "decode::bool")]
    pub insecure: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub skip_bucket_verification: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_settings: Option<ProxySettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
}

impl Validate for RemoveBackupRequest {
    fn validate(&self, violations: &mut Violations) {
        node_location_field(violations, &self.storage_location, self.resolve_nodes);
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
        storage::proxy_and_retry(violations, &self.proxy_settings, &self.retry);
    }
}

/// A location that names the node, or `resolveNodes` to complete it from Cassandra.
fn node_location_field(violations: &mut Violations, location: &Option<String>, resolve: bool) {
    storage::storage_location(violations, location);
    if let Some(text) = location
        && let Ok(parsed) = StorageLocation::parse(text)
        && parsed.node_path.is_none()
        && !resolve
    {
        violations.add(
            "storageLocation",
            "must name the node (PROTOCOL://BUCKET/CLUSTER/DC/NODE) unless resolveNodes is true",
        );
    }
}

/// The node's storage, the location completed from Cassandra when asked.
async fn open_node_storage(
    context: &OperationContext,
    location: &Option<String>,
    resolve_nodes: bool,
    proxy: Option<&ProxySettings>,
    insecure: bool,
    verify_bucket: bool,
) -> Result<RemoteStorage, OperationFailure> {
    let mut location = StorageLocation::parse(location.as_deref().unwrap_or_default())
        .map_err(OperationFailure::Failed)?;
    if location.node_path.is_none() && resolve_nodes {
        let cassandra = context.cassandra().await?;
        location = context
            .cancellable(node_location(&cassandra, &location))
            .await??;
    }
    let options = StorageOptions::of_request(proxy, insecure);
    let store = context.storage_settings().open(&location, &options)?;
    let remote = RemoteStorage::new(store, location)?;
    if verify_bucket {
        context.cancellable(remote.check_bucket()).await??;
    }
    Ok(remote)
}

/// Every manifest of the node, read from the bucket: (name, manifest object size, manifest).
async fn manifests(
    context: &OperationContext,
    remote: &RemoteStorage,
) -> Result<Vec<(String, u64, Manifest)>, OperationFailure> {
    manifests_except(context, remote, &BTreeSet::new()).await
}

/// The node's manifests but those named in `known`.
async fn manifests_except(
    context: &OperationContext,
    remote: &RemoteStorage,
    known: &BTreeSet<&str>,
) -> Result<Vec<(String, u64, Manifest)>, OperationFailure> {
    let objects = context.cancellable(remote.list("manifests/")).await??;
    let mut manifests = Vec::new();
    for object in objects {
        let Some(name) = object
            .key
            .strip_prefix("manifests/")
            .and_then(|name| name.strip_suffix(".json"))
            .filter(|name| !known.contains(name))
        else {
            continue;
        };
        let bytes = context.cancellable(remote.get(&object.key)).await??;
        let manifest = Manifest::from_json(&bytes).map_err(|error| {
            OperationFailure::Failed(format!(
                "{}/{}: not a backup manifest: {error}",
                remote.location(),
                object.key
            ))
        })?;
        manifests.push((name.to_string(), object.size, manifest));
    }
    Ok(manifests)
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
        let remote = open_node_storage(
            &context,
            &request.storage_location,
            request.resolve_nodes,
            request.proxy_settings.as_ref(),
            request.insecure,
            !request.skip_bucket_verification,
        )
        .await?;
        let manifests = manifests(&context, &remote).await?;
        let mut report = report_of(&remote, &manifests)?;
        if let Some(until) = request.from_timestamp {
            report.retain_up_to(until);
        }
        if let Some(n) = request.last_n {
            report.retain_oldest(usize::try_from(n).unwrap_or(0));
        }
        context.set_response(serde_json::to_value(&report).map_err(|error| {
            OperationFailure::Failed(format!("cannot describe the backups: {error}"))
        })?);
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
        if request.global_request {
            return Err(OperationFailure::NotYetAvailable {
                operation: Self::TYPE,
                missing: "removing the backups of every node (globalRequest) is still to come; remove each node's"
                    .into(),
            });
        }
        let remote = open_node_storage(
            &context,
            &request.storage_location,
            request.resolve_nodes,
            request.proxy_settings.as_ref(),
            request.insecure,
            !request.skip_bucket_verification,
        )
        .await?;
        let manifests = manifests(&context, &remote).await?;
        let report = report_of(&remote, &manifests)?;
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
            manifests_except(&context, &remote, &known).await?
        };
        // What the backups that stay refer to is kept, even when several removed backups shared it (Esop counts
        // each removed backup against all the others, and so never deletes objects only they shared).
        let kept: HashSet<&str> = manifests
            .iter()
            .chain(&newer)
            .filter(|(name, _, _)| !chosen_names.contains(name.as_str()))
            .flat_map(|(_, _, manifest)| manifest.entries().map(|entry| entry.object_key.as_str()))
            .collect();
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
                    bytes += entry.size;
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
                context
                    .cancellable(remote.delete_in_bucket(&format!("topology/{name}.json")))
                    .await??;
            }
            removed.push(serde_json::json!({
                "name": name,
                "removedObjects": objects.len(),
                "reclaimedSpace": bytes,
            }));
        }
        context.set_response(serde_json::json!({ "dry": request.dry, "removed": removed }));
        Ok(())
    }
}
