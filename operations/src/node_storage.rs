//! The one place an operation opens a node's storage: complete the location from Cassandra when asked, build the
//! client, and check (or create) the bucket. Above `storage` (which knows nothing of operations) and below the
//! engines.

use crate::cassandra::Cassandra;
use crate::operation::{OperationContext, OperationFailure};
use crate::storage::request::Connection;
use crate::storage::{RemoteStorage, StorageError, StorageLocation};

/// How a location without `cluster/dc/node` is completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodePath {
    /// The location must name the node already (validation said so).
    AsGiven,
    /// Completed with this node's cluster, data centre and host id, asked of Cassandra.
    FromCassandra,
}

/// What to do about the bucket once the client is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketCheck {
    /// Nothing (`skipBucketVerification`).
    Skip,
    /// It must exist.
    Verify,
    /// Created when missing (`createMissingBucket`).
    CreateMissing,
}

impl BucketCheck {
    pub fn of(connection: &Connection, create_missing: bool) -> Self {
        match (connection.skip_bucket_verification, create_missing) {
            (_, true) => BucketCheck::CreateMissing,
            (true, false) => BucketCheck::Skip,
            (false, false) => BucketCheck::Verify,
        }
    }
}

/// The node's storage as `connection` describes it.
pub async fn open(
    context: &OperationContext,
    connection: &Connection,
    node_path: NodePath,
    bucket: BucketCheck,
) -> Result<RemoteStorage, OperationFailure> {
    let location = match (&connection.storage_location.node_path, node_path) {
        (None, NodePath::FromCassandra) => {
            let cassandra = context.cassandra().await?;
            context
                .cancellable(node_location(&cassandra, &connection.storage_location))
                .await??
        }
        _ => connection.storage_location.clone(),
    };
    open_location(context, location, connection, bucket).await
}

/// The storage at `location` (which names the node), with `connection`'s proxy and transport settings.
pub async fn open_location(
    context: &OperationContext,
    location: StorageLocation,
    connection: &Connection,
    bucket: BucketCheck,
) -> Result<RemoteStorage, OperationFailure> {
    let settings = context.storage_settings();
    let options = connection.options();
    let create = bucket == BucketCheck::CreateMissing;
    let opened = match settings.open(&location, &options) {
        Err(StorageError::MissingBucket { .. }) if create => {
            context
                .cancellable(settings.create_bucket(&location, &options))
                .await??;
            settings.open(&location, &options)?
        }
        opened => opened?,
    };
    let remote = RemoteStorage::new(opened, location.clone())?;
    if bucket != BucketCheck::Skip {
        match context.cancellable(remote.check_bucket()).await? {
            Err(StorageError::MissingBucket { .. }) if create => {
                tracing::info!(bucket = %location.store_name(), "creating the missing bucket");
                context
                    .cancellable(settings.create_bucket(&location, &options))
                    .await??;
            }
            checked => checked?,
        }
    }
    Ok(remote)
}

/// Completes `protocol://bucket` with this node's cluster, data centre and host id, as Esop does.
pub async fn node_location(
    cassandra: &Cassandra,
    location: &StorageLocation,
) -> Result<StorageLocation, OperationFailure> {
    let cluster = cassandra.cluster_name().await?;
    // Icarus writes cluster names with their whitespace replaced, as they are path segments.
    let cluster = cluster.split_whitespace().collect::<Vec<_>>().join("-");
    let dc = cassandra.local_datacenter().await?;
    let host_id = cassandra.local_host_id().await?;
    Ok(location.for_node(&cluster, &dc, &host_id))
}

impl From<StorageError> for OperationFailure {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::Cancelled => OperationFailure::Cancelled,
            other => OperationFailure::Engine(Box::new(other)),
        }
    }
}
