//! Where the JMX agent is and how to talk to it: [`JmxConfig`], also read from a `service:jmx:rmi` URL.

use std::time::Duration;

use crate::error::JmxError;
use crate::tls::TlsConfig;

/// Where the agent is and how to talk to it.
#[derive(Clone, PartialEq, Eq)]
pub struct JmxConfig {
    /// The RMI registry's host and port (Cassandra: 127.0.0.1:7199).
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub connect_timeout: Duration,
    /// Default time limit for one call; long operations pass their own to
    /// [`JmxClient::invoke_with_timeout`](super::JmxClient::invoke_with_timeout).
    pub call_timeout: Duration,
    /// Connect here instead of the host named in the stubs the server returns (which may be an address
    /// unreachable from the client, e.g. inside a container).
    pub stub_host_override: Option<String>,
    /// Connections kept open for reuse.
    pub max_idle_connections: usize,
    /// TLS settings; needed when the agent's registry or connector uses TLS.
    pub tls: Option<TlsConfig>,
    /// How often to make a cheap call so the server does not close the connection as idle (it does after
    /// 2 minutes by default); `None` turns this off, and an expired connection is then re-opened on the
    /// next call.
    pub keepalive: Option<Duration>,
}

impl std::fmt::Debug for JmxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JmxConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("connect_timeout", &self.connect_timeout)
            .field("call_timeout", &self.call_timeout)
            .field("stub_host_override", &self.stub_host_override)
            .field("tls", &self.tls)
            .field("keepalive", &self.keepalive)
            .finish()
    }
}

impl JmxConfig {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            username: None,
            password: None,
            connect_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(60),
            stub_host_override: None,
            max_idle_connections: 4,
            tls: None,
            keepalive: Some(Duration::from_secs(60)),
        }
    }

    /// From `HOST:PORT`, `[V6]:PORT` or `service:jmx:rmi:///jndi/rmi://HOST:PORT/jmxrmi`.
    pub fn from_service(service: &str) -> Result<Self, JmxError> {
        let invalid = || JmxError::InvalidServiceUrl(service.to_string());
        let address = match service.strip_prefix("service:jmx:rmi:") {
            Some(rest) => rest
                .rsplit_once("rmi://")
                .and_then(|(_, a)| a.split('/').next())
                .ok_or_else(invalid)?,
            None => service,
        };
        let (host, port) = match address.rsplit_once(':') {
            Some((host, port)) => (host.trim_start_matches('[').trim_end_matches(']'), port),
            None => return Err(invalid()),
        };
        let port = port.parse().map_err(|_| invalid())?;
        if host.is_empty() {
            return Err(invalid());
        }
        Ok(Self::new(host, port))
    }

    pub fn with_credentials(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.username = Some(username.into());
        self.password = Some(password.into());
        self
    }

    pub(super) fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}
