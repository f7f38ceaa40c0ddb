//! The IN_PLACE restore strategy (Esop §4.5), a restore into a stopped node: the run, start to end ([`restore`],
//! in `run.rs`), and the filesystem side it calls with the node down, as blocking library functions: which manifest
//! tables to take ([`select`](fn@select)), what to keep, delete and download in the data directories
//! ([`plan`](fn@plan)), emptying hints, saved caches and commit logs ([`clean_node_dirs`]) and the `cassandra.yaml`
//! edit ([`update_cassandra_yaml`]). Where the node's directories are comes from [`crate::node_fs::NodeConfig`];
//! every change goes through a [`crate::node_fs::Root`].

mod clean;
mod plan;
mod run;
mod select;
mod yaml;

#[cfg(test)]
mod tests;

pub use clean::{CleanError, CleanReport, clean_node_dirs};
pub use plan::{LocalPlan, OtherTableDir, PlanError, PlannedFile, plan};
pub use run::restore;
pub use select::{SelectedTable, SystemRestore, select, system_rules};
pub use yaml::{
    AutoBootstrap, EditProblem, InitialToken, YamlChange, YamlError, edit_cassandra_yaml,
    update_cassandra_yaml,
};

// Each message names the file or directory and what was wrong with it: the operation's error as it stands.
crate::operation::engine_failures!(CleanError, PlanError, YamlError);
