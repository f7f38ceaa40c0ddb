//! A cluster-wide `verify`: the coordinator itself checks every node's backup in the bucket, as a cluster-wide
//! removal ([`super::remove`]) goes over every node's prefix. Reading the bucket is all it does, so no peer sidecar
//! is involved and a node that is down does not keep its backup from being checked.
//!
//! With the backup's topology (`topology/<name>.json`, which a cluster-wide backup writes), the nodes are the ones
//! it names, and a node whose manifest is gone is a problem. Without one, every node prefix under the cluster's
//! (every data centre, departed nodes included) whose manifests hold the tag is checked. The node list comes from
//! the bucket, so each node's manifest is read, checked and dropped before the next one's is read.

use futures_util::future::BoxFuture;

use crate::esop::manifest::manifest_key;
use crate::operation::{OperationContext, OperationFailure};
use crate::restore::choice::{backup_topology, choose, designated, manifest_names, read_manifest};
use crate::storage::request::Connection;
use crate::storage::{RemoteStorage, StorageLocation};
use crate::verify::{
    ClusterVerification, NodeVerification, Problem, ProblemKind, Progress, VerifyPlan,
    distinct_entries, verify_manifest,
};

/// Checks the backup `plan` names on every node. `resolve_nodes`: the cluster's name comes from Cassandra even
/// when the location names one. Boxed, as the other cluster-wide entry points.
pub fn verify<'a>(
    connection: &'a Connection,
    plan: &'a VerifyPlan,
    resolve_nodes: bool,
    context: &'a OperationContext,
) -> BoxFuture<'a, Result<ClusterVerification, OperationFailure>> {
    Box::pin(verify_everywhere(connection, plan, resolve_nodes, context))
}

/// A node's backup to check: by the name the backup's topology gives (its manifest's size as listed), or by the
/// tag, chosen on the node as a restore chooses. Its manifest is read only when its turn comes.
enum Target {
    Named {
        remote: RemoteStorage,
        name: String,
        size: u64,
    },
    Tagged {
        remote: RemoteStorage,
    },
}

async fn verify_everywhere(
    connection: &Connection,
    plan: &VerifyPlan,
    resolve_nodes: bool,
    context: &OperationContext,
) -> Result<ClusterVerification, OperationFailure> {
    let location = &connection.storage_location;
    let (cluster, bucket) =
        super::remove::cluster_bucket(connection, resolve_nodes, context).await?;
    let mut targets = Vec::new();
    let mut verification = ClusterVerification::new(plan.deep);
    match backup_topology(context, &bucket, &plan.snapshot_tag, None).await? {
        Some((name, topology)) => {
            for node in &topology.topology {
                let node_location = checked_location(
                    location,
                    &topology.cluster_name,
                    &node.dc,
                    &node.node_id,
                    &name,
                )?;
                let remote = bucket.at(node_location)?;
                let key = manifest_key(&name);
                match context.cancellable(remote.stored_size(&key)).await?? {
                    Some(size) => targets.push(Target::Named {
                        remote,
                        name: name.clone(),
                        size,
                    }),
                    None => {
                        let mut absent = NodeVerification {
                            node: remote.location().node_prefix(),
                            manifest: name.clone(),
                            objects: 0,
                            bytes: 0,
                            deep: plan.deep,
                            problem_count: 0,
                            problems: Vec::new(),
                        };
                        absent.add_problem(Problem {
                            node: None,
                            key,
                            problem: ProblemKind::Missing,
                            expected: "the manifest of a node the backup's topology names".into(),
                            found: "no object".into(),
                        });
                        verification.add(absent);
                    }
                }
            }
        }
        None => {
            for node_location in node_locations(context, &bucket, location, &cluster).await? {
                let remote = bucket.at(node_location)?;
                if has_backup(context, &remote, &plan.snapshot_tag).await? {
                    targets.push(Target::Tagged { remote });
                }
            }
            if targets.is_empty() {
                return Err(OperationFailure::Failed(format!(
                    "no backup {} in {} under cluster {cluster}",
                    plan.snapshot_tag,
                    location.store_name()
                )));
            }
        }
    }
    // One node at a time: its manifest is read, checked and dropped before the next one's is read (the nodes come
    // from the bucket, so their number is not bounded by anything this sidecar controls).
    let nodes = targets.len() as u64;
    for (index, target) in targets.into_iter().enumerate() {
        let (remote, name, manifest) = match target {
            Target::Named { remote, name, size } => {
                let manifest =
                    read_manifest(context, &remote, &manifest_key(&name), Some(size)).await?;
                (remote, name, manifest)
            }
            Target::Tagged { remote } => {
                let chosen = choose(context, &remote, &plan.snapshot_tag, None).await?;
                (remote, chosen.name, chosen.manifest)
            }
        };
        let progress = Progress::of_node(
            context.progress(),
            distinct_entries(&manifest).len() as u64,
            index as u64,
            nodes,
        );
        let mut node = verify_manifest(context, &remote, &name, &manifest, plan, &progress).await?;
        node.node = remote.location().node_prefix();
        verification.add(node);
    }
    Ok(verification)
}

/// The location of a node the topology names; its names must be able to be path segments.
fn checked_location(
    location: &StorageLocation,
    cluster: &str,
    dc: &str,
    node: &str,
    name: &str,
) -> Result<StorageLocation, OperationFailure> {
    for segment in [cluster, dc, node] {
        if !crate::node_fs::names::is_path_segment(segment) {
            return Err(OperationFailure::Failed(format!(
                "the topology of backup {name} names '{}', which cannot be part of a storage location",
                segment.escape_debug()
            )));
        }
    }
    Ok(location.for_node(cluster, dc, node))
}

/// Every node prefix under the cluster's in the bucket.
async fn node_locations(
    context: &OperationContext,
    bucket: &RemoteStorage,
    location: &StorageLocation,
    cluster: &str,
) -> Result<Vec<StorageLocation>, OperationFailure> {
    let mut nodes = Vec::new();
    for dc in context
        .cancellable(bucket.child_prefixes_in_bucket(cluster))
        .await??
    {
        let prefix = format!("{cluster}/{dc}");
        for node in context
            .cancellable(bucket.child_prefixes_in_bucket(&prefix))
            .await??
        {
            nodes.push(location.for_node(cluster, &dc, &node));
        }
    }
    Ok(nodes)
}

/// Whether the node has a backup the tag designates.
async fn has_backup(
    context: &OperationContext,
    remote: &RemoteStorage,
    tag: &str,
) -> Result<bool, OperationFailure> {
    let names = manifest_names(context, remote).await?;
    Ok(designated(&names, tag, None).is_some())
}
