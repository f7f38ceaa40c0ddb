//! Schedules: an operation (a backup, a commit-log backup or a verify) submitted on a cron, with an optional
//! retention run after each completed backup.
//!
//! - [`request`] turns a `POST /schedules` body (or an entry of `--schedules-file`, [`file`](mod@file)) into a
//!   [`Schedule`], validating the inner operation with the registry's own rules without running it.
//! - [`cron`] reads a cron expression in a time zone: the ticks, and the gaps between them.
//! - [`store`] is where schedules live: [`ScheduleStore`], in memory there; with `--store etcd`, `etcd`
//!   (`EtcdScheduleStore`) on the operation store's plain keys (`operation_store::etcd::EtcdKeys`). It sits
//!   here, not in `operation_store`, because this module already depends on the operation store (through the
//!   executor): the other way round would be a module cycle.
//! - [`runner`] follows the store: at each tick (after a missed one, once) it claims the run, waits its jitter,
//!   skips the tick while the last run is unfinished, submits the operation through the registry and the executor,
//!   records `lastRun`, and after a completed backup submits its retention `remove-backup`.

pub mod cron;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod file;
pub mod request;
pub mod runner;
pub mod store;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

pub use request::{ScheduleRequestError, ScheduleRules};
pub use runner::ScheduleRunner;
pub use store::{InMemoryScheduleStore, ScheduleStore, ScheduleStoreError};

use self::cron::CronSchedule;
use crate::state::OperationState;

/// The operation types a schedule may run in production.
pub const SCHEDULABLE_TYPES: [&str; 3] = ["backup", "commitlog-backup", "verify"];

/// The most schedules a store keeps unless `--max-schedules` says otherwise.
pub const DEFAULT_MAX_SCHEDULES: usize = 100;

/// A schedule as stored (in memory, or as the JSON value of its etcd key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    pub id: String,
    pub cron: String,
    /// IANA name; `UTC` when the request gave none.
    pub timezone: String,
    /// The operation's body as it is submitted at each run (with `type`; a backup's `snapshotTag` filled in).
    pub operation: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// As given (`"5m"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<LastRun>,
    /// The sidecar that runs a node-local schedule of a shared store (etcd); `None`: whoever claims the tick
    /// (a cluster-wide schedule), or this sidecar (in memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar: Option<String>,
}

/// What is removed after each completed backup of a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// Keep this many newest backups of the schedule (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Remove backups older than this (`"30d"`), as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
}

/// The last run of a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastRun {
    /// The operation submitted; `None` when it could not be submitted (then `error` says why).
    pub operation_id: Option<Uuid>,
    pub state: OperationState,
    /// When it was submitted (or tried to be).
    pub time: DateTime<Utc>,
    /// Why it could not be submitted, or why it ended FAILED: kept here because the operation itself expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The `remove-backup` of the schedule's retention, once a completed backup submitted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionRun>,
}

/// The retention run that followed a schedule's completed backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionRun {
    /// The `remove-backup` submitted; `None` when it could not be submitted (then `error` says why).
    pub operation_id: Option<Uuid>,
    pub state: OperationState,
    /// Why it could not be submitted, or why it ended FAILED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl LastRun {
    /// A run that could not be submitted: FAILED, with no operation, and `error` saying why.
    pub fn refused(time: DateTime<Utc>, error: String) -> LastRun {
        LastRun {
            operation_id: None,
            state: OperationState::Failed,
            time,
            error: Some(error),
            retention: None,
        }
    }

    /// Whether this may be written over `stored`: it is news of the same run, or of a run submitted no earlier.
    /// A runner that follows an older run (its retention, say) must not hide a newer run another runner recorded.
    pub fn replaces(&self, stored: Option<&LastRun>) -> bool {
        stored.is_none_or(|stored| {
            (self.operation_id.is_some() && self.operation_id == stored.operation_id)
                || self.time >= stored.time
        })
    }
}

