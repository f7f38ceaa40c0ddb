//! What a sidecar does once when it starts, for what its previous run left behind. The binary calls
//! [`after_restart`] without knowing which operation types need it; each type's clean-up is named here.

use std::sync::Arc;

use crate::operation::Services;
use crate::record::OperationRecord;

/// Cleans up after the operations a restart `interrupted` (marked failed by the store as it opened): today the
/// snapshots of interrupted backups, cleared in the background once Cassandra answers.
pub fn after_restart(services: Arc<Services>, interrupted: Vec<Arc<OperationRecord>>) {
    if interrupted.is_empty() {
        return;
    }
    tokio::spawn(crate::backup::interrupted::clear_snapshots(
        services,
        interrupted,
    ));
}
