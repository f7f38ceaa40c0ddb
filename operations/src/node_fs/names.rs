//! Names that come from outside the node — a manifest, an object key, a topology file, a journal — checked before any
//! of them becomes part of a local path. Each check is a positive rule (what the name may be), never a list of what
//! it may not: keyspace and table names by Cassandra's identifier rules, table ids as 32 hex digits, SSTable file
//! names by the naming rules of each format, commit-log segments by Cassandra's pattern.

use crate::esop::sstable::SstableName;

pub use crate::validation::{is_keyspace_name, is_table_name};

/// Keyspaces Cassandra manages itself. A restore into a live node never writes them (Esop's rule); IN_PLACE has
/// its own rules for them.
pub const SYSTEM_KEYSPACES: [&str; 8] = [
    "system",
    "system_schema",
    "system_auth",
    "system_distributed",
    "system_traces",
    "system_views",
    "system_virtual_schema",
    "system_cluster_metadata",
];

pub fn is_system_keyspace(keyspace: &str) -> bool {
    SYSTEM_KEYSPACES.contains(&keyspace)
}

/// File names are limited to 255 bytes on every filesystem Cassandra runs on.
const FILE_NAME_MAX: usize = 255;

/// A table id: 32 hex digits (a UUID without its dashes, as Cassandra names table directories).
pub fn is_table_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `<table>-<id>`, a table's directory name, taken apart: `None` unless the table is a table name and the id a
/// table id.
pub fn table_dir(name: &str) -> Option<(&str, &str)> {
    let (table, id) = name.rsplit_once('-')?;
    (is_table_name(table) && is_table_id(id)).then_some((table, id))
}

/// `.<index name>`: the directory of a secondary index's SSTables inside its table's directory.
pub fn is_index_dir(name: &str) -> bool {
    name.strip_prefix('.').is_some_and(is_table_name)
}

/// The components every SSTable format writes under a fixed name (big, BTI, and the pre-3.0 digests).
const COMPONENTS: [&str; 13] = [
    "Data.db",
    "Index.db",
    "Filter.db",
    "CompressionInfo.db",
    "Statistics.db",
    "Summary.db",
    "TOC.txt",
    "CRC.db",
    "Digest.crc32",
    "Digest.adler32",
    "Digest.sha1",
    "Partitions.db",
    "Rows.db",
];

/// An SSTable component file name, checked strictly: `[<ks>-<table>-]<version>-<generation>[-big|-bti]-<component>`
/// where the version is two lowercase letters, the generation a sequence number or a 4.1+ UUID-based id
/// (`3h5q_1qn7_14xrk2osgtyy6n3jdc`), and the component one of Cassandra's: a fixed name ([`COMPONENTS`]), a SAI
/// component (`SAI+aa+[<index>+]<Part>.db`) or a SASI one (`SI_<index>.db`). Returns the parsed name, or why not.
pub fn sstable_file(name: &str) -> Result<SstableName, &'static str> {
    if name.is_empty() || name.len() > FILE_NAME_MAX || !name.is_ascii() {
        return Err("not a file name of 1 to 255 ASCII characters");
    }
    let parsed = SstableName::parse(name).ok_or("not an SSTable file name")?;
    if !is_generation(parsed.generation()) {
        return Err("the generation is neither a sequence number nor a UUID-based SSTable id");
    }
    if parsed
        .format()
        .is_some_and(|format| format != "big" && format != "bti")
    {
        return Err("the format is neither big nor bti");
    }
    let legacy = &parsed.prefix()[..parsed.prefix().len() - without_legacy_len(&parsed)];
    if !legacy.is_empty() {
        let mut parts = legacy.trim_end_matches('-').split('-');
        let valid = matches!(
            (parts.next(), parts.next(), parts.next()),
            (Some(keyspace), Some(table), None) if is_keyspace_name(keyspace) && is_table_name(table)
        );
        if !valid {
            return Err("the legacy <keyspace>-<table>- prefix does not name a table");
        }
    }
    if !is_component(parsed.component()) {
        return Err("the component is not one Cassandra writes");
    }
    Ok(parsed)
}

/// Length of `<version>-<generation>[-<format>]`, the prefix without a legacy `<ks>-<table>-` group.
fn without_legacy_len(name: &SstableName) -> usize {
    2 + 1 + name.generation().len() + name.format().map_or(0, |format| format.len() + 1)
}

/// A sequence number (as Cassandra's `int` generations print) or a UUID-based id: `[0-9a-z]{4}_[0-9a-z]{4}_[0-9a-z]{18}`.
fn is_generation(generation: &str) -> bool {
    let sequence = !generation.is_empty()
        && generation.len() <= 10
        && generation.bytes().all(|b| b.is_ascii_digit());
    let base36 = |part: &str, length: usize| {
        part.len() == length
            && part
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    };
    let mut parts = generation.split('_');
    let uuid = matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some(a), Some(b), Some(c), None) if base36(a, 4) && base36(b, 4) && base36(c, 18)
    );
    sequence || uuid
}

