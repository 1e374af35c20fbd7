//! The HL7 v2 message parser: one pass over the raw bytes into a compact index, and borrowed,
//! typed views over it.
//!
//! This module owns [`Message`] and the navigation types [`Segment`] → [`Field`] → [`Rep`]
//! (repetition) → [`Component`] → [`SubComponent`]. Nothing is copied at parse time: the index
//! holds byte offsets into the caller's buffer, and text is decoded (unescaped, converted from
//! the message character set) only when a value is asked for, borrowing when it can.
//!
//! # Layout of the index
//! Built in one pass that finds field separators and segment terminators eight bytes at a
//! time. One `Vec<u32>` of field-separator offsets for the whole message and one small span per
//! segment pointing into it. Field `n` of a segment is found in O(1); repetitions, components
//! and subcomponents are found by scanning the (short) field with `memchr`. The index is at
//! most 4 bytes per input byte for separators plus 12 bytes per 4 input bytes for segments
//! (≤ 7 × input), and typically smaller than the input; nothing is sized from a value the
//! sender declares.
//!
//! # Choices where HL7 leaves room
//! - Segment terminators: CR is the standard one. If the first line break of the message is an
//!   LF, LF terminates segments too (LF-only files). Otherwise an LF ends a segment only right
//!   after a CR (CRLF) or when it is followed by something that looks like a segment start
//!   (`ABC|`); any other LF is data, as senders put raw LFs into text fields.
//! - Blank lines (empty, or only spaces, tabs and LFs) are skipped, and so are LFs at the start
//!   of a segment; a leading UTF-8 BOM is dropped.
//! - MSH, BHS and FHS number their fields as the standard does: field 1 is the field separator
//!   itself and field 2 the encoding characters, both returned as-is (never unescaped or split).
//! - An *empty* element (absent or zero length) is distinguished from an explicit *null* (`""`):
//!   see [`Presence`]. `value()` reads both as empty text.
//! - `value()` at any level returns the first leaf below it (first repetition, first component,
//!   first subcomponent), unescaped; `raw()` returns the element with its delimiters.
//! - Character sets (MSH-18): every ASCII-compatible set of HL7 table 0211 and the aliases
//!   senders use (see `hl7::charset`). A message must be valid in its declared set; an
//!   `ASCII` (or undeclared) message holding 8-bit bytes is read as UTF-8 when it is valid
//!   UTF-8 and as ISO 8859-1 otherwise, since senders routinely leave MSH-18 empty.

use std::borrow::Cow;
use std::fmt;

pub use super::charset::Charset;
use super::error::{ErrorCode, Hl7Error, Location};
use super::escape::Codec;
use super::msh::{self, Delimiters};

/// HL7 versions (MSH-12.1) the parser accepts.
pub(crate) const SUPPORTED_VERSIONS: &[&str] =
    &["2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2"];

/// Whether an element has a value (HL7 distinguishes "not sent" from "sent as null").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Not present, or zero length: the receiver keeps what it has.
    Empty,
    /// `""`: the sender explicitly nulls the value.
    Null,
    /// Anything else.
    Valued,
}

impl Presence {
    fn of(raw: &[u8]) -> Presence {
        match raw {
            b"" => Presence::Empty,
            b"\"\"" => Presence::Null,
            _ => Presence::Valued,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    end: u32,
    /// Index in `Message::separators` of this segment's first field separator.
    first_separator: u32,
}

/// A parsed message: the raw bytes and an index of segment and field boundaries.
pub struct Message<'a> {
    raw: &'a [u8],
    codec: Codec,
    charset: Charset,
    version: &'static str,
    spans: Vec<Span>,
    separators: Vec<u32>,
}

/// Parses one message. `raw` may start with a UTF-8 BOM and blank lines.
///
/// Errors: the MSH checks of [`msh::parse`], an unsupported version (MSH-12) or character
/// set (MSH-18), bytes that are not valid in the declared character set, or a segment whose
/// ID is not three characters `[A-Z0-9]`.
pub fn parse(raw: &[u8]) -> Result<Message<'_>, Hl7Error> {
    let raw = msh::trim_start(raw);
    if raw.len() >= u32::MAX as usize {
        return Err(Hl7Error::new(ErrorCode::ApplicationInternalError, Location::NONE, "Message too large"));
    }
    let header = msh::parse(raw).map_err(|e| e.error)?;
    let version = supported_version(header.echo.version)?;
    let charset = Charset::from_msh18(header.charset_field, header.echo.delimiters.repetition)?;
    let encoding = charset.encoding(raw, &header.echo.delimiters)?;
    let codec = Codec { delimiters: header.echo.delimiters, encoding };
    let (spans, separators) = index(raw, header.echo.delimiters.field)?;
    Ok(Message { raw, codec, charset, version, spans, separators })
}

fn supported_version(v: &[u8]) -> Result<&'static str, Hl7Error> {
    SUPPORTED_VERSIONS
        .iter()
        .find(|s| s.as_bytes() == v)
        .copied()
        .ok_or_else(|| Hl7Error::at(ErrorCode::UnsupportedVersionId, Location::field("MSH", 12)))
}

// ---------------------------------------------------------------------------------------------
// Indexing

/// Counts field separators and line breaks, to size the index once. Counts in byte-wide
/// chunks so that the loop vectorizes.
fn count(raw: &[u8], field: u8) -> (usize, usize) {
    let (mut separators, mut breaks) = (0usize, 0usize);
    for chunk in raw.chunks(255) {
        let (mut s, mut b) = (0u8, 0u8);
        for &byte in chunk {
            s += u8::from(byte == field);
            b += u8::from(byte == b'\r') + u8::from(byte == b'\n');
        }
        separators += usize::from(s);
        breaks += usize::from(b);
    }
    (separators, breaks)
}

