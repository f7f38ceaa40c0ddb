//! IN_PLACE: a restore into a stopped node (an init container before Cassandra starts, a replaced node, a new
//! cluster from a backup). The backup's files go straight into the data directories; what the node holds of the
//! restored tables and the backup lacks is removed once the downloads are in; hints, saved caches and commit logs are
//! emptied; and, when asked, `cassandra.yaml` gets the backup's tokens so the node starts as the one backed up.
//!
//! The node is down, so where its directories are comes from the configuration the operator gave the sidecar or the
//! command ([`NodeConfig`]); the request's directory fields were checked against it when it was submitted. Every
//! name in the manifest is checked before anything is read or written, and every change goes through a [`Root`].

use std::sync::Arc;

use super::{self as in_place, LocalPlan, SelectedTable, SystemRestore};
use crate::node_fs::{
    FsError, NodeConfig, NodeDirs, NodeDirsError, NotAPlainName, RelPath, Root, names,
};
use crate::node_storage::{self, BucketCheck};
use crate::operation::{OperationContext, OperationFailure};
use crate::restore::choice::{self, ChosenBackup};
use crate::restore::download::{DownloadSettings, PlannedDownload};
use crate::restore::plan::{RestorePlan, Strategy};
use crate::restore::response::InPlaceResponse;
use crate::restore::{download_for, require_node_down};
use crate::storage::request::Connection;
use crate::storage::transfer::hashes::HashAlgorithm;
use crate::storage::{Entities, RemoteStorage, StorageLocation, Throttle};

