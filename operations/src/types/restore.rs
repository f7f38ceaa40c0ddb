//! `restore`: download a backup from object storage and load it into Cassandra, with Esop's strategies and
//! phases (the work itself is in [`crate::restore`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cluster::Timeout;
use crate::cluster::restore::{ClusterRestore, RestorePart};
use crate::decode::{self, DataRate};
use crate::node_fs::{NodeConfig, staging};
use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::restore::plan::RestorePlan;
pub use crate::restore::plan::{Phase, Strategy};
use crate::storage::request::{self as storage, Connection, StorageFields, StorageRequest};
use crate::storage::{Entities, KeyspaceTable};
use crate::types::import::ImportRequest;
use crate::validation::{self, Violations};

/// `null` is the default, as Jackson reads it.
fn strategy_or_default<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Strategy, D::Error> {
    Ok(Option::<Strategy>::deserialize(deserializer)?.unwrap_or_default())
}

/// Esop's `RestoreOperationRequest`: the connection fields and these.
pub type RestoreRequest = StorageRequest<RestoreFields>;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreFields {
    /// A tag (the newest backup whose name starts with it) or a backup's full name.
    pub snapshot_tag: String,
    /// Absent: the data directories Cassandra reports (IN_PLACE: those of `cassandra.yaml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dirs: Option<Vec<String>>,
    #[serde(
        default = "cassandra_directory",
        deserialize_with = "directory_or_default"
    )]
    pub cassandra_directory: String,
    #[serde(default = "cassandra_config_directory")]
    pub cassandra_config_directory: String,
    #[serde(default, skip_serializing_if = "Entities::is_all")]
    pub entities: Entities,
    #[serde(default, deserialize_with = "strategy_or_default")]
    pub restoration_strategy_type: Strategy,
    /// Absent for HARDLINKS and IMPORT: every phase in order (Esop requires one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restoration_phase: Option<Phase>,
    /// Esop's `import` object: `sourceDir`, where HARDLINKS and IMPORT download to, and the import checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import: Option<ImportRequest>,
    #[serde(default, deserialize_with = "decode::bool")]
    pub global_request: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub single_phase: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dc: Option<String>,
    #[serde(default)]
    pub timeout: Timeout,
    #[serde(default, deserialize_with = "decode::bool")]
    pub no_delete_truncates: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub no_delete_downloads: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub no_download_data: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<uuid::Uuid>,
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
    pub rename: BTreeMap<KeyspaceTable, KeyspaceTable>,
    /// Beyond Esop: a cap on the whole download's rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<DataRate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
}

impl RestoreFields {
    /// A restore of `snapshot_tag` with Esop's defaults (IN_PLACE, everything).
    pub fn new(snapshot_tag: impl Into<String>) -> Self {
        RestoreFields {
            snapshot_tag: snapshot_tag.into(),
            data_dirs: None,
            cassandra_directory: cassandra_directory(),
            cassandra_config_directory: cassandra_config_directory(),
            entities: Entities::All,
            restoration_strategy_type: Strategy::InPlace,
            restoration_phase: None,
            import: None,
            global_request: false,
            single_phase: false,
            dc: None,
            timeout: Timeout::default(),
            no_delete_truncates: false,
            no_delete_downloads: false,
            no_download_data: false,
            schema_version: None,
            exact_schema_version: false,
            restore_system_keyspace: false,
            restore_system_auth: false,
            new_cluster: false,
            update_cassandra_yaml: false,
            resolve_host_id_from_topology: false,
            rename: BTreeMap::new(),
            bandwidth: None,
            kms_key_id: None,
        }
    }

    /// Where HARDLINKS and IMPORT download to, when given.
    pub fn source_dir(&self) -> Option<&str> {
        self.import.as_ref().and_then(|i| i.source_dir.as_deref())
    }

