//! `commitlog-restore` (point in time): downloads the commit-log segments a `commitlog-backup` archived between
//! two instants, and writes `commitlog_archiving.properties` so that Cassandra, at its next start, replays them up
//! to `timestampEnd`. Run it on a stopped node, after restoring the snapshot taken before `timestampStart`.
//!
//! Esop's fields; Esop's own REST path is broken (its `keyspaceTables` cannot be decoded), this one works.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::backup::hashes::HashAlgorithm;
use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::restore::commitlog;
use crate::restore::download::{DownloadSettings, PlannedDownload};
use crate::storage::node::{self, BucketCheck, NodePath};
use crate::storage::request::{self as storage, Connection, StorageFields, StorageRequest};
use crate::storage::{KeyspaceTable, Throttle};
use crate::validation::{self, Violations};

/// Esop's `RestoreCommitLogsOperationRequest`.
pub type CommitLogRestoreRequest = StorageRequest<CommitLogRestoreFields>;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitLogRestoreFields {
    /// The node's commit-log directory: the segments there are moved aside (to `<parent>/commitlogs-<millis>`),
    /// so only the restored ones are replayed.
    #[serde(default = "commit_log_directory")]
    pub cassandra_commit_log_directory: String,
    /// Accepted for Esop compatibility; unused, as in Esop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_container_path: Option<String>,
    /// Where `commitlog_archiving.properties` (and `cassandra-env.sh`) are.
    #[serde(default = "config_directory")]
    pub cassandra_config_directory: String,
    /// Where the segments are downloaded, for Cassandra to replay from.
    pub commitlog_download_dir: String,
    /// Segments archived from this instant (epoch millis) ...
    #[serde(default, deserialize_with = "crate::decode::i64")]
    pub timestamp_start: i64,
    /// ... up to this one, the point in time to replay to.
    #[serde(deserialize_with = "crate::decode::i64")]
    pub timestamp_end: i64,
    /// Replay only these tables (`"ks.t1,ks.t2"` or a list); absent: all.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "keyspace_tables"
    )]
    pub keyspace_tables: Vec<KeyspaceTable>,
}

fn commit_log_directory() -> String {
    "/var/lib/cassandra/commitlog".into()
}

fn config_directory() -> String {
    crate::types::restore::cassandra_config_directory()
}

/// `"ks.t1,ks.t2"`, `["ks.t1", "ks.t2"]`, or Guava's multimap as Jackson writes it, `{"ks": ["t1", "t2"]}`.
fn keyspace_tables<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<KeyspaceTable>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given {
        Text(String),
        List(Vec<String>),
        Multimap(std::collections::BTreeMap<String, Vec<String>>),
    }
    let names: Vec<String> = match Option::<Given>::deserialize(deserializer)? {
        None => Vec::new(),
        Some(Given::Text(text)) => text
            .split([',', ' '])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        Some(Given::List(list)) => list,
        Some(Given::Multimap(map)) => map
            .iter()
            .flat_map(|(keyspace, tables)| tables.iter().map(move |t| format!("{keyspace}.{t}")))
            .collect(),
    };
    names
        .iter()
        .map(|name| KeyspaceTable::parse(name).map_err(serde::de::Error::custom))
        .collect()
}

impl StorageFields for CommitLogRestoreFields {
    fn validate(&self, connection: &Connection, violations: &mut Violations) {
        storage::node_location(violations, connection, None);
        for (field, path) in [
            (
                "cassandraCommitLogDirectory",
                &self.cassandra_commit_log_directory,
            ),
            ("cassandraConfigDirectory", &self.cassandra_config_directory),
            ("commitlogDownloadDir", &self.commitlog_download_dir),
        ] {
            validation::absolute_path(violations, field, path);
        }
        if self.timestamp_start < 0 {
            violations.add("timestampStart", "must be an instant in epoch milliseconds");
        }
        if self.timestamp_end < self.timestamp_start {
            violations.add(
                "timestampEnd",
                format!(
                    "must not be before timestampStart ({} < {})",
                    self.timestamp_end, self.timestamp_start
                ),
            );
        }
        if let Err(error) = commitlog::archiving_properties(
            Path::new(&self.commitlog_download_dir),
            self.timestamp_end,
        ) {
            violations.add("commitlogDownloadDir", error.to_string());
        }
        let (download, commit_logs) = (
            Path::new(&self.commitlog_download_dir),
            Path::new(&self.cassandra_commit_log_directory),
        );
        if download.starts_with(commit_logs) {
            violations.add(
                "commitlogDownloadDir",
                "must lie outside cassandraCommitLogDirectory, whose segments are moved aside",
            );
        }
    }
}

