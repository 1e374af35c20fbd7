//! Turning raw field bytes into text: HL7 escape sequences and the message character set.
//!
//! This module owns the [`Codec`] (delimiters + text encoding) that every accessor carries,
//! and the decoding of one leaf value. It allocates only when it has to: a value without
//! escape sequences whose bytes are already UTF-8 is borrowed from the message.
//!
//! Escape sequences (HL7 v2 chapter 2.7), with `\` standing for the declared escape character:
//!
//! | sequence | result |
//! | --- | --- |
//! | `\F\` `\S\` `\T\` `\R\` `\E\` | the message's field, component, subcomponent, repetition, escape character |
//! | `\P\` | the truncation character (v2.7+); kept literally when MSH-2 declares none |
//! | `\Xhh…\` | the bytes `hh…`, read in the message character set; kept literally if not valid |
//! | `\.br\` | a line break (`"\n"`) |
//! | `\H\` `\N\` | highlighting on / off: dropped |
//! | `\Cxxyy\` `\Mxxyyzz\` `\Zxx\`, anything else | kept literally, escape characters included |
//! | an escape character with no closing one | kept literally |
//!
//! Other formatted-text commands (`\.sp\`, `\.in\`, …) are not interpreted and are kept literally.

use std::borrow::Cow;

use super::msh::Delimiters;

/// How the bytes of a message become text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// UTF-8 (which includes ASCII). The parser has validated the whole message.
    Utf8,
    /// ISO 8859-1: each byte is the Unicode code point of the same value.
    Latin1,
    /// Another ASCII-compatible character set (see [`super::charset`]); the parser has
    /// checked that the message decodes in it, value by value.
    Other(&'static encoding_rs::Encoding),
}

/// Everything needed to decode a value of one message: its delimiters and text encoding.
///
/// Small and `Copy`, so each accessor carries its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Codec {
    pub(crate) delimiters: Delimiters,
    pub(crate) encoding: Encoding,
}

impl Default for Codec {
    fn default() -> Self {
        Codec { delimiters: Delimiters::default(), encoding: Encoding::Utf8 }
    }
}

impl Codec {
    /// Unescapes `raw` and decodes it to text. Borrows when there is nothing to change.
    pub(crate) fn decode<'a>(&self, raw: &'a [u8]) -> Cow<'a, str> {
        match memchr::memchr(self.delimiters.escape, raw) {
            None => self.text(raw),
            Some(first) => Cow::Owned(self.unescape_from(raw, first)),
        }
    }

    /// Decodes `raw` to text without interpreting escape sequences (for MSH-1 and MSH-2).
    pub(crate) fn text<'a>(&self, raw: &'a [u8]) -> Cow<'a, str> {
        match self.encoding {
            Encoding::Utf8 => String::from_utf8_lossy(raw),
            Encoding::Latin1 if raw.is_ascii() => Cow::Borrowed(ascii_str(raw)),
            Encoding::Latin1 => Cow::Owned(raw.iter().map(|&b| b as char).collect()),
            Encoding::Other(rs) => rs.decode_without_bom_handling(raw).0,
        }
    }

    fn push_text(&self, out: &mut String, raw: &[u8]) {
        out.push_str(&self.text(raw));
    }

    /// The slow path: `raw[first]` is an escape character.
    fn unescape_from(&self, raw: &[u8], first: usize) -> String {
        let esc = self.delimiters.escape;
        let mut out = String::with_capacity(raw.len());
        self.push_text(&mut out, &raw[..first]);
        let mut rest = &raw[first..];
        // Invariant: rest[0] is an escape character.
        while !rest.is_empty() {
            let Some(len) = memchr::memchr(esc, &rest[1..]) else {
                // Unterminated: the rest is literal text.
                self.push_text(&mut out, rest);
                break;
            };
            let sequence = &rest[1..1 + len];
            let whole = &rest[..len + 2];
            if !self.push_escape(&mut out, sequence) {
                self.push_text(&mut out, whole);
            }
            rest = &rest[whole.len()..];
            let next = memchr::memchr(esc, rest).unwrap_or(rest.len());
            self.push_text(&mut out, &rest[..next]);
            rest = &rest[next..];
        }
        out
    }

    /// Appends what `sequence` (between the escape characters) stands for; false when it
    /// is to be kept literally.
    fn push_escape(&self, out: &mut String, sequence: &[u8]) -> bool {
        let d = &self.delimiters;
        let delimiter = match sequence {
            b"F" => Some(d.field),
            b"S" => Some(d.component),
            b"T" => Some(d.subcomponent),
            b"R" => Some(d.repetition),
            b"E" => Some(d.escape),
            b"P" => d.truncation,
            _ => None,
        };
        match (sequence, delimiter) {
            // Delimiters are ASCII (checked when MSH-2 is read).
            (_, Some(c)) => out.push(c as char),
            (b"H" | b"N", None) => {}
            (b".br", None) => out.push('\n'),
            ([b'X', hex @ ..], None) => return self.push_hex(out, hex),
            _ => return false,
        }
        true
    }

    /// `\Xhh…\`: hex digits to bytes, read in the message encoding.
    fn push_hex(&self, out: &mut String, hex: &[u8]) -> bool {
        let Some(bytes) = hex_bytes(hex) else { return false };
        match self.encoding {
            Encoding::Utf8 => match std::str::from_utf8(&bytes) {
                Ok(s) => out.push_str(s),
                Err(_) => return false,
            },
            Encoding::Latin1 => out.extend(bytes.iter().map(|&b| b as char)),
            Encoding::Other(rs) => match rs.decode_without_bom_handling_and_without_replacement(&bytes) {
                Some(s) => out.push_str(&s),
                None => return false,
            },
        }
        true
    }
}

