//! The removal engine: which of a node's backups go, and deleting them from its storage without ever deleting an
//! object that another of the node's manifests still refers to. `remove-backup` ([`crate::types::remove_backup`])
//! runs it on one node, a cluster-wide removal ([`crate::cluster::remove`]) on every node's prefix.

pub mod manifests;
pub mod selection;

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::esop::manifest::manifest_key;
use crate::operation::{OperationContext, OperationFailure};
use crate::storage::skipped::SkippedEntry;
use crate::storage::{RemoteStorage, StorageError};
pub use selection::{KeptBackup, Reader, ReaderSchema};

/// Which backups go: the one named, the oldest, or those beyond `keep_last` or older than `older_than` (one of
/// these choices; the last two may go together, and a backup goes when either takes it). Except for a named
/// backup, the newest (of `snapshot_tag`) and those `readers` read stay (see [`selection`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemovalPlan {
    /// A manifest name without `.json`.
    pub backup_name: Option<String>,
    pub remove_oldest: bool,
    /// Every backup older than this.
    pub older_than: Option<Duration>,
    /// Every backup but this many newest.
    pub keep_last: Option<usize>,
    /// Choose only among the backups of this tag (`<tag>-<schemaVersion>-<millis>`).
    pub snapshot_tag: Option<String>,
    /// The unfinished operations that read backups, whose backups stay.
    pub readers: Vec<Reader>,
    /// Only report what would be removed.
    pub dry: bool,
}

/// What a removal did on one node: the backups removed (or, dry, that would be), those the selection kept, the
/// names of the node's backups that stay, and the entries of `manifests/` its listing passed over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removal {
    pub removed: Vec<RemovedBackup>,
    pub kept: Vec<KeptBackup>,
    /// Every backup of the node the removal leaves (a cluster-wide removal keeps their topology files).
    pub left: Vec<String>,
    pub skipped: Vec<SkippedEntry>,
}

/// One backup removed (or, dry, that would be) from one node, as the operation's `removed` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemovedBackup {
    /// The manifest's name.
    pub name: String,
    pub removed_objects: usize,
    /// Bytes of the objects deleted.
    pub reclaimed_space: u64,
    /// The node's prefix in the bucket, in a cluster-wide removal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// Whether removing a backup also deletes its topology file (a cluster-wide removal deletes it once, at the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    Delete,
    Keep,
}

/// Removes the backups `plan` selects from one node's storage; returns what was removed and what was kept, and
/// the entries of `manifests/` its listing passed over. A manifest the listing cannot name cannot be read either,
/// so what only it refers to may be deleted with the backups removed.
pub async fn remove_from_node(
    context: &OperationContext,
    remote: &RemoteStorage,
    plan: &RemovalPlan,
    topology: Topology,
) -> Result<Removal, OperationFailure> {
    let (manifests, skipped) = manifests::manifests(context, remote).await?;
    let report = manifests::report_of(remote, &manifests)?;
    let backups: Vec<(&str, i64)> = report
        .reports
        .iter()
        .map(|entry| (entry.name.as_str(), entry.unixtimestamp))
        .collect();
    // A cluster-wide reader takes the backup its topology file names; the files are listed only for one.
    let topology_names = if plan.readers.iter().any(|reader| reader.global) {
        topology_names(context, remote).await?
    } else {
        Vec::new()
    };
    let selected = selection::select(&backups, &topology_names, plan, chrono::Utc::now())
        .map_err(|error| OperationFailure::Failed(format!("{}: {error}", remote.location())))?;
    let chosen_names: BTreeSet<&str> = selected.remove.iter().map(String::as_str).collect();
    // A backup that finished while the manifests were read refers to objects too; it is read just before
    // deleting (a backup still uploading checks its skipped objects again before writing its manifest).
    let known: BTreeSet<&str> = manifests.iter().map(|(name, _, _)| name.as_str()).collect();
    let newer = if plan.dry {
        Vec::new()
    } else {
        manifests::manifests_except(context, remote, &known)
            .await?
            .0
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
            return Err(OperationFailure::context(
                format!("{}: backup {name}", remote.location()),
                error,
            ));
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
        tracing::info!(backup = %name, objects = objects.len(), dry = plan.dry, "removing a backup");
        if !plan.dry {
            // The manifest goes first: a removal cut short then leaves unreferenced objects (reused by a later
            // backup of the same SSTables, or deleted by hand), never a listed backup with files missing.
            context
                .cancellable(remote.delete(&[manifest_key(name)]))
                .await??;
            context
                .cancellable(remote.delete(&objects))
                .await?
                .map_err(|source| {
                    OperationFailure::engine(ObjectsLeft {
                        backup: name.clone(),
                        location: remote.location().to_string(),
                        objects: objects.len(),
                        source,
                    })
                })?;
            if topology == Topology::Delete {
                context
                    .cancellable(remote.delete_in_bucket(&format!("topology/{name}.json")))
                    .await??;
            }
        }
        removed.push(RemovedBackup {
            name: name.clone(),
            removed_objects: objects.len(),
            reclaimed_space: bytes,
            node: None,
        });
    }
    let left = backups
        .iter()
        .map(|(name, _)| name.to_string())
        .filter(|name| !chosen_names.contains(name.as_str()))
        .collect();
    Ok(Removal {
        removed,
        kept: selected.kept,
        left,
        skipped,
    })
}

