//! Puts a snapshot's files in the bucket: objects already there are skipped (their keys are unique per SSTable,
//! so an existing key is the same file), the rest stream up in parallel under one bandwidth limit and one memory
//! budget, each hashed as it is read.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::hashes::{HashAlgorithm, HashCache, Hasher, hash_file};
use crate::storage::remote::TransferMemory;
use crate::storage::{RemoteStorage, StorageError, Throttle};

/// A file on disk to back up.
#[derive(Debug, Clone)]
pub struct LocalFile {
    pub path: PathBuf,
    /// Names the file in the hash cache: a path that stays the same while the file does (for a snapshot file,
    /// the live SSTable it is a hard link of).
    pub cache_key: PathBuf,
    pub size: u64,
    pub modified: SystemTime,
}

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

/// Esop's `retry`: the first try and up to `max_attempts` more, `interval` apart (doubling when exponential).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub interval: Duration,
    pub exponential: bool,
    pub max_attempts: u32,
}

impl From<&crate::storage::request::Retry> for RetryPolicy {
    fn from(retry: &crate::storage::request::Retry) -> Self {
        RetryPolicy {
            interval: Duration::from_secs(u64::try_from(retry.interval).unwrap_or(0)),
            exponential: retry.strategy == "EXPONENTIAL",
            max_attempts: u32::try_from(retry.max_attempts).unwrap_or(0),
        }
    }
}

impl RetryPolicy {
    fn delay(&self, attempt: u32) -> Duration {
        if self.exponential {
            self.interval.saturating_mul(2u32.saturating_pow(attempt))
        } else {
            self.interval
        }
    }
}

#[derive(Debug)]
pub struct UploadSettings {
    pub concurrency: usize,
    pub retry: RetryPolicy,
    pub throttle: Throttle,
    pub algorithm: HashAlgorithm,
}

/// What a backup did, for its `response` and for operators who wonder where the time went.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
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
pub async fn upload(
    remote: &RemoteStorage,
    files: Vec<PlannedFile>,
    settings: &UploadSettings,
    cache: &Mutex<HashCache>,
    progress: Progress,
    cancel: &CancellationToken,
) -> Result<(Vec<StoredFile>, UploadStats), StorageError> {
    let concurrency = settings.concurrency.max(1);
    // HEAD requests first (cheap), so progress knows how many bytes there are to send.
    let keys: Vec<String> = files.iter().map(|planned| planned.key.clone()).collect();
    let present: Vec<bool> = futures_util::stream::iter(keys)
        .map(|key| async move { retrying(settings.retry, cancel, || remote.exists(&key)).await })
        .buffered(concurrency * 2)
        .try_collect()
        .await?;
    let total: u64 = files
        .iter()
        .zip(&present)
        .filter(|(_, present)| !**present)
        .map(|(planned, _)| planned.file.size)
        .sum();
    let sent = AtomicU64::new(0);
    let stats = Mutex::new(UploadStats::default());
    let memory = TransferMemory::default();
    progress(0, total);

    let stored: Vec<StoredFile> = futures_util::stream::iter(files.into_iter().zip(present))
        .map(|(planned, present)| {
            let (sent, stats, memory, progress) = (&sent, &stats, &memory, &progress);
            async move {
                let cached = lock(cache).get(&planned.file);
                let hash = if present {
                    let hash = match cached {
                        Some(hash) => {
                            lock(stats).cached_hashes += 1;
                            Some(hash)
                        }
                        None if settings.algorithm == HashAlgorithm::None => None,
                        None => {
                            let hash =
                                hash_in_background(&planned.file, settings.algorithm).await?;
                            let mut stats = lock(stats);
                            stats.hashed_files += 1;
                            stats.hashed_bytes += planned.file.size;
                            hash
                        }
                    };
                    lock(stats).skipped_files += 1;
                    hash
                } else {
                    let hash = send(
                        remote, &planned, settings, memory, sent, progress, total, cancel,
                    )
                    .await?;
                    let mut stats = lock(stats);
                    stats.uploaded_files += 1;
                    stats.uploaded_bytes += planned.file.size;
                    hash
                };
                if let Some(hash) = &hash {
                    lock(cache).insert(&planned.file, hash.clone());
                }
                let mut stats = lock(stats);
                stats.files += 1;
                stats.bytes += planned.file.size;
                Ok::<_, StorageError>(StoredFile {
                    key: planned.key,
                    size: planned.file.size,
                    hash,
                })
            }
        })
        .buffered(concurrency)
        .try_collect()
        .await?;
    let stats = stats.into_inner().unwrap_or_else(|e| e.into_inner());
    Ok((stored, stats))
}

/// One file up, with retries; returns its hash, computed from the bytes sent.
#[allow(clippy::too_many_arguments)]
async fn send(
    remote: &RemoteStorage,
    planned: &PlannedFile,
    settings: &UploadSettings,
    memory: &TransferMemory,
    sent: &AtomicU64,
    progress: &Progress,
    total: u64,
    cancel: &CancellationToken,
) -> Result<Option<String>, StorageError> {
    let mut attempt = 0;
    loop {
        let mut hasher = Hasher::new(settings.algorithm);
        let mut sent_this_try = 0u64;
        let result = remote
            .upload_file(
                &planned.key,
                &planned.file.path,
                planned.file.size,
                &settings.throttle,
                memory,
                cancel,
                |part| {
                    hasher.update(part);
                    sent_this_try += part.len() as u64;
                    let done =
                        sent.fetch_add(part.len() as u64, Ordering::Relaxed) + part.len() as u64;
                    progress(done, total);
                },
            )
            .await;
        match result {
            Ok(()) => return Ok(hasher.finish()),
            Err(error) => {
                sent.fetch_sub(sent_this_try, Ordering::Relaxed);
                if !should_retry(&error, attempt, settings.retry) {
                    return Err(error);
                }
                tracing::warn!(key = %planned.key, attempt, %error, "upload failed; retrying");
                pause(settings.retry.delay(attempt), cancel).await?;
                attempt += 1;
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

fn should_retry(error: &StorageError, attempt: u32, policy: RetryPolicy) -> bool {
    // A local file that cannot be read, a cancellation or a missing bucket do not get better by trying again.
    matches!(error, StorageError::Object { .. }) && attempt < policy.max_attempts
}

async fn pause(delay: Duration, cancel: &CancellationToken) -> Result<(), StorageError> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(StorageError::Cancelled),
        _ = tokio::time::sleep(delay) => Ok(()),
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

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{DataRate, HumanDuration, RateUnit};

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
