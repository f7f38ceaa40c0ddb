//! One operation as the store keeps it and as clients see it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Weak};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::state::OperationState;
use crate::sync::lock;

/// An entry of an operation's `errors` array: which sidecar reported it, and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedError {
    pub source: String,
    pub message: String,
}

/// A change of an operation's state, as a [`StateListener`] hears of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateChange {
    /// `None` when the listener is first attached: `to` is then the state the record already has.
    pub from: Option<OperationState>,
    pub to: OperationState,
    /// Set once the record is terminal.
    pub completion_time: Option<DateTime<Utc>>,
}

/// Hears of every state change of the records it is attached to, e.g. a store keeping an index by state.
///
/// Called while the record's status lock is held, so the changes of one record arrive in order and none is missed
/// between attaching and the first change. The listener must therefore not call back into the record beyond its
/// immutable fields (`id`, `type_id`, `sequence`, ...): its status methods would deadlock.
pub trait StateListener: Send + Sync + std::fmt::Debug {
    fn state_changed(&self, record: &OperationRecord, change: StateChange);
}

/// What changes while an operation runs, guarded by one lock so a reader never sees half an update.
#[derive(Debug)]
struct Status {
    state: OperationState,
    progress: f64,
    errors: Vec<ReportedError>,
    start_time: Option<DateTime<Utc>>,
    completion_time: Option<DateTime<Utc>>,
    /// What the operation found out, for operations that answer a question (e.g. `list-snapshots`); rendered as
    /// `response`, the field Icarus's `list` uses.
    response: Option<Value>,
    /// A cluster-wide operation's view of each node's part, rendered as `nodes` (beyond Icarus).
    nodes: Option<Value>,
    /// Weak, so a record kept alive by a client holding it does not keep a dropped store's index alive.
    listener: Option<Weak<dyn StateListener>>,
    /// Counts every change, so a store that writes records elsewhere knows which changed since it last wrote.
    changes: u64,
}

impl Status {
    fn notify(&self, record: &OperationRecord, from: Option<OperationState>) {
        if let Some(listener) = self.listener.as_ref().and_then(Weak::upgrade) {
            listener.state_changed(
                record,
                StateChange {
                    from,
                    to: self.state,
                    completion_time: self.completion_time,
                },
            );
        }
    }
}

/// The fields the common part of the operation object owns; request fields with these names are not echoed. The
/// first [`ICARUS_COMMON_FIELDS`] are Icarus's own, the rest Daedalus's.
pub(crate) const COMMON_FIELDS: [&str; 11] = [
    "type",
    "id",
    "creationTime",
    "state",
    "errors",
    "progress",
    "startTime",
    "completionTime",
    "response",
    "nodes",
    "sidecar",
];

/// How many of [`COMMON_FIELDS`] Icarus's `Operation` has.
pub(crate) const ICARUS_COMMON_FIELDS: usize = 8;

/// Orders operations created within the same clock tick, so "newest first" is exact.
static NEXT_SEQUENCE: AtomicU64 = AtomicU64::new(0);

#[derive(Debug)]
pub struct OperationRecord {
    id: Uuid,
    type_id: &'static str,
    exclusive: Option<&'static str>,
    /// Which sidecar runs it, when a shared store holds the operations of several (beyond Icarus).
    sidecar: Option<String>,
    /// See `Operation::resumable`.
    resumable: bool,
    /// See [`OperationRecord::abandon`].
    abandoned: std::sync::atomic::AtomicBool,
    creation_time: DateTime<Utc>,
    sequence: u64,
    request: Map<String, Value>,
    cancellation: CancellationToken,
    status: Mutex<Status>,
}