/// Positions of the bytes equal to `a`, `b` or `c`, in order. Scans eight bytes at a time
/// (SWAR), which beats per-byte branching and `memchr3` when hits are as dense as HL7's
/// field separators.
fn positions3(raw: &[u8], a: u8, b: u8, c: u8) -> impl Iterator<Item = usize> + '_ {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    // 0x80 in each byte of `x` that is zero, exactly (no borrow between bytes).
    let zero = |x: u64| !(((x & HI7) + HI7) | x | HI7);
    let (sa, sb, sc) = (LO * u64::from(a), LO * u64::from(b), LO * u64::from(c));
    let words = raw.chunks_exact(8);
    let tail_start = raw.len() - words.remainder().len();
    words
        .enumerate()
        .flat_map(move |(i, w)| {
            let w = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            let mut mask = zero(w ^ sa) | zero(w ^ sb) | zero(w ^ sc);
            std::iter::from_fn(move || {
                (mask != 0).then(|| {
                    let bit = mask.trailing_zeros() as usize;
                    mask &= mask - 1;
                    i * 8 + bit / 8
                })
            })
        })
        .chain((tail_start..raw.len()).filter(move |&j| matches!(raw[j], x if x == a || x == b || x == c)))
}

/// Whether this message terminates segments with bare LFs (its first line break is an LF).
pub(crate) fn lf_terminated(raw: &[u8]) -> bool {
    memchr::memchr2(b'\r', b'\n', raw).is_some_and(|p| raw[p] == b'\n')
}

/// Whether the LF at `pos` ends a segment (see the module documentation).
pub(crate) fn lf_ends_segment(raw: &[u8], pos: usize, lf_terminated: bool, field: u8) -> bool {
    lf_terminated
        || (pos > 0 && raw[pos - 1] == b'\r')
        || raw.get(pos + 1..pos + 5).is_some_and(|next| is_segment_id(&next[..3]) && next[3] == field)
}

pub(crate) fn is_segment_id(id: &[u8]) -> bool {
    id.len() == 3 && id.iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// `range` without leading LFs (left over from blank lines in a CR message), or `None` when
/// nothing but blanks is left.
pub(crate) fn trim_line(raw: &[u8], range: std::ops::Range<usize>) -> Option<std::ops::Range<usize>> {
    let line = &raw[range.clone()];
    let lfs = line.iter().take_while(|&&b| b == b'\n').count();
    let blank = line.iter().all(|&b| matches!(b, b' ' | b'\t' | b'\n'));
    (!blank).then_some(range.start + lfs..range.end)
}

/// The non-blank lines (segments) of `raw`, as byte ranges, by the terminator rules above.
pub(crate) fn lines(raw: &[u8], field: u8) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let lf = lf_terminated(raw);
    let mut breaks = memchr::memchr2_iter(b'\r', b'\n', raw)
        .filter(move |&p| raw[p] == b'\r' || lf_ends_segment(raw, p, lf, field))
        .chain(std::iter::once(raw.len()));
    let mut start = 0;
    std::iter::from_fn(move || {
        let end = breaks.next()?;
        let line = start..end;
        start = end + 1;
        Some(line)
    })
    .filter_map(move |r| trim_line(raw, r))
}

fn index(raw: &[u8], field: u8) -> Result<(Vec<Span>, Vec<u32>), Hl7Error> {
    let (separators, breaks) = count(raw, field);
    // A segment takes at least 3 bytes plus a terminator.
    let mut spans = Vec::with_capacity((breaks + 1).min(raw.len() / 4 + 1));
    let mut separators = Vec::with_capacity(separators);
    let lf = lf_terminated(raw);
    // The current segment starts at `start`; its field separators at `separators[first..]`.
    let (mut start, mut first) = (0, 0);
    for pos in positions3(raw, field, b'\r', b'\n') {
        match raw[pos] {
            b if b == field => separators.push(pos as u32),
            b'\n' if !lf_ends_segment(raw, pos, lf, field) => {}
            _ => {
                push_segment(&mut spans, raw, start..pos, field, first)?;
                (start, first) = (pos + 1, separators.len());
            }
        }
    }
    push_segment(&mut spans, raw, start..raw.len(), field, first)?;
    Ok((spans, separators))
}

/// Records the segment at `range`, whose first field separator is `first`, unless it is blank.
/// Leading LFs are dropped.
fn push_segment(
    spans: &mut Vec<Span>,
    raw: &[u8],
    range: std::ops::Range<usize>,
    field: u8,
    first: usize,
) -> Result<(), Hl7Error> {
    let Some(range) = trim_line(raw, range) else { return Ok(()) };
    let line = &raw[range.clone()];
    if !is_segment_id(line.get(..3).unwrap_or(line)) || line.get(3).is_some_and(|&b| b != field) {
        // No segment ID to name: its position locates it.
        let text = format!("Invalid segment ID (segment {} of the message)", spans.len() + 1);
        return Err(Hl7Error::with_text(ErrorCode::SegmentSequenceError, Location::NONE, text));
    }
    // Offsets fit: parse() rejects messages of 4 GiB and more.
    spans.push(Span { start: range.start as u32, end: range.end as u32, first_separator: first as u32 });
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Message

impl<'a> Message<'a> {
    /// The message bytes (without a leading BOM or blank lines).
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    pub(crate) fn delimiters(&self) -> &Delimiters {
        &self.codec.delimiters
    }

    /// The declared character set (MSH-18).
    pub fn charset(&self) -> Charset {
        self.charset
    }

    /// MSH-12.1, one of [`SUPPORTED_VERSIONS`].
    pub(crate) fn version(&self) -> &'static str {
        self.version
    }

    pub fn segment_count(&self) -> usize {
        self.spans.len()
    }

    /// All segments, in message order.
    pub fn segments(&self) -> impl ExactSizeIterator<Item = Segment<'_, 'a>> + DoubleEndedIterator + '_ {
        (0..self.spans.len()).map(move |i| self.view(i))
    }

    /// The segment at position `index` (0 is the MSH).
    pub(crate) fn segment_at(&self, index: usize) -> Option<Segment<'_, 'a>> {
        (index < self.spans.len()).then(|| self.view(index))
    }

    /// The first segment with this ID.
    pub(crate) fn segment(&self, id: &str) -> Option<Segment<'_, 'a>> {
        self.segments_named(id).next()
    }

    /// The segments with this ID, in message order.
    pub(crate) fn segments_named<'s, 'i>(
        &'s self,
        id: &'i str,
    ) -> impl Iterator<Item = Segment<'s, 'a>> + use<'s, 'i, 'a> {
        self.segments().filter(move |s| s.id() == id)
    }

    /// The MSH segment (always the first).
    pub(crate) fn msh(&self) -> Segment<'_, 'a> {
        self.view(0)
    }

    fn view(&self, index: usize) -> Segment<'_, 'a> {
        let span = self.spans[index];
        let from = span.first_separator as usize;
        let to = self.spans.get(index + 1).map_or(self.separators.len(), |s| s.first_separator as usize);
        Segment { raw: self.raw, span, separators: &self.separators[from..to], index, codec: self.codec }
    }

    /// Bytes reserved for the index (for the memory-bound tests).
    #[cfg(test)]
    pub(crate) fn index_capacity_bytes(&self) -> usize {
        self.spans.capacity() * std::mem::size_of::<Span>() + self.separators.capacity() * 4
    }
}

