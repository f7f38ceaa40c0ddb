//! JSON text as Jackson's `DefaultPrettyPrinter` writes it.
//!
//! Esop writes manifests with an `ObjectMapper` that has `INDENT_OUTPUT` enabled (and prints `list` reports with
//! `writerWithDefaultPrettyPrinter()`); both use Jackson's `DefaultPrettyPrinter`. Matching it byte for byte keeps the
//! manifests Daedalus uploads indistinguishable from Esop's, so tools that diff or checksum them keep working.
//!
//! Jackson's rules, as implemented here:
//! * objects: `{`, then every entry on its own line indented by two spaces per object nesting level, `"key" : value`,
//!   entries separated by `,`; the closing `}` on its own line at the parent's indentation; an empty object is `{ }`;
//! * arrays stay on one line whatever they contain: `[ a, b ]`, empty `[ ]`; an array does not add an indentation level,
//!   so an object inside an array is indented relative to the enclosing object (`[ {` … `}, {` … `} ]`);
//! * line feed is `\n` (Jackson uses the platform separator; Esop runs on Linux); no trailing newline at the end;
//! * strings: `"` and `\` escaped, control characters as `\b \t \n \f \r` or `\u00XX` with upper-case hex digits;
//!   `/` and non-ASCII characters are written as they are.
//!
//! Floating-point numbers are written in serde_json's notation, which differs from Java's; Esop's manifests and reports
//! contain none.

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter, Serializer};
use std::io::{self, Write};

/// Serializes `value` as Jackson's `DefaultPrettyPrinter` would.
///
/// Fails only if `value`'s `Serialize` implementation fails or produces a map with non-string keys.
pub fn to_jackson_pretty<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(4096);
    let mut serializer = Serializer::with_formatter(&mut out, JacksonPrettyFormatter::default());
    value.serialize(&mut serializer)?;
    Ok(out)
}

/// A [`Formatter`] reproducing Jackson's `DefaultPrettyPrinter` (two-space object indentation, inline arrays).
#[derive(Debug, Default, Clone)]
pub struct JacksonPrettyFormatter {
    /// Object nesting level; arrays do not count, as in Jackson.
    depth: usize,
    /// Whether the innermost open object has written an entry (decides between `{ }` and a closing line).
    has_entries: bool,
}

impl JacksonPrettyFormatter {
    fn new_line<W: ?Sized + Write>(&self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b"\n")?;
        for _ in 0..self.depth {
            writer.write_all(b"  ")?;
        }
        Ok(())
    }
}

impl Formatter for JacksonPrettyFormatter {
    fn begin_array<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b"[")
    }

    fn end_array<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b" ]")
    }

    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        writer.write_all(if first { b" " } else { b", " })
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, _writer: &mut W) -> io::Result<()> {
        Ok(())
    }

    fn begin_object<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.depth += 1;
        self.has_entries = false;
        writer.write_all(b"{")
    }

    fn end_object<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.depth = self.depth.saturating_sub(1);
        if self.has_entries {
            self.new_line(writer)?;
            writer.write_all(b"}")
        } else {
            writer.write_all(b" }")
        }
    }

    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if !first {
            writer.write_all(b",")?;
        }
        self.new_line(writer)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b" : ")
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, _writer: &mut W) -> io::Result<()> {
        self.has_entries = true;
        Ok(())
    }

    fn write_char_escape<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        char_escape: CharEscape,
    ) -> io::Result<()> {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let short = |c: u8| [b'\\', c];
        match char_escape {
            CharEscape::Quote => writer.write_all(&short(b'"')),
            CharEscape::ReverseSolidus => writer.write_all(&short(b'\\')),
            CharEscape::Solidus => writer.write_all(&short(b'/')),
            CharEscape::Backspace => writer.write_all(&short(b'b')),
            CharEscape::FormFeed => writer.write_all(&short(b'f')),
            CharEscape::LineFeed => writer.write_all(&short(b'n')),
            CharEscape::CarriageReturn => writer.write_all(&short(b'r')),
            CharEscape::Tab => writer.write_all(&short(b't')),
            CharEscape::AsciiControl(byte) => writer.write_all(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xF)],
            ]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn pretty(value: &Value) -> String {
        String::from_utf8(to_jackson_pretty(value).expect("serializable")).expect("utf-8")
    }

    #[test]
    fn scalars_have_no_trailing_newline() {
        assert_eq!(pretty(&json!(1)), "1");
        assert_eq!(pretty(&json!("a")), "\"a\"");
        assert_eq!(pretty(&json!(null)), "null");
    }

    #[test]
    fn empty_containers() {
        assert_eq!(pretty(&json!({})), "{ }");
        assert_eq!(pretty(&json!([])), "[ ]");
        assert_eq!(
            pretty(&json!({"a": {}, "b": []})),
            "{\n  \"a\" : { },\n  \"b\" : [ ]\n}"
        );
        assert_eq!(pretty(&json!([{}, []])), "[ { }, [ ] ]");
    }

    #[test]
    fn arrays_stay_inline_and_do_not_indent() {
        assert_eq!(
            pretty(&json!([1, "x", null, true])),
            "[ 1, \"x\", null, true ]"
        );
        assert_eq!(
            pretty(&json!({"t": ["-1", "2"]})),
            "{\n  \"t\" : [ \"-1\", \"2\" ]\n}"
        );
        assert_eq!(pretty(&json!([[1, 2], [3]])), "[ [ 1, 2 ], [ 3 ] ]");
        assert_eq!(
            pretty(&json!({"e": [{"a": 1}, {"b": {"c": 2}}]})),
            "{\n  \"e\" : [ {\n    \"a\" : 1\n  }, {\n    \"b\" : {\n      \"c\" : 2\n    }\n  } ]\n}"
        );
    }

    #[test]
    fn string_escapes_follow_jackson() {
        assert_eq!(pretty(&json!("q\"b\\s/")), r#""q\"b\\s/""#);
        assert_eq!(pretty(&json!("\u{8}\t\n\u{c}\r")), r#""\b\t\n\f\r""#);
        assert_eq!(
            pretty(&json!("\u{1}\u{1f}\u{7f}")),
            "\"\\u0001\\u001F\u{7f}\""
        );
        assert_eq!(pretty(&json!("é – ✓")), "\"é – ✓\"");
    }

    /// Expected text of Esop's own `AllManifestsReportTest` (Jackson output, `println` newline removed).
    #[test]
    fn matches_esop_list_report_test() {
        let report = json!({
            "totalSize": 500, "totalFiles": 10, "totalManifests": 10,
            "reports": [{
                "files": 3, "size": 10, "name": "123", "reclaimableSpace": 100,
                "removableEntries": ["123"], "timestamp": null,
                "manifest": {"objectKey": "somekey", "type": "MANIFEST_FILE", "size": 100, "hash": "123"},
                "unixtimestamp": 124
            }]
        });
        let expected = "{\n  \"totalSize\" : 500,\n  \"totalFiles\" : 10,\n  \"totalManifests\" : 10,\n  \"reports\" : [ {\n    \
                        \"files\" : 3,\n    \"size\" : 10,\n    \"name\" : \"123\",\n    \"reclaimableSpace\" : 100,\n    \
                        \"removableEntries\" : [ \"123\" ],\n    \"timestamp\" : null,\n    \"manifest\" : {\n      \
                        \"objectKey\" : \"somekey\",\n      \"type\" : \"MANIFEST_FILE\",\n      \"size\" : 100,\n      \
                        \"hash\" : \"123\"\n    },\n    \"unixtimestamp\" : 124\n  } ]\n}";
        assert_eq!(pretty(&report), expected);
    }
}
