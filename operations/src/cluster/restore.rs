//! A cluster-wide HARDLINKS or IMPORT restore (§4.3 of the Icarus/Esop notes): the phases INIT, DOWNLOAD, TRUNCATE,
//! IMPORT and CLEANUP, each run on every node (TRUNCATE on one: it truncates cluster-wide) and waited for before the
//! next. Beyond Icarus: every node restores the same backup (its full name is settled once); nodes whose host ids
//! are not in the backup (a new cluster) are matched to the backed-up nodes by their tokens; after a failed phase
//! CLEANUP still removes what was downloaded (unless `noDeleteDownloads`), keeping the truncation snapshots.

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Timeout;
use super::coordinator::{Coordinator, Step};
use super::participants::{Peer, participants};
use super::{changed_part_body, deadline_after, storage_part_body};
use crate::cassandra::Cassandra;
use crate::cassandra::topology::ClusterTopology;
use crate::esop::manifest::manifest_key;
use crate::node_storage::{self, BucketCheck};
use crate::operation::{OperationContext, OperationFailure};
use crate::restore::choice::backup_topology;
use crate::restore::{Phase, RestorePlan};
use crate::storage::request::StorageRequest;
use crate::storage::{RemoteStorage, StorageLocation};

/// How long the CLEANUP after a failed phase may take (the request's own timeout may be what ran out).
const CLEANUP_AFTER_FAILURE: std::time::Duration = std::time::Duration::from_secs(600);

/// What a cluster-wide restore needs of the request's own fields, which the request type implements: a node's part
/// is a changed clone of them.
pub trait RestorePart: Serialize + Clone + Send + Sync + 'static {
    /// Every node restores `backup` (the full name the coordinator settled, or the tag as given), one phase per
    /// part; `pinned`, by name, needs no schema filter.
    fn settled(&self, backup: &str, pinned: bool) -> Self;
    /// A node's part in `phase`.
    fn in_phase(&self, phase: Phase) -> Self;
    /// The part of the CLEANUP after a failed phase, which keeps the truncation snapshots.
    fn keeping_truncates(&self) -> Self;
}

/// A cluster-wide restore: the request the parts are made of, and what the coordinator reads of it.
pub struct ClusterRestore<F> {
    pub request: StorageRequest<F>,
    /// What each node restores, as the request asked.
    pub plan: RestorePlan,
    pub timeout: Timeout,
    /// Only the nodes of these data centres.
    pub dc: Option<String>,
    /// Run only `plan.restoration_phase`, on every node.
    pub single_phase: bool,
}

/// What a cluster-wide restore answers, as the coordinator's operation `response`; the keys and their order are the
/// `json!`'s it replaced (`truncatedOn` is `null` when TRUNCATE did not run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRestoreResponse {
    /// The backup every node restored.
    pub backup: String,
    pub phases: Vec<Phase>,
    /// The node TRUNCATE ran on (it truncates cluster-wide).
    pub truncated_on: Option<String>,
}

/// Which backup every node restores and where each node finds its part.
struct Placement {
    /// The backup's full name when the coordinator settled it; the tag as given otherwise (each node then picks
    /// its newest, as Icarus lets them).
    backup: String,
    /// Pinned by name: the nodes need no schema filter.
    pinned: bool,
    /// Per peer, in the coordinator's order.
    locations: Vec<StorageLocation>,
}

/// Boxed, and built in this function's own frame: the coordinator's future is large, and a node's own restore,
/// which shares `Restore::run` with it, should not carry its size.
pub fn restore<F: RestorePart>(
    restore: ClusterRestore<F>,
    context: &OperationContext,
) -> BoxFuture<'_, Result<ClusterRestoreResponse, OperationFailure>> {
    Box::pin(coordinate(restore, context))
}

