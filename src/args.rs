//! Argument groups several commands share: how to reach Cassandra's JMX agent, object storage and CQL, and the
//! parser of positive durations. Below `cli` (the commands) and the modules that run them.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use daedalus_operations::cql::{CqlAddress, CqlSettings};
use daedalus_operations::decode::parse_duration;
use daedalus_operations::{JmxService, Secret};

/// How to reach object storage for backups. Credentials come from the providers' standard environment variables
/// and credential chains (`AWS_*`, `AZURE_STORAGE_*`, `GOOGLE_APPLICATION_CREDENTIALS`) or `--storage-secrets-dir`.
#[derive(Debug, Args)]
pub struct StorageArgs {
    /// S3-compatible endpoint URL (MinIO, Ceph, ...); default: AWS.
    #[arg(long, global = true, env = "DAEDALUS_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// S3 region (default: `AWS_REGION`, or `us-east-1` with --s3-endpoint).
    #[arg(long, global = true, env = "DAEDALUS_S3_REGION")]
    pub s3_region: Option<String>,

    /// Address buckets as `ENDPOINT/BUCKET` (true) or `BUCKET.ENDPOINT` (false); default path style.
    #[arg(long, global = true, env = "DAEDALUS_S3_PATH_STYLE")]
    pub s3_path_style: Option<bool>,

    /// Allow plain HTTP to the object store (local test servers, TLS-terminating proxies).
    #[arg(long, global = true, env = "DAEDALUS_STORAGE_ALLOW_HTTP")]
    pub storage_allow_http: bool,

    /// Azure blob endpoint including the account, e.g. `http://127.0.0.1:10000/devstoreaccount1`.
    #[arg(long, global = true, env = "DAEDALUS_AZURE_ENDPOINT")]
    pub azure_endpoint: Option<String>,

    /// Use the Azurite emulator's well-known account (at --azure-endpoint, default 127.0.0.1:10000).
    #[arg(long, global = true, env = "DAEDALUS_AZURE_USE_EMULATOR")]
    pub azure_use_emulator: bool,

    /// GCS service-account JSON file (default: `GOOGLE_APPLICATION_CREDENTIALS`).
    #[arg(long, global = true, env = "DAEDALUS_GCS_SERVICE_ACCOUNT")]
    pub gcs_service_account: Option<PathBuf>,

    /// A mounted Kubernetes secret with files `awsaccesskeyid`, `awssecretaccesskey`, `awsregion`, `awsendpoint`,
    /// `azurestorageaccount`, `azurestoragekey` or `gcp`, as the Instaclustr operator's secrets have.
    #[arg(long, global = true, env = "DAEDALUS_STORAGE_SECRETS_DIR")]
    pub storage_secrets_dir: Option<PathBuf>,

    /// Where backups keep the hashes of files already hashed, so unchanged SSTables are not read again
    /// (default: `$XDG_CACHE_HOME/daedalus` or `~/.cache/daedalus`).
    #[arg(long, global = true, env = "DAEDALUS_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Restores recreate dropped tables over CQL, so whatever reaches object storage also knows the CQL port.
    #[command(flatten)]
    pub cql: CqlArgs,
}

/// How to reach the node's CQL port. The password comes from `--cql-password-file` or `DAEDALUS_CQL_PASSWORD`,
/// never from a flag, so it is not in the process's command line.
#[derive(Debug, Args)]
pub struct CqlArgs {
    /// CQL (native protocol) address of the local Cassandra: `HOST[:PORT]` [default: the address and port
    /// Cassandra reports over JMX, its broadcast_rpc_address or rpc_address and native_transport_port]
    #[arg(long, global = true, env = "DAEDALUS_CQL_ADDRESS")]
    pub cql_address: Option<CqlAddress>,

    /// CQL user name (password authentication).
    #[arg(long, global = true, env = "DAEDALUS_CQL_USERNAME")]
    pub cql_username: Option<String>,

    /// File holding the CQL password (one trailing newline ignored); or set `DAEDALUS_CQL_PASSWORD`.
    #[arg(long, global = true, env = "DAEDALUS_CQL_PASSWORD_FILE")]
    pub cql_password_file: Option<PathBuf>,
}

/// The variable carrying the CQL password when no password file is given.
pub const CQL_PASSWORD_ENV: &str = "DAEDALUS_CQL_PASSWORD";

/// Why the CQL flags cannot be used; never shows the password.
#[derive(Debug, thiserror::Error)]
pub enum CqlArgsError {
    #[error("cannot read the CQL password file {path}: {source}")]
    PasswordFile {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "give the CQL password either in --cql-password-file or in {CQL_PASSWORD_ENV}, not both"
    )]
    TwoPasswords,
    #[error("a CQL password is given but no --cql-username")]
    PasswordWithoutUser,
}

impl CqlArgs {
    pub fn settings(&self) -> Result<CqlSettings, CqlArgsError> {
        self.settings_with(
            std::env::var(CQL_PASSWORD_ENV)
                .ok()
                .filter(|p| !p.is_empty()),
        )
    }

