//! `scrub`: rewrites SSTables, dropping what cannot be read, like `nodetool scrub`.

use serde::{Deserialize, Serialize};

use crate::decode;
use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::validation::{self, Validate, Violations};

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScrubRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyspace: Option<String>,
    /// Absent or empty: every table of the keyspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<String>>,
    /// Parallel jobs; 0 lets Cassandra decide.
    #[serde(default, deserialize_with = "decode::i32")]
    pub jobs: i32,
    #[serde(default, deserialize_with = "decode::bool")]
    pub disable_snapshot: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub skip_corrupted: bool,
    /// Skips the data check (`checkData = !noValidate` on the JMX call).
    #[serde(default, deserialize_with = "decode::bool")]
    pub no_validate: bool,
    #[serde(
        default,
        rename = "reinsertOverflowedTTL",
        deserialize_with = "decode::bool"
    )]
    pub reinsert_overflowed_ttl: bool,
}

impl Validate for ScrubRequest {
    fn validate(&self, violations: &mut Violations) {
        validation::required_keyspace(violations, "keyspace", &self.keyspace);
        validation::table_names(violations, "tables", &self.tables);
        validation::non_negative(violations, "jobs", self.jobs);
    }
}

pub struct Scrub;

impl Operation for Scrub {
    const TYPE: &'static str = "scrub";
    type Request = ScrubRequest;

    async fn run(
        &self,
        request: ScrubRequest,
        context: OperationContext,
    ) -> Result<(), OperationFailure> {
        let super::target::Target {
            cassandra,
            keyspace,
            tables,
        } = super::target::target(&context, request.keyspace.clone(), request.tables.clone())
            .await?;
        let scrub = cassandra.scrub(
            request.disable_snapshot,
            request.skip_corrupted,
            !request.no_validate,
            request.reinsert_overflowed_ttl,
            request.jobs,
            &keyspace,
            &tables,
        );
        let status = context.cancellable(scrub).await??;
        super::sstables::outcome(status, "scrubbing", &keyspace)
    }
}
