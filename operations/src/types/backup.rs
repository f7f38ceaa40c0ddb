//! `backup`: snapshot the node and upload the snapshot to object storage in Esop's layout: SSTables under
//! `<cluster>/<dc>/<node>/data/...`, then the manifest under `manifests/<tag>.json`, last, so a manifest marks a
//! complete backup. The snapshot is cleared at the end whatever happened.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::backup::run::BackupPlan;
use crate::cluster::Timeout;
use crate::cluster::backup::{BackupPart, ClusterBackup};
use crate::decode::{self, DataRate, HumanDuration};
use crate::esop::tag::default_snapshot_tag;
use crate::node_storage::{self, BucketCheck, NodePath};
use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::storage::Entities;
use crate::storage::request::{self as storage, Connection, StorageFields, StorageRequest};
use crate::storage::transfer::hashes::HashAlgorithm;
use crate::validation::Violations;

/// Esop's `BackupOperationRequest`: the connection fields and these. The fields old clients add
/// (`k8sSecretName`, `k8sNamespace`, `cassandraDirectory`) are accepted and ignored, as Icarus 3 ignores them.
pub type BackupRequest = StorageRequest<BackupFields>;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupFields {
    /// Absent: the data directories Cassandra reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dirs: Option<Vec<String>>,
    /// Absent: `autosnap-<epoch seconds>`, filled in at submit so the client learns it from the 201 answer
    /// ([`Backup::fill_defaults`]). When the backup runs it becomes `<tag>-<schemaVersion>-<millis>` (see
    /// [`crate::esop::tag::resolved_tag`]), the manifest's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_tag: Option<String>,
    /// The tag was generated at submit, not given. Such a tag ends in a number (its seconds), which would make
    /// Esop's rule keep it as the manifest name as it is; remembering where it came from lets it get
    /// `-<schemaVersion>-<millis>` as the Esop command line gives its default tag. Never read from or written to
    /// JSON: a client cannot set it.
    #[serde(skip)]
    pub snapshot_tag_generated: bool,
    #[serde(default, skip_serializing_if = "Entities::is_all")]
    pub entities: Entities,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dc: Option<String>,
    #[serde(default, deserialize_with = "decode::bool")]
    pub global_request: bool,
    #[serde(default)]
    pub timeout: Timeout,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<uuid::Uuid>,
    #[serde(default, deserialize_with = "decode::bool")]
    pub upload_cluster_topology: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<DataRate>,
    #[serde(default, deserialize_with = "decode::bool")]
    pub create_missing_bucket: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub skip_refreshing: bool,
    #[serde(default = "copy", deserialize_with = "metadata_directive")]
    pub metadata_directive: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// Esop's `--hash-algorithm`: `SHA-256` (default), `CRC`, or `NONE`.
    #[serde(default)]
    pub hash_algorithm: HashAlgorithm,
}

impl BackupFields {
    /// A backup of everything with Esop's defaults.
    pub fn new() -> Self {
        BackupFields {
            data_dirs: None,
            snapshot_tag: None,
            snapshot_tag_generated: false,
            entities: Entities::All,
            dc: None,
            global_request: false,
            timeout: Timeout::default(),
            schema_version: None,
            upload_cluster_topology: false,
            duration: None,
            bandwidth: None,
            create_missing_bucket: false,
            skip_refreshing: false,
            metadata_directive: copy(),
            kms_key_id: None,
            hash_algorithm: HashAlgorithm::default(),
        }
    }
}

impl Default for BackupFields {
    fn default() -> Self {
        Self::new()
    }
}

impl BackupPart for BackupFields {
    fn part(&self, tag: &str, schema_version: uuid::Uuid) -> Self {
        BackupFields {
            snapshot_tag: Some(tag.to_string()),
            schema_version: Some(schema_version),
            global_request: false,
            create_missing_bucket: false,
            upload_cluster_topology: false,
            ..self.clone()
        }
    }
}

fn copy() -> String {
    "COPY".into()
}

fn metadata_directive<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<String, D::Error> {
    Ok(decode::upper_case(deserializer)?.unwrap_or_else(copy))
}

impl StorageFields for BackupFields {
    fn validate(&self, _connection: &Connection, violations: &mut Violations) {
        storage::data_dirs(violations, &self.data_dirs);
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
        storage::kms_key_id(violations, &self.kms_key_id);
    }
}

pub struct Backup;

impl Operation for Backup {
    const TYPE: &'static str = "backup";
    type Request = BackupRequest;

    /// A cluster-wide backup follows its parts from the recorded `nodes`, and keeps its settled tag in `response`.
    fn resumable(&self, request: &BackupRequest) -> bool {
        request.fields.global_request
    }

    fn fill_defaults(
        &self,
        request: &mut BackupRequest,
        accepted_at: chrono::DateTime<chrono::Utc>,
    ) {
        let fields = &mut request.fields;
        if fields.snapshot_tag.is_none() {
            fields.snapshot_tag = Some(default_snapshot_tag(accepted_at));
            fields.snapshot_tag_generated = true;
        }
    }

