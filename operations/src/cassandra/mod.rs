//! The Cassandra facade: typed, version-aware calls on the node's MBeans, over the native JMX client.
//!
//! Attribute and operation names follow `StorageServiceMBean`, `EndpointSnitchInfoMBean` and the table MBeans
//! of Cassandra 4.0, 4.1 and 5.0; where the versions differ, the facade picks the call for the node's version.

mod maintenance;
mod restore_checks;
pub mod topology;
mod version;

use std::collections::BTreeMap;

use jmx::{JavaArg, JavaValue, JmxClient, JmxError};

pub use maintenance::{LONG_CALL, SsTableOpStatus};
pub use version::CassandraVersion;

pub const STORAGE_SERVICE: &str = "org.apache.cassandra.db:type=StorageService";
pub const ENDPOINT_SNITCH_INFO: &str = "org.apache.cassandra.db:type=EndpointSnitchInfo";

/// What a facade call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CassandraError {
    #[error(transparent)]
    Jmx(#[from] JmxError),
    #[error("Cassandra at {address} has no keyspace {keyspace}")]
    NoSuchKeyspace { address: String, keyspace: String },
    #[error("Cassandra at {address} has no table {keyspace}.{table}")]
    NoSuchTable {
        address: String,
        keyspace: String,
        table: String,
    },
    #[error(
        "Cassandra at {address} answered {what} with {found}, which this sidecar does not understand"
    )]
    Unexpected {
        address: String,
        what: &'static str,
        found: String,
    },
}

impl CassandraError {
    /// Cassandra did not answer (stopped, restarting, unreachable), as opposed to answering with an error.
    pub fn is_connection_problem(&self) -> bool {
        matches!(self, CassandraError::Jmx(error) if error.is_connection_problem())
    }
}

/// One node, reached over JMX.
#[derive(Debug, Clone)]
pub struct Cassandra {
    jmx: JmxClient,
}

/// A node of the ring as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingMember {
    pub address: String,
    pub host_id: String,
    pub datacenter: String,
    pub rack: String,
}

impl Cassandra {
    pub fn new(jmx: JmxClient) -> Self {
        Self { jmx }
    }

    pub fn jmx(&self) -> &JmxClient {
        &self.jmx
    }

    fn unexpected(&self, what: &'static str, found: &JavaValue) -> CassandraError {
        CassandraError::Unexpected {
            address: self.jmx.address().to_string(),
            what,
            found: format!("{found:?}"),
        }
    }