/// Everything that changes while an operation runs, as a store writes it and reads it back.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredStatus {
    pub state: OperationState,
    pub progress: f64,
    pub errors: Vec<ReportedError>,
    pub start_time: Option<DateTime<Utc>>,
    pub completion_time: Option<DateTime<Utc>>,
    pub response: Option<Value>,
    pub nodes: Option<Value>,
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
            sidecar: None,
            resumable: false,
            abandoned: Default::default(),
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
                nodes: None,
                listener: None,
                changes: 0,
            }),
        }
    }

    /// A record as another store kept it (e.g. read back from etcd), with the sequence number that orders it there.
    pub fn restored(
        id: Uuid,
        type_id: &'static str,
        request: Map<String, Value>,
        creation_time: DateTime<Utc>,
        sequence: u64,
        status: StoredStatus,
    ) -> Self {
        let mut record = Self::with_id(
            id,
            type_id,
            request,
            CancellationToken::new(),
            creation_time,
        );
        record.sequence = sequence;
        record.replace_status(status);
        record
    }

    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Whether a field of the operation's JSON is one of the common fields rather than one of its request.
    pub fn is_common_field(name: &str) -> bool {
        COMMON_FIELDS.contains(&name)
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

    /// Names the sidecar that runs the operation (rendered as `sidecar`).
    pub fn with_sidecar(mut self, sidecar: Option<String>) -> Self {
        self.sidecar = sidecar;
        self
    }

    pub fn sidecar(&self) -> Option<&str> {
        self.sidecar.as_deref()
    }

    /// Marks the record as one another sidecar may take over (see `Operation::resumable`).
    pub fn with_resumable(mut self, resumable: bool) -> Self {
        self.resumable = resumable;
        self
    }

    pub fn resumable(&self) -> bool {
        self.resumable
    }

    /// Stops the operation here because another sidecar took it over: its work goes on there, so it must not undo
    /// anything (a coordinator does not cancel its parts). Cancels its token.
    pub fn abandon(&self) {
        self.abandoned
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.cancellation.cancel();
    }

    pub fn is_abandoned(&self) -> bool {
        self.abandoned.load(std::sync::atomic::Ordering::Relaxed)
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
        lock(&self.status).state
    }

    pub fn status(&self) -> StatusSnapshot {
        let status = lock(&self.status);
        StatusSnapshot {
            state: status.state,
            progress: status.progress,
            errors: status.errors.clone(),
            start_time: status.start_time,
            completion_time: status.completion_time,
        }
    }

    /// The whole changing part, with the count of changes it reflects (see [`OperationRecord::change_count`]).
    pub fn stored_status(&self) -> (StoredStatus, u64) {
        let status = lock(&self.status);
        (
            StoredStatus {
                state: status.state,
                progress: status.progress,
                errors: status.errors.clone(),
                start_time: status.start_time,
                completion_time: status.completion_time,
                response: status.response.clone(),
                nodes: status.nodes.clone(),
            },
            status.changes,
        )
    }

    /// How many changes the record has had; grows with every change.
    pub fn change_count(&self) -> u64 {
        lock(&self.status).changes
    }

    /// Sets the whole changing part at once (a copy following a record kept elsewhere), telling the listener of a
    /// change of state.
    pub fn replace_status(&self, stored: StoredStatus) {
        let mut status = lock(&self.status);
        let from = status.state;
        status.state = stored.state;
        status.progress = stored.progress;
        status.errors = stored.errors;
        status.start_time = stored.start_time;
        status.completion_time = stored.completion_time;
        status.response = stored.response;
        status.nodes = stored.nodes;
        status.changes += 1;
        if from != status.state {
            status.notify(self, Some(from));
        }
    }

    /// Attaches the listener that hears of every later state change (replacing any earlier one), and tells it the
    /// current state at once, in the same step, so it cannot miss a change.
    pub fn attach(&self, listener: Weak<dyn StateListener>) {
        let mut status = lock(&self.status);
        status.listener = Some(listener);
        status.notify(self, None);
    }

    /// The completion time of a terminal operation, `None` while it is pending or running.
    pub fn completion_time(&self) -> Option<DateTime<Utc>> {
        lock(&self.status).completion_time
    }

    /// PENDING -> RUNNING. Returns false (and changes nothing) if the operation is no longer pending.
    pub fn start(&self, now: DateTime<Utc>) -> bool {
        let mut status = lock(&self.status);
        if status.state != OperationState::Pending {
            return false;
        }
        status.state = OperationState::Running;
        status.start_time = Some(now);
        status.changes += 1;
        status.notify(self, Some(OperationState::Pending));
        true
    }

    /// Progress is a fraction in [0, 1]; anything else (NaN included) is clamped so the JSON stays a valid number.
    pub fn set_progress(&self, progress: f64) {
        let progress = if progress.is_nan() {
            0.0
        } else {
            progress.clamp(0.0, 1.0)
        };
        let mut status = lock(&self.status);
        if status.progress != progress {
            status.progress = progress;
            status.changes += 1;
        }
    }

    pub fn add_error(&self, error: ReportedError) {
        let mut status = lock(&self.status);
        status.errors.push(error);
        status.changes += 1;
    }

    pub fn set_response(&self, response: Value) {
        let mut status = lock(&self.status);
        status.response = Some(response);
        status.changes += 1;
    }

    /// Replaces the per-node view of a cluster-wide operation.
    pub fn set_nodes(&self, nodes: Value) {
        let mut status = lock(&self.status);
        if status.nodes.as_ref() != Some(&nodes) {
            status.nodes = Some(nodes);
            status.changes += 1;
        }
    }

    /// The per-node view of a cluster-wide operation, if it has one.
    pub fn nodes(&self) -> Option<Value> {
        lock(&self.status).nodes.clone()
    }

    pub fn response(&self) -> Option<Value> {
        lock(&self.status).response.clone()
    }

    pub fn has_errors(&self) -> bool {
        !lock(&self.status).errors.is_empty()
    }

    /// Moves a pending or running operation to a terminal state. A terminal operation is left as it is.
    ///
    /// Progress becomes 1.0 whatever the outcome, as Icarus sets it in `Operation.run()`'s `finally`: clients wait
    /// for 1.0 to know an operation is over, "either successfully or with errors".
    pub fn finish(&self, state: OperationState, now: DateTime<Utc>) -> bool {
        debug_assert!(state.is_terminal());
        let mut status = lock(&self.status);
        if status.state.is_terminal() {
            return false;
        }
        let from = status.state;
        status.state = state;
        status.completion_time = Some(now);
        status.progress = 1.0;
        status.changes += 1;
        status.notify(self, Some(from));
        true
    }
}

