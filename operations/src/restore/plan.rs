//! What a node's restore does, in the restore engine's own terms: which backup, which tables, the strategy and
//! phases, and the flags that change them. [`crate::types::restore`] builds it from Esop's request, so the engine
//! does not depend on how a request is spelled.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::decode::DataRate;
use crate::storage::{Entities, KeyspaceTable};

/// How a backup gets into Cassandra (Esop's `restorationStrategyType`, any letter case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Node down: files go straight into the data directories.
    #[default]
    InPlace,
    /// Node up: downloaded, then hard-linked into the table directories and loaded (`loadNewSSTables`).
    Hardlinks,
    /// Node up: downloaded, then imported (`importNewSSTables`, Cassandra 4.0+).
    Import,
}

/// A step of a HARDLINKS or IMPORT restore (Esop's `restorationPhase`, any letter case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Init,
    Download,
    Truncate,
    Import,
    Cleanup,
}

/// Enum values as Esop writes them, read in any letter case as Jackson did.
macro_rules! esop_enum {
    ($type:ty, [$($variant:path => $name:literal),+ $(,)?]) => {
        impl $type {
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            pub fn name(self) -> &'static str {
                match self { $($variant => $name),+ }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text.trim().to_ascii_uppercase().as_str() {
                    $($name => Some($variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.name())
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                <$type>::parse(&text).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "must be one of {}, got '{text}'",
                        Self::NAMES.join(", ")
                    ))
                })
            }
        }
    };
}

esop_enum!(Strategy, [
    Strategy::InPlace => "IN_PLACE",
    Strategy::Hardlinks => "HARDLINKS",
    Strategy::Import => "IMPORT",
]);

esop_enum!(Phase, [
    Phase::Init => "INIT",
    Phase::Download => "DOWNLOAD",
    Phase::Truncate => "TRUNCATE",
    Phase::Import => "IMPORT",
    Phase::Cleanup => "CLEANUP",
]);

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Init,
        Phase::Download,
        Phase::Truncate,
        Phase::Import,
        Phase::Cleanup,
    ];
}

/// A node's restore as the engine runs it ([`crate::restore::restore`]). The names are Esop's request fields, so a
/// reader can follow a field from the request to where it acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePlan {
    /// A tag (the newest backup whose name starts with it) or a backup's full name.
    pub snapshot_tag: String,
    pub entities: Entities,
    pub restoration_strategy_type: Strategy,
    /// HARDLINKS and IMPORT: the one phase to run; every phase in order when absent.
    pub restoration_phase: Option<Phase>,
    /// Where HARDLINKS and IMPORT download to; absent: beside the node's first data directory.
    pub source_dir: Option<String>,
    /// `importNewSSTables`'s booleans for IMPORT, in Cassandra's order (resetLevel, clearRepaired, verifySSTables,
    /// verifyTokens, invalidateCaches, extendedVerify, copyData).
    pub import_checks: [bool; 7],
    pub schema_version: Option<uuid::Uuid>,
    pub exact_schema_version: bool,
    pub restore_system_keyspace: bool,
    pub restore_system_auth: bool,
    pub new_cluster: bool,
    pub update_cassandra_yaml: bool,
    pub resolve_host_id_from_topology: bool,
    /// Restore a table under another name.
    pub rename: BTreeMap<KeyspaceTable, KeyspaceTable>,
    /// A cap on the whole download's rate.
    pub bandwidth: Option<DataRate>,
    pub no_delete_truncates: bool,
    pub no_delete_downloads: bool,
    pub no_download_data: bool,
}
