//! `GET /metrics`, parsed with a Prometheus text-format parser: counters move as operations run, a JMX failure shows
//! in the error counter, routes are patterns (never ids) and made-up methods and paths make no series of their own,
//! a read token is needed unless `--open-metrics`, and, after a real backup of node 1 to MinIO, the freshness gauge
//! equals the manifest's time and the upload counters moved.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing

mod support;

use prometheus_parse::{Sample, Scrape, Value};
use reqwest::Method;
use serde_json::json;
use support::builder::SidecarBuilder;
use support::stores::{self, Store};
use support::{Sidecar, cassandra, run};

fn scrape(sidecar: &Sidecar, authorization: Option<&str>) -> Scrape {
    let headers: Vec<(&str, &str)> = authorization
        .map(|v| ("authorization", v))
        .into_iter()
        .collect();
    let response = sidecar
        .client()
        .send_with(Method::GET, "/metrics", &headers, None);
    assert_eq!(response.status, 200, "{}", response.text());
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    Scrape::parse(response.text().lines().map(|line| Ok(line.to_string())))
        .expect("the Prometheus text format")
}

fn value(sample: &Sample) -> f64 {
    match &sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        Value::Histogram(_) | Value::Summary(_) => {
            panic!("{} is not a single value", sample.metric)
        }
    }
}

/// The value of `metric` with exactly these labels (others may be there too), if present.
fn find(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .map(value)
}

#[test]
fn counters_move_as_operations_run_and_a_jmx_failure_is_counted() {
    let sidecar = Sidecar::start(&["--enable-test-operations"]);
    let client = sidecar.client();
    let sleep = run(
        &sidecar,
        json!({"type": "sleep", "duration": "10ms"}),
        "COMPLETED",
    );
    // Nothing answers on the JMX port: the flush fails, and so does connecting.
    run(
        &sidecar,
        json!({"type": "flush", "keyspace": "ks"}),
        "FAILED",
    );
    client.operation(sleep["id"].as_str().unwrap());

    let scrape = scrape(&sidecar, None);
    let count =
        |metric: &str, labels: &[(&str, &str)]| find(&scrape, metric, labels).unwrap_or(0.0);
    assert_eq!(
        count("daedalus_operations_submitted_total", &[("type", "sleep")]),
        1.0
    );
    assert_eq!(
        count(
            "daedalus_operations_finished_total",
            &[("type", "sleep"), ("state", "COMPLETED")]
        ),
        1.0
    );
    assert_eq!(
        count(
            "daedalus_operations_finished_total",
            &[("type", "flush"), ("state", "FAILED")]
        ),
        1.0
    );
    assert_eq!(
        count(
            "daedalus_operation_duration_seconds_count",
            &[("type", "sleep")]
        ),
        1.0
    );
    assert!(count("daedalus_jmx_call_errors_total", &[("member", "connect")]) >= 1.0);
    assert_eq!(count("daedalus_cassandra_reachable", &[]), 0.0);
    assert_eq!(count("daedalus_operations", &[("state", "running")]), 0.0);
    // Read from the text: prometheus-parse splits a line at the first `}`, even inside a quoted label value.
    let text = sidecar.client().get("/metrics").text();
    assert!(
        text.contains(
            r#"daedalus_http_requests_total{route="/operations/{id}",method="GET",status="200"}"#
        ),
        "{text}"
    );
    let id = sleep["id"].as_str().unwrap();
    assert!(
        scrape
            .samples
            .iter()
            .all(|s| !s.labels.values().any(|v| v.contains(id))),
        "no series per operation id"
    );

    // The next scrape sees the requests before it, and more of them.
    let again = self::scrape(&sidecar, None);
    let before = find(
        &scrape,
        "daedalus_http_requests_total",
        &[("route", "/metrics")],
    )
    .unwrap_or(0.0);
    assert!(
        find(
            &again,
            "daedalus_http_requests_total",
            &[("route", "/metrics")]
        )
        .unwrap()
            > before
    );
}

/// A series of `daedalus_http_requests_total`: route, method, status, and the requests it counted.
type RequestSeries = (String, String, String, f64);

fn series(route: &str, method: &str, status: &str, count: usize) -> RequestSeries {
    (
        route.to_string(),
        method.to_string(),
        status.to_string(),
        count as f64,
    )
}

/// Every series of `daedalus_http_requests_total`, and the `route` of every series of
/// `daedalus_http_request_duration_seconds`, sorted.
fn http_series(scrape: &Scrape) -> (Vec<RequestSeries>, Vec<String>) {
    let label = |sample: &Sample, name: &str| sample.labels.get(name).unwrap_or("").to_string();
    let mut requests: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "daedalus_http_requests_total")
        .map(|s| {
            (
                label(s, "route"),
                label(s, "method"),
                label(s, "status"),
                value(s),
            )
        })
        .collect();
    requests.sort_by(|a, b| (&a.0, &a.1, &a.2).cmp(&(&b.0, &b.1, &b.2)));
    let mut durations: Vec<String> = scrape
        .samples
        .iter()
        .filter(|s| {
            s.metric
                .starts_with("daedalus_http_request_duration_seconds")
        })
        .map(|s| label(s, "route"))
        .collect();
    durations.sort();
    durations.dedup();
    (requests, durations)
}

