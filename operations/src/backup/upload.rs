//! Puts a snapshot's files in the bucket: objects already there are skipped (their keys are unique per SSTable,
//! so an existing key is the same file), the rest stream up in parallel under one bandwidth limit and one memory
//! budget, each hashed as it is read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::storage::remote::TransferMemory;
use crate::storage::transfer::hashes::{HashAlgorithm, HashCache, Hasher, hash_file};
use crate::storage::transfer::{LocalFile, RetryPolicy, TransferSettings, pause, should_retry};
use crate::storage::{RemoteStorage, StorageError};
use crate::sync::lock;

/// A local file and the object key it goes to (relative to the node prefix).
#[derive(Debug, Clone)]
pub struct PlannedFile {
    pub file: LocalFile,
    pub key: String,
}

/// A file that is in the bucket now, with what its manifest entry says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    pub key: String,
    pub size: u64,
    pub hash: Option<String>,
}

pub type UploadSettings = TransferSettings;

/// What a backup did, for its `response` and for operators who wonder where the time went.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadStats {
    pub files: u64,
    pub bytes: u64,
    pub uploaded_files: u64,
    pub uploaded_bytes: u64,
    /// Already in the bucket (from an earlier backup of the node).
    pub skipped_files: u64,
    /// Files read only to hash them (in the bucket already, hash not cached).
    pub hashed_files: u64,
    pub hashed_bytes: u64,
    /// Files whose hash came from the cache, without reading them.
    pub cached_hashes: u64,
}

impl UploadStats {
    /// Adds what was moved to the operation's metrics.
    pub fn record(&self, context: &crate::operation::OperationContext) {
        context.metrics().transferred(
            context.type_id(),
            "upload",
            self.uploaded_files,
            self.uploaded_bytes,
            self.skipped_files,
        );
    }
}

/// Esop's rule: `bandwidth` caps the rate unless `duration` needs more to finish in time.
pub fn rate(
    bandwidth: Option<crate::decode::DataRate>,
    duration: Option<crate::decode::HumanDuration>,
    total_bytes: u64,
) -> Option<u64> {
    let bandwidth = bandwidth.map(|rate| rate.bytes_per_second())?;
    let minimum = duration.map(|d| total_bytes.div_ceil(d.0.as_secs().max(1)));
    Some(minimum.map_or(bandwidth, |minimum| bandwidth.max(minimum)))
}

/// Reports bytes sent so far out of the bytes to send.
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Uploads `files` that are not in the bucket yet; returns every file with its hash, in the order given.
///
/// A failure cancels the files still in flight (each aborts its multipart upload) and is returned once they have
/// stopped. Before returning, the objects that were skipped are checked again and any that vanished meanwhile
/// (a `remove-backup` running beside this backup) are uploaded again, so the manifest written next refers only to
/// objects that are there.
pub async fn upload(
    remote: &RemoteStorage,
    files: Vec<PlannedFile>,
    settings: &UploadSettings,
    cache: &Mutex<HashCache>,
    progress: Progress,
    cancel: &CancellationToken,
) -> Result<(Vec<StoredFile>, UploadStats), StorageError> {
    let concurrency = settings.concurrency.max(1);
    let cancel = cancel.child_token();
    // HEAD requests first (cheap), so progress knows how many bytes there are to send.
    let all: Vec<&PlannedFile> = files.iter().collect();
    let present = in_bucket(remote, &all, settings, &cancel).await?;
    let total: u64 = files
        .iter()
        .zip(&present)
        .filter(|(_, present)| !**present)
        .map(|(planned, _)| planned.file.size)
        .sum();
    let transfer = Transfer {
        remote,
        settings,
        cache,
        memory: TransferMemory::default(),
        sent: AtomicU64::new(0),
        total: AtomicU64::new(total),
        stats: Mutex::new(UploadStats::default()),
        progress,
        cancel: &cancel,
    };
    (transfer.progress)(0, total);
    let stored = all_or_first_failure(
        files.len(),
        |index| transfer.store(&files[index], present[index]),
        concurrency,
        &cancel,
    )
    .await?;

    let skipped: Vec<&PlannedFile> = files
        .iter()
        .zip(&present)
        .filter_map(|(planned, present)| present.then_some(planned))
        .collect();
    let still_there = in_bucket(remote, &skipped, settings, &cancel).await?;
    let vanished: Vec<&PlannedFile> = skipped
        .into_iter()
        .zip(still_there)
        .filter_map(|(planned, there)| (!there).then_some(planned))
        .collect();
    if !vanished.is_empty() {
        tracing::warn!(
            files = vanished.len(),
            "objects this backup found in the bucket are gone (removed meanwhile?); uploading them again"
        );
        let extra: u64 = vanished.iter().map(|planned| planned.file.size).sum();
        transfer.total.fetch_add(extra, Ordering::Relaxed);
        all_or_first_failure(
            vanished.len(),
            |index| transfer.upload_again(vanished[index]),
            concurrency,
            &cancel,
        )
        .await?;
    }
    let stats = transfer
        .stats
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    Ok((stored, stats))
}

