//! `daedalus backup | list | remove-backup | commitlog-backup`: Esop's command-line flags, turned into the same
//! request bodies the REST API takes, and run once in this process (see `once.rs`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::{Map, Value, json};

use crate::cli::{JmxArgs, StorageArgs};
use crate::once;

/// Flags every object-storage command shares (Esop's connection, proxy and retry flags).
#[derive(Debug, Args)]
pub struct ConnectionFlags {
    /// Where the backups live: `PROTOCOL://BUCKET/CLUSTER/DC/NODE` (`s3`, `gcp`, `azure`), or
    /// `file:///DIR/BUCKET/CLUSTER/DC/NODE`.
    #[arg(long = "storage-location", visible_alias = "sl")]
    pub storage_location: String,

    /// Parallel transfers.
    #[arg(
        long = "concurrent-connections",
        visible_alias = "cc",
        default_value_t = 10
    )]
    pub concurrent_connections: i32,

    /// Plain HTTP to the store (Esop's `insecure`).
    #[arg(long = "insecure-http")]
    pub insecure_http: bool,

    #[arg(long = "skip-bucket-verification")]
    pub skip_bucket_verification: bool,

    #[arg(long = "use-proxy")]
    pub use_proxy: bool,
    #[arg(long = "proxy-host")]
    pub proxy_host: Option<String>,
    #[arg(long = "proxy-port")]
    pub proxy_port: Option<i32>,
    #[arg(long = "proxy-username")]
    pub proxy_username: Option<String>,
    #[arg(
        long = "proxy-password",
        env = "DAEDALUS_PROXY_PASSWORD",
        hide_env_values = true
    )]
    pub proxy_password: Option<String>,
    #[arg(long = "proxy-protocol")]
    pub proxy_protocol: Option<String>,

    /// Seconds between retries of a failed transfer.
    #[arg(long = "retry-interval", default_value_t = 10)]
    pub retry_interval: i32,
    /// `linear` or `exponential`.
    #[arg(long = "retry-strategy", default_value = "linear")]
    pub retry_strategy: String,
    /// Retries after the first try.
    #[arg(long = "retry-max-attempts", default_value_t = 3)]
    pub retry_max_attempts: i32,
    /// Accepted for Esop compatibility; retries are always on.
    #[arg(long = "retry-enabled")]
    pub retry_enabled: bool,

    /// Print the operation as JSON when it ends.
    #[arg(long)]
    pub json: bool,
}

impl ConnectionFlags {
    fn add_to(&self, body: &mut Map<String, Value>) {
        body.insert("storageLocation".into(), json!(self.storage_location));
        body.insert(
            "concurrentConnections".into(),
            json!(self.concurrent_connections),
        );
        body.insert("insecure".into(), json!(self.insecure_http));
        body.insert(
            "skipBucketVerification".into(),
            json!(self.skip_bucket_verification),
        );
        if self.proxy_host.is_some() || self.proxy_port.is_some() {
            body.insert(
                "proxySettings".into(),
                json!({
                    "useProxy": self.use_proxy,
                    "proxyHost": self.proxy_host,
                    "proxyPort": self.proxy_port,
                    "proxyUsername": self.proxy_username,
                    "proxyPassword": self.proxy_password,
                    "proxyProtocol": self.proxy_protocol,
                }),
            );
        }
        body.insert(
            "retry".into(),
            json!({
                "interval": self.retry_interval,
                "strategy": self.retry_strategy,
                "maxAttempts": self.retry_max_attempts,
                "enabled": self.retry_enabled,
            }),
        );
    }
}