    pub(crate) fn settings_with(
        &self,
        env_password: Option<String>,
    ) -> Result<CqlSettings, CqlArgsError> {
        let from_file = match &self.cql_password_file {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| CqlArgsError::PasswordFile {
                        path: path.display().to_string(),
                        source,
                    })?;
                // Files written by `echo` or editors end in a newline that is not part of the password.
                let password = text.strip_suffix('\n').unwrap_or(&text);
                Some(password.strip_suffix('\r').unwrap_or(password).to_string())
            }
            None => None,
        };
        let password = match (from_file, env_password) {
            (Some(_), Some(_)) => return Err(CqlArgsError::TwoPasswords),
            (file, env) => file.or(env).map(Secret::new),
        };
        if password.is_some() && self.cql_username.is_none() {
            return Err(CqlArgsError::PasswordWithoutUser);
        }
        Ok(CqlSettings {
            address: self.cql_address.clone(),
            username: self.cql_username.clone(),
            password,
            ..CqlSettings::default()
        })
    }
}

impl StorageArgs {
    pub fn settings(&self) -> daedalus_operations::storage::StorageSettings {
        let cache_dir = self.cache_dir.clone().or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
                .map(|cache| cache.join("daedalus"))
        });
        daedalus_operations::storage::StorageSettings {
            s3_endpoint: self.s3_endpoint.clone(),
            s3_region: self.s3_region.clone(),
            s3_path_style: self.s3_path_style,
            allow_http: self.storage_allow_http,
            azure_endpoint: self.azure_endpoint.clone(),
            azure_use_emulator: self.azure_use_emulator,
            gcs_service_account: self.gcs_service_account.clone(),
            secrets_dir: self.storage_secrets_dir.clone(),
            cache_dir,
        }
    }
}

/// How to reach Cassandra's JMX agent (the same flags as Icarus).
#[derive(Debug, Args)]
pub struct JmxArgs {
    /// JMX agent of the local Cassandra: `[HOST][:PORT]` or `service:jmx:rmi:///jndi/rmi://HOST:PORT/jmxrmi`.
    #[arg(
        long,
        global = true,
        env = "DAEDALUS_JMX_SERVICE",
        default_value = "127.0.0.1:7199"
    )]
    pub jmx_service: JmxService,

    /// JMX user name.
    #[arg(long, global = true, env = "DAEDALUS_JMX_USER")]
    pub jmx_user: Option<String>,

    /// JMX password.
    #[arg(
        long,
        global = true,
        env = "DAEDALUS_JMX_PASSWORD",
        hide_env_values = true
    )]
    pub jmx_password: Option<String>,

    /// Java properties file with `username`, `password`, `keystorePassword`, `truststorePassword`; flags win.
    #[arg(long, global = true, env = "DAEDALUS_JMX_CREDENTIALS")]
    pub jmx_credentials: Option<PathBuf>,

    /// PEM file with the CA certificate(s) that signed the JMX agent's certificate; turns TLS on.
    #[arg(long, global = true, env = "DAEDALUS_JMX_TRUSTSTORE")]
    pub jmx_truststore: Option<PathBuf>,

    /// Password of the truststore (accepted for Icarus compatibility; PEM files have none).
    #[arg(
        long,
        global = true,
        env = "DAEDALUS_JMX_TRUSTSTORE_PASSWORD",
        hide_env_values = true
    )]
    pub jmx_truststore_password: Option<String>,

    /// PEM file with the client certificate chain and its private key, for agents that want one.
    #[arg(long, global = true, env = "DAEDALUS_JMX_KEYSTORE")]
    pub jmx_keystore: Option<PathBuf>,

    /// Password of the keystore (accepted for Icarus compatibility; PEM files have none).
    #[arg(
        long,
        global = true,
        env = "DAEDALUS_JMX_KEYSTORE_PASSWORD",
        hide_env_values = true
    )]
    pub jmx_keystore_password: Option<String>,

    /// Present the keystore's client certificate to the JMX agent.
    #[arg(long, global = true, env = "DAEDALUS_JMX_CLIENT_AUTH")]
    pub jmx_client_auth: bool,

    /// Accept a TLS certificate that does not name the JMX host (its CA is still checked).
    #[arg(long, global = true, env = "DAEDALUS_JMX_SKIP_HOSTNAME_VERIFICATION")]
    pub jmx_skip_hostname_verification: bool,

    /// Connect to this host instead of the one the agent puts in its RMI stubs (java.rmi.server.hostname).
    #[arg(long, global = true, env = "DAEDALUS_JMX_STUB_HOST")]
    pub jmx_stub_host: Option<String>,
}

/// A duration longer than zero (`"1h"`, `"90s"`).
pub(crate) fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d.is_zero() => Err("must be longer than zero".into()),
        d => Ok(d),
    }
}
