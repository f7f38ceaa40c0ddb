//! IN_PLACE: a restore into a stopped node (an init container before Cassandra starts, a replaced node, a new
//! cluster from a backup). The backup's files go straight into the data directories; what the node holds of the
//! restored tables and the backup lacks is removed; hints, saved caches and commit logs are emptied; and, when asked,
//! `cassandra.yaml` gets the backup's tokens so the node starts as the one backed up.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::choice::{self, ChosenBackup};
use super::download::{DownloadSettings, PlannedDownload};
use super::in_place::{self, NodeDirs, SystemRestore};
use crate::backup::hashes::HashAlgorithm;
use crate::operation::{OperationContext, OperationFailure};
use crate::storage::node::{self, BucketCheck};
use crate::storage::request::Connection;
use crate::storage::{Entities, RemoteStorage, StorageLocation, Throttle};
use crate::types::restore::RestoreFields;

pub async fn restore(
    connection: &Connection,
    fields: &RestoreFields,
    context: &OperationContext,
) -> Result<serde_json::Value, OperationFailure> {
    super::require_node_down(context, "an IN_PLACE restore").await?;
    let bucket = BucketCheck::of(connection, false);
    let mut remote = node::open_location(
        context,
        connection.storage_location.clone(),
        connection,
        bucket,
    )
    .await?;
    if fields.resolve_host_id_from_topology {
        let location = backed_up_node(context, &remote, fields).await?;
        tracing::info!(%location, "the backed-up node, found in the backup's topology");
        remote = node::open_location(context, location, connection, BucketCheck::Skip).await?;
    }
    // The node is down: only a schema version given in the request can narrow the choice.
    let schema = match (fields.exact_schema_version, fields.schema_version) {
        (true, Some(version)) => Some(version.to_string()),
        (true, None) => {
            return Err(OperationFailure::Failed(
                "exactSchemaVersion needs schemaVersion with IN_PLACE: the stopped node cannot tell its own".into(),
            ));
        }
        (false, _) => None,
    };
    let backup = choice::choose(context, &remote, &fields.snapshot_tag, schema.as_deref()).await?;

    let flags = SystemRestore {
        new_cluster: fields.new_cluster,
        restore_system_keyspace: fields.restore_system_keyspace,
        restore_system_auth: fields.restore_system_auth,
    };
    let selected = in_place::select(&backup.manifest, &fields.entities, flags);
    require_named_entities(&backup, &fields.entities, &selected)?;
    // cassandra.yaml is read and the data directories walked off the async workers.
    let (dirs, plan) = {
        let (selected, fields) = (selected.clone(), fields.clone());
        tokio::task::spawn_blocking(move || {
            let dirs = node_dirs(&fields)?;
            let plan = in_place::plan(&selected, &dirs.data)
                .map_err(|error| format!("cannot plan the restore: {error}"))?;
            Ok::<_, String>((dirs, plan))
        })
        .await
        .map_err(|error| OperationFailure::Failed(error.to_string()))?
        .map_err(OperationFailure::Failed)?
    };
    for other in &plan.other_table_dirs {
        tracing::warn!(
            table = %format!("{}.{}", other.keyspace, other.table),
            dir = %other.path.display(),
            backup_id = %other.manifest_id,
            "the node has this table under another id; its restored files go to the backup's id, which the node \
             uses only with the backup's schema (newCluster or restoreSystemKeyspace)"
        );
    }
    let deleted = plan.delete.len();
    let delete = plan.delete.clone();
    tokio::task::spawn_blocking(move || {
        for path in &delete {
            std::fs::remove_file(path).or_else(|error| match error.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(format!("cannot remove {}: {error}", path.display())),
            })?;
        }
        Ok::<_, String>(())
    })
    .await
    .map_err(|error| OperationFailure::Failed(error.to_string()))?
    .map_err(OperationFailure::Failed)?;

    // Files already there are verified by the download and kept when intact: a rerun resumes.
    let files: Vec<PlannedDownload> = plan
        .keep
        .iter()
        .chain(&plan.downloads)
        .map(|file| PlannedDownload {
            key: file.object_key.clone(),
            path: file.path.clone(),
            size: file.size,
            hash: file.hash.clone(),
        })
        .collect();
    let settings = DownloadSettings {
        concurrency: connection.concurrency(),
        retry: connection.retry_policy(),
        throttle: Throttle::new(fields.bandwidth.map(|rate| rate.bytes_per_second())),
        algorithm: HashAlgorithm::of_manifest(&backup.manifest),
    };
    let stats = super::download_for(context, &remote, files, &settings).await?;

    let cassandra_dir = PathBuf::from(&fields.cassandra_directory);
    let (yaml, update_yaml, tokens) = (
        Path::new(&fields.cassandra_config_directory).join("cassandra.yaml"),
        fields.update_cassandra_yaml,
        backup.manifest.tokens.clone(),
    );
    let (cleaned, yaml_change) = tokio::task::spawn_blocking(move || {
        let cleaned =
            in_place::clean_node_dirs(&cassandra_dir, &dirs).map_err(|error| error.to_string())?;
        let change = if update_yaml {
            Some(
                in_place::update_cassandra_yaml(&yaml, &tokens)
                    .map_err(|error| error.to_string())?,
            )
        } else {
            None
        };
        Ok::<_, String>((cleaned, change))
    })
    .await
    .map_err(|error| OperationFailure::Failed(error.to_string()))?
    .map_err(OperationFailure::Failed)?;
    tracing::info!(backup = %backup.name, tables = selected.len(), downloaded = stats.downloaded_files, deleted, "IN_PLACE restore complete");
    Ok(json!({
        "backup": backup.name,
        "storageLocation": remote.location().to_string(),
        "strategy": "IN_PLACE",
        "tables": selected.iter().map(|t| format!("{}.{}", t.keyspace, t.table)).collect::<Vec<_>>(),
        "download": stats,
        "deletedFiles": deleted,
        "cleaned": cleaned.removed.len(),
        "cassandraYaml": yaml_change.map(|change| format!("{change:?}")),
    }))
}

