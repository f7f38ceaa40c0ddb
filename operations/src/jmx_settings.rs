//! How to reach the Cassandra node's JMX agent, as given on the command line (Icarus's flag set).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::net::split_host_port;
use crate::secret::Secret;

/// Cassandra's default JMX port.
pub const DEFAULT_JMX_PORT: u16 = 7199;

/// A JMX endpoint: `[HOST][:PORT]` or a full `service:jmx:rmi:///jndi/rmi://HOST:PORT/jmxrmi` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JmxService {
    pub host: String,
    pub port: u16,
}

impl Default for JmxService {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: DEFAULT_JMX_PORT,
        }
    }
}

impl JmxService {
    /// The service URL a Java client would use for this endpoint.
    pub fn service_url(&self) -> String {
        format!("service:jmx:rmi:///jndi/rmi://{}/jmxrmi", self.host_port())
    }

    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for JmxService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.host_port())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{0}' is not a JMX service: use HOST:PORT, :PORT, HOST or service:jmx:rmi:///jndi/rmi://HOST:PORT/jmxrmi"
)]
pub struct InvalidJmxService(String);

impl FromStr for JmxService {
    type Err = InvalidJmxService;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidJmxService(text.to_string());
        let trimmed = text.trim();
        let address = match trimmed.strip_prefix("service:jmx:") {
            Some(url) => {
                // service:jmx:rmi:///jndi/rmi://HOST:PORT/jmxrmi: the registry address follows "rmi://".
                let after = url
                    .rsplit_once("rmi://")
                    .map(|(_, rest)| rest)
                    .ok_or_else(invalid)?;
                after
                    .split('/')
                    .next()
                    .filter(|a| !a.is_empty())
                    .ok_or_else(invalid)?
            }
            None => trimmed,
        };
        let (host, port) = split_host_port(address).ok_or_else(invalid)?;
        let host = if host.is_empty() { "127.0.0.1" } else { host };
        let port = match port {
            Some(port) => port.parse().ok().filter(|p| *p != 0).ok_or_else(invalid)?,
            None => DEFAULT_JMX_PORT,
        };
        Ok(JmxService {
            host: host.to_string(),
            port,
        })
    }
}

/// Everything needed to open a JMX connection to the local Cassandra node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JmxSettings {
    pub service: JmxService,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub truststore: Option<PathBuf>,
    pub truststore_password: Option<Secret>,
    pub keystore: Option<PathBuf>,
    pub keystore_password: Option<Secret>,
    /// Present a client certificate (the keystore) to the JMX server.
    pub client_auth: bool,
    /// Check that the agent's TLS certificate names the host we connect to.
    pub verify_hostname: bool,
    /// Connect to this host instead of the one the agent names in its RMI stubs.
    pub stub_host: Option<String>,
}

impl Default for JmxSettings {
    fn default() -> Self {
        Self {
            service: JmxService::default(),
            user: None,
            password: None,
            truststore: None,
            truststore_password: None,
            keystore: None,
            keystore_password: None,
            client_auth: false,
            verify_hostname: true,
            stub_host: None,
        }
    }
}

impl JmxSettings {
    /// TLS is on as soon as a truststore is given. The native client reads PEM files: the truststore holds
    /// the CA certificate(s), the keystore the client certificate chain and its private key.
    pub fn client_config(&self) -> jmx::JmxConfig {
        let mut config = jmx::JmxConfig::new(self.service.host.clone(), self.service.port);
        if let Some(user) = &self.user {
            config = config.with_credentials(
                user.clone(),
                self.password
                    .as_ref()
                    .map(|p| p.expose().to_string())
                    .unwrap_or_default(),
            );
        }
        config.stub_host_override = self.stub_host.clone();
        config.tls = self.truststore.as_ref().map(|ca| jmx::TlsConfig {
            ca_file: ca.clone(),
            client_cert: match (&self.keystore, self.client_auth) {
                (Some(keystore), true) => Some((keystore.clone(), keystore.clone())),
                _ => None,
            },
            verify_hostname: self.verify_hostname,
        });
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(String, u16), InvalidJmxService> {
        text.parse::<JmxService>().map(|s| (s.host, s.port))
    }

    #[test]
    fn accepts_every_form_icarus_accepts() {
        assert_eq!(parse(":7199").unwrap(), ("127.0.0.1".into(), 7199));
        assert_eq!(parse("10.0.0.1").unwrap(), ("10.0.0.1".into(), 7199));
        assert_eq!(parse("cassandra:7200").unwrap(), ("cassandra".into(), 7200));
        assert_eq!(parse("[::1]:7201").unwrap(), ("::1".into(), 7201));
        assert_eq!(
            parse("service:jmx:rmi:///jndi/rmi://10.1.2.3:7299/jmxrmi").unwrap(),
            ("10.1.2.3".into(), 7299)
        );
    }

    #[test]
    fn rejects_nonsense_with_a_hint() {
        let error = parse("host:notaport").unwrap_err().to_string();
        assert!(error.contains("host:notaport") && error.contains("HOST:PORT"));
        assert!(parse("service:jmx:jmxmp://x").is_err());
        assert!(parse("host:0").is_err());
    }

    #[test]
    fn renders_the_java_service_url() {
        let service: JmxService = "[::1]:7199".parse().unwrap();
        assert_eq!(
            service.service_url(),
            "service:jmx:rmi:///jndi/rmi://[::1]:7199/jmxrmi"
        );
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let settings = JmxSettings {
            password: Some(Secret::new("hunter2")),
            ..Default::default()
        };
        assert!(!format!("{settings:?}").contains("hunter2"));
    }
}
