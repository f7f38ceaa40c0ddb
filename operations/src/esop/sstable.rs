//! SSTable file names and the object keys Esop stores them under.
//!
//! Esop keys every SSTable component by `<generation>-<digest>` so the same SSTable always maps to the same object and
//! is uploaded once across backups of a node. Names are split exactly as Esop 4's pattern does
//! (`((?:<ks>-<table>-)?[a-z]{2}-([a-zA-Z0-9_]+)(?:-(big|bti))?)-.*`, `SSTableUtils.SSTABLE_RE`), which also covers the
//! 4.1+ UUID identifiers and the 5.0 BTI format that Esop 3 missed; keys computed here therefore equal Esop's.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// A parsed SSTable component file name, e.g. `nb-1-big-Data.db`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SstableName {
    name: String,
    /// End of the SSTable prefix (`nb-1-big`); the component starts one byte later, after the `-`.
    prefix_end: usize,
    generation: (usize, usize),
    version: (usize, usize),
    format: Option<(usize, usize)>,
}

impl SstableName {
    /// Splits a component file name; `None` for anything that is not an SSTable component (`schema.cql`,
    /// `manifest.json`, transaction logs, `*.tmp` leftovers).
    pub fn parse(file_name: &str) -> Option<SstableName> {
        if file_name.contains('/') || file_name.ends_with(".tmp") {
            return None;
        }
        let bytes = file_name.as_bytes();
        // Esop's optional legacy `<ks>-<table>-` group is greedy: the longest candidate that lets the rest match wins.
        let parsed = legacy_prefix_ends(bytes)
            .into_iter()
            .rev()
            .find_map(|start| parse_core(bytes, start))
            .or_else(|| parse_core(bytes, 0))?;
        let (version, generation, format, prefix_end) = parsed;
        let component = &file_name[prefix_end + 1..];
        if component.is_empty() || component.chars().any(is_java_line_terminator) {
            return None;
        }
        Some(SstableName {
            name: file_name.to_owned(),
            prefix_end,
            generation,
            version,
            format,
        })
    }

    /// The whole file name.
    pub fn file_name(&self) -> &str {
        &self.name
    }

    /// `nb-1-big`, `da-3gy0_111j_2c5sg2b8sd18xb4q6n-bti`, `ks-table-jb-12`: the key of the manifest's `sstables` map
    /// and the stem of the sibling `-Digest.*` and `-Data.db` files.
    pub fn prefix(&self) -> &str {
        &self.name[..self.prefix_end]
    }

    /// `1` or `3gy0_111j_2c5sg2b8sd18xb4q6n`: the first half of the object-key directory.
    pub fn generation(&self) -> &str {
        &self.name[self.generation.0..self.generation.1]
    }

    /// Format version letters, e.g. `nb`, `oa`, `da`.
    pub fn version(&self) -> &str {
        &self.name[self.version.0..self.version.1]
    }

    /// `big` or `bti`; `None` for pre-2.1 names, which carry no format.
    pub fn format(&self) -> Option<&str> {
        self.format.map(|(start, end)| &self.name[start..end])
    }

    /// `Data.db`, `Digest.crc32`, `SAI+aa+t_v_idx+PostingLists.db`, ...
    pub fn component(&self) -> &str {
        &self.name[self.prefix_end + 1..]
    }
}

type Span = (usize, usize);

/// Matches `[a-z]{2}-([a-zA-Z0-9_]+)(?:-(big|bti))?-` at `start`; returns version, generation, format and the index of
/// the `-` that ends the prefix.
fn parse_core(bytes: &[u8], start: usize) -> Option<(Span, Span, Option<Span>, usize)> {
    let rest = bytes.get(start..)?;
    if rest.len() < 4
        || !rest[0].is_ascii_lowercase()
        || !rest[1].is_ascii_lowercase()
        || rest[2] != b'-'
    {
        return None;
    }
    let generation_start = start + 3;
    let generation_len = bytes[generation_start..]
        .iter()
        .take_while(|&&b| is_word(b))
        .count();
    if generation_len == 0 {
        return None;
    }
    let generation_end = generation_start + generation_len;
    if bytes.get(generation_end) != Some(&b'-') {
        return None;
    }
    let version = (start, start + 2);
    let generation = (generation_start, generation_end);
    let after = &bytes[generation_end..];
    // The format group is taken only if another `-` follows it, otherwise `big`/`bti` is part of the component.
    if after.len() > 4 && (after.starts_with(b"-big-") || after.starts_with(b"-bti-")) {
        let format = (generation_end + 1, generation_end + 4);
        return Some((version, generation, Some(format), generation_end + 4));
    }
    Some((version, generation, None, generation_end))
}

