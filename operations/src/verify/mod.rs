//! The verification engine: whether a backup in the bucket is still whole. It reads the backup's manifest and
//! checks every object the manifest names — there, with the manifest's size, and with `deep` its bytes hashed and
//! compared with the manifest's hash. It only reads: nothing in the bucket or on the node is written or repaired.
//! `verify` ([`crate::types::verify`]) runs it on one node, a cluster-wide verification ([`crate::cluster::verify`])
//! on every node's prefix.

pub mod check;
pub mod report;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt;

use crate::esop::manifest::{Manifest, ManifestEntry, total_size};
use crate::operation::{OperationContext, OperationFailure, ProgressReporter};
use crate::storage::RemoteStorage;
use crate::storage::transfer::RetryPolicy;
use check::{CheckSettings, check_entry};
pub use report::{
    ClusterVerification, NodeSummary, NodeVerification, Problem, ProblemKind, VerifyResponse,
};

/// What to verify and how.
#[derive(Debug, Clone)]
pub struct VerifyPlan {
    /// A tag (its newest backup, as a restore picks it) or a backup's full manifest name.
    pub snapshot_tag: String,
    /// Read every object and check its hash, not only its size.
    pub deep: bool,
    /// Objects checked at once; 0 counts as 1.
    pub concurrency: usize,
    pub retry: RetryPolicy,
}

impl VerifyPlan {
    fn settings(&self) -> CheckSettings {
        CheckSettings {
            deep: self.deep,
            retry: self.retry,
        }
    }
}

/// Objects checked out of all there are to check, as the operation's progress; in a cluster-wide verification,
/// which reads one node's manifest at a time, of the node `node` out of `nodes`.
#[derive(Debug)]
pub struct Progress {
    reporter: ProgressReporter,
    done: AtomicU64,
    total: u64,
    node: u64,
    nodes: u64,
}

impl Progress {
    pub fn new(reporter: ProgressReporter, total: u64) -> Progress {
        Progress::of_node(reporter, total, 0, 1)
    }

    /// The progress of checking `total` objects of the `node`th (from 0) of `nodes` nodes.
    pub fn of_node(reporter: ProgressReporter, total: u64, node: u64, nodes: u64) -> Progress {
        Progress {
            reporter,
            done: AtomicU64::new(0),
            total,
            node,
            nodes: nodes.max(1),
        }
    }

    fn one_more(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if self.total > 0 {
            let node = done as f64 / self.total as f64;
            self.reporter
                .set((self.node as f64 + node) / self.nodes as f64);
        }
    }
}

/// The entries of `manifest` with distinct keys: an object named twice is checked once.
pub fn distinct_entries(manifest: &Manifest) -> Vec<&ManifestEntry> {
    let mut seen = HashSet::new();
    manifest
        .entries()
        .filter(|entry| seen.insert(entry.object_key.as_str()))
        .collect()
}

/// Verifies the node's backup `plan` names: the newest of a tag, or the one of a full name.
pub async fn verify_node(
    context: &OperationContext,
    remote: &RemoteStorage,
    plan: &VerifyPlan,
) -> Result<NodeVerification, OperationFailure> {
    let chosen = crate::restore::choice::choose(context, remote, &plan.snapshot_tag, None).await?;
    let progress = Progress::new(
        context.progress(),
        distinct_entries(&chosen.manifest).len() as u64,
    );
    verify_manifest(
        context,
        remote,
        &chosen.name,
        &chosen.manifest,
        plan,
        &progress,
    )
    .await
}

/// Checks every object `manifest` (named `name`) names in the node's storage.
pub async fn verify_manifest(
    context: &OperationContext,
    remote: &RemoteStorage,
    name: &str,
    manifest: &Manifest,
    plan: &VerifyPlan,
    progress: &Progress,
) -> Result<NodeVerification, OperationFailure> {
    let entries = distinct_entries(manifest);
    // Keys come from the bucket: only keys a backup writes are read.
    if let Some(error) = entries
        .iter()
        .find_map(|entry| crate::restore::tables::check_entry_key(entry).err())
    {
        return Err(OperationFailure::context(
            format!("{}: backup {name}", remote.location()),
            error,
        ));
    }
    tracing::info!(backup = %name, location = %remote.location(), objects = entries.len(), deep = plan.deep,
        "verifying a backup");
    let settings = plan.settings();
    // Owned entries and futures made by an iterator: a stream mapping borrowed entries through a closure would not
    // be `Send` for every lifetime, as the executor's task must be.
    let owned: Vec<ManifestEntry> = entries.iter().map(|entry| (*entry).clone()).collect();
    let cancel = context.cancellation().clone();
    let checks = owned.into_iter().map(|entry| {
        let cancel = cancel.clone();
        async move {
            let checked = check_entry(remote, &entry, settings, &cancel).await;
            progress.one_more();
            checked
        }
    });
    let mut checks = futures_util::stream::iter(checks).buffered(plan.concurrency.max(1));
    let mut verification = NodeVerification {
        node: None,
        manifest: name.to_string(),
        objects: entries.len() as u64,
        bytes: total_size(entries.iter().map(|entry| entry.size)),
        deep: plan.deep,
        problem_count: 0,
        problems: Vec::new(),
    };
    // The first error that retries did not overcome ends the check (dropping the checks under way).
    let checked_all = async {
        while let Some(checked) = checks.next().await {
            if let Some(problem) = checked? {
                // A backup whose objects are all gone would otherwise log one line per object.
                if verification.problem_count < report::NAMED_PROBLEMS as u64 {
                    tracing::warn!(backup = %name, key = %problem.key, problem = %problem.problem,
                        expected = %problem.expected, found = %problem.found,
                        "an object of the backup is not as its manifest says");
                }
                verification.add_problem(problem);
            }
        }
        if verification.problem_count > report::NAMED_PROBLEMS as u64 {
            tracing::warn!(backup = %name, problems = verification.problem_count, "more objects of the backup \
                are not as its manifest says (the operation's response lists the first {})",
                report::LISTED_PROBLEMS);
        }
        Ok::<_, crate::storage::StorageError>(())
    };
    context.cancellable(checked_all).await??;
    Ok(verification)
}

#[cfg(test)]
mod tests;
