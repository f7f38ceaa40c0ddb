//! `file://` buckets: an [`ObjectStore`] over a directory that cannot be turned against the host, and that moves
//! data in large blocks.
//!
//! **Layout.** The same as `object_store`'s `LocalFileSystem`, so that buckets it wrote (ours before this store,
//! Esop's, hand-made ones) read as before: an object is the file at its key's path under the bucket directory, each
//! path segment the file name as it is, percent signs and all (`Path::from("a\nb")` is the file `a%0Ab`).
//! Files being written are `<name>#<digits>` beside their final name, as `LocalFileSystem`'s were; listings hide
//! them and such a key is refused.
//!
//! **Confinement.** The bucket directory is opened once, as a directory handle (`cap-std`); every key is resolved
//! from that handle one segment at a time, each directory opened without following a symbolic link
//! (`open_dir_nofollow`) and the object itself opened with `O_NOFOLLOW`, so nothing outside the bucket is ever
//! read, written or deleted, whatever is renamed meanwhile. **Symbolic links beneath the bucket are refused
//! entirely**, even ones that point inside it: a backup never makes one, and one that points inside today may
//! be swapped for one that points outside tomorrow. A key whose file, or any directory on its way, is a symbolic
//! link is "not found" for get, head, copy and delete (the error says why); listings skip it and report it (see
//! [`super::skipped`]). Only regular files are objects: a FIFO, socket or device is "not found" too, and is opened
//! non-blocking so that a FIFO swapped in cannot hang a read. The path *to* the bucket directory is the operator's
//! own configuration and may go through symbolic links. A hard link is a regular file like any other and is read:
//! one to a file its creator may not read is what the kernel's `fs.protected_hardlinks` (on by default) prevents.
//!
//! **Atomicity.** A put writes `<name>#<n>` and renames it over the name; a multipart upload writes its parts at
//! their offsets into one such file, which `complete` renames and `abort` (or dropping the upload) removes. No
//! `fsync`, as `LocalFileSystem` by default: restores check every file against its manifest hash.
//!
//! **Speed.** All file work runs on tokio's blocking pool. Objects are read in [`READ_BLOCK`] reads, where
//! `LocalFileSystem`'s streams made one system call per 8 KiB.

use std::io::{self, Write};
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt as _};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use cap_fs_ext::{DirExt, FollowSymlinks, OpenOptionsFollowExt, OpenOptionsSyncExt};
use cap_std::ambient_authority;
use cap_std::fs::{Dir, MetadataExt as _, OpenOptions};
use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use futures_util::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    Attributes, CopyMode, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, RenameOptions, RenameTargetMode, UploadPart,
};

use super::skipped::{SkipReason, SkippedEntries, SkippedEntry};

/// Bytes per read of an object: large enough that the system calls cost nothing beside the copy, small enough
/// that the restore's ten connections hold little memory (its download engine writes 1 MiB blocks). 1 MiB read as
/// fast as 4 MiB in `scripts/bench-file-store` (docs/benchmarks.md).
pub const READ_BLOCK: usize = 1024 * 1024;

/// Listing entries gathered per trip to the blocking pool.
const LIST_BATCH: usize = 1024;

/// Deletions at once in `delete_stream`.
const DELETE_CONCURRENCY: usize = 10;

/// What `object_store::Error::Generic` names as the store.
const STORE: &str = "file://";

/// A `file://` bucket: the directory, opened once.
#[derive(Debug, Clone)]
pub struct FileStore {
    root: Arc<Dir>,
    path: PathBuf,
}

impl std::fmt::Display for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileStore({})", self.path.display())
    }
}

impl FileStore {
    /// Opens the bucket directory at `path` (which must exist).
    pub fn open(path: &std::path::Path) -> io::Result<FileStore> {
        let root = Dir::open_ambient_dir(path, ambient_authority())?;
        Ok(FileStore {
            root: Arc::new(root),
            path: path.to_path_buf(),
        })
    }
}

/// Why an operation on one key failed.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("no such object")]
    NotFound,
    #[error("{path} is a symbolic link, which a file:// bucket never follows")]
    SymbolicLink { path: String },
    #[error("{path} is not a regular file")]
    NotAFile { path: String },
    #[error("{path} is not a directory")]
    NotADirectory { path: String },
    #[error("{key}: names ending in '#' and digits are files being written")]
    TemporaryName { key: String },
    #[error("{key}: not an object key")]
    BadKey { key: String },
    #[error("{key}: the range {start}..{end} is outside the object's {size} bytes")]
    Range {
        key: String,
        start: u64,
        end: u64,
        size: u64,
    },
    #[error("{key}: cannot {action}: {source}")]
    Io {
        key: String,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("the upload of {key} was completed or aborted already")]
    Finished { key: String },
}

/// An error for `key`, in `object_store`'s terms: what is not an object there is `NotFound`.
fn failure(key: &str, error: Error) -> object_store::Error {
    match error {
        Error::NotFound
        | Error::SymbolicLink { .. }
        | Error::NotAFile { .. }
        | Error::NotADirectory { .. } => object_store::Error::NotFound {
            path: key.to_string(),
            source: Box::new(error),
        },
        Error::Io { ref source, .. } if source.kind() == io::ErrorKind::AlreadyExists => {
            object_store::Error::AlreadyExists {
                path: key.to_string(),
                source: Box::new(error),
            }
        }
        other => object_store::Error::Generic {
            store: STORE,
            source: Box::new(other),
        },
    }
}

