//! `scrub`: rewrites SSTables, dropping what cannot be read, like `nodetool scrub`.

use serde::{Deserialize, Serialize};

use super::target::{TableRequest, Target};
use crate::decode;
use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::validation::{self, Validate, Violations};

pub type ScrubRequest = TableRequest<ScrubFields>;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScrubFields {
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

impl Validate for ScrubFields {
    fn validate(&self, violations: &mut Violations) {
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
        let Target {
            cassandra,
            keyspace,
            tables,
        } = request.target.resolve(&context).await?;
        let fields = request.fields;
        let scrub = cassandra.scrub(
            fields.disable_snapshot,
            fields.skip_corrupted,
            !fields.no_validate,
            fields.reinsert_overflowed_ttl,
            fields.jobs,
            &keyspace,
            &tables,
        );
        let status = context.cancellable(scrub).await??;
        super::sstables::outcome(status, "scrubbing", &keyspace)
    }
}
