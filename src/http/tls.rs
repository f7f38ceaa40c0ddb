//! TLS on the API with rustls: a PEM certificate chain and key, looked at again at most once a second and re-read
//! when they changed (cert-manager rotates them in place), TLS 1.2 and 1.3 only, and, with a client CA, client
//! certificates required and verified against it (mTLS).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// How often the certificate files are looked at for changes.
const RECHECK: Duration = Duration::from_secs(1);

/// The files `--tls-cert-file`, `--tls-key-file` and `--tls-client-ca-file` name.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// The server's rustls configuration for these files.
pub fn server_config(files: &TlsFiles) -> Result<ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|error| format!("cannot set up TLS: {error}"))?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca)? {
                roots
                    .add(cert)
                    .map_err(|error| format!("{}: not a CA certificate: {error}", ca.display()))?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .map_err(|error| {
                        format!("{}: cannot verify clients with it: {error}", ca.display())
                    })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let resolver = ReloadingCertificate::new(files.cert.clone(), files.key.clone(), provider)?;
    Ok(builder.with_cert_resolver(Arc::new(resolver)))
}

/// When a file last changed, and how long it was: enough to notice a replacement.
type Stamp = Option<(Option<SystemTime>, u64)>;

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.modified().ok(), m.len()))
}

/// Hands every handshake the certificate last read, reading the files again when they changed.
#[derive(Debug)]
struct ReloadingCertificate {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<(Stamp, Stamp, Arc<CertifiedKey>)>,
    checked: Mutex<Instant>,
}

impl ReloadingCertificate {
    fn new(cert: PathBuf, key: PathBuf, provider: Arc<CryptoProvider>) -> Result<Self, String> {
        let stamps = (stamp(&cert), stamp(&key));
        let loaded = load(&cert, &key, &provider)?;
        Ok(ReloadingCertificate {
            current: RwLock::new((stamps.0, stamps.1, Arc::new(loaded))),
            cert,
            key,
            provider,
            checked: Mutex::new(Instant::now()),
        })
    }

    /// A pair that cannot be read, or that does not match (the key written before the certificate, say), keeps the
    /// last good one, with a warning; the next check tries again.
    fn refresh_if_due(&self) {
        {
            let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
            if checked.elapsed() < RECHECK {
                return;
            }
            *checked = Instant::now();
        }
        let stamps = (stamp(&self.cert), stamp(&self.key));
        {
            let current = self.current.read().unwrap_or_else(|p| p.into_inner());
            if current.0 == stamps.0 && current.1 == stamps.1 {
                return;
            }
        }
        match load(&self.cert, &self.key, &self.provider) {
            Ok(loaded) => {
                tracing::info!(cert = %self.cert.display(), "TLS certificate re-read");
                *self.current.write().unwrap_or_else(|p| p.into_inner()) =
                    (stamps.0, stamps.1, Arc::new(loaded));
            }
            Err(error) => tracing::warn!(%error, "keeping the TLS certificate last read"),
        }
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.refresh_if_due();
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(|p| p.into_inner()).2,
        ))
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("{}: not PEM certificates: {error}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let chain = certificates(cert)?;
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|error| format!("{}: not a PEM private key: {error}", key.display()))?;
    CertifiedKey::from_der(chain, private, provider).map_err(|error| {
        format!(
            "{} and {} do not make a certificate and its key: {error}",
            cert.display(),
            key.display()
        )
    })
}
