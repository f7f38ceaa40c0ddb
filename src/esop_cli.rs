//! `daedalus backup | list | remove-backup | commitlog-backup | restore | commitlog-restore | verify`: Esop's
//! command-line flags, turned into the same typed requests the REST API decodes, and run once in this process (see
//! `once.rs`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use daedalus_operations::Operation;
use daedalus_operations::backup::run::BackupResponse;
use daedalus_operations::decode::{DataRate, HumanDuration};
use daedalus_operations::node_fs::{ConfigFlags, NodeConfig};
use daedalus_operations::registry::prepare_request;
use daedalus_operations::storage::request::{Connection, ProxySettings, Retry, StorageRequest};
use daedalus_operations::storage::transfer::hashes::HashAlgorithm;
use daedalus_operations::storage::{Entities, KeyspaceTable, StorageLocation};
use daedalus_operations::types::backup::{Backup, BackupFields};
use daedalus_operations::types::commitlog_backup::{CommitLogBackup, CommitLogBackupFields};
use daedalus_operations::types::commitlog_restore::{CommitLogRestore, CommitLogRestoreFields};
use daedalus_operations::types::import::ImportRequest;
use daedalus_operations::types::list::{List, ListFields};
use daedalus_operations::types::remove_backup::{RemoveBackup, RemoveBackupFields};
use daedalus_operations::types::restore::{Phase, Restore, RestoreFields, Strategy};
use daedalus_operations::types::verify::{Verify, VerifyFields};
use daedalus_operations::verify::VerifyResponse;
use serde::Deserialize;
use serde_json::Value;

use crate::args::{JmxArgs, StorageArgs};
use crate::once;
use crate::restore_marker::RestoreMarker;

/// Parses a flag with the request field's own parser, so the command line and the REST API accept the same.
fn parse_with<T>(
    parse: fn(&str) -> Result<T, String>,
) -> impl Fn(&str) -> Result<T, String> + Clone {
    move |text| parse(text)
}

/// Flags every object-storage command shares (Esop's connection, proxy and retry flags).
#[derive(Debug, Args)]
pub struct ConnectionFlags {
    /// Where the backups live: `PROTOCOL://BUCKET/CLUSTER/DC/NODE` (`s3`, `gcp`, `azure`), or
    /// `file:///DIR/BUCKET/CLUSTER/DC/NODE`.
    #[arg(long = "storage-location", visible_alias = "sl", value_parser = parse_with(StorageLocation::parse))]
    pub storage_location: StorageLocation,

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

    /// Do not check that the bucket exists before the transfer (for credentials that may not list buckets).
    #[arg(long = "skip-bucket-verification")]
    pub skip_bucket_verification: bool,

    /// Accepted for Esop compatibility: the proxy is used whenever --proxy-host and --proxy-port are given.
    #[arg(long = "use-proxy")]
    pub use_proxy: bool,
    /// Host of the HTTP(S) proxy to reach the store through (S3 only).
    #[arg(long = "proxy-host")]
    pub proxy_host: Option<String>,
    /// Port of the proxy (1-65535).
    #[arg(long = "proxy-port")]
    pub proxy_port: Option<i32>,
    /// User name for the proxy.
    #[arg(long = "proxy-username")]
    pub proxy_username: Option<String>,
    /// Password for the proxy; never logged nor echoed in the operation.
    #[arg(
        long = "proxy-password",
        env = "DAEDALUS_PROXY_PASSWORD",
        hide_env_values = true
    )]
    pub proxy_password: Option<String>,
    /// How to talk to the proxy: `http` (default) or `https`.
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

    /// Esop reads the store's credentials from this Kubernetes secret (the Instaclustr operator's restore init
    /// container passes it). Daedalus reads them from its environment: accepted, so that command line runs, and the
    /// log says where credentials come from.
    #[arg(long = "k8s-secret-name", value_name = "NAME")]
    pub k8s_secret_name: Option<String>,
    /// The namespace of --k8s-secret-name.
    #[arg(long = "k8s-namespace", value_name = "NAMESPACE")]
    pub k8s_namespace: Option<String>,
}

