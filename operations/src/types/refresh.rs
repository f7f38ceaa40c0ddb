//! `refresh`: loads SSTables placed in a table's data directory, like `nodetool refresh`.

use super::one_table::{OneTableRequest, TableAction};
use crate::cassandra::{Cassandra, CassandraError};

pub type RefreshRequest = OneTableRequest;

/// Registered as `OnTable(Refresh)`.
pub struct Refresh;

impl TableAction for Refresh {
    const TYPE: &'static str = "refresh";

    async fn apply(
        cassandra: &Cassandra,
        keyspace: &str,
        table: &str,
    ) -> Result<(), CassandraError> {
        cassandra.refresh(keyspace, table).await
    }
}
