//! Command-line interface. Every flag can also be set by a `DAEDALUS_*` environment variable.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use daedalus_operations::decode::parse_duration;

use crate::args::{JmxArgs, StorageArgs, parse_positive_duration};

#[derive(Debug, Parser)]
#[command(
    name = "daedalus",
    version = crate::version::LONG,
    about = "Sidecar for Apache Cassandra: an Icarus-compatible operations REST API",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log line format: human-readable text, or one JSON object per line.
    #[arg(long, global = true, env = "DAEDALUS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Which log lines to keep, as a tracing filter (e.g. `info`, `debug`, `info,daedalus_operations=debug`).
    #[arg(long, global = true, env = "DAEDALUS_LOG", default_value = "info")]
    pub log: String,
}

/// Flags holding secrets, with the variable that should carry them instead: a flag's value is in the process's
/// command line, which every local user can read (`ps`, `/proc/PID/cmdline`).
const SECRET_FLAGS: [(&str, &str, &str); 3] = [
    ("jmx_password", "--jmx-password", "DAEDALUS_JMX_PASSWORD"),
    (
        "jmx_truststore_password",
        "--jmx-truststore-password",
        "DAEDALUS_JMX_TRUSTSTORE_PASSWORD",
    ),
    (
        "jmx_keystore_password",
        "--jmx-keystore-password",
        "DAEDALUS_JMX_KEYSTORE_PASSWORD",
    ),
];

/// A secret given as a flag on the command line: the flag, and the environment variable to use instead.
#[derive(Debug, PartialEq, Eq)]
pub struct SecretOnCommandLine {
    pub flag: &'static str,
    pub env: &'static str,
}

/// Parses the command line (exiting on bad usage, as `Cli::parse` does), and tells which secrets it holds.
pub fn parse() -> (Cli, Vec<SecretOnCommandLine>) {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    if let Command::Serve(args) = &cli.command
        && let Err(problem) = args.check()
    {
        // Reported as clap reports bad usage (exit code 2), under `serve`'s usage line.
        let command = Cli::command();
        let mut serve = command.find_subcommand("serve").cloned().unwrap_or(command);
        serve.set_bin_name("daedalus serve");
        serve
            .error(clap::error::ErrorKind::ArgumentConflict, problem)
            .exit();
    }
    (cli, secrets_on_command_line(&matches))
}

