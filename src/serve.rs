//! `daedalus serve`: wires the registry, store, executor and HTTP server together, and shuts them down cleanly.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::dev::Service;
use actix_web::http::header;
use actix_web::middleware::{self, NormalizePath};
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use daedalus_operations::operation_store::spawn_expiry_sweeper;
use daedalus_operations::schedule::{
    InMemoryScheduleStore, SCHEDULABLE_TYPES, ScheduleRules, ScheduleRunner, ScheduleStore,
    ScheduleStoreError,
};
use daedalus_operations::types::{self, TypeOptions};
use daedalus_operations::{Executor, JmxConnector, Services};
use tokio_util::sync::CancellationToken;

use crate::cli::ServeArgs;
use crate::http::auth::Authenticator;
use crate::http::cors::CorsPolicy;
use crate::http::location::LocalAddr;
use crate::http::{self, AppState};
use crate::jmx_credentials::jmx_settings;
use crate::signals::Signals;
use crate::version::VersionInfo;

/// Once operations are over, how long the HTTP server gets to finish the requests it is answering.
const HTTP_DRAIN_SECS: u64 = 3;

/// Extra time, beyond the grace period for operations, for the HTTP server to finish answering.
const EXIT_MARGIN: Duration = Duration::from_secs(HTTP_DRAIN_SECS + 2);

/// How often the count of connections ended on protocol errors is logged (when there were any).
const PROTOCOL_ERROR_REPORT_PERIOD: Duration = Duration::from_secs(60);

