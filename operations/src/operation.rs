//! The contract between the framework and an operation type.

use std::future::Future;
use std::sync::Arc;

use dashmap::DashMap;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::jmx_connector::JmxConnector;
use crate::jmx_settings::JmxSettings;
use crate::operation_store::OperationStore;
use crate::record::{OperationRecord, ReportedError};
use crate::state::OperationState;
use crate::validation::Validate;

/// One operation type: its `type` id, its request, and what running it does.
///
/// Adding a type is a module with an implementation of this trait plus one `register` line in
/// [`crate::types::registry`].
pub trait Operation: Send + Sync + 'static {
    /// The `type` value clients send, e.g. `"cleanup"`.
    const TYPE: &'static str;

    /// Operations of the same group may not run at once on a node (e.g. decommission and drain both change what
    /// the node is); a second one is refused while the first is unfinished.
    const EXCLUSIVE: Option<&'static str> = None;

    /// The exclusive group of this request: [`Operation::EXCLUSIVE`] unless the type decides per request (a
    /// cluster-wide restore's coordinator must not exclude the restore it sends its own node).
    fn exclusive(&self, _request: &Self::Request) -> Option<&'static str> {
        Self::EXCLUSIVE
    }

    /// Whether, with a store shared by the cluster's sidecars (etcd), another sidecar may take the operation over
    /// and go on with it when the sidecar running it dies: a cluster-wide operation that can pick up its parts from
    /// its recorded `nodes` without running finished ones again. The sidecar taking over runs it again with the
    /// same request; [`OperationContext::recorded_nodes`] and [`OperationContext::recorded_response`] then hold
    /// what was recorded before.
    fn resumable(&self, _request: &Self::Request) -> bool {
        false
    }

    /// The request, decoded from the POST body. Serialized back, it becomes the request fields of the operation
    /// object, so it should serialize every field with its effective (defaulted) value.
    type Request: crate::decode::DecodeRequest + Serialize + Validate + Send + 'static;

    /// Checks the request against this sidecar's own configuration, which the request type alone cannot know (the
    /// directories the operator gave at start): run at submit, after [`Validate`]; each problem names its field.
    fn check_request(
        &self,
        _request: &Self::Request,
        _violations: &mut crate::validation::Violations,
    ) {
    }

    /// Fills in, once the request is valid, the defaults a client must learn from the 201 answer rather than when
    /// the operation runs (a generated snapshot tag, ...). Every request passes here, in
    /// [`crate::registry::Registry::prepare`]; what it sets is echoed in the operation object and is what
    /// [`Operation::run`] receives. `accepted_at` is when the request was accepted. Most types have none.
    fn fill_defaults(
        &self,
        _request: &mut Self::Request,
        _accepted_at: chrono::DateTime<chrono::Utc>,
    ) {
    }

    /// Runs the operation to its end. Returning `Ok` completes it; an error fails it, or cancels it when the
    /// error is [`OperationFailure::Cancelled`]. Long work should watch [`OperationContext::cancellation`].
    fn run(
        &self,
        request: Self::Request,
        context: OperationContext,
    ) -> impl Future<Output = Result<(), OperationFailure>> + Send;
}

/// An error of any engine or library, kept whole: a caller can still walk its chain and downcast it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why an operation did not complete. Its `Display` is what the client reads in `errors`; an error caught on the
/// way stays reachable through [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
pub enum OperationFailure {
    #[error("cancelled")]
    Cancelled,

