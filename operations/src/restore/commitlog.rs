//! The filesystem side of `commitlog-restore` (point-in-time restore, Esop §2 and §5.11): which archived segments to
//! download, where, and the configuration that makes Cassandra replay them up to a point in time at its next start.
//!
//! Cassandra does the replay itself (`CommitLogArchiver.maybeRestoreArchive`): at start-up it runs `restore_command`
//! for every file in `restore_directories`, with `%from` the file there and `%to` the commit-log directory joined
//! with the segment name from the file's header (or from its name when the header cannot be read), then replays
//! mutations up to `restore_point_in_time`. The operator removes `commitlog_archiving.properties` (and the
//! `cassandra-env.sh` line) after that start, or every later start replays the segments again.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::restore::atomic::write_atomically;
use crate::storage::remote::RemoteObject;

/// The sub-prefix of the node's archived segments.
pub const COMMITLOG_PREFIX: &str = "commitlog/";

pub const ARCHIVING_PROPERTIES: &str = "commitlog_archiving.properties";

/// `CommitLog-<version>-<id>.log`, the only names Cassandra's `CommitLogDescriptor` takes for a segment.
pub fn is_segment_name(name: &str) -> bool {
    let Some(rest) = name
        .strip_prefix("CommitLog-")
        .and_then(|rest| rest.strip_suffix(".log"))
    else {
        return false;
    };
    let mut parts = rest.split('-');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(version), Some(id), None)
            if !version.is_empty() && !id.is_empty()
                && version.bytes().chain(id.bytes()).all(|b| b.is_ascii_digit())
    )
}

/// An archived segment: `commitlog/<segment name>.<last modified millis>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedSegment<'a> {
    /// `CommitLog-<v>-<id>.log`: the local file name. Cassandra takes the `.<millis>` suffix for a different
    /// segment name (`CommitLogDescriptor.isValid` fails, so it relies on the header alone), hence it is stripped.
    pub segment: &'a str,
    pub archived_millis: i64,
}

impl<'a> ArchivedSegment<'a> {
    pub fn parse(key: &'a str) -> Option<ArchivedSegment<'a>> {
        let file = key.strip_prefix(COMMITLOG_PREFIX)?;
        let (segment, millis) = file.rsplit_once('.')?;
        if !is_segment_name(segment) || !millis.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(ArchivedSegment {
            segment,
            archived_millis: millis.parse().ok()?,
        })
    }
}

/// The archived segments to restore for the window `[start_millis, end_millis]`, oldest first: those archived
/// within it, plus the first one archived after `end_millis` (Esop's rule: the segment being written at `end` is
/// archived only when it is full or the node stops, so the writes up to `end` are in the first archive after it;
/// `restore_point_in_time` cuts the replay off at `end`).
///
/// Keys that are not `commitlog/<segment>.<millis>` are ignored. Beyond Esop: when the window holds the same
/// segment archived several times (a segment still being written when `commitlog-backup` ran), only the latest copy
/// is taken, since it holds everything the earlier ones do and all copies would be saved under one local name.
pub fn select(objects: &[RemoteObject], start_millis: i64, end_millis: i64) -> Vec<RemoteObject> {
    let mut archived: Vec<(i64, &RemoteObject)> = objects
        .iter()
        .filter_map(|object| {
            ArchivedSegment::parse(&object.key).map(|s| (s.archived_millis, object))
        })
        .collect();
    archived.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.key.cmp(&b.1.key)));
    let mut chosen: Vec<&RemoteObject> = archived
        .iter()
        .filter(|(millis, _)| (start_millis..=end_millis).contains(millis))
        .map(|(_, object)| *object)
        .collect();
    if start_millis <= end_millis
        && let Some((_, next)) = archived.iter().find(|(millis, _)| *millis > end_millis)
    {
        chosen.push(next);
    }
    let mut latest: HashMap<&str, usize> = HashMap::new();
    for (index, object) in chosen.iter().enumerate() {
        if let Some(segment) = ArchivedSegment::parse(&object.key) {
            latest.insert(segment.segment, index);
        }
    }
    chosen
        .iter()
        .enumerate()
        .filter(|(index, object)| {
            ArchivedSegment::parse(&object.key)
                .is_some_and(|s| latest.get(s.segment) == Some(index))
        })
        .map(|(_, object)| (*object).clone())
        .collect()
}

/// Where a selected object is saved: `<download_dir>/CommitLog-<v>-<id>.log`. `None` for a key that is not an
/// archived segment.
pub fn local_path(download_dir: &Path, key: &str) -> Option<PathBuf> {
    ArchivedSegment::parse(key).map(|segment| download_dir.join(segment.segment))
}

