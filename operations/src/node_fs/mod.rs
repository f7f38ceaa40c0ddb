//! The node's files, as the sidecar may touch them: the one place that decides where a restore (or a backup reading
//! for upload) may create, write, move and delete files.
//!
//! - [`Root`]: a directory opened once as a handle; every operation is relative to it ([`RelPath`]) and cannot
//!   escape it, through `..`, a symbolic link or a rename race.
//! - Where roots come from: a running node's directories as Cassandra reports them over JMX; a stopped node's from
//!   the configuration the operator gave at start ([`NodeConfig`], [`NodeDirs`]) — never from a request's strings
//!   alone. Staging directories a request names are checked against those ([`staging`]).
//! - [`names`]: every name from a bucket is checked before it becomes part of a path.

pub mod layout;
pub mod names;
mod rel_path;
mod root;
pub mod staging;

pub use layout::{ConfigFlags, NodeConfig, NodeDirs, NodeDirsError, read_yaml_dirs};
pub use rel_path::{NotAPlainName, RelPath, is_plain_name};
pub use root::{Entry, EntryKind, FsError, Root, Target, open_no_follow};
