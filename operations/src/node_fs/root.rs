//! [`Root`]: a directory the sidecar may change, opened once as a handle. Every file operation of a restore goes
//! through one, relative to it ([`RelPath`]), so none can reach outside it: cap-std resolves each path beneath the
//! handle (with `openat2(RESOLVE_BENEATH)` where the kernel has it, else one component at a time), refusing `..` and
//! any symbolic link that leads out, also when a directory is renamed meanwhile. Files are opened without following a
//! symbolic link in their last component, and trees are removed without following any.
//!
//! Blocking, like `std::fs`: call it from `spawn_blocking`.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cap_fs_ext::{FollowSymlinks, OpenOptionsFollowExt};
use cap_std::fs::{Dir, MetadataExt, OpenOptions};

use super::rel_path::RelPath;

/// A file operation that failed, naming the action and the full path.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}", path.display())]
pub struct FsError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl FsError {
    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }
}

/// What a directory entry is, without following symbolic links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Other,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The name; entries whose names are not UTF-8 are not listed (nothing Cassandra writes has one).
    pub name: String,
    pub kind: EntryKind,
    /// Bytes, for files.
    pub len: u64,
}

/// A directory the sidecar may change, and everything beneath it.
#[derive(Debug)]
pub struct Root {
    /// As configured or reported (for messages, and for Cassandra, which takes absolute paths).
    path: PathBuf,
    /// With symbolic links resolved when it was opened: what comparisons between roots use.
    canonical: PathBuf,
    dir: Dir,
}

