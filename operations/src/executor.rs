//! Runs each submitted operation as a tokio task, at most N at a time.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures_util::FutureExt;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use uuid::Uuid;

use crate::operation::{OperationContext, OperationFailure, Recorded, Services};
use crate::operation_store::StoreError;
use crate::record::{OperationRecord, ReportedError};
use crate::registry::PreparedOperation;
use crate::state::OperationState;
use crate::sync::lock;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the sidecar is shutting down and accepts no new operations")]
    ShuttingDown,
    #[error(
        "a {running_type} operation ({running}) is still unfinished on this node, and a {wanted} cannot run beside it; wait for it or cancel it"
    )]
    Conflict {
        wanted: &'static str,
        running_type: &'static str,
        running: Uuid,
    },
    #[error(
        "this node already has {limit} unfinished (pending or running) operations, the most it admits (--max-unfinished-operations); retry once some have finished"
    )]
    TooManyUnfinished { limit: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why an operation could not be cancelled here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CancelError {
    #[error(
        "no operation {0}: it never existed here, or it expired, or it finished long enough ago that newer operations took its place (--max-stored-operations)"
    )]
    NotFound(Uuid),
    #[error(
        "operation {id} runs on another sidecar ({sidecar}); cancel it there (or through the cluster-wide operation that sent it)"
    )]
    Elsewhere { id: Uuid, sidecar: String },
}

/// How a graceful shutdown went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Operations still running when the grace period ran out.
    pub abandoned: usize,
}

#[derive(Debug)]
pub struct Executor {
    services: Arc<Services>,
    permits: Arc<Semaphore>,
    /// Parent of every operation's cancellation token: cancelling it cancels them all.
    root: CancellationToken,
    tasks: TaskTracker,
    runtime: Handle,
    /// Makes "no conflicting operation is unfinished", "there is room" and "store this one" a single step.
    admission: std::sync::Mutex<()>,
    /// Most operations pending or running at once; beyond it submissions are refused, so a flood of requests
    /// cannot grow the queue and the store without bound.
    max_unfinished: usize,
}

impl Executor {
    /// `runtime` is where operations run; the HTTP server's workers only submit them.
    pub fn new(services: Arc<Services>, max_concurrent: usize, runtime: Handle) -> Self {
        Self {
            services,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            root: CancellationToken::new(),
            tasks: TaskTracker::new(),
            runtime,
            admission: std::sync::Mutex::new(()),
            max_unfinished: usize::MAX,
        }
    }

    /// Refuses submissions while `limit` operations are pending or running (no limit by default).
    pub fn with_max_unfinished(mut self, limit: usize) -> Self {
        self.max_unfinished = limit.max(1);
        self
    }

    pub fn services(&self) -> &Arc<Services> {
        &self.services
    }

