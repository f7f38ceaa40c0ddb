//! A node's objects in a bucket: keys relative to `<cluster>/<dc>/<node>/`, streamed uploads of files of any size,
//! and errors that name the store and the object.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::skipped::{SkippedEntries, SkippedEntry, SkippedObject};
use super::{StorageLocation, Throttle};
use crate::sync::lock;

/// The smallest part S3 accepts (all but the last).
const MIN_PART: u64 = 5 * 1024 * 1024;
/// S3 allows 10,000 parts; stay below so a file of any size fits.
const MAX_PARTS: u64 = 9_000;
/// Read buffers of all connections of a transfer together, in MiB: what keeps the sidecar's memory flat whatever
/// the SSTable sizes and the number of connections.
pub const MEMORY_BUDGET_MIB: usize = 40;

/// The memory of one transfer: a budget (MiB) for the parts being read and sent, and the part buffers already
/// allocated, reused rather than mapped afresh for every part.
#[derive(Debug)]
pub struct TransferMemory {
    budget: Semaphore,
    spare: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl Default for TransferMemory {
    fn default() -> Self {
        TransferMemory {
            budget: Semaphore::new(MEMORY_BUDGET_MIB),
            spare: std::sync::Mutex::new(Vec::new()),
        }
    }
}

impl TransferMemory {
    /// Waits until a part of `length` bytes fits in the budget; the permit holds its share until dropped. A part
    /// larger than the whole budget (files over ~350 GiB) takes all of it rather than waiting forever.
    pub(crate) async fn reserve(&self, length: u64) -> Option<tokio::sync::SemaphorePermit<'_>> {
        let mib = length
            .div_ceil(1024 * 1024)
            .clamp(1, MEMORY_BUDGET_MIB as u64) as u32;
        self.budget.acquire_many(mib).await.ok()
    }

    /// An empty buffer for `length` bytes: a spare one of the standard part size when there is one.
    fn buffer(&self, length: u64) -> Vec<u8> {
        if length == MIN_PART
            && let Some(buffer) = lock(&self.spare).pop()
        {
            return buffer;
        }
        Vec::with_capacity(length as usize)
    }

