//! `cleanup`: removes data a node no longer owns (after the ring changed), like `nodetool cleanup`.

use serde::{Deserialize, Serialize};

use crate::decode;
use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::validation::{self, Validate, Violations};

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct CleanupRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyspace: Option<String>,
    /// Absent or empty: every table of the keyspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<String>>,
    /// Parallel jobs; 0 lets Cassandra decide.
    #[serde(default, deserialize_with = "decode::i32")]
    pub jobs: i32,
}

impl Validate for CleanupRequest {
    fn validate(&self, violations: &mut Violations) {
        validation::required_keyspace(violations, "keyspace", &self.keyspace);
        validation::table_names(violations, "tables", &self.tables);
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
        let super::target::Target {
            cassandra,
            keyspace,
            tables,
        } = super::target::target(&context, request.keyspace, request.tables).await?;
        let status = context
            .cancellable(cassandra.cleanup(request.jobs, &keyspace, &tables))
            .await??;
        super::sstables::outcome(status, "cleaning up", &keyspace)
    }
}
