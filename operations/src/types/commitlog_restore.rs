//! `commitlog-restore` (point in time): downloads the commit-log segments a `commitlog-backup` archived between
//! two instants, and writes `commitlog_archiving.properties` so that Cassandra, at its next start, replays them up
//! to `timestampEnd`. Run it on a stopped node, after restoring the snapshot taken before `timestampStart`.
//!
//! Esop's fields; Esop's own REST path is broken (its `keyspaceTables` cannot be decoded), this one works.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::node_fs::staging::{self, Staging};
use crate::node_fs::{NodeConfig, Root, Target};
use crate::node_storage::{self, BucketCheck, NodePath};
use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::restore::commitlog;
use crate::restore::download::{DownloadSettings, DownloadStats, PlannedDownload};
use crate::storage::request::{self as storage, Connection, StorageFields, StorageRequest};
use crate::storage::transfer::hashes::HashAlgorithm;
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

/// What `commitlog-restore` answers; `null` for what did not happen (no commit logs to move aside, no earlier
/// `commitlog_archiving.properties`, no replay list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitLogRestoreResponse {
    /// The keys of the segments downloaded.
    pub segments: Vec<String>,
    pub download: DownloadStats,
    /// The point in time Cassandra replays up to, as `commitlog_archiving.properties` has it.
    pub point_in_time: Option<String>,
    /// Where the node's own commit logs were moved aside.
    pub moved_commit_logs: Option<String>,
    /// The copy of the properties file this restore replaced.
    pub previous_archiving_properties: Option<String>,
    pub replay_list: Option<String>,
}

/// The `commitlog-restore` type, with where the node's files are (the node is stopped: the operator's configuration
/// says, not the request).
pub struct CommitLogRestore {
    node: NodeConfig,
}

impl CommitLogRestore {
    pub fn new(node: NodeConfig) -> CommitLogRestore {
        CommitLogRestore { node }
    }
}

impl Operation for CommitLogRestore {
    const TYPE: &'static str = "commitlog-restore";
    const EXCLUSIVE: Option<&'static str> = Some(super::RESTORE);
    type Request = CommitLogRestoreRequest;

    /// The commit-log and configuration directories must be the node's, as configured (segments there are moved
    /// aside, files there rewritten); the download directory must keep clear of the node's directories.
    fn check_request(&self, request: &CommitLogRestoreRequest, violations: &mut Violations) {
        let fields = &request.fields;
        let flags = self.node.flags;
        match self.node.dirs() {
            Ok(dirs) => self.node.check_request_dir(
                violations,
                "cassandraCommitLogDirectory",
                &fields.cassandra_commit_log_directory,
                &dirs.commitlog,
                flags.config,
            ),
            Err(error) => violations.add(
                "cassandraCommitLogDirectory",
                format!("cannot be checked: {error}"),
            ),
        }
        self.node
            .check_config_directory(violations, &fields.cassandra_config_directory);
        super::restore::check_staging(
            violations,
            "commitlogDownloadDir",
            &fields.commitlog_download_dir,
            &self.node,
        );
    }

    async fn run(
        &self,
        request: CommitLogRestoreRequest,
        context: OperationContext,
    ) -> Result<(), OperationFailure> {
        let StorageRequest { connection, fields } = request;
        crate::restore::require_node_down(&context, Self::TYPE).await?;
        let bucket = BucketCheck::of(&connection, false);
        let remote = node_storage::open(&context, &connection, NodePath::AsGiven, bucket).await?;
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
        let (node, requested) = (self.node.clone(), fields.commitlog_download_dir.clone());
        let (dirs, download_root) = tokio::task::spawn_blocking(move || {
            let dirs = node.dirs()?;
            let path = staging::staging_path(&requested).map_err(OperationFailure::Failed)?;
            let staging = Staging::check(&path, &staging::guarded_by(&dirs)).map_err(|why| {
                OperationFailure::Failed(format!(
                    "commitlogDownloadDir '{requested}' {why}; nothing was touched"
                ))
            })?;
            let (root, _) = staging.open_or_create()?;
            Ok::<_, OperationFailure>((dirs, root))
        })
        .await??;
        let files: Vec<PlannedDownload> = chosen
            .iter()
            .filter_map(|object| {
                Some(PlannedDownload {
                    target: Target::new(&download_root, commitlog::local_name(&object.key)?),
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
        let properties =
            commitlog::archiving_properties(download_root.path(), fields.timestamp_end)?;
        let config_dir = self.node.config_dir().to_owned();
        let tables: Vec<String> = fields
            .keyspace_tables
            .iter()
            .map(ToString::to_string)
            .collect();
        let (moved, copy, replay) = tokio::task::spawn_blocking(move || {
            let config = Root::open(&config_dir)?;
            let moved = match Root::open(&dirs.commitlog) {
                Ok(commitlog) => {
                    let parent = dirs.commitlog.parent().unwrap_or(Path::new("/"));
                    commitlog::move_existing_commitlogs(&commitlog, &Root::open(parent)?, now)?
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
                Err(error) => return Err(error.into()),
            };
            let copy = commitlog::write_archiving_properties(&config, &properties, now)?;
            let replay = commitlog::append_replay_list(&config, &tables)?;
            Ok::<_, commitlog::CommitLogError>((moved, copy, replay))
        })
        .await??;
        tracing::info!(
            segments = stats.files,
            point_in_time = fields.timestamp_end,
            "commit logs ready for replay"
        );
        context.respond(&CommitLogRestoreResponse {
            segments: chosen.iter().map(|object| object.key.clone()).collect(),
            download: stats,
            point_in_time: commitlog::restore_point_in_time(fields.timestamp_end).ok(),
            moved_commit_logs: moved.map(|dir| dir.display().to_string()),
            previous_archiving_properties: copy.map(|file| file.display().to_string()),
            replay_list: replay,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The response is what the `json!` it replaced wrote, with and without what may not happen, and reads back as
    /// itself.
    #[test]
    fn the_response_keeps_its_json() {
        let text = |value: &str| Some(value.to_owned());
        for (point, moved, copy, replay) in [
            (None, None, None, None),
            (
                text("2026:12:06 12:00:00"),
                text("/var/lib/cassandra/commitlog.1"),
                text("/etc/cassandra/commitlog_archiving.properties.1"),
                text("ks.t1,ks.t2"),
            ),
        ] {
            let download = DownloadStats {
                files: 2,
                bytes: 20,
                downloaded_files: 2,
                downloaded_bytes: 20,
                kept_files: 0,
            };
            let segments = vec!["commitlog/CommitLog-7-1.log".to_owned()];
            let before = json!({
                "segments": segments,
                "download": download,
                "pointInTime": point,
                "movedCommitLogs": moved,
                "previousArchivingProperties": copy,
                "replayList": replay,
            });
            let typed = CommitLogRestoreResponse {
                segments,
                download,
                point_in_time: point,
                moved_commit_logs: moved,
                previous_archiving_properties: copy,
                replay_list: replay,
            };
            let written = serde_json::to_string(&typed).unwrap();
            assert_eq!(written, serde_json::to_string(&before).unwrap());
            let read: CommitLogRestoreResponse = serde_json::from_str(&written).unwrap();
            assert_eq!(read, typed);
        }
    }
}
