//! `upgradesstables`: rewrites SSTables in the current format, like `nodetool upgradesstables`.

use serde::{Deserialize, Serialize};

use super::target::{TableRequest, Target};
use crate::decode;
use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::validation::{self, Validate, Violations};

pub type UpgradeSSTablesRequest = TableRequest<UpgradeSSTablesFields>;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct UpgradeSSTablesFields {
    /// Parallel jobs; 0 lets Cassandra decide.
    #[serde(default, deserialize_with = "decode::i32")]
    pub jobs: i32,
    /// Rewrite SSTables already in the current format too. Icarus spells it `includeAllSStables`; the Instaclustr
    /// operator sends `includeAllSSTables`, which Icarus silently ignored and we accept.
    #[serde(
        default,
        rename = "includeAllSStables",
        alias = "includeAllSSTables",
        deserialize_with = "decode::bool"
    )]
    pub include_all_sstables: bool,
}

impl Validate for UpgradeSSTablesFields {
    fn validate(&self, violations: &mut Violations) {
        validation::non_negative(violations, "jobs", self.jobs);
    }
}

pub struct UpgradeSSTables;

impl Operation for UpgradeSSTables {
    const TYPE: &'static str = "upgradesstables";
    type Request = UpgradeSSTablesRequest;

    async fn run(
        &self,
        request: UpgradeSSTablesRequest,
        context: OperationContext,
    ) -> Result<(), OperationFailure> {
        let Target {
            cassandra,
            keyspace,
            tables,
        } = request.target.resolve(&context).await?;
        let upgrade = cassandra.upgrade_sstables(
            &keyspace,
            !request.fields.include_all_sstables,
            request.fields.jobs,
            &tables,
        );
        let status = context.cancellable(upgrade).await??;
        super::sstables::outcome(status, "upgrading", &keyspace)
    }
}
