//! `GET /metrics`, and the middleware that counts and times every HTTP request for it.

use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse, web};

use super::AppState;

/// How long a scrape waits for Cassandra to answer the reachability check.
const REACHABLE_WITHIN: Duration = Duration::from_secs(2);

/// `GET /metrics`: the Prometheus text format (OpenMetrics). The gauges of pending and running operations, and of
/// Cassandra's reachability, are read at the scrape.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let services = state.executor.services();
    let (pending, running) = services.local.counts();
    services.metrics.set_unfinished(pending, running);
    let reachable = state.cassandra_answers(REACHABLE_WITHIN).await.is_ok();
    services.metrics.set_cassandra_reachable(reachable);
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(services.metrics.encode())
}

/// Middleware: counts every request by route (the pattern it matched, so ids do not make new series), method and
/// status, and times it.
pub async fn count_requests(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let method = request.method().to_string();
    let state = request.app_data::<web::Data<AppState>>().cloned();
    let outcome = next.call(request).await;
    if let Some(state) = state {
        let (route, status) = match &outcome {
            Ok(response) => (
                response
                    .request()
                    .match_pattern()
                    .unwrap_or_else(|| "unmatched".into()),
                response.status().as_u16(),
            ),
            Err(error) => (
                "unmatched".into(),
                error.as_response_error().status_code().as_u16(),
            ),
        };
        state
            .executor
            .services()
            .metrics
            .http_request(&route, &method, status, started.elapsed());
    }
    outcome
}
