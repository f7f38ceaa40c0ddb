//! `drain`: flushes everything and stops accepting writes, before a restart.

use serde::{Deserialize, Serialize};

use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::validation::Validate;

/// Drain takes no parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct DrainRequest {}

impl Validate for DrainRequest {}

pub struct Drain;

impl Operation for Drain {
    const TYPE: &'static str = "drain";
    type Request = DrainRequest;

    async fn run(
        &self,
        _request: DrainRequest,
        context: OperationContext,
    ) -> Result<(), OperationFailure> {
        Err(context.facade_pending().await)
    }
}
