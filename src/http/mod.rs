//! The HTTP API: routes, shared state, error rendering and CORS.

pub mod auth;
mod body;
pub mod cors;
mod error;
mod info;
pub mod location;
pub mod metrics;
mod node;
mod operations;
mod redact;
pub mod schedules;
pub mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, guard, web};
use daedalus_operations::{Executor, Registry};

use crate::version::VersionInfo;
pub use body::BodyLimits;
pub use error::ApiError;

/// What every request handler can see.
pub struct AppState {
    pub registry: Arc<Registry>,
    pub executor: Arc<Executor>,
    pub version: VersionInfo,
    pub body_limits: BodyLimits,
    pub shutting_down: Arc<AtomicBool>,
    /// `cassandra.yaml` for `GET /config`; `None` searches where Icarus does.
    pub cassandra_config: Option<std::path::PathBuf>,
    /// Build `Location` from `Forwarded` / `X-Forwarded-*` (only behind a proxy that sets them).
    pub trust_forwarded_headers: bool,
    /// The HTTP requests' series of `/metrics` (registered in the executor's `Metrics`).
    pub http_metrics: metrics::HttpMetrics,
    /// Where schedules live and what they are checked against.
    pub schedules: schedules::Schedules,
}

impl AppState {
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }
}

/// A resource whose unsupported methods get a JSON 405 (or 204 for a CORS preflight `OPTIONS`).
fn resource(path: &'static str, allowed: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move |request: HttpRequest| async move {
        if request.method() == Method::OPTIONS {
            return Ok(HttpResponse::NoContent()
                .insert_header(("Allow", allowed))
                .finish());
        }
        Err::<HttpResponse, _>(ApiError::MethodNotAllowed {
            method: request.method().to_string(),
            path: request.path().to_string(),
            allowed: allowed.to_string(),
        })
    }))
}

/// `GET`, and `HEAD` with it: same status and headers, and actix leaves out the body.
fn get() -> actix_web::Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// Every route of the API (kept in step with openapi.yaml by the contract tests).
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(
            resource("/operations", "GET, HEAD, POST")
                .route(get().to(operations::list))
                .route(web::post().to(operations::submit)),
        )
        .service(
            resource("/operations/{id}", "GET, HEAD, DELETE")
                .route(get().to(operations::get))
                .route(web::delete().to(operations::cancel)),
        )
        .service(
            resource("/schedules", "GET, HEAD, POST")
                .route(get().to(schedules::list))
                .route(web::post().to(schedules::create)),
        )
        .service(
            resource("/schedules/{id}", "GET, HEAD, DELETE")
                .route(get().to(schedules::get))
                .route(web::delete().to(schedules::delete)),
        )
        .service(resource("/status", GET).route(get().to(node::status)))
        .service(resource("/topology", GET).route(get().to(node::topology)))
        .service(resource("/topology/{dc}", GET).route(get().to(node::topology_of)))
        .service(resource("/config", GET).route(get().to(node::config)))
        .service(resource("/version", GET).route(get().to(info::version)))
        .service(resource("/version/sidecar", GET).route(get().to(info::version)))
        .service(resource("/version/cassandra", GET).route(get().to(node::cassandra_version)))
        .service(resource("/version/schema", GET).route(get().to(node::schema_version)))
        .service(resource("/health/live", GET).route(get().to(info::live)))
        .service(resource("/health/ready", GET).route(get().to(info::ready)))
        .service(resource("/openapi.yaml", GET).route(get().to(info::openapi)))
        .service(resource("/metrics", GET).route(get().to(metrics::metrics)));
}

const GET: &str = "GET, HEAD";

/// Anything no route matched: a JSON 404.
pub async fn no_route(request: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no such endpoint: {} {}",
        request.method(),
        request.path()
    )))
}