impl ConnectionFlags {
    fn connection(&self) -> Connection {
        if let Some(secret) = &self.k8s_secret_name {
            tracing::warn!(
                secret = %secret,
                namespace = self.k8s_namespace.as_deref().unwrap_or("default"),
                "the store's credentials come from this process's environment (AWS_*, AZURE_STORAGE_*, \
                 GOOGLE_APPLICATION_CREDENTIALS), not from the Kubernetes secret: mount the secret as environment \
                 variables"
            );
        }
        let proxy_settings =
            (self.proxy_host.is_some() || self.proxy_port.is_some()).then(|| ProxySettings {
                use_proxy: self.use_proxy,
                proxy_host: self.proxy_host.clone(),
                proxy_port: self.proxy_port,
                proxy_username: self.proxy_username.clone(),
                proxy_password: self.proxy_password.clone(),
                proxy_protocol: self.proxy_protocol.clone(),
            });
        Connection {
            storage_location: self.storage_location.clone(),
            concurrent_connections: self.concurrent_connections,
            insecure: self.insecure_http,
            skip_bucket_verification: self.skip_bucket_verification,
            proxy_settings,
            retry: Some(Retry {
                interval: self.retry_interval,
                strategy: self.retry_strategy.to_ascii_uppercase(),
                max_attempts: self.retry_max_attempts,
                enabled: self.retry_enabled,
            }),
        }
    }

    /// Runs `operation` with this connection and `fields`.
    fn run<O, F>(
        &self,
        operation: O,
        fields: F,
        jmx: &JmxArgs,
        storage: &StorageArgs,
    ) -> anyhow::Result<once::OperationRecordOutcome>
    where
        O: Operation<Request = StorageRequest<F>>,
    {
        let request = StorageRequest {
            connection: self.connection(),
            fields,
        };
        let prepared = prepare_request(Arc::new(operation), request, chrono::Utc::now());
        once::run(prepared, jmx, storage, self.json)
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
    #[arg(long, value_parser = parse_with(Entities::parse), default_value = "")]
    pub entities: Entities,
    /// Minimum rate: finish within this time even above --bandwidth, e.g. `1h`.
    #[arg(short = 'd', long)]
    pub duration: Option<HumanDuration>,
    /// Maximum rate for the whole backup, e.g. `10MBPS`.
    #[arg(short = 'b', long)]
    pub bandwidth: Option<DataRate>,
    /// Create the bucket when it does not exist (S3 and `file://`; on other stores it must exist).
    #[arg(long = "create-missing-bucket")]
    pub create_missing_bucket: bool,
    /// Accepted for Esop compatibility; objects already in the bucket are not refreshed.
    #[arg(long = "skip-refreshing")]
    pub skip_refreshing: bool,
    /// Accepted for Esop compatibility (`COPY` or `REPLACE`); objects already in the bucket are not refreshed.
    #[arg(
        long = "metadata-directive",
        visible_alias = "md",
        default_value = "COPY"
    )]
    pub metadata_directive: String,
    /// Also upload the cluster's topology (every node's host id, data centre and tokens) with the backup.
    #[arg(long = "uploadClusterTopology")]
    pub upload_cluster_topology: bool,
    /// `SHA-256` (default), `CRC` or `NONE`.
    #[arg(long = "hash-algorithm", default_value = "SHA-256", value_parser = parse_with(parse_hash_algorithm))]
    pub hash_algorithm: HashAlgorithm,
    /// The schema version the manifest's name carries; default: the one Cassandra reports.
    #[arg(long = "schema-version")]
    pub schema_version: Option<uuid::Uuid>,
    /// Esop's client-side KMS encryption, which Daedalus does not do: a backup naming a key is refused. Use the
    /// bucket's default encryption.
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
    /// Remove every backup older than this, e.g. `14d`; with --keep-last, a backup goes when either takes it.
    #[arg(long = "older-than")]
    pub older_than: Option<HumanDuration>,
    /// Remove every backup but this many newest (of --snapshot-tag, when given).
    #[arg(long = "keep-last")]
    pub keep_last: Option<i32>,
    /// --oldest, --older-than and --keep-last choose among the backups of this tag only. The newest backup (of the
    /// tag) always stays, as do backups an unfinished restore or verify reads.
    #[arg(long = "snapshot-tag")]
    pub snapshot_tag: Option<String>,
    /// Only say what would be removed.
    #[arg(short = 'd', long, visible_alias = "dry-run")]
    pub dry: bool,
    /// Complete an incomplete location from the local Cassandra.
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
    /// Minimum rate: finish within this time even above --bandwidth, e.g. `1h`.
    #[arg(short = 'd', long)]
    pub duration: Option<HumanDuration>,
    /// Maximum rate for the whole upload, e.g. `10MBPS`.
    #[arg(short = 'b', long)]
    pub bandwidth: Option<DataRate>,
    #[command(flatten)]
    pub jmx: JmxArgs,
    #[command(flatten)]
    pub storage: StorageArgs,
}

