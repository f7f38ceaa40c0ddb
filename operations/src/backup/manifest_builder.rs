//! The manifest of a backup: the snapshot's tables (merged across data directories), each SSTable's files under the
//! object keys they were stored at, with sizes and hashes, the schema text, the tokens and the schema version.

use super::snapshot_files::SnapshotTable;
use super::upload::StoredFile;
use crate::esop::manifest::{Keyspace, Manifest, ManifestEntry, OrderedMap, Snapshot, Table};

/// Builds the manifest from the snapshot's tables and the files as stored (in the order `plan` produced them: the
/// tables' files in order).
pub fn build(
    tables: &[SnapshotTable],
    stored: &[StoredFile],
    tag: &str,
    schema_version: &str,
    tokens: Vec<String>,
) -> Manifest {
    let mut keyspaces: OrderedMap<Keyspace> = OrderedMap::new();
    let mut size = 0;
    let mut stored_files = stored.iter();
    for table in tables {
        let keyspace = keyspaces.get_or_insert_with(&table.keyspace, Keyspace::default);
        let entry = keyspace.tables.get_or_insert_with(&table.table, || Table {
            id: table.table_id.clone(),
            ..Table::default()
        });
        if entry.schema_content.is_none() {
            entry.schema_content = table.schema.clone();
        }
        for file in &table.files {
            // Files were planned, and so stored, in this same order.
            let Some(stored) = stored_files.next() else {
                break;
            };
            size += stored.size;
            entry
                .sstables
                .get_or_insert_with(file.name.prefix(), Vec::new)
                .push(ManifestEntry::file(
                    stored.key.clone(),
                    stored.size,
                    stored.hash.clone(),
                ));
        }
    }
    Manifest {
        snapshot: Snapshot {
            name: tag.to_string(),
            keyspaces,
        },
        tokens,
        schema_version: schema_version.to_string(),
        size,
    }
}
