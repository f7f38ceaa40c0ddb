//! Command-line interface. Every flag can also be set by a `DAEDALUS_*` environment variable.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use daedalus_operations::JmxService;
use daedalus_operations::decode::parse_duration;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sidecar: the operations REST API.
    Serve(ServeArgs),
    /// Talk to a JMX agent directly: get, set, invoke, query, info, listen.
    Jmx(crate::jmx_command::JmxCommandArgs),
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

    /// Do not add CORS headers to responses.
    #[arg(long, env = "DAEDALUS_DISABLE_CORS")]
    pub disable_cors: bool,

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

    /// The node's cassandra.yaml, served at GET /config; by default the first cassandra*.yaml under
    /// /var/lib/cassandra, as Icarus searches.
    #[arg(long, env = "DAEDALUS_CASSANDRA_CONFIG")]
    pub cassandra_config: Option<PathBuf>,

    #[command(flatten)]
    pub jmx: JmxArgs,
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

fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d.is_zero() => Err("must be longer than zero".into()),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
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