fn parse_hash_algorithm(text: &str) -> Result<HashAlgorithm, String> {
    serde_json::from_value(Value::String(text.to_string()))
        .map_err(|_| format!("'{text}' is not a hash algorithm: use SHA-256, CRC or NONE"))
}

fn path_text(path: &Option<PathBuf>) -> Option<String> {
    path.as_ref().map(|p| p.display().to_string())
}

pub fn backup(args: BackupArgs) -> anyhow::Result<ExitCode> {
    let fields = BackupFields {
        data_dirs: (!args.data_dirs.is_empty()).then(|| {
            args.data_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect()
        }),
        snapshot_tag: args.snapshot_tag,
        entities: args.entities,
        duration: args.duration,
        bandwidth: args.bandwidth,
        schema_version: args.schema_version,
        kms_key_id: args.kms_key_id,
        create_missing_bucket: args.create_missing_bucket,
        skip_refreshing: args.skip_refreshing,
        metadata_directive: args.metadata_directive.to_ascii_uppercase(),
        upload_cluster_topology: args.upload_cluster_topology,
        hash_algorithm: args.hash_algorithm,
        ..BackupFields::new()
    };
    let outcome = args
        .connection
        .run(Backup, fields, &args.jmx, &args.storage)?;
    if outcome.completed && !args.connection.json {
        let response = BackupResponse::deserialize(&outcome.operation["response"])
            .context("the completed backup's response")?;
        println!(
            "backup {} complete: {} files ({} bytes), {} uploaded, {} already in the bucket; manifest {}",
            response.snapshot_tag,
            response.stats.files,
            response.stats.bytes,
            response.stats.uploaded_files,
            response.stats.skipped_files,
            response.manifest,
        );
    }
    Ok(outcome.exit_code())
}

pub fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let fields = ListFields {
        resolve_nodes: args.resolve_nodes,
        human_units: args.human_units,
        from_timestamp: args.from_timestamp,
        last_n: args.last_n,
        ..ListFields::default()
    };
    let outcome = args
        .connection
        .run(List, fields, &args.jmx, &args.storage)?;
    if outcome.completed && !args.connection.json {
        print_report(&outcome.operation["response"], args.human_units);
        print_skipped(&outcome.operation["response"]);
    }
    Ok(outcome.exit_code())
}

/// The entries of the bucket a listing passed over (`skippedObjects`), on stderr: the table stays Esop's.
fn print_skipped(response: &Value) {
    let skipped = response["skippedObjects"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    if skipped.is_empty() {
        return;
    }
    eprintln!(
        "{} entries of the bucket could not be listed and were skipped:",
        skipped.len()
    );
    for entry in skipped {
        eprintln!(
            "  \"{}\": {}",
            entry["key"].as_str().unwrap_or_default(),
            entry["reason"].as_str().unwrap_or_default()
        );
    }
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
    let fields = RemoveBackupFields {
        backup_name: args.backup_name,
        older_than: args.older_than,
        remove_oldest: args.oldest,
        keep_last: args.keep_last,
        snapshot_tag: args.snapshot_tag,
        dry: args.dry,
        resolve_nodes: args.resolve_nodes,
        ..RemoveBackupFields::default()
    };
    let outcome = args
        .connection
        .run(RemoveBackup, fields, &args.jmx, &args.storage)?;
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
        for kept in response["kept"].as_array().into_iter().flatten() {
            println!(
                "kept {}: {}",
                kept["name"].as_str().unwrap_or_default(),
                kept["reason"].as_str().unwrap_or_default(),
            );
        }
        print_skipped(response);
    }
    Ok(outcome.exit_code())
}

