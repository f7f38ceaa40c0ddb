//! Follows the schedules of a store and runs them: at each tick (and once for a tick missed while nothing ran) it
//! claims the run, waits a random part of the jitter, submits the operation through the registry and the executor
//! as `POST /operations` does, and records `lastRun` as the operation goes. After a completed backup with a
//! retention it submits the `remove-backup` that prunes the schedule's backups.
//!
//! A schedule's last-run metrics and its backup freshness follow the stored `lastRun`, whichever sidecar wrote it:
//! every sidecar following a cluster-wide schedule exports the same, not only the one that ran the tick.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::cron::CronSchedule;
use super::store::ScheduleStore;
use super::{LastRun, RetentionRun, Schedule, missed_tick};
use crate::executor::Executor;
use crate::operation::Services;
use crate::record::OperationRecord;
use crate::registry::Registry;
use crate::state::OperationState;

/// How often the store is read for new, changed and deleted schedules (and ticks looked for): ticks are whole
/// seconds at the finest.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// How often a submitted operation is looked at until it ends.
const POLL_RUN: Duration = Duration::from_millis(500);
/// Bounds of how long a claim on a tick is held. Another sidecar may claim the same tick until at most one interval
/// and its jitter later (at its own tick, or as the missed tick when it starts), so twice that is held; etcd forgets
/// it after.
const SHORTEST_HOLD: Duration = Duration::from_secs(60);
const LONGEST_HOLD: Duration = Duration::from_secs(86_400);

/// The connection fields of a backup that its retention run (a `remove-backup`) repeats.
const CONNECTION_FIELDS: [&str; 9] = [
    "storageLocation",
    "concurrentConnections",
    "insecure",
    "skipBucketVerification",
    "proxySettings",
    "retry",
    "resolveNodes",
    "globalRequest",
    "k8sSecretName",
];

/// What the runner knows of a schedule it follows.
#[derive(Debug)]
struct Followed {
    type_id: String,
    /// The latest tick already dealt with (run, or found at the first look with nothing missed).
    handled: DateTime<Utc>,
    /// The cron and zone it was planned with: a schedule replaced under the same id is planned anew.
    cron: (String, String),
    /// Those two parsed, once: a zone is read from the tz database, which is file I/O the look must not repeat
    /// every second.
    parsed: CronSchedule,
    /// The shortest and longest gap between two ticks, found once (sampling the cron costs hundreds of searches).
    intervals: Option<(Duration, Duration)>,
    /// The next tick, searched for again only once it has passed; `None`: the cron has none, and is never searched
    /// again (a search for a date that never comes goes through centuries).
    next: Option<DateTime<Utc>>,
    /// The stored `lastRun` as last seen: when it changes to an ended run, the metrics show that run.
    last_run: Option<LastRun>,
}

/// A tick to run.
#[derive(Debug, Clone, PartialEq)]
struct Due {
    schedule: Schedule,
    tick: DateTime<Utc>,
    /// The longest gap between two ticks (for how long the claim is held).
    interval: Duration,
}

#[derive(Debug)]
pub struct ScheduleRunner {
    store: Arc<dyn ScheduleStore>,
    registry: Arc<Registry>,
    executor: Arc<Executor>,
    runs: TaskTracker,
    /// Ticks whose claim failed with an error, by schedule: claimed again at the next look.
    retry: std::sync::Mutex<HashMap<String, DateTime<Utc>>>,
}

impl ScheduleRunner {
    pub fn new(
        store: Arc<dyn ScheduleStore>,
        registry: Arc<Registry>,
        executor: Arc<Executor>,
    ) -> Arc<Self> {
        Arc::new(ScheduleRunner {
            store,
            registry,
            executor,
            runs: TaskTracker::new(),
            retry: Default::default(),
        })
    }

    fn services(&self) -> &Arc<Services> {
        self.executor.services()
    }

    /// Follows the store until `stop` is cancelled. Runs already submitted are the executor's from then on.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut followed = HashMap::new();
        tracing::info!("schedule runner started");
        loop {
            match self.store.list().await {
                Ok(schedules) => {
                    for due in self.look(&mut followed, schedules, Utc::now()) {
                        let runner = Arc::clone(&self);
                        let stop = stop.clone();
                        self.runs
                            .spawn(async move { runner.run_tick(due, stop).await });
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "could not read the schedules; trying again");
                }
            }
            // Just past the next whole second, where ticks fall.
            let millis = u64::from(Utc::now().timestamp_subsec_millis());
            let wait = LOOK_EVERY.saturating_sub(Duration::from_millis(millis))
                + Duration::from_millis(20);
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        self.runs.close();
        tracing::info!("schedule runner stopped");
    }

    /// Whether this sidecar runs the schedule: a cluster-wide one whoever claims the tick, a node-local one the
    /// sidecar that accepted it.
    fn follows(&self, schedule: &Schedule) -> bool {
        match (&schedule.sidecar, self.store.sidecar()) {
            (Some(owner), Some(me)) => schedule.is_global() || *owner == me,
            _ => true,
        }
    }