/// Methods and paths are the client's choice, before any token is checked: a made-up one must not make a series of
/// its own, or a client could grow `/metrics` and the sidecar's memory without end.
#[test]
fn made_up_methods_and_paths_make_no_series_of_their_own() {
    let sidecar = Sidecar::start(&[]);
    let client = sidecar.client();
    const EACH: usize = 100;
    for i in 0..EACH {
        let made_up = Method::from_bytes(format!("FOO{i}").as_bytes()).unwrap();
        assert_eq!(
            client
                .send(made_up.clone(), &format!("/made-up/{i}"), None)
                .status,
            404
        );
        assert_eq!(client.send(made_up, "/operations", None).status, 405);
        // Methods are case-sensitive: `get` is not GET.
        let lower = Method::from_bytes(b"get").unwrap();
        assert_eq!(
            client
                .send(lower, &format!("/topology/dc{i}/x"), None)
                .status,
            404
        );
    }

    let (requests, durations) = http_series(&scrape(&sidecar, None));
    assert_eq!(
        requests,
        [
            series("/operations", "other", "405", EACH),
            series("unmatched", "other", "404", 2 * EACH),
        ]
    );
    assert_eq!(durations, ["/operations", "unmatched"]);
}

/// The same when the authentication middleware refuses them before any route is chosen.
#[test]
fn made_up_requests_refused_before_routing_make_no_series_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("read");
    std::fs::write(&token, support::secrets::METRICS_TOKEN).unwrap();
    let sidecar = Sidecar::start(&[
        "--read-token-file",
        token.to_str().unwrap(),
        "--open-metrics",
    ]);
    // Not the spec-checking client: the spec documents no answer for undocumented paths but 404 and 405.
    daedalus_operations::crypto::install_default_provider();
    let client = reqwest::blocking::Client::new();
    let status = |method: &Method, path: &str| {
        let url = format!("{}{path}", sidecar.base_url);
        client.request(method.clone(), url).send().unwrap().status()
    };
    const EACH: usize = 100;
    for i in 0..EACH {
        let made_up = Method::from_bytes(format!("FOO{i}").as_bytes()).unwrap();
        assert_eq!(status(&made_up, &format!("/made-up/{i}")), 401);
        assert_eq!(status(&made_up, "/operations"), 401);
    }

    let (requests, durations) = http_series(&scrape(&sidecar, None));
    assert_eq!(
        requests,
        [
            series("/operations", "other", "401", EACH),
            series("unmatched", "other", "401", EACH),
        ]
    );
    assert_eq!(durations, ["/operations", "unmatched"]);
}

#[test]
fn metrics_need_a_read_token_unless_opened() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("read");
    std::fs::write(&token, support::secrets::METRICS_TOKEN).unwrap();
    let token = token.to_str().unwrap();
    let closed = Sidecar::start(&["--read-token-file", token]);
    let refused = closed.client().get("/metrics");
    assert_eq!(refused.status, 401);
    scrape(
        &closed,
        Some(&format!("Bearer {}", support::secrets::METRICS_TOKEN)),
    );
    let open = Sidecar::start(&["--read-token-file", token, "--open-metrics"]);
    scrape(&open, None);
    assert_eq!(
        open.client().get("/operations").status,
        401,
        "only /metrics is opened"
    );
    let text = open.client().get("/metrics").text();
    assert!(!text.contains(support::secrets::METRICS_TOKEN));
}

#[test]
fn after_a_backup_the_freshness_gauge_is_the_manifests_time() {
    cassandra::cluster();
    cassandra::table_with_rows("metrics_ks", "t", 20);
    let store = Store::minio_with_bucket("metrics");
    let sidecar = SidecarBuilder::new()
        .jmx_service(&cassandra::jmx_service(1))
        .store(&store)
        .s3_credentials()
        .start();
    let done = run(
        &sidecar,
        json!({"type": "backup", "storageLocation": "s3://metrics", "entities": "metrics_ks", "snapshotTag": "fresh"}),
        "COMPLETED",
    );
    let tag = done["response"]["snapshotTag"].as_str().unwrap();
    let millis: f64 = tag.rsplit('-').next().unwrap().parse().unwrap();
    let location = done["response"]["storageLocation"].as_str().unwrap();

    let scrape = scrape(&sidecar, None);
    let fresh = find(
        &scrape,
        "daedalus_backup_last_success_timestamp_seconds",
        &[("keyspace", "metrics_ks"), ("storage_location", location)],
    )
    .expect("a freshness gauge for the keyspace and location");
    assert!(
        (fresh - millis / 1000.0).abs() < 0.001,
        "{fresh} vs the manifest's {millis} ms"
    );
    assert!(
        find(
            &scrape,
            "daedalus_transferred_bytes_total",
            &[("type", "backup"), ("direction", "upload")]
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(
        find(&scrape, "daedalus_cassandra_reachable", &[]),
        Some(1.0)
    );
    assert!(
        find(
            &scrape,
            "daedalus_jmx_call_duration_seconds_count",
            &[("member", "takeSnapshot")]
        )
        .unwrap()
            >= 1.0,
        "JMX calls are timed by operation"
    );
    assert!(
        !scrape
            .samples
            .iter()
            .any(|s| s.labels.values().any(|v| v.contains(stores::S3_SECRET_KEY)))
    );
}
