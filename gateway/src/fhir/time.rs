//! HL7 v2 DTM/TS/DT → FHIR date, dateTime and instant.
//!
//! Precision is kept (`YYYY`, `YYYYMM`, `YYYYMMDD` stay dates); a given offset is preserved;
//! a time without an offset takes the message's offset (MSH-7's, when it has one: the sender
//! writes its local times in it), else the configured site time zone (never the host's); seconds
//! are padded; `+HH` and `+HHMM` offsets and 1–4 fractional digits are accepted; offsets are
//! written `±HH:MM`.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid HL7 date/time")]
pub struct TimeError;

/// A parsed v2 timestamp, at the precision it was sent with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V2Time {
    Year(i16),
    Month(i16, i8),
    Date(i16, i8, i8),
    /// A time of day (hours at least); `offset_seconds` when the sender gave one.
    DateTime {
        at: DateTime,
        fraction: String,
        offset_seconds: Option<i32>,
        had_seconds: bool,
    },
}

fn digits(s: &str, at: usize, len: usize) -> Result<i32, TimeError> {
    let part = s.get(at..at + len).ok_or(TimeError)?;
    if !part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TimeError);
    }
    part.parse().map_err(|_| TimeError)
}

/// Parses `YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZ[ZZ]]`.
pub fn parse(value: &str) -> Result<V2Time, TimeError> {
    let value = value.trim();
    let (body, offset) = match value.find(['+', '-']) {
        Some(i) => (&value[..i], Some(&value[i..])),
        None => (value, None),
    };
    let offset_seconds = offset.map(parse_offset).transpose()?;
    let (main, fraction) = match body.split_once('.') {
        Some((m, f)) if (1..=4).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()) => (m, f),
        Some(_) => return Err(TimeError),
        None => (body, ""),
    };
    if !fraction.is_empty() && main.len() != 14 {
        return Err(TimeError);
    }
    let year = digits(main, 0, 4)? as i16;
    let month = || digits(main, 4, 2).map(|m| m as i8);
    let day = || digits(main, 6, 2).map(|d| d as i8);
    let time = match main.len() {
        4 => return Ok(V2Time::Year(year)),
        6 => return valid_date(year, month()?, 1).map(|_| V2Time::Month(year, month().unwrap())),
        8 => return valid_date(year, month()?, day()?).map(|_| V2Time::Date(year, month().unwrap(), day().unwrap())),
        10 | 12 | 14 => (
            digits(main, 8, 2)?,
            if main.len() >= 12 { digits(main, 10, 2)? } else { 0 },
            if main.len() == 14 { digits(main, 12, 2)? } else { 0 },
        ),
        _ => return Err(TimeError),
    };
    let at =
        DateTime::new(year, month()?, day()?, time.0 as i8, time.1 as i8, time.2 as i8, 0).map_err(|_| TimeError)?;
    Ok(V2Time::DateTime { at, fraction: fraction.to_string(), offset_seconds, had_seconds: main.len() == 14 })
}

fn valid_date(y: i16, m: i8, d: i8) -> Result<(), TimeError> {
    jiff::civil::Date::new(y, m, d).map(|_| ()).map_err(|_| TimeError)
}

/// `+HH` or `+HHMM` (also `-`), to seconds east of UTC.
fn parse_offset(s: &str) -> Result<i32, TimeError> {
    let sign = if s.starts_with('-') { -1 } else { 1 };
    let rest = &s[1..];
    let (h, m) = match rest.len() {
        2 => (digits(rest, 0, 2)?, 0),
        4 => (digits(rest, 0, 2)?, digits(rest, 2, 2)?),
        _ => return Err(TimeError),
    };
    if h > 14 || m > 59 {
        return Err(TimeError);
    }
    Ok(sign * (h * 3600 + m * 60))
}

fn format_offset(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let s = seconds.abs();
    format!("{sign}{:02}:{:02}", s / 3600, (s % 3600) / 60)
}