    /// One look at the store's schedules at `now`: the ticks to run, with the metrics of every followed schedule
    /// brought up to date.
    fn look(
        &self,
        followed: &mut HashMap<String, Followed>,
        schedules: Vec<Schedule>,
        now: DateTime<Utc>,
    ) -> Vec<Due> {
        let metrics = &self.services().metrics;
        let mut retries = std::mem::take(&mut *crate::sync::lock(&self.retry));
        let mut due = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for schedule in schedules {
            if !self.follows(&schedule) {
                continue;
            }
            let key = (schedule.cron.clone(), schedule.timezone.clone());
            let planned = followed
                .get(&schedule.id)
                .filter(|known| known.cron == key)
                .map(|known| known.parsed.clone());
            let cron = match planned.map_or_else(|| schedule.cron_schedule(), Ok) {
                Ok(cron) => cron,
                Err(error) => {
                    if !followed.contains_key(&schedule.id) {
                        tracing::warn!(schedule = %schedule.id, %error, "schedule skipped: its cron cannot be read");
                    }
                    continue;
                }
            };
            seen.insert(schedule.id.clone());
            let first_look = followed
                .get(&schedule.id)
                .is_none_or(|known| known.cron != key);
            let tick = if first_look {
                // First look (at start, or just created): run a tick missed since the last run, once.
                let next = cron.next_after(now);
                if next.is_none() {
                    tracing::warn!(schedule = %schedule.id, cron = %schedule.cron, "schedule never runs: its cron has no future tick");
                }
                let latest = next.and_then(|_| cron.latest_at_or_before(now));
                let missed = missed_tick(
                    latest,
                    schedule.last_run.as_ref().map(|run| run.time),
                    schedule.created_at,
                );
                if missed.is_some() {
                    tracing::info!(schedule = %schedule.id, tick = ?missed, "running a missed tick once");
                }
                if schedule.type_id() == "backup" {
                    self.refresh_freshness(&schedule);
                }
                followed.insert(
                    schedule.id.clone(),
                    Followed {
                        type_id: schedule.type_id().to_string(),
                        handled: latest.unwrap_or(now),
                        cron: key,
                        parsed: cron.clone(),
                        intervals: next.and_then(|_| cron.intervals(now)),
                        next,
                        last_run: None,
                    },
                );
                missed
            } else {
                None
            };
            let Some(known) = followed.get_mut(&schedule.id) else {
                continue;
            };
            let mut tick = tick;
            if !first_look && known.next.is_some_and(|next| next <= now) {
                tick = cron
                    .latest_at_or_before(now)
                    .filter(|tick| *tick > known.handled);
                if let Some(tick) = tick {
                    known.handled = tick;
                }
                known.next = cron.next_after(now);
            }
            // A tick whose claim failed is claimed again, unless a newer one is due.
            let retried = retries.remove(&schedule.id);
            let tick = tick.or(retried);
            let interval = known
                .intervals
                .map(|(_, longest)| longest + schedule.jitter_duration());
            metrics.schedule_planned(
                &schedule.id,
                schedule.type_id(),
                known.next.map(epoch_seconds),
                interval,
            );
            if known.last_run != schedule.last_run {
                if let Some(run) = schedule
                    .last_run
                    .as_ref()
                    .filter(|run| run.state.is_terminal())
                {
                    metrics.schedule_ran(
                        &schedule.id,
                        schedule.type_id(),
                        epoch_seconds(run.time),
                        run.state == OperationState::Completed,
                    );
                    if let Some(retention) =
                        run.retention.as_ref().filter(|r| r.state.is_terminal())
                    {
                        metrics.schedule_retention_ran(
                            &schedule.id,
                            schedule.type_id(),
                            retention.state == OperationState::Completed,
                        );
                    }
                    // At the first look the freshness was read above already.
                    if !first_look && schedule.type_id() == "backup" {
                        self.refresh_freshness(&schedule);
                    }
                }
                known.last_run = schedule.last_run.clone();
            }
            if let Some(tick) = tick {
                due.push(Due {
                    interval: known
                        .intervals
                        .map_or(Duration::ZERO, |(_, longest)| longest),
                    schedule,
                    tick,
                });
            }
        }
        followed.retain(|id, known| {
            let keep = seen.contains(id);
            if !keep {
                metrics.schedule_forgotten(id, &known.type_id);
            }
            keep
        });
        due
    }

    /// Sets the schedule's backup freshness from the newest of its backups in the bucket, in a task of its own: the
    /// bucket may be slow, and the runner must not miss a tick for it. A bucket that cannot be read leaves the gauge
    /// as it was (an alert on the backup's age then sees it growing, which is the truth as far as anyone knows). A
    /// schedule deleted while the bucket was read loses the series the read set.
    fn refresh_freshness(&self, schedule: &Schedule) {
        let services = Arc::clone(self.services());
        let store = Arc::clone(&self.store);
        let operation = schedule.operation.clone();
        let schedule = schedule.id.clone();
        tokio::spawn(async move {
            match crate::freshness::refresh_from_bucket(&services, &operation, Some(&schedule))
                .await
            {
                Ok(Some(newest)) => {
                    tracing::debug!(schedule, %newest, "backup freshness read from the bucket");
                }
                Ok(None) => {
                    tracing::debug!(schedule, "no backup of the schedule in the bucket yet")
                }
                Err(error) => {
                    tracing::warn!(schedule, %error, "could not read the schedule's newest backup from the bucket");
                }
            }
            if let Ok(None) = store.get(&schedule).await {
                services.metrics.schedule_freshness_forgotten(&schedule);
            }
        });
    }

