//! The tables a restore takes from a backup, where each comes from and goes to, and where its files land.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::esop::manifest::{EntryType, Manifest, ManifestEntry};
use crate::storage::{Entities, KeyspaceTable};

/// Keyspaces Cassandra manages itself. A restore into a live node never writes them (Esop's rule); IN_PLACE has
/// its own rules for them.
pub const SYSTEM_KEYSPACES: [&str; 8] = [
    "system",
    "system_schema",
    "system_auth",
    "system_distributed",
    "system_traces",
    "system_views",
    "system_virtual_schema",
    "system_cluster_metadata",
];

pub fn is_system_keyspace(keyspace: &str) -> bool {
    SYSTEM_KEYSPACES.contains(&keyspace)
}

/// One table of the backup to restore.
#[derive(Debug, Clone)]
pub struct RestoredTable<'m> {
    /// As in the backup.
    pub source: KeyspaceTable,
    /// Where it is restored (`rename` applied).
    pub target: KeyspaceTable,
    /// The table id in the backup (32 hex digits).
    pub backup_id: String,
    /// The `schema.cql` the backup recorded, to recreate a missing table.
    pub schema_content: Option<&'m str>,
    /// Its SSTable files.
    pub entries: Vec<&'m ManifestEntry>,
}

impl RestoredTable<'_> {
    pub fn size(&self) -> u64 {
        self.entries.iter().map(|entry| entry.size).sum()
    }
}

/// The non-system tables of `manifest` that `entities` covers, renamed per `rename`. Entities naming a keyspace or
/// table the backup does not hold are an error naming them, as is a rename of a table not restored.
pub fn live_tables<'m>(
    manifest: &'m Manifest,
    entities: &Entities,
    rename: &BTreeMap<KeyspaceTable, KeyspaceTable>,
) -> Result<Vec<RestoredTable<'m>>, String> {
    let tables: Vec<RestoredTable<'m>> = manifest
        .tables()
        .filter(|(keyspace, table, _)| {
            !is_system_keyspace(keyspace) && entities.includes(keyspace, table)
        })
        .map(|(keyspace, name, table)| {
            let source = KeyspaceTable::new(keyspace, name);
            RestoredTable {
                target: rename
                    .get(&source)
                    .cloned()
                    .unwrap_or_else(|| source.clone()),
                source,
                backup_id: table.id.clone(),
                schema_content: table.schema_content.as_deref(),
                entries: table
                    .entries()
                    .filter(|entry| entry.kind == EntryType::File)
                    .collect(),
            }
        })
        .collect();
    let missing: Vec<String> = match entities {
        Entities::All => Vec::new(),
        Entities::Keyspaces(keyspaces) => keyspaces
            .iter()
            .filter(|keyspace| !tables.iter().any(|t| &t.source.keyspace == *keyspace))
            .cloned()
            .collect(),
        Entities::Tables(wanted) => wanted
            .iter()
            .filter(|wanted| !tables.iter().any(|t| &t.source == *wanted))
            .map(ToString::to_string)
            .collect(),
    };
    if !missing.is_empty() {
        return Err(format!(
            "the backup holds no {} (system keyspaces are never restored into a running node)",
            missing.join(", ")
        ));
    }
    Ok(tables)
}

/// An SSTable file's path inside its table directory, from its object key
/// (`data/<ks>/<table>-<id>/[.<index>/]<generation>-<digest>/<file>`): `[.<index>/]<file>`.
pub fn path_in_table(object_key: &str) -> Option<PathBuf> {
    let mut segments = object_key.split('/');
    if segments.next() != Some("data") {
        return None;
    }
    let rest: Vec<&str> = segments.skip(2).collect();
    let relative = match rest.as_slice() {
        [_generation_digest, file] => PathBuf::from(file),
        [index, _generation_digest, file] if index.starts_with('.') => Path::new(index).join(file),
        _ => return None,
    };
    // A key is data from the bucket: refuse anything that would climb out of the table directory.
    relative
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
        .then_some(relative)
}

/// The table directory name `<table>-<id>`.
pub fn table_dir_name(table: &str, id: &str) -> String {
    format!("{table}-{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest::from_json(
            br#"{"snapshot": {"name": "n", "keyspaces": {
                "ks": {"tables": {
                    "a": {"id": "11", "sstables": {"nb-1-big": [
                        {"objectKey": "data/ks/a-11/1-99/nb-1-big-Data.db", "type": "FILE", "size": 5}]}},
                    "b": {"id": "22", "sstables": {}}}},
                "system_auth": {"tables": {"roles": {"id": "33", "sstables": {}}}}}},
              "tokens": ["1"], "schemaVersion": "s"}"#,
        )
        .unwrap()
    }

    #[test]
    fn live_restores_take_the_named_non_system_tables_renamed() {
        let manifest = manifest();
        let all = live_tables(&manifest, &Entities::All, &BTreeMap::new()).unwrap();
        let names: Vec<String> = all.iter().map(|t| t.target.to_string()).collect();
        assert_eq!(names, ["ks.a", "ks.b"]);
        assert_eq!(all[0].entries.len(), 1);

        let rename =
            BTreeMap::from([(KeyspaceTable::new("ks", "a"), KeyspaceTable::new("ks", "c"))]);
        let renamed = live_tables(&manifest, &Entities::parse("ks.a").unwrap(), &rename).unwrap();
        assert_eq!(renamed.len(), 1);
        assert_eq!(renamed[0].target.to_string(), "ks.c");
        assert_eq!(renamed[0].source.to_string(), "ks.a");

        let error = live_tables(
            &manifest,
            &Entities::parse("ks.z,other.t").unwrap(),
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(error.contains("ks.z, other.t"), "{error}");
        assert!(
            live_tables(
                &manifest,
                &Entities::parse("system_auth").unwrap(),
                &BTreeMap::new()
            )
            .is_err()
        );
    }

    #[test]
    fn files_keep_their_index_directory_and_never_climb_out() {
        assert_eq!(
            path_in_table("data/ks/t-1/1-99/nb-1-big-Data.db"),
            Some(PathBuf::from("nb-1-big-Data.db"))
        );
        assert_eq!(
            path_in_table("data/ks/t-1/.t_v_idx/1-99/nb-1-big-Data.db"),
            Some(PathBuf::from(".t_v_idx/nb-1-big-Data.db"))
        );
        assert_eq!(path_in_table("data/ks/t-1/1-99/.."), None);
        assert_eq!(path_in_table("manifests/x.json"), None);
    }
}
