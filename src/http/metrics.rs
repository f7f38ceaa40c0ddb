//! `GET /metrics`, and the middleware that counts and times every HTTP request for it.

use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse, web};

use super::AppState;

/// The route label of requests whose path no route serves.
const UNMATCHED: &str = "unmatched";

/// How long a scrape waits for Cassandra to answer the reachability check.
const REACHABLE_WITHIN: Duration = Duration::from_secs(2);

/// `GET /metrics`: the Prometheus text format (OpenMetrics). The gauges of pending and running operations, of
/// Cassandra's reachability and of the JMX connection are read at the scrape.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let services = state.executor.services();
    let (pending, running) = services.local.counts();
    services.metrics.set_unfinished(pending, running);
    let reachable = state.cassandra_answers(REACHABLE_WITHIN).await.is_ok();
    services.metrics.set_cassandra_reachable(reachable);
    services
        .metrics
        .set_jmx_connection(services.jmx.connection());
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(services.metrics.encode())
}

/// Middleware: counts every request by route, method and status, and times it. Clients choose paths and methods, so
/// neither goes into a label as sent: the route is the pattern the path matches (`/operations/{id}`), found from the
/// app's routes and the path alone (a 405, or a 401 given before routing, counts under its path's pattern), and
/// `unmatched` for any path no route serves; `Metrics` keeps the method to the standard ones and `other`.
pub async fn count_requests(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let route = request
        .match_pattern()
        .unwrap_or_else(|| UNMATCHED.to_string());
    let method = request.method().clone();
    let state = request.app_data::<web::Data<AppState>>().cloned();
    let outcome = next.call(request).await;
    if let Some(state) = state {
        let status = match &outcome {
            Ok(response) => response.status(),
            Err(error) => error.as_response_error().status_code(),
        };
        state.executor.services().metrics.http_request(
            &route,
            method.as_str(),
            status.as_u16(),
            started.elapsed(),
        );
    }
    outcome
}
