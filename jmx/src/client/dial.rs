//! Opening connections: JRMP over TCP (TLS where the stub or registry asks for it), the registry lookup and the
//! authenticated `newClient` that makes a session.

use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::exception::{classify, exception_of};
use super::{JmxConfig, Pooled, Session, encode};
use crate::error::JmxError;
use crate::jrmp::hashes;
use crate::jrmp::{Connection, JrmpError, ObjId, RemoteRef, ReturnKind};
use crate::tls::Connector;
use crate::value::JavaArg;

/// Opens JRMP connections, with TLS where the server asks for it.
pub(super) struct Dialer {
    /// The registry's address, for error messages.
    pub(super) address: String,
    pub(super) connect_timeout: Duration,
    pub(super) stub_host_override: Option<String>,
    pub(super) tls: Option<Connector>,
}

impl Dialer {
    /// A connection to a remote object's endpoint; TLS when its stub says so.
    pub(super) async fn open(&self, target: &RemoteRef) -> Result<Connection, JmxError> {
        let host = self.stub_host_override.as_deref().unwrap_or(&target.host);
        self.dial(host, target.port, target.tls).await
    }

    /// A connection to the registry. With TLS configured we try TLS first (Cassandra puts its registry behind
    /// TLS too); a server that hangs up on the TLS greeting is a plain registry (the JDK agent's default), and
    /// we connect again without TLS. Certificate problems are reported, never retried in the clear.
    pub(super) async fn registry(&self, host: &str, port: u16) -> Result<Connection, JmxError> {
        if self.tls.is_none() {
            return self.dial(host, port, false).await;
        }
        match self.dial(host, port, true).await {
            Err(JmxError::Tls { message, .. })
                if message.contains("peer closed")
                    || message.contains("reset")
                    || message.contains("eof") =>
            {
                tracing::debug!(address = %self.address, %message, "the registry does not speak TLS; using plain TCP");
                self.dial(host, port, false).await
            }
            other => other,
        }
    }

    pub(super) async fn dial(
        &self,
        host: &str,
        port: u16,
        tls: bool,
    ) -> Result<Connection, JmxError> {
        let endpoint = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let result = match (tls, &self.tls) {
            (false, _) => Connection::connect_tcp(host, port, self.connect_timeout).await,
            (true, Some(connector)) => {
                Connection::connect_tls(host, port, self.connect_timeout, connector).await
            }
            (true, None) => {
                return Err(JmxError::Tls {
                    address: endpoint,
                    message: "the agent requires TLS: give the CA that signed its certificate"
                        .into(),
                });
            }
        };
        result.map_err(|error| match error {
            // With TLS 1.3 the server's verdict on our certificate arrives after our side of the handshake,
            // so it surfaces on the first read.
            JrmpError::Io(source) | JrmpError::Tls(source) if tls_alert(&source).is_some() => {
                JmxError::Tls {
                    address: endpoint,
                    message: tls_alert(&source).unwrap_or_default(),
                }
            }
            JrmpError::Io(source) => JmxError::Connect {
                address: endpoint,
                error: source,
            },
            JrmpError::Tls(source) if source.kind() == std::io::ErrorKind::ConnectionRefused => {
                JmxError::Connect {
                    address: endpoint,
                    error: source,
                }
            }
            JrmpError::Tls(source) => JmxError::Tls {
                address: endpoint,
                message: format!("handshake failed: {}", source.to_string().to_lowercase()),
            },
            JrmpError::Timeout(timeout) => JmxError::Timeout {
                address: endpoint,
                what: "the connection".into(),
                timeout,
            },
            other => JmxError::Protocol {
                address: endpoint,
                message: other.to_string(),
            },
        })
    }
}

