//! Staging directories: where a restore downloads before Cassandra takes the files (`import.sourceDir`) or replays
//! them (`commitlogDownloadDir`). A request names them, so they are checked twice: when submitted, as text
//! ([`staging_path`]: absolute, no `..`; `file://` URIs as Icarus writes them), and before the restore touches
//! anything, against the node's real directories with every symbolic link resolved ([`check`]).
//!
//! The rule: a staging directory may be any directory of its own — a new directory inside a data directory whose
//! name is not a keyspace's (CassKop's `/var/lib/cassandra/data/downloadedsstables`), one beside the data directories
//! (Icarus's `/var/lib/cassandra/downloadedsstables`), or elsewhere — but never a data directory itself, a keyspace
//! or table directory, anything inside one, Cassandra's commit-log, saved-caches or hints directory, or a parent of
//! any of these. A restore only ever removes from it what it put there, so a directory that holds other things is
//! safe; one that holds Cassandra's files is not, as `CLEANUP` runs with the node's permissions.

use std::collections::BTreeSet;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::layout::NodeDirs;
use super::{FsError, RelPath, Root, names};

/// A request's directory as the sidecar reads it: absolute, with `.` and repeated or trailing slashes dropped. `..`
/// is refused rather than resolved: which directory it means depends on symbolic links.
pub fn normalize(text: &str) -> Result<PathBuf, &'static str> {
    let path = Path::new(text);
    if !path.is_absolute() {
        return Err("must be an absolute path");
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err("must not contain '..'");
    }
    if text.contains('\0') {
        return Err("must not contain NUL");
    }
    Ok(lexical(path))
}

/// `path` with `.` and repeated or trailing slashes dropped (no symbolic link is resolved).
pub fn lexical(path: &Path) -> PathBuf {
    path.components()
        .filter(|component| *component != Component::CurDir)
        .collect()
}

/// `import.sourceDir` or `commitlogDownloadDir`: an absolute path, or a `file://` URI of one (Icarus's coordinator
/// and IBM's cassandra-operator write `file:///var/lib/cassandra/downloadedsstables`), normalized.
pub fn staging_path(text: &str) -> Result<PathBuf, String> {
    let text = text.trim();
    let path = if let Some(rest) = text.strip_prefix("file:") {
        // The URL parser resolves `..` itself; a request that says it is refused, as in a plain path.
        let climbs = rest.split('/').any(|segment| {
            let lower = segment.to_ascii_lowercase();
            matches!(lower.as_str(), ".." | "%2e%2e" | ".%2e" | "%2e.")
        });
        if climbs {
            return Err(format!("'{text}' must not contain '..'"));
        }
        let url = url::Url::parse(text)
            .map_err(|error| format!("'{text}' is not a file:// URI: {error}"))?;
        if url
            .host_str()
            .is_some_and(|host| !host.is_empty() && host != "localhost")
        {
            return Err(format!("'{text}' names another host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "'{text}' is not a file:// URI of a directory (it has a query or fragment)"
            ));
        }
        url.to_file_path()
            .map_err(|()| format!("'{text}' is not a file:// URI of a local path"))?
            .to_string_lossy()
            .into_owned()
    } else {
        text.to_owned()
    };
    if path.trim_end_matches('/').is_empty() {
        return Err(format!("'{text}' is the root directory"));
    }
    normalize(&path).map_err(|problem| format!("'{text}' {problem}"))
}

/// A staging directory as it is on disk: the deepest part of its path that exists, with symbolic links resolved, and
/// the names below it that do not exist yet (the restore creates them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// As the request named it (normalized).
    pub requested: PathBuf,
    /// The part that exists, as named.
    pub existing: PathBuf,
    /// That part with symbolic links resolved.
    pub existing_canonical: PathBuf,
    /// The names below it, to be created.
    pub missing: Vec<String>,
}

