//! MSH-18: the character set a message declares (HL7 table 0211 and the spellings real senders
//! use for it), and whether the message's bytes can be read in it.
//!
//! The parser stays zero-copy: it splits on delimiter bytes and decodes each value on its own.
//! That is exact for every ASCII-compatible encoding in which a delimiter byte can only stand
//! for itself. In Shift_JIS, Big5, GB 18030 and ISO-2022-JP a delimiter byte can also be the
//! second byte of a character (or a byte of a two-byte run), so for those the whole message is
//! decoded once and compared with the value-by-value reading; a message where they differ is
//! refused rather than read wrong.

use encoding_rs::Encoding as Rs;

use super::error::{ErrorCode, Hl7Error, Location};
use super::escape::Encoding;
use super::msh::Delimiters;

/// The character set a message declares in MSH-18.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// `ASCII`, `ISO IR6`, or MSH-18 empty: read as UTF-8 when the bytes are valid UTF-8,
    /// otherwise as ISO 8859-1 (senders routinely leave MSH-18 empty).
    Ascii,
    /// `8859/1`, `ISO IR100`, `ISO-8859-1`: true ISO 8859-1 (not windows-1252).
    Latin1,
    /// `UNICODE UTF-8`, `UTF-8`, `UNICODE`, `ISO IR192`.
    Utf8,
    /// Any other ASCII-compatible character set `encoding_rs` decodes.
    Other(&'static Rs),
}

/// Table 0211 values that cannot be read: why, for the NAK.
const NOT_ASCII_COMPATIBLE: &str = "Character set is not ASCII-compatible (MLLP needs one)";
const UNSUPPORTED: &str = "Unsupported character set";

impl Charset {
    /// Reads MSH-18 (the whole field). The first repetition is the message's default set; a
    /// later `ISO IR87` or `ISO IR14` repetition (code extension by ISO 2022 escape sequences,
    /// as Japanese senders declare `~ISO IR87`) makes it ISO-2022-JP.
    pub fn from_msh18(field: &[u8], repetition: u8) -> Result<Charset, Hl7Error> {
        let mut reps = field.split(|&b| b == repetition);
        let first = lookup(reps.next().unwrap_or_default())?;
        let extended = reps.any(|r| matches!(upper(r).as_str(), "ISO IR87" | "ISO IR14"));
        if extended && matches!(first, Charset::Ascii) {
            return Ok(Charset::Other(encoding_rs::ISO_2022_JP));
        }
        Ok(first)
    }

    /// The text encoding of `raw` (a whole message) in this character set, after checking
    /// that every byte reads and every delimiter byte stands for itself.
    pub(crate) fn encoding(self, raw: &[u8], delimiters: &Delimiters) -> Result<Encoding, Hl7Error> {
        let utf8 = || std::str::from_utf8(raw).is_ok();
        match self {
            Charset::Latin1 => Ok(Encoding::Latin1),
            Charset::Ascii if raw.is_ascii() || utf8() => Ok(Encoding::Utf8),
            Charset::Ascii => Ok(Encoding::Latin1),
            Charset::Utf8 if utf8() => Ok(Encoding::Utf8),
            Charset::Utf8 => Err(Hl7Error::new(ErrorCode::DataTypeError, Location::NONE, "Message is not valid UTF-8")),
            Charset::Other(rs) => {
                let Some(whole) = rs.decode_without_bom_handling_and_without_replacement(raw) else {
                    return Err(Hl7Error::new(
                        ErrorCode::DataTypeError,
                        Location::field("MSH", 18),
                        "Message is not valid in its declared character set",
                    ));
                };
                if shares_delimiter_bytes(rs) && whole != piecewise(rs, raw, delimiters).as_deref().unwrap_or_default()
                {
                    return Err(Hl7Error::new(
                        ErrorCode::DataTypeError,
                        Location::field("MSH", 18),
                        "A delimiter byte is part of a multi-byte character",
                    ));
                }
                Ok(Encoding::Other(rs))
            }
        }
    }
}

fn upper(value: &[u8]) -> String {
    String::from_utf8_lossy(value.trim_ascii()).to_ascii_uppercase()
}

