//! The files of a snapshot on disk: every data directory (JBOD), every table, secondary-index sub-directories, and
//! the `schema.cql` Cassandra writes beside them.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::esop::sstable::SstableName;

/// One SSTable component file of a snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotFile {
    /// In the snapshot directory (a hard link to the live file).
    pub path: PathBuf,
    /// Where the live file is: the same inode, and a name that stays the same across snapshots, so hashes are
    /// cached under it.
    pub live_path: PathBuf,
    /// `.<index>` for a secondary-index component.
    pub index_dir: Option<String>,
    pub name: SstableName,
    pub file_name: String,
    pub size: u64,
    pub modified: SystemTime,
}

/// One table's part of the snapshot, in one data directory.
#[derive(Debug, Clone)]
pub struct SnapshotTable {
    pub keyspace: String,
    /// Without the id.
    pub table: String,
    /// 32 hex digits.
    pub table_id: String,
    /// `<table>-<id>`, as on disk and in object keys.
    pub table_dir: String,
    /// The directory holding the snapshot's files (for digests of sibling components).
    pub snapshot_dir: PathBuf,
    /// Contents of the snapshot's `schema.cql`.
    pub schema: Option<String>,
    pub files: Vec<SnapshotFile>,
}

impl SnapshotFile {
    pub fn local(&self) -> crate::storage::transfer::LocalFile {
        crate::storage::transfer::LocalFile {
            path: self.path.clone(),
            cache_key: self.live_path.clone(),
            size: self.size,
            modified: self.modified,
        }
    }
}

impl SnapshotTable {
    pub fn size(&self) -> u64 {
        self.files.iter().map(|file| file.size).sum()
    }
}

/// The tables of snapshot `tag` in `data_dirs`. Directories Cassandra does not use are skipped quietly; a data
/// directory that cannot be read at all is an error.
pub fn find(data_dirs: &[PathBuf], tag: &str) -> std::io::Result<Vec<SnapshotTable>> {
    let mut tables = Vec::new();
    for data_dir in data_dirs {
        for keyspace in subdirectories(data_dir)? {
            let Some(keyspace_name) = file_name(&keyspace) else {
                continue;
            };
            for table_dir in subdirectories(&keyspace)? {
                let Some(table_dir_name) = file_name(&table_dir) else {
                    continue;
                };
                let Some((table, table_id)) = split_table_dir(&table_dir_name) else {
                    continue;
                };
                let snapshot_dir = table_dir.join("snapshots").join(tag);
                if !snapshot_dir.is_dir() {
                    continue;
                }
                let mut files = sstable_files(&snapshot_dir, &table_dir, None)?;
                for index in subdirectories(&snapshot_dir)? {
                    if let Some(index_name) = file_name(&index).filter(|n| n.starts_with('.')) {
                        let live = table_dir.join(&index_name);
                        files.extend(sstable_files(&index, &live, Some(index_name.clone()))?);
                    }
                }
                let schema = std::fs::read_to_string(snapshot_dir.join("schema.cql")).ok();
                tables.push(SnapshotTable {
                    keyspace: keyspace_name.clone(),
                    table: table.to_string(),
                    table_id: table_id.to_string(),
                    table_dir: table_dir_name.clone(),
                    snapshot_dir,
                    schema,
                    files,
                });
            }
        }
    }
    Ok(tables)
}

/// `<table>-<32 hex id>` → (table, id).
fn split_table_dir(name: &str) -> Option<(&str, &str)> {
    let (table, id) = name.rsplit_once('-')?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !table.is_empty())
        .then_some((table, id))
}

fn sstable_files(
    dir: &Path,
    live_dir: &Path,
    index_dir: Option<String>,
) -> std::io::Result<Vec<SnapshotFile>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        if !metadata.is_file() {
            continue;
        }
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = SstableName::parse(&file_name) else {
            continue;
        };
        files.push(SnapshotFile {
            path: entry.path(),
            live_path: live_dir.join(&file_name),
            index_dir: index_dir.clone(),
            name,
            file_name,
            size: metadata.len(),
            modified: metadata.modified()?,
        });
    }
    files.sort_by(|a, b| a.file_name.cmp(&b.file_name));
    Ok(files)
}

fn subdirectories(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(dirs),
        Err(error) => return Err(error),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    Ok(dirs)
}

fn file_name(path: &Path) -> Option<String> {
    path.file_name().map(|n| n.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tables_indexes_and_schemas_of_one_snapshot() {
        let root = std::env::temp_dir().join(format!("daedalus-snapfiles-{}", std::process::id()));
        let table = root.join("data/ks/t-0123456789abcdef0123456789abcdef");
        let snapshot = table.join("snapshots/tag1");
        std::fs::create_dir_all(snapshot.join(".t_v_idx")).unwrap();
        std::fs::create_dir_all(table.join("snapshots/other")).unwrap();
        std::fs::write(snapshot.join("nb-1-big-Data.db"), b"data").unwrap();
        std::fs::write(snapshot.join("nb-1-big-Digest.crc32"), b"123").unwrap();
        std::fs::write(snapshot.join("schema.cql"), b"CREATE TABLE ks.t").unwrap();
        std::fs::write(snapshot.join("manifest.json"), b"{}").unwrap();
        std::fs::write(snapshot.join(".t_v_idx/nb-1-big-Data.db"), b"i").unwrap();
        std::fs::write(table.join("snapshots/other/nb-2-big-Data.db"), b"x").unwrap();

        let tables = find(&[root.join("data"), root.join("missing")], "tag1").unwrap();
        assert_eq!(tables.len(), 1);
        let found = &tables[0];
        assert_eq!((found.keyspace.as_str(), found.table.as_str()), ("ks", "t"));
        assert_eq!(found.table_id, "0123456789abcdef0123456789abcdef");
        assert_eq!(found.schema.as_deref(), Some("CREATE TABLE ks.t"));
        let names: Vec<(Option<&str>, &str)> = found
            .files
            .iter()
            .map(|f| (f.index_dir.as_deref(), f.file_name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                (None, "nb-1-big-Data.db"),
                (None, "nb-1-big-Digest.crc32"),
                (Some(".t_v_idx"), "nb-1-big-Data.db")
            ]
        );
        assert_eq!(
            found.files[2].live_path,
            table.join(".t_v_idx/nb-1-big-Data.db")
        );
        assert_eq!(found.size(), 8);
        std::fs::remove_dir_all(root).unwrap();
    }
}
