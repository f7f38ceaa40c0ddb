//! Brings a backup's objects down to local files: in parallel under one bandwidth limit and one memory budget,
//! each streamed to a temporary sibling file, its size and hash checked as it arrives, and renamed to its final
//! name only when it matches its manifest entry. Files that an earlier run left complete are kept. Every file is
//! reached through its [`Target`]'s root, so a download can write nowhere else (`crate::node_fs`).
//!
//! What a caller can rely on: after [`download`] returns `Ok`, every planned path holds a file of the planned size
//! (and hash, when there is one); after it returns an error, no planned path holds a file that failed a check, and
//! no temporary file is left. [`verify`] checks files already on disk again (before IMPORT uses them).
//!
//! No `fsync` before the rename: a restore that is interrupted is run again, and both its resume check and
//! [`verify`] read every kept file back against its manifest size and hash, so a file torn by a crash is found and
//! replaced; syncing every file would instead make each connection wait for the disk. (With hash `NONE` only the
//! size is checked, as it is for everything else in such a backup.)

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::backup::hashes::{HashAlgorithm, Hasher};
use crate::node_fs::{EntryKind, FsError, RelPath, Target};
use crate::storage::remote::TransferMemory;
use crate::storage::transfer::{pause, should_retry};
use crate::storage::{RemoteStorage, StorageError};
use crate::sync::lock;

/// Bytes gathered from the network before they are hashed and written in one go: large enough that writes and
/// throttle waits are few, small enough that ten connections stay far below the memory budget.
const BLOCK: usize = 1024 * 1024;

/// What a temporary file is called beside its final name.
const TEMPORARY_SUFFIX: &str = ".daedalus-download";

/// One object to fetch and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedDownload {
    /// Object key relative to the node prefix (a manifest entry's `objectKey`).
    pub key: String,
    /// The final local file; its directory is created when missing. Targets must be distinct within one call.
    pub target: Target,
    /// The manifest's size; an object of another size fails the download.
    pub size: u64,
    /// The manifest's hash (in the settings' algorithm); `None` = checked by size only.
    pub hash: Option<String>,
}

pub type DownloadSettings = crate::backup::upload::TransferSettings;

/// What a download did, for the restore's `response`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DownloadStats {
    /// Files and bytes planned.
    pub files: u64,
    pub bytes: u64,
    pub downloaded_files: u64,
    pub downloaded_bytes: u64,
    /// Already on disk from an earlier run, with the right size and hash, so not downloaded.
    pub kept_files: u64,
}

/// Reports bytes done (downloaded, or found complete on disk) out of all planned bytes.
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Downloads `files`, `settings.concurrency` at a time; files already complete on disk are kept.
///
/// Each object streams to `<path>.daedalus-download` (one left by an earlier run is overwritten), is hashed as it
/// arrives, and is renamed to `path` once its size and hash match. A store error is retried per
/// `settings.retry`; an object that arrives whole but does not match its manifest entry fails at once with
/// [`StorageError::Corrupt`] (fetching it again would give the same bytes). The first failure cancels the files
/// in flight and is returned once they have stopped and removed their temporary files; cancelling `cancel` does
/// the same and returns [`StorageError::Cancelled`].
pub async fn download(
    remote: &RemoteStorage,
    files: Vec<PlannedDownload>,
    settings: &DownloadSettings,
    progress: Progress,
    cancel: &CancellationToken,
) -> Result<DownloadStats, StorageError> {
    let cancel = cancel.child_token();
    let total = crate::esop::manifest::total_size(files.iter().map(|file| file.size));
    let transfer = Transfer {
        remote,
        settings,
        memory: TransferMemory::default(),
        done: AtomicU64::new(0),
        total,
        stats: Mutex::new(DownloadStats {
            files: files.len() as u64,
            bytes: total,
            ..DownloadStats::default()
        }),
        progress,
        cancel: &cancel,
    };
    (transfer.progress)(0, total);
    all_or_first_failure(
        files.len(),
        |index| transfer.fetch(&files[index]),
        settings.concurrency.max(1),
        &cancel,
    )
    .await?;
    Ok(transfer
        .stats
        .into_inner()
        .unwrap_or_else(|e| e.into_inner()))
}

