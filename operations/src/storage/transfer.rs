//! What the backup's uploads and the restore's downloads share, below both engines: how a transfer runs
//! ([`TransferSettings`]), how it retries (Esop's `retry` policy and which failures are worth another try), and
//! how files are hashed for manifests ([`hashes`]).

pub mod hashes;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use self::hashes::HashAlgorithm;
use super::{StorageError, Throttle};

/// A file on disk to transfer (back up).
#[derive(Debug, Clone)]
pub struct LocalFile {
    pub path: PathBuf,
    /// Names the file in the hash cache: a path that stays the same while the file does (for a snapshot file,
    /// the live SSTable it is a hard link of).
    pub cache_key: PathBuf,
    pub size: u64,
    pub modified: SystemTime,
}

/// How a transfer runs, uploads and restore downloads alike.
#[derive(Debug)]
pub struct TransferSettings {
    /// Files transferred at once (Esop's `concurrentConnections`); 0 counts as 1.
    pub concurrency: usize,
    /// Retries of a failed store request; a download fetches the whole object again from its first byte.
    pub retry: RetryPolicy,
    /// One limit for the whole transfer, however many connections share it.
    pub throttle: Throttle,
    /// How files are hashed (upload), or how the manifest's hashes were made (download; `NONE` checks sizes only).
    pub algorithm: HashAlgorithm,
}

/// Esop's `retry`: the first try and up to `max_attempts` more, `interval` apart (doubling when exponential).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub interval: Duration,
    pub exponential: bool,
    pub max_attempts: u32,
}

impl From<&super::request::Retry> for RetryPolicy {
    fn from(retry: &super::request::Retry) -> Self {
        RetryPolicy {
            interval: Duration::from_secs(u64::try_from(retry.interval).unwrap_or(0)),
            exponential: retry.strategy == "EXPONENTIAL",
            max_attempts: u32::try_from(retry.max_attempts).unwrap_or(0),
        }
    }
}

impl RetryPolicy {
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        if self.exponential {
            self.interval.saturating_mul(2u32.saturating_pow(attempt))
        } else {
            self.interval
        }
    }
}

pub(crate) fn should_retry(error: &StorageError, attempt: u32, policy: RetryPolicy) -> bool {
    // A local file that cannot be read, a cancellation, a missing bucket, a missing object (stores are strongly
    // consistent; a file:// bucket's symbolic link is one too) or a full file:// bucket do not get better by trying
    // again within seconds.
    let retryable = match error {
        StorageError::Object { source, .. } => {
            !matches!(**source, object_store::Error::NotFound { .. })
                && !super::caused_by_full_disk(&**source)
        }
        _ => false,
    };
    retryable && attempt < policy.max_attempts
}

pub(crate) async fn pause(delay: Duration, cancel: &CancellationToken) -> Result<(), StorageError> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(StorageError::Cancelled),
        _ = tokio::time::sleep(delay) => Ok(()),
    }
}
