//! Esop's keys for archived commit-log segments: `commitlog/<segment name>.<last modified millis>` under the node's
//! path. The key is the bucket format's; whether `<segment name>` is a name Cassandra takes for a segment is the
//! node's rule ([`crate::node_fs::names::is_commit_log_segment`]), checked by the restore that reads the key.

/// The sub-prefix of the node's archived segments.
pub const COMMITLOG_PREFIX: &str = "commitlog/";

/// The key under which `commitlog-backup` archives segment `name`, last modified at `millis`.
pub fn archived_key(name: &str, millis: u128) -> String {
    format!("{COMMITLOG_PREFIX}{name}.{millis}")
}

/// The parts of an archived segment's key, unchecked beyond their shape: `file` is whatever precedes the last `.`,
/// `archived_millis` the digits after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchivedKey<'a> {
    pub file: &'a str,
    pub archived_millis: i64,
}

impl<'a> ArchivedKey<'a> {
    pub fn parse(key: &'a str) -> Option<ArchivedKey<'a>> {
        let (file, millis) = key.strip_prefix(COMMITLOG_PREFIX)?.rsplit_once('.')?;
        if millis.is_empty() || !millis.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(ArchivedKey {
            file,
            archived_millis: millis.parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_reads_back_as_written() {
        let key = archived_key("CommitLog-7-1700000000000.log", 1_700_000_123_456);
        assert_eq!(key, "commitlog/CommitLog-7-1700000000000.log.1700000123456");
        assert_eq!(
            ArchivedKey::parse(&key),
            Some(ArchivedKey {
                file: "CommitLog-7-1700000000000.log",
                archived_millis: 1_700_000_123_456,
            })
        );
    }

    #[test]
    fn keys_of_another_shape_are_not_archived_segments() {
        for key in [
            "CommitLog-7-1.log.1000",
            "commitlog/CommitLog-7-1.log",
            "commitlog/CommitLog-7-1.log.",
            "commitlog/CommitLog-7-1.log.10x0",
            "commitlog/CommitLog-7-1.log.99999999999999999999",
        ] {
            assert_eq!(ArchivedKey::parse(key), None, "{key}");
        }
    }
}
