//! Esop's bucket format: SSTable naming and object keys, the backup manifest and its JSON, and the report that
//! `list` and `remove-backup` compute from manifests. Pure data and file-name logic: no I/O on object storage.

pub mod commitlog;
pub mod json;
pub mod manifest;
pub mod report;
pub mod sstable;
pub mod tag;
