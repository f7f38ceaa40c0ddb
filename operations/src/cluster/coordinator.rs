//! Follows the parts of a cluster-wide operation on the nodes' sidecars: submits each node its request, polls it,
//! publishes every node's state as the operation's `nodes`, and ends a step at the first failure, at the deadline
//! or on cancellation, cancelling the parts still running on the peers before it returns.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Peer;
use crate::operation::{OperationContext, OperationFailure};
use crate::peer::{PeerClient, PeerError, RemoteOperation, Sidecar};
use crate::record::ReportedError;
use crate::state::OperationState;
use crate::sync::lock;

/// Once a step is stopped, how long the parts still running get to confirm their cancellation before the
/// coordinator gives up on them (a peer that stopped answering never confirms).
const CANCEL_GRACE: Duration = Duration::from_secs(20);

/// One node's part as the operation's `nodes` shows it, and as a sidecar taking the operation over reads it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeView {
    #[serde(flatten)]
    peer: Peer,
    /// The restore phase the part runs (restores only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    phase: Option<Cow<'static, str>>,
    /// The part's id on the peer, once submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    operation_id: Option<Uuid>,
    /// Absent until submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state: Option<OperationState>,
    #[serde(default)]
    progress: f64,
    #[serde(default)]
    errors: Vec<ReportedError>,
}

/// What a step asks of some nodes.
pub struct Step {
    /// The restore phase, shown in the per-node view.
    pub phase: Option<&'static str>,
    /// `(index into the coordinator's peers, request body)`, in the order they start.
    pub parts: Vec<(usize, Value)>,
    /// How many parts run at once.
    pub concurrency: usize,
    /// When the parts still unfinished are cancelled and the step fails.
    pub deadline: Option<Instant>,
    /// How the request's `timeout` was given, for the error at the deadline.
    pub timeout_text: String,
}

/// Why a node's part did not complete.
enum PartFailure {
    /// The part ended FAILED or CANCELLED on the peer.
    Ended(RemoteOperation),
    /// The peer's sidecar refused the part, or stopped answering while it ran.
    Peer(PeerError),
}

/// Why a step stopped early.
enum Stop {
    Cancelled,
    Deadline,
    Failed(usize, PartFailure),
}

struct Progress {
    total_units: f64,
    finished_units: f64,
    /// Progress of each node's part in the current step.
    current: Vec<f64>,
}

pub struct Coordinator {
    context: OperationContext,
    client: PeerClient,
    poll: Duration,
    /// What the parts are (`backup`, `restore`, ...), for errors.
    what: &'static str,
    peers: Vec<Peer>,
    views: Mutex<Vec<NodeView>>,
    progress: Mutex<Progress>,
    /// Parts recorded before this sidecar took the operation over, by host id: followed (or skipped, when they
    /// completed) rather than sent again.
    recorded: Mutex<HashMap<String, RemoteOperation>>,
    /// Which sidecar each peer runs, as the pre-flight found it.
    sidecars: Mutex<Vec<Sidecar>>,
    /// The local node's data directories, for the parts of Icarus peers when the request gave none (Icarus needs
    /// them, and takes every node's to be the same).
    own_data_dirs: Mutex<Vec<String>>,
}

/// The parts a recorded `nodes` view names, by host id: those submitted (a view that cannot be read is passed
/// over, and its part sent again). The errors are left behind: the view shows those the part reports now.
fn recorded_parts(nodes: Option<&Value>) -> HashMap<String, RemoteOperation> {
    let Some(Value::Array(views)) = nodes else {
        return HashMap::new();
    };
    views
        .iter()
        .filter_map(|view| {
            let view = NodeView::deserialize(view).ok()?;
            Some((
                view.peer.host_id,
                RemoteOperation {
                    id: view.operation_id?,
                    state: view.state?,
                    progress: view.progress,
                    errors: Vec::new(),
                },
            ))
        })
        .collect()
}

