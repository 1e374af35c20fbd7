//! Message errors as HL7 reports them: a table 0357 code and the location (ERL).

use std::borrow::Cow;
use std::fmt;

/// HL7 table 0357, message error condition codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    SegmentSequenceError,
    RequiredFieldMissing,
    DataTypeError,
    TableValueNotFound,
    UnsupportedMessageType,
    UnsupportedEventCode,
    UnsupportedProcessingId,
    UnsupportedVersionId,
    ApplicationInternalError,
}

impl ErrorCode {
    pub(crate) fn code(self) -> u16 {
        match self {
            ErrorCode::SegmentSequenceError => 100,
            ErrorCode::RequiredFieldMissing => 101,
            ErrorCode::DataTypeError => 102,
            ErrorCode::TableValueNotFound => 103,
            ErrorCode::UnsupportedMessageType => 200,
            ErrorCode::UnsupportedEventCode => 201,
            ErrorCode::UnsupportedProcessingId => 202,
            ErrorCode::UnsupportedVersionId => 203,
            ErrorCode::ApplicationInternalError => 207,
        }
    }

    /// The table's display text.
    pub(crate) fn text(self) -> &'static str {
        match self {
            ErrorCode::SegmentSequenceError => "Segment sequence error",
            ErrorCode::RequiredFieldMissing => "Required field missing",
            ErrorCode::DataTypeError => "Data type error",
            ErrorCode::TableValueNotFound => "Table value not found",
            ErrorCode::UnsupportedMessageType => "Unsupported message type",
            ErrorCode::UnsupportedEventCode => "Unsupported event code",
            ErrorCode::UnsupportedProcessingId => "Unsupported processing id",
            ErrorCode::UnsupportedVersionId => "Unsupported version id",
            ErrorCode::ApplicationInternalError => "Application internal error",
        }
    }

    /// Rejections (AR/CR) are for messages the receiver does not take at all; errors
    /// (AE/CE) for messages it could not process.
    pub(crate) fn is_rejection(self) -> bool {
        matches!(
            self,
            ErrorCode::UnsupportedMessageType
                | ErrorCode::UnsupportedEventCode
                | ErrorCode::UnsupportedProcessingId
                | ErrorCode::UnsupportedVersionId
        )
    }
}

/// Where an error is (HL7 ERL: segment, sequence, field, component); 0 means "not given".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub(crate) segment: &'static str,
    pub(crate) sequence: u16,
    pub(crate) field: u16,
    pub(crate) component: u16,
}

impl Location {
    pub const NONE: Location = Location { segment: "", sequence: 0, field: 0, component: 0 };

    pub(crate) fn segment(segment: &'static str) -> Self {
        Location { segment, sequence: 1, field: 0, component: 0 }
    }
    pub fn field(segment: &'static str, field: u16) -> Self {
        Location { field, ..Location::segment(segment) }
    }
    pub fn component(segment: &'static str, field: u16, component: u16) -> Self {
        Location { component, ..Location::field(segment, field) }
    }
}

/// `MSH-9.1` style, for people and logs.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.segment)?;
        if self.field > 0 {
            write!(f, "-{}", self.field)?;
        }
        if self.component > 0 {
            write!(f, ".{}", self.component)?;
        }
        Ok(())
    }
}

/// A message error: code, location and a PHI-free diagnostic text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hl7Error {
    pub(crate) code: ErrorCode,
    pub(crate) location: Location,
    pub(crate) text: Cow<'static, str>,
}

impl Hl7Error {
    pub fn new(code: ErrorCode, location: Location, text: &'static str) -> Self {
        Hl7Error { code, location, text: Cow::Borrowed(text) }
    }
    /// With a text made for this message; it must hold no PHI (counts, codes, segment IDs).
    pub fn with_text(code: ErrorCode, location: Location, text: String) -> Self {
        Hl7Error { code, location, text: Cow::Owned(text) }
    }
    pub fn at(code: ErrorCode, location: Location) -> Self {
        Hl7Error::new(code, location, code.text())
    }
}

impl fmt::Display for Hl7Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code.code(), self.text)?;
        if !self.location.segment.is_empty() {
            write!(f, " at {}", self.location)?;
        }
        Ok(())
    }
}

impl std::error::Error for Hl7Error {}
