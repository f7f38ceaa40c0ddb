//! Which tables of a manifest an IN_PLACE restore takes: the `entities` filter, then Esop's system-keyspace rules.

use crate::esop::manifest::{EntryType, Manifest, ManifestEntry};
use crate::node_fs::names::is_system_keyspace;
use crate::storage::Entities;

/// The request flags that let system tables through (Esop §4.5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemRestore {
    /// `newCluster`: the node joins a cluster that has no schema yet, so it needs the backup's schema tables.
    pub new_cluster: bool,
    /// `restoreSystemKeyspace`: every system table.
    pub restore_system_keyspace: bool,
    /// `restoreSystemAuth`: `system_auth` (roles and permissions).
    pub restore_system_auth: bool,
}

/// Whether Esop's system-keyspace rules let `keyspace.table` into an IN_PLACE restore: user tables always; the schema
/// (`system_schema`, and the pre-3.0 `system.schema_*` tables) with `newCluster` or `restoreSystemKeyspace`;
/// `system_auth` with `restoreSystemAuth` or `restoreSystemKeyspace`; any other system table only with
/// `restoreSystemKeyspace`.
pub fn system_rules(keyspace: &str, table: &str, flags: SystemRestore) -> bool {
    if !is_system_keyspace(keyspace) {
        return true;
    }
    if flags.restore_system_keyspace {
        return true;
    }
    let schema =
        keyspace == "system_schema" || keyspace == "system" && table.starts_with("schema_");
    if schema {
        return flags.new_cluster;
    }
    keyspace == "system_auth" && flags.restore_system_auth
}

/// One table an IN_PLACE restore takes, with its SSTable component entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedTable {
    pub keyspace: String,
    /// Without the id.
    pub table: String,
    /// The 32-hex id from the manifest: the restored files go to `<ks>/<table>-<id>`.
    pub id: String,
    /// `FILE` entries only: Esop 1.x `CQL_SCHEMA` entries are not data and are never downloaded.
    pub entries: Vec<ManifestEntry>,
}

impl SelectedTable {
    /// `<table>-<id>`, the table's directory name.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.table, self.id)
    }
}

/// The manifest's tables that `entities` names and [`system_rules`] allows, in manifest order. The manifest is
/// taken apart, not copied: a large one is held once.
///
/// As in Esop, the system rules apply after the entity filter: naming `system_auth` in `entities` without
/// `restoreSystemAuth` restores nothing of it.
pub fn select(manifest: Manifest, entities: &Entities, flags: SystemRestore) -> Vec<SelectedTable> {
    let mut selected = Vec::new();
    for (keyspace, tables) in manifest.snapshot.keyspaces {
        for (name, table) in tables.tables {
            if !(entities.includes(&keyspace, &name) && system_rules(&keyspace, &name, flags)) {
                continue;
            }
            selected.push(SelectedTable {
                keyspace: keyspace.clone(),
                table: name,
                id: table.id,
                entries: table
                    .sstables
                    .into_iter()
                    .flat_map(|(_, entries)| entries)
                    .filter(|entry| entry.kind == EntryType::File)
                    .collect(),
            });
        }
    }
    selected
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(tables: &[(&str, &str)]) -> Manifest {
        let mut keyspaces = serde_json::Map::new();
        for (keyspace, table) in tables {
            let entry = serde_json::json!({
                "sstables": { "nb-1-big": [ {
                    "objectKey": format!("data/{keyspace}/{table}-0123456789abcdef0123456789abcdef/1-2/nb-1-big-Data.db"),
                    "type": "FILE", "size": 3, "hash": "abc" },
                    { "objectKey": format!("data/{keyspace}/{table}-0123456789abcdef0123456789abcdef/schema.cql"),
                    "type": "CQL_SCHEMA", "size": 3 } ] },
                "id": "0123456789abcdef0123456789abcdef"
            });
            keyspaces
                .entry(keyspace.to_string())
                .or_insert_with(|| serde_json::json!({ "tables": {} }))["tables"][table] = entry;
        }
        let json = serde_json::json!({
            "snapshot": { "name": "tag", "keyspaces": keyspaces },
            "tokens": ["1"], "schemaVersion": "s"
        });
        Manifest::from_json(json.to_string().as_bytes()).expect("manifest")
    }

    const ALL: [(&str, &str); 9] = [
        ("ks1", "t1"),
        ("ks1", "t2"),
        ("ks2", "t1"),
        ("system_schema", "tables"),
        ("system", "schema_columnfamilies"),
        ("system", "local"),
        ("system_auth", "roles"),
        ("system_distributed", "repair_history"),
        ("system_traces", "sessions"),
    ];

    fn names(selected: &[SelectedTable]) -> Vec<String> {
        selected
            .iter()
            .map(|t| format!("{}.{}", t.keyspace, t.table))
            .collect()
    }

    fn selected(entities: &Entities, flags: SystemRestore) -> Vec<String> {
        names(&select(manifest(&ALL), entities, flags))
    }

    #[test]
    fn without_flags_only_user_tables() {
        assert_eq!(
            selected(&Entities::All, SystemRestore::default()),
            ["ks1.t1", "ks1.t2", "ks2.t1"]
        );
    }

    #[test]
    fn new_cluster_adds_the_schema_tables_only() {
        let flags = SystemRestore {
            new_cluster: true,
            ..SystemRestore::default()
        };
        assert_eq!(
            selected(&Entities::All, flags),
            [
                "ks1.t1",
                "ks1.t2",
                "ks2.t1",
                "system_schema.tables",
                "system.schema_columnfamilies"
            ]
        );
    }

    #[test]
    fn restore_system_auth_adds_system_auth_only() {
        let flags = SystemRestore {
            restore_system_auth: true,
            ..SystemRestore::default()
        };
        assert_eq!(
            selected(&Entities::All, flags),
            ["ks1.t1", "ks1.t2", "ks2.t1", "system_auth.roles"]
        );
    }

    #[test]
    fn restore_system_keyspace_takes_everything() {
        let flags = SystemRestore {
            restore_system_keyspace: true,
            ..SystemRestore::default()
        };
        assert_eq!(selected(&Entities::All, flags).len(), ALL.len());
    }

    #[test]
    fn entities_filter_keyspaces_and_tables() {
        let flags = SystemRestore::default();
        assert_eq!(
            selected(&Entities::parse("ks1").unwrap(), flags),
            ["ks1.t1", "ks1.t2"]
        );
        assert_eq!(
            selected(&Entities::parse("ks1.t2,ks2.t1").unwrap(), flags),
            ["ks1.t2", "ks2.t1"]
        );
        assert_eq!(
            selected(&Entities::parse("nope").unwrap(), flags),
            Vec::<String>::new()
        );
    }

    #[test]
    fn system_rules_apply_after_the_entity_filter() {
        let entities = Entities::parse("system_auth").unwrap();
        assert!(selected(&entities, SystemRestore::default()).is_empty());
        let flags = SystemRestore {
            restore_system_auth: true,
            ..SystemRestore::default()
        };
        assert_eq!(selected(&entities, flags), ["system_auth.roles"]);
    }

    #[test]
    fn only_file_entries_are_taken() {
        let tables = select(
            manifest(&[("ks1", "t1")]),
            &Entities::All,
            SystemRestore::default(),
        );
        assert_eq!(tables.len(), 1);
        assert_eq!(tables[0].entries.len(), 1);
        assert_eq!(tables[0].entries[0].kind, EntryType::File);
        assert_eq!(tables[0].dir_name(), "t1-0123456789abcdef0123456789abcdef");
    }
}
