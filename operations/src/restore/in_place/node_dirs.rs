//! Where a stopped node keeps its files, read from `cassandra.yaml` (an IN_PLACE restore runs with the node down, so
//! JMX cannot say), and emptying the directories a restored node must not start with.

use std::io;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

/// The node's directories as Cassandra resolves them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDirs {
    pub data: Vec<PathBuf>,
    /// `local_system_data_file_directory` (4.0+): when set, Cassandra keeps `system` and `system_schema` there
    /// rather than in `data`; see [`NodeDirs::data_dirs_for`].
    pub local_system_data: Option<PathBuf>,
    pub commitlog: PathBuf,
    pub saved_caches: PathBuf,
    pub hints: PathBuf,
}

impl NodeDirs {
    /// Cassandra's defaults under its storage directory (`cassandra.storagedir`, `/var/lib/cassandra` in the
    /// packages, Esop's `cassandraDirectory`).
    pub fn defaults(cassandra_dir: &Path) -> NodeDirs {
        NodeDirs {
            data: vec![cassandra_dir.join("data")],
            local_system_data: None,
            commitlog: cassandra_dir.join("commitlog"),
            saved_caches: cassandra_dir.join("saved_caches"),
            hints: cassandra_dir.join("hints"),
        }
    }

    /// The data directories a keyspace's tables live in.
    pub fn data_dirs_for(&self, keyspace: &str) -> &[PathBuf] {
        match &self.local_system_data {
            Some(dir) if keyspace == "system" || keyspace == "system_schema" => {
                std::slice::from_ref(dir)
            }
            _ => &self.data,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeDirsError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not valid YAML: {source}", path.display())]
    Yaml {
        path: PathBuf,
        #[source]
        source: serde_yaml_ng::Error,
    },
    #[error("{}: {field} {problem}", path.display())]
    Field {
        path: PathBuf,
        field: &'static str,
        problem: &'static str,
    },
    #[error("refusing to empty {}: it holds the data directory {}", dir.display(), data.display())]
    HoldsData { dir: PathBuf, data: PathBuf },
    #[error("emptying {}: {source}", path.display())]
    Clean {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// `data_file_directories`, `local_system_data_file_directory`, `commitlog_directory`, `saved_caches_directory` and
/// `hints_directory` from `cassandra_yaml`; a setting that is absent, commented out or empty takes Cassandra's
/// default under `cassandra_dir`.
pub fn read_yaml_dirs(
    cassandra_yaml: &Path,
    cassandra_dir: &Path,
) -> Result<NodeDirs, NodeDirsError> {
    let text = std::fs::read_to_string(cassandra_yaml).map_err(|source| NodeDirsError::Read {
        path: cassandra_yaml.to_owned(),
        source,
    })?;
    let yaml: Value = serde_yaml_ng::from_str(&text).map_err(|source| NodeDirsError::Yaml {
        path: cassandra_yaml.to_owned(),
        source,
    })?;
    let field_error = |field, problem| NodeDirsError::Field {
        path: cassandra_yaml.to_owned(),
        field,
        problem,
    };
    let path = |field: &'static str| -> Result<Option<PathBuf>, NodeDirsError> {
        match yaml.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
            Some(Value::String(text)) => Ok(Some(PathBuf::from(text.trim()))),
            Some(_) => Err(field_error(field, "is not a path")),
        }
    };
    let mut dirs = NodeDirs::defaults(cassandra_dir);
    match yaml.get("data_file_directories") {
        None | Some(Value::Null) => {}
        Some(Value::Sequence(items)) if items.is_empty() => {}
        Some(Value::Sequence(items)) => {
            dirs.data = items
                .iter()
                .map(|item| match item {
                    Value::String(text) if !text.trim().is_empty() => {
                        Ok(PathBuf::from(text.trim()))
                    }
                    _ => Err(field_error(
                        "data_file_directories",
                        "has an entry that is not a path",
                    )),
                })
                .collect::<Result<_, _>>()?;
        }
        Some(_) => {
            return Err(field_error(
                "data_file_directories",
                "is not a list of paths",
            ));
        }
    }
    dirs.local_system_data = path("local_system_data_file_directory")?;
    if let Some(dir) = path("commitlog_directory")? {
        dirs.commitlog = dir;
    }
    if let Some(dir) = path("saved_caches_directory")? {
        dirs.saved_caches = dir;
    }
    if let Some(dir) = path("hints_directory")? {
        dirs.hints = dir;
    }
    Ok(dirs)
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
/// directory is refused, so a misconfigured `commitlog_directory` cannot wipe the data.
pub fn clean_node_dirs(
    cassandra_dir: &Path,
    dirs: &NodeDirs,
) -> Result<CleanReport, NodeDirsError> {
    let mut targets = vec![
        dirs.hints.clone(),
        dirs.saved_caches.clone(),
        dirs.commitlog.clone(),
        cassandra_dir.join("commitlogs"),
    ];
    targets.dedup();
    let data_dirs: Vec<&PathBuf> = dirs.data.iter().chain(&dirs.local_system_data).collect();
    for target in &targets {
        if let Some(data) = data_dirs.iter().find(|data| data.starts_with(target)) {
            return Err(NodeDirsError::HoldsData {
                dir: target.clone(),
                data: (*data).clone(),
            });
        }
    }
    let mut report = CleanReport::default();
    for target in targets {
        let clean_error = |source| NodeDirsError::Clean {
            path: target.clone(),
            source,
        };
        let entries = match std::fs::read_dir(&target) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(clean_error(e)),
        };
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.map_err(clean_error)?;
            let is_dir = entry.file_type().map_err(clean_error)?.is_dir();
            paths.push((entry.path(), is_dir));
        }
        paths.sort();
        for (path, is_dir) in paths {
            let removed = if is_dir {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|source| NodeDirsError::Clean {
                path: path.clone(),
                source,
            })?;
            tracing::info!(path = %path.display(), "removed before the restored node starts");
            report.removed.push(path);
        }
    }
    Ok(report)
}