/// Checks that every file is on disk with its planned size and hash, without downloading anything. Fails with
/// [`StorageError::Mismatch`] naming the first file that differs, or [`StorageError::Read`] for one that is missing
/// or cannot be read. Files are read a few at a time (hashing is the cost); cancelling stops within a MiB.
pub async fn verify(
    files: &[PlannedDownload],
    algorithm: HashAlgorithm,
    cancel: &CancellationToken,
) -> Result<(), StorageError> {
    let cancel = cancel.child_token();
    let memory = TransferMemory::default();
    let concurrency = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    all_or_first_failure(
        files.len(),
        |index| {
            let file = &files[index];
            let memory = &memory;
            let cancel = &cancel;
            async move {
                match check_local(file, algorithm, memory, cancel).await? {
                    Local::Matches => Ok(()),
                    Local::Missing => Err(StorageError::Read {
                        path: file.target.display().display().to_string(),
                        source: std::io::ErrorKind::NotFound.into(),
                    }),
                    Local::Differs { expected, actual } => Err(StorageError::Mismatch {
                        path: file.target.display().display().to_string(),
                        expected,
                        actual,
                    }),
                }
            }
        },
        concurrency,
        &cancel,
    )
    .await
}

/// Runs `task(0..count)`, `concurrency` at a time in whatever order they finish (a large file does not hold back
/// the ones after it). The first failure cancels the others, which end as cancelled after cleaning up; it is what
/// is returned, once all have stopped.
async fn all_or_first_failure<Task>(
    count: usize,
    task: impl Fn(usize) -> Task,
    concurrency: usize,
    cancel: &CancellationToken,
) -> Result<(), StorageError>
where
    Task: Future<Output = Result<(), StorageError>>,
{
    let mut results = futures_util::stream::iter(0..count)
        .map(task)
        .buffer_unordered(concurrency);
    let mut failure = None;
    let mut cancelled = false;
    while let Some(result) = results.next().await {
        match result {
            Ok(()) => {}
            Err(StorageError::Cancelled) => cancelled = true,
            Err(error) => {
                cancel.cancel();
                failure.get_or_insert(error);
            }
        }
    }
    match failure {
        Some(error) => Err(error),
        None if cancelled => Err(StorageError::Cancelled),
        None => Ok(()),
    }
}

/// What the files of one download share.
struct Transfer<'a> {
    remote: &'a RemoteStorage,
    settings: &'a DownloadSettings,
    memory: TransferMemory,
    done: AtomicU64,
    total: u64,
    stats: Mutex<DownloadStats>,
    progress: Progress,
    cancel: &'a CancellationToken,
}