/// One repetition of MSH-18: table 0211 codes, then common aliases, then WHATWG labels.
fn lookup(value: &[u8]) -> Result<Charset, Hl7Error> {
    let name = upper(value);
    let other = |rs| Ok(Charset::Other(rs));
    let refuse = |text| Err(Hl7Error::new(ErrorCode::DataTypeError, Location::field("MSH", 18), text));
    match name.as_str() {
        "" | "ASCII" | "US-ASCII" | "ISO IR6" | "ISO-IR-6" | "ISO646" => Ok(Charset::Ascii),
        "8859/1" | "ISO IR100" | "ISO-8859-1" | "ISO8859-1" | "ISO_8859-1" | "ISO 8859-1" | "8859-1" | "LATIN1"
        | "LATIN-1" => Ok(Charset::Latin1),
        "UNICODE UTF-8" | "UNICODE UTF8" | "UNICODE" | "UTF-8" | "UTF8" | "ISO IR192" => Ok(Charset::Utf8),
        "8859/2" | "ISO IR101" => other(encoding_rs::ISO_8859_2),
        "8859/3" | "ISO IR109" => other(encoding_rs::ISO_8859_3),
        "8859/4" | "ISO IR110" => other(encoding_rs::ISO_8859_4),
        "8859/5" | "ISO IR144" => other(encoding_rs::ISO_8859_5),
        "8859/6" | "ISO IR127" => other(encoding_rs::ISO_8859_6),
        "8859/7" | "ISO IR126" => other(encoding_rs::ISO_8859_7),
        "8859/8" | "ISO IR138" => other(encoding_rs::ISO_8859_8),
        // encoding_rs has no ISO 8859-9; windows-1254 is the same from 0xA0 up (it only
        // gives printable characters to the C1 controls 0x80–0x9F).
        "8859/9" | "ISO IR148" => other(encoding_rs::WINDOWS_1254),
        "8859/15" | "8859-15" | "ISO IR203" | "LATIN9" | "LATIN-9" => other(encoding_rs::ISO_8859_15),
        "ISO IR14" | "ISO IR87" => other(encoding_rs::ISO_2022_JP),
        "GB 18030-2000" | "GB 18030" | "GB18030" => other(encoding_rs::GB18030),
        "KS X 1001" | "KS C 5601" => other(encoding_rs::EUC_KR),
        "BIG-5" | "BIG5" => other(encoding_rs::BIG5),
        "UNICODE UTF-16" | "UNICODE UTF-32" | "UTF-16" | "UTF-32" => refuse(NOT_ASCII_COMPATIBLE),
        // JIS X 0212 and CNS 11643 have no decoder in encoding_rs.
        "ISO IR159" | "CNS 11643-1992" => refuse(UNSUPPORTED),
        _ => match Rs::for_label_no_replacement(name.as_bytes()) {
            Some(rs) if rs == encoding_rs::UTF_8 => Ok(Charset::Utf8),
            Some(rs) if rs.is_ascii_compatible() || rs == encoding_rs::ISO_2022_JP => other(rs),
            Some(_) => refuse(NOT_ASCII_COMPATIBLE),
            None => refuse(UNSUPPORTED),
        },
    }
}

/// Encodings in which a delimiter byte can be part of a character.
fn shares_delimiter_bytes(rs: &'static Rs) -> bool {
    [encoding_rs::SHIFT_JIS, encoding_rs::BIG5, encoding_rs::GB18030, encoding_rs::GBK, encoding_rs::ISO_2022_JP]
        .contains(&rs)
}