/// Where the node keeps its files: `cassandra.yaml` when it is there, else Cassandra's defaults under
/// `cassandraDirectory`; `dataDirs`, when given, win.
fn node_dirs(fields: &RestoreFields) -> Result<NodeDirs, String> {
    let cassandra_dir = Path::new(&fields.cassandra_directory);
    let yaml = Path::new(&fields.cassandra_config_directory).join("cassandra.yaml");
    let mut dirs = if yaml.is_file() {
        in_place::read_yaml_dirs(&yaml, cassandra_dir).map_err(|error| error.to_string())?
    } else {
        NodeDirs::defaults(cassandra_dir)
    };
    if let Some(data) = &fields.data_dirs {
        dirs.data = data.iter().map(PathBuf::from).collect();
    }
    Ok(dirs)
}

/// Entities that name what the backup does not hold are a mistake to report, not an empty restore.
fn require_named_entities(
    backup: &ChosenBackup,
    entities: &Entities,
    selected: &[in_place::SelectedTable],
) -> Result<(), OperationFailure> {
    let in_backup = |keyspace: &str, table: Option<&str>| {
        backup
            .manifest
            .tables()
            .any(|(k, t, _)| k == keyspace && table.is_none_or(|table| t == table))
    };
    let missing: Vec<String> = match entities {
        Entities::All => Vec::new(),
        Entities::Keyspaces(keyspaces) => keyspaces
            .iter()
            .filter(|keyspace| !in_backup(keyspace, None))
            .cloned()
            .collect(),
        Entities::Tables(tables) => tables
            .iter()
            .filter(|t| !in_backup(&t.keyspace, Some(&t.table)))
            .map(ToString::to_string)
            .collect(),
    };
    if !missing.is_empty() {
        return Err(OperationFailure::Failed(format!(
            "backup {} holds no {}",
            backup.name,
            missing.join(", ")
        )));
    }
    if selected.is_empty() {
        return Err(OperationFailure::Failed(format!(
            "nothing of backup {} to restore: system keyspaces need newCluster, restoreSystemAuth or \
             restoreSystemKeyspace",
            backup.name
        )));
    }
    Ok(())
}

/// Esop's `resolveHostIdFromTopology`: the node segment of the location is this pod's host name (or its prefix);
/// the backup's topology file says which host id it had, and so under which prefix its backups are.
async fn backed_up_node(
    context: &OperationContext,
    remote: &RemoteStorage,
    fields: &RestoreFields,
) -> Result<StorageLocation, OperationFailure> {
    let location = remote.location();
    let Some((cluster, _, node_name)) = &location.node_path else {
        return Err(OperationFailure::Failed(
            "storageLocation must name the node".into(),
        ));
    };
    let schema = fields.schema_version.map(|version| version.to_string());
    let found =
        choice::backup_topology(context, remote, &fields.snapshot_tag, schema.as_deref()).await?;
    let Some((name, topology)) = found else {
        return Err(OperationFailure::Failed(format!(
            "resolveHostIdFromTopology: {} holds no topology of a backup {}",
            location.store_name(),
            fields.snapshot_tag
        )));
    };
    let node = topology
        .topology
        .iter()
        .find(|node| &node.node_id == node_name)
        .or_else(|| topology.topology.iter().find(|node| node.hostname.starts_with(node_name.as_str())))
        .ok_or_else(|| {
            OperationFailure::Failed(format!(
                "resolveHostIdFromTopology: no node of {}/topology/{name}.json has host id or a host name starting with {node_name}",
                location.store_name()
            ))
        })?;
    Ok(location.for_node(cluster, &node.dc, &node.node_id))
}