/// The FHIR `dateTime` (or `date`, at date precision) for a v2 value; an offset-less time
/// takes the site zone.
pub fn to_fhir_datetime(value: &str, zone: &TimeZone) -> Result<String, TimeError> {
    to_fhir_datetime_in(value, None, zone)
}

/// The offset MSH-7 was sent with, in seconds east of UTC; `None` when it has none (or is
/// not a valid timestamp).
pub fn message_offset(msh7: &str) -> Option<i32> {
    match parse(msh7) {
        Ok(V2Time::DateTime { offset_seconds, .. }) => offset_seconds,
        _ => None,
    }
}

/// [`to_fhir_datetime`] for a message whose MSH-7 had `message_offset`: an offset-less time
/// takes that offset before the site zone. A sender that states its offset in MSH-7 writes its
/// other local times in the same offset; the site zone would shift them when the sender's
/// clock is elsewhere (another zone, or a DST rule the site does not share).
pub fn to_fhir_datetime_in(value: &str, message_offset: Option<i32>, zone: &TimeZone) -> Result<String, TimeError> {
    Ok(match parse(value)? {
        V2Time::Year(y) => format!("{y:04}"),
        V2Time::Month(y, m) => format!("{y:04}-{m:02}"),
        V2Time::Date(y, m, d) => format!("{y:04}-{m:02}-{d:02}"),
        V2Time::DateTime { at, fraction, offset_seconds, .. } => {
            let offset = match offset_seconds.or(message_offset) {
                Some(o) => o,
                // Offset-less local time: the site's zone decides (DST-aware; an ambiguous
                // hour at the fall-back transition takes the earlier offset).
                None => zone.to_ambiguous_zoned(at).compatible().map_err(|_| TimeError)?.offset().seconds(),
            };
            let frac = if fraction.is_empty() { String::new() } else { format!(".{fraction}") };
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{frac}{}",
                at.year(),
                at.month(),
                at.day(),
                at.hour(),
                at.minute(),
                at.second(),
                format_offset(offset)
            )
        }
    })
}

/// The FHIR `date` for a v2 value (time of day dropped).
pub fn to_fhir_date(value: &str) -> Result<String, TimeError> {
    Ok(match parse(value)? {
        V2Time::Year(y) => format!("{y:04}"),
        V2Time::Month(y, m) => format!("{y:04}-{m:02}"),
        V2Time::Date(y, m, d) => format!("{y:04}-{m:02}-{d:02}"),
        V2Time::DateTime { at, .. } => format!("{:04}-{:02}-{:02}", at.year(), at.month(), at.day()),
    })
}

/// The FHIR `instant` (needs at least a full date and time); `None` below that precision.
pub fn to_fhir_instant(value: &str, zone: &TimeZone) -> Result<Option<String>, TimeError> {
    to_fhir_instant_in(value, None, zone)
}

/// [`to_fhir_instant`] with the message's offset first (see [`to_fhir_datetime_in`]).
pub fn to_fhir_instant_in(
    value: &str,
    message_offset: Option<i32>,
    zone: &TimeZone,
) -> Result<Option<String>, TimeError> {
    match parse(value)? {
        V2Time::DateTime { .. } => to_fhir_datetime_in(value, message_offset, zone).map(Some),
        _ => Ok(None),
    }
}

