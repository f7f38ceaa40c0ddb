//! A cluster-wide `verify`: the coordinator itself checks every node's backup in the bucket, as a cluster-wide
//! removal ([`super::remove`]) goes over every node's prefix. Reading the bucket is all it does, so no peer sidecar
//! is involved and a node that is down does not keep its backup from being checked.
//!
//! With the backup's topology (`topology/<name>.json`, which a cluster-wide backup writes), the nodes are the ones
//! it names, and a node whose manifest is gone is a problem. Without one, every node prefix under the cluster's
//! (every data centre, departed nodes included) whose manifests hold the tag is checked.

use futures_util::future::BoxFuture;

use crate::esop::manifest::manifest_key;
use crate::operation::{OperationContext, OperationFailure};
use crate::restore::choice::{backup_topology, choose, designated, read_manifest};
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

/// A node's backup found, to be checked.
struct Found {
    remote: RemoteStorage,
    name: String,
    manifest: crate::esop::manifest::Manifest,
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
    let mut found = Vec::new();
    let mut absent = Vec::new();
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
                    Some(size) => {
                        let manifest = read_manifest(context, &remote, &key, Some(size)).await?;
                        found.push(Found {
                            remote,
                            name: name.clone(),
                            manifest,
                        });
                    }
                    None => absent.push(NodeVerification {
                        node: remote.location().node_prefix(),
                        manifest: name.clone(),
                        objects: 0,
                        bytes: 0,
                        deep: plan.deep,
                        problems: vec![Problem {
                            node: None,
                            key,
                            problem: ProblemKind::Missing,
                            expected: "the manifest of a node the backup's topology names".into(),
                            found: "no object".into(),
                        }],
                    }),
                }
            }
        }
        None => {
            for node_location in node_locations(context, &bucket, location, &cluster).await? {
                let remote = bucket.at(node_location)?;
                if has_backup(context, &remote, &plan.snapshot_tag).await? {
                    let chosen = choose(context, &remote, &plan.snapshot_tag, None).await?;
                    found.push(Found {
                        remote,
                        name: chosen.name,
                        manifest: chosen.manifest,
                    });
                }
            }
            if found.is_empty() {
                return Err(OperationFailure::Failed(format!(
                    "no backup {} in {} under cluster {cluster}",
                    plan.snapshot_tag,
                    location.store_name()
                )));
            }
        }
    }
    let total = found
        .iter()
        .map(|found| distinct_entries(&found.manifest).len() as u64)
        .sum();
    let progress = Progress::new(context.progress(), total);
    let mut nodes = absent;
    for found in &found {
        let mut node = verify_manifest(
            context,
            &found.remote,
            &found.name,
            &found.manifest,
            plan,
            &progress,
        )
        .await?;
        node.node = found.remote.location().node_prefix();
        nodes.push(node);
    }
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    Ok(ClusterVerification::of(nodes, plan.deep))
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
    let names: Vec<String> = context
        .cancellable(remote.list("manifests/"))
        .await??
        .iter()
        .filter_map(|object| {
            object
                .key
                .strip_prefix("manifests/")?
                .strip_suffix(".json")
                .map(str::to_string)
        })
        .collect();
    Ok(designated(&names, tag, None).is_some())
}
