//! Acknowledgments: MSH + MSA (+ ERR) built in the sender's own delimiters.
//!
//! The ACK is assembled in a fixed-size buffer: echoed fields are capped, so building an
//! ACK never allocates and never grows with the input.

use crate::hl7::msh::Echo;
use crate::hl7::{AckCondition, Delimiters, Hl7Error};

/// Capacity of an ACK message; every echoed field is capped so the total always fits.
pub const ACK_CAPACITY: usize = 2048;
/// Longest echoed field (HD and ST fields are far shorter in practice).
const MAX_ECHO: usize = 180;

/// What the gateway says about a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Durably stored (or a duplicate of a stored message).
    Accepted,
    /// Not taken at all: unsupported type/version/processing ID, or storage full (AR/CR).
    Rejected(Hl7Error),
    /// Could not be processed (AE/CE).
    Errored(Hl7Error),
}

impl Outcome {
    /// A rejection or error according to the code's nature.
    pub(crate) fn from_error(error: Hl7Error) -> Self {
        if error.code.is_rejection() {
            Outcome::Rejected(error)
        } else {
            Outcome::Errored(error)
        }
    }

    fn error(&self) -> Option<&Hl7Error> {
        match self {
            Outcome::Accepted => None,
            Outcome::Rejected(e) | Outcome::Errored(e) => Some(e),
        }
    }

    /// MSA-1: original mode codes, or commit codes in enhanced mode.
    pub fn code(&self, enhanced: bool) -> &'static str {
        match (self, enhanced) {
            (Outcome::Accepted, false) => "AA",
            (Outcome::Errored(_), false) => "AE",
            (Outcome::Rejected(_), false) => "AR",
            (Outcome::Accepted, true) => "CA",
            (Outcome::Errored(_), true) => "CE",
            (Outcome::Rejected(_), true) => "CR",
        }
    }
}

/// Whether an acknowledgment is due: always in original mode; per MSH-15 in enhanced mode.
pub fn ack_wanted(accept_ack: Option<AckCondition>, outcome: &Outcome) -> bool {
    accept_ack.is_none_or(|cond| cond.wants(*outcome == Outcome::Accepted))
}

/// A complete ACK message (without MLLP framing).
pub(crate) type Ack = heapless::Vec<u8, ACK_CAPACITY>;

/// Builds the ACK for a message whose header fields are `echo`.
///
/// `control_id` is the ACK's own MSH-10, `timestamp` its MSH-7 (`YYYYMMDDHHMMSS±ZZZZ`).
pub fn build(echo: &Echo, outcome: &Outcome, control_id: &str, timestamp: &str) -> Ack {
    let d = &echo.delimiters;
    let enhanced = echo.accept_ack.is_some();
    let mut w = Writer { out: Ack::new(), d: *d };
    w.raw(b"MSH");
    w.sep();
    w.raw(&d.encoding_characters());
    // Sender and receiver swap places.
    for f in [echo.receiving_application, echo.receiving_facility, echo.sending_application, echo.sending_facility] {
        w.field(f);
    }
    w.text_field(timestamp.as_bytes());
    w.field(b"");
    w.raw(&[d.field]);
    w.raw(b"ACK");
    if !echo.trigger_event.is_empty() {
        w.raw(&[d.component]);
        w.capped(echo.trigger_event);
    }
    w.raw(&[d.component]);
    w.raw(b"ACK");
    w.text_field(control_id.as_bytes());
    // MSH-11 and MSH-12 are required in the ACK: echo them only when they are well-formed
    // (an ID, a version number), otherwise write the defaults.
    let processing_id = Some(echo.processing_id).filter(|p| !p.is_empty() && p.iter().all(u8::is_ascii_alphanumeric));
    w.text_field(processing_id.unwrap_or(b"P"));
    let version = Some(echo.version)
        .filter(|v| !v.is_empty() && v.len() <= 16 && v.iter().all(|b| b.is_ascii_digit() || *b == b'.'))
        .unwrap_or(b"2.5");
    w.text_field(version);
    if enhanced || !echo.charset.is_empty() {
        // An acknowledgment is itself never acknowledged.
        let ne: &[u8] = if enhanced { b"NE" } else { b"" };
        for f in [&b""[..], b"", ne, ne, b""] {
            w.text_field(f);
        }
        w.field(echo.charset);
    }
    w.raw(b"\rMSA");
    w.text_field(outcome.code(enhanced).as_bytes());
    w.field(echo.control_id);
    if let Some(e) = outcome.error() {
        w.text_field(e.text.as_bytes());
        w.raw(b"\rERR");
        let loc = e.location;
        let c = [d.component];
        let num = |n: u16| if n == 0 { String::new() } else { n.to_string() };
        if old_style_err(version) {
            // v2.3/2.4: ERR-1 (ELD) segment^sequence^field^code&text&HL70357
            w.sep();
            w.text(loc.segment.as_bytes());
            for n in [loc.sequence, loc.field] {
                w.raw(&c);
                w.text(num(n).as_bytes());
            }
            w.raw(&c);
            w.text(e.code.code().to_string().as_bytes());
            w.raw(&[d.subcomponent]);
            w.text(e.text.as_bytes());
            w.raw(&[d.subcomponent]);
            w.text(b"HL70357");
        } else {
            // v2.5+: ERR-2 location (ERL), ERR-3 code (CWE), ERR-4 severity.
            w.field(b"");
            w.sep();
            w.text(loc.segment.as_bytes());
            let parts = [loc.sequence, loc.field, loc.component];
            let used = parts.iter().rposition(|&n| n > 0).map_or(0, |i| i + 1);
            for &n in &parts[..used] {
                w.raw(&c);
                w.text(num(n).as_bytes());
            }
            w.sep();
            w.text(e.code.code().to_string().as_bytes());
            w.raw(&c);
            w.text(e.text.as_bytes());
            w.raw(&c);
            w.text(b"HL70357");
            w.text_field(b"E");
        }
    }
    w.raw(b"\r");
    w.out
}

