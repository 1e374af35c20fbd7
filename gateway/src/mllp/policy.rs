//! Which messages a listener accepts: version, processing ID, message type, character set.

use crate::config::Accept;
use crate::hl7::{Charset, ErrorCode, Header, Hl7Error, Location};

#[derive(Debug, Clone)]
pub struct Policy {
    versions: Vec<String>,
    processing_ids: Vec<String>,
    /// (message code, optional trigger)
    types: Vec<(String, Option<String>)>,
    /// What an empty MSH-11 stands for; empty: nothing.
    default_processing_id: String,
    /// Keep messages the converter cannot convert, as dead letters.
    pub store_unsupported: bool,
}

impl Policy {
    pub fn new(accept: &Accept) -> Self {
        let types = accept
            .message_types
            .iter()
            .map(|t| match t.split_once('^') {
                Some((code, trigger)) => (code.to_string(), Some(trigger.to_string())),
                None => (t.clone(), None),
            })
            .collect();
        Policy {
            versions: accept.versions.clone(),
            processing_ids: accept.processing_ids.clone(),
            types,
            default_processing_id: accept.default_processing_id.trim().to_string(),
            store_unsupported: accept.store_unsupported,
        }
    }

    /// Fills in an empty MSH-11 with the listener's default, so that the checks and the ACK
    /// both see it.
    pub fn fill_in<'a>(&'a self, h: &mut Header<'a>) {
        if h.echo.processing_id.is_empty() {
            h.echo.processing_id = self.default_processing_id.as_bytes();
        }
    }

    /// Checks a parsed header (after [`Policy::fill_in`]); the error carries the table 0357
    /// code and field.
    pub fn check(&self, h: &Header) -> Result<(), Hl7Error> {
        let listed = |list: &[String], v: &[u8]| list.iter().any(|x| x.as_bytes() == v);
        if !listed(&self.versions, h.echo.version) {
            return Err(Hl7Error::at(ErrorCode::UnsupportedVersionId, Location::field("MSH", 12)));
        }
        if h.echo.processing_id.is_empty() {
            return Err(Hl7Error::at(ErrorCode::RequiredFieldMissing, Location::field("MSH", 11)));
        }
        if !listed(&self.processing_ids, h.echo.processing_id) {
            return Err(Hl7Error::at(ErrorCode::UnsupportedProcessingId, Location::field("MSH", 11)));
        }
        let same_code: Vec<_> = self.types.iter().filter(|(code, _)| code.as_bytes() == h.message_code).collect();
        if same_code.is_empty() {
            return Err(Hl7Error::at(ErrorCode::UnsupportedMessageType, Location::component("MSH", 9, 1)));
        }
        if !same_code.iter().any(|(_, t)| t.as_ref().is_none_or(|t| t.as_bytes() == h.echo.trigger_event)) {
            return Err(Hl7Error::at(ErrorCode::UnsupportedEventCode, Location::component("MSH", 9, 2)));
        }
        Charset::from_msh18(h.charset_field, h.echo.delimiters.repetition)?;
        Ok(())
    }
}

