//! Where `serve` keeps operations (`--store`), and `daedalus store export|import`, which move them between etcd
//! prefixes or clusters as JSON lines.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use daedalus_operations::{InMemoryStore, OperationRecord, OperationStore};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// In this process, lost when it exits (as with Icarus).
    Memory,
    /// In etcd: operations survive restarts and every sidecar of the cluster sees them all.
    Etcd,
}

#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Where operations are kept.
    #[arg(long, env = "DAEDALUS_STORE", value_enum, default_value = "memory")]
    pub store: StoreKind,

    #[command(flatten)]
    pub etcd: EtcdArgs,
}

#[derive(Debug, Clone, Args)]
pub struct EtcdArgs {
    /// etcd members, `URL[,URL...]` (`http://` or `https://`).
    #[arg(
        long,
        env = "DAEDALUS_ETCD_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    pub etcd_endpoints: Vec<String>,

    /// Key prefix of this Cassandra cluster's operations: every sidecar of one cluster uses the same, each
    /// cluster its own (e.g. `/daedalus/<cluster name>`).
    #[arg(
        long,
        env = "DAEDALUS_ETCD_PREFIX",
        default_value = "/daedalus/default"
    )]
    pub etcd_prefix: String,

    /// etcd user (etcd authentication).
    #[arg(long, env = "DAEDALUS_ETCD_USER")]
    pub etcd_user: Option<String>,

    /// File holding the etcd user's password (one line).
    #[arg(long, env = "DAEDALUS_ETCD_PASSWORD_FILE", requires = "etcd_user")]
    pub etcd_password_file: Option<PathBuf>,

    /// PEM CA certificates that signed the etcd members' certificates.
    #[arg(long, env = "DAEDALUS_ETCD_CA_FILE")]
    pub etcd_ca_file: Option<PathBuf>,

    /// PEM certificate this sidecar presents to etcd (when etcd wants client certificates).
    #[arg(long, env = "DAEDALUS_ETCD_CERT_FILE", requires = "etcd_key_file")]
    pub etcd_cert_file: Option<PathBuf>,

    /// PEM private key of --etcd-cert-file.
    #[arg(long, env = "DAEDALUS_ETCD_KEY_FILE", requires = "etcd_cert_file")]
    pub etcd_key_file: Option<PathBuf>,

    /// Names this sidecar in the operations it writes, so that after a restart it finds the ones it was running;
    /// must be stable across restarts and differ between sidecars. Default: the host name (a StatefulSet pod's
    /// name).
    #[arg(long, env = "DAEDALUS_SIDECAR_ID")]
    pub sidecar_id: Option<String>,
}

