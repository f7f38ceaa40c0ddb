//! `commitlog-backup`: upload commit-log segments to `<cluster>/<dc>/<node>/commitlog/<name>.<mtime millis>`
//! (Esop's layout; no manifest, no hash). Segments already in the bucket are skipped.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::backup::upload::{self, PlannedFile, UploadSettings, UploadStats};
use crate::decode::{self, DataRate, HumanDuration};
use crate::esop::commitlog::archived_key;
use crate::node_storage::{self, BucketCheck, NodePath};
use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::restore::commitlog::is_segment_name;
use crate::storage::Throttle;
use crate::storage::request::{self as storage, Connection, StorageFields, StorageRequest};
use crate::storage::transfer::LocalFile;
use crate::storage::transfer::hashes::{HashAlgorithm, HashCache};
use crate::validation::{self, Violations};

/// Esop's `BackupCommitLogsOperationRequest`.
pub type CommitLogBackupRequest = StorageRequest<CommitLogBackupFields>;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitLogBackupFields {
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
    #[serde(default, deserialize_with = "decode::bool")]
    pub create_missing_bucket: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub skip_refreshing: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_directive: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
}

impl StorageFields for CommitLogBackupFields {
    fn validate(&self, connection: &Connection, violations: &mut Violations) {
        storage::node_location(violations, connection, Some(("online", self.online)));
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
        // Refused here already, so no file other than a segment is ever read; where the segment may be is known only
        // once Cassandra is asked (see `confine`).
        if let Some(path) = &self.commit_log
            && !names_a_segment(Path::new(path))
        {
            violations.add(
                "commitLog",
                format!("'{path}' is not a commit-log segment (CommitLog-<version>-<id>.log)"),
            );
        }
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
        storage::refuse_kms_from_environment()?;
        let StorageRequest {
            connection,
            fields: request,
        } = request;
        // Cassandra is always asked: the directories it names are the only ones segments may be read from.
        let cassandra = context.cassandra().await?;
        let roots = context.cancellable(allowed_roots(&cassandra)).await??;
        let directory = match (
            &request.commit_log_archive_override,
            &request.cassandra_commit_log_directory,
        ) {
            (Some(archive), _) if Path::new(archive).is_dir() => {
                confine("commitLogArchiveOverride", Path::new(archive), &roots)?
            }
            (_, Some(directory)) => {
                confine("cassandraCommitLogDirectory", Path::new(directory), &roots)?
            }
            _ => roots[0].clone(),
        };
        let segments = match &request.commit_log {
            Some(file) => {
                let segment = confine("commitLog", Path::new(file), &roots)?;
                // The check at submit looked at the name given; a symbolic link may name something else.
                if !names_a_segment(&segment) {
                    return Err(OperationFailure::Failed(format!(
                        "commitLog {file} is not a commit-log segment"
                    )));
                }
                vec![segment]
            }
            None => commit_log_segments(&directory)
                .map_err(|error| {
                    OperationFailure::context(
                        format!("cannot list commit-log segments in {}", directory.display()),
                        error,
                    )
                })?
                .iter()
                .map(|segment| confine("commitLog", segment, &roots))
                .collect::<Result<Vec<_>, _>>()?,
        };
        let planned = segments
            .iter()
            .map(|path| planned_segment(path))
            .collect::<Result<Vec<_>, _>>()?;

        let node_path = if request.online {
            NodePath::FromCassandra
        } else {
            NodePath::AsGiven
        };
        let remote = node_storage::open(
            &context,
            &connection,
            node_path,
            BucketCheck::of(&connection, request.create_missing_bucket),
        )
        .await?;
        let total: u64 = planned.iter().map(|p| p.file.size).sum();
        let settings = UploadSettings {
            concurrency: connection.concurrency(),
            retry: connection.retry_policy(),
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
        stats.record(&context);
        context.respond(&CommitLogBackupResponse {
            storage_location: remote.location().to_string(),
            stats,
        })
    }
}

/// What `commitlog-backup` answers: where the segments went and what the upload did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitLogBackupResponse {
    pub storage_location: String,
    pub stats: UploadStats,
}

/// The directories segments may be read from: Cassandra's commit-log directory (first) and, when Cassandra archives
/// segments, the directory its `archive_command` copies them to. Both resolved, symbolic links and all.
async fn allowed_roots(
    cassandra: &crate::cassandra::Cassandra,
) -> Result<Vec<PathBuf>, OperationFailure> {
    let commitlog = cassandra.commitlog_location().await?;
    let mut roots = vec![std::fs::canonicalize(&commitlog).map_err(|error| {
        OperationFailure::context(
            format!("cannot resolve Cassandra's commit-log directory {commitlog}"),
            error,
        )
    })?];
    match cassandra.commitlog_archive_command().await {
        Ok(command) => roots
            .extend(archive_directory(&command).and_then(|dir| std::fs::canonicalize(dir).ok())),
        // Archiving is optional; without its directory only the commit-log directory may be read.
        Err(error) => tracing::debug!(%error, "cannot read Cassandra's commit-log archive command"),
    }
    Ok(roots)
}

