//! `verify`: whether a backup in the bucket is still whole — every object its manifest names there with its size,
//! and with `deep` its hash ([`crate::verify`]); with `globalRequest` on every node's prefix
//! ([`crate::cluster::verify`]). It reads only. It completes when the backup is whole and fails naming each missing
//! or damaged object otherwise; the response lists the first thousand and counts them all.

use serde::{Deserialize, Serialize};

use super::list::open_node_storage;
use crate::decode;
use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::storage::request::{self as storage, Connection, StorageFields, StorageRequest};
use crate::validation::Violations;
use crate::verify::{VerifyPlan, VerifyResponse, report};

/// The most objects checked at once: each check holds a connection and, deep, a read buffer.
pub const MAX_CONCURRENCY: i32 = 256;

/// The request: Esop's connection fields and these.
pub type VerifyRequest = StorageRequest<VerifyFields>;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyFields {
    /// A tag (its newest backup, as a restore picks it) or a backup's full name `<tag>-<schemaVersion>-<millis>`.
    pub snapshot_tag: String,
    /// Read every object and check its hash too. Absent: true for a `file://` bucket, false for cloud stores (where
    /// reading every byte costs time and egress); filled in when the request is accepted.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "decode::option_bool"
    )]
    pub deep: Option<bool>,
    /// Objects checked at once, 1 to [`MAX_CONCURRENCY`]. Absent: `concurrentConnections` (at most
    /// [`MAX_CONCURRENCY`]); filled in when the request is accepted.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "decode::option_i32"
    )]
    pub concurrency: Option<i32>,
    /// Every node's backup under the cluster's prefix in the bucket.
    #[serde(default, deserialize_with = "decode::bool")]
    pub global_request: bool,
    /// Fill an incomplete location with this node's cluster, data centre and host id.
    #[serde(default, deserialize_with = "decode::bool")]
    pub resolve_nodes: bool,
}

impl VerifyFields {
    /// A size-only (or, for `file://`, deep) verification of `snapshot_tag` with the defaults.
    pub fn new(snapshot_tag: impl Into<String>) -> Self {
        VerifyFields {
            snapshot_tag: snapshot_tag.into(),
            deep: None,
            concurrency: None,
            global_request: false,
            resolve_nodes: false,
        }
    }

    /// What the verification engine runs for this request.
    pub fn plan(&self, connection: &Connection) -> VerifyPlan {
        VerifyPlan {
            snapshot_tag: self.snapshot_tag.clone(),
            deep: self
                .deep
                .unwrap_or_else(|| deep_by_default(&connection.storage_location.protocol)),
            concurrency: self
                .concurrency
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or_else(|| connection.concurrency())
                .min(MAX_CONCURRENCY as usize),
            retry: connection.retry_policy(),
        }
    }
}

/// Deep by default where reading is local and cheap: a `file://` bucket.
pub fn deep_by_default(protocol: &str) -> bool {
    protocol == "file"
}

impl StorageFields for VerifyFields {
    fn validate(&self, connection: &Connection, violations: &mut Violations) {
        storage::node_location(
            violations,
            connection,
            Some((
                "resolveNodes or globalRequest",
                self.resolve_nodes || self.global_request,
            )),
        );
        if self.snapshot_tag.trim().is_empty() {
            violations.add("snapshotTag", "must not be empty");
        } else if self.snapshot_tag.contains(['/', '\\'])
            || self.snapshot_tag.contains(char::is_control)
        {
            violations.add(
                "snapshotTag",
                format!(
                    "'{}' cannot name a backup",
                    self.snapshot_tag.escape_debug()
                ),
            );
        }
        if let Some(n) = self.concurrency
            && !(1..=MAX_CONCURRENCY).contains(&n)
        {
            violations.add(
                "concurrency",
                format!("must be 1 to {MAX_CONCURRENCY}, got {n}"),
            );
        }
    }
}

pub struct Verify;

impl Operation for Verify {
    const TYPE: &'static str = "verify";
    type Request = VerifyRequest;

    fn fill_defaults(
        &self,
        request: &mut VerifyRequest,
        _accepted_at: chrono::DateTime<chrono::Utc>,
    ) {
        let plan = request.fields.plan(&request.connection);
        request.fields.deep = Some(plan.deep);
        request.fields.concurrency = Some(i32::try_from(plan.concurrency).unwrap_or(i32::MAX));
    }