    /// Cassandra could not be reached or answered with an error.
    #[error(transparent)]
    Jmx(#[from] jmx::JmxError),

    /// A Cassandra call failed or found something missing.
    #[error(transparent)]
    Cassandra(#[from] crate::cassandra::CassandraError),

    /// An engine's error whose own message says what failed (object storage, a manifest, a node directory, a
    /// peer, ...): `?` makes one from each through the `From` impls below and the engines' own.
    #[error("{0}")]
    Engine(#[source] BoxError),

    /// An error, with what was being done when it happened: the client reads `{context}: {source}`.
    #[error("{context}: {source}")]
    Context {
        context: String,
        #[source]
        source: BoxError,
    },

    /// A failure that is only words: a state found wrong, not an error caught.
    #[error("{0}")]
    Failed(String),
}

impl OperationFailure {
    /// `error`, read by the client as its own message, kept as the source.
    pub fn engine(error: impl Into<BoxError>) -> Self {
        Self::Engine(error.into())
    }

    /// `error` under what was being done, read as `{context}: {error}`.
    pub fn context(context: impl Into<String>, error: impl Into<BoxError>) -> Self {
        Self::Context {
            context: context.into(),
            source: error.into(),
        }
    }
}

/// The errors of the layers below the operations whose message is the whole failure a client reads.
macro_rules! engine_failures {
    ($($error:ty),* $(,)?) => {
        $(
            impl From<$error> for $crate::operation::OperationFailure {
                fn from(error: $error) -> Self {
                    Self::Engine(Box::new(error))
                }
            }
        )*
    };
}
pub(crate) use engine_failures;

engine_failures!(
    tokio::task::JoinError,
    crate::cql::CqlError,
    crate::cql::SchemaError,
    crate::esop::manifest::ManifestError,
    crate::esop::report::ReportError,
    crate::node_fs::NodeDirsError,
    crate::node_fs::FsError,
    crate::peer::PeerError,
    std::sync::Arc<crate::peer::PeerClientError>,
    crate::storage::request::KmsKeyInEnvironment,
);

/// What the framework offers every running operation, shared by all of them.
#[derive(Debug)]
pub struct Services {
    /// Names this sidecar in the `source` of the errors it reports (Icarus uses the host name).
    pub source: String,
    pub jmx: JmxConnector,
    /// How to reach object storage (backups).
    pub storage: crate::storage::StorageSettings,
    /// How to reach the node over CQL (restores recreating dropped tables).
    pub cql: crate::cql::CqlSettings,
    /// How a cluster-wide operation reaches the other nodes' sidecars.
    pub peers: crate::peer::PeerSettings,
    pub store: Arc<dyn OperationStore>,
    /// The operations this sidecar runs and has not finished. With a shared store (etcd) the store lists every
    /// sidecar's operations; admission limits, exclusive groups and cancellation are about this one's.
    pub local: LocalOperations,
    /// The Prometheus metrics (`GET /metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Cancelled to ask the process to shut down gracefully (the `stop` operation does this).
    pub shutdown_request: CancellationToken,
}

/// Reports how far an operation has come, as a fraction in [0, 1].
#[derive(Debug, Clone)]
pub struct ProgressReporter {
    record: Arc<OperationRecord>,
}

impl ProgressReporter {
    pub fn set(&self, fraction: f64) {
        self.record.set_progress(fraction);
    }

    /// Progress as `done` out of `total` units (files, bytes, ranges).
    pub fn units(&self, done: u64, total: u64) {
        if total > 0 {
            self.set(done as f64 / total as f64);
        }
    }
}

/// Handed to every running operation: its identity, progress, cancellation, and the sidecar's services.
#[derive(Debug, Clone)]
pub struct OperationContext {
    record: Arc<OperationRecord>,
    services: Arc<Services>,
    /// What the operation had recorded when this sidecar took it over from another (see `Operation::resumable`).
    recorded: Option<Arc<Recorded>>,
}

/// The `nodes` and `response` of an operation taken over, as the sidecar that ran it last wrote them.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    pub nodes: Option<serde_json::Value>,
    pub response: Option<serde_json::Value>,
}

impl OperationContext {
    pub fn new(record: Arc<OperationRecord>, services: Arc<Services>) -> Self {
        Self {
            record,
            services,
            recorded: None,
        }
    }

    /// The context of an operation taken over from another sidecar, with what it had recorded.
    pub fn taken_over(
        record: Arc<OperationRecord>,
        services: Arc<Services>,
        recorded: Recorded,
    ) -> Self {
        Self {
            record,
            services,
            recorded: Some(Arc::new(recorded)),
        }
    }

    /// Whether another sidecar took the operation over: it stops without undoing anything.
    pub fn is_abandoned(&self) -> bool {
        self.record.is_abandoned()
    }

    /// The per-node view recorded before a takeover; `None` for an operation that starts afresh.
    pub fn recorded_nodes(&self) -> Option<&serde_json::Value> {
        self.recorded.as_ref()?.nodes.as_ref()
    }

    /// The `response` recorded before a takeover.
    pub fn recorded_response(&self) -> Option<&serde_json::Value> {
        self.recorded.as_ref()?.response.as_ref()
    }

    pub fn id(&self) -> Uuid {
        self.record.id()
    }

    pub fn progress(&self) -> ProgressReporter {
        ProgressReporter {
            record: Arc::clone(&self.record),
        }
    }

    /// Cancelled by `DELETE /operations/{id}` and when the sidecar shuts down.
    pub fn cancellation(&self) -> &CancellationToken {
        self.record.cancellation()
    }

    /// Runs `work` until it finishes or the operation is cancelled, whichever comes first.
    pub async fn cancellable<F: Future>(&self, work: F) -> Result<F::Output, OperationFailure> {
        tokio::select! {
            biased;
            _ = self.cancellation().cancelled() => Err(OperationFailure::Cancelled),
            output = work => Ok(output),
        }
    }

    /// Records what the operation found out; clients read it as the operation's `response` field.
    pub fn set_response(&self, response: serde_json::Value) {
        self.record.set_response(response);
    }

    /// Records a typed response as its JSON, which is what clients read (and a sidecar taking the operation over
    /// reads back).
    pub fn respond<T: Serialize>(&self, response: &T) -> Result<(), OperationFailure> {
        let response = serde_json::to_value(response).map_err(|error| {
            OperationFailure::context(
                format!("cannot record the {}'s response", self.type_id()),
                error,
            )
        })?;
        self.set_response(response);
        Ok(())
    }

    /// Publishes a cluster-wide operation's view of every node's part (its `nodes` field).
    pub fn set_nodes(&self, nodes: serde_json::Value) {
        self.record.set_nodes(nodes);
    }

    /// Adds an error reported by another sidecar, under that sidecar's name, as Icarus relays its peers' errors.
    pub fn relay_error(&self, error: ReportedError) {
        self.record.add_error(error);
    }

    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.services.metrics
    }

    /// The operation's `type`.
    pub fn type_id(&self) -> &'static str {
        self.record.type_id()
    }