/// The names of the backups with a topology file at the bucket's root (`topology/<name>.json`).
async fn topology_names(
    context: &OperationContext,
    remote: &RemoteStorage,
) -> Result<Vec<String>, OperationFailure> {
    Ok(context
        .cancellable(remote.list_in_bucket("topology/"))
        .await??
        .iter()
        .filter_map(|key| {
            key.strip_prefix("topology/")?
                .strip_suffix(".json")
                .map(str::to_string)
        })
        .collect())
}

/// A backup whose manifest is deleted while some of its objects could not be: it is gone as a backup, and the
/// objects left are no longer referenced by any.
#[derive(Debug, thiserror::Error)]
#[error(
    "backup {backup} is removed from {location} but not all of its {objects} objects are deleted: {source}; they \
     are no longer referenced by any backup"
)]
struct ObjectsLeft {
    backup: String,
    location: String,
    objects: usize,
    source: StorageError,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_left_behind_read_as_before_and_keep_the_storage_error() {
        let storage = || StorageError::Configuration {
            store: "s3://bucket".into(),
            message: "throttled".into(),
        };
        let failure = OperationFailure::engine(ObjectsLeft {
            backup: "daily-1".into(),
            location: "s3://bucket/c/dc1/n1".into(),
            objects: 3,
            source: storage(),
        });
        assert_eq!(
            failure.to_string(),
            format!(
                "backup daily-1 is removed from s3://bucket/c/dc1/n1 but not all of its 3 objects are deleted: \
                 {}; they are no longer referenced by any backup",
                storage()
            )
        );
        let left = std::error::Error::source(&failure).expect("the error");
        let cause = left.source().expect("the storage error");
        assert!(cause.downcast_ref::<StorageError>().is_some(), "{cause:?}");
    }

    /// The entries of `removed` keep their JSON: the node's prefix last, and only in a cluster-wide removal.
    #[test]
    fn removed_backups_are_written_as_before() {
        let mut removed = RemovedBackup {
            name: "daily-1".into(),
            removed_objects: 3,
            reclaimed_space: 1024,
            node: None,
        };
        let text = serde_json::to_string(&removed).unwrap();
        assert_eq!(
            text,
            r#"{"name":"daily-1","removedObjects":3,"reclaimedSpace":1024}"#
        );
        assert_eq!(
            serde_json::from_str::<RemovedBackup>(&text).unwrap(),
            removed
        );
        removed.node = Some("c/dc1/n1".into());
        assert_eq!(
            serde_json::to_string(&removed).unwrap(),
            r#"{"name":"daily-1","removedObjects":3,"reclaimedSpace":1024,"node":"c/dc1/n1"}"#
        );
    }
}
