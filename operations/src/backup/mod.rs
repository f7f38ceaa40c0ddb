//! The backup engine: find a snapshot's files, decide their object keys, upload what the bucket lacks, and
//! describe the result in Esop's manifest. The `backup` operation (in [`crate::types::backup`]) drives it.

pub mod interrupted;
pub mod manifest_builder;
pub mod run;
pub mod snapshot_files;
pub mod upload;