/// Every segment must start with a three-character upper-case alphanumeric ID followed by
/// the field separator (or end): anything else means the frame is not an HL7 message.
pub fn check_segments(msg: &[u8], field: u8) -> Result<(), Hl7Error> {
    let bad = msg.split(|&b| b == b'\r' || b == b'\n').filter(|s| !s.is_empty()).any(|seg| {
        let id_ok = seg.len() >= 3 && seg[..3].iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        !(id_ok && (seg.len() == 3 || seg[3] == field))
    });
    if bad {
        return Err(Hl7Error::new(ErrorCode::SegmentSequenceError, Location::NONE, "Invalid segment"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::msh;

    fn policy(types: &[&str]) -> Policy {
        let accept = Accept { message_types: types.iter().map(|s| s.to_string()).collect(), ..Accept::default() };
        Policy::new(&accept)
    }

    fn check(p: &Policy, m: &[u8]) -> Result<(), ErrorCode> {
        let mut h = msh::parse(m).unwrap();
        p.fill_in(&mut h);
        p.check(&h).map_err(|e| e.code)
    }

    #[test]
    fn rules_map_to_table_0357_codes() {
        let p = policy(&["ADT", "ORU^R01"]);
        assert_eq!(check(&p, b"MSH|^~\\&|A|B|C|D|||ADT^A01|1|P|2.5.1"), Ok(()));
        assert_eq!(check(&p, b"MSH|^~\\&|A|B|C|D|||ORU^R01|1|P|2.5.1"), Ok(()));
        assert_eq!(check(&p, b"MSH|^~\\&|A|B|C|D|||ORU^R30|1|P|2.5.1"), Err(ErrorCode::UnsupportedEventCode));
        assert_eq!(check(&p, b"MSH|^~\\&|A|B|C|D|||DFT^P03|1|P|2.5.1"), Err(ErrorCode::UnsupportedMessageType));
        assert_eq!(check(&p, b"MSH|^~\\&|A|B|C|D|||ADT^A01|1|D|2.5.1"), Err(ErrorCode::UnsupportedProcessingId));
        assert_eq!(check(&p, b"MSH|^~\\&|A|B|C|D|||ADT^A01|1|P|2.2"), Err(ErrorCode::UnsupportedVersionId));
        assert_eq!(check(&p, b"MSH|^~\\&|A|B|C|D|||ADT^A01|1|P|2.5||||||ISO IR159"), Err(ErrorCode::DataTypeError));
        assert_eq!(check(&p, b"MSH|^~\\&|A|B|C|D|||ADT^A01|1|P|2.5||||||8859/1"), Ok(()));
    }

    #[test]
    fn what_real_senders_send_is_accepted() {
        let p = policy(&["ADT"]);
        for m in [
            &b"MSH|^~\\&|A|B|C|D|||ADT^A01|1||2.5.1"[..],
            b"MSH|^~\\&|A|B|C|D|||ADT^A01|1|P |2.5.1 |||AL |NE ",
            b"MSH|^~\\&|A|B|C|D|||ADT^A01|1|P|2.5.1||| | ",
            b"MSH|^~\\&|A|B|C|D|||ADT^A01|1|P|2.5.1|||XX|??",
        ] {
            assert_eq!(check(&p, m), Ok(()), "{}", String::from_utf8_lossy(m));
        }
        for cs in ["UTF-8", "UNICODE", "8859/15", "ISO-8859-1", "ISO IR6", "ASCII", "UNICODE UTF-8 ", "ISO IR100"] {
            let m = format!("MSH|^~\\&|A|B|C|D|||ADT^A01|1|P|2.5||||||{cs}");
            assert_eq!(check(&p, m.as_bytes()), Ok(()), "{cs}");
        }
        // Without a default, an empty MSH-11 is missing.
        let strict = Policy::new(&Accept { default_processing_id: String::new(), ..Accept::default() });
        assert_eq!(check(&strict, b"MSH|^~\\&|A|B|C|D|||ADT^A01|1||2.5.1"), Err(ErrorCode::RequiredFieldMissing));
        // The default is a processing ID like any other: it must be listed.
        let debug = Policy::new(&Accept { default_processing_id: "D".into(), ..Accept::default() });
        assert_eq!(check(&debug, b"MSH|^~\\&|A|B|C|D|||ADT^A01|1||2.5.1"), Err(ErrorCode::UnsupportedProcessingId));
    }

    #[test]
    fn segment_ids_are_checked() {
        assert!(check_segments(b"MSH|^~\\&\rPID|1\rZPD|x\r\n", b'|').is_ok());
        assert!(check_segments(b"MSH|^~\\&\rPID|1\rhello world\r", b'|').is_err());
        assert!(check_segments(b"MSH|^~\\&\rPIDX|1\r", b'|').is_err());
        assert!(check_segments(b"MSH|^~\\&\r\x00\x01\x02|", b'|').is_err());
    }
}