    pub fn peer_settings(&self) -> &crate::peer::PeerSettings {
        &self.services.peers
    }

    /// Adds an entry to the operation's `errors` without ending it (the operation then ends FAILED).
    pub fn report_error(&self, message: impl Into<String>) {
        self.record.add_error(ReportedError {
            source: self.services.source.clone(),
            message: message.into(),
        });
    }

    pub fn storage_settings(&self) -> &crate::storage::StorageSettings {
        &self.services.storage
    }

    pub fn cql_settings(&self) -> &crate::cql::CqlSettings {
        &self.services.cql
    }

    pub fn jmx_settings(&self) -> &JmxSettings {
        self.services.jmx.settings()
    }

    /// What the sidecar shares with every operation, for work that outlives this one (clearing a snapshot once
    /// Cassandra is back).
    pub fn services(&self) -> Arc<Services> {
        Arc::clone(&self.services)
    }

    /// A connected JMX client for the node's Cassandra (shared; connected on first use).
    pub async fn jmx(&self) -> Result<jmx::JmxClient, OperationFailure> {
        Ok(self.cancellable(self.services.jmx.client()).await??)
    }

    /// The Cassandra facade over the shared JMX client.
    pub async fn cassandra(&self) -> Result<crate::cassandra::Cassandra, OperationFailure> {
        Ok(crate::cassandra::Cassandra::new(self.jmx().await?))
    }

    /// The other operations that are pending or running on this sidecar.
    pub fn other_unfinished_operations(&self) -> Vec<Arc<OperationRecord>> {
        let mut unfinished = self.services.local.all();
        unfinished.retain(|record| record.id() != self.id());
        unfinished
    }

    /// Asks the sidecar to shut down gracefully once this call returns.
    pub fn request_shutdown(&self) {
        self.services.shutdown_request.cancel();
    }
}

/// The operations this sidecar runs that have not finished, by id.
#[derive(Debug, Default)]
pub struct LocalOperations(DashMap<Uuid, Arc<OperationRecord>>);

impl LocalOperations {
    pub fn get(&self, id: &Uuid) -> Option<Arc<OperationRecord>> {
        self.0.get(id).map(|entry| Arc::clone(entry.value()))
    }

    pub fn all(&self) -> Vec<Arc<OperationRecord>> {
        self.0
            .iter()
            .map(|entry| Arc::clone(entry.value()))
            .collect()
    }

    /// How many are pending and how many running.
    pub fn counts(&self) -> (usize, usize) {
        let mut pending = 0;
        let mut running = 0;
        for entry in self.0.iter() {
            match entry.value().state() {
                OperationState::Pending => pending += 1,
                OperationState::Running => running += 1,
                _ => {}
            }
        }
        (pending, running)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn add(&self, record: Arc<OperationRecord>) {
        self.0.insert(record.id(), record);
    }

    pub(crate) fn remove(&self, id: &Uuid) {
        self.0.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::OperationFailure;
    use crate::storage::StorageError;

    fn not_found() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")
    }

    #[test]
    fn context_reads_as_the_formatted_message_did_and_keeps_the_cause() {
        let failure =
            OperationFailure::context("cannot read the snapshot t in [\"/d\"]", not_found());
        assert_eq!(
            failure.to_string(),
            "cannot read the snapshot t in [\"/d\"]: no such file"
        );
        let cause = failure.source().expect("the cause");
        assert!(
            cause.downcast_ref::<std::io::Error>().is_some(),
            "{cause:?}"
        );
    }

    #[test]
    fn an_engine_error_is_the_message_and_the_source() {
        let failure = OperationFailure::from(StorageError::Read {
            path: "/k".into(),
            source: not_found(),
        });
        assert_eq!(failure.to_string(), "cannot read /k: no such file");
        let cause = failure.source().expect("the storage error");
        assert!(cause.downcast_ref::<StorageError>().is_some(), "{cause:?}");
        assert!(cause.source().is_some(), "the io error under it");
    }

    #[test]
    fn a_cancelled_transfer_cancels_the_operation() {
        assert!(matches!(
            OperationFailure::from(StorageError::Cancelled),
            OperationFailure::Cancelled
        ));
    }
}
