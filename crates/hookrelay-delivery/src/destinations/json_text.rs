//! JSON written straight into a request body. An SQS batch carries each event as a JSON string,
//! so every byte of every payload is escaped once per delivery; serde_json does that a byte at
//! a time, which made it one of the largest items in the max-sqs profile. Here a run of bytes
//! that need no escape is found eight at a time and copied whole.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// Appends `s` as a JSON string literal, quotes included, escaped exactly as serde_json escapes
/// it: `"` and `\`, the short forms `\b \f \n \r \t`, and `\u00XX` for other control characters.
pub fn push_string(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(word) = bytes.get(i..i + 8) {
            let word = u64::from_le_bytes(word.try_into().expect("a slice of 8 bytes"));
            match first_to_escape(word) {
                None => {
                    i += 8;
                    continue;
                }
                Some(at) => i += at,
            }
        } else if !needs_escape(bytes[i]) {
            i += 1;
            continue;
        }
        out.extend_from_slice(&bytes[copied..i]);
        push_escape(out, bytes[i]);
        i += 1;
        copied = i;
    }
    out.extend_from_slice(&bytes[copied..]);
    out.push(b'"');
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// The index of the first byte of `word` (little-endian) that needs an escape, if any. The
/// zero-byte test can flag a byte above a real match as well, never one below it, so the
/// lowest flag is exact.
fn first_to_escape(word: u64) -> Option<usize> {
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH_BITS;
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH_BITS;
    let quote = zero_byte(word ^ (ONES * u64::from(b'"')));
    let backslash = zero_byte(word ^ (ONES * u64::from(b'\\')));
    let found = control | quote | backslash;
    (found != 0).then(|| found.trailing_zeros() as usize / 8)
}

fn push_escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let short = match b {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        0x0c => b'f',
        b'\n' => b'n',
        b'\r' => b'r',
        b'\t' => b't',
        _ => {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
            return;
        }
    };
    out.extend_from_slice(&[b'\\', short]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(s: &str) -> String {
        let mut out = Vec::new();
        push_string(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_every_character_as_serde_json_does() {
        for c in (0..=0x2ffu32).filter_map(char::from_u32) {
            // Each character alone, and at every position of a word read eight bytes at once.
            for pad in 0..9 {
                let s = format!("{}{c}{}", "a".repeat(pad), "é".repeat(pad));
                assert_eq!(escaped(&s), serde_json::to_string(&s).unwrap(), "{s:?}");
            }
        }
    }

    #[test]
    fn escapes_mixed_text_as_serde_json_does() {
        for s in [
            "",
            r#"{"type":"message.new","text":"a \"quote\" and a \\ backslash"}"#,
            "line\nbreak\ttab\r\u{1}\u{1f}\u{7f} emoji 🎉 and 中文",
            "\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"",
            "\\\\\\\\\\\\\\\\\\x",
            "no escapes at all, just a longer run of plain ascii text",
        ] {
            assert_eq!(escaped(s), serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }
}
