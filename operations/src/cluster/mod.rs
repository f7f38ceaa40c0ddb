//! Cluster-wide operations: a request with `globalRequest: true` makes this sidecar the coordinator. It finds the
//! cluster's nodes over JMX, checks that every node's sidecar answers, sends each node its part as an ordinary
//! operation over the same REST API (Icarus's protocol, so Icarus peers take part too), follows them, and fails,
//! naming the node, when one of them fails, stops answering, or outlasts the request's `timeout`.

pub mod backup;
pub mod coordinator;
pub mod participants;
pub mod remove;
pub mod restore;
pub mod rolling;
pub mod timeout;
pub mod verify;

pub use coordinator::Coordinator;
pub use participants::Peer;
pub use timeout::Timeout;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::operation::OperationFailure;
use crate::storage::request::StorageRequest;

/// The body a peer receives for its part: the request as this sidecar decoded it (every field with its effective
/// value), its `type`, and `globalRequest: false`. What differs per node is changed on a clone of the typed request
/// ([`changed_part_body`]).
pub fn part_body(
    type_id: &str,
    request: &impl Serialize,
) -> Result<Map<String, Value>, OperationFailure> {
    let unwritable = |source| {
        OperationFailure::engine(UnwritablePart {
            type_id: type_id.to_owned(),
            source,
        })
    };
    let mut body = match serde_json::to_value(request) {
        Ok(Value::Object(body)) => body,
        Ok(_) => return Err(unwritable(None)),
        Err(error) => return Err(unwritable(Some(error))),
    };
    body.insert("type".into(), type_id.into());
    body.insert("globalRequest".into(), false.into());
    Ok(body)
}

/// A request that does not serialize to a JSON object (the serializer's error, when it failed, is the source).
#[derive(Debug, thiserror::Error)]
#[error("cannot write the {type_id} request for the other nodes")]
struct UnwritablePart {
    type_id: String,
    source: Option<serde_json::Error>,
}

/// [`part_body`] of a storage request, with the proxy password the echo leaves out (the peers need it too).
pub fn storage_part_body<F: Serialize>(
    type_id: &str,
    request: &StorageRequest<F>,
) -> Result<Map<String, Value>, OperationFailure> {
    let mut body = part_body(type_id, request)?;
    if let Some(password) = request
        .connection
        .proxy_settings
        .as_ref()
        .and_then(|proxy| proxy.proxy_password.as_ref())
        && let Some(Value::Object(proxy)) = body.get_mut("proxySettings")
    {
        proxy.insert("proxyPassword".into(), password.clone().into());
    }
    Ok(body)
}

/// One node's part, as its sidecar receives it: `part`, a changed clone of the request, written as
/// [`storage_part_body`] writes the request itself (`base`). The keys keep `base`'s order: those the part leaves out
/// are removed as [`Map::remove`] removes them, then the part's are set, in place where `base` has them and
/// appended where it has not, so each part is byte for byte what the coordinators sent when they patched the
/// request's body key by key.
pub fn changed_part_body<F: Serialize>(
    type_id: &str,
    base: &Map<String, Value>,
    part: &StorageRequest<F>,
) -> Result<Value, OperationFailure> {
    let changed = storage_part_body(type_id, part)?;
    let mut body = base.clone();
    let left_out: Vec<String> = base
        .keys()
        .filter(|key| !changed.contains_key(*key))
        .cloned()
        .collect();
    for key in left_out {
        body.remove(&key);
    }
    body.extend(changed);
    Ok(Value::Object(body))
}

/// A part for an Icarus peer, in the forms Icarus 3.0.0 reads: its top level ignores fields it lacks, but
/// `timeout` is whole hours, `import` must say `"type": "import"`, a duration's unit one of Icarus's four, and a
/// backup or restore needs `dataDirs` (Icarus takes every node's to be the same: the coordinator's own, when the
/// request gave none).
pub fn icarus_part(body: Value, own_data_dirs: &[String]) -> Value {
    let Value::Object(mut body) = body else {
        return body;
    };
    if let Some(Value::String(text)) = body.get("timeout")
        && let Ok(timeout) = serde_json::from_value::<Timeout>(text.clone().into())
    {
        let hours = timeout.0.as_secs().div_ceil(3600).clamp(1, i32::MAX as u64);
        body.insert("timeout".into(), hours.into());
    }
    if let Some(Value::Object(import)) = body.get_mut("import") {
        import.insert("type".into(), "import".into());
    }
    for field in ["duration", "olderThan"] {
        if let Some(Value::Object(duration)) = body.get_mut(field)
            && let (Some(value), Some(unit)) = (
                duration.get("value").and_then(Value::as_u64),
                duration.get("unit").and_then(Value::as_str),
            )
            && !matches!(unit, "SECONDS" | "MINUTES" | "HOURS" | "DAYS")
        {
            let per_second = match unit {
                "MILLISECONDS" => 1_000,
                "MICROSECONDS" => 1_000_000,
                _ => 1_000_000_000,
            };
            duration.insert("value".into(), value.div_ceil(per_second).into());
            duration.insert("unit".into(), "SECONDS".into());
        }
    }
    let typed = matches!(
        body.get("type").and_then(Value::as_str),
        Some("backup" | "restore")
    );
    if typed && !body.get("dataDirs").is_some_and(Value::is_array) && !own_data_dirs.is_empty() {
        body.insert("dataDirs".into(), own_data_dirs.to_vec().into());
    }
    Value::Object(body)
}

