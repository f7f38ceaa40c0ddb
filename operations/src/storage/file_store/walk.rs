//! Listings of a `file://` bucket: one directory level (`list_with_delimiter`), or a walk of every directory
//! beneath a prefix (`list`), neither following a symbolic link; what cannot be an object is skipped and reported.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::SystemTime;

use cap_fs_ext::DirExt;
use cap_std::fs::{Dir, MetadataExt as _};
use object_store::path::Path;
use object_store::{ListResult, ObjectMeta};

use super::resolve::{Key, explain, is_plain, is_temporary, open_dirs};
use super::{Error, failure, io_error, meta_of};
use crate::storage::skipped::{SkipReason, SkippedEntries, SkippedEntry};

/// One directory's entries: sub-directories as common prefixes, files as objects; whatever cannot be an object
/// is skipped and reported in the result's extensions.
pub(super) fn list_one_level(root: &Dir, prefix: &Path) -> object_store::Result<ListResult> {
    let mut result = ListResult {
        common_prefixes: Vec::new(),
        objects: Vec::new(),
        extensions: Default::default(),
    };
    let mut skipped = Vec::new();
    let dir = match open_prefix(root, prefix) {
        Ok(Some(dir)) => dir,
        Ok(None) => return Ok(result),
        Err(Prefix::Skipped(entry)) => {
            result.extensions.insert(SkippedEntries(vec![entry]));
            return Ok(result);
        }
        Err(Prefix::Failed(error)) => return Err(error),
    };
    let entries = dir
        .entries()
        .map_err(|error| failure(prefix.as_ref(), io_error(prefix.as_ref(), "list")(error)))?;
    for entry in entries {
        let entry = entry
            .map_err(|error| failure(prefix.as_ref(), io_error(prefix.as_ref(), "list")(error)))?;
        match classify(&dir, prefix, &entry) {
            Entry::Directory(path, _) => result.common_prefixes.push(path),
            Entry::Object(meta) => result.objects.push(meta),
            Entry::Skipped(entry) => skipped.push(entry),
            Entry::Hidden => {}
            Entry::Failed(error) => return Err(error),
        }
    }
    result.common_prefixes.sort();
    if !skipped.is_empty() {
        result.extensions.insert(SkippedEntries(skipped));
    }
    Ok(result)
}

/// Why a listing's prefix gave nothing to walk.
pub(super) enum Prefix {
    /// The prefix (or a directory on its way) is a symbolic link.
    Skipped(SkippedEntry),
    Failed(object_store::Error),
}

/// Opens the directory a listing starts from; `None` when there is none (an empty listing, as for a prefix no key
/// has in a cloud bucket).
pub(super) fn open_prefix(root: &Dir, prefix: &Path) -> Result<Option<Dir>, Prefix> {
    let segments: Vec<&str> = prefix
        .as_ref()
        .split('/')
        .filter(|segment| !segment.is_empty())
        .collect();
    let key = Key {
        text: prefix.as_ref(),
        dirs: segments,
        name: "",
    };
    match open_dirs(root, &key, false) {
        Ok(dir) => dir
            .into_owned()
            .map(Some)
            .map_err(|error| Prefix::Failed(failure(key.text, io_error(key.text, "list")(error)))),
        Err(Error::NotFound | Error::NotADirectory { .. } | Error::NotAFile { .. }) => Ok(None),
        Err(Error::SymbolicLink { path }) => Err(Prefix::Skipped(SkippedEntry::new(
            path.as_bytes(),
            SkipReason::SymbolicLink,
        ))),
        Err(error) => Err(Prefix::Failed(failure(key.text, error))),
    }
}

/// One directory entry as a listing sees it.
pub(super) enum Entry {
    Directory(Path, String),
    Object(ObjectMeta),
    Skipped(SkippedEntry),
    /// A file being written: not an object yet.
    Hidden,
    Failed(object_store::Error),
}

