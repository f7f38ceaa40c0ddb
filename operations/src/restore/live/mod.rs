//! HARDLINKS and IMPORT: a restore into a running node, in Esop's phases. INIT finds the backup; DOWNLOAD fetches
//! the tables' files into `import.sourceDir`; TRUNCATE empties the tables; IMPORT loads the files (Cassandra's
//! `importNewSSTables`, or hard links and `loadNewSSTables`); CLEANUP removes the downloads and the snapshots the
//! truncation took. A request names one phase, or none to run them all in order (beyond Esop).
//!
//! Each phase finds the backup again from the bucket, so phases sent as separate requests (as Icarus's
//! coordinator sends them) need nothing but the files on disk from the one before, and the journal
//! ([`journal::Journal`]) the restore keeps in its staging directory.
//!
//! Where files may be touched: the data directories Cassandra reports ([`node::LiveNode`]), and the staging
//! directory, checked against them before anything happens ([`Staging`]). Every write, link and removal goes
//! through a [`Root`] of one of them.

mod journal;
mod links;
mod node;

use std::collections::BTreeSet;
use std::sync::Arc;

use super::choice::{self, ChosenBackup};
use super::download::{self, DownloadSettings, DownloadStats, PlannedDownload};
use super::tables::{self, RestoredTable};
use crate::cassandra::Cassandra;
use crate::node_fs::staging::{self, Staging};
use crate::node_fs::{EntryKind, FsError, RelPath, Root, Target};
use crate::node_storage::{self as storage_node, BucketCheck, NodePath};
use crate::operation::{OperationContext, OperationFailure};
use crate::restore::plan::{Phase, RestorePlan, Strategy};
use crate::restore::response::{CleanupResponse, LiveResponse};
use crate::storage::request::Connection;
use crate::storage::transfer::hashes::HashAlgorithm;
use crate::storage::{KeyspaceTable, RemoteStorage, Throttle};
use journal::{Journal, TableRecord};
use node::LiveNode;

/// One restored table on this node: its data directories, where its files are downloaded, and those files.
struct TableFiles {
    table_dirs: Vec<Target>,
    download_dir: RelPath,
    files: Vec<PlannedDownload>,
}

/// A restore into this running node.
struct LiveRestore<'a> {
    context: &'a OperationContext,
    plan: &'a RestorePlan,
    connection: &'a Connection,
    cassandra: Cassandra,
    remote: RemoteStorage,
    node: LiveNode,
    staging: Staging,
}

pub async fn restore(
    connection: &Connection,
    plan: &RestorePlan,
    context: &OperationContext,
) -> Result<LiveResponse, OperationFailure> {
    let cassandra = context.cassandra().await.map_err(|error| {
        OperationFailure::context(
            format!(
                "a {} restore loads the backup into a running node, and this one cannot be reached",
                plan.restoration_strategy_type
            ),
            error,
        )
    })?;
    if plan.restoration_strategy_type == Strategy::Import {
        let version = context.cancellable(cassandra.release_version()).await??;
        if !version.at_least(4, 0) {
            return Err(OperationFailure::Failed(format!(
                "the IMPORT strategy needs Cassandra 4.0 or later (importNewSSTables); this node runs {version}: \
                 use HARDLINKS"
            )));
        }
    }
    let node = LiveNode::open(context, &cassandra).await?;
    let staging = staging_dir(plan, &node)?;
    let bucket = BucketCheck::of(connection, false);
    let remote = storage_node::open(context, connection, NodePath::FromCassandra, bucket).await?;
    let restore = LiveRestore {
        context,
        plan,
        connection,
        cassandra,
        remote,
        node,
        staging,
    };
    restore.run().await
}

