//! One operation as the store keeps it and as clients see it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::state::OperationState;

/// An entry of an operation's `errors` array: which sidecar reported it, and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedError {
    pub source: String,
    pub message: String,
}

/// What changes while an operation runs, guarded by one lock so a reader never sees half an update.
#[derive(Debug, Clone)]
struct Status {
    state: OperationState,
    progress: f64,
    errors: Vec<ReportedError>,
    start_time: Option<DateTime<Utc>>,
    completion_time: Option<DateTime<Utc>>,
    /// What the operation found out, for operations that answer a question (e.g. `list-snapshots`); rendered as
    /// `response`, the field Icarus's `list` uses.
    response: Option<Value>,
}

/// The fields the common part of the operation object owns; request fields with these names are not echoed.
const COMMON_FIELDS: [&str; 9] = [
    "type",
    "id",
    "creationTime",
    "state",
    "errors",
    "progress",
    "startTime",
    "completionTime",
    "response",
];

/// Orders operations created within the same clock tick, so "newest first" is exact.
static NEXT_SEQUENCE: AtomicU64 = AtomicU64::new(0);

#[derive(Debug)]
pub struct OperationRecord {
    id: Uuid,
    type_id: &'static str,
    exclusive: Option<&'static str>,
    creation_time: DateTime<Utc>,
    sequence: u64,
    request: Map<String, Value>,
    cancellation: CancellationToken,
    status: Mutex<Status>,
}

/// A consistent copy of the changing part of a record.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusSnapshot {
    pub state: OperationState,
    pub progress: f64,
    pub errors: Vec<ReportedError>,
    pub start_time: Option<DateTime<Utc>>,
    pub completion_time: Option<DateTime<Utc>>,
}

impl OperationRecord {
    /// A new PENDING operation. `request` holds the decoded request's fields, echoed in the operation object.
    pub fn new(
        type_id: &'static str,
        request: Map<String, Value>,
        cancellation: CancellationToken,
    ) -> Self {
        Self::with_id(Uuid::new_v4(), type_id, request, cancellation, Utc::now())
    }