    /// What the restore engine runs for this request on one node.
    pub fn plan(&self) -> RestorePlan {
        RestorePlan {
            snapshot_tag: self.snapshot_tag.clone(),
            entities: self.entities.clone(),
            restoration_strategy_type: self.restoration_strategy_type,
            restoration_phase: self.restoration_phase,
            source_dir: self.source_dir().map(str::to_string),
            import_checks: self.import.clone().unwrap_or_default().checks(),
            schema_version: self.schema_version,
            exact_schema_version: self.exact_schema_version,
            restore_system_keyspace: self.restore_system_keyspace,
            restore_system_auth: self.restore_system_auth,
            new_cluster: self.new_cluster,
            update_cassandra_yaml: self.update_cassandra_yaml,
            resolve_host_id_from_topology: self.resolve_host_id_from_topology,
            rename: self.rename.clone(),
            bandwidth: self.bandwidth,
            no_delete_truncates: self.no_delete_truncates,
            no_delete_downloads: self.no_delete_downloads,
            no_download_data: self.no_download_data,
        }
    }
}

impl RestorePart for RestoreFields {
    fn settled(&self, backup: &str, pinned: bool) -> Self {
        let mut part = RestoreFields {
            snapshot_tag: backup.to_string(),
            global_request: false,
            single_phase: false,
            ..self.clone()
        };
        if pinned {
            part.exact_schema_version = false;
            part.schema_version = None;
        }
        part
    }

    fn in_phase(&self, phase: Phase) -> Self {
        RestoreFields {
            restoration_phase: Some(phase),
            ..self.clone()
        }
    }

    fn keeping_truncates(&self) -> Self {
        RestoreFields {
            no_delete_truncates: true,
            ..self.clone()
        }
    }
}

pub fn cassandra_directory() -> String {
    "/var/lib/cassandra".into()
}

