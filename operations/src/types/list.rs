//! `list`: a node's backups as the bucket holds them, in Esop's report. The manifests are read straight from the
//! bucket ([`crate::removal::manifests`]); Esop reads a local cache that only `list` fills.

use serde::{Deserialize, Serialize};

use crate::decode;
use crate::esop::report::AllManifestsReport;
use crate::node_storage::{self, BucketCheck, NodePath};
use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::removal::manifests::{manifests, report_of};
use crate::storage::RemoteStorage;
use crate::storage::remote::skipped_objects;
use crate::storage::request::{self as storage, Connection, StorageFields, StorageRequest};
use crate::storage::skipped::SkippedObject;
use crate::validation::Violations;

/// What `list` answers: Esop's report, and after its fields, only when a listing passed over some, the objects
/// skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListResponse {
    #[serde(flatten)]
    pub report: AllManifestsReport,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_objects: Vec<SkippedObject>,
}

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
        context.respond(&ListResponse {
            report,
            skipped_objects: skipped_objects(&skipped),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esop::manifest::{EntryType, ManifestEntry};
    use crate::esop::report::ManifestReport;
    use crate::storage::skipped::{SkipReason, SkippedEntry};

    /// The response is Esop's report as it was written, with `skippedObjects` appended only when there are some
    /// (as the key patched onto the report's JSON was), and reads back as itself.
    #[test]
    fn the_response_keeps_its_json() {
        let report = AllManifestsReport {
            total_size: 130,
            total_files: 2,
            total_manifests: 1,
            reports: vec![ManifestReport {
                files: 2,
                size: 100,
                name: "tag-s-1700000000000".into(),
                reclaimable_space: 100,
                removable_entries: vec!["data/ks/t-1/1-2/nb-1-big-Data.db".into()],
                timestamp: "2023-11-14T22:13:20".into(),
                manifest: ManifestEntry {
                    object_key: "manifests/tag-s-1700000000000.json".into(),
                    kind: EntryType::File,
                    size: 30,
                    hash: None,
                },
                unixtimestamp: 1_700_000_000_000,
            }],
        };
        let skipped = vec![SkippedEntry {
            name: "c/d/n/manifests/evil\\nname.json".into(),
            reason: SkipReason::NotAKey,
        }];
        for skipped in [vec![], skipped] {
            let mut before = serde_json::to_value(&report).unwrap();
            if !skipped.is_empty() {
                before["skippedObjects"] = skipped
                    .iter()
                    .map(|entry| {
                        serde_json::json!({"key": entry.name, "reason": entry.reason.to_string()})
                    })
                    .collect();
            }
            let typed = ListResponse {
                report: report.clone(),
                skipped_objects: skipped_objects(&skipped),
            };
            let written = serde_json::to_string(&typed).unwrap();
            assert_eq!(written, serde_json::to_string(&before).unwrap());
            let read: ListResponse = serde_json::from_str(&written).unwrap();
            assert_eq!(read, typed);
        }
    }
}
