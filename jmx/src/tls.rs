//! TLS for JMX agents that use `SslRMIClientSocketFactory` (Cassandra with JMX encryption, the JDK agent with
//! `jmxremote.ssl=true`).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, DigitallySignedStruct, Error as RustlsError, RootCertStore, SignatureScheme,
};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// How to set up TLS to the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM file with the certificate(s) of the authority that signed the agent's certificate.
    pub ca_file: PathBuf,
    /// PEM certificate chain and private key to present, for agents that require client authentication.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Check that the agent's certificate names the host we connect to. Cassandra certificates often lack a
    /// matching subject alternative name; switching this off still checks the chain against `ca_file`.
    pub verify_hostname: bool,
}

impl TlsConfig {
    pub fn new(ca_file: impl Into<PathBuf>) -> Self {
        Self {
            ca_file: ca_file.into(),
            client_cert: None,
            verify_hostname: true,
        }
    }
}

/// Why the TLS settings cannot be used; each message names the file at fault.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsSetupError {
    #[error("cannot read the CA file {}: {source}", file.display())]
    CaFile {
        file: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("bad certificate in {}: {source}", file.display())]
    BadCertificate {
        file: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("unusable certificate in {}: {source}", file.display())]
    UnusableCertificate { file: PathBuf, source: RustlsError },
    #[error("no certificate in the CA file {}", file.display())]
    NoCertificate { file: PathBuf },
    #[error("cannot use the CA file {}: {source}", file.display())]
    Verifier {
        file: PathBuf,
        source: rustls::client::VerifierBuilderError,
    },
    #[error(transparent)]
    Protocols(RustlsError),
    #[error("cannot read the client certificate {}: {source}", file.display())]
    ClientCertificate {
        file: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("cannot read the client key {}: {source}", file.display())]
    ClientKey {
        file: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("unusable client certificate: {0}")]
    ClientAuth(#[source] RustlsError),
}

#[derive(Clone)]
pub(crate) struct Connector {
    inner: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connector")
    }
}

impl Connector {
    pub(crate) fn new(config: &TlsConfig) -> Result<Self, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ca_file = || config.ca_file.clone();
        let mut roots = RootCertStore::empty();
        let certificates = CertificateDer::pem_file_iter(&config.ca_file).map_err(|source| {
            TlsSetupError::CaFile {
                file: ca_file(),
                source,
            }
        })?;
        for certificate in certificates {
            let certificate = certificate.map_err(|source| TlsSetupError::BadCertificate {
                file: ca_file(),
                source,
            })?;
            roots
                .add(certificate)
                .map_err(|source| TlsSetupError::UnusableCertificate {
                    file: ca_file(),
                    source,
                })?;
        }
        if roots.is_empty() {
            return Err(TlsSetupError::NoCertificate { file: ca_file() });
        }
        let webpki =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .build()
                .map_err(|source| TlsSetupError::Verifier {
                    file: ca_file(),
                    source,
                })?;
        let verifier: Arc<dyn ServerCertVerifier> = if config.verify_hostname {
            webpki
        } else {
            Arc::new(ChainOnly(webpki))
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsSetupError::Protocols)?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let client = match &config.client_cert {
            None => builder.with_no_client_auth(),
            Some((cert_file, key_file)) => {
                let chain = CertificateDer::pem_file_iter(cert_file)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|source| TlsSetupError::ClientCertificate {
                        file: cert_file.clone(),
                        source,
                    })?;
                let key = PrivateKeyDer::from_pem_file(key_file).map_err(|source| {
                    TlsSetupError::ClientKey {
                        file: key_file.clone(),
                        source,
                    }
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(TlsSetupError::ClientAuth)?
            }
        };
        Ok(Self {
            inner: tokio_rustls::TlsConnector::from(Arc::new(client)),
        })
    }

    pub(crate) async fn connect(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let name = ServerName::try_from(host.to_string()).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("bad TLS name {host}: {e}"),
            )
        })?;
        self.inner.connect(name, tcp).await
    }
}

/// Verifies the certificate chain but not the host name in it.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, RustlsError> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(RustlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, RustlsError> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, RustlsError> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