/// File descriptors kept out of the connection limit, for JMX, object stores, SSTables and logs.
const FDS_FOR_OTHER_USES: u64 = 256;

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("daedalus-ops")
        .thread_stack_size(crate::OPERATIONS_STACK_BYTES)
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Listen for signals before anything else, so a SIGTERM right after start is a graceful stop too.
    let mut signals = Signals::install();
    let jmx = jmx_settings(&args.jmx)?;
    let authenticator = web::Data::new(
        Authenticator::new(
            &args.read_token_files,
            &args.admin_token_files,
            args.open_health_probes,
            args.open_metrics,
        )
        .map_err(anyhow::Error::msg)?
        .or_else(|| Authenticator::certificates_only(args.open_health_probes, args.open_metrics))
        .map(|authenticator| {
            authenticator.with_client_names(&args.read_client_names, &args.admin_client_names)
        })
        .filter(|authenticator| authenticator.requires_something()),
    );
    warn_if_open(&args, authenticator.is_some());
    let tls = args
        .tls()
        .map(|files| crate::http::tls::server_config(&files))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let registry = Arc::new(types::registry(TypeOptions {
        enable_truncate: args.enable_truncate,
        enable_test_operations: args.enable_test_operations,
        node: args.node_config(),
    }));
    let opened = args
        .store
        .open(
            args.operations_expiration,
            usize::try_from(args.max_stored_operations).unwrap_or(usize::MAX),
        )
        .await?;
    let store = Arc::clone(&opened.store);
    let shutdown_request = CancellationToken::new();
    let http_metrics = http::metrics::HttpMetrics::new();
    // Registered before the store's collector, so /metrics lists the series in the order it always did.
    let metrics = Arc::new(
        daedalus_operations::metrics::Metrics::new()
            .registering(|registry| http_metrics.register(registry))
            .observing_store(Arc::clone(&store)),
    );
    let services = Arc::new(Services {
        source: gethostname::gethostname().to_string_lossy().into_owned(),
        jmx: JmxConnector::new(jmx, tokio::runtime::Handle::current())
            .observed_by(Arc::clone(&metrics) as Arc<dyn jmx::CallObserver>),
        metrics,
        storage: args.storage.settings(),
        cql: args.storage.cql.settings()?,
        peers: {
            let mut peers = args.peers.settings();
            // Peers are configured as this sidecar is, unless told otherwise: they take its admin token, serve
            // TLS when it does, and want its client certificate when it wants theirs.
            if peers.token_file.is_none() {
                peers.token_file = args.admin_token_files.first().cloned();
            }
            if let Some(files) = args.tls() {
                if args.peers.peer_scheme.is_none() {
                    peers.scheme = "https".into();
                }
                if peers.ca_file.is_none() {
                    peers.ca_file = files.client_ca.clone();
                }
                if files.client_ca.is_some() {
                    peers.identity_files = Some((files.cert, files.key));
                }
            }
            peers
        },
        store: Arc::clone(&store),
        local: Default::default(),
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
    daedalus_operations::startup::after_restart(
        Arc::clone(executor.services()),
        opened.interrupted.clone(),
    );
    #[cfg(feature = "etcd")]
    if let Some(etcd) = &opened.etcd {
        tokio::spawn(take_over(
            etcd.clone(),
            Arc::clone(&registry),
            Arc::clone(&executor),
        ));
    }
    let sweeper_stop = CancellationToken::new();
    let sweeper = spawn_expiry_sweeper(store, args.operations_expiration, sweeper_stop.clone());
    let schedules = open_schedules(&args, &opened, &registry).await?;
    let schedule_stop = CancellationToken::new();
    let schedule_runner = tokio::spawn(
        ScheduleRunner::new(
            Arc::clone(&schedules.store),
            Arc::clone(&registry),
            Arc::clone(&executor),
        )
        .run(schedule_stop.clone()),
    );

    let shutting_down = Arc::new(AtomicBool::new(false));
    let state = web::Data::new(AppState {
        registry: Arc::clone(&registry),
        executor: Arc::clone(&executor),
        version: VersionInfo::of_this_build(),
        body_limits: http::BodyLimits {
            max_bytes: args.max_request_bytes,
            timeout: args.request_body_timeout,
        },
        shutting_down: Arc::clone(&shutting_down),
        cassandra_config: args.cassandra_config.clone(),
        trust_forwarded_headers: args.trust_forwarded_headers,
        http_metrics,
        schedules,
    });
    let cors = CorsPolicy::new(!args.disable_cors, args.cors_allowed_origins.clone());
    let limits = ConnectionLimits::new(args.max_connections);
    tracing::info!(
        max_connections = limits.total(),
        workers = limits.workers,
        open_files_limit = limits.open_files,
        request_header_timeout = %humantime::format_duration(args.request_header_timeout),
        request_body_timeout = %humantime::format_duration(args.request_body_timeout),
        "connection limits"
    );
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(authenticator.clone())
            // Innermost: CORS headers go on its 401s and 403s too.
            .wrap(middleware::from_fn(http::auth::authenticate))
            .wrap(middleware::from_fn(http::metrics::count_requests))
            .wrap_fn({
                let cors = cors.clone();
                move |request, service| {
                    let origin = request.headers().get(header::ORIGIN).cloned();
                    let response = service.call(request);
                    let cors = cors.clone();
                    async move {
                        let mut response = response.await?;
                        cors.apply(origin.as_ref(), response.headers_mut());
                        Ok(response)
                    }
                }
            })
            // `/operations/` is `/operations`: clients and proxies add the slash. Paths no route serves stay 404.
            .wrap(NormalizePath::trim())
            .configure(http::configure)
            .default_service(web::to(http::no_route))
    })
    // The connection's own address is where `Location` points when the client sent no usable Host.
    .on_connect(|connection, extensions| {
        use actix_tls::accept::rustls_0_23::TlsStream;
        use actix_web::rt::net::TcpStream;
        if let Some(address) = connection
            .downcast_ref::<TcpStream>()
            .and_then(|stream| stream.local_addr().ok())
        {
            extensions.insert(LocalAddr(address));
        }
        if let Some(stream) = connection.downcast_ref::<TlsStream<TcpStream>>() {
            let (tcp, session) = stream.get_ref();
            if let Ok(address) = tcp.local_addr() {
                extensions.insert(LocalAddr(address));
            }
            if let Some(certificate) = session.peer_certificates().and_then(|chain| chain.first()) {
                extensions.insert(http::auth::ClientCertificate(
                    certificate.clone().into_owned(),
                ));
            }
        }
    })
    .workers(limits.workers)
    .max_connections(limits.per_worker)
    .client_request_timeout(args.request_header_timeout)
    .disable_signals()
    .shutdown_timeout(HTTP_DRAIN_SECS);
    let address = (args.listen.host.as_str(), args.listen.port);
    let server = match &tls {
        Some(config) => server.bind_rustls_0_23(address, config.clone()),
        None => server.bind(address),
    }
    .with_context(|| {
        format!(
            "cannot listen on {}:{} (is another sidecar running? see --listen)",
            args.listen.host, args.listen.port
        )
    })?;
    if let Some(address) = server.addrs().first() {
        executor.services().peers.set_own_port(address.port());
    }
    for address in server.addrs() {
        tracing::info!(%address, tls = tls.is_some(), types = ?registry.type_ids(), jmx = %args.jmx.jmx_service, "listening");
    }
    let protocol_errors = tokio::spawn(crate::logging::report_protocol_errors(
        PROTOCOL_ERROR_REPORT_PERIOD,
    ));
    let server = server.run();
    let server_handle = server.handle();
    let server_task = tokio::spawn(server);

    let reason = tokio::select! {
        signal = signals.received() => signal,
        _ = shutdown_request.cancelled() => "stop operation",
    };
    shutting_down.store(true, Ordering::Relaxed);
    tracing::info!(reason, "shutting down");

    let finish = async {
        // The listener stays up while operations wind down, so clients get a 503 for new operations rather than
        // a refused connection, and can poll the operations' last states.
        // No new scheduled runs; those submitted are the executor's to end.
        schedule_stop.cancel();
        let _ = schedule_runner.await;
        let report = executor.shutdown(args.shutdown_timeout).await;
        #[cfg(feature = "etcd")]
        if let Some(etcd) = &opened.etcd {
            // The operations' last states, if etcd did not have them yet.
            etcd.close().await;
        }
        server_handle.stop(true).await;
        protocol_errors.abort();
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

/// The schedule store (etcd's with `--store etcd`, else this process's memory), with `--schedules-file` loaded
/// into it.
async fn open_schedules(
    args: &ServeArgs,
    opened: &crate::operation_store_args::OpenedStore,
    registry: &Arc<daedalus_operations::Registry>,
) -> anyhow::Result<http::schedules::Schedules> {
    let limit = usize::try_from(args.max_schedules).unwrap_or(usize::MAX);
    let memory = || Arc::new(InMemoryScheduleStore::new(limit)) as Arc<dyn ScheduleStore>;
    #[cfg(feature = "etcd")]
    let store = match &opened.etcd {
        Some(etcd) => Arc::new(daedalus_operations::schedule::etcd::EtcdScheduleStore::new(
            etcd.keys(),
            limit,
        )) as Arc<dyn ScheduleStore>,
        None => memory(),
    };
    #[cfg(not(feature = "etcd"))]
    let store = {
        let _ = opened;
        memory()
    };
    let rules = ScheduleRules::new(Arc::clone(registry), &SCHEDULABLE_TYPES);
    if let Some(path) = &args.schedules_file {
        let shared = store.sidecar();
        let loaded = daedalus_operations::schedule::file::load(
            path,
            &rules,
            chrono::Utc::now(),
            shared.is_some(),
        )?;
        for (index, mut schedule) in loaded.into_iter().enumerate() {
            if !schedule.is_global() {
                schedule.sidecar = shared.clone();
            }
            keep_file_schedule(store.as_ref(), schedule, path, index).await?;
        }
    }
    Ok(http::schedules::Schedules { store, rules })
}

/// Puts a schedule of the file into the store. In a shared store it may be there already (an earlier start, or
/// another sidecar with the same file): kept with its `lastRun` when the same, replaced when the file changed it.
async fn keep_file_schedule(
    store: &dyn ScheduleStore,
    schedule: daedalus_operations::schedule::Schedule,
    path: &std::path::Path,
    index: usize,
) -> anyhow::Result<()> {
    let id = schedule.id.clone();
    let entry = || {
        format!(
            "the schedules file {}, entry {index} (id {id})",
            path.display()
        )
    };
    match store.insert(schedule.clone()).await {
        Ok(()) => Ok(()),
        Err(ScheduleStoreError::Exists(_)) => {
            let existing = store.get(&schedule.id).await.with_context(entry)?;
            if let Some(existing) = existing {
                if existing.sidecar.is_some() && existing.sidecar != schedule.sidecar {
                    anyhow::bail!(
                        "{}: id: the shared store has a schedule of this id that sidecar {} runs; give each \
                         sidecar's file its own ids",
                        entry(),
                        existing.sidecar.unwrap_or_default()
                    );
                }
                let same = existing.cron == schedule.cron
                    && existing.timezone == schedule.timezone
                    && existing.operation == schedule.operation
                    && existing.retention == schedule.retention
                    && existing.jitter == schedule.jitter;
                if same {
                    return Ok(());
                }
                store.remove(&schedule.id).await.with_context(entry)?;
            }
            tracing::info!(schedule = %schedule.id, "schedule of the file replaces the stored one");
            store.insert(schedule).await.with_context(entry)
        }
        Err(error) => Err(error).with_context(entry),
    }
}

/// Runs on the cluster-wide operations this sidecar takes over from a coordinator that died (`--store etcd`).
#[cfg(feature = "etcd")]
async fn take_over(
    etcd: daedalus_operations::operation_store::etcd::EtcdStore,
    registry: Arc<daedalus_operations::Registry>,
    executor: Arc<Executor>,
) {
    let Some(mut takeovers) = etcd.takeovers() else {
        return;
    };
    while let Some(copy) = takeovers.recv().await {
        let mut body = copy.request().clone();
        body.insert("type".into(), copy.type_id().into());
        let adopted =
            match registry.prepare_at(serde_json::Value::Object(body), copy.creation_time()) {
                Ok(prepared) => executor
                    .adopt(&copy, prepared)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Err(error) => Err(format!("its request is not valid here: {error}")),
            };
        if let Err(error) = adopted {
            tracing::warn!(operation = %copy.id(), %error, "cannot take this operation over; leaving it to another sidecar");
            etcd.give_up(&copy.id()).await;
        }
    }
}

/// Anyone who reaches an open API can decommission the node or truncate a table: say so when it is reachable from
/// elsewhere than this machine.
fn warn_if_open(args: &ServeArgs, authenticated: bool) {
    let host = args.listen.host.trim_matches(['[', ']']);
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !authenticated && !loopback {
        tracing::warn!(
            listen = %format!("{}:{}", args.listen.host, args.listen.port),
            "the API listens beyond this machine without authentication: anyone who reaches it can run any \
             operation; give --admin-token-file (and --read-token-file)"
        );
    }
}

/// How many connections the HTTP workers hold at once. actix counts per worker; the total stays below the
/// open-files limit, raised first to its hard limit, so a flood of connections cannot take the descriptors
/// operations need (when all are taken, actix stops accepting until one closes; the rest wait in the backlog).
struct ConnectionLimits {
    workers: usize,
    per_worker: usize,
    open_files: Option<u64>,
}

impl ConnectionLimits {
    fn new(requested: u32) -> Self {
        let open_files = raise_open_files_limit();
        let mut total = u64::from(requested);
        if let Some(limit) = open_files {
            let usable = limit
                .saturating_sub(FDS_FOR_OTHER_USES.min(limit / 2))
                .max(1);
            if usable < total {
                tracing::warn!(
                    requested,
                    open_files_limit = limit,
                    max_connections = usable,
                    "--max-connections lowered to fit the open-files limit"
                );
                total = usable;
            }
        }
        let total = usize::try_from(total).unwrap_or(usize::MAX);
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get().min(4))
            .min(total);
        Self {
            workers,
            per_worker: total / workers,
            open_files,
        }
    }

    fn total(&self) -> usize {
        self.workers * self.per_worker
    }
}

/// Raises the soft limit on open files to the hard limit; returns the soft limit now in force.
#[cfg(unix)]
fn raise_open_files_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(error) => {
            tracing::warn!(%error, "cannot raise the open-files limit");
            rlimit::Resource::NOFILE.get().ok().map(|(soft, _)| soft)
        }
    }
}

#[cfg(not(unix))]
fn raise_open_files_limit() -> Option<u64> {
    None
}
