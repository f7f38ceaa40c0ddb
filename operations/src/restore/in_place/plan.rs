//! What an IN_PLACE restore does in the data directories: which files stay, which go, and where each download lands.
//!
//! Esop compares every SSTable file in the data directories with the manifest and deletes those it does not find
//! there, files of tables it is not restoring included. Here only the SSTable components of the restored tables are
//! candidates: a partial restore (`entities`) leaves other tables, and `snapshots/` and `backups/`, alone. Every name
//! from the manifest is checked before anything is planned ([`crate::restore::tables::backup_file`]), and the data
//! directories are only read, through their roots: the plan itself changes nothing.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::Arc;

use super::select::SelectedTable;
use crate::node_fs::{EntryKind, FsError, RelPath, Root, Target, names};
use crate::restore::tables::{self, BackupFile, BadName};

/// A manifest entry and its local file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile {
    /// Relative to the node prefix, as in the manifest.
    pub object_key: String,
    pub size: u64,
    /// From the manifest: the download engine verifies it.
    pub hash: Option<String>,
    pub target: Target,
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
    pub path: std::path::PathBuf,
}

/// The whole filesystem plan; [`plan`] only reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalPlan {
    /// In manifest order; every component of one SSTable in the same data directory.
    pub downloads: Vec<PlannedFile>,
    /// Present with the manifest's name, generation-digest and size: kept, to be hash-verified by the caller.
    pub keep: Vec<PlannedFile>,
    /// SSTable components of the restored tables that the manifest does not have (or has with another
    /// generation-digest or size) and that no download replaces, sorted by path. Removed once the downloads are in.
    pub delete: Vec<Target>,
    pub other_table_dirs: Vec<OtherTableDir>,
}