async fn coordinate<F: RestorePart>(
    restore: ClusterRestore<F>,
    context: &OperationContext,
) -> Result<ClusterRestoreResponse, OperationFailure> {
    let (request, asked) = (&restore.request, &restore.plan);
    let deadline = deadline_after(restore.timeout.0);
    let cassandra = context.cassandra().await?;
    let cluster = participants(context, &cassandra, restore.dc.as_deref()).await?;
    let phases: Vec<Phase> = match (restore.single_phase, asked.restoration_phase) {
        (true, Some(phase)) => vec![phase],
        _ => Phase::ALL.to_vec(),
    };
    let nodes = cluster.peers.len();
    // Icarus's count: INIT, DOWNLOAD, IMPORT and CLEANUP on every node and one TRUNCATE; one per node for a
    // single phase.
    let units = if phases.len() == 1 {
        nodes
    } else {
        nodes * 4 + 1
    };
    let coordinator = Coordinator::new(context, "restore", cluster.peers, units)?;
    coordinator.preflight().await?;

    let location = &request.connection.storage_location;
    let first = &coordinator.peers()[0];
    let bucket = node_storage::open_location(
        context,
        location.for_node(&cluster.topology.cluster_name, &first.dc, &first.host_id),
        &request.connection,
        BucketCheck::of(&request.connection, false),
    )
    .await?;
    let placement = place(
        context,
        &cassandra,
        &bucket,
        location,
        &cluster.topology,
        coordinator.peers(),
        asked,
    )
    .await?;
    tracing::info!(backup = %placement.backup, pinned = placement.pinned, nodes, "cluster-wide restore planned");

    let base = storage_part_body("restore", request)?;
    let settled = StorageRequest {
        connection: request.connection.clone(),
        fields: request.fields.settled(&placement.backup, placement.pinned),
    };
    let truncating = truncating_node(coordinator.peers());
    let timeout_text = restore.timeout.to_string();
    let mut downloaded = false;
    for phase in phases.iter().copied() {
        let step = Step {
            phase: Some(phase.name()),
            parts: parts(
                &base,
                &settled,
                &placement,
                phase,
                coordinator.peers().len(),
                truncating,
            )?,
            concurrency: nodes,
            deadline: Some(deadline),
            timeout_text: timeout_text.clone(),
        };
        downloaded |= phase == Phase::Download;
        if let Err(failure) = coordinator.run_step(step).await {
            let cleanup = phases.len() > 1
                && downloaded
                && !asked.no_delete_downloads
                && !matches!(failure, OperationFailure::Cancelled);
            if cleanup {
                clean_up_after_failure(&coordinator, &base, &settled, &placement, &failure).await;
            }
            return Err(failure);
        }
    }
    Ok(ClusterRestoreResponse {
        truncated_on: phases
            .contains(&Phase::Truncate)
            .then(|| coordinator.peers()[truncating].node.clone()),
        backup: placement.backup,
        phases,
    })
}

/// TRUNCATE runs once (it empties the tables on every node): on the node with the smallest host id, so the same
/// node is chosen whichever sidecar coordinates.
fn truncating_node(peers: &[Peer]) -> usize {
    peers
        .iter()
        .enumerate()
        .min_by(|(_, a), (_, b)| a.host_id.cmp(&b.host_id))
        .map_or(0, |(index, _)| index)
}

/// The parts of `phase`: `settled` in that phase, at each node's location; `base` is the request's own body.
fn parts<F: RestorePart>(
    base: &Map<String, Value>,
    settled: &StorageRequest<F>,
    placement: &Placement,
    phase: Phase,
    nodes: usize,
    truncating: usize,
) -> Result<Vec<(usize, Value)>, OperationFailure> {
    let fields = settled.fields.in_phase(phase);
    (0..nodes)
        .filter(|index| phase != Phase::Truncate || *index == truncating)
        .map(|index| {
            let mut part = StorageRequest {
                connection: settled.connection.clone(),
                fields: fields.clone(),
            };
            part.connection.storage_location = placement.locations[index].clone();
            Ok((index, changed_part_body("restore", base, &part)?))
        })
        .collect()
}

