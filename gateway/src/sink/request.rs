//! One Bundle entry read as a FHIR request: method, target (`Type/id`, `Type?search`, `Type`),
//! resource, `fullUrl`, `ifNoneExist`; and the entry-level errors a server answers with (an
//! HTTP status and an OperationOutcome whose text never quotes the request's values).

use serde_json::{json, Map, Value};

use super::search::{Query, SearchError};

/// The interactions, in the order FHIR processes them within a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    Delete,
    Post,
    Put,
    Get,
}

/// What `request.url` addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `Type/id`.
    Instance(String),
    /// `Type?query`: the query text (the key a bundle's repeated searches share) and its parse.
    Search(String, Query),
    /// `Type`.
    Type,
}

#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub kind: String,
    pub target: Target,
    /// The resource, for PUT and POST: an object whose `resourceType` is `kind`.
    pub resource: Option<Map<String, Value>>,
    pub full_url: Option<String>,
    /// POST's `ifNoneExist`: the query text and its parse.
    pub if_none_exist: Option<(String, Query)>,
}

/// An entry the sink refuses: status, OperationOutcome issue code, PHI-free diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError {
    pub status: u16,
    pub code: &'static str,
    pub diagnostics: String,
}

impl EntryError {
    pub fn invalid(diagnostics: impl Into<String>) -> EntryError {
        EntryError { status: 400, code: "invalid", diagnostics: diagnostics.into() }
    }
    pub fn not_supported(diagnostics: impl Into<String>) -> EntryError {
        EntryError { status: 400, code: "not-supported", diagnostics: diagnostics.into() }
    }

    /// The same error, its diagnostics prefixed with the entry's position.
    pub fn at(self, index: usize) -> EntryError {
        EntryError { diagnostics: format!("Bundle.entry[{index}]: {}", self.diagnostics), ..self }
    }

    pub fn outcome(&self) -> Value {
        operation_outcome(self.code, &self.diagnostics)
    }
}

impl From<SearchError> for EntryError {
    fn from(e: SearchError) -> EntryError {
        match e {
            SearchError::Unsupported => EntryError::not_supported(e.to_string()),
            _ => EntryError::invalid(e.to_string()),
        }
    }
}

pub fn operation_outcome(code: &str, diagnostics: &str) -> Value {
    json!({"resourceType": "OperationOutcome",
           "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}]})
}

/// `201 Created` and the other status lines a sink answers with.
pub fn status_line(status: u16) -> String {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        412 => "Precondition Failed",
        _ => "",
    };
    format!("{status} {reason}").trim_end().to_string()
}

/// A FHIR resource type name: a capital letter, then letters.
pub fn valid_type(kind: &str) -> bool {
    kind.len() <= 64
        && kind.bytes().next().is_some_and(|b| b.is_ascii_uppercase())
        && kind.bytes().all(|b| b.is_ascii_alphabetic())
}

/// A FHIR id: 1 to 64 of `A-Z a-z 0-9 - .`.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

impl Request {
    /// Reads one entry of a transaction or batch Bundle.
    pub fn parse(entry: &Value) -> Result<Request, EntryError> {
        let request = entry.get("request").ok_or_else(|| EntryError::invalid("entry has no request"))?;
        let method = match request.get("method").and_then(Value::as_str) {
            Some("DELETE") => Method::Delete,
            Some("POST") => Method::Post,
            Some("PUT") => Method::Put,
            Some("GET") => Method::Get,
            Some("PATCH" | "HEAD") => return Err(EntryError::not_supported("PATCH and HEAD are not supported")),
            _ => return Err(EntryError::invalid("request.method is missing or not an HTTP method")),
        };
        let url =
            request.get("url").and_then(Value::as_str).ok_or_else(|| EntryError::invalid("request.url is missing"))?;
        let (kind, target) = parse_url(url)?;
        let full_url = match entry.get("fullUrl") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(EntryError::invalid("fullUrl is not a string")),
        };
        let resource = match method {
            Method::Put | Method::Post => Some(resource_of(entry, &kind)?),
            Method::Delete | Method::Get => None,
        };
        match (method, &target) {
            (Method::Post, Target::Type)
            | (Method::Put | Method::Delete | Method::Get, Target::Instance(_) | Target::Search(..)) => {}
            _ => return Err(EntryError::invalid("request.url does not fit the method")),
        }
        if let (Target::Instance(id), Some(resource)) = (&target, &resource) {
            if resource.get("id").is_some_and(|v| v.as_str() != Some(id)) {
                return Err(EntryError::invalid("resource.id differs from the id in request.url"));
            }
        }
        let if_none_exist = match request.get("ifNoneExist") {
            None => None,
            Some(Value::String(q)) if method == Method::Post => {
                let q = q.strip_prefix('?').unwrap_or(q);
                let q = q.strip_prefix(&format!("{kind}?")).unwrap_or(q);
                Some((q.to_string(), Query::parse(q)?))
            }
            Some(_) => return Err(EntryError::invalid("ifNoneExist must be a string, on POST only")),
        };
        Ok(Request { method, kind, target, resource, full_url, if_none_exist })
    }
}

