//! Backup freshness read from the bucket: the time of the newest backup a backup request (as a schedule keeps it)
//! wrote to this node's prefix, set on `daedalus_backup_last_success_timestamp_seconds`. The gauge then tells
//! after a restart, before this process made any backup, how old the newest backup is; an alert on it is not blind
//! for a day after each restart.
//!
//! It runs outside any operation (the schedule runner calls it for a backup schedule when it takes the schedule up,
//! at start or once it is created, and after each run), so it opens the storage from
//! the sidecar's [`Services`] alone, and only lists: it never creates a bucket nor writes.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::cassandra::Cassandra;
use crate::decode;
use crate::esop::manifest::ManifestName;
use crate::operation::{BoxError, OperationFailure, Services};
use crate::removal::selection::is_of_tag;
use crate::storage::request::Connection;
use crate::storage::{RemoteStorage, StorageError, StorageLocation};

/// Why the newest backup could not be read from the bucket.
#[derive(Debug, thiserror::Error)]
pub enum FreshnessError {
    #[error("the backup request's {field} {message}")]
    Request { field: String, message: String },
    #[error("a {0} request writes no backups whose freshness could be read; only a backup's can")]
    NotABackup(String),
    #[error("cannot complete the storage location {location} from Cassandra: {source}")]
    Cassandra {
        location: String,
        #[source]
        source: BoxError,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What of a backup request says where its backups are, beyond the connection.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BackupTarget {
    #[serde(default, rename = "type")]
    type_id: Option<String>,
    #[serde(default)]
    snapshot_tag: Option<String>,
    #[serde(default, deserialize_with = "decode::bool")]
    global_request: bool,
}

/// Reads the newest backup that `backup` (a backup request's body) wrote to this node's prefix, of the body's
/// `snapshotTag` when it has one, and sets the freshness gauge of its storage location and `schedule` (`None`: an
/// empty label) to its time. Returns that time; `None` when the prefix holds no such backup (the gauge is then left
/// as it is).
pub async fn refresh_from_bucket(
    services: &Services,
    backup: &Map<String, Value>,
    schedule: Option<&str>,
) -> Result<Option<DateTime<Utc>>, FreshnessError> {
    let body = Value::Object(backup.clone());
    let request = |(field, message)| FreshnessError::Request { field, message };
    let target: BackupTarget = decode::request(body.clone()).map_err(request)?;
    if let Some(type_id) = target.type_id.filter(|type_id| type_id != "backup") {
        return Err(FreshnessError::NotABackup(type_id));
    }
    let connection: Connection = decode::request(body).map_err(request)?;
    let location = node_location(
        services,
        &connection.storage_location,
        target.global_request,
    )
    .await?;
    let remote = RemoteStorage::new(
        services.storage.open(&location, &connection.options())?,
        location,
    )?;
    let Some(newest) = newest_backup(&remote, target.snapshot_tag.as_deref(), Utc::now()).await?
    else {
        tracing::info!(
            location = %remote.location(),
            tag = target.snapshot_tag.as_deref().unwrap_or_default(),
            "no backup in the bucket to read freshness from"
        );
        return Ok(None);
    };
    let Some(taken) = DateTime::from_timestamp_millis(newest.timestamp_millis()) else {
        return Ok(None);
    };
    services.metrics.backup_found(
        &remote.location().to_string(),
        schedule,
        newest.timestamp_millis() as f64 / 1000.0,
    );
    tracing::debug!(location = %remote.location(), backup = %newest, schedule, "backup freshness read from the bucket");
    Ok(Some(taken))
}

/// This node's location: as given when it names the node, else (and always for a cluster-wide backup, which
/// writes each node under its own cluster, data centre and host id) completed from Cassandra.
async fn node_location(
    services: &Services,
    location: &StorageLocation,
    global_request: bool,
) -> Result<StorageLocation, FreshnessError> {
    if location.node_path.is_some() && !global_request {
        return Ok(location.clone());
    }
    let failed = |source: BoxError| FreshnessError::Cassandra {
        location: location.to_string(),
        source,
    };
    let jmx = services
        .jmx
        .client()
        .await
        .map_err(|error| failed(Box::new(error)))?;
    crate::node_storage::node_location(&Cassandra::new(jmx), location)
        .await
        .map_err(|error: OperationFailure| failed(Box::new(error)))
}

/// How far ahead of this sidecar's clock a backup's time may be and still count: clocks of the nodes differ a
/// little, but a backup named far in the future (a wrong clock, a hostile bucket) would pin the gauge there and keep
/// the backup-age alert from ever firing.
const CLOCK_SKEW: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// The newest backup in the node's `manifests/`, of `tag` when given, taken no later than `now` (and the skew
/// allowed); a later one is passed over with a warning.
async fn newest_backup(
    remote: &RemoteStorage,
    tag: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<ManifestName>, StorageError> {
    let latest = now
        .checked_add_signed(CLOCK_SKEW)
        .map_or(i64::MAX, |latest| latest.timestamp_millis());
    let listing = remote.list("manifests/").await?;
    Ok(listing
        .iter()
        .filter_map(|object| {
            let name = object
                .key
                .strip_prefix("manifests/")?
                .strip_suffix(".json")?;
            ManifestName::parse(name)
        })
        .filter(|name| tag.is_none_or(|tag| is_of_tag(name.as_str(), tag)))
        .filter(|name| {
            let future = name.timestamp_millis() > latest;
            if future {
                tracing::warn!(location = %remote.location(), manifest = %name,
                    "a backup is named later than now; its time is not taken as the backup's freshness");
            }
            !future
        })
        .max_by(|a, b| {
            a.timestamp_millis()
                .cmp(&b.timestamp_millis())
                .then_with(|| b.as_str().cmp(a.as_str()))
        }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::operation_store::InMemoryStore;

    const SCHEMA: &str = "5bd4c9a6-a0ae-3a6d-9d47-2c2d4c6a7bb2";

    fn services() -> Services {
        Services {
            source: "test-host".into(),
            jmx: crate::JmxConnector::new(Default::default(), tokio::runtime::Handle::current()),
            storage: Default::default(),
            cql: Default::default(),
            peers: Default::default(),
            metrics: Default::default(),
            store: Arc::new(InMemoryStore::new()),
            local: Default::default(),
            shutdown_request: CancellationToken::new(),
        }
    }

    /// A bucket directory with manifests written by hand (their content is not read) under `c/dc1/n1`.
    fn bucket(names: &[String]) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let manifests = dir.path().join("bucket/c/dc1/n1/manifests");
        std::fs::create_dir_all(&manifests).unwrap();
        for name in names {
            std::fs::write(manifests.join(format!("{name}.json")), b"{}").unwrap();
        }
        let location = format!("file://{}/bucket/c/dc1/n1", dir.path().display());
        (dir, location)
    }

    fn body(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn gauge(services: &Services, location: &str, schedule: &str) -> Option<f64> {
        let text = services.metrics.encode();
        let series = format!(
            "daedalus_backup_last_success_timestamp_seconds{{keyspace=\"*\",storage_location=\"{location}\",schedule=\"{schedule}\"}} "
        );
        let line = text.lines().find(|line| line.starts_with(&series))?;
        line[series.len()..].parse().ok()
    }

    #[tokio::test]
    async fn the_newest_manifest_of_the_tag_sets_the_gauge() {
        let (_dir, location) = bucket(&[
            format!("schedule-1a2b3c4d-{SCHEMA}-1700000000000"),
            format!("schedule-1a2b3c4d-{SCHEMA}-1700000500250"),
            format!("schedule-1a2b3c4d-{SCHEMA}-1700000100000"),
            // Newer, but of other tags.
            format!("other-{SCHEMA}-1750000000000"),
            format!("schedule-1a2b3c4d0-{SCHEMA}-1750000000000"),
        ]);
        let services = services();
        assert_eq!(gauge(&services, &location, "s1"), None);
        let taken = refresh_from_bucket(
            &services,
            &body(json!({"type": "backup", "storageLocation": location, "snapshotTag": "schedule-1a2b3c4d"})),
            Some("s1"),
        )
        .await
        .unwrap();
        assert_eq!(taken.unwrap().timestamp_millis(), 1_700_000_500_250);
        assert_eq!(gauge(&services, &location, "s1"), Some(1_700_000_500.25));
        assert_eq!(
            gauge(&services, &location, ""),
            None,
            "only the schedule's series"
        );

        // Without a tag, the newest of all; without a schedule, the empty label.
        let taken =
            refresh_from_bucket(&services, &body(json!({"storageLocation": location})), None)
                .await
                .unwrap();
        assert_eq!(taken.unwrap().timestamp_millis(), 1_750_000_000_000);
        assert_eq!(gauge(&services, &location, ""), Some(1_750_000_000.0));
        assert_eq!(gauge(&services, &location, "s1"), Some(1_700_000_500.25));
    }

    /// A backup named in the future (beyond a few minutes of clock skew) is passed over: the gauge keeps telling
    /// the age of the newest real one.
    #[tokio::test]
    async fn a_backup_named_in_the_future_is_passed_over() {
        let now = Utc::now().timestamp_millis();
        let minute = 60_000;
        let (_dir, location) = bucket(&[
            format!("daily-{SCHEMA}-{}", now - 60 * minute),
            format!("daily-{SCHEMA}-{}", now + 2 * minute),
            format!("daily-{SCHEMA}-{}", now + 10 * minute),
            format!("daily-{SCHEMA}-4102444800000"),
        ]);
        let services = services();
        let taken = refresh_from_bucket(
            &services,
            &body(json!({"storageLocation": location, "snapshotTag": "daily"})),
            Some("s3"),
        )
        .await
        .unwrap();
        assert_eq!(
            taken.unwrap().timestamp_millis(),
            now + 2 * minute,
            "within the clock skew allowed"
        );
        let (_dir, location) = bucket(&[format!("daily-{SCHEMA}-4102444800000")]);
        let none =
            refresh_from_bucket(&services, &body(json!({"storageLocation": location})), None)
                .await
                .unwrap();
        assert_eq!(none, None);
        assert_eq!(gauge(&services, &location, ""), None);
    }

    #[tokio::test]
    async fn no_backup_leaves_the_gauge_and_bad_bodies_are_errors() {
        let (_dir, location) = bucket(&[format!("daily-{SCHEMA}-1700000000000")]);
        let services = services();
        let none = refresh_from_bucket(
            &services,
            &body(json!({"storageLocation": location, "snapshotTag": "weekly"})),
            Some("s2"),
        )
        .await
        .unwrap();
        assert_eq!(none, None);
        assert_eq!(gauge(&services, &location, "s2"), None);

        let error = refresh_from_bucket(
            &services,
            &body(json!({"type": "verify", "storageLocation": location})),
            None,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(error, FreshnessError::NotABackup(ref t) if t == "verify"),
            "{error}"
        );
        let error = refresh_from_bucket(&services, &body(json!({"snapshotTag": "x"})), None)
            .await
            .unwrap_err();
        assert!(
            matches!(error, FreshnessError::Request { ref field, .. } if field == "storageLocation"),
            "{error}"
        );
    }
}
