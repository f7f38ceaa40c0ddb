//! `commitlog-backup`: upload commit-log segments to `<cluster>/<dc>/<node>/commitlog/<name>.<mtime millis>`
//! (Esop's layout; no manifest, no hash). Segments already in the bucket are skipped.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::backup::hashes::{HashAlgorithm, HashCache};
use crate::backup::run::{node_location, open_bucket};
use crate::backup::upload::{self, LocalFile, PlannedFile, RetryPolicy, UploadSettings};
use crate::decode::{self, DataRate, HumanDuration};
use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::storage::request::{self as storage, ProxySettings, Retry};
use crate::storage::{StorageLocation, StorageOptions, Throttle};
use crate::validation::{self, Validate, Violations};

/// Esop's `BackupCommitLogsOperationRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitLogBackupRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_location: Option<String>,
    /// Absent: the directory Cassandra reports (`commitlog_directory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cassandra_commit_log_directory: Option<String>,
    /// Used instead when it exists (e.g. the `archive_command` target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_log_archive_override: Option<String>,
    /// Only this segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_log: Option<String>,
    /// Fill an incomplete location with the node's cluster, data centre and host id from Cassandra.
    #[serde(default, deserialize_with = "decode::bool")]
    pub online: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<DataRate>,
    #[serde(
        default = "storage::default_concurrent_connections",
        deserialize_with = "decode::i32_or::<_, 10>"
    )]
    pub concurrent_connections: i32,
    #[serde(default, deserialize_with = "decode::bool")]
    pub create_missing_bucket: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub skip_bucket_verification: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub skip_refreshing: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_directive: Option<String>,
    #[serde(default, deserialize_with = "decode::bool")]
    pub insecure: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_settings: Option<ProxySettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
}

impl Validate for CommitLogBackupRequest {
    fn validate(&self, violations: &mut Violations) {
        storage::storage_location(violations, &self.storage_location);
        if let Some(text) = &self.storage_location
            && let Ok(location) = StorageLocation::parse(text)
            && location.node_path.is_none()
            && !self.online
        {
            violations.add(
                "storageLocation",
                "must name the node (PROTOCOL://BUCKET/CLUSTER/DC/NODE) unless online is true",
            );
        }
        for (field, path) in [
            (
                "cassandraCommitLogDirectory",
                &self.cassandra_commit_log_directory,
            ),
            (
                "commitLogArchiveOverride",
                &self.commit_log_archive_override,
            ),
            ("commitLog", &self.commit_log),
        ] {
            if let Some(path) = path {
                validation::absolute_path(violations, field, path);
            }
        }
        storage::concurrent_connections(violations, self.concurrent_connections);
        storage::proxy_and_retry(violations, &self.proxy_settings, &self.retry);
        storage::kms_key_id(violations, &self.kms_key_id);
    }
}

pub struct CommitLogBackup;

impl Operation for CommitLogBackup {
    const TYPE: &'static str = "commitlog-backup";
    type Request = CommitLogBackupRequest;

    async fn run(
        &self,
        request: CommitLogBackupRequest,
        context: OperationContext,
    ) -> Result<(), OperationFailure> {
        storage::refuse_kms_from_environment().map_err(OperationFailure::Failed)?;
        let location =
            StorageLocation::parse(request.storage_location.as_deref().unwrap_or_default())
                .map_err(OperationFailure::Failed)?;
        let needs_cassandra = request.online && location.node_path.is_none()
            || request.cassandra_commit_log_directory.is_none() && request.commit_log.is_none();
        let cassandra = if needs_cassandra {
            Some(context.cassandra().await?)
        } else {
            None
        };
        let location = match (&cassandra, location.node_path.is_some()) {
            (Some(cassandra), false) => {
                context
                    .cancellable(node_location(cassandra, &location))
                    .await??
            }
            _ => location,
        };
        let directory = match (
            &request.commit_log_archive_override,
            &request.cassandra_commit_log_directory,
        ) {
            (Some(archive), _) if Path::new(archive).is_dir() => PathBuf::from(archive),
            (_, Some(directory)) => PathBuf::from(directory),
            _ => match &cassandra {
                Some(cassandra) => PathBuf::from(
                    context
                        .cancellable(cassandra.commitlog_location())
                        .await??,
                ),
                None => PathBuf::new(),
            },
        };
        let segments = match &request.commit_log {
            Some(file) => vec![PathBuf::from(file)],
            None => commit_log_segments(&directory).map_err(|error| {
                OperationFailure::Failed(format!(
                    "cannot list commit-log segments in {}: {error}",
                    directory.display()
                ))
            })?,
        };
        let planned = segments
            .iter()
            .map(|path| planned_segment(path))
            .collect::<Result<Vec<_>, _>>()?;

        let options = StorageOptions::of_request(request.proxy_settings.as_ref(), request.insecure);
        let remote = open_bucket(
            &context,
            location,
            &options,
            !request.skip_bucket_verification,
            request.create_missing_bucket,
        )
        .await?;
        let total: u64 = planned.iter().map(|p| p.file.size).sum();
        let settings = UploadSettings {
            concurrency: usize::try_from(request.concurrent_connections).unwrap_or(1),
            retry: RetryPolicy::from(&request.retry.clone().unwrap_or_default()),
            throttle: Throttle::new(upload::rate(request.bandwidth, request.duration, total)),
            algorithm: HashAlgorithm::None,
        };
        let cache = Mutex::new(HashCache::load(None, HashAlgorithm::None));
        let reporter = context.progress();
        let (_, stats) = upload::upload(
            &remote,
            planned,
            &settings,
            &cache,
            Arc::new(move |done, total| reporter.units(done, total)),
            context.cancellation(),
        )
        .await?;
        context.set_response(json!({
            "storageLocation": remote.location().to_string(),
            "stats": stats,
        }));
        Ok(())
    }
}

/// `CommitLog-<version>-<id>.log` files, as Esop matches them.
fn commit_log_segments(directory: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(directory)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_segment_name(&name) && entry.file_type()?.is_file() {
            segments.push(entry.path());
        }
    }
    segments.sort();
    Ok(segments)
}

fn is_segment_name(name: &str) -> bool {
    let Some(rest) = name
        .strip_prefix("CommitLog-")
        .and_then(|rest| rest.strip_suffix(".log"))
    else {
        return false;
    };
    let mut parts = rest.split('-');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(version), Some(id), None)
            if !version.is_empty() && !id.is_empty()
                && version.bytes().chain(id.bytes()).all(|b| b.is_ascii_digit())
    )
}

fn planned_segment(path: &Path) -> Result<PlannedFile, OperationFailure> {
    let metadata = std::fs::metadata(path).map_err(|error| {
        OperationFailure::Failed(format!("cannot read {}: {error}", path.display()))
    })?;
    let modified = metadata
        .modified()
        .map_err(|error| OperationFailure::Failed(format!("{}: {error}", path.display())))?;
    let millis = modified
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(PlannedFile {
        file: LocalFile {
            path: path.to_path_buf(),
            cache_key: path.to_path_buf(),
            size: metadata.len(),
            modified,
        },
        key: format!("commitlog/{name}.{millis}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_commit_log_segments() {
        assert!(is_segment_name("CommitLog-7-1700000000000.log"));
        assert!(!is_segment_name("CommitLog-7-1700000000000.log.tmp"));
        assert!(!is_segment_name("CommitLog-7.log"));
        assert!(!is_segment_name("commitlog_archiving.properties"));
    }
}