#[cfg(test)]
/// Unescapes and decodes one value with `codec` (see the module documentation).
pub fn unescape<'a>(raw: &'a [u8], codec: &Codec) -> Cow<'a, str> {
    codec.decode(raw)
}

fn ascii_str(raw: &[u8]) -> &str {
    // Only called on ASCII, which is always valid UTF-8.
    std::str::from_utf8(raw).unwrap_or_default()
}

fn hex_bytes(hex: &[u8]) -> Option<Vec<u8>> {
    if hex.is_empty() || !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.chunks_exact(2).map(|pair| Some(hex_digit(pair[0])? << 4 | hex_digit(pair[1])?)).collect()
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf8() -> Codec {
        Codec::default()
    }

    fn latin1() -> Codec {
        Codec { encoding: Encoding::Latin1, ..Codec::default() }
    }

    fn with_truncation() -> Codec {
        let delimiters = Delimiters { truncation: Some(b'#'), ..Delimiters::default() };
        Codec { delimiters, ..Codec::default() }
    }

    fn dec(c: &Codec, raw: &[u8]) -> String {
        c.decode(raw).into_owned()
    }

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(utf8().decode(b"plain text"), Cow::Borrowed("plain text")));
        assert!(matches!(utf8().decode("Zoë".as_bytes()), Cow::Borrowed("Zoë")));
        assert!(matches!(latin1().decode(b"ascii"), Cow::Borrowed("ascii")));
        assert!(matches!(utf8().decode(b""), Cow::Borrowed("")));
    }

    #[test]
    fn delimiter_escapes() {
        assert_eq!(dec(&utf8(), br"a\F\b\S\c\T\d\R\e\E\f"), r"a|b^c&d~e\f");
        let custom = Delimiters {
            field: b'#',
            component: b'*',
            repetition: b'@',
            escape: b'!',
            subcomponent: b'%',
            truncation: None,
        };
        let c = Codec { delimiters: custom, ..Codec::default() };
        assert_eq!(dec(&c, b"!F!!S!!T!!R!!E!"), "#*%@!");
        // The default escape character is an ordinary one under custom delimiters.
        assert_eq!(dec(&c, br"\F\"), r"\F\");
    }

    #[test]
    fn truncation_escape() {
        assert_eq!(dec(&with_truncation(), br"50\P\"), "50#");
        assert_eq!(dec(&utf8(), br"50\P\"), r"50\P\");
    }

    #[test]
    fn formatting_escapes() {
        assert_eq!(dec(&utf8(), br"line 1\.br\line 2"), "line 1\nline 2");
        assert_eq!(dec(&utf8(), br"\H\bold\N\ text"), "bold text");
        assert_eq!(dec(&utf8(), br"a\.sp2\b"), r"a\.sp2\b");
    }

    #[test]
    fn hex_escapes() {
        assert_eq!(dec(&utf8(), br"caf\XC3A9\"), "café");
        assert_eq!(dec(&utf8(), br"\X41\\x42\"), r"A\x42\");
        assert_eq!(dec(&latin1(), br"caf\XE9\"), "café");
        let latin9 = Codec { encoding: Encoding::Other(encoding_rs::ISO_8859_15), ..Codec::default() };
        assert_eq!(dec(&latin9, br"\XA4\ 5"), "€ 5");
        assert_eq!(dec(&latin9, b"\xa4 5"), "€ 5");
        // Invalid hex, odd length, empty, or not UTF-8: kept literally.
        assert_eq!(dec(&utf8(), br"\XZZ\"), r"\XZZ\");
        assert_eq!(dec(&utf8(), br"\XABC\"), r"\XABC\");
        assert_eq!(dec(&utf8(), br"\X\"), r"\X\");
        assert_eq!(dec(&utf8(), br"\XE9\"), r"\XE9\");
    }

    #[test]
    fn charset_and_unknown_escapes_are_literal() {
        for s in [br"\C2842\".as_slice(), br"\M2442\", br"\Z99\", br"\Q\", br"\\"] {
            assert_eq!(dec(&utf8(), s).as_bytes(), s);
        }
    }

    #[test]
    fn unterminated_escape_is_literal() {
        assert_eq!(dec(&utf8(), br"a\F"), r"a\F");
        assert_eq!(dec(&utf8(), br"\F\ then \"), r"| then \");
        assert_eq!(dec(&utf8(), br"\"), r"\");
    }

    #[test]
    fn latin1_text_is_decoded() {
        assert_eq!(dec(&latin1(), b"M\xfcller"), "Müller");
        assert_eq!(dec(&latin1(), b"M\xfcller\\F\\"), "Müller|");
    }

    #[test]
    fn module_function_matches_method() {
        assert_eq!(unescape(br"x\S\y", &utf8()), "x^y");
    }
}
