//! Where the node keeps its files: [`NodeDirs`], read from `cassandra.yaml` when the node is down (JMX cannot say
//! then), and [`NodeConfig`], where the operator said that file and Cassandra's directory are when the sidecar (or a
//! one-off command) started. A request never names these places by itself: the directory fields of a restore must
//! agree with them ([`NodeConfig::check_request_dir`]).

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

/// Where the operator said the node's files are, when the sidecar or the command started: `--cassandra-dir` and
/// `--cassandra-config` of `serve`, or `--cassandra-dir`, `--config-directory` and `--data-dir` of `daedalus restore`
/// and `commitlog-restore`. With the node down, the directories a restore may change are read from here, never from
/// the request alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// Cassandra's storage directory (`cassandra.storagedir`, `/var/lib/cassandra` in the packages): the defaults of
    /// the directories `cassandra.yaml` does not set lie under it.
    pub cassandra_dir: PathBuf,
    /// The node's `cassandra.yaml`; its directory is where `commitlog_archiving.properties` and `cassandra-env.sh` are.
    pub cassandra_yaml: PathBuf,
    /// Data directories given on the command line, which win over `cassandra.yaml`'s.
    pub data_dirs: Option<Vec<PathBuf>>,
    /// The commit-log directory given on the command line, which wins over `cassandra.yaml`'s.
    pub commitlog_dir: Option<PathBuf>,
    /// The flags these came from, for messages: `--cassandra-dir` and `--cassandra-config`, or the CLI's.
    pub flags: ConfigFlags,
}

/// The names of the flags a [`NodeConfig`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigFlags {
    pub cassandra_dir: &'static str,
    pub config: &'static str,
}

impl NodeConfig {
    /// Cassandra's package defaults: `/var/lib/cassandra` and `/etc/cassandra/cassandra.yaml`.
    pub fn package_defaults() -> NodeConfig {
        NodeConfig {
            cassandra_dir: PathBuf::from("/var/lib/cassandra"),
            cassandra_yaml: PathBuf::from("/etc/cassandra/cassandra.yaml"),
            data_dirs: None,
            commitlog_dir: None,
            flags: ConfigFlags {
                cassandra_dir: "--cassandra-dir",
                config: "--cassandra-config",
            },
        }
    }

    /// The directory of `cassandra.yaml`.
    pub fn config_dir(&self) -> &Path {
        self.cassandra_yaml
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("/"))
    }

    /// The node's directories: `cassandra.yaml`'s when the file is there, else Cassandra's defaults under the
    /// Cassandra directory; data directories given on the command line win. Blocking (reads the file).
    pub fn dirs(&self) -> Result<NodeDirs, NodeDirsError> {
        let mut dirs = if self.cassandra_yaml.is_file() {
            read_yaml_dirs(&self.cassandra_yaml, &self.cassandra_dir)?
        } else {
            NodeDirs::defaults(&self.cassandra_dir)
        };
        if let Some(data) = &self.data_dirs {
            dirs.data = data.clone();
        }
        if let Some(commitlog) = &self.commitlog_dir {
            dirs.commitlog = commitlog.clone();
        }
        Ok(dirs)
    }

    /// Checks a request's `cassandraConfigDirectory`: it must be the directory of the configured `cassandra.yaml`.
    pub fn check_config_directory(
        &self,
        violations: &mut crate::validation::Violations,
        given: &str,
    ) {
        self.check_request_dir(
            violations,
            "cassandraConfigDirectory",
            given,
            self.config_dir(),
            self.flags.config,
        );
    }

    /// Checks a request's directory field against what the operator configured: `given` (the field's text) must
    /// name `expected` (the same directory, up to `.`, repeated and trailing slashes). Adds a violation naming
    /// `field` otherwise.
    pub fn check_request_dir(
        &self,
        violations: &mut crate::validation::Violations,
        field: &str,
        given: &str,
        expected: &Path,
        flag: &str,
    ) {
        match super::staging::normalize(given) {
            Ok(path) if path == super::staging::lexical(expected) => {}
            Ok(_) => violations.add(
                field,
                format!(
                    "'{given}' is not the node's directory {} ({flag} of this sidecar): with Cassandra stopped, a \
                     request may only name the directories the sidecar was started with",
                    expected.display()
                ),
            ),
            Err(problem) => violations.add(field, format!("'{given}' {problem}")),
        }
    }
}
