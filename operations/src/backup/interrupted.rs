//! Snapshots left by interrupted backups: a backup clears its snapshot when it ends, but a killed sidecar never
//! reached that point, and a backup that ended while Cassandra was down could not; the snapshot would hold disk space
//! until someone noticed. Both are cleared once Cassandra answers.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::cassandra::Cassandra;
use crate::operation::Services;
use crate::record::OperationRecord;

/// How long to wait for Cassandra (restarting, or being repaired by an operator) before leaving the snapshots be.
const WAIT_FOR_CASSANDRA: Duration = Duration::from_secs(3600);
/// How often to look meanwhile; a look while Cassandra is down costs one refused connection.
const LOOK_EVERY: Duration = Duration::from_secs(2);

/// Whether `snapshot` is the one a backup of `tag` took: the tag itself when it was given in full
/// (`name-schema-millis`), else `<tag>-<schema version>-<millis>` (see `crate::esop::tag::resolved_tag`).
pub fn is_snapshot_of(tag: &str, snapshot: &str) -> bool {
    if snapshot == tag {
        return crate::esop::tag::ends_in_timestamp(tag);
    }
    let Some(rest) = snapshot.strip_prefix(tag).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    match rest.rsplit_once('-') {
        Some((schema, millis)) => {
            uuid::Uuid::parse_str(schema).is_ok() && millis.parse::<u64>().is_ok()
        }
        None => false,
    }
}

/// The one field of a recorded `backup` request that names its snapshot. Read on its own, so that this engine needs
/// no request type; a request recorded without a tag, or with one that is not a string, names no snapshot.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordedBackup {
    snapshot_tag: Option<String>,
}

/// The snapshot tag a recorded `backup` request gave (filled in at submit, so every accepted backup has one).
fn recorded_tag(request: &Map<String, Value>) -> Option<String> {
    RecordedBackup::deserialize(request).ok()?.snapshot_tag
}

/// Clears the snapshots of the interrupted `backup` operations among `records`; logs what it did.
pub async fn clear_snapshots(services: Arc<Services>, records: Vec<Arc<OperationRecord>>) {
    let tags: Vec<String> = records
        .iter()
        .filter(|record| record.type_id() == "backup")
        .filter_map(|record| recorded_tag(record.request()))
        .collect();
    clear_when_back(services, tags).await;
}

/// Clears the snapshots of backups of `tags` once Cassandra answers; logs what it did.
pub async fn clear_when_back(services: Arc<Services>, tags: Vec<String>) {
    if tags.is_empty() {
        return;
    }
    let deadline = tokio::time::Instant::now() + WAIT_FOR_CASSANDRA;
    let snapshots = loop {
        let attempt = async {
            let cassandra = Cassandra::new(services.jmx.client().await?);
            let snapshots = cassandra.snapshots().await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((cassandra, snapshots))
        };
        match attempt.await {
            Ok(found) => break found,
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(%error, "waiting for Cassandra to clear interrupted backups' snapshots");
                tokio::time::sleep(LOOK_EVERY).await;
            }
            Err(error) => {
                tracing::warn!(%error, ?tags, "Cassandra did not come back: could not clear the snapshots of interrupted backups; clear them with clear-snapshot");
                return;
            }
        }
    };
    let (cassandra, snapshots) = snapshots;
    for snapshot in snapshots.keys() {
        if tags.iter().any(|tag| is_snapshot_of(tag, snapshot)) {
            match cassandra.clear_snapshot(snapshot, &[]).await {
                Ok(()) => {
                    tracing::info!(%snapshot, "cleared the snapshot of an interrupted backup")
                }
                Err(error) => {
                    tracing::warn!(%snapshot, %error, "could not clear the snapshot of an interrupted backup")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn the_tag_is_read_from_a_recorded_request_and_nothing_else_is_needed() {
        let recorded = request(json!({
            "type": "backup",
            "snapshotTag": "nightly",
            "storageLocation": "s3://bucket/cluster/dc1/node1",
            "entities": "",
        }));
        assert_eq!(recorded_tag(&recorded).as_deref(), Some("nightly"));
        assert_eq!(recorded_tag(&request(json!({"type": "backup"}))), None);
        assert_eq!(
            recorded_tag(&request(json!({"snapshotTag": 7}))),
            None,
            "a tag that is not a string names no snapshot, as before"
        );
        assert_eq!(recorded_tag(&request(json!({"snapshotTag": null}))), None);
    }

    #[test]
    fn a_backups_snapshot_is_told_from_others() {
        let schema = "5bd4c9a6-a0ae-3a6d-9d47-2c2d4c6a7bb2";
        assert!(is_snapshot_of(
            "autosnap-1700000000",
            &format!("autosnap-1700000000-{schema}-1700000000123")
        ));
        assert!(is_snapshot_of(
            "nightly-5bd4-1700000000000",
            "nightly-5bd4-1700000000000"
        ));
        assert!(
            !is_snapshot_of("nightly", "nightly"),
            "a bare tag is never the snapshot's name"
        );
        assert!(!is_snapshot_of("nightly", "nightly-other"));
        assert!(!is_snapshot_of("nightly", &format!("nightlyx-{schema}-1")));
        assert!(!is_snapshot_of("nightly", &format!("nightly-{schema}-x")));
    }
}