pub fn commitlog_backup(args: CommitLogBackupArgs) -> anyhow::Result<ExitCode> {
    let fields = CommitLogBackupFields {
        cassandra_commit_log_directory: path_text(&args.commit_log_dir),
        commit_log_archive_override: path_text(&args.archive),
        commit_log: path_text(&args.commit_log),
        duration: args.duration,
        bandwidth: args.bandwidth,
        online: args.online,
        ..CommitLogBackupFields::default()
    };
    let outcome = args
        .connection
        .run(CommitLogBackup, fields, &args.jmx, &args.storage)?;
    if outcome.completed && !args.connection.json {
        let stats = &outcome.operation["response"]["stats"];
        println!(
            "commit logs backed up: {} segments, {} uploaded",
            stats["files"], stats["uploadedFiles"]
        );
    }
    Ok(outcome.exit_code())
}

/// Esop's `restore` command: what an init container runs before Cassandra starts (IN_PLACE), or a restore into a
/// running node (HARDLINKS, IMPORT).
#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub connection: ConnectionFlags,
    /// The backup: a tag (its newest backup) or a backup's full name.
    #[arg(short = 's', long = "snapshot-tag", visible_alias = "st")]
    pub snapshot_tag: String,
    /// `IN_PLACE` (node stopped; the default, as Esop's), `HARDLINKS` or `IMPORT` (node running).
    #[arg(
        long = "restoration-strategy-type",
        visible_alias = "rst",
        value_parser = parse_with(parse_strategy),
        default_value = "IN_PLACE"
    )]
    pub strategy: Strategy,
    /// One phase of a HARDLINKS or IMPORT restore: INIT, DOWNLOAD, TRUNCATE, IMPORT or CLEANUP; default all, in order.
    #[arg(long = "restoration-phase-type", visible_alias = "rp", value_parser = parse_with(parse_phase))]
    pub phase: Option<Phase>,
    /// Cassandra's directory (hints, saved caches and commit logs live under it).
    #[arg(long = "cassandra-dir", visible_aliases = ["dd", "data-directory"], default_value = "/var/lib/cassandra")]
    pub cassandra_dir: PathBuf,
    /// Cassandra data directory (repeatable); default: those of cassandra.yaml, or the running node's.
    #[arg(long = "data-dir")]
    pub data_dirs: Vec<PathBuf>,
    /// Where cassandra.yaml is.
    #[arg(
        long = "config-directory",
        visible_alias = "cd",
        default_value = "/etc/cassandra"
    )]
    pub config_directory: PathBuf,
    /// `ks1,ks2` or `ks1.t1,ks2.t2`; default everything (system keyspaces by the rules of the strategy).
    #[arg(long, value_parser = parse_with(Entities::parse), default_value = "")]
    pub entities: Entities,
    /// IN_PLACE: restore the system keyspaces too.
    #[arg(long = "restore-system-keyspace", visible_alias = "rs")]
    pub restore_system_keyspace: bool,
    /// IN_PLACE: restore `system_auth` (roles and permissions) too.
    #[arg(long = "restore-system-auth", visible_alias = "ra")]
    pub restore_system_auth: bool,
    /// IN_PLACE: set auto_bootstrap false and initial_token to the backup's tokens in cassandra.yaml.
    #[arg(long = "update-cassandra-yaml")]
    pub update_cassandra_yaml: bool,
    /// IN_PLACE into a node of a new cluster: restore its schema (system_schema) too.
    #[arg(long = "restore-into-new-cluster")]
    pub new_cluster: bool,
    /// IN_PLACE: find the backed-up node by this pod's host name in the backup's topology.
    #[arg(long = "resolve-host-id-from-topology")]
    pub resolve_host_id_from_topology: bool,
    /// HARDLINKS and IMPORT: keep the snapshots the truncation took (they hold what the tables had) after CLEANUP.
    #[arg(long = "restoration-no-delete-truncates")]
    pub no_delete_truncates: bool,
    /// HARDLINKS and IMPORT: keep the downloaded files after CLEANUP.
    #[arg(long = "restoration-no-delete-downloads")]
    pub no_delete_downloads: bool,
    /// HARDLINKS and IMPORT: download nothing; the files are expected in --import-source-dir already.
    #[arg(long = "restoration-no-download-data")]
    pub no_download_data: bool,
    /// With --exact-schema-version: the schema version the backup must have.
    #[arg(long = "schema-version")]
    pub schema_version: Option<uuid::Uuid>,
    /// Only a backup of this schema version: --schema-version, or (HARDLINKS, IMPORT) the running node's.
    #[arg(long = "exact-schema-version")]
    pub exact_schema_version: bool,
    /// Restore a table under another name, `ks.from=ks.to` (repeatable).
    #[arg(long, value_parser = parse_with(parse_rename))]
    pub rename: Vec<(KeyspaceTable, KeyspaceTable)>,
    /// A cap on the download rate, e.g. `100MBPS`.
    #[arg(short = 'b', long)]
    pub bandwidth: Option<DataRate>,
    /// HARDLINKS and IMPORT: where the backup is downloaded first.
    #[arg(
        long = "import-source-dir",
        default_value = "/tmp/cassandra-import-source"
    )]
    pub import_source_dir: PathBuf,
    /// IMPORT: keep the SSTables' compaction levels (Cassandra resets them by default).
    #[arg(long = "import-keep-level")]
    pub import_keep_level: bool,
    /// IMPORT: keep the SSTables' repaired state (Cassandra clears it by default).
    #[arg(long = "import-keep-repaired")]
    pub import_keep_repaired: bool,
    /// IMPORT: do not verify the SSTables before importing them.
    #[arg(long = "import-no-verify")]
    pub import_no_verify: bool,
    /// IMPORT: do not check that the SSTables' tokens belong to this node.
    #[arg(long = "import-no-verify-tokens")]
    pub import_no_verify_tokens: bool,
    /// IMPORT: do not invalidate the caches of the imported tables.
    #[arg(long = "import-no-invalidate-caches")]
    pub import_no_invalidate_caches: bool,
    /// IMPORT: skip every check (no verify, no token check, no cache invalidation, no extended verify).
    #[arg(long = "import-quick")]
    pub import_quick: bool,
    /// IMPORT: verify the SSTables' every row (slow); not with --import-quick.
    #[arg(long = "import-extended-verify")]
    pub import_extended_verify: bool,
    /// Restore once: do nothing when FILE records a completed restore of this storage location and snapshot tag,
    /// and write FILE when this one completes (an init container runs on every pod start).
    #[arg(long = "restored-marker", value_name = "FILE")]
    pub restored_marker: Option<PathBuf>,
    #[command(flatten)]
    pub jmx: JmxArgs,
    #[command(flatten)]
    pub storage: StorageArgs,
}