fn secrets_on_command_line(matches: &clap::ArgMatches) -> Vec<SecretOnCommandLine> {
    let mut found = Vec::new();
    for (id, flag, env) in SECRET_FLAGS {
        // Global flags show up at every level below where they are defined; look at each level that has them.
        let mut level = Some(matches);
        while let Some(current) = level {
            // `try_get_raw` first: `value_source` panics on a level where the flag is not defined.
            if matches!(current.try_get_raw(id), Ok(Some(_)))
                && current.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
            {
                found.push(SecretOnCommandLine { flag, env });
                break;
            }
            level = current.subcommand().map(|(_, sub)| sub);
        }
    }
    found
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sidecar: the operations REST API.
    Serve(Box<ServeArgs>),
    /// Talk to a JMX agent directly: get, set, invoke, query, info, listen.
    Jmx(crate::jmx_command::JmxCommandArgs),
    /// Back up this node to object storage once (Esop's `backup`, same flags).
    Backup(crate::esop_cli::BackupArgs),
    /// List this node's backups in a bucket (Esop's `list`).
    List(crate::esop_cli::ListArgs),
    /// Remove backups of this node from a bucket (Esop's `remove-backup`).
    RemoveBackup(crate::esop_cli::RemoveBackupArgs),
    /// Upload commit-log segments (Esop's `commitlog-backup`).
    CommitlogBackup(crate::esop_cli::CommitLogBackupArgs),
    /// Restore a backup into this node (Esop's `restore`): IN_PLACE while Cassandra is stopped (an init
    /// container), HARDLINKS or IMPORT while it runs.
    Restore(Box<crate::esop_cli::RestoreArgs>),
    /// Download archived commit logs and set up their replay to a point in time at the next start (Esop's
    /// `commitlog-restore`); Cassandra stopped.
    CommitlogRestore(crate::esop_cli::CommitLogRestoreArgs),
    /// Check that a backup in a bucket is whole: every object its manifest names there with its size, with --deep
    /// its hash; exit 1 when it is not.
    Verify(crate::esop_cli::VerifyArgs),
    /// Copy operations out of an etcd store or into one, as JSON lines (`--store etcd` of `serve`).
    Store(crate::operation_store_args::StoreCommandArgs),
    /// Write the manual pages into DIR (for the packages).
    #[command(hide = true)]
    ManPages { dir: PathBuf },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, `[ADDRESS][:PORT]`; without an address, all interfaces (as Icarus does).
    #[arg(short = 'l', long, env = "DAEDALUS_LISTEN", default_value = "0.0.0.0:4567", value_parser = parse_listen)]
    pub listen: ListenAddress,

    /// How long finished operations stay visible, e.g. `30s`, `15m`, `1h`, `2d`.
    #[arg(short = 'e', long, env = "DAEDALUS_OPERATIONS_EXPIRATION", default_value = "1h", value_parser = parse_positive_duration)]
    pub operations_expiration: Duration,

    /// How many operations may run at once; the rest wait as PENDING.
    #[arg(long, env = "DAEDALUS_MAX_CONCURRENT_OPERATIONS", default_value_t = 10,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_operations: u16,

    /// How many operations may be pending or running at once; beyond it, POST /operations answers 429.
    #[arg(long, env = "DAEDALUS_MAX_UNFINISHED_OPERATIONS", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_unfinished_operations: u32,

    /// How many operations the sidecar keeps in memory (about 2 KiB each); storing one more drops the operation that
    /// finished first, before it expires (GET answers 404 for it). Never a pending or running one, so it must be at
    /// least --max-unfinished-operations. With --store etcd it bounds this sidecar's copy; etcd keeps every
    /// operation until it expires.
    #[arg(long, env = "DAEDALUS_MAX_STORED_OPERATIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_stored_operations: u32,

    /// Schedules to keep from the start: a YAML or JSON list of `POST /schedules` bodies, each with an optional
    /// stable `id` (required with --store etcd, so that a restart finds its schedule again). An invalid file
    /// stops the start, naming the entry and the field. Without --store etcd, schedules created over the API are
    /// lost when the sidecar stops; these are back at each start.
    #[arg(long, env = "DAEDALUS_SCHEDULES_FILE", value_name = "PATH")]
    pub schedules_file: Option<std::path::PathBuf>,

    /// How many schedules the store keeps; beyond it, POST /schedules answers 409.
    #[arg(long, env = "DAEDALUS_MAX_SCHEDULES", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_schedules: u32,

    /// Do not add CORS headers to responses.
    #[arg(long, env = "DAEDALUS_DISABLE_CORS")]
    pub disable_cors: bool,

    /// Origins whose web pages may call the API: `*` (any, without credentials, as Icarus) or a comma-separated
    /// list such as `https://console.example.com`, echoed back with credentials allowed.
    #[arg(long, env = "DAEDALUS_CORS_ALLOWED_ORIGINS", default_value = "*",
          value_parser = crate::http::cors::AllowedOrigins::parse)]
    pub cors_allowed_origins: crate::http::cors::AllowedOrigins,

    /// Build the `Location` of new operations from `Forwarded` / `X-Forwarded-Proto` / `X-Forwarded-Host`: only
    /// behind a proxy that sets them, since any client can send them.
    #[arg(long, env = "DAEDALUS_TRUST_FORWARDED_HEADERS")]
    pub trust_forwarded_headers: bool,

    /// Offer the `truncate` operation, which deletes every row of a table.
    #[arg(long, env = "DAEDALUS_ENABLE_TRUNCATE")]
    pub enable_truncate: bool,

    /// Offer the `sleep` operation, which only waits: for testing clients and the sidecar itself.
    #[arg(long, env = "DAEDALUS_ENABLE_TEST_OPERATIONS")]
    pub enable_test_operations: bool,

    /// On SIGTERM or `stop`, how long running operations get to wind down before the process exits.
    #[arg(long, env = "DAEDALUS_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Largest accepted request body.
    #[arg(long, env = "DAEDALUS_MAX_REQUEST_BYTES", default_value_t = 1024 * 1024)]
    pub max_request_bytes: usize,

    /// How long a client may take to send a request's head (line and headers); then 408 and the connection closes.
    #[arg(long, env = "DAEDALUS_REQUEST_HEADER_TIMEOUT", default_value = "5s", value_parser = parse_positive_duration)]
    pub request_header_timeout: Duration,

    /// How long a client may take to send a request's body once the head is in; then 408 and the connection closes.
    #[arg(long, env = "DAEDALUS_REQUEST_BODY_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub request_body_timeout: Duration,

    /// Most HTTP connections open at once; more wait to be accepted. Lowered to fit the open-files limit.
    #[arg(long, env = "DAEDALUS_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// The node's cassandra.yaml, served at GET /config (by default the first cassandra*.yaml under
    /// /var/lib/cassandra, as Icarus searches). Restores into the stopped node (IN_PLACE, commitlog-restore) take
    /// the node's directories from it (default /etc/cassandra/cassandra.yaml), and write only there.
    #[arg(long, env = "DAEDALUS_CASSANDRA_CONFIG")]
    pub cassandra_config: Option<PathBuf>,

    /// Cassandra's own directory (cassandra.storagedir): the directories cassandra.yaml does not set lie under it.
    /// Restores into the stopped node write only in the directories these two settings name.
    #[arg(
        long,
        env = "DAEDALUS_CASSANDRA_DIR",
        default_value = "/var/lib/cassandra"
    )]
    pub cassandra_dir: PathBuf,

    /// PEM certificate chain for TLS on the API (with --tls-key-file); re-read when it changes.
    #[arg(long, env = "DAEDALUS_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM private key of --tls-cert-file.
    #[arg(long, env = "DAEDALUS_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,

    /// PEM CA certificates: clients must present a certificate it signed (mTLS).
    #[arg(long, env = "DAEDALUS_TLS_CLIENT_CA_FILE", requires = "tls_cert_file")]
    pub tls_client_ca_file: Option<PathBuf>,

    /// A file holding one bearer token that may read (GET, HEAD); repeatable. With no token file at all, the API
    /// is open, as Icarus's is. Files are re-read when they change.
    #[arg(
        long = "read-token-file",
        env = "DAEDALUS_READ_TOKEN_FILES",
        value_delimiter = ','
    )]
    pub read_token_files: Vec<PathBuf>,

    /// A file holding one bearer token that may do anything (also POST and DELETE); repeatable.
    #[arg(
        long = "admin-token-file",
        env = "DAEDALUS_ADMIN_TOKEN_FILES",
        value_delimiter = ','
    )]
    pub admin_token_files: Vec<PathBuf>,

    /// A name (DNS subject alternative name) of client certificates that may read, as a read token does; repeatable.
    /// Needs --tls-client-ca-file, which verifies those certificates.
    #[arg(
        long = "read-client-name",
        env = "DAEDALUS_READ_CLIENT_NAMES",
        value_delimiter = ',',
        requires = "tls_client_ca_file"
    )]
    pub read_client_names: Vec<String>,

    /// A name of client certificates that may do anything, as an admin token does; repeatable.
    #[arg(
        long = "admin-client-name",
        env = "DAEDALUS_ADMIN_CLIENT_NAMES",
        value_delimiter = ',',
        requires = "tls_client_ca_file"
    )]
    pub admin_client_names: Vec<String>,

    /// Let `/health/live` and `/health/ready` answer without a token (for probes).
    #[arg(long, env = "DAEDALUS_OPEN_HEALTH_PROBES")]
    pub open_health_probes: bool,

    /// Let `/metrics` answer without a token (for a Prometheus scraper).
    #[arg(long, env = "DAEDALUS_OPEN_METRICS")]
    pub open_metrics: bool,

    #[command(flatten)]
    pub store: crate::operation_store_args::StoreArgs,

    #[command(flatten)]
    pub peers: PeerArgs,

    #[command(flatten)]
    pub jmx: JmxArgs,

    #[command(flatten)]
    pub storage: StorageArgs,
}