    async fn run(
        &self,
        request: BackupRequest,
        context: OperationContext,
    ) -> Result<(), OperationFailure> {
        if request.fields.global_request {
            let fields = &request.fields;
            let plan = ClusterBackup {
                timeout: fields.timeout,
                dc: fields.dc.clone(),
                tag: fields.snapshot_tag.clone(),
                tag_generated: fields.snapshot_tag_generated,
                create_missing_bucket: fields.create_missing_bucket,
                request,
            };
            // The coordinator records its response itself, before any part starts (a takeover reads it back).
            crate::cluster::backup::backup(plan, &context).await?;
            return Ok(());
        }
        storage::refuse_kms_from_environment()?;
        let StorageRequest { connection, fields } = request;
        let cassandra = context.cassandra().await?;
        let remote = node_storage::open(
            &context,
            &connection,
            NodePath::FromCassandra,
            BucketCheck::of(&connection, fields.create_missing_bucket),
        )
        .await?;
        let plan = BackupPlan {
            entities: fields.entities,
            data_dirs: fields
                .data_dirs
                .map(|dirs| dirs.into_iter().map(PathBuf::from).collect()),
            tag: fields.snapshot_tag,
            tag_generated: fields.snapshot_tag_generated,
            schema_version: fields.schema_version.map(|version| version.to_string()),
            upload_topology: fields.upload_cluster_topology,
            concurrency: connection.concurrency(),
            retry: connection.retry_policy(),
            bandwidth: fields.bandwidth,
            duration: fields.duration,
            algorithm: fields.hash_algorithm,
        };
        let location = remote.location().to_string();
        let keyspaces: Vec<String> = plan
            .entities
            .by_keyspace()
            .keys()
            .map(|k| k.to_string())
            .collect();
        let outcome = crate::backup::run::backup(&plan, &remote, &cassandra, &context).await;
        let taken = outcome.as_ref().ok().and_then(|response| {
            Some(
                crate::esop::manifest::ManifestName::parse(&response.snapshot_tag)?
                    .timestamp_millis() as f64
                    / 1000.0,
            )
        });
        let at = taken.unwrap_or_else(|| chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
        // A cancelled backup neither succeeded nor failed.
        if !matches!(outcome, Err(OperationFailure::Cancelled)) {
            context
                .metrics()
                .backup_ended(&keyspaces, &location, at, outcome.is_ok());
        }
        context.respond(&outcome?)
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
        crate::decode::DecodeRequest::decode_request(body).unwrap()
    }

    #[test]
    fn only_a_missing_tag_is_generated_and_marked_so() {
        let accepted = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut missing = request(None);
        Backup.fill_defaults(&mut missing, accepted);
        assert_eq!(
            missing.fields.snapshot_tag.as_deref(),
            Some("autosnap-1700000000")
        );
        assert!(missing.fields.snapshot_tag_generated);

        let mut given = request(Some("autosnap-1600000000"));
        Backup.fill_defaults(&mut given, accepted);
        assert_eq!(
            given.fields.snapshot_tag.as_deref(),
            Some("autosnap-1600000000")
        );
        assert!(
            !given.fields.snapshot_tag_generated,
            "a tag the client gave is theirs"
        );
    }

    /// The node's backup answers with the fields and in the order the `json!` it replaced wrote, and reads back.
    #[test]
    fn the_response_keeps_its_json() {
        let response = crate::backup::run::BackupResponse {
            snapshot_tag: "t-1".into(),
            storage_location: "s3://b/c/d/n".into(),
            manifest: "c/d/n/manifests/t-1.json".into(),
            stats: Default::default(),
        };
        let written = serde_json::to_string(&response).unwrap();
        assert!(
            written.starts_with(
                r#"{"snapshotTag":"t-1","storageLocation":"s3://b/c/d/n","manifest":"c/d/n/manifests/t-1.json","stats":{"#
            ),
            "{written}"
        );
        let read: crate::backup::run::BackupResponse = serde_json::from_str(&written).unwrap();
        assert_eq!(serde_json::to_string(&read).unwrap(), written);
    }

    /// Each part of a cluster-wide backup is what the coordinator sent when it patched the request's body key by key, byte for byte, with
    /// the schema version given in the request or not (then it was appended).
    #[test]
    fn parts_are_the_request_patched_as_before() {
        let schema = "9bd8e6a2-4cf4-3a6f-b9c9-64a8bb3a5c3e";
        let tag = format!("nightly-{schema}-1764000000123");
        for given in [None, Some("0f0c3c2e-8b4f-4a51-9d1e-1c5a2b3d4e5f")] {
            let mut body = serde_json::json!({
                "storageLocation": "s3://bucket/c/dc1/n0", "snapshotTag": "nightly", "globalRequest": true,
                "createMissingBucket": true, "uploadClusterTopology": true, "timeout": 2,
                "proxySettings": {"useProxy": true, "proxyHost": "proxy", "proxyPassword": "secret"}
            });
            if let Some(given) = given {
                body["schemaVersion"] = given.into();
            }
            let request: BackupRequest =
                crate::decode::DecodeRequest::decode_request(body).unwrap();
            let location = crate::storage::StorageLocation::parse("s3://bucket/c/dc2/n7").unwrap();

            let mut before = crate::cluster::storage_part_body("backup", &request).unwrap();
            before.insert("storageLocation".into(), location.to_string().into());
            before.insert("snapshotTag".into(), tag.clone().into());
            before.insert("schemaVersion".into(), schema.into());
            before.insert("skipBucketVerification".into(), true.into());
            before.insert("createMissingBucket".into(), false.into());
            before.insert("uploadClusterTopology".into(), false.into());

            let base = crate::cluster::storage_part_body("backup", &request).unwrap();
            let mut part = StorageRequest {
                connection: request.connection.clone(),
                fields: request.fields.part(&tag, schema.parse().unwrap()),
            };
            part.connection.storage_location = location;
            part.connection.skip_bucket_verification = true;
            let body = crate::cluster::changed_part_body("backup", &base, &part).unwrap();
            assert_eq!(
                serde_json::to_string(&body).unwrap(),
                serde_json::to_string(&before).unwrap()
            );
        }
    }
}
