//! Checking one object against its manifest entry: that it is there with the manifest's size, and, deep, that its
//! bytes hash to the manifest's hash. A store error is retried as transfers retry it (Esop's `retry`); a problem
//! found is an answer, not an error.

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::report::{Problem, ProblemKind};
use crate::esop::manifest::ManifestEntry;
use crate::storage::transfer::hashes::{HashAlgorithm, Hasher};
use crate::storage::transfer::{RetryPolicy, pause, should_retry};
use crate::storage::{RemoteStorage, StorageError};

/// What the store holds where a missing object should be.
const NO_OBJECT: &str = "no object";

/// How one object is checked.
#[derive(Debug, Clone, Copy)]
pub struct CheckSettings {
    pub deep: bool,
    pub retry: RetryPolicy,
}

/// The problem with `entry`'s object, if it has one.
pub async fn check_entry(
    remote: &RemoteStorage,
    entry: &ManifestEntry,
    settings: CheckSettings,
    cancel: &CancellationToken,
) -> Result<Option<Problem>, StorageError> {
    let mut attempt = 0;
    loop {
        let checked = if settings.deep {
            read_and_hash(remote, entry).await
        } else {
            check_size(remote, entry).await
        };
        match checked {
            Err(error) if should_retry(&error, attempt, settings.retry) => {
                tracing::warn!(key = %entry.object_key, attempt, %error, "checking an object failed; trying again");
                pause(settings.retry.delay(attempt), cancel).await?;
                attempt += 1;
            }
            checked => return checked,
        }
    }
}

fn problem(entry: &ManifestEntry, kind: ProblemKind, expected: String, found: String) -> Problem {
    Problem {
        node: None,
        key: entry.object_key.clone(),
        problem: kind,
        expected,
        found,
    }
}

fn missing(entry: &ManifestEntry) -> Problem {
    problem(
        entry,
        ProblemKind::Missing,
        entry.size.to_string(),
        NO_OBJECT.into(),
    )
}

/// The size problem of an object of `size` bytes, if it has one.
fn size_problem(entry: &ManifestEntry, size: u64) -> Option<Problem> {
    (size != entry.size).then(|| {
        problem(
            entry,
            ProblemKind::Size,
            entry.size.to_string(),
            size.to_string(),
        )
    })
}

async fn check_size(
    remote: &RemoteStorage,
    entry: &ManifestEntry,
) -> Result<Option<Problem>, StorageError> {
    Ok(match remote.stored_size(&entry.object_key).await? {
        None => Some(missing(entry)),
        Some(size) => size_problem(entry, size),
    })
}

fn is_not_found(error: &StorageError) -> bool {
    matches!(error, StorageError::Object { source, .. } if matches!(**source, object_store::Error::NotFound { .. }))
}

/// Streams the object through the hash of the manifest's algorithm (SHA-256 or CRC32, told by the hash itself).
/// An entry without a hash gets its bytes counted only.
async fn read_and_hash(
    remote: &RemoteStorage,
    entry: &ManifestEntry,
) -> Result<Option<Problem>, StorageError> {
    let key = &entry.object_key;
    let mut stream = match remote.get_stream(key).await {
        Err(error) if is_not_found(&error) => return Ok(Some(missing(entry))),
        opened => opened?,
    };
    if let Some(problem) = size_problem(entry, stream.size) {
        return Ok(Some(problem));
    }
    let expected = entry.hash.as_deref();
    let algorithm = expected
        .and_then(HashAlgorithm::of_hash)
        .unwrap_or(HashAlgorithm::None);
    let mut hasher = Hasher::new(algorithm);
    let mut received: u64 = 0;
    while let Some(chunk) = stream.chunks.next().await {
        let chunk = chunk?;
        received = received.saturating_add(chunk.len() as u64);
        hasher.update(&chunk);
    }
    if received != stream.size {
        // The store announced one length and sent another: a broken connection, worth another try.
        return Err(remote.wrong_length(key, received, stream.size));
    }
    let Some(expected) = expected else {
        return Ok(None);
    };
    let found = match hasher.finish() {
        Some(found) => found,
        None => "nothing: the manifest's hash is neither SHA-256 nor CRC32".to_string(),
    };
    Ok((!found.eq_ignore_ascii_case(expected))
        .then(|| problem(entry, ProblemKind::Hash, expected.to_string(), found)))
}
