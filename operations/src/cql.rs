//! A small CQL facade over the `scylla` driver: what a restore needs to recreate a dropped table from the
//! `schemaContent` (the snapshot's `schema.cql`) a backup manifest carries, under its ORIGINAL table id, so the
//! restored SSTables land in `<keyspace>/<table>-<id>`.
//!
//! The statements of `schema.cql` are split here ([`split_statements`]) and recognised by a few tokens
//! ([`SchemaCql::parse`]); Cassandra itself parses each statement.

mod schema;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use uuid::Uuid;

use crate::net::split_host_port;
use crate::secret::Secret;

pub use schema::{SchemaCql, SchemaError, split_statements};

/// Cassandra's default native-protocol port.
pub const DEFAULT_CQL_PORT: u16 = 9042;

/// The contact point: `HOST[:PORT]`, `:PORT` or `[V6]:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CqlAddress {
    pub host: String,
    pub port: u16,
}

impl Default for CqlAddress {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: DEFAULT_CQL_PORT,
        }
    }
}

impl fmt::Display for CqlAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a CQL address: use HOST:PORT, HOST, :PORT or [IPV6]:PORT")]
pub struct InvalidCqlAddress(String);

impl FromStr for CqlAddress {
    type Err = InvalidCqlAddress;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidCqlAddress(text.to_string());
        let (host, port) = split_host_port(text.trim()).ok_or_else(invalid)?;
        let port = match port {
            Some(port) => port.parse().ok().filter(|p| *p != 0).ok_or_else(invalid)?,
            None => DEFAULT_CQL_PORT,
        };
        Ok(Self {
            host: if host.is_empty() { "127.0.0.1" } else { host }.to_string(),
            port,
        })
    }
}

/// How to reach the node's CQL port, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CqlSettings {
    /// `None`: the address Cassandra reports over JMX ([`CqlSettings::with_address_from`]), since in a pod or on a
    /// host Cassandra often serves CQL only on its own address, not on loopback.
    pub address: Option<CqlAddress>,
    pub username: Option<String>,
    /// Redacted in `Debug`; sent only with a username.
    pub password: Option<Secret>,
    /// How long to wait for the first connection (and each later one).
    pub connect_timeout: Duration,
}

impl Default for CqlSettings {
    fn default() -> Self {
        Self {
            address: None,
            username: None,
            password: None,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl CqlSettings {
    /// These settings with the contact point decided: `--cql-address` when it was given, else the address the node
    /// serves CQL on as it reports over JMX. Logs which one is used.
    pub async fn with_address_from(
        mut self,
        cassandra: &crate::cassandra::Cassandra,
    ) -> Result<Self, CqlError> {
        if let Some(address) = &self.address {
            tracing::info!(%address, "connecting over CQL to --cql-address");
            return Ok(self);
        }
        let reported = cassandra
            .native_address()
            .await
            .map_err(|source| CqlError::Discover { source })?;
        let address: CqlAddress = reported
            .parse()
            .map_err(|_| CqlError::NotAnAddress { reported })?;
        tracing::info!(%address, "connecting over CQL to the address Cassandra reports (set --cql-address to choose another)");
        self.address = Some(address);
        Ok(self)
    }
}

/// What went wrong talking CQL; every error names the contact point or the schema object concerned.
#[derive(Debug, thiserror::Error)]
pub enum CqlError {
    #[error("cannot learn Cassandra's CQL address over JMX: {source}; give it with --cql-address")]
    Discover {
        #[source]
        source: crate::cassandra::CassandraError,
    },

    #[error(
        "cannot learn Cassandra's CQL address over JMX: it reported '{reported}', which is not HOST:PORT; give it \
         with --cql-address"
    )]
    NotAnAddress { reported: String },

    #[error("cannot connect to Cassandra over CQL at {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: Box<scylla::errors::NewSessionError>,
    },

    #[error("CQL at {address} failed on `{statement}`: {source}")]
    Query {
        address: String,
        statement: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    #[error("the nodes did not agree on the schema (asked through {address}): {source}")]
    SchemaAgreement {
        address: String,
        #[source]
        source: Box<scylla::errors::SchemaAgreementError>,
    },

    #[error(
        "keyspace '{keyspace}' does not exist: create the keyspace first (a backup manifest carries no keyspace \
         definition)"
    )]
    KeyspaceMissing { keyspace: String },

    #[error(
        "table {keyspace}.{table} exists with id {existing}, but the backup's schema has id {expected}: drop it or \
         restore into it without recreating it"
    )]
    IdMismatch {
        keyspace: String,
        table: String,
        existing: Uuid,
        expected: Uuid,
    },

    #[error("the schema given for {keyspace}.{table} is unusable: {source}")]
    Schema {
        keyspace: String,
        table: String,
        #[source]
        source: SchemaError,
    },

    #[error("table {keyspace}.{table} is still missing after running its schema through {address}")]
    NotCreated {
        address: String,
        keyspace: String,
        table: String,
    },
}

