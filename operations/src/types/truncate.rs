//! `truncate`: deletes every row of a table. Registered only with `--enable-truncate`.

use super::one_table::{OneTableRequest, TableAction};
use crate::cassandra::{Cassandra, CassandraError};

pub type TruncateRequest = OneTableRequest;

/// Registered as `OnTable(Truncate)`.
pub struct Truncate;

impl TableAction for Truncate {
    const TYPE: &'static str = "truncate";

    async fn apply(
        cassandra: &Cassandra,
        keyspace: &str,
        table: &str,
    ) -> Result<(), CassandraError> {
        cassandra.truncate(keyspace, table).await
    }
}