/// Esop's `backup` command.
#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub connection: ConnectionFlags,
    /// Cassandra data directory (repeatable); default: the ones Cassandra reports.
    #[arg(long = "data-dir")]
    pub data_dirs: Vec<PathBuf>,
    /// Default `autosnap-<epoch seconds>`; becomes `<tag>-<schemaVersion>-<millis>`.
    #[arg(short = 's', long = "snapshot-tag", visible_alias = "st")]
    pub snapshot_tag: Option<String>,
    /// `ks1,ks2` or `ks1.t1,ks2.t2`; default everything.
    #[arg(long)]
    pub entities: Option<String>,
    /// Minimum rate: finish within this time even above --bandwidth, e.g. `1h`.
    #[arg(short = 'd', long)]
    pub duration: Option<String>,
    /// Maximum rate for the whole backup, e.g. `10MBPS`.
    #[arg(short = 'b', long)]
    pub bandwidth: Option<String>,
    #[arg(long = "create-missing-bucket")]
    pub create_missing_bucket: bool,
    #[arg(long = "skip-refreshing")]
    pub skip_refreshing: bool,
    #[arg(
        long = "metadata-directive",
        visible_alias = "md",
        default_value = "COPY"
    )]
    pub metadata_directive: String,
    #[arg(long = "uploadClusterTopology")]
    pub upload_cluster_topology: bool,
    /// `SHA-256` (default), `CRC` or `NONE`.
    #[arg(long = "hash-algorithm", default_value = "SHA-256")]
    pub hash_algorithm: String,
    #[arg(long = "schema-version")]
    pub schema_version: Option<String>,
    #[arg(long = "kmsKeyId")]
    pub kms_key_id: Option<String>,
    #[command(flatten)]
    pub jmx: JmxArgs,
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// Esop's `list` command.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub connection: ConnectionFlags,
    /// Complete an incomplete location from the local Cassandra.
    #[arg(long = "resolve-nodes")]
    pub resolve_nodes: bool,
    /// Only backups taken at or before this instant (epoch millis).
    #[arg(long = "from-timestamp")]
    pub from_timestamp: Option<i64>,
    /// Only the N oldest.
    #[arg(long = "last-n")]
    pub last_n: Option<i32>,
    /// Sizes as `1.2 GiB` rather than bytes.
    #[arg(long = "human-units")]
    pub human_units: bool,
    #[command(flatten)]
    pub jmx: JmxArgs,
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// Esop's `remove-backup` command.
#[derive(Debug, Args)]
pub struct RemoveBackupArgs {
    #[command(flatten)]
    pub connection: ConnectionFlags,
    /// The backup (manifest name without `.json`).
    #[arg(short = 'n', long = "backup-name", visible_alias = "name")]
    pub backup_name: Option<String>,
    /// Remove the oldest backup.
    #[arg(short = 'o', long)]
    pub oldest: bool,
    /// Remove every backup older than this, e.g. `14d`.
    #[arg(long = "older-than")]
    pub older_than: Option<String>,
    /// Only say what would be removed.
    #[arg(short = 'd', long)]
    pub dry: bool,
    #[arg(long = "resolve-nodes")]
    pub resolve_nodes: bool,
    #[command(flatten)]
    pub jmx: JmxArgs,
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// Esop's `commitlog-backup` command.
#[derive(Debug, Args)]
pub struct CommitLogBackupArgs {
    #[command(flatten)]
    pub connection: ConnectionFlags,
    /// Commit-log directory; default: the one Cassandra reports.
    #[arg(long = "commit-log-dir")]
    pub commit_log_dir: Option<PathBuf>,
    /// Directory used instead when it exists (e.g. the archive_command target).
    #[arg(long = "cl-archive")]
    pub archive: Option<PathBuf>,
    /// Back up only this segment.
    #[arg(long = "commit-log")]
    pub commit_log: Option<PathBuf>,
    /// Complete an incomplete location from the local Cassandra.
    #[arg(long)]
    pub online: bool,
    #[arg(short = 'd', long)]
    pub duration: Option<String>,
    #[arg(short = 'b', long)]
    pub bandwidth: Option<String>,
    #[command(flatten)]
    pub jmx: JmxArgs,
    #[command(flatten)]
    pub storage: StorageArgs,
}

fn insert_some(body: &mut Map<String, Value>, key: &str, value: Option<impl Into<Value>>) {
    if let Some(value) = value {
        body.insert(key.into(), value.into());
    }
}

fn path_text(path: &Option<PathBuf>) -> Option<String> {
    path.as_ref().map(|p| p.display().to_string())
}

pub fn backup(args: BackupArgs) -> anyhow::Result<ExitCode> {
    let mut body = Map::new();
    body.insert("type".into(), json!("backup"));
    args.connection.add_to(&mut body);
    if !args.data_dirs.is_empty() {
        let dirs: Vec<String> = args
            .data_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        body.insert("dataDirs".into(), json!(dirs));
    }
    insert_some(&mut body, "snapshotTag", args.snapshot_tag);
    insert_some(&mut body, "entities", args.entities);
    insert_some(&mut body, "duration", args.duration);
    insert_some(&mut body, "bandwidth", args.bandwidth);
    insert_some(&mut body, "schemaVersion", args.schema_version);
    insert_some(&mut body, "kmsKeyId", args.kms_key_id);
    body.insert(
        "createMissingBucket".into(),
        json!(args.create_missing_bucket),
    );
    body.insert("skipRefreshing".into(), json!(args.skip_refreshing));
    body.insert("metadataDirective".into(), json!(args.metadata_directive));
    body.insert(
        "uploadClusterTopology".into(),
        json!(args.upload_cluster_topology),
    );
    body.insert("hashAlgorithm".into(), json!(args.hash_algorithm));
    let outcome = once::run(
        Value::Object(body),
        &args.jmx,
        &args.storage,
        args.connection.json,
    )?;
    if outcome.completed && !args.connection.json {
        let response = &outcome.operation["response"];
        println!(
            "backup {} complete: {} files ({} bytes), {} uploaded, {} already in the bucket; manifest {}",
            response["snapshotTag"].as_str().unwrap_or_default(),
            response["stats"]["files"],
            response["stats"]["bytes"],
            response["stats"]["uploadedFiles"],
            response["stats"]["skippedFiles"],
            response["manifest"].as_str().unwrap_or_default(),
        );
    }
    Ok(outcome.exit_code())
}

pub fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let mut body = Map::new();
    body.insert("type".into(), json!("list"));
    args.connection.add_to(&mut body);
    body.insert("resolveNodes".into(), json!(args.resolve_nodes));
    body.insert("humanUnits".into(), json!(args.human_units));
    insert_some(&mut body, "fromTimestamp", args.from_timestamp);
    insert_some(&mut body, "lastN", args.last_n);
    let outcome = once::run(
        Value::Object(body),
        &args.jmx,
        &args.storage,
        args.connection.json,
    )?;
    if outcome.completed && !args.connection.json {
        print_report(&outcome.operation["response"], args.human_units);
    }
    Ok(outcome.exit_code())
}