    /// Claims the tick, waits its jitter, submits and follows the operation to its end. The metrics of the run come
    /// from the `lastRun` it records, at the next look (as on every sidecar following the schedule).
    async fn run_tick(self: Arc<Self>, due: Due, stop: CancellationToken) {
        let Due {
            schedule,
            tick,
            interval,
        } = due;
        let id = schedule.id.as_str();
        let jitter = schedule.jitter_duration();
        let hold = ((interval + jitter) * 2).clamp(SHORTEST_HOLD, LONGEST_HOLD);
        match self.store.claim(id, tick.timestamp(), hold).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(schedule = id, %tick, "another sidecar runs this tick");
                return;
            }
            Err(error) => {
                tracing::warn!(schedule = id, %tick, %error, "could not claim a tick; trying again at the next look");
                let mut retry = crate::sync::lock(&self.retry);
                let pending = retry.entry(id.to_string()).or_insert(tick);
                *pending = (*pending).max(tick);
                return;
            }
        }
        if !jitter.is_zero() {
            let delay = Duration::from_millis(fastrand::u64(
                0..u64::try_from(jitter.as_millis()).unwrap_or(u64::MAX).max(1),
            ));
            tokio::select! {
                _ = stop.cancelled() => {
                    self.release(id, tick).await;
                    return;
                }
                _ = tokio::time::sleep(delay) => {}
            }
        }
        // Deleted while it waited: the run goes with it.
        match self.store.get(id).await {
            Ok(Some(current)) => {
                // Two runs of one schedule at once would race each other (a backup's snapshot has the schedule's
                // tag): a tick that comes while the last run is unfinished is skipped.
                if let Some(running) = self.unfinished_run(&current) {
                    tracing::warn!(schedule = id, %tick, operation = %running, "tick skipped: the schedule's last run is still unfinished");
                    return;
                }
            }
            Ok(None) => {
                self.release(id, tick).await;
                return;
            }
            Err(error) => {
                tracing::warn!(schedule = id, %error, "could not read the schedule before its run; running it as it was");
            }
        }
        let record = match self.submit(&schedule.operation).await {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!(schedule = id, %tick, %error, "a scheduled run could not be submitted");
                self.record(id, LastRun::refused(Utc::now(), error)).await;
                return;
            }
        };
        tracing::info!(schedule = id, %tick, operation = %record.id(), r#type = schedule.type_id(), "scheduled run submitted");
        let submitted = Utc::now();
        let ended = self
            .follow(id, &record, &stop, |state| LastRun {
                operation_id: Some(record.id()),
                state,
                time: submitted,
                error: failure(&record, state),
                retention: None,
            })
            .await;
        if ended != Some(OperationState::Completed) || schedule.type_id() != "backup" {
            return;
        }
        let Some(body) = retention_request(&schedule, record.response().as_ref()) else {
            return;
        };
        // Deleted while its backup ran: nothing of it is to be pruned any more.
        match self.store.get(id).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                tracing::info!(
                    schedule = id,
                    "schedule deleted while its backup ran; no retention run"
                );
                return;
            }
            Err(error) => {
                tracing::warn!(schedule = id, %error, "could not read the schedule before its retention run; running it");
            }
        }
        let backup = LastRun {
            operation_id: Some(record.id()),
            state: OperationState::Completed,
            time: submitted,
            error: None,
            retention: None,
        };
        self.run_retention(id, backup, &body, &stop).await;
    }

    /// Submits the retention `remove-backup` of the completed `backup` and records it under `lastRun.retention` as it
    /// goes, so that a removal that fails (the bucket keeps growing) shows in the schedule and its metrics.
    async fn run_retention(
        &self,
        id: &str,
        backup: LastRun,
        body: &Map<String, Value>,
        stop: &CancellationToken,
    ) {
        let with = |retention: RetentionRun| LastRun {
            retention: Some(retention),
            ..backup.clone()
        };
        let removal = match self.submit(body).await {
            Ok(removal) => removal,
            Err(error) => {
                tracing::warn!(schedule = id, %error, "the retention run could not be submitted");
                let refused = RetentionRun {
                    operation_id: None,
                    state: OperationState::Failed,
                    error: Some(error),
                };
                self.record(id, with(refused)).await;
                return;
            }
        };
        tracing::info!(schedule = id, operation = %removal.id(), "retention run submitted");
        self.follow(id, &removal, stop, |state| {
            with(RetentionRun {
                operation_id: Some(removal.id()),
                state,
                error: failure(&removal, state),
            })
        })
        .await;
    }

    /// Gives the claim of a run abandoned before it was submitted back, so a catching-up sidecar may run the tick.
    async fn release(&self, id: &str, tick: DateTime<Utc>) {
        if let Err(error) = self.store.release(id, tick.timestamp()).await {
            tracing::warn!(schedule = id, %tick, %error, "could not give up the claim of an abandoned run; it ends with its lease");
        }
    }

    /// Records `last_run(state)` as schedule `id`'s `lastRun` at each state `record` takes until it ends (its state at
    /// the start first); the state it ended in, or `None` when the runner stopped first (the operation is the
    /// executor's then).
    async fn follow(
        &self,
        id: &str,
        record: &OperationRecord,
        stop: &CancellationToken,
        last_run: impl Fn(OperationState) -> LastRun,
    ) -> Option<OperationState> {
        let mut recorded = None;
        loop {
            let state = record.state();
            if recorded != Some(state) {
                self.record(id, last_run(state)).await;
                recorded = Some(state);
            }
            if state.is_terminal() {
                return Some(state);
            }
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = tokio::time::sleep(POLL_RUN) => {}
            }
        }
    }

    /// The schedule's last operation, when the operation store has it unfinished.
    fn unfinished_run(&self, schedule: &Schedule) -> Option<uuid::Uuid> {
        let operation = schedule.last_run.as_ref()?.operation_id?;
        let record = self.services().store.get(&operation)?;
        (!record.state().is_terminal()).then_some(operation)
    }

    async fn record(&self, id: &str, run: LastRun) {
        if let Err(error) = self.store.record_run(id, run).await {
            tracing::warn!(schedule = id, %error, "could not record a schedule's last run");
        }
    }

    /// Submits a body as `POST /operations` does; the error text when it is refused.
    async fn submit(&self, body: &Map<String, Value>) -> Result<Arc<OperationRecord>, String> {
        let prepared = self
            .registry
            .prepare(Value::Object(body.clone()))
            .map_err(|error| error.to_string())?;
        self.executor
            .submit(prepared)
            .await
            .map_err(|error| error.to_string())
    }

    /// Waits for the runs in flight (tests; at shutdown the executor ends their operations).
    pub async fn wait_for_runs(&self) {
        self.runs.close();
        self.runs.wait().await;
    }
}

