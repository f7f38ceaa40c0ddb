//! Type id -> request decoder + validator + handler.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde_json::{Map, Value};

use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::validation::{FieldViolation, Violations};

/// Why a POST body is not an operation we can run. Every variant is the client's to fix (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("the request body must be a JSON object")]
    NotAnObject,

    #[error("the request has no \"type\"; known types: {}", known.join(", "))]
    MissingType { known: Vec<&'static str> },

    #[error("unknown operation type '{given}'; known types: {}{}", known.join(", "),
        hint.map(|h| format!(" ({h})")).unwrap_or_default())]
    UnknownType {
        given: String,
        known: Vec<&'static str>,
        /// How to enable the type, when it exists but is switched off.
        hint: Option<&'static str>,
    },

    #[error("field '{field}': {message}")]
    Decode { field: String, message: String },

    #[error(
        "invalid {type_id} request: {}",
        crate::validation::describe(violations)
    )]
    Invalid {
        type_id: &'static str,
        violations: Vec<FieldViolation>,
    },
}

impl RequestError {
    /// The per-field problems, for the `details` of the error response.
    pub fn violations(&self) -> Vec<FieldViolation> {
        match self {
            RequestError::NotAnObject => vec![],
            RequestError::MissingType { .. } => {
                vec![FieldViolation::new("type", "is required")]
            }
            RequestError::UnknownType { given, .. } => {
                vec![FieldViolation::new(
                    "type",
                    format!("unknown type '{given}'"),
                )]
            }
            RequestError::Decode { field, message } => {
                vec![FieldViolation::new(field.clone(), message.clone())]
            }
            RequestError::Invalid { violations, .. } => violations.clone(),
        }
    }
}

type Runner =
    Box<dyn FnOnce(OperationContext) -> BoxFuture<'static, Result<(), OperationFailure>> + Send>;

/// A decoded, validated request, ready to be stored and run.
pub struct PreparedOperation {
    pub type_id: &'static str,
    /// See [`Operation::EXCLUSIVE`].
    pub exclusive: Option<&'static str>,
    /// See [`Operation::resumable`].
    pub resumable: bool,
    /// The request's fields as the operation object echoes them.
    pub request: Map<String, Value>,
    runner: Runner,
}

impl PreparedOperation {
    pub fn run(
        self,
        context: OperationContext,
    ) -> BoxFuture<'static, Result<(), OperationFailure>> {
        (self.runner)(context)
    }
}

impl fmt::Debug for PreparedOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedOperation")
            .field("type_id", &self.type_id)
            .field("request", &self.request)
            .finish_non_exhaustive()
    }
}

/// Object-safe face of an [`Operation`], so types with different requests share one map.
trait ErasedOperation: Send + Sync {
    fn prepare(
        &self,
        body: Value,
        accepted_at: DateTime<Utc>,
    ) -> Result<PreparedOperation, RequestError>;
}

impl<O: Operation> ErasedOperation for Arc<O> {
    fn prepare(
        &self,
        body: Value,
        accepted_at: DateTime<Utc>,
    ) -> Result<PreparedOperation, RequestError> {
        let given = crate::echo::GivenForms::of(&body);
        let request = <O::Request as crate::decode::DecodeRequest>::decode_request(body)
            .map_err(|(field, message)| RequestError::Decode { field, message })?;
        let mut prepared = prepare_request(Arc::clone(self), request, accepted_at)?;
        given.restore(&mut prepared.request);
        Ok(prepared)
    }
}

/// Validates a request built in code (the command line builds typed requests), fills in its defaults and readies
/// it to run, as [`Registry::prepare`] does for a POST body.
pub fn prepare_request<O: Operation>(
    operation: Arc<O>,
    mut request: O::Request,
    accepted_at: DateTime<Utc>,
) -> Result<PreparedOperation, RequestError> {
    let mut violations = Violations::default();
    crate::validation::Validate::validate(&request, &mut violations);
    operation.check_request(&request, &mut violations);
    let violations = violations.into_vec();
    if !violations.is_empty() {
        return Err(RequestError::Invalid {
            type_id: O::TYPE,
            violations,
        });
    }
    // After validation, so a default never hides a field the client got wrong.
    operation.fill_defaults(&mut request, accepted_at);
    let exclusive = operation.exclusive(&request);
    let resumable = operation.resumable(&request);
    let request_fields = match serde_json::to_value(&request) {
        Ok(Value::Object(fields)) => fields,
        // A request type that does not serialize to an object (e.g. a unit struct) has no fields to echo.
        _ => Map::new(),
    };
    Ok(PreparedOperation {
        type_id: O::TYPE,
        exclusive,
        resumable,
        request: request_fields,
        runner: Box::new(move |context| {
            Box::pin(async move { operation.run(request, context).await })
        }),
    })
}