/// Esop's table: `Timestamp Name Files "Occupied space" "Reclaimable space"`, newest first.
fn print_report(report: &Value, human: bool) {
    let size = |value: &Value| {
        let bytes = value.as_u64().unwrap_or_default();
        if human {
            human_bytes(bytes)
        } else {
            bytes.to_string()
        }
    };
    println!("Timestamp\tName\tFiles\tOccupied space\tReclaimable space");
    for entry in report["reports"].as_array().into_iter().flatten() {
        println!(
            "{}\t{}\t{}\t{}\t{}",
            entry["timestamp"].as_str().unwrap_or_default(),
            entry["name"].as_str().unwrap_or_default(),
            entry["files"],
            size(&entry["size"]),
            size(&entry["reclaimableSpace"]),
        );
    }
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

pub fn remove_backup(args: RemoveBackupArgs) -> anyhow::Result<ExitCode> {
    let mut body = Map::new();
    body.insert("type".into(), json!("remove-backup"));
    args.connection.add_to(&mut body);
    insert_some(&mut body, "backupName", args.backup_name);
    insert_some(&mut body, "olderThan", args.older_than);
    body.insert("removeOldest".into(), json!(args.oldest));
    body.insert("dry".into(), json!(args.dry));
    body.insert("resolveNodes".into(), json!(args.resolve_nodes));
    let outcome = once::run(
        Value::Object(body),
        &args.jmx,
        &args.storage,
        args.connection.json,
    )?;
    if outcome.completed && !args.connection.json {
        let response = &outcome.operation["response"];
        let verb = if args.dry { "would remove" } else { "removed" };
        for removed in response["removed"].as_array().into_iter().flatten() {
            println!(
                "{verb} {} ({} objects, {} bytes)",
                removed["name"].as_str().unwrap_or_default(),
                removed["removedObjects"],
                removed["reclaimedSpace"],
            );
        }
    }
    Ok(outcome.exit_code())
}

pub fn commitlog_backup(args: CommitLogBackupArgs) -> anyhow::Result<ExitCode> {
    let mut body = Map::new();
    body.insert("type".into(), json!("commitlog-backup"));
    args.connection.add_to(&mut body);
    insert_some(
        &mut body,
        "cassandraCommitLogDirectory",
        path_text(&args.commit_log_dir),
    );
    insert_some(
        &mut body,
        "commitLogArchiveOverride",
        path_text(&args.archive),
    );
    insert_some(&mut body, "commitLog", path_text(&args.commit_log));
    insert_some(&mut body, "duration", args.duration);
    insert_some(&mut body, "bandwidth", args.bandwidth);
    body.insert("online".into(), json!(args.online));
    let outcome = once::run(
        Value::Object(body),
        &args.jmx,
        &args.storage,
        args.connection.json,
    )?;
    if outcome.completed && !args.connection.json {
        let stats = &outcome.operation["response"]["stats"];
        println!(
            "commit logs backed up: {} segments, {} uploaded",
            stats["files"], stats["uploadedFiles"]
        );
    }
    Ok(outcome.exit_code())
}
