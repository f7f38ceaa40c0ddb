//! Request parts shared by the object-storage operations (backup, restore, list, remove-backup, commit logs): the
//! [`Connection`] group (where the backups live, how to reach the store), the [`StorageRequest`] that pairs it with
//! a type's own fields, and the rules several types share. Field names and defaults are Esop's.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::transfer::RetryPolicy;
use super::{StorageLocation, StorageOptions};
use crate::decode::{self, DecodeRequest};
use crate::validation::{self, Validate, Violations};

/// Esop's connection fields, which every storage operation takes: where the backups live and how to reach the
/// store.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    /// `protocol://bucket[/cluster/dc/node]`; parsed when the request is decoded.
    pub storage_location: StorageLocation,
    /// Parallel transfers.
    #[serde(
        default = "default_concurrent_connections",
        deserialize_with = "decode::i32_or::<_, 10>"
    )]
    pub concurrent_connections: i32,
    /// Plain HTTP to the store.
    #[serde(default, deserialize_with = "decode::bool")]
    pub insecure: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub skip_bucket_verification: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_settings: Option<ProxySettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
}

impl Connection {
    pub fn new(storage_location: StorageLocation) -> Self {
        Connection {
            storage_location,
            concurrent_connections: DEFAULT_CONCURRENT_CONNECTIONS,
            insecure: false,
            skip_bucket_verification: false,
            proxy_settings: None,
            retry: None,
        }
    }

    /// What the request adds to the sidecar's storage settings for its own connections.
    pub fn options(&self) -> StorageOptions {
        StorageOptions::of_request(self.proxy_settings.as_ref(), self.insecure)
    }

    /// Files transferred at once (validated to be at least 1).
    pub fn concurrency(&self) -> usize {
        usize::try_from(self.concurrent_connections)
            .unwrap_or(1)
            .max(1)
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::from(&self.retry.clone().unwrap_or_default())
    }
}

impl Validate for Connection {
    fn validate(&self, violations: &mut Violations) {
        if self.concurrent_connections < 1 {
            violations.add(
                "concurrentConnections",
                format!("must be 1 or more, got {}", self.concurrent_connections),
            );
        }
        if let Some(proxy) = &self.proxy_settings {
            proxy.validate(violations);
        }
        if let Some(retry) = &self.retry {
            retry.validate(violations);
        }
    }
}

/// A storage operation's request: the [`Connection`] group and the type's own `fields`, side by side in one JSON
/// object as Esop has them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageRequest<F> {
    #[serde(flatten)]
    pub connection: Connection,
    #[serde(flatten)]
    pub fields: F,
}

impl<F: DeserializeOwned> DecodeRequest for StorageRequest<F> {
    fn decode_request(body: serde_json::Value) -> Result<Self, (String, String)> {
        let connection = decode::request(body.clone())?;
        let fields = decode::request(body)?;
        Ok(StorageRequest { connection, fields })
    }
}

/// The rules of a storage type's own fields, which may depend on the connection (a location that must name the
/// node unless it is to be completed from Cassandra, say).
pub trait StorageFields {
    fn validate(&self, connection: &Connection, violations: &mut Violations);
}

impl<F: StorageFields> Validate for StorageRequest<F> {
    fn validate(&self, violations: &mut Violations) {
        self.connection.validate(violations);
        self.fields.validate(&self.connection, violations);
    }
}

/// A location that names the node (`PROTOCOL://BUCKET/CLUSTER/DC/NODE`), unless `completed_by` (the flag that
/// completes it from Cassandra) is set.
pub fn node_location(
    violations: &mut Violations,
    connection: &Connection,
    completed_by: Option<(&str, bool)>,
) {
    if connection.storage_location.node_path.is_some() {
        return;
    }
    match completed_by {
        Some((_, true)) => {}
        Some((flag, false)) => violations.add(
            "storageLocation",
            format!("must name the node (PROTOCOL://BUCKET/CLUSTER/DC/NODE) unless {flag} is true"),
        ),
        None => violations.add(
            "storageLocation",
            "must name the node (PROTOCOL://BUCKET/CLUSTER/DC/NODE)",
        ),
    }
}

/// `dataDirs`: absolute paths; absent means "ask Cassandra".
pub fn data_dirs(violations: &mut Violations, dirs: &Option<Vec<String>>) {
    for (index, dir) in dirs.iter().flatten().enumerate() {
        validation::absolute_path(violations, &format!("dataDirs[{index}]"), dir);
    }
}

pub const DEFAULT_CONCURRENT_CONNECTIONS: i32 = 10;

pub fn default_concurrent_connections() -> i32 {
    DEFAULT_CONCURRENT_CONNECTIONS
}

const NO_CLIENT_SIDE_ENCRYPTION: &str = "client-side encryption with a KMS key (Esop's kmsKeyId) is not supported: \
     nothing would be encrypted; use the bucket's default encryption (SSE-KMS) instead";

