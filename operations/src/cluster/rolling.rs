//! Rolling maintenance (beyond Icarus): `globalRequest` on cleanup, upgradesstables, scrub, garbagecollect, compact,
//! flush and repair runs the operation on every node, `concurrency` nodes at a time (one by default), a node only
//! after an earlier one completed, and stops at the first failure — what an operator does by hand after scaling out.

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};

use super::Timeout;
use super::coordinator::{Coordinator, Step};
use super::participants::participants;
use super::{deadline_after, part_body};
use crate::decode::{self, DecodeRequest};
use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::validation::{Validate, Violations};

/// The cluster-wide fields a maintenance request may add.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollingFields {
    #[serde(default, deserialize_with = "decode::bool")]
    pub global_request: bool,
    /// Nodes working at once.
    #[serde(default = "one", deserialize_with = "decode::i32_or::<_, 1>")]
    pub concurrency: i32,
    /// Only the nodes of these data centres (comma or space separated).
    #[serde(default)]
    pub dc: Option<String>,
    /// Absent: no limit (a repair may take days); as for backups, hours or a duration.
    #[serde(default)]
    pub timeout: Option<Timeout>,
}

fn one() -> i32 {
    1
}

/// Echoed only for a cluster-wide request, so a node's own request looks as it always did.
impl Serialize for RollingFields {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if self.global_request {
            map.serialize_entry("globalRequest", &true)?;
            map.serialize_entry("concurrency", &self.concurrency)?;
            if let Some(dc) = &self.dc {
                map.serialize_entry("dc", dc)?;
            }
            if let Some(timeout) = &self.timeout {
                map.serialize_entry("timeout", timeout)?;
            }
        }
        map.end()
    }
}

/// A maintenance request and its cluster-wide fields, side by side in one JSON object.
#[derive(Debug, Clone, Serialize)]
pub struct Rolling<R> {
    #[serde(flatten)]
    pub cluster: RollingFields,
    #[serde(flatten)]
    pub request: R,
}

impl<R: DecodeRequest> DecodeRequest for Rolling<R> {
    fn decode_request(body: serde_json::Value) -> Result<Self, (String, String)> {
        let cluster = decode::request(body.clone())?;
        let request = R::decode_request(body)?;
        Ok(Rolling { cluster, request })
    }
}

impl<R: Validate> Validate for Rolling<R> {
    fn validate(&self, violations: &mut Violations) {
        self.request.validate(violations);
        if self.cluster.concurrency < 1 {
            violations.add(
                "concurrency",
                format!("must be 1 or more, got {}", self.cluster.concurrency),
            );
        }
    }
}

/// A maintenance type that can also run across the cluster.
pub struct RollingOperation<O>(pub O);

impl<O: Operation> Operation for RollingOperation<O>
where
    O::Request: Serialize + Sync,
{
    const TYPE: &'static str = O::TYPE;
    const EXCLUSIVE: Option<&'static str> = O::EXCLUSIVE;
    type Request = Rolling<O::Request>;

    fn fill_defaults(
        &self,
        request: &mut Self::Request,
        accepted_at: chrono::DateTime<chrono::Utc>,
    ) {
        self.0.fill_defaults(&mut request.request, accepted_at);
    }

    /// The nodes that completed are in the recorded `nodes`, and are not run again.
    fn resumable(&self, request: &Self::Request) -> bool {
        request.cluster.global_request
    }

    fn exclusive(&self, request: &Self::Request) -> Option<&'static str> {
        if request.cluster.global_request {
            None
        } else {
            self.0.exclusive(&request.request)
        }
    }

    async fn run(
        &self,
        request: Self::Request,
        context: OperationContext,
    ) -> Result<(), OperationFailure> {
        if request.cluster.global_request {
            roll(O::TYPE, &request, &context).await
        } else {
            self.0.run(request.request, context).await
        }
    }
}

/// Boxed, as the other cluster-wide entry points (see [`super::backup::backup`]).
fn roll<'a, R: Serialize + Sync>(
    type_id: &'static str,
    request: &'a Rolling<R>,
    context: &'a OperationContext,
) -> futures_util::future::BoxFuture<'a, Result<(), OperationFailure>> {
    Box::pin(roll_through(type_id, request, context))
}

async fn roll_through<R: Serialize + Sync>(
    type_id: &'static str,
    request: &Rolling<R>,
    context: &OperationContext,
) -> Result<(), OperationFailure> {
    let cassandra = context.cassandra().await?;
    let cluster = participants(context, &cassandra, request.cluster.dc.as_deref()).await?;
    let nodes = cluster.peers.len();
    let coordinator = Coordinator::new(context, type_id, cluster.peers, nodes)?;
    coordinator.preflight().await?;
    let body = part_body(type_id, &request.request)?;
    let parts = (0..nodes)
        .map(|index| (index, body.clone().into()))
        .collect();
    let timeout = request.cluster.timeout;
    coordinator
        .run_step(Step {
            phase: None,
            parts,
            concurrency: usize::try_from(request.cluster.concurrency).unwrap_or(1),
            deadline: timeout.map(|t| deadline_after(t.0)),
            timeout_text: timeout.map(|t| t.to_string()).unwrap_or_default(),
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::cleanup::CleanupRequest;
    use serde_json::json;

    #[test]
    fn cluster_fields_are_echoed_only_for_cluster_wide_requests() {
        let local: Rolling<CleanupRequest> =
            DecodeRequest::decode_request(json!({"keyspace": "ks", "jobs": 2})).unwrap();
        assert_eq!(
            serde_json::to_value(&local).unwrap(),
            json!({"keyspace": "ks", "jobs": 2})
        );
        let global: Rolling<CleanupRequest> = DecodeRequest::decode_request(
            json!({"keyspace": "ks", "globalRequest": "true", "dc": "dc1", "timeout": "90s"}),
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&global).unwrap(),
            json!({"globalRequest": true, "concurrency": 1, "dc": "dc1", "timeout": "1m 30s",
                   "keyspace": "ks", "jobs": 0})
        );
        let mut violations = Violations::default();
        let zero: Rolling<CleanupRequest> =
            DecodeRequest::decode_request(json!({"keyspace": "ks", "concurrency": 0})).unwrap();
        zero.validate(&mut violations);
        assert_eq!(violations.into_vec()[0].field, "concurrency");
    }
}
