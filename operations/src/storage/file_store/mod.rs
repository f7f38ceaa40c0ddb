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

mod multipart;
mod resolve;
#[cfg(test)]
mod tests;
mod walk;

use std::io::{self, Write};
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};
use chrono::{DateTime, Utc};
use futures_util::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    Attributes, CopyMode, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, RenameOptions, RenameTargetMode,
};

use multipart::Upload;
use resolve::{Key, explain, open_dirs, open_object, stat_object};
use walk::{Walk, list_one_level};

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
    #[error("{key}: cannot {action}: {}", io_problem(source))]
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

/// A full filesystem said in words an operator acts on; the store's location, in front of every error, names the
/// bucket directory.
fn io_problem(error: &io::Error) -> String {
    if crate::storage::is_disk_full(error) {
        format!("the bucket's filesystem is full ({error})")
    } else {
        error.to_string()
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
                Ok(Upload::new(dir, &key, temporary, file))
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
