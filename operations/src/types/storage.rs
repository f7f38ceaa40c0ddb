//! Request parts shared by the object-storage operations (backup, restore): where the backup lives, which
//! keyspaces and tables, and how to reach the store. Field names and defaults are Esop's.

use serde::{Deserialize, Serialize};

use crate::decode;
use crate::validation::{self, Violations};

/// Storage providers Esop 3 knows.
const PROVIDERS: [&str; 4] = ["s3", "gcp", "azure", "file"];

/// `protocol://bucket[/cluster/dc/node]`, or `file:///dir/bucket/cluster/dc/node`, as Esop parses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageLocation {
    pub protocol: String,
    pub bucket: String,
    /// `(cluster, dc, node)` when the location names a node; absent in the global form `protocol://bucket`.
    pub node_path: Option<(String, String, String)>,
}

impl StorageLocation {
    pub fn parse(text: &str) -> Result<StorageLocation, String> {
        let trimmed = text.trim().trim_end_matches('/');
        let Some((protocol, rest)) = trimmed.split_once("://") else {
            return Err(format!(
                "'{text}' is not a storage location: use PROTOCOL://BUCKET[/CLUSTER/DC/NODE]"
            ));
        };
        if !PROVIDERS.contains(&protocol) {
            return Err(format!(
                "unknown storage provider '{protocol}'; available storage providers: {}",
                PROVIDERS.join(", ")
            ));
        }
        let segments: Vec<&str> = rest.split('/').collect();
        if protocol == "file" {
            // file:///<dir>/<bucket>/<cluster>/<dc>/<node>: the last four segments, after a base directory.
            if !rest.starts_with('/')
                || segments.len() < 6
                || segments.iter().skip(1).any(|s| s.is_empty())
            {
                return Err(format!(
                    "'{text}' is not a file location: use file:///DIRECTORY/BUCKET/CLUSTER/DC/NODE"
                ));
            }
            let n = segments.len();
            return Ok(StorageLocation {
                protocol: protocol.into(),
                bucket: segments[n - 4].into(),
                node_path: Some((
                    segments[n - 3].into(),
                    segments[n - 2].into(),
                    segments[n - 1].into(),
                )),
            });
        }
        if segments.iter().any(|s| s.is_empty()) {
            return Err(format!("'{text}' has an empty path segment"));
        }
        match segments.as_slice() {
            [bucket] => Ok(StorageLocation {
                protocol: protocol.into(),
                bucket: (*bucket).into(),
                node_path: None,
            }),
            [bucket, cluster, dc, node] => Ok(StorageLocation {
                protocol: protocol.into(),
                bucket: (*bucket).into(),
                node_path: Some(((*cluster).into(), (*dc).into(), (*node).into())),
            }),
            _ => Err(format!(
                "'{text}' is not a storage location: use {protocol}://BUCKET (all nodes) or \
                 {protocol}://BUCKET/CLUSTER/DC/NODE (prefixes inside a bucket are not supported, as in Esop)"
            )),
        }
    }
}

/// A required `storageLocation` field.
pub fn storage_location(violations: &mut Violations, location: &Option<String>) {
    match location {
        None => violations.add("storageLocation", "is required"),
        Some(text) => {
            if let Err(message) = StorageLocation::parse(text) {
                violations.add("storageLocation", message);
            }
        }
    }
}

/// `entities`: `""` (everything), keyspaces `"ks1,ks2"`, or tables `"ks1.t1 ks2.t2"`; commas or spaces
/// separate; the two forms may not be mixed.
pub fn entities(violations: &mut Violations, entities: &Option<String>) {
    let Some(text) = entities else { return };
    let items: Vec<&str> = text
        .split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let tables = items.iter().filter(|item| item.contains('.')).count();
    if tables != 0 && tables != items.len() {
        violations.add(
            "entities",
            "mixes keyspaces and keyspace.table entries; use one form",
        );
        return;
    }
    for item in items {
        let (keyspace, table) = item.split_once('.').unwrap_or((item, ""));
        if !validation::is_keyspace_name(keyspace)
            || (!table.is_empty() || item.contains('.')) && !validation::is_table_name(table)
        {
            violations.add(
                "entities",
                format!("'{item}' is not a keyspace or keyspace.table name"),
            );
        }
    }
}

/// `dataDirs`: absolute paths; absent means "ask Cassandra".
pub fn data_dirs(violations: &mut Violations, dirs: &Option<Vec<String>>) {
    for (index, dir) in dirs.iter().flatten().enumerate() {
        validation::absolute_path(violations, &format!("dataDirs[{index}]"), dir);
    }
}

/// `schemaVersion`, when given, is a schema UUID.
pub fn schema_version(violations: &mut Violations, version: &Option<String>) {
    if let Some(version) = version
        && uuid::Uuid::parse_str(version).is_err()
    {
        violations.add(
            "schemaVersion",
            format!("'{version}' is not a schema version (a UUID)"),
        );
    }
}

