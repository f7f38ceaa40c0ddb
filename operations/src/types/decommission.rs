//! `decommission`: streams this node's data to the others and removes it from the ring.

use serde::{Deserialize, Deserializer, Serialize};

use crate::decode;
use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::validation::Validate;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct DecommissionRequest {
    /// Decommission even if that leaves fewer replicas than the replication factor. Icarus defaults to `true`
    /// when the field is absent or null, and operators rely on it, so we do too.
    #[serde(default = "force_by_default", deserialize_with = "force")]
    pub force: bool,
}

impl Default for DecommissionRequest {
    fn default() -> Self {
        Self { force: true }
    }
}

fn force_by_default() -> bool {
    true
}

fn force<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    Ok(decode::option_bool(deserializer)?.unwrap_or(true))
}

impl Validate for DecommissionRequest {}

pub struct Decommission;

impl Operation for Decommission {
    const TYPE: &'static str = "decommission";
    const EXCLUSIVE: Option<&'static str> = Some(super::NODE_STATE);
    type Request = DecommissionRequest;

    /// Blocks until the node has left the ring (streaming its data away first); the call's time limit is long.
    async fn run(
        &self,
        request: DecommissionRequest,
        context: OperationContext,
    ) -> Result<(), OperationFailure> {
        let cassandra = context.cassandra().await?;
        context
            .cancellable(cassandra.decommission(request.force))
            .await??;
        Ok(())
    }
}
