//! `daedalus serve`: wires the registry, store, executor and HTTP server together, and shuts them down cleanly.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use anyhow::Context;
use daedalus_operations::store::spawn_expiry_sweeper;
use daedalus_operations::types::{self, TypeOptions};
use daedalus_operations::{Executor, InMemoryStore, JmxConnector, OperationStore, Services};
use tokio_util::sync::CancellationToken;

use crate::cli::ServeArgs;
use crate::http::{self, AppState};
use crate::jmx_credentials::jmx_settings;
use crate::signals::Signals;
use crate::version::VersionInfo;

/// Extra time, beyond the grace period for operations, for the HTTP server to finish answering.
const EXIT_MARGIN: Duration = Duration::from_secs(5);

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("daedalus-ops")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Listen for signals before anything else, so a SIGTERM right after start is a graceful stop too.
    let mut signals = Signals::install();
    let jmx = jmx_settings(&args.jmx)?;
    let registry = Arc::new(types::registry(TypeOptions {
        enable_truncate: args.enable_truncate,
        enable_test_operations: args.enable_test_operations,
    }));
    let store: Arc<dyn OperationStore> = Arc::new(InMemoryStore::new());
    let shutdown_request = CancellationToken::new();
    let services = Arc::new(Services {
        source: gethostname::gethostname().to_string_lossy().into_owned(),
        jmx: JmxConnector::new(jmx, tokio::runtime::Handle::current()),
        storage: args.storage.settings(),
        store: Arc::clone(&store),
        shutdown_request: shutdown_request.clone(),
    });
    let executor = Arc::new(
        Executor::new(
            services,
            usize::from(args.max_concurrent_operations),
            tokio::runtime::Handle::current(),
        )
        .with_max_unfinished(usize::try_from(args.max_unfinished_operations).unwrap_or(usize::MAX)),
    );
    let sweeper_stop = CancellationToken::new();
    let sweeper = spawn_expiry_sweeper(store, args.operations_expiration, sweeper_stop.clone());

    let shutting_down = Arc::new(AtomicBool::new(false));
    let state = web::Data::new(AppState {
        registry: Arc::clone(&registry),
        executor: Arc::clone(&executor),
        version: VersionInfo::of_this_build(),
        max_request_bytes: args.max_request_bytes,
        shutting_down: Arc::clone(&shutting_down),
        cassandra_config: args.cassandra_config.clone(),
    });
    let cors = !args.disable_cors;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(http::cors(cors))
            .configure(http::configure)
            .default_service(web::to(http::no_route))
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(args.shutdown_timeout.as_secs().max(1))
    .bind((args.listen.host.as_str(), args.listen.port))
    .with_context(|| {
        format!(
            "cannot listen on {}:{} (is another sidecar running? see --listen)",
            args.listen.host, args.listen.port
        )
    })?;
    for address in server.addrs() {
        tracing::info!(%address, types = ?registry.type_ids(), jmx = %args.jmx.jmx_service, "listening");
    }
    let server = server.run();
    let server_handle = server.handle();
    let server_task = tokio::spawn(server);

    let reason = tokio::select! {
        signal = signals.received() => signal,
        _ = shutdown_request.cancelled() => "stop operation",
    };
    tracing::info!(reason, "shutting down");
    shutting_down.store(true, Ordering::Relaxed);

    let finish = async {
        let (report, ()) = tokio::join!(
            executor.shutdown(args.shutdown_timeout),
            server_handle.stop(true)
        );
        sweeper_stop.cancel();
        let _ = sweeper.await;
        let _ = server_task.await;
        report
    };
    match tokio::time::timeout(args.shutdown_timeout.saturating_add(EXIT_MARGIN), finish).await {
        Ok(report) if report.abandoned > 0 => {
            tracing::warn!(
                abandoned = report.abandoned,
                "exiting with operations still running"
            )
        }
        Ok(_) => tracing::info!("stopped"),
        Err(_) => tracing::warn!("shutdown did not finish in time; exiting anyway"),
    }
    Ok(())
}