fn is_component(component: &str) -> bool {
    if COMPONENTS.contains(&component) {
        return true;
    }
    if let Some(index) = component
        .strip_prefix("SI_")
        .and_then(|rest| rest.strip_suffix(".db"))
    {
        return is_table_name(index);
    }
    if let Some(rest) = component
        .strip_prefix("SAI+")
        .and_then(|rest| rest.strip_suffix(".db"))
    {
        let mut parts = rest.split('+');
        let version = parts.next().unwrap_or_default();
        let others: Vec<&str> = parts.collect();
        return version.len() == 2
            && version.bytes().all(|b| b.is_ascii_lowercase())
            && (1..=2).contains(&others.len())
            && others.iter().all(|part| is_table_name(part));
    }
    false
}

/// `<generation>-<digest>`, the object-key directory of an SSTable (Esop's layout): the file's generation and a
/// digest token of letters and digits.
pub fn is_generation_digest(segment: &str, generation: &str) -> bool {
    segment
        .strip_prefix(generation)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|digest| {
            !digest.is_empty()
                && digest.len() <= 64
                && digest.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

/// `CommitLog-<version>-<id>.log`, the only names Cassandra's `CommitLogDescriptor` takes for a segment.
pub fn is_commit_log_segment(name: &str) -> bool {
    let Some(rest) = name
        .strip_prefix("CommitLog-")
        .and_then(|rest| rest.strip_suffix(".log"))
    else {
        return false;
    };
    let mut parts = rest.split('-');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(version), Some(id), None)
            if !version.is_empty() && !id.is_empty() && version.len() <= 10 && id.len() <= 20
                && version.bytes().chain(id.bytes()).all(|b| b.is_ascii_digit())
    )
}

