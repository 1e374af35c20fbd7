//! Addressing values by path: `PID-3`, `PID-3[2].4.1`, `OBX(2)-5`, `MSH-9.2`.
//!
//! This module owns the path syntax ([`Path`], [`PathError`]) and the path-based accessors
//! on [`Message`]: [`Message::get`], [`Message::element`] and [`Message::select`].
//!
//! ```text
//! path       = segment [ "(" occurrence ")" ] "-" field [ "[" repetition "]" ]
//!              [ "." component [ "." subcomponent ] ]
//! segment    = 3 × [A-Z0-9]
//! ```
//! Every number is 1-based. `OBX(2)-5` is field 5 of the second OBX; a missing occurrence or
//! repetition means the first. A path that is well formed but points past the end of the
//! message yields an empty element, never an error.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use super::parser::{Component, Field, Message, Presence, Rep, SubComponent};

/// A parsed path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Path {
    segment: [u8; 3],
    occurrence: usize,
    field: usize,
    repetition: Option<usize>,
    component: Option<usize>,
    subcomponent: Option<usize>,
}

/// Why a path could not be parsed; `at` is the byte offset in the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("invalid HL7 path at byte {at}: expected {expected}")]
    Syntax { at: usize, expected: &'static str },
    #[error("invalid HL7 path at byte {at}: positions are 1-based")]
    Zero { at: usize },
    #[error("invalid HL7 path at byte {at}: number too large")]
    TooLarge { at: usize },
}

impl Path {
    pub fn parse(path: &str) -> Result<Path, PathError> {
        Cursor { s: path.as_bytes(), at: 0 }.path()
    }

    /// The segment ID.
    pub(crate) fn segment(&self) -> &str {
        std::str::from_utf8(&self.segment).unwrap_or_default()
    }

    #[cfg(test)]
    /// Which occurrence of the segment (1 unless given as `OBX(2)`).
    pub fn occurrence(&self) -> usize {
        self.occurrence
    }

    #[cfg(test)]
    pub fn field(&self) -> usize {
        self.field
    }

    #[cfg(test)]
    pub fn repetition(&self) -> Option<usize> {
        self.repetition
    }

    #[cfg(test)]
    pub fn component(&self) -> Option<usize> {
        self.component
    }

    #[cfg(test)]
    pub fn subcomponent(&self) -> Option<usize> {
        self.subcomponent
    }
}

impl FromStr for Path {
    type Err = PathError;
    fn from_str(s: &str) -> Result<Path, PathError> {
        Path::parse(s)
    }
}

/// The canonical form: `OBX(2)-5[1].2.1`, with the defaults left out.
impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.segment())?;
        if self.occurrence != 1 {
            write!(f, "({})", self.occurrence)?;
        }
        write!(f, "-{}", self.field)?;
        if let Some(r) = self.repetition {
            write!(f, "[{r}]")?;
        }
        if let Some(c) = self.component {
            write!(f, ".{c}")?;
        }
        if let Some(s) = self.subcomponent {
            write!(f, ".{s}")?;
        }
        Ok(())
    }
}

struct Cursor<'s> {
    s: &'s [u8],
    at: usize,
}

impl Cursor<'_> {
    fn path(mut self) -> Result<Path, PathError> {
        let segment = self.segment_id()?;
        let occurrence = if self.eat(b'(') { self.number_then(b')', "`)`")? } else { 1 };
        self.expect(b'-', "`-` and a field number")?;
        let field = self.number()?;
        let repetition = if self.eat(b'[') { Some(self.number_then(b']', "`]`")?) } else { None };
        let component = if self.eat(b'.') { Some(self.number()?) } else { None };
        let subcomponent = if component.is_some() && self.eat(b'.') { Some(self.number()?) } else { None };
        if self.at != self.s.len() {
            return Err(self.syntax("the end of the path"));
        }
        Ok(Path { segment, occurrence, field, repetition, component, subcomponent })
    }

    fn segment_id(&mut self) -> Result<[u8; 3], PathError> {
        match self.s.get(..3) {
            Some(&[a, b, c]) if super::parser::is_segment_id(&[a, b, c]) => {
                self.at = 3;
                Ok([a, b, c])
            }
            _ => Err(self.syntax("a segment ID of three characters A-Z, 0-9")),
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.s.get(self.at) == Some(&b);
        self.at += usize::from(hit);
        hit
    }

    fn expect(&mut self, b: u8, expected: &'static str) -> Result<(), PathError> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(self.syntax(expected))
        }
    }

    fn number_then(&mut self, close: u8, expected: &'static str) -> Result<usize, PathError> {
        let n = self.number()?;
        self.expect(close, expected)?;
        Ok(n)
    }

    /// A 1-based decimal number.
    fn number(&mut self) -> Result<usize, PathError> {
        let start = self.at;
        let digits = self.s[start..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return Err(self.syntax("a number"));
        }
        self.at += digits;
        let value = self.s[start..self.at]
            .iter()
            .try_fold(0usize, |n, &d| n.checked_mul(10)?.checked_add(usize::from(d - b'0')))
            .ok_or(PathError::TooLarge { at: start })?;
        if value == 0 {
            return Err(PathError::Zero { at: start });
        }
        Ok(value)
    }

    fn syntax(&self, expected: &'static str) -> PathError {
        PathError::Syntax { at: self.at, expected }
    }
}