fn timestamp(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Icarus's shape: the common fields first, then the request's own fields flattened into the same object.
impl Serialize for OperationRecord {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Serialized under the lock rather than from a copy: no clone of the errors and the response (which can be
        // large) for every record of a long list. Writing JSON to a buffer is quick, so progress updates wait little.
        let status = lock(&self.status);
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
        if let Some(response) = &status.response {
            map.serialize_entry("response", response)?;
        }
        if let Some(nodes) = &status.nodes {
            map.serialize_entry("nodes", nodes)?;
        }
        if let Some(sidecar) = &self.sidecar {
            map.serialize_entry("sidecar", sidecar)?;
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

    #[test]
    fn every_terminal_state_has_progress_one() {
        for state in [
            OperationState::Completed,
            OperationState::Failed,
            OperationState::Cancelled,
        ] {
            let op = record(json!({}));
            op.set_progress(0.25);
            assert!(op.finish(state, Utc::now()));
            assert_eq!(op.status().progress, 1.0, "{state}");
        }
    }

    #[derive(Debug, Default)]
    struct Recorder(Mutex<Vec<StateChange>>);
    impl StateListener for Recorder {
        fn state_changed(&self, _: &OperationRecord, change: StateChange) {
            self.0.lock().unwrap().push(change);
        }
    }

    #[test]
    fn an_attached_listener_hears_the_current_state_then_every_change() {
        let op = record(json!({}));
        let recorder = std::sync::Arc::new(Recorder::default());
        let weak = std::sync::Arc::downgrade(&recorder);
        op.attach(weak);
        let t = Utc.with_ymd_and_hms(2021, 1, 2, 3, 4, 5).unwrap();
        assert!(op.start(t));
        assert!(!op.start(t));
        assert!(op.finish(OperationState::Failed, t));
        assert!(!op.finish(OperationState::Cancelled, t));
        let changes = recorder.0.lock().unwrap().clone();
        let seen: Vec<_> = changes.iter().map(|c| (c.from, c.to)).collect();
        assert_eq!(
            seen,
            [
                (None, OperationState::Pending),
                (Some(OperationState::Pending), OperationState::Running),
                (Some(OperationState::Running), OperationState::Failed),
            ]
        );
        assert_eq!(changes[2].completion_time, Some(t));
    }
}
