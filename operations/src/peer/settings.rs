//! How a coordinator reaches its peers' sidecars.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Where peer sidecars listen and how patiently they are called.
#[derive(Debug)]
pub struct PeerSettings {
    /// `http` or `https`.
    pub scheme: String,
    /// The peers' port; `None`: the port this sidecar listens on, as Icarus assumes.
    pub port: Option<u16>,
    /// The port this sidecar listens on, known once it is bound (it may have been asked for port 0).
    own_port: OnceLock<u16>,
    /// The one HTTP client of every peer call, built on first use (its connection pool is shared).
    client: OnceLock<Result<super::PeerClient, Arc<super::PeerClientError>>>,
    pub connect_timeout: Duration,
    /// Bound on one whole HTTP exchange with a peer.
    pub request_timeout: Duration,
    /// Extra attempts of a call that failed without reaching the peer's application (refused connection,
    /// timeout, 5xx answer). A submission is retried only when it cannot have been received.
    pub retries: u32,
    /// PEM CA certificates that signed the peers' server certificates (`https` peers); none: the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM certificate chain and key presented to peers that require client certificates (mTLS).
    pub identity_files: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// The bearer token sent to peers, read from this file at every call (so a rotated Secret is picked up).
    pub token_file: Option<std::path::PathBuf>,
    /// How often a running sub-operation is polled (Icarus: 5 s; the Instaclustr operator polls every 2 s).
    pub poll_interval: Duration,
}

impl Default for PeerSettings {
    fn default() -> Self {
        PeerSettings {
            scheme: "http".into(),
            port: None,
            own_port: OnceLock::new(),
            client: OnceLock::new(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            retries: 2,
            poll_interval: Duration::from_secs(2),
            token_file: None,
            ca_file: None,
            identity_files: None,
        }
    }
}

impl PeerSettings {
    /// Records the port this sidecar listens on (the first call wins).
    pub fn set_own_port(&self, port: u16) {
        let _ = self.own_port.set(port);
    }

    /// The client for peer calls, with these timeouts and retries. With TLS files it is built anew for each
    /// cluster-wide operation, so that rotated certificates are read; without, one client is shared.
    /// The error is shared, as the one shared client's outcome is handed to every cluster-wide operation.
    pub fn client(&self) -> Result<super::PeerClient, Arc<super::PeerClientError>> {
        if self.ca_file.is_some() || self.identity_files.is_some() {
            return super::PeerClient::new(self).map_err(Arc::new);
        }
        self.client
            .get_or_init(|| super::PeerClient::new(self).map_err(Arc::new))
            .clone()
    }

    /// The port peers listen on, if known.
    pub fn peer_port(&self) -> Option<u16> {
        self.port.or_else(|| self.own_port.get().copied())
    }

    /// The base URL of the sidecar next to the Cassandra node at `address`.
    pub fn url_of(&self, address: &str) -> Option<String> {
        let port = self.peer_port()?;
        let host = match address.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
            _ => address.to_string(),
        };
        Some(format!("{}://{host}:{port}", self.scheme))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_on_this_sidecars_port_unless_told_otherwise() {
        let settings = PeerSettings::default();
        assert_eq!(settings.url_of("10.0.0.2"), None);
        settings.set_own_port(4567);
        assert_eq!(
            settings.url_of("10.0.0.2").as_deref(),
            Some("http://10.0.0.2:4567")
        );
        assert_eq!(
            settings.url_of("fe80::1").as_deref(),
            Some("http://[fe80::1]:4567")
        );
        let other = PeerSettings {
            scheme: "https".into(),
            port: Some(8443),
            ..PeerSettings::default()
        };
        other.set_own_port(4567);
        assert_eq!(
            other.url_of("10.0.0.2").as_deref(),
            Some("https://10.0.0.2:8443")
        );
    }
}