    /// Takes a sent part's buffer back for the next part, when nothing else holds it.
    fn recycle(&self, bytes: Bytes) {
        if bytes.len() as u64 != MIN_PART {
            return;
        }
        if let Ok(buffer) = bytes.try_into_mut() {
            let mut buffer = Vec::from(buffer);
            buffer.clear();
            let mut spare = lock(&self.spare);
            if spare.len() < MEMORY_BUDGET_MIB * 1024 * 1024 / MIN_PART as usize {
                spare.push(buffer);
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{store}: {message}")]
    Configuration { store: String, message: String },

    /// The client for a store cannot be set up, or the bucket created: `{store}: [{doing}: ]{source}`.
    #[error("{store}: {}{source}", doing.map(|doing| format!("{doing}: ")).unwrap_or_default())]
    Setup {
        store: String,
        doing: Option<&'static str>,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    #[error(
        "{store}: the bucket does not exist (create it, or set createMissingBucket where the provider allows)"
    )]
    MissingBucket { store: String },

    #[error("{store}: {action} {key} failed: {source}")]
    Object {
        store: String,
        action: &'static str,
        key: String,
        #[source]
        source: Box<object_store::Error>,
    },

    #[error("cancelled")]
    Cancelled,

    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// A downloaded object is not what the manifest says (size or hash): a damaged object, or a backup taken with
    /// another hash algorithm than the restore's.
    #[error("{store}: {key} does not match its manifest entry: expected {expected}, got {actual}")]
    Corrupt {
        store: String,
        key: String,
        expected: String,
        actual: String,
    },

    /// A local file is not what the manifest says (size or hash), found when checking files already on disk.
    #[error("{path} does not match its manifest entry: expected {expected}, found {actual}")]
    Mismatch {
        path: String,
        expected: String,
        actual: String,
    },

    #[error("cannot write {path}: {}", write_problem(path, source))]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Why a local file cannot be written; a full filesystem is named by the directory, which is what an operator frees
/// space on or moves away from.
fn write_problem(path: &str, error: &std::io::Error) -> String {
    if super::is_disk_full(error) {
        let dir = std::path::Path::new(path)
            .parent()
            .map_or_else(|| path.to_string(), |dir| dir.display().to_string());
        return format!(
            "the filesystem holding {dir} is full ({error}): free space there or use a directory on another \
             filesystem"
        );
    }
    error.to_string()
}

/// An object being read: its size as the store announces it, and its bytes as they arrive.
pub struct ObjectStream {
    pub size: u64,
    /// Chunks as the store sends them (their size is the store client's business); errors name store and object.
    pub chunks: futures_util::stream::BoxStream<'static, Result<Bytes, StorageError>>,
}

/// An object of the node, by key relative to the node prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteObject {
    pub key: String,
    pub size: u64,
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

/// A listing of the node's objects, and the entries it passed over (already logged, one warning each).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub objects: Vec<RemoteObject>,
    pub skipped: Vec<SkippedEntry>,
}

impl Listing {
    /// The skipped entries as an operation's response shows them.
    pub fn skipped_objects(&self) -> Vec<SkippedObject> {
        skipped_objects(&self.skipped)
    }
}

/// Skipped entries as an operation's response shows them: `[{"key": ..., "reason": ...}]`.
pub fn skipped_objects(skipped: &[SkippedEntry]) -> Vec<SkippedObject> {
    skipped.iter().map(SkippedObject::from).collect()
}

/// The objects of one node in one bucket.
#[derive(Debug, Clone)]
pub struct RemoteStorage {
    store: Arc<dyn ObjectStore>,
    location: StorageLocation,
    prefix: String,
}

impl RemoteStorage {
    /// `location` must name the node (`protocol://bucket/cluster/dc/node`).
    pub fn new(
        store: Arc<dyn ObjectStore>,
        location: StorageLocation,
    ) -> Result<Self, StorageError> {
        let prefix = location
            .node_prefix()
            .ok_or_else(|| StorageError::Configuration {
                store: location.store_name(),
                message: "the storage location does not name a node (CLUSTER/DC/NODE)".into(),
            })?;
        Ok(RemoteStorage {
            store,
            location,
            prefix,
        })
    }

    pub fn location(&self) -> &StorageLocation {
        &self.location
    }

    /// Another node's objects in the same bucket, over the same connection.
    pub fn at(&self, location: StorageLocation) -> Result<RemoteStorage, StorageError> {
        RemoteStorage::new(Arc::clone(&self.store), location)
    }

    /// The names of the "directories" right under `prefix` in the bucket (`a/b/` for `a/b/c`), one listing level
    /// deep: how node prefixes are found without listing every object.
    pub async fn child_prefixes_in_bucket(
        &self,
        prefix: &str,
    ) -> Result<Vec<String>, StorageError> {
        let path = ObjectPath::from(prefix);
        let listing = self
            .store
            .list_with_delimiter(Some(&path))
            .await
            .map_err(|source| StorageError::Object {
                store: self.location.store_name(),
                action: "listing",
                key: prefix.into(),
                source: Box::new(source),
            })?;
        if let Some(SkippedEntries(skipped)) = listing.extensions.get::<SkippedEntries>() {
            for entry in skipped {
                self.warn_skipped(entry);
            }
        }
        Ok(listing
            .common_prefixes
            .iter()
            .filter_map(|child| child.filename().map(str::to_string))
            .collect())
    }

    /// The one warning for an entry a listing passed over.
    fn warn_skipped(&self, entry: &SkippedEntry) {
        tracing::warn!(
            store = %self.location.store_name(),
            key = %entry.name,
            reason = %entry.reason,
            "skipping an entry of the bucket that cannot be listed as an object"
        );
    }

    /// The object path of a node-relative key.
    fn path(&self, key: &str) -> ObjectPath {
        ObjectPath::from(format!("{}/{key}", self.prefix))
    }

    fn object_error(
        &self,
        action: &'static str,
        key: &str,
        source: object_store::Error,
    ) -> StorageError {
        StorageError::Object {
            store: self.location.store_name(),
            action,
            key: format!("{}/{key}", self.prefix),
            source: Box::new(source),
        }
    }

    /// Fails with [`StorageError::MissingBucket`] when the bucket is not there, or with the store's error when it
    /// cannot be reached.
    pub async fn check_bucket(&self) -> Result<(), StorageError> {
        let prefix = ObjectPath::from(self.prefix.as_str());
        match self.store.list_with_delimiter(Some(&prefix)).await {
            Ok(_) => Ok(()),
            Err(error) if is_missing_bucket(&error) => Err(StorageError::MissingBucket {
                store: self.location.store_name(),
            }),
            Err(error) => Err(self.object_error("listing", "", error)),
        }
    }

    /// The object's size, or `None` when it is not there. Like Esop, a refused check counts as "not there": S3
    /// answers 403 rather than 404 for a missing key to a client without `s3:ListBucket`, and the upload that
    /// follows fails clearly if the credentials are wrong altogether.
    pub async fn size_of(&self, key: &str) -> Result<Option<u64>, StorageError> {
        match self.store.head(&self.path(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(object_store::Error::PermissionDenied { .. }) => {
                tracing::debug!(key, "existence check refused; the object will be uploaded");
                Ok(None)
            }
            Err(error) => Err(self.object_error("checking", key, error)),
        }
    }

    /// The object's size, or `None` only when the store says it is not there: unlike [`RemoteStorage::size_of`],
    /// a refused check is an error, so that a check of a backup never reports as missing what it may not read.
    pub async fn stored_size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        match self.store.head(&self.path(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(self.object_error("checking", key, error)),
        }
    }

    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        self.store
            .put(&self.path(key), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|error| self.object_error("uploading", key, error))
    }

    /// Writes an object at the bucket root (`topology/...`), outside the node prefix.
    pub async fn put_in_bucket(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        self.store
            .put(&ObjectPath::from(key), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|error| StorageError::Object {
                store: self.location.store_name(),
                action: "uploading",
                key: key.into(),
                source: Box::new(error),
            })
    }

    /// Reads an object at the bucket root (`topology/...`), outside the node prefix.
    pub async fn get_in_bucket(&self, key: &str) -> Result<Bytes, StorageError> {
        let error = |source| StorageError::Object {
            store: self.location.store_name(),
            action: "downloading",
            key: key.into(),
            source: Box::new(source),
        };
        let result = self
            .store
            .get(&ObjectPath::from(key))
            .await
            .map_err(error)?;
        result.bytes().await.map_err(error)
    }

    /// The keys at the bucket root under `prefix` (`topology/`), whole.
    pub async fn list_in_bucket(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let path = ObjectPath::from(prefix);
        let mut keys = Vec::new();
        let mut listing = self.store.list(Some(&path));
        while let Some(meta) = listing.next().await {
            let meta = match meta {
                Ok(meta) => meta,
                Err(error) => match SkippedEntry::of(&error) {
                    Some(entry) => {
                        self.warn_skipped(entry);
                        continue;
                    }
                    None => {
                        return Err(StorageError::Object {
                            store: self.location.store_name(),
                            action: "listing",
                            key: prefix.into(),
                            source: Box::new(error),
                        });
                    }
                },
            };
            keys.push(meta.location.to_string());
        }
        Ok(keys)
    }

    pub async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        let result = self
            .store
            .get(&self.path(key))
            .await
            .map_err(|error| self.object_error("downloading", key, error))?;
        result
            .bytes()
            .await
            .map_err(|error| self.object_error("downloading", key, error))
    }

    /// Opens `key` for reading as a stream, so that an object of any size can be written out without holding it.
    pub async fn get_stream(&self, key: &str) -> Result<ObjectStream, StorageError> {
        let result = self
            .store
            .get(&self.path(key))
            .await
            .map_err(|error| self.object_error("downloading", key, error))?;
        let size = result.meta.size;
        let store = self.location.store_name();
        let full_key = format!("{}/{key}", self.prefix);
        let chunks = result
            .into_stream()
            .map(move |chunk| {
                chunk.map_err(|error| StorageError::Object {
                    store: store.clone(),
                    action: "downloading",
                    key: full_key.clone(),
                    source: Box::new(error),
                })
            })
            .boxed();
        Ok(ObjectStream { size, chunks })
    }

    /// The error for an object that is not what its manifest entry says.
    pub fn corrupt(&self, key: &str, expected: String, actual: String) -> StorageError {
        StorageError::Corrupt {
            store: self.location.store_name(),
            key: format!("{}/{key}", self.prefix),
            expected,
            actual,
        }
    }

    /// The error for a stream that ended with another number of bytes than the store announced: a broken
    /// connection the client did not notice, worth another try.
    pub fn wrong_length(&self, key: &str, received: u64, announced: u64) -> StorageError {
        self.object_error(
            "downloading",
            key,
            object_store::Error::Generic {
                store: "download",
                source: format!("the store sent {received} bytes of an object of {announced}")
                    .into(),
            },
        )
    }

    /// The node's objects under `sub_prefix` (e.g. `manifests`), keys relative to the node prefix. Entries that
    /// cannot be objects are left out (see [`RemoteStorage::list_reporting`]).
    pub async fn list(&self, sub_prefix: &str) -> Result<Vec<RemoteObject>, StorageError> {
        Ok(self.list_reporting(sub_prefix).await?.objects)
    }

    /// The node's objects under `sub_prefix`, and the entries the listing passed over: names no object can have
    /// (a newline, ...) and, in a `file://` bucket, symbolic links and other files that are not regular. One such
    /// entry costs a warning, not the listing.
    pub async fn list_reporting(&self, sub_prefix: &str) -> Result<Listing, StorageError> {
        let prefix = self.path(sub_prefix);
        let node_prefix = format!("{}/", self.prefix);
        let mut objects = Vec::new();
        let mut skipped = Vec::new();
        let mut listing = self.store.list(Some(&prefix));
        while let Some(meta) = listing.next().await {
            let meta = match meta {
                Ok(meta) => meta,
                Err(error) => {
                    if let Some(entry) = SkippedEntry::of(&error) {
                        self.warn_skipped(entry);
                        skipped.push(entry.clone());
                        continue;
                    }
                    return Err(if is_missing_bucket(&error) {
                        StorageError::MissingBucket {
                            store: self.location.store_name(),
                        }
                    } else {
                        self.object_error("listing", sub_prefix, error)
                    });
                }
            };
            let full = meta.location.to_string();
            let key = full.strip_prefix(&node_prefix).unwrap_or(&full).to_string();
            objects.push(RemoteObject {
                key,
                size: meta.size,
                last_modified: meta.last_modified,
            });
        }
        Ok(Listing { objects, skipped })
    }

    /// Deletes the node's objects `keys`; one that is already gone is no error.
    pub async fn delete(&self, keys: &[String]) -> Result<(), StorageError> {
        let paths: Vec<object_store::Result<ObjectPath>> =
            keys.iter().map(|key| Ok(self.path(key))).collect();
        let mut results = self
            .store
            .delete_stream(futures_util::stream::iter(paths).boxed());
        while let Some(result) = results.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(self.object_error("deleting", "objects", error)),
            }
        }
        Ok(())
    }

    /// Deletes an object at the bucket root (the topology file of a backup); one that is gone is no error.
    pub async fn delete_in_bucket(&self, key: &str) -> Result<(), StorageError> {
        match self.store.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(StorageError::Object {
                store: self.location.store_name(),
                action: "deleting",
                key: key.into(),
                source: Box::new(error),
            }),
        }
    }

    /// Streams the file at `path` (of `size` bytes) to `key`: one PUT for a small file, else a multipart upload
    /// whose parts are read one at a time. Each part waits for `memory` permits (MiB) and for the `throttle`, and
    /// is shown to `observe` (hashing, progress) once sent, in order. On failure or cancellation the multipart
    /// upload is aborted, so no partial object is left.
    #[allow(clippy::too_many_arguments)]
    pub async fn upload_file(
        &self,
        key: &str,
        path: &Path,
        size: u64,
        throttle: &Throttle,
        memory: &TransferMemory,
        cancel: &CancellationToken,
        mut observe: impl FnMut(&[u8]) + Send,
    ) -> Result<(), StorageError> {
        let read_error = |source| StorageError::Read {
            path: path.display().to_string(),
            source,
        };
        let mut file = Some(crate::node_fs::open_no_follow(path).map_err(read_error)?);
        let part_size = part_size(size);
        if size <= part_size {
            let _reserved = memory.reserve(size).await;
            let bytes = read_part(&mut file, memory.buffer(size), size)
                .await
                .map_err(read_error)?;
            if bytes.len() as u64 != size {
                return Err(read_error(shorter_than_planned()));
            }
            paced(throttle, bytes.len() as u64, cancel).await?;
            self.put(key, bytes.clone()).await?;
            observe(&bytes);
            memory.recycle(bytes);
            return Ok(());
        }
        let object = self.path(key);
        let mut upload = self
            .store
            .put_multipart(&object)
            .await
            .map_err(|error| self.object_error("uploading", key, error))?;
        let mut remaining = size;
        let sent: Result<(), StorageError> = async {
            while remaining > 0 {
                let length = remaining.min(part_size);
                let _reserved = memory.reserve(length).await;
                let bytes = read_part(&mut file, memory.buffer(length), length)
                    .await
                    .map_err(read_error)?;
                if bytes.is_empty() {
                    return Err(read_error(shorter_than_planned()));
                }
                remaining -= bytes.len() as u64;
                paced(throttle, bytes.len() as u64, cancel).await?;
                upload
                    .put_part(PutPayload::from(bytes.clone()))
                    .await
                    .map_err(|error| self.object_error("uploading", key, error))?;
                observe(&bytes);
                memory.recycle(bytes);
            }
            upload
                .complete()
                .await
                .map(|_| ())
                .map_err(|error| self.object_error("uploading", key, error))
        }
        .await;
        if sent.is_err() {
            let _ = upload.abort().await;
        }
        sent
    }
}