/// Without content: values are patient data.
impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("bytes", &self.raw.len())
            .field("segments", &self.spans.len())
            .field("version", &self.version)
            .field("charset", &self.charset)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Segment

/// One segment: a view into a [`Message`]. `'m` borrows the message's index, `'a` the bytes.
#[derive(Clone, Copy)]
pub struct Segment<'m, 'a> {
    raw: &'a [u8],
    span: Span,
    /// Offsets (into `raw`) of this segment's field separators.
    separators: &'m [u32],
    index: usize,
    codec: Codec,
}

impl<'m, 'a> Segment<'m, 'a> {
    /// The three-character segment ID.
    pub(crate) fn id(&self) -> &'a str {
        let start = self.span.start as usize;
        // Checked to be [A-Z0-9]{3} when indexed.
        std::str::from_utf8(&self.raw[start..start + 3]).unwrap_or_default()
    }

    /// Position in the message (0 is the MSH).
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// The whole segment, without its terminator.
    pub(crate) fn raw(&self) -> &'a [u8] {
        &self.raw[self.span.start as usize..self.span.end as usize]
    }

    /// MSH, BHS and FHS: field 1 is the field separator, field 2 the encoding characters.
    pub(crate) fn is_header(&self) -> bool {
        let start = self.span.start as usize;
        matches!(&self.raw[start..start + 3], b"MSH" | b"BHS" | b"FHS")
    }

    /// The number of fields, counting trailing empty ones that were sent (`PID|1|` has 2).
    pub fn field_count(&self) -> usize {
        match (self.is_header(), self.separators.len()) {
            (true, 0) => 0,
            (true, n) => n + 1,
            (false, n) => n,
        }
    }

    /// Field `n` (1-based, HL7 numbering); empty when out of range.
    pub fn field(&self, n: usize) -> Field<'a> {
        if !self.is_header() {
            return self.plain_field(n, false);
        }
        match n {
            0 => Field::new(&[], self.codec, false),
            1 => match self.separators.first() {
                Some(&at) => Field::new(&self.raw[at as usize..at as usize + 1], self.codec, true),
                None => Field::new(&[], self.codec, true),
            },
            2 => self.plain_field(1, true),
            _ => self.plain_field(n - 1, false),
        }
    }

    /// Fields 1 to [`field_count`](Self::field_count).
    pub fn fields(&self) -> impl Iterator<Item = Field<'a>> + use<'m, 'a> {
        let this = *self;
        (1..=self.field_count()).map(move |n| this.field(n))
    }

    /// The text after the `k`-th field separator (k ≥ 1), up to the next one.
    fn plain_field(&self, k: usize, literal: bool) -> Field<'a> {
        let Some(&sep) = k.checked_sub(1).and_then(|i| self.separators.get(i)) else {
            return Field::new(&[], self.codec, literal);
        };
        let end = self.separators.get(k).map_or(self.span.end, |&e| e);
        Field::new(&self.raw[sep as usize + 1..end as usize], self.codec, literal)
    }
}

impl fmt::Debug for Segment<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment").field("id", &self.id()).field("index", &self.index).finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Field, repetition, component, subcomponent

/// The `n`-th (1-based) piece of `raw` split on `sep`; empty when out of range.
fn nth_piece(raw: &[u8], sep: u8, n: usize) -> &[u8] {
    if n == 0 {
        return &[];
    }
    let mut start = 0;
    let mut seps = memchr::memchr_iter(sep, raw);
    for _ in 1..n {
        match seps.next() {
            Some(p) => start = p + 1,
            None => return &[],
        }
    }
    let end = seps.next().unwrap_or(raw.len());
    &raw[start..end]
}

/// How many pieces `raw` splits into on `sep` (0 when empty).
fn piece_count(raw: &[u8], sep: u8) -> usize {
    if raw.is_empty() {
        0
    } else {
        memchr::memchr_iter(sep, raw).count() + 1
    }
}

fn pieces(raw: &[u8], sep: u8) -> impl Iterator<Item = &[u8]> {
    (!raw.is_empty()).then(|| raw.split(move |&b| b == sep)).into_iter().flatten()
}

/// Shared state of every level: the raw bytes, how to decode them, and whether they are
/// literal (MSH-1 and MSH-2: never split or unescaped).
#[derive(Clone, Copy)]
struct Piece<'a> {
    raw: &'a [u8],
    codec: Codec,
    literal: bool,
}

impl<'a> Piece<'a> {
    fn child(self, sep: u8, n: usize) -> Piece<'a> {
        let raw = match (self.literal, n) {
            (false, _) => nth_piece(self.raw, sep, n),
            (true, 1) => self.raw,
            (true, _) => &[],
        };
        Piece { raw, ..self }
    }

    fn child_count(self, sep: u8) -> usize {
        if self.literal {
            usize::from(!self.raw.is_empty())
        } else {
            piece_count(self.raw, sep)
        }
    }

    fn children(self, sep: u8) -> impl Iterator<Item = Piece<'a>> {
        let split = if self.literal { b'\r' } else { sep }; // CR never occurs inside a segment
        pieces(self.raw, split).map(move |raw| Piece { raw, ..self })
    }

    fn leaf_text(self) -> Cow<'a, str> {
        match Presence::of(self.raw) {
            Presence::Empty | Presence::Null => Cow::Borrowed(""),
            Presence::Valued if self.literal => self.codec.text(self.raw),
            Presence::Valued => self.codec.decode(self.raw),
        }
    }

    fn d(&self) -> &Delimiters {
        &self.codec.delimiters
    }
}