fn parse_strategy(text: &str) -> Result<Strategy, String> {
    Strategy::parse(text).ok_or_else(|| format!("must be one of {}", Strategy::NAMES.join(", ")))
}

fn parse_phase(text: &str) -> Result<Phase, String> {
    Phase::parse(text).ok_or_else(|| format!("must be one of {}", Phase::NAMES.join(", ")))
}

fn parse_rename(text: &str) -> Result<(KeyspaceTable, KeyspaceTable), String> {
    let (from, to) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not ks.from=ks.to"))?;
    Ok((
        KeyspaceTable::parse(from.trim())?,
        KeyspaceTable::parse(to.trim())?,
    ))
}

pub fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let marker = args.restored_marker.as_deref().map(|path| {
        RestoreMarker::new(
            path,
            args.connection.storage_location.to_string(),
            args.snapshot_tag.clone(),
        )
    });
    if let Some(marker) = &marker
        && let Some(backup) = marker.already_restored()?
    {
        if args.connection.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&marker.nothing_to_do(&backup))?
            );
        } else {
            println!(
                "restore of {} already complete ({backup}, recorded in {}): nothing to do",
                args.snapshot_tag,
                marker.path().display()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let live = args.strategy != Strategy::InPlace;
    let import = live.then(|| ImportRequest {
        source_dir: Some(args.import_source_dir.display().to_string()),
        keep_level: args.import_keep_level,
        keep_repaired: args.import_keep_repaired,
        no_verify: args.import_no_verify,
        no_verify_tokens: args.import_no_verify_tokens,
        no_invalidate_caches: args.import_no_invalidate_caches,
        quick: args.import_quick,
        extended_verify: args.import_extended_verify,
        ..ImportRequest::default()
    });
    let fields = RestoreFields {
        data_dirs: (!args.data_dirs.is_empty()).then(|| {
            args.data_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect()
        }),
        cassandra_directory: args.cassandra_dir.display().to_string(),
        cassandra_config_directory: args.config_directory.display().to_string(),
        entities: args.entities,
        restoration_strategy_type: args.strategy,
        restoration_phase: args.phase,
        import,
        no_delete_truncates: args.no_delete_truncates,
        no_delete_downloads: args.no_delete_downloads,
        no_download_data: args.no_download_data,
        schema_version: args.schema_version,
        exact_schema_version: args.exact_schema_version,
        restore_system_keyspace: args.restore_system_keyspace,
        restore_system_auth: args.restore_system_auth,
        new_cluster: args.new_cluster,
        update_cassandra_yaml: args.update_cassandra_yaml,
        resolve_host_id_from_topology: args.resolve_host_id_from_topology,
        rename: args.rename.into_iter().collect(),
        bandwidth: args.bandwidth,
        ..RestoreFields::new(args.snapshot_tag)
    };
    // The command's own flags are the operator's configuration: the directories a restore may change.
    let node = NodeConfig {
        cassandra_dir: args.cassandra_dir.clone(),
        cassandra_yaml: args.config_directory.join("cassandra.yaml"),
        data_dirs: (!args.data_dirs.is_empty()).then(|| args.data_dirs.clone()),
        commitlog_dir: None,
        flags: ConfigFlags {
            cassandra_dir: "--cassandra-dir",
            config: "--config-directory",
        },
    };
    let outcome = args
        .connection
        .run(Restore::new(node), fields, &args.jmx, &args.storage)?;
    if outcome.completed && !args.connection.json {
        let response = &outcome.operation["response"];
        println!(
            "restore of {} complete ({}): {} tables, {} files downloaded, {} already there",
            response["backup"].as_str().unwrap_or_default(),
            response["strategy"].as_str().unwrap_or_default(),
            response["tables"].as_array().map_or(0, Vec::len),
            response["download"]["downloadedFiles"],
            response["download"]["keptFiles"],
        );
    }
    if outcome.completed
        && let Some(marker) = &marker
    {
        marker.record(
            outcome.operation["response"]["backup"]
                .as_str()
                .unwrap_or_default(),
        )?;
    }
    Ok(outcome.exit_code())
}

/// Esop's `commitlog-restore` command (point in time), run on a stopped node after restoring a snapshot.
#[derive(Debug, Args)]
pub struct CommitLogRestoreArgs {
    #[command(flatten)]
    pub connection: ConnectionFlags,
    /// The node's commit-log directory; its segments are moved aside.
    #[arg(
        long = "commit-log-dir",
        default_value = "/var/lib/cassandra/commitlog"
    )]
    pub commit_log_dir: PathBuf,
    /// Accepted for Esop compatibility; unused.
    #[arg(short = 'p', long = "shared-path", default_value = "/")]
    pub shared_path: PathBuf,
    /// Where cassandra.yaml and commitlog_archiving.properties are.
    #[arg(
        long = "config-directory",
        visible_alias = "cd",
        default_value = "/etc/cassandra"
    )]
    pub config_directory: PathBuf,
    /// Segments archived from this instant (epoch millis).
    #[arg(long = "timestamp-start", visible_alias = "ts", default_value_t = 0)]
    pub timestamp_start: i64,
    /// The point in time to replay to (epoch millis).
    #[arg(long = "timestamp-end", visible_alias = "te")]
    pub timestamp_end: i64,
    /// Replay only these tables: `ks.t1,ks.t2`.
    #[arg(long = "keyspace-tables", visible_alias = "kt", value_delimiter = ',', value_parser = parse_with(KeyspaceTable::parse))]
    pub keyspace_tables: Vec<KeyspaceTable>,
    /// Where the segments are downloaded, for Cassandra to replay from.
    #[arg(long = "commitlog-download-dir")]
    pub download_dir: PathBuf,
    #[command(flatten)]
    pub jmx: JmxArgs,
    #[command(flatten)]
    pub storage: StorageArgs,
}

