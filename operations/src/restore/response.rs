//! What a node's restore answers, as the operation's `response`: IN_PLACE's account of the files it put in place
//! and removed, or the HARDLINKS/IMPORT phases run and what CLEANUP removed. The keys and their order are what the
//! `json!` these replaced wrote; a `None` is written as `null`, as it was.

use serde::{Deserialize, Serialize};

use super::download::DownloadStats;
use super::plan::{Phase, Strategy};

/// A node's restore, either strategy. Untagged: the JSON is the strategy's own response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RestoreResponse {
    InPlace(InPlaceResponse),
    Live(LiveResponse),
}

/// An IN_PLACE restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InPlaceResponse {
    /// The backup's full name.
    pub backup: String,
    pub storage_location: String,
    pub strategy: Strategy,
    /// `keyspace.table` of every table restored.
    pub tables: Vec<String>,
    pub download: DownloadStats,
    /// Files of the restored tables the backup lacks, removed.
    pub deleted_files: usize,
    /// Entries removed from the hints, saved caches and commit-log directories.
    pub cleaned: usize,
    /// How `cassandra.yaml` was changed, when asked to.
    pub cassandra_yaml: Option<String>,
}

/// A HARDLINKS or IMPORT restore: the phases this request ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveResponse {
    pub backup: String,
    pub storage_location: String,
    pub strategy: Strategy,
    pub phases: Vec<Phase>,
    /// The staging directory (`import.sourceDir`).
    pub source_dir: String,
    pub tables: Vec<String>,
    /// Zero unless DOWNLOAD ran.
    pub download: DownloadStats,
    /// `null` unless CLEANUP ran.
    pub cleanup: Option<CleanupResponse>,
}

/// What CLEANUP removed, and the truncation snapshots it kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanupResponse {
    pub removed_files: usize,
    pub removed_directories: usize,
    pub removed_snapshots: Vec<String>,
    pub kept_snapshots: Vec<String>,
    /// Whether the restore's journal was found (without it, truncation snapshots are kept).
    pub journal: bool,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn stats() -> DownloadStats {
        DownloadStats {
            files: 3,
            bytes: 30,
            downloaded_files: 2,
            downloaded_bytes: 20,
            kept_files: 1,
        }
    }

    /// Serializes `typed` as the `json!` it replaced did, and reads it back as itself.
    fn same_json(typed: &RestoreResponse, before: serde_json::Value) {
        let written = serde_json::to_string(typed).unwrap();
        assert_eq!(written, serde_json::to_string(&before).unwrap());
        let read: RestoreResponse = serde_json::from_str(&written).unwrap();
        assert_eq!(&read, typed);
    }

    #[test]
    fn in_place_keeps_its_json() {
        for yaml in [None, Some("Tokens { initial_token: 2 }".to_owned())] {
            let (tables, stats) = (vec!["ks.t1".to_owned(), "ks.t2".to_owned()], stats());
            let before = json!({
                "backup": "tag-s-1",
                "storageLocation": "s3://b/c/d/n",
                "strategy": "IN_PLACE",
                "tables": tables,
                "download": stats,
                "deletedFiles": 4,
                "cleaned": 5,
                "cassandraYaml": yaml,
            });
            let typed = RestoreResponse::InPlace(InPlaceResponse {
                backup: "tag-s-1".into(),
                storage_location: "s3://b/c/d/n".into(),
                strategy: Strategy::InPlace,
                tables,
                download: stats,
                deleted_files: 4,
                cleaned: 5,
                cassandra_yaml: yaml,
            });
            same_json(&typed, before);
        }
    }

    #[test]
    fn live_keeps_its_json() {
        let cleanup = CleanupResponse {
            removed_files: 6,
            removed_directories: 2,
            removed_snapshots: vec!["truncated-1-t1".into()],
            kept_snapshots: vec!["truncated-0-t1".into()],
            journal: true,
        };
        let cleanup_before = json!({
            "removedFiles": 6,
            "removedDirectories": 2,
            "removedSnapshots": ["truncated-1-t1"],
            "keptSnapshots": ["truncated-0-t1"],
            "journal": true,
        });
        for (cleanup, cleanup_before) in [(None, json!(null)), (Some(cleanup), cleanup_before)] {
            let phases = vec![Phase::Download, Phase::Cleanup];
            let before = json!({
                "backup": "tag-s-1",
                "storageLocation": "s3://b/c/d/n",
                "strategy": Strategy::Hardlinks,
                "phases": phases,
                "sourceDir": "/var/lib/staging",
                "tables": ["ks.t1"],
                "download": stats(),
                "cleanup": cleanup_before,
            });
            let typed = RestoreResponse::Live(LiveResponse {
                backup: "tag-s-1".into(),
                storage_location: "s3://b/c/d/n".into(),
                strategy: Strategy::Hardlinks,
                phases,
                source_dir: "/var/lib/staging".into(),
                tables: vec!["ks.t1".into()],
                download: stats(),
                cleanup,
            });
            same_json(&typed, before);
        }
    }
}
