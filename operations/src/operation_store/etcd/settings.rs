//! How to reach etcd, and where this cluster's operations live in it.

use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};
use uuid::Uuid;

use super::EtcdError;
use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct EtcdSettings {
    /// `http://host:port` or `https://host:port`, one per member.
    pub endpoints: Vec<String>,
    /// Keys of this Cassandra cluster start with it (`/daedalus/<cluster>/`); always ends with `/`.
    pub prefix: String,
    /// Names this sidecar in what it writes; stable across restarts (a StatefulSet pod's name, the host name).
    pub sidecar: String,
    pub user: Option<String>,
    pub password: Option<Secret>,
    /// CA that signed the members' certificates (TLS).
    pub ca_file: Option<PathBuf>,
    /// This sidecar's certificate and key, when the members ask for client certificates.
    pub identity_files: Option<(PathBuf, PathBuf)>,
    /// How long finished operations are kept.
    pub expiration: Duration,
}

impl EtcdSettings {
    /// `prefix` with exactly one `/` at its end (and at its start), so prefixes of two clusters never overlap.
    pub fn normalized_prefix(prefix: &str) -> String {
        format!("/{}/", prefix.trim_matches('/'))
    }

    pub fn operations_prefix(&self) -> String {
        format!("{}operations/", self.prefix)
    }

    pub fn key_of(&self, id: &Uuid) -> String {
        format!("{}{id}", self.operations_prefix())
    }

    /// The operation id a key stands for.
    pub fn id_of(&self, key: &[u8]) -> Option<Uuid> {
        let key = std::str::from_utf8(key).ok()?;
        Uuid::parse_str(key.strip_prefix(&self.operations_prefix())?).ok()
    }

    /// The members, each connected on first use.
    pub(super) fn members(&self) -> Result<super::members::Members, EtcdError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            // Dead connections (a member killed, a network cut) are noticed within seconds, not at the next write.
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_keep_alive_while_idle(true)
            // A member cut off from the others answers at once that it has no leader, so a write goes elsewhere.
            .with_require_leader(true)
            .with_auto_token_refresh(true);
        if let Some(user) = &self.user {
            let password = self.password.as_ref().map(Secret::expose).unwrap_or("");
            options = options.with_user(user.clone(), password.to_string());
        }
        if self.ca_file.is_some() || self.identity_files.is_some() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &self.ca_file {
                tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
            }
            if let Some((cert, key)) = &self.identity_files {
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            options = options.with_tls(tls);
        }
        Ok(super::members::Members::new(
            self.endpoints.clone(),
            options,
        ))
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>, EtcdError> {
    std::fs::read(path).map_err(|e| EtcdError::File(path.display().to_string(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_end_with_one_slash_and_keys_map_back_to_ids() {
        assert_eq!(
            EtcdSettings::normalized_prefix("daedalus/c1"),
            "/daedalus/c1/"
        );
        assert_eq!(
            EtcdSettings::normalized_prefix("/daedalus/c1//"),
            "/daedalus/c1/"
        );
        let settings = EtcdSettings {
            endpoints: vec![],
            prefix: EtcdSettings::normalized_prefix("/d/c1"),
            sidecar: "s".into(),
            user: None,
            password: None,
            ca_file: None,
            identity_files: None,
            expiration: Duration::from_secs(3600),
        };
        let id = Uuid::new_v4();
        let key = settings.key_of(&id);
        assert_eq!(key, format!("/d/c1/operations/{id}"));
        assert_eq!(settings.id_of(key.as_bytes()), Some(id));
        assert_eq!(settings.id_of(b"/d/c10/operations/x"), None);
    }
}