/// The `remove-backup` that applies a backup schedule's retention: the backup's connection (and cluster-wide
/// when it was), the schedule's tag, `keepLast` and `olderThan` (its `maxAge`). A node-local backup given a bucket
/// only completes its location from Cassandra; the removal takes the location the backup answered with
/// (`completed`'s `storageLocation`), so it prunes exactly the prefix the backup wrote to.
pub fn retention_request(
    schedule: &Schedule,
    completed: Option<&Value>,
) -> Option<Map<String, Value>> {
    let retention = schedule.retention.as_ref()?;
    let mut body = Map::new();
    body.insert("type".into(), Value::String("remove-backup".into()));
    for field in CONNECTION_FIELDS {
        if let Some(value) = schedule.operation.get(field) {
            body.insert(field.into(), value.clone());
        }
    }
    let global = schedule.is_global();
    if !global
        && let Some(location) = completed
            .and_then(|response| response.get("storageLocation"))
            .filter(|location| location.is_string())
    {
        body.insert("storageLocation".into(), location.clone());
        body.remove("resolveNodes");
    }
    if let Some(tag) = schedule.operation.get("snapshotTag") {
        body.insert("snapshotTag".into(), tag.clone());
    }
    if let Some(keep_last) = retention.keep_last {
        body.insert("keepLast".into(), Value::from(keep_last));
    }
    if let Some(max_age) = &retention.max_age {
        body.insert("olderThan".into(), Value::String(max_age.clone()));
    }
    Some(body)
}

/// Why an operation that ended FAILED failed, as its errors say: the first, and how many more there are.
fn failure(record: &OperationRecord, state: OperationState) -> Option<String> {
    if state != OperationState::Failed {
        return None;
    }
    let errors = record.status().errors;
    let first = errors.first()?;
    Some(match errors.len() {
        1 => first.message.clone(),
        count => format!("{} (and {} more)", first.message, count - 1),
    })
}