/// The message as the parser reads it: split at every delimiter byte, each piece decoded on
/// its own. `None` when a piece does not decode by itself.
fn piecewise(rs: &'static Rs, raw: &[u8], d: &Delimiters) -> Option<String> {
    let delimiter = |b: u8| {
        [d.field, d.component, d.repetition, d.escape, d.subcomponent, b'\r', b'\n'].contains(&b)
            || d.truncation == Some(b)
    };
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    loop {
        let end = rest.iter().position(|&b| delimiter(b)).unwrap_or(rest.len());
        out.push_str(&rs.decode_without_bom_handling_and_without_replacement(&rest[..end])?);
        let Some(&sep) = rest.get(end) else { return Some(out) };
        out.push(char::from(sep));
        rest = &rest[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cs(v: &str) -> Result<Charset, ErrorCode> {
        Charset::from_msh18(v.as_bytes(), b'~').map_err(|e| e.code)
    }

    fn text(v: &str, raw: &[u8]) -> String {
        let enc = cs(v).unwrap().encoding(raw, &Delimiters::default()).unwrap();
        crate::hl7::escape::Codec { encoding: enc, ..Default::default() }.decode(raw).into_owned()
    }

    #[test]
    fn table_0211_codes_and_aliases() {
        for v in ["", "ASCII", "ISO IR6", " ascii "] {
            assert_eq!(cs(v), Ok(Charset::Ascii), "{v}");
        }
        for v in ["8859/1", "ISO IR100", "ISO-8859-1", "iso-8859-1", "8859/1 "] {
            assert_eq!(cs(v), Ok(Charset::Latin1), "{v}");
        }
        for v in ["UNICODE UTF-8", "UTF-8", "UNICODE", "utf-8", "ISO IR192", "UNICODE UTF-8 "] {
            assert_eq!(cs(v), Ok(Charset::Utf8), "{v}");
        }
        assert_eq!(cs("8859/15"), Ok(Charset::Other(encoding_rs::ISO_8859_15)));
        assert_eq!(cs("8859/2"), Ok(Charset::Other(encoding_rs::ISO_8859_2)));
        assert_eq!(cs("ISO IR87"), Ok(Charset::Other(encoding_rs::ISO_2022_JP)));
        assert_eq!(cs("~ISO IR87"), Ok(Charset::Other(encoding_rs::ISO_2022_JP)));
        assert_eq!(cs("KS X 1001"), Ok(Charset::Other(encoding_rs::EUC_KR)));
        assert_eq!(cs("BIG-5"), Ok(Charset::Other(encoding_rs::BIG5)));
        assert_eq!(cs("GB 18030-2000"), Ok(Charset::Other(encoding_rs::GB18030)));
        assert_eq!(cs("windows-1252"), Ok(Charset::Other(encoding_rs::WINDOWS_1252)));
        for v in ["UNICODE UTF-16", "UNICODE UTF-32", "ISO IR159", "CNS 11643-1992", "EBCDIC", "utf-16le"] {
            assert_eq!(cs(v), Err(ErrorCode::DataTypeError), "{v}");
        }
    }

    #[test]
    fn single_byte_sets_decode_their_own_letters() {
        // 0xA4 is the euro sign in 8859-15 and the currency sign in 8859-1.
        assert_eq!(text("8859/15", b"PID|1||\xa4 5|\xbd"), "PID|1||€ 5|œ");
        assert_eq!(text("8859/1", b"PID|1||\xa4 5|\xbd"), "PID|1||¤ 5|½");
        assert_eq!(text("8859/2", b"PID|\xa3\xf3d\xbc"), "PID|Łódź");
        assert_eq!(text("8859/9", b"PID|\xdeener \xddnce"), "PID|Şener İnce");
        assert_eq!(text("UNICODE UTF-8", "PID|Zoë".as_bytes()), "PID|Zoë");
    }

    #[test]
    fn bytes_invalid_in_the_declared_set_are_refused() {
        let e = cs("8859/7").unwrap().encoding(b"PID|\xff", &Delimiters::default()).unwrap_err();
        assert_eq!(e.code, ErrorCode::DataTypeError);
        let e = cs("UTF-8").unwrap().encoding(b"PID|M\xfcller", &Delimiters::default()).unwrap_err();
        assert_eq!(e.code, ErrorCode::DataTypeError);
    }

    #[test]
    fn multi_byte_sets_read_value_by_value_or_refuse() {
        // Shift_JIS: 0x95 0x5C is one character whose second byte is the escape character.
        let sjis = Charset::Other(encoding_rs::SHIFT_JIS);
        assert!(sjis.encoding(b"PID|\x93\xfa\x96\x7b", &Delimiters::default()).is_ok());
        let e = sjis.encoding(b"PID|\x95\x5c", &Delimiters::default()).unwrap_err();
        assert_eq!(e.text, "A delimiter byte is part of a multi-byte character");
        // ISO-2022-JP: a kanji whose second byte is `|` (0x46 0x7C) is refused; kanji that
        // return to ASCII before the delimiter read right.
        let jis = Charset::Other(encoding_rs::ISO_2022_JP);
        assert!(jis.encoding(b"PID|\x1b$B\x46\x7c\x1b(B", &Delimiters::default()).is_err());
        let good = b"PID|\x1b$B\x3b\x33\x45\x44\x1b(B|x";
        assert_eq!(text("~ISO IR87", good), "PID|山田|x");
    }
}
