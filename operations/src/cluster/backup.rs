//! A cluster-wide backup, as Icarus coordinates it (§4.2 of the Icarus/Esop notes): one tag and schema version for
//! every node, each node's part written under `<cluster>/<dc>/<hostId>`, the bucket checked once by the coordinator,
//! and the topology uploaded once, after every node completed, at `topology/<tag>.json`.

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::coordinator::{Coordinator, Step};
use super::peers::participants;
use super::{deadline_after, storage_part_body};
use crate::backup::run::upload_topology;
use crate::esop::tag::resolved_tag;
use crate::node_storage::{self, BucketCheck};
use crate::operation::{OperationContext, OperationFailure};
use crate::types::backup::BackupRequest;

/// Boxed, and built in this function's own frame: the coordinator's future is large, and a node's own backup,
/// which shares `Backup::run` with it, should not carry its size.
pub fn backup(
    request: BackupRequest,
    context: &OperationContext,
) -> BoxFuture<'_, Result<Value, OperationFailure>> {
    Box::pin(coordinate(request, context))
}

async fn coordinate(
    request: BackupRequest,
    context: &OperationContext,
) -> Result<Value, OperationFailure> {
    let deadline = deadline_after(request.fields.timeout.0);
    let cassandra = context.cassandra().await?;
    let cluster = participants(context, &cassandra, request.fields.dc.as_deref()).await?;
    let topology = cluster.topology;
    // One tag for all: Icarus's `<tag>-<schemaVersion>-<timestamp>`, from the coordinator's schema and clock; or,
    // for a backup taken over from a coordinator that stopped, the tag it settled.
    let settled = |field: &str| {
        context
            .recorded_response()
            .and_then(|response| response.get(field)?.as_str().map(str::to_string))
    };
    let at = chrono::DateTime::from_timestamp_millis(topology.timestamp)
        .unwrap_or_else(chrono::Utc::now);
    let tag = settled("snapshotTag").unwrap_or_else(|| {
        resolved_tag(
            request.fields.snapshot_tag.as_deref(),
            request.fields.snapshot_tag_generated,
            &topology.schema_version,
            at,
        )
    });
    let schema_version = settled("schemaVersion").unwrap_or(topology.schema_version.clone());
    let response = json!({
        "snapshotTag": tag,
        "schemaVersion": schema_version,
        "topology": format!("topology/{tag}.json"),
    });
    // Recorded before any part starts, so a sidecar taking the backup over uses the same tag.
    context.set_response(response.clone());
    let nodes = cluster.peers.len();
    let coordinator = Coordinator::new(context, "backup", cluster.peers, nodes + 1)?;
    coordinator.preflight().await?;

    let location = &request.connection.storage_location;
    let first = &coordinator.peers()[0];
    let bucket = node_storage::open_location(
        context,
        location.for_node(&topology.cluster_name, &first.dc, &first.host_id),
        &request.connection,
        BucketCheck::of(&request.connection, request.fields.create_missing_bucket),
    )
    .await?;

    let template = storage_part_body("backup", &request)?;
    let parts = coordinator
        .peers()
        .iter()
        .enumerate()
        .map(|(index, peer)| {
            let mut body = template.clone();
            body.insert(
                "storageLocation".into(),
                location
                    .for_node(&topology.cluster_name, &peer.dc, &peer.host_id)
                    .to_string()
                    .into(),
            );
            body.insert("snapshotTag".into(), tag.clone().into());
            body.insert("schemaVersion".into(), schema_version.clone().into());
            body.insert("skipBucketVerification".into(), true.into());
            body.insert("createMissingBucket".into(), false.into());
            body.insert("uploadClusterTopology".into(), false.into());
            (index, body.into())
        })
        .collect();
    coordinator
        .run_step(Step {
            phase: None,
            parts,
            concurrency: nodes,
            deadline: Some(deadline),
            timeout_text: request.fields.timeout.to_string(),
        })
        .await?;

    upload_topology(context, &bucket, &topology, &tag).await?;
    coordinator.finish_unit();
    tracing::info!(%tag, nodes, "cluster-wide backup complete");
    Ok(response)
}
