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
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::node_fs::{EntryKind, FsError, RelPath, Target};
use crate::storage::remote::TransferMemory;
use crate::storage::transfer::hashes::{HashAlgorithm, Hasher};
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

pub type DownloadSettings = crate::storage::transfer::TransferSettings;

/// What a download did, for the restore's `response`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
mod tests;