macro_rules! common_accessors {
    ($ty:ident) => {
        impl<'a> $ty<'a> {
            /// The raw bytes, still escaped and with their delimiters.
            pub fn raw(&self) -> &'a [u8] {
                self.0.raw
            }

            /// Absent or zero length (not the same as [`is_null`](Self::is_null)).
            pub(crate) fn is_empty(&self) -> bool {
                self.0.raw.is_empty()
            }

            /// The explicit HL7 null `""`.
            pub fn is_null(&self) -> bool {
                self.presence() == Presence::Null
            }

            pub(crate) fn presence(&self) -> Presence {
                Presence::of(self.0.raw)
            }
        }

        /// Shows only the length: values are patient data.
        impl fmt::Debug for $ty<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty)).field("len", &self.0.raw.len()).finish()
            }
        }
    };
}

/// A field: repetitions separated by the repetition character.
#[derive(Clone, Copy)]
pub struct Field<'a>(Piece<'a>);

/// One repetition of a field: components separated by the component character.
#[derive(Clone, Copy)]
pub struct Rep<'a>(Piece<'a>);

/// One component: subcomponents separated by the subcomponent character.
#[derive(Clone, Copy)]
pub struct Component<'a>(Piece<'a>);

/// One subcomponent: a leaf value.
#[derive(Clone, Copy)]
pub struct SubComponent<'a>(Piece<'a>);

common_accessors!(Field);
common_accessors!(Rep);
common_accessors!(Component);
common_accessors!(SubComponent);

impl<'a> Field<'a> {
    fn new(raw: &'a [u8], codec: Codec, literal: bool) -> Self {
        Field(Piece { raw, codec, literal })
    }

    /// Repetition `i` (1-based); empty when out of range.
    pub(crate) fn rep(&self, i: usize) -> Rep<'a> {
        Rep(self.0.child(self.0.d().repetition, i))
    }

    pub fn rep_count(&self) -> usize {
        self.0.child_count(self.0.d().repetition)
    }

    pub fn reps(&self) -> impl Iterator<Item = Rep<'a>> {
        self.0.children(self.0.d().repetition).map(Rep)
    }

    /// Component `i` of the first repetition.
    pub(crate) fn component(&self, i: usize) -> Component<'a> {
        self.rep(1).component(i)
    }

    /// The first leaf (first repetition, component and subcomponent), unescaped.
    pub(crate) fn value(&self) -> Cow<'a, str> {
        self.rep(1).value()
    }
}

impl<'a> Rep<'a> {
    /// Component `i` (1-based); empty when out of range.
    pub(crate) fn component(&self, i: usize) -> Component<'a> {
        Component(self.0.child(self.0.d().component, i))
    }

    pub(crate) fn component_count(&self) -> usize {
        self.0.child_count(self.0.d().component)
    }

    pub fn components(&self) -> impl Iterator<Item = Component<'a>> {
        self.0.children(self.0.d().component).map(Component)
    }

    /// The first leaf (first component and subcomponent), unescaped.
    pub(crate) fn value(&self) -> Cow<'a, str> {
        self.component(1).value()
    }
}

impl<'a> Component<'a> {
    /// Subcomponent `i` (1-based); empty when out of range.
    pub(crate) fn sub(&self, i: usize) -> SubComponent<'a> {
        SubComponent(self.0.child(self.0.d().subcomponent, i))
    }

    pub(crate) fn sub_count(&self) -> usize {
        self.0.child_count(self.0.d().subcomponent)
    }

    pub fn subs(&self) -> impl Iterator<Item = SubComponent<'a>> {
        self.0.children(self.0.d().subcomponent).map(SubComponent)
    }

    /// The first subcomponent, unescaped.
    pub fn value(&self) -> Cow<'a, str> {
        self.sub(1).value()
    }
}

impl<'a> SubComponent<'a> {
    /// The value, unescaped and decoded; empty for both empty and null (`""`).
    pub fn value(&self) -> Cow<'a, str> {
        self.0.leaf_text()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADT: &[u8] = b"MSH|^~\\&|EPIC|HOSP|GW|CLOUD|20260101120000||ADT^A01^ADT_A01|CTRL1|P|2.5.1\r\
EVN|A01|20260101120000\r\
PID|1||MRN123^^^HOSP^MR~999^^^SSA^SS||DOE^JANE^Q||19800101|F|||1 Main St^^Town^ST^12345\r\
PV1|1|I|W^101^1||||\"\"|\r";

