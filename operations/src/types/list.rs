//! `list`: a node's backups as the bucket holds them, in Esop's report. The manifests are read straight from the
//! bucket ([`crate::removal::manifests`]); Esop reads a local cache that only `list` fills.

use serde::{Deserialize, Serialize};

use crate::decode;
use crate::node_storage::{self, BucketCheck, NodePath};
use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::removal::manifests::{manifests, report_of};
use crate::storage::RemoteStorage;
use crate::storage::remote::skipped_json;
use crate::storage::request::{self as storage, Connection, StorageFields, StorageRequest};
use crate::validation::Violations;

/// Esop's `ListOperationRequest`. The printing options of the Esop CLI (`json`, `humanUnits`, `toFile`, ...) are
/// accepted and echoed; the report is always in the operation's `response`.
pub type ListRequest = StorageRequest<ListFields>;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListFields {
    /// Fill an incomplete location with this node's cluster, data centre and host id.
    #[serde(default, deserialize_with = "decode::bool")]
    pub resolve_nodes: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub to_request: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub json: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub human_units: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub simple_format: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_file: Option<String>,
    /// Only backups taken at or before this instant (epoch millis).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "decode::option_i64"
    )]
    pub from_timestamp: Option<i64>,
    /// Only the N oldest of those.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "decode::option_i32"
    )]
    pub last_n: Option<i32>,
    #[serde(default, deserialize_with = "decode::bool")]
    pub skip_download: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<String>,
}

impl StorageFields for ListFields {
    fn validate(&self, connection: &Connection, violations: &mut Violations) {
        storage::node_location(
            violations,
            connection,
            Some(("resolveNodes", self.resolve_nodes)),
        );
        if let Some(n) = self.last_n
            && n < 1
        {
            violations.add("lastN", format!("must be 1 or more, got {n}"));
        }
    }
}

/// The node's storage, the location completed from Cassandra when asked.
pub(super) async fn open_node_storage(
    context: &OperationContext,
    connection: &Connection,
    resolve_nodes: bool,
) -> Result<RemoteStorage, OperationFailure> {
    let node_path = if resolve_nodes {
        NodePath::FromCassandra
    } else {
        NodePath::AsGiven
    };
    node_storage::open(
        context,
        connection,
        node_path,
        BucketCheck::of(connection, false),
    )
    .await
}

pub struct List;

impl Operation for List {
    const TYPE: &'static str = "list";
    type Request = ListRequest;

    async fn run(
        &self,
        request: ListRequest,
        context: OperationContext,
    ) -> Result<(), OperationFailure> {
        let StorageRequest {
            connection,
            fields: request,
        } = request;
        let remote = open_node_storage(&context, &connection, request.resolve_nodes).await?;
        let (mut report, skipped) = crate::operation_store::releasing_memory(async {
            let (manifests, skipped) = manifests(&context, &remote).await?;
            Ok::<_, OperationFailure>((report_of(&remote, &manifests)?, skipped))
        })
        .await?;
        if let Some(until) = request.from_timestamp {
            report.retain_up_to(until);
        }
        if let Some(n) = request.last_n {
            report.retain_oldest(usize::try_from(n).unwrap_or(0));
        }
        let mut response = serde_json::to_value(&report)
            .map_err(|error| OperationFailure::context("cannot describe the backups", error))?;
        // Beside Esop's report, only when there is something to say.
        if !skipped.is_empty() {
            response["skippedObjects"] = skipped_json(&skipped);
        }
        context.set_response(response);
        Ok(())
    }
}