/// The directory of the argument of an `archive_command` that names the target with `%name`
/// (`/bin/ln %path /backup/%name` → `/backup`).
fn archive_directory(command: &str) -> Option<PathBuf> {
    let target = command
        .split_whitespace()
        .find(|arg| arg.contains("%name"))?;
    let directory = Path::new(target).parent()?;
    // `/` itself (`cp %path /%name`) would make every segment-named file on the host readable.
    (directory.is_absolute()
        && directory.parent().is_some()
        && !directory.to_string_lossy().contains('%'))
    .then(|| directory.to_path_buf())
}

/// `path` with every symbolic link resolved, if that lies inside one of `roots`; otherwise the operation fails
/// naming `field`, so a request cannot make the sidecar read and upload a file Cassandra's commit log does not hold.
fn confine(field: &str, path: &Path, roots: &[PathBuf]) -> Result<PathBuf, OperationFailure> {
    let resolved = std::fs::canonicalize(path)
        .map_err(|error| OperationFailure::context(format!("{field} {}", path.display()), error))?;
    if roots.iter().any(|root| resolved.starts_with(root)) {
        Ok(resolved)
    } else {
        let allowed: Vec<_> = roots
            .iter()
            .map(|root| root.display().to_string())
            .collect();
        Err(OperationFailure::Failed(format!(
            "{field} {} is outside the node's commit-log directories ({}): only segments there may be uploaded",
            path.display(),
            allowed.join(", ")
        )))
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

/// Whether the last component of `path` is a commit-log segment's name.
fn names_a_segment(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(is_segment_name)
}

fn planned_segment(path: &Path) -> Result<PlannedFile, OperationFailure> {
    let metadata = std::fs::metadata(path).map_err(|error| {
        OperationFailure::context(format!("cannot read {}", path.display()), error)
    })?;
    let modified = metadata
        .modified()
        .map_err(|error| OperationFailure::context(path.display().to_string(), error))?;
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
        key: archived_key(&name, millis),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The response is what the `json!` it replaced wrote, and reads back as itself.
    #[test]
    fn the_response_keeps_its_json() {
        let stats = UploadStats {
            files: 3,
            bytes: 30,
            uploaded_files: 2,
            uploaded_bytes: 20,
            skipped_files: 1,
            ..UploadStats::default()
        };
        let before = json!({
            "storageLocation": "s3://b/c/d/n",
            "stats": stats,
        });
        let typed = CommitLogBackupResponse {
            storage_location: "s3://b/c/d/n".into(),
            stats,
        };
        let written = serde_json::to_string(&typed).unwrap();
        assert_eq!(written, serde_json::to_string(&before).unwrap());
        let read: CommitLogBackupResponse = serde_json::from_str(&written).unwrap();
        assert_eq!(read, typed);
    }

    #[test]
    fn recognises_commit_log_segments() {
        assert!(is_segment_name("CommitLog-7-1700000000000.log"));
        assert!(!is_segment_name("CommitLog-7-1700000000000.log.tmp"));
        assert!(!is_segment_name("CommitLog-7.log"));
        assert!(!is_segment_name("commitlog_archiving.properties"));
    }

    #[test]
    fn archive_directories_come_from_the_archive_command() {
        assert_eq!(
            archive_directory("/bin/ln %path /backup/commitlog/%name"),
            Some(PathBuf::from("/backup/commitlog"))
        );
        assert_eq!(archive_directory(""), None);
        assert_eq!(archive_directory("/bin/cp %path %name"), None);
        assert_eq!(archive_directory("/bin/cp %path /%name"), None);
    }

    #[test]
    fn only_paths_inside_the_roots_are_allowed_even_through_links() {
        let base = std::env::temp_dir().join(format!("daedalus-confine-{}", std::process::id()));
        let root = base.join("commitlog");
        std::fs::create_dir_all(&root).unwrap();
        let secret = base.join("secret");
        std::fs::write(&secret, "x").unwrap();
        let segment = root.join("CommitLog-7-1.log");
        std::fs::write(&segment, "x").unwrap();
        let link = root.join("CommitLog-7-2.log");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        let roots = [std::fs::canonicalize(&root).unwrap()];
        assert!(confine("commitLog", &segment, &roots).is_ok());
        for outside in [secret.clone(), link.clone(), root.join("../secret")] {
            let error = confine("commitLog", &outside, &roots).unwrap_err();
            assert!(
                matches!(&error, OperationFailure::Failed(m) if m.contains("outside")),
                "{outside:?}: {error:?}"
            );
        }
        std::fs::remove_dir_all(&base).unwrap();
    }
}
