//! An operation as etcd holds it: one JSON document per operation, the operation exactly as clients see it (Icarus's
//! shape) plus which sidecar runs it. Reading the document back gives the same JSON.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::record::{OperationRecord, ReportedError, StoredStatus};
use crate::state::OperationState;
use crate::sync::lock;

/// Bumped if the layout ever changes, so an older sidecar can tell a document it cannot read.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub format: u32,
    /// The sidecar that runs the operation (and the only one that writes it).
    pub sidecar: String,
    /// Whether another sidecar may take it over when that one dies (see `Operation::resumable`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resumable: bool,
    /// The operation's JSON, as `GET /operations/{id}` renders it.
    pub operation: Map<String, Value>,
}

/// Why a document could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("not a JSON document of an operation: {0}")]
    Json(#[from] serde_json::Error),
    #[error("written in format {0}, newer than this sidecar reads ({FORMAT})")]
    NewerFormat(u32),
    #[error("its field {0} is missing or malformed")]
    Field(&'static str),
}

impl Document {
    pub fn of(record: &OperationRecord, sidecar: &str) -> Self {
        let operation = match serde_json::to_value(record) {
            Ok(Value::Object(map)) => map,
            // A record always serializes to an object; keep the id at least if that ever changes.
            _ => Map::from_iter([("id".to_string(), Value::String(record.id().to_string()))]),
        };
        Document {
            format: FORMAT,
            sidecar: sidecar.to_string(),
            resumable: record.resumable(),
            operation,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing maps of JSON values cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DocumentError> {
        let document: Document = serde_json::from_slice(bytes)?;
        if document.format > FORMAT {
            return Err(DocumentError::NewerFormat(document.format));
        }
        Ok(document)
    }

    pub fn id(&self) -> Result<Uuid, DocumentError> {
        self.operation
            .get("id")
            .and_then(Value::as_str)
            .and_then(|text| Uuid::parse_str(text).ok())
            .ok_or(DocumentError::Field("id"))
    }

    pub fn state(&self) -> Result<OperationState, DocumentError> {
        self.field("state")
    }

    /// The record this document describes, ordered by `sequence` (etcd's creation revision of its key).
    pub fn to_record(&self, sequence: u64) -> Result<OperationRecord, DocumentError> {
        let id = self.id()?;
        let type_id = self
            .operation
            .get("type")
            .and_then(Value::as_str)
            .map(intern)
            .ok_or(DocumentError::Field("type"))?;
        let creation_time: DateTime<Utc> = self.field("creationTime")?;
        let status = self.status()?;
        let request: Map<String, Value> = self
            .operation
            .iter()
            .filter(|(key, _)| !OperationRecord::is_common_field(key))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        Ok(
            OperationRecord::restored(id, type_id, request, creation_time, sequence, status)
                .with_sidecar(Some(self.sidecar.clone()))
                .with_resumable(self.resumable),
        )
    }

    pub fn status(&self) -> Result<StoredStatus, DocumentError> {
        Ok(StoredStatus {
            state: self.state()?,
            progress: self.field("progress")?,
            errors: self
                .optional::<Vec<ReportedError>>("errors")?
                .unwrap_or_default(),
            start_time: self.optional("startTime")?,
            completion_time: self.optional("completionTime")?,
            response: self.operation.get("response").cloned(),
            nodes: self.operation.get("nodes").cloned(),
        })
    }

    fn field<T: serde::de::DeserializeOwned>(
        &self,
        name: &'static str,
    ) -> Result<T, DocumentError> {
        self.optional(name)?.ok_or(DocumentError::Field(name))
    }

    fn optional<T: serde::de::DeserializeOwned>(
        &self,
        name: &'static str,
    ) -> Result<Option<T>, DocumentError> {
        match self.operation.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => T::deserialize(value)
                .map(Some)
                .map_err(|_| DocumentError::Field(name)),
        }
    }
}

/// Operation types are `&'static str` everywhere (the registry's names); a type read from etcd is mapped to one.
/// Each distinct name is kept once, so the memory this takes is bounded by the number of operation types.
fn intern(name: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = lock(NAMES.get_or_init(Default::default));
    if let Some(known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.insert(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tokio_util::sync::CancellationToken;

    #[test]
    fn a_record_read_back_renders_the_same_json_with_its_sidecar() {
        let Value::Object(request) = json!({"keyspace": "ks", "tables": ["t"], "jobs": 2}) else {
            unreachable!()
        };
        let record = OperationRecord::new("cleanup", request, CancellationToken::new());
        record.start(Utc::now());
        record.set_progress(0.5);
        record.add_error(ReportedError {
            source: "n1".into(),
            message: "one table failed".into(),
        });
        record.set_nodes(json!([{"node": "127.0.0.1"}]));
        record.finish(OperationState::Failed, Utc::now());

        let document = Document::of(&record, "sidecar-1");
        let read = Document::from_bytes(&document.to_bytes()).unwrap();
        let restored = read.to_record(42).unwrap();
        assert_eq!(restored.sequence(), 42);
        assert_eq!(restored.sidecar(), Some("sidecar-1"));
        let mut expected = serde_json::to_value(&record).unwrap();
        expected["sidecar"] = json!("sidecar-1");
        assert_eq!(serde_json::to_value(&restored).unwrap(), expected);
    }

    #[test]
    fn documents_of_a_newer_format_or_without_an_id_are_refused() {
        let newer = json!({"format": FORMAT + 1, "sidecar": "s", "operation": {}});
        assert!(matches!(
            Document::from_bytes(newer.to_string().as_bytes()),
            Err(DocumentError::NewerFormat(_))
        ));
        let no_id = json!({"format": FORMAT, "sidecar": "s", "operation": {"type": "flush"}});
        let document = Document::from_bytes(no_id.to_string().as_bytes()).unwrap();
        assert!(matches!(
            document.to_record(1),
            Err(DocumentError::Field("id"))
        ));
    }
}
