//! Where a running node's files are, as Cassandra reports them over JMX, opened as roots ([`LiveNode`]), what a
//! staging directory must keep clear of, and where the table directories Cassandra names lie among them.

use std::path::Path;
use std::sync::Arc;

use crate::cassandra::Cassandra;
use crate::node_fs::staging::{self, Guarded};
use crate::node_fs::{RelPath, Root, Target};
use crate::operation::{OperationContext, OperationFailure};

/// The running node's data directories, and what a staging directory must keep clear of.
pub struct LiveNode {
    pub data: Vec<Arc<Root>>,
    pub guarded: Guarded,
}

impl LiveNode {
    /// Asks Cassandra where its data, commit-log and saved-caches directories are, and opens the data directories.
    /// Failing to learn any of them fails the restore: nothing is touched on a guess.
    pub async fn open(
        context: &OperationContext,
        cassandra: &Cassandra,
    ) -> Result<LiveNode, OperationFailure> {
        let data_dirs = context
            .cancellable(cassandra.data_file_locations())
            .await??;
        if data_dirs.is_empty() {
            return Err(OperationFailure::Failed(
                "Cassandra reports no data directory: nothing can be restored into it".into(),
            ));
        }
        let commitlog = context
            .cancellable(cassandra.commitlog_location())
            .await??;
        let saved_caches = context
            .cancellable(cassandra.saved_caches_location())
            .await??;
        let local_system = context
            .cancellable(cassandra.local_system_data_file_locations())
            .await??;
        let keyspaces = context.cancellable(cassandra.keyspaces()).await??;
        tokio::task::spawn_blocking(move || {
            let mut guarded = Guarded::default();
            let mut data = Vec::new();
            for dir in &data_dirs {
                let root = Root::open(Path::new(dir)).map_err(|error| {
                    OperationFailure::context("Cassandra's data directory", error)
                })?;
                guarded.data.push(root.canonical().to_owned());
                data.push(Arc::new(root));
            }
            for dir in &local_system {
                guarded.data_dir(Path::new(dir));
            }
            guarded.other("commit-log", Path::new(&commitlog));
            guarded.other("saved-caches", Path::new(&saved_caches));
            guarded.keyspaces = keyspaces.into_iter().collect();
            Ok(LiveNode { data, guarded })
        })
        .await?
    }

    /// A table directory Cassandra reported, as a place inside one of the data directories; one that lies
    /// elsewhere is refused rather than written to.
    pub fn locate(&self, path: &str) -> Result<Target, OperationFailure> {
        let path = Path::new(path);
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| staging::lexical(path));
        for root in &self.data {
            let below = path
                .strip_prefix(root.path())
                .or_else(|_| canonical.strip_prefix(root.canonical()));
            if let Ok(below) = below {
                let names: Vec<&str> = below.iter().filter_map(|name| name.to_str()).collect();
                if let Ok(rel) = RelPath::of(names)
                    && !rel.is_root()
                {
                    return Ok(Target::new(root, rel));
                }
            }
        }
        Err(OperationFailure::Failed(format!(
            "Cassandra reports the table directory {}, which is not inside its data directories ({})",
            path.display(),
            self.data
                .iter()
                .map(|root| root.path().display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}
