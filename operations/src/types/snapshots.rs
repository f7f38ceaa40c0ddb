//! `snapshot`, `clear-snapshot` and `list-snapshots`: Cassandra's snapshots as operations of their own (Icarus
//! only took them inside backups; operators of the peer sidecars use them directly).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::decode::{self, HumanDuration};
use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::storage::Entities;
use crate::validation::{self, Validate, Violations};

/// Cassandra refuses snapshot TTLs under a minute (`cassandra.snapshot.min_allowed_ttl_seconds`).
const MIN_TTL: Duration = Duration::from_secs(60);

fn snapshot_tag(violations: &mut Violations, tag: &str) {
    if tag.is_empty() || tag.contains(['/', '\\']) {
        violations.add(
            "snapshotTag",
            format!("'{tag}' cannot name a snapshot directory"),
        );
    }
}

fn default_tag(accepted_at: chrono::DateTime<chrono::Utc>) -> String {
    format!("daedalus-{}", accepted_at.timestamp_millis())
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotRequest {
    /// Absent: `daedalus-<epoch millis>`, filled in when the request is accepted ([`Snapshot::fill_defaults`]), so
    /// the response names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_tag: Option<String>,
    /// Absent or empty: every keyspace.
    #[serde(default, skip_serializing_if = "Entities::is_all")]
    pub entities: Entities,
    /// Cassandra 4.1+ removes the snapshot after this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<HumanDuration>,
    #[serde(default, deserialize_with = "decode::bool")]
    pub skip_flush: bool,
}

impl Validate for SnapshotRequest {
    fn validate(&self, violations: &mut Violations) {
        if let Some(tag) = &self.snapshot_tag {
            snapshot_tag(violations, tag);
        }
        if let Some(HumanDuration(ttl)) = self.ttl
            && ttl < MIN_TTL
        {
            violations.add("ttl", "must be at least 60 seconds, as Cassandra requires");
        }
    }
}

pub struct Snapshot;

impl Operation for Snapshot {
    const TYPE: &'static str = "snapshot";
    type Request = SnapshotRequest;

    fn fill_defaults(
        &self,
        request: &mut SnapshotRequest,
        accepted_at: chrono::DateTime<chrono::Utc>,
    ) {
        request
            .snapshot_tag
            .get_or_insert_with(|| default_tag(accepted_at));
    }

    async fn run(
        &self,
        request: SnapshotRequest,
        context: OperationContext,
    ) -> Result<(), OperationFailure> {
        let cassandra = context.cassandra().await?;
        let ttl = match request.ttl {
            None => None,
            Some(HumanDuration(ttl)) => {
                let version = context.cancellable(cassandra.release_version()).await??;
                if !version.at_least(4, 1) {
                    return Err(OperationFailure::Failed(format!(
                        "snapshot TTLs need Cassandra 4.1 or later; {} runs {version}",
                        cassandra.jmx().address()
                    )));
                }
                Some(format!("{}s", ttl.as_secs()))
            }
        };
        let entities = request.entities.to_list();
        // Always filled in at submit; a request that did not go through the registry gets its tag now.
        let tag = request
            .snapshot_tag
            .unwrap_or_else(|| default_tag(chrono::Utc::now()));
        let take = cassandra.take_snapshot(&tag, &entities, ttl.as_deref(), request.skip_flush);
        context.cancellable(take).await??;
        Ok(())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClearSnapshotRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_tag: Option<String>,
    /// Keyspaces to clear it from; absent or empty: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyspaces: Option<Vec<String>>,
    /// Clear every snapshot. Cassandra does that for an empty tag; we want it said out loud.
    #[serde(default, deserialize_with = "decode::bool")]
    pub all: bool,
}

impl Validate for ClearSnapshotRequest {
    fn validate(&self, violations: &mut Violations) {
        match (&self.snapshot_tag, self.all) {
            (Some(tag), false) => snapshot_tag(violations, tag),
            (None, true) => {}
            (Some(_), true) => violations.add("all", "cannot be combined with snapshotTag"),
            (None, false) => violations.add(
                "snapshotTag",
                "is required (or set all: true to clear every snapshot)",
            ),
        }
        for (index, keyspace) in self.keyspaces.iter().flatten().enumerate() {
            validation::keyspace_name(violations, &format!("keyspaces[{index}]"), keyspace);
        }
    }
}

pub struct ClearSnapshot;

impl Operation for ClearSnapshot {
    const TYPE: &'static str = "clear-snapshot";
    type Request = ClearSnapshotRequest;

    async fn run(
        &self,
        request: ClearSnapshotRequest,
        context: OperationContext,
    ) -> Result<(), OperationFailure> {
        let cassandra = context.cassandra().await?;
        let keyspaces = request.keyspaces.unwrap_or_default();
        for keyspace in &keyspaces {
            context
                .cancellable(cassandra.require_tables(keyspace, &[]))
                .await??;
        }
        let tag = request.snapshot_tag.unwrap_or_default();
        context
            .cancellable(cassandra.clear_snapshot(&tag, &keyspaces))
            .await??;
        Ok(())
    }
}

/// Lists the node's snapshots; takes no parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct ListSnapshotsRequest {}

impl Validate for ListSnapshotsRequest {}

/// What `list-snapshots` answers: the node's snapshots, by tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotsResponse {
    pub snapshots: Vec<SnapshotTables>,
}

/// One snapshot tag and the tables that have it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotTables {
    pub tag: String,
    pub tables: Vec<SnapshotTable>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotTable {
    pub keyspace: String,
    pub table: String,
}

impl SnapshotsResponse {
    /// From Cassandra's `(keyspace, table)` pairs by tag, in the map's order.
    fn new(snapshots: impl IntoIterator<Item = (String, Vec<(String, String)>)>) -> Self {
        let snapshots = snapshots
            .into_iter()
            .map(|(tag, tables)| SnapshotTables {
                tag,
                tables: tables
                    .into_iter()
                    .map(|(keyspace, table)| SnapshotTable { keyspace, table })
                    .collect(),
            })
            .collect();
        SnapshotsResponse { snapshots }
    }
}

pub struct ListSnapshots;

impl Operation for ListSnapshots {
    const TYPE: &'static str = "list-snapshots";
    type Request = ListSnapshotsRequest;

    /// `response`: `{"snapshots": [{"tag": ..., "tables": [{"keyspace": ..., "table": ...}]}]}`, by tag.
    async fn run(
        &self,
        _request: ListSnapshotsRequest,
        context: OperationContext,
    ) -> Result<(), OperationFailure> {
        let cassandra = context.cassandra().await?;
        let snapshots = context.cancellable(cassandra.snapshots()).await??;
        context.respond(&SnapshotsResponse::new(snapshots))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    /// `list-snapshots` answers what the `json!` it replaced wrote, by tag, and the answer reads back as itself.
    #[test]
    fn the_response_keeps_its_json() {
        let pair = |keyspace: &str, table: &str| (keyspace.to_owned(), table.to_owned());
        let snapshots = BTreeMap::from([
            ("b".to_owned(), vec![pair("ks", "t1"), pair("ks", "t2")]),
            ("a".to_owned(), vec![pair("ks2", "t")]),
            ("empty".to_owned(), vec![]),
        ]);
        let before: Vec<_> = snapshots
            .clone()
            .into_iter()
            .map(|(tag, tables)| {
                let tables: Vec<_> = tables
                    .into_iter()
                    .map(|(keyspace, table)| json!({"keyspace": keyspace, "table": table}))
                    .collect();
                json!({"tag": tag, "tables": tables})
            })
            .collect();
        let before = json!({ "snapshots": before });
        let typed = SnapshotsResponse::new(snapshots);
        let written = serde_json::to_string(&typed).unwrap();
        assert_eq!(written, serde_json::to_string(&before).unwrap());
        let read: SnapshotsResponse = serde_json::from_str(&written).unwrap();
        assert_eq!(read, typed);
    }
}