fn old_style_err(version: &[u8]) -> bool {
    matches!(version.get(..3), Some(b"2.1" | b"2.2" | b"2.3" | b"2.4"))
}

/// Appends to the fixed buffer; the caps above guarantee it never fills up.
///
/// Two kinds of content: fields echoed from the sender are already encoded in its delimiters
/// and go in as they are (capped); text the gateway writes itself (timestamps, defaults,
/// error texts) is escaped, since a sender may declare `+` or `.` as a delimiter.
/// The header of a batch of ACKs (`FHS` or `BHS`, `id` naming which) answering the batch
/// header `original` (whose delimiters `d` it uses): sender and receiver swapped, our own
/// control ID in field 11 and the original's in field 12 (the reference batch control ID).
pub fn batch_header(id: &[u8; 3], original: Option<&[u8]>, d: &Delimiters, control_id: &str, timestamp: &str) -> Ack {
    let fields: Vec<&[u8]> = original.map(|seg| seg.split(|&b| b == d.field).collect()).unwrap_or_default();
    // fields[n - 1] is field n (field 1 is the separator itself).
    let field = |n: usize| fields.get(n - 1).copied().unwrap_or_default();
    let mut w = Writer { out: Ack::new(), d: *d };
    w.raw(id);
    w.sep();
    w.raw(&d.encoding_characters());
    for n in [5, 6, 3, 4] {
        w.field(field(n));
    }
    w.text_field(timestamp.as_bytes());
    for _ in 8..=10 {
        w.sep();
    }
    w.text_field(control_id.as_bytes());
    w.field(field(11));
    w.raw(b"\r");
    w.out
}

/// The trailer of a batch of ACKs (`FTS` or `BTS`) with its count.
pub fn batch_trailer(id: &[u8; 3], count: usize, d: &Delimiters) -> Ack {
    let mut w = Writer { out: Ack::new(), d: *d };
    w.raw(id);
    w.text_field(count.to_string().as_bytes());
    w.raw(b"\r");
    w.out
}

struct Writer {
    out: Ack,
    d: Delimiters,
}