/// `Type`, `Type/id` or `Type?query`, relative to the base (a leading `/` is allowed).
fn parse_url(url: &str) -> Result<(String, Target), EntryError> {
    let url = url.strip_prefix('/').unwrap_or(url);
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (url, None),
    };
    // Only the path: a search value may well be a URI.
    if path.contains("://") {
        return Err(EntryError::not_supported("absolute request.url"));
    }
    let mut parts = path.split('/');
    let kind = parts.next().unwrap_or_default();
    if !valid_type(kind) {
        return Err(EntryError::invalid("request.url does not start with a resource type"));
    }
    let target = match (parts.next(), parts.next(), query) {
        (None, None, None) => Target::Type,
        (None, None, Some(q)) => Target::Search(q.to_string(), Query::parse(q)?),
        (Some(id), None, None) if valid_id(id) => Target::Instance(id.to_string()),
        (Some(id), None, None) if !id.is_empty() => return Err(EntryError::invalid("request.url has an invalid id")),
        _ => return Err(EntryError::not_supported("request.url form (Type, Type/id and Type?search are)")),
    };
    Ok((kind.to_string(), target))
}

fn resource_of(entry: &Value, kind: &str) -> Result<Map<String, Value>, EntryError> {
    let Some(Value::Object(resource)) = entry.get("resource") else {
        return Err(EntryError::invalid("entry has no resource"));
    };
    if resource.get("resourceType").and_then(Value::as_str) != Some(kind) {
        return Err(EntryError::invalid("resource.resourceType differs from the type in request.url"));
    }
    if resource.get("id").is_some_and(|id| !id.as_str().is_some_and(valid_id)) {
        return Err(EntryError::invalid("resource.id is not a valid id"));
    }
    Ok(resource.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(entry: Value) -> Result<Request, EntryError> {
        Request::parse(&entry)
    }

    #[test]
    fn reads_the_request_forms_the_gateway_sends() {
        let r = parse(json!({"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient"},
                             "request": {"method": "PUT", "url": "Patient?identifier=s|v"}}))
        .unwrap();
        assert_eq!((r.method, r.kind.as_str(), r.full_url.as_deref()), (Method::Put, "Patient", Some("urn:uuid:1")));
        assert!(matches!(&r.target, Target::Search(q, _) if q == "identifier=s|v"));
        let r = parse(json!({"resource": {"resourceType": "Encounter", "id": "e1"},
                             "request": {"method": "PUT", "url": "/Encounter/e1"}}))
        .unwrap();
        assert_eq!(r.target, Target::Instance("e1".into()));
        let r = parse(json!({"resource": {"resourceType": "Patient"},
                             "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=s|v"}}))
        .unwrap();
        assert_eq!(r.if_none_exist.unwrap().0, "identifier=s|v");
        let r = parse(json!({"request": {"method": "DELETE", "url": "Patient/p1"}})).unwrap();
        assert_eq!((r.method, r.resource), (Method::Delete, None));
    }

    #[test]
    fn refuses_what_a_server_would() {
        let cases = [
            (json!({"resource": {"resourceType": "Patient"}}), "invalid"),
            (json!({"request": {"method": "PATCH", "url": "Patient/p"}}), "not-supported"),
            (json!({"request": {"method": "PUT", "url": "Patient/p"}}), "invalid"),
            (
                json!({"resource": {"resourceType": "Observation"}, "request": {"method": "PUT", "url": "Patient/p"}}),
                "invalid",
            ),
            (
                json!({"resource": {"resourceType": "Patient", "id": "q"}, "request": {"method": "PUT", "url": "Patient/p"}}),
                "invalid",
            ),
            (
                json!({"resource": {"resourceType": "Patient", "id": "a/b"}, "request": {"method": "PUT", "url": "Patient?identifier=a|b"}}),
                "invalid",
            ),
            (
                json!({"resource": {"resourceType": "../etc"}, "request": {"method": "PUT", "url": "../etc/x"}}),
                "invalid",
            ),
            (
                json!({"resource": {"resourceType": "Patient"}, "request": {"method": "PUT", "url": "Patient"}}),
                "invalid",
            ),
            (
                json!({"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient/p"}}),
                "invalid",
            ),
            (
                json!({"resource": {"resourceType": "Patient"}, "request": {"method": "PUT", "url": "Patient?name=x"}}),
                "not-supported",
            ),
            (
                json!({"resource": {"resourceType": "Patient"}, "request": {"method": "PUT", "url": "https://x/Patient/p"}}),
                "not-supported",
            ),
            (
                json!({"resource": {"resourceType": "Patient"}, "request": {"method": "PUT", "url": "Patient/p/_history/1"}}),
                "not-supported",
            ),
            (
                json!({"resource": {"resourceType": "Patient"}, "request": {"method": "PUT", "url": "Patient/p", "ifNoneExist": "identifier=a|b"}}),
                "invalid",
            ),
        ];
        for (entry, code) in cases {
            let e = parse(entry.clone()).unwrap_err();
            assert_eq!((e.status, e.code), (400, code), "{entry}");
        }
    }

    #[test]
    fn names() {
        assert!(valid_type("Patient") && !valid_type("patient") && !valid_type("") && !valid_type("Pa1"));
        assert!(valid_id("a-b.C9") && !valid_id("") && !valid_id("a_b") && !valid_id(&"x".repeat(65)));
        assert_eq!(status_line(412), "412 Precondition Failed");
    }
}
