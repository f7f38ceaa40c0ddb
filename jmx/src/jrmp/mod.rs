//! JRMP, the wire protocol of Java RMI: connections, calls and returns, and remote references.

pub mod conn;
pub mod hashes;
pub mod remote_ref;

pub use conn::{Connection, JrmpError, RawReturn, ReturnKind};
pub use remote_ref::{ObjId, RemoteRef};
