//! HARDLINKS and IMPORT: a restore into a running node, in Esop's phases. INIT finds the backup; DOWNLOAD fetches
//! the tables' files into `import.sourceDir`; TRUNCATE empties the tables; IMPORT loads the files (Cassandra's
//! `importNewSSTables`, or hard links and `loadNewSSTables`); CLEANUP removes the downloads and the snapshots the
//! truncation took. A request names one phase, or none to run them all in order (beyond Esop).
//!
//! Each phase finds the backup again from the bucket, so phases sent as separate requests (as Icarus's
//! coordinator sends them) need nothing but the files on disk from the one before.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::choice::{self, ChosenBackup};
use super::download::{self, DownloadSettings, DownloadStats, PlannedDownload};
use super::tables::{self, RestoredTable};
use crate::backup::hashes::HashAlgorithm;
use crate::cassandra::Cassandra;
use crate::operation::{OperationContext, OperationFailure};
use crate::storage::node::{self, BucketCheck, NodePath};
use crate::storage::request::Connection;
use crate::storage::{KeyspaceTable, RemoteStorage, Throttle};
use crate::types::restore::{Phase, RestoreFields, Strategy};

/// One restored table on this node: its data directories, where its files are downloaded, and those files.
struct TableFiles {
    table_paths: Vec<PathBuf>,
    download_dir: PathBuf,
    files: Vec<PlannedDownload>,
}

/// A restore into this running node.
struct LiveRestore<'a> {
    context: &'a OperationContext,
    fields: &'a RestoreFields,
    connection: &'a Connection,
    cassandra: Cassandra,
    remote: RemoteStorage,
    source_dir: PathBuf,
}

pub async fn restore(
    connection: &Connection,
    fields: &RestoreFields,
    context: &OperationContext,
) -> Result<serde_json::Value, OperationFailure> {
    let cassandra = context.cassandra().await.map_err(|error| {
        OperationFailure::Failed(format!(
            "a {} restore loads the backup into a running node, and this one cannot be reached: {error}",
            fields.restoration_strategy_type
        ))
    })?;
    if fields.restoration_strategy_type == Strategy::Import {
        let version = context.cancellable(cassandra.release_version()).await??;
        if !version.at_least(4, 0) {
            return Err(OperationFailure::Failed(format!(
                "the IMPORT strategy needs Cassandra 4.0 or later (importNewSSTables); this node runs {version}: \
                 use HARDLINKS"
            )));
        }
    }
    let bucket = BucketCheck::of(connection, false);
    let remote = node::open(context, connection, NodePath::FromCassandra, bucket).await?;
    let source_dir = match fields.source_dir() {
        Some(dir) => PathBuf::from(dir),
        None => default_source_dir(context, &cassandra).await?,
    };
    let restore = LiveRestore {
        context,
        fields,
        connection,
        cassandra,
        remote,
        source_dir,
    };
    restore.run().await
}

/// Without `import.sourceDir`: `downloadedsstables` beside the node's first data directory (the name the
/// Kubernetes operators use). It is on the data's file system, as HARDLINKS needs, outside the data itself, and each
/// node has its own, so one cluster-wide request fits nodes whose directories differ.
async fn default_source_dir(
    context: &OperationContext,
    cassandra: &Cassandra,
) -> Result<PathBuf, OperationFailure> {
    let locations = context
        .cancellable(cassandra.data_file_locations())
        .await??;
    let first = locations.first().ok_or_else(|| {
        OperationFailure::Failed(
            "Cassandra reports no data directory; give import.sourceDir".into(),
        )
    })?;
    let first = Path::new(first.trim_end_matches('/'));
    Ok(first.parent().unwrap_or(first).join("downloadedsstables"))
}