    async fn string(&self, mbean: &str, attribute: &'static str) -> Result<String, CassandraError> {
        let value = self.jmx.get_attribute(mbean, attribute).await?;
        value
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| self.unexpected(attribute, &value))
    }

    async fn strings(
        &self,
        mbean: &str,
        attribute: &'static str,
    ) -> Result<Vec<String>, CassandraError> {
        let value = self.jmx.get_attribute(mbean, attribute).await?;
        value
            .to_strings()
            .ok_or_else(|| self.unexpected(attribute, &value))
    }

    async fn string_map(
        &self,
        mbean: &str,
        attribute: &'static str,
    ) -> Result<BTreeMap<String, String>, CassandraError> {
        let value = self.jmx.get_attribute(mbean, attribute).await?;
        match &value {
            JavaValue::Map(entries) => entries
                .iter()
                .map(|(k, v)| match (k.as_str(), v.as_str()) {
                    (Some(k), Some(v)) => Ok((k.to_string(), v.to_string())),
                    _ => Err(self.unexpected(attribute, &value)),
                })
                .collect(),
            _ => Err(self.unexpected(attribute, &value)),
        }
    }

    pub async fn release_version(&self) -> Result<CassandraVersion, CassandraError> {
        let text = self.string(STORAGE_SERVICE, "ReleaseVersion").await?;
        CassandraVersion::parse(&text)
            .ok_or_else(|| self.unexpected("ReleaseVersion", &JavaValue::String(text)))
    }

    /// `STARTING`, `NORMAL`, `JOINING`, `LEAVING`, `DECOMMISSIONED`, `MOVING`, `DRAINING`, `DRAINED`, and in 5.0
    /// `JOINING_FAILED`, `DECOMMISSION_FAILED`.
    pub async fn operation_mode(&self) -> Result<String, CassandraError> {
        self.string(STORAGE_SERVICE, "OperationMode").await
    }

    pub async fn schema_version(&self) -> Result<String, CassandraError> {
        self.string(STORAGE_SERVICE, "SchemaVersion").await
    }

    pub async fn cluster_name(&self) -> Result<String, CassandraError> {
        self.string(STORAGE_SERVICE, "ClusterName").await
    }

    pub async fn local_host_id(&self) -> Result<String, CassandraError> {
        self.string(STORAGE_SERVICE, "LocalHostId").await
    }

    /// Endpoint address → host id, for every node in the ring.
    pub async fn endpoint_to_host_id(&self) -> Result<BTreeMap<String, String>, CassandraError> {
        self.string_map(STORAGE_SERVICE, "EndpointToHostId").await
    }

    pub async fn live_nodes(&self) -> Result<Vec<String>, CassandraError> {
        self.strings(STORAGE_SERVICE, "LiveNodes").await
    }

    pub async fn unreachable_nodes(&self) -> Result<Vec<String>, CassandraError> {
        self.strings(STORAGE_SERVICE, "UnreachableNodes").await
    }

    pub async fn joining_nodes(&self) -> Result<Vec<String>, CassandraError> {
        self.strings(STORAGE_SERVICE, "JoiningNodes").await
    }

    pub async fn leaving_nodes(&self) -> Result<Vec<String>, CassandraError> {
        self.strings(STORAGE_SERVICE, "LeavingNodes").await
    }

    pub async fn moving_nodes(&self) -> Result<Vec<String>, CassandraError> {
        self.strings(STORAGE_SERVICE, "MovingNodes").await
    }

    /// This node's tokens.
    pub async fn tokens(&self) -> Result<Vec<String>, CassandraError> {
        self.strings(STORAGE_SERVICE, "Tokens").await
    }

    /// The tokens of any node of the ring (`StorageService.getTokens(endpoint)`).
    pub async fn tokens_of(&self, endpoint: &str) -> Result<Vec<String>, CassandraError> {
        let value = self
            .jmx
            .invoke(
                STORAGE_SERVICE,
                "getTokens",
                &[JavaArg::String(endpoint.into())],
                &["java.lang.String"],
            )
            .await?;
        value
            .to_strings()
            .ok_or_else(|| self.unexpected("getTokens", &value))
    }

    pub async fn local_datacenter(&self) -> Result<String, CassandraError> {
        self.string(ENDPOINT_SNITCH_INFO, "Datacenter").await
    }

    pub async fn local_rack(&self) -> Result<String, CassandraError> {
        self.string(ENDPOINT_SNITCH_INFO, "Rack").await
    }

    /// The data centre of any endpoint.
    pub async fn datacenter_of(&self, endpoint: &str) -> Result<String, CassandraError> {
        self.snitch_lookup("getDatacenter", endpoint).await
    }

    /// The rack of any endpoint (Icarus asked for the data centre twice here; this asks for the rack).
    pub async fn rack_of(&self, endpoint: &str) -> Result<String, CassandraError> {
        self.snitch_lookup("getRack", endpoint).await
    }

    async fn snitch_lookup(
        &self,
        operation: &'static str,
        endpoint: &str,
    ) -> Result<String, CassandraError> {
        let value = self
            .jmx
            .invoke(
                ENDPOINT_SNITCH_INFO,
                operation,
                &[JavaArg::String(endpoint.into())],
                &["java.lang.String"],
            )
            .await?;
        value
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| self.unexpected(operation, &value))
    }

    /// Every node of the ring with its host id, data centre and rack.
    pub async fn ring(&self) -> Result<Vec<RingMember>, CassandraError> {
        let mut members = Vec::new();
        for (address, host_id) in self.endpoint_to_host_id().await? {
            let datacenter = self.datacenter_of(&address).await?;
            let rack = self.rack_of(&address).await?;
            members.push(RingMember {
                address,
                host_id,
                datacenter,
                rack,
            });
        }
        Ok(members)
    }

    /// The `host:port` this node serves CQL on, as it tells drivers and other nodes (`broadcast_rpc_address`, else
    /// `rpc_address`, and `native_transport_port`). `system_schema` is a keyspace every node replicates only to
    /// itself, so each of its ranges names this node alone. 4.0 and later.
    pub async fn native_address(&self) -> Result<String, CassandraError> {
        const OPERATION: &str = "getRangeToNativeaddressWithPortMap";
        let value = self
            .jmx
            .invoke(
                STORAGE_SERVICE,
                OPERATION,
                &[JavaArg::String("system_schema".into())],
                &["java.lang.String"],
            )
            .await?;
        let JavaValue::Map(ranges) = &value else {
            return Err(self.unexpected(OPERATION, &value));
        };
        ranges
            .iter()
            .find_map(|(_, replicas)| replicas.to_strings()?.into_iter().next())
            // InetAddressAndPort may print its host name part as `name/address`.
            .map(|address| match address.rsplit_once('/') {
                Some((_, address)) => address.to_string(),
                None => address,
            })
            .ok_or_else(|| self.unexpected(OPERATION, &value))
    }

    pub async fn data_file_locations(&self) -> Result<Vec<String>, CassandraError> {
        self.strings(STORAGE_SERVICE, "AllDataFileLocations").await
    }

    /// `local_system_data_file_directory` (4.0+), where `system` and `system_schema` live when it is set; empty on
    /// a version without the attribute.
    pub async fn local_system_data_file_locations(&self) -> Result<Vec<String>, CassandraError> {
        match self
            .strings(STORAGE_SERVICE, "LocalSystemKeyspacesDataFileLocations")
            .await
        {
            Err(CassandraError::Jmx(JmxError::AttributeNotFound { .. })) => Ok(Vec::new()),
            other => other,
        }
    }

    pub async fn commitlog_location(&self) -> Result<String, CassandraError> {
        self.string(STORAGE_SERVICE, "CommitLogLocation").await
    }

    /// `archive_command` of `commitlog_archiving.properties`; empty when archiving is off.
    pub async fn commitlog_archive_command(&self) -> Result<String, CassandraError> {
        self.string("org.apache.cassandra.db:type=Commitlog", "ArchiveCommand")
            .await
    }

    pub async fn saved_caches_location(&self) -> Result<String, CassandraError> {
        self.string(STORAGE_SERVICE, "SavedCachesLocation").await
    }

    /// Every keyspace, system ones included.
    pub async fn keyspaces(&self) -> Result<Vec<String>, CassandraError> {
        self.strings(STORAGE_SERVICE, "Keyspaces").await
    }

    /// The tables of a keyspace, from the table MBeans Cassandra registers (secondary indexes excluded).
    pub async fn tables(&self, keyspace: &str) -> Result<Vec<String>, CassandraError> {
        let pattern = format!("org.apache.cassandra.db:type=Tables,keyspace={keyspace},*");
        let mut tables: Vec<String> = self
            .jmx
            .query_names(Some(&pattern))
            .await?
            .iter()
            .filter_map(|name| key_property(name, "table"))
            .collect();
        tables.sort();
        Ok(tables)
    }

    /// Fails with a clear error unless the keyspace, and each of `tables` in it, exist.
    pub async fn require_tables(
        &self,
        keyspace: &str,
        tables: &[String],
    ) -> Result<(), CassandraError> {
        if !self.keyspaces().await?.iter().any(|k| k == keyspace) {
            return Err(CassandraError::NoSuchKeyspace {
                address: self.jmx.address().to_string(),
                keyspace: keyspace.to_string(),
            });
        }
        if tables.is_empty() {
            return Ok(());
        }
        let existing = self.tables(keyspace).await?;
        match tables.iter().find(|t| !existing.contains(t)) {
            Some(missing) => Err(CassandraError::NoSuchTable {
                address: self.jmx.address().to_string(),
                keyspace: keyspace.to_string(),
                table: missing.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Takes a snapshot named `tag` of `entities` (keyspaces, or `ks.table` entries; empty = everything).
    /// `ttl` (4.1+) makes Cassandra remove it after that long.
    pub async fn take_snapshot(
        &self,
        tag: &str,
        entities: &[String],
        ttl: Option<&str>,
        skip_flush: bool,
    ) -> Result<(), CassandraError> {
        let mut options = vec![("skipFlush".to_string(), skip_flush.to_string())];
        if let Some(ttl) = ttl {
            options.push(("ttl".to_string(), ttl.to_string()));
        }
        self.jmx
            .invoke(
                STORAGE_SERVICE,
                "takeSnapshot",
                &[
                    JavaArg::String(tag.into()),
                    JavaArg::StringMap(options),
                    JavaArg::StringArray(entities.to_vec()),
                ],
                &["java.lang.String", "java.util.Map", "[Ljava.lang.String;"],
            )
            .await?;
        Ok(())
    }

    /// Removes the snapshot `tag` from `keyspaces` (empty = all keyspaces).
    pub async fn clear_snapshot(
        &self,
        tag: &str,
        keyspaces: &[String],
    ) -> Result<(), CassandraError> {
        let version = self.release_version().await?;
        let (params, signature): (Vec<JavaArg>, Vec<&str>) = if version.at_least(5, 0) {
            (
                vec![
                    JavaArg::StringMap(vec![]),
                    JavaArg::String(tag.into()),
                    JavaArg::StringArray(keyspaces.to_vec()),
                ],
                vec!["java.util.Map", "java.lang.String", "[Ljava.lang.String;"],
            )
        } else {
            (
                vec![
                    JavaArg::String(tag.into()),
                    JavaArg::StringArray(keyspaces.to_vec()),
                ],
                vec!["java.lang.String", "[Ljava.lang.String;"],
            )
        };
        self.jmx
            .invoke(STORAGE_SERVICE, "clearSnapshot", &params, &signature)
            .await?;
        Ok(())
    }

    /// Snapshot tag → the tables it holds, as (keyspace, table) pairs.
    pub async fn snapshots(
        &self,
    ) -> Result<BTreeMap<String, Vec<(String, String)>>, CassandraError> {
        let version = self.release_version().await?;
        let details = if version.at_least(4, 1) {
            self.jmx
                .invoke(
                    STORAGE_SERVICE,
                    "getSnapshotDetails",
                    &[JavaArg::StringMap(vec![])],
                    &["java.util.Map"],
                )
                .await?
        } else {
            self.jmx
                .get_attribute(STORAGE_SERVICE, "SnapshotDetails")
                .await?
        };
        let JavaValue::Map(entries) = &details else {
            return Err(self.unexpected("getSnapshotDetails", &details));
        };
        let mut snapshots = BTreeMap::new();
        for (tag, table) in entries {
            let (Some(tag), JavaValue::Tabular(table)) = (tag.as_str(), table) else {
                return Err(self.unexpected("getSnapshotDetails", &details));
            };
            let mut tables: Vec<(String, String)> = table
                .rows
                .iter()
                .filter_map(|row| {
                    let keyspace = row.items.get("Keyspace name")?.as_str()?;
                    let table = row.items.get("Column family name")?.as_str()?;
                    Some((keyspace.to_string(), table.to_string()))
                })
                .collect();
            tables.sort();
            snapshots.insert(tag.to_string(), tables);
        }
        Ok(snapshots)
    }
}

/// `key=value` of an ObjectName's key property list.
fn key_property(name: &str, key: &str) -> Option<String> {
    let (_, properties) = name.split_once(':')?;
    properties
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_string())
}
