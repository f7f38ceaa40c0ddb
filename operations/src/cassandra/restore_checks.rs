//! What a restore into a live node asks of Cassandra: is the cluster healthy enough to change data, and where
//! does a table keep its files.

use jmx::JavaValue;

use super::{Cassandra, CassandraError, STORAGE_SERVICE};

const FAILURE_DETECTOR: &str = "org.apache.cassandra.net:type=FailureDetector";
const STORAGE_PROXY: &str = "org.apache.cassandra.db:type=StorageProxy";

impl Cassandra {
    /// Esop's cluster health check before a restore phase that moves data: this node NORMAL, no node down,
    /// joining, leaving or moving, and one schema version. Returns what is wrong; empty when healthy.
    pub async fn cluster_health_problems(&self) -> Result<Vec<String>, CassandraError> {
        let mut problems = Vec::new();
        let mode = self.operation_mode().await?;
        if mode != "NORMAL" {
            problems.push(format!("this node is {mode}, not NORMAL"));
        }
        let down = self
            .jmx()
            .get_attribute(FAILURE_DETECTOR, "DownEndpointCount")
            .await?;
        match down.as_i64() {
            Some(0) => {}
            Some(count) => problems.push(format!("{count} node(s) down")),
            None => return Err(self.unexpected("DownEndpointCount", &down)),
        }
        for (what, nodes) in [
            ("unreachable", self.unreachable_nodes().await?),
            ("joining", self.joining_nodes().await?),
            ("leaving", self.leaving_nodes().await?),
            ("moving", self.moving_nodes().await?),
        ] {
            if !nodes.is_empty() {
                problems.push(format!("{what}: {}", nodes.join(", ")));
            }
        }
        let versions = self
            .jmx()
            .get_attribute(STORAGE_PROXY, "SchemaVersionsWithPort")
            .await?;
        match &versions {
            JavaValue::Map(entries) if entries.len() == 1 => {}
            JavaValue::Map(entries) => problems.push(format!(
                "the nodes disagree on the schema ({} versions)",
                entries.len()
            )),
            other => return Err(self.unexpected("SchemaVersionsWithPort", other)),
        }
        Ok(problems)
    }

    /// The table's data directories, one per data file directory (`<dir>/<keyspace>/<table>-<id>`); none when the
    /// table does not exist.
    pub async fn table_data_paths(
        &self,
        keyspace: &str,
        table: &str,
    ) -> Result<Vec<String>, CassandraError> {
        let Some(mbean) = self.table_mbean(keyspace, table).await? else {
            return Ok(Vec::new());
        };
        let value = self.jmx().get_attribute(&mbean, "DataPaths").await?;
        value
            .to_strings()
            .ok_or_else(|| self.unexpected("DataPaths", &value))
    }

    /// Whether the node answers over JMX at all (an IN_PLACE restore needs it down).
    pub async fn answers(&self) -> bool {
        self.jmx()
            .get_attribute(STORAGE_SERVICE, "SchemaVersion")
            .await
            .is_ok()
    }
}
