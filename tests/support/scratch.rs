//! Scratch directories named after the test binary (`daedalus-<test file>-<name>-<pid>`), removed when dropped.

use std::ops::Deref;
use std::path::{Path, PathBuf};

/// A path under the temporary directory, for a test to fill; removed, with what is in it, when dropped.
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl Scratch {
    /// `daedalus-<test file>-NAME-<pid>` under the temporary directory, absent (anything left there by an earlier
    /// run is removed): for what the code under test must create.
    pub fn absent(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "daedalus-{}-{name}-{}",
            env!("CARGO_CRATE_NAME"),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Scratch(dir)
    }

    /// [`Scratch::absent`], then created empty.
    pub fn empty(name: &str) -> Scratch {
        let scratch = Scratch::absent(name);
        std::fs::create_dir_all(&scratch.0).expect("a scratch directory");
        scratch
    }
}

/// Removes `dir`, with what is in it, if an earlier run left it there (the nodes' directories outlive a run).
pub fn remove_leftover(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => panic!("removing {}: {error}", dir.display()),
    }
}

impl Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