    async fn run(
        &self,
        request: VerifyRequest,
        context: OperationContext,
    ) -> Result<(), OperationFailure> {
        let StorageRequest { connection, fields } = request;
        let plan = fields.plan(&connection);
        let (response, what) = if fields.global_request {
            let cluster =
                crate::cluster::verify::verify(&connection, &plan, fields.resolve_nodes, &context)
                    .await?;
            let what = format!(
                "backup {} in {}",
                plan.snapshot_tag,
                connection.storage_location.store_name()
            );
            (VerifyResponse::Cluster(cluster), what)
        } else {
            let remote = open_node_storage(&context, &connection, fields.resolve_nodes).await?;
            let node = crate::operation_store::releasing_memory(crate::verify::verify_node(
                &context, &remote, &plan,
            ))
            .await?;
            let what = format!("backup {} in {}", node.manifest, remote.location());
            (VerifyResponse::Node(node), what)
        };
        context.respond(&response)?;
        outcome(&response, &what)
    }
}

/// Completed when the backup is whole; failed naming its problems otherwise.
fn outcome(response: &VerifyResponse, what: &str) -> Result<(), OperationFailure> {
    let problems = response.problems();
    if response.problem_count() == 0 {
        tracing::info!(
            objects = response.objects(),
            bytes = response.bytes(),
            "the backup is whole"
        );
        return Ok(());
    }
    Err(OperationFailure::Failed(report::not_whole(
        what,
        response.objects(),
        response.problem_count(),
        problems,
    )))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::types::{TypeOptions, registry};

    fn prepare(
        body: serde_json::Value,
    ) -> Result<serde_json::Map<String, serde_json::Value>, Vec<String>> {
        registry(TypeOptions::default())
            .prepare(body)
            .map(|prepared| prepared.request)
            .map_err(|error| error.violations().into_iter().map(|v| v.field).collect())
    }

    #[test]
    fn a_missing_or_bad_tag_is_refused_naming_it() {
        let location = "s3://bucket/c/dc/n";
        assert_eq!(
            prepare(json!({"type": "verify", "storageLocation": location})).unwrap_err(),
            ["snapshotTag"]
        );
        for tag in ["", "  ", "a/b", "a\\b", "a\nb"] {
            assert_eq!(
                prepare(json!({"type": "verify", "storageLocation": location, "snapshotTag": tag}))
                    .unwrap_err(),
                ["snapshotTag"],
                "{tag:?}"
            );
        }
        for concurrency in [json!(0), json!(257), json!(2_147_483_647), json!("-1")] {
            assert_eq!(
                prepare(
                    json!({"type": "verify", "storageLocation": location, "snapshotTag": "t",
                    "concurrency": concurrency})
                )
                .unwrap_err(),
                ["concurrency"],
                "{concurrency}"
            );
        }
        let most = prepare(json!({"type": "verify", "storageLocation": location,
            "snapshotTag": "t", "concurrency": 256}))
        .unwrap();
        assert_eq!(most["concurrency"], 256);
    }

    #[test]
    fn a_bucket_alone_needs_resolve_nodes_or_global_request() {
        let body = |extra: serde_json::Value| {
            let mut body =
                json!({"type": "verify", "storageLocation": "s3://bucket", "snapshotTag": "t"});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            body
        };
        assert_eq!(prepare(body(json!({}))).unwrap_err(), ["storageLocation"]);
        prepare(body(json!({"globalRequest": true}))).unwrap();
        prepare(body(json!({"resolveNodes": "true"}))).unwrap();
    }

    #[test]
    fn deep_and_concurrency_are_echoed_as_they_run() {
        let cloud = prepare(
            json!({"type": "verify", "storageLocation": "gcp://bucket/c/dc/n",
            "snapshotTag": "nightly", "concurrentConnections": 4}),
        )
        .unwrap();
        assert_eq!(cloud["deep"], false);
        assert_eq!(cloud["concurrency"], 4);
        assert_eq!(cloud["globalRequest"], false);
        let file = prepare(
            json!({"type": "verify", "storageLocation": "file:///b/bucket/c/dc/n",
            "snapshotTag": "nightly", "concurrency": "3"}),
        )
        .unwrap();
        assert_eq!(file["deep"], true);
        assert_eq!(file["concurrency"], 3);
        let shallow = prepare(
            json!({"type": "verify", "storageLocation": "file:///b/bucket/c/dc/n",
            "snapshotTag": "nightly", "deep": "false"}),
        )
        .unwrap();
        assert_eq!(shallow["deep"], false);
        // More connections than checks may run at once: the checks are capped.
        let many = prepare(
            json!({"type": "verify", "storageLocation": "gcp://bucket/c/dc/n",
            "snapshotTag": "nightly", "concurrentConnections": 1000}),
        )
        .unwrap();
        assert_eq!(many["concurrency"], 256);
    }
}
