//! `GET /metrics`, and the HTTP requests' own metrics: the middleware that counts and times every request, and the
//! series it keeps, registered in the operations crate's registry so that one scrape reads them all.

use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse, web};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use super::AppState;

/// The route label of requests whose path no route serves.
const UNMATCHED: &str = "unmatched";

type Labels = Vec<(&'static str, String)>;

/// HTTP requests answered (`daedalus_http_requests_total`) and the time to answer them
/// (`daedalus_http_request_duration_seconds`). Clones share the series.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: Family<Labels, Counter>,
    durations: Family<Labels, Histogram, fn() -> Histogram>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpMetrics {
    pub fn new() -> Self {
        fn buckets() -> Histogram {
            // 100 µs to about 26 s, as the JMX calls'.
            Histogram::new(exponential_buckets(0.0001, 4.0, 10))
        }
        HttpMetrics {
            requests: Family::default(),
            durations: Family::new_with_constructor(buckets),
        }
    }

    /// Adds the series to `registry` (the one of `daedalus_operations::metrics::Metrics`, prefixed `daedalus`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "http_requests",
            "HTTP requests answered, by route, method and status",
            self.requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time to answer HTTP requests, by route",
            Unit::Seconds,
            self.durations.clone(),
        );
    }

    /// One answered request. `route` must come from a fixed set (the route patterns, or one value for requests no
    /// route matches); `method` may be anything a client sent, and is kept to a fixed set here.
    pub fn request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&vec![
                ("route", route.to_string()),
                ("method", method_label(method).to_string()),
                ("status", status.to_string()),
            ])
            .inc();
        self.durations
            .get_or_create(&vec![("route", route.to_string())])
            .observe(elapsed.as_secs_f64());
    }
}

/// The `method` label of HTTP requests: the standard methods as they are, any other `other`. Clients, unauthenticated
/// ones too, may send any token as a method, and every label value is a series kept until the process ends.
fn method_label(method: &str) -> &'static str {
    const STANDARD: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT",
    ];
    STANDARD
        .into_iter()
        .find(|standard| *standard == method)
        .unwrap_or("other")
}

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
/// `unmatched` for any path no route serves; [`HttpMetrics`] keeps the method to the standard ones and `other`.
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
        state
            .http_metrics
            .request(&route, method.as_str(), status.as_u16(), started.elapsed());
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_standard_ones_share_one_label() {
        assert_eq!(method_label("GET"), "GET");
        assert_eq!(method_label("CONNECT"), "CONNECT");
        assert_eq!(method_label("get"), "other");
        assert_eq!(method_label("BREW"), "other");
    }

    #[test]
    fn the_series_keep_their_names_in_the_shared_registry() {
        let http = HttpMetrics::new();
        let metrics =
            daedalus_operations::metrics::Metrics::new().registering(|r| http.register(r));
        http.request("/version", "GET", 200, Duration::from_millis(3));
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"daedalus_http_requests_total{route="/version",method="GET",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"daedalus_http_request_duration_seconds_count{route="/version"} 1"#),
            "{text}"
        );
    }
}