    fn msg(raw: &[u8]) -> Message<'_> {
        parse(raw).unwrap_or_else(|e| panic!("{e}"))
    }

    fn ids(m: &Message) -> Vec<String> {
        m.segments().map(|s| s.id().to_owned()).collect()
    }

    fn err(raw: &[u8]) -> Hl7Error {
        parse(raw).unwrap_err()
    }

    #[test]
    fn segments_and_fields() {
        let m = msg(ADT);
        assert_eq!(ids(&m), ["MSH", "EVN", "PID", "PV1"]);
        assert_eq!(m.version(), "2.5.1");
        assert_eq!(m.charset(), Charset::Ascii);
        let pid = m.segment("PID").unwrap();
        assert_eq!(pid.index(), 2);
        assert_eq!(pid.field(3).rep_count(), 2);
        assert_eq!(pid.field(3).rep(2).component(4).value(), "SSA");
        assert_eq!(pid.field(5).component(2).value(), "JANE");
        assert_eq!(pid.field(5).value(), "DOE");
        assert_eq!(pid.field(11).rep(1).component_count(), 5);
        assert_eq!(pid.field_count(), 11);
        assert_eq!(m.segments_named("PID").count(), 1);
        assert!(m.segment("OBX").is_none());
        assert_eq!(m.segment_at(3).unwrap().id(), "PV1");
        assert!(m.segment_at(4).is_none());
    }

    #[test]
    fn msh_numbering() {
        let m = msg(ADT);
        let msh = m.msh();
        assert_eq!(msh.field(1).value(), "|");
        assert_eq!(msh.field(2).value(), "^~\\&");
        assert_eq!(msh.field(2).rep_count(), 1);
        assert_eq!(msh.field(2).component(1).raw(), b"^~\\&");
        assert!(msh.field(2).component(2).is_empty());
        assert_eq!(msh.field(3).value(), "EPIC");
        assert_eq!(msh.field(9).component(1).value(), "ADT");
        assert_eq!(msh.field(9).component(3).value(), "ADT_A01");
        assert_eq!(msh.field(12).value(), "2.5.1");
        assert_eq!(msh.field_count(), 12);
        assert_eq!(msh.fields().count(), 12);
    }

    #[test]
    fn out_of_range_is_empty() {
        let m = msg(ADT);
        let pid = m.segment("PID").unwrap();
        for f in [pid.field(0), pid.field(12), pid.field(usize::MAX)] {
            assert!(f.is_empty() && !f.is_null());
            assert_eq!(f.value(), "");
            assert_eq!(f.rep_count(), 0);
        }
        assert!(pid.field(3).rep(0).is_empty());
        assert!(pid.field(3).rep(3).is_empty());
        assert!(pid.field(3).component(0).is_empty());
        assert!(pid.field(3).component(99).is_empty());
        assert!(pid.field(3).component(1).sub(0).is_empty());
        assert!(pid.field(3).component(1).sub(2).is_empty());
        assert!(m.msh().field(1).component(2).is_empty());
        assert!(m.msh().field(0).is_empty());
        assert!(m.msh().field(13).is_empty());
    }

    #[test]
    fn empty_versus_null() {
        let m = msg(b"MSH|^~\\&|A|B|C|D|||ADT^A08|1|P|2.4\rPID|1||\"\"|||x^\"\"^^z\r");
        let pid = m.segment("PID").unwrap();
        let (null, empty, absent) = (pid.field(3), pid.field(2), pid.field(30));
        assert!(null.is_null() && !null.is_empty());
        assert_eq!(null.presence(), Presence::Null);
        assert_eq!(null.value(), "");
        assert!(empty.is_empty() && !empty.is_null());
        assert_eq!(empty.presence(), Presence::Empty);
        assert_eq!(absent.presence(), Presence::Empty);
        let name = pid.field(6);
        assert_eq!(name.presence(), Presence::Valued);
        assert!(name.component(2).is_null());
        assert!(name.component(3).is_empty());
        assert_eq!(name.component(4).value(), "z");
    }

    #[test]
    fn subcomponents_and_iterators() {
        let m = msg(b"MSH|^~\\&|A|B|C|D|||ORU^R01|1|P|2.5\rOBX|1|CE|a&b&c^x~y||\r");
        let obx = m.segment("OBX").unwrap();
        let f = obx.field(3);
        assert_eq!(f.component(1).sub_count(), 3);
        assert_eq!(f.component(1).sub(3).value(), "c");
        assert_eq!(f.component(1).value(), "a");
        let subs: Vec<_> = f.component(1).subs().map(|s| s.value().into_owned()).collect();
        assert_eq!(subs, ["a", "b", "c"]);
        let reps: Vec<_> = f.reps().map(|r| r.raw()).collect();
        assert_eq!(reps, [&b"a&b&c^x"[..], b"y"]);
        assert_eq!(f.rep(1).components().count(), 2);
        assert_eq!(obx.field(4).reps().count(), 0);
        assert_eq!(obx.field_count(), 5);
    }

    #[test]
    fn line_endings() {
        let cr = b"MSH|^~\\&|A|B|C|D|||ADT^A08|1|P|2.3\rPID|1||X\rPV1|1\r";
        let lf = b"MSH|^~\\&|A|B|C|D|||ADT^A08|1|P|2.3\nPID|1||X\nPV1|1\n";
        let crlf = b"MSH|^~\\&|A|B|C|D|||ADT^A08|1|P|2.3\r\nPID|1||X\r\nPV1|1\r\n";
        let blank = b"\r\n\r\nMSH|^~\\&|A|B|C|D|||ADT^A08|1|P|2.3\r\r\nPID|1||X\r\n  \r\n\n\nPV1|1";
        let lf_runs = b"MSH|^~\\&|A|B|C|D|||ADT^A08|1|P|2.3\r\n\n\nPID|1||X\r\n\t\n\r\n\nPV1|1\r\n\n";
        for raw in [&cr[..], lf, crlf, blank, lf_runs] {
            let m = msg(raw);
            assert_eq!(ids(&m), ["MSH", "PID", "PV1"], "{:?}", String::from_utf8_lossy(raw));
            assert_eq!(m.segment("PID").unwrap().field(3).raw(), b"X");
            assert_eq!(m.segment("PV1").unwrap().raw(), b"PV1|1");
        }
    }

    #[test]
    fn lf_inside_a_cr_message_is_data_unless_a_segment_follows() {
        let m = msg(b"MSH|^~\\&|A|B|C|D|||ORU^R01|1|P|2.5\rOBX|1|TX|||line 1\nline 2\nOBX|2\r");
        assert_eq!(ids(&m), ["MSH", "OBX", "OBX"]);
        assert_eq!(m.segment("OBX").unwrap().field(5).value(), "line 1\nline 2");
    }

    #[test]
    fn bom_is_skipped() {
        let mut raw = b"\xEF\xBB\xBF".to_vec();
        raw.extend_from_slice(ADT);
        let m = msg(&raw);
        assert_eq!(m.msh().field(10).value(), "CTRL1");
        assert!(m.raw().starts_with(b"MSH"));
    }

    #[test]
    fn custom_and_truncation_delimiters() {
        let m = msg(b"MSH#*@!%$#A#F#R#X#T##ORU*R01#9#P*T#2.7\rPID#1##A*B@C%D!F!\r");
        assert_eq!(m.delimiters().truncation, Some(b'$'));
        assert_eq!(m.msh().field(1).value(), "#");
        assert_eq!(m.msh().field(2).value(), "*@!%$");
        assert_eq!(m.msh().field(9).component(2).value(), "R01");
        let pid3 = m.segment("PID").unwrap().field(3);
        assert_eq!(pid3.component(2).value(), "B");
        assert_eq!(pid3.rep(2).component(1).sub(2).value(), "D#");
    }

    #[test]
    fn escapes_are_decoded_lazily() {
        let m = msg(b"MSH|^~\\&|A|B|C|D|||ORU^R01|1|P|2.5\rNTE|1||a\\F\\b\\.br\\c\\XC3A9\\|plain\r");
        let nte = m.segment("NTE").unwrap();
        assert_eq!(nte.field(3).value(), "a|b\ncé");
        assert!(matches!(nte.field(4).value(), Cow::Borrowed("plain")));
    }

    #[test]
    fn latin1_is_decoded() {
        let m = msg(b"MSH|^~\\&|A|B|C|D|||ADT^A08|1|P|2.5||||||8859/1\rPID|1||1||M\xfcller^J\xf6rg\r");
        assert_eq!(m.charset(), Charset::Latin1);
        let pid5 = m.segment("PID").unwrap().field(5);
        assert_eq!(pid5.value(), "Müller");
        assert_eq!(pid5.component(2).value(), "Jörg");
    }

    #[test]
    fn utf8_charset() {
        let m = msg("MSH|^~\\&|A|B|C|D|||ADT^A08|1|P|2.5||||||UNICODE UTF-8\rPID|1||1||Zoë\r".as_bytes());
        assert_eq!(m.charset(), Charset::Utf8);
        assert!(matches!(m.segment("PID").unwrap().field(5).value(), Cow::Borrowed("Zoë")));
        let e = err(b"MSH|^~\\&|A|B|C|D|||ADT^A08|1|P|2.5||||||UNICODE UTF-8\rPID|1||1||M\xfcller\r");
        assert_eq!(e.code, ErrorCode::DataTypeError);
    }

    #[test]
    fn undeclared_charset_falls_back_to_latin1() {
        let m = msg(b"MSH|^~\\&|A|B|C|D|||ADT^A08|1|P|2.5\rPID|1||1||M\xfcller\r");
        assert_eq!(m.segment("PID").unwrap().field(5).value(), "Müller");
        let m = msg("MSH|^~\\&|A|B|C|D|||ADT^A08|1|P|2.5\rPID|1||1||Müller\r".as_bytes());
        assert_eq!(m.segment("PID").unwrap().field(5).value(), "Müller");
    }

    #[test]
    fn unsupported_charset_is_an_error() {
        for cs in ["UNICODE UTF-16", "ISO IR159", "EBCDIC"] {
            let raw = format!("MSH|^~\\&|A|B|C|D|||ADT^A08|1|P|2.5||||||{cs}\r");
            let e = err(raw.as_bytes());
            assert_eq!(e.code, ErrorCode::DataTypeError);
            assert_eq!(e.location.to_string(), "MSH-18");
        }
        // A later repetition only extends the first (ISO 2022 code extension).
        assert!(parse(b"MSH|^~\\&|A|B|C|D|||ADT^A08|1|P|2.5||||||ASCII~ISO IR87\r").is_ok());
    }

    #[test]
    fn aliases_and_other_table_0211_sets_decode() {
        let m = msg(b"MSH|^~\\&|A|B|C|D|||ADT^A08|1|P|2.5||||||8859/15\rPID|1||1||J\xe4ger^\xa4\r");
        assert_eq!(m.charset(), Charset::Other(encoding_rs::ISO_8859_15));
        assert_eq!(m.segment("PID").unwrap().field(5).value(), "Jäger");
        assert_eq!(m.segment("PID").unwrap().field(5).component(2).value(), "€");
        let m = msg("MSH|^~\\&|A|B|C|D|||ADT^A08|1|P|2.5||||||UTF-8 \rPID|1||1||Zoë\r".as_bytes());
        assert_eq!(m.charset(), Charset::Utf8);
        assert_eq!(m.segment("PID").unwrap().field(5).value(), "Zoë");
    }

    #[test]
    fn versions() {
        for v in SUPPORTED_VERSIONS {
            let raw = format!("MSH|^~\\&|A|B|C|D|||ADT^A08|1|P|{v}\r");
            assert_eq!(msg(raw.as_bytes()).version(), *v);
        }
        for v in ["2.2", "2.1", "2.9", "3.0", "2.5.2", "25"] {
            let raw = format!("MSH|^~\\&|A|B|C|D|||ADT^A08|1|P|{v}\r");
            let e = err(raw.as_bytes());
            assert_eq!(e.code, ErrorCode::UnsupportedVersionId, "{v}");
            assert_eq!(e.location.to_string(), "MSH-12");
        }
        // MSH-12.2 (internationalization code) does not matter.
        assert_eq!(msg(b"MSH|^~\\&|A|B|C|D|||ADT^A08|1|P|2.5.1^DEU\r").version(), "2.5.1");
    }

    #[test]
    fn bad_segment_ids() {
        for bad in [&b"pid|1"[..], b"PI|1", b"PIDX|1", b"P-D|1", b" PID|1", b"\x00\x00\x00"] {
            let mut raw = b"MSH|^~\\&|A|B|C|D|||ADT^A08|1|P|2.5\r".to_vec();
            raw.extend_from_slice(bad);
            let e = err(&raw);
            assert_eq!(e.code, ErrorCode::SegmentSequenceError, "{:?}", String::from_utf8_lossy(bad));
            assert_eq!(e.text, "Invalid segment ID (segment 2 of the message)");
            assert_eq!(e.to_string(), "100 Invalid segment ID (segment 2 of the message)", "no empty location");
        }
        // A segment with no fields at all is fine.
        assert_eq!(ids(&msg(b"MSH|^~\\&|A|B|C|D|||ADT^A08|1|P|2.5\rZZ1\r")), ["MSH", "ZZ1"]);
    }

    #[test]
    fn header_errors_come_from_msh() {
        assert_eq!(err(b"PID|1\r").code, ErrorCode::SegmentSequenceError);
        assert_eq!(err(b"").code, ErrorCode::SegmentSequenceError);
        assert_eq!(err(b"MSH|^~\\&|A|B|C|D|||ADT^A08||P|2.5\r").location.to_string(), "MSH-10");
    }

    #[test]
    fn positions3_finds_every_hit() {
        let raw = b"MSH|^~\\&|A\rPID|1||X\nOBX|\r\n|||a|b\r";
        for len in 0..=raw.len() {
            let hay = &raw[..len];
            let want: Vec<_> = (0..len).filter(|&i| matches!(hay[i], b'|' | b'\r' | b'\n')).collect();
            assert_eq!(positions3(hay, b'|', b'\r', b'\n').collect::<Vec<_>>(), want, "{len}");
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(positions3(&all, 0, 0x80, 0xFF).collect::<Vec<_>>(), [0, 0x80, 0xFF]);
    }

    #[test]
    fn lines_helper_matches_parser() {
        let raw = b"MSH|^~\\&|A\r\nPID|1|a\nb\r\n\r\nOBX|1\nNTE|2";
        let got: Vec<_> = lines(raw, b'|').map(|r| &raw[r]).collect();
        assert_eq!(got, [&b"MSH|^~\\&|A"[..], b"PID|1|a\nb", b"OBX|1", b"NTE|2"]);
    }

    #[test]
    fn index_of_degenerate_input_stays_linear() {
        let header = b"MSH|^~\\&|A|B|C|D|||ADT^A01|1|P|2.5\r".to_vec();
        for filler in [&b"A1B\r"[..], b"\r", b"\n", b"ZZ1||||||||\r", b"A1B\r\n"] {
            let mut raw = header.clone();
            for _ in 0..20_000 {
                raw.extend_from_slice(filler);
            }
            let m = parse(&raw).unwrap();
            assert!(m.index_capacity_bytes() <= 7 * raw.len(), "{:?}: {}", filler, m.index_capacity_bytes());
        }
    }

    #[test]
    fn index_is_small_and_debug_has_no_content() {
        let m = msg(ADT);
        assert!(m.index_capacity_bytes() <= ADT.len(), "{}", m.index_capacity_bytes());
        let shown = format!("{m:?} {:?} {:?}", m.segment("PID").unwrap(), m.segment("PID").unwrap().field(5));
        assert!(!shown.contains("DOE"), "{shown}");
    }
}

