//! A cluster-wide `remove-backup`: the coordinator itself removes the chosen backups from every node's prefix in
//! the bucket (`<cluster>/<dc>/<node>`, every data centre, nodes that have left the cluster included) and then the
//! topology files once. Storage is all it touches, so no peer sidecar is involved and a node that is down does not
//! keep its backups from being removed.

use std::collections::BTreeSet;

use futures_util::future::BoxFuture;

use crate::esop::manifest::manifest_key;
use crate::node_storage::{self, BucketCheck};
use crate::operation::{OperationContext, OperationFailure};
use crate::removal::{KeptBackup, RemovalPlan, RemovedBackup, Topology, remove_from_node};
use crate::storage::RemoteStorage;
use crate::storage::request::Connection;

/// What a cluster-wide removal did: one entry per backup and node removed, and per backup and node kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterRemoval {
    pub removed: Vec<RemovedBackup>,
    pub kept: Vec<KeptBackup>,
}

/// Returns what was removed and kept, one entry per backup and node; each node keeps its own newest backup (of
/// the plan's tag). `resolve_nodes`: the cluster's name comes from
/// Cassandra even when the location names one. Boxed, as the other cluster-wide entry points (see
/// [`super::backup::backup`]).
pub fn remove<'a>(
    connection: &'a Connection,
    plan: &'a RemovalPlan,
    resolve_nodes: bool,
    context: &'a OperationContext,
) -> BoxFuture<'a, Result<ClusterRemoval, OperationFailure>> {
    Box::pin(remove_everywhere(connection, plan, resolve_nodes, context))
}

/// The cluster's name and its bucket, for the work the coordinator does over every node's prefix (a removal, a
/// verify). With `resolve_nodes` the cluster comes from Cassandra even when the location names one, as for a node's
/// own removal and Icarus's: a location such as `s3://bucket/c/d/n` with placeholders then reaches what a global
/// backup to that same location wrote.
pub(super) async fn cluster_bucket(
    connection: &Connection,
    resolve_nodes: bool,
    context: &OperationContext,
) -> Result<(String, RemoteStorage), OperationFailure> {
    let location = &connection.storage_location;
    let cluster = match &location.node_path {
        Some((cluster, _, _)) if !resolve_nodes => cluster.clone(),
        _ => {
            let cassandra = context.cassandra().await?;
            let own = node_storage::node_location(&cassandra, location).await?;
            own.node_path
                .map(|(cluster, _, _)| cluster)
                .unwrap_or_default()
        }
    };
    let bucket = node_storage::open_location(
        context,
        location.for_node(&cluster, "-", "-"),
        connection,
        BucketCheck::of(connection, false),
    )
    .await?;
    Ok((cluster, bucket))
}