/// How this sidecar reaches the other nodes' sidecars when it coordinates a cluster-wide operation
/// (`globalRequest`): at `SCHEME://<node address>:PORT`.
#[derive(Debug, Args)]
pub struct PeerArgs {
    /// The peers' port; default: the port this sidecar listens on, as Icarus assumes.
    #[arg(long, env = "DAEDALUS_PEER_PORT")]
    pub peer_port: Option<u16>,

    /// `http` or `https`; default: `https` when this sidecar serves TLS (--tls-cert-file), `http` otherwise.
    #[arg(long, env = "DAEDALUS_PEER_SCHEME", value_parser = ["http", "https"])]
    pub peer_scheme: Option<String>,

    /// PEM CA certificates that signed the peers' server certificates; default: --tls-client-ca-file if given,
    /// else the system's roots.
    #[arg(long, env = "DAEDALUS_PEER_CA_FILE")]
    pub peer_ca_file: Option<PathBuf>,

    /// How long connecting to a peer may take.
    #[arg(long, env = "DAEDALUS_PEER_CONNECT_TIMEOUT", default_value = "5s", value_parser = parse_positive_duration)]
    pub peer_connect_timeout: Duration,

    /// How long one call to a peer may take, answer included.
    #[arg(long, env = "DAEDALUS_PEER_REQUEST_TIMEOUT", default_value = "15s", value_parser = parse_positive_duration)]
    pub peer_request_timeout: Duration,

