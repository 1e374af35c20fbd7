//! The message header (MSH): delimiters, routing fields and acknowledgment options.
//!
//! Parsed without copying: every field borrows from the raw message, still encoded in the
//! sender's delimiters, so it can be echoed in an ACK as is. Coded fields (MSH-9, 11, 12, 15,
//! 16, 18) are trimmed of surrounding whitespace, which senders pad them with (`"AL "`).

use super::error::{ErrorCode, Hl7Error, Location};

/// The five delimiters a message declares in MSH-1 and MSH-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    pub field: u8,
    pub component: u8,
    pub repetition: u8,
    pub escape: u8,
    pub subcomponent: u8,
    /// The truncation character of v2.7+ (fifth character of MSH-2), if declared.
    pub(crate) truncation: Option<u8>,
}

impl Default for Delimiters {
    fn default() -> Self {
        Delimiters {
            field: b'|',
            component: b'^',
            repetition: b'~',
            escape: b'\\',
            subcomponent: b'&',
            truncation: None,
        }
    }
}

impl Delimiters {
    /// MSH-2 as it appears on the wire.
    pub(crate) fn encoding_characters(&self) -> heapless::Vec<u8, 5> {
        let mut out = heapless::Vec::new();
        for b in [self.component, self.repetition, self.escape, self.subcomponent] {
            let _ = out.push(b);
        }
        if let Some(t) = self.truncation {
            let _ = out.push(t);
        }
        out
    }
}

/// Acknowledgment condition of MSH-15 / MSH-16 (HL7 table 0155).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCondition {
    Always,
    Never,
    ErrorOnly,
    SuccessOnly,
}

impl AckCondition {
    fn parse(v: &[u8]) -> Option<AckCondition> {
        match v {
            b"AL" => Some(AckCondition::Always),
            b"NE" => Some(AckCondition::Never),
            b"ER" => Some(AckCondition::ErrorOnly),
            b"SU" => Some(AckCondition::SuccessOnly),
            _ => None,
        }
    }

    /// Whether an acknowledgment with this outcome should be sent.
    pub(crate) fn wants(self, success: bool) -> bool {
        match self {
            AckCondition::Always => true,
            AckCondition::Never => false,
            AckCondition::ErrorOnly => !success,
            AckCondition::SuccessOnly => success,
        }
    }
}

/// The parsed MSH segment: the fields an ACK echoes, plus the message type details.
/// Fields are raw (still escaped) slices of the message.
#[derive(Debug, Clone)]
pub struct Header<'a> {
    pub echo: Echo<'a>,
    /// MSH-9.1
    pub message_code: &'a [u8],
    /// MSH-9.3
    pub message_structure: &'a [u8],
    /// MSH-16, when valued with a table 0155 code.
    pub application_ack: Option<AckCondition>,
    /// MSH-18, all repetitions (trimmed), for [`super::Charset::from_msh18`].
    pub charset_field: &'a [u8],
    /// MSH-15 / MSH-16 when valued with something outside table 0155: read as not valued
    /// (original acknowledgment mode), for the caller to warn about.
    pub unknown_ack_fields: heapless::Vec<u16, 2>,
}

/// The MSH fields an ACK echoes; also all that is known of a header that failed validation.
#[derive(Debug, Clone, Default)]
pub struct Echo<'a> {
    pub delimiters: Delimiters,
    pub sending_application: &'a [u8],
    pub sending_facility: &'a [u8],
    pub receiving_application: &'a [u8],
    pub receiving_facility: &'a [u8],
    /// MSH-9.2
    pub trigger_event: &'a [u8],
    /// MSH-10
    pub control_id: &'a [u8],
    /// MSH-11.1; may be empty (the listener's policy decides what that means).
    pub processing_id: &'a [u8],
    /// MSH-12.1
    pub version: &'a [u8],
    /// MSH-18 (first repetition).
    pub charset: &'a [u8],
    /// MSH-15, when valued (enhanced acknowledgment mode).
    pub accept_ack: Option<AckCondition>,
}

/// A header that failed validation, with whatever could be read for the NAK.
#[derive(Debug, Clone)]
pub struct HeaderError<'a> {
    pub error: Hl7Error,
    pub echo: Box<Echo<'a>>,
}

