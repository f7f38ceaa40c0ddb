//! `daedalus restore --restored-marker FILE`. An init container runs on every start of its pod, and an IN_PLACE
//! restore run again once the node has taken writes would throw those writes away (it removes what the backup
//! lacks). The marker records the restore that completed; a later run asked for the same storage location and
//! snapshot tag finds it and leaves the node alone, while a run asked for another backup restores it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The restore a run is asked for, and where its marker lives.
pub struct RestoreMarker {
    path: PathBuf,
    asked: Asked,
}

/// What identifies a restore request: the backup it names, as given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Asked {
    storage_location: String,
    snapshot_tag: String,
}

/// What `restore --json` prints when the marker says the restore was done: no operation ran, so not an operation,
/// but JSON all the same for the script that reads it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NothingToDo<'a> {
    already_restored: bool,
    #[serde(flatten)]
    asked: &'a Asked,
    backup: &'a str,
    marker: String,
}

/// The marker file's JSON.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Recorded {
    #[serde(flatten)]
    asked: Asked,
    /// The backup the tag resolved to, for the reader.
    backup: String,
    completed: String,
}

impl RestoreMarker {
    pub fn new(path: &Path, storage_location: String, snapshot_tag: String) -> Self {
        Self {
            path: path.to_path_buf(),
            asked: Asked {
                storage_location,
                snapshot_tag,
            },
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The backup this same request restored before, if the marker says so. A marker that cannot be read is an
    /// error, not a reason to restore again: whoever removes it decides.
    pub fn already_restored(&self) -> anyhow::Result<Option<String>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(error).with_context(|| {
                    format!("cannot read the restore marker {}", self.path.display())
                });
            }
        };
        let recorded: Recorded = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a restore marker (remove it to restore)",
                self.path.display()
            )
        })?;
        Ok((recorded.asked == self.asked).then_some(recorded.backup))
    }

    /// The answer of a run that found `backup` restored already.
    pub fn nothing_to_do<'a>(&'a self, backup: &'a str) -> NothingToDo<'a> {
        NothingToDo {
            already_restored: true,
            asked: &self.asked,
            backup,
            marker: self.path.display().to_string(),
        }
    }

    /// Records that the restore of `backup` completed: written to a temporary file and renamed, so a marker is
    /// whole or absent.
    pub fn record(&self, backup: &str) -> anyhow::Result<()> {
        let recorded = Recorded {
            asked: self.asked.clone(),
            backup: backup.to_string(),
            completed: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        if let Some(dir) = self.path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mut temporary = self.path.clone().into_os_string();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        std::fs::write(&temporary, serde_json::to_vec_pretty(&recorded)?)
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        std::fs::rename(&temporary, &self.path)
            .with_context(|| format!("cannot write the restore marker {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(dir: &Path, tag: &str) -> RestoreMarker {
        RestoreMarker::new(
            &dir.join("state/restored.json"),
            "s3://bucket/cluster/dc1/cassandra-0".into(),
            tag.into(),
        )
    }

    #[test]
    fn a_recorded_restore_is_found_for_the_same_request_only() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            marker(dir.path(), "nightly").already_restored().unwrap(),
            None
        );
        marker(dir.path(), "nightly")
            .record("nightly-5d1c-1718029212345")
            .unwrap();
        assert_eq!(
            marker(dir.path(), "nightly").already_restored().unwrap(),
            Some("nightly-5d1c-1718029212345".to_string())
        );
        assert_eq!(
            marker(dir.path(), "weekly").already_restored().unwrap(),
            None
        );
        let elsewhere = RestoreMarker::new(
            &dir.path().join("state/restored.json"),
            "s3://bucket/cluster/dc1/cassandra-1".into(),
            "nightly".into(),
        );
        assert_eq!(elsewhere.already_restored().unwrap(), None);
    }

    #[test]
    fn an_unreadable_marker_stops_the_restore_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("restored.json");
        std::fs::write(&path, "half a wri").unwrap();
        let error = RestoreMarker::new(&path, "s3://b/c/d/n".into(), "t".into())
            .already_restored()
            .unwrap_err();
        assert!(
            format!("{error:#}").contains(&path.display().to_string()),
            "{error:#}"
        );
        assert!(
            format!("{error:#}").contains("remove it to restore"),
            "{error:#}"
        );
    }
}
