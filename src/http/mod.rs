//! The HTTP API: routes, shared state, error rendering and CORS.

mod body;
mod error;
mod framing;
mod info;
mod node;
mod operations;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::http::Method;
use actix_web::middleware::{Condition, DefaultHeaders};
use actix_web::{HttpRequest, HttpResponse, web};
use daedalus_operations::{Executor, Registry};

use crate::version::VersionInfo;
pub use body::BodyLimits;
pub use error::ApiError;
pub use framing::refuse_ambiguous_framing;

/// What every request handler can see.
pub struct AppState {
    pub registry: Arc<Registry>,
    pub executor: Arc<Executor>,
    pub version: VersionInfo,
    pub body_limits: BodyLimits,
    pub shutting_down: Arc<AtomicBool>,
    /// `cassandra.yaml` for `GET /config`; `None` searches where Icarus does.
    pub cassandra_config: Option<std::path::PathBuf>,
}

impl AppState {
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }
}

/// Icarus's CORS headers, added to every response unless `--disable-cors`.
pub fn cors(enabled: bool) -> Condition<DefaultHeaders> {
    Condition::new(
        enabled,
        DefaultHeaders::new()
            .add(("Access-Control-Allow-Origin", "*"))
            .add((
                "Access-Control-Allow-Headers",
                "origin, content-type, accept, authorization",
            ))
            .add(("Access-Control-Allow-Credentials", "true"))
            .add((
                "Access-Control-Allow-Methods",
                "GET, POST, PUT, DELETE, OPTIONS, HEAD",
            )),
    )
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

/// Every route of the API (kept in step with openapi.yaml by the contract tests).
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(
            resource("/operations", "GET, POST")
                .route(web::get().to(operations::list))
                .route(web::post().to(operations::submit)),
        )
        .service(
            resource("/operations/{id}", "GET, DELETE")
                .route(web::get().to(operations::get))
                .route(web::delete().to(operations::cancel)),
        )
        .service(resource("/status", "GET").route(web::get().to(node::status)))
        .service(resource("/topology", "GET").route(web::get().to(node::topology)))
        .service(resource("/topology/{dc}", "GET").route(web::get().to(node::topology_of)))
        .service(resource("/config", "GET").route(web::get().to(node::config)))
        .service(resource("/version", "GET").route(web::get().to(info::version)))
        .service(resource("/version/sidecar", "GET").route(web::get().to(info::version)))
        .service(
            resource("/version/cassandra", "GET").route(web::get().to(node::cassandra_version)),
        )
        .service(resource("/version/schema", "GET").route(web::get().to(node::schema_version)))
        .service(resource("/health/live", "GET").route(web::get().to(info::live)))
        .service(resource("/health/ready", "GET").route(web::get().to(info::ready)))
        .service(resource("/openapi.yaml", "GET").route(web::get().to(info::openapi)));
}

/// Anything no route matched: a JSON 404.
pub async fn no_route(request: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no such endpoint: {} {}",
        request.method(),
        request.path()
    )))
}