/// A TLS alert from the server, explained.
pub(super) fn tls_alert(error: &std::io::Error) -> Option<String> {
    let rustls_error = error.get_ref()?.downcast_ref::<rustls::Error>()?;
    let rustls::Error::AlertReceived(alert) = rustls_error else {
        return None;
    };
    let hint = match alert {
        rustls::AlertDescription::BadCertificate
        | rustls::AlertDescription::CertificateRequired
        | rustls::AlertDescription::UnknownCA => {
            " (the agent wants a client certificate it trusts: give one signed by a CA in its truststore)"
        }
        _ => "",
    };
    Some(format!(
        "the agent refused the TLS session: {alert:?}{hint}"
    ))
}

/// Registry lookup of `jmxrmi`, then `newClient` with the credentials.
pub(super) async fn establish(config: &JmxConfig, dialer: &Dialer) -> Result<Session, JmxError> {
    let address = dialer.address.as_str();
    let protocol = |message: String| JmxError::Protocol {
        address: address.to_string(),
        message,
    };
    let mut registry = dialer.registry(&config.host, config.port).await?;
    let lookup_args = encode(&[JavaArg::String("jmxrmi".into())]);
    let mut raw = registry
        .call(
            &ObjId::REGISTRY,
            hashes::REGISTRY_LOOKUP_OP,
            hashes::REGISTRY_INTERFACE,
            &[],
            &lookup_args,
            ReturnKind::Object,
            config.call_timeout,
        )
        .await
        .map_err(|e| protocol(format!("registry lookup failed: {e}")))?;
    if raw.exceptional
        && exception_of(&raw)
            .to_string()
            .contains("skeleton class not found")
    {
        // Registries run with java.rmi.server.ignoreStubClasses only take the 1.2 form; the server closes the
        // connection after refusing the first, so ask again on a new one.
        registry = dialer.registry(&config.host, config.port).await?;
        raw = registry
            .call(
                &ObjId::REGISTRY,
                -1,
                hashes::REGISTRY_LOOKUP,
                &[],
                &lookup_args,
                ReturnKind::Object,
                config.call_timeout,
            )
            .await
            .map_err(|e| protocol(format!("registry lookup failed: {e}")))?;
    }
    if raw.exceptional {
        return Err(classify(address, None, exception_of(&raw)));
    }
    let server =
        RemoteRef::from_stub(&raw.handles, &raw.value).map_err(|e| protocol(e.to_string()))?;
    // Tells the registry it may drop its pin on the stub; failing to is harmless.
    let _ = registry.dgc_ack(&raw.ack_uid).await;

    let mut connection = dialer.open(&server).await?;
    let credentials = match (&config.username, &config.password) {
        (Some(user), password) => {
            JavaArg::StringArray(vec![user.clone(), password.clone().unwrap_or_default()])
        }
        (None, _) => JavaArg::Null,
    };
    let raw = connection
        .call(
            &server.object,
            -1,
            hashes::NEW_CLIENT,
            &[],
            &encode(&[credentials]),
            ReturnKind::Object,
            config.call_timeout,
        )
        .await
        .map_err(|e| protocol(format!("newClient failed: {e}")))?;
    if raw.exceptional {
        let exception = exception_of(&raw);
        if exception
            .chain()
            .any(|e| e.class == "java.lang.SecurityException")
        {
            return Err(JmxError::AuthenticationFailed {
                address: address.to_string(),
                message: exception
                    .root_cause()
                    .message
                    .clone()
                    .unwrap_or_else(|| exception.to_string()),
            });
        }
        return Err(classify(address, None, exception));
    }
    let target =
        RemoteRef::from_stub(&raw.handles, &raw.value).map_err(|e| protocol(e.to_string()))?;
    let _ = connection.dgc_ack(&raw.ack_uid).await;
    let mut idle = Vec::new();
    if target.host == server.host && target.port == server.port && target.tls == server.tls {
        idle.push(Pooled::new(connection));
    }
    Ok(Session {
        target,
        idle: Mutex::new(idle),
        broken: AtomicBool::new(false),
    })
}