/// Esop encrypts S3 uploads on the client when given a KMS key; Daedalus does not, and refuses such a request rather
/// than upload in the clear what was meant to be encrypted.
pub fn kms_key_id(violations: &mut Violations, kms_key_id: &Option<String>) {
    if kms_key_id
        .as_deref()
        .is_some_and(|id| !id.trim().is_empty())
    {
        violations.add("kmsKeyId", NO_CLIENT_SIDE_ENCRYPTION);
    }
}

/// An upload refused because the sidecar's environment asks for client-side encryption.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "AWS_KMS_KEY_ID is set in the sidecar's environment: {}",
    NO_CLIENT_SIDE_ENCRYPTION
)]
pub struct KmsKeyInEnvironment;

/// Esop also takes the key from `AWS_KMS_KEY_ID` in its environment: an upload refuses to run with it set.
pub fn refuse_kms_from_environment() -> Result<(), KmsKeyInEnvironment> {
    match std::env::var("AWS_KMS_KEY_ID") {
        Ok(id) if !id.trim().is_empty() => Err(KmsKeyInEnvironment),
        _ => Ok(()),
    }
}

/// `proxySettings` (S3 only). The password is accepted but never echoed back, nor shown by `Debug`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
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

impl std::fmt::Debug for ProxySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxySettings")
            .field("use_proxy", &self.use_proxy)
            .field("proxy_host", &self.proxy_host)
            .field("proxy_port", &self.proxy_port)
            .field("proxy_username", &self.proxy_username)
            .field(
                "proxy_password",
                &self.proxy_password.as_ref().map(|_| "***"),
            )
            .field("proxy_protocol", &self.proxy_protocol)
            .finish()
    }
}

fn optional_port<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i32>, D::Error> {
    decode::i32(deserializer).map(|port| (port != 0).then_some(port))
}

impl ProxySettings {
    /// `http://[user:password@]host:port` (applied whenever host and port are set, as Esop 3 does).
    pub fn url(&self) -> Option<crate::secret::Secret> {
        let (host, port) = (self.proxy_host.as_ref()?, self.proxy_port?);
        let scheme = self
            .proxy_protocol
            .as_deref()
            .unwrap_or("http")
            .to_ascii_lowercase();
        let plain = format!("{scheme}://{host}:{port}");
        let Some(user) = &self.proxy_username else {
            return Some(crate::secret::Secret::new(plain));
        };
        // The URL setters percent-encode, so a password with `@`, `/` or `#` stays one password.
        let mut url = url::Url::parse(&plain).ok()?;
        url.set_username(user).ok()?;
        url.set_password(self.proxy_password.as_deref()).ok()?;
        Some(crate::secret::Secret::new(url.to_string()))
    }

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
        if let Some(host) = &self.proxy_host
            && !url::Url::parse(&format!("http://{host}")).is_ok_and(|url| url.path() == "/")
        {
            violations.add(
                "proxySettings.proxyHost",
                format!("must be a host name or address, got '{host}'"),
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

impl Default for Retry {
    fn default() -> Self {
        Retry {
            interval: default_retry_interval(),
            strategy: default_retry_strategy(),
            max_attempts: default_retry_attempts(),
            enabled: false,
        }
    }
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
    fn a_kms_key_in_the_environment_reads_as_before() {
        assert_eq!(
            KmsKeyInEnvironment.to_string(),
            format!(
                "AWS_KMS_KEY_ID is set in the sidecar's environment: {NO_CLIENT_SIDE_ENCRYPTION}"
            )
        );
        let failure = crate::operation::OperationFailure::from(KmsKeyInEnvironment);
        assert_eq!(failure.to_string(), KmsKeyInEnvironment.to_string());
        let source = std::error::Error::source(&failure).expect("the refusal");
        assert!(source.downcast_ref::<KmsKeyInEnvironment>().is_some());
    }

    #[test]
    fn proxy_urls_carry_credentials_only_inside_the_secret() {
        let proxy = ProxySettings {
            proxy_host: Some("proxy.local".into()),
            proxy_port: Some(3128),
            proxy_username: Some("u".into()),
            proxy_password: Some("p".into()),
            ..Default::default()
        };
        let url = proxy.url().unwrap();
        assert_eq!(url.expose(), "http://u:p@proxy.local:3128/");
        let awkward = ProxySettings {
            proxy_password: Some("p@ss/w#rd".into()),
            ..proxy.clone()
        };
        assert_eq!(
            awkward.url().unwrap().expose(),
            "http://u:p%40ss%2Fw%23rd@proxy.local:3128/"
        );
        assert!(!format!("{url:?}").contains(":p@"));
        assert!(!format!("{proxy:?}").contains("\"p\""), "{proxy:?}");
    }
}