/// Which of `files` the bucket holds already, as objects of the file's size. An object of another size (cut
/// short, or written by something else) is uploaded again rather than trusted.
async fn in_bucket(
    remote: &RemoteStorage,
    files: &[&PlannedFile],
    settings: &UploadSettings,
    cancel: &CancellationToken,
) -> Result<Vec<bool>, StorageError> {
    // By index: closures over references to the items trip the compiler's check that the future is Send.
    futures_util::stream::iter(0..files.len())
        .map(|index| {
            let planned = files[index];
            async move {
                let size =
                    retrying(settings.retry, cancel, || remote.size_of(&planned.key)).await?;
                Ok(size.is_some_and(|size| holds(planned, size)))
            }
        })
        .buffered(settings.concurrency.max(1) * 2)
        .try_collect()
        .await
}

/// Whether an object of `size` bytes is the planned file (an object of another size is not trusted).
fn holds(planned: &PlannedFile, size: u64) -> bool {
    if size != planned.file.size {
        tracing::warn!(
            key = %planned.key,
            remote_size = size,
            local_size = planned.file.size,
            "the object in the bucket has another size than the file; uploading it again"
        );
    }
    size == planned.file.size
}

/// Runs `task(0..count)`, `concurrency` at a time, to the end. The first failure cancels the others (which then end
/// as cancelled, cleaning up after themselves) and is what is returned.
async fn all_or_first_failure<T, Task>(
    count: usize,
    task: impl Fn(usize) -> Task,
    concurrency: usize,
    cancel: &CancellationToken,
) -> Result<Vec<T>, StorageError>
where
    Task: Future<Output = Result<T, StorageError>>,
{
    let results: Vec<Result<T, StorageError>> = futures_util::stream::iter(0..count)
        .map(|index| {
            let task = task(index);
            async move {
                let result = task.await;
                if result.is_err() {
                    cancel.cancel();
                }
                result
            }
        })
        .buffered(concurrency)
        .collect()
        .await;
    let mut values = Vec::with_capacity(results.len());
    let mut cancelled = false;
    for result in results {
        match result {
            Ok(value) => values.push(value),
            Err(StorageError::Cancelled) => cancelled = true,
            Err(failure) => return Err(failure),
        }
    }
    if cancelled {
        return Err(StorageError::Cancelled);
    }
    Ok(values)
}

/// What the files of one upload share.
struct Transfer<'a> {
    remote: &'a RemoteStorage,
    settings: &'a UploadSettings,
    cache: &'a Mutex<HashCache>,
    memory: TransferMemory,
    sent: AtomicU64,
    total: AtomicU64,
    stats: Mutex<UploadStats>,
    progress: Progress,
    cancel: &'a CancellationToken,
}