impl Coordinator {
    /// A coordinator of `peers` whose whole run counts `total_units` node parts (and other units of work, as the
    /// topology upload of a backup) towards the operation's progress, as Icarus counts them.
    pub fn new(
        context: &OperationContext,
        what: &'static str,
        peers: Vec<Peer>,
        total_units: usize,
    ) -> Result<Coordinator, OperationFailure> {
        let settings = context.peer_settings();
        let client = settings.client()?;
        let peers_len = peers.len();
        let views = peers
            .iter()
            .map(|peer| NodeView {
                peer: peer.clone(),
                phase: None,
                operation_id: None,
                state: None,
                progress: 0.0,
                errors: Vec::new(),
            })
            .collect();
        let coordinator = Coordinator {
            context: context.clone(),
            client,
            poll: settings.poll_interval,
            what,
            progress: Mutex::new(Progress {
                total_units: total_units.max(1) as f64,
                finished_units: 0.0,
                current: vec![0.0; peers.len()],
            }),
            peers,
            views: Mutex::new(views),
            recorded: Mutex::new(recorded_parts(context.recorded_nodes())),
            sidecars: Mutex::new(vec![Sidecar::Daedalus; peers_len]),
            own_data_dirs: Mutex::new(Vec::new()),
        };
        coordinator.publish();
        Ok(coordinator)
    }

    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    /// Every peer's sidecar must answer and be ready before anything starts anywhere. Learns which peers run Icarus,
    /// and for those the local node's data directories.
    pub async fn preflight(&self) -> Result<(), OperationFailure> {
        let checks = self
            .peers
            .iter()
            .map(|peer| async move { (peer, self.client.check_ready(&peer.peer).await) });
        let results = self
            .context
            .cancellable(futures_util::future::join_all(checks))
            .await?;
        let mut failed = Vec::new();
        let mut sidecars = Vec::with_capacity(results.len());
        for (peer, result) in results {
            match result {
                Ok(sidecar) => sidecars.push(sidecar),
                Err(error) => {
                    failed.push(format!("{peer}: {error}"));
                    sidecars.push(Sidecar::Daedalus);
                }
            }
        }
        if !failed.is_empty() {
            return Err(OperationFailure::Failed(format!(
                "pre-flight: not every node's sidecar is ready, so nothing was started: {}",
                failed.join("; ")
            )));
        }
        if sidecars.contains(&Sidecar::Icarus) {
            let cassandra = self.context.cassandra().await?;
            let dirs = self
                .context
                .cancellable(cassandra.data_file_locations())
                .await?
                .map_err(|error| {
                    OperationFailure::context(
                        "cannot read the local data directories for the Icarus peers",
                        error,
                    )
                })?;
            *lock(&self.own_data_dirs) = dirs;
        }
        *lock(&self.sidecars) = sidecars;
        Ok(())
    }

    /// Counts one unit of the coordinator's own work done.
    pub fn finish_unit(&self) {
        let mut progress = lock(&self.progress);
        progress.finished_units += 1.0;
        self.report_progress(&progress);
    }

    /// Runs a step's parts and waits for all of them. At the first part that fails, at the deadline, or when the
    /// operation is cancelled, the parts still running are cancelled on their peers (and followed until they end,
    /// for at most [`CANCEL_GRACE`]), no further part starts, and the step fails naming the nodes.
    pub async fn run_step(&self, step: Step) -> Result<(), OperationFailure> {
        let stop_parts = CancellationToken::new();
        let mut queue = step.parts.into_iter();
        let mut running = FuturesUnordered::new();
        let mut stop: Option<Stop> = None;
        let mut give_up_at: Option<Instant> = None;
        let cancelled = self.context.cancellation().clone();
        loop {
            while stop.is_none() && running.len() < step.concurrency.max(1) {
                let Some((index, body)) = queue.next() else {
                    break;
                };
                let stop_parts = stop_parts.clone();
                running.push(async move {
                    let outcome = self.drive(index, body, step.phase, &stop_parts).await;
                    (index, outcome)
                });
            }
            if running.is_empty() {
                break;
            }
            let deadline = step.deadline.filter(|_| stop.is_none());
            tokio::select! {
                biased;
                _ = cancelled.cancelled(), if stop.is_none() => stop = Some(Stop::Cancelled),
                _ = sleep_until(deadline), if deadline.is_some() => stop = Some(Stop::Deadline),
                _ = sleep_until(give_up_at), if give_up_at.is_some() => break,
                Some((index, outcome)) = running.next() => match outcome {
                    Ok(()) => self.part_done(index),
                    Err(failure) if stop.is_none() => stop = Some(Stop::Failed(index, failure)),
                    Err(_) => {}
                },
            }
            if stop.is_some() && give_up_at.is_none() {
                if self.context.is_abandoned() {
                    // Another sidecar coordinates the parts now: leave them running.
                    break;
                }
                stop_parts.cancel();
                give_up_at = Some(Instant::now() + CANCEL_GRACE);
            }
        }
        drop(running);
        match stop {
            None => Ok(()),
            Some(Stop::Cancelled) => Err(OperationFailure::Cancelled),
            Some(Stop::Deadline) => {
                let unfinished = self.unfinished();
                Err(OperationFailure::Failed(format!(
                    "the {} did not finish within its timeout ({}) on {}; their parts were cancelled",
                    self.what,
                    step.timeout_text,
                    unfinished.join(", ")
                )))
            }
            Some(Stop::Failed(index, failure)) => Err(self.failure_of(index, failure)),
        }
    }