/// `timeout` of a global request, in hours; Icarus turns values below 1 into its default, 5.
pub fn timeout_hours<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i32, D::Error> {
    let hours = decode::i32(deserializer)?;
    Ok(if hours < 1 {
        DEFAULT_TIMEOUT_HOURS
    } else {
        hours
    })
}

pub const DEFAULT_TIMEOUT_HOURS: i32 = 5;
pub const DEFAULT_CONCURRENT_CONNECTIONS: i32 = 10;

pub fn default_timeout_hours() -> i32 {
    DEFAULT_TIMEOUT_HOURS
}

pub fn default_concurrent_connections() -> i32 {
    DEFAULT_CONCURRENT_CONNECTIONS
}

/// At least one connection.
pub fn concurrent_connections(violations: &mut Violations, connections: i32) {
    if connections < 1 {
        violations.add(
            "concurrentConnections",
            format!("must be 1 or more, got {connections}"),
        );
    }
}

/// `proxySettings` (S3 only). The password is accepted but never echoed back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxySettings {
    #[serde(default, deserialize_with = "decode::bool")]
    pub use_proxy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_host: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_port"
    )]
    pub proxy_port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_username: Option<String>,
    #[serde(default, skip_serializing)]
    pub proxy_password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<String>,
}

fn optional_port<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i32>, D::Error> {
    decode::i32(deserializer).map(|port| (port != 0).then_some(port))
}

impl ProxySettings {
    pub fn validate(&self, violations: &mut Violations) {
        if let Some(port) = self.proxy_port
            && !(1..=65535).contains(&port)
        {
            violations.add(
                "proxySettings.proxyPort",
                format!("must be a port number, got {port}"),
            );
        }
        if let Some(protocol) = &self.proxy_protocol
            && !matches!(protocol.to_ascii_lowercase().as_str(), "http" | "https")
        {
            violations.add(
                "proxySettings.proxyProtocol",
                format!("must be http or https, got '{protocol}'"),
            );
        }
        if self.proxy_port.is_some() != self.proxy_host.is_some() {
            violations.add("proxySettings", "proxyHost and proxyPort go together");
        }
    }
}

/// `retry` of uploads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Retry {
    #[serde(
        default = "default_retry_interval",
        deserialize_with = "decode::i32_or::<_, 10>"
    )]
    pub interval: i32,
    #[serde(default = "default_retry_strategy", deserialize_with = "strategy")]
    pub strategy: String,
    #[serde(
        default = "default_retry_attempts",
        deserialize_with = "decode::i32_or::<_, 3>"
    )]
    pub max_attempts: i32,
    #[serde(default, deserialize_with = "decode::bool")]
    pub enabled: bool,
}

fn default_retry_interval() -> i32 {
    10
}

fn default_retry_strategy() -> String {
    "LINEAR".into()
}

fn default_retry_attempts() -> i32 {
    3
}

fn strategy<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(decode::upper_case(deserializer)?.unwrap_or_else(default_retry_strategy))
}

impl Retry {
    pub fn validate(&self, violations: &mut Violations) {
        validation::non_negative(violations, "retry.interval", self.interval);
        validation::non_negative(violations, "retry.maxAttempts", self.max_attempts);
        if !matches!(self.strategy.as_str(), "LINEAR" | "EXPONENTIAL") {
            violations.add(
                "retry.strategy",
                format!("must be LINEAR or EXPONENTIAL, got '{}'", self.strategy),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_storage_locations_as_esop_does() {
        let node = StorageLocation::parse("s3://bucket/my-cluster/dc1/6f5b4c0a-1d2e/").unwrap();
        assert_eq!(node.bucket, "bucket");
        assert_eq!(
            node.node_path,
            Some(("my-cluster".into(), "dc1".into(), "6f5b4c0a-1d2e".into()))
        );
        assert_eq!(
            StorageLocation::parse("gcp://bucket").unwrap().node_path,
            None
        );
        let file = StorageLocation::parse("file:///var/backups/bucket/c/dc/n").unwrap();
        assert_eq!(
            (file.bucket.as_str(), file.node_path.is_some()),
            ("bucket", true)
        );
        assert!(
            StorageLocation::parse("ftp://bucket")
                .unwrap_err()
                .contains("available storage providers")
        );
        assert!(StorageLocation::parse("s3://bucket/prefix").is_err());
        assert!(StorageLocation::parse("file:///tmp/bucket").is_err());
        assert!(StorageLocation::parse("bucket").is_err());
    }

    #[test]
    fn entities_take_one_form() {
        let check = |text: &str| {
            let mut violations = Violations::default();
            entities(&mut violations, &Some(text.to_string()));
            violations.into_vec().len()
        };
        assert_eq!(check(""), 0);
        assert_eq!(check("ks1,ks2"), 0);
        assert_eq!(check("ks1.t1 ks2.t2"), 0);
        assert_eq!(check("ks1, ks2.t2"), 1);
        assert_eq!(check("ks-1"), 1);
        assert_eq!(check("ks1."), 1);
    }
}