/// Positions right after a legacy `<ks>-<table>-` group candidate, i.e. after a `-` such that
/// `[a-zA-Z0-9][a-zA-Z0-9_-]+[a-zA-Z0-9][a-zA-Z0-9_-]+-` matches from the start, in ascending order.
fn legacy_prefix_ends(bytes: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    if !bytes.first().is_some_and(u8::is_ascii_alphanumeric) {
        return ends;
    }
    // Whether the group's inner `[a-zA-Z0-9]` fits: an alphanumeric byte at some index j with 2 <= j <= i - 2.
    let mut inner_alnum = false;
    for (i, &b) in bytes.iter().enumerate().skip(1) {
        if !(is_word(b) || b == b'-') {
            break;
        }
        if i >= 4 && bytes[i - 2].is_ascii_alphanumeric() {
            inner_alnum = true;
        }
        if b == b'-' && inner_alnum {
            ends.push(i + 1);
        }
    }
    ends
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Java's `.` does not match these, so Esop's pattern rejects names and digests containing them.
fn is_java_line_terminator(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// Digest files Esop looks for, in order.
const DIGEST_EXTENSIONS: [&str; 3] = ["crc32", "adler32", "sha1"];

/// Esop reads the last 10 MiB of `Data.db` when Cassandra wrote no digest (2.0).
const FALLBACK_CHECKSUM_WINDOW: u64 = 10 * 1024 * 1024;

/// The `<digest>` of the `<generation>-<digest>` object-key directory of the SSTable `prefix` in `dir`.
///
/// The leading alphanumeric token of `<prefix>-Digest.crc32`, `.adler32` or `.sha1` (first one that exists and has
/// such a token on a single line); otherwise the decimal Adler-32 of the last 10 MiB of `<prefix>-Data.db`. Blocking.
pub fn sstable_digest(dir: &Path, prefix: &str) -> io::Result<String> {
    sstable_digest_with(|name| File::open(dir.join(name)), prefix)
}

/// [`sstable_digest`], the SSTable's sibling files opened by `open` (a file name in the SSTable's directory), so a
/// restore reads them through its root.
pub fn sstable_digest_with(
    open: impl Fn(&str) -> io::Result<File>,
    prefix: &str,
) -> io::Result<String> {
    for extension in DIGEST_EXTENSIONS {
        let mut bytes = Vec::new();
        match open(&format!("{prefix}-Digest.{extension}")) {
            // A digest file holds one short line; more is not Cassandra's.
            Ok(file) => {
                file.take(4096).read_to_end(&mut bytes)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
        if let Some(token) = digest_token(&String::from_utf8_lossy(&bytes)) {
            return Ok(token.to_owned());
        }
    }
    data_tail_adler32(open(&format!("{prefix}-Data.db"))?).map(|sum| sum.to_string())
}

/// `<generation>-<digest>` for a component in `dir`.
pub fn generation_and_digest(dir: &Path, name: &SstableName) -> io::Result<String> {
    Ok(format!(
        "{}-{}",
        name.generation(),
        sstable_digest(dir, name.prefix())?
    ))
}

/// Esop's `^([a-zA-Z0-9]+).*` with Java `matches()` semantics: the token must be followed by a single line.
fn digest_token(text: &str) -> Option<&str> {
    let len = text.bytes().take_while(u8::is_ascii_alphanumeric).count();
    (len > 0 && !text.chars().any(is_java_line_terminator)).then(|| &text[..len])
}

fn data_tail_adler32(mut file: File) -> io::Result<u32> {
    let size = file.metadata()?.len();
    let start = size.saturating_sub(FALLBACK_CHECKSUM_WINDOW);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::with_capacity(usize::try_from(size - start).unwrap_or(0));
    file.take(size - start).read_to_end(&mut tail)?;
    let mut adler = adler2::Adler32::new();
    adler.write_slice(&tail);
    Ok(adler.checksum())
}

/// `data/<keyspace>/<table dir>/[<index dir>/]<generation-and-digest>/<file>`, relative to the node prefix.
///
/// `table_dir_name` is the data directory name `<table>-<32 hex id>`; `index_dir` a legacy secondary index
/// directory such as `.t_v_idx`.
pub fn object_key(
    keyspace: &str,
    table_dir_name: &str,
    index_dir: Option<&str>,
    generation_and_digest: &str,
    file_name: &str,
) -> String {
    match index_dir {
        Some(index) => {
            format!("data/{keyspace}/{table_dir_name}/{index}/{generation_and_digest}/{file_name}")
        }
        None => format!("data/{keyspace}/{table_dir_name}/{generation_and_digest}/{file_name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID_ID: &str = "3gy0_111j_2c5sg2b8sd18xb4q6n";

    fn parts(name: &str) -> (String, String, String) {
        let parsed = SstableName::parse(name).unwrap_or_else(|| panic!("{name} should parse"));
        (
            parsed.prefix().to_owned(),
            parsed.generation().to_owned(),
            parsed.component().to_owned(),
        )
    }

    fn assert_parts(name: &str, prefix: &str, generation: &str, component: &str) {
        assert_eq!(
            parts(name),
            (
                prefix.to_owned(),
                generation.to_owned(),
                component.to_owned()
            ),
            "{name}"
        );
    }

    #[test]
    fn cassandra_3_and_4_0_names() {
        assert_parts("nb-1-big-Data.db", "nb-1-big", "1", "Data.db");
        assert_parts(
            "md-12-big-CompressionInfo.db",
            "md-12-big",
            "12",
            "CompressionInfo.db",
        );
        assert_parts("mc-13-big-Digest.crc32", "mc-13-big", "13", "Digest.crc32");
        assert_parts("na-7-big-TOC.txt", "na-7-big", "7", "TOC.txt");
        assert_parts("nb-1-big-SI_t_v_idx.db", "nb-1-big", "1", "SI_t_v_idx.db");
        let name = SstableName::parse("nb-1-big-Data.db").expect("parses");
        assert_eq!((name.version(), name.format()), ("nb", Some("big")));
        assert_eq!(name.file_name(), "nb-1-big-Data.db");
    }

    #[test]
    fn legacy_2_0_names_keep_keyspace_and_table() {
        assert_parts("ks-table-jb-12-Data.db", "ks-table-jb-12", "12", "Data.db");
        assert_parts(
            "instaclustr-recovery_codes-jb-1-Data.db",
            "instaclustr-recovery_codes-jb-1",
            "1",
            "Data.db",
        );
        let name = SstableName::parse("ks-table-jb-12-Digest.sha1").expect("parses");
        assert_eq!((name.version(), name.format()), ("jb", None));
    }

    #[test]
    fn uuid_identifiers_of_4_1_and_later() {
        assert_parts(
            &format!("nb-{UUID_ID}-big-Data.db"),
            &format!("nb-{UUID_ID}-big"),
            UUID_ID,
            "Data.db",
        );
        assert_parts(
            &format!("da-{UUID_ID}-bti-Partitions.db"),
            &format!("da-{UUID_ID}-bti"),
            UUID_ID,
            "Partitions.db",
        );
        let name = SstableName::parse(&format!("da-{UUID_ID}-bti-Rows.db")).expect("parses");
        assert_eq!((name.version(), name.format()), ("da", Some("bti")));
    }

    /// Names as Cassandra 5.0.8 itself produces them: its `Descriptor` for the big and BTI formats with sequential and
    /// UUID identifiers, the SAI component names of its `IndexComponent`, and a 5.0 node in 4.x compatibility mode.
    #[test]
    fn real_cassandra_5_0_names() {
        let big = [
            "Data.db",
            "Index.db",
            "Statistics.db",
            "CompressionInfo.db",
            "Filter.db",
            "Summary.db",
            "Digest.crc32",
        ];
        let bti = [
            "Data.db",
            "Partitions.db",
            "Rows.db",
            "Statistics.db",
            "CompressionInfo.db",
            "Filter.db",
            "Digest.crc32",
        ];
        let common = ["CRC.db", "TOC.txt"];
        let sai = [
            "SAI+aa+GroupComplete.db",
            "SAI+aa+GroupMeta.db",
            "SAI+aa+RowToToken.db",
            "SAI+aa+RowToPartition.db",
            "SAI+aa+PartitionToSize.db",
            "SAI+aa+PartitionKeyBlocks.db",
            "SAI+aa+PartitionKeyBlockOffsets.db",
            "SAI+aa+ClusteringKeyBlocks.db",
            "SAI+aa+ClusteringKeyBlockOffsets.db",
            "SAI+aa+t_v_idx+ColumnComplete.db",
            "SAI+aa+t_v_idx+Meta.db",
            "SAI+aa+t_v_idx+TermsData.db",
            "SAI+aa+t_v_idx+PostingLists.db",
            "SAI+aa+t_v_idx+BalancedTree.db",
            "SAI+aa+t_v_idx+CompressedVectors.db",
        ];
        let cases = [
            ("oa-1-big", "1", &big[..]),
            (
                "oa-3h5q_1qn7_14xrk2osgtyy6n3jdc-big",
                "3h5q_1qn7_14xrk2osgtyy6n3jdc",
                &big[..],
            ),
            ("da-1-bti", "1", &bti[..]),
            (
                "da-3h5q_1qn7_1rvds2osgtyy6n3jdc-bti",
                "3h5q_1qn7_1rvds2osgtyy6n3jdc",
                &bti[..],
            ),
            ("nb-17-big", "17", &big[..]),
        ];
        for (prefix, generation, components) in cases {
            for component in components.iter().chain(&common).chain(&sai) {
                assert_parts(
                    &format!("{prefix}-{component}"),
                    prefix,
                    generation,
                    component,
                );
            }
        }
        // Cassandra's own parser splits the brief's example the same way (`Descriptor.fromFile(...).id`).
        assert_parts(
            &format!("da-{UUID_ID}-bti-Data.db"),
            &format!("da-{UUID_ID}-bti"),
            UUID_ID,
            "Data.db",
        );
    }

    #[test]
    fn format_word_without_following_dash_belongs_to_component() {
        assert_parts("nb-1-bigfoo-Data.db", "nb-1", "1", "bigfoo-Data.db");
        assert_parts("nb-1-big", "nb-1", "1", "big");
    }

    #[test]
    fn non_sstable_files() {
        for name in [
            "schema.cql",
            "manifest.json",
            "nb_txn_flush_0f8b2e70-1a2b-11ee-9c3c-5d4d5e2b7c1f.log",
            "nb-1-big-Data.db.tmp",
            "nb-1-big-",
            "Data.db",
            "backups",
            ".t_v_idx",
            "",
            "nb-1-big-Data.db\n",
        ] {
            assert_eq!(SstableName::parse(name), None, "{name:?}");
        }
    }

    #[test]
    fn object_keys() {
        assert_eq!(
            object_key(
                "ks",
                "t-0123456789abcdef0123456789abcdef",
                None,
                "1-2620247400",
                "nb-1-big-Data.db"
            ),
            "data/ks/t-0123456789abcdef0123456789abcdef/1-2620247400/nb-1-big-Data.db"
        );
        assert_eq!(
            object_key(
                "ks",
                "t-0123456789abcdef0123456789abcdef",
                Some(".t_v_idx"),
                "1-99",
                "nb-1-big-Data.db"
            ),
            "data/ks/t-0123456789abcdef0123456789abcdef/.t_v_idx/1-99/nb-1-big-Data.db"
        );
    }

    fn scratch_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "daedalus-esop-sstable-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    }

    #[test]
    fn digest_from_digest_files_in_esop_order() {
        let dir = scratch_dir("digest");
        std::fs::write(dir.join("nb-1-big-Digest.adler32"), "777").expect("write");
        assert_eq!(sstable_digest(&dir, "nb-1-big").expect("digest"), "777");
        std::fs::write(dir.join("nb-1-big-Digest.crc32"), "2620247400").expect("write");
        assert_eq!(
            sstable_digest(&dir, "nb-1-big").expect("digest"),
            "2620247400"
        );
        // 2.0 wrote `<sha1>  <file name>`: only the token counts.
        std::fs::write(
            dir.join("ks-t-jb-2-Digest.sha1"),
            "ab12cd  ks-t-jb-2-Data.db",
        )
        .expect("write");
        assert_eq!(sstable_digest(&dir, "ks-t-jb-2").expect("digest"), "ab12cd");
        let name = SstableName::parse("nb-1-big-Index.db").expect("parses");
        assert_eq!(
            generation_and_digest(&dir, &name).expect("digest"),
            "1-2620247400"
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn digest_falls_back_to_adler32_of_data_tail() {
        let dir = scratch_dir("adler");
        // A digest that does not match Esop's pattern (multi-line) is skipped like a missing one.
        std::fs::write(dir.join("nb-2-big-Digest.crc32"), "123\n").expect("write");
        std::fs::write(dir.join("nb-2-big-Data.db"), b"Wikipedia").expect("write");
        assert_eq!(
            sstable_digest(&dir, "nb-2-big").expect("digest"),
            "300286872"
        ); // 0x11E60398
        let big: Vec<u8> = (0..(FALLBACK_CHECKSUM_WINDOW as usize + 5))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(dir.join("nb-3-big-Data.db"), &big).expect("write");
        let expected = adler2::adler32_slice(&big[5..]).to_string();
        assert_eq!(sstable_digest(&dir, "nb-3-big").expect("digest"), expected);
        assert_eq!(
            sstable_digest(&dir, "nb-4-big")
                .expect_err("no data file")
                .kind(),
            io::ErrorKind::NotFound
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
