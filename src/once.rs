//! Runs one operation in this process, start to end, as `daedalus backup ...` and its siblings do for init
//! containers and cron jobs: the same handlers as the REST API, no HTTP. Exit code 0 when the operation completes,
//! 1 otherwise; a progress bar on a terminal, plain log lines elsewhere; `--json` prints the operation at the end.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use daedalus_operations::registry::{PreparedOperation, RequestError};
use daedalus_operations::{
    Executor, InMemoryStore, JmxConnector, OperationRecord, OperationState, OperationStore,
    Services,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::args::{JmxArgs, StorageArgs};
use crate::jmx_credentials::jmx_settings;
use crate::signals::Signals;

/// How often the plain (non-terminal) output reports progress.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Runs the operation `prepared` (a typed request, checked and ready) to its end; returns how it ended.
pub fn run(
    prepared: Result<PreparedOperation, RequestError>,
    jmx: &JmxArgs,
    storage: &StorageArgs,
    json: bool,
) -> anyhow::Result<OperationRecordOutcome> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(crate::OPERATIONS_STACK_BYTES)
        .build()
        .context("cannot start the async runtime")?;
    let jmx = jmx_settings(jmx)?;
    let cql = storage.cql.settings()?;
    let storage = storage.settings();
    runtime.block_on(async move {
        // Before the operation starts, so a signal at any point of it cancels it rather than kill the process.
        let signals = Signals::install();
        let prepared = prepared.map_err(|error| {
            let details: Vec<String> = error
                .violations()
                .iter()
                .map(|v| format!("{}: {}", v.field, v.message))
                .collect();
            anyhow::anyhow!(
                "{error}{}",
                if details.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", details.join("; "))
                }
            )
        })?;
        let store: Arc<dyn OperationStore> = Arc::new(InMemoryStore::new());
        let services = Arc::new(Services {
            source: gethostname::gethostname().to_string_lossy().into_owned(),
            jmx: JmxConnector::new(jmx, tokio::runtime::Handle::current()),
            storage,
            cql,
            // The command line runs one node's operations; nothing here coordinates peers.
            peers: Default::default(),
            metrics: Default::default(),
            store,
            local: Default::default(),
            shutdown_request: CancellationToken::new(),
        });
        let executor = Executor::new(services, 1, tokio::runtime::Handle::current());
        let record = executor
            .submit(prepared)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        follow(&record, signals).await;
        let operation = serde_json::to_value(&*record)?;
        if json {
            println!("{}", serde_json::to_string_pretty(&operation)?);
        }
        Ok(OperationRecordOutcome {
            completed: record.state() == OperationState::Completed,
            operation,
        })
    })
}

/// The operation as it ended.
pub struct OperationRecordOutcome {
    pub completed: bool,
    pub operation: Value,
}

impl OperationRecordOutcome {
    /// Prints the errors of a failed operation to stderr; returns the exit code.
    pub fn exit_code(&self) -> std::process::ExitCode {
        if self.completed {
            return std::process::ExitCode::SUCCESS;
        }
        let state = self.operation["state"].as_str().unwrap_or("FAILED");
        eprintln!(
            "daedalus: {} {state}",
            self.operation["type"].as_str().unwrap_or("operation")
        );
        for error in self.operation["errors"].as_array().into_iter().flatten() {
            eprintln!("  {}", error["message"].as_str().unwrap_or_default());
        }
        std::process::ExitCode::FAILURE
    }
}

/// Waits for the operation to end, showing its progress; SIGINT (Ctrl-C) or SIGTERM (a Job or a pod stopped)
/// cancels it and still waits, so a backup clears its snapshot and aborts its uploads.
async fn follow(record: &Arc<OperationRecord>, mut signals: Signals) {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(1000);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {percent:>3}% {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(record.type_id());
        bar
    });
    let mut last_log = tokio::time::Instant::now();
    let mut interrupted = false;
    while !record.state().is_terminal() {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            signal = signals.received(), if !interrupted => {
                interrupted = true;
                tracing::warn!(signal, "interrupted: cancelling the operation");
                record.cancellation().cancel();
            }
        }
        let progress = record.status().progress;
        match &bar {
            Some(bar) => bar.set_position((progress * 1000.0) as u64),
            None if last_log.elapsed() >= LOG_EVERY => {
                last_log = tokio::time::Instant::now();
                tracing::info!(operation = record.type_id(), state = %record.state(), progress, "running");
            }
            None => {}
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    tracing::info!(operation = record.type_id(), state = %record.state(), "finished");
}
