//! The restore engine: which backup, which tables, and the strategies that put them back — IN_PLACE into a
//! stopped node's directories, HARDLINKS and IMPORT into a running node in Esop's phases.

pub mod choice;
pub mod commitlog;
pub mod download;
pub mod in_place;
pub mod live;
pub mod plan;
pub mod response;
pub mod tables;

use crate::node_fs::NodeConfig;
use crate::operation::{OperationContext, OperationFailure};
use crate::storage::request::Connection;
pub use plan::{Phase, RestorePlan, Strategy};
pub use response::RestoreResponse;

/// Runs one node's restore; returns what it did, for the operation's `response`. `config` is where the node's files
/// are when it is stopped (IN_PLACE).
pub async fn restore(
    connection: &Connection,
    plan: &RestorePlan,
    config: &NodeConfig,
    context: &OperationContext,
) -> Result<RestoreResponse, OperationFailure> {
    Ok(match plan.restoration_strategy_type {
        Strategy::InPlace => {
            RestoreResponse::InPlace(in_place::restore(connection, plan, config, context).await?)
        }
        Strategy::Hardlinks | Strategy::Import => {
            RestoreResponse::Live(live::restore(connection, plan, context).await?)
        }
    })
}

/// IN_PLACE and commitlog-restore change files a running Cassandra holds open: they refuse to run while the node
/// answers over JMX.
pub async fn require_node_down(
    context: &OperationContext,
    what: &str,
) -> Result<(), OperationFailure> {
    let Ok(cassandra) = context.cassandra().await else {
        return Ok(());
    };
    if context.cancellable(cassandra.answers()).await? {
        return Err(OperationFailure::Failed(format!(
            "Cassandra answers on {}: {what} works on a stopped node only; stop Cassandra first",
            cassandra.jmx().address()
        )));
    }
    Ok(())
}

/// Downloads `files` for this operation: its progress, its cancellation, errors as its failure.
pub async fn download_for(
    context: &OperationContext,
    remote: &crate::storage::RemoteStorage,
    files: Vec<download::PlannedDownload>,
    settings: &download::DownloadSettings,
) -> Result<download::DownloadStats, OperationFailure> {
    let reporter = context.progress();
    let progress: download::Progress =
        std::sync::Arc::new(move |done, total| reporter.units(done, total));
    let stats =
        download::download(remote, files, settings, progress, context.cancellation()).await?;
    context.metrics().transferred(
        context.type_id(),
        "download",
        stats.downloaded_files,
        stats.downloaded_bytes,
        stats.kept_files,
    );
    Ok(stats)
}

/// Runs blocking file work off the async workers; its error is the operation's failure, read as the error's own
/// message and kept as its source.
pub(crate) async fn blocking<T, E>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, OperationFailure>
where
    T: Send + 'static,
    E: Into<crate::operation::BoxError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await?
        .map_err(OperationFailure::engine)
}
