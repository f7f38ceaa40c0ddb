//! What `refresh` and `truncate` share: a request naming one table of a keyspace, and an operation that checks
//! the table exists and makes one Cassandra call on it. Each type only says which call ([`TableAction`]).

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::cassandra::{Cassandra, CassandraError};
use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::validation::{self, Validate, Violations};

/// `keyspace` and `table`, both required.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct OneTableRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyspace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
}

impl Validate for OneTableRequest {
    fn validate(&self, violations: &mut Violations) {
        validation::required_keyspace(violations, "keyspace", &self.keyspace);
        validation::required_table(violations, "table", &self.table);
    }
}

/// The one Cassandra call an operation on one table makes.
pub trait TableAction: Send + Sync + 'static {
    /// The operation's `type`.
    const TYPE: &'static str;

    fn apply(
        cassandra: &Cassandra,
        keyspace: &str,
        table: &str,
    ) -> impl Future<Output = Result<(), CassandraError>> + Send;
}

/// The operation of the type `A` names.
pub struct OnTable<A>(pub A);

impl<A: TableAction> Operation for OnTable<A> {
    const TYPE: &'static str = A::TYPE;
    type Request = OneTableRequest;

    async fn run(
        &self,
        request: OneTableRequest,
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
            .cancellable(A::apply(&cassandra, &keyspace, &table))
            .await??;
        Ok(())
    }
}