impl Transfer<'_> {
    /// Keeps the file when it is complete on disk, else downloads it.
    async fn fetch(&self, file: &PlannedDownload) -> Result<(), StorageError> {
        if self.cancel.is_cancelled() {
            return Err(StorageError::Cancelled);
        }
        match check_local(file, self.settings.algorithm, &self.memory, self.cancel).await? {
            Local::Matches => {
                lock(&self.stats).kept_files += 1;
                self.advance(file.size);
                return Ok(());
            }
            Local::Differs { expected, actual } => tracing::warn!(
                path = %file.target.display().display(),
                %expected,
                %actual,
                "a file from an earlier run differs from its manifest entry; downloading it again"
            ),
            Local::Missing => {}
        }
        if let Some(parent) = file.target.rel.parent() {
            let root = file.target.root.clone();
            blocking(move || root.create_dir_all(&parent)).await?;
        }
        let temporary = Temporary::beside(&file.target)?;
        self.download_with_retries(file, &temporary.target).await?;
        let (from, to) = (temporary.target.clone(), file.target.clone());
        blocking(move || from.root.rename(&from.rel, &to.root, &to.rel)).await?;
        temporary.renamed();
        let mut stats = lock(&self.stats);
        stats.downloaded_files += 1;
        stats.downloaded_bytes += file.size;
        Ok(())
    }

    async fn download_with_retries(
        &self,
        file: &PlannedDownload,
        temporary: &Target,
    ) -> Result<(), StorageError> {
        let policy = self.settings.retry;
        let mut attempt = 0;
        loop {
            let mut written = 0u64;
            match self.download_once(file, temporary, &mut written).await {
                Ok(()) => return Ok(()),
                Err(error) => {
                    // This try's bytes are fetched again, or the file fails: either way they are not done.
                    let done = self.done.fetch_sub(written, Ordering::Relaxed) - written;
                    (self.progress)(done, self.total);
                    if !should_retry(&error, attempt, policy) {
                        return Err(error);
                    }
                    tracing::warn!(key = %file.key, attempt, %error, "download failed; retrying");
                    pause(policy.delay(attempt), self.cancel).await?;
                    attempt += 1;
                }
            }
        }
    }

    /// One try: the whole object into `temporary`, checked against the plan. `written` counts the bytes written
    /// (and reported as progress) so far.
    async fn download_once(
        &self,
        file: &PlannedDownload,
        temporary: &Target,
        written: &mut u64,
    ) -> Result<(), StorageError> {
        let _reserved = self.memory.reserve(BLOCK as u64).await;
        let object = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return Err(StorageError::Cancelled),
            object = self.remote.get_stream(&file.key) => object?,
        };
        if object.size != file.size {
            return Err(self
                .remote
                .corrupt(&file.key, bytes(file.size), bytes(object.size)));
        }
        let created = temporary.clone();
        let handle = blocking(move || created.root.create_file(&created.rel)).await?;
        let mut sink = Sink {
            file: handle,
            hasher: Hasher::new(self.settings.algorithm),
            buffer: Vec::with_capacity(BLOCK),
        };
        let mut chunks = object.chunks;
        let mut received = 0u64;
        loop {
            let next = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Err(StorageError::Cancelled),
                next = chunks.next() => next,
            };
            let Some(chunk) = next else { break };
            let chunk = chunk?;
            received += chunk.len() as u64;
            if received > object.size {
                return Err(self.remote.wrong_length(&file.key, received, object.size));
            }
            sink.buffer.extend_from_slice(&chunk);
            if sink.buffer.len() >= BLOCK {
                sink = self.flush(sink, temporary, written).await?;
            }
        }
        let sink = self.flush(sink, temporary, written).await?;
        if received != object.size {
            return Err(self.remote.wrong_length(&file.key, received, object.size));
        }
        let algorithm = self.settings.algorithm;
        if let (Some(expected), Some(actual)) = (&file.hash, sink.hasher.finish())
            && !same_hash(expected, &actual)
        {
            return Err(self.remote.corrupt(
                &file.key,
                hash(algorithm, expected),
                hash(algorithm, &actual),
            ));
        }
        Ok(())
    }

    /// Hashes and writes the gathered bytes on the blocking pool, once the throttle lets them through.
    async fn flush(
        &self,
        sink: Sink,
        temporary: &Target,
        written: &mut u64,
    ) -> Result<Sink, StorageError> {
        let length = sink.buffer.len() as u64;
        if length == 0 {
            return Ok(sink);
        }
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return Err(StorageError::Cancelled),
            _ = self.settings.throttle.acquire(length) => {}
        }
        let write_error = |source| StorageError::Write {
            path: temporary.display().display().to_string(),
            source,
        };
        let sink = tokio::task::spawn_blocking(move || sink.write())
            .await
            .map_err(|join| write_error(std::io::Error::other(join)))?
            .map_err(write_error)?;
        *written += length;
        self.advance(length);
        Ok(sink)
    }

    fn advance(&self, bytes: u64) {
        let done = self.done.fetch_add(bytes, Ordering::Relaxed) + bytes;
        (self.progress)(done, self.total);
    }
}

/// A temporary file being written, its hash so far, and the bytes waiting to be written.
struct Sink {
    file: std::fs::File,
    hasher: Hasher,
    buffer: Vec<u8>,
}

impl Sink {
    /// Blocking: hashes and writes the buffer, and empties it for the next bytes.
    fn write(mut self) -> std::io::Result<Sink> {
        self.hasher.update(&self.buffer);
        self.file.write_all(&self.buffer)?;
        self.buffer.clear();
        Ok(self)
    }
}

/// A temporary file that is removed when dropped (failure, cancellation, or the whole download dropped), unless it
/// was renamed to its final name.
struct Temporary {
    target: Target,
    renamed: bool,
}

impl Temporary {
    /// `<name>.daedalus-download` beside `target`, so that the rename stays within one directory.
    fn beside(target: &Target) -> Result<Temporary, StorageError> {
        let rel = temporary_path(&target.rel).map_err(|error| StorageError::Write {
            path: target.display().display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, error),
        })?;
        Ok(Temporary {
            target: Target::new(&target.root, rel),
            renamed: false,
        })
    }

    fn renamed(mut self) {
        self.renamed = true;
    }
}

impl Drop for Temporary {
    fn drop(&mut self) {
        if self.renamed {
            return;
        }
        if let Err(error) = self.target.root.remove_file(&self.target.rel) {
            tracing::warn!(%error, "cannot remove a temporary download file");
        }
    }
}

/// `<name>.daedalus-download`: beside the final file, so that the rename stays within one filesystem.
pub fn temporary_path(rel: &RelPath) -> Result<RelPath, crate::node_fs::NotAPlainName> {
    rel.with_suffix(TEMPORARY_SUFFIX)
}

