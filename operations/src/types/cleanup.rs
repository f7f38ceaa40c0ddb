//! `cleanup`: removes data a node no longer owns (after the ring changed), like `nodetool cleanup`.

use serde::{Deserialize, Serialize};

use super::target::{TableRequest, Target};
use crate::decode;
use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::validation::{self, Validate, Violations};

pub type CleanupRequest = TableRequest<CleanupFields>;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct CleanupFields {
    /// Parallel jobs; 0 lets Cassandra decide.
    #[serde(default, deserialize_with = "decode::i32")]
    pub jobs: i32,
}

impl Validate for CleanupFields {
    fn validate(&self, violations: &mut Violations) {
        validation::non_negative(violations, "jobs", self.jobs);
    }
}

pub struct Cleanup;

impl Operation for Cleanup {
    const TYPE: &'static str = "cleanup";
    type Request = CleanupRequest;

    async fn run(
        &self,
        request: CleanupRequest,
        context: OperationContext,
    ) -> Result<(), OperationFailure> {
        let Target {
            cassandra,
            keyspace,
            tables,
        } = request.target.resolve(&context).await?;
        let status = context
            .cancellable(cassandra.cleanup(request.fields.jobs, &keyspace, &tables))
            .await??;
        super::sstables::outcome(status, "cleaning up", &keyspace)
    }
}