/// After a failed phase the downloads go (unless `noDeleteDownloads`); the truncation snapshots stay: once
/// TRUNCATE ran they hold the only copy of what the tables had.
async fn clean_up_after_failure<F: RestorePart>(
    coordinator: &Coordinator,
    base: &Map<String, Value>,
    settled: &StorageRequest<F>,
    placement: &Placement,
    failure: &OperationFailure,
) {
    let settled = StorageRequest {
        connection: settled.connection.clone(),
        fields: settled.fields.keeping_truncates(),
    };
    tracing::info!(%failure, "the restore failed; removing the downloaded files on every node");
    let parts = match parts(
        base,
        &settled,
        placement,
        Phase::Cleanup,
        coordinator.peers().len(),
        usize::MAX,
    ) {
        Ok(parts) => parts,
        Err(error) => {
            tracing::warn!(%error, "the CLEANUP after a failed restore could not be sent");
            return;
        }
    };
    let step = Step {
        phase: Some(Phase::Cleanup.name()),
        parts,
        concurrency: coordinator.peers().len(),
        deadline: Some(super::deadline_after(CLEANUP_AFTER_FAILURE)),
        timeout_text: humantime::format_duration(CLEANUP_AFTER_FAILURE).to_string(),
    };
    if let Err(error) = coordinator.run_step(step).await {
        tracing::warn!(%error, "the CLEANUP after a failed restore failed too");
    }
}

/// Settles the backup and each node's place in the bucket. With the backup's topology (`topology/<name>.json`,
/// written by a cluster-wide backup) every node restores that backup by name, from the backed-up node with its
/// host id or, in a new cluster, with its tokens. Without one, as Icarus: the current cluster, data centre and host
/// ids, and the tag as given.
async fn place(
    context: &OperationContext,
    cassandra: &Cassandra,
    bucket: &RemoteStorage,
    location: &StorageLocation,
    current: &ClusterTopology,
    peers: &[Peer],
    asked: &RestorePlan,
) -> Result<Placement, OperationFailure> {
    let schema = asked.exact_schema_version.then(|| {
        asked
            .schema_version
            .map(|v| v.to_string())
            .unwrap_or_else(|| current.schema_version.clone())
    });
    let found = backup_topology(context, bucket, &asked.snapshot_tag, schema.as_deref()).await?;
    let Some((name, backed_up)) = found else {
        return Ok(Placement {
            backup: asked.snapshot_tag.clone(),
            pinned: false,
            locations: peers
                .iter()
                .map(|peer| location.for_node(&current.cluster_name, &peer.dc, &peer.host_id))
                .collect(),
        });
    };
    let locations = if peers.iter().all(|peer| {
        backed_up
            .topology
            .iter()
            .any(|node| node.node_id == peer.host_id)
    }) {
        peers
            .iter()
            .map(|peer| {
                let node = backed_up
                    .topology
                    .iter()
                    .find(|node| node.node_id == peer.host_id);
                let dc = node.map_or(peer.dc.as_str(), |node| node.dc.as_str());
                location.for_node(&backed_up.cluster_name, dc, &peer.host_id)
            })
            .collect()
    } else {
        by_tokens(
            context, cassandra, bucket, location, &backed_up, peers, &name,
        )
        .await?
    };
    Ok(Placement {
        backup: name,
        pinned: true,
        locations,
    })
}

