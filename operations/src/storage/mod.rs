//! Object storage for backups: where a backup lives (Esop's storage locations), how the sidecar reaches each kind
//! of store (S3 and S3-compatible, Azure, GCS, local files), and the transfers themselves.
//!
//! Everything above this module talks to [`RemoteStorage`], keys relative to a node's prefix
//! (`<cluster>/<dc>/<node>/`), and never to a provider SDK.

pub mod entities;
pub mod file_store;
pub mod list_filter;
pub mod location;
pub mod node;
pub mod remote;
pub mod request;
pub mod settings;
pub mod skipped;
pub mod throttle;

pub use entities::{Entities, KeyspaceTable};
pub use location::StorageLocation;
pub use remote::{RemoteStorage, StorageError};
pub use settings::{StorageOptions, StorageSettings};
pub use throttle::Throttle;
