//! Which messages a listener accepts: version, processing ID, message type, character set.

use crate::config::Accept;
use crate::hl7::{ErrorCode, Header, Hl7Error, Location};

/// MSH-18 values the gateway can decode (empty means the default, ASCII).
const CHARSETS: &[&[u8]] = &[b"", b"ASCII", b"8859/1", b"UNICODE UTF-8"];

#[derive(Debug, Clone)]
pub struct Policy {
    versions: Vec<String>,
    processing_ids: Vec<String>,
    /// (message code, optional trigger)
    types: Vec<(String, Option<String>)>,
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
        Policy { versions: accept.versions.clone(), processing_ids: accept.processing_ids.clone(), types }
    }

    /// Checks a parsed header; the error carries the table 0357 code and field.
    pub fn check(&self, h: &Header) -> Result<(), Hl7Error> {
        let listed = |list: &[String], v: &[u8]| list.iter().any(|x| x.as_bytes() == v);
        if !listed(&self.versions, h.echo.version) {
            return Err(Hl7Error::at(ErrorCode::UnsupportedVersionId, Location::field("MSH", 12)));
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
        if !CHARSETS.contains(&h.echo.charset) {
            return Err(Hl7Error::new(
                ErrorCode::DataTypeError,
                Location::field("MSH", 18),
                "Unsupported character set",
            ));
        }
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
        p.check(&msh::parse(m).unwrap()).map_err(|e| e.code)
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
        assert_eq!(check(&p, b"MSH|^~\\&|A|B|C|D|||ADT^A01|1|P|2.5||||||ISO IR87"), Err(ErrorCode::DataTypeError));
        assert_eq!(check(&p, b"MSH|^~\\&|A|B|C|D|||ADT^A01|1|P|2.5||||||8859/1"), Ok(()));
    }

    #[test]
    fn segment_ids_are_checked() {
        assert!(check_segments(b"MSH|^~\\&\rPID|1\rZPD|x\r\n", b'|').is_ok());
        assert!(check_segments(b"MSH|^~\\&\rPID|1\rhello world\r", b'|').is_err());
        assert!(check_segments(b"MSH|^~\\&\rPIDX|1\r", b'|').is_err());
        assert!(check_segments(b"MSH|^~\\&\r\x00\x01\x02|", b'|').is_err());
    }
}