impl Root {
    /// Opens the directory at `path`, which must exist. The path itself may go through symbolic links (an operator's
    /// `/var/lib/cassandra` often does); what lies beneath the handle is then confined to it.
    pub fn open(path: &Path) -> Result<Root, FsError> {
        let error = |source| FsError {
            action: "open the directory",
            path: path.to_owned(),
            source,
        };
        let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority()).map_err(error)?;
        let canonical = where_is(&dir)
            .or_else(|_| std::fs::canonicalize(path))
            .map_err(error)?;
        Ok(Root {
            path: path.to_owned(),
            canonical,
            dir,
        })
    }

    /// [`Root::open`], creating the directory (and its parents) first when it is missing: for the node's own
    /// directories, which a node that never ran has not made yet.
    pub fn open_creating(path: &Path) -> Result<Root, FsError> {
        std::fs::create_dir_all(path).map_err(|source| FsError {
            action: "create the directory",
            path: path.to_owned(),
            source,
        })?;
        Root::open(path)
    }

    /// The subdirectory `rel` as a root of its own (it must exist; no symbolic link is followed to it).
    pub fn sub(&self, rel: &RelPath) -> Result<Root, FsError> {
        let dir = cap_fs_ext::DirExt::open_dir_nofollow(&self.dir, rel.as_path())
            .map_err(self.error("open the directory", rel))?;
        Ok(Root {
            path: rel.under(&self.path),
            canonical: where_is(&dir).unwrap_or_else(|_| rel.under(&self.canonical)),
            dir,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn canonical(&self) -> &Path {
        &self.canonical
    }

    /// `rel`'s full path, for messages.
    pub fn display(&self, rel: &RelPath) -> PathBuf {
        rel.under(&self.path)
    }

    fn error<'a>(
        &'a self,
        action: &'static str,
        rel: &'a RelPath,
    ) -> impl FnOnce(io::Error) -> FsError + 'a {
        move |source| FsError {
            action,
            path: self.display(rel),
            source,
        }
    }

    /// What is at `rel` (a symbolic link is reported as one, not followed); `None` when nothing is.
    pub fn kind(&self, rel: &RelPath) -> Result<Option<(EntryKind, u64)>, FsError> {
        match self.dir.symlink_metadata(rel.as_path()) {
            Ok(metadata) => Ok(Some((kind_of(&metadata.file_type()), metadata.len()))),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(self.error("read the metadata of", rel)(error)),
        }
    }

    /// The device `rel` is on (`st_dev`): hard links work only within one.
    pub fn device(&self, rel: &RelPath) -> Result<u64, FsError> {
        self.dir
            .symlink_metadata(rel.as_path())
            .map(|metadata| metadata.dev())
            .map_err(self.error("read the metadata of", rel))
    }

    /// The entries of the directory `rel`, sorted by name; a missing directory has none.
    pub fn entries(&self, rel: &RelPath) -> Result<Vec<Entry>, FsError> {
        let listing = match self.dir.read_dir(rel.as_path()) {
            Ok(listing) => listing,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(self.error("list", rel)(error)),
        };
        let mut entries = Vec::new();
        for entry in listing {
            let entry = entry.map_err(self.error("list", rel))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let file_type = entry.file_type().map_err(self.error("list", rel))?;
            let kind = kind_of(&file_type);
            let len = if kind == EntryKind::File {
                entry.metadata().map_err(self.error("list", rel))?.len()
            } else {
                0
            };
            entries.push(Entry { name, kind, len });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Creates the directory `rel` and any missing parents; returns those it created, outermost first.
    pub fn create_dir_all(&self, rel: &RelPath) -> Result<Vec<RelPath>, FsError> {
        let mut created = Vec::new();
        let mut path = RelPath::root();
        for name in rel.names() {
            path = path.join(name).map_err(|error| FsError {
                action: "create the directory",
                path: self.display(rel),
                source: io::Error::new(io::ErrorKind::InvalidInput, error),
            })?;
            match self.dir.create_dir(path.as_path()) {
                Ok(()) => created.push(path.clone()),
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                    if self.kind(&path)?.map(|(kind, _)| kind) != Some(EntryKind::Dir) {
                        return Err(self.error("create the directory", &path)(io::Error::new(
                            io::ErrorKind::AlreadyExists,
                            "something other than a directory is there",
                        )));
                    }
                }
                Err(error) => return Err(self.error("create the directory", &path)(error)),
            }
        }
        Ok(created)
    }

    /// Opens `rel` for reading; a symbolic link there is refused.
    pub fn open_file(&self, rel: &RelPath) -> Result<std::fs::File, FsError> {
        let mut options = OpenOptions::new();
        options.read(true).follow(FollowSymlinks::No);
        self.dir
            .open_with(rel.as_path(), &options)
            .map(cap_std::fs::File::into_std)
            .map_err(self.error("open", rel))
    }

    /// Creates (or truncates) `rel` for writing; a symbolic link there is refused rather than written through.
    pub fn create_file(&self, rel: &RelPath) -> Result<std::fs::File, FsError> {
        let mut options = OpenOptions::new();
        options
            .write(true)
            .create(true)
            .truncate(true)
            .follow(FollowSymlinks::No);
        self.dir
            .open_with(rel.as_path(), &options)
            .map(cap_std::fs::File::into_std)
            .map_err(self.error("create", rel))
    }

    /// The whole of a small file at `rel` (a symbolic link is refused), at most `limit` bytes.
    pub fn read_small(&self, rel: &RelPath, limit: u64) -> Result<Vec<u8>, FsError> {
        let file = self.open_file(rel)?;
        let mut bytes = Vec::new();
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(self.error("read", rel))?;
        if bytes.len() as u64 > limit {
            return Err(self.error("read", rel)(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("larger than {limit} bytes"),
            )));
        }
        Ok(bytes)
    }

    /// Renames `from` to `to` (in `to_root`, which may be this root), replacing a file there.
    pub fn rename(&self, from: &RelPath, to_root: &Root, to: &RelPath) -> Result<(), FsError> {
        self.dir
            .rename(from.as_path(), &to_root.dir, to.as_path())
            .map_err(self.error("move", from))
    }

    /// Makes `to` (in `to_root`) a hard link to the file `from`.
    pub fn hard_link(&self, from: &RelPath, to_root: &Root, to: &RelPath) -> Result<(), FsError> {
        self.dir
            .hard_link(from.as_path(), &to_root.dir, to.as_path())
            .map_err(|source| FsError {
                action: "link",
                path: self.display(from),
                source: io::Error::new(
                    source.kind(),
                    format!("to {}: {source}", to_root.display(to).display()),
                ),
            })
    }

    /// Removes the file (or symbolic link) `rel`; `false` when it was not there.
    pub fn remove_file(&self, rel: &RelPath) -> Result<bool, FsError> {
        match cap_fs_ext::DirExt::remove_file_or_symlink(&self.dir, rel.as_path()) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(error) => Err(self.error("remove", rel)(error)),
        }
    }

    /// Removes the directory `rel` if it is empty; `false` when it was not there or not empty.
    pub fn remove_empty_dir(&self, rel: &RelPath) -> Result<bool, FsError> {
        match self.dir.remove_dir(rel.as_path()) {
            Ok(()) => Ok(true),
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::DirectoryNotEmpty
                ) =>
            {
                Ok(false)
            }
            Err(error) => Err(self.error("remove", rel)(error)),
        }
    }

    /// Removes whatever is at `rel`: a file or symbolic link (never what it points to), or a directory with
    /// everything in it, symbolic links removed as links. `false` when nothing was there.
    pub fn remove_tree(&self, rel: &RelPath) -> Result<bool, FsError> {
        match self.kind(rel)? {
            None => Ok(false),
            Some((EntryKind::Dir, _)) => self
                .dir
                .remove_dir_all(rel.as_path())
                .map(|()| true)
                .map_err(self.error("remove", rel)),
            Some(_) => self.remove_file(rel),
        }
    }

    /// Replaces `rel` with `contents` so that no reader ever sees half of it: a sibling temporary file, written,
    /// given the mode of the file it replaces (an executable `cassandra-env.sh` stays executable), synced, renamed
    /// over `rel`, and the directory synced.
    pub fn write_atomically(&self, rel: &RelPath, contents: &[u8]) -> Result<(), FsError> {
        let temporary = rel
            .with_suffix(&format!(".daedalus-{}.tmp", std::process::id()))
            .map_err(|error| {
                self.error("write", rel)(io::Error::new(io::ErrorKind::InvalidInput, error))
            })?;
        let permissions = match self.dir.symlink_metadata(rel.as_path()) {
            Ok(metadata) if metadata.is_symlink() => {
                return Err(self.error("write", rel)(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "it is a symbolic link",
                )));
            }
            Ok(metadata) => Some(metadata.permissions()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => None,
            Err(error) => return Err(self.error("write", rel)(error)),
        };
        let result = (|| {
            // A leftover from a crashed earlier attempt is ours to replace.
            let _ = self.remove_file(&temporary);
            let mut options = OpenOptions::new();
            options
                .write(true)
                .create_new(true)
                .follow(FollowSymlinks::No);
            let mut file = self
                .dir
                .open_with(temporary.as_path(), &options)
                .map_err(self.error("create", &temporary))?;
            file.write_all(contents)
                .map_err(self.error("write", &temporary))?;
            if let Some(permissions) = permissions {
                file.set_permissions(permissions)
                    .map_err(self.error("set the mode of", &temporary))?;
            }
            file.sync_all().map_err(self.error("sync", &temporary))?;
            self.rename(&temporary, self, rel)?;
            // The rename is durable only once the directory is synced.
            let parent = rel.parent().unwrap_or_default();
            let mut read = OpenOptions::new();
            read.read(true);
            self.dir
                .open_with(parent.as_path(), &read)
                .and_then(|dir| dir.sync_all())
                .map_err(self.error("sync", &parent))
        })();
        if result.is_err() {
            let _ = self.remove_file(&temporary);
        }
        result
    }
}