fn shorter_than_planned() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the file is shorter than when the backup began",
    )
}

/// Waits for the throttle, or fails at once when the transfer is cancelled meanwhile.
async fn paced(
    throttle: &Throttle,
    bytes: u64,
    cancel: &CancellationToken,
) -> Result<(), StorageError> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(StorageError::Cancelled),
        _ = throttle.acquire(bytes) => Ok(()),
    }
}

/// The part size for a file: S3's minimum, or larger when the file would need more parts than S3 allows.
fn part_size(size: u64) -> u64 {
    MIN_PART.max(size.div_ceil(MAX_PARTS).next_multiple_of(1024 * 1024))
}

/// Reads the next `length` bytes (fewer at the end of the file) straight into `buffer`, on the blocking pool:
/// `tokio::fs` would read through a buffer of its own and copy.
async fn read_part(
    file: &mut Option<std::fs::File>,
    mut buffer: Vec<u8>,
    length: u64,
) -> std::io::Result<Bytes> {
    let mut open = file
        .take()
        .ok_or_else(|| std::io::Error::other("the file was lost by an earlier failed read"))?;
    let (open, read) = tokio::task::spawn_blocking(move || {
        // Read into spare capacity: zero-filling 5 MiB first would cost as much as the read.
        let result =
            std::io::Read::read_to_end(&mut std::io::Read::take(&mut open, length), &mut buffer);
        (open, result.map(|_| Bytes::from(buffer)))
    })
    .await
    .map_err(std::io::Error::other)?;
    *file = Some(open);
    read
}

