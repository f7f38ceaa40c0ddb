//! Java's "modified UTF-8" (`DataOutput.writeUTF`): NUL as `C0 80`, characters outside the BMP as two
//! three-byte surrogates. Plain UTF-8 decoding gets both wrong.

/// Decodes modified UTF-8. Unpaired surrogates and malformed sequences become U+FFFD rather than an error:
/// a name with a bad character is still more useful to show than a failed call.
pub fn decode(bytes: &[u8]) -> String {
    let mut units: Vec<u16> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b0 = bytes[i];
        let (unit, width) = if b0 & 0x80 == 0 {
            (u16::from(b0), 1)
        } else if b0 & 0xE0 == 0xC0 && i + 1 < bytes.len() && bytes[i + 1] & 0xC0 == 0x80 {
            (
                (u16::from(b0 & 0x1F) << 6) | u16::from(bytes[i + 1] & 0x3F),
                2,
            )
        } else if b0 & 0xF0 == 0xE0
            && i + 2 < bytes.len()
            && bytes[i + 1] & 0xC0 == 0x80
            && bytes[i + 2] & 0xC0 == 0x80
        {
            (
                (u16::from(b0 & 0x0F) << 12)
                    | (u16::from(bytes[i + 1] & 0x3F) << 6)
                    | u16::from(bytes[i + 2] & 0x3F),
                3,
            )
        } else {
            (0xFFFD, 1)
        };
        units.push(unit);
        i += width;
    }
    String::from_utf16_lossy(&units)
}

/// Encodes a string as modified UTF-8 (without the length prefix).
pub fn encode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for unit in text.encode_utf16() {
        match unit {
            0x0001..=0x007F => out.push(unit as u8),
            0x0000 | 0x0080..=0x07FF => {
                out.push(0xC0 | ((unit >> 6) & 0x1F) as u8);
                out.push(0x80 | (unit & 0x3F) as u8);
            }
            _ => {
                out.push(0xE0 | ((unit >> 12) & 0x0F) as u8);
                out.push(0x80 | ((unit >> 6) & 0x3F) as u8);
                out.push(0x80 | (unit & 0x3F) as u8);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_nul_bmp_and_supplementary_characters() {
        for text in [
            "",
            "plain ascii",
            "nul\0inside",
            "caf\u{e9}",
            "\u{20ac}",
            "\u{1F600} emoji",
        ] {
            assert_eq!(decode(&encode(text)), text);
        }
    }

    #[test]
    fn uses_the_java_forms() {
        assert_eq!(encode("\0"), [0xC0, 0x80]);
        // U+1F600 is the surrogate pair D83D DE00, each written in three bytes.
        assert_eq!(encode("\u{1F600}"), [0xED, 0xA0, 0xBD, 0xED, 0xB8, 0x80]);
    }

    #[test]
    fn malformed_input_is_replaced_not_fatal() {
        assert_eq!(decode(&[b'a', 0xFF, b'b']), "a\u{FFFD}b");
        assert_eq!(decode(&[0xE2, 0x82]), "\u{FFFD}\u{FFFD}");
    }
}
