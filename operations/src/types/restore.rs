//! `restore`: download a backup from object storage and load it into Cassandra (Esop's strategies and
//! phases). Decoded and validated as it will be when restores arrive; until then it ends FAILED saying so.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::decode;
use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::storage::request::{self as storage, ProxySettings, Retry};
use crate::validation::{self, Validate, Violations};

const STRATEGIES: [&str; 3] = ["IN_PLACE", "HARDLINKS", "IMPORT"];
const PHASES: [&str; 5] = ["INIT", "DOWNLOAD", "TRUNCATE", "IMPORT", "CLEANUP"];

/// The `import` part of a restore: where downloaded SSTables go, and the import checks to skip.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreImport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_dir: Option<String>,
    #[serde(default, deserialize_with = "decode::bool")]
    pub keep_level: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub keep_repaired: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub no_verify: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub no_verify_tokens: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub no_invalidate_caches: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub quick: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub extended_verify: bool,
}

/// Esop's `RestoreOperationRequest`. Enums accept any letter case, as Jackson did.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dirs: Option<Vec<String>>,
    #[serde(
        default = "cassandra_directory",
        deserialize_with = "directory_or_default"
    )]
    pub cassandra_directory: String,
    #[serde(default = "cassandra_config_directory")]
    pub cassandra_config_directory: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entities: Option<String>,
    #[serde(default = "in_place", deserialize_with = "strategy")]
    pub restoration_strategy_type: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "decode::upper_case"
    )]
    pub restoration_phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import: Option<RestoreImport>,
    #[serde(default, deserialize_with = "decode::bool")]
    pub global_request: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub single_phase: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dc: Option<String>,
    #[serde(
        default = "storage::default_timeout_hours",
        deserialize_with = "storage::timeout_hours"
    )]
    pub timeout: i32,
    #[serde(default, deserialize_with = "decode::bool")]
    pub no_delete_truncates: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub no_delete_downloads: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub no_download_data: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<String>,
    #[serde(default, deserialize_with = "decode::bool")]
    pub exact_schema_version: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub restore_system_keyspace: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub restore_system_auth: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub new_cluster: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub update_cassandra_yaml: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub resolve_host_id_from_topology: bool,
    /// `"ks.from": "ks.to"`: restore a table under another name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rename: BTreeMap<String, String>,
    #[serde(
        default = "storage::default_concurrent_connections",
        deserialize_with = "decode::i32_or::<_, 10>"
    )]
    pub concurrent_connections: i32,
    #[serde(default, deserialize_with = "decode::bool")]
    pub insecure: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub skip_bucket_verification: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_settings: Option<ProxySettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
}

fn cassandra_directory() -> String {
    "/var/lib/cassandra".into()
}

fn cassandra_config_directory() -> String {
    "/etc/cassandra".into()
}

/// Esop treats a missing or root `cassandraDirectory` as the default.
fn directory_or_default<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<String, D::Error> {
    let directory = Option::<String>::deserialize(deserializer)?;
    Ok(
        match directory.as_deref().map(|d| d.trim_end_matches('/')) {
            None | Some("") => cassandra_directory(),
            Some(directory) => directory.to_string(),
        },
    )
}

fn in_place() -> String {
    "IN_PLACE".into()
}

fn strategy<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(decode::upper_case(deserializer)?.unwrap_or_else(in_place))
}