/// Strips a UTF-8 byte-order mark and blank lines before the first segment.
pub fn trim_start(msg: &[u8]) -> &[u8] {
    let msg = msg.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(msg);
    let skip = msg.iter().take_while(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\t')).count();
    &msg[skip..]
}

/// The first segment of `msg` (up to CR or LF).
fn first_segment(msg: &[u8]) -> &[u8] {
    let end = memchr::memchr2(b'\r', b'\n', msg).unwrap_or(msg.len());
    &msg[..end]
}

fn component(field: &[u8], sep: u8, index: usize) -> &[u8] {
    field.split(|&b| b == sep).nth(index).unwrap_or(&[])
}

/// A coded value without the whitespace senders pad it with.
fn code(value: &[u8]) -> &[u8] {
    value.trim_ascii()
}

fn first_repetition(field: &[u8], rep: u8) -> &[u8] {
    component(field, rep, 0)
}

fn parse_delimiters(seg: &[u8]) -> Result<Delimiters, Hl7Error> {
    let field = *seg.get(3).ok_or_else(|| Hl7Error::at(ErrorCode::RequiredFieldMissing, Location::field("MSH", 1)))?;
    let enc_end = seg[4..].iter().position(|&b| b == field).map(|p| p + 4).unwrap_or(seg.len());
    let enc = &seg[4..enc_end];
    let bad = || Hl7Error::at(ErrorCode::DataTypeError, Location::field("MSH", 2));
    if !(enc.len() == 4 || enc.len() == 5) {
        return Err(bad());
    }
    let mut all = vec![field];
    all.extend_from_slice(enc);
    let distinct = all.iter().enumerate().all(|(i, b)| !all[..i].contains(b));
    let printable = all.iter().all(|b| b.is_ascii_graphic() && !b.is_ascii_alphanumeric());
    if !distinct || !printable {
        return Err(bad());
    }
    Ok(Delimiters {
        field,
        component: enc[0],
        repetition: enc[1],
        escape: enc[2],
        subcomponent: enc[3],
        truncation: enc.get(4).copied(),
    })
}

/// Parses and validates the MSH of `msg`.
pub fn parse(msg: &[u8]) -> Result<Header<'_>, HeaderError<'_>> {
    let msg = trim_start(msg);
    let seg = first_segment(msg);
    if seg.len() < 4 || &seg[..3] != b"MSH" {
        let error =
            Hl7Error::new(ErrorCode::SegmentSequenceError, Location::segment("MSH"), "message does not start with MSH");
        return Err(HeaderError { error, echo: Box::default() });
    }
    let delimiters = parse_delimiters(seg).map_err(|error| HeaderError { error, echo: Box::default() })?;
    // fields[n] is MSH-(n+1): fields[0] is the "MSH" tag standing in for MSH-1's position.
    let mut fields: heapless::Vec<&[u8], 21> = heapless::Vec::new();
    for f in seg.split(|&b| b == delimiters.field).take(21) {
        let _ = fields.push(f);
    }
    let field = |n: usize| -> &[u8] {
        if n == 1 {
            &[]
        } else {
            fields.get(n - 1).copied().unwrap_or(&[])
        }
    };
    let (c, r) = (delimiters.component, delimiters.repetition);
    let msh9 = first_repetition(field(9), r);
    let (msh15, msh16) = (code(field(15)), code(field(16)));
    let echo = Echo {
        delimiters,
        sending_application: field(3),
        sending_facility: field(4),
        receiving_application: field(5),
        receiving_facility: field(6),
        trigger_event: code(component(msh9, c, 1)),
        control_id: field(10),
        processing_id: code(component(field(11), c, 0)),
        version: code(component(first_repetition(field(12), r), c, 0)),
        charset: code(first_repetition(field(18), r)),
        accept_ack: AckCondition::parse(msh15),
    };
    let fail = |error: Hl7Error| Err(HeaderError { error, echo: Box::new(echo.clone()) });
    // MSH-11 is required by the standard, but senders leave it empty: the listener's policy
    // supplies a default.
    let required = [(9, code(msh9)), (10, echo.control_id), (12, echo.version)];
    for (n, value) in required {
        if value.is_empty() {
            return fail(Hl7Error::at(ErrorCode::RequiredFieldMissing, Location::field("MSH", n as u16)));
        }
    }
    let message_code = code(component(msh9, c, 0));
    if message_code.is_empty() {
        return fail(Hl7Error::at(ErrorCode::RequiredFieldMissing, Location::component("MSH", 9, 1)));
    }
    let mut unknown_ack_fields = heapless::Vec::new();
    for (n, value) in [(15, msh15), (16, msh16)] {
        if !value.is_empty() && AckCondition::parse(value).is_none() {
            let _ = unknown_ack_fields.push(n);
        }
    }
    Ok(Header {
        message_code,
        message_structure: code(component(msh9, c, 2)),
        application_ack: AckCondition::parse(msh16),
        charset_field: code(field(18)),
        unknown_ack_fields,
        echo,
    })
}

impl Header<'_> {
    /// Enhanced acknowledgment mode is requested by valuing MSH-15.
    pub fn enhanced_mode(&self) -> bool {
        self.echo.accept_ack.is_some()
    }

    /// `TYPE^TRIGGER` for logs and the journal (never contains PHI).
    pub fn message_type(&self) -> String {
        let mut s = String::from_utf8_lossy(self.message_code).into_owned();
        if !self.echo.trigger_event.is_empty() {
            s.push('^');
            s.push_str(&String::from_utf8_lossy(self.echo.trigger_event));
        }
        s
    }
}