/// Matches each node to the backed-up node that owned the same tokens (a restore into new nodes, which must have
/// been given the old ones, e.g. by IN_PLACE's `initial_token`).
async fn by_tokens(
    context: &OperationContext,
    cassandra: &Cassandra,
    bucket: &RemoteStorage,
    location: &StorageLocation,
    backed_up: &ClusterTopology,
    peers: &[Peer],
    name: &str,
) -> Result<Vec<StorageLocation>, OperationFailure> {
    let mut owners = Vec::new();
    for node in &backed_up.topology {
        for segment in [
            backed_up.cluster_name.as_str(),
            node.dc.as_str(),
            node.node_id.as_str(),
        ] {
            if !crate::node_fs::names::is_path_segment(segment) {
                return Err(OperationFailure::Failed(format!(
                    "the topology of backup {name} names '{}', which cannot be part of a storage location",
                    segment.escape_debug()
                )));
            }
        }
        let node_location = location.for_node(&backed_up.cluster_name, &node.dc, &node.node_id);
        let remote = bucket.at(node_location.clone())?;
        let manifest =
            crate::restore::choice::read_manifest(context, &remote, &manifest_key(name), None)
                .await?;
        owners.push((sorted(manifest.tokens), node_location));
    }
    let mut locations = Vec::new();
    for peer in peers {
        let tokens = sorted(
            context
                .cancellable(cassandra.tokens_of(&peer.node))
                .await??,
        );
        let owner = owners.iter().find(|(owned, _)| *owned == tokens).ok_or_else(|| {
            OperationFailure::Failed(format!(
                "{peer} is not in backup {name} (host ids differ) and no backed-up node owned its tokens; a restore \
                 into new nodes needs them to own the backed-up nodes' tokens"
            ))
        })?;
        locations.push(owner.1.clone());
    }
    Ok(locations)
}

fn sorted(mut tokens: Vec<String>) -> Vec<String> {
    tokens.sort();
    tokens
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The response is what the `json!` it replaced wrote, with TRUNCATE run or not, and reads back as itself.
    #[test]
    fn the_response_keeps_its_json() {
        for (phases, truncated_on) in [
            (Phase::ALL.to_vec(), Some("10.0.0.2".to_owned())),
            (vec![Phase::Init], None),
        ] {
            let before = json!({
                "backup": "tag-s-1",
                "phases": phases.iter().map(|p| p.name()).collect::<Vec<_>>(),
                "truncatedOn": truncated_on,
            });
            let typed = ClusterRestoreResponse {
                backup: "tag-s-1".into(),
                phases,
                truncated_on,
            };
            let written = serde_json::to_string(&typed).unwrap();
            assert_eq!(written, serde_json::to_string(&before).unwrap());
            let read: ClusterRestoreResponse = serde_json::from_str(&written).unwrap();
            assert_eq!(read, typed);
        }
    }

    /// The one field of a request the parts' phases show.
    #[derive(Debug, Clone, Default, Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Fields {
        restoration_phase: Option<Phase>,
    }

    impl RestorePart for Fields {
        fn settled(&self, _backup: &str, _pinned: bool) -> Self {
            self.clone()
        }

        fn in_phase(&self, phase: Phase) -> Self {
            Fields {
                restoration_phase: Some(phase),
            }
        }

        fn keeping_truncates(&self) -> Self {
            self.clone()
        }
    }

    fn peer(host_id: &str) -> Peer {
        Peer {
            node: format!("10.0.0.{}", host_id.len()),
            host_id: host_id.into(),
            dc: "dc1".into(),
            peer: "http://x:4567".into(),
        }
    }

    #[test]
    fn truncate_runs_on_the_node_with_the_smallest_host_id() {
        let peers = [peer("c0"), peer("a1"), peer("b2")];
        assert_eq!(truncating_node(&peers), 1);
        let placement = Placement {
            backup: "b".into(),
            pinned: true,
            locations: (0..3)
                .map(|i| StorageLocation::parse(&format!("s3://bucket/c/dc1/n{i}")).unwrap())
                .collect(),
        };
        let request = StorageRequest {
            connection: crate::storage::request::Connection::new(placement.locations[0].clone()),
            fields: Fields::default(),
        };
        let truncate = parts(&Map::new(), &request, &placement, Phase::Truncate, 3, 1).unwrap();
        assert_eq!(truncate.len(), 1);
        assert_eq!(truncate[0].1["storageLocation"], "s3://bucket/c/dc1/n1");
        assert_eq!(truncate[0].1["restorationPhase"], "TRUNCATE");
        assert_eq!(
            parts(&Map::new(), &request, &placement, Phase::Import, 3, 1)
                .unwrap()
                .len(),
            3
        );
    }
}
