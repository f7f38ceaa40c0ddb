//! `drain`: flushes everything and stops accepting writes, before a restart.

use serde::{Deserialize, Serialize};

use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::validation::Validate;

/// How long Cassandra may take to report DRAINED once `drain()` returned (Icarus waits 10 minutes).
const DRAINED_WITHIN: std::time::Duration = std::time::Duration::from_secs(600);

/// Drain takes no parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct DrainRequest {}

impl Validate for DrainRequest {}

pub struct Drain;

impl Operation for Drain {
    const TYPE: &'static str = "drain";
    const EXCLUSIVE: Option<&'static str> = Some(super::NODE_STATE);
    type Request = DrainRequest;

    /// As Icarus: already drained (or draining) is success; any mode but NORMAL is refused; otherwise drain and
    /// wait until Cassandra reports DRAINED.
    async fn run(
        &self,
        _request: DrainRequest,
        context: OperationContext,
    ) -> Result<(), OperationFailure> {
        let cassandra = context.cassandra().await?;
        let mode = context.cancellable(cassandra.operation_mode()).await??;
        match mode.as_str() {
            "DRAINED" | "DRAINING" => return Ok(()),
            "NORMAL" => {}
            other => {
                return Err(OperationFailure::Failed(format!(
                    "Cassandra at {} is {other}, not NORMAL: it cannot be drained now",
                    cassandra.jmx().address()
                )));
            }
        }
        context.cancellable(cassandra.drain()).await??;
        context.progress().set(0.5);
        let deadline = tokio::time::Instant::now() + DRAINED_WITHIN;
        loop {
            let mode = context.cancellable(cassandra.operation_mode()).await??;
            if mode == "DRAINED" {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(OperationFailure::Failed(format!(
                    "Cassandra at {} is {mode}, not DRAINED, {}s after draining",
                    cassandra.jmx().address(),
                    DRAINED_WITHIN.as_secs()
                )));
            }
            context
                .cancellable(tokio::time::sleep(std::time::Duration::from_millis(500)))
                .await?;
        }
    }
}