pub struct CommitLogRestore;

impl Operation for CommitLogRestore {
    const TYPE: &'static str = "commitlog-restore";
    const EXCLUSIVE: Option<&'static str> = Some(super::RESTORE);
    type Request = CommitLogRestoreRequest;

    async fn run(
        &self,
        request: CommitLogRestoreRequest,
        context: OperationContext,
    ) -> Result<(), OperationFailure> {
        let StorageRequest { connection, fields } = request;
        crate::restore::require_node_down(&context, Self::TYPE).await?;
        let bucket = BucketCheck::of(&connection, false);
        let remote = node::open(&context, &connection, NodePath::AsGiven, bucket).await?;
        let objects = context
            .cancellable(remote.list(commitlog::COMMITLOG_PREFIX))
            .await??;
        let chosen = commitlog::select(&objects, fields.timestamp_start, fields.timestamp_end);
        if chosen.is_empty() {
            return Err(OperationFailure::Failed(format!(
                "{} holds no commit-log segment archived from {} to {} (epoch millis)",
                remote.location(),
                fields.timestamp_start,
                fields.timestamp_end
            )));
        }
        let download_dir = PathBuf::from(&fields.commitlog_download_dir);
        let files: Vec<PlannedDownload> = chosen
            .iter()
            .filter_map(|object| {
                Some(PlannedDownload {
                    path: commitlog::local_path(&download_dir, &object.key)?,
                    key: object.key.clone(),
                    size: object.size,
                    hash: None,
                })
            })
            .collect();
        let settings = DownloadSettings {
            concurrency: connection.concurrency(),
            retry: connection.retry_policy(),
            throttle: Throttle::unlimited(),
            algorithm: HashAlgorithm::None,
        };
        let stats = crate::restore::download_for(&context, &remote, files, &settings).await?;

        // Only now that every segment is here does the node's state change.
        let now = chrono::Utc::now().timestamp_millis();
        let properties = commitlog::archiving_properties(&download_dir, fields.timestamp_end)
            .map_err(|error| OperationFailure::Failed(error.to_string()))?;
        let config_dir = PathBuf::from(&fields.cassandra_config_directory);
        let commit_log_dir = PathBuf::from(&fields.cassandra_commit_log_directory);
        let tables: Vec<String> = fields
            .keyspace_tables
            .iter()
            .map(ToString::to_string)
            .collect();
        let (moved, copy, replay) = tokio::task::spawn_blocking(move || {
            let moved = commitlog::move_existing_commitlogs(&commit_log_dir, now)?;
            let copy = commitlog::write_archiving_properties(&config_dir, &properties, now)?;
            let replay = commitlog::append_replay_list(&config_dir, &tables)?;
            Ok::<_, commitlog::CommitLogError>((moved, copy, replay))
        })
        .await
        .map_err(|error| OperationFailure::Failed(error.to_string()))?
        .map_err(|error| OperationFailure::Failed(error.to_string()))?;
        tracing::info!(
            segments = stats.files,
            point_in_time = fields.timestamp_end,
            "commit logs ready for replay"
        );
        context.set_response(json!({
            "segments": chosen.iter().map(|object| object.key.clone()).collect::<Vec<_>>(),
            "download": stats,
            "pointInTime": commitlog::restore_point_in_time(fields.timestamp_end).ok(),
            "movedCommitLogs": moved.map(|dir| dir.display().to_string()),
            "previousArchivingProperties": copy.map(|file| file.display().to_string()),
            "replayList": replay,
        }));
        Ok(())
    }
}
