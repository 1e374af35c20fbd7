//! A small JSON object builder for FHIR resources: empty strings, arrays and objects are
//! never emitted (FHIR forbids them), and keys come out sorted, so output is deterministic.

use serde_json::{Map, Value};

/// An object under construction.
#[derive(Debug, Default, Clone)]
pub struct Obj(Map<String, Value>);

/// True for values FHIR does not allow to be present-but-empty.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

impl Obj {
    pub fn new() -> Self {
        Obj::default()
    }

    /// Sets `key` unless `value` is empty.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.put(key, value);
        self
    }

    /// In-place form of [`Obj::set`].
    pub fn put(&mut self, key: &str, value: impl Into<Value>) {
        let value = value.into();
        if !is_empty(&value) {
            self.0.insert(key.to_string(), value);
        }
    }

    /// Sets `key` to the non-empty items of `items`, if any.
    pub fn list(mut self, key: &str, items: impl IntoIterator<Item = Value>) -> Self {
        self.push_all(key, items);
        self
    }

    /// Appends the non-empty items to the array at `key`.
    pub fn push_all(&mut self, key: &str, items: impl IntoIterator<Item = Value>) {
        let mut new: Vec<Value> = items.into_iter().filter(|v| !is_empty(v)).collect();
        if new.is_empty() {
            return;
        }
        match self.0.get_mut(key) {
            Some(Value::Array(existing)) => existing.append(&mut new),
            _ => {
                self.0.insert(key.to_string(), Value::Array(new));
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// The fields, for reading without taking the object apart.
    pub fn fields(&self) -> &Map<String, Value> {
        &self.0
    }

    pub fn value(self) -> Value {
        Value::Object(self.0)
    }

    /// Makes every string a valid FHIR string ([`clean_string`]), dropping members left empty.
    pub fn clean(&mut self) {
        self.0.retain(|_, v| clean(v));
    }
}

/// A FHIR string (`^[ \r\n\t\S]+$`, no leading or trailing whitespace): control characters
/// other than tab, CR and LF removed, any other whitespace (no-break space, …) made a space,
/// then trimmed. Senders paste such characters from word processors; the server refuses them.
pub fn clean_string(s: &str) -> std::borrow::Cow<'_, str> {
    let odd = |c: char| (c.is_control() || c.is_whitespace()) && !matches!(c, ' ' | '\t' | '\r' | '\n');
    let trimmed = s.trim();
    if !trimmed.contains(odd) {
        return std::borrow::Cow::Borrowed(trimmed);
    }
    let cleaned: String = trimmed
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\t' | '\r' | '\n'))
        .map(|c| if odd(c) { ' ' } else { c })
        .collect();
    std::borrow::Cow::Owned(cleaned.trim().to_string())
}

/// A FHIR `code` (`[^\s]+( [^\s]+)*`): a valid string ([`clean_string`]) with every inner run
/// of whitespace made one space (`"mg / dL"` stays three words, `"A\t B"` → `"A B"`). `None`
/// when nothing remains; callers drop the code with a located warning.
pub fn clean_code(s: &str) -> Option<String> {
    let cleaned = clean_string(s);
    let code = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    (!code.is_empty()).then_some(code)
}

/// [`clean_string`] over every string under `v`; false when `v` is left empty (to be dropped).
/// A member named `code` holding a string is a FHIR `code` (Coding, Quantity) and gets
/// [`clean_code`]: the maps normalise codes where they read them and warn there; this is the
/// backstop for any code they pass through.
fn clean(v: &mut Value) -> bool {
    match v {
        Value::String(s) => {
            if let std::borrow::Cow::Owned(c) = clean_string(s) {
                *s = c;
            } else if s.len() != clean_string(s).len() {
                *s = clean_string(s).into_owned();
            }
            !s.is_empty()
        }
        Value::Array(items) => {
            items.retain_mut(clean);
            !items.is_empty()
        }
        Value::Object(map) => {
            map.retain(|k, v| match v {
                Value::String(code) if k == "code" => match clean_code(code) {
                    Some(c) => {
                        *code = c;
                        true
                    }
                    None => false,
                },
                _ => clean(v),
            });
            !map.is_empty()
        }
        _ => true,
    }
}

impl From<Obj> for Value {
    fn from(o: Obj) -> Value {
        o.value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_are_made_valid_fhir_strings() {
        assert_eq!(clean_string("Main\u{a0}St"), "Main St");
        assert_eq!(clean_string(" a\u{0}b\u{7}c\u{2028}d \n"), "abc d");
        assert_eq!(clean_string("line one\nline two\tend"), "line one\nline two\tend");
        let mut o = Obj::new()
            .set("text", "x\u{a0}y")
            .set("blank", "\u{a0}\u{a0}")
            .list("l", [json!({"v": "\u{1}"}), json!("ok")]);
        o.clean();
        assert_eq!(o.value(), json!({"text": "x y", "l": ["ok"]}));
    }

    #[test]
    fn codes_are_trimmed_with_inner_whitespace_collapsed() {
        assert_eq!(clean_code("  mg/dL "), Some("mg/dL".into()));
        assert_eq!(clean_code("A \t\u{a0} B\r\nC"), Some("A B C".into()));
        assert_eq!(clean_code("x\u{1}y"), Some("xy".into()));
        for blank in ["", "   ", "\u{a0}\t", "\u{0}\u{7}"] {
            assert_eq!(clean_code(blank), None, "{blank:?}");
        }
        // The backstop in `clean`: members named `code` become valid codes or go.
        let mut o = Obj::new()
            .set("coding", json!([{"code": " A  B ", "display": "A  B"}, {"code": "\u{1}", "display": "d"}]))
            .set("unit", "x");
        o.clean();
        assert_eq!(o.value(), json!({"coding": [{"code": "A B", "display": "A  B"}, {"display": "d"}], "unit": "x"}));
    }

    #[test]
    fn empties_are_dropped_and_keys_sorted() {
        let o = Obj::new()
            .set("z", "x")
            .set("a", "")
            .set("m", Obj::new().set("e", ""))
            .list("l", [json!(""), json!({}), json!("v")])
            .list("none", [json!([])]);
        assert_eq!(serde_json::to_string(&o.value()).unwrap(), r#"{"l":["v"],"z":"x"}"#);
    }
}
