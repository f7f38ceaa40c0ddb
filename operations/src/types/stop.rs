//! `stop`: shuts the sidecar down gracefully once no other operation is running.
//!
//! Icarus waits until every other operation has *expired*, finished ones included, so a stop issued within an
//! hour of any other operation times out. We wait only for unfinished ones.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::validation::Validate;

/// How often to look for other unfinished operations, and how long to wait for them (Icarus: 5 minutes).
const POLL: Duration = Duration::from_millis(500);
const WAIT_AT_MOST: Duration = Duration::from_secs(300);

/// Stop takes no parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct StopRequest {}

impl Validate for StopRequest {}

pub struct Stop;

impl Operation for Stop {
    const TYPE: &'static str = "stop";
    type Request = StopRequest;

    async fn run(
        &self,
        _request: StopRequest,
        context: OperationContext,
    ) -> Result<(), OperationFailure> {
        let deadline = Instant::now() + WAIT_AT_MOST;
        loop {
            // Only running operations count: pending ones are cancelled by the shutdown, and waiting for them
            // would deadlock when this stop holds the last free slot. Two stops must not wait for each other.
            let blocking: Vec<_> = context
                .other_unfinished_operations()
                .into_iter()
                .filter(|record| record.state() == crate::state::OperationState::Running)
                .filter(|record| record.type_id() != Stop::TYPE)
                .map(|record| record.id().to_string())
                .collect();
            if blocking.is_empty() {
                tracing::info!("no other operation is running; shutting the sidecar down");
                context.request_shutdown();
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(OperationFailure::Failed(format!(
                    "other operations are still running after {}s: {}; wait for them or cancel them \
                     (DELETE /operations/{{id}}) and stop again",
                    WAIT_AT_MOST.as_secs(),
                    blocking.join(", ")
                )));
            }
            context.cancellable(tokio::time::sleep(POLL)).await?;
        }
    }
}