impl Writer {
    fn raw(&mut self, bytes: &[u8]) {
        let room = ACK_CAPACITY - self.out.len();
        let _ = self.out.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// An echoed value, cut at [`MAX_ECHO`] without splitting a UTF-8 character or an
    /// escape sequence.
    fn capped(&mut self, bytes: &[u8]) {
        let mut cut = bytes.len().min(MAX_ECHO);
        while cut < bytes.len() && cut > 0 && bytes[cut] & 0xC0 == 0x80 {
            cut -= 1;
        }
        let kept = &bytes[..cut];
        if kept.iter().filter(|&&b| b == self.d.escape).count() % 2 == 1 {
            cut = kept.iter().rposition(|&b| b == self.d.escape).unwrap_or(0);
        }
        self.raw(&bytes[..cut]);
    }

    /// Gateway-written text, with any delimiter escaped (HL7 \F\ \S\ \R\ \E\ \T\).
    fn text(&mut self, bytes: &[u8]) {
        let d = self.d;
        for &b in bytes {
            let code = match b {
                _ if b == d.field => b'F',
                _ if b == d.component => b'S',
                _ if b == d.repetition => b'R',
                _ if b == d.escape => b'E',
                _ if b == d.subcomponent => b'T',
                _ => {
                    self.raw(&[b]);
                    continue;
                }
            };
            self.raw(&[d.escape, code, d.escape]);
        }
    }

    fn sep(&mut self) {
        self.raw(&[self.d.field]);
    }

    fn field(&mut self, bytes: &[u8]) {
        self.sep();
        self.capped(bytes);
    }

    fn text_field(&mut self, bytes: &[u8]) {
        self.sep();
        self.text(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::msh::{self, Echo};
    use crate::hl7::{ErrorCode, Location};

    fn ack(msg: &[u8], outcome: &Outcome) -> String {
        let echo = match msh::parse(msg) {
            Ok(h) => h.echo,
            Err(e) => *e.echo,
        };
        String::from_utf8(build(&echo, outcome, "ACK1", "20260101120000+0000").to_vec()).unwrap()
    }

    const MSG: &[u8] = b"MSH|^~\\&|EPIC|HOSP|GW|CLOUD|2026||ADT^A01^ADT_A01|C42|P|2.5.1\rPID|1||X\r";

    #[test]
    fn original_mode_aa_swaps_sender_and_receiver() {
        assert_eq!(
            ack(MSG, &Outcome::Accepted),
            "MSH|^~\\&|GW|CLOUD|EPIC|HOSP|20260101120000+0000||ACK^A01^ACK|ACK1|P|2.5.1\rMSA|AA|C42\r"
        );
    }

    #[test]
    fn error_in_v25_uses_err_2_to_4() {
        let e = Hl7Error::at(ErrorCode::UnsupportedMessageType, Location::component("MSH", 9, 1));
        let a = ack(MSG, &Outcome::from_error(e));
        assert!(a.contains("\rMSA|AR|C42|Unsupported message type\r"), "{a}");
        assert!(a.ends_with("\rERR||MSH^1^9^1|200^Unsupported message type^HL70357|E\r"), "{a}");
    }

    #[test]
    fn error_in_v23_uses_err_1() {
        let m = b"MSH|^~\\&|A|B|C|D|||ADT^A08|77|P|2.3\r";
        let e = Hl7Error::at(ErrorCode::RequiredFieldMissing, Location::field("PID", 3));
        let a = ack(m, &Outcome::from_error(e));
        assert!(a.contains("\rMSA|AE|77|"), "{a}");
        assert!(a.ends_with("\rERR|PID^1^3^101&Required field missing&HL70357\r"), "{a}");
    }

    #[test]
    fn enhanced_mode_uses_commit_codes_and_never_asks_for_ack() {
        let m = b"MSH|^~\\&|A|B|C|D|||ORU^R01|9|P|2.6|||ER|AL\r";
        let a = ack(m, &Outcome::Accepted);
        assert!(a.contains("|ACK^R01^ACK|ACK1|P|2.6|||NE|NE||\r"), "{a}");
        assert!(a.contains("\rMSA|CA|9\r"));
        let rejected = Outcome::Rejected(Hl7Error::at(ErrorCode::UnsupportedVersionId, Location::field("MSH", 12)));
        assert!(ack(m, &rejected).contains("\rMSA|CR|9|"));
        let errored = Outcome::Errored(Hl7Error::at(ErrorCode::ApplicationInternalError, Location::NONE));
        assert!(ack(m, &errored).contains("\rMSA|CE|9|"));
        assert!(ack(m, &errored).ends_with("\rERR|||207^Application internal error^HL70357|E\r"));
    }

    #[test]
    fn ack_condition_decides_whether_to_send() {
        let ok = Outcome::Accepted;
        let bad = Outcome::Errored(Hl7Error::at(ErrorCode::DataTypeError, Location::NONE));
        assert!(ack_wanted(None, &ok) && ack_wanted(None, &bad));
        assert!(!ack_wanted(Some(AckCondition::Never), &ok));
        assert!(!ack_wanted(Some(AckCondition::ErrorOnly), &ok) && ack_wanted(Some(AckCondition::ErrorOnly), &bad));
        assert!(ack_wanted(Some(AckCondition::SuccessOnly), &ok) && !ack_wanted(Some(AckCondition::SuccessOnly), &bad));
    }

    #[test]
    fn uses_senders_delimiters_and_echoes_charset() {
        let m = b"MSH#*@!%#A#B#C#D###ADT*A04#5#P#2.5######8859/1\r";
        let a = ack(m, &Outcome::Accepted);
        assert!(a.starts_with("MSH#*@!%#C#D#A#B#20260101120000+0000##ACK*A04*ACK#ACK1#P#2.5######8859/1\r"), "{a}");
    }

    #[test]
    fn no_usable_msh_gets_nak_with_empty_msa2() {
        let a = ack(b"garbage", &Outcome::from_error(msh::parse(b"garbage").unwrap_err().error));
        assert_eq!(
            a,
            "MSH|^~\\&|||||20260101120000+0000||ACK^ACK|ACK1|P|2.5\rMSA|AE||message does not start with MSH\rERR||MSH^1|100^message does not start with MSH^HL70357|E\r"
        );
    }

    #[test]
    fn gateway_text_is_escaped_when_a_delimiter_is_plus_or_dot() {
        // '+' as field separator: the timestamp's offset must not split MSH-7.
        let m = b"MSH+^~\\&+SEND+FAC+GW+CLOUD+++ADT^A01+CID1+P+2.5\rPID+1++MRN1\r";
        let a = ack(m, &Outcome::Accepted);
        let h = msh::parse(a.as_bytes()).unwrap();
        assert_eq!(h.message_code, b"ACK");
        assert_eq!(h.echo.control_id, b"ACK1");
        assert!(a.contains("+20260101120000\\F\\0000+"), "{a}");
        // '.' as component separator and no MSH-12: the default version stays one component.
        let m = b"MSH|.~\\&|SEND|FAC|GW|CLOUD|||ADT.A01|CID2|P|\r";
        let a = ack(m, &Outcome::from_error(msh::parse(m).unwrap_err().error));
        assert!(a.contains("|2\\S\\5\r"), "{a}");
    }

    #[test]
    fn echo_cap_never_splits_a_character_or_an_escape() {
        let mut w = Writer { out: Ack::new(), d: Delimiters::default() };
        let mut id = vec![b'A'; MAX_ECHO - 1];
        id.extend_from_slice("É".as_bytes());
        w.capped(&id);
        assert_eq!(w.out.len(), MAX_ECHO - 1);
        let mut w = Writer { out: Ack::new(), d: Delimiters::default() };
        let mut id = vec![b'A'; MAX_ECHO - 2];
        id.extend_from_slice(b"\\F\\");
        w.capped(&id);
        assert_eq!(&w.out[..], &id[..MAX_ECHO - 2]);
    }

    #[test]
    fn huge_fields_are_capped_to_the_buffer() {
        let mut m = b"MSH|^~\\&|".to_vec();
        m.extend(std::iter::repeat_n(b'A', 100_000));
        m.extend_from_slice(b"|B|C|D|||ADT^A01|");
        m.extend(std::iter::repeat_n(b'9', 100_000));
        m.extend_from_slice(b"|P|2.5\r");
        let echo: Echo = msh::parse(&m).unwrap().echo;
        let a = build(&echo, &Outcome::Accepted, "X", "T");
        assert!(a.len() < ACK_CAPACITY);
        assert!(a.ends_with(b"\r"));
    }
}
