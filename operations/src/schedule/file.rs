//! `--schedules-file`: schedules kept in a file (YAML or JSON, a list of `POST /schedules` bodies, each with an
//! optional stable `id`), loaded at start, for a sidecar whose store does not outlive it (systemd with the
//! in-memory store). With a shared store (etcd) the `id` is required: a new id at each start would add the schedule
//! once more. An invalid file stops the start, naming the entry and the field.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::Schedule;
use super::request::ScheduleRules;

#[derive(Debug, thiserror::Error)]
pub enum ScheduleFileError {
    #[error("cannot read the schedules file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the schedules file {path} is neither JSON nor YAML: {message}")]
    Syntax { path: String, message: String },
    #[error("the schedules file {path} must hold a list of schedules")]
    NotAList { path: String },
    #[error("the schedules file {path}, entry {index}{}: {message}", id.as_ref().map(|id| format!(" (id {id})")).unwrap_or_default())]
    Entry {
        path: String,
        /// From 0, as the list has them.
        index: usize,
        id: Option<String>,
        message: String,
    },
}

/// Reads and checks every schedule of the file. Entries without an `id` get a new one each start, unless
/// `require_id` (a shared store, where a new id at each start would add the schedule again).
pub fn load(
    path: &Path,
    rules: &ScheduleRules,
    now: DateTime<Utc>,
    require_id: bool,
) -> Result<Vec<Schedule>, ScheduleFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ScheduleFileError::Read {
        path: shown.clone(),
        source,
    })?;
    parse(&shown, &text, rules, now, require_id)
}

/// [`load`] on the file's text.
pub fn parse(
    path: &str,
    text: &str,
    rules: &ScheduleRules,
    now: DateTime<Utc>,
    require_id: bool,
) -> Result<Vec<Schedule>, ScheduleFileError> {
    // JSON is YAML, but JSON's own parser gives the better message for a JSON file.
    let document: Value = if text.trim_start().starts_with(['[', '{']) {
        serde_json::from_str(text).map_err(|error| ScheduleFileError::Syntax {
            path: path.into(),
            message: error.to_string(),
        })?
    } else {
        serde_yaml_ng::from_str(text).map_err(|error| ScheduleFileError::Syntax {
            path: path.into(),
            message: error.to_string(),
        })?
    };
    let entries = match document {
        Value::Array(entries) => entries,
        // An empty file: no schedules.
        Value::Null => Vec::new(),
        _ => return Err(ScheduleFileError::NotAList { path: path.into() }),
    };
    let mut schedules: Vec<Schedule> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        let id = entry.get("id").and_then(Value::as_str).map(str::to_string);
        if require_id && id.is_none() {
            return Err(ScheduleFileError::Entry {
                path: path.into(),
                index,
                id,
                message: "id: is required with a shared store (--store etcd), so that a restart finds the \
                          schedule again"
                    .into(),
            });
        }
        let schedule =
            rules
                .schedule_from_file(entry, now)
                .map_err(|error| ScheduleFileError::Entry {
                    path: path.into(),
                    index,
                    id: id.clone(),
                    message: error.to_string(),
                })?;
        if schedules.iter().any(|other| other.id == schedule.id) {
            return Err(ScheduleFileError::Entry {
                path: path.into(),
                index,
                id,
                message: "id: another entry has the same id".into(),
            });
        }
        schedules.push(schedule);
    }
    Ok(schedules)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{TypeOptions, registry};
    use std::sync::Arc;

    fn rules() -> ScheduleRules {
        let options = TypeOptions {
            enable_test_operations: true,
            ..TypeOptions::default()
        };
        ScheduleRules::new(Arc::new(registry(options)), &["backup", "sleep"])
    }

    #[test]
    fn yaml_and_json_lists_are_read() {
        let yaml = "
- id: nightly
  cron: '0 0 3 * * *'
  timezone: Europe/Berlin
  operation:
    type: backup
    storageLocation: s3://bucket/c/dc/n
  retention:
    keepLast: 7
- cron: '*/5 * * * *'
  operation: {type: sleep, duration: 1s}
";
        let schedules = parse("s.yaml", yaml, &rules(), Utc::now(), false).unwrap();
        assert_eq!(schedules.len(), 2);
        assert_eq!(schedules[0].id, "nightly");
        assert_eq!(schedules[0].operation["snapshotTag"], "schedule-nightly");
        let json = r#"[{"id": "a", "cron": "0 3 * * *", "operation": {"type": "sleep", "duration": "1s"}}]"#;
        assert_eq!(
            parse("s.json", json, &rules(), Utc::now(), false).unwrap()[0].id,
            "a"
        );
        assert!(
            parse("s.yaml", "", &rules(), Utc::now(), false)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn an_invalid_entry_is_named_with_its_field() {
        let yaml = "
- id: good
  cron: '0 3 * * *'
  operation: {type: sleep, duration: 1s}
- id: bad
  cron: '0 3 * * *'
  operation: {type: backup, storageLocation: s3://bucket/c/dc/n}
  retention: {keepLast: 0}
";
        let error = parse("s.yaml", yaml, &rules(), Utc::now(), false).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("entry 1 (id bad)"), "{text}");
        assert!(text.contains("retention.keepLast"), "{text}");
        let twice = "[{\"id\": \"x\", \"cron\": \"0 3 * * *\", \"operation\": {\"type\": \"sleep\", \"duration\": \"1s\"}},
            {\"id\": \"x\", \"cron\": \"0 4 * * *\", \"operation\": {\"type\": \"sleep\", \"duration\": \"1s\"}}]";
        let text = parse("s.json", twice, &rules(), Utc::now(), false)
            .unwrap_err()
            .to_string();
        assert!(text.contains("same id"), "{text}");
        let no_id = "[{\"cron\": \"0 3 * * *\", \"operation\": {\"type\": \"sleep\", \"duration\": \"1s\"}}]";
        let text = parse("s.json", no_id, &rules(), Utc::now(), true)
            .unwrap_err()
            .to_string();
        assert!(text.contains("entry 0: id: is required"), "{text}");
        assert!(matches!(
            parse("s.yaml", "cron: x", &rules(), Utc::now(), false),
            Err(ScheduleFileError::NotAList { .. })
        ));
    }
}
