//! How an operation object shows its request to the readers it has: clients written for Icarus in several
//! languages, and Icarus itself coordinating a cluster-wide operation in a mixed fleet.
//!
//! Two rules, both for readers that decode into fixed types:
//! - A field that Icarus's readers take in more than one form (`duration` as `"12h"` or as `{"value": 12, "unit":
//!   "HOURS"}`) is echoed in the form the request gave it: the Icarus Go client (and CassKop and IBM's operator on
//!   it) reads `duration` as a string, Icarus's own Java classes as an object, and each wrote what it reads.
//! - Icarus's Java classes refuse a field they do not know (Jackson's default), so [`icarus_view`] renders an
//!   operation with only the fields Icarus 3.0.0 has for its type: no `hashAlgorithm`, `response` or `nodes`.

use serde_json::{Map, Value};

use crate::record::{COMMON_FIELDS, ICARUS_COMMON_FIELDS};

/// The request fields echoed as the request gave them, when it gave them as text: a duration, a rate, the
/// cluster-wide `timeout`, and the proxy port and switch (strings in the Go client's model).
const AS_GIVEN: [&[&str]; 6] = [
    &["duration"],
    &["bandwidth"],
    &["olderThan"],
    &["timeout"],
    &["proxySettings", "useProxy"],
    &["proxySettings", "proxyPort"],
];

/// The text forms a request body used for the [`AS_GIVEN`] fields, read before the body is decoded.
#[derive(Debug, Default)]
pub struct GivenForms(Vec<(&'static [&'static str], Value)>);

impl GivenForms {
    pub fn of(body: &Value) -> GivenForms {
        GivenForms(
            AS_GIVEN
                .iter()
                .filter_map(|path| {
                    let value = lookup(body, path)?;
                    value.is_string().then(|| (*path, value.clone()))
                })
                .collect(),
        )
    }

    /// Puts the given forms back into `echo`, where the effective request has the field.
    pub fn restore(&self, echo: &mut Map<String, Value>) {
        for (path, given) in &self.0 {
            if let Some(slot) = slot(echo, path) {
                *slot = given.clone();
            }
        }
    }
}

fn slot<'a>(object: &'a mut Map<String, Value>, path: &[&str]) -> Option<&'a mut Value> {
    let (first, rest) = path.split_first()?;
    let value = object.get_mut(*first)?;
    match value {
        _ if rest.is_empty() => Some(value),
        Value::Object(inner) => slot(inner, rest),
        _ => None,
    }
}

fn lookup<'a>(body: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(body, |value, key| value.get(key))
}

/// Each type's own fields, as Icarus 3.0.0's `Operation` classes (Esop 3.0.1's requests) list them in the
/// "known properties" of Jackson's refusal. Types Icarus does not have are shown in full.
fn icarus_fields(type_id: &str) -> Option<&'static [&'static str]> {
    Some(match type_id {
        "backup" => &[
            "storageLocation",
            "duration",
            "bandwidth",
            "concurrentConnections",
            "metadataDirective",
            "entities",
            "snapshotTag",
            "globalRequest",
            "dc",
            "timeout",
            "insecure",
            "createMissingBucket",
            "skipBucketVerification",
            "schemaVersion",
            "uploadClusterTopology",
            "proxySettings",
            "retry",
            "skipRefreshing",
            "dataDirs",
            "kmsKeyId",
        ],
        "restore" => &[
            "storageLocation",
            "concurrentConnections",
            "cassandraDirectory",
            "cassandraConfigDirectory",
            "restoreSystemKeyspace",
            "restoreSystemAuth",
            "snapshotTag",
            "entities",
            "updateCassandraYaml",
            "restorationStrategyType",
            "restorationPhase",
            "import",
            "noDeleteTruncates",
            "noDeleteDownloads",
            "noDownloadData",
            "exactSchemaVersion",
            "schemaVersion",
            "globalRequest",
            "dc",
            "timeout",
            "resolveHostIdFromTopology",
            "insecure",
            "newCluster",
            "skipBucketVerification",
            "proxySettings",
            "rename",
            "retry",
            "singlePhase",
            "dataDirs",
            "kmsKeyId",
        ],
        "remove-backup" => &[
            "storageLocation",
            "k8sNamespace",
            "k8sSecretName",
            "insecure",
            "skipBucketVerification",
            "proxySettings",
            "retry",
            "backupName",
            "dry",
            "resolveNodes",
            "olderThan",
            "cacheDir",
            "removeOldest",
            "concurrentConnections",
            "globalRequest",
        ],
        "list" => &[
            "storageLocation",
            "insecure",
            "skipBucketVerification",
            "proxySettings",
            "retry",
            "json",
            "resolveNodes",
            "humanUnits",
            "toFile",
            "simpleFormat",
            "fromTimestamp",
            "lastN",
            "skipDownload",
            "cacheDir",
            "toRequest",
            "concurrentConnections",
            "response",
        ],
        "import" => &[
            "keyspace",
            "table",
            "tablePath",
            "keepLevel",
            "noVerify",
            "noVerifyTokens",
            "noInvalidateCaches",
            "quick",
            "extendedVerify",
            "sourceDir",
        ],
        _ => return None,
    })
}