impl Validate for RestoreRequest {
    fn validate(&self, v: &mut Violations) {
        storage::storage_location(v, &self.storage_location);
        match &self.snapshot_tag {
            None => v.add("snapshotTag", "is required"),
            Some(tag) if tag.trim().is_empty() => v.add("snapshotTag", "must not be empty"),
            Some(_) => {}
        }
        storage::data_dirs(v, &self.data_dirs);
        storage::entities(v, &self.entities);
        storage::schema_version(v, &self.schema_version);
        storage::concurrent_connections(v, self.concurrent_connections);
        validation::absolute_path(v, "cassandraDirectory", &self.cassandra_directory);
        validation::absolute_path(
            v,
            "cassandraConfigDirectory",
            &self.cassandra_config_directory,
        );
        storage::proxy_and_retry(v, &self.proxy_settings, &self.retry);

        let strategy = self.restoration_strategy_type.as_str();
        if !STRATEGIES.contains(&strategy) {
            v.add(
                "restorationStrategyType",
                format!("must be one of {}, got '{strategy}'", STRATEGIES.join(", ")),
            );
            return;
        }
        if let Some(phase) = &self.restoration_phase
            && !PHASES.contains(&phase.as_str())
        {
            v.add(
                "restorationPhase",
                format!("must be one of {}, got '{phase}'", PHASES.join(", ")),
            );
        }
        if strategy == "IN_PLACE" {
            if self.restoration_phase.is_some() {
                v.add(
                    "restorationPhase",
                    "is not used with the IN_PLACE strategy; leave it out",
                );
            }
            if !self.rename.is_empty() {
                v.add("rename", "cannot be used with the IN_PLACE strategy");
            }
        } else {
            if self.restoration_phase.is_none() {
                v.add(
                    "restorationPhase",
                    format!("is required with the {strategy} strategy"),
                );
            }
            if self.restore_system_keyspace {
                v.add(
                    "restoreSystemKeyspace",
                    "works only with the IN_PLACE strategy",
                );
            }
            self.validate_import(v);
        }
        self.validate_rename(v);
    }
}

impl RestoreRequest {
    /// HARDLINKS and IMPORT download into `import.sourceDir`, which must lie outside Cassandra's own data.
    fn validate_import(&self, v: &mut Violations) {
        let Some(source) = self.import.as_ref().and_then(|i| i.source_dir.as_deref()) else {
            v.add(
                "import.sourceDir",
                format!(
                    "is required with the {} strategy",
                    self.restoration_strategy_type
                ),
            );
            return;
        };
        validation::absolute_path(v, "import.sourceDir", source);
        let source = source.trim_end_matches('/');
        let data = format!("{}/data", self.cassandra_directory);
        if source == self.cassandra_directory
            || source == data
            || source.starts_with(&format!("{data}/"))
        {
            v.add(
                "import.sourceDir",
                format!(
                    "'{source}' must not be {} or lie inside {data}",
                    self.cassandra_directory
                ),
            );
        }
    }

    /// Esop's rules: distinct targets, no chains, table-form entities that hold every source and no target.
    fn validate_rename(&self, v: &mut Violations) {
        if self.rename.is_empty() {
            return;
        }
        let entities: Vec<&str> = self
            .entities
            .as_deref()
            .unwrap_or_default()
            .split([',', ' '])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if entities.is_empty() || entities.iter().any(|e| !e.contains('.')) {
            v.add("rename", "needs entities listing keyspace.table entries");
        }
        let mut targets: Vec<&str> = Vec::new();
        for (from, to) in &self.rename {
            if targets.contains(&to.as_str()) {
                v.add(
                    format!("rename.{from}"),
                    format!("'{to}' is the target of more than one table"),
                );
            }
            targets.push(to);
            if self.rename.contains_key(to) {
                v.add(
                    format!("rename.{from}"),
                    format!("'{to}' is itself renamed; chains are not allowed"),
                );
            }
            if !entities.is_empty() && !entities.contains(&from.as_str()) {
                v.add(
                    format!("rename.{from}"),
                    "is not among the entities restored",
                );
            }
            if entities.contains(&to.as_str()) {
                v.add(
                    format!("rename.{from}"),
                    format!("target '{to}' is also restored as itself"),
                );
            }
        }
    }
}

pub struct Restore;

impl Operation for Restore {
    const TYPE: &'static str = "restore";
    type Request = RestoreRequest;

    async fn run(
        &self,
        _request: RestoreRequest,
        _context: OperationContext,
    ) -> Result<(), OperationFailure> {
        Err(OperationFailure::NotYetAvailable {
            operation: Self::TYPE,
            missing: "downloads from object storage are still to come".into(),
        })
    }
}
