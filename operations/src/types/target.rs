//! What most Cassandra-facing operations name and do first: the keyspace and tables they act on, as one request
//! group ([`TableTarget`]) composed into each type's request ([`TableRequest`]), and the check that those exist
//! on the node, so a typo fails with a clear error before anything runs.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::cassandra::Cassandra;
use crate::decode::{self, DecodeRequest};
use crate::operation::{OperationContext, OperationFailure};
use crate::validation::{self, Validate, Violations};

/// `keyspace` and `tables`: what a maintenance request acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct TableTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyspace: Option<String>,
    /// Absent or empty: every table of the keyspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<String>>,
}

impl Validate for TableTarget {
    fn validate(&self, violations: &mut Violations) {
        validation::required_keyspace(violations, "keyspace", &self.keyspace);
        validation::table_names(violations, "tables", &self.tables);
    }
}

impl TableTarget {
    /// Connects and checks that the keyspace (validated as present at submit time) and the tables exist on the node.
    pub async fn resolve(self, context: &OperationContext) -> Result<Target, OperationFailure> {
        target(context, self.keyspace, self.tables).await
    }
}

/// A maintenance request: the [`TableTarget`] group and the type's own `fields`, side by side in one JSON object
/// as Icarus has them (as [`crate::storage::request::StorageRequest`] composes its connection).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TableRequest<F> {
    #[serde(flatten)]
    pub target: TableTarget,
    #[serde(flatten)]
    pub fields: F,
}

impl<F: DeserializeOwned> DecodeRequest for TableRequest<F> {
    // Each group is decoded from the whole body rather than through serde's `flatten`, which would lose the
    // path of a bad field and the lenient decoding of numbers as strings.
    fn decode_request(body: serde_json::Value) -> Result<Self, (String, String)> {
        let target = decode::request(body.clone())?;
        let fields = decode::request(body)?;
        Ok(TableRequest { target, fields })
    }
}

impl<F: Validate> Validate for TableRequest<F> {
    fn validate(&self, violations: &mut Violations) {
        self.target.validate(violations);
        self.fields.validate(violations);
    }
}

pub struct Target {
    pub cassandra: Cassandra,
    pub keyspace: String,
    /// Empty: every table of the keyspace.
    pub tables: Vec<String>,
}

/// Connects and checks `keyspace` (validated as present at submit time) and `tables` exist on the node.
pub async fn target(
    context: &OperationContext,
    keyspace: Option<String>,
    tables: Option<Vec<String>>,
) -> Result<Target, OperationFailure> {
    let cassandra = context.cassandra().await?;
    let keyspace = keyspace.unwrap_or_default();
    let tables = tables.unwrap_or_default();
    context
        .cancellable(cassandra.require_tables(&keyspace, &tables))
        .await??;
    Ok(Target {
        cassandra,
        keyspace,
        tables,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::types::cleanup::CleanupRequest;
    use crate::types::upgradesstables::UpgradeSSTablesRequest;

    #[test]
    fn a_composed_request_reads_and_writes_one_flat_object() {
        let body = json!({"type": "cleanup", "keyspace": 123, "tables": [7, "t"], "jobs": "2"});
        let cleanup = CleanupRequest::decode_request(body).unwrap();
        assert_eq!(
            serde_json::to_value(&cleanup).unwrap(),
            json!({"keyspace": "123", "tables": ["7", "t"], "jobs": 2})
        );
        let upgrade = UpgradeSSTablesRequest::decode_request(
            json!({"keyspace": "ks", "includeAllSSTables": true}),
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&upgrade).unwrap(),
            json!({"keyspace": "ks", "jobs": 0, "includeAllSStables": true})
        );
    }

    #[test]
    fn a_bad_field_is_named_by_its_own_path_in_either_group() {
        let keyspace = CleanupRequest::decode_request(json!({"keyspace": ["ks"]})).unwrap_err();
        assert_eq!(keyspace.0, "keyspace");
        let jobs =
            CleanupRequest::decode_request(json!({"keyspace": "ks", "jobs": "many"})).unwrap_err();
        assert_eq!(jobs.0, "jobs");
        let mut violations = Violations::default();
        CleanupRequest::decode_request(json!({"jobs": -1}))
            .unwrap()
            .validate(&mut violations);
        let fields: Vec<_> = violations.into_vec().into_iter().map(|v| v.field).collect();
        assert_eq!(fields, ["keyspace", "jobs"]);
    }
}