async fn remove_everywhere(
    connection: &Connection,
    plan: &RemovalPlan,
    resolve_nodes: bool,
    context: &OperationContext,
) -> Result<ClusterRemoval, OperationFailure> {
    let location = &connection.storage_location;
    let (cluster, bucket) = cluster_bucket(connection, resolve_nodes, context).await?;
    let mut nodes = Vec::new();
    for dc in context
        .cancellable(bucket.child_prefixes_in_bucket(&cluster))
        .await??
    {
        let prefix = format!("{cluster}/{dc}");
        for node in context
            .cancellable(bucket.child_prefixes_in_bucket(&prefix))
            .await??
        {
            nodes.push(location.for_node(&cluster, &dc, &node));
        }
    }
    let mut removed = Vec::new();
    let mut kept = Vec::new();
    let mut names = BTreeSet::new();
    // Backups some node still holds keep their topology file, which restoring them needs.
    let mut left = BTreeSet::new();
    let mut failed = Vec::new();
    for (done, node_location) in nodes.iter().enumerate() {
        let remote = bucket.at(node_location.clone())?;
        let has_backup = match &plan.backup_name {
            Some(name) => context
                .cancellable(remote.size_of(&manifest_key(name)))
                .await??
                .is_some(),
            None => true,
        };
        if has_backup {
            match remove_from_node(context, &remote, plan, Topology::Keep).await {
                Ok(removal) => {
                    let node = node_location.node_prefix().unwrap_or_default();
                    for mut backup in removal.removed {
                        names.insert(backup.name.clone());
                        backup.node = Some(node.clone());
                        removed.push(backup);
                    }
                    left.extend(removal.left);
                    for mut backup in removal.kept {
                        backup.node = Some(node.clone());
                        kept.push(backup);
                    }
                }
                Err(OperationFailure::Cancelled) => return Err(OperationFailure::Cancelled),
                // The other nodes' backups are still removed; the operation then fails naming this one.
                Err(error) => {
                    context.report_error(format!("{node_location}: {error}"));
                    failed.push(node_location.to_string());
                }
            }
        }
        context
            .progress()
            .units(done as u64 + 1, nodes.len() as u64 + 1);
    }
    if let Some(name) = &plan.backup_name
        && names.is_empty()
        && failed.is_empty()
    {
        return Err(OperationFailure::Failed(format!(
            "no node of cluster {cluster} in {} has a backup named {name}",
            location.store_name()
        )));
    }
    // A node whose removal failed may still hold any of the backups (its listing is not known): their topology
    // files stay, or that node's copy could no longer be restored as a cluster.
    if !plan.dry && failed.is_empty() {
        for name in names.difference(&left) {
            context
                .cancellable(bucket.delete_in_bucket(&format!("topology/{name}.json")))
                .await??;
        }
    }
    if !failed.is_empty() {
        return Err(OperationFailure::Failed(format!(
            "the backups could not be removed from {}",
            failed.join(", ")
        )));
    }
    Ok(ClusterRemoval { removed, kept })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::json;
    use tokio_util::sync::CancellationToken;

    use crate::esop::manifest::{Manifest, OrderedMap, Snapshot};
    use crate::types::{TypeOptions, registry};
    use crate::{Executor, InMemoryStore, OperationState, OperationStore, Services};

    const NAME: &str = "nightly-5bd4c9a6-a0ae-3a6d-9d47-2c2d4c6a7bb2-1000";

    fn write(path: &Path, content: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    /// The operation as it ended: (state, errors).
    async fn run(body: serde_json::Value) -> (OperationState, Vec<String>) {
        run_beside(body, Vec::new()).await
    }

    /// The operation, run beside the unfinished operations `others`, as it ended: (state, errors).
    async fn run_beside(
        body: serde_json::Value,
        others: Vec<serde_json::Value>,
    ) -> (OperationState, Vec<String>) {
        let store: Arc<dyn OperationStore> = Arc::new(InMemoryStore::new());
        for other in others {
            let type_id: &'static str = match other["type"].as_str() {
                Some("verify") => "verify",
                _ => "restore",
            };
            let record = Arc::new(crate::OperationRecord::new(
                type_id,
                other.as_object().unwrap().clone(),
                CancellationToken::new(),
            ));
            record.start(chrono::Utc::now());
            store.insert(record).await.unwrap();
        }
        let services = Arc::new(Services {
            source: "test-host".into(),
            jmx: crate::JmxConnector::new(Default::default(), tokio::runtime::Handle::current()),
            storage: Default::default(),
            cql: Default::default(),
            peers: Default::default(),
            metrics: Default::default(),
            store,
            local: Default::default(),
            shutdown_request: CancellationToken::new(),
        });
        let executor = Executor::new(services, 1, tokio::runtime::Handle::current());
        let prepared = registry(TypeOptions::default()).prepare(body).unwrap();
        let record = executor.submit(prepared).await.unwrap();
        tokio::time::timeout(Duration::from_secs(30), async {
            while !record.state().is_terminal() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the removal ends");
        let (status, _) = record.stored_status();
        (
            status.state,
            status.errors.into_iter().map(|e| e.message).collect(),
        )
    }

    fn manifest_of(name: &str) -> Manifest {
        Manifest {
            snapshot: Snapshot {
                name: name.into(),
                keyspaces: OrderedMap::new(),
            },
            tokens: vec!["1".into()],
            schema_version: "5bd4c9a6-a0ae-3a6d-9d47-2c2d4c6a7bb2".into(),
            size: 0,
        }
    }

    /// A node-local retention keeps what an unfinished cluster-wide verify of `db` reads: the newest `db-`
    /// backup of the node and the one the topology files designate.
    #[tokio::test]
    async fn a_retention_keeps_what_a_cluster_wide_reader_would_choose() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = dir.path().join("bucket");
        let schema = "5bd4c9a6-a0ae-3a6d-9d47-2c2d4c6a7bb2";
        let name = |tag: &str, millis: u64| format!("{tag}-{schema}-{millis}");
        let manifest_path = |name: &str| bucket.join(format!("c/dc1/n1/manifests/{name}.json"));
        for name in [
            name("db-weekly", 1000),
            name("db-weekly", 2000),
            name("db-weekly", 3000),
            name("other", 4000),
        ] {
            write(&manifest_path(&name), &manifest_of(&name).to_json());
        }
        write(
            &bucket.join(format!("topology/{}.json", name("db-weekly", 1000))),
            b"{}",
        );
        let (state, errors) = run_beside(
            json!({"type": "remove-backup", "keepLast": 1,
                "storageLocation": format!("file://{}/c/dc1/n1", bucket.display())}),
            vec![json!({"type": "verify", "snapshotTag": "db", "globalRequest": true})],
        )
        .await;
        assert_eq!(state, OperationState::Completed, "{errors:?}");
        let left: Vec<bool> = [1000, 2000, 3000]
            .into_iter()
            .map(|millis| manifest_path(&name("db-weekly", millis)).exists())
            .collect();
        assert_eq!(left, [true, false, true]);
    }

    /// A node whose removal fails may still hold the backup: its topology file stays, though the other node's
    /// copy is removed.
    #[tokio::test]
    async fn a_failed_node_keeps_the_topology_file() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = dir.path().join("bucket");
        let manifest_path = |node: &str| bucket.join(format!("c/dc1/{node}/manifests/{NAME}.json"));
        write(&manifest_path("n1"), &manifest_of(NAME).to_json());
        // n2's manifest cannot be read: its removal fails.
        write(&manifest_path("n2"), b"not a manifest");
        let topology = bucket.join(format!("topology/{NAME}.json"));
        write(&topology, b"{}");
        let (state, errors) = run(json!({"type": "remove-backup", "globalRequest": true,
            "storageLocation": format!("file://{}/c/dc1/n1", bucket.display()), "backupName": NAME}))
        .await;
        assert_eq!(state, OperationState::Failed);
        assert!(
            errors.iter().any(|error| error.contains("n2")),
            "{errors:?}"
        );
        assert!(!manifest_path("n1").exists(), "n1's copy is removed");
        assert!(manifest_path("n2").exists());
        assert!(topology.exists(), "n2 may still hold the backup");
    }
}