/// Where an open directory really is, from the kernel's record of the handle (not its path, which a symbolic link
/// swapped in after the open could change).
fn where_is(dir: &Dir) -> io::Result<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd()))
}

/// Opens the file at `path` for reading, refusing a symbolic link in its last component: what a backup reads to
/// upload (a snapshot file, a commit-log segment) must be the file Cassandra wrote, not one a link was swapped in
/// for after the path was checked.
pub fn open_no_follow(path: &Path) -> io::Result<std::fs::File> {
    let mut options = OpenOptions::new();
    options.read(true).follow(FollowSymlinks::No);
    cap_std::fs::File::open_ambient_with(path, &options, cap_std::ambient_authority())
        .map(cap_std::fs::File::into_std)
}

fn kind_of(file_type: &cap_std::fs::FileType) -> EntryKind {
    if file_type.is_symlink() {
        EntryKind::Symlink
    } else if file_type.is_dir() {
        EntryKind::Dir
    } else if file_type.is_file() {
        EntryKind::File
    } else {
        EntryKind::Other
    }
}

/// A file's place: a root and a path beneath it.
#[derive(Debug, Clone)]
pub struct Target {
    pub root: Arc<Root>,
    pub rel: RelPath,
}

impl Target {
    pub fn new(root: &Arc<Root>, rel: RelPath) -> Target {
        Target {
            root: Arc::clone(root),
            rel,
        }
    }

    /// The full path, for messages and for Cassandra.
    pub fn display(&self) -> PathBuf {
        self.root.display(&self.rel)
    }
}

impl PartialEq for Target {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.root, &other.root) && self.rel == other.rel
    }
}

impl Eq for Target {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Scene {
        _dir: tempfile::TempDir,
        root: Root,
        outside: PathBuf,
    }

    /// A root with a file, and beside it a directory `outside` with a secret: what nothing done through the root may
    /// read, change or remove.
    fn scene() -> Scene {
        let dir = tempfile::tempdir().expect("tempdir");
        let inside = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(inside.join("ks/t")).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::fs::write(outside.join("secret"), "secret").expect("write");
        std::fs::write(inside.join("ks/t/file"), "file").expect("write");
        let root = Root::open(&inside).expect("root");
        Scene {
            _dir: dir,
            root,
            outside,
        }
    }