impl Resolved {
    /// Where the directory really is (or will be).
    pub fn canonical(&self) -> PathBuf {
        self.missing
            .iter()
            .fold(self.existing_canonical.clone(), |path, name| {
                path.join(name)
            })
    }
}

/// Resolves `requested` (normalized) on disk. A part that exists but is not a directory is an error.
pub fn resolve(requested: &Path) -> io::Result<Resolved> {
    let mut existing = requested.to_path_buf();
    let mut missing = Vec::new();
    loop {
        match std::fs::metadata(&existing) {
            Ok(metadata) if metadata.is_dir() => break,
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", existing.display()),
                ));
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                let name = existing
                    .file_name()
                    .and_then(|name| name.to_str())
                    .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a UTF-8 path"))?
                    .to_owned();
                missing.push(name);
                if !existing.pop() {
                    return Err(error);
                }
            }
            Err(error) => return Err(error),
        }
    }
    missing.reverse();
    Ok(Resolved {
        requested: requested.to_path_buf(),
        existing_canonical: std::fs::canonicalize(&existing)?,
        existing,
        missing,
    })
}

/// The node's directories a staging directory must keep clear of, each resolved.
#[derive(Debug, Clone, Default)]
pub struct Guarded {
    pub data: Vec<PathBuf>,
    /// Commit logs, saved caches, hints, ...: `(what, where)`.
    pub others: Vec<(&'static str, PathBuf)>,
    /// The keyspaces Cassandra knows (a running node); their directories inside a data directory are off limits
    /// even before they hold a table.
    pub keyspaces: BTreeSet<String>,
}

impl Guarded {
    /// Adds a directory, resolved; one that does not exist cannot be touched by accident and is left out.
    pub fn data_dir(&mut self, path: &Path) {
        if let Ok(resolved) = std::fs::canonicalize(path) {
            self.data.push(resolved);
        }
    }

    pub fn other(&mut self, what: &'static str, path: &Path) {
        if let Ok(resolved) = std::fs::canonicalize(path) {
            self.others.push((what, resolved));
        }
    }
}

/// What a stopped node's staging directory must keep clear of, from its directories as configured (no keyspace is
/// known: keyspace directories are recognised by the table directories in them, and by the system keyspaces' names).
pub fn guarded_by(dirs: &NodeDirs) -> Guarded {
    let mut guarded = Guarded::default();
    for dir in dirs.data.iter().chain(&dirs.local_system_data) {
        guarded.data_dir(dir);
    }
    guarded.other("commit-log", &dirs.commitlog);
    guarded.other("saved-caches", &dirs.saved_caches);
    guarded.other("hints", &dirs.hints);
    guarded
}

/// Why the staging directory at `canonical` (resolved, see [`Resolved::canonical`]) cannot be used, or `Ok`.
pub fn check(canonical: &Path, guarded: &Guarded) -> Result<(), String> {
    for data in &guarded.data {
        if canonical == data {
            return Err(format!("is the data directory {}", data.display()));
        }
        if data.starts_with(canonical) {
            return Err(format!("holds the data directory {}", data.display()));
        }
        if let Ok(below) = canonical.strip_prefix(data) {
            let first = below
                .components()
                .next()
                .and_then(|c| c.as_os_str().to_str())
                .unwrap_or_default();
            if is_keyspace_dir(data, first, guarded) {
                return Err(format!(
                    "lies inside the keyspace directory {}: use a directory of its own, e.g. {}",
                    data.join(first).display(),
                    data.join("downloadedsstables").display()
                ));
            }
        }
    }
    for (what, dir) in &guarded.others {
        if canonical == dir || canonical.starts_with(dir) {
            return Err(format!(
                "lies inside Cassandra's {what} directory {}",
                dir.display()
            ));
        }
        if dir.starts_with(canonical) {
            return Err(format!(
                "holds Cassandra's {what} directory {}",
                dir.display()
            ));
        }
    }
    Ok(())
}

/// Whether `name` in the data directory `data` is (or would be taken for) a keyspace's directory: a keyspace
/// Cassandra knows, a system keyspace, or a directory that holds table directories (`<table>-<32 hex>`), such as the
/// one a dropped keyspace leaves with its snapshots.
fn is_keyspace_dir(data: &Path, name: &str, guarded: &Guarded) -> bool {
    if guarded.keyspaces.contains(name) || names::is_system_keyspace(name) {
        return true;
    }
    std::fs::read_dir(data.join(name))
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| {
            entry.file_type().is_ok_and(|t| t.is_dir())
                && entry
                    .file_name()
                    .to_str()
                    .is_some_and(|entry| names::table_dir(entry).is_some())
        })
}

