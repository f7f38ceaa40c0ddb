//! What an IN_PLACE restore does in the data directories: which files stay, which go, and where each download lands.
//!
//! Esop compares every SSTable file in the data directories with the manifest and deletes those it does not find
//! there, files of tables it is not restoring included. Here only the SSTable components of the restored tables are
//! candidates: a partial restore (`entities`) leaves other tables, and `snapshots/` and `backups/`, alone.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};

use super::select::SelectedTable;
use crate::esop::manifest::ManifestEntry;
use crate::esop::sstable::{SstableName, sstable_digest};

/// A manifest entry and its local path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile {
    /// Relative to the node prefix, as in the manifest.
    pub object_key: String,
    pub size: u64,
    /// From the manifest: the download engine verifies it.
    pub hash: Option<String>,
    pub path: PathBuf,
}

/// A directory of a restored table under another id than the manifest's, typically the fresh schema of a new
/// cluster created before the restore. Like Esop, the restore writes to the manifest id's directory and leaves this
/// one alone; Cassandra then loads the table from whichever directory its schema names, so with a schema that is not
/// the backup's (no `newCluster`/`restoreSystemKeyspace`) the restored data is not visible until it is moved there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherTableDir {
    pub keyspace: String,
    pub table: String,
    pub manifest_id: String,
    pub path: PathBuf,
}

/// The whole filesystem plan; nothing is deleted or downloaded by [`plan`] itself (it only creates the missing table
/// and `.<index>` directories the downloads go to).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalPlan {
    /// In manifest order; every component of one SSTable in the same data directory.
    pub downloads: Vec<PlannedFile>,
    /// Present with the manifest's name, generation-digest and size: kept, to be hash-verified by the caller.
    pub keep: Vec<PlannedFile>,
    /// SSTable components of the restored tables that the manifest does not have (or has with another
    /// generation-digest or size), sorted.
    pub delete: Vec<PathBuf>,
    /// Directories [`plan`] created.
    pub created_dirs: Vec<PathBuf>,
    pub other_table_dirs: Vec<OtherTableDir>,
}

impl LocalPlan {
    pub fn download_size(&self) -> u64 {
        self.downloads.iter().map(|file| file.size).sum()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("no data directory to restore into")]
    NoDataDirs,
    #[error("the manifest has no table id for {keyspace}.{table}")]
    MissingTableId { keyspace: String, table: String },
    #[error(
        "manifest object key '{key}' of {keyspace}.{table} is not data/<keyspace>/<table>-<id>/[.<index>/]<generation>-<digest>/<SSTable file>: {reason}"
    )]
    ObjectKey {
        key: String,
        keyspace: String,
        table: String,
        reason: &'static str,
    },
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> PlanError + 'a {
    move |source| PlanError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// An object key taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EntryKey {
    index_dir: Option<String>,
    generation_digest: String,
    name: SstableName,
}

impl EntryKey {
    /// `[.<index>/]<file>`, the file's path relative to the table directory.
    fn relative_path(&self) -> PathBuf {
        match &self.index_dir {
            Some(index) => Path::new(index).join(self.name.file_name()),
            None => PathBuf::from(self.name.file_name()),
        }
    }
}

/// Parses `data/<ks>/<table dir>/[.<index>/]<generation>-<digest>/<file>`. Keys come from the bucket, so every
/// segment that becomes part of a local path is checked: no `..`, no separators, an SSTable name.
fn parse_key(table: &SelectedTable, entry: &ManifestEntry) -> Result<EntryKey, PlanError> {
    let bad = |reason| PlanError::ObjectKey {
        key: entry.object_key.clone(),
        keyspace: table.keyspace.clone(),
        table: table.table.clone(),
        reason,
    };
    let parts: Vec<&str> = entry.object_key.split('/').collect();
    let (index_dir, generation_digest, file_name) = match parts.as_slice() {
        ["data", keyspace, _table_dir, gd, file] if *keyspace == table.keyspace => {
            (None, *gd, *file)
        }
        ["data", keyspace, _table_dir, index, gd, file] if *keyspace == table.keyspace => {
            (Some(*index), *gd, *file)
        }
        ["data", _keyspace, ..] => return Err(bad("not this keyspace, or not 5 or 6 segments")),
        _ => return Err(bad("does not start with data/")),
    };
    if let Some(index) = index_dir
        && (index.len() < 2 || !index.starts_with('.') || index == "..")
    {
        return Err(bad("the index directory is not .<index>"));
    }
    let name =
        SstableName::parse(file_name).ok_or_else(|| bad("the file is not an SSTable component"))?;
    let digest = generation_digest
        .strip_prefix(name.generation())
        .and_then(|rest| rest.strip_prefix('-'))
        .unwrap_or_default();
    if digest.is_empty() {
        return Err(bad(
            "the key directory is not <generation>-<digest> of the file's generation",
        ));
    }
    Ok(EntryKey {
        index_dir: index_dir.map(str::to_owned),
        generation_digest: generation_digest.to_owned(),
        name,
    })
}

