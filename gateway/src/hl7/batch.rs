//! HL7 batch files: `[FHS] { [BHS] { MSH … } [BTS] } [FTS]`, split into messages.
//!
//! This module owns [`split`] and what it reports ([`Batch`], `BatchInfo`,
//! `BatchWarning`). Splitting borrows: every message is a slice of the input, from its MSH
//! up to the next control segment (MSH, BHS, BTS, FHS, FTS) or the end, terminators included,
//! ready for [`parse`](super::parser::parse). Segments are found by the parser's line rules
//! (CR, LF or CRLF). Splitting never fails: a plain message or a run of concatenated messages
//! without any header splits as well, and every deviation from the batch protocol (a count in
//! BTS-1 or FTS-1 that does not match, a missing trailer, a segment outside any message) is a
//! `BatchWarning` for the caller to log or act on.

use std::ops::Range;

use super::msh;
use super::parser::{is_segment_id, lines};

/// A split batch file.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Batch<'a> {
    /// The FHS segment, if any.
    pub(crate) file_header: Option<&'a [u8]>,
    /// The FTS segment, if any.
    pub(crate) file_trailer: Option<&'a [u8]>,
    /// One entry per batch: each BHS, plus an implicit batch for messages outside any BHS.
    pub(crate) batches: Vec<BatchInfo<'a>>,
    /// All messages, in order.
    pub messages: Vec<&'a [u8]>,
    pub(crate) warnings: Vec<BatchWarning>,
}

/// One batch of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BatchInfo<'a> {
    /// The BHS segment; `None` for messages that came without one.
    pub(crate) header: Option<&'a [u8]>,
    /// The BTS segment, if any.
    pub(crate) trailer: Option<&'a [u8]>,
    /// This batch's messages, as indexes into [`Batch::messages`].
    pub(crate) messages: Range<usize>,
    /// BTS-1, the message count the sender declared, when given.
    pub(crate) declared_count: Option<u64>,
}

/// A deviation from the batch protocol. The messages are split regardless.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BatchWarning {
    /// BTS-1 does not match the messages found in batch `batch` (index into `batches`).
    MessageCountMismatch { batch: usize, declared: u64, found: usize },
    /// FTS-1 does not match the number of batches found.
    BatchCountMismatch { declared: u64, found: usize },
    /// BTS-1 or FTS-1 is not a number (`batch` is `None` for FTS-1).
    UnreadableCount { batch: Option<usize> },
    /// Batch `batch` began with a BHS but ended without a BTS.
    MissingBatchTrailer { batch: usize },
    /// The file began with an FHS but has no FTS.
    MissingFileTrailer,
    /// A segment outside any message (before the first MSH of a batch, or after FTS), at byte
    /// `offset` of the input.
    StraySegment { offset: usize, id: String },
}

impl<'a> Batch<'a> {
    /// How many messages were found.
    pub fn message_count(&self) -> usize {
        self.messages.len()
    }
}

/// Counts and warnings only: messages are patient data.
impl std::fmt::Debug for Batch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("file_header", &self.file_header.is_some())
            .field("batches", &self.batches.len())
            .field("messages", &self.messages.len())
            .field("warnings", &self.warnings)
            .finish()
    }
}

/// Splits a batch file (or a single message) into messages.
pub fn split(raw: &[u8]) -> Batch<'_> {
    let body = msh::trim_start(raw);
    let offset = raw.len() - body.len();
    let mut s = Splitter { raw: body, offset, batch: Batch::default(), message: None, open: None, ended: false };
    let field = field_separator(body);
    for line in lines(body, field) {
        s.line(line, field);
    }
    s.finish()
}

/// The field separator: the fourth byte of a leading FHS, BHS or MSH; `|` otherwise.
fn field_separator(raw: &[u8]) -> u8 {
    match raw {
        [b'F' | b'B', b'H', b'S', f, ..] | [b'M', b'S', b'H', f, ..] => *f,
        _ => b'|',
    }
}

struct Splitter<'a> {
    raw: &'a [u8],
    /// Bytes trimmed off the front of the input (for warning offsets).
    offset: usize,
    batch: Batch<'a>,
    /// Start of the message being collected.
    message: Option<usize>,
    /// Whether a batch is open, and whether a BHS opened it.
    open: Option<bool>,
    /// Whether FTS has been seen.
    ended: bool,
}