/// Runs a blocking file operation off the async workers; its error names the file.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, FsError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| StorageError::Write {
            path: "(a blocking file operation)".into(),
            source: std::io::Error::other(join),
        })?
        .map_err(|error| StorageError::Write {
            path: error.path.display().to_string(),
            source: error.source,
        })
}

/// A planned file as found on disk.
enum Local {
    Missing,
    Matches,
    /// What the plan says and what is there, for messages.
    Differs {
        expected: String,
        actual: String,
    },
}

/// Compares the file at the planned path with the plan: size first, then the hash when there is one to compare.
async fn check_local(
    file: &PlannedDownload,
    algorithm: HashAlgorithm,
    memory: &TransferMemory,
    cancel: &CancellationToken,
) -> Result<Local, StorageError> {
    let read_error = |source| StorageError::Read {
        path: file.target.display().display().to_string(),
        source,
    };
    let probed = file.target.clone();
    let found = tokio::task::spawn_blocking(move || probed.root.kind(&probed.rel))
        .await
        .map_err(|join| read_error(std::io::Error::other(join)))?
        .map_err(|error| read_error(error.source))?;
    let length = match found {
        None => return Ok(Local::Missing),
        Some((EntryKind::File, length)) => length,
        // A symbolic link (never followed) or a directory: replaced by the download's rename.
        Some(_) => {
            return Ok(Local::Differs {
                expected: "a file".into(),
                actual: "something else".into(),
            });
        }
    };
    if length != file.size {
        return Ok(Local::Differs {
            expected: bytes(file.size),
            actual: bytes(length),
        });
    }
    let Some(expected) = file.hash.as_deref() else {
        return Ok(Local::Matches);
    };
    if algorithm == HashAlgorithm::None {
        return Ok(Local::Matches);
    }
    let _reserved = memory.reserve(BLOCK as u64).await;
    let target = file.target.clone();
    let stop = cancel.clone();
    let actual = tokio::task::spawn_blocking(move || hash_local(&target, algorithm, &stop))
        .await
        .map_err(|join| read_error(std::io::Error::other(join)))?
        .map_err(read_error)?;
    match actual {
        Hashed::Cancelled => Err(StorageError::Cancelled),
        Hashed::Hash(Some(actual)) if !same_hash(expected, &actual) => Ok(Local::Differs {
            expected: hash(algorithm, expected),
            actual: hash(algorithm, &actual),
        }),
        Hashed::Hash(_) => Ok(Local::Matches),
    }
}

enum Hashed {
    Hash(Option<String>),
    Cancelled,
}

/// Blocking: hashes the file, looking at `cancel` between blocks so that a cancelled check stops soon.
fn hash_local(
    target: &Target,
    algorithm: HashAlgorithm,
    cancel: &CancellationToken,
) -> std::io::Result<Hashed> {
    let mut file = target
        .root
        .open_file(&target.rel)
        .map_err(|error| error.source)?;
    let mut hasher = Hasher::new(algorithm);
    let mut buffer = vec![0u8; BLOCK];
    loop {
        if cancel.is_cancelled() {
            return Ok(Hashed::Cancelled);
        }
        let read = std::io::Read::read(&mut file, &mut buffer)?;
        if read == 0 {
            return Ok(Hashed::Hash(hasher.finish()));
        }
        hasher.update(&buffer[..read]);
    }
}

/// Hex digests compare without regard to case (Esop writes lower case; a hand-made manifest may not).
fn same_hash(expected: &str, actual: &str) -> bool {
    expected.trim().eq_ignore_ascii_case(actual)
}

fn bytes(size: u64) -> String {
    format!("{size} bytes")
}