pub fn commitlog_restore(args: CommitLogRestoreArgs) -> anyhow::Result<ExitCode> {
    let fields = CommitLogRestoreFields {
        cassandra_commit_log_directory: args.commit_log_dir.display().to_string(),
        shared_container_path: Some(args.shared_path.display().to_string()),
        cassandra_config_directory: args.config_directory.display().to_string(),
        commitlog_download_dir: args.download_dir.display().to_string(),
        timestamp_start: args.timestamp_start,
        timestamp_end: args.timestamp_end,
        keyspace_tables: args.keyspace_tables,
    };
    // The node's commit logs are where --commit-log-dir says; its other directories under Cassandra's defaults.
    let node = NodeConfig {
        cassandra_dir: args
            .commit_log_dir
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default(),
        cassandra_yaml: args.config_directory.join("cassandra.yaml"),
        data_dirs: None,
        commitlog_dir: Some(args.commit_log_dir.clone()),
        flags: ConfigFlags {
            cassandra_dir: "--commit-log-dir",
            config: "--config-directory",
        },
    };
    let outcome = args.connection.run(
        CommitLogRestore::new(node),
        fields,
        &args.jmx,
        &args.storage,
    )?;
    if outcome.completed && !args.connection.json {
        let response = &outcome.operation["response"];
        println!(
            "{} commit-log segments ready; Cassandra replays them to {} at its next start",
            response["segments"].as_array().map_or(0, Vec::len),
            response["pointInTime"].as_str().unwrap_or_default(),
        );
    }
    Ok(outcome.exit_code())
}

