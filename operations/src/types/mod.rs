//! The operation types, one module each, and the registry that lists them.

pub mod backup;
pub mod cleanup;
pub mod commitlog_backup;
pub mod commitlog_restore;
pub mod compaction;
pub mod decommission;
pub mod drain;
pub mod flush;
pub mod import;
pub mod list;
pub mod one_table;
pub mod rebuild;
pub mod refresh;
pub mod remove_backup;
pub mod repair;
pub mod restore;
pub mod scrub;
pub mod sleep;
pub mod snapshots;
mod sstables;
pub mod stop;
pub mod target;
pub mod truncate;
pub mod upgradesstables;
pub mod verify;

use crate::cluster::rolling::RollingOperation;
use crate::registry::Registry;
use one_table::{OnTable, TableAction};

/// The group of operations that change what the node is (decommission, drain, rebuild): one at a time.
pub const NODE_STATE: &str = "node-state";

/// Restores write into the node's tables and directories: one at a time.
pub const RESTORE: &str = "restore";

/// Cluster-wide restores: one coordinator at a time on a node.
pub const GLOBAL_RESTORE: &str = "global-restore";

/// Switches for the types that are off unless asked for, and what the types need of the sidecar's configuration.
#[derive(Debug, Clone)]
pub struct TypeOptions {
    /// `truncate` deletes data, so Icarus (and we) offer it only with `--enable-truncate`.
    pub enable_truncate: bool,
    /// `sleep`, for testing the API without touching Cassandra.
    pub enable_test_operations: bool,
    /// Where the node's files are when Cassandra is stopped (IN_PLACE restores, `commitlog-restore`).
    pub node: crate::node_fs::NodeConfig,
}

impl Default for TypeOptions {
    fn default() -> Self {
        TypeOptions {
            enable_truncate: false,
            enable_test_operations: false,
            node: crate::node_fs::NodeConfig::package_defaults(),
        }
    }
}

/// Every operation type this build offers.
pub fn registry(options: TypeOptions) -> Registry {
    let mut registry = Registry::new();
    registry
        .register(backup::Backup)
        .register(list::List)
        .register(remove_backup::RemoveBackup)
        .register(RollingOperation(cleanup::Cleanup))
        .register(commitlog_backup::CommitLogBackup)
        .register(commitlog_restore::CommitLogRestore::new(
            options.node.clone(),
        ))
        .register(RollingOperation(compaction::Compact))
        .register(RollingOperation(compaction::GarbageCollect))
        .register(compaction::SetThroughput)
        .register(decommission::Decommission)
        .register(drain::Drain)
        .register(RollingOperation(flush::Flush))
        .register(import::Import)
        .register(rebuild::Rebuild)
        .register(OnTable(refresh::Refresh))
        .register(RollingOperation(repair::Repair))
        .register(restore::Restore::new(options.node.clone()))
        .register(RollingOperation(scrub::Scrub))
        .register(snapshots::Snapshot)
        .register(snapshots::ClearSnapshot)
        .register(snapshots::ListSnapshots)
        .register(stop::Stop)
        .register(RollingOperation(upgradesstables::UpgradeSSTables))
        .register(verify::Verify);
    if options.enable_truncate {
        registry.register(OnTable(truncate::Truncate));
    } else {
        registry.disable(
            truncate::Truncate::TYPE,
            "start the sidecar with --enable-truncate to use it",
        );
    }
    if options.enable_test_operations {
        registry.register(sleep::Sleep);
    }
    registry
}
