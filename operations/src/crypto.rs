//! One crypto stack in the sidecar: rustls with ring. The API's TLS and the JMX client name ring themselves; the
//! HTTPS clients (reqwest for peers and bucket creation, and object_store's S3, Azure and GCS clients through it)
//! take the process's default provider, which this installs.

/// Makes ring the process's rustls provider. Called before any HTTPS client is built; later calls do nothing.
pub fn install_default_provider() {
    // An error only says a provider is installed already: ring, by an earlier call (nothing else installs one).
    let _ = rustls::crypto::ring::default_provider().install_default();
}
