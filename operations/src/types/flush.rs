//! `flush`: writes memtables to SSTables, like `nodetool flush`.

use super::target::{TableTarget, Target};
use crate::operation::{Operation, OperationContext, OperationFailure};

/// Flush takes nothing beyond what it acts on.
pub type FlushRequest = TableTarget;

pub struct Flush;

impl Operation for Flush {
    const TYPE: &'static str = "flush";
    type Request = FlushRequest;

    async fn run(
        &self,
        request: FlushRequest,
        context: OperationContext,
    ) -> Result<(), OperationFailure> {
        let Target {
            cassandra,
            keyspace,
            tables,
        } = request.resolve(&context).await?;
        context
            .cancellable(cassandra.flush(&keyspace, &tables))
            .await??;
        Ok(())
    }
}