/// Properties over generated input: nothing panics, the index stays proportional to the input,
/// grouping accounts for every segment, escapes round-trip.
#[cfg(test)]
mod properties {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::super::batch::split;
    use super::super::path::Path;
    use super::super::structure::{group, group_as, Group, Node, Structure};
    use super::*;

    /// Pieces that make generated bytes look like HL7 often enough to reach deep code paths.
    const TOKENS: &[&str] = &[
        "\rPID|",
        "\rOBX|",
        "\rOBR|",
        "\rORC|",
        "\rPV1|",
        "\rSPM|",
        "\rNTE|",
        "\rEVN|",
        "\rMRG|",
        "\rZPI|",
        "\rRGS|",
        "\rTXA|",
        "\rRXA|",
        "\nNK1|",
        "\r\nIN1|",
        "\rMSH|^~\\&|",
        "\rBTS|1",
        "\rBHS|^~\\&",
        "|",
        "^",
        "~",
        "&",
        "\\",
        "\\F\\",
        "\\X41\\",
        "\\XC3A9\\",
        "\\.br\\",
        "\\P\\",
        "\\H\\",
        "\"\"",
        "\r",
        "\n",
        "\r\n",
        " ",
        "A",
        "1",
        "2.5",
        "é",
        "\u{FEFF}",
    ];