fn io_error<'a>(key: &'a str, action: &'static str) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        key: key.to_string(),
        action,
        source,
    }
}

/// Runs `work` on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> object_store::Result<T> + Send + 'static,
) -> object_store::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|source| object_store::Error::JoinError { source })?
}

/// A key split into the directories on its way and its file name.
struct Key<'a> {
    text: &'a str,
    dirs: Vec<&'a str>,
    name: &'a str,
}

impl<'a> Key<'a> {
    /// `location` as a key of an object (not the root; not a name of a file being written).
    fn of(location: &'a Path) -> Result<Key<'a>, Error> {
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
    fn dir_path(&self, depth: usize) -> String {
        self.dirs[..depth].join("/")
    }
}

/// A directory of the bucket: the root handle itself, or one opened beneath it.
enum DirRef<'a> {
    Root(&'a Dir),
    Opened(Dir),
}

impl DirRef<'_> {
    /// A handle of its own (the root's is shared).
    fn into_owned(self) -> io::Result<Dir> {
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
fn is_plain(segment: &str) -> bool {
    !segment.is_empty() && segment != "." && segment != ".." && !segment.contains(['/', '\0'])
}

/// `name#123`: a file being written (ours, or `LocalFileSystem`'s).
fn is_temporary(name: &str) -> bool {
    match name.rsplit_once('#') {
        Some((_, suffix)) => !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

/// What an entry that could not be opened is: gone, a symbolic link, or something else than was wanted.
fn explain(parent: &Dir, name: &str, path: String, error: io::Error, key: &str) -> Error {
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
fn open_dirs<'a>(root: &'a Dir, key: &Key<'_>, create: bool) -> Result<DirRef<'a>, Error> {
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
fn open_object(root: &Dir, key: &Key<'_>) -> Result<(std::fs::File, std::fs::Metadata), Error> {
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
fn stat_object(root: &Dir, key: &Key<'_>, location: &Path) -> Result<ObjectMeta, Error> {
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

/// `LocalFileSystem`'s metadata, e-tag included (`"<inode>-<mtime µs>-<size>"` in hex), so that e-tags a client
/// kept stay valid.
fn meta_of(location: Path, inode: u64, size: u64, modified: SystemTime) -> ObjectMeta {
    let micros = modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    ObjectMeta {
        location,
        last_modified: DateTime::<Utc>::from(modified),
        size,
        e_tag: Some(format!("\"{inode:x}-{micros:x}-{size:x}\"")),
        version: None,
    }
}

fn meta_of_std(location: Path, metadata: &std::fs::Metadata) -> ObjectMeta {
    meta_of(
        location,
        metadata.ino(),
        metadata.len(),
        metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH),
    )
}

/// Creates `<name>#<n>` beside `name` for writing, with the first `n` not taken.
fn new_temporary(dir: &Dir, key: &Key<'_>) -> Result<(std::fs::File, String), Error> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    for n in 1u32.. {
        let temporary = format!("{}#{n}", key.name);
        match dir.open_with(&temporary, &options) {
            Ok(file) => return Ok((file.into_std(), temporary)),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(io_error(key.text, "create a file")(error)),
        }
    }
    Err(io_error(key.text, "create a file")(io::Error::other(
        "no free temporary name",
    )))
}

/// Puts a written temporary file in place: over whatever is there (`Overwrite`), or only where nothing is
/// (`Create`, by a hard link, which fails when the name is taken).
fn publish(dir: &Dir, temporary: &str, key: &Key<'_>, overwrite: bool) -> Result<(), Error> {
    let result = if overwrite {
        dir.rename(temporary, dir, key.name)
    } else {
        dir.hard_link(temporary, dir, key.name)
            .and_then(|()| dir.remove_file(temporary))
    };
    result.map_err(|error| {
        let _ = dir.remove_file(temporary);
        io_error(key.text, "put the file in place")(error)
    })
}

#[async_trait]
impl ObjectStore for FileStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let overwrite = match opts.mode {
            PutMode::Overwrite => true,
            PutMode::Create => false,
            PutMode::Update(_) => {
                return Err(object_store::Error::NotImplemented {
                    operation: "put_opts with PutMode::Update".into(),
                    implementer: self.to_string(),
                });
            }
        };
        if !opts.attributes.is_empty() {
            return Err(object_store::Error::NotImplemented {
                operation: "put_opts with attributes".into(),
                implementer: self.to_string(),
            });
        }
        let root = Arc::clone(&self.root);
        let location = location.clone();
        blocking(move || {
            let key = Key::of(&location).map_err(|error| failure(location.as_ref(), error))?;
            let put = || -> Result<PutResult, Error> {
                let dir = open_dirs(&root, &key, true)?;
                let (mut file, temporary) = new_temporary(&dir, &key)?;
                let written = payload
                    .iter()
                    .try_for_each(|chunk| file.write_all(chunk))
                    .and_then(|()| file.metadata());
                let metadata = match written {
                    Ok(metadata) => metadata,
                    Err(error) => {
                        let _ = dir.remove_file(&temporary);
                        return Err(io_error(key.text, "write")(error));
                    }
                };
                drop(file);
                publish(&dir, &temporary, &key, overwrite)?;
                Ok(PutResult {
                    e_tag: meta_of_std(location.clone(), &metadata).e_tag,
                    version: None,
                    extensions: Default::default(),
                })
            };
            put().map_err(|error| failure(key.text, error))
        })
        .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        if !opts.attributes.is_empty() {
            return Err(object_store::Error::NotImplemented {
                operation: "put_multipart_opts with attributes".into(),
                implementer: self.to_string(),
            });
        }
        let root = Arc::clone(&self.root);
        let location = location.clone();
        blocking(move || {
            let key = Key::of(&location).map_err(|error| failure(location.as_ref(), error))?;
            let begin = || -> Result<Upload, Error> {
                let dir = open_dirs(&root, &key, true)?
                    .into_owned()
                    .map_err(io_error(key.text, "open a directory"))?;
                let (file, temporary) = new_temporary(&dir, &key)?;
                Ok(Upload {
                    state: Arc::new(UploadState {
                        dir,
                        key: key.text.to_string(),
                        name: key.name.to_string(),
                        temporary,
                        file: Mutex::new(Some(file)),
                    }),
                    offset: 0,
                    finished: false,
                })
            };
            let upload = begin().map_err(|error| failure(key.text, error))?;
            Ok(Box::new(upload) as Box<dyn MultipartUpload>)
        })
        .await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let root = Arc::clone(&self.root);
        let location = location.clone();
        let (file, meta, range) = blocking(move || {
            let key = Key::of(&location).map_err(|error| failure(location.as_ref(), error))?;
            if options.head {
                let meta = stat_object(&root, &key, &location)
                    .map_err(|error| failure(key.text, error))?;
                options.check_preconditions(&meta)?;
                return Ok((None, meta, 0..0));
            }
            let (file, metadata) =
                open_object(&root, &key).map_err(|error| failure(key.text, error))?;
            let meta = meta_of_std(location.clone(), &metadata);
            options.check_preconditions(&meta)?;
            let range = match &options.range {
                Some(range) => range.as_range(meta.size).map_err(|_| {
                    let (start, end) = match range {
                        object_store::GetRange::Bounded(r) => (r.start, r.end),
                        object_store::GetRange::Offset(start) => (*start, meta.size),
                        object_store::GetRange::Suffix(n) => {
                            (meta.size.saturating_sub(*n), meta.size)
                        }
                    };
                    failure(
                        key.text,
                        Error::Range {
                            key: key.text.to_string(),
                            start,
                            end,
                            size: meta.size,
                        },
                    )
                })?,
                None => 0..meta.size,
            };
            Ok((Some(file), meta, range))
        })
        .await?;
        let key = meta.location.to_string();
        let payload = match file {
            Some(file) => read_blocks(file, range.clone(), key),
            None => futures_util::stream::empty().boxed(),
        };
        Ok(GetResult {
            payload: GetResultPayload::Stream(payload),
            meta,
            range,
            attributes: Attributes::default(),
            extensions: Default::default(),
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let root = Arc::clone(&self.root);
        locations
            .map(move |location| {
                let root = Arc::clone(&root);
                async move {
                    let location = location?;
                    blocking(move || {
                        delete(&root, &location)?;
                        Ok(location)
                    })
                    .await
                }
            })
            .buffered(DELETE_CONCURRENCY)
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let walk = Walk::new(Arc::clone(&self.root), prefix.cloned().unwrap_or_default());
        futures_util::stream::unfold(Some(walk), |walk| async move {
            let mut walk = walk?;
            let batch = tokio::task::spawn_blocking(move || {
                let batch = walk.next_batch(LIST_BATCH);
                (walk, batch)
            })
            .await;
            match batch {
                Ok((walk, batch)) if !batch.is_empty() => {
                    Some((futures_util::stream::iter(batch), Some(walk)))
                }
                Ok(_) => None,
                Err(source) => Some((
                    futures_util::stream::iter(vec![Err(object_store::Error::JoinError {
                        source,
                    })]),
                    None,
                )),
            }
        })
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let root = Arc::clone(&self.root);
        let prefix = prefix.cloned().unwrap_or_default();
        blocking(move || list_one_level(&root, &prefix)).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let overwrite = matches!(options.mode, CopyMode::Overwrite);
        let root = Arc::clone(&self.root);
        let (from, to) = (from.clone(), to.clone());
        blocking(move || link(&root, &from, &to, overwrite, false)).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        let root = Arc::clone(&self.root);
        let (from, to) = (from.clone(), to.clone());
        match options.target_mode {
            RenameTargetMode::Overwrite => {
                blocking(move || link(&root, &from, &to, true, true)).await
            }
            // A hard link fails when the target exists; then the source goes.
            RenameTargetMode::Create => {
                blocking(move || {
                    link(&root, &from, &to, false, false)?;
                    delete(&root, &from)
                })
                .await
            }
        }
    }
}

/// Streams `range` of `file` in [`READ_BLOCK`] reads, each on the blocking pool.
fn read_blocks(
    file: std::fs::File,
    range: Range<u64>,
    key: String,
) -> BoxStream<'static, object_store::Result<Bytes>> {
    let file = Arc::new(file);
    futures_util::stream::try_unfold(range.start, move |offset| {
        let file = Arc::clone(&file);
        let key = key.clone();
        let end = range.end;
        async move {
            if offset >= end {
                return Ok(None);
            }
            let length = (end - offset).min(READ_BLOCK as u64) as usize;
            let bytes = blocking(move || {
                let mut buffer = vec![0u8; length];
                let mut filled = 0;
                while filled < length {
                    match file.read_at(&mut buffer[filled..], offset + filled as u64) {
                        // Shorter than when it was opened: the reader sees fewer bytes than announced.
                        Ok(0) => break,
                        Ok(read) => filled += read,
                        Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                        Err(error) => return Err(failure(&key, io_error(&key, "read")(error))),
                    }
                }
                buffer.truncate(filled);
                Ok(Bytes::from(buffer))
            })
            .await?;
            if bytes.is_empty() {
                return Ok(None);
            }
            let next = offset + bytes.len() as u64;
            Ok(Some((bytes, next)))
        }
    })
    .boxed()
}

/// Deletes the object at `location`: never a symbolic link's target, never anything but a regular file.
fn delete(root: &Dir, location: &Path) -> object_store::Result<()> {
    let key = Key::of(location).map_err(|error| failure(location.as_ref(), error))?;
    let remove = || -> Result<(), Error> {
        let dir = open_dirs(root, &key, false)?;
        let metadata = dir
            .symlink_metadata(key.name)
            .map_err(|error| explain(&dir, key.name, key.text.to_string(), error, key.text))?;
        if metadata.is_symlink() {
            tracing::warn!(
                key = key.text,
                "not deleting a symbolic link in a file:// bucket"
            );
            return Err(Error::SymbolicLink {
                path: key.text.to_string(),
            });
        }
        if !metadata.is_file() {
            return Err(Error::NotAFile {
                path: key.text.to_string(),
            });
        }
        // Unlinking a name never touches what a link there points to, should it have been swapped meanwhile.
        dir.remove_file(key.name)
            .map_err(|error| match error.kind() {
                io::ErrorKind::NotFound => Error::NotFound,
                _ => io_error(key.text, "delete")(error),
            })
    };
    remove().map_err(|error| failure(key.text, error))
}

/// Copies (a hard link, as `LocalFileSystem`) or moves the object `from` to `to`.
fn link(
    root: &Dir,
    from: &Path,
    to: &Path,
    overwrite: bool,
    move_it: bool,
) -> object_store::Result<()> {
    let source = Key::of(from).map_err(|error| failure(from.as_ref(), error))?;
    let target = Key::of(to).map_err(|error| failure(to.as_ref(), error))?;
    let from_dir = open_dirs(root, &source, false).map_err(|error| failure(source.text, error))?;
    let metadata = from_dir
        .symlink_metadata(source.name)
        .map_err(|error| {
            explain(
                &from_dir,
                source.name,
                source.text.into(),
                error,
                source.text,
            )
        })
        .map_err(|error| failure(source.text, error))?;
    if metadata.is_symlink() || !metadata.is_file() {
        let path = source.text.to_string();
        let error = if metadata.is_symlink() {
            Error::SymbolicLink { path }
        } else {
            Error::NotAFile { path }
        };
        return Err(failure(source.text, error));
    }
    let to_dir = open_dirs(root, &target, true).map_err(|error| failure(target.text, error))?;
    let result = if move_it {
        from_dir
            .rename(source.name, &to_dir, target.name)
            .map_err(io_error(target.text, "move the file"))
    } else if overwrite {
        // Linked under a temporary name first, then renamed over the target: a reader never sees it missing.
        let mut linked = Err(io::Error::other("no free temporary name"));
        for n in 1u32..10_000 {
            let temporary = format!("{}#{n}", target.name);
            match from_dir.hard_link(source.name, &to_dir, &temporary) {
                Ok(()) => {
                    linked = to_dir
                        .rename(&temporary, &to_dir, target.name)
                        .inspect_err(|_| {
                            let _ = to_dir.remove_file(&temporary);
                        });
                    break;
                }
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(error) => {
                    linked = Err(error);
                    break;
                }
            }
        }
        linked.map_err(io_error(target.text, "copy the file"))
    } else {
        from_dir
            .hard_link(source.name, &to_dir, target.name)
            .map_err(io_error(target.text, "copy the file"))
    };
    result.map_err(|error| failure(target.text, error))
}

/// One directory's entries: sub-directories as common prefixes, files as objects; whatever cannot be an object
/// is skipped and reported in the result's extensions.
fn list_one_level(root: &Dir, prefix: &Path) -> object_store::Result<ListResult> {
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
enum Prefix {
    /// The prefix (or a directory on its way) is a symbolic link.
    Skipped(SkippedEntry),
    Failed(object_store::Error),
}

/// Opens the directory a listing starts from; `None` when there is none (an empty listing, as for a prefix no key
/// has in a cloud bucket).
fn open_prefix(root: &Dir, prefix: &Path) -> Result<Option<Dir>, Prefix> {
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
enum Entry {
    Directory(Path, String),
    Object(ObjectMeta),
    Skipped(SkippedEntry),
    /// A file being written: not an object yet.
    Hidden,
    Failed(object_store::Error),
}

fn classify(dir: &Dir, prefix: &Path, entry: &cap_std::fs::DirEntry) -> Entry {
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
struct Walk {
    root: Arc<Dir>,
    start: Option<Path>,
    pending: Vec<(Dir, Path)>,
    /// The directory being read, and its entries.
    current: Option<(Dir, Path, cap_std::fs::ReadDir)>,
}

impl Walk {
    fn new(root: Arc<Dir>, prefix: Path) -> Walk {
        Walk {
            root,
            start: Some(prefix),
            pending: Vec::new(),
            current: None,
        }
    }

    /// Up to `limit` items: objects, skipped entries (as their errors) and failures. Empty once done.
    fn next_batch(&mut self, limit: usize) -> Vec<object_store::Result<ObjectMeta>> {
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

/// A multipart upload: parts written at their offsets into one temporary file beside the object.
#[derive(Debug)]
struct Upload {
    state: Arc<UploadState>,
    /// Where the next part goes.
    offset: u64,
    finished: bool,
}

#[derive(Debug)]
struct UploadState {
    dir: Dir,
    key: String,
    name: String,
    temporary: String,
    /// `None` once completed or aborted.
    file: Mutex<Option<std::fs::File>>,
}

impl UploadState {
    fn take_file(&self) -> Option<std::fs::File> {
        self.file.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

#[async_trait]
impl MultipartUpload for Upload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let offset = self.offset;
        self.offset += data.content_length() as u64;
        let state = Arc::clone(&self.state);
        blocking(move || {
            let guard = state.file.lock().unwrap_or_else(|e| e.into_inner());
            let Some(file) = guard.as_ref() else {
                return Err(failure(
                    &state.key,
                    Error::Finished {
                        key: state.key.clone(),
                    },
                ));
            };
            let mut at = offset;
            for chunk in data.iter() {
                file.write_all_at(chunk, at)
                    .map_err(|error| failure(&state.key, io_error(&state.key, "write")(error)))?;
                at += chunk.len() as u64;
            }
            Ok(())
        })
        .boxed()
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.finished = true;
        let state = Arc::clone(&self.state);
        blocking(move || {
            let key = state.key.clone();
            let Some(file) = state.take_file() else {
                return Err(failure(&key, Error::Finished { key: key.clone() }));
            };
            let metadata = file
                .metadata()
                .map_err(|error| failure(&key, io_error(&key, "read metadata")(error)))?;
            drop(file);
            state
                .dir
                .rename(&state.temporary, &state.dir, &state.name)
                .map_err(|error| {
                    let _ = state.dir.remove_file(&state.temporary);
                    failure(&key, io_error(&key, "put the file in place")(error))
                })?;
            let location = Path::parse(&key).unwrap_or_default();
            Ok(PutResult {
                e_tag: meta_of_std(location, &metadata).e_tag,
                version: None,
                extensions: Default::default(),
            })
        })
        .await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.finished = true;
        let state = Arc::clone(&self.state);
        blocking(move || {
            if state.take_file().is_none() {
                return Err(failure(
                    &state.key,
                    Error::Finished {
                        key: state.key.clone(),
                    },
                ));
            }
            state
                .dir
                .remove_file(&state.temporary)
                .map_err(|error| failure(&state.key, io_error(&state.key, "remove")(error)))
        })
        .await
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Neither completed nor aborted: the temporary file must not stay.
        let state = Arc::clone(&self.state);
        let remove = move || {
            if state.take_file().is_some() {
                let _ = state.dir.remove_file(&state.temporary);
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use futures_util::TryStreamExt;
    use object_store::local::LocalFileSystem;
    use object_store::{ObjectStoreExt, integration};

    use super::*;

    /// A bucket directory and, beside it (outside the bucket), a sentinel directory with a secret file.
    struct Fixture {
        _dir: tempfile::TempDir,
        bucket: PathBuf,
        outside: PathBuf,
        store: FileStore,
    }

    const SECRET: &[u8] = b"root:$6$the-shadow-file:19000:0:99999:7:::\n";

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let bucket = dir.path().join("bucket");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&bucket).unwrap();
        std::fs::create_dir_all(outside.join("sub")).unwrap();
        std::fs::write(outside.join("shadow"), SECRET).unwrap();
        std::fs::write(outside.join("sub/nb-1-big-Data.db"), b"not the bucket's").unwrap();
        let store = FileStore::open(&bucket).unwrap();
        Fixture {
            _dir: dir,
            bucket,
            outside,
            store,
        }
    }

    /// Every file under `dir` with its content: what "unchanged" is checked against.
    fn snapshot(dir: &std::path::Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut files = Vec::new();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    files.push((path.clone(), std::fs::read(&path).unwrap()));
                }
            }
        }
        files.sort();
        files
    }

    async fn listed(store: &FileStore, prefix: Option<&str>) -> (Vec<String>, Vec<SkippedEntry>) {
        let prefix = prefix.map(Path::from);
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        let mut listing = store.list(prefix.as_ref());
        while let Some(item) = listing.next().await {
            match item {
                Ok(meta) => keys.push(meta.location.to_string()),
                Err(error) => skipped.push(
                    SkippedEntry::of(&error)
                        .unwrap_or_else(|| panic!("a failed listing: {error}"))
                        .clone(),
                ),
            }
        }
        keys.sort();
        skipped.sort_by(|a, b| a.name.cmp(&b.name));
        (keys, skipped)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn passes_object_stores_own_conformance_tests() {
        let fixture = fixture();
        let store = &fixture.store;
        integration::put_get_delete_list(store).await;
        integration::list_with_offset_exclusivity(store).await;
        integration::get_opts(store).await;
        integration::list_uses_directories_correctly(store).await;
        integration::list_with_delimiter(store).await;
        integration::rename_and_copy(store).await;
        integration::copy_if_not_exists(store).await;
        integration::copy_rename_nonexistent_object(store).await;
        integration::stream_get(store).await;
        integration::put_opts(store, false).await;
    }

    /// Keys with characters `Path` encodes, and what other tools write: the file names are those
    /// `LocalFileSystem` uses, both ways.
    #[tokio::test(flavor = "multi_thread")]
    async fn lays_objects_out_as_local_file_system_does() {
        let fixture = fixture();
        let local = LocalFileSystem::new_with_prefix(&fixture.bucket).unwrap();
        let keys = [
            Path::from("c/dc/n/manifests/tag-1.json"),
            Path::from("c/dc/n/data/ks/t-1/1-abc/nb-1-big-Data.db"),
            Path::from("odd/a b/c%d/e#f/x\ny.json"),
            Path::from_iter(["odd", "a/b", "..", "été", "p|q*r?"]),
        ];
        for (index, key) in keys.iter().enumerate() {
            let content = Bytes::from(format!("object {index}"));
            if index % 2 == 0 {
                local.put(key, content.clone().into()).await.unwrap();
            } else {
                fixture
                    .store
                    .put(key, content.clone().into())
                    .await
                    .unwrap();
            }
            let ours = fixture.store.get(key).await.unwrap().bytes().await.unwrap();
            let theirs = local.get(key).await.unwrap().bytes().await.unwrap();
            assert_eq!((&ours, &theirs), (&content, &content), "{key}");
            assert_eq!(
                fixture.store.head(key).await.unwrap().e_tag,
                local.head(key).await.unwrap().e_tag,
                "{key}"
            );
        }
        // Written by another tool: a name `Path` would have encoded, listed as it is by both.
        std::fs::write(fixture.bucket.join("odd/raw été [1].txt"), b"raw").unwrap();
        // `Path` percent-encoded what it does not take as it is; the file names are its segments.
        assert!(
            fixture
                .bucket
                .join("odd/a b/c%25d/e%23f/x%0Ay.json")
                .is_file()
        );
        assert!(
            fixture
                .bucket
                .join("odd/a%2Fb/%2E%2E/%C3%A9t%C3%A9/p%7Cq%2Ar%3F")
                .is_file()
        );
        let mut ours: Vec<ObjectMeta> = fixture.store.list(None).try_collect().await.unwrap();
        let mut theirs: Vec<ObjectMeta> = local.list(None).try_collect().await.unwrap();
        ours.sort_by(|a, b| a.location.cmp(&b.location));
        theirs.sort_by(|a, b| a.location.cmp(&b.location));
        assert_eq!(ours, theirs);
        let ours = fixture
            .store
            .list_with_delimiter(Some(&Path::from("odd")))
            .await
            .unwrap();
        let theirs = local
            .list_with_delimiter(Some(&Path::from("odd")))
            .await
            .unwrap();
        assert_eq!(ours.common_prefixes, theirs.common_prefixes);
    }

    /// A node prefix whose `data` is a symbolic link to a directory outside the bucket: nothing there is read,
    /// listed or deleted.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_symlinked_directory_is_never_followed() {
        let fixture = fixture();
        let node = fixture.bucket.join("c/dc/n");
        std::fs::create_dir_all(node.join("manifests")).unwrap();
        std::fs::write(node.join("manifests/m.json"), b"{}").unwrap();
        symlink(&fixture.outside, node.join("data")).unwrap();
        let before = snapshot(&fixture.outside);

        let key = Path::from("c/dc/n/data/sub/nb-1-big-Data.db");
        let error = fixture.store.get(&key).await.unwrap_err();
        assert!(
            matches!(error, object_store::Error::NotFound { .. }),
            "{error}"
        );
        assert!(
            error.to_string().contains("c/dc/n/data is a symbolic link"),
            "{error}"
        );
        let error = fixture.store.head(&key).await.unwrap_err();
        assert!(
            matches!(error, object_store::Error::NotFound { .. }),
            "{error}"
        );
        let error = fixture.store.delete(&key).await.unwrap_err();
        assert!(
            matches!(error, object_store::Error::NotFound { .. }),
            "{error}"
        );
        let deleted: Vec<_> = fixture
            .store
            .delete_stream(futures_util::stream::iter([Ok(key.clone())]).boxed())
            .collect()
            .await;
        assert!(matches!(
            deleted[..],
            [Err(object_store::Error::NotFound { .. })]
        ));
        // Writing through it is refused too.
        let error = fixture
            .store
            .put(&Path::from("c/dc/n/data/new"), "x".into())
            .await
            .unwrap_err();
        assert!(error.to_string().contains("symbolic link"), "{error}");

        let (keys, skipped) = listed(&fixture.store, Some("c/dc/n")).await;
        assert_eq!(keys, ["c/dc/n/manifests/m.json"]);
        assert_eq!(
            skipped,
            [SkippedEntry {
                name: "c/dc/n/data".into(),
                reason: SkipReason::SymbolicLink
            }]
        );
        // Listing the link itself as a prefix gives it, skipped, and nothing behind it.
        let (keys, skipped) = listed(&fixture.store, Some("c/dc/n/data")).await;
        assert!(keys.is_empty(), "{keys:?}");
        assert_eq!(skipped.len(), 1);
        let level = fixture
            .store
            .list_with_delimiter(Some(&Path::from("c/dc/n")))
            .await
            .unwrap();
        assert_eq!(level.common_prefixes, [Path::from("c/dc/n/manifests")]);
        let SkippedEntries(skipped) = level.extensions.get::<SkippedEntries>().unwrap();
        assert_eq!(skipped[0].name, "c/dc/n/data");

        assert_eq!(
            snapshot(&fixture.outside),
            before,
            "the sentinel is unchanged"
        );
    }

    /// An object that is a symbolic link to a secret file outside the bucket (or to another object inside it):
    /// its bytes are never served, it is not listed, and deleting it deletes nothing.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_symlinked_object_is_never_read() {
        let fixture = fixture();
        let table = fixture.bucket.join("c/dc/n/data/ks/t-1/1-abc");
        std::fs::create_dir_all(&table).unwrap();
        std::fs::write(table.join("nb-1-big-Index.db"), b"index").unwrap();
        symlink(
            fixture.outside.join("shadow"),
            table.join("nb-1-big-Data.db"),
        )
        .unwrap();
        symlink("nb-1-big-Index.db", table.join("nb-1-big-Summary.db")).unwrap();
        let before = snapshot(&fixture.outside);

        for name in ["nb-1-big-Data.db", "nb-1-big-Summary.db"] {
            let key = Path::from(format!("c/dc/n/data/ks/t-1/1-abc/{name}"));
            let error = fixture.store.get(&key).await.unwrap_err();
            assert!(
                matches!(error, object_store::Error::NotFound { .. }),
                "{error}"
            );
            assert!(error.to_string().contains("is a symbolic link"), "{error}");
            assert!(fixture.store.head(&key).await.is_err());
            let copy = fixture.store.copy(&key, &Path::from("copied")).await;
            assert!(copy.is_err());
            let error = fixture.store.delete(&key).await.unwrap_err();
            assert!(
                matches!(error, object_store::Error::NotFound { .. }),
                "{error}"
            );
        }
        let (keys, skipped) = listed(&fixture.store, None).await;
        assert_eq!(keys, ["c/dc/n/data/ks/t-1/1-abc/nb-1-big-Index.db"]);
        let names: Vec<(&str, SkipReason)> = skipped
            .iter()
            .map(|entry| (entry.name.as_str(), entry.reason))
            .collect();
        assert_eq!(
            names,
            [
                (
                    "c/dc/n/data/ks/t-1/1-abc/nb-1-big-Data.db",
                    SkipReason::SymbolicLink
                ),
                (
                    "c/dc/n/data/ks/t-1/1-abc/nb-1-big-Summary.db",
                    SkipReason::SymbolicLink
                ),
            ]
        );
        assert!(
            table.join("nb-1-big-Data.db").is_symlink(),
            "the link itself stays"
        );
        assert_eq!(
            snapshot(&fixture.outside),
            before,
            "the sentinel is unchanged"
        );
        assert_eq!(
            std::fs::read(fixture.outside.join("shadow")).unwrap(),
            SECRET
        );
    }

    /// A FIFO in an object's place is not an object: reading it neither blocks nor serves anything.
    #[tokio::test(flavor = "multi_thread")]
    async fn only_regular_files_are_objects() {
        let fixture = fixture();
        std::fs::create_dir_all(fixture.bucket.join("c")).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(fixture.bucket.join("c/pipe"))
            .status()
            .unwrap();
        assert!(made.success());
        let error = fixture.store.get(&Path::from("c/pipe")).await.unwrap_err();
        assert!(
            matches!(error, object_store::Error::NotFound { .. }),
            "{error}"
        );
        let (keys, skipped) = listed(&fixture.store, None).await;
        assert!(keys.is_empty());
        assert_eq!(skipped[0].reason, SkipReason::NotAFile);
    }

    /// File names no key can have (a newline, bytes that are not UTF-8), as a tool other than an object store
    /// may write them: skipped and reported, and the listing goes on.
    #[tokio::test(flavor = "multi_thread")]
    async fn names_that_cannot_be_keys_are_skipped_and_reported() {
        use std::os::unix::ffi::OsStrExt;
        let fixture = fixture();
        let manifests = fixture.bucket.join("c/dc/n/manifests");
        std::fs::create_dir_all(&manifests).unwrap();
        std::fs::write(manifests.join("good-1.json"), b"{}").unwrap();
        std::fs::write(manifests.join("bad\nname.json"), b"{}").unwrap();
        std::fs::write(
            manifests.join(std::ffi::OsStr::from_bytes(b"bad\xff.json")),
            b"{}",
        )
        .unwrap();
        std::fs::create_dir_all(manifests.join("dir\twith tab")).unwrap();
        std::fs::write(manifests.join("dir\twith tab/inside.json"), b"{}").unwrap();
        std::fs::write(manifests.join("good-2.json"), b"{}").unwrap();

        let (keys, skipped) = listed(&fixture.store, Some("c/dc/n/manifests")).await;
        assert_eq!(
            keys,
            [
                "c/dc/n/manifests/good-1.json",
                "c/dc/n/manifests/good-2.json"
            ]
        );
        let names: Vec<&str> = skipped.iter().map(|entry| entry.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "c/dc/n/manifests/bad\\nname.json",
                "c/dc/n/manifests/bad\\xff.json",
                "c/dc/n/manifests/dir\\twith tab",
            ]
        );
        assert!(
            skipped
                .iter()
                .all(|entry| entry.reason == SkipReason::NotAKey)
        );

        let level = fixture
            .store
            .list_with_delimiter(Some(&Path::from("c/dc/n/manifests")))
            .await
            .unwrap();
        assert_eq!(level.objects.len(), 2);
        assert!(level.common_prefixes.is_empty());
        assert_eq!(level.extensions.get::<SkippedEntries>().unwrap().0.len(), 3);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn multipart_uploads_are_atomic_and_leave_nothing_behind() {
        let fixture = fixture();
        let key = Path::from("c/dc/n/data/big");
        let parts: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 3 * 1024 * 1024 + 1]).collect();
        let mut upload = fixture.store.put_multipart(&key).await.unwrap();
        for part in &parts {
            upload.put_part(part.clone().into()).await.unwrap();
        }
        // In progress: nothing to see.
        assert!(fixture.store.head(&key).await.is_err());
        assert_eq!(listed(&fixture.store, None).await, (vec![], vec![]));
        upload.complete().await.unwrap();
        let got = fixture
            .store
            .get(&key)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(got, parts.concat());

        // Aborted, and dropped unfinished: the object is untouched and no temporary file stays.
        let mut aborted = fixture.store.put_multipart(&key).await.unwrap();
        aborted.put_part(vec![9; 10].into()).await.unwrap();
        aborted.abort().await.unwrap();
        let mut dropped = fixture.store.put_multipart(&key).await.unwrap();
        dropped.put_part(vec![9; 10].into()).await.unwrap();
        drop(dropped);
        eventually_only(&fixture.bucket.join("c/dc/n/data"), &["big"]).await;
        let got = fixture
            .store
            .get(&key)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(got.len(), parts.concat().len());
    }

    /// Waits until `dir` holds exactly `names` (a dropped upload removes its file on the blocking pool).
    async fn eventually_only(dir: &std::path::Path, names: &[&str]) {
        for _ in 0..500 {
            let mut found: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            found.sort();
            if found == names {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("{} does not hold just {names:?}", dir.display());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn reads_ranges_in_large_blocks() {
        let fixture = fixture();
        let key = Path::from("c/dc/n/data/object");
        let data: Vec<u8> = (0..(3 * READ_BLOCK + 12_345))
            .map(|i| (i % 251) as u8)
            .collect();
        fixture.store.put(&key, data.clone().into()).await.unwrap();

        let chunks: Vec<Bytes> = fixture
            .store
            .get(&key)
            .await
            .unwrap()
            .into_stream()
            .try_collect()
            .await
            .unwrap();
        let sizes: Vec<usize> = chunks.iter().map(Bytes::len).collect();
        assert_eq!(sizes, [READ_BLOCK, READ_BLOCK, READ_BLOCK, 12_345]);
        assert_eq!(chunks.concat(), data);

        let range = READ_BLOCK as u64 - 10..READ_BLOCK as u64 + 10;
        let got = fixture.store.get_range(&key, range.clone()).await.unwrap();
        assert_eq!(got, data[range.start as usize..range.end as usize]);
        let tail = fixture
            .store
            .get_opts(
                &key,
                GetOptions::new().with_range(Some(object_store::GetRange::Suffix(7))),
            )
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(tail, data[data.len() - 7..]);
        let error = fixture
            .store
            .get_range(&key, data.len() as u64 + 1..data.len() as u64 + 5)
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("outside the object's"),
            "{error}"
        );
        let ranges = fixture
            .store
            .get_ranges(&key, &[0..3, 10..20])
            .await
            .unwrap();
        assert_eq!(ranges, [&data[0..3], &data[10..20]]);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn keys_of_files_being_written_are_refused() {
        let fixture = fixture();
        let error = fixture
            .store
            .put(&Path::parse("c/x#12").unwrap(), "x".into())
            .await
            .unwrap_err();
        assert!(error.to_string().contains("files being written"), "{error}");
        std::fs::create_dir_all(fixture.bucket.join("c")).unwrap();
        std::fs::write(fixture.bucket.join("c/y#3"), b"partial").unwrap();
        assert_eq!(listed(&fixture.store, None).await, (vec![], vec![]));
    }
}
