//! `flush`: writes memtables to SSTables, like `nodetool flush`.

use serde::{Deserialize, Serialize};

use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::validation::{self, Validate, Violations};

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct FlushRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyspace: Option<String>,
    /// Absent or empty: every table of the keyspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<String>>,
}

impl Validate for FlushRequest {
    fn validate(&self, violations: &mut Violations) {
        validation::required_keyspace(violations, "keyspace", &self.keyspace);
        validation::table_names(violations, "tables", &self.tables);
    }
}

pub struct Flush;

impl Operation for Flush {
    const TYPE: &'static str = "flush";
    type Request = FlushRequest;

    async fn run(
        &self,
        request: FlushRequest,
        context: OperationContext,
    ) -> Result<(), OperationFailure> {
        let super::target::Target {
            cassandra,
            keyspace,
            tables,
        } = super::target::target(&context, request.keyspace, request.tables).await?;
        context
            .cancellable(cassandra.flush(&keyspace, &tables))
            .await??;
        Ok(())
    }
}