/// The first repetition of PID-3 (patient identifier list) as `(id, assigning authority)`,
/// raw and unescaped; `None` when the message has no PID or PID-3 is empty.
pub fn patient_identifier<'m>(msg: &'m [u8], d: &Delimiters) -> Option<(&'m [u8], &'m [u8])> {
    let pid = msg
        .split(|&b| b == b'\r' || b == b'\n')
        .find(|seg| seg.len() > 3 && seg.starts_with(b"PID") && seg[3] == d.field)?;
    let pid3 = pid.split(|&b| b == d.field).nth(3)?;
    let cx = first_repetition(pid3, d.repetition);
    let id = component(cx, d.component, 0);
    if id.is_empty() {
        return None;
    }
    Some((id, component(cx, d.component, 3)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADT: &[u8] = b"MSH|^~\\&|EPIC|HOSP|GW|CLOUD|20260101120000||ADT^A01^ADT_A01|CTRL1|P|2.5.1|||AL|NE||UNICODE UTF-8\rPID|1||MRN123^^^HOSP^MR~999^^^SSA^SS||DOE^JANE\r";

    #[test]
    fn parses_all_header_fields() {
        let h = parse(ADT).unwrap();
        assert_eq!(h.echo.delimiters, Delimiters::default());
        assert_eq!(h.echo.sending_application, b"EPIC");
        assert_eq!(h.echo.sending_facility, b"HOSP");
        assert_eq!(h.echo.receiving_application, b"GW");
        assert_eq!(h.echo.receiving_facility, b"CLOUD");
        assert_eq!(h.message_code, b"ADT");
        assert_eq!(h.echo.trigger_event, b"A01");
        assert_eq!(h.message_structure, b"ADT_A01");
        assert_eq!(h.echo.control_id, b"CTRL1");
        assert_eq!(h.echo.processing_id, b"P");
        assert_eq!(h.echo.version, b"2.5.1");
        assert_eq!(h.echo.accept_ack, Some(AckCondition::Always));
        assert_eq!(h.application_ack, Some(AckCondition::Never));
        assert_eq!(h.echo.charset, b"UNICODE UTF-8");
        assert!(h.enhanced_mode());
        assert_eq!(h.message_type(), "ADT^A01");
    }

    #[test]
    fn custom_and_five_char_delimiters() {
        let m = b"MSH#*@!%$#A#F#R#X#T##ORU*R01#9#P*T#2.7\r";
        let h = parse(m).unwrap();
        assert_eq!(h.echo.delimiters.field, b'#');
        assert_eq!(h.echo.delimiters.component, b'*');
        assert_eq!(h.echo.delimiters.repetition, b'@');
        assert_eq!(h.echo.delimiters.escape, b'!');
        assert_eq!(h.echo.delimiters.subcomponent, b'%');
        assert_eq!(h.echo.delimiters.truncation, Some(b'$'));
        assert_eq!(h.message_code, b"ORU");
        assert_eq!(h.echo.trigger_event, b"R01");
        assert_eq!(h.echo.control_id, b"9");
        assert_eq!(h.echo.processing_id, b"P");
        assert_eq!(h.echo.version, b"2.7");
        assert!(!h.enhanced_mode());
    }

    #[test]
    fn bom_and_lf_tolerated() {
        let m = b"\xEF\xBB\xBF\nMSH|^~\\&|A|B|C|D|||ADT^A08|X|P|2.3\nPID|||1\n";
        let h = parse(m).unwrap();
        assert_eq!(h.echo.control_id, b"X");
        assert_eq!(h.echo.version, b"2.3");
    }

    fn err(m: &[u8]) -> HeaderError<'_> {
        parse(m).unwrap_err()
    }

    #[test]
    fn no_msh_is_segment_sequence_error() {
        let e = err(b"PID|1||X\r");
        assert_eq!(e.error.code, ErrorCode::SegmentSequenceError);
        assert!(e.echo.control_id.is_empty());
        assert_eq!(err(b"").error.code, ErrorCode::SegmentSequenceError);
    }

    #[test]
    fn bad_encoding_characters_are_data_type_errors() {
        for m in [&b"MSH|^~\\|A\r"[..], b"MSH|^^\\&|A\r", b"MSH|^~\\&AB|A\r", b"MSH|"] {
            let e = err(m);
            assert_eq!(e.error.code, ErrorCode::DataTypeError, "{:?}", String::from_utf8_lossy(m));
            assert_eq!(e.error.location.to_string(), "MSH-2");
        }
    }

    #[test]
    fn missing_required_fields_name_their_location() {
        let cases: [(&[u8], &str); 5] = [
            (b"MSH|^~\\&|A|B|C|D|||", "MSH-9"),
            (b"MSH|^~\\&|A|B|C|D|||^A01|1|P|2.5", "MSH-9.1"),
            (b"MSH|^~\\&|A|B|C|D|||ADT^A01||P|2.5", "MSH-10"),
            (b"MSH|^~\\&|A|B|C|D||| |1|P|2.5", "MSH-9"),
            (b"MSH|^~\\&|A|B|C|D|||ADT^A01|1|P|", "MSH-12"),
        ];
        for (m, loc) in cases {
            let e = err(m);
            assert_eq!(e.error.code, ErrorCode::RequiredFieldMissing);
            assert_eq!(e.error.location.to_string(), loc);
        }
        // Fields readable before the failure are echoed.
        assert_eq!(err(cases[4].0).echo.control_id, b"1");
    }

    #[test]
    fn unknown_ack_conditions_mean_original_mode() {
        let h = parse(b"MSH|^~\\&|A|B|C|D|||ADT^A01|1|P|2.5|||XX|YY").unwrap();
        assert_eq!(h.echo.accept_ack, None);
        assert_eq!(h.application_ack, None);
        assert_eq!(h.unknown_ack_fields, [15, 16]);
        let h = parse(b"MSH|^~\\&|A|B|C|D|||ADT^A01|1|P|2.5|||AL |NE").unwrap();
        assert_eq!(h.echo.accept_ack, Some(AckCondition::Always));
        assert!(h.unknown_ack_fields.is_empty());
        let h = parse(b"MSH|^~\\&|A|B|C|D|||ADT^A01|1|P|2.5||| | ").unwrap();
        assert_eq!((h.echo.accept_ack, h.application_ack), (None, None));
        assert!(h.unknown_ack_fields.is_empty());
    }

    #[test]
    fn coded_fields_are_trimmed_and_msh11_may_be_empty() {
        let m = b"MSH|^~\\&|A|B|C|D||| ADT ^ A01 ^ADT_A01 |1 |P |2.5.1 |||AL |ER ||UNICODE UTF-8 \r";
        let h = parse(m).unwrap();
        assert_eq!(h.message_code, b"ADT");
        assert_eq!(h.echo.trigger_event, b"A01");
        assert_eq!(h.message_structure, b"ADT_A01");
        assert_eq!(h.echo.control_id, b"1 ");
        assert_eq!(h.echo.processing_id, b"P");
        assert_eq!(h.echo.version, b"2.5.1");
        assert_eq!(h.echo.accept_ack, Some(AckCondition::Always));
        assert_eq!(h.application_ack, Some(AckCondition::ErrorOnly));
        assert_eq!(h.echo.charset, b"UNICODE UTF-8");
        let h = parse(b"MSH|^~\\&|A|B|C|D|||ADT^A01|1||2.5\r").unwrap();
        assert!(h.echo.processing_id.is_empty());
    }

    #[test]
    fn patient_identifier_is_first_pid3_repetition() {
        let h = parse(ADT).unwrap();
        assert_eq!(patient_identifier(ADT, &h.echo.delimiters), Some((&b"MRN123"[..], &b"HOSP"[..])));
        assert_eq!(patient_identifier(b"MSH|^~\\&\rPV1|1\r", &h.echo.delimiters), None);
        assert_eq!(patient_identifier(b"MSH|^~\\&\rPIDX|1||Y\rPID|1||\r", &h.echo.delimiters), None);
    }

    #[test]
    fn ack_conditions() {
        assert!(AckCondition::Always.wants(true) && AckCondition::Always.wants(false));
        assert!(!AckCondition::Never.wants(true) && !AckCondition::Never.wants(false));
        assert!(!AckCondition::ErrorOnly.wants(true) && AckCondition::ErrorOnly.wants(false));
        assert!(AckCondition::SuccessOnly.wants(true) && !AckCondition::SuccessOnly.wants(false));
    }
}