/// `import.sourceDir`, or without one `downloadedsstables` beside the node's first data directory (the name the
/// Kubernetes operators use): on the data's file system, as HARDLINKS needs, outside the data itself, and each node
/// has its own, so one cluster-wide request fits nodes whose directories differ. Checked against the node's real
/// directories before anything is touched.
fn staging_dir(plan: &RestorePlan, node: &LiveNode) -> Result<Staging, OperationFailure> {
    let (path, field) = match plan.source_dir.as_deref() {
        Some(text) => (
            staging::staging_path(text).map_err(|problem| {
                OperationFailure::Failed(format!("import.sourceDir {problem}"))
            })?,
            "import.sourceDir",
        ),
        None => {
            let first = node.data.first().map(|root| root.path()).ok_or_else(|| {
                OperationFailure::Failed(
                    "Cassandra reports no data directory; give import.sourceDir".into(),
                )
            })?;
            (
                first.parent().unwrap_or(first).join("downloadedsstables"),
                "the default staging directory",
            )
        }
    };
    Staging::check(&path, &node.guarded).map_err(|why| {
        OperationFailure::Failed(format!(
            "{field} '{}' {why}: a restore downloads there and CLEANUP removes what it downloaded; nothing was \
             touched",
            path.display()
        ))
    })
}

/// File work through the roots, off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, FsError> + Send + 'static,
) -> Result<T, OperationFailure> {
    super::blocking(work).await
}

