//! Keys resolved beneath the bucket's directory handle, one segment at a time, never through a symbolic link.

use std::io;

use cap_fs_ext::{DirExt, FollowSymlinks, OpenOptionsFollowExt, OpenOptionsSyncExt};
use cap_std::fs::{Dir, MetadataExt as _, OpenOptions};
use object_store::ObjectMeta;
use object_store::path::Path;

use super::{Error, io_error, meta_of};

/// A key split into the directories on its way and its file name.
pub(super) struct Key<'a> {
    pub(super) text: &'a str,
    pub(super) dirs: Vec<&'a str>,
    pub(super) name: &'a str,
}

impl<'a> Key<'a> {
    /// `location` as a key of an object (not the root; not a name of a file being written).
    pub(super) fn of(location: &'a Path) -> Result<Key<'a>, Error> {
        let text = location.as_ref();
        let mut segments: Vec<&str> = text.split('/').collect();
        let name = segments.pop().filter(|name| !name.is_empty());
        let Some(name) = name else {
            return Err(Error::BadKey { key: text.into() });
        };
        // `Path` never holds these; a hand-built one must not get past the handle either.
        if segments
            .iter()
            .chain([&name])
            .any(|segment| !is_plain(segment))
        {
            return Err(Error::BadKey { key: text.into() });
        }
        if is_temporary(name) {
            return Err(Error::TemporaryName { key: text.into() });
        }
        Ok(Key {
            text,
            dirs: segments,
            name,
        })
    }

    /// The key of the directory `depth` segments deep, for messages.
    pub(super) fn dir_path(&self, depth: usize) -> String {
        self.dirs[..depth].join("/")
    }
}

/// A directory of the bucket: the root handle itself, or one opened beneath it.
pub(super) enum DirRef<'a> {
    Root(&'a Dir),
    Opened(Dir),
}

impl DirRef<'_> {
    /// A handle of its own (the root's is shared).
    pub(super) fn into_owned(self) -> io::Result<Dir> {
        match self {
            DirRef::Root(dir) => dir.try_clone(),
            DirRef::Opened(dir) => Ok(dir),
        }
    }
}

impl std::ops::Deref for DirRef<'_> {
    type Target = Dir;

    fn deref(&self) -> &Dir {
        match self {
            DirRef::Root(dir) => dir,
            DirRef::Opened(dir) => dir,
        }
    }
}

/// A path segment that names an entry of its directory and nothing else.
pub(super) fn is_plain(segment: &str) -> bool {
    !segment.is_empty() && segment != "." && segment != ".." && !segment.contains(['/', '\0'])
}

/// `name#123`: a file being written (ours, or `LocalFileSystem`'s).
pub(super) fn is_temporary(name: &str) -> bool {
    match name.rsplit_once('#') {
        Some((_, suffix)) => !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

/// What an entry that could not be opened is: gone, a symbolic link, or something else than was wanted.
pub(super) fn explain(
    parent: &Dir,
    name: &str,
    path: String,
    error: io::Error,
    key: &str,
) -> Error {
    if error.kind() == io::ErrorKind::NotFound {
        return Error::NotFound;
    }
    match parent.symlink_metadata(name) {
        Ok(metadata) if metadata.is_symlink() => Error::SymbolicLink { path },
        Err(gone) if gone.kind() == io::ErrorKind::NotFound => Error::NotFound,
        _ if error.kind() == io::ErrorKind::NotADirectory => Error::NotADirectory { path },
        _ => Error::Io {
            key: key.to_string(),
            action: "open",
            source: error,
        },
    }
}

/// Opens the directories of `key` from `root`, never following a symbolic link; with `create`, makes the missing
/// ones.
pub(super) fn open_dirs<'a>(
    root: &'a Dir,
    key: &Key<'_>,
    create: bool,
) -> Result<DirRef<'a>, Error> {
    let mut current = DirRef::Root(root);
    for (depth, name) in key.dirs.iter().enumerate() {
        let opened = match current.open_dir_nofollow(name) {
            Ok(dir) => dir,
            Err(error) if create && error.kind() == io::ErrorKind::NotFound => {
                match current.create_dir(name) {
                    Ok(()) => {}
                    // Made by another writer meanwhile.
                    Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(error) => return Err(io_error(key.text, "create a directory")(error)),
                }
                current.open_dir_nofollow(name).map_err(|error| {
                    explain(&current, name, key.dir_path(depth + 1), error, key.text)
                })?
            }
            Err(error) => {
                return Err(explain(
                    &current,
                    name,
                    key.dir_path(depth + 1),
                    error,
                    key.text,
                ));
            }
        };
        current = DirRef::Opened(opened);
    }
    Ok(current)
}

/// Opens the object `key` for reading: a regular file, reached without following a symbolic link.
pub(super) fn open_object(
    root: &Dir,
    key: &Key<'_>,
) -> Result<(std::fs::File, std::fs::Metadata), Error> {
    let dir = open_dirs(root, key, false)?;
    let mut options = OpenOptions::new();
    options
        .read(true)
        .follow(FollowSymlinks::No)
        // A FIFO put in the object's place must not block the read forever.
        .nonblock(true);
    let file = dir
        .open_with(key.name, &options)
        .map_err(|error| explain(&dir, key.name, key.text.to_string(), error, key.text))?
        .into_std();
    let metadata = file
        .metadata()
        .map_err(io_error(key.text, "read metadata"))?;
    if !metadata.is_file() {
        return Err(Error::NotAFile {
            path: key.text.to_string(),
        });
    }
    Ok((file, metadata))
}

/// The object's metadata, without opening it.
pub(super) fn stat_object(root: &Dir, key: &Key<'_>, location: &Path) -> Result<ObjectMeta, Error> {
    let dir = open_dirs(root, key, false)?;
    let metadata = dir
        .symlink_metadata(key.name)
        .map_err(|error| explain(&dir, key.name, key.text.to_string(), error, key.text))?;
    if metadata.is_symlink() {
        return Err(Error::SymbolicLink {
            path: key.text.to_string(),
        });
    }
    if !metadata.is_file() {
        return Err(Error::NotAFile {
            path: key.text.to_string(),
        });
    }
    let modified = metadata
        .modified()
        .map(cap_std::time::SystemTime::into_std)
        .map_err(io_error(key.text, "read metadata"))?;
    Ok(meta_of(
        location.clone(),
        metadata.ino(),
        metadata.len(),
        modified,
    ))
}