    const IDS: &[&str] = &[
        "PID", "PD1", "PV1", "PV2", "NK1", "EVN", "MRG", "OBR", "ORC", "OBX", "NTE", "SPM", "TQ1", "DG1", "PR1", "ROL",
        "IN1", "GT1", "AL1", "SCH", "RGS", "AIS", "AIL", "TXA", "RXA", "RXR", "SAC", "ZPI", "ZOB", "MSH", "BHS", "BTS",
        "FHS", "FTS", "DSC", "MSA",
    ];

    const CONTENT: &[&str] = &[
        "|",
        "|",
        "^",
        "~",
        "&",
        "#",
        "*",
        "@",
        "!",
        "%",
        "\\",
        "\\F\\",
        "\\S\\",
        "\\X41\\",
        "\\XC3A9\\",
        "\\XE9\\",
        "\\.br\\",
        "\\P\\",
        "\\H\\",
        "\\Z1\\",
        "\\E",
        "\"\"",
        "text",
        "1",
        "20260101",
        "é",
        "\n",
        "\nPID|",
    ];

    const MSH9: &[&str] = &[
        "ORU^R01^ORU_R01",
        "ADT^A01",
        "ADT^A03",
        "ADT^A05",
        "ADT^A07",
        "ADT^A02",
        "ADT^A10",
        "ADT^A40^ADT_A39",
        "ORM^O01",
        "OML^O21",
        "SIU^S12",
        "MDM^T02",
        "VXU^V04",
        "ACK",
        "ADT^A17",
    ];

    /// The densest segments: the most index per input byte.
    const DENSE: &[&str] = &["A1B", "ZZ1||||||||", "ZZ2|", "", " "];

    const VALID_PATH: &str =
        "[A-Z0-9]{3}(\\([0-9]{1,3}\\))?-[0-9]{1,3}(\\[[0-9]{1,2}\\])?(\\.[0-9]{1,2}(\\.[0-9]{1,2})?)?";

