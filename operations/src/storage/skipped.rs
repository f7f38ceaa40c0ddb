//! Entries a listing passes over instead of failing: a name that is no valid object key (a newline or another
//! control character, an empty or `.`/`..` segment, bytes that are not UTF-8), or, in a `file://` bucket, a
//! symbolic link or something that is not a regular file.
//!
//! The `object_store` clients turn a whole listing into an error for one such name, so one odd object would stop
//! every `list` and restore of its node. Our stores (`file_store`, and `list_filter` in front of the cloud clients)
//! skip the entry instead and say so in band:
//! - [`ObjectStore::list`](object_store::ObjectStore::list) streams yield a [`SkippedEntry`] as an error item
//!   ([`SkippedEntry::into_error`]) and go on; [`SkippedEntry::of`] tells it from a real failure;
//! - [`ListResult`](object_store::ListResult)s carry them in their extensions, as [`SkippedEntries`].
//!
//! `RemoteStorage` logs each (a warning naming the entry, escaped) and reports them to the operation.

use std::fmt;

/// Why an entry was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The name cannot be an object key (control characters, empty or `.`/`..` segments, not UTF-8).
    NotAKey,
    /// A symbolic link in a `file://` bucket, which the store never follows.
    SymbolicLink,
    /// Neither a regular file nor a directory (a FIFO, a socket, a device) in a `file://` bucket.
    NotAFile,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SkipReason::NotAKey => "not a valid object key",
            SkipReason::SymbolicLink => "a symbolic link, never followed",
            SkipReason::NotAFile => "not a regular file",
        })
    }
}

/// A skipped entry as an operation's response lists it (`skippedObjects`): its escaped name and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SkippedObject {
    pub key: String,
    pub reason: String,
}

impl From<&SkippedEntry> for SkippedObject {
    fn from(entry: &SkippedEntry) -> Self {
        SkippedObject {
            key: entry.name.clone(),
            reason: entry.reason.to_string(),
        }
    }
}

/// One entry a listing passed over: its name (the whole key from the bucket's root, escaped so that it prints on
/// one line) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("skipped \"{name}\": {reason}")]
pub struct SkippedEntry {
    pub name: String,
    pub reason: SkipReason,
}

/// What `object_store::Error::Generic` names as its store for a skipped entry.
const SKIPPED: &str = "listing";

impl SkippedEntry {
    /// `raw` is the name as the store holds it, in bytes.
    pub fn new(raw: &[u8], reason: SkipReason) -> Self {
        SkippedEntry {
            name: escape(raw),
            reason,
        }
    }

    /// The entry as an item of a listing stream.
    pub fn into_error(self) -> object_store::Error {
        object_store::Error::Generic {
            store: SKIPPED,
            source: Box::new(self),
        }
    }

    /// The skipped entry `error` stands for, if it is one rather than a failure.
    pub fn of(error: &object_store::Error) -> Option<&SkippedEntry> {
        match error {
            object_store::Error::Generic { store, source } if *store == SKIPPED => {
                source.downcast_ref::<SkippedEntry>()
            }
            _ => None,
        }
    }
}

/// The entries a `list_with_delimiter` passed over, in its result's extensions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkippedEntries(pub Vec<SkippedEntry>);

/// A name made printable on one line: Rust's escapes for control characters, quotes and backslashes (`\n`, `\"`,
/// `\u{7f}`), other Unicode kept; bytes that are not UTF-8 as `\xNN`.
pub fn escape(raw: &[u8]) -> String {
    match std::str::from_utf8(raw) {
        Ok(text) => text.escape_debug().to_string(),
        Err(_) => raw.escape_ascii().to_string(),
    }
}

/// Whether `name`, as a whole key, can be an `object_store` path: what its clients accept from a listing.
pub fn is_valid_key(name: &str) -> bool {
    object_store::path::Path::parse(name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_print_on_one_line() {
        assert_eq!(escape(b"a\nb"), "a\\nb");
        assert_eq!(escape("été\t\"x\"".as_bytes()), "été\\t\\\"x\\\"");
        assert_eq!(escape(b"a\xffb"), "a\\xffb");
    }

    #[test]
    fn a_skipped_entry_is_told_from_a_failure() {
        let error = SkippedEntry::new(b"m/a\nb", SkipReason::NotAKey).into_error();
        let skipped = SkippedEntry::of(&error).expect("a skipped entry");
        assert_eq!(skipped.name, "m/a\\nb");
        assert_eq!(
            skipped.to_string(),
            "skipped \"m/a\\nb\": not a valid object key"
        );
        let failure = object_store::Error::Generic {
            store: "S3",
            source: "boom".into(),
        };
        assert!(SkippedEntry::of(&failure).is_none());
    }

    #[test]
    fn keys_that_object_store_refuses() {
        assert!(is_valid_key("c/dc/n/manifests/x.json"));
        assert!(is_valid_key("a%0Ab"));
        assert!(!is_valid_key("a\nb"));
        assert!(!is_valid_key("a//b"));
        assert!(!is_valid_key("a/../b"));
    }
}