    /// Extra attempts of a peer call that did not get through (never of a submission the peer may have received).
    #[arg(long, env = "DAEDALUS_PEER_RETRIES", default_value_t = 2)]
    pub peer_retries: u32,

    /// The bearer token sent to peers (they must accept it as an admin token); default: the first
    /// --admin-token-file.
    #[arg(long, env = "DAEDALUS_PEER_TOKEN_FILE")]
    pub peer_token_file: Option<PathBuf>,

    /// How often each node's part of a cluster-wide operation is polled.
    #[arg(long, env = "DAEDALUS_PEER_POLL_INTERVAL", default_value = "2s", value_parser = parse_positive_duration)]
    pub peer_poll_interval: Duration,
}

impl ServeArgs {
    /// Where the node's files are when Cassandra is stopped: `--cassandra-dir` and `--cassandra-config` (default
    /// `/etc/cassandra/cassandra.yaml`, Esop's `cassandraConfigDirectory`).
    pub fn node_config(&self) -> daedalus_operations::node_fs::NodeConfig {
        let defaults = daedalus_operations::node_fs::NodeConfig::package_defaults();
        daedalus_operations::node_fs::NodeConfig {
            cassandra_dir: self.cassandra_dir.clone(),
            cassandra_yaml: self
                .cassandra_config
                .clone()
                .unwrap_or(defaults.cassandra_yaml),
            ..defaults
        }
    }

    /// Checks what no single flag's parser can: how flags relate to each other.
    pub fn check(&self) -> Result<(), String> {
        if self.max_stored_operations < self.max_unfinished_operations {
            return Err(format!(
                "--max-stored-operations ({}) is below --max-unfinished-operations ({}): the store must be able to \
                 keep every pending and running operation; raise the first or lower the second",
                self.max_stored_operations, self.max_unfinished_operations
            ));
        }
        Ok(())
    }

    /// The TLS files, when TLS is asked for.
    pub fn tls(&self) -> Option<crate::http::tls::TlsFiles> {
        Some(crate::http::tls::TlsFiles {
            cert: self.tls_cert_file.clone()?,
            key: self.tls_key_file.clone()?,
            client_ca: self.tls_client_ca_file.clone(),
        })
    }
}

impl PeerArgs {
    pub fn settings(&self) -> daedalus_operations::peer::PeerSettings {
        let mut settings = daedalus_operations::peer::PeerSettings::default();
        if let Some(scheme) = &self.peer_scheme {
            settings.scheme = scheme.clone();
        }
        settings.ca_file = self.peer_ca_file.clone();
        settings.port = self.peer_port;
        settings.connect_timeout = self.peer_connect_timeout;
        settings.request_timeout = self.peer_request_timeout;
        settings.retries = self.peer_retries;
        settings.poll_interval = self.peer_poll_interval;
        settings.token_file = self.peer_token_file.clone();
        settings
    }
}

/// Where the HTTP server binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddress {
    pub host: String,
    pub port: u16,
}

const DEFAULT_PORT: u16 = 4567;