#[derive(Debug, thiserror::Error)]
pub enum CommitLogError {
    #[error("commitlogDownloadDir '{}' {problem}", dir.display())]
    DownloadDir { dir: PathBuf, problem: &'static str },
    #[error("point in time {millis} ms is outside the dates Cassandra can parse")]
    PointInTime { millis: i64 },
    #[error("'{name}' in keyspaceTables is not a keyspace.table name")]
    ReplayTable { name: String },
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> CommitLogError + 'a {
    move |source| CommitLogError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// `restore_point_in_time` as Cassandra's `CommitLogArchiver` parses it: `SimpleDateFormat("yyyy:MM:dd HH:mm:ss")`
/// in GMT. The format has whole seconds, so the time is rounded down: nothing written after the requested point is
/// replayed, at the cost of up to a second of writes before it.
pub fn restore_point_in_time(millis: i64) -> Result<String, CommitLogError> {
    let time = chrono::DateTime::from_timestamp_millis(millis.div_euclid(1000) * 1000)
        .filter(|time| (0..=9999).contains(&chrono::Datelike::year(time)))
        .ok_or(CommitLogError::PointInTime { millis })?;
    Ok(time.format("%Y:%m:%d %H:%M:%S").to_string())
}

/// The `commitlog_archiving.properties` Esop writes: copy the downloaded segments into the commit-log directory and
/// replay them up to `point_in_time_millis`.
///
/// Cassandra splits `restore_command` on single spaces before running it and `restore_directories` on commas, and
/// reads the file as Java properties (backslash escapes), so a download directory with a space, comma, backslash or
/// line break cannot work and is refused.
pub fn archiving_properties(
    download_dir: &Path,
    point_in_time_millis: i64,
) -> Result<String, CommitLogError> {
    let dir = download_dir
        .to_str()
        .ok_or_else(|| CommitLogError::DownloadDir {
            dir: download_dir.to_owned(),
            problem: "is not valid UTF-8",
        })?;
    if dir.contains([' ', ',', '\\', '\n', '\r', '\t']) {
        return Err(CommitLogError::DownloadDir {
            dir: download_dir.to_owned(),
            problem: "has a space, comma, backslash or line break, which Cassandra's commit-log archiver cannot take",
        });
    }
    Ok(format!(
        "restore_command=cp -f %from %to\nrestore_directories={dir}\nrestore_point_in_time={}\n",
        restore_point_in_time(point_in_time_millis)?
    ))
}

/// Writes `contents` to `<config_dir>/commitlog_archiving.properties`. An existing file is first copied to
/// `commitlog_archiving.properties.<now_millis>` (returned), since it may hold the node's `archive_command`.
pub fn write_archiving_properties(
    config_dir: &Path,
    contents: &str,
    now_millis: i64,
) -> Result<Option<PathBuf>, CommitLogError> {
    let path = config_dir.join(ARCHIVING_PROPERTIES);
    let copy = if path.exists() {
        let copy = config_dir.join(format!("{ARCHIVING_PROPERTIES}.{now_millis}"));
        std::fs::copy(&path, &copy).map_err(io_error("copying", &path))?;
        Some(copy)
    } else {
        None
    };
    write_atomically(&path, contents.as_bytes()).map_err(io_error("writing", &path))?;
    Ok(copy)
}

/// Moves everything in `commitlog_dir` to a new `<parent>/commitlogs-<now_millis>`, as Esop does, so Cassandra
/// replays only the restored segments; the directory itself stays. `None` when there was nothing to move.
pub fn move_existing_commitlogs(
    commitlog_dir: &Path,
    now_millis: i64,
) -> Result<Option<PathBuf>, CommitLogError> {
    let entries = match std::fs::read_dir(commitlog_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("listing", commitlog_dir)(e)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        paths.push(entry.map_err(io_error("listing", commitlog_dir))?.path());
    }
    if paths.is_empty() {
        return Ok(None);
    }
    let parent = commitlog_dir.parent().ok_or_else(|| {
        io_error("moving", commitlog_dir)(io::Error::other("the directory has no parent"))
    })?;
    let target = parent.join(format!("commitlogs-{now_millis}"));
    std::fs::create_dir(&target).map_err(io_error("creating", &target))?;
    paths.sort();
    for path in paths {
        let Some(name) = path.file_name() else {
            continue;
        };
        std::fs::rename(&path, target.join(name)).map_err(io_error("moving", &path))?;
    }
    Ok(Some(target))
}

/// `JVM_OPTS="$JVM_OPTS -Dcassandra.replayList=ks.t,..."`: Cassandra then replays only these tables. Names are
/// checked (they go into a shell script).
pub fn replay_list_line(keyspace_tables: &[String]) -> Result<String, CommitLogError> {
    for name in keyspace_tables {
        let valid = name.split_once('.').is_some_and(|(keyspace, table)| {
            crate::validation::is_keyspace_name(keyspace) && crate::validation::is_table_name(table)
        });
        if !valid {
            return Err(CommitLogError::ReplayTable { name: name.clone() });
        }
    }
    Ok(format!(
        "JVM_OPTS=\"$JVM_OPTS -Dcassandra.replayList={}\"",
        keyspace_tables.join(",")
    ))
}

/// Appends [`replay_list_line`] to `<config_dir>/cassandra-env.sh` (atomically, keeping its mode), only when
/// `keyspace_tables` is not empty; returns the line written. Appending the same line again is a no-op. The operator
/// removes the line after the node has started, or every later start limits replay to these tables.
pub fn append_replay_list(
    config_dir: &Path,
    keyspace_tables: &[String],
) -> Result<Option<String>, CommitLogError> {
    if keyspace_tables.is_empty() {
        return Ok(None);
    }
    let line = replay_list_line(keyspace_tables)?;
    let path = config_dir.join("cassandra-env.sh");
    let mut text = std::fs::read_to_string(&path).map_err(io_error("reading", &path))?;
    if text.lines().any(|existing| existing == line) {
        return Ok(Some(line));
    }
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&line);
    text.push('\n');
    write_atomically(&path, text.as_bytes()).map_err(io_error("writing", &path))?;
    Ok(Some(line))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn object(key: &str) -> RemoteObject {
        RemoteObject {
            key: key.to_owned(),
            size: 1,
            last_modified: chrono::DateTime::from_timestamp_millis(0).expect("epoch"),
        }
    }

    fn keys(objects: &[RemoteObject]) -> Vec<&str> {
        objects.iter().map(|o| o.key.as_str()).collect()
    }

    #[test]
    fn selects_the_window_plus_the_first_archive_after_it() {
        let objects = [
            object("commitlog/CommitLog-7-5.log.5000"),
            object("commitlog/CommitLog-7-1.log.1000"),
            object("commitlog/CommitLog-7-2.log.2000"),
            object("commitlog/CommitLog-7-3.log.3000"),
            object("commitlog/CommitLog-7-4.log.4000"),
            object("commitlog/not-a-segment.log.2500"),
            object("commitlog/CommitLog-7-9.log"),
            object("manifests/CommitLog-7-8.log.2600"),
        ];
        assert_eq!(
            keys(&select(&objects, 2000, 3000)),
            [
                "commitlog/CommitLog-7-2.log.2000",
                "commitlog/CommitLog-7-3.log.3000",
                "commitlog/CommitLog-7-4.log.4000"
            ]
        );
        // Nothing archived inside the window: the segment written during it is the next one archived.
        assert_eq!(
            keys(&select(&objects, 3500, 3600)),
            ["commitlog/CommitLog-7-4.log.4000"]
        );
        // Nothing after the window: only what is in it.
        assert_eq!(
            keys(&select(&objects, 4500, 9000)),
            ["commitlog/CommitLog-7-5.log.5000"]
        );
        assert!(select(&objects, 3000, 2000).is_empty());
    }

    #[test]
    fn a_segment_archived_twice_is_taken_once_in_its_latest_copy() {
        let objects = [
            object("commitlog/CommitLog-7-1.log.1000"),
            object("commitlog/CommitLog-7-1.log.1500"),
            object("commitlog/CommitLog-7-2.log.2000"),
        ];
        assert_eq!(
            keys(&select(&objects, 0, 1800)),
            [
                "commitlog/CommitLog-7-1.log.1500",
                "commitlog/CommitLog-7-2.log.2000"
            ]
        );
    }

    #[test]
    fn downloads_are_saved_under_the_segment_name() {
        assert_eq!(
            local_path(
                Path::new("/restore"),
                "commitlog/CommitLog-7-1700000000000.log.1700000005000"
            ),
            Some(PathBuf::from("/restore/CommitLog-7-1700000000000.log"))
        );
        assert_eq!(
            local_path(Path::new("/restore"), "commitlog/../x.log.1"),
            None
        );
        assert!(is_segment_name("CommitLog-7-1.log"));
        assert!(!is_segment_name("CommitLog-7-1.log.1000"));
        assert!(!is_segment_name("CommitLog-7.log"));
    }

    #[test]
    fn properties_in_cassandras_format_and_time_zone() {
        // 2023-11-14T22:13:20.999Z: GMT, seconds rounded down.
        assert_eq!(
            archiving_properties(Path::new("/var/lib/cassandra/restore"), 1_700_000_000_999)
                .expect("properties"),
            "restore_command=cp -f %from %to\nrestore_directories=/var/lib/cassandra/restore\n\
             restore_point_in_time=2023:11:14 22:13:20\n"
        );
        assert_eq!(
            restore_point_in_time(-1).expect("before 1970"),
            "1969:12:31 23:59:59"
        );
        assert!(matches!(
            restore_point_in_time(i64::MAX),
            Err(CommitLogError::PointInTime { .. })
        ));
        for dir in ["/a b", "/a,b", "/a\\b"] {
            let error = archiving_properties(Path::new(dir), 0).expect_err(dir);
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("commitlogDownloadDir '{dir}'")),
                "{error}"
            );
        }
    }

    #[test]
    fn properties_file_keeps_a_copy_of_an_existing_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            write_archiving_properties(dir.path(), "a=1\n", 7).expect("write"),
            None
        );
        let copy = write_archiving_properties(dir.path(), "b=2\n", 8).expect("write");
        assert_eq!(
            copy,
            Some(dir.path().join("commitlog_archiving.properties.8"))
        );
        assert_eq!(
            fs::read_to_string(dir.path().join(ARCHIVING_PROPERTIES)).expect("read"),
            "b=2\n"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("commitlog_archiving.properties.8")).expect("read"),
            "a=1\n"
        );
    }

    #[test]
    fn existing_commitlogs_move_beside_the_directory() {
        let root = tempfile::tempdir().expect("tempdir");
        let commitlog = root.path().join("commitlog");
        fs::create_dir(&commitlog).expect("mkdir");
        assert_eq!(
            move_existing_commitlogs(&commitlog, 5).expect("empty"),
            None
        );
        assert_eq!(
            move_existing_commitlogs(&root.path().join("missing"), 5).expect("missing"),
            None
        );
        fs::write(commitlog.join("CommitLog-7-1.log"), "x").expect("write");
        fs::write(commitlog.join("CommitLog-7-2.log"), "y").expect("write");
        let moved = move_existing_commitlogs(&commitlog, 5).expect("move");
        let target = root.path().join("commitlogs-5");
        assert_eq!(moved, Some(target.clone()));
        assert!(commitlog.is_dir() && fs::read_dir(&commitlog).expect("list").next().is_none());
        assert_eq!(
            fs::read_to_string(target.join("CommitLog-7-2.log")).expect("read"),
            "y"
        );
    }

    #[test]
    fn replay_list_is_appended_once_and_only_when_given() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let env = dir.path().join("cassandra-env.sh");
        fs::write(&env, "JVM_OPTS=\"$JVM_OPTS -Xss256k\"").expect("write");
        fs::set_permissions(&env, fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(append_replay_list(dir.path(), &[]).expect("nothing"), None);
        assert_eq!(
            fs::read_to_string(&env).expect("read"),
            "JVM_OPTS=\"$JVM_OPTS -Xss256k\""
        );
        let tables = vec!["ks.t1".to_owned(), "ks2.t2".to_owned()];
        let line = "JVM_OPTS=\"$JVM_OPTS -Dcassandra.replayList=ks.t1,ks2.t2\"";
        assert_eq!(
            append_replay_list(dir.path(), &tables)
                .expect("append")
                .as_deref(),
            Some(line)
        );
        append_replay_list(dir.path(), &tables).expect("again");
        assert_eq!(
            fs::read_to_string(&env).expect("read"),
            format!("JVM_OPTS=\"$JVM_OPTS -Xss256k\"\n{line}\n")
        );
        assert_eq!(
            fs::metadata(&env).expect("metadata").permissions().mode() & 0o777,
            0o755
        );
        for bad in ["ks", "ks.t\"; rm -rf /", "ks.", ".t"] {
            let error = append_replay_list(dir.path(), &[bad.to_owned()]).expect_err(bad);
            assert!(
                matches!(error, CommitLogError::ReplayTable { .. }),
                "{bad}: {error}"
            );
        }
        let missing = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            append_replay_list(missing.path(), &tables),
            Err(CommitLogError::Io { .. })
        ));
    }
}