/// `daedalus verify`: whether a backup in the bucket is still whole (not an Esop command; its flags are Esop's).
#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub connection: ConnectionFlags,
    /// The backup: a tag (its newest backup) or a backup's full name.
    #[arg(short = 's', long = "snapshot-tag", visible_aliases = ["st", "backup-name"])]
    pub snapshot_tag: String,
    /// Read every object and check its hash against the manifest's, not only its size (the default for a
    /// `file://` bucket; on cloud stores it reads, and may pay for, every byte of the backup).
    #[arg(long, conflicts_with = "size_only")]
    pub deep: bool,
    /// Check only that every object is there with its size (the default for cloud stores).
    #[arg(long = "size-only")]
    pub size_only: bool,
    /// Objects checked at once, 1 to 256; default: --concurrent-connections (at most 256).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=256))]
    pub concurrency: Option<i32>,
    /// Complete an incomplete location from the local Cassandra.
    #[arg(long = "resolve-nodes")]
    pub resolve_nodes: bool,
    /// Check every node's backup under the cluster's prefix in the bucket (the location may then be the bucket
    /// alone, with --resolve-nodes).
    #[arg(long = "global-request")]
    pub global_request: bool,
    #[command(flatten)]
    pub jmx: JmxArgs,
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// The exit code of a request the command line could not make: a usage error, as clap's own.
const USAGE_ERROR: u8 = 2;

/// Exit 0 when the backup is whole, 1 when it is not (or cannot be found or read), 2 on a usage error.
pub fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let fields = VerifyFields {
        deep: if args.deep {
            Some(true)
        } else if args.size_only {
            Some(false)
        } else {
            None
        },
        concurrency: args.concurrency,
        resolve_nodes: args.resolve_nodes,
        global_request: args.global_request,
        ..VerifyFields::new(args.snapshot_tag)
    };
    let request = StorageRequest {
        connection: args.connection.connection(),
        fields,
    };
    let prepared = match prepare_request(Arc::new(Verify), request, chrono::Utc::now()) {
        Ok(prepared) => prepared,
        Err(error) => {
            eprintln!("daedalus: {error}");
            return Ok(ExitCode::from(USAGE_ERROR));
        }
    };
    let outcome = once::run(Ok(prepared), &args.jmx, &args.storage, args.connection.json)?;
    let (lines, code) = verify_outcome(&outcome.operation);
    if !args.connection.json {
        for line in lines {
            println!("{line}");
        }
    }
    if !outcome.completed {
        // The errors on stderr; the code is the verification's own.
        let _ = outcome.exit_code();
    }
    Ok(ExitCode::from(code))
}

