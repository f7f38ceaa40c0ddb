//! The filesystem side of `commitlog-restore` (point-in-time restore, Esop §2 and §5.11): which archived segments to
//! download, where, and the configuration that makes Cassandra replay them up to a point in time at its next start.
//!
//! Cassandra does the replay itself (`CommitLogArchiver.maybeRestoreArchive`): at start-up it runs `restore_command`
//! for every file in `restore_directories`, with `%from` the file there and `%to` the commit-log directory joined
//! with the segment name from the file's header (or from its name when the header cannot be read), then replays
//! mutations up to `restore_point_in_time`. The operator removes `commitlog_archiving.properties` (and the
//! `cassandra-env.sh` line) after that start, or every later start replays the segments again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::esop::commitlog::ArchivedKey;
use crate::node_fs::{EntryKind, FsError, RelPath, Root, names};
use crate::storage::remote::RemoteObject;

pub use crate::esop::commitlog::COMMITLOG_PREFIX;

pub const ARCHIVING_PROPERTIES: &str = "commitlog_archiving.properties";

/// `CommitLog-<version>-<id>.log`, the only names Cassandra's `CommitLogDescriptor` takes for a segment.
pub fn is_segment_name(name: &str) -> bool {
    names::is_commit_log_segment(name)
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
        let key = ArchivedKey::parse(key)?;
        is_segment_name(key.file).then_some(ArchivedSegment {
            segment: key.file,
            archived_millis: key.archived_millis,
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

/// Where a selected object is saved in the download directory: `CommitLog-<v>-<id>.log`. `None` for a key that is
/// not an archived segment.
pub fn local_name(key: &str) -> Option<RelPath> {
    ArchivedSegment::parse(key).and_then(|segment| RelPath::name(segment.segment).ok())
}

#[derive(Debug, thiserror::Error)]
pub enum CommitLogError {
    #[error("commitlogDownloadDir '{}' {problem}", dir.display())]
    DownloadDir { dir: PathBuf, problem: &'static str },
    #[error("point in time {millis} ms is outside the dates Cassandra can parse")]
    PointInTime { millis: i64 },
    #[error("'{name}' in keyspaceTables is not a keyspace.table name")]
    ReplayTable { name: String },
    #[error(transparent)]
    Io(#[from] FsError),
}

fn name(text: &str) -> Result<RelPath, CommitLogError> {
    RelPath::name(text).map_err(|error| {
        CommitLogError::Io(FsError {
            action: "name",
            path: PathBuf::from(text),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, error),
        })
    })
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

/// Writes `contents` to `commitlog_archiving.properties` in the configuration directory `config`. An existing file is
/// first copied to `commitlog_archiving.properties.<now_millis>` (returned), since it may hold the node's
/// `archive_command`.
pub fn write_archiving_properties(
    config: &Root,
    contents: &str,
    now_millis: i64,
) -> Result<Option<PathBuf>, CommitLogError> {
    let path = name(ARCHIVING_PROPERTIES)?;
    let copy = match config.kind(&path)? {
        Some(_) => {
            let previous = config.read_small(&path, 1024 * 1024)?;
            let copy = name(&format!("{ARCHIVING_PROPERTIES}.{now_millis}"))?;
            config.write_atomically(&copy, &previous)?;
            Some(config.display(&copy))
        }
        None => None,
    };
    config.write_atomically(&path, contents.as_bytes())?;
    Ok(copy)
}

/// Moves the commit-log segments (`CommitLog-<version>-<id>.log` files, nothing else) of the commit-log directory
/// `commitlog` to a new `commitlogs-<now_millis>` in `parent`, the directory holding it, as Esop does, so Cassandra
/// replays only the restored ones; the directory itself and anything else in it stay. `None` when there was no
/// segment to move.
pub fn move_existing_commitlogs(
    commitlog: &Root,
    parent: &Root,
    now_millis: i64,
) -> Result<Option<PathBuf>, CommitLogError> {
    let segments: Vec<RelPath> = commitlog
        .entries(&RelPath::root())?
        .into_iter()
        .filter(|entry| entry.kind == EntryKind::File && is_segment_name(&entry.name))
        .filter_map(|entry| RelPath::name(&entry.name).ok())
        .collect();
    if segments.is_empty() {
        return Ok(None);
    }
    let target = name(&format!("commitlogs-{now_millis}"))?;
    parent.create_dir_all(&target)?;
    let aside = parent.sub(&target)?;
    for segment in segments {
        commitlog.rename(&segment, &aside, &segment)?;
    }
    Ok(Some(aside.path().to_owned()))
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

/// Appends [`replay_list_line`] to `cassandra-env.sh` of the configuration directory `config` (atomically, keeping its mode), only when
/// `keyspace_tables` is not empty; returns the line written. Appending the same line again is a no-op. The operator
/// removes the line after the node has started, or every later start limits replay to these tables.
pub fn append_replay_list(
    config: &Root,
    keyspace_tables: &[String],
) -> Result<Option<String>, CommitLogError> {
    if keyspace_tables.is_empty() {
        return Ok(None);
    }
    let line = replay_list_line(keyspace_tables)?;
    let path = name("cassandra-env.sh")?;
    let mut text =
        String::from_utf8_lossy(&config.read_small(&path, 16 * 1024 * 1024)?).into_owned();
    if text.lines().any(|existing| existing == line) {
        return Ok(Some(line));
    }
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&line);
    text.push('\n');
    config.write_atomically(&path, text.as_bytes())?;
    Ok(Some(line))
}

// Each message names the field or file and what was wrong with it: the operation's error as it stands.
crate::operation::engine_failures!(CommitLogError);

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

    fn root(dir: &Path) -> Root {
        Root::open(dir).expect("root")
    }

    #[test]
    fn downloads_are_saved_under_the_segment_name() {
        assert_eq!(
            local_name("commitlog/CommitLog-7-1700000000000.log.1700000005000"),
            Some(RelPath::name("CommitLog-7-1700000000000.log").unwrap())
        );
        assert_eq!(local_name("commitlog/../x.log.1"), None);
        assert_eq!(local_name("commitlog/CommitLog-7-1.log/../../x.1"), None);
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
            write_archiving_properties(&root(dir.path()), "a=1\n", 7).expect("write"),
            None
        );
        let copy = write_archiving_properties(&root(dir.path()), "b=2\n", 8).expect("write");
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
    fn only_segments_move_beside_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let commitlog = dir.path().join("commitlog");
        fs::create_dir(&commitlog).expect("mkdir");
        let (log_root, parent) = (root(&commitlog), root(dir.path()));
        assert_eq!(
            move_existing_commitlogs(&log_root, &parent, 5).expect("empty"),
            None
        );
        fs::write(commitlog.join("CommitLog-7-1.log"), "x").expect("write");
        fs::write(commitlog.join("CommitLog-7-2.log"), "y").expect("write");
        // Not segments: an operator's notes, a CDC index, a symbolic link named like a segment.
        fs::write(commitlog.join("README"), "keep").expect("write");
        fs::write(commitlog.join("CommitLog-7-3_cdc.idx"), "keep").expect("write");
        std::os::unix::fs::symlink("/etc/hostname", commitlog.join("CommitLog-7-4.log"))
            .expect("symlink");
        let moved = move_existing_commitlogs(&log_root, &parent, 5).expect("move");
        let target = dir.path().join("commitlogs-5");
        assert_eq!(moved, Some(target.clone()));
        let mut left: Vec<_> = fs::read_dir(&commitlog)
            .expect("list")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["CommitLog-7-3_cdc.idx", "CommitLog-7-4.log", "README"]
        );
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
        let config = root(dir.path());
        assert_eq!(append_replay_list(&config, &[]).expect("nothing"), None);
        assert_eq!(
            fs::read_to_string(&env).expect("read"),
            "JVM_OPTS=\"$JVM_OPTS -Xss256k\""
        );
        let tables = vec!["ks.t1".to_owned(), "ks2.t2".to_owned()];
        let line = "JVM_OPTS=\"$JVM_OPTS -Dcassandra.replayList=ks.t1,ks2.t2\"";
        assert_eq!(
            append_replay_list(&config, &tables)
                .expect("append")
                .as_deref(),
            Some(line)
        );
        append_replay_list(&config, &tables).expect("again");
        assert_eq!(
            fs::read_to_string(&env).expect("read"),
            format!("JVM_OPTS=\"$JVM_OPTS -Xss256k\"\n{line}\n")
        );
        assert_eq!(
            fs::metadata(&env).expect("metadata").permissions().mode() & 0o777,
            0o755
        );
        for bad in ["ks", "ks.t\"; rm -rf /", "ks.", ".t"] {
            let error = append_replay_list(&config, &[bad.to_owned()]).expect_err(bad);
            assert!(
                matches!(error, CommitLogError::ReplayTable { .. }),
                "{bad}: {error}"
            );
        }
        let missing = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            append_replay_list(&root(missing.path()), &tables),
            Err(CommitLogError::Io { .. })
        ));
    }
}