/// Every operation type this sidecar accepts.
#[derive(Default)]
pub struct Registry {
    operations: BTreeMap<&'static str, Box<dyn ErasedOperation>>,
    /// Types that exist but are switched off, with how to switch them on.
    disabled: BTreeMap<&'static str, &'static str>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("types", &self.type_ids())
            .field("disabled", &self.disabled)
            .finish()
    }
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers an operation type. Registering the same type id twice is a programming error.
    pub fn register<O: Operation>(&mut self, operation: O) -> &mut Self {
        let previous = self
            .operations
            .insert(O::TYPE, Box::new(Arc::new(operation)));
        assert!(
            previous.is_none(),
            "operation type {} registered twice",
            O::TYPE
        );
        self
    }

    /// Records a type that exists but is off, so requests for it get told how to turn it on.
    pub fn disable(&mut self, type_id: &'static str, how_to_enable: &'static str) -> &mut Self {
        self.disabled.insert(type_id, how_to_enable);
        self
    }

    /// The registered type ids, sorted.
    pub fn type_ids(&self) -> Vec<&'static str> {
        self.operations.keys().copied().collect()
    }

    pub fn contains(&self, type_id: &str) -> bool {
        self.operations.contains_key(type_id)
    }

    /// Decodes and validates a POST body and fills in the defaults decided at submit
    /// ([`Operation::fill_defaults`]). Nothing is stored or run yet.
    pub fn prepare(&self, body: Value) -> Result<PreparedOperation, RequestError> {
        self.prepare_at(body, Utc::now())
    }

    /// Decodes and validates a body as [`Registry::prepare`] does, without readying it to run: whether it would be
    /// accepted (a schedule checks its operation so when it is created).
    pub fn check(&self, body: Value) -> Result<(), RequestError> {
        self.prepare(body).map(drop)
    }

    /// [`Registry::prepare`], as if accepted at `accepted_at`.
    pub fn prepare_at(
        &self,
        body: Value,
        accepted_at: DateTime<Utc>,
    ) -> Result<PreparedOperation, RequestError> {
        let Value::Object(fields) = &body else {
            return Err(RequestError::NotAnObject);
        };
        let type_id = match fields.get("type") {
            Some(Value::String(type_id)) => type_id.clone(),
            Some(Value::Null) | None => {
                return Err(RequestError::MissingType {
                    known: self.type_ids(),
                });
            }
            Some(other) => {
                return Err(RequestError::Decode {
                    field: "type".into(),
                    message: format!("must be a string, got {other}"),
                });
            }
        };
        match self.operations.get(type_id.as_str()) {
            Some(operation) => operation.prepare(body, accepted_at),
            None => Err(RequestError::UnknownType {
                hint: self.disabled.get(type_id.as_str()).copied(),
                given: type_id,
                known: self.type_ids(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{TypeOptions, registry};
    use serde_json::json;

    fn prepare(body: Value) -> Result<PreparedOperation, RequestError> {
        registry(TypeOptions::default()).prepare(body)
    }

    #[test]
    fn decode_errors_name_the_field_even_in_shared_field_groups() {
        let error =
            prepare(json!({"type": "cleanup", "keyspace": "ks", "tables": "t1"})).unwrap_err();
        assert_eq!(error.violations()[0].field, "tables", "{error}");
        let error =
            prepare(json!({"type": "cleanup", "keyspace": "ks", "jobs": "lots"})).unwrap_err();
        assert_eq!(error.violations()[0].field, "jobs", "{error}");
    }

    #[test]
    fn echoes_effective_request_fields_and_ignores_unknown_ones() {
        let prepared = prepare(
            json!({"type": "cleanup", "keyspace": "ks", "jobs": "2", "k8sSecretName": "x"}),
        )
        .unwrap();
        assert_eq!(
            Value::Object(prepared.request),
            json!({"keyspace": "ks", "jobs": 2})
        );
    }

    #[test]
    fn defaults_a_client_must_know_are_filled_in_at_submit() {
        let accepted = DateTime::from_timestamp_millis(1_700_000_000_123).unwrap();
        let registry = registry(TypeOptions::default());
        let prepare = |body| registry.prepare_at(body, accepted);
        let location = "s3://b/c/d/n";
        let backup = prepare(json!({"type": "backup", "storageLocation": location})).unwrap();
        assert_eq!(backup.request["snapshotTag"], "autosnap-1700000000");
        let given = prepare(json!({"type": "backup", "storageLocation": location,
            "snapshotTag": "nightly", "snapshotTagGenerated": true}))
        .unwrap();
        assert_eq!(given.request["snapshotTag"], "nightly");
        assert!(
            given.request.get("snapshotTagGenerated").is_none(),
            "{:?}",
            given.request
        );
        let snapshot = prepare(json!({"type": "snapshot"})).unwrap();
        assert_eq!(snapshot.request["snapshotTag"], "daedalus-1700000000123");
        // A field the client got wrong is reported, not defaulted over.
        let error =
            prepare(json!({"type": "backup", "storageLocation": location, "snapshotTag": ""}))
                .unwrap_err();
        assert_eq!(error.violations()[0].field, "snapshotTag");
    }

    #[test]
    fn reports_every_violation_at_once() {
        let error =
            prepare(json!({"type": "cleanup", "jobs": -1, "tables": ["ok", "b-ad"]})).unwrap_err();
        let fields: Vec<_> = error.violations().into_iter().map(|v| v.field).collect();
        assert_eq!(fields, ["keyspace", "tables[1]", "jobs"]);
    }

    #[test]
    fn unknown_and_missing_types_list_the_known_ones() {
        let error = prepare(json!({"type": "explode"})).unwrap_err();
        assert!(error.to_string().contains("cleanup"), "{error}");
        assert!(matches!(
            prepare(json!({"keyspace": "ks"})),
            Err(RequestError::MissingType { .. })
        ));
        assert_eq!(
            prepare(json!(["cleanup"])).unwrap_err(),
            RequestError::NotAnObject
        );
        assert_eq!(
            prepare(json!({"type": 7})).unwrap_err().violations()[0].field,
            "type"
        );
    }
}