impl Schedule {
    /// The operation's `type`.
    pub fn type_id(&self) -> &str {
        self.operation
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// Whether the operation runs across the cluster (`globalRequest`, also as Jackson reads it: `"true"`).
    pub fn is_global(&self) -> bool {
        is_true(self.operation.get("globalRequest"))
    }

    /// The parsed cron in its time zone. A stored schedule was validated when it was created, so this fails only
    /// for one written by hand into a shared store.
    pub fn cron_schedule(&self) -> Result<CronSchedule, String> {
        CronSchedule::parse(&self.cron, &self.timezone)
            .map_err(|(field, message)| format!("schedule {}: {field}: {message}", self.id))
    }

    /// The jitter as a duration (zero without one).
    pub fn jitter_duration(&self) -> std::time::Duration {
        self.jitter
            .as_deref()
            .and_then(|text| crate::decode::parse_duration(text).ok())
            .unwrap_or_default()
    }

    /// The schedule as clients read it: the stored fields and `nextRun` after `now`. The caller takes secrets out
    /// of `operation`.
    pub fn view(&self, now: DateTime<Utc>) -> Value {
        let next_run = self
            .cron_schedule()
            .ok()
            .and_then(|cron| cron.next_after(now));
        let mut view = match serde_json::to_value(self) {
            Ok(Value::Object(fields)) => fields,
            _ => Map::new(),
        };
        view.insert(
            "nextRun".into(),
            next_run.map_or(Value::Null, |at| {
                Value::String(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            }),
        );
        Value::Object(view)
    }
}

/// `true`, or `"true"` in any letter case (Jackson's leniency, as `decode::bool` has it).
pub(crate) fn is_true(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(flag)) => *flag,
        Some(Value::String(text)) => text.trim().eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// Whether a tick missed while nothing ran (the sidecar was down, or paused) is to be run now: the latest tick at
/// or before now is later than the schedule's creation and than its last run. Only that one tick is run, however
/// many were missed.
pub fn missed_tick(
    latest_tick: Option<DateTime<Utc>>,
    last_run: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let tick = latest_tick?;
    if tick <= created_at || last_run.is_some_and(|ran| ran >= tick) {
        return None;
    }
    Some(tick)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_missed_tick_runs_once_when_later_than_the_last_run_and_the_creation() {
        let created = at("2026-01-01T00:00:00Z");
        let tick = at("2026-01-05T03:00:00Z");
        // Never ran, tick after creation: run.
        assert_eq!(missed_tick(Some(tick), None, created), Some(tick));
        // Ran before the tick (days ago): run the latest tick once.
        assert_eq!(
            missed_tick(Some(tick), Some(at("2026-01-02T03:00:05Z")), created),
            Some(tick)
        );
        // Ran at (or after, by its jitter) that tick: nothing missed.
        assert_eq!(missed_tick(Some(tick), Some(tick), created), None);
        assert_eq!(
            missed_tick(Some(tick), Some(at("2026-01-05T03:04:00Z")), created),
            None
        );
        // Created after the latest tick: nothing was due yet.
        assert_eq!(
            missed_tick(Some(tick), None, at("2026-01-05T03:00:01Z")),
            None
        );
        assert_eq!(missed_tick(Some(tick), None, tick), None);
        // No tick ever.
        assert_eq!(missed_tick(None, None, created), None);
    }

    #[test]
    fn the_view_adds_the_next_run() {
        let schedule = Schedule {
            id: "s1".into(),
            cron: "0 0 3 * * *".into(),
            timezone: "UTC".into(),
            operation: serde_json::json!({"type": "backup"})
                .as_object()
                .unwrap()
                .clone(),
            retention: None,
            jitter: None,
            created_at: at("2026-01-01T00:00:00Z"),
            last_run: None,
            sidecar: None,
        };
        let view = schedule.view(at("2026-01-01T12:00:00Z"));
        assert_eq!(view["nextRun"], "2026-01-02T03:00:00Z");
        assert_eq!(view["createdAt"], "2026-01-01T00:00:00Z");
        assert!(view.get("lastRun").is_none(), "{view}");
        assert!(!schedule.is_global());
    }

    /// A runner that follows an older run's retention must not write over the newer run another runner recorded;
    /// news of the same run, or of a later one, is written.
    #[test]
    fn a_last_run_replaces_only_the_same_run_or_an_earlier_one() {
        let run = |id: u128, time: &str| LastRun {
            operation_id: Some(Uuid::from_u128(id)),
            state: OperationState::Running,
            time: at(time),
            error: None,
            retention: None,
        };
        let older = run(1, "2026-01-01T03:00:00Z");
        let newer = run(2, "2026-01-02T03:00:00Z");
        assert!(older.replaces(None));
        assert!(newer.replaces(Some(&older)));
        assert!(!older.replaces(Some(&newer)));
        let older_with_retention = LastRun {
            retention: Some(RetentionRun {
                operation_id: Some(Uuid::from_u128(3)),
                state: OperationState::Completed,
                error: None,
            }),
            ..older.clone()
        };
        assert!(!older_with_retention.replaces(Some(&newer)));
        assert!(older_with_retention.replaces(Some(&older)));
        // A run that could not be submitted has no operation; it is later than the one before it.
        let refused = LastRun::refused(at("2026-01-03T03:00:00Z"), "refused".into());
        assert!(refused.replaces(Some(&newer)));
        assert!(!older.replaces(Some(&refused)));
    }
}
