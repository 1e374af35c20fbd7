//! The searches a conditional request carries (`Patient?identifier=sys|val`, `ifNoneExist:
//! identifier=sys|val`): parsing — percent-decoding, then FHIR's token syntax with its escapes
//! `\|` `\,` `\$` `\\` (what `fhir::bundle::conditional_url` writes) — and matching against the
//! identifier index. Supported parameters: `identifier` and `_id`; anything else is refused
//! rather than ignored, since ignoring a parameter would match too much.

use std::collections::BTreeSet;

use rusqlite::Connection;

use super::db;

/// A parsed query: every parameter must match (AND); each holds alternatives (OR, `a,b`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    params: Vec<Param>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Param {
    Identifier(Vec<Token>),
    Id(Vec<String>),
}

/// `[system]|[value]`: `None` is "any"; `Some("")` as system is "no system" (`|value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub system: Option<String>,
    pub value: Option<String>,
}

/// Why a query cannot be used. No part of the query's values is kept (they identify patients).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    #[error("malformed percent-encoding or UTF-8 in a search")]
    Encoding,
    #[error("a search parameter has no value")]
    Empty,
    #[error("unsupported search parameter (identifier and _id are)")]
    Unsupported,
}

impl Query {
    /// Parses `name=value&name=value` (the part after `?`).
    pub fn parse(query: &str) -> Result<Query, SearchError> {
        let mut params = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').ok_or(SearchError::Empty)?;
            let name = percent_decode(name)?;
            let value = percent_decode(value)?;
            if value.is_empty() {
                return Err(SearchError::Empty);
            }
            let alternatives = split_unescaped(&value, ',');
            params.push(match name.as_str() {
                "identifier" => Param::Identifier(alternatives.iter().map(|a| token(a)).collect::<Result<_, _>>()?),
                "_id" => Param::Id(alternatives.iter().map(|a| unescape(a)).collect()),
                _ => return Err(SearchError::Unsupported),
            });
        }
        if params.is_empty() {
            return Err(SearchError::Empty);
        }
        Ok(Query { params })
    }

    /// Ids of the `kind` resources that match, sorted.
    pub fn matches(&self, conn: &Connection, kind: &str) -> rusqlite::Result<BTreeSet<String>> {
        let mut result: Option<BTreeSet<String>> = None;
        for param in &self.params {
            let mut ids = BTreeSet::new();
            match param {
                Param::Identifier(tokens) => {
                    for t in tokens {
                        ids.extend(db::find_by_identifier(conn, kind, t.system.as_deref(), t.value.as_deref())?);
                    }
                }
                Param::Id(wanted) => {
                    for id in wanted {
                        if db::get(conn, kind, id)?.is_some() {
                            ids.insert(id.clone());
                        }
                    }
                }
            }
            result = Some(match result {
                None => ids,
                Some(before) => before.intersection(&ids).cloned().collect(),
            });
        }
        Ok(result.unwrap_or_default())
    }
}

fn token(text: &str) -> Result<Token, SearchError> {
    let nonempty = |s: &str| (!s.is_empty()).then(|| unescape(s));
    let t = match split_unescaped(text, '|').as_slice() {
        [value] => Token { system: None, value: nonempty(value) },
        [system, value] => Token { system: Some(unescape(system)), value: nonempty(value) },
        // A second unescaped `|`: the value held one its sender did not escape.
        _ => return Err(SearchError::Encoding),
    };
    // `|` alone (or nothing) names neither a system nor a value.
    if t.value.is_none() && t.system.as_deref().is_none_or(str::is_empty) {
        return Err(SearchError::Empty);
    }
    Ok(t)
}

/// Splits on `sep` where it is not escaped by a backslash; the parts keep their escapes.
fn split_unescaped(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(&text[start..i]);
            start = i + 1;
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Removes FHIR search escapes: `\|` `\,` `\$` `\\` stand for the character; a backslash
/// before anything else is kept as it is.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(&next) = chars.peek().filter(|n| matches!(n, '|' | ',' | '$' | '\\')) {
                out.push(next);
                chars.next();
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// `%XX` → byte, `+` → space (form encoding, as servers read query strings), then UTF-8.
fn percent_decode(text: &str) -> Result<String, SearchError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(SearchError::Encoding)?;
                let hex = std::str::from_utf8(hex).map_err(|_| SearchError::Encoding)?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| SearchError::Encoding)?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| SearchError::Encoding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::bundle::conditional_url;
    use crate::fhir::model::Identity;

    fn tokens(q: &str) -> Vec<Token> {
        match &Query::parse(q).unwrap().params[..] {
            [Param::Identifier(t)] => t.clone(),
            other => panic!("{other:?}"),
        }
    }

    fn tok(system: Option<&str>, value: Option<&str>) -> Token {
        Token { system: system.map(str::to_string), value: value.map(str::to_string) }
    }

    #[test]
    fn the_gateways_conditional_urls_round_trip() {
        let cases =
            [("http://hosp.example/mrn", "MRN|1, 2"), ("urn:oid:1.2.3", "a\\b$c,d"), ("urn:x", "é ü+%&="), ("s", "|")];
        for (system, value) in cases {
            let identity = Identity { system: system.into(), value: value.into() };
            let url = conditional_url("Patient", &identity);
            let query = url.strip_prefix("Patient?").unwrap();
            assert_eq!(tokens(query), vec![tok(Some(system), Some(value))], "{url}");
        }
    }

    #[test]
    fn token_forms() {
        assert_eq!(tokens("identifier=abc"), vec![tok(None, Some("abc"))]);
        assert_eq!(tokens("identifier=|abc"), vec![tok(Some(""), Some("abc"))]);
        assert_eq!(tokens("identifier=sys|"), vec![tok(Some("sys"), None)]);
        assert_eq!(tokens("identifier=a|1,b|2"), vec![tok(Some("a"), Some("1")), tok(Some("b"), Some("2"))]);
        assert_eq!(tokens("identifier=a|1\\,2"), vec![tok(Some("a"), Some("1,2"))]);
        assert_eq!(tokens("identifier=a+b|c%5C%7Cd"), vec![tok(Some("a b"), Some("c|d"))]);
    }

    #[test]
    fn refused_queries() {
        assert_eq!(Query::parse(""), Err(SearchError::Empty));
        assert_eq!(Query::parse("identifier="), Err(SearchError::Empty));
        assert_eq!(Query::parse("identifier=|"), Err(SearchError::Empty));
        assert_eq!(Query::parse("identifier"), Err(SearchError::Empty));
        assert_eq!(Query::parse("identifier=a%zz"), Err(SearchError::Encoding));
        assert_eq!(Query::parse("identifier=a%c3"), Err(SearchError::Encoding));
        assert_eq!(Query::parse("identifier=a|b|c"), Err(SearchError::Encoding));
        assert_eq!(Query::parse("name=smith"), Err(SearchError::Unsupported));
        assert_eq!(Query::parse("identifier:of-type=a|b|c"), Err(SearchError::Unsupported));
    }

    #[test]
    fn several_parameters_and_ids() {
        let q = Query::parse("identifier=s|v&_id=x,y").unwrap();
        assert_eq!(
            q.params,
            vec![Param::Identifier(vec![tok(Some("s"), Some("v"))]), Param::Id(vec!["x".into(), "y".into()])]
        );
    }
}