/// What `daedalus verify` prints of the operation as it ended, and its exit code: 0 when the backup is whole, 1
/// otherwise (each problem printed, or only the errors when no verification was made: no such backup, a store that
/// cannot be read, a cancellation).
fn verify_outcome(operation: &Value) -> (Vec<String>, u8) {
    let whole = operation["state"] == "COMPLETED";
    let Ok(response) = VerifyResponse::deserialize(&operation["response"]) else {
        return (Vec::new(), if whole { 0 } else { 1 });
    };
    let mut lines: Vec<String> = response
        .problems()
        .iter()
        .map(|problem| format!("{}: {problem}", problem.problem))
        .collect();
    let checked = match &response {
        VerifyResponse::Node(node) => format!("backup {}", node.manifest),
        VerifyResponse::Cluster(cluster) => format!(
            "backup {} on {} nodes",
            operation["snapshotTag"].as_str().unwrap_or_default(),
            cluster.nodes.len()
        ),
    };
    let deep = match &response {
        VerifyResponse::Node(node) => node.deep,
        VerifyResponse::Cluster(cluster) => cluster.deep,
    };
    let how = if deep { "sizes and hashes" } else { "sizes" };
    let whole = whole && lines.is_empty();
    lines.push(format!(
        "{checked} {}: {} objects ({} bytes) checked, {how}{}",
        if whole { "is whole" } else { "is NOT whole" },
        response.objects(),
        response.bytes(),
        if whole {
            String::new()
        } else {
            format!(", {} with problems", response.problem_count())
        }
    ));
    (lines, if whole { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_whole_backup_exits_0_and_a_damaged_one_1_printing_each_problem() {
        let whole = json!({"type": "verify", "state": "COMPLETED", "snapshotTag": "nightly",
            "response": {"manifest": "nightly-s-1", "objects": 3, "bytes": 30, "deep": false, "problems": []}});
        let (lines, code) = verify_outcome(&whole);
        assert_eq!(code, 0);
        assert_eq!(
            lines,
            ["backup nightly-s-1 is whole: 3 objects (30 bytes) checked, sizes"]
        );

        let damaged = json!({"type": "verify", "state": "FAILED", "snapshotTag": "nightly",
            "errors": [{"source": "h", "message": "backup nightly-s-1 ... is not whole"}],
            "response": {"manifest": "nightly-s-1", "objects": 3, "bytes": 30, "deep": true, "problems": [
                {"key": "data/a", "problem": "missing", "expected": "10", "found": "no object"},
                {"key": "data/b", "problem": "hash", "expected": "ab", "found": "cd"}]}});
        let (lines, code) = verify_outcome(&damaged);
        assert_eq!(code, 1);
        assert_eq!(
            lines,
            [
                "missing: data/a is missing",
                "hash: data/b hashes to cd, not ab",
                "backup nightly-s-1 is NOT whole: 3 objects (30 bytes) checked, sizes and hashes, 2 with problems",
            ]
        );

        let cluster = json!({"type": "verify", "state": "FAILED", "snapshotTag": "nightly",
            "response": {"objects": 5, "bytes": 50, "deep": false,
                "nodes": [{"node": "c/d/n1", "manifest": "m", "objects": 5, "bytes": 50, "deep": false,
                    "problems": [{"key": "data/a", "problem": "size", "expected": "10", "found": "9"}]}],
                "problems": [{"node": "c/d/n1", "key": "data/a", "problem": "size", "expected": "10",
                    "found": "9"}]}});
        let (lines, code) = verify_outcome(&cluster);
        assert_eq!(code, 1);
        assert_eq!(lines[0], "size: c/d/n1/data/a has 9 bytes, not 10");
        assert!(
            lines[1].starts_with("backup nightly on 1 nodes is NOT whole"),
            "{lines:?}"
        );
    }

    #[test]
    fn a_verification_that_could_not_be_made_exits_1_with_nothing_printed() {
        for state in ["FAILED", "CANCELLED"] {
            let operation = json!({"type": "verify", "state": state,
                "errors": [{"source": "h", "message": "no backup weekly in s3://b/c/d/n"}]});
            assert_eq!(verify_outcome(&operation), (Vec::new(), 1));
        }
    }

    #[test]
    fn a_request_the_server_would_refuse_is_a_usage_error() {
        let location = StorageLocation::parse("s3://bucket").unwrap();
        let request = StorageRequest {
            connection: Connection::new(location),
            fields: VerifyFields::new("nightly"),
        };
        let error = prepare_request(Arc::new(Verify), request, chrono::Utc::now()).unwrap_err();
        assert_eq!(error.violations()[0].field, "storageLocation");
        assert_eq!(USAGE_ERROR, 2);
    }
}
