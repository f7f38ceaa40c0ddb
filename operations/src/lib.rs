//! The Daedalus operation framework.
//!
//! A client POSTs a request with a `type`; the [`Registry`] decodes and validates it into a
//! [`PreparedOperation`]; the [`Executor`] stores it as an [`OperationRecord`] in an [`OperationStore`] and runs it
//! as a tokio task, handing it an [`OperationContext`] for progress, cancellation and the sidecar's services.
//! The operation types live in [`types`], one module each.

pub mod backup;
pub mod cassandra;
pub mod cluster;
pub mod cql;
pub mod crypto;
pub mod decode;
pub mod echo;
pub mod esop;
pub mod executor;
pub mod freshness;
pub mod jmx_connector;
pub mod jmx_settings;
pub mod metrics;
pub mod net;
pub mod node_fs;
pub mod node_storage;
pub mod operation;
pub mod operation_store;
pub mod peer;
pub mod record;
pub mod registry;
pub mod removal;
pub mod restore;
pub mod schedule;
pub mod secret;
pub mod startup;
pub mod state;
pub mod storage;
mod sync;
pub mod types;
pub mod validation;
pub mod verify;

pub use executor::{CancelError, Executor, ShutdownReport, SubmitError};
pub use jmx_connector::JmxConnector;
pub use jmx_settings::{JmxService, JmxSettings};
pub use operation::LocalOperations;
pub use operation::{Operation, OperationContext, OperationFailure, ProgressReporter, Services};
pub use operation_store::{InMemoryStore, OperationFilter, OperationStore};
pub use record::{OperationRecord, ReportedError, StoredStatus};
pub use registry::{PreparedOperation, Registry, RequestError};
pub use secret::Secret;
pub use state::OperationState;
pub use validation::{FieldViolation, Validate, Violations};
