//! What a HARDLINKS or IMPORT restore did on this node, kept in its staging directory: the directories it created
//! there, and for each restored table the truncation snapshots it found and the ones its TRUNCATE took. CLEANUP —
//! often a request of its own, sent after the other phases — reads it to remove what the restore made and nothing
//! else: not a directory it did not create, not a `truncated-*` snapshot a user's own TRUNCATE (or `auto_snapshot`)
//! made before the restore.
//!
//! The file is the sidecar's, but it lies in a directory a request named, so what is read back is checked again:
//! directories as plain relative names (removed only when empty), snapshots as `truncated-<millis>-<table>`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::node_fs::{FsError, RelPath, Root, names};

/// The journal's name in the staging directory.
pub const JOURNAL: &str = ".daedalus-restore.json";

/// A journal larger than this is not ours.
const MAX_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Journal {
    /// The backup restored; a journal of another backup keeps its directories but not its tables' records.
    pub backup: String,
    /// How many directories, the staging directory and the parents it needed, the restore created: removed when
    /// CLEANUP leaves them empty.
    #[serde(default)]
    pub created_levels: usize,
    /// Directories the restore created inside the staging directory, outermost first.
    #[serde(default)]
    pub created_dirs: Vec<String>,
    /// By restored table (`ks.table`).
    #[serde(default)]
    pub tables: BTreeMap<String, TableRecord>,
}

/// One restored table's truncation snapshots.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableRecord {
    /// When the restore first looked at the table on this node (epoch millis, this node's clock, the one Cassandra
    /// names its truncation snapshots by).
    pub since_millis: i64,
    /// The `truncated-*` snapshots the table had then: never removed.
    #[serde(default)]
    pub before: BTreeSet<String>,
    /// The ones this node's TRUNCATE phase took.
    #[serde(default)]
    pub taken: BTreeSet<String>,
}

impl TableRecord {
    /// Whether CLEANUP may remove the snapshot `name` of `table`: one the restore's TRUNCATE took here, or (the
    /// truncation of a cluster-wide restore ran on another node, and Cassandra snapshotted every replica) one named
    /// after a time since the restore began that was not there then.
    pub fn is_ours(&self, name: &str, table: &str) -> bool {
        let Some(millis) = names::truncation_snapshot_millis(name, table) else {
            return false;
        };
        self.taken.contains(name) || (!self.before.contains(name) && millis >= self.since_millis)
    }
}

impl Journal {
    /// The journal in `staging`, if there is one that can be read; one that cannot is reported and ignored (CLEANUP
    /// then removes only the downloaded files themselves).
    pub fn load(staging: &Root) -> Option<Journal> {
        let rel = RelPath::name(JOURNAL).ok()?;
        let bytes = match staging.read_small(&rel, MAX_BYTES) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
            Err(error) => {
                tracing::warn!(%error, "the restore's journal cannot be read; ignoring it");
                return None;
            }
        };
        match serde_json::from_slice::<Journal>(&bytes) {
            Ok(journal) => Some(journal.checked()),
            Err(error) => {
                tracing::warn!(path = %staging.display(&rel).display(), %error, "the restore's journal is not valid; ignoring it");
                None
            }
        }
    }

    /// The journal for a restore of `backup`: the one there is (a journal of another backup keeps the directories
    /// it created, which are still to remove) or a new one.
    pub fn for_backup(staging: &Root, backup: &str) -> Journal {
        match Journal::load(staging) {
            Some(journal) if journal.backup == backup => journal,
            Some(journal) => Journal {
                backup: backup.to_owned(),
                created_levels: journal.created_levels,
                created_dirs: journal.created_dirs,
                tables: BTreeMap::new(),
            },
            None => Journal {
                backup: backup.to_owned(),
                ..Journal::default()
            },
        }
    }

    pub fn save(&self, staging: &Root) -> Result<(), FsError> {
        let error = |source| FsError {
            action: "write",
            path: staging.path().join(JOURNAL),
            source,
        };
        let rel = RelPath::name(JOURNAL)
            .map_err(|e| error(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| error(std::io::Error::other(e)))?;
        staging.write_atomically(&rel, &bytes)
    }

    /// Records directories created in the staging directory.
    pub fn created(&mut self, dirs: impl IntoIterator<Item = RelPath>) {
        for dir in dirs {
            let dir = dir.to_string();
            if !self.created_dirs.contains(&dir) {
                self.created_dirs.push(dir);
            }
        }
    }

    /// The created directories that are plain relative paths, deepest first: the order to remove them in.
    pub fn dirs_to_remove(&self) -> Vec<RelPath> {
        let mut dirs: Vec<RelPath> = self
            .created_dirs
            .iter()
            .filter_map(|dir| RelPath::parse(dir).ok())
            .collect();
        dirs.sort_by_key(|dir| std::cmp::Reverse(dir.depth()));
        dirs
    }

    /// Drops what cannot have been written by the sidecar (the file lies in a directory a request named).
    fn checked(mut self) -> Journal {
        self.created_dirs.retain(|dir| RelPath::parse(dir).is_ok());
        self.created_levels = self.created_levels.min(64);
        for (table, record) in &mut self.tables {
            let name = table
                .split_once('.')
                .map(|(_, name)| name)
                .unwrap_or_default();
            record
                .taken
                .retain(|snapshot| names::truncation_snapshot_millis(snapshot, name).is_some());
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_restores_own_truncation_snapshots_are_its() {
        let record = TableRecord {
            since_millis: 1000,
            before: BTreeSet::from(["truncated-1500-t".to_string()]),
            taken: BTreeSet::from(["truncated-900-t".to_string()]),
        };
        assert!(
            record.is_ours("truncated-900-t", "t"),
            "taken by its TRUNCATE"
        );
        assert!(
            record.is_ours("truncated-2000-t", "t"),
            "taken since, by another node's TRUNCATE"
        );
        assert!(!record.is_ours("truncated-1500-t", "t"), "there before");
        assert!(
            !record.is_ours("truncated-500-t", "t"),
            "older than the restore"
        );
        assert!(!record.is_ours("truncated-2000-u", "t"), "another table's");
        assert!(!record.is_ours("nightly", "t"));
    }

    #[test]
    fn a_journal_is_checked_when_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        std::fs::write(
            dir.path().join(JOURNAL),
            r#"{"backup": "b", "createdLevels": 1000, "createdDirs": ["ks", "ks/t-1", "../../etc", "/abs", "a//b"],
                "tables": {"ks.t": {"sinceMillis": 5, "before": [], "taken": ["truncated-6-t", "../x"]}}}"#,
        )
        .unwrap();
        let journal = Journal::for_backup(&root, "b");
        assert_eq!(journal.created_dirs, ["ks", "ks/t-1"]);
        assert_eq!(journal.created_levels, 64);
        assert_eq!(
            journal.tables["ks.t"].taken,
            BTreeSet::from(["truncated-6-t".to_string()])
        );
        let dirs: Vec<String> = journal
            .dirs_to_remove()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(dirs, ["ks/t-1", "ks"]);
        let other = Journal::for_backup(&root, "another");
        assert!(other.tables.is_empty());
        assert_eq!(other.created_dirs, ["ks", "ks/t-1"]);
        std::fs::write(dir.path().join(JOURNAL), "not json").unwrap();
        assert_eq!(Journal::load(&root), None);
        journal.save(&root).unwrap();
        assert_eq!(Journal::load(&root), Some(journal));
    }
}