pub fn cassandra_config_directory() -> String {
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

impl StorageFields for RestoreFields {
    fn validate(&self, connection: &Connection, v: &mut Violations) {
        if self.snapshot_tag.trim().is_empty() {
            v.add("snapshotTag", "must not be empty");
        } else if self.snapshot_tag.contains(['/', '\\']) {
            v.add(
                "snapshotTag",
                format!("'{}' cannot name a backup", self.snapshot_tag),
            );
        }
        storage::data_dirs(v, &self.data_dirs);
        validation::absolute_path(v, "cassandraDirectory", &self.cassandra_directory);
        validation::absolute_path(
            v,
            "cassandraConfigDirectory",
            &self.cassandra_config_directory,
        );
        storage::kms_key_id(v, &self.kms_key_id);
        if self.restoration_strategy_type == Strategy::InPlace {
            // The node is down: nothing can complete the location.
            storage::node_location(v, connection, None);
            if self.restoration_phase.is_some() {
                v.add(
                    "restorationPhase",
                    "is not used with the IN_PLACE strategy; leave it out",
                );
            }
            if !self.rename.is_empty() {
                v.add("rename", "cannot be used with the IN_PLACE strategy");
            }
            if self.global_request {
                v.add(
                    "globalRequest",
                    "cannot be used with the IN_PLACE strategy: each node restores itself while it is down",
                );
            }
        } else {
            if self.restore_system_keyspace {
                v.add(
                    "restoreSystemKeyspace",
                    "works only with the IN_PLACE strategy",
                );
            }
            if self.single_phase && self.restoration_phase.is_none() {
                v.add("restorationPhase", "is required with singlePhase");
            }
            if self.global_request
                && !self.single_phase
                && self
                    .restoration_phase
                    .is_some_and(|phase| phase != Phase::Init)
            {
                v.add(
                    "restorationPhase",
                    "a cluster-wide restore runs every phase from INIT: give INIT or leave it out, or set singlePhase to run one phase on every node",
                );
            }
            self.validate_import(v);
        }
        self.validate_rename(v);
    }
}

impl RestoreFields {
    /// HARDLINKS and IMPORT download into `import.sourceDir`: an absolute path or a `file://` URI of one, without
    /// `..`. Where it may lie is checked against the node's directories ([`Restore::check_request`], and again
    /// against those Cassandra reports when the restore starts).
    fn validate_import(&self, v: &mut Violations) {
        if let Some(source) = self.source_dir()
            && let Err(problem) = staging::staging_path(source)
        {
            v.add("import.sourceDir", problem);
        }
    }

    /// Esop's rules: distinct targets, no chains, table-form entities that hold every source and no target.
    fn validate_rename(&self, v: &mut Violations) {
        if self.rename.is_empty() {
            return;
        }
        let tables = match &self.entities {
            Entities::Tables(tables) => tables.as_slice(),
            _ => {
                v.add("rename", "needs entities listing keyspace.table entries");
                &[]
            }
        };
        let mut targets: Vec<&KeyspaceTable> = Vec::new();
        for (from, to) in &self.rename {
            let field = format!("rename.{from}");
            if targets.contains(&to) {
                v.add(
                    field.clone(),
                    format!("'{to}' is the target of more than one table"),
                );
            }
            targets.push(to);
            if from == to {
                v.add(field.clone(), "renames a table to itself");
            } else if self.rename.contains_key(to) {
                v.add(
                    field.clone(),
                    format!("'{to}' is itself renamed; chains are not allowed"),
                );
            }
            if !tables.is_empty() && !tables.contains(from) {
                v.add(field.clone(), "is not among the entities restored");
            }
            if tables.contains(to) {
                v.add(field, format!("target '{to}' is also restored as itself"));
            }
        }
    }
}

/// The `restore` type, with where the node's files are when it is stopped (the operator's configuration).
pub struct Restore {
    node: NodeConfig,
}

impl Restore {
    pub fn new(node: NodeConfig) -> Restore {
        Restore { node }
    }
}

/// A staging directory (`import.sourceDir`, `commitlogDownloadDir`) checked against the node's directories as the
/// operator configured them: at submit, so the common mistakes get a 400 naming `field`. (A running node's own
/// report is checked again when the operation starts.)
pub(crate) fn check_staging(
    violations: &mut Violations,
    field: &str,
    text: &str,
    node: &NodeConfig,
) {
    let Ok(path) = staging::staging_path(text) else {
        return; // Reported by the request's own validation.
    };
    let dirs = match node.dirs() {
        Ok(dirs) => dirs,
        Err(error) => {
            violations.add(
                field,
                format!("cannot be checked against the node's directories: {error}"),
            );
            return;
        }
    };
    let verdict = staging::resolve(&path)
        .map_err(|error| error.to_string())
        .and_then(|resolved| staging::check(&resolved.canonical(), &staging::guarded_by(&dirs)));
    if let Err(why) = verdict {
        violations.add(
            field,
            format!("'{text}' {why}: give a directory of its own, which the restore fills and then empties"),
        );
    }
}

impl Operation for Restore {
    const TYPE: &'static str = "restore";
    const EXCLUSIVE: Option<&'static str> = Some(super::RESTORE);
    type Request = RestoreRequest;

    /// With Cassandra stopped (IN_PLACE) the directories the request names must be the node's, as the operator
    /// configured them: the restore empties and rewrites what it finds there. A staging directory must keep clear of
    /// them.
    fn check_request(&self, request: &RestoreRequest, violations: &mut Violations) {
        let fields = &request.fields;
        if fields.restoration_strategy_type != Strategy::InPlace {
            if let Some(source) = fields.source_dir() {
                check_staging(violations, "import.sourceDir", source, &self.node);
            }
            return;
        }
        let flags = self.node.flags;
        self.node.check_request_dir(
            violations,
            "cassandraDirectory",
            &fields.cassandra_directory,
            &self.node.cassandra_dir,
            flags.cassandra_dir,
        );
        self.node
            .check_config_directory(violations, &fields.cassandra_config_directory);
        let Some(data_dirs) = &fields.data_dirs else {
            return;
        };
        match self.node.dirs() {
            Ok(dirs) => {
                let known: Vec<std::path::PathBuf> =
                    dirs.data.iter().map(|dir| staging::lexical(dir)).collect();
                for (index, given) in data_dirs.iter().enumerate() {
                    let field = format!("dataDirs[{index}]");
                    match staging::normalize(given) {
                        Ok(path) if known.contains(&path) => {}
                        Ok(_) => violations.add(
                            field,
                            format!(
                                "'{given}' is not one of the node's data directories ({}, from {} of this sidecar)",
                                known.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
                                flags.config
                            ),
                        ),
                        Err(problem) => violations.add(field, format!("'{given}' {problem}")),
                    }
                }
            }
            Err(error) => violations.add("dataDirs", format!("cannot be checked: {error}")),
        }
    }

    /// A cluster-wide restore's coordinator sends its own node a restore too: coordinators exclude each other,
    /// not the node's own restore.
    fn exclusive(&self, request: &RestoreRequest) -> Option<&'static str> {
        if request.fields.global_request {
            Some(super::GLOBAL_RESTORE)
        } else {
            Self::EXCLUSIVE
        }
    }

    async fn run(
        &self,
        request: RestoreRequest,
        context: OperationContext,
    ) -> Result<(), OperationFailure> {
        if request.fields.global_request {
            let fields = &request.fields;
            let restore = ClusterRestore {
                plan: fields.plan(),
                timeout: fields.timeout,
                dc: fields.dc.clone(),
                single_phase: fields.single_phase,
                request,
            };
            let response = crate::cluster::restore::restore(restore, &context).await?;
            return context.respond(&response);
        }
        let plan = request.fields.plan();
        let response = crate::operation_store::releasing_memory(crate::restore::restore(
            &request.connection,
            &plan,
            &self.node,
            &context,
        ))
        .await?;
        context.respond(&response)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use super::*;
    use crate::cluster::{changed_part_body, storage_part_body};
    use crate::decode::DecodeRequest;
    use crate::storage::StorageLocation;

    /// Each part of a cluster-wide restore is what the coordinator sent when it patched the request's body key by
    /// key, byte for byte: the same keys in the same order, pinned or not, and in the CLEANUP after a failure.
    #[test]
    fn cluster_parts_are_the_request_patched_as_before() {
        let request: RestoreRequest = DecodeRequest::decode_request(json!({
            "storageLocation": "s3://bucket/c/dc1/n0", "snapshotTag": "nightly",
            "restorationStrategyType": "HARDLINKS", "globalRequest": true, "timeout": "90m",
            "schemaVersion": "9bd8e6a2-4cf4-3a6f-b9c9-64a8bb3a5c3e", "exactSchemaVersion": true,
            "import": {"sourceDir": "/var/lib/cassandra/downloadedsstables"}, "entities": "ks.t",
            "proxySettings": {"useProxy": true, "proxyHost": "proxy", "proxyPort": 3128,
                "proxyUser": "u", "proxyPassword": "secret"}
        }))
        .unwrap();
        let backup = "nightly-9bd8e6a2-4cf4-3a6f-b9c9-64a8bb3a5c3e-1764000000123";
        let location = StorageLocation::parse("s3://bucket/c/dc2/n7").unwrap();
        let base = storage_part_body("restore", &request).unwrap();
        for pinned in [true, false] {
            // The coordinator's former template and parts.
            let mut template = base.clone();
            template.insert("snapshotTag".into(), backup.into());
            template.insert("singlePhase".into(), false.into());
            if pinned {
                template.insert("exactSchemaVersion".into(), false.into());
                template.remove("schemaVersion");
            }
            let mut cleanup = template.clone();
            cleanup.insert("noDeleteTruncates".into(), true.into());
            let before = |template: &Map<String, Value>, phase: Phase| {
                let mut body = template.clone();
                body.insert("restorationPhase".into(), phase.name().into());
                body.insert("storageLocation".into(), location.to_string().into());
                serde_json::to_string(&body).unwrap()
            };
            let part = |fields: RestoreFields| {
                let mut part = StorageRequest {
                    connection: request.connection.clone(),
                    fields,
                };
                part.connection.storage_location = location.clone();
                let body = changed_part_body("restore", &base, &part).unwrap();
                assert_eq!(body["proxySettings"]["proxyPassword"], "secret");
                serde_json::to_string(&body).unwrap()
            };

            let settled = request.fields.settled(backup, pinned);
            for phase in Phase::ALL {
                assert_eq!(
                    part(settled.in_phase(phase)),
                    before(&template, phase),
                    "{phase}, pinned {pinned}"
                );
            }
            assert_eq!(
                part(settled.keeping_truncates().in_phase(Phase::Cleanup)),
                before(&cleanup, Phase::Cleanup),
                "pinned {pinned}"
            );
        }
    }
}
