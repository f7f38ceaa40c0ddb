//! The sidecar's Prometheus metrics, with the `prometheus-client` crate: operations by type and outcome, their
//! durations, what backups and restores moved, when each keyspace was last backed up, JMX calls, Cassandra's
//! reachability, and how many operations the store holds and evicted. Names and units follow Prometheus conventions
//! (`daedalus_…_total`, `_seconds`, `_bytes`). No label ever holds a secret: storage locations are
//! `protocol://bucket/path`, never credentials. The binary registers its HTTP metrics in the same registry
//! ([`Metrics::registering`]): this crate knows nothing of HTTP.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::operation_store::{OperationFilter, OperationStore};
use crate::state::OperationState;

type Labels = Vec<(&'static str, String)>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

fn operation_buckets() -> Histogram {
    // 10 ms to about 1.5 days.
    Histogram::new(exponential_buckets(0.01, 4.0, 12))
}

fn fast_buckets() -> Histogram {
    // 100 µs to about 26 s.
    Histogram::new(exponential_buckets(0.0001, 4.0, 10))
}

/// Every metric the sidecar keeps.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    submitted: Family<Labels, Counter>,
    finished: Family<Labels, Counter>,
    durations: HistogramFamily,
    operations: Family<Labels, Gauge>,
    transferred_bytes: Family<Labels, Counter>,
    transferred_files: Family<Labels, Counter>,
    backup_success: Family<Labels, Gauge<f64, AtomicU64>>,
    backup_failure: Family<Labels, Gauge<f64, AtomicU64>>,
    jmx_durations: HistogramFamily,
    jmx_errors: Family<Labels, Counter>,
    cassandra_reachable: Gauge,
    jmx_connected: Gauge,
    jmx_reconnects: Counter,
    schedule_next_run: Family<Labels, Gauge<f64, AtomicU64>>,
    schedule_interval: Family<Labels, Gauge<f64, AtomicU64>>,
    schedule_last_run: Family<Labels, Gauge<f64, AtomicU64>>,
    schedule_last_success: Family<Labels, Gauge>,
    schedule_retention_success: Family<Labels, Gauge>,
    /// The freshness series set for each schedule (`backup_found`), so that forgetting a schedule removes them all:
    /// `Family` cannot look its series up by one label.
    schedule_freshness: std::sync::Mutex<HashMap<String, HashSet<Labels>>>,
    /// The client's own count at the last scrape, so the counter grows by what it added since.
    jmx_reconnects_seen: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("daedalus");
        let submitted = Family::default();
        registry.register(
            "operations_submitted",
            "Operations accepted, by type",
            Described(submitted.clone()),
        );
        let finished = Family::default();
        registry.register(
            "operations_finished",
            "Operations ended, by type and final state",
            Described(finished.clone()),
        );
        let durations: HistogramFamily = Family::new_with_constructor(operation_buckets);
        registry.register_with_unit(
            "operation_duration",
            "Time from an operation's start to its end, by type",
            Unit::Seconds,
            Described(durations.clone()),
        );
        let operations = Family::default();
        registry.register(
            "operations",
            "Operations stored now that are pending or running, by state",
            operations.clone(),
        );
        let transferred_bytes = Family::default();
        registry.register_with_unit(
            "transferred",
            "Bytes moved to or from object storage, by operation type and direction (upload, download)",
            Unit::Bytes,
            Described(transferred_bytes.clone()),
        );
        let transferred_files = Family::default();
        registry.register(
            "transferred_files",
            "Files of backups and restores, by operation type, direction and outcome (moved, or skipped as already there)",
            Described(transferred_files.clone()),
        );
        let backup_success = Family::default();
        registry.register_with_unit(
            "backup_last_success_timestamp",
            "When the newest successful backup was taken (its manifest's time), by keyspace (* for whole-node backups), storage location and schedule (empty for a backup this sidecar ran; a schedule's id when read from the bucket for it)",
            Unit::Seconds,
            Described(backup_success.clone()),
        );
        let backup_failure = Family::default();
        registry.register_with_unit(
            "backup_last_failure_timestamp",
            "When the last failed backup ended, by keyspace (* for whole-node backups), storage location and schedule (always empty)",
            Unit::Seconds,
            Described(backup_failure.clone()),
        );
        let jmx_durations: HistogramFamily = Family::new_with_constructor(fast_buckets);
        registry.register_with_unit(
            "jmx_call_duration",
            "JMX calls to Cassandra, by MBean and member (attribute or operation)",
            Unit::Seconds,
            jmx_durations.clone(),
        );
        let jmx_errors = Family::default();
        registry.register(
            "jmx_call_errors",
            "JMX calls that failed, by MBean and member",
            jmx_errors.clone(),
        );
        let cassandra_reachable = Gauge::default();
        registry.register(
            "cassandra_reachable",
            "1 when Cassandra answered over JMX at the last look (each scrape looks), 0 otherwise",
            cassandra_reachable.clone(),
        );
        let jmx_connected = Gauge::default();
        registry.register(
            "jmx_connected",
            "1 while the sidecar holds a working JMX connection to Cassandra (as of its last call), 0 from the call that found Cassandra gone until one finds it back",
            jmx_connected.clone(),
        );
        let jmx_reconnects = Counter::default();
        registry.register(
            "jmx_reconnects",
            "New JMX connections the sidecar made after its first, each after Cassandra dropped the last (a restart, a crash, an idle timeout)",
            jmx_reconnects.clone(),
        );
        let schedule_next_run = Family::default();
        registry.register_with_unit(
            "schedule_next_run_timestamp",
            "When a schedule runs next (before its jitter), by schedule id and operation type",
            Unit::Seconds,
            Described(schedule_next_run.clone()),
        );
        let schedule_interval = Family::default();
        registry.register_with_unit(
            "schedule_interval",
            "The longest time between two runs of a schedule, its jitter included, by schedule id and operation type: how old its newest backup may grow",
            Unit::Seconds,
            Described(schedule_interval.clone()),
        );
        let schedule_last_run = Family::default();
        registry.register_with_unit(
            "schedule_last_run_timestamp",
            "When a schedule's last finished run was submitted (its lastRun.time), by schedule id and operation type; every sidecar following the schedule shows the same, whichever sidecar ran it",
            Unit::Seconds,
            Described(schedule_last_run.clone()),
        );
        let schedule_last_success = Family::default();
        registry.register(
            "schedule_last_run_success",
            "1 when a schedule's last finished run ended COMPLETED, 0 when it ended otherwise (or could not be submitted), by schedule id and operation type; every sidecar following the schedule shows the same, whichever sidecar ran it",
            Described(schedule_last_success.clone()),
        );
        let schedule_retention_success = Family::default();
        registry.register(
            "schedule_last_retention_success",
            "1 when the retention run (a remove-backup) after a schedule's last completed backup ended COMPLETED, 0 when it ended otherwise (or could not be submitted), by schedule id and operation type; absent until a retention run of the schedule ended",
            Described(schedule_retention_success.clone()),
        );
        Metrics {
            registry,
            schedule_next_run,
            schedule_interval,
            schedule_last_run,
            schedule_last_success,
            schedule_retention_success,
            schedule_freshness: Default::default(),
            submitted,
            finished,
            durations,
            operations,
            transferred_bytes,
            transferred_files,
            backup_success,
            backup_failure,
            jmx_durations,
            jmx_errors,
            cassandra_reachable,
            jmx_connected,
            jmx_reconnects,
            jmx_reconnects_seen: AtomicU64::new(0),
        }
    }

    /// Also reports the metrics `register` adds to the registry (under the same `daedalus_` prefix): those of a
    /// layer above this crate, such as the binary's HTTP requests.
    pub fn registering(mut self, register: impl FnOnce(&mut Registry)) -> Self {
        register(&mut self.registry);
        self
    }

    /// Also reports what `store` holds and evicted, read from it at each scrape.
    pub fn observing_store(mut self, store: Arc<dyn OperationStore>) -> Self {
        self.registry
            .register_collector(Box::new(StoreCollector { store }));
        self
    }

    /// The metrics in the Prometheus text format (OpenMetrics).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }

    pub fn operation_submitted(&self, type_id: &str) {
        self.submitted
            .get_or_create(&vec![("type", type_id.to_string())])
            .inc();
    }

    /// An operation ended in `state`; `ran` is how long it ran, if it started.
    pub fn operation_finished(&self, type_id: &str, state: OperationState, ran: Option<Duration>) {
        self.finished
            .get_or_create(&vec![
                ("type", type_id.to_string()),
                ("state", state.as_str().to_string()),
            ])
            .inc();
        if let Some(ran) = ran {
            self.durations
                .get_or_create(&vec![("type", type_id.to_string())])
                .observe(ran.as_secs_f64());
        }
    }

    /// How many operations are pending and running now (set when scraped).
    pub fn set_unfinished(&self, pending: usize, running: usize) {
        for (state, count) in [("pending", pending), ("running", running)] {
            self.operations
                .get_or_create(&vec![("state", state.to_string())])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// What a backup (`upload`) or restore (`download`) moved: files and bytes moved, files skipped.
    pub fn transferred(
        &self,
        type_id: &str,
        direction: &'static str,
        files: u64,
        bytes: u64,
        skipped: u64,
    ) {
        let labels = vec![
            ("type", type_id.to_string()),
            ("direction", direction.to_string()),
        ];
        self.transferred_bytes.get_or_create(&labels).inc_by(bytes);
        for (outcome, count) in [("moved", files), ("skipped", skipped)] {
            let mut labels = labels.clone();
            labels.push(("outcome", outcome.to_string()));
            self.transferred_files.get_or_create(&labels).inc_by(count);
        }
    }

    /// A backup of `keyspaces` (empty: the whole node) to `location` succeeded, taken at `taken` (epoch seconds),
    /// or failed at that time. Its series have an empty `schedule`: the backup does not know whether a schedule
    /// submitted it ([`Metrics::backup_found`] sets a schedule's).
    pub fn backup_ended(
        &self,
        keyspaces: &[String],
        location: &str,
        at_seconds: f64,
        succeeded: bool,
    ) {
        let family = if succeeded {
            &self.backup_success
        } else {
            &self.backup_failure
        };
        let all = ["*".to_string()];
        let keyspaces = if keyspaces.is_empty() {
            &all[..]
        } else {
            keyspaces
        };
        for keyspace in keyspaces {
            family
                .get_or_create(&backup_labels(keyspace, location, None))
                .set(at_seconds);
        }
    }

    /// The newest backup in `location` (of `schedule`'s tag, when a schedule asks) was taken at `at_seconds` (epoch
    /// seconds), as its manifest says: what the freshness gauge shows after a restart, before any backup ran.
    pub fn backup_found(&self, location: &str, schedule: Option<&str>, at_seconds: f64) {
        let labels = backup_labels("*", location, schedule);
        if let Some(schedule) = schedule {
            crate::sync::lock(&self.schedule_freshness)
                .entry(schedule.to_string())
                .or_default()
                .insert(labels.clone());
        }
        self.backup_success.get_or_create(&labels).set(at_seconds);
    }

    /// Removes every freshness series set for `schedule` (whatever its keyspace and location).
    pub fn schedule_freshness_forgotten(&self, schedule: &str) {
        let series = crate::sync::lock(&self.schedule_freshness).remove(schedule);
        for labels in series.into_iter().flatten() {
            self.backup_success.remove(&labels);
        }
    }

    /// A schedule this sidecar follows runs `type_id` next at `next_run` (epoch seconds; `None`: never again), and
    /// at most `interval` apart.
    pub fn schedule_planned(
        &self,
        schedule: &str,
        type_id: &str,
        next_run: Option<f64>,
        interval: Option<Duration>,
    ) {
        let labels = schedule_labels(schedule, type_id);
        match next_run {
            Some(at) => {
                self.schedule_next_run.get_or_create(&labels).set(at);
            }
            None => {
                self.schedule_next_run.remove(&labels);
            }
        }
        if let Some(interval) = interval {
            self.schedule_interval
                .get_or_create(&labels)
                .set(interval.as_secs_f64());
        }
    }

    /// The last finished run of a schedule, submitted at `at_seconds` (epoch seconds), ended COMPLETED or not.
    pub fn schedule_ran(&self, schedule: &str, type_id: &str, at_seconds: f64, succeeded: bool) {
        let labels = schedule_labels(schedule, type_id);
        self.schedule_last_run
            .get_or_create(&labels)
            .set(at_seconds);
        self.schedule_last_success
            .get_or_create(&labels)
            .set(i64::from(succeeded));
    }

    /// The retention run after a schedule's last completed backup ended, COMPLETED or not.
    pub fn schedule_retention_ran(&self, schedule: &str, type_id: &str, succeeded: bool) {
        self.schedule_retention_success
            .get_or_create(&schedule_labels(schedule, type_id))
            .set(i64::from(succeeded));
    }

    /// A schedule was deleted (or is no longer this sidecar's to follow): its series go, its backup freshness too.
    pub fn schedule_forgotten(&self, schedule: &str, type_id: &str) {
        self.schedule_freshness_forgotten(schedule);
        let labels = schedule_labels(schedule, type_id);
        self.schedule_next_run.remove(&labels);
        self.schedule_interval.remove(&labels);
        self.schedule_last_run.remove(&labels);
        self.schedule_last_success.remove(&labels);
        self.schedule_retention_success.remove(&labels);
    }

    pub fn set_cassandra_reachable(&self, reachable: bool) {
        self.cassandra_reachable.set(i64::from(reachable));
    }

    /// The JMX client's state: connected or not, and how many times it reconnected so far (`None`: the sidecar has
    /// not connected yet).
    pub fn set_jmx_connection(&self, connection: Option<(bool, u64)>) {
        let (connected, reconnects) = connection.unwrap_or((false, 0));
        self.jmx_connected.set(i64::from(connected));
        let seen = self
            .jmx_reconnects_seen
            .fetch_max(reconnects, std::sync::atomic::Ordering::Relaxed);
        if reconnects > seen {
            self.jmx_reconnects.inc_by(reconnects - seen);
        }
    }
}

/// A family whose HELP and TYPE lines are written even while it has no series (`prometheus-client` leaves an empty
/// family out): an alert or dashboard on backup freshness or on operations then finds the metric from the first
/// scrape (`scripts/package check-monitoring` checks the shipped ones against a fresh sidecar's), and an absent
/// series means "no backup known" or "none ran", not "no such metric".
#[derive(Debug)]
struct Described<M>(M);

impl<M: EncodeMetric> EncodeMetric for Described<M> {
    fn encode(
        &self,
        encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        self.0.metric_type()
    }
}

/// One label set per family (`prometheus-client` encodes each series with its own): `schedule` is empty for the
/// backups the sidecar ran itself, which Prometheus reads as an absent label.
fn backup_labels(keyspace: &str, location: &str, schedule: Option<&str>) -> Labels {
    vec![
        ("keyspace", keyspace.to_string()),
        ("storage_location", location.to_string()),
        ("schedule", schedule.unwrap_or_default().to_string()),
    ]
}

fn schedule_labels(schedule: &str, type_id: &str) -> Labels {
    vec![
        ("schedule", schedule.to_string()),
        ("type", type_id.to_string()),
    ]
}

/// JMX calls, as the client reports them.
impl jmx::CallObserver for Metrics {
    fn observed(&self, call: &jmx::ObservedCall<'_>) {
        let labels = vec![
            ("mbean", call.mbean.unwrap_or("").to_string()),
            ("member", call.member.to_string()),
        ];
        self.jmx_durations
            .get_or_create(&labels)
            .observe(call.elapsed.as_secs_f64());
        if call.error.is_some() {
            self.jmx_errors.get_or_create(&labels).inc();
        }
    }
}

/// The store's size and evictions, read from the store itself when scraped, so they never disagree with it.
#[derive(Debug)]
struct StoreCollector {
    store: Arc<dyn OperationStore>,
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stored = ConstGauge::new(
            i64::try_from(self.store.count(&OperationFilter::default())).unwrap_or(i64::MAX),
        );
        stored.encode(encoder.encode_descriptor(
            "operations_stored",
            "Operations the store holds now, finished or not (with --store etcd, this sidecar's copies of every sidecar's)",
            None,
            stored.metric_type(),
        )?)?;
        let evicted = ConstCounter::new(self.store.evicted());
        evicted.encode(encoder.encode_descriptor(
            "operations_evicted",
            "Finished operations dropped before they expired, to stay within --max-stored-operations",
            None,
            evicted.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backup's own series has an empty schedule; one found in the bucket for a schedule carries its id; the
    /// two stay apart, and HELP and TYPE are there before either.
    #[test]
    fn backup_freshness_carries_the_schedule() {
        let metrics = Metrics::new();
        let text = metrics.encode();
        assert!(
            text.contains("# TYPE daedalus_backup_last_success_timestamp_seconds gauge"),
            "{text}"
        );
        assert!(!text.contains("daedalus_backup_last_success_timestamp_seconds{"));
        metrics.backup_ended(&[], "s3://b/c/d/n", 1_700_000_000.5, true);
        metrics.backup_ended(&["ks".into()], "s3://b/c/d/n", 1_700_000_100.0, false);
        metrics.backup_found("s3://b/c/d/n", Some("s1"), 1_600_000_000.0);
        let text = metrics.encode();
        for series in [
            "daedalus_backup_last_success_timestamp_seconds{keyspace=\"*\",storage_location=\"s3://b/c/d/n\",schedule=\"\"} 1700000000.5",
            "daedalus_backup_last_failure_timestamp_seconds{keyspace=\"ks\",storage_location=\"s3://b/c/d/n\",schedule=\"\"} 1700000100",
            "daedalus_backup_last_success_timestamp_seconds{keyspace=\"*\",storage_location=\"s3://b/c/d/n\",schedule=\"s1\"} 1600000000",
        ] {
            assert!(text.contains(series), "{series} in {text}");
        }
    }

    /// A schedule's series appear when it is planned and run, and go when it is forgotten; the families' HELP and
    /// TYPE lines stay, so a dashboard always finds the metric.
    #[test]
    fn schedule_series_follow_the_schedule() {
        let metrics = Metrics::new();
        metrics.schedule_planned(
            "s1",
            "backup",
            Some(1_800_000_000.0),
            Some(Duration::from_secs(86_400)),
        );
        metrics.schedule_ran("s1", "backup", 1_799_999_000.0, false);
        let text = metrics.encode();
        assert!(
            text.contains(
                "daedalus_schedule_next_run_timestamp_seconds{schedule=\"s1\",type=\"backup\"} 1800000000"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "daedalus_schedule_interval_seconds{schedule=\"s1\",type=\"backup\"} 86400"
            ),
            "{text}"
        );
        assert!(
            text.contains("daedalus_schedule_last_run_success{schedule=\"s1\",type=\"backup\"} 0"),
            "{text}"
        );
        metrics.backup_found("s3://b/c/d/n1", Some("s1"), 1_600_000_000.0);
        metrics.backup_found("s3://b/c/d/n2", Some("s1"), 1_600_000_000.0);
        metrics.backup_found("s3://b/c/d/n1", Some("s2"), 1_600_000_000.0);
        metrics.backup_found("s3://b/c/d/n1", None, 1_600_000_000.0);
        metrics.schedule_forgotten("s1", "backup");
        let text = metrics.encode();
        assert!(!text.contains("schedule=\"s1\""), "{text}");
        // Another schedule's and the unscheduled series stay.
        assert!(text.contains("schedule=\"s2\""), "{text}");
        assert!(
            text.contains(
                "daedalus_backup_last_success_timestamp_seconds{keyspace=\"*\",storage_location=\"s3://b/c/d/n1\",schedule=\"\"}"
            ),
            "{text}"
        );
        metrics.schedule_freshness_forgotten("s2");
        assert!(!metrics.encode().contains("schedule=\"s2\""));
        assert!(
            text.contains("# TYPE daedalus_schedule_next_run_timestamp_seconds gauge"),
            "{text}"
        );
    }
}
