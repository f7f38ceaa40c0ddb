//! The tables a restore takes from a backup, where each comes from and goes to, and where its files land.

use std::collections::BTreeMap;

use crate::esop::manifest::{EntryType, Manifest, ManifestEntry};
use crate::esop::sstable::SstableName;
use crate::node_fs::RelPath;
use crate::node_fs::names::{self, is_system_keyspace};
use crate::storage::{Entities, KeyspaceTable};

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
    /// Its SSTable files, their names checked.
    pub files: Vec<BackupFile<'m>>,
}

impl RestoredTable<'_> {
    pub fn size(&self) -> u64 {
        crate::esop::manifest::total_size(self.files.iter().map(|file| file.entry.size))
    }
}

/// The non-system tables of `manifest` that `entities` covers, renamed per `rename`, every name checked
/// ([`check_table`], [`backup_file`]). Entities naming a keyspace or table the backup does not hold are an error
/// naming them, as is a rename of a table not restored.
pub fn live_tables<'m>(
    manifest: &'m Manifest,
    entities: &Entities,
    rename: &BTreeMap<KeyspaceTable, KeyspaceTable>,
) -> Result<Vec<RestoredTable<'m>>, LiveTablesError> {
    let tables: Vec<RestoredTable<'m>> = manifest
        .tables()
        .filter(|(keyspace, table, _)| {
            !is_system_keyspace(keyspace) && entities.includes(keyspace, table)
        })
        .map(|(keyspace, name, table)| {
            check_table(keyspace, name, &table.id)?;
            let source = KeyspaceTable::new(keyspace, name);
            Ok(RestoredTable {
                target: rename
                    .get(&source)
                    .cloned()
                    .unwrap_or_else(|| source.clone()),
                source,
                backup_id: table.id.clone(),
                schema_content: table.schema_content.as_deref(),
                files: backup_files(
                    keyspace,
                    name,
                    table
                        .entries()
                        .filter(|entry| entry.kind == EntryType::File),
                )?,
            })
        })
        .collect::<Result<_, BadName>>()?;
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
        return Err(LiveTablesError::Missing { missing });
    }
    Ok(tables)
}

/// Why [`live_tables`] cannot restore from a backup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LiveTablesError {
    #[error(transparent)]
    BadName(#[from] BadName),
    /// Keyspaces or `keyspace.table`s the request names that the backup does not hold (outside the system ones).
    #[error(
        "the backup holds no {} (system keyspaces are never restored into a running node)",
        missing.join(", ")
    )]
    Missing { missing: Vec<String> },
}

/// A name from the backup that no restore may use, naming the object (or table) it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the backup's {what} is refused: {reason}; nothing was written or deleted")]
pub struct BadName {
    /// `object data/...` or `table ks.t`, escaped for the message.
    pub what: String,
    pub reason: String,
}

/// Checks the names of a table of the manifest: keyspace and table by Cassandra's identifier rules, the id as 32 hex
/// digits.
pub fn check_table(keyspace: &str, table: &str, id: &str) -> Result<(), BadName> {
    let bad = |reason: &str| BadName {
        what: format!(
            "table '{}.{}'",
            keyspace.escape_debug(),
            table.escape_debug()
        ),
        reason: reason.to_owned(),
    };
    if !names::is_keyspace_name(keyspace) {
        return Err(bad("the keyspace is not a Cassandra keyspace name"));
    }
    if !names::is_table_name(table) {
        return Err(bad("the table is not a Cassandra table name"));
    }
    if id.is_empty() {
        return Err(bad("the manifest has no table id for it"));
    }
    if !names::is_table_id(id) {
        return Err(bad(&format!(
            "its id '{}' is not 32 hex digits",
            id.escape_debug()
        )));
    }
    Ok(())
}

/// An SSTable file of the backup, every name on its way checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupFile<'m> {
    pub entry: &'m ManifestEntry,
    /// `[.<index>/]<file>`: where it goes inside its table's directory.
    pub in_table: RelPath,
    /// `.<index>` of a secondary index's SSTable.
    pub index_dir: Option<String>,
    pub name: SstableName,
    /// The `<generation>-<digest>` directory of its object key.
    pub generation_digest: String,
}

impl BackupFile<'_> {
    /// The SSTable it belongs to inside its table: its index directory and its prefix (`nb-1-big`).
    pub fn sstable(&self) -> (Option<&str>, &str) {
        (self.index_dir.as_deref(), self.name.prefix())
    }
}

/// Checks a manifest entry of `keyspace.table`: its key must be `data/<keyspace>/<table>-<id>/[.<index>/]<generation>-
/// <digest>/<SSTable file>` with every part valid (see [`names`]), so the file can only land in its table's
/// directory, under a name Cassandra gives SSTable components.
pub fn backup_file<'m>(
    keyspace: &str,
    table: &str,
    entry: &'m ManifestEntry,
) -> Result<BackupFile<'m>, BadName> {
    let bad = |reason: &str| BadName {
        what: format!(
            "object '{}' of {keyspace}.{table}",
            entry.object_key.escape_debug()
        ),
        reason: reason.to_owned(),
    };
    let parts: Vec<&str> = entry.object_key.split('/').collect();
    let (table_dir, index_dir, generation_digest, file_name) = match parts.as_slice() {
        ["data", ks, table_dir, gd, file] if *ks == keyspace => (*table_dir, None, *gd, *file),
        ["data", ks, table_dir, index, gd, file] if *ks == keyspace => {
            (*table_dir, Some(*index), *gd, *file)
        }
        ["data", ..] => {
            return Err(bad(
                "it is not data/<keyspace>/<table>-<id>/[.<index>/]<generation>-<digest>/<file> of this keyspace",
            ));
        }
        _ => return Err(bad("it does not start with data/")),
    };
    if names::table_dir(table_dir).is_none() {
        return Err(bad("its table directory is not <table>-<32 hex id>"));
    }
    if let Some(index) = index_dir
        && !names::is_index_dir(index)
    {
        return Err(bad("its index directory is not .<index name>"));
    }
    let name = names::sstable_file(file_name)
        .map_err(|reason| bad(&format!("its file name: {reason}")))?;
    if !names::is_generation_digest(generation_digest, name.generation()) {
        return Err(bad(
            "its key directory is not <generation>-<digest> of the file's generation",
        ));
    }
    let in_table = match index_dir {
        Some(index) => RelPath::of([index, file_name]),
        None => RelPath::name(file_name),
    }
    .map_err(|error| bad(&error.to_string()))?;
    Ok(BackupFile {
        entry,
        in_table,
        index_dir: index_dir.map(str::to_owned),
        name,
        generation_digest: generation_digest.to_owned(),
    })
}

