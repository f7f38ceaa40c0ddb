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
    if !plan.dry {
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
