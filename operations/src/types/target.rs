//! What most Cassandra-facing operations do first: get the facade, and check that the keyspace and tables they
//! name exist, so a typo fails with a clear error before anything runs.

use crate::cassandra::Cassandra;
use crate::operation::{OperationContext, OperationFailure};

pub struct Target {
    pub cassandra: Cassandra,
    pub keyspace: String,
    /// Empty: every table of the keyspace.
    pub tables: Vec<String>,
}

/// Connects and checks `keyspace` (validated as present at submit time) and `tables` exist on the node.
pub async fn target(
    context: &OperationContext,
    keyspace: Option<String>,
    tables: Option<Vec<String>>,
) -> Result<Target, OperationFailure> {
    let cassandra = context.cassandra().await?;
    let keyspace = keyspace.unwrap_or_default();
    let tables = tables.unwrap_or_default();
    context
        .cancellable(cassandra.require_tables(&keyspace, &tables))
        .await??;
    Ok(Target {
        cassandra,
        keyspace,
        tables,
    })
}