/// The fields of Esop's nested value classes, which refuse others too.
const NESTED: [(&str, &[&str]); 5] = [
    ("retry", &["interval", "strategy", "maxAttempts", "enabled"]),
    (
        "proxySettings",
        &[
            "useProxy",
            "proxyHost",
            "proxyPort",
            "proxyUsername",
            "proxyPassword",
            "proxyProtocol",
        ],
    ),
    ("duration", &["value", "unit"]),
    ("bandwidth", &["value", "unit"]),
    ("olderThan", &["value", "unit"]),
];

/// Narrows a rendered operation object to what Icarus 3.0.0 reads for its type, for a reader that is Icarus.
pub fn icarus_view(operation: &mut Map<String, Value>) {
    let type_id = operation
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let Some(own) = icarus_fields(&type_id) else {
        return;
    };
    let common = &COMMON_FIELDS[..ICARUS_COMMON_FIELDS];
    operation.retain(|key, _| common.contains(&key.as_str()) || own.contains(&key.as_str()));
    for (field, known) in NESTED {
        if let Some(Value::Object(inner)) = operation.get_mut(field) {
            inner.retain(|key, _| known.contains(&key.as_str()));
        }
    }
    if type_id == "restore" {
        // Icarus's RestoreOperation cannot be built without them.
        operation
            .entry("resolveHostIdFromTopology")
            .or_insert(Value::Bool(false));
        if let Some(Value::Object(import)) = operation.get_mut("import") {
            import.insert("type".into(), "import".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn text_forms_are_echoed_as_given_and_objects_as_decoded() {
        let body = json!({"duration": "1 HOURS", "bandwidth": {"value": "10", "unit": "MBPS"},
            "timeout": "90m", "proxySettings": {"useProxy": "true", "proxyPort": 3128}});
        let mut echo = json!({"duration": {"value": 1, "unit": "HOURS"}, "bandwidth": {"value": 10, "unit": "MBPS"},
            "timeout": "1h 30m", "proxySettings": {"useProxy": true, "proxyPort": 3128}})
        .as_object()
        .cloned()
        .unwrap();
        GivenForms::of(&body).restore(&mut echo);
        assert_eq!(
            Value::Object(echo),
            json!({"duration": "1 HOURS", "bandwidth": {"value": 10, "unit": "MBPS"}, "timeout": "90m",
                "proxySettings": {"useProxy": "true", "proxyPort": 3128}})
        );
    }

    #[test]
    fn a_field_the_request_left_out_stays_as_the_server_filled_it() {
        let mut echo = json!({"timeout": 5}).as_object().cloned().unwrap();
        GivenForms::of(&json!({"proxySettings": {"proxyPort": "3128"}})).restore(&mut echo);
        assert_eq!(Value::Object(echo), json!({"timeout": 5}));
    }

    #[test]
    fn icarus_sees_only_the_fields_of_its_own_classes() {
        let mut backup = json!({"type": "backup", "id": "x", "state": "COMPLETED", "errors": [], "progress": 1.0,
            "storageLocation": "s3://b/c/d/n", "hashAlgorithm": "SHA-256", "response": {"snapshotTag": "t"},
            "retry": {"interval": 10, "strategy": "LINEAR", "maxAttempts": 3, "enabled": false, "extra": 1},
            "nodes": []})
        .as_object()
        .cloned()
        .unwrap();
        icarus_view(&mut backup);
        assert_eq!(
            Value::Object(backup),
            json!({"type": "backup", "id": "x", "state": "COMPLETED", "errors": [], "progress": 1.0,
                "storageLocation": "s3://b/c/d/n",
                "retry": {"interval": 10, "strategy": "LINEAR", "maxAttempts": 3, "enabled": false}})
        );

        let mut restore = json!({"type": "restore", "import": {"sourceDir": "/d"}, "response": {}})
            .as_object()
            .cloned()
            .unwrap();
        icarus_view(&mut restore);
        assert_eq!(
            Value::Object(restore),
            json!({"type": "restore", "import": {"type": "import", "sourceDir": "/d"},
                "resolveHostIdFromTopology": false})
        );

        let mut repair = json!({"type": "repair", "keyspace": "ks", "response": {}})
            .as_object()
            .cloned()
            .unwrap();
        icarus_view(&mut repair);
        assert_eq!(repair.len(), 3, "a type Icarus lacks is shown in full");
    }
}