impl LiveRestore<'_> {
    async fn run(&self) -> Result<serde_json::Value, OperationFailure> {
        let phases: Vec<Phase> = match self.fields.restoration_phase {
            Some(phase) => vec![phase],
            None => Phase::ALL.to_vec(),
        };
        let backup = self.choose_backup().await?;
        let restored =
            tables::live_tables(&backup.manifest, &self.fields.entities, &self.fields.rename)
                .map_err(|error| {
                    OperationFailure::Failed(format!("backup {}: {error}", backup.name))
                })?;
        let mut stats = DownloadStats::default();
        for phase in &phases {
            tracing::info!(phase = %phase, backup = %backup.name, tables = restored.len(), "restore phase");
            if matches!(phase, Phase::Download | Phase::Truncate | Phase::Import) {
                self.check_cluster_health(*phase).await?;
            }
            match phase {
                Phase::Init => {}
                Phase::Download => stats = self.download(&backup, &restored).await?,
                Phase::Truncate => self.truncate(&restored).await?,
                Phase::Import => self.import(&backup, &restored).await?,
                Phase::Cleanup => self.cleanup(&restored).await?,
            }
        }
        Ok(json!({
            "backup": backup.name,
            "storageLocation": self.remote.location().to_string(),
            "strategy": self.fields.restoration_strategy_type,
            "phases": phases,
            "tables": restored.iter().map(|t| t.target.to_string()).collect::<Vec<_>>(),
            "download": stats,
        }))
    }

    async fn choose_backup(&self) -> Result<ChosenBackup, OperationFailure> {
        let schema = if self.fields.exact_schema_version {
            Some(match self.fields.schema_version {
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
            &self.fields.snapshot_tag,
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

    /// The target table's data directories, the table recreated from the backup's schema when it is missing.
    async fn table_paths(
        &self,
        table: &RestoredTable<'_>,
        recreate: bool,
    ) -> Result<Vec<PathBuf>, OperationFailure> {
        let target = &table.target;
        let paths = self
            .context
            .cancellable(
                self.cassandra
                    .table_data_paths(&target.keyspace, &target.table),
            )
            .await??;
        if !paths.is_empty() {
            return Ok(paths.into_iter().map(PathBuf::from).collect());
        }
        if !recreate {
            return Err(OperationFailure::Failed(format!(
                "table {target} does not exist on this node"
            )));
        }
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
        let settings = self.context.cql_settings().clone();
        let (keyspace, name) = (target.keyspace.clone(), target.table.clone());
        let schema = schema.to_string();
        self.context
            .cancellable(async move {
                let session = crate::cql::CqlSession::connect(&settings).await?;
                session.recreate_table(&keyspace, &name, &schema).await
            })
            .await?
            .map_err(|error| {
                OperationFailure::Failed(format!(
                    "cannot recreate table {target} from the backup: {error}"
                ))
            })?;
        let paths = self
            .context
            .cancellable(
                self.cassandra
                    .table_data_paths(&target.keyspace, &target.table),
            )
            .await??;
        if paths.is_empty() {
            return Err(OperationFailure::Failed(format!(
                "table {target} was recreated but Cassandra shows no data directory for it"
            )));
        }
        Ok(paths.into_iter().map(PathBuf::from).collect())
    }

    /// `<sourceDir>/<keyspace>/<table>-<local id>`, where the table's files are downloaded, named as
    /// `importNewSSTables` wants its directories.
    fn download_dir(&self, target: &KeyspaceTable, table_paths: &[PathBuf]) -> PathBuf {
        let table_dir = table_paths
            .first()
            .and_then(|path| path.file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| target.table.clone());
        self.source_dir.join(&target.keyspace).join(table_dir)
    }

    async fn planned_downloads(
        &self,
        restored: &[RestoredTable<'_>],
        recreate: bool,
    ) -> Result<Vec<TableFiles>, OperationFailure> {
        let mut planned = Vec::new();
        for table in restored {
            let paths = self.table_paths(table, recreate).await?;
            let dir = self.download_dir(&table.target, &paths);
            let files = table
                .entries
                .iter()
                .map(|entry| {
                    let relative = tables::path_in_table(&entry.object_key).ok_or_else(|| {
                        OperationFailure::Failed(format!(
                            "the backup's object key {} is not an SSTable file's",
                            entry.object_key
                        ))
                    })?;
                    Ok(PlannedDownload {
                        key: entry.object_key.clone(),
                        path: dir.join(relative),
                        size: entry.size,
                        hash: entry.hash.clone(),
                    })
                })
                .collect::<Result<Vec<_>, OperationFailure>>()?;
            planned.push(TableFiles {
                table_paths: paths,
                download_dir: dir,
                files,
            });
        }
        Ok(planned)
    }

    async fn download(
        &self,
        backup: &ChosenBackup,
        restored: &[RestoredTable<'_>],
    ) -> Result<DownloadStats, OperationFailure> {
        if self.fields.no_download_data {
            tracing::info!("noDownloadData: the files are expected in place already");
            return Ok(DownloadStats::default());
        }
        self.check_tokens(backup).await?;
        let files: Vec<PlannedDownload> = self
            .planned_downloads(restored, true)
            .await?
            .into_iter()
            .flat_map(|table| table.files)
            .collect();
        let algorithm = HashAlgorithm::of_manifest(&backup.manifest);
        let settings = DownloadSettings {
            concurrency: self.connection.concurrency(),
            retry: self.connection.retry_policy(),
            throttle: Throttle::new(self.fields.bandwidth.map(|rate| rate.bytes_per_second())),
            algorithm,
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

    async fn truncate(&self, restored: &[RestoredTable<'_>]) -> Result<(), OperationFailure> {
        let mut failed = Vec::new();
        for table in restored {
            let target = &table.target;
            // Not cancellable half-way: a truncation either happens or not; a cancel stops before the next table.
            if self.context.cancellation().is_cancelled() {
                return Err(OperationFailure::Cancelled);
            }
            if let Err(error) = self
                .cassandra
                .truncate(&target.keyspace, &target.table)
                .await
            {
                failed.push(format!("{target}: {error}"));
            }
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
    ) -> Result<(), OperationFailure> {
        let planned = self.planned_downloads(restored, false).await?;
        let all: Vec<PlannedDownload> = planned
            .iter()
            .flat_map(|table| table.files.clone())
            .collect();
        let algorithm = HashAlgorithm::of_manifest(&backup.manifest);
        download::verify(&all, algorithm, self.context.cancellation())
            .await
            .map_err(|error| {
                OperationFailure::Failed(format!(
                    "the downloaded files are not all there and intact; run the DOWNLOAD phase again: {error}"
                ))
            })?;
        for (table, local) in restored.iter().zip(&planned) {
            let files = &local.files;
            // Each table is loaded by one call that is never interrupted: a cancel stops before the next table.
            if self.context.cancellation().is_cancelled() {
                return Err(OperationFailure::Cancelled);
            }
            let target = &table.target;
            if files.is_empty() {
                continue;
            }
            match self.fields.restoration_strategy_type {
                Strategy::Hardlinks => self.link_and_load(target, local).await?,
                _ => {
                    let checks = self.fields.import.clone().unwrap_or_default().checks();
                    let failed = self
                        .cassandra
                        .import(
                            &target.keyspace,
                            &target.table,
                            &[local.download_dir.display().to_string()],
                            checks,
                        )
                        .await?;
                    if !failed.is_empty() {
                        return Err(OperationFailure::Failed(format!(
                            "Cassandra could not import into {target} from {}",
                            failed.join(", ")
                        )));
                    }
                }
            }
            tracing::info!(table = %target, files = files.len(), "restored");
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
        let links = link_plan(&local.files, &local.table_paths);
        let made = tokio::task::spawn_blocking(move || make_links(&links))
            .await
            .map_err(|error| OperationFailure::Failed(error.to_string()))?
            .map_err(|error| {
                OperationFailure::Failed(format!(
                    "cannot link the downloaded files of {target} into its data directory (import.sourceDir must \
                     be on the same filesystem for HARDLINKS): {error}"
                ))
            })?;
        tracing::debug!(table = %target, links = made, "linked");
        self.cassandra
            .refresh(&target.keyspace, &target.table)
            .await
            .map_err(|error| {
                OperationFailure::Failed(format!("cannot load the SSTables of {target}: {error}"))
            })
    }

    async fn cleanup(&self, restored: &[RestoredTable<'_>]) -> Result<(), OperationFailure> {
        let mut table_dirs = Vec::new();
        let mut download_dirs = Vec::new();
        for table in restored {
            let Ok(paths) = self.table_paths(table, false).await else {
                continue;
            };
            download_dirs.push(self.download_dir(&table.target, &paths));
            table_dirs.extend(paths);
        }
        let (no_truncates, no_downloads) = (
            self.fields.no_delete_truncates,
            self.fields.no_delete_downloads,
        );
        let source_dir = self.source_dir.clone();
        tokio::task::spawn_blocking(move || {
            if !no_truncates {
                remove_truncation_snapshots(&table_dirs)?;
            }
            if !no_downloads {
                remove_downloads(&download_dirs, &source_dir)?;
            }
            Ok::<_, std::io::Error>(())
        })
        .await
        .map_err(|error| OperationFailure::Failed(error.to_string()))?
        .map_err(|error| OperationFailure::Failed(format!("cleanup: {error}")))
    }
}

/// (downloaded file, link) pairs: SSTables assigned to `table_paths` in turn, all components of one SSTable together.
fn link_plan(files: &[PlannedDownload], table_paths: &[PathBuf]) -> Vec<(PathBuf, PathBuf)> {
    let mut assigned: std::collections::BTreeMap<String, usize> = Default::default();
    let mut links = Vec::new();
    for file in files {
        let Some(name) = file
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
        else {
            continue;
        };
        let prefix = crate::esop::sstable::SstableName::parse(&name)
            .map(|parsed| parsed.prefix().to_string())
            .unwrap_or_else(|| name.clone());
        // An index SSTable goes with its directory (`.<index>/`), so its prefix is told apart from the base table's.
        let index = file
            .path
            .parent()
            .and_then(|parent| parent.file_name())
            .map(|dir| dir.to_string_lossy().into_owned())
            .filter(|dir| dir.starts_with('.'));
        let key = format!("{}/{prefix}", index.clone().unwrap_or_default());
        let next = assigned.len();
        let slot = *assigned.entry(key).or_insert(next) % table_paths.len().max(1);
        let Some(table_path) = table_paths.get(slot) else {
            continue;
        };
        let dir = match &index {
            Some(index) => table_path.join(index),
            None => table_path.clone(),
        };
        links.push((file.path.clone(), dir.join(name)));
    }
    links
}

/// Makes the links; on failure removes those made and returns the error.
fn make_links(links: &[(PathBuf, PathBuf)]) -> std::io::Result<usize> {
    let mut made: Vec<&Path> = Vec::new();
    for (original, link) in links {
        let result = (|| {
            if let Some(parent) = link.parent() {
                std::fs::create_dir_all(parent)?;
            }
            match std::fs::hard_link(original, link) {
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                    let same_size =
                        std::fs::metadata(original)?.len() == std::fs::metadata(link)?.len();
                    if same_size {
                        Ok(false)
                    } else {
                        Err(std::io::Error::new(
                            std::io::ErrorKind::AlreadyExists,
                            format!("{} exists already with other contents", link.display()),
                        ))
                    }
                }
                Err(error) => Err(std::io::Error::new(
                    error.kind(),
                    format!("{} → {}: {error}", original.display(), link.display()),
                )),
                Ok(()) => Ok(true),
            }
        })();
        match result {
            Ok(true) => made.push(link),
            Ok(false) => {}
            Err(error) => {
                for link in made {
                    let _ = std::fs::remove_file(link);
                }
                return Err(error);
            }
        }
    }
    Ok(made.len())
}

/// Removes the snapshots Cassandra took when truncating (`snapshots/truncated-*`) from the restored tables only.
fn remove_truncation_snapshots(table_dirs: &[PathBuf]) -> std::io::Result<()> {
    for dir in table_dirs {
        let snapshots = dir.join("snapshots");
        let entries = match std::fs::read_dir(&snapshots) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        for entry in entries {
            let entry = entry?;
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with("truncated-")
            {
                tracing::info!(snapshot = %entry.path().display(), "removing the truncation's snapshot");
                std::fs::remove_dir_all(entry.path())?;
            }
        }
    }
    Ok(())
}

/// Removes what the restore downloaded, and the keyspace directories and `source_dir` once empty. Only those:
/// `import.sourceDir` may hold other things (Esop deletes it whole).
fn remove_downloads(download_dirs: &[PathBuf], source_dir: &Path) -> std::io::Result<()> {
    for dir in download_dirs {
        match std::fs::remove_dir_all(dir) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        if let Some(keyspace_dir) = dir.parent() {
            let _ = std::fs::remove_dir(keyspace_dir);
        }
    }
    let _ = std::fs::remove_dir(source_dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(path: &str) -> PlannedDownload {
        PlannedDownload {
            key: String::new(),
            path: PathBuf::from(path),
            size: 0,
            hash: None,
        }
    }

    #[test]
    fn sstables_spread_over_data_directories_with_their_components_together() {
        let files = [
            planned("/dl/ks/t-1/nb-1-big-Data.db"),
            planned("/dl/ks/t-1/nb-1-big-Index.db"),
            planned("/dl/ks/t-1/nb-2-big-Data.db"),
            planned("/dl/ks/t-1/.t_idx/nb-1-big-Data.db"),
        ];
        let links = link_plan(
            &files,
            &[PathBuf::from("/a/ks/t-1"), PathBuf::from("/b/ks/t-1")],
        );
        let targets: Vec<String> = links
            .iter()
            .map(|(_, link)| link.display().to_string())
            .collect();
        assert_eq!(
            targets,
            [
                "/a/ks/t-1/nb-1-big-Data.db",
                "/a/ks/t-1/nb-1-big-Index.db",
                "/b/ks/t-1/nb-2-big-Data.db",
                "/a/ks/t-1/.t_idx/nb-1-big-Data.db",
            ]
        );
    }

    #[test]
    fn a_failed_link_undoes_the_links_made_before() {
        let dir = tempfile::tempdir().unwrap();
        let original = dir.path().join("a");
        std::fs::write(&original, b"x").unwrap();
        let clash = dir.path().join("t/clash");
        std::fs::create_dir_all(clash.parent().unwrap()).unwrap();
        std::fs::write(&clash, b"other contents").unwrap();
        let links = vec![
            (original.clone(), dir.path().join("t/first")),
            (original.clone(), clash.clone()),
        ];
        assert!(make_links(&links).is_err());
        assert!(!dir.path().join("t/first").exists());
        assert_eq!(std::fs::read(&clash).unwrap(), b"other contents");
    }
}
