//! One node's backup, start to end (Esop's single-node flow): resolve where and under which tag, snapshot, upload
//! what the bucket lacks, write the manifest last, and clear the snapshot whatever happened.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::manifest_builder;
use super::snapshot_files::{self, SnapshotTable};
use super::upload::{self, PlannedFile, UploadSettings};
use crate::cassandra::Cassandra;
use crate::cassandra::topology::{ClusterTopology, cluster_topology};
use crate::decode::{DataRate, HumanDuration};
use crate::esop::json::to_jackson_pretty;
use crate::esop::sstable;
use crate::esop::tag::resolved_tag;
use crate::operation::{OperationContext, OperationFailure};
use crate::storage::transfer::RetryPolicy;
use crate::storage::transfer::hashes::HashCache;
use crate::storage::{Entities, RemoteStorage, Throttle};

use crate::storage::transfer::hashes::HashAlgorithm;

/// A backup in the engine's own terms: what to snapshot, under which tag, and how to upload it.
#[derive(Debug, Clone)]
pub struct BackupPlan {
    pub entities: Entities,
    /// None: the data directories Cassandra reports.
    pub data_dirs: Option<Vec<PathBuf>>,
    /// The tag asked for (see [`resolved_tag`]); None: one generated now.
    pub tag: Option<String>,
    /// The tag was generated at submit, not given by the client.
    pub tag_generated: bool,
    /// None: the node's current schema version.
    pub schema_version: Option<String>,
    pub upload_topology: bool,
    pub concurrency: usize,
    pub retry: RetryPolicy,
    /// Esop's throttle: at most `bandwidth`, at least what finishes within `duration`.
    pub bandwidth: Option<DataRate>,
    pub duration: Option<HumanDuration>,
    pub algorithm: HashAlgorithm,
}

/// What a node's backup did: the operation's `response`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupResponse {
    /// The backup's name, which its manifest has.
    pub snapshot_tag: String,
    pub storage_location: String,
    /// The manifest's key in the bucket.
    pub manifest: String,
    pub stats: upload::UploadStats,
}

/// Runs the backup of this node into `remote`; returns what it did, for the operation's `response`.
pub async fn backup(
    plan: &BackupPlan,
    remote: &RemoteStorage,
    cassandra: &Cassandra,
    context: &OperationContext,
) -> Result<BackupResponse, OperationFailure> {
    context
        .cancellable(require_entities(cassandra, &plan.entities))
        .await??;
    let schema_version = match &plan.schema_version {
        Some(version) => version.clone(),
        None => context.cancellable(cassandra.schema_version()).await??,
    };
    let tag = resolved_tag(
        plan.tag.as_deref(),
        plan.tag_generated,
        &schema_version,
        chrono::Utc::now(),
    );
    let mut tokens = context.cancellable(cassandra.tokens()).await??;
    tokens.sort();
    let data_dirs: Vec<PathBuf> = match &plan.data_dirs {
        Some(dirs) => dirs.clone(),
        None => context
            .cancellable(cassandra.data_file_locations())
            .await??
            .into_iter()
            .map(PathBuf::from)
            .collect(),
    };

    // A tag given in full (`name-schema-millis`) can name a backup made before: refuse rather than replace it.
    let manifest_key = crate::esop::manifest::manifest_key(&tag);
    if context
        .cancellable(remote.size_of(&manifest_key))
        .await??
        .is_some()
    {
        return Err(OperationFailure::Failed(format!(
            "a backup named {tag} exists already in {}; choose another snapshotTag",
            remote.location()
        )));
    }

    tracing::info!(%tag, location = %remote.location(), "taking the snapshot");
    // Not cancellable, like the clearing below: a snapshot taken is always cleared, even one that failed half-way.
    let uploaded = match cassandra
        .take_snapshot(&tag, &plan.entities.to_list(), None, false)
        .await
    {
        Ok(()) => {
            upload_snapshot(
                plan,
                context,
                cassandra,
                remote,
                &data_dirs,
                &tag,
                &schema_version,
                tokens,
            )
            .await
        }
        // Cassandra checks every table for the tag before taking anything: the snapshot there is someone else's.
        Err(error) if error.to_string().contains("already exists") => {
            return Err(OperationFailure::engine(SnapshotTagTaken {
                tag,
                source: error,
            }));
        }
        Err(error) => Err(error.into()),
    };
    // Not cancellable: a cancelled backup must not leave its snapshot behind either.
    match cassandra.clear_snapshot(&tag, &[]).await {
        Ok(()) => {}
        Err(error) if error.is_connection_problem() => {
            tracing::warn!(%tag, %error, "Cassandra does not answer: the backup's snapshot is cleared once it does");
            tokio::spawn(super::interrupted::clear_when_back(
                context.services(),
                vec![tag.clone()],
            ));
        }
        // The backup itself is good; failing it would hide a usable manifest from clients.
        Err(error) => {
            tracing::warn!(%tag, %error, "could not clear the backup's snapshot; clear it with clear-snapshot")
        }
    }
    uploaded
}

