//! Emptying the directories a restored node must not start with: hints, saved caches and commit logs.

use std::path::{Path, PathBuf};

use crate::node_fs::{FsError, NodeDirs, RelPath, Root};

#[derive(Debug, thiserror::Error)]
pub enum CleanError {
    #[error("refusing to empty {}: it holds the data directory {}", dir.display(), data.display())]
    HoldsData { dir: PathBuf, data: PathBuf },
    #[error(transparent)]
    Io(#[from] FsError),
}

/// What [`clean_node_dirs`] removed: the entries it found directly in each directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanReport {
    pub removed: Vec<PathBuf>,
}

/// Empties the hints, saved caches and commit-log directories of `dirs`, and Esop's `<cassandra_dir>/commitlogs`,
/// keeping the directories themselves (with their owner and mode). A directory that does not exist is skipped.
///
/// Stale hints would be replayed to other nodes, saved key caches point into the replaced SSTables, and commit-log
/// segments would replay writes made after the backup over the restored data. A directory that is, or holds, a data
/// directory (symbolic links resolved) is refused, so a misconfigured `commitlog_directory` cannot wipe the data.
/// Each directory is opened as a root: symbolic links inside are removed as links, never followed.
pub fn clean_node_dirs(cassandra_dir: &Path, dirs: &NodeDirs) -> Result<CleanReport, CleanError> {
    let mut targets = vec![
        dirs.hints.clone(),
        dirs.saved_caches.clone(),
        dirs.commitlog.clone(),
        cassandra_dir.join("commitlogs"),
    ];
    targets.dedup();
    let resolve = |path: &Path| std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let data_dirs: Vec<(PathBuf, PathBuf)> = dirs
        .data
        .iter()
        .chain(&dirs.local_system_data)
        .map(|data| (data.clone(), resolve(data)))
        .collect();
    for target in &targets {
        let resolved = resolve(target);
        if let Some((data, _)) = data_dirs
            .iter()
            .find(|(_, data)| data.starts_with(&resolved))
        {
            return Err(CleanError::HoldsData {
                dir: target.clone(),
                data: data.clone(),
            });
        }
    }
    let mut report = CleanReport::default();
    for target in targets {
        let root = match Root::open(&target) {
            Ok(root) => root,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error.into()),
        };
        for entry in root.entries(&RelPath::root())? {
            let Ok(rel) = RelPath::name(&entry.name) else {
                continue;
            };
            root.remove_tree(&rel)?;
            let path = root.display(&rel);
            tracing::info!(path = %path.display(), "removed before the restored node starts");
            report.removed.push(path);
        }
    }
    Ok(report)
}