/// An SSTable within a table: its `.<index>` directory and its prefix (`nb-1-big`).
type SstableId = (Option<String>, String);

/// A wanted SSTable and its manifest entries.
type WantedSstable<'a> = (SstableId, Vec<(EntryKey, &'a ManifestEntry)>);

/// One SSTable (all its components) in one directory.
#[derive(Debug)]
struct LocalSstable {
    data_dir: usize,
    /// The directory holding the files (the table directory or its `.<index>` sub-directory).
    dir: PathBuf,
    index_dir: Option<String>,
    prefix: String,
    generation: String,
    /// (file name, path, size)
    files: Vec<(String, PathBuf, u64)>,
}

/// The SSTable component files directly in `dir`, grouped by SSTable, in name order.
fn local_sstables(
    data_dir: usize,
    dir: &Path,
    index_dir: Option<&str>,
    out: &mut Vec<LocalSstable>,
) -> Result<(), PlanError> {
    let mut files: Vec<(SstableName, PathBuf, u64)> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error("listing", dir))? {
        let entry = entry.map_err(io_error("listing", dir))?;
        let path = entry.path();
        let metadata = entry.metadata().map_err(io_error("reading", &path))?;
        if !metadata.is_file() {
            continue;
        }
        if let Some(name) = entry.file_name().to_str().and_then(SstableName::parse) {
            files.push((name, path, metadata.len()));
        }
    }
    files.sort_by(|a, b| a.0.file_name().cmp(b.0.file_name()));
    for (name, path, size) in files {
        let file = (name.file_name().to_owned(), path, size);
        match out.last_mut() {
            Some(last)
                if last.data_dir == data_dir && last.dir == dir && last.prefix == name.prefix() =>
            {
                last.files.push(file);
            }
            _ => out.push(LocalSstable {
                data_dir,
                dir: dir.to_owned(),
                index_dir: index_dir.map(str::to_owned),
                prefix: name.prefix().to_owned(),
                generation: name.generation().to_owned(),
                files: vec![file],
            }),
        }
    }
    Ok(())
}