    /// Stores the operation as PENDING and starts its task; it runs as soon as a slot is free.
    pub async fn submit(
        &self,
        prepared: PreparedOperation,
    ) -> Result<Arc<OperationRecord>, SubmitError> {
        if self.root.is_cancelled() || self.tasks.is_closed() {
            return Err(SubmitError::ShuttingDown);
        }
        let local = &self.services.local;
        let record = {
            let _admission = lock(&self.admission);
            if local.len() >= self.max_unfinished {
                return Err(SubmitError::TooManyUnfinished {
                    limit: self.max_unfinished,
                });
            }
            if let Some(group) = prepared.exclusive
                && let Some(running) = local.all().iter().find(|r| r.exclusive() == Some(group))
            {
                return Err(SubmitError::Conflict {
                    wanted: prepared.type_id,
                    running_type: running.type_id(),
                    running: running.id(),
                });
            }
            let record = Arc::new(
                OperationRecord::new(
                    prepared.type_id,
                    prepared.request.clone(),
                    self.root.child_token(),
                )
                .with_exclusive(prepared.exclusive)
                .with_resumable(prepared.resumable),
            );
            // Holds its place against the limits while the store keeps it.
            local.add(Arc::clone(&record));
            record
        };
        if let Err(error) = self.services.store.insert(Arc::clone(&record)).await {
            local.remove(&record.id());
            tracing::warn!(r#type = record.type_id(), %error, "operation refused: the store did not keep it");
            return Err(error.into());
        }
        self.services.metrics.operation_submitted(record.type_id());
        tracing::info!(operation = %record.id(), r#type = record.type_id(), "operation submitted");
        self.spawn(&record, prepared, None);
        Ok(record)
    }

    /// Runs the operation in a task of its own.
    fn spawn(
        &self,
        record: &Arc<OperationRecord>,
        prepared: PreparedOperation,
        recorded: Option<Recorded>,
    ) {
        let span = tracing::info_span!("operation", id = %record.id(), r#type = record.type_id());
        let task = run_operation(
            Arc::clone(record),
            prepared,
            Arc::clone(&self.services),
            Arc::clone(&self.permits),
            recorded,
        );
        self.tasks.spawn_on(task.instrument(span), &self.runtime);
    }

    /// Takes over an operation another sidecar ran and can no longer (it died): `copy` as the store holds it,
    /// `prepared` its request prepared again. The operation goes on here under the same id, RUNNING, with what it
    /// had recorded (see `Operation::resumable`).
    pub async fn adopt(
        &self,
        copy: &OperationRecord,
        prepared: PreparedOperation,
    ) -> Result<Arc<OperationRecord>, SubmitError> {
        if self.root.is_cancelled() || self.tasks.is_closed() {
            return Err(SubmitError::ShuttingDown);
        }
        let (status, _) = copy.stored_status();
        let recorded = Recorded {
            nodes: status.nodes.clone(),
            response: status.response.clone(),
        };
        let record = OperationRecord::with_id(
            copy.id(),
            copy.type_id(),
            prepared.request.clone(),
            self.root.child_token(),
            copy.creation_time(),
        )
        .with_exclusive(prepared.exclusive)
        .with_resumable(prepared.resumable);
        record.replace_status(status);
        let record = Arc::new(record);
        self.services.local.add(Arc::clone(&record));
        if let Err(error) = self.services.store.adopt(Arc::clone(&record)).await {
            self.services.local.remove(&record.id());
            return Err(error.into());
        }
        tracing::warn!(operation = %record.id(), r#type = record.type_id(), from = copy.sidecar().unwrap_or("unknown"), "operation taken over from a sidecar that stopped");
        self.spawn(&record, prepared, Some(recorded));
        Ok(record)
    }

    /// Cancels an operation: a pending one ends CANCELLED at once, a running one when its task sees the token.
    /// Cancelling a finished operation changes nothing.
    pub async fn cancel(&self, id: &Uuid) -> Result<(), CancelError> {
        let Some(record) = self.services.local.get(id) else {
            // Not running here: finished (nothing to do), or running on another sidecar of a shared store.
            let record = self
                .services
                .store
                .get(id)
                .ok_or(CancelError::NotFound(*id))?;
            if record.state().is_terminal() {
                return Ok(());
            }
            let sidecar = record.sidecar().unwrap_or("unknown").to_string();
            return Err(CancelError::Elsewhere { id: *id, sidecar });
        };
        tracing::info!(operation = %id, "cancellation requested");
        record.cancellation().cancel();
        // A pending operation never started: it is over now, not when its task next wakes.
        if record.state() == OperationState::Pending {
            finish(&record, OperationState::Cancelled, &self.services).await;
        }
        Ok(())
    }

    /// Refuses new operations, cancels every running and pending one, and waits up to `grace` for them to end.
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        self.tasks.close();
        self.root.cancel();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            let abandoned = self.tasks.len();
            tracing::warn!(
                abandoned,
                ?grace,
                "operations did not end within the shutdown grace period"
            );
            return ShutdownReport { abandoned };
        }
        ShutdownReport { abandoned: 0 }
    }
}

/// Runs an operation to its end. `recorded` is set for one taken over from another sidecar: it is RUNNING already.
async fn run_operation(
    record: Arc<OperationRecord>,
    prepared: PreparedOperation,
    services: Arc<Services>,
    permits: Arc<Semaphore>,
    recorded: Option<Recorded>,
) {
    let cancellation = record.cancellation().clone();
    let permit = tokio::select! {
        biased;
        _ = cancellation.cancelled() => {
            finish(&record, OperationState::Cancelled, &services).await;
            return;
        }
        permit = permits.acquire_owned() => match permit {
            Ok(permit) => permit,
            // The semaphore is never closed; treat it like a shutdown if that ever changes.
            Err(_) => {
                finish(&record, OperationState::Cancelled, &services).await;
                return;
            }
        },
    };

    if record.start(Utc::now()) {
        save(&record, &services).await;
    } else if recorded.is_none() || record.state() != OperationState::Running {
        // Cancelled while it waited (one taken over may have been RUNNING already, and goes on).
        return;
    }
    let context = match recorded {
        Some(recorded) => {
            OperationContext::taken_over(Arc::clone(&record), Arc::clone(&services), recorded)
        }
        None => OperationContext::new(Arc::clone(&record), Arc::clone(&services)),
    };
    tracing::info!("operation running");
    let outcome = AssertUnwindSafe(prepared.run(context)).catch_unwind().await;
    drop(permit);

    let state = match outcome {
        Ok(Ok(())) if record.has_errors() => OperationState::Failed,
        Ok(Ok(())) => OperationState::Completed,
        Ok(Err(OperationFailure::Cancelled)) => OperationState::Cancelled,
        Ok(Err(_)) if cancellation.is_cancelled() => OperationState::Cancelled,
        Ok(Err(failure)) => {
            record.add_error(ReportedError {
                source: services.source.clone(),
                message: failure.to_string(),
            });
            OperationState::Failed
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(%message, "operation handler panicked");
            record.add_error(ReportedError {
                source: services.source.clone(),
                message: format!(
                    "internal error in the {} operation: {message}",
                    record.type_id()
                ),
            });
            OperationState::Failed
        }
    };
    finish(&record, state, &services).await;
}

/// Hands the record's new status to the store. A store that cannot write it now keeps trying by itself, and the
/// operation goes on: what a client was told was accepted is never dropped.
async fn save(record: &Arc<OperationRecord>, services: &Services) {
    if let Err(error) = services.store.save(Arc::clone(record)).await {
        match error {
            StoreError::TakenOver(..) => {
                tracing::warn!(operation = %record.id(), %error, "operation stopped");
                record.abandon();
            }
            StoreError::Unavailable(_) => {
                tracing::warn!(operation = %record.id(), %error, "operation state not written yet; retrying")
            }
        }
    }
}

async fn finish(record: &Arc<OperationRecord>, state: OperationState, services: &Services) {
    if record.finish(state, Utc::now()) {
        services.local.remove(&record.id());
        save(record, services).await;
        let status = record.status();
        let ran = status
            .start_time
            .zip(status.completion_time)
            .and_then(|(start, end)| (end - start).to_std().ok());
        services
            .metrics
            .operation_finished(record.type_id(), state, ran);
        let errors = record.status().errors;
        match state {
            OperationState::Failed => {
                tracing::warn!(operation = %record.id(), state = %state, ?errors, "operation finished")
            }
            _ => tracing::info!(operation = %record.id(), state = %state, "operation finished"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::Operation;
    use crate::operation_store::{InMemoryStore, OperationStore};
    use crate::registry::Registry;
    use crate::types::drain::DrainRequest;
    use serde_json::json;

    struct Panics;
    impl Operation for Panics {
        const TYPE: &'static str = "panics";
        type Request = DrainRequest;
        async fn run(&self, _: DrainRequest, _: OperationContext) -> Result<(), OperationFailure> {
            panic!("boom")
        }
    }

    struct ReportsAndReturns;
    impl Operation for ReportsAndReturns {
        const TYPE: &'static str = "reports";
        type Request = DrainRequest;
        async fn run(
            &self,
            _: DrainRequest,
            context: OperationContext,
        ) -> Result<(), OperationFailure> {
            context.report_error("one table could not be processed");
            Ok(())
        }
    }

    /// Answers with what it found recorded, as a coordinator taking over would use it.
    struct EchoesRecorded;
    impl Operation for EchoesRecorded {
        const TYPE: &'static str = "echoes";
        type Request = DrainRequest;
        async fn run(
            &self,
            _: DrainRequest,
            context: OperationContext,
        ) -> Result<(), OperationFailure> {
            let recorded = context.recorded_response().cloned();
            context.set_response(json!({ "recorded": recorded }));
            Ok(())
        }
    }

    fn registry() -> Registry {
        let mut registry = Registry::new();
        registry
            .register(Panics)
            .register(ReportsAndReturns)
            .register(EchoesRecorded);
        registry
    }

    /// A copy of an `echoes` operation as another sidecar left it, in `state`.
    fn copy_left_in(state: OperationState) -> OperationRecord {
        let started = Utc::now() - chrono::Duration::minutes(5);
        OperationRecord::restored(
            Uuid::new_v4(),
            "echoes",
            serde_json::Map::new(),
            started,
            0,
            crate::record::StoredStatus {
                state,
                progress: 0.5,
                errors: Vec::new(),
                start_time: (state == OperationState::Running).then_some(started),
                completion_time: None,
                response: Some(json!({"snapshotTag": "settled"})),
                nodes: None,
            },
        )
    }

    async fn adopt_to_end(copy: &OperationRecord) -> Arc<OperationRecord> {
        let executor = executor(1);
        let prepared = registry().prepare(json!({"type": "echoes"})).unwrap();
        let record = executor.adopt(copy, prepared).await.unwrap();
        ended(record).await
    }

    #[tokio::test]
    async fn an_operation_taken_over_keeps_its_id_and_start_and_sees_what_it_recorded() {
        let copy = copy_left_in(OperationState::Running);
        let record = adopt_to_end(&copy).await;
        assert_eq!(record.id(), copy.id());
        let (status, _) = record.stored_status();
        assert_eq!(status.state, OperationState::Completed);
        assert_eq!(status.start_time, copy.status().start_time);
        assert_eq!(
            status.response,
            Some(json!({"recorded": {"snapshotTag": "settled"}}))
        );
    }

    #[tokio::test]
    async fn an_operation_taken_over_before_it_started_is_started() {
        let copy = copy_left_in(OperationState::Pending);
        let record = adopt_to_end(&copy).await;
        let status = record.status();
        assert_eq!(status.state, OperationState::Completed);
        assert!(status.start_time.is_some());
    }

    fn executor(max_concurrent: usize) -> Executor {
        let store: Arc<dyn OperationStore> = Arc::new(InMemoryStore::new());
        let services = Arc::new(Services {
            source: "test-host".into(),
            jmx: crate::JmxConnector::new(Default::default(), Handle::current()),
            storage: Default::default(),
            cql: Default::default(),
            peers: Default::default(),
            metrics: Default::default(),
            store,
            local: Default::default(),
            shutdown_request: CancellationToken::new(),
        });
        Executor::new(services, max_concurrent, Handle::current())
    }

    async fn ended(record: Arc<OperationRecord>) -> Arc<OperationRecord> {
        tokio::time::timeout(Duration::from_secs(10), async {
            while !record.state().is_terminal() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the operation ends");
        record
    }

    async fn run_to_end(type_id: &str) -> Arc<OperationRecord> {
        let registry = registry();
        let executor = executor(1);
        let record = executor
            .submit(registry.prepare(json!({"type": type_id})).unwrap())
            .await
            .unwrap();
        ended(record).await
    }

    #[tokio::test]
    async fn a_panicking_handler_fails_its_operation_not_the_sidecar() {
        let record = run_to_end("panics").await;
        let status = record.status();
        assert_eq!(status.state, OperationState::Failed);
        assert_eq!(status.errors[0].source, "test-host");
        assert!(status.errors[0].message.contains("boom"));
    }

    #[tokio::test]
    async fn reported_errors_fail_an_operation_that_returned_normally() {
        let record = run_to_end("reports").await;
        let status = record.status();
        assert_eq!(status.state, OperationState::Failed);
        assert_eq!(status.errors.len(), 1);
    }

    #[tokio::test]
    async fn submissions_beyond_the_unfinished_limit_are_refused_until_one_ends() {
        let registry = registry();
        // Nothing runs (the one slot is taken), so every admitted operation stays pending.
        let executor = executor(1).with_max_unfinished(2);
        let _slot = Arc::clone(&executor.permits).acquire_owned().await.unwrap();
        let prepare = || registry.prepare(json!({"type": "reports"})).unwrap();
        let first = executor.submit(prepare()).await.unwrap();
        executor.submit(prepare()).await.unwrap();
        assert_eq!(
            executor.submit(prepare()).await.unwrap_err(),
            SubmitError::TooManyUnfinished { limit: 2 }
        );
        executor.cancel(&first.id()).await.unwrap();
        assert_eq!(first.state(), OperationState::Cancelled);
        executor
            .submit(prepare())
            .await
            .expect("a cancelled operation frees its place");
    }
}