/// A ring token as the partitioners print them: a decimal integer (Murmur3, Random) or hex digits (ByteOrdered).
/// Tokens from a manifest go into `cassandra.yaml`, so nothing else passes: no separators, quotes or line breaks.
pub fn is_token(token: &str) -> bool {
    let digits = token.strip_prefix('-').unwrap_or(token);
    !digits.is_empty() && digits.len() <= 64 && digits.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A snapshot Cassandra took when truncating a table: `truncated-<epoch millis>-<table>`; the millis, or `None`.
pub fn truncation_snapshot_millis(name: &str, table: &str) -> Option<i64> {
    let rest = name.strip_prefix("truncated-")?;
    let (millis, named_table) = rest.split_once('-')?;
    (named_table == table && !millis.is_empty() && millis.bytes().all(|b| b.is_ascii_digit()))
        .then(|| millis.parse().ok())
        .flatten()
}

/// One segment of an object-store path that a bucket supplied (a cluster, data centre or host id of a topology
/// file): printable, without separators, not `.` or `..`.
pub fn is_path_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= FILE_NAME_MAX
        && segment != "."
        && segment != ".."
        && !segment
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const UUID_ID: &str = "3h5q_1qn7_14xrk2osgtyy6n3jdc";

    #[test]
    fn sstable_files_of_every_format_pass() {
        for name in [
            "nb-1-big-Data.db".to_string(),
            "me-12-big-Digest.crc32".into(),
            "ks-table-jb-12-Data.db".into(),
            "instaclustr-recovery_codes-jb-1-Data.db".into(),
            "la-3-big-TOC.txt".into(),
            format!("oa-{UUID_ID}-big-Index.db"),
            format!("da-{UUID_ID}-bti-Partitions.db"),
            "da-1-bti-Rows.db".into(),
            "oa-1-big-SAI+aa+GroupComplete.db".into(),
            "oa-1-big-SAI+aa+t_v_idx+PostingLists.db".into(),
            "mc-4-big-SI_t_v_idx.db".into(),
        ] {
            assert!(
                sstable_file(&name).is_ok(),
                "{name}: {:?}",
                sstable_file(&name).err()
            );
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for name in [
            "nb-1-pwn.sh",
            "nb-1-big-pwn.sh",
            "nb-1-big-Data.db/../x",
            "nb-1-big-../../Data.db",
            "..",
            "",
            "nb-1-big-Data.db.tmp",
            "nb-1-big-Data.db\n",
            "NB-1-big-Data.db",
            "nb-1-abc-Data.db",
            "nb-x1-big-Data.db",
            "nb-12345678901-big-Data.db",
            "nb-3H5Q_1qn7_14xrk2osgtyy6n3jdc-big-Data.db",
            "nb-1-big-SAI+aa+../x.db",
            "nb-1-big-SAI+aa+a+b+c.db",
            "nb-1-big-SI_.db",
            "k$-t-jb-1-Data.db",
            "schema.cql",
            "manifest.json",
        ] {
            assert!(sstable_file(name).is_err(), "{name:?} passed");
        }
    }

    #[test]
    fn table_directories_ids_and_index_directories() {
        assert_eq!(
            table_dir("t_1-0123456789abcdef0123456789ABCDEF"),
            Some(("t_1", "0123456789abcdef0123456789ABCDEF"))
        );
        for bad in [
            "t-0123",
            "-0123456789abcdef0123456789abcdef",
            "a/b-0123456789abcdef0123456789abcdef",
            "..-0123456789abcdef0123456789abcdef",
            "t-x/../../../../outside/victim",
        ] {
            assert_eq!(table_dir(bad), None, "{bad}");
        }
        assert!(is_index_dir(".t_v_idx"));
        assert!(!is_index_dir(".."));
        assert!(!is_index_dir("."));
        assert!(!is_index_dir("t_v_idx"));
        assert!(!is_index_dir("./x"));
    }

    #[test]
    fn key_directories_segments_tokens_and_truncation_snapshots() {
        assert!(is_generation_digest("1-2345", "1"));
        assert!(!is_generation_digest("1-", "1"));
        assert!(!is_generation_digest("12-3", "1"));
        assert!(!is_generation_digest("1-../x", "1"));
        assert!(is_commit_log_segment("CommitLog-7-1700000000000.log"));
        assert!(!is_commit_log_segment("CommitLog-7-1.log.1000"));
        assert!(!is_commit_log_segment("CommitLog-7-../1.log"));
        assert!(is_token("-9223372036854775808"));
        assert!(is_token("00ff"));
        for bad in ["", "-", "1,2", "1\nhints_directory: /x", "'1'", "1 2"] {
            assert!(!is_token(bad), "{bad:?}");
        }
        assert_eq!(
            truncation_snapshot_millis("truncated-1700-t", "t"),
            Some(1700)
        );
        assert_eq!(truncation_snapshot_millis("truncated-1700-t", "u"), None);
        assert_eq!(truncation_snapshot_millis("truncated--t", "t"), None);
        assert_eq!(truncation_snapshot_millis("nightly", "t"), None);
        assert!(is_path_segment("0b6f3a56-8a6e-4c5e-9f1f-2a7e8b1c9d00"));
        for bad in ["", ".", "..", "a/b", "a\\b", "a\nb"] {
            assert!(!is_path_segment(bad), "{bad:?}");
        }
    }

    /// What the checks exist for: whatever the input, a name that passes is one plain file-name component.
    fn is_one_plain_component(name: &str) -> bool {
        use std::path::{Component, Path};
        let mut components = Path::new(name).components();
        matches!(components.next(), Some(Component::Normal(c)) if c == name)
            && components.next().is_none()
            && !name.contains(['\0', '\n', '\r'])
    }

    proptest! {
        #[test]
        fn a_name_that_passes_is_one_plain_component(name in "\\PC{0,80}|[a-z./_+-]{0,40}|[a-z]{2}-[0-9a-z_.+/-]{1,40}") {
            if sstable_file(&name).is_ok() {
                prop_assert!(is_one_plain_component(&name), "{name:?}");
                let parsed = sstable_file(&name).expect("passed");
                prop_assert_eq!(parsed.file_name(), name.as_str());
            }
            if is_index_dir(&name) || is_keyspace_name(&name) || is_table_name(&name)
                || is_commit_log_segment(&name) || is_path_segment(&name) || table_dir(&name).is_some()
            {
                prop_assert!(is_one_plain_component(&name), "{name:?}");
            }
        }

        #[test]
        fn generated_sstable_names_pass_and_keep_their_parts(
            version in "[a-z]{2}",
            generation in "[0-9]{1,10}|[0-9a-z]{4}_[0-9a-z]{4}_[0-9a-z]{18}",
            format in prop::sample::select(vec!["big", "bti"]),
            component in prop::sample::select(COMPONENTS.to_vec()),
        ) {
            let name = format!("{version}-{generation}-{format}-{component}");
            let parsed = sstable_file(&name).map_err(|reason| TestCaseError::fail(format!("{name}: {reason}")))?;
            prop_assert_eq!(parsed.generation(), generation.as_str());
            prop_assert_eq!(parsed.component(), component);
        }

        #[test]
        fn a_traversal_anywhere_in_a_name_is_refused(prefix in "[a-z0-9_-]{0,12}", suffix in "[a-zA-Z0-9_.+-]{0,12}",
                                                    evil in prop::sample::select(vec!["/", "..", "\0", "\n", "\\"])) {
            let name = format!("{prefix}{evil}{suffix}");
            if evil == ".." {
                // `..` inside a name is harmless only when it is not the whole component; the checks still refuse it
                // wherever a dot is not allowed, and it never passes as the whole name.
                prop_assert!(!is_one_plain_component("..") && sstable_file("..").is_err());
            } else {
                prop_assert!(sstable_file(&name).is_err(), "{name:?}");
                prop_assert!(!is_index_dir(&name) && table_dir(&name).is_none() && !is_path_segment(&name), "{name:?}");
            }
        }
    }
}