impl LiveRestore<'_> {
    async fn run(&self) -> Result<LiveResponse, OperationFailure> {
        let phases: Vec<Phase> = match self.plan.restoration_phase {
            Some(phase) => vec![phase],
            None => Phase::ALL.to_vec(),
        };
        let backup = self.choose_backup().await?;
        let restored =
            tables::live_tables(&backup.manifest, &self.plan.entities, &self.plan.rename).map_err(
                |error| OperationFailure::context(format!("backup {}", backup.name), error),
            )?;
        // Every phase but a lone CLEANUP writes into the staging directory (its journal at least).
        let staging = if phases == [Phase::Cleanup] {
            let staging = self.staging.clone();
            blocking(move || staging.open_existing()).await?
        } else {
            Some(self.open_staging(&backup.name).await?)
        };
        let mut stats = DownloadStats::default();
        let mut cleanup = None;
        for phase in &phases {
            tracing::info!(phase = %phase, backup = %backup.name, tables = restored.len(), "restore phase");
            if matches!(phase, Phase::Download | Phase::Truncate | Phase::Import) {
                self.check_cluster_health(*phase).await?;
            }
            match (phase, &staging) {
                (Phase::Init, Some(staging)) => self.init(&backup, &restored, staging).await?,
                (Phase::Download, Some(staging)) => {
                    stats = self.download(&backup, &restored, staging).await?
                }
                (Phase::Truncate, Some(staging)) => {
                    self.truncate(&backup, &restored, staging).await?
                }
                (Phase::Import, Some(staging)) => self.import(&backup, &restored, staging).await?,
                (Phase::Cleanup, staging) => {
                    cleanup = Some(self.cleanup(&restored, staging.as_ref()).await?)
                }
                (_, None) => {}
            }
        }
        Ok(LiveResponse {
            backup: backup.name,
            storage_location: self.remote.location().to_string(),
            strategy: self.plan.restoration_strategy_type,
            phases,
            source_dir: self.staging.path().display().to_string(),
            tables: restored.iter().map(|t| t.target.to_string()).collect(),
            download: stats,
            cleanup,
        })
    }

    /// The staging directory, created when missing (recorded in the journal, so CLEANUP removes it again).
    async fn open_staging(&self, backup: &str) -> Result<Arc<Root>, OperationFailure> {
        let staging = self.staging.clone();
        let backup = backup.to_owned();
        blocking(move || {
            let (root, created) = staging.open_or_create()?;
            let mut journal = Journal::for_backup(&root, &backup);
            if created > 0 {
                journal.created_levels = created;
            }
            journal.save(&root)?;
            Ok(root)
        })
        .await
    }

    async fn choose_backup(&self) -> Result<ChosenBackup, OperationFailure> {
        let schema = if self.plan.exact_schema_version {
            Some(match self.plan.schema_version {
                Some(version) => version.to_string(),
                None => {
                    self.context
                        .cancellable(self.cassandra.schema_version())
                        .await??
                }
            })
        } else {
            None
        };
        choice::choose(
            self.context,
            &self.remote,
            &self.plan.snapshot_tag,
            schema.as_deref(),
        )
        .await
    }

    async fn check_cluster_health(&self, phase: Phase) -> Result<(), OperationFailure> {
        let problems = self
            .context
            .cancellable(self.cassandra.cluster_health_problems())
            .await??;
        if problems.is_empty() {
            Ok(())
        } else {
            Err(OperationFailure::Failed(format!(
                "the cluster is not healthy enough for the {phase} phase: {}",
                problems.join("; ")
            )))
        }
    }

    /// INIT: records the truncation snapshots each table has before the restore (never to be removed by it), and
    /// for HARDLINKS checks that the staging directory shares a filesystem with the data.
    async fn init(
        &self,
        backup: &ChosenBackup,
        restored: &[RestoredTable<'_>],
        staging: &Arc<Root>,
    ) -> Result<(), OperationFailure> {
        if self.plan.restoration_strategy_type == Strategy::Hardlinks {
            let data: Vec<Target> = self
                .node
                .data
                .iter()
                .map(|root| Target::new(root, RelPath::root()))
                .collect();
            self.check_same_filesystem(staging, &data).await?;
        }
        let mut records = Vec::new();
        for table in restored {
            let dirs = self.table_dirs(table, false).await?.unwrap_or_default();
            let before = self.truncation_snapshots(&table.target, &dirs).await?;
            records.push((table.target.to_string(), before));
        }
        let now = chrono::Utc::now().timestamp_millis();
        let (staging, name) = (Arc::clone(staging), backup.name.clone());
        blocking(move || {
            let mut journal = Journal::for_backup(&staging, &name);
            for (table, before) in records {
                journal.tables.entry(table).or_insert(TableRecord {
                    since_millis: now,
                    before,
                    taken: BTreeSet::new(),
                });
            }
            journal.save(&staging)
        })
        .await
    }

    /// The target table's directories, inside the data directories; `None` when the table does not exist (with
    /// `recreate`, it is first created again from the backup's schema). A failed lookup fails the restore.
    async fn table_dirs(
        &self,
        table: &RestoredTable<'_>,
        recreate: bool,
    ) -> Result<Option<Vec<Target>>, OperationFailure> {
        let target = &table.target;
        let mut paths = self.data_paths(target).await?;
        if paths.is_empty() && recreate {
            self.recreate(table).await?;
            paths = self.data_paths(target).await?;
            if paths.is_empty() {
                return Err(OperationFailure::Failed(format!(
                    "table {target} was recreated but Cassandra shows no data directory for it"
                )));
            }
        }
        if paths.is_empty() {
            return Ok(None);
        }
        paths
            .iter()
            .map(|path| self.node.locate(path))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    async fn data_paths(&self, target: &KeyspaceTable) -> Result<Vec<String>, OperationFailure> {
        self.context
            .cancellable(
                self.cassandra
                    .table_data_paths(&target.keyspace, &target.table),
            )
            .await?
            .map_err(|error| {
                OperationFailure::context(
                    format!("cannot find the data directories of table {target}"),
                    error,
                )
            })
    }

    /// A table dropped since the backup, created again from the schema the backup recorded.
    async fn recreate(&self, table: &RestoredTable<'_>) -> Result<(), OperationFailure> {
        let target = &table.target;
        if table.target != table.source {
            return Err(OperationFailure::Failed(format!(
                "table {target}, the rename target of {}, does not exist: create it first",
                table.source
            )));
        }
        let Some(schema) = table.schema_content else {
            return Err(OperationFailure::Failed(format!(
                "table {target} does not exist and the backup holds no schema to recreate it with: create it first"
            )));
        };
        tracing::info!(table = %target, id = %table.backup_id, "recreating a missing table from the backup's schema");
        let settings = self
            .context
            .cancellable(
                self.context
                    .cql_settings()
                    .clone()
                    .with_address_from(&self.cassandra),
            )
            .await?
            .map_err(|error| {
                OperationFailure::context(format!("cannot recreate table {target}"), error)
            })?;
        let (keyspace, name) = (target.keyspace.clone(), target.table.clone());
        let schema = schema.to_string();
        self.context
            .cancellable(async move {
                let session = crate::cql::CqlSession::connect(&settings).await?;
                session.recreate_table(&keyspace, &name, &schema).await
            })
            .await?
            .map_err(|error| {
                OperationFailure::context(
                    format!("cannot recreate table {target} from the backup"),
                    error,
                )
            })?;
        Ok(())
    }

    /// The table's files in the staging directory: `<keyspace>/<table>-<local id>/[.<index>/]<file>`, named as
    /// `importNewSSTables` wants its directories. `None` when the table does not exist (and is not recreated).
    async fn planned(
        &self,
        table: &RestoredTable<'_>,
        staging: &Arc<Root>,
        recreate: bool,
    ) -> Result<Option<TableFiles>, OperationFailure> {
        let Some(table_dirs) = self.table_dirs(table, recreate).await? else {
            return Ok(None);
        };
        let dir_name = table_dirs
            .first()
            .and_then(|dir| dir.rel.file_name())
            .unwrap_or(table.target.table.as_str())
            .to_owned();
        let download_dir = RelPath::of([table.target.keyspace.as_str(), dir_name.as_str()])
            .map_err(|error| OperationFailure::context(format!("table {}", table.target), error))?;
        let files = table
            .files
            .iter()
            .map(|file| PlannedDownload {
                key: file.entry.object_key.clone(),
                target: Target::new(staging, download_dir.join_rel(&file.in_table)),
                size: file.entry.size,
                hash: file.entry.hash.clone(),
            })
            .collect();
        Ok(Some(TableFiles {
            table_dirs,
            download_dir,
            files,
        }))
    }

    /// [`Self::planned`] for every table; with `recreate`, missing tables are created, else they fail the phase.
    async fn planned_all(
        &self,
        restored: &[RestoredTable<'_>],
        staging: &Arc<Root>,
        recreate: bool,
    ) -> Result<Vec<TableFiles>, OperationFailure> {
        let mut planned = Vec::new();
        for table in restored {
            match self.planned(table, staging, recreate).await? {
                Some(files) => planned.push(files),
                None => {
                    return Err(OperationFailure::Failed(format!(
                        "table {} does not exist on this node",
                        table.target
                    )));
                }
            }
        }
        Ok(planned)
    }

    /// HARDLINKS links the downloaded files into the table directories, which only works within one filesystem:
    /// checked before anything destructive happens, not found out by IMPORT after TRUNCATE emptied the tables.
    async fn check_same_filesystem(
        &self,
        staging: &Arc<Root>,
        dirs: &[Target],
    ) -> Result<(), OperationFailure> {
        let (staging, dirs) = (Arc::clone(staging), dirs.to_vec());
        let mismatch = blocking(move || {
            let device = staging.device(&RelPath::root())?;
            for dir in &dirs {
                if dir.root.device(&dir.rel)? != device {
                    return Ok(Some((staging.path().to_owned(), dir.display())));
                }
            }
            Ok(None)
        })
        .await?;
        match mismatch {
            None => Ok(()),
            Some((staging, dir)) => Err(OperationFailure::Failed(format!(
                "import.sourceDir {} is on another filesystem than {}: HARDLINKS needs both on one (use a \
                 directory beside the data directories, or the IMPORT strategy); nothing was changed",
                staging.display(),
                dir.display()
            ))),
        }
    }

    async fn download(
        &self,
        backup: &ChosenBackup,
        restored: &[RestoredTable<'_>],
        staging: &Arc<Root>,
    ) -> Result<DownloadStats, OperationFailure> {
        if self.plan.no_download_data {
            tracing::info!("noDownloadData: the files are expected in place already");
            return Ok(DownloadStats::default());
        }
        self.check_tokens(backup).await?;
        let planned = self.planned_all(restored, staging, true).await?;
        if self.plan.restoration_strategy_type == Strategy::Hardlinks {
            let dirs: Vec<Target> = planned.iter().flat_map(|t| t.table_dirs.clone()).collect();
            self.check_same_filesystem(staging, &dirs).await?;
        }
        // The directories first, recorded before any file lands there, so CLEANUP knows them even after a crash.
        let dirs: Vec<RelPath> = planned
            .iter()
            .flat_map(|table| {
                table
                    .files
                    .iter()
                    .filter_map(|file| file.target.rel.parent())
            })
            .chain(planned.iter().map(|table| table.download_dir.clone()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let (root, name) = (Arc::clone(staging), backup.name.clone());
        blocking(move || {
            let mut journal = Journal::for_backup(&root, &name);
            for dir in &dirs {
                let created = root.create_dir_all(dir)?;
                journal.created(created);
            }
            journal.save(&root)
        })
        .await?;
        let files: Vec<PlannedDownload> =
            planned.into_iter().flat_map(|table| table.files).collect();
        let settings = DownloadSettings {
            concurrency: self.connection.concurrency(),
            retry: self.connection.retry_policy(),
            throttle: Throttle::new(self.plan.bandwidth.map(|rate| rate.bytes_per_second())),
            algorithm: HashAlgorithm::of_manifest(&backup.manifest),
        };
        let stats = super::download_for(self.context, &self.remote, files, &settings).await?;
        tracing::info!(
            files = stats.files,
            downloaded = stats.downloaded_files,
            kept = stats.kept_files,
            "downloaded"
        );
        Ok(stats)
    }

    /// Esop's rule: a backup restores into the node that owns the same tokens, or the rows land where no read
    /// finds them.
    async fn check_tokens(&self, backup: &ChosenBackup) -> Result<(), OperationFailure> {
        let mut local = self.context.cancellable(self.cassandra.tokens()).await??;
        local.sort();
        let mut backed_up = backup.manifest.tokens.clone();
        backed_up.sort();
        if local == backed_up {
            return Ok(());
        }
        let brief = |tokens: &[String]| {
            let shown: Vec<&str> = tokens.iter().take(3).map(String::as_str).collect();
            format!(
                "{} token(s): {}{}",
                tokens.len(),
                shown.join(", "),
                if tokens.len() > 3 { ", ..." } else { "" }
            )
        };
        Err(OperationFailure::Failed(format!(
            "this node's tokens differ from those of backup {}: the node has {}; the backup has {}. Restore into \
             the node that owns the backup's tokens",
            backup.name,
            brief(&local),
            brief(&backed_up)
        )))
    }

    /// The `truncated-*` snapshots of `table` in its directories.
    async fn truncation_snapshots(
        &self,
        table: &KeyspaceTable,
        dirs: &[Target],
    ) -> Result<BTreeSet<String>, OperationFailure> {
        let (dirs, name) = (dirs.to_vec(), table.table.clone());
        blocking(move || {
            let mut found = BTreeSet::new();
            for dir in &dirs {
                let snapshots = dir.rel.join("snapshots").map_err(|error| FsError {
                    action: "list",
                    path: dir.display(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidInput, error),
                })?;
                for entry in dir.root.entries(&snapshots)? {
                    if entry.kind == EntryKind::Dir
                        && crate::node_fs::names::truncation_snapshot_millis(&entry.name, &name)
                            .is_some()
                    {
                        found.insert(entry.name);
                    }
                }
            }
            Ok(found)
        })
        .await
    }

    async fn truncate(
        &self,
        backup: &ChosenBackup,
        restored: &[RestoredTable<'_>],
        staging: &Arc<Root>,
    ) -> Result<(), OperationFailure> {
        let mut all_dirs = Vec::new();
        for table in restored {
            all_dirs.push(self.table_dirs(table, false).await?.unwrap_or_default());
        }
        if self.plan.restoration_strategy_type == Strategy::Hardlinks {
            let dirs: Vec<Target> = all_dirs.iter().flatten().cloned().collect();
            self.check_same_filesystem(staging, &dirs).await?;
        }
        let mut failed = Vec::new();
        for (table, dirs) in restored.iter().zip(&all_dirs) {
            let target = &table.target;
            // Not cancellable half-way: a truncation either happens or not; a cancel stops before the next table.
            if self.context.cancellation().is_cancelled() {
                return Err(OperationFailure::Cancelled);
            }
            let before = self.truncation_snapshots(target, dirs).await?;
            let started = chrono::Utc::now().timestamp_millis();
            if let Err(error) = self
                .cassandra
                .truncate(&target.keyspace, &target.table)
                .await
            {
                failed.push(format!("{target}: {error}"));
                continue;
            }
            let after = self.truncation_snapshots(target, dirs).await?;
            let taken: BTreeSet<String> = after.difference(&before).cloned().collect();
            let (root, name, key) = (Arc::clone(staging), backup.name.clone(), target.to_string());
            blocking(move || {
                let mut journal = Journal::for_backup(&root, &name);
                let record = journal.tables.entry(key).or_insert(TableRecord {
                    since_millis: started,
                    before,
                    taken: BTreeSet::new(),
                });
                record.taken.extend(taken);
                journal.save(&root)
            })
            .await?;
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(OperationFailure::Failed(format!(
                "cannot truncate {}",
                failed.join("; ")
            )))
        }
    }

    async fn import(
        &self,
        backup: &ChosenBackup,
        restored: &[RestoredTable<'_>],
        staging: &Arc<Root>,
    ) -> Result<(), OperationFailure> {
        let planned = self.planned_all(restored, staging, false).await?;
        if self.plan.restoration_strategy_type == Strategy::Hardlinks {
            let dirs: Vec<Target> = planned.iter().flat_map(|t| t.table_dirs.clone()).collect();
            self.check_same_filesystem(staging, &dirs).await?;
        }
        let all: Vec<PlannedDownload> = planned
            .iter()
            .flat_map(|table| table.files.clone())
            .collect();
        let algorithm = HashAlgorithm::of_manifest(&backup.manifest);
        download::verify(&all, algorithm, self.context.cancellation())
            .await
            .map_err(|error| {
                OperationFailure::context(
                    "the downloaded files are not all there and intact; run the DOWNLOAD phase again",
                    error,
                )
            })?;
        for (table, local) in restored.iter().zip(&planned) {
            // Each table is loaded by one call that is never interrupted: a cancel stops before the next table.
            if self.context.cancellation().is_cancelled() {
                return Err(OperationFailure::Cancelled);
            }
            let target = &table.target;
            if local.files.is_empty() {
                continue;
            }
            match self.plan.restoration_strategy_type {
                Strategy::Hardlinks => self.link_and_load(target, local).await?,
                _ => {
                    let checks = self.plan.import_checks;
                    let dir = staging.display(&local.download_dir).display().to_string();
                    let failed = self
                        .cassandra
                        .import(&target.keyspace, &target.table, &[dir], checks)
                        .await?;
                    if !failed.is_empty() {
                        return Err(OperationFailure::Failed(format!(
                            "Cassandra could not import into {target} from {}",
                            failed.join(", ")
                        )));
                    }
                }
            }
            tracing::info!(table = %target, files = local.files.len(), "restored");
        }
        Ok(())
    }

    /// HARDLINKS: links the downloaded files into the table's data directories (the files of one SSTable in one
    /// directory, SSTables spread over the directories in turn), then has Cassandra load them. A link that cannot
    /// be made undoes the ones made before, so the table gets all of its files or none.
    async fn link_and_load(
        &self,
        target: &KeyspaceTable,
        local: &TableFiles,
    ) -> Result<(), OperationFailure> {
        let links = links::plan(&local.files, &local.table_dirs)?;
        let made = blocking(move || links::make(&links))
            .await
            .map_err(|error| {
                OperationFailure::context(
                    format!("cannot link the downloaded files of {target} into its data directory"),
                    error,
                )
            })?;
        tracing::debug!(table = %target, links = made, "linked");
        self.cassandra
            .refresh(&target.keyspace, &target.table)
            .await
            .map_err(|error| {
                OperationFailure::context(format!("cannot load the SSTables of {target}"), error)
            })
    }

    /// CLEANUP: removes the truncation snapshots the restore made (per the journal) and what it downloaded, then the
    /// directories it created once empty. Nothing else: a `truncated-*` snapshot from before the restore stays, as
    /// does anything else in the staging directory.
    async fn cleanup(
        &self,
        restored: &[RestoredTable<'_>],
        staging: Option<&Arc<Root>>,
    ) -> Result<CleanupResponse, OperationFailure> {
        let journal = match staging {
            Some(root) => {
                let root = Arc::clone(root);
                blocking(move || Ok(Journal::load(&root))).await?
            }
            None => None,
        };
        let mut removed_snapshots = Vec::new();
        let mut kept_snapshots = Vec::new();
        let mut removed_files = 0usize;
        for table in restored {
            // A lookup that fails fails CLEANUP: reporting success having removed nothing would hide it.
            let dirs = self.table_dirs(table, false).await?.unwrap_or_default();
            if !self.plan.no_delete_truncates {
                let record = journal
                    .as_ref()
                    .and_then(|journal| journal.tables.get(&table.target.to_string()))
                    .cloned();
                let (removed, kept) = self
                    .remove_truncation_snapshots(&table.target, &dirs, record)
                    .await?;
                removed_snapshots.extend(removed);
                kept_snapshots.extend(kept);
            }
            if !self.plan.no_delete_downloads
                && let Some(staging) = staging
                && let Some(planned) = self.planned(table, staging, false).await?
            {
                let files: Vec<Target> =
                    planned.files.into_iter().map(|file| file.target).collect();
                removed_files += blocking(move || {
                    let mut removed = 0;
                    for file in files {
                        if file.root.remove_file(&file.rel)? {
                            removed += 1;
                        }
                        if let Ok(temporary) = download::temporary_path(&file.rel) {
                            file.root.remove_file(&temporary)?;
                        }
                    }
                    Ok(removed)
                })
                .await?;
            }
        }
        let mut removed_dirs = 0usize;
        if !self.plan.no_delete_downloads
            && let (Some(staging), Some(journal)) = (staging, &journal)
        {
            let (root, journal) = (Arc::clone(staging), journal.clone());
            let staging = self.staging.clone();
            removed_dirs = blocking(move || {
                let mut removed = 0;
                for dir in journal.dirs_to_remove() {
                    if root.remove_empty_dir(&dir)? {
                        removed += 1;
                    }
                }
                root.remove_file(&RelPath::name(journal::JOURNAL).map_err(|error| FsError {
                    action: "remove",
                    path: staging.path().to_owned(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidInput, error),
                })?)?;
                if journal.created_levels > 0 {
                    staging.remove_created(journal.created_levels)?;
                }
                Ok(removed)
            })
            .await?;
        }
        if journal.is_none() && !self.plan.no_delete_truncates {
            tracing::warn!(
                source_dir = %self.staging.path().display(),
                "no journal of this restore on this node (its INIT did not run here): truncation snapshots are kept"
            );
        }
        Ok(CleanupResponse {
            removed_files,
            removed_directories: removed_dirs,
            removed_snapshots,
            kept_snapshots,
            journal: journal.is_some(),
        })
    }

    /// Removes the table's `truncated-*` snapshots that `record` says are the restore's; returns those removed and
    /// those kept. Without a record, all are kept.
    async fn remove_truncation_snapshots(
        &self,
        table: &KeyspaceTable,
        dirs: &[Target],
        record: Option<TableRecord>,
    ) -> Result<(Vec<String>, Vec<String>), OperationFailure> {
        let found = self.truncation_snapshots(table, dirs).await?;
        let name = table.table.clone();
        let dirs = dirs.to_vec();
        let label = table.to_string();
        blocking(move || {
            let (mut removed, mut kept) = (Vec::new(), Vec::new());
            for snapshot in found {
                let ours = record.as_ref().is_some_and(|record| record.is_ours(&snapshot, &name));
                if !ours {
                    kept.push(format!("{label}/{snapshot}"));
                    continue;
                }
                for dir in &dirs {
                    let rel = RelPath::of(["snapshots", snapshot.as_str()])
                        .map(|rel| dir.rel.join_rel(&rel))
                        .map_err(|error| FsError {
                            action: "remove",
                            path: dir.display(),
                            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, error),
                        })?;
                    if dir.root.remove_tree(&rel)? {
                        tracing::info!(snapshot = %dir.root.display(&rel).display(), "removed the truncation's snapshot");
                    }
                }
                removed.push(format!("{label}/{snapshot}"));
            }
            Ok((removed, kept))
        })
        .await
    }
}