/// Providers say "no such bucket" in different ways; these are the ones seen from S3, S3-compatible servers, Azure
/// and GCS.
fn is_missing_bucket(error: &object_store::Error) -> bool {
    let text = error.to_string();
    [
        "NoSuchBucket",
        "ContainerNotFound",
        "The specified bucket does not exist",
    ]
    .iter()
    .any(|marker| text.contains(marker))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_fit_any_file_in_s3s_part_limit() {
        assert_eq!(part_size(1), MIN_PART);
        assert_eq!(part_size(40 * 1024 * 1024 * 1024), MIN_PART);
        let huge: u64 = 5 * 1024 * 1024 * 1024 * 1024; // 5 TiB, S3's object limit
        assert!(huge.div_ceil(part_size(huge)) <= 10_000);
    }

    /// A `file://` bucket as `StorageSettings` opens it for an operation, next to a sentinel directory outside it.
    struct FileBucket {
        _dir: tempfile::TempDir,
        node: std::path::PathBuf,
        outside: std::path::PathBuf,
        remote: RemoteStorage,
    }

    fn file_bucket() -> FileBucket {
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("bucket/cluster/dc/node");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(node.join("manifests")).unwrap();
        std::fs::create_dir_all(outside.join("ks/t-1/1-abc")).unwrap();
        std::fs::write(outside.join("secret"), b"the host's secret").unwrap();
        std::fs::write(
            outside.join("ks/t-1/1-abc/nb-1-big-Data.db"),
            b"not in the bucket",
        )
        .unwrap();
        let location = StorageLocation::parse(&format!(
            "file://{}/bucket/cluster/dc/node",
            dir.path().display()
        ))
        .unwrap();
        let store = super::super::StorageSettings::default()
            .open(&location, &Default::default())
            .unwrap();
        FileBucket {
            node,
            outside: outside.clone(),
            remote: RemoteStorage::new(store, location).unwrap(),
            _dir: dir,
        }
    }

    fn contents(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
        let mut found = Vec::new();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    found.push((path.clone(), std::fs::read(&path).unwrap()));
                }
            }
        }
        found.sort();
        found
    }

    /// Issue #23: a node prefix whose `data` is a symbolic link to a directory outside the bucket made
    /// `remove-backup` delete files there, and a restore read them.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_file_bucket_never_follows_a_symlinked_directory() {
        let bucket = file_bucket();
        std::os::unix::fs::symlink(&bucket.outside, bucket.node.join("data")).unwrap();
        let before = contents(&bucket.outside);
        let key = "data/ks/t-1/1-abc/nb-1-big-Data.db";

        assert_eq!(bucket.remote.size_of(key).await.unwrap(), None);
        let error = bucket.remote.get(key).await.unwrap_err();
        assert!(error.to_string().contains("symbolic link"), "{error}");
        assert!(bucket.remote.get_stream(key).await.is_err());
        bucket.remote.delete(&[key.to_string()]).await.unwrap();
        let listed = bucket.remote.list("data").await.unwrap();
        assert!(listed.is_empty(), "{listed:?}");

        assert_eq!(
            contents(&bucket.outside),
            before,
            "nothing outside the bucket changed"
        );
    }

    /// Issue #23: an object that is a symbolic link to a secret file put the secret's bytes into a restore when
    /// the manifest had no hash.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_file_bucket_never_serves_a_symlinked_object() {
        let bucket = file_bucket();
        let table = bucket.node.join("data/ks/t-1/1-abc");
        std::fs::create_dir_all(&table).unwrap();
        std::os::unix::fs::symlink(
            bucket.outside.join("secret"),
            table.join("nb-1-big-Data.db"),
        )
        .unwrap();
        let key = "data/ks/t-1/1-abc/nb-1-big-Data.db";

        let error = bucket.remote.get(key).await.unwrap_err();
        assert!(
            error.to_string().contains(key),
            "the error names the key: {error}"
        );
        assert!(error.to_string().contains("symbolic link"), "{error}");
        assert!(bucket.remote.get_stream(key).await.is_err());
        let listing = bucket.remote.list_reporting("data").await.unwrap();
        assert!(listing.objects.is_empty(), "{listing:?}");
        assert_eq!(listing.skipped.len(), 1);
        assert_eq!(
            listing.skipped[0].name,
            "cluster/dc/node/data/ks/t-1/1-abc/nb-1-big-Data.db"
        );
        bucket.remote.delete(&[key.to_string()]).await.unwrap();
        assert_eq!(
            std::fs::read(bucket.outside.join("secret")).unwrap(),
            b"the host's secret"
        );
    }

    /// Issue #23: one object name with a newline made listing the node's manifests fail, and with it every
    /// `list` and restore of the node.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_file_bucket_lists_past_a_name_with_a_newline() {
        let bucket = file_bucket();
        let manifests = bucket.node.join("manifests");
        std::fs::write(manifests.join("a-1.json"), b"{}").unwrap();
        std::fs::write(manifests.join("evil\nname.json"), b"{}").unwrap();
        std::fs::write(manifests.join("b-2.json"), b"{}").unwrap();

        let mut keys: Vec<String> = bucket
            .remote
            .list("manifests/")
            .await
            .unwrap()
            .into_iter()
            .map(|object| object.key)
            .collect();
        keys.sort();
        assert_eq!(keys, ["manifests/a-1.json", "manifests/b-2.json"]);
        let listing = bucket.remote.list_reporting("manifests/").await.unwrap();
        assert_eq!(listing.objects.len(), 2);
        assert_eq!(
            serde_json::to_value(listing.skipped_objects()).unwrap(),
            serde_json::json!([{
                "key": "cluster/dc/node/manifests/evil\\nname.json",
                "reason": "not a valid object key",
            }])
        );
        bucket.remote.check_bucket().await.unwrap();
    }

    /// Issue #23: a restore from a `file://` bucket read objects 8 KiB per system call.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_file_bucket_streams_objects_in_large_blocks() {
        let bucket = file_bucket();
        let data: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        bucket
            .remote
            .put("data/object", data.clone().into())
            .await
            .unwrap();
        let object = bucket.remote.get_stream("data/object").await.unwrap();
        assert_eq!(object.size, data.len() as u64);
        let chunks: Vec<Bytes> = object.chunks.map(Result::unwrap).collect().await;
        assert!(
            chunks.len() <= 3,
            "{} chunks, the first of {} bytes",
            chunks.len(),
            chunks[0].len()
        );
        assert_eq!(chunks.concat(), data);
    }

    #[tokio::test]
    async fn uploads_large_files_in_parts_to_a_directory_store() {
        let root = std::env::temp_dir().join(format!("daedalus-remote-{}", std::process::id()));
        std::fs::create_dir_all(root.join("bucket")).unwrap();
        let source = root.join("source.bin");
        let data: Vec<u8> = (0..(12 * 1024 * 1024 + 7))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&source, &data).unwrap();
        let location =
            StorageLocation::parse(&format!("file://{}/bucket/cluster/dc/node", root.display()))
                .unwrap();
        let store = super::super::StorageSettings::default()
            .open(&location, &Default::default())
            .unwrap();
        let remote = RemoteStorage::new(store, location).unwrap();
        let mut seen = 0usize;
        let memory = TransferMemory::default();
        remote
            .upload_file(
                "data/ks/t/file",
                &source,
                data.len() as u64,
                &Throttle::unlimited(),
                &memory,
                &CancellationToken::new(),
                |part| seen += part.len(),
            )
            .await
            .unwrap();
        assert_eq!(seen, data.len());
        assert!(
            !lock(&memory.spare).is_empty(),
            "sent parts' buffers are kept for the next parts"
        );
        assert_eq!(
            remote.size_of("data/ks/t/file").await.unwrap(),
            Some(data.len() as u64)
        );
        assert_eq!(remote.get("data/ks/t/file").await.unwrap(), data);
        let listed = remote.list("data").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key, "data/ks/t/file");
        remote
            .delete(&["data/ks/t/file".to_string()])
            .await
            .unwrap();
        assert_eq!(remote.size_of("data/ks/t/file").await.unwrap(), None);
        std::fs::remove_dir_all(root).unwrap();
    }
}