pub(super) fn classify(dir: &Dir, prefix: &Path, entry: &cap_std::fs::DirEntry) -> Entry {
    let name = entry.file_name();
    let raw = name.as_bytes();
    let mut full = prefix.as_ref().as_bytes().to_vec();
    if !full.is_empty() {
        full.push(b'/');
    }
    full.extend_from_slice(raw);
    let skipped = |reason| Entry::Skipped(SkippedEntry::new(&full, reason));
    let file_type = match entry.file_type() {
        Ok(file_type) => file_type,
        // Removed since the directory was read.
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Entry::Hidden,
        Err(error) => {
            let key = String::from_utf8_lossy(&full).into_owned();
            return Entry::Failed(failure(&key, io_error(&key, "list")(error)));
        }
    };
    if file_type.is_symlink() {
        return skipped(SkipReason::SymbolicLink);
    }
    if !file_type.is_dir() && !file_type.is_file() {
        return skipped(SkipReason::NotAFile);
    }
    let Some((name, path)) = std::str::from_utf8(raw)
        .ok()
        .filter(|name| is_plain(name))
        .and_then(|name| Some((name, Path::parse(std::str::from_utf8(&full).ok()?).ok()?)))
    else {
        return skipped(SkipReason::NotAKey);
    };
    if file_type.is_dir() {
        return Entry::Directory(path, name.to_string());
    }
    if is_temporary(name) {
        return Entry::Hidden;
    }
    match dir.symlink_metadata(name) {
        Ok(metadata) if metadata.is_file() => {
            let modified = metadata
                .modified()
                .map(cap_std::time::SystemTime::into_std)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            Entry::Object(meta_of(path, metadata.ino(), metadata.len(), modified))
        }
        // Swapped for a link or something else since the directory was read.
        Ok(metadata) if metadata.is_symlink() => skipped(SkipReason::SymbolicLink),
        Ok(_) => skipped(SkipReason::NotAFile),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Entry::Hidden,
        Err(error) => Entry::Failed(failure(
            path.as_ref(),
            io_error(path.as_ref(), "read metadata")(error),
        )),
    }
}

/// A recursive listing in progress: the directories still to read, each with its key.
pub(super) struct Walk {
    root: Arc<Dir>,
    start: Option<Path>,
    pending: Vec<(Dir, Path)>,
    /// The directory being read, and its entries.
    current: Option<(Dir, Path, cap_std::fs::ReadDir)>,
}

impl Walk {
    pub(super) fn new(root: Arc<Dir>, prefix: Path) -> Walk {
        Walk {
            root,
            start: Some(prefix),
            pending: Vec::new(),
            current: None,
        }
    }

    /// Up to `limit` items: objects, skipped entries (as their errors) and failures. Empty once done.
    pub(super) fn next_batch(&mut self, limit: usize) -> Vec<object_store::Result<ObjectMeta>> {
        let mut batch = Vec::new();
        if let Some(prefix) = self.start.take() {
            match open_prefix(&self.root, &prefix) {
                Ok(Some(dir)) => self.pending.push((dir, prefix)),
                Ok(None) => {}
                Err(Prefix::Skipped(entry)) => batch.push(Err(entry.into_error())),
                Err(Prefix::Failed(error)) => batch.push(Err(error)),
            }
        }
        while batch.len() < limit {
            let Some((dir, path, entries)) = &mut self.current else {
                let Some((dir, path)) = self.pending.pop() else {
                    break;
                };
                match dir.entries() {
                    Ok(entries) => self.current = Some((dir, path, entries)),
                    Err(error) => batch.push(Err(failure(
                        path.as_ref(),
                        io_error(path.as_ref(), "list")(error),
                    ))),
                }
                continue;
            };
            let Some(entry) = entries.next() else {
                self.current = None;
                continue;
            };
            let entry = match entry {
                Ok(entry) => entry,
                Err(error) => {
                    batch.push(Err(failure(
                        path.as_ref(),
                        io_error(path.as_ref(), "list")(error),
                    )));
                    self.current = None;
                    continue;
                }
            };
            match classify(dir, path, &entry) {
                Entry::Directory(child, name) => match dir.open_dir_nofollow(&name) {
                    Ok(opened) => self.pending.push((opened, child)),
                    Err(error) => {
                        match explain(dir, &name, child.to_string(), error, child.as_ref()) {
                            Error::NotFound => {}
                            Error::SymbolicLink { .. } => batch.push(Err(SkippedEntry::new(
                                child.as_ref().as_bytes(),
                                SkipReason::SymbolicLink,
                            )
                            .into_error())),
                            other => batch.push(Err(failure(child.as_ref(), other))),
                        }
                    }
                },
                Entry::Object(meta) => batch.push(Ok(meta)),
                Entry::Skipped(entry) => batch.push(Err(entry.into_error())),
                Entry::Hidden => {}
                Entry::Failed(error) => batch.push(Err(error)),
            }
        }
        batch
    }
}