    fn rel(text: &str) -> RelPath {
        RelPath::parse(text).expect("plain")
    }

    fn outside_is_untouched(scene: &Scene) {
        let names: Vec<_> = std::fs::read_dir(&scene.outside)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["secret"]);
        assert_eq!(
            std::fs::read_to_string(scene.outside.join("secret")).expect("read"),
            "secret"
        );
    }

    #[test]
    fn symbolic_links_that_lead_out_are_never_followed() {
        let scene = scene();
        let base = scene.root.path().to_owned();
        symlink(&scene.outside, base.join("ks/out")).expect("symlink");
        symlink(scene.outside.join("secret"), base.join("ks/t/link")).expect("symlink");

        assert!(scene.root.open_file(&rel("ks/t/link")).is_err());
        assert!(scene.root.open_file(&rel("ks/out/secret")).is_err());
        assert!(scene.root.create_file(&rel("ks/out/new")).is_err());
        assert!(scene.root.create_file(&rel("ks/t/link")).is_err());
        assert!(scene.root.create_dir_all(&rel("ks/out/a/b")).is_err());
        assert!(scene.root.remove_file(&rel("ks/out/secret")).is_err());
        assert!(
            scene
                .root
                .write_atomically(&rel("ks/t/link"), b"x")
                .is_err()
        );
        assert!(scene.root.sub(&rel("ks/out")).is_err());
        assert!(
            scene
                .root
                .hard_link(&rel("ks/out/secret"), &scene.root, &rel("ks/t/stolen"))
                .is_err()
        );
        assert!(
            scene
                .root
                .rename(&rel("ks/t/file"), &scene.root, &rel("ks/out/moved"))
                .is_err()
        );
        assert_eq!(
            scene
                .root
                .kind(&rel("ks/t/link"))
                .expect("kind")
                .map(|k| k.0),
            Some(EntryKind::Symlink)
        );
        // Removing a tree that holds links removes the links, not what they point to.
        assert!(scene.root.remove_tree(&rel("ks")).expect("remove"));
        assert!(!base.join("ks").exists());
        outside_is_untouched(&scene);
    }

    #[test]
    fn files_read_for_upload_are_never_links() {
        let scene = scene();
        let base = scene.root.path().to_owned();
        symlink(scene.outside.join("secret"), base.join("ks/t/link")).expect("symlink");
        assert!(open_no_follow(&base.join("ks/t/link")).is_err());
        assert!(open_no_follow(&base.join("ks/t/file")).is_ok());
    }

    #[test]
    fn files_and_directories_round_trip_beneath_the_root() {
        let scene = scene();
        let created = scene
            .root
            .create_dir_all(&rel("ks/t/.idx/deep"))
            .expect("mkdir");
        assert_eq!(created, [rel("ks/t/.idx"), rel("ks/t/.idx/deep")]);
        assert!(scene.root.create_dir_all(&rel("ks/t/file/x")).is_err());
        let mut file = scene.root.create_file(&rel("ks/t/.idx/a")).expect("create");
        file.write_all(b"abc").expect("write");
        drop(file);
        assert_eq!(
            scene
                .root
                .read_small(&rel("ks/t/.idx/a"), 10)
                .expect("read"),
            b"abc"
        );
        assert!(scene.root.read_small(&rel("ks/t/.idx/a"), 2).is_err());
        scene
            .root
            .rename(&rel("ks/t/.idx/a"), &scene.root, &rel("ks/t/b"))
            .expect("rename");
        let names: Vec<String> = scene
            .root
            .entries(&rel("ks/t"))
            .expect("list")
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, [".idx", "b", "file"]);
        assert!(
            !scene
                .root
                .remove_empty_dir(&rel("ks/t"))
                .expect("not empty")
        );
        assert!(
            scene
                .root
                .remove_empty_dir(&rel("ks/t/.idx/deep"))
                .expect("empty")
        );
        assert!(scene.root.remove_file(&rel("ks/t/b")).expect("removed"));
        assert!(!scene.root.remove_file(&rel("ks/t/b")).expect("gone"));
        scene
            .root
            .write_atomically(&rel("ks/conf"), b"v1")
            .expect("write");
        scene
            .root
            .write_atomically(&rel("ks/conf"), b"v2")
            .expect("write");
        assert_eq!(
            scene.root.read_small(&rel("ks/conf"), 10).expect("read"),
            b"v2"
        );
        assert!(
            scene
                .root
                .entries(&rel("nothing"))
                .expect("missing")
                .is_empty()
        );
        outside_is_untouched(&scene);
    }
}