/// Sub-directories `.<index>` of a table directory (2i SSTables); `snapshots/`, `backups/` and `tmp` are not.
fn index_dirs(table_dir: &Path) -> Result<Vec<String>, PlanError> {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(table_dir).map_err(io_error("listing", table_dir))? {
        let entry = entry.map_err(io_error("listing", table_dir))?;
        let is_dir = entry
            .file_type()
            .map_err(io_error("reading", &entry.path()))?
            .is_dir();
        if let Some(name) = entry.file_name().to_str()
            && is_dir
            && name.starts_with('.')
            && name.len() > 1
            && name != ".."
        {
            dirs.push(name.to_owned());
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// `<table>-<32 hex>` directories of `table` in `keyspace_dir` whose id is not `id`.
fn other_ids(keyspace_dir: &Path, table: &str, id: &str) -> Result<Vec<PathBuf>, PlanError> {
    let entries = match std::fs::read_dir(keyspace_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("listing", keyspace_dir)(e)),
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error("listing", keyspace_dir))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some((name_table, name_id)) = name.rsplit_once('-') else {
            continue;
        };
        if name_table == table
            && name_id != id
            && name_id.len() == 32
            && name_id.bytes().all(|b| b.is_ascii_hexdigit())
        {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// The plan for `tables` (from [`super::select`]) over `data_dirs` (JBOD: several). Blocking; reads SSTable digests.
///
/// Per restored table, in every data directory: the directory `<ks>/<table>-<manifest id>` is created when missing
/// (Esop uses the manifest's id; so does Daedalus, and reports directories of the same table under another id in
/// [`LocalPlan::other_table_dirs`]). A local SSTable is kept when the manifest has the same SSTable (same `.<index>`
/// directory and prefix) with the same `<generation>-<digest>` as computed from the local `Digest` file, like
/// Esop's backup does; then each component is kept if the manifest has it with the same size, else replaced. Every
/// other SSTable component of the table is deleted. What is missing is downloaded: to the data directory of the
/// SSTable's kept components, else round-robin over `data_dirs`, one SSTable at a time, as Esop distributes them.
pub fn plan(tables: &[SelectedTable], data_dirs: &[PathBuf]) -> Result<LocalPlan, PlanError> {
    if data_dirs.is_empty() {
        return Err(PlanError::NoDataDirs);
    }
    let mut plan = LocalPlan::default();
    let mut round_robin = 0usize;
    for table in tables {
        if table.id.is_empty() {
            return Err(PlanError::MissingTableId {
                keyspace: table.keyspace.clone(),
                table: table.table.clone(),
            });
        }
        let dir_name = table.dir_name();

        // The manifest's SSTables, by (index dir, prefix), in order of first appearance.
        let mut wanted: Vec<WantedSstable> = Vec::new();
        let mut wanted_index: HashMap<SstableId, usize> = HashMap::new();
        for entry in &table.entries {
            let key = parse_key(table, entry)?;
            let id = (key.index_dir.clone(), key.name.prefix().to_owned());
            let slot = *wanted_index.entry(id.clone()).or_insert_with(|| {
                wanted.push((id, Vec::new()));
                wanted.len() - 1
            });
            wanted[slot].1.push((key, entry));
        }

        let mut local = Vec::new();
        for (index, data_dir) in data_dirs.iter().enumerate() {
            let keyspace_dir = data_dir.join(&table.keyspace);
            for path in other_ids(&keyspace_dir, &table.table, &table.id)? {
                plan.other_table_dirs.push(OtherTableDir {
                    keyspace: table.keyspace.clone(),
                    table: table.table.clone(),
                    manifest_id: table.id.clone(),
                    path,
                });
            }
            let table_dir = keyspace_dir.join(&dir_name);
            if !table_dir.is_dir() {
                std::fs::create_dir_all(&table_dir).map_err(io_error("creating", &table_dir))?;
                plan.created_dirs.push(table_dir.clone());
            }
            local_sstables(index, &table_dir, None, &mut local)?;
            for index_dir in index_dirs(&table_dir)? {
                local_sstables(
                    index,
                    &table_dir.join(&index_dir),
                    Some(&index_dir),
                    &mut local,
                )?;
            }
        }

        // Which data directory already holds each wanted SSTable, and which of its components stay.
        let mut home: HashMap<usize, usize> = HashMap::new();
        let mut kept: HashSet<String> = HashSet::new();
        for sstable in local {
            let slot = wanted_index
                .get(&(sstable.index_dir.clone(), sstable.prefix.clone()))
                .copied()
                .filter(|slot| !home.contains_key(slot));
            let matching = match slot {
                Some(slot) => {
                    let expected = &wanted[slot].1[0].0.generation_digest;
                    let local_digest = match sstable_digest(&sstable.dir, &sstable.prefix) {
                        Ok(digest) => Some(format!("{}-{digest}", sstable.generation)),
                        // No digest file and no Data.db: an incomplete SSTable, replaced.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                        Err(e) => return Err(io_error("reading the digest in", &sstable.dir)(e)),
                    };
                    (local_digest.as_deref() == Some(expected.as_str())).then_some(slot)
                }
                None => None,
            };
            let Some(slot) = matching else {
                plan.delete
                    .extend(sstable.files.into_iter().map(|(_, path, _)| path));
                continue;
            };
            home.insert(slot, sstable.data_dir);
            for (file_name, path, size) in sstable.files {
                let entry = wanted[slot]
                    .1
                    .iter()
                    .find(|(key, entry)| key.name.file_name() == file_name && entry.size == size);
                match entry {
                    Some((_, entry)) => {
                        kept.insert(entry.object_key.clone());
                        plan.keep.push(PlannedFile {
                            object_key: entry.object_key.clone(),
                            size: entry.size,
                            hash: entry.hash.clone(),
                            path,
                        });
                    }
                    None => plan.delete.push(path),
                }
            }
        }

        for (slot, (_, entries)) in wanted.iter().enumerate() {
            let data_dir = match home.get(&slot) {
                Some(&data_dir) => data_dir,
                None => {
                    let data_dir = round_robin % data_dirs.len();
                    round_robin += 1;
                    data_dir
                }
            };
            let table_dir = data_dirs[data_dir].join(&table.keyspace).join(&dir_name);
            for (key, entry) in entries {
                if kept.contains(&entry.object_key) {
                    continue;
                }
                let path = table_dir.join(key.relative_path());
                // A `.<index>` directory; the table directory itself exists already.
                if let Some(parent) = path.parent()
                    && !parent.is_dir()
                {
                    std::fs::create_dir_all(parent).map_err(io_error("creating", parent))?;
                    plan.created_dirs.push(parent.to_owned());
                }
                plan.downloads.push(PlannedFile {
                    object_key: entry.object_key.clone(),
                    size: entry.size,
                    hash: entry.hash.clone(),
                    path,
                });
            }
        }
    }
    plan.delete.sort();
    Ok(plan)
}
