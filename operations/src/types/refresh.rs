//! `refresh`: loads SSTables placed in a table's data directory, like `nodetool refresh`.

use serde::{Deserialize, Serialize};

use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::validation::{self, Validate, Violations};

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct RefreshRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyspace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
}

impl Validate for RefreshRequest {
    fn validate(&self, violations: &mut Violations) {
        validation::required_keyspace(violations, "keyspace", &self.keyspace);
        validation::required_table(violations, "table", &self.table);
    }
}

pub struct Refresh;

impl Operation for Refresh {
    const TYPE: &'static str = "refresh";
    type Request = RefreshRequest;

    async fn run(
        &self,
        request: RefreshRequest,
        context: OperationContext,
    ) -> Result<(), OperationFailure> {
        let target =
            super::target::target(&context, request.keyspace, request.table.map(|t| vec![t]))
                .await?;
        let (cassandra, keyspace, table) = (
            target.cassandra,
            target.keyspace,
            target.tables.into_iter().next().unwrap_or_default(),
        );
        context
            .cancellable(cassandra.refresh(&keyspace, &table))
            .await??;
        Ok(())
    }
}