/// Why [`Staging::check`] refuses a directory. Read after the field's name: `commitlogDownloadDir '...' {error}`.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    /// The path, or the part of it that exists, cannot be resolved on disk.
    #[error(transparent)]
    Unresolved(#[from] io::Error),
    /// It is, holds or lies inside one of Cassandra's own directories (the words say which, see [`check`]).
    #[error("{0}")]
    Refused(String),
}

/// A staging directory: checked against the node's directories, opened (created first when missing) for the work
/// that writes into it, and removed again as far as it was created.
#[derive(Debug, Clone)]
pub struct Staging {
    resolved: Resolved,
    guarded: Guarded,
}

impl Staging {
    /// Checks `path` (normalized) on disk against `guarded`; the error says why it cannot be used.
    pub fn check(path: &Path, guarded: &Guarded) -> Result<Staging, StagingError> {
        let resolved = resolve(path)?;
        check(&resolved.canonical(), guarded).map_err(StagingError::Refused)?;
        Ok(Staging {
            resolved,
            guarded: guarded.clone(),
        })
    }

    /// The opened directory must still be where it was checked to be: a symbolic link swapped in meanwhile shows in
    /// where the handle really is.
    fn still_allowed(&self, root: Root) -> Result<Root, FsError> {
        check(root.canonical(), &self.guarded).map_err(|why| FsError {
            action: "use",
            path: root.path().to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::PermissionDenied, why),
        })?;
        Ok(root)
    }

    pub fn path(&self) -> &Path {
        &self.resolved.requested
    }

    /// The directory, if it exists.
    pub fn open_existing(&self) -> Result<Option<Arc<Root>>, FsError> {
        match Root::open(&self.resolved.requested) {
            Ok(root) => Ok(Some(Arc::new(self.still_allowed(root)?))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The directory, created with its missing parents when it is not there; and how many directories that made.
    pub fn open_or_create(&self) -> Result<(Arc<Root>, usize), FsError> {
        if let Some(root) = self.open_existing()? {
            return Ok((root, 0));
        }
        let existing = Root::open(&self.resolved.existing)?;
        let missing =
            RelPath::of(self.resolved.missing.iter().map(String::as_str)).map_err(|error| {
                FsError {
                    action: "create the directory",
                    path: self.resolved.requested.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidInput, error),
                }
            })?;
        let created = existing.create_dir_all(&missing)?;
        let root = self.still_allowed(existing.sub(&missing)?)?;
        Ok((Arc::new(root), created.len()))
    }

    /// Removes the staging directory and the `levels - 1` parents above it that the restore created, each only when
    /// empty.
    pub fn remove_created(&self, levels: usize) -> Result<(), FsError> {
        let mut dir: PathBuf = self.resolved.requested.clone();
        for _ in 0..levels {
            let (Some(parent), Some(name)) =
                (dir.parent(), dir.file_name().and_then(|n| n.to_str()))
            else {
                break;
            };
            let parent_root = Root::open(parent)?;
            let Ok(rel) = RelPath::name(name) else { break };
            if !parent_root.remove_empty_dir(&rel)? {
                break;
            }
            dir = parent.to_path_buf();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths_are_normalized_and_never_climb() {
        assert_eq!(
            normalize("/var//lib/./cassandra/").unwrap(),
            PathBuf::from("/var/lib/cassandra")
        );
        assert!(normalize("var/lib").is_err());
        assert!(normalize("/var/lib/../etc").is_err());
        assert_eq!(
            staging_path("file:///var/lib/cassandra/downloadedsstables/").unwrap(),
            PathBuf::from("/var/lib/cassandra/downloadedsstables")
        );
        assert_eq!(
            staging_path("file://localhost/a%20b").unwrap(),
            PathBuf::from("/a b")
        );
        assert!(staging_path("file://other-host/x").is_err());
        assert!(staging_path("file:///x?y").is_err());
        assert!(staging_path("file:///x#y").is_err());
        assert!(staging_path("file:///a/%2E%2E/b").is_err());
        assert!(staging_path("file:///").is_err());
        assert!(staging_path("/").is_err());
        assert!(staging_path("//").is_err());
        assert!(staging_path("file:///a/../b").is_err());
        assert!(staging_path("relative").is_err());
    }

    /// A node: `data` holding keyspace `ks` (table `t-<id>`) and a dropped keyspace `old` (only a table directory
    /// left), the commit log beside it.
    fn node() -> (tempfile::TempDir, Guarded) {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        std::fs::create_dir_all(data.join("ks/t-0123456789abcdef0123456789abcdef")).unwrap();
        std::fs::create_dir_all(data.join("old/t-0123456789abcdef0123456789abcdef/snapshots"))
            .unwrap();
        std::fs::create_dir_all(data.join("empty_ks")).unwrap();
        std::fs::create_dir_all(root.path().join("commitlog")).unwrap();
        let mut guarded = Guarded::default();
        guarded.data_dir(&data);
        guarded.other("commit-log", &root.path().join("commitlog"));
        guarded.keyspaces.insert("empty_ks".into());
        (root, guarded)
    }

    fn verdict(root: &Path, guarded: &Guarded, relative: &str) -> Result<(), String> {
        let requested = normalize(&root.join(relative).display().to_string()).unwrap();
        check(&resolve(&requested).unwrap().canonical(), guarded)
    }

    #[test]
    fn a_dedicated_directory_passes_and_cassandras_own_are_refused() {
        let (root, guarded) = node();
        let root = root.path();
        for fine in [
            "data/downloadedsstables",
            "data/downloadedsstables/a/b",
            "downloadedsstables",
            "elsewhere/x",
        ] {
            assert_eq!(verdict(root, &guarded, fine), Ok(()), "{fine}");
        }
        for (bad, why) in [
            ("data", "is the data directory"),
            ("", "holds the data directory"),
            ("data/ks", "keyspace directory"),
            (
                "data/ks/t-0123456789abcdef0123456789abcdef",
                "keyspace directory",
            ),
            ("data/ks/new", "keyspace directory"),
            ("data/old", "keyspace directory"),
            ("data/empty_ks/x", "keyspace directory"),
            ("data/system_schema", "keyspace directory"),
            ("commitlog", "commit-log"),
            ("commitlog/x", "commit-log"),
        ] {
            let error = verdict(root, &guarded, bad).expect_err(bad);
            assert!(error.contains(why), "{bad}: {error}");
        }
    }

    #[test]
    fn symbolic_links_are_resolved_before_the_check() {
        let (root, guarded) = node();
        let link = root.path().join("innocent");
        std::os::unix::fs::symlink(root.path().join("data"), &link).unwrap();
        let error = verdict(root.path(), &guarded, "innocent").expect_err("the data directory");
        assert!(error.contains("is the data directory"), "{error}");
        let error = verdict(root.path(), &guarded, "innocent/ks/new").expect_err("a keyspace");
        assert!(error.contains("keyspace directory"), "{error}");
        assert_eq!(verdict(root.path(), &guarded, "innocent/staging"), Ok(()));
    }
}