impl<'a> Splitter<'a> {
    fn line(&mut self, line: Range<usize>, field: u8) {
        let segment = &self.raw[line.clone()];
        let id = segment.get(..3).filter(|id| is_segment_id(id) && segment.get(3).is_none_or(|&b| b == field));
        match id.unwrap_or_default() {
            b"FHS" => {
                self.end_message(line.start);
                self.batch.file_header = Some(segment);
            }
            b"BHS" => {
                self.end_batch(line.start, None);
                self.begin_batch(Some(segment));
            }
            b"MSH" => {
                self.end_message(line.start);
                if self.open.is_none() {
                    self.begin_batch(None);
                }
                self.message = Some(line.start);
            }
            b"BTS" => self.end_batch(line.start, Some(segment)),
            b"FTS" => {
                self.end_batch(line.start, None);
                self.batch.file_trailer = Some(segment);
                self.check_file_count(segment, field);
                self.ended = true;
            }
            _ if self.message.is_some() && !self.ended => {}
            _ => {
                let id = String::from_utf8_lossy(segment.get(..3).unwrap_or(segment)).into_owned();
                self.batch.warnings.push(BatchWarning::StraySegment { offset: self.offset + line.start, id });
            }
        }
    }

    fn begin_batch(&mut self, header: Option<&'a [u8]>) {
        let at = self.batch.messages.len();
        self.batch.batches.push(BatchInfo { header, trailer: None, messages: at..at, declared_count: None });
        self.open = Some(header.is_some());
    }

    fn end_message(&mut self, end: usize) {
        if let Some(start) = self.message.take() {
            self.batch.messages.push(&self.raw[start..end]);
            if let Some(b) = self.batch.batches.last_mut() {
                b.messages.end = self.batch.messages.len();
            }
        }
    }

    /// Ends the open batch (if any) at `end`, with its BTS if there is one.
    fn end_batch(&mut self, end: usize, trailer: Option<&'a [u8]>) {
        self.end_message(end);
        if trailer.is_some() && self.open.is_none() {
            self.begin_batch(None); // A BTS with no BHS and no message before it.
        }
        let Some(opened_by_bhs) = self.open.take() else { return };
        let index = self.batch.batches.len() - 1;
        let field = field_separator(self.raw);
        let info = &mut self.batch.batches[index];
        info.trailer = trailer;
        match trailer.map(|t| first_field_number(t, field)) {
            Some(Count::Number(declared)) => {
                info.declared_count = Some(declared);
                let found = info.messages.len();
                if declared != found as u64 {
                    self.batch.warnings.push(BatchWarning::MessageCountMismatch { batch: index, declared, found });
                }
            }
            Some(Count::Unreadable) => self.batch.warnings.push(BatchWarning::UnreadableCount { batch: Some(index) }),
            Some(Count::Absent) => {}
            None if opened_by_bhs => self.batch.warnings.push(BatchWarning::MissingBatchTrailer { batch: index }),
            None => {}
        }
    }

    fn check_file_count(&mut self, fts: &[u8], field: u8) {
        match first_field_number(fts, field) {
            Count::Number(declared) => {
                let found = self.batch.batches.len();
                if declared != found as u64 {
                    self.batch.warnings.push(BatchWarning::BatchCountMismatch { declared, found });
                }
            }
            Count::Unreadable => self.batch.warnings.push(BatchWarning::UnreadableCount { batch: None }),
            Count::Absent => {}
        }
    }

    fn finish(mut self) -> Batch<'a> {
        self.end_batch(self.raw.len(), None);
        if self.batch.file_header.is_some() && self.batch.file_trailer.is_none() {
            self.batch.warnings.push(BatchWarning::MissingFileTrailer);
        }
        self.batch
    }
}

enum Count {
    Absent,
    Number(u64),
    Unreadable,
}

/// Field 1 of a BTS or FTS segment as a count.
fn first_field_number(segment: &[u8], field: u8) -> Count {
    let value = segment.split(|&b| b == field).nth(1).unwrap_or_default().trim_ascii();
    if value.is_empty() {
        return Count::Absent;
    }
    let digits = value.iter().all(u8::is_ascii_digit);
    match std::str::from_utf8(value).ok().filter(|_| digits).and_then(|v| v.parse().ok()) {
        Some(n) => Count::Number(n),
        None => Count::Unreadable,
    }
}

#[cfg(test)]
mod tests {
    use super::super::parser::parse;
    use super::*;

    const M1: &str = "MSH|^~\\&|A|B|C|D|||ADT^A08|1|P|2.5\rPID|1||X\r";
    const M2: &str = "MSH|^~\\&|A|B|C|D|||ADT^A08|2|P|2.5\rPID|1||Y\rPV1|1\r";

