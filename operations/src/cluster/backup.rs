//! A cluster-wide backup, as Icarus coordinates it (§4.2 of the Icarus/Esop notes): one tag and schema version for
//! every node, each node's part written under `<cluster>/<dc>/<hostId>`, the bucket checked once by the coordinator,
//! and the topology uploaded once, after every node completed, at `topology/<tag>.json`.

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::Timeout;
use super::coordinator::{Coordinator, Step};
use super::participants::participants;
use super::{changed_part_body, deadline_after, storage_part_body};
use crate::backup::run::upload_topology;
use crate::esop::tag::resolved_tag;
use crate::node_storage::{self, BucketCheck};
use crate::operation::{OperationContext, OperationFailure};
use crate::storage::request::StorageRequest;

/// What a cluster-wide backup needs of the request's own fields, which the request type implements: a node's part
/// is a changed clone of them.
pub trait BackupPart: Serialize + Clone + Send + Sync + 'static {
    /// This node's part of the backup: the tag and schema version the coordinator settled, the bucket it checked
    /// (none created), and no topology, which the coordinator uploads once.
    fn part(&self, tag: &str, schema_version: uuid::Uuid) -> Self;
}

/// A cluster-wide backup: the request the parts are made of, and what the coordinator reads of it.
pub struct ClusterBackup<F> {
    pub request: StorageRequest<F>,
    pub timeout: Timeout,
    /// Only the nodes of these data centres.
    pub dc: Option<String>,
    /// The tag as given or generated at submit; the backup's name is made of it ([`resolved_tag`]).
    pub tag: Option<String>,
    pub tag_generated: bool,
    pub create_missing_bucket: bool,
}

/// The response of a cluster-wide backup, recorded before any part starts: a sidecar taking the backup over reads
/// the tag and schema version back from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterBackupResponse {
    pub snapshot_tag: String,
    pub schema_version: String,
    /// The topology's key in the bucket.
    pub topology: String,
}

/// Boxed, and built in this function's own frame: the coordinator's future is large, and a node's own backup,
/// which shares `Backup::run` with it, should not carry its size.
pub fn backup<F: BackupPart>(
    plan: ClusterBackup<F>,
    context: &OperationContext,
) -> BoxFuture<'_, Result<ClusterBackupResponse, OperationFailure>> {
    Box::pin(coordinate(plan, context))
}

async fn coordinate<F: BackupPart>(
    plan: ClusterBackup<F>,
    context: &OperationContext,
) -> Result<ClusterBackupResponse, OperationFailure> {
    let request = &plan.request;
    let deadline = deadline_after(plan.timeout.0);
    let cassandra = context.cassandra().await?;
    let cluster = participants(context, &cassandra, plan.dc.as_deref()).await?;
    let topology = cluster.topology;
    // One tag for all: Icarus's `<tag>-<schemaVersion>-<timestamp>`, from the coordinator's schema and clock; or,
    // for a backup taken over from a coordinator that stopped, the tag it settled.
    let settled = context.recorded_response().and_then(|response| {
        serde_json::from_value::<ClusterBackupResponse>(response.clone()).ok()
    });
    let at = chrono::DateTime::from_timestamp_millis(topology.timestamp)
        .unwrap_or_else(chrono::Utc::now);
    let (tag, schema_version) = match settled {
        Some(settled) => (settled.snapshot_tag, settled.schema_version),
        None => (
            resolved_tag(
                plan.tag.as_deref(),
                plan.tag_generated,
                &topology.schema_version,
                at,
            ),
            topology.schema_version.clone(),
        ),
    };
    let schema = uuid::Uuid::parse_str(&schema_version).map_err(|_| {
        OperationFailure::Failed(format!(
            "the cluster's schema version '{}' is not a UUID, which every node's part must be given",
            schema_version.escape_debug()
        ))
    })?;
    let response = ClusterBackupResponse {
        topology: format!("topology/{tag}.json"),
        snapshot_tag: tag.clone(),
        schema_version,
    };
    // Recorded before any part starts, so a sidecar taking the backup over uses the same tag.
    context.respond(&response)?;
    let nodes = cluster.peers.len();
    let coordinator = Coordinator::new(context, "backup", cluster.peers, nodes + 1)?;
    coordinator.preflight().await?;

    let location = &request.connection.storage_location;
    let first = &coordinator.peers()[0];
    let bucket = node_storage::open_location(
        context,
        location.for_node(&topology.cluster_name, &first.dc, &first.host_id),
        &request.connection,
        BucketCheck::of(&request.connection, plan.create_missing_bucket),
    )
    .await?;

    let base = storage_part_body("backup", request)?;
    let fields = request.fields.part(&tag, schema);
    let parts = coordinator
        .peers()
        .iter()
        .enumerate()
        .map(|(index, peer)| {
            let mut part = StorageRequest {
                connection: request.connection.clone(),
                fields: fields.clone(),
            };
            part.connection.storage_location =
                location.for_node(&topology.cluster_name, &peer.dc, &peer.host_id);
            part.connection.skip_bucket_verification = true;
            Ok((index, changed_part_body("backup", &base, &part)?))
        })
        .collect::<Result<_, OperationFailure>>()?;
    coordinator
        .run_step(Step {
            phase: None,
            parts,
            concurrency: nodes,
            deadline: Some(deadline),
            timeout_text: plan.timeout.to_string(),
        })
        .await?;

    upload_topology(context, &bucket, &topology, &tag).await?;
    coordinator.finish_unit();
    tracing::info!(%tag, nodes, "cluster-wide backup complete");
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sidecar taking the backup over reads back the response the first coordinator recorded.
    #[test]
    fn the_recorded_response_is_read_back() {
        let response = ClusterBackupResponse {
            snapshot_tag: "t-1".into(),
            schema_version: "s".into(),
            topology: "topology/t-1.json".into(),
        };
        let recorded = serde_json::to_value(&response).unwrap();
        assert_eq!(
            recorded.to_string(),
            r#"{"snapshotTag":"t-1","schemaVersion":"s","topology":"topology/t-1.json"}"#
        );
        assert_eq!(
            serde_json::from_value::<ClusterBackupResponse>(recorded).unwrap(),
            response
        );
    }
}
