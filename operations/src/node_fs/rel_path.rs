//! [`RelPath`]: a path relative to a [`super::Root`], made only of plain names, so it can never climb out of it.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a name cannot be part of a [`RelPath`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{}' is not a plain file name", name.escape_debug())]
pub struct NotAPlainName {
    pub name: String,
}

/// A relative path of plain names: none empty, `.` or `..`, none holding `/` or NUL. The empty path is the root
/// itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(PathBuf);

/// Whether `name` can be one component of a [`RelPath`].
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\0'])
        && name.len() <= 255
}

impl RelPath {
    /// The root itself.
    pub fn root() -> RelPath {
        RelPath::default()
    }

    /// A path of one name.
    pub fn name(name: &str) -> Result<RelPath, NotAPlainName> {
        RelPath::root().join(name)
    }

    /// A path of these names, in order.
    pub fn of<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<RelPath, NotAPlainName> {
        names
            .into_iter()
            .try_fold(RelPath::root(), |path, name| path.join(name))
    }

    /// `a/b/c` split at `/` (a path written by the sidecar itself, read back: every part is checked again).
    pub fn parse(text: &str) -> Result<RelPath, NotAPlainName> {
        RelPath::of(text.split('/'))
    }

    /// This path and one more name.
    pub fn join(&self, name: &str) -> Result<RelPath, NotAPlainName> {
        if !is_plain_name(name) {
            return Err(NotAPlainName {
                name: name.to_owned(),
            });
        }
        Ok(RelPath(self.0.join(name)))
    }

    /// This path followed by `other`.
    pub fn join_rel(&self, other: &RelPath) -> RelPath {
        RelPath(self.0.join(&other.0))
    }

    /// The path without its last name; `None` for the root.
    pub fn parent(&self) -> Option<RelPath> {
        self.0.parent().map(|parent| RelPath(parent.to_owned()))
    }

    /// The last name; `None` for the root.
    pub fn file_name(&self) -> Option<&str> {
        self.0.file_name().and_then(|name| name.to_str())
    }

    /// The same path with `suffix` appended to its last name (`nb-1-big-Data.db.daedalus-download`).
    pub fn with_suffix(&self, suffix: &str) -> Result<RelPath, NotAPlainName> {
        let name = format!("{}{suffix}", self.file_name().unwrap_or_default());
        match self.parent() {
            Some(parent) => parent.join(&name),
            None => RelPath::name(&name),
        }
    }

    /// The names, first to last.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.0.iter().filter_map(|name| name.to_str())
    }

    pub fn is_root(&self) -> bool {
        self.0.as_os_str().is_empty()
    }

    /// For the `Dir` calls: `.` for the root, since an empty path names nothing there.
    pub fn as_path(&self) -> &Path {
        if self.is_root() {
            Path::new(".")
        } else {
            &self.0
        }
    }

    /// The path under `base`, for messages and for Cassandra, which takes absolute paths.
    pub fn under(&self, base: &Path) -> PathBuf {
        base.join(&self.0)
    }

    /// How many names deep the path is.
    pub fn depth(&self) -> usize {
        self.0.iter().count()
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_make_a_path() {
        let path = RelPath::of(["ks", "t-1", ".idx", "nb-1-big-Data.db"]).expect("plain");
        assert_eq!(path.to_string(), "ks/t-1/.idx/nb-1-big-Data.db");
        assert_eq!(path.depth(), 4);
        assert_eq!(path.file_name(), Some("nb-1-big-Data.db"));
        assert_eq!(path.parent().expect("parent").to_string(), "ks/t-1/.idx");
        assert_eq!(
            path.with_suffix(".tmp").expect("suffix").to_string(),
            "ks/t-1/.idx/nb-1-big-Data.db.tmp"
        );
        for bad in ["", ".", "..", "a/b", "/", "a\0b"] {
            assert!(RelPath::name(bad).is_err(), "{bad:?}");
        }
        assert!(RelPath::parse("a/../b").is_err());
        assert!(RelPath::parse("/etc").is_err());
        assert!(RelPath::parse("a//b").is_err());
        assert_eq!(RelPath::root().as_path(), Path::new("."));
        assert!(RelPath::root().parent().is_none());
    }
}