    fn control_ids(b: &Batch) -> Vec<String> {
        b.messages.iter().map(|m| parse(m).unwrap().msh().field(10).value().into_owned()).collect()
    }

    fn with_endings(s: &str, ending: &str) -> String {
        s.replace('\r', ending)
    }

    #[test]
    fn full_batch_file_with_every_line_ending() {
        let file = format!("FHS|^~\\&|A\rBHS|^~\\&|A\r{M1}{M2}BTS|2\rFTS|1\r");
        for ending in ["\r", "\n", "\r\n"] {
            let raw = with_endings(&file, ending);
            let b = split(raw.as_bytes());
            assert_eq!(control_ids(&b), ["1", "2"], "{ending:?}");
            assert_eq!(b.warnings, [], "{ending:?}");
            assert_eq!(b.batches.len(), 1);
            assert_eq!(b.batches[0].declared_count, Some(2));
            assert_eq!(b.batches[0].messages, 0..2);
            assert_eq!(b.file_header, Some(&b"FHS|^~\\&|A"[..]));
            assert_eq!(b.file_trailer, Some(&b"FTS|1"[..]));
            assert_eq!(b.batches[0].trailer, Some(&b"BTS|2"[..]));
            assert_eq!(b.message_count(), 2);
            // Each message keeps its own segments only.
            assert_eq!(parse(b.messages[1]).unwrap().segment_count(), 3);
            assert_eq!(b.messages[0], with_endings(M1, ending).as_bytes());
        }
    }

    #[test]
    fn count_mismatches_are_warnings() {
        let raw = format!("FHS|^~\\&\rBHS|^~\\&\r{M1}{M2}BTS|3\rBHS|^~\\&\r{M1}BTS|x\rFTS|5\r");
        let b = split(raw.as_bytes());
        assert_eq!(b.message_count(), 3);
        assert_eq!(b.batches.len(), 2);
        assert_eq!(b.batches[1].messages, 2..3);
        assert_eq!(
            b.warnings,
            [
                BatchWarning::MessageCountMismatch { batch: 0, declared: 3, found: 2 },
                BatchWarning::UnreadableCount { batch: Some(1) },
                BatchWarning::BatchCountMismatch { declared: 5, found: 2 },
            ]
        );
    }

    #[test]
    fn missing_trailers_are_warnings() {
        let raw = format!("FHS|^~\\&\rBHS|^~\\&\r{M1}BHS|^~\\&\r{M2}");
        let b = split(raw.as_bytes());
        assert_eq!(control_ids(&b), ["1", "2"]);
        assert_eq!(
            b.warnings,
            [
                BatchWarning::MissingBatchTrailer { batch: 0 },
                BatchWarning::MissingBatchTrailer { batch: 1 },
                BatchWarning::MissingFileTrailer,
            ]
        );
    }

    #[test]
    fn plain_and_concatenated_messages() {
        let b = split(M1.as_bytes());
        assert_eq!(b.messages, [M1.as_bytes()]);
        assert_eq!(b.warnings, []);
        assert_eq!(b.batches.len(), 1);
        assert_eq!(b.batches[0].header, None);
        let raw = format!("\u{feff}{M1}\r\n{M2}");
        let b = split(raw.as_bytes());
        assert_eq!(control_ids(&b), ["1", "2"]);
        assert_eq!(b.warnings, []);
    }

    #[test]
    fn stray_segments_and_empty_counts() {
        let raw = format!("BHS|^~\\&\rNTE|1\r{M1}BTS\rFTS|\rPID|9\r");
        let b = split(raw.as_bytes());
        assert_eq!(control_ids(&b), ["1"]);
        assert_eq!(b.batches[0].declared_count, None);
        assert_eq!(
            b.warnings,
            [
                BatchWarning::StraySegment { offset: 9, id: "NTE".into() },
                BatchWarning::StraySegment { offset: raw.len() - 6, id: "PID".into() },
            ]
        );
    }

    #[test]
    fn custom_field_separator_and_empty_input() {
        let raw = "FHS#^~\\&\rMSH#^~\\&#A#B#C#D###ADT^A08#7#P#2.5\rBTS#1\rFTS#1\r";
        let b = split(raw.as_bytes());
        assert_eq!(control_ids(&b), ["7"]);
        assert_eq!(b.warnings, []);
        let empty = split(b"");
        assert!(empty.messages.is_empty() && empty.warnings.is_empty() && empty.batches.is_empty());
    }
}