/// What a path addresses: a field, one repetition, a component or a subcomponent.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Element<'a> {
    Field(Field<'a>),
    Rep(Rep<'a>),
    Component(Component<'a>),
    SubComponent(SubComponent<'a>),
}

impl<'a> Element<'a> {
    /// The raw bytes, still escaped and with their delimiters.
    pub(crate) fn raw(&self) -> &'a [u8] {
        match self {
            Element::Field(e) => e.raw(),
            Element::Rep(e) => e.raw(),
            Element::Component(e) => e.raw(),
            Element::SubComponent(e) => e.raw(),
        }
    }

    /// The first leaf below this element, unescaped (empty for empty and null).
    pub(crate) fn value(&self) -> Cow<'a, str> {
        match self {
            Element::Field(e) => e.value(),
            Element::Rep(e) => e.value(),
            Element::Component(e) => e.value(),
            Element::SubComponent(e) => e.value(),
        }
    }

    pub(crate) fn presence(&self) -> Presence {
        match self.raw() {
            b"" => Presence::Empty,
            b"\"\"" => Presence::Null,
            _ => Presence::Valued,
        }
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.raw().is_empty()
    }

    #[cfg(test)]
    pub fn is_null(&self) -> bool {
        self.presence() == Presence::Null
    }
}

impl<'a> Message<'a> {
    /// The value at `path` (the first leaf below what it addresses), unescaped; `None` when
    /// the segment is missing or the value is empty or null (`""`; see `Message::element`
    /// to tell those apart). A malformed path is an error.
    pub fn get(&self, path: &str) -> Result<Option<Cow<'a, str>>, PathError> {
        let element = self.element(path)?;
        Ok((element.presence() == Presence::Valued).then(|| element.value()))
    }

    /// The element at `path` (empty when the message does not have it).
    pub(crate) fn element(&self, path: &str) -> Result<Element<'a>, PathError> {
        Ok(self.select(&Path::parse(path)?))
    }

    /// The element at an already parsed path (empty when the message does not have it).
    pub(crate) fn select(&self, path: &Path) -> Element<'a> {
        let field = match self.segments_named(path.segment()).nth(path.occurrence - 1) {
            Some(segment) => segment.field(path.field),
            None => self.msh().field(0), // an empty field
        };
        let rep = match (path.repetition, path.component) {
            (None, None) => return Element::Field(field),
            (Some(r), None) => return Element::Rep(field.rep(r)),
            (r, Some(_)) => field.rep(r.unwrap_or(1)),
        };
        let component = rep.component(path.component.unwrap_or(1));
        match path.subcomponent {
            None => Element::Component(component),
            Some(s) => Element::SubComponent(component.sub(s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::parser::parse;
    use super::*;

    const ORU: &[u8] = b"MSH|^~\\&|LAB|HOSP|GW|CLOUD|20260101||ORU^R01^ORU_R01|42|P|2.5.1\r\
PID|1||MRN1^^^HOSP^MR~SSN9^^^SSA^SS&2.16.840&ISO||DOE^JANE\r\
OBR|1||ORD1|CBC^Blood count\r\
OBX|1|NM|HGB^Hemoglobin||13.5|g/dL\r\
OBX|2|ST|NOTE||a \\T\\ b~second|\"\"\r";

    fn p(s: &str) -> Path {
        Path::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_paths() {
        let x = p("PID-3[2].4.1");
        assert_eq!((x.segment(), x.occurrence(), x.field()), ("PID", 1, 3));
        assert_eq!((x.repetition(), x.component(), x.subcomponent()), (Some(2), Some(4), Some(1)));
        let y = p("OBX(2)-5");
        assert_eq!((y.segment(), y.occurrence(), y.field(), y.repetition(), y.component()), ("OBX", 2, 5, None, None));
        for s in ["PID-3", "PID-3[2].4.1", "OBX-5[1].2", "PID-5.1", "MSH-9.2", "OBX(2)-5", "ZX1-12.3.4"] {
            assert_eq!(p(s).to_string(), s);
            assert_eq!(s.parse::<Path>().unwrap(), p(s));
        }
        assert_eq!(p("OBX(1)-5").to_string(), "OBX-5");
    }

    #[test]
    fn invalid_paths_are_errors() {
        let cases: [(&str, PathError); 14] = [
            ("", PathError::Syntax { at: 0, expected: "a segment ID of three characters A-Z, 0-9" }),
            ("pid-3", PathError::Syntax { at: 0, expected: "a segment ID of three characters A-Z, 0-9" }),
            ("PI-3", PathError::Syntax { at: 0, expected: "a segment ID of three characters A-Z, 0-9" }),
            ("PID", PathError::Syntax { at: 3, expected: "`-` and a field number" }),
            ("PID.3", PathError::Syntax { at: 3, expected: "`-` and a field number" }),
            ("PID-", PathError::Syntax { at: 4, expected: "a number" }),
            ("PID-0", PathError::Zero { at: 4 }),
            ("PID-3[0]", PathError::Zero { at: 6 }),
            ("PID-3[2", PathError::Syntax { at: 7, expected: "`]`" }),
            ("OBX(2-5", PathError::Syntax { at: 5, expected: "`)`" }),
            ("PID-3.1.2.3", PathError::Syntax { at: 9, expected: "the end of the path" }),
            ("PID-3 ", PathError::Syntax { at: 5, expected: "the end of the path" }),
            ("PID-99999999999999999999999", PathError::TooLarge { at: 4 }),
            ("PID-3.", PathError::Syntax { at: 6, expected: "a number" }),
        ];
        for (s, want) in cases {
            assert_eq!(Path::parse(s), Err(want), "{s:?}");
        }
        assert!(PathError::Zero { at: 4 }.to_string().contains("1-based"));
    }

    #[test]
    fn gets_values() {
        let m = parse(ORU).unwrap();
        let get = |s: &str| m.get(s).unwrap().map(Cow::into_owned);
        assert_eq!(get("MSH-9.2").as_deref(), Some("R01"));
        assert_eq!(get("MSH-1").as_deref(), Some("|"));
        assert_eq!(get("MSH-2").as_deref(), Some("^~\\&"));
        assert_eq!(get("PID-3").as_deref(), Some("MRN1"));
        assert_eq!(get("PID-3[2]").as_deref(), Some("SSN9"));
        assert_eq!(get("PID-3[2].4").as_deref(), Some("SSA"));
        assert_eq!(get("PID-3[2].5.2").as_deref(), Some("2.16.840"));
        assert_eq!(get("PID-3[2].4.1").as_deref(), Some("SSA"));
        assert_eq!(get("PID-5.1").as_deref(), Some("DOE"));
        assert_eq!(get("OBX-5").as_deref(), Some("13.5"));
        assert_eq!(get("OBX(2)-5").as_deref(), Some("a & b"));
        assert_eq!(get("OBX(2)-5[2]").as_deref(), Some("second"));
        assert_eq!(get("OBX(2)-3.1").as_deref(), Some("NOTE"));
    }

    #[test]
    fn missing_values_are_none() {
        let m = parse(ORU).unwrap();
        for s in ["PID-99", "PID-3[3]", "PID-3.9", "PID-3[2].4.3", "OBX(3)-5", "PV1-2", "OBX(2)-6", "PID-2"] {
            assert_eq!(m.get(s).unwrap(), None, "{s}");
        }
        assert!(m.get("PID-").is_err());
        let null = m.element("OBX(2)-6").unwrap();
        assert!(null.is_null() && !null.is_empty());
        assert!(m.element("PID-2").unwrap().is_empty());
        assert!(m.element("PV1-2").unwrap().is_empty());
    }

    #[test]
    fn element_levels() {
        let m = parse(ORU).unwrap();
        assert!(matches!(m.element("PID-3").unwrap(), Element::Field(_)));
        assert!(matches!(m.element("PID-3[1]").unwrap(), Element::Rep(_)));
        assert!(matches!(m.element("PID-3.1").unwrap(), Element::Component(_)));
        assert!(matches!(m.element("PID-3.1.1").unwrap(), Element::SubComponent(_)));
        assert_eq!(m.element("PID-3").unwrap().raw(), b"MRN1^^^HOSP^MR~SSN9^^^SSA^SS&2.16.840&ISO");
        assert_eq!(m.element("PID-3[2].4").unwrap().raw(), b"SSA");
        assert_eq!(m.select(&p("OBX(2)-5")).raw(), b"a \\T\\ b~second");
    }
}