/// Checks that an entry's object key is one a backup writes, for its type, so that `remove-backup` deletes nothing
/// else: an SSTable file's `data/...` key with every part valid ([`backup_file`]), a `schema.cql` of an Esop 1.x
/// backup beside a table's files, a manifest under `manifests/`, a commit-log segment under `commitlog/`.
pub fn check_entry_key(entry: &ManifestEntry) -> Result<(), BadName> {
    let bad = |reason: &str| BadName {
        what: format!("object '{}'", entry.object_key.escape_debug()),
        reason: reason.to_owned(),
    };
    let parts: Vec<&str> = entry.object_key.split('/').collect();
    let plain =
        |name: &str| crate::node_fs::is_plain_name(name) && !name.chars().any(char::is_control);
    match (entry.kind, parts.as_slice()) {
        (EntryType::File, ["data", keyspace, table_dir, ..]) => {
            let (table, _) = names::table_dir(table_dir)
                .ok_or_else(|| bad("its table directory is not <table>-<32 hex id>"))?;
            backup_file(keyspace, table, entry).map(|_| ())
        }
        (EntryType::CqlSchema, ["data", keyspace, table_dir, rest @ ..])
            if names::is_keyspace_name(keyspace)
                && names::table_dir(table_dir).is_some()
                && rest.last() == Some(&"schema.cql")
                && rest.len() <= 2
                && rest.iter().all(|part| plain(part)) =>
        {
            Ok(())
        }
        (EntryType::ManifestFile, ["manifests", name]) if plain(name) => Ok(()),
        (EntryType::CommitLog, ["commitlog", name]) if plain(name) => Ok(()),
        _ => Err(bad("it is not where a backup writes objects of its type")),
    }
}

/// [`backup_file`] of every entry, and the table directory `<keyspace>/<table>-<id>` they go to.
pub fn backup_files<'m>(
    keyspace: &str,
    table: &str,
    entries: impl IntoIterator<Item = &'m ManifestEntry>,
) -> Result<Vec<BackupFile<'m>>, BadName> {
    entries
        .into_iter()
        .map(|entry| backup_file(keyspace, table, entry))
        .collect()
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
                    "a": {"id": "11111111111111111111111111111111", "sstables": {"nb-1-big": [
                        {"objectKey": "data/ks/a-11111111111111111111111111111111/1-99/nb-1-big-Data.db",
                         "type": "FILE", "size": 5}]}},
                    "b": {"id": "22222222222222222222222222222222", "sstables": {}}}},
                "system_auth": {"tables": {"roles": {"id": "33333333333333333333333333333333", "sstables": {}}}}}},
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
        assert_eq!(all[0].files.len(), 1);

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
        .unwrap_err()
        .to_string();
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

    const ID: &str = "0123456789abcdef0123456789abcdef";

    fn file(key: &str) -> Result<String, String> {
        let entry = ManifestEntry::file(key, 1, None);
        backup_file("ks", "t", &entry)
            .map(|file| file.in_table.to_string())
            .map_err(|error| error.to_string())
    }

    #[test]
    fn files_keep_their_index_directory_and_never_climb_out() {
        assert_eq!(
            file(&format!("data/ks/t-{ID}/1-99/nb-1-big-Data.db")),
            Ok("nb-1-big-Data.db".into())
        );
        assert_eq!(
            file(&format!("data/ks/t-{ID}/.t_v_idx/1-99/nb-1-big-Data.db")),
            Ok(".t_v_idx/nb-1-big-Data.db".into())
        );
        for bad in [
            format!("data/ks/t-{ID}/1-99/.."),
            format!("data/ks/t-{ID}/1-99/nb-1-pwn.sh"),
            format!("data/ks/t-{ID}/../1-99/nb-1-big-Data.db"),
            format!("data/ks/t-{ID}/2-99/nb-1-big-Data.db"),
            format!("data/other/t-{ID}/1-99/nb-1-big-Data.db"),
            "data/ks/t-x/1-99/nb-1-big-Data.db".to_string(),
            format!("/data/ks/t-{ID}/1-99/nb-1-big-Data.db"),
            "manifests/x.json".into(),
        ] {
            let error = file(&bad).expect_err(&bad);
            assert!(error.contains(&bad.escape_debug().to_string()), "{error}");
        }
        assert!(check_table("ks", "t", ID).is_ok());
        for (keyspace, table, id) in [
            ("..", "t", ID),
            ("ks", "a/b", ID),
            ("ks", "t", "x/../../../../outside/victim"),
            ("ks", "t", ""),
        ] {
            let error = check_table(keyspace, table, id)
                .expect_err(keyspace)
                .to_string();
            assert!(error.contains("nothing was written"), "{error}");
        }
    }
}