/// True when a v2 value is more precise than a date (PID-7 birth time extension).
pub fn has_time(value: &str) -> bool {
    matches!(parse(value), Ok(V2Time::DateTime { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chicago() -> TimeZone {
        TimeZone::get("America/Chicago").unwrap()
    }

    #[test]
    fn precision_is_kept() {
        let z = chicago();
        assert_eq!(to_fhir_datetime("2026", &z).unwrap(), "2026");
        assert_eq!(to_fhir_datetime("202603", &z).unwrap(), "2026-03");
        assert_eq!(to_fhir_datetime("20260315", &z).unwrap(), "2026-03-15");
        assert_eq!(to_fhir_date("20260315083000-0500").unwrap(), "2026-03-15");
    }

    #[test]
    fn given_offsets_are_preserved_and_seconds_padded() {
        let z = chicago();
        assert_eq!(to_fhir_datetime("20260315083000-0500", &z).unwrap(), "2026-03-15T08:30:00-05:00");
        assert_eq!(to_fhir_datetime("202603150830+0530", &z).unwrap(), "2026-03-15T08:30:00+05:30");
        assert_eq!(to_fhir_datetime("2026031508+01", &z).unwrap(), "2026-03-15T08:00:00+01:00");
        assert_eq!(to_fhir_datetime("20260315083000.1234-0500", &z).unwrap(), "2026-03-15T08:30:00.1234-05:00");
        assert_eq!(to_fhir_datetime("20260315083000.5+0000", &z).unwrap(), "2026-03-15T08:30:00.5+00:00");
    }

    #[test]
    fn offsetless_times_take_the_site_zone_with_dst() {
        let z = chicago();
        assert_eq!(to_fhir_datetime("20260115083000", &z).unwrap(), "2026-01-15T08:30:00-06:00");
        assert_eq!(to_fhir_datetime("20260715083000", &z).unwrap(), "2026-07-15T08:30:00-05:00");
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        assert_eq!(to_fhir_datetime("202607150830", &berlin).unwrap(), "2026-07-15T08:30:00+02:00");
    }

    #[test]
    fn offsetless_times_take_msh7_offset_before_the_site_zone() {
        let z = chicago();
        // MSH-7 sent at -0400 (the sender's clock, e.g. Eastern summer time): an ORC-7 without
        // an offset is in that offset, not Chicago's -06:00 of January.
        let msh7 = message_offset("20260115083000-0400");
        assert_eq!(msh7, Some(-4 * 3600));
        assert_eq!(to_fhir_datetime_in("20260115091500", msh7, &z).unwrap(), "2026-01-15T09:15:00-04:00");
        assert_eq!(to_fhir_instant_in("202601150915", msh7, &z).unwrap().as_deref(), Some("2026-01-15T09:15:00-04:00"));
        // Dates stay dates.
        assert_eq!(to_fhir_datetime_in("20260115", msh7, &z).unwrap(), "2026-01-15");
    }

    #[test]
    fn msh7_without_offset_leaves_the_site_zone_with_dst() {
        let z = chicago();
        let msh7 = message_offset("20260715083000");
        assert_eq!(msh7, None);
        assert_eq!(message_offset("20260715"), None);
        assert_eq!(message_offset("garbage"), None);
        assert_eq!(to_fhir_datetime_in("20260115083000", msh7, &z).unwrap(), "2026-01-15T08:30:00-06:00");
        assert_eq!(to_fhir_datetime_in("20260715083000", msh7, &z).unwrap(), "2026-07-15T08:30:00-05:00");
    }

    #[test]
    fn a_value_with_its_own_offset_keeps_it_whatever_msh7_says() {
        let z = chicago();
        let msh7 = message_offset("20260115083000+0100");
        assert_eq!(to_fhir_datetime_in("20260115083000-0700", msh7, &z).unwrap(), "2026-01-15T08:30:00-07:00");
        assert_eq!(to_fhir_datetime_in("20260115083000+0000", msh7, &z).unwrap(), "2026-01-15T08:30:00+00:00");
    }

    #[test]
    fn invalid_values_are_errors() {
        let z = chicago();
        for bad in [
            "",
            "20",
            "2026131",
            "20261301",
            "20260230",
            "2026031525",
            "20260315083000.12345",
            "20260315+5",
            "2026-03-15",
            "abcd",
            "20260315083000-9900",
        ] {
            assert!(to_fhir_datetime(bad, &z).is_err(), "{bad}");
        }
    }

    #[test]
    fn instants_and_birth_time() {
        let z = chicago();
        assert_eq!(to_fhir_instant("20260315", &z).unwrap(), None);
        assert_eq!(to_fhir_instant("20260315083000-0500", &z).unwrap().as_deref(), Some("2026-03-15T08:30:00-05:00"));
        assert!(has_time("198001010830"));
        assert!(!has_time("19800101"));
    }
}
