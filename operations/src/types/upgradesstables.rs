//! `upgradesstables`: rewrites SSTables in the current format, like `nodetool upgradesstables`.

use serde::{Deserialize, Serialize};

use crate::decode;
use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::validation::{self, Validate, Violations};

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct UpgradeSSTablesRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyspace: Option<String>,
    /// Absent or empty: every table of the keyspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<String>>,
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

impl Validate for UpgradeSSTablesRequest {
    fn validate(&self, violations: &mut Violations) {
        validation::required_keyspace(violations, "keyspace", &self.keyspace);
        validation::table_names(violations, "tables", &self.tables);
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
        let super::target::Target {
            cassandra,
            keyspace,
            tables,
        } = super::target::target(&context, request.keyspace, request.tables).await?;
        let upgrade = cassandra.upgrade_sstables(
            &keyspace,
            !request.include_all_sstables,
            request.jobs,
            &tables,
        );
        let status = context.cancellable(upgrade).await??;
        super::sstables::outcome(status, "upgrading", &keyspace)
    }
}