impl Transfer<'_> {
    /// Uploads the file unless `present`, or else finds its hash (cache first); either way counts it.
    async fn store(
        &self,
        planned: &PlannedFile,
        present: bool,
    ) -> Result<StoredFile, StorageError> {
        if self.cancel.is_cancelled() {
            return Err(StorageError::Cancelled);
        }
        let hash = if present {
            let hash = self.known_hash(&planned.file).await?;
            lock(&self.stats).skipped_files += 1;
            hash
        } else {
            let hash = self.send(planned).await?;
            let mut stats = lock(&self.stats);
            stats.uploaded_files += 1;
            stats.uploaded_bytes += planned.file.size;
            hash
        };
        if let Some(hash) = &hash {
            lock(self.cache).insert(&planned.file, hash.clone());
        }
        let mut stats = lock(&self.stats);
        stats.files += 1;
        stats.bytes += planned.file.size;
        Ok(StoredFile {
            key: planned.key.clone(),
            size: planned.file.size,
            hash,
        })
    }

    /// Uploads a file that was skipped but whose object has gone since.
    async fn upload_again(&self, planned: &PlannedFile) -> Result<(), StorageError> {
        self.send(planned).await?;
        let mut stats = lock(&self.stats);
        stats.skipped_files -= 1;
        stats.uploaded_files += 1;
        stats.uploaded_bytes += planned.file.size;
        Ok(())
    }

    /// The hash of a file that is not uploaded: from the cache, or read from disk.
    async fn known_hash(&self, file: &LocalFile) -> Result<Option<String>, StorageError> {
        if let Some(hash) = lock(self.cache).get(file) {
            lock(&self.stats).cached_hashes += 1;
            return Ok(Some(hash));
        }
        if self.settings.algorithm == HashAlgorithm::None {
            return Ok(None);
        }
        let hash = hash_in_background(file, self.settings.algorithm).await?;
        let mut stats = lock(&self.stats);
        stats.hashed_files += 1;
        stats.hashed_bytes += file.size;
        Ok(hash)
    }

    /// One file up, with retries; returns its hash, computed from the bytes sent.
    async fn send(&self, planned: &PlannedFile) -> Result<Option<String>, StorageError> {
        let mut attempt = 0;
        loop {
            let mut hasher = Hasher::new(self.settings.algorithm);
            let mut sent_this_try = 0u64;
            let result = self
                .remote
                .upload_file(
                    &planned.key,
                    &planned.file.path,
                    planned.file.size,
                    &self.settings.throttle,
                    &self.memory,
                    self.cancel,
                    |part| {
                        hasher.update(part);
                        sent_this_try += part.len() as u64;
                        let length = part.len() as u64;
                        let done = self.sent.fetch_add(length, Ordering::Relaxed) + length;
                        (self.progress)(done, self.total.load(Ordering::Relaxed));
                    },
                )
                .await;
            match result {
                Ok(()) => return Ok(hasher.finish()),
                Err(error) => {
                    self.sent.fetch_sub(sent_this_try, Ordering::Relaxed);
                    if !should_retry(&error, attempt, self.settings.retry) {
                        return Err(error);
                    }
                    tracing::warn!(key = %planned.key, attempt, %error, "upload failed; retrying");
                    pause(self.settings.retry.delay(attempt), self.cancel).await?;
                    attempt += 1;
                }
            }
        }
    }
}

