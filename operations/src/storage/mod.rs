//! Object storage for backups: where a backup lives (Esop's storage locations), how the sidecar reaches each kind
//! of store (S3 and S3-compatible, Azure, GCS, local files), and the transfers themselves.
//!
//! Everything above this module talks to [`RemoteStorage`], keys relative to a node's prefix
//! (`<cluster>/<dc>/<node>/`), and never to a provider SDK.

pub mod entities;
pub mod file_store;
pub mod list_filter;
pub mod location;
pub mod remote;
pub mod request;
pub mod settings;
pub mod skipped;
pub mod throttle;
pub mod transfer;

pub use entities::{Entities, KeyspaceTable};
pub use location::StorageLocation;
pub use remote::{RemoteStorage, StorageError};
pub use settings::{StorageOptions, StorageSettings};
pub use throttle::Throttle;

/// A write that failed for want of space (or of quota) where it was written.
pub fn is_disk_full(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// Whether `error`, or any error that caused it, is [`is_disk_full`].
pub fn caused_by_full_disk(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            if is_disk_full(io) {
                return true;
            }
            // An io::Error's source() skips the error it wraps.
            if let Some(inner) = io.get_ref() {
                current = Some(inner);
                continue;
            }
        }
        current = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_found_under_the_errors_it_caused() {
        let full = std::io::Error::from_raw_os_error(28); // ENOSPC
        assert!(is_disk_full(&full));
        let wrapped = object_store::Error::Generic {
            store: "file://",
            source: Box::new(std::io::Error::other(full)),
        };
        assert!(caused_by_full_disk(&wrapped));
        let other = object_store::Error::Generic {
            store: "file://",
            source: Box::new(std::io::Error::from_raw_os_error(13)),
        };
        assert!(!caused_by_full_disk(&other));
    }
}
