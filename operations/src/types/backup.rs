//! `backup`: snapshot the node and upload the snapshot to object storage in Esop's layout: SSTables under
//! `<cluster>/<dc>/<node>/data/...`, then the manifest under `manifests/<tag>.json`, last, so a manifest marks a
//! complete backup. The snapshot is cleared at the end whatever happened.

use serde::{Deserialize, Serialize};

use crate::backup::hashes::HashAlgorithm;
use crate::decode::{self, DataRate, HumanDuration};
use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::storage::request::{self as storage, ProxySettings, Retry};
use crate::validation::{Validate, Violations};

/// Esop's `BackupOperationRequest`; the fields old clients add (`k8sSecretName`, `k8sNamespace`,
/// `cassandraDirectory`) are accepted and ignored, as Icarus 3 ignores them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_location: Option<String>,
    /// Absent: the data directories Cassandra reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dirs: Option<Vec<String>>,
    /// Absent: `autosnap-<epoch seconds>`, filled in at submit so the client learns it from the 201 answer
    /// ([`Backup::fill_defaults`]). When the backup runs it becomes `<tag>-<schemaVersion>-<millis>` (see
    /// [`crate::backup::run::resolved_tag`]), the manifest's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_tag: Option<String>,
    /// The tag was generated at submit, not given. Such a tag ends in a number (its seconds), which would make
    /// Esop's rule keep it as the manifest name as it is; remembering where it came from lets it get
    /// `-<schemaVersion>-<millis>` as the Esop command line gives its default tag. Never read from or written to
    /// JSON: a client cannot set it.
    #[serde(skip)]
    pub snapshot_tag_generated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entities: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dc: Option<String>,
    #[serde(default, deserialize_with = "decode::bool")]
    pub global_request: bool,
    #[serde(
        default = "storage::default_timeout_hours",
        deserialize_with = "storage::timeout_hours"
    )]
    pub timeout: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<String>,
    #[serde(default, deserialize_with = "decode::bool")]
    pub upload_cluster_topology: bool,
    #[serde(
        default = "storage::default_concurrent_connections",
        deserialize_with = "decode::i32_or::<_, 10>"
    )]
    pub concurrent_connections: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<DataRate>,
    #[serde(default, deserialize_with = "decode::bool")]
    pub create_missing_bucket: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub skip_bucket_verification: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub skip_refreshing: bool,
    #[serde(default = "copy", deserialize_with = "metadata_directive")]
    pub metadata_directive: String,
    #[serde(default, deserialize_with = "decode::bool")]
    pub insecure: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_settings: Option<ProxySettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// Esop's `--hash-algorithm`: `SHA-256` (default), `CRC`, or `NONE`.
    #[serde(default)]
    pub hash_algorithm: HashAlgorithm,
}

fn copy() -> String {
    "COPY".into()
}

fn metadata_directive<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<String, D::Error> {
    Ok(decode::upper_case(deserializer)?.unwrap_or_else(copy))
}

impl Validate for BackupRequest {
    fn validate(&self, violations: &mut Violations) {
        storage::storage_location(violations, &self.storage_location);
        storage::data_dirs(violations, &self.data_dirs);
        storage::entities(violations, &self.entities);
        storage::schema_version(violations, &self.schema_version);
        storage::concurrent_connections(violations, self.concurrent_connections);
        if let Some(tag) = &self.snapshot_tag
            && (tag.is_empty() || tag.contains(['/', '\\']))
        {
            violations.add(
                "snapshotTag",
                format!("'{tag}' cannot name a snapshot directory"),
            );
        }
        if !matches!(self.metadata_directive.as_str(), "COPY" | "REPLACE") {
            violations.add(
                "metadataDirective",
                format!("must be COPY or REPLACE, got '{}'", self.metadata_directive),
            );
        }
        storage::proxy_and_retry(violations, &self.proxy_settings, &self.retry);
        storage::kms_key_id(violations, &self.kms_key_id);
    }
}

/// Icarus's default tag, from the instant the request was accepted.
pub fn default_snapshot_tag(accepted_at: chrono::DateTime<chrono::Utc>) -> String {
    format!("autosnap-{}", accepted_at.timestamp())
}

pub struct Backup;

impl Operation for Backup {
    const TYPE: &'static str = "backup";
    type Request = BackupRequest;

    fn fill_defaults(
        &self,
        request: &mut BackupRequest,
        accepted_at: chrono::DateTime<chrono::Utc>,
    ) {
        if request.snapshot_tag.is_none() {
            request.snapshot_tag = Some(default_snapshot_tag(accepted_at));
            request.snapshot_tag_generated = true;
        }
    }

    async fn run(
        &self,
        request: BackupRequest,
        context: OperationContext,
    ) -> Result<(), OperationFailure> {
        if request.global_request {
            return Err(OperationFailure::NotYetAvailable {
                operation: Self::TYPE,
                missing:
                    "cluster-wide backups (globalRequest) are still to come; back up each node"
                        .into(),
            });
        }
        let response = crate::backup::run::backup(&request, &context).await?;
        context.set_response(response);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(tag: Option<&str>) -> BackupRequest {
        let mut body = serde_json::json!({"storageLocation": "s3://b/c/d/n"});
        if let Some(tag) = tag {
            body["snapshotTag"] = tag.into();
        }
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn only_a_missing_tag_is_generated_and_marked_so() {
        let accepted = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut missing = request(None);
        Backup.fill_defaults(&mut missing, accepted);
        assert_eq!(missing.snapshot_tag.as_deref(), Some("autosnap-1700000000"));
        assert!(missing.snapshot_tag_generated);

        let mut given = request(Some("autosnap-1600000000"));
        Backup.fill_defaults(&mut given, accepted);
        assert_eq!(given.snapshot_tag.as_deref(), Some("autosnap-1600000000"));
        assert!(
            !given.snapshot_tag_generated,
            "a tag the client gave is theirs"
        );
    }
}