/// `daedalus store ...`
#[derive(Debug, Args)]
pub struct StoreCommandArgs {
    #[command(subcommand)]
    pub command: StoreCommand,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Print every operation under the prefix, one JSON document per line.
    Export {
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// Read JSON lines from `export` (stdin, or FILE) and write each operation not there yet; finished ones expire
    /// an expiration period after they finished.
    Import {
        file: Option<PathBuf>,
        /// How long imported finished operations are kept after they finished.
        #[arg(long, default_value = "1h", value_parser = crate::args::parse_positive_duration)]
        operations_expiration: Duration,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
}

/// The store `serve` uses, and the operations a restart interrupted (to clean up after).
pub struct OpenedStore {
    pub store: Arc<dyn OperationStore>,
    pub interrupted: Vec<Arc<OperationRecord>>,
    #[cfg(feature = "etcd")]
    pub etcd: Option<daedalus_operations::operation_store::etcd::EtcdStore>,
}

impl StoreArgs {
    /// Opens the store; it keeps at most `max_stored` operations in memory beyond the unfinished ones.
    pub async fn open(
        &self,
        expiration: Duration,
        max_stored: usize,
    ) -> anyhow::Result<OpenedStore> {
        match self.store {
            StoreKind::Memory => Ok(OpenedStore {
                store: Arc::new(InMemoryStore::with_limit(max_stored)),
                interrupted: Vec::new(),
                #[cfg(feature = "etcd")]
                etcd: None,
            }),
            StoreKind::Etcd => self.etcd.open(expiration, max_stored).await,
        }
    }
}

impl EtcdArgs {
    #[cfg(not(feature = "etcd"))]
    async fn open(&self, _: Duration, _: usize) -> anyhow::Result<OpenedStore> {
        anyhow::bail!(
            "--store etcd: this daedalus was built without etcd support; build it with `cargo build --release --features etcd` (needs protoc: apt-get install protobuf-compiler libprotobuf-dev)"
        )
    }

    #[cfg(feature = "etcd")]
    async fn open(&self, expiration: Duration, max_stored: usize) -> anyhow::Result<OpenedStore> {
        use daedalus_operations::operation_store::etcd::EtcdStore;
        let settings = self.settings(expiration)?;
        tracing::info!(endpoints = %settings.endpoints.join(","), prefix = %settings.prefix, sidecar = %settings.sidecar, max_cached = max_stored, "operations kept in etcd");
        let (store, interrupted) = EtcdStore::open(settings, max_stored).await?;
        Ok(OpenedStore {
            store: Arc::new(store.clone()),
            interrupted,
            etcd: Some(store),
        })
    }

    #[cfg(feature = "etcd")]
    fn settings(
        &self,
        expiration: Duration,
    ) -> anyhow::Result<daedalus_operations::operation_store::etcd::EtcdSettings> {
        use daedalus_operations::Secret;
        use daedalus_operations::operation_store::etcd::EtcdSettings;
        for endpoint in &self.etcd_endpoints {
            let url = url::Url::parse(endpoint).map_err(|e| {
                anyhow::anyhow!(
                    "--etcd-endpoints: '{endpoint}' is not a URL ({e}); write http://HOST:PORT"
                )
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                anyhow::bail!("--etcd-endpoints: '{endpoint}' must start with http:// or https://");
            }
        }
        let password = match &self.etcd_password_file {
            Some(path) => Some(Secret::new(
                std::fs::read_to_string(path)
                    .map_err(|e| {
                        anyhow::anyhow!("--etcd-password-file: cannot read {}: {e}", path.display())
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
            )),
            None => None,
        };
        Ok(EtcdSettings {
            endpoints: self.etcd_endpoints.clone(),
            prefix: EtcdSettings::normalized_prefix(&self.etcd_prefix),
            sidecar: self
                .sidecar_id
                .clone()
                .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned()),
            user: self.etcd_user.clone(),
            password,
            ca_file: self.etcd_ca_file.clone(),
            identity_files: self.etcd_cert_file.clone().zip(self.etcd_key_file.clone()),
            expiration,
        })
    }
}

/// `daedalus store export|import`.
pub fn run(args: StoreCommandArgs) -> anyhow::Result<()> {
    #[cfg(not(feature = "etcd"))]
    {
        drop(args);
        anyhow::bail!(
            "daedalus store: this daedalus was built without etcd support; build it with `cargo build --release --features etcd`"
        )
    }
    #[cfg(feature = "etcd")]
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(transfer(args))
    }
}

#[cfg(feature = "etcd")]
async fn transfer(args: StoreCommandArgs) -> anyhow::Result<()> {
    use daedalus_operations::operation_store::etcd::{Document, EtcdStore};
    use std::io::{BufRead, Write};
    match args.command {
        StoreCommand::Export { etcd } => {
            let settings = etcd.settings(Duration::from_secs(3600))?;
            let documents = EtcdStore::documents_in(settings).await?;
            let mut out = std::io::stdout().lock();
            for document in &documents {
                out.write_all(&document.to_bytes())?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
            tracing::info!(operations = documents.len(), "exported");
        }
        StoreCommand::Import {
            file,
            operations_expiration,
            etcd,
        } => {
            let settings = etcd.settings(operations_expiration)?;
            let input: Box<dyn BufRead> = match &file {
                Some(path) => Box::new(std::io::BufReader::new(
                    std::fs::File::open(path)
                        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?,
                )),
                None => Box::new(std::io::stdin().lock()),
            };
            let mut documents = Vec::new();
            for (number, line) in input.lines().enumerate() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                let document = Document::from_bytes(line.as_bytes())
                    .map_err(|e| anyhow::anyhow!("line {}: {e}", number + 1))?;
                document
                    .id()
                    .map_err(|e| anyhow::anyhow!("line {}: {e}", number + 1))?;
                documents.push(document);
            }
            let (written, present) = EtcdStore::import_into(settings, &documents).await?;
            eprintln!("imported {written} operations; {present} were there already");
        }
    }
    Ok(())
}