#[allow(clippy::too_many_arguments)]
async fn upload_snapshot(
    plan: &BackupPlan,
    context: &OperationContext,
    cassandra: &Cassandra,
    remote: &RemoteStorage,
    data_dirs: &[PathBuf],
    tag: &str,
    schema_version: &str,
    tokens: Vec<String>,
) -> Result<BackupResponse, OperationFailure> {
    let tables = {
        let (dirs, wanted) = (data_dirs.to_vec(), tag.to_string());
        tokio::task::spawn_blocking(move || snapshot_files::find(&dirs, &wanted))
            .await?
            .map_err(|error| {
                OperationFailure::context(
                    format!("cannot read the snapshot {tag} in {data_dirs:?}"),
                    error,
                )
            })?
    };
    if tables.is_empty() {
        return Err(OperationFailure::Failed(format!(
            "snapshot {tag} holds no tables in the data directories {data_dirs:?}; are these Cassandra's \
             data directories (dataDirs)?"
        )));
    }
    let planned = plan_uploads(&tables).await?;
    let total_size: u64 = tables.iter().map(SnapshotTable::size).sum();
    let settings = UploadSettings {
        concurrency: plan.concurrency,
        retry: plan.retry,
        throttle: Throttle::new(upload::rate(plan.bandwidth, plan.duration, total_size)),
        algorithm: plan.algorithm,
    };
    let storage = context.storage_settings();
    let cache = Mutex::new(HashCache::load(
        storage.cache_dir.as_deref(),
        plan.algorithm,
    ));
    let reporter = context.progress();
    let progress: upload::Progress = Arc::new(move |done, total| reporter.units(done, total));
    let result = upload::upload(
        remote,
        planned,
        &settings,
        &cache,
        progress,
        context.cancellation(),
    )
    .await;
    // Hashes learnt are good even when the upload failed: a rerun need not read those files again.
    if let Err(error) = cache.into_inner().unwrap_or_else(|e| e.into_inner()).save() {
        tracing::warn!(%error, "could not save the backup hash cache");
    }
    let (stored, stats) = result?;
    stats.record(context);

    let manifest = manifest_builder::build(&tables, &stored, tag, schema_version, tokens).to_json();
    let manifest_key = crate::esop::manifest::manifest_key(tag);
    context
        .cancellable(remote.put(&manifest_key, manifest.into()))
        .await??;
    if plan.upload_topology {
        let topology = context.cancellable(cluster_topology(cassandra)).await??;
        upload_topology(context, remote, &topology, tag).await?;
    }
    tracing::info!(%tag, files = stats.files, uploaded = stats.uploaded_files, "backup complete");
    Ok(BackupResponse {
        snapshot_tag: tag.to_string(),
        storage_location: remote.location().to_string(),
        manifest: format!(
            "{}/{manifest_key}",
            remote.location().node_prefix().unwrap_or_default()
        ),
        stats,
    })
}

/// Each snapshot file with its Esop object key; digests are read from disk, off the async workers.
async fn plan_uploads(tables: &[SnapshotTable]) -> Result<Vec<PlannedFile>, OperationFailure> {
    let tables = tables.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut digests = std::collections::HashMap::new();
        let mut planned = Vec::new();
        for table in &tables {
            for file in &table.files {
                let dir = file
                    .path
                    .parent()
                    .unwrap_or(&table.snapshot_dir)
                    .to_path_buf();
                let prefix = file.name.prefix().to_string();
                let digest = match digests.get(&(dir.clone(), prefix.clone())) {
                    Some(digest) => Clone::clone(digest),
                    None => {
                        let digest = sstable::sstable_digest(&dir, &prefix).map_err(|error| {
                            let context =
                                format!("cannot read the digest of {}/{prefix}", dir.display());
                            OperationFailure::context(context, error)
                        })?;
                        digests.insert((dir, prefix), digest.clone());
                        digest
                    }
                };
                let key = sstable::object_key(
                    &table.keyspace,
                    &table.table_dir,
                    file.index_dir.as_deref(),
                    &format!("{}-{digest}", file.name.generation()),
                    &file.file_name,
                );
                planned.push(PlannedFile {
                    file: file.local(),
                    key,
                });
            }
        }
        Ok::<_, OperationFailure>(planned)
    })
    .await?
}

/// Every keyspace, or `keyspace.table`, named must exist before a snapshot is taken.
async fn require_entities(
    cassandra: &Cassandra,
    entities: &Entities,
) -> Result<(), OperationFailure> {
    for (keyspace, tables) in entities.by_keyspace() {
        let tables: Vec<String> = tables.into_iter().map(str::to_string).collect();
        cassandra.require_tables(keyspace, &tables).await?;
    }
    Ok(())
}

/// Writes `topology/<tag>.json` at the bucket's root, as Esop does: what a restore into new nodes maps them by.
pub async fn upload_topology(
    context: &OperationContext,
    remote: &RemoteStorage,
    topology: &ClusterTopology,
    tag: &str,
) -> Result<(), OperationFailure> {
    let json = to_jackson_pretty(topology)
        .map_err(|error| OperationFailure::context("cannot write the topology", error))?;
    context
        .cancellable(remote.put_in_bucket(&format!("topology/{tag}.json"), json.into()))
        .await??;
    Ok(())
}

/// Cassandra refused the snapshot because one of that tag exists already (someone else's: this backup has not
/// taken it), which only another tag avoids.
#[derive(Debug, thiserror::Error)]
#[error("cannot take snapshot {tag}: {source}; choose another snapshotTag")]
struct SnapshotTagTaken {
    tag: String,
    source: crate::cassandra::CassandraError,
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;
    use crate::cassandra::CassandraError;

    #[test]
    fn a_snapshot_tag_taken_reads_as_before_and_keeps_cassandras_error() {
        let refusal = || CassandraError::Unexpected {
            address: "127.0.0.1:7199".into(),
            what: "takeSnapshot",
            found: "Snapshot daily-1 already exists".into(),
        };
        let failure = OperationFailure::engine(SnapshotTagTaken {
            tag: "daily-1".into(),
            source: refusal(),
        });
        assert_eq!(
            failure.to_string(),
            format!(
                "cannot take snapshot daily-1: {}; choose another snapshotTag",
                refusal()
            )
        );
        let cause = failure
            .source()
            .and_then(|taken| taken.source())
            .expect("Cassandra's error");
        assert!(
            cause.downcast_ref::<CassandraError>().is_some(),
            "{cause:?}"
        );
    }
}