fn hash(algorithm: HashAlgorithm, value: &str) -> String {
    let name = match algorithm {
        HashAlgorithm::Sha256 => "SHA-256",
        HashAlgorithm::Crc => "CRC32",
        HashAlgorithm::None => "hash",
    };
    format!("{name} {value}")
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;
    use std::time::Duration;

    use crate::storage::Throttle;
    use crate::storage::transfer::RetryPolicy;
    use bytes::Bytes;
    use futures_util::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::path::Path as ObjectPath;
    use object_store::{
        CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
        ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    };

    use super::*;
    use crate::node_fs::Root;
    use crate::storage::StorageLocation;
    use std::path::{Path, PathBuf};

    /// A scratch directory of its own per test, removed at the end, and the root restored files go into.
    struct Scratch(PathBuf, Arc<Root>);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir()
                .join(format!("daedalus-download-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("bucket")).unwrap();
            let root = Arc::new(Root::open_creating(&dir.join("restore")).unwrap());
            Scratch(dir, root)
        }

        /// The node's objects in a directory store (which streams files in 8 KiB chunks).
        fn store(&self) -> RemoteStorage {
            let location = StorageLocation::parse(&format!(
                "file://{}/bucket/cluster/dc/node",
                self.0.display()
            ))
            .unwrap();
            let store = crate::storage::StorageSettings::default()
                .open(&location, &Default::default())
                .unwrap();
            RemoteStorage::new(store, location).unwrap()
        }

        /// Where restored files go; the directory is created by the download itself.
        fn target(&self, name: &str) -> Target {
            Target::new(&self.1, RelPath::of(["ks", "t-1234", name]).unwrap())
        }

        /// Every temporary file left anywhere under the scratch directory.
        fn temporaries(&self) -> Vec<PathBuf> {
            fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
                for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                    let path = entry.path();
                    if path.is_dir() {
                        walk(&path, found);
                    } else if path.to_string_lossy().ends_with(TEMPORARY_SUFFIX) {
                        found.push(path);
                    }
                }
            }
            let mut found = Vec::new();
            walk(&self.0, &mut found);
            found
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn hash_of(algorithm: HashAlgorithm, content: &[u8]) -> Option<String> {
        let mut hasher = Hasher::new(algorithm);
        hasher.update(content);
        hasher.finish()
    }

    /// Content that differs at every offset, so a misplaced block is noticed.
    fn content(length: usize, seed: u8) -> Vec<u8> {
        (0..length)
            .map(|i| (i % 251) as u8 ^ seed.wrapping_mul(31))
            .collect()
    }

    /// Puts `content` under `data/ks/t-1234/<name>` and plans it to `scratch.target(name)`.
    async fn object(
        remote: &RemoteStorage,
        scratch: &Scratch,
        name: &str,
        content: &[u8],
        algorithm: HashAlgorithm,
    ) -> PlannedDownload {
        let key = format!("data/ks/t-1234/1-abc/{name}");
        remote
            .put(&key, Bytes::copy_from_slice(content))
            .await
            .unwrap();
        PlannedDownload {
            key,
            target: scratch.target(name),
            size: content.len() as u64,
            hash: hash_of(algorithm, content),
        }
    }

    fn settings(algorithm: HashAlgorithm, max_attempts: u32) -> DownloadSettings {
        DownloadSettings {
            concurrency: 3,
            retry: RetryPolicy {
                interval: Duration::ZERO,
                exponential: false,
                max_attempts,
            },
            throttle: Throttle::unlimited(),
            algorithm,
        }
    }

    /// Every `(done, total)` reported, in order.
    type Reports = Arc<Mutex<Vec<(u64, u64)>>>;

    /// A progress callback that records every report.
    fn recorder() -> (Progress, Reports) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let progress: Progress = Arc::new(move |done, total| lock(&sink).push((done, total)));
        (progress, seen)
    }

    async fn run(
        remote: &RemoteStorage,
        files: &[PlannedDownload],
        settings: &DownloadSettings,
    ) -> Result<DownloadStats, StorageError> {
        let (progress, _) = recorder();
        download(
            remote,
            files.to_vec(),
            settings,
            progress,
            &CancellationToken::new(),
        )
        .await
    }

    /// Three files: empty, small, and larger than a write block (and than the store's chunks).
    async fn three_files(
        remote: &RemoteStorage,
        scratch: &Scratch,
        algorithm: HashAlgorithm,
    ) -> (Vec<PlannedDownload>, Vec<Vec<u8>>) {
        let contents = vec![
            Vec::new(),
            b"a small file".to_vec(),
            content(2 * BLOCK + 12_345, 1),
        ];
        let mut files = Vec::new();
        for (name, bytes) in [
            "nb-1-big-TOC.txt",
            "nb-1-big-Digest.crc32",
            "nb-1-big-Data.db",
        ]
        .iter()
        .zip(&contents)
        {
            files.push(object(remote, scratch, name, bytes, algorithm).await);
        }
        (files, contents)
    }

    #[tokio::test]
    async fn downloads_every_file_whole_reporting_progress_as_bytes_arrive() {
        let scratch = Scratch::new("round-trip");
        let remote = scratch.store();
        let (files, contents) = three_files(&remote, &scratch, HashAlgorithm::Sha256).await;
        let total: u64 = contents.iter().map(|c| c.len() as u64).sum();
        let (progress, seen) = recorder();
        let stats = download(
            &remote,
            files.clone(),
            &settings(HashAlgorithm::Sha256, 0),
            progress,
            &CancellationToken::new(),
        )
        .await
        .unwrap();

        for (file, content) in files.iter().zip(&contents) {
            assert_eq!(
                &std::fs::read(file.target.display()).unwrap(),
                content,
                "{file:?}"
            );
        }
        assert_eq!(
            stats,
            DownloadStats {
                files: 3,
                bytes: total,
                downloaded_files: 3,
                downloaded_bytes: total,
                kept_files: 0,
            }
        );
        assert!(scratch.temporaries().is_empty());
        let seen = lock(&seen).clone();
        assert_eq!(seen.first(), Some(&(0, total)));
        assert_eq!(seen.last(), Some(&(total, total)));
        assert!(
            seen.windows(2).all(|pair| pair[0].0 <= pair[1].0),
            "{seen:?}"
        );
        let within_the_large_file = seen
            .iter()
            .filter(|(done, _)| *done > 0 && *done < total)
            .count();
        assert!(
            within_the_large_file >= 2,
            "progress is reported while a file streams, not only once it is done: {seen:?}"
        );
    }

    #[tokio::test]
    async fn a_corrupt_object_fails_naming_it_and_leaves_no_file() {
        let scratch = Scratch::new("corrupt");
        let remote = scratch.store();
        let mut damaged = object(
            &remote,
            &scratch,
            "nb-2-big-Data.db",
            &content(BLOCK + 7, 2),
            HashAlgorithm::Sha256,
        )
        .await;
        damaged.hash = hash_of(HashAlgorithm::Sha256, &content(BLOCK + 7, 3));
        // Beside it, files in flight that the failure cancels.
        let mut files = vec![damaged.clone()];
        for i in 10..14u8 {
            let name = format!("nb-{i}-big-Data.db");
            let bytes = content(3 * BLOCK, i);
            files.push(object(&remote, &scratch, &name, &bytes, HashAlgorithm::Sha256).await);
        }
        let error = run(&remote, &files, &settings(HashAlgorithm::Sha256, 3))
            .await
            .unwrap_err();
        assert!(matches!(error, StorageError::Corrupt { .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            message.contains("cluster/dc/node/data/ks/t-1234/1-abc/nb-2-big-Data.db"),
            "{message}"
        );
        assert!(
            message.contains(&remote.location().store_name()),
            "{message}"
        );
        assert!(message.contains("SHA-256"), "{message}");
        assert!(!damaged.target.display().exists());
        assert!(scratch.temporaries().is_empty());

        // An object of another size than the manifest's fails before a byte is written.
        let mut short = object(
            &remote,
            &scratch,
            "nb-3-big-Data.db",
            b"0123456789",
            HashAlgorithm::Sha256,
        )
        .await;
        short.size = 11;
        let error = run(
            &remote,
            std::slice::from_ref(&short),
            &settings(HashAlgorithm::Sha256, 3),
        )
        .await
        .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("nb-3-big-Data.db does not match its manifest entry: expected 11 bytes, got 10 bytes"),
            "{error}"
        );
        assert!(!short.target.display().exists());
        assert!(scratch.temporaries().is_empty());
    }

    #[tokio::test]
    async fn a_second_run_keeps_complete_files_and_replaces_damaged_ones() {
        let scratch = Scratch::new("resume");
        let remote = scratch.store();
        let (mut files, contents) = three_files(&remote, &scratch, HashAlgorithm::Sha256).await;
        let extra = content(BLOCK / 2, 4);
        files.push(
            object(
                &remote,
                &scratch,
                "nb-1-big-Index.db",
                &extra,
                HashAlgorithm::Sha256,
            )
            .await,
        );
        let algorithm = settings(HashAlgorithm::Sha256, 0);
        run(&remote, &files, &algorithm).await.unwrap();

        let (progress, seen) = recorder();
        let again = download(
            &remote,
            files.clone(),
            &algorithm,
            progress,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(
            (
                again.downloaded_files,
                again.downloaded_bytes,
                again.kept_files
            ),
            (0, 0, 4)
        );
        let total = again.bytes;
        assert_eq!(lock(&seen).last(), Some(&(total, total)));

        // Cut short; same size but other bytes; gone with a stale temporary file beside it.
        let large = &files[2];
        std::fs::write(large.target.display(), &contents[2][..1000]).unwrap();
        std::fs::write(files[1].target.display(), b"A SMALL FILE").unwrap();
        std::fs::remove_file(files[3].target.display()).unwrap();
        std::fs::write(
            files[3]
                .target
                .root
                .display(&temporary_path(&files[3].target.rel).unwrap()),
            b"left by a run that was killed",
        )
        .unwrap();
        let third = run(&remote, &files, &algorithm).await.unwrap();
        assert_eq!((third.downloaded_files, third.kept_files), (3, 1));
        assert_eq!(
            third.downloaded_bytes,
            (contents[1].len() + contents[2].len() + extra.len()) as u64
        );
        assert_eq!(
            std::fs::read(files[1].target.display()).unwrap(),
            contents[1]
        );
        assert_eq!(std::fs::read(large.target.display()).unwrap(), contents[2]);
        assert_eq!(std::fs::read(files[3].target.display()).unwrap(), extra);
        assert!(scratch.temporaries().is_empty());
    }

    #[tokio::test]
    async fn cancelling_mid_way_stops_and_leaves_no_temporary_file() {
        let scratch = Scratch::new("cancel");
        let remote = scratch.store();
        let mut files = Vec::new();
        for i in 0..6u8 {
            let name = format!("nb-{i}-big-Data.db");
            let bytes = content(3 * BLOCK, i);
            files.push(object(&remote, &scratch, &name, &bytes, HashAlgorithm::Sha256).await);
        }
        let cancel = CancellationToken::new();
        let on_first_bytes = cancel.clone();
        let progress: Progress = Arc::new(move |done, _| {
            if done > 0 {
                on_first_bytes.cancel();
            }
        });
        let error = download(
            &remote,
            files.clone(),
            &settings(HashAlgorithm::Sha256, 3),
            progress,
            &cancel,
        )
        .await
        .unwrap_err();
        assert!(matches!(error, StorageError::Cancelled), "{error:?}");
        assert!(scratch.temporaries().is_empty());
        assert!(
            files.iter().all(|file| !file.target.display().exists()),
            "no file was complete when the first MiB arrived"
        );
    }

    #[tokio::test]
    async fn hash_none_checks_sizes_only() {
        let scratch = Scratch::new("none");
        let remote = scratch.store();
        let (files, contents) = three_files(&remote, &scratch, HashAlgorithm::None).await;
        assert!(files.iter().all(|file| file.hash.is_none()));
        let none = settings(HashAlgorithm::None, 0);
        let stats = run(&remote, &files, &none).await.unwrap();
        assert_eq!(stats.downloaded_files, 3);
        assert_eq!(
            std::fs::read(files[2].target.display()).unwrap(),
            contents[2]
        );
        assert_eq!(run(&remote, &files, &none).await.unwrap().kept_files, 3);
        verify(&files, HashAlgorithm::None, &CancellationToken::new())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn crc_hashes_are_checked() {
        let scratch = Scratch::new("crc");
        let remote = scratch.store();
        let (mut files, _) = three_files(&remote, &scratch, HashAlgorithm::Crc).await;
        let crc = settings(HashAlgorithm::Crc, 0);
        assert_eq!(
            run(&remote, &files, &crc).await.unwrap().downloaded_files,
            3
        );
        verify(&files, HashAlgorithm::Crc, &CancellationToken::new())
            .await
            .unwrap();

        std::fs::remove_file(files[2].target.display()).unwrap();
        files[2].hash = Some("12345".into());
        let error = run(&remote, &files, &crc).await.unwrap_err();
        assert!(
            error
                .to_string()
                .contains("expected CRC32 12345, got CRC32 "),
            "{error}"
        );
        assert!(!files[2].target.display().exists());
    }

    #[tokio::test]
    async fn verify_names_a_missing_or_changed_file() {
        let scratch = Scratch::new("verify");
        let remote = scratch.store();
        let (files, _) = three_files(&remote, &scratch, HashAlgorithm::Sha256).await;
        run(&remote, &files, &settings(HashAlgorithm::Sha256, 0))
            .await
            .unwrap();
        let cancel = CancellationToken::new();
        verify(&files, HashAlgorithm::Sha256, &cancel)
            .await
            .unwrap();

        let mut changed = std::fs::read(files[2].target.display()).unwrap();
        changed[BLOCK + 1] ^= 0xff;
        std::fs::write(files[2].target.display(), &changed).unwrap();
        let error = verify(&files, HashAlgorithm::Sha256, &cancel)
            .await
            .unwrap_err();
        assert!(matches!(error, StorageError::Mismatch { .. }), "{error:?}");
        assert!(
            error.to_string().starts_with(&format!(
                "{} does not match its manifest entry: expected SHA-256 ",
                files[2].target.display().display()
            )),
            "{error}"
        );

        std::fs::remove_file(files[1].target.display()).unwrap();
        let error = verify(&files[..2], HashAlgorithm::Sha256, &cancel)
            .await
            .unwrap_err();
        assert!(
            error.to_string().starts_with(&format!(
                "cannot read {}",
                files[1].target.display().display()
            )),
            "{error}"
        );
    }

    /// An in-memory store whose next `failures` downloads break off after `after` bytes, as a store that goes
    /// down mid-object does.
    #[derive(Debug)]
    struct Flaky {
        inner: InMemory,
        failures: AtomicU32,
        after: usize,
    }

    impl std::fmt::Display for Flaky {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Flaky")
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for Flaky {
        async fn put_opts(
            &self,
            location: &ObjectPath,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.inner.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &ObjectPath,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }

        async fn get_opts(
            &self,
            location: &ObjectPath,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            let mut result = self.inner.get_opts(location, options).await?;
            let fail = self
                .failures
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok();
            let GetResultPayload::Stream(stream) = result.payload else {
                unreachable!("InMemory streams")
            };
            let after = self.after;
            let chunks = stream
                .flat_map(move |whole| {
                    let whole = whole.unwrap();
                    let mut pieces: Vec<object_store::Result<Bytes>> = (0..whole.len())
                        .step_by(64 * 1024)
                        .map(|at| Ok(whole.slice(at..whole.len().min(at + 64 * 1024))))
                        .collect();
                    if fail {
                        pieces.truncate(after.div_ceil(64 * 1024));
                        pieces.push(Err(object_store::Error::Generic {
                            store: "Flaky",
                            source: "connection reset".into(),
                        }));
                    }
                    futures_util::stream::iter(pieces)
                })
                .boxed();
            result.payload = GetResultPayload::Stream(chunks);
            Ok(result)
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<ObjectPath>>,
        ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
            self.inner.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&ObjectPath>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&ObjectPath>,
        ) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &ObjectPath,
            to: &ObjectPath,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    fn flaky(failures: u32) -> RemoteStorage {
        let store = Flaky {
            inner: InMemory::new(),
            failures: AtomicU32::new(failures),
            after: BLOCK + BLOCK / 2,
        };
        let location = StorageLocation::parse("s3://bucket/cluster/dc/node").unwrap();
        RemoteStorage::new(Arc::new(store), location).unwrap()
    }

    #[tokio::test]
    async fn a_store_that_breaks_off_mid_object_is_tried_again_from_the_start() {
        let scratch = Scratch::new("retry");
        let remote = flaky(1);
        let bytes = content(3 * BLOCK, 5);
        let file = object(
            &remote,
            &scratch,
            "nb-5-big-Data.db",
            &bytes,
            HashAlgorithm::Sha256,
        )
        .await;
        let (progress, seen) = recorder();
        let stats = download(
            &remote,
            vec![file.clone()],
            &settings(HashAlgorithm::Sha256, 1),
            progress,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(stats.downloaded_files, 1);
        assert_eq!(std::fs::read(file.target.display()).unwrap(), bytes);
        let seen = lock(&seen).clone();
        let total = bytes.len() as u64;
        assert_eq!(seen.last(), Some(&(total, total)));
        assert!(seen.iter().all(|(done, _)| *done <= total), "{seen:?}");
        assert!(scratch.temporaries().is_empty());
    }

    #[tokio::test]
    async fn a_store_that_stays_down_fails_naming_store_and_object() {
        let scratch = Scratch::new("down");
        let remote = flaky(2);
        let bytes = content(3 * BLOCK, 6);
        let file = object(
            &remote,
            &scratch,
            "nb-6-big-Data.db",
            &bytes,
            HashAlgorithm::Sha256,
        )
        .await;
        let error = run(
            &remote,
            std::slice::from_ref(&file),
            &settings(HashAlgorithm::Sha256, 1),
        )
        .await
        .unwrap_err();
        assert!(matches!(error, StorageError::Object { .. }), "{error:?}");
        assert!(
            error.to_string().starts_with(
                "s3://bucket: downloading cluster/dc/node/data/ks/t-1234/1-abc/nb-6-big-Data.db failed"
            ),
            "{error}"
        );
        assert!(!file.target.display().exists());
        assert!(scratch.temporaries().is_empty());
    }
}