/// Runs `call` with the retry policy (for checks and small requests).
async fn retrying<T, F, Fut>(
    policy: RetryPolicy,
    cancel: &CancellationToken,
    mut call: F,
) -> Result<T, StorageError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StorageError>>,
{
    let mut attempt = 0;
    loop {
        if cancel.is_cancelled() {
            return Err(StorageError::Cancelled);
        }
        match call().await {
            Ok(value) => return Ok(value),
            Err(error) if should_retry(&error, attempt, policy) => {
                tracing::warn!(attempt, %error, "storage request failed; retrying");
                pause(policy.delay(attempt), cancel).await?;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

async fn hash_in_background(
    file: &LocalFile,
    algorithm: HashAlgorithm,
) -> Result<Option<String>, StorageError> {
    let path = file.path.clone();
    let read_error = |source| StorageError::Read {
        path: file.path.display().to_string(),
        source,
    };
    tokio::task::spawn_blocking(move || hash_file(&path, algorithm))
        .await
        .map_err(|join| read_error(std::io::Error::other(join)))?
        .map_err(read_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::decode::{DataRate, HumanDuration, RateUnit};
    use crate::storage::Throttle;

    fn directory_store(root: &std::path::Path) -> RemoteStorage {
        std::fs::create_dir_all(root.join("bucket")).unwrap();
        let location = crate::storage::StorageLocation::parse(&format!(
            "file://{}/bucket/cluster/dc/node",
            root.display()
        ))
        .unwrap();
        let store = crate::storage::StorageSettings::default()
            .open(&location, &Default::default())
            .unwrap();
        RemoteStorage::new(store, location).unwrap()
    }

    fn planned(root: &std::path::Path, name: &str, content: &[u8]) -> PlannedFile {
        let path = root.join(name);
        std::fs::write(&path, content).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        PlannedFile {
            file: LocalFile {
                cache_key: path.clone(),
                path,
                size: meta.len(),
                modified: meta.modified().unwrap(),
            },
            key: format!("data/ks/t-1/{name}"),
        }
    }

    /// `upload` with two connections, no retries, no limit and an empty hash cache.
    async fn upload_all(
        remote: &RemoteStorage,
        files: Vec<PlannedFile>,
    ) -> Result<(Vec<StoredFile>, UploadStats), StorageError> {
        let settings = UploadSettings {
            concurrency: 2,
            retry: RetryPolicy {
                interval: Duration::ZERO,
                exponential: false,
                max_attempts: 0,
            },
            throttle: Throttle::unlimited(),
            algorithm: HashAlgorithm::Sha256,
        };
        let cache = Mutex::new(HashCache::load(None, HashAlgorithm::Sha256));
        let progress: Progress = Arc::new(|_, _| {});
        upload(
            remote,
            files,
            &settings,
            &cache,
            progress,
            &CancellationToken::new(),
        )
        .await
    }

    #[tokio::test]
    async fn an_object_of_another_size_is_uploaded_again() {
        let root = std::env::temp_dir().join(format!("daedalus-upload-{}", std::process::id()));
        let remote = directory_store(&root);
        let same = planned(&root, "same-Data.db", b"unchanged");
        let cut = planned(&root, "cut-Data.db", b"the whole file");
        remote.put(&same.key, "unchanged".into()).await.unwrap();
        remote.put(&cut.key, "the wh".into()).await.unwrap();
        let (stored, stats) = upload_all(&remote, vec![same, cut.clone()]).await.unwrap();
        assert_eq!((stats.skipped_files, stats.uploaded_files), (1, 1));
        assert_eq!(remote.get(&cut.key).await.unwrap(), "the whole file");
        assert_eq!(stored[1].size, 14);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[tokio::test]
    async fn a_file_that_cannot_be_read_fails_the_upload_naming_it() {
        let root =
            std::env::temp_dir().join(format!("daedalus-upload-gone-{}", std::process::id()));
        let remote = directory_store(&root);
        let good = planned(&root, "good-Data.db", b"fine");
        let gone = planned(&root, "gone-Data.db", b"soon gone");
        std::fs::remove_file(&gone.file.path).unwrap();
        let error = upload_all(&remote, vec![good, gone]).await.unwrap_err();
        assert!(error.to_string().contains("gone-Data.db"), "{error}");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn duration_raises_a_bandwidth_cap_only() {
        let ten_mbps = Some(DataRate {
            value: 10,
            unit: RateUnit::Mbps,
        });
        let minute = Some(HumanDuration(Duration::from_secs(60)));
        assert_eq!(rate(ten_mbps, None, 0), Some(10_000_000));
        assert_eq!(rate(ten_mbps, minute, 6_000_000_000), Some(100_000_000));
        assert_eq!(rate(None, minute, 6_000_000_000), None);
    }
}