    /// Submits one node's part and follows it to its end. Once `stop` is cancelled the part is cancelled on the
    /// peer and followed until it says so.
    async fn drive(
        &self,
        index: usize,
        body: Value,
        phase: Option<&'static str>,
        stop: &CancellationToken,
    ) -> Result<(), PartFailure> {
        let peer = &self.peers[index];
        self.update(index, |view| {
            view.phase = phase.map(Cow::Borrowed);
            view.operation_id = None;
            view.state = None;
            view.progress = 0.0;
            view.errors.clear();
        });
        let recorded = lock(&self.recorded).remove(&peer.host_id);
        let mut operation = match recorded {
            // Taken over: a part that completed is not run again, one still running is followed. One that ended
            // otherwise is sent again, as its end may be the stopped coordinator's doing.
            Some(part) if part.state == OperationState::Completed => {
                self.seen(index, &part);
                return Ok(());
            }
            Some(part) if !part.state.is_terminal() => {
                tracing::info!(node = %peer.node, part = %part.id, "following a part sent before the takeover");
                self.client
                    .operation(&peer.peer, part.id)
                    .await
                    .map_err(PartFailure::Peer)?
            }
            _ => {
                let sidecar = lock(&self.sidecars).get(index).copied().unwrap_or_default();
                let body = match sidecar {
                    Sidecar::Daedalus => body,
                    Sidecar::Icarus => {
                        let dirs = lock(&self.own_data_dirs).clone();
                        super::icarus_part(body, &dirs)
                    }
                };
                let operation = self
                    .client
                    .submit(&peer.peer, &body)
                    .await
                    .map_err(PartFailure::Peer)?;
                tracing::info!(node = %peer.node, peer = %peer.peer, part = %operation.id, phase, "part submitted");
                operation
            }
        };
        let mut cancel_sent = false;
        loop {
            self.seen(index, &operation);
            match operation.state {
                OperationState::Completed => return Ok(()),
                OperationState::Failed | OperationState::Cancelled => {
                    return Err(PartFailure::Ended(operation));
                }
                OperationState::Pending | OperationState::Running => {}
            }
            if stop.is_cancelled() && !cancel_sent {
                cancel_sent = true;
                if let Err(error) = self.client.cancel(&peer.peer, operation.id).await {
                    tracing::warn!(node = %peer.node, part = %operation.id, %error, "cannot cancel a part");
                }
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.poll) => {}
                _ = stop.cancelled(), if !cancel_sent => continue,
            }
            operation = self
                .client
                .operation(&peer.peer, operation.id)
                .await
                .map_err(PartFailure::Peer)?;
        }
    }

    /// The operation's error for a node's failed part; the peer's own errors are relayed under its name. A peer
    /// that could not be asked stays the failure's source.
    fn failure_of(&self, index: usize, failure: PartFailure) -> OperationFailure {
        let peer = &self.peers[index];
        match failure {
            PartFailure::Ended(operation) => {
                for error in &operation.errors {
                    self.context.relay_error(error.clone());
                }
                let reasons: Vec<&str> = operation
                    .errors
                    .iter()
                    .map(|e| e.message.as_str())
                    .collect();
                let reasons = if reasons.is_empty() {
                    String::new()
                } else {
                    format!(": {}", reasons.join("; "))
                };
                OperationFailure::Failed(format!(
                    "the {} failed on {peer}: its part {} ended {}{reasons}",
                    self.what, operation.id, operation.state
                ))
            }
            PartFailure::Peer(error) => {
                self.update(index, |view| {
                    view.errors.push(ReportedError {
                        source: peer.node.clone(),
                        message: error.to_string(),
                    })
                });
                OperationFailure::context(format!("the {} failed on {peer}", self.what), error)
            }
        }
    }

    /// The nodes whose part has not completed.
    fn unfinished(&self) -> Vec<String> {
        lock(&self.views)
            .iter()
            .filter(|view| {
                view.operation_id.is_some() && view.state != Some(OperationState::Completed)
            })
            .map(|view| view.peer.to_string())
            .collect()
    }

    fn seen(&self, index: usize, operation: &RemoteOperation) {
        self.update(index, |view| {
            view.operation_id = Some(operation.id);
            view.state = Some(operation.state);
            view.progress = operation.progress;
            view.errors = operation.errors.clone();
        });
        let mut progress = lock(&self.progress);
        if let Some(current) = progress.current.get_mut(index) {
            *current = operation.progress;
        }
        self.report_progress(&progress);
    }

    fn part_done(&self, index: usize) {
        let mut progress = lock(&self.progress);
        progress.finished_units += 1.0;
        if let Some(current) = progress.current.get_mut(index) {
            *current = 0.0;
        }
        self.report_progress(&progress);
    }

    fn report_progress(&self, progress: &Progress) {
        let running: f64 = progress.current.iter().sum();
        let fraction = (progress.finished_units + running) / progress.total_units;
        // Held below 1 until the operation ends: 1.0 is how clients learn it is over.
        self.context.progress().set(fraction.min(0.99));
    }

    fn update(&self, index: usize, change: impl FnOnce(&mut NodeView)) {
        {
            let mut views = lock(&self.views);
            if let Some(view) = views.get_mut(index) {
                change(view);
            }
        }
        self.publish();
    }

    fn publish(&self) {
        let views = lock(&self.views);
        if let Ok(value) = serde_json::to_value(&*views) {
            self.context.set_nodes(value);
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn recorded_parts_are_read_by_host_id_and_views_not_yet_sent_are_left_out() {
        let sent = Uuid::new_v4();
        let done = Uuid::new_v4();
        let nodes = json!([
            {"node": "127.0.0.1", "hostId": "h1", "dc": "dc1", "peer": "http://127.0.0.1:4567",
             "operationId": sent, "state": "RUNNING", "progress": 0.5, "errors": []},
            {"node": "127.0.0.2", "hostId": "h2", "dc": "dc1", "peer": "http://127.0.0.2:4567",
             "operationId": done, "state": "COMPLETED", "progress": 1.0, "errors": []},
            {"node": "127.0.0.3", "hostId": "h3", "dc": "dc1", "peer": "http://127.0.0.3:4567",
             "progress": 0.0, "errors": []},
        ]);
        let parts = recorded_parts(Some(&nodes));
        assert_eq!(parts.len(), 2);
        assert_eq!(parts["h1"].id, sent);
        assert_eq!(parts["h1"].state, OperationState::Running);
        assert_eq!(parts["h1"].progress, 0.5);
        assert_eq!(parts["h2"].state, OperationState::Completed);
        assert!(!parts.contains_key("h3"));
        assert!(recorded_parts(None).is_empty());
    }

    /// What the operation's `nodes` shows is what a sidecar taking it over reads back.
    #[test]
    fn node_views_are_read_back_as_written() {
        let view = NodeView {
            peer: Peer {
                node: "127.0.0.1".into(),
                host_id: "h1".into(),
                dc: "dc1".into(),
                peer: "http://127.0.0.1:4567".into(),
            },
            phase: Some(Cow::Borrowed("DOWNLOAD")),
            operation_id: Some(Uuid::new_v4()),
            state: Some(OperationState::Failed),
            progress: 0.25,
            errors: vec![ReportedError {
                source: "http://127.0.0.1:4567".into(),
                message: "no space left".into(),
            }],
        };
        let written = serde_json::to_value(&view).unwrap();
        assert_eq!(
            written["phase"], "DOWNLOAD",
            "the fields side by side, as before"
        );
        assert_eq!(written["hostId"], "h1");
        assert_eq!(NodeView::deserialize(&written).unwrap(), view);
    }
}