impl LocalPlan {
    pub fn download_size(&self) -> u64 {
        crate::esop::manifest::total_size(self.downloads.iter().map(|file| file.size))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("no data directory to restore into")]
    NoDataDirs,
    #[error(transparent)]
    BadName(#[from] BadName),
    #[error(transparent)]
    Io(#[from] FsError),
}

/// An SSTable within a table: its `.<index>` directory and its prefix (`nb-1-big`).
type SstableId = (Option<String>, String);

/// A wanted SSTable and its files.
type WantedSstable<'a> = (SstableId, Vec<BackupFile<'a>>);

/// One SSTable (all its components) in one directory.
#[derive(Debug)]
struct LocalSstable {
    data_dir: usize,
    /// The directory holding the files (the table directory or its `.<index>` sub-directory).
    dir: RelPath,
    index_dir: Option<String>,
    prefix: String,
    generation: String,
    /// (file name, path, size)
    files: Vec<(String, RelPath, u64)>,
}

/// The SSTable component files directly in `dir` (regular files with SSTable names; never a symbolic link), grouped
/// by SSTable, in name order.
fn local_sstables(
    root: &Root,
    data_dir: usize,
    dir: &RelPath,
    index_dir: Option<&str>,
    out: &mut Vec<LocalSstable>,
) -> Result<(), PlanError> {
    let mut files = Vec::new();
    for entry in root.entries(dir)? {
        if entry.kind != EntryKind::File {
            continue;
        }
        let Ok(name) = names::sstable_file(&entry.name) else {
            continue;
        };
        let Ok(path) = dir.join(&entry.name) else {
            continue;
        };
        files.push((name, path, entry.len));
    }
    for (name, path, size) in files {
        let file = (name.file_name().to_owned(), path, size);
        match out.last_mut() {
            Some(last)
                if last.data_dir == data_dir
                    && &last.dir == dir
                    && last.prefix == name.prefix() =>
            {
                last.files.push(file);
            }
            _ => out.push(LocalSstable {
                data_dir,
                dir: dir.clone(),
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
fn index_dirs(root: &Root, table_dir: &RelPath) -> Result<Vec<String>, PlanError> {
    Ok(root
        .entries(table_dir)?
        .into_iter()
        .filter(|entry| entry.kind == EntryKind::Dir && names::is_index_dir(&entry.name))
        .map(|entry| entry.name)
        .collect())
}

/// `<table>-<32 hex>` directories of `table` in `keyspace_dir` whose id is not `id`.
fn other_ids(
    root: &Root,
    keyspace_dir: &RelPath,
    table: &str,
    id: &str,
) -> Result<Vec<RelPath>, PlanError> {
    Ok(root
        .entries(keyspace_dir)?
        .into_iter()
        .filter(|entry| entry.kind == EntryKind::Dir)
        .filter(|entry| {
            names::table_dir(&entry.name).is_some_and(|(name, other)| name == table && other != id)
        })
        .filter_map(|entry| keyspace_dir.join(&entry.name).ok())
        .collect())
}

/// The `<digest>` of a local SSTable, its sibling files read through the root (`None`: no digest file and no
/// Data.db, an incomplete SSTable).
fn local_digest(root: &Root, sstable: &LocalSstable) -> Result<Option<String>, PlanError> {
    let open = |name: &str| -> io::Result<std::fs::File> {
        let rel = sstable
            .dir
            .join(name)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
        root.open_file(&rel).map_err(|error| error.source)
    };
    match crate::esop::sstable::sstable_digest_with(open, &sstable.prefix) {
        Ok(digest) => Ok(Some(digest)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PlanError::Io(FsError {
            action: "read the digest in",
            path: root.display(&sstable.dir),
            source,
        })),
    }
}

/// The plan for `tables` (from [`super::select`](fn@super::select)) over the data directories `data` (JBOD:
/// several). Blocking; reads SSTable digests.
///
/// Every manifest name is checked first: a table or object key that fails fails the plan, naming it, before any
/// file is looked at. Per restored table, in every data directory, the directory `<ks>/<table>-<manifest id>` is the
/// table's (Esop uses the manifest's id; so does Daedalus, and reports directories of the same table under another
/// id in [`LocalPlan::other_table_dirs`]). A local SSTable is kept when the manifest has the same SSTable (same
/// `.<index>` directory and prefix) with the same `<generation>-<digest>` as computed from the local `Digest` file,
/// like Esop's backup does; then each component is kept if the manifest has it with the same size, else replaced.
/// Every other SSTable component of the table is deleted. What is missing is downloaded: to the data directory of
/// the SSTable's kept components, else round-robin over the data directories, one SSTable at a time, as Esop
/// distributes them.
pub fn plan(tables: &[SelectedTable], data: &[Arc<Root>]) -> Result<LocalPlan, PlanError> {
    if data.is_empty() {
        return Err(PlanError::NoDataDirs);
    }
    // Every name first: nothing about the node is read for a manifest that will be refused.
    let mut checked = Vec::new();
    for table in tables {
        tables::check_table(&table.keyspace, &table.table, &table.id)?;
        checked.push(tables::backup_files(
            &table.keyspace,
            &table.table,
            &table.entries,
        )?);
    }
    let mut plan = LocalPlan::default();
    let mut round_robin = 0usize;
    for (table, files) in tables.iter().zip(checked) {
        let dir_name = table.dir_name();
        let keyspace_dir = RelPath::name(&table.keyspace).map_err(|e| bad_table(table, e))?;
        let table_dir = keyspace_dir
            .join(&dir_name)
            .map_err(|e| bad_table(table, e))?;

        // The manifest's SSTables, by (index dir, prefix), in order of first appearance.
        let mut wanted: Vec<WantedSstable> = Vec::new();
        let mut wanted_index: HashMap<SstableId, usize> = HashMap::new();
        for file in files {
            let (index, prefix) = file.sstable();
            let id = (index.map(str::to_owned), prefix.to_owned());
            let slot = *wanted_index.entry(id.clone()).or_insert_with(|| {
                wanted.push((id, Vec::new()));
                wanted.len() - 1
            });
            wanted[slot].1.push(file);
        }

        let mut local = Vec::new();
        for (index, root) in data.iter().enumerate() {
            for path in other_ids(root, &keyspace_dir, &table.table, &table.id)? {
                plan.other_table_dirs.push(OtherTableDir {
                    keyspace: table.keyspace.clone(),
                    table: table.table.clone(),
                    manifest_id: table.id.clone(),
                    path: root.display(&path),
                });
            }
            local_sstables(root, index, &table_dir, None, &mut local)?;
            for index_dir in index_dirs(root, &table_dir)? {
                let dir = table_dir
                    .join(&index_dir)
                    .map_err(|e| bad_table(table, e))?;
                local_sstables(root, index, &dir, Some(&index_dir), &mut local)?;
            }
        }

        // Which data directory already holds each wanted SSTable, and which of its components stay.
        let mut home: HashMap<usize, usize> = HashMap::new();
        let mut kept: HashSet<&str> = HashSet::new();
        let mut delete = Vec::new();
        for sstable in local {
            let root = &data[sstable.data_dir];
            let slot = wanted_index
                .get(&(sstable.index_dir.clone(), sstable.prefix.clone()))
                .copied()
                .filter(|slot| !home.contains_key(slot));
            let matching = match slot {
                Some(slot) => {
                    let expected = &wanted[slot].1[0].generation_digest;
                    let local_digest = local_digest(root, &sstable)?
                        .map(|digest| format!("{}-{digest}", sstable.generation));
                    (local_digest.as_deref() == Some(expected.as_str())).then_some(slot)
                }
                None => None,
            };
            let Some(slot) = matching else {
                delete.extend(
                    sstable
                        .files
                        .into_iter()
                        .map(|(_, path, _)| Target::new(root, path)),
                );
                continue;
            };
            home.insert(slot, sstable.data_dir);
            for (file_name, path, size) in sstable.files {
                let entry = wanted[slot]
                    .1
                    .iter()
                    .find(|file| file.name.file_name() == file_name && file.entry.size == size);
                match entry {
                    Some(file) => {
                        kept.insert(file.entry.object_key.as_str());
                        plan.keep.push(PlannedFile {
                            object_key: file.entry.object_key.clone(),
                            size: file.entry.size,
                            hash: file.entry.hash.clone(),
                            target: Target::new(root, path),
                        });
                    }
                    None => delete.push(Target::new(root, path)),
                }
            }
        }

        for (slot, (_, files)) in wanted.iter().enumerate() {
            let data_dir = match home.get(&slot) {
                Some(&data_dir) => data_dir,
                None => {
                    let data_dir = round_robin % data.len();
                    round_robin += 1;
                    data_dir
                }
            };
            for file in files {
                if kept.contains(file.entry.object_key.as_str()) {
                    continue;
                }
                plan.downloads.push(PlannedFile {
                    object_key: file.entry.object_key.clone(),
                    size: file.entry.size,
                    hash: file.entry.hash.clone(),
                    target: Target::new(&data[data_dir], table_dir.join_rel(&file.in_table)),
                });
            }
        }
        plan.delete.extend(delete);
    }
    // A file a download replaces is renamed over, not deleted first.
    let replaced: HashSet<std::path::PathBuf> = plan
        .downloads
        .iter()
        .map(|file| file.target.display())
        .collect();
    let delete: Vec<Target> = plan
        .delete
        .iter()
        .filter(|target| !replaced.contains(&target.display()))
        .cloned()
        .collect();
    plan.delete = delete;
    plan.delete.sort_by_key(|target| target.display());
    Ok(plan)
}

fn bad_table(table: &SelectedTable, error: crate::node_fs::NotAPlainName) -> PlanError {
    PlanError::BadName(BadName {
        what: format!(
            "table '{}.{}'",
            table.keyspace.escape_debug(),
            table.table.escape_debug()
        ),
        reason: error.to_string(),
    })
}