/// When a request's `timeout` runs out, counted from now.
pub fn deadline_after(timeout: std::time::Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(timeout)
        .unwrap_or(now + std::time::Duration::from_secs(100 * 365 * 86_400))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::operation::OperationFailure;
    use crate::registry::Registry;
    use crate::types::{TypeOptions, registry};

    /// A request that is not a JSON object fails the part with the words it always had.
    #[test]
    fn a_part_that_is_no_object_reads_as_before() {
        let failure =
            super::part_body("backup", &json!(["not", "an", "object"])).expect_err("not an object");
        assert!(
            matches!(failure, OperationFailure::Engine(_)),
            "{failure:?}"
        );
        assert_eq!(
            failure.to_string(),
            "cannot write the backup request for the other nodes"
        );
    }

    /// A request whose serialization fails keeps the serializer's error as the source, the text unchanged.
    #[test]
    fn a_part_that_cannot_be_written_keeps_the_serializers_error() {
        struct Unwritable;
        impl serde::Serialize for Unwritable {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("no"))
            }
        }
        let failure = super::part_body("restore", &Unwritable).expect_err("cannot be written");
        assert_eq!(
            failure.to_string(),
            "cannot write the restore request for the other nodes"
        );
        let part = std::error::Error::source(&failure).expect("the part's error");
        let cause = part.source().expect("the serializer's error");
        assert!(
            cause.downcast_ref::<serde_json::Error>().is_some(),
            "{cause:?}"
        );
    }

    fn prepare(
        registry: &Registry,
        body: serde_json::Value,
    ) -> serde_json::Map<String, serde_json::Value> {
        match registry.prepare(body.clone()) {
            Ok(prepared) => prepared.request,
            Err(error) => panic!("{body} refused: {error}"),
        }
    }

    /// A part as an Icarus coordinator sends it (Jackson writes every field, nulls included) is taken as it is:
    /// the resolved tag stays the manifest's name, and nothing is defaulted over what the coordinator settled.
    #[test]
    fn parts_sent_by_an_icarus_coordinator_are_accepted_unchanged() {
        let registry = registry(TypeOptions::default());
        let tag = "nightly-9bd8e6a2-4cf4-3a6f-b9c9-64a8bb3a5c3e-1764000000123";
        let backup = prepare(
            &registry,
            json!({"type": "backup", "storageLocation": "s3://bucket/Test-Cluster/dc1/7f0c3c2e-8b4f-4a51-9d1e-1c5a2b3d4e5f",
                "snapshotTag": tag, "schemaVersion": "9bd8e6a2-4cf4-3a6f-b9c9-64a8bb3a5c3e", "globalRequest": false,
                "skipBucketVerification": true, "uploadClusterTopology": false, "createMissingBucket": false,
                "dataDirs": ["/var/lib/cassandra/data/data"], "entities": "", "dc": null, "timeout": 5,
                "concurrentConnections": 10, "metadataDirective": "COPY", "insecure": false, "skipRefreshing": false,
                "duration": null, "bandwidth": null, "kmsKeyId": null, "proxySettings": null,
                "retry": {"interval": 10, "strategy": "LINEAR", "maxAttempts": 3, "enabled": true},
                "k8sNamespace": "default", "k8sSecretName": "cloud-backup-secrets"}),
        );
        assert_eq!(backup["snapshotTag"], tag);
        assert_eq!(backup["skipBucketVerification"], true);
        assert_eq!(backup["globalRequest"], false);
        let version = backup["schemaVersion"].as_str().unwrap();
        let now = chrono::Utc::now();
        assert_eq!(
            crate::esop::tag::resolved_tag(Some(tag), false, version, now),
            tag
        );

        let restore = prepare(
            &registry,
            json!({"type": "restore", "storageLocation": "s3://bucket/Test-Cluster/dc1/7f0c3c2e-8b4f-4a51-9d1e-1c5a2b3d4e5f",
                "snapshotTag": tag, "restorationStrategyType": "HARDLINKS", "restorationPhase": "DOWNLOAD",
                "globalRequest": false, "singlePhase": false, "skipBucketVerification": true, "timeout": 5,
                "import": {"type": "import", "sourceDir": "/var/lib/cassandra/downloadedsstables", "keepLevel": false},
                "dataDirs": ["/var/lib/cassandra/data/data"], "cassandraDirectory": "/var/lib/cassandra",
                "entities": "ks.t", "rename": {}, "schemaVersion": null, "exactSchemaVersion": false,
                "noDeleteTruncates": false, "noDeleteDownloads": false, "noDownloadData": false, "dc": null,
                "k8sNamespace": "default", "k8sSecretName": null}),
        );
        assert_eq!(restore["restorationPhase"], "DOWNLOAD");
        assert_eq!(restore["snapshotTag"], tag);
    }

    #[test]
    fn icarus_peers_get_hours_typed_imports_whole_seconds_and_data_dirs() {
        let part = super::icarus_part(
            json!({"type": "restore", "timeout": "90m", "import": {"sourceDir": "/d"},
                "duration": {"value": 1500, "unit": "MILLISECONDS"}}),
            &["/var/lib/cassandra/data".to_string()],
        );
        assert_eq!(
            part,
            json!({"type": "restore", "timeout": 2, "import": {"type": "import", "sourceDir": "/d"},
                "duration": {"value": 2, "unit": "SECONDS"}, "dataDirs": ["/var/lib/cassandra/data"]})
        );
        let given = json!({"type": "backup", "timeout": 3, "dataDirs": ["/data"]});
        assert_eq!(super::icarus_part(given.clone(), &["/x".into()]), given);
    }
}