    fn hl7ish() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            3 => prop::sample::select(TOKENS).prop_map(|t| t.as_bytes().to_vec()),
            1 => prop::collection::vec(any::<u8>(), 1..4),
        ];
        prop::collection::vec(piece, 0..60).prop_map(|v| v.concat())
    }

    /// Mostly well-formed segments: an ID, then field content with delimiters and escapes.
    fn segments() -> impl Strategy<Value = Vec<u8>> {
        let id = prop_oneof![
            4 => prop::sample::select(IDS).prop_map(str::to_owned),
            1 => "[A-Z0-9]{3}",
        ];
        let content = prop_oneof![
            6 => prop::sample::select(CONTENT).prop_map(|t| t.as_bytes().to_vec()),
            1 => prop::collection::vec(any::<u8>(), 1..3),
        ];
        let end = prop::sample::select(&["\r", "\n", "\r\n", "\r\r\n"][..]);
        let segment = (id, prop::collection::vec(content, 0..16), end).prop_map(|(id, content, end)| {
            let mut seg = id.into_bytes();
            seg.push(b'|');
            seg.extend(content.concat());
            seg.extend_from_slice(end.as_bytes());
            seg
        });
        prop::collection::vec(segment, 0..24).prop_map(|v| v.concat())
    }

    fn with_msh() -> impl Strategy<Value = Vec<u8>> {
        let charset = prop::sample::select(&["", "ASCII", "8859/1", "UNICODE UTF-8"][..]);
        let delims = prop::sample::select(&["^~\\&", "^~\\&#", "*@!%"][..]);
        (prop::sample::select(MSH9), charset, delims, segments()).prop_map(|(msh9, cs, d, body)| {
            let mut raw = format!("MSH|{d}|A|B|C|D|20260101||{msh9}|1|P|2.5.1||||||{cs}\r").into_bytes();
            raw.extend_from_slice(&body);
            raw
        })
    }

    /// Touches every accessor of every element, one past the end included.
    fn exercise(msg: &Message) {
        for seg in msg.segments() {
            let _ = (seg.id(), seg.raw(), seg.is_header(), format!("{seg:?}"));
            assert_eq!(seg.fields().count(), seg.field_count());
            for n in 0..=seg.field_count() + 1 {
                let field = seg.field(n);
                let _ = (field.value(), field.presence(), field.is_null(), field.component(2).value());
                assert_eq!(field.reps().count(), field.rep_count());
                for r in 0..=field.rep_count() + 1 {
                    let rep = field.rep(r);
                    let _ = (rep.value(), rep.is_null(), rep.raw());
                    assert_eq!(rep.components().count(), rep.component_count());
                    for c in 0..=rep.component_count() + 1 {
                        let comp = rep.component(c);
                        let _ = (comp.value(), comp.is_empty());
                        assert_eq!(comp.subs().count(), comp.sub_count());
                        for s in 0..=comp.sub_count() + 1 {
                            let _ = comp.sub(s).value();
                        }
                    }
                }
                let path = format!("{}({})-{}[2].2.2", seg.id(), 1 + seg.index() % 3, n.max(1));
                assert!(msg.get(&path).is_ok(), "{path}");
            }
        }
        let _ = (msg.structure(), msg.version(), msg.charset(), format!("{msg:?}"));
    }

    fn tree_indexes(g: &Group, out: &mut Vec<usize>) {
        for node in &g.children {
            match node {
                Node::Segment(i) => out.push(*i),
                Node::Group(sub) => tree_indexes(sub, out),
            }
        }
    }

    /// Every segment is in the tree or reported unconsumed, exactly once, in order.
    fn check_grouping(msg: &Message, structure: Structure) {
        let g = group_as(msg, structure);
        let mut placed = Vec::new();
        tree_indexes(&g.root, &mut placed);
        assert!(placed.windows(2).all(|w| w[0] < w[1]), "tree out of order: {placed:?}");
        let unconsumed: BTreeSet<usize> = g.unconsumed.iter().map(|u| u.index).collect();
        let placed_set: BTreeSet<usize> = placed.iter().copied().collect();
        assert!(placed_set.is_disjoint(&unconsumed));
        assert_eq!(placed.len() + unconsumed.len(), msg.segment_count());
        assert!(g.zsegments.iter().all(|z| placed_set.contains(&z.index) && z.id.starts_with('Z')));
        assert_eq!(placed.first(), Some(&0));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(msg) = parse(&raw) {
                exercise(&msg);
            }
            let _ = split(&raw);
        }

        #[test]
        fn hl7ish_bytes_never_panic(raw in hl7ish()) {
            let _ = parse(&raw);
            let _ = split(&raw);
        }

        #[test]
        fn messages_behind_a_valid_msh_never_panic(raw in with_msh()) {
            let Ok(msg) = parse(&raw) else { return Ok(()) };
            exercise(&msg);
            let _ = group(&msg);
            for structure in Structure::ALL {
                check_grouping(&msg, structure);
            }
            let batch = split(&raw);
            prop_assert!(!batch.messages.is_empty());
        }

        #[test]
        fn index_is_linear_in_the_input(raw in with_msh()) {
            if let Ok(msg) = parse(&raw) {
                prop_assert!(msg.index_capacity_bytes() <= 7 * raw.len() + 64,
                    "{} bytes of index for {} bytes", msg.index_capacity_bytes(), raw.len());
            }
        }

        #[test]
        fn dense_input_index_is_linear(ids in prop::collection::vec(prop::sample::select(DENSE), 0..200)) {
            let mut raw = b"MSH|^~\\&|A|B|C|D|||ADT^A01|1|P|2.5".to_vec();
            for id in ids {
                raw.push(b'\r');
                raw.extend_from_slice(id.as_bytes());
            }
            if let Ok(msg) = parse(&raw) {
                prop_assert!(msg.index_capacity_bytes() <= 7 * raw.len() + 64);
            }
        }

        #[test]
        fn positions3_is_exact(hay in prop::collection::vec(any::<u8>(), 0..100), a: u8, b: u8, c: u8) {
            let want: Vec<_> = (0..hay.len()).filter(|&i| hay[i] == a || hay[i] == b || hay[i] == c).collect();
            prop_assert_eq!(positions3(&hay, a, b, c).collect::<Vec<_>>(), want);
        }

        #[test]
        fn paths_never_panic(s in "\\PC{0,16}", t in VALID_PATH) {
            let _ = Path::parse(&s);
            if let Ok(p) = Path::parse(&t) {
                prop_assert_eq!(Path::parse(&p.to_string()), Ok(p));
            }
        }

        #[test]
        fn escaping_round_trips(text in "\\PC{0,40}") {
            let mut escaped = String::new();
            for c in text.chars() {
                match c {
                    '|' => escaped.push_str("\\F\\"),
                    '^' => escaped.push_str("\\S\\"),
                    '&' => escaped.push_str("\\T\\"),
                    '~' => escaped.push_str("\\R\\"),
                    '\\' => escaped.push_str("\\E\\"),
                    '\n' => escaped.push_str("\\.br\\"),
                    c => escaped.push(c),
                }
            }
            prop_assert_eq!(Codec::default().decode(escaped.as_bytes()), text.as_str());
        }
    }
}