    pub fn with_id(
        id: Uuid,
        type_id: &'static str,
        request: Map<String, Value>,
        cancellation: CancellationToken,
        creation_time: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            type_id,
            exclusive: None,
            creation_time,
            sequence: NEXT_SEQUENCE.fetch_add(1, Ordering::Relaxed),
            request,
            cancellation,
            status: Mutex::new(Status {
                state: OperationState::Pending,
                progress: 0.0,
                errors: Vec::new(),
                start_time: None,
                completion_time: None,
                response: None,
            }),
        }
    }

    pub fn id(&self) -> Uuid {
        self.id
    }

    pub fn type_id(&self) -> &'static str {
        self.type_id
    }

    /// Marks the record as one of a group that may not run at once (see `Operation::EXCLUSIVE`).
    pub fn with_exclusive(mut self, group: Option<&'static str>) -> Self {
        self.exclusive = group;
        self
    }

    pub fn exclusive(&self) -> Option<&'static str> {
        self.exclusive
    }

    pub fn creation_time(&self) -> DateTime<Utc> {
        self.creation_time
    }

    /// Creation order: a larger sequence number is a newer operation.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    pub fn request(&self) -> &Map<String, Value> {
        &self.request
    }

    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancellation
    }

    pub fn state(&self) -> OperationState {
        self.lock().state
    }

    pub fn status(&self) -> StatusSnapshot {
        let status = self.lock();
        StatusSnapshot {
            state: status.state,
            progress: status.progress,
            errors: status.errors.clone(),
            start_time: status.start_time,
            completion_time: status.completion_time,
        }
    }

    /// The completion time of a terminal operation, `None` while it is pending or running.
    pub fn completion_time(&self) -> Option<DateTime<Utc>> {
        self.lock().completion_time
    }

    /// PENDING -> RUNNING. Returns false (and changes nothing) if the operation is no longer pending.
    pub fn start(&self, now: DateTime<Utc>) -> bool {
        let mut status = self.lock();
        if status.state != OperationState::Pending {
            return false;
        }
        status.state = OperationState::Running;
        status.start_time = Some(now);
        true
    }

    /// Progress is a fraction in [0, 1]; anything else (NaN included) is clamped so the JSON stays a valid number.
    pub fn set_progress(&self, progress: f64) {
        let progress = if progress.is_nan() {
            0.0
        } else {
            progress.clamp(0.0, 1.0)
        };
        self.lock().progress = progress;
    }

    pub fn add_error(&self, error: ReportedError) {
        self.lock().errors.push(error);
    }

    pub fn set_response(&self, response: Value) {
        self.lock().response = Some(response);
    }

    pub fn response(&self) -> Option<Value> {
        self.lock().response.clone()
    }

    pub fn has_errors(&self) -> bool {
        !self.lock().errors.is_empty()
    }

    /// Moves a pending or running operation to a terminal state. A terminal operation is left as it is.
    pub fn finish(&self, state: OperationState, now: DateTime<Utc>) -> bool {
        debug_assert!(state.is_terminal());
        let mut status = self.lock();
        if status.state.is_terminal() {
            return false;
        }
        status.state = state;
        status.completion_time = Some(now);
        if state == OperationState::Completed {
            status.progress = 1.0;
        }
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Status> {
        // A panic while holding this lock cannot leave Status inconsistent (every update is a plain store),
        // so a poisoned lock is still safe to use.
        self.status
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn timestamp(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Icarus's shape: the common fields first, then the request's own fields flattened into the same object.
impl Serialize for OperationRecord {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let status = self.status();
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", self.type_id)?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("creationTime", &timestamp(&self.creation_time))?;
        map.serialize_entry("state", &status.state)?;
        map.serialize_entry("errors", &status.errors)?;
        map.serialize_entry("progress", &status.progress)?;
        if let Some(start) = &status.start_time {
            map.serialize_entry("startTime", &timestamp(start))?;
        }
        if let Some(end) = &status.completion_time {
            map.serialize_entry("completionTime", &timestamp(end))?;
        }
        if let Some(response) = self.response() {
            map.serialize_entry("response", &response)?;
        }
        for (key, value) in &self.request {
            if !value.is_null() && !COMMON_FIELDS.contains(&key.as_str()) {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn record(request: Value) -> OperationRecord {
        let Value::Object(fields) = request else {
            panic!("test request must be an object")
        };
        OperationRecord::with_id(
            Uuid::nil(),
            "cleanup",
            fields,
            CancellationToken::new(),
            Utc.with_ymd_and_hms(2020, 11, 9, 11, 49, 26).unwrap(),
        )
    }

    #[test]
    fn renders_the_icarus_shape_with_request_fields_flattened_and_nulls_omitted() {
        let op = record(json!({"keyspace": "ks", "tables": null, "jobs": 2, "state": "bogus"}));
        let text = serde_json::to_string(&op).unwrap();
        assert_eq!(
            text,
            r#"{"type":"cleanup","id":"00000000-0000-0000-0000-000000000000","creationTime":"2020-11-09T11:49:26.000Z","state":"PENDING","errors":[],"progress":0.0,"keyspace":"ks","jobs":2}"#
        );
    }

    #[test]
    fn start_and_completion_times_appear_once_known() {
        let op = record(json!({}));
        let t = Utc.with_ymd_and_hms(2021, 1, 2, 3, 4, 5).unwrap();
        assert!(op.start(t));
        assert!(!op.start(t), "a running operation cannot start again");
        assert!(op.finish(OperationState::Completed, t));
        assert!(
            !op.finish(OperationState::Failed, t),
            "terminal states are final"
        );
        let value = serde_json::to_value(&op).unwrap();
        assert_eq!(value["startTime"], "2021-01-02T03:04:05.000Z");
        assert_eq!(value["completionTime"], "2021-01-02T03:04:05.000Z");
        assert_eq!(value["state"], "COMPLETED");
        assert_eq!(value["progress"], 1.0);
    }

    #[test]
    fn progress_is_always_a_finite_fraction() {
        let op = record(json!({}));
        op.set_progress(f64::NAN);
        assert_eq!(op.status().progress, 0.0);
        op.set_progress(7.0);
        assert_eq!(op.status().progress, 1.0);
        op.set_progress(0.25);
        assert_eq!(op.status().progress, 0.25);
    }
}