pub async fn restore(
    connection: &Connection,
    fields: &RestorePlan,
    config: &NodeConfig,
    context: &OperationContext,
) -> Result<InPlaceResponse, OperationFailure> {
    require_node_down(context, "an IN_PLACE restore").await?;
    let bucket = BucketCheck::of(connection, false);
    let mut remote = node_storage::open_location(
        context,
        connection.storage_location.clone(),
        connection,
        bucket,
    )
    .await?;
    if fields.resolve_host_id_from_topology {
        let location = backed_up_node(context, &remote, fields).await?;
        tracing::info!(%location, "the backed-up node, found in the backup's topology");
        remote =
            node_storage::open_location(context, location, connection, BucketCheck::Skip).await?;
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
    require_named_entities(&backup, &fields.entities)?;
    if fields.update_cassandra_yaml
        && let Some(token) = backup
            .manifest
            .tokens
            .iter()
            .find(|token| !names::is_token(token))
    {
        return Err(OperationFailure::Failed(format!(
            "backup {}: its token '{}' is not a ring token; nothing was written or deleted",
            backup.name,
            token.escape_debug()
        )));
    }
    let ChosenBackup { name, manifest } = backup;
    let (tokens, algorithm) = (
        manifest.tokens.clone(),
        HashAlgorithm::of_manifest(&manifest),
    );
    // The manifest is taken apart into the plan off the async workers, where cassandra.yaml is read and the data
    // directories walked; names are checked before anything else.
    let (dirs, plan, tables) = {
        let (config, entities) = (config.clone(), fields.entities.clone());
        let name = name.clone();
        blocking(move || {
            let selected = in_place::select(manifest, &entities, flags);
            if selected.is_empty() {
                return Err(FileWorkError::NothingSelected { backup: name });
            }
            let tables: Vec<String> = selected
                .iter()
                .map(|t| format!("{}.{}", t.keyspace, t.table))
                .collect();
            let dirs = config.dirs()?;
            let plan = plan_over(&selected, &dirs).map_err(|source| FileWorkError::Plan {
                backup: name,
                source,
            })?;
            Ok((dirs, plan, tables))
        })
        .await?
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

    // Files already there are verified by the download and kept when intact: a rerun resumes.
    let LocalPlan {
        downloads,
        keep,
        delete,
        ..
    } = plan;
    let files: Vec<PlannedDownload> = keep
        .into_iter()
        .chain(downloads)
        .map(|file| PlannedDownload {
            key: file.object_key,
            target: file.target,
            size: file.size,
            hash: file.hash,
        })
        .collect();
    let settings = DownloadSettings {
        concurrency: connection.concurrency(),
        retry: connection.retry_policy(),
        throttle: Throttle::new(fields.bandwidth.map(|rate| rate.bytes_per_second())),
        algorithm,
    };
    let stats = download_for(context, &remote, files, &settings).await?;

    // Only once every file of the backup is in place does anything of the node's go.
    let deleted = delete.len();
    let (config, update_yaml) = (config.clone(), fields.update_cassandra_yaml);
    let (cleaned, yaml_change) = blocking(move || {
        for target in &delete {
            target.root.remove_file(&target.rel)?;
        }
        let cleaned = in_place::clean_node_dirs(&config.cassandra_dir, &dirs)?;
        let change = if update_yaml {
            let yaml = config
                .cassandra_yaml
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or("cassandra.yaml");
            let yaml = RelPath::name(yaml)?;
            let root = Root::open(config.config_dir())?;
            Some(in_place::update_cassandra_yaml(&root, &yaml, &tokens)?)
        } else {
            None
        };
        Ok((cleaned, change))
    })
    .await?;
    tracing::info!(backup = %name, tables = tables.len(), downloaded = stats.downloaded_files, deleted, "IN_PLACE restore complete");
    Ok(InPlaceResponse {
        backup: name,
        storage_location: remote.location().to_string(),
        strategy: Strategy::InPlace,
        tables,
        download: stats,
        deleted_files: deleted,
        cleaned: cleaned.removed.len(),
        cassandra_yaml: yaml_change.map(|change| format!("{change:?}")),
    })
}

/// Why the file work of an IN_PLACE restore (planning, cleaning the node, editing `cassandra.yaml`) stopped. Each
/// reads as the operation's whole failure; the error caught is its source.
#[derive(Debug, thiserror::Error)]
enum FileWorkError {
    #[error(
        "nothing of backup {backup} to restore: system keyspaces need newCluster, restoreSystemAuth or \
         restoreSystemKeyspace"
    )]
    NothingSelected { backup: String },
    #[error(transparent)]
    NodeDirs(#[from] NodeDirsError),
    #[error("backup {backup}: {source}")]
    Plan {
        backup: String,
        #[source]
        source: in_place::PlanError,
    },
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Clean(#[from] in_place::CleanError),
    #[error(transparent)]
    YamlName(#[from] NotAPlainName),
    #[error(transparent)]
    Yaml(#[from] in_place::YamlError),
}

/// Blocking work off the async workers; its error is the operation's failure.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, FileWorkError> + Send + 'static,
) -> Result<T, OperationFailure> {
    crate::restore::blocking(work).await
}

/// The plan over the node's data directories, opened as roots (created when a node that never ran has not made them
/// yet); `system` and `system_schema` go to `local_system_data_file_directory` when it is set.
fn plan_over(
    selected: &[SelectedTable],
    dirs: &NodeDirs,
) -> Result<LocalPlan, in_place::PlanError> {
    let open = |paths: &[std::path::PathBuf]| -> Result<Vec<Arc<Root>>, in_place::PlanError> {
        paths
            .iter()
            .map(|path| Root::open_creating(path).map(Arc::new).map_err(Into::into))
            .collect()
    };
    let data = open(&dirs.data)?;
    let local_system = match &dirs.local_system_data {
        Some(dir) => Some(open(std::slice::from_ref(dir))?),
        None => None,
    };
    let (system, user): (Vec<SelectedTable>, Vec<SelectedTable>) =
        selected.iter().cloned().partition(|table| {
            dirs.local_system_data.is_some()
                && dirs.data_dirs_for(&table.keyspace) != dirs.data.as_slice()
        });
    let mut plan = in_place::plan(&user, &data)?;
    if let Some(roots) = local_system
        && !system.is_empty()
    {
        let other = in_place::plan(&system, &roots)?;
        plan.downloads.extend(other.downloads);
        plan.keep.extend(other.keep);
        plan.delete.extend(other.delete);
        plan.other_table_dirs.extend(other.other_table_dirs);
    }
    Ok(plan)
}

/// Entities that name what the backup does not hold are a mistake to report, not an empty restore.
fn require_named_entities(
    backup: &ChosenBackup,
    entities: &Entities,
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
    Ok(())
}

/// Esop's `resolveHostIdFromTopology`: the node segment of the location is this pod's host name (or its prefix);
/// the backup's topology file says which host id it had, and so under which prefix its backups are.
async fn backed_up_node(
    context: &OperationContext,
    remote: &RemoteStorage,
    fields: &RestorePlan,
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
    for segment in [cluster.as_str(), node.dc.as_str(), node.node_id.as_str()] {
        if !names::is_path_segment(segment) {
            return Err(OperationFailure::Failed(format!(
                "resolveHostIdFromTopology: {}/topology/{name}.json names '{}', which cannot be part of a storage \
                 location",
                location.store_name(),
                segment.escape_debug()
            )));
        }
    }
    Ok(location.for_node(cluster, &node.dc, &node.node_id))
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    /// The blocking work's failures read as the strings they replaced; the error caught stays the source.
    #[test]
    fn file_work_failures_read_as_before() {
        let nothing = OperationFailure::engine(FileWorkError::NothingSelected {
            backup: "daily-1".into(),
        });
        assert_eq!(
            nothing.to_string(),
            "nothing of backup daily-1 to restore: system keyspaces need newCluster, restoreSystemAuth or \
             restoreSystemKeyspace"
        );
        let plan = OperationFailure::engine(FileWorkError::Plan {
            backup: "daily-1".into(),
            source: in_place::PlanError::NoDataDirs,
        });
        assert_eq!(
            plan.to_string(),
            "backup daily-1: no data directory to restore into"
        );
        let cause = plan
            .source()
            .and_then(|work| work.source())
            .expect("the plan's error");
        assert!(
            cause.downcast_ref::<in_place::PlanError>().is_some(),
            "{cause:?}"
        );
        let name = RelPath::name("../cassandra.yaml").expect_err("not a plain name");
        let yaml = OperationFailure::engine(FileWorkError::from(name.clone()));
        assert_eq!(yaml.to_string(), name.to_string());
    }
}