fn epoch_seconds(at: DateTime<Utc>) -> f64 {
    at.timestamp_millis() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation_store::{InMemoryStore, OperationFilter, OperationStore};
    use crate::schedule::store::InMemoryScheduleStore;
    use crate::schedule::{Retention, ScheduleRules};
    use crate::types::{TypeOptions, registry};
    use serde_json::json;
    use tokio::runtime::Handle;

    struct Fixture {
        store: Arc<InMemoryScheduleStore>,
        operations: Arc<dyn OperationStore>,
        runner: Arc<ScheduleRunner>,
        rules: ScheduleRules,
        metrics: Arc<crate::metrics::Metrics>,
    }

    fn fixture() -> Fixture {
        let operations: Arc<dyn OperationStore> = Arc::new(InMemoryStore::new());
        let metrics: Arc<crate::metrics::Metrics> = Default::default();
        let services = Arc::new(Services {
            source: "test-host".into(),
            jmx: crate::JmxConnector::new(Default::default(), Handle::current()),
            storage: Default::default(),
            cql: Default::default(),
            peers: Default::default(),
            metrics: Arc::clone(&metrics),
            store: Arc::clone(&operations),
            local: Default::default(),
            shutdown_request: CancellationToken::new(),
        });
        let executor = Arc::new(Executor::new(services, 4, Handle::current()));
        let registry = Arc::new(registry(TypeOptions {
            enable_test_operations: true,
            ..TypeOptions::default()
        }));
        let store = Arc::new(InMemoryScheduleStore::new(10));
        let runner = ScheduleRunner::new(
            Arc::clone(&store) as Arc<dyn ScheduleStore>,
            Arc::clone(&registry),
            executor,
        );
        Fixture {
            store,
            operations,
            runner,
            rules: ScheduleRules::new(registry, &["sleep"]),
            metrics,
        }
    }

    impl Fixture {
        /// A schedule of a `sleep` of `duration` on `cron`, created at `created_at`.
        fn sleeping(&self, cron: &str, duration: &str, created_at: DateTime<Utc>) -> Schedule {
            self.rules
                .schedule(
                    json!({"cron": cron, "operation": {"type": "sleep", "duration": duration}}),
                    created_at,
                )
                .unwrap()
        }
    }

    fn sleeps(operations: &Arc<dyn OperationStore>) -> Vec<Arc<OperationRecord>> {
        let filter = OperationFilter {
            types: ["sleep".to_string()].into(),
            ..Default::default()
        };
        operations.list(&filter)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_schedule_every_second_runs_records_its_last_run_and_stops_when_deleted() {
        let f = fixture();
        let schedule = f.sleeping("* * * * * *", "100ms", Utc::now());
        let id = schedule.id.clone();
        f.store.insert(schedule).await.unwrap();
        let stop = CancellationToken::new();
        let running = tokio::spawn(Arc::clone(&f.runner).run(stop.clone()));
        tokio::time::sleep(Duration::from_millis(3500)).await;
        let runs = sleeps(&f.operations).len();
        assert!((2..=5).contains(&runs), "{runs} runs in 3.5 s");
        let last = f.store.get(&id).await.unwrap().unwrap().last_run.unwrap();
        assert!(last.operation_id.is_some(), "{last:?}");
        assert!(last.error.is_none(), "{last:?}");
        let text = f.metrics.encode();
        assert!(
            text.contains(&format!(
                "daedalus_schedule_last_run_success{{schedule=\"{id}\",type=\"sleep\"}} 1"
            )),
            "{text}"
        );
        assert!(
            text.contains("daedalus_schedule_next_run_timestamp_seconds{"),
            "{text}"
        );
        // Deleted: no more runs, and its series go.
        f.store.remove(&id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let after_delete = sleeps(&f.operations).len();
        tokio::time::sleep(Duration::from_millis(2000)).await;
        assert_eq!(sleeps(&f.operations).len(), after_delete);
        assert!(
            !f.metrics.encode().contains(&format!("schedule=\"{id}\"")),
            "{}",
            f.metrics.encode()
        );
        stop.cancel();
        running.await.unwrap();
        f.runner.wait_for_runs().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tick_that_comes_while_the_last_run_is_unfinished_is_skipped() {
        let f = fixture();
        let schedule = f.sleeping("* * * * * *", "10s", Utc::now());
        let id = schedule.id.clone();
        f.store.insert(schedule).await.unwrap();
        let stop = CancellationToken::new();
        let running = tokio::spawn(Arc::clone(&f.runner).run(stop.clone()));
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert_eq!(sleeps(&f.operations).len(), 1);
        let last = f.store.get(&id).await.unwrap().unwrap().last_run.unwrap();
        assert_eq!(last.state, OperationState::Running, "{last:?}");
        stop.cancel();
        running.await.unwrap();
        f.runner.wait_for_runs().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tick_missed_while_down_runs_once_at_start() {
        let f = fixture();
        // Hourly, created a day ago, last run three hours ago: many ticks missed, one run.
        let mut schedule = f.sleeping(
            "0 0 * * * *",
            "10ms",
            Utc::now() - chrono::Duration::days(1),
        );
        schedule.last_run = Some(LastRun {
            operation_id: None,
            state: OperationState::Completed,
            time: Utc::now() - chrono::Duration::hours(3),
            error: None,
            retention: None,
        });
        let id = schedule.id.clone();
        f.store.insert(schedule).await.unwrap();
        // One that ran after its latest tick misses nothing.
        let mut recent = f.sleeping(
            "0 0 0 1 1 *",
            "10ms",
            Utc::now() - chrono::Duration::days(800),
        );
        recent.last_run = Some(LastRun {
            operation_id: None,
            state: OperationState::Completed,
            time: Utc::now(),
            error: None,
            retention: None,
        });
        f.store.insert(recent).await.unwrap();
        let stop = CancellationToken::new();
        let running = tokio::spawn(Arc::clone(&f.runner).run(stop.clone()));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(sleeps(&f.operations).len(), 1);
        let last = f.store.get(&id).await.unwrap().unwrap().last_run.unwrap();
        assert_eq!(last.state, OperationState::Completed, "{last:?}");
        stop.cancel();
        running.await.unwrap();
        f.runner.wait_for_runs().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_that_cannot_be_submitted_is_recorded_as_failed() {
        let f = fixture();
        let mut schedule = f.sleeping("* * * * * *", "10ms", Utc::now());
        // As a shared store could hold it after an upgrade took a type away.
        schedule.operation.insert("type".into(), json!("vanished"));
        let id = schedule.id.clone();
        f.store.insert(schedule).await.unwrap();
        let stop = CancellationToken::new();
        let running = tokio::spawn(Arc::clone(&f.runner).run(stop.clone()));
        tokio::time::sleep(Duration::from_millis(2200)).await;
        let last = f.store.get(&id).await.unwrap().unwrap().last_run.unwrap();
        assert_eq!(last.state, OperationState::Failed);
        assert_eq!(last.operation_id, None);
        assert!(last.error.unwrap().contains("vanished"));
        stop.cancel();
        running.await.unwrap();
        f.runner.wait_for_runs().await;
    }

    /// Two sidecars' views of one shared store (as etcd is): claims are first come, first served.
    #[derive(Debug)]
    struct Shared {
        schedules: Arc<InMemoryScheduleStore>,
        claims: Arc<std::sync::Mutex<std::collections::HashMap<(String, i64), String>>>,
        me: String,
        /// This many claims fail with an error before they work (etcd away for a moment).
        failing_claims: std::sync::atomic::AtomicUsize,
        /// How long each claim was to be held.
        holds: std::sync::Mutex<Vec<Duration>>,
    }

    impl Shared {
        fn new(
            schedules: &Arc<InMemoryScheduleStore>,
            claims: &Arc<std::sync::Mutex<std::collections::HashMap<(String, i64), String>>>,
            me: &str,
        ) -> Self {
            Shared {
                schedules: Arc::clone(schedules),
                claims: Arc::clone(claims),
                me: me.into(),
                failing_claims: Default::default(),
                holds: Default::default(),
            }
        }
    }

    impl ScheduleStore for Shared {
        fn list(
            &self,
        ) -> futures_util::future::BoxFuture<
            '_,
            Result<Vec<Schedule>, crate::schedule::ScheduleStoreError>,
        > {
            self.schedules.list()
        }
        fn get<'a>(
            &'a self,
            id: &'a str,
        ) -> futures_util::future::BoxFuture<
            'a,
            Result<Option<Schedule>, crate::schedule::ScheduleStoreError>,
        > {
            self.schedules.get(id)
        }
        fn insert(
            &self,
            schedule: Schedule,
        ) -> futures_util::future::BoxFuture<'_, Result<(), crate::schedule::ScheduleStoreError>>
        {
            self.schedules.insert(schedule)
        }
        fn remove<'a>(
            &'a self,
            id: &'a str,
        ) -> futures_util::future::BoxFuture<'a, Result<bool, crate::schedule::ScheduleStoreError>>
        {
            self.schedules.remove(id)
        }
        fn record_run<'a>(
            &'a self,
            id: &'a str,
            run: LastRun,
        ) -> futures_util::future::BoxFuture<'a, Result<(), crate::schedule::ScheduleStoreError>>
        {
            self.schedules.record_run(id, run)
        }
        fn claim<'a>(
            &'a self,
            id: &'a str,
            tick: i64,
            hold: Duration,
        ) -> futures_util::future::BoxFuture<'a, Result<bool, crate::schedule::ScheduleStoreError>>
        {
            use futures_util::FutureExt;
            use std::sync::atomic::Ordering;
            self.holds.lock().unwrap().push(hold);
            if self
                .failing_claims
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return async {
                    Err(crate::schedule::ScheduleStoreError::Unavailable(
                        "etcd away".into(),
                    ))
                }
                .boxed();
            }
            let mut claims = self.claims.lock().unwrap();
            let holder = claims
                .entry((id.to_string(), tick))
                .or_insert_with(|| self.me.clone());
            let mine = *holder == self.me;
            async move { Ok(mine) }.boxed()
        }
        fn release<'a>(
            &'a self,
            id: &'a str,
            tick: i64,
        ) -> futures_util::future::BoxFuture<'a, Result<(), crate::schedule::ScheduleStoreError>>
        {
            use futures_util::FutureExt;
            let mut claims = self.claims.lock().unwrap();
            if claims.get(&(id.to_string(), tick)) == Some(&self.me) {
                claims.remove(&(id.to_string(), tick));
            }
            async { Ok(()) }.boxed()
        }
        fn sidecar(&self) -> Option<String> {
            Some(self.me.clone())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sidecars_sharing_a_store_run_each_tick_of_a_global_schedule_once_and_local_ones_at_home()
     {
        let (a, b) = (fixture(), fixture());
        let claims = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
        let runner = |f: &Fixture, me: &str| {
            ScheduleRunner::new(
                Arc::new(Shared::new(&a.store, &claims, me)),
                Arc::new(registry(TypeOptions {
                    enable_test_operations: true,
                    ..TypeOptions::default()
                })),
                Arc::clone(&f.runner.executor),
            )
        };
        let (on_a, on_b) = (runner(&a, "a"), runner(&b, "b"));
        let body = |global: bool| {
            json!({"cron": "* * * * * *",
                "operation": {"type": "sleep", "duration": "10ms", "globalRequest": global}})
        };
        let global = a.rules.schedule(body(true), Utc::now()).unwrap();
        assert!(global.is_global());
        a.store.insert(global).await.unwrap();
        let mut local = a.rules.schedule(body(false), Utc::now()).unwrap();
        local.sidecar = Some("b".into());
        let local_id = local.id.clone();
        a.store.insert(local).await.unwrap();
        let stop = CancellationToken::new();
        let runs = [
            tokio::spawn(Arc::clone(&on_a).run(stop.clone())),
            tokio::spawn(Arc::clone(&on_b).run(stop.clone())),
        ];
        tokio::time::sleep(Duration::from_millis(3500)).await;
        stop.cancel();
        for run in runs {
            run.await.unwrap();
        }
        on_a.wait_for_runs().await;
        on_b.wait_for_runs().await;
        let claims = claims.lock().unwrap().clone();
        let (on_a_ops, on_b_ops) = (sleeps(&a.operations), sleeps(&b.operations));
        // Every claim ran once, on its holder; nothing ran unclaimed.
        assert_eq!(on_a_ops.len() + on_b_ops.len(), claims.len(), "{claims:?}");
        assert!(claims.len() >= 4, "{claims:?}");
        // The local schedule's ticks all went to its sidecar.
        assert!(
            claims
                .iter()
                .filter(|((id, _), _)| *id == local_id)
                .all(|(_, holder)| holder == "b"),
            "{claims:?}"
        );
        assert!(
            claims.iter().any(|((id, _), _)| *id == local_id),
            "{claims:?}"
        );
    }

    #[test]
    fn retention_repeats_the_backups_connection_with_the_schedules_tag() {
        let schedule = Schedule {
            id: "s".into(),
            cron: "0 3 * * *".into(),
            timezone: "UTC".into(),
            operation: json!({"type": "backup", "storageLocation": "s3://b/c/dc/n",
                "globalRequest": true, "snapshotTag": "schedule-s", "dc": "dc1",
                "proxySettings": {"useProxy": true}, "entities": "ks"})
            .as_object()
            .unwrap()
            .clone(),
            retention: Some(Retention {
                keep_last: Some(7),
                max_age: Some("30d".into()),
            }),
            jitter: None,
            created_at: Utc::now(),
            last_run: None,
            sidecar: None,
        };
        assert_eq!(
            Value::Object(retention_request(&schedule, None).unwrap()),
            json!({"type": "remove-backup", "storageLocation": "s3://b/c/dc/n",
                "proxySettings": {"useProxy": true}, "globalRequest": true,
                "snapshotTag": "schedule-s", "keepLast": 7, "olderThan": "30d"})
        );
        let without = Schedule {
            retention: None,
            ..schedule
        };
        assert_eq!(retention_request(&without, None), None);
    }

    /// A node-local backup given only a bucket answered with its node's location: the removal prunes that prefix.
    #[test]
    fn a_node_local_retention_removes_where_the_backup_wrote() {
        let schedule = Schedule {
            id: "s".into(),
            cron: "0 3 * * *".into(),
            timezone: "UTC".into(),
            operation: json!({"type": "backup", "storageLocation": "s3://b", "resolveNodes": true,
                "snapshotTag": "nightly"})
            .as_object()
            .unwrap()
            .clone(),
            retention: Some(Retention {
                keep_last: Some(2),
                max_age: None,
            }),
            jitter: None,
            created_at: Utc::now(),
            last_run: None,
            sidecar: None,
        };
        let completed = json!({"snapshotTag": "nightly-x-1", "storageLocation": "s3://b/c/dc1/n1"});
        assert_eq!(
            Value::Object(retention_request(&schedule, Some(&completed)).unwrap()),
            json!({"type": "remove-backup", "storageLocation": "s3://b/c/dc1/n1",
                "snapshotTag": "nightly", "keepLast": 2})
        );
        let global = Schedule {
            operation: json!({"type": "backup", "storageLocation": "s3://b", "globalRequest": true,
                "snapshotTag": "nightly"})
            .as_object()
            .unwrap()
            .clone(),
            ..schedule
        };
        assert_eq!(
            retention_request(&global, Some(&completed)).unwrap()["storageLocation"],
            "s3://b",
            "a cluster-wide removal goes over every node's prefix of the bucket"
        );
    }

    fn shared_runner(f: &Fixture, shared: Arc<Shared>) -> Arc<ScheduleRunner> {
        ScheduleRunner::new(
            shared,
            Arc::new(registry(TypeOptions {
                enable_test_operations: true,
                ..TypeOptions::default()
            })),
            Arc::clone(&f.runner.executor),
        )
    }

    /// Hourly, created a day ago, never run: its latest tick is missed and run at the first look.
    fn missed_hourly(f: &Fixture, jitter: Option<&str>) -> Schedule {
        let mut body =
            json!({"cron": "0 0 * * * *", "operation": {"type": "sleep", "duration": "10ms"}});
        if let Some(jitter) = jitter {
            body["jitter"] = json!(jitter);
        }
        f.rules
            .schedule(body, Utc::now() - chrono::Duration::days(1))
            .unwrap()
    }

    /// A sidecar that did not run a cluster-wide schedule's tick exports its end as the one that ran it does: from
    /// the stored lastRun, at its time, once per change.
    #[tokio::test]
    async fn the_metrics_follow_the_stored_last_run_whoever_ran_it() {
        let f = fixture();
        let mut schedule = f.sleeping("0 0 3 * * *", "10ms", Utc::now());
        let id = schedule.id.clone();
        let series = |name: &str| {
            let text = f.metrics.encode();
            let prefix = format!("daedalus_{name}{{schedule=\"{id}\",type=\"sleep\"}} ");
            text.lines()
                .find_map(|line| line.strip_prefix(&prefix).map(str::to_string))
        };
        let ran_at = |text: &str| {
            DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&Utc)
        };
        let mut followed = HashMap::new();
        let now = Utc::now();
        // Another sidecar ran it, and it failed.
        schedule.last_run = Some(LastRun {
            operation_id: Some(uuid::Uuid::new_v4()),
            state: OperationState::Failed,
            time: ran_at("2026-01-01T03:00:02Z"),
            error: None,
            retention: None,
        });
        f.runner.look(&mut followed, vec![schedule.clone()], now);
        assert_eq!(series("schedule_last_run_success").as_deref(), Some("0"));
        assert_eq!(
            series("schedule_last_run_timestamp_seconds").as_deref(),
            Some("1767236402.0")
        );
        // The next run, elsewhere, is still going: the last ended one stays.
        schedule.last_run = Some(LastRun {
            operation_id: Some(uuid::Uuid::new_v4()),
            state: OperationState::Running,
            time: ran_at("2026-01-02T03:00:01Z"),
            error: None,
            retention: None,
        });
        f.runner.look(&mut followed, vec![schedule.clone()], now);
        assert_eq!(series("schedule_last_run_success").as_deref(), Some("0"));
        // It completed.
        schedule.last_run.as_mut().unwrap().state = OperationState::Completed;
        f.runner.look(&mut followed, vec![schedule.clone()], now);
        assert_eq!(series("schedule_last_run_success").as_deref(), Some("1"));
        assert_eq!(
            series("schedule_last_run_timestamp_seconds").as_deref(),
            Some("1767322801.0")
        );
    }

    /// A retention run that fails, and one that cannot be submitted, show under `lastRun.retention` with why, and in
    /// `daedalus_schedule_last_retention_success`: a bucket that keeps growing is seen, also after the removal's
    /// operation has expired.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_retention_run_is_recorded_with_why_and_in_the_metrics() {
        let f = fixture();
        let schedule = f.sleeping("0 0 3 * * *", "10ms", Utc::now());
        let id = schedule.id.clone();
        f.store.insert(schedule).await.unwrap();
        let backup = LastRun {
            operation_id: Some(uuid::Uuid::new_v4()),
            state: OperationState::Completed,
            time: Utc::now(),
            error: None,
            retention: None,
        };
        let stop = CancellationToken::new();
        let retention_after = async |body: Value| {
            let body = body.as_object().unwrap();
            f.runner
                .run_retention(&id, backup.clone(), body, &stop)
                .await;
            f.store.get(&id).await.unwrap().unwrap()
        };
        let success = |schedule: Schedule| {
            let mut followed = HashMap::new();
            f.runner.look(&mut followed, vec![schedule], Utc::now());
            let prefix = format!(
                "daedalus_schedule_last_retention_success{{schedule=\"{id}\",type=\"sleep\"}} "
            );
            f.metrics
                .encode()
                .lines()
                .find_map(|line| line.strip_prefix(&prefix).map(str::to_string))
        };

        // The bucket is a file, not a directory: the removal runs and fails.
        let not_a_directory = tempfile::NamedTempFile::new().unwrap();
        let failed = retention_after(json!({"type": "remove-backup",
            "storageLocation": format!("file://{}/cluster/dc/node", not_a_directory.path().display()),
            "snapshotTag": "schedule-s", "keepLast": 1}))
        .await;
        let last = failed.last_run.clone().unwrap();
        assert_eq!(
            (last.operation_id, last.state),
            (backup.operation_id, OperationState::Completed),
            "the backup's own record stays: {last:?}"
        );
        let retention = last.retention.unwrap();
        assert_eq!(retention.state, OperationState::Failed, "{retention:?}");
        assert!(retention.operation_id.is_some(), "{retention:?}");
        assert!(
            retention.error.as_deref().is_some_and(|e| !e.is_empty()),
            "{retention:?}"
        );
        assert_eq!(success(failed).as_deref(), Some("0"));

        // Refused at submission: no operation, the refusal as the error.
        let refused = retention_after(json!({"type": "remove-backup",
            "storageLocation": "file:///tmp/bucket/cluster/dc/node", "snapshotTag": "schedule-s", "keepLast": 0}))
        .await;
        let retention = refused.last_run.clone().unwrap().retention.unwrap();
        assert_eq!(
            (retention.operation_id, retention.state),
            (None, OperationState::Failed)
        );
        assert!(
            retention
                .error
                .as_deref()
                .unwrap_or_default()
                .contains("keepLast"),
            "{retention:?}"
        );
        assert_eq!(success(refused).as_deref(), Some("0"));
    }

    /// A cron no date matches (in a store written by hand, or from before it was refused) is searched once, not at
    /// every look, and never runs.
    #[tokio::test]
    async fn a_cron_without_a_future_tick_is_not_searched_again() {
        let f = fixture();
        let mut schedule = f.sleeping(
            "0 0 3 * * *",
            "10ms",
            Utc::now() - chrono::Duration::days(3),
        );
        schedule.cron = "0 0 0 31 2 *".into();
        let id = schedule.id.clone();
        let mut followed = HashMap::new();
        assert_eq!(
            f.runner
                .look(&mut followed, vec![schedule.clone()], Utc::now()),
            []
        );
        assert_eq!(followed[&id].next, None);
        let started = std::time::Instant::now();
        for _ in 0..30 {
            assert_eq!(
                f.runner
                    .look(&mut followed, vec![schedule.clone()], Utc::now()),
                []
            );
        }
        // A search for February 31st takes tens of milliseconds; thirty of them would take over a second.
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
        assert!(
            !f.metrics
                .encode()
                .contains("daedalus_schedule_next_run_timestamp_seconds{"),
            "{}",
            f.metrics.encode()
        );
    }

    /// A claim that failed with an error (etcd away for a moment) is tried again at the next look, and the tick runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_claim_that_failed_is_tried_again() {
        let f = fixture();
        let claims = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
        let shared = Arc::new(Shared::new(&f.store, &claims, "a"));
        shared
            .failing_claims
            .store(2, std::sync::atomic::Ordering::SeqCst);
        let runner = shared_runner(&f, Arc::clone(&shared));
        f.store.insert(missed_hourly(&f, None)).await.unwrap();
        let stop = CancellationToken::new();
        let running = tokio::spawn(Arc::clone(&runner).run(stop.clone()));
        tokio::time::sleep(Duration::from_millis(3800)).await;
        stop.cancel();
        running.await.unwrap();
        runner.wait_for_runs().await;
        assert_eq!(sleeps(&f.operations).len(), 1);
        assert_eq!(shared.holds.lock().unwrap().len(), 3);
        // An hourly cron: twice its hour, not the old hour's minimum of one.
        assert!(
            shared
                .holds
                .lock()
                .unwrap()
                .iter()
                .all(|hold| *hold == Duration::from_secs(7200)),
            "{:?}",
            shared.holds.lock().unwrap()
        );
    }

    /// A sidecar stopped while its run waited out the jitter gives the claim back, so a sidecar catching up on the
    /// missed tick may claim it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_abandoned_in_its_jitter_releases_its_claim() {
        let f = fixture();
        let claims = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
        let shared = Arc::new(Shared::new(&f.store, &claims, "a"));
        let runner = shared_runner(&f, Arc::clone(&shared));
        // The jitter is almost all of the hour: the run waits long.
        f.store
            .insert(missed_hourly(&f, Some("59m")))
            .await
            .unwrap();
        let stop = CancellationToken::new();
        let running = tokio::spawn(Arc::clone(&runner).run(stop.clone()));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(claims.lock().unwrap().len(), 1, "claimed");
        stop.cancel();
        running.await.unwrap();
        runner.wait_for_runs().await;
        assert!(claims.lock().unwrap().is_empty(), "{claims:?}");
        assert!(sleeps(&f.operations).is_empty());
        // Held twice an hour and its jitter.
        assert_eq!(
            *shared.holds.lock().unwrap(),
            [Duration::from_secs(2 * (3600 + 59 * 60))]
        );
    }

    /// A schedule deleted while its run was in flight: the run's end brings none of its series back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_ending_after_its_schedule_was_deleted_leaves_no_series() {
        let f = fixture();
        let schedule = f.sleeping("* * * * * *", "1500ms", Utc::now());
        let id = schedule.id.clone();
        f.store.insert(schedule).await.unwrap();
        let stop = CancellationToken::new();
        let running = tokio::spawn(Arc::clone(&f.runner).run(stop.clone()));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sleeps(&f.operations).is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(sleeps(&f.operations).len(), 1);
        f.store.remove(&id).await.unwrap();
        f.metrics.schedule_forgotten(&id, "sleep");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let ended = sleeps(&f.operations);
        assert!(ended.iter().all(|run| run.state().is_terminal()));
        let text = f.metrics.encode();
        assert!(!text.contains(&format!("schedule=\"{id}\"")), "{text}");
        stop.cancel();
        running.await.unwrap();
        f.runner.wait_for_runs().await;
    }
}