fn parse_listen(text: &str) -> Result<ListenAddress, String> {
    let invalid =
        || format!("'{text}' is not an address: use [ADDRESS][:PORT], e.g. 0.0.0.0:4567 or :4567");
    let (host, port) =
        daedalus_operations::net::split_host_port(text.trim()).ok_or_else(invalid)?;
    let port = match port {
        Some(port) => port.parse().map_err(|_| invalid())?,
        None => DEFAULT_PORT,
    };
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    Ok(ListenAddress {
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::CqlArgs;
    use clap::CommandFactory;
    use daedalus_operations::Secret;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn cql_args(args: &[&str]) -> CqlArgs {
        let mut argv = vec!["daedalus", "serve"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(serve) => serve.storage.cql,
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn cql_flags_become_cql_settings() {
        let defaults = cql_args(&[]).settings_with(None).unwrap();
        assert_eq!(defaults.address, None, "asked of Cassandra");
        assert_eq!(defaults.username, None);
        assert_eq!(defaults.password, None);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cql-password");
        std::fs::write(&file, "s3cret\n").unwrap();
        let file = file.to_str().unwrap();
        let args = cql_args(&[
            "--cql-address",
            "10.0.0.5:9142",
            "--cql-username",
            "restorer",
            "--cql-password-file",
            file,
        ]);
        let settings = args.settings_with(None).unwrap();
        assert_eq!(
            settings.address.as_ref().unwrap().to_string(),
            "10.0.0.5:9142"
        );
        assert_eq!(settings.username.as_deref(), Some("restorer"));
        assert_eq!(
            settings.password.as_ref().map(Secret::expose),
            Some("s3cret")
        );
        assert!(!format!("{settings:?}").contains("s3cret"));

        let from_env = cql_args(&["--cql-username", "restorer"])
            .settings_with(Some("from-env".into()))
            .unwrap();
        assert_eq!(
            from_env.password.as_ref().map(Secret::expose),
            Some("from-env")
        );
    }

    #[test]
    fn bad_cql_flags_are_refused_without_showing_the_password() {
        assert!(Cli::try_parse_from(["daedalus", "serve", "--cql-address", "host:0"]).is_err());
        let missing = cql_args(&[
            "--cql-username",
            "u",
            "--cql-password-file",
            "/nonexistent/cql-password",
        ])
        .settings_with(None)
        .unwrap_err()
        .to_string();
        assert!(missing.contains("/nonexistent/cql-password"), "{missing}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cql-password");
        std::fs::write(&file, "s3cret").unwrap();
        let file = file.to_str().unwrap();
        let both = cql_args(&["--cql-username", "u", "--cql-password-file", file])
            .settings_with(Some("other".into()))
            .unwrap_err()
            .to_string();
        assert!(
            both.contains("not both") && !both.contains("s3cret") && !both.contains("other"),
            "{both}"
        );
        let no_user = cql_args(&[])
            .settings_with(Some("s3cret".into()))
            .unwrap_err()
            .to_string();
        assert!(
            no_user.contains("--cql-username") && !no_user.contains("s3cret"),
            "{no_user}"
        );
    }

    #[test]
    fn secrets_given_as_flags_are_found_wherever_they_are() {
        let found = |args: &[&str]| {
            secrets_on_command_line(&Cli::command().get_matches_from(args))
                .into_iter()
                .map(|s| s.flag)
                .collect::<Vec<_>>()
        };
        assert_eq!(found(&["daedalus", "serve"]), Vec::<&str>::new());
        assert_eq!(
            found(&["daedalus", "serve", "--jmx-password", "x"]),
            ["--jmx-password"]
        );
        assert_eq!(
            found(&[
                "daedalus",
                "jmx",
                "--jmx-keystore-password=k",
                "info",
                "java.lang:type=Runtime"
            ]),
            ["--jmx-keystore-password"]
        );
    }

    #[test]
    fn listen_accepts_icarus_forms() {
        let parse = |t| parse_listen(t).map(|a| (a.host, a.port));
        assert_eq!(parse(":4567"), Ok(("0.0.0.0".into(), 4567)));
        assert_eq!(parse("127.0.0.1"), Ok(("127.0.0.1".into(), 4567)));
        assert_eq!(parse("[::1]:8080"), Ok(("::1".into(), 8080)));
        assert!(parse("host:port").unwrap_err().contains("[ADDRESS][:PORT]"));
    }

    #[test]
    fn expiration_must_be_a_positive_duration() {
        assert_eq!(
            parse_positive_duration("2d"),
            Ok(Duration::from_secs(172_800))
        );
        assert!(parse_positive_duration("0s").is_err());
        assert!(parse_positive_duration("soon").is_err());
    }
}