/// A CQL session to the node (and, through it, the cluster).
pub struct CqlSession {
    session: Session,
    address: String,
}

impl fmt::Debug for CqlSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CqlSession")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl CqlSession {
    /// Connects to the contact point (discovering the other nodes from it): 127.0.0.1:9042 when the settings name
    /// none ([`CqlSettings::with_address_from`] names the node's own).
    pub async fn connect(settings: &CqlSettings) -> Result<Self, CqlError> {
        let address = settings.address.clone().unwrap_or_default().to_string();
        let mut builder = SessionBuilder::new()
            .known_node(&address)
            .connection_timeout(settings.connect_timeout)
            // We read system_schema ourselves; the driver's copy of every keyspace's schema is not needed.
            .fetch_schema_metadata(false);
        if let Some(username) = &settings.username {
            let password = settings.password.as_ref().map_or("", Secret::expose);
            builder = builder.user(username, password);
        }
        let session = builder.build().await.map_err(|source| CqlError::Connect {
            address: address.clone(),
            source: Box::new(source),
        })?;
        tracing::debug!(address = %address, "connected over CQL");
        Ok(Self { session, address })
    }

    /// The contact point this session was opened with.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Whether the keyspace exists (`keyspace` as stored: case-sensitive, unquoted).
    pub async fn keyspace_exists(&self, keyspace: &str) -> Result<bool, CqlError> {
        const QUERY: &str =
            "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = ?";
        let result = self.query(QUERY, (keyspace,)).await?;
        let rows = self.rows::<(String,)>(QUERY, result)?;
        Ok(!rows.is_empty())
    }

    /// The table's id from `system_schema.tables`, or `None` when it does not exist.
    pub async fn table_id(&self, keyspace: &str, table: &str) -> Result<Option<Uuid>, CqlError> {
        const QUERY: &str =
            "SELECT id FROM system_schema.tables WHERE keyspace_name = ? AND table_name = ?";
        let result = self.query(QUERY, (keyspace, table)).await?;
        let rows = self.rows::<(Uuid,)>(QUERY, result)?;
        Ok(rows.into_iter().next().map(|(id,)| id))
    }

    /// Recreates `keyspace.table` from the `schema.cql` text of its snapshot (a manifest's `schemaContent`):
    /// its user types, the table with its original id (`WITH ID = ...`), dropped columns and indexes; waits for
    /// schema agreement and returns the table's id.
    ///
    /// The keyspace must exist. A table that exists already with the schema's id is left as it is (the
    /// statements are not run again: re-dropping columns would fail); one with another id is an error naming both.
    pub async fn recreate_table(
        &self,
        keyspace: &str,
        table: &str,
        schema_content: &str,
    ) -> Result<Uuid, CqlError> {
        let schema = SchemaCql::parse(schema_content, keyspace, table).map_err(|source| {
            CqlError::Schema {
                keyspace: keyspace.to_string(),
                table: table.to_string(),
                source,
            }
        })?;
        if !self.keyspace_exists(keyspace).await? {
            return Err(CqlError::KeyspaceMissing {
                keyspace: keyspace.to_string(),
            });
        }
        if let Some(existing) = self.table_id(keyspace, table).await? {
            return match schema.table_id {
                Some(expected) if expected != existing => Err(CqlError::IdMismatch {
                    keyspace: keyspace.to_string(),
                    table: table.to_string(),
                    existing,
                    expected,
                }),
                _ => {
                    tracing::info!(keyspace, table, id = %existing, "table exists already; schema not run");
                    Ok(existing)
                }
            };
        }
        for statement in &schema.statements {
            tracing::debug!(keyspace, table, statement = %statement, "running schema statement");
            self.query(statement.as_str(), ()).await?;
        }
        self.session
            .await_schema_agreement()
            .await
            .map_err(|source| CqlError::SchemaAgreement {
                address: self.address.clone(),
                source: Box::new(source),
            })?;
        let id = self
            .table_id(keyspace, table)
            .await?
            .ok_or_else(|| CqlError::NotCreated {
                address: self.address.clone(),
                keyspace: keyspace.to_string(),
                table: table.to_string(),
            })?;
        tracing::info!(keyspace, table, id = %id, statements = schema.statements.len(), "table recreated");
        Ok(id)
    }

    async fn query(
        &self,
        statement: &str,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<scylla::response::query_result::QueryResult, CqlError> {
        self.session
            .query_unpaged(statement, values)
            .await
            .map_err(|e| self.query_error(statement, e))
    }

    fn rows<R>(
        &self,
        statement: &str,
        result: scylla::response::query_result::QueryResult,
    ) -> Result<Vec<R>, CqlError>
    where
        R: for<'frame> scylla::deserialize::row::DeserializeRow<'frame, 'frame>,
    {
        let rows = result
            .into_rows_result()
            .map_err(|e| self.query_error(statement, e))?;
        rows.rows::<R>()
            .map_err(|e| self.query_error(statement, e))?
            .collect::<Result<Vec<R>, _>>()
            .map_err(|e| self.query_error(statement, e))
    }

    fn query_error(
        &self,
        statement: &str,
        error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> CqlError {
        CqlError::Query {
            address: self.address.clone(),
            statement: abbreviate(statement),
            source: error.into(),
        }
    }
}

/// The first line of a statement, cut short: enough to recognise it in an error message.
fn abbreviate(statement: &str) -> String {
    const MAX: usize = 120;
    let first = statement.lines().next().unwrap_or_default().trim();
    if first.chars().count() > MAX || first.len() < statement.trim().len() {
        let cut: String = first.chars().take(MAX).collect();
        format!("{cut} ...")
    } else {
        first.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_cassandra_reports_wrongly_reads_as_before() {
        let error = CqlError::NotAnAddress {
            reported: "nowhere".into(),
        };
        assert_eq!(
            error.to_string(),
            concat!(
                "cannot learn Cassandra's CQL address over JMX: it reported 'nowhere', which is not HOST:PORT; ",
                "give it with --cql-address"
            )
        );
    }

    #[test]
    fn parses_addresses() {
        let parse = |s: &str| s.parse::<CqlAddress>().map(|a| a.to_string());
        assert_eq!(parse("127.0.0.2:9043").unwrap(), "127.0.0.2:9043");
        assert_eq!(parse("cassandra").unwrap(), "cassandra:9042");
        assert_eq!(parse(":9142").unwrap(), "127.0.0.1:9142");
        assert_eq!(parse("[::1]:9042").unwrap(), "[::1]:9042");
        assert_eq!(parse("::1").unwrap(), "[::1]:9042");
        for bad in ["host:0", "host:x", "host:70000", "[::1"] {
            let error = parse(bad).unwrap_err().to_string();
            assert!(error.contains(bad), "{error}");
        }
    }

    #[test]
    fn debug_never_shows_the_password() {
        let settings = CqlSettings {
            username: Some("cassandra".into()),
            password: Some(Secret::new("hunter2")),
            ..CqlSettings::default()
        };
        let debug = format!("{settings:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("cassandra"), "{debug}");
    }

    #[test]
    fn errors_name_what_they_concern() {
        let missing = CqlError::KeyspaceMissing {
            keyspace: "shop".into(),
        }
        .to_string();
        assert!(
            missing.contains("'shop'") && missing.contains("create the keyspace first"),
            "{missing}"
        );
        let existing = Uuid::from_u128(1);
        let expected = Uuid::from_u128(2);
        let mismatch = CqlError::IdMismatch {
            keyspace: "shop".into(),
            table: "orders".into(),
            existing,
            expected,
        }
        .to_string();
        assert!(mismatch.contains("shop.orders"), "{mismatch}");
        assert!(mismatch.contains(&existing.to_string()), "{mismatch}");
        assert!(mismatch.contains(&expected.to_string()), "{mismatch}");
    }

    #[test]
    fn abbreviates_long_statements_to_their_first_line() {
        assert_eq!(abbreviate("SELECT 1"), "SELECT 1");
        assert_eq!(
            abbreviate("CREATE TABLE a.b (\n  id int PRIMARY KEY\n)"),
            "CREATE TABLE a.b ( ..."
        );
    }

    #[tokio::test]
    async fn connect_errors_name_the_address() {
        // Port 1 on loopback: nothing listens there, so the connection is refused at once.
        let settings = CqlSettings {
            address: Some("127.0.0.1:1".parse().unwrap()),
            connect_timeout: Duration::from_secs(2),
            ..CqlSettings::default()
        };
        let error = CqlSession::connect(&settings)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("127.0.0.1:1"), "{error}");
    }
}
