//! A node's manifests, read straight from the bucket (Esop reads a local cache that only `list` fills), and Esop's
//! report over them: what `list` shows and what a removal chooses from.

use std::collections::BTreeSet;

use crate::esop::manifest::Manifest;
use crate::esop::report::AllManifestsReport;
use crate::operation::{OperationContext, OperationFailure};
use crate::storage::RemoteStorage;
use crate::storage::skipped::SkippedEntry;

/// A node's manifests as read from the bucket: (name, manifest object size, manifest) each.
pub type Manifests = Vec<(String, u64, Manifest)>;

/// Every manifest of the node, read from the bucket, and the entries of `manifests/` the listing passed over.
pub async fn manifests(
    context: &OperationContext,
    remote: &RemoteStorage,
) -> Result<(Manifests, Vec<SkippedEntry>), OperationFailure> {
    manifests_except(context, remote, &BTreeSet::new()).await
}

/// The node's manifests but those named in `known`, and the entries the listing passed over.
pub async fn manifests_except(
    context: &OperationContext,
    remote: &RemoteStorage,
    known: &BTreeSet<&str>,
) -> Result<(Manifests, Vec<SkippedEntry>), OperationFailure> {
    let listing = context
        .cancellable(remote.list_reporting("manifests/"))
        .await??;
    let mut manifests = Vec::new();
    for object in listing.objects {
        let Some(name) = object
            .key
            .strip_prefix("manifests/")
            .and_then(|name| name.strip_suffix(".json"))
            .filter(|name| !known.contains(name))
        else {
            continue;
        };
        let manifest =
            crate::restore::choice::read_manifest(context, remote, &object.key, Some(object.size))
                .await?;
        manifests.push((name.to_string(), object.size, manifest));
    }
    Ok((manifests, listing.skipped))
}

/// Esop's report over the node's manifests.
pub fn report_of(
    remote: &RemoteStorage,
    manifests: &[(String, u64, Manifest)],
) -> Result<AllManifestsReport, OperationFailure> {
    AllManifestsReport::compute(manifests)
        .map_err(|error| OperationFailure::context(remote.location().to_string(), error))
}
