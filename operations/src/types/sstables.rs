//! What the SSTable-rewriting operations (cleanup, scrub, upgradesstables, garbagecollect) share: turning
//! Cassandra's status code into an outcome a user can act on.

use crate::cassandra::SsTableOpStatus;
use crate::operation::OperationFailure;

/// COMPLETED for `Successful`; FAILED with Icarus's messages (which point at the server log) otherwise.
pub fn outcome(
    status: SsTableOpStatus,
    verb: &str,
    keyspace: &str,
) -> Result<(), OperationFailure> {
    match status {
        SsTableOpStatus::Successful => Ok(()),
        SsTableOpStatus::Aborted => Err(OperationFailure::Failed(format!(
            "Aborted {verb} at least one table in keyspace {keyspace}, check server logs for more information."
        ))),
        SsTableOpStatus::UnableToCancel => Err(OperationFailure::Failed(format!(
            "Failed marking some sstables compacting in keyspace {keyspace}, check server logs for more information."
        ))),
    }
}
