//! HL7 v2 datatypes → FHIR R4 datatypes, per the HL7 V2-to-FHIR IG's published datatype maps.
//!
//! Output is built with [`Obj`], so empty strings, arrays and objects are never emitted, and
//! every string comes from the message, from a code table ([`super::codes`]) or from the
//! site configuration. Values are trimmed of surrounding whitespace. Both "not sent" and the
//! explicit HL7 null `""` produce nothing here (the parser returns `""` for both).
//!
//! Choices where the IG is silent (or not representable in R4) are documented per function.

use serde_json::{Number, Value};

use super::codes::{self, coding_system_uri};
use super::json::{clean_code, Obj};
use super::model::{Identity, Report, Resource, Write};
use super::site::SiteMaps;
use super::time;
use crate::hl7::parser::{Component, Field, Rep};

const EXT_CHECK_DIGIT: &str = "http://hl7.org/fhir/StructureDefinition/identifier-checkDigit";
const EXT_CHECK_DIGIT_SCHEME: &str = "http://hl7.org/fhir/StructureDefinition/namingsystem-checkDigit";
const EXT_CP_COUNTRY: &str = "http://hl7.org/fhir/StructureDefinition/contactpoint-country";
const EXT_CP_AREA: &str = "http://hl7.org/fhir/StructureDefinition/contactpoint-area";
const EXT_CP_LOCAL: &str = "http://hl7.org/fhir/StructureDefinition/contactpoint-local";
const EXT_CP_EXTENSION: &str = "http://hl7.org/fhir/StructureDefinition/contactpoint-extension";
const US_SSN: &str = "http://hl7.org/fhir/sid/us-ssn";
const US_NPI: &str = "http://hl7.org/fhir/sid/us-npi";
const RFC3986: &str = "urn:ietf:rfc:3986";
const V2_0301: &str = "http://terminology.hl7.org/CodeSystem/v2-0301";
const V2_0360: &str = "http://terminology.hl7.org/CodeSystem/v2-0360";

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

/// The trimmed first subcomponent of a component.
fn text(c: Component) -> String {
    c.value().trim().to_string()
}

/// The trimmed subcomponent `i` of a component.
fn sub(c: Component, i: usize) -> String {
    c.sub(i).value().trim().to_string()
}

fn or_null(o: Obj) -> Value {
    if o.is_empty() {
        Value::Null
    } else {
        o.value()
    }
}

fn string_ext(url: &str, value: &str) -> Value {
    if value.is_empty() {
        return Value::Null;
    }
    Obj::new().set("url", url).set("valueString", value).value()
}

/// `scheme:rest` with no whitespace: usable as a FHIR `uri` as sent.
fn looks_like_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else { return false };
    let mut b = scheme.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'.' | b'-'))
        && !rest.is_empty()
        && !s.contains(char::is_whitespace)
}

/// An ISO OID (`2.16.840.1…`).
fn looks_like_oid(s: &str) -> bool {
    let mut parts = s.split('.');
    matches!(parts.next(), Some("0" | "1" | "2"))
        && s.contains('.')
        && parts.all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && (p == "0" || !p.starts_with('0')))
}

/// A coding system name (CWE.3 and friends) → system URI: table 0396, else a URI or OID
/// sent as the name. `None` for local names.
fn system_uri(name: &str) -> Option<String> {
    if let Some(uri) = coding_system_uri(name) {
        return Some(uri.to_string());
    }
    if looks_like_oid(name) {
        return Some(format!("urn:oid:{name}"));
    }
    looks_like_uri(name).then(|| name.to_string())
}

/// The identifier system for an assigning authority (HD: namespace, universal id, type):
/// the site map by namespace (then by universal id); an ISO universal id → `urn:oid:`; a
/// UUID → `urn:uuid:`; a URI-looking universal id or namespace as sent; an OID namespace →
/// `urn:oid:`.
fn hd_system(ns: &str, uid: &str, uid_type: &str, site: &SiteMaps) -> Option<String> {
    for key in [ns, uid] {
        if !key.is_empty() {
            if let Some(s) = site.identifier_systems.get(key).filter(|s| !s.is_empty()) {
                return Some(s.clone());
            }
        }
    }
    if !uid.is_empty() && !uid.contains(char::is_whitespace) {
        if uid_type.eq_ignore_ascii_case("ISO") || looks_like_oid(uid) {
            if uid.starts_with("urn:oid:") || looks_like_oid(uid) {
                return Some(if uid.starts_with("urn:") { uid.to_string() } else { format!("urn:oid:{uid}") });
            }
        } else if uid_type.eq_ignore_ascii_case("UUID") {
            return Some(if uid.starts_with("urn:uuid:") { uid.to_string() } else { format!("urn:uuid:{uid}") });
        }
        if looks_like_uri(uid) {
            return Some(uid.to_string());
        }
    }
    if looks_like_oid(ns) {
        return Some(format!("urn:oid:{ns}"));
    }
    looks_like_uri(ns).then(|| ns.to_string())
}

/// The site's default system for an authority it has not mapped (namespace, else universal
/// id); `None` when the identifier names no authority.
fn unmapped_authority_system(ns: &str, uid: &str, site: &SiteMaps) -> Option<String> {
    let authority = if ns.is_empty() { uid } else { ns };
    (!authority.is_empty()).then(|| site.default_system(authority))
}

/// Systems from the FHIR identifier registry implied by the identifier type (table 0203)
/// when the assigning authority gives none: SS → US SSN, NPI → US NPI.
fn registry_system(type_code: &str, ns: &str) -> Option<String> {
    if type_code.eq_ignore_ascii_case("SS") || (ns.eq_ignore_ascii_case("SSA") && type_code.is_empty()) {
        return Some(US_SSN.to_string());
    }
    if type_code.eq_ignore_ascii_case("NPI") || ns.eq_ignore_ascii_case("NPI") {
        return Some(US_NPI.to_string());
    }
    None
}

/// A stable key fragment: ASCII letters, digits, `.`, `-`, `_`; anything else becomes `-`.
fn key_part(parts: &[&str]) -> String {
    let mut out = String::new();
    for p in parts.iter().filter(|p| !p.is_empty()) {
        if !out.is_empty() {
            out.push('-');
        }
        for ch in p.chars() {
            out.push(if ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_') { ch } else { '-' });
        }
    }
    out
}

/// A v2 DT/DTM as a FHIR date (for periods of names, addresses and telecoms, whose maps
/// have no site zone): time of day dropped. Invalid → `Null`.
fn period_date(v: &str) -> Value {
    time::to_fhir_date(v).map(Value::String).unwrap_or(Value::Null)
}

fn period(start: Value, end: Value) -> Value {
    or_null(Obj::new().set("start", start).set("end", end))
}

// ---------------------------------------------------------------------------------------
// Identifiers
// ---------------------------------------------------------------------------------------

fn identifier_parts(
    value: &str,
    system: Option<String>,
    type_code: &str,
    assigner: &str,
    extra: impl FnOnce(Obj) -> Obj,
) -> Option<(Value, Option<Identity>)> {
    if value.is_empty() {
        return None;
    }
    let mut o = Obj::new().set("value", value).set("type", codes::identifier_type(type_code));
    if let Some(s) = &system {
        o.put("system", s.as_str());
    } else if !assigner.is_empty() {
        // IG: an authority not in the identifier registry is an assigner Organization; with
        // no system known we keep its name as the assigner's display.
        o.put("assigner", Obj::new().set("display", assigner));
    }
    let o = extra(o);
    let identity = system.map(|system| Identity { system, value: value.to_string() });
    Some((o.value(), identity))
}

/// CX → Identifier (IG CX\[Identifier\]): value CX.1, check digit extensions CX.2/CX.3,
/// system from CX.4 (see `hd_system`; with no authority system, SS/NPI types take the
/// registry systems), type CX.5 (v2-0203), period CX.7/CX.8, assigner display CX.4.1 when no
/// system is known. `None` when CX.1 is empty. The [`Identity`] only with system and value.
pub fn identifier(cx: Rep, site: &SiteMaps) -> Option<(Value, Option<Identity>)> {
    let value = text(cx.component(1));
    let auth = cx.component(4);
    let (ns, uid, uid_type) = (sub(auth, 1), sub(auth, 2), sub(auth, 3));
    let type_code = text(cx.component(5));
    // A site may give one authority different systems per identifier type ("UHMC^MR" for
    // medical record numbers, "UHMC^VN" for visits); the plain authority is the fallback.
    let typed = site.identifier_systems.get(&format!("{ns}^{type_code}")).filter(|s| !s.is_empty()).cloned();
    let system = typed
        .or_else(|| hd_system(&ns, &uid, &uid_type, site))
        .or_else(|| registry_system(&type_code, &ns))
        .or_else(|| unmapped_authority_system(&ns, &uid, site));
    let check = text(cx.component(2));
    let scheme = text(cx.component(3));
    let start = period_date(&cx.component(7).value());
    let end = period_date(&cx.component(8).value());
    identifier_parts(&value, system, &type_code, &ns, |o| {
        o.set("period", period(start, end)).list(
            "extension",
            [
                string_ext(EXT_CHECK_DIGIT, &check),
                if check.is_empty() { Value::Null } else { string_ext(EXT_CHECK_DIGIT_SCHEME, &scheme) },
            ],
        )
    })
}

/// EI → Identifier (IG EI[Identifier-System]): value EI.1, system from EI.2 namespace (site
/// map) / EI.3 universal id with EI.4 type, as for CX.4. `None` when EI.1 is empty.
pub fn ei_identifier(ei: Rep, site: &SiteMaps) -> Option<(Value, Option<Identity>)> {
    let value = text(ei.component(1));
    let (ns, uid, uid_type) = (text(ei.component(2)), text(ei.component(3)), text(ei.component(4)));
    let system = hd_system(&ns, &uid, &uid_type, site).or_else(|| unmapped_authority_system(&ns, &uid, site));
    identifier_parts(&value, system, "", &ns, |o| o)
}

// ---------------------------------------------------------------------------------------
// Names, addresses, telecoms
// ---------------------------------------------------------------------------------------

/// XPN → HumanName (IG XPN\[HumanName\]): family XPN.1.1, given [XPN.2, XPN.3] (XPN.3 kept as
/// one item, as FHIR-Converter), prefix XPN.5, suffix [XPN.4, XPN.6, XPN.14], use XPN.7
/// (table 0200), period XPN.12/XPN.13 as dates. No `text` (the IG sets none). `Null` when
/// empty.
pub fn human_name(xpn: Rep) -> Value {
    let c = |i| text(xpn.component(i));
    or_null(
        Obj::new()
            .set("family", text(xpn.component(1)))
            .list("given", [c(2).into(), c(3).into()])
            .list("prefix", [c(5).into()])
            .list("suffix", [c(4).into(), c(6).into(), c(14).into()])
            .set("use", codes::name_use(&c(7)))
            .set("period", period(period_date(&c(12)), period_date(&c(13)))),
    )
}

/// XAD → Address (IG XAD\[Address\]): line [XAD.1.1–3 (SAD), XAD.2, XAD.19], city, state,
/// postalCode, country (XAD.3–6), XAD.7 → use (BA, BI, C, B, H, O) or type (M, SH), district
/// XAD.9, period XAD.13/XAD.14 as dates. `Null` when empty.
pub fn address(xad: Rep) -> Value {
    let c = |i| text(xad.component(i));
    let street = xad.component(1);
    let kind = c(7);
    or_null(
        Obj::new()
            .list(
                "line",
                [sub(street, 1).into(), sub(street, 2).into(), sub(street, 3).into(), c(2).into(), c(19).into()],
            )
            .set("city", c(3))
            .set("state", c(4))
            .set("postalCode", c(5))
            .set("country", c(6))
            .set("use", codes::address_use(&kind))
            .set("type", codes::address_type(&kind))
            .set("district", c(9))
            .set("period", period(period_date(&c(13)), period_date(&c(14)))),
    )
}

/// XTN → ContactPoint (IG XTN\[ContactPoint\]). system: XTN.3 (table 0202; `CP` → phone with
/// use mobile, as FHIR-Converter), or email when XTN.3 is empty and XTN.4 valued. use: XTN.2
/// (table 0201). value: e-mail types → XTN.4 (else XTN.1); phones → XTN.12 (unformatted)
/// when valued, else `[+XTN.5 ][XTN.6 ]XTN.7[ XXTN.8]` when XTN.7 is valued, else XTN.1
/// (legacy). XTN.5–8 also go to the contactpoint-* extensions; period XTN.13/14 as dates;
/// rank XTN.18. `Null` without a value.
pub fn contact_point(xtn: Rep) -> Value {
    let c = |i| text(xtn.component(i));
    let equipment = c(3);
    let email_addr = c(4);
    let system =
        codes::telecom_system(&equipment).or((equipment.is_empty() && !email_addr.is_empty()).then_some("email"));
    let is_email = equipment.eq_ignore_ascii_case("Internet")
        || equipment.eq_ignore_ascii_case("X.400")
        || system == Some("email");
    let (country, area, local, ext) = (c(5), c(6), c(7), c(8));
    let value = if is_email {
        if email_addr.is_empty() {
            c(1)
        } else {
            email_addr
        }
    } else if !c(12).is_empty() {
        c(12)
    } else if !local.is_empty() {
        let mut v = String::new();
        if !country.is_empty() {
            v.push('+');
            v.push_str(&country);
            v.push(' ');
        }
        if !area.is_empty() {
            v.push_str(&area);
            v.push(' ');
        }
        v.push_str(&local);
        if !ext.is_empty() {
            v.push_str(" X");
            v.push_str(&ext);
        }
        v
    } else {
        c(1)
    };
    if value.is_empty() {
        return Value::Null;
    }
    let rank = c(18).parse::<u64>().ok().filter(|r| *r > 0);
    // FHIR invariant cpt-2: a value needs a system. Without an equipment type, an address
    // with `@` is an email, anything else a phone number (the v2 field is a telephone number).
    let system = system.or(Some(if value.contains('@') { "email" } else { "phone" }));
    let mut o = Obj::new()
        .set("value", value)
        .set("system", system)
        .set("use", codes::telecom_use(&c(2)).or(codes::telecom_equipment_use(&equipment)))
        .set("period", period(period_date(&c(13)), period_date(&c(14))))
        .set("rank", rank);
    if !is_email {
        o.push_all(
            "extension",
            [
                string_ext(EXT_CP_COUNTRY, &country),
                string_ext(EXT_CP_AREA, &area),
                string_ext(EXT_CP_LOCAL, &local),
                string_ext(EXT_CP_EXTENSION, &ext),
            ],
        );
    }
    o.value()
}

// ---------------------------------------------------------------------------------------
// Coded values
// ---------------------------------------------------------------------------------------

/// CWE/CE/CNE/CF → CodeableConcept (IG CWE\[CodeableConcept\]): codings for triplets CWE.1–3
/// (+version CWE.7), CWE.4–6 (+CWE.8) and CWE.10–12 (+CWE.13); text CWE.9, else CWE.2.
///
/// - system: table 0396 via [`coding_system_uri`], or a URI/OID sent as the system name. An
///   unknown (local) name gives a coding **without** `system` (FHIR requires a URI and we
///   invent none; FHIR-Converter would emit the bare name, which is not a valid URI).
/// - When the site maps `(system name, code)`, the mapped coding is added after the sent
///   codings (the original stays first, as the IG orders them); duplicates are dropped.
/// - Each sent code with no resolvable system and no site map is reported with
///   `report.unmapped(system name, code)` (even when another triplet carries a standard code).
///
/// `Null` when empty (or `""`).
pub fn codeable_concept(cwe: Rep, site: &SiteMaps, report: &mut Report) -> Value {
    if cwe.is_empty() || cwe.is_null() {
        return Value::Null;
    }
    let c = |i| text(cwe.component(i));
    let mut codings: Vec<(Option<String>, String, Value)> = Vec::new();
    let mut mapped: Vec<Value> = Vec::new();
    for (code_i, display_i, system_i, version_i) in [(1, 2, 3, 7), (4, 5, 6, 8), (10, 11, 12, 13)] {
        if c(code_i).is_empty() {
            continue;
        }
        let Some(code) = clean_code(&c(code_i)) else {
            report.warn(&format!("CWE.{code_i}: code with nothing but whitespace or control characters dropped"));
            continue;
        };
        let name = c(system_i);
        let system = system_uri(&name);
        let site_map = site.code(&name, &code);
        if system.is_none() && site_map.is_none() {
            report.unmapped(&name, &code);
        }
        let coding = Obj::new()
            .set("system", system.clone())
            .set("code", code.as_str())
            .set("display", c(display_i))
            .set("version", c(version_i))
            .value();
        codings.push((system, code, coding));
        if let Some(m) = site_map {
            mapped.push(
                Obj::new()
                    .set("system", m.system.as_str())
                    .set("code", m.code.as_str())
                    .set("display", m.display.as_str())
                    .value(),
            );
        }
    }
    let mut all: Vec<Value> = Vec::new();
    let mut seen: Vec<(Value, Value)> = Vec::new();
    for v in codings.into_iter().map(|(_, _, v)| v).chain(mapped) {
        let k = (v.get("system").cloned().unwrap_or(Value::Null), v.get("code").cloned().unwrap_or(Value::Null));
        if !seen.contains(&k) {
            seen.push(k);
            all.push(v);
        }
    }
    let text = Some(c(9)).filter(|t| !t.is_empty()).unwrap_or_else(|| c(2));
    or_null(Obj::new().list("coding", all).set("text", text))
}

// ---------------------------------------------------------------------------------------
// Resources from datatypes
// ---------------------------------------------------------------------------------------

/// XCN → Practitioner (IG XCN\[Practitioner\]): identifier XCN.1 with system from XCN.9 (see
/// `hd_system`; NPI by XCN.13 or an `NPI` authority), type XCN.13; name family XCN.2, given
/// [XCN.3, XCN.4], suffix [XCN.5, XCN.21], prefix XCN.6, use XCN.10; qualification XCN.7
/// (v2-0360). Key `Practitioner/<id[-authority]>` (or `<family-given>` without an id);
/// identity when the identifier system is known. `None` without id and name.
pub fn practitioner(xcn: Rep, site: &SiteMaps) -> Option<Resource> {
    let c = |i| text(xcn.component(i));
    let auth = xcn.component(9);
    let (ns, uid, uid_type) = (sub(auth, 1), sub(auth, 2), sub(auth, 3));
    let type_code = c(13);
    let system = hd_system(&ns, &uid, &uid_type, site)
        .or_else(|| registry_system(&type_code, &ns))
        .or_else(|| unmapped_authority_system(&ns, &uid, site));
    let id_value = c(1);
    let ident = identifier_parts(&id_value, system, &type_code, &ns, |o| o);
    let family = sub(xcn.component(2), 1);
    let name = or_null(
        Obj::new()
            .set("family", family.as_str())
            .list("given", [c(3).into(), c(4).into()])
            .list("suffix", [c(5).into(), c(21).into()])
            .list("prefix", [c(6).into()])
            .set("use", codes::name_use(&c(10))),
    );
    if ident.is_none() && name.is_null() {
        return None;
    }
    let qualification = match clean_code(&c(7)) {
        None => Value::Null,
        Some(degree) => Obj::new()
            .set("code", Obj::new().list("coding", [Obj::new().set("system", V2_0360).set("code", degree).value()]))
            .value(),
    };
    let key = if id_value.is_empty() { key_part(&[&family, &c(3)]) } else { key_part(&[&id_value, &ns]) };
    let (identifier, identity) = ident.map_or((Value::Null, None), |(v, i)| (v, i));
    let body = Obj::new().list("identifier", [identifier]).list("name", [name]).list("qualification", [qualification]);
    Some(Resource { kind: "Practitioner", key: format!("Practitioner/{key}"), identity, body, write: Write::Upsert })
}

/// Table 0301 universal id types: a component 3 from this list marks an HD (not an XON).
fn is_universal_id_type(s: &str) -> bool {
    [
        "ISO", "UUID", "DNS", "URI", "CLIA", "CLIP", "GUID", "HCD", "HL7", "EUI64", "L", "M", "N", "RANDOM", "X400",
        "X500",
    ]
    .iter()
    .any(|t| t.eq_ignore_ascii_case(s))
}

/// XON or HD → Organization. An HD is recognised by at most 3 components with a table 0301
/// type in component 3 (or 1–2 components whose second looks like an OID/URI); anything else
/// is read as an XON.
///
/// - HD (IG HD\[Organization\]): identifier [HD.1; HD.2 typed HD.3 (v2-0301), system
///   `urn:ietf:rfc:3986` for ISO/UUID with the value as `urn:oid:`/`urn:uuid:`]; name HD.1 (as
///   FHIR-Converter). Identity: the universal id when ISO/UUID.
/// - XON (IG XON\[Organization\]): name XON.1; identifier XON.10 (else XON.3) with system from
///   XON.6 (`hd_system`), type XON.7 (v2-0203), check digits XON.4/5. Identity when the
///   system is known.
///
/// Key `Organization/<id or name>`. `None` when empty.
pub fn organization(xon_or_hd: Rep, site: &SiteMaps) -> Option<Resource> {
    let n = xon_or_hd.component_count();
    let c = |i| text(xon_or_hd.component(i));
    let hd = n <= 3
        && (is_universal_id_type(&c(3)) || (n == 2 && (looks_like_oid(&c(2)) || looks_like_uri(&c(2)))) || n == 1);
    if hd {
        organization_hd(xon_or_hd)
    } else {
        organization_xon(xon_or_hd, site)
    }
}

fn organization_hd(hd: Rep) -> Option<Resource> {
    let c = |i| text(hd.component(i));
    let (ns, uid, uid_type) = (c(1), c(2), c(3));
    if ns.is_empty() && uid.is_empty() {
        return None;
    }
    let typed = uid_type.eq_ignore_ascii_case("ISO")
        || uid_type.eq_ignore_ascii_case("UUID")
        || (uid_type.is_empty() && looks_like_oid(&uid));
    let uid_value = if uid.is_empty() || uid.starts_with("urn:") {
        uid.clone()
    } else if uid_type.eq_ignore_ascii_case("UUID") {
        format!("urn:uuid:{uid}")
    } else if looks_like_oid(&uid) {
        format!("urn:oid:{uid}")
    } else {
        uid.clone()
    };
    let uid_system = (typed && !uid_value.is_empty() && uid_value.starts_with("urn:")).then_some(RFC3986);
    let type_cc = if uid_type.is_empty() || uid_type.contains(char::is_whitespace) {
        Value::Null
    } else {
        Obj::new().list("coding", [Obj::new().set("system", V2_0301).set("code", uid_type.as_str()).value()]).value()
    };
    let id2 = if uid.is_empty() {
        Value::Null
    } else {
        Obj::new().set("value", uid_value.as_str()).set("system", uid_system).set("type", type_cc).value()
    };
    let body =
        Obj::new().list("identifier", [Obj::new().set("value", ns.as_str()).value(), id2]).set("name", ns.as_str());
    let identity = uid_system.map(|s| Identity { system: s.to_string(), value: uid_value.clone() });
    let key = if uid.is_empty() { key_part(&[&ns]) } else { key_part(&[&uid]) };
    Some(Resource { kind: "Organization", key: format!("Organization/{key}"), identity, body, write: Write::Upsert })
}

fn organization_xon(xon: Rep, site: &SiteMaps) -> Option<Resource> {
    let c = |i| text(xon.component(i));
    let name = c(1);
    let id_value = if c(10).is_empty() { c(3) } else { c(10) };
    let auth = xon.component(6);
    let (ns, uid, uid_type) = (sub(auth, 1), sub(auth, 2), sub(auth, 3));
    let system = hd_system(&ns, &uid, &uid_type, site).or_else(|| unmapped_authority_system(&ns, &uid, site));
    let (check, scheme) = (c(4), c(5));
    let ident = identifier_parts(&id_value, system, &c(7), &ns, |o| {
        o.list(
            "extension",
            [
                string_ext(EXT_CHECK_DIGIT, &check),
                if check.is_empty() { Value::Null } else { string_ext(EXT_CHECK_DIGIT_SCHEME, &scheme) },
            ],
        )
    });
    if ident.is_none() && name.is_empty() {
        return None;
    }
    let key = if id_value.is_empty() { key_part(&[&name]) } else { key_part(&[&id_value, &ns]) };
    let (identifier, identity) = ident.map_or((Value::Null, None), |(v, i)| (v, i));
    let body = Obj::new().set("name", name).list("identifier", [identifier]);
    Some(Resource { kind: "Organization", key: format!("Organization/{key}"), identity, body, write: Write::Upsert })
}

/// PL → a chain of Locations, one per level sent, most general first (IG PL\[Location\]). Each
/// level is `partOf` the next level up that was sent, in the IG's default order (most specific
/// first): bed PL.3 (`bd`), room PL.2 (`ro`), floor PL.8 (`lvl`), point of care PL.1 (`wa`:
/// the IG leaves the point of care's type to an unpublished extension; a v2 point of care is
/// the nursing unit, a ward), building PL.7 (`bu`), facility PL.4.1 (`si`). Each: identifier
/// and name that level's value, mode `instance`; the most specific one also gets the
/// description PL.9. The caller references the last (most specific) one.
///
/// Identity (a source key) per level over the levels from the facility down to it, each tagged
/// with its type (`si=UHMC`, `wa=4W`, `ro=401`): two beds of one room share the room Location,
/// and bed `A` of room 401 is not bed `A` of room 402. Empty when PL is empty.
pub fn locations(pl: Rep) -> Vec<Resource> {
    let c = |i| text(pl.component(i));
    // Most general first, so every level's `partOf` target is added before it.
    let levels: [(String, &'static str); 6] =
        [(sub(pl.component(4), 1), "si"), (c(7), "bu"), (c(1), "wa"), (c(8), "lvl"), (c(2), "ro"), (c(3), "bd")];
    let sent: Vec<&(String, &'static str)> = levels.iter().filter(|(v, _)| !v.is_empty()).collect();
    let mut parts: Vec<String> = Vec::new();
    let mut out: Vec<Resource> = Vec::new();
    for (i, (value, physical)) in sent.iter().enumerate() {
        parts.push(format!("{physical}={value}"));
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        let Some(identity) = Identity::source_key("Location", &refs) else { continue };
        let physical_type = Obj::new()
            .list("coding", [Obj::new().set("system", codes::LOCATION_PHYSICAL_TYPE).set("code", *physical).value()]);
        let most_specific = i + 1 == sent.len();
        let body = Obj::new()
            .list("identifier", [Obj::new().set("value", value.as_str()).value()])
            .set("name", value.as_str())
            .set("description", if most_specific { c(9) } else { String::new() })
            .set("mode", "instance")
            .set("physicalType", physical_type)
            .set("partOf", out.last().map(|up: &Resource| super::model::reference(&up.key)));
        let key = format!("Location/{}", identity.value);
        out.push(Resource { kind: "Location", key, identity: Some(identity), body, write: Write::Upsert });
    }
    out
}

// ---------------------------------------------------------------------------------------
// Quantities and observation values
// ---------------------------------------------------------------------------------------

/// A v2 NM (`[+|-]digits[.digits]`) as a JSON number in FHIR decimal form, at the precision it
/// was sent with: serde_json's `arbitrary_precision` keeps the digits, so `13.50` reaches the
/// bundle as 13.50 (FHIR decimals carry their precision; a lab's `1.50` is not `1.5`). Only
/// the form changes: a `+` sign, leading zeros and the sign of zero go, `.5` becomes 0.5.
pub fn decimal(number: &str) -> Option<Number> {
    let s = number.trim();
    let (neg, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let mut norm = String::new();
    if neg && (int != "0" || frac.bytes().any(|b| b != b'0')) {
        norm.push('-');
    }
    norm.push_str(int);
    if !frac.is_empty() {
        norm.push('.');
        norm.push_str(frac);
    }
    let n: Number = norm.parse().ok()?;
    // A huge integer parses as f64; reject values that are not finite.
    if n.as_f64().is_some_and(|f| f.is_finite()) {
        Some(n)
    } else {
        None
    }
}

/// UCUM codes commonly sent without a coding system in OBX-6 (accepted as UCUM codes).
const COMMON_UCUM: &[&str] = &[
    "%",
    "/min",
    "/uL",
    "10*3/uL",
    "10*6/uL",
    "10*9/L",
    "10*12/L",
    "[IU]/L",
    "[IU]/mL",
    "[in_i]",
    "[lb_av]",
    "[degF]",
    "Cel",
    "U/L",
    "a",
    "cm",
    "d",
    "fL",
    "g",
    "g/L",
    "g/dL",
    "h",
    "kg",
    "kg/m2",
    "L",
    "m",
    "mL",
    "mL/min",
    "mL/min/{1.73_m2}",
    "mU/L",
    "meq/L",
    "mg",
    "mg/L",
    "mg/dL",
    "mg/g",
    "min",
    "mm",
    "mm/h",
    "mm[Hg]",
    "mmol/L",
    "mo",
    "mol/L",
    "ng/L",
    "ng/dL",
    "ng/mL",
    "nmol/L",
    "pg",
    "pg/mL",
    "pmol/L",
    "s",
    "ug",
    "ug/L",
    "ug/dL",
    "ug/mL",
    "umol/L",
    "uU/mL",
    "wk",
];

/// NM + CWE units → Quantity (IG NM\[Quantity\] + CWE\[Quantity\]): value; unit CWE.2 (else
/// CWE.1); code CWE.1 with system when the units' system is known (UCUM, table 0396, a site
/// map) — or, with no system sent, when CWE.1 is a common UCUM code. A code with a sent but
/// unknown system is reported unmapped. `Null` when the number is empty or not numeric
/// (then `report.warnings` gets "invalid numeric value").
pub fn quantity(number: &str, units: Rep, site: &SiteMaps, report: &mut Report) -> Value {
    if number.trim().is_empty() {
        return Value::Null;
    }
    let Some(value) = decimal(number) else {
        report.warn("invalid numeric value");
        return Value::Null;
    };
    unit_fields(Obj::new().set("value", value), units, site, report).value()
}

fn unit_fields(mut o: Obj, units: Rep, site: &SiteMaps, report: &mut Report) -> Obj {
    let c = |i| text(units.component(i));
    let (sent, display, name) = (c(1), c(2), c(3));
    let code = clean_code(&sent).unwrap_or_default();
    if code.is_empty() && !sent.is_empty() {
        report.warn("units code with nothing but whitespace or control characters dropped");
    }
    o.put("unit", if display.is_empty() { code.clone() } else { display });
    if code.is_empty() {
        return o;
    }
    if let Some(m) = site.code(&name, &code) {
        o.put("system", m.system.as_str());
        o.put("code", m.code.as_str());
    } else if let Some(system) = (!name.is_empty()).then(|| system_uri(&name)).flatten() {
        o.put("system", system);
        o.put("code", code);
    } else if name.is_empty() && COMMON_UCUM.contains(&code.as_str()) {
        o.put("system", codes::UCUM);
        o.put("code", code);
    } else if !name.is_empty() {
        report.unmapped(&name, &code);
    }
    o
}

/// A FHIR Quantity comparator from SN.1 (`=` and empty: none).
fn comparator(s: &str) -> Result<Option<&'static str>, ()> {
    match s {
        "" | "=" => Ok(None),
        "<" => Ok(Some("<")),
        ">" => Ok(Some(">")),
        "<=" => Ok(Some("<=")),
        ">=" => Ok(Some(">=")),
        _ => Err(()),
    }
}

/// SN → (key, value) (IG SN[Quantity]/[Range]/[Ratio]): `[cmp]^n` → valueQuantity with
/// comparator; `^n1^-^n2` → valueRange (units on low and high); `[cmp]^n1^:^n2` or `/` →
/// valueRatio (no units: titers); `^n1^.^n2` → valueQuantity `n1.n2`; `^n^+` (categorical) →
/// valueString `n+`. The IG's originalText extension is not emitted. Anything else (`<>`,
/// non-numeric) → valueString of the components as sent.
fn structured_numeric(rep: Rep, units: Rep, site: &SiteMaps, report: &mut Report) -> Option<(&'static str, Value)> {
    let c = |i| text(rep.component(i));
    let (cmp, n1, sep, n2) = (c(1), c(2), c(3), c(4));
    if cmp.is_empty() && n1.is_empty() && sep.is_empty() && n2.is_empty() {
        return None;
    }
    let q =
        |n: &str, report: &mut Report| decimal(n).map(|v| unit_fields(Obj::new().set("value", v), units, site, report));
    let structured = match (comparator(&cmp), sep.as_str()) {
        (Ok(cmp), "") if n2.is_empty() => q(&n1, report).map(|o| ("valueQuantity", o.set("comparator", cmp).value())),
        (Ok(None), "-") => match (q(&n1, report), q(&n2, report)) {
            (Some(lo), Some(hi)) => Some(("valueRange", Obj::new().set("low", lo).set("high", hi).value())),
            _ => None,
        },
        (Ok(cmp), ":" | "/") => match (decimal(&n1), decimal(&n2)) {
            (Some(a), Some(b)) => Some((
                "valueRatio",
                Obj::new()
                    .set("numerator", Obj::new().set("value", a).set("comparator", cmp))
                    .set("denominator", Obj::new().set("value", b))
                    .value(),
            )),
            _ => None,
        },
        (Ok(cmp), ".") => q(&format!("{n1}.{n2}"), report).map(|o| ("valueQuantity", o.set("comparator", cmp).value())),
        (Ok(None), "+") if n2.is_empty() && decimal(&n1).is_some() => {
            Some(("valueString", Value::String(format!("{n1}+"))))
        }
        _ => None,
    };
    structured.or_else(|| {
        let s = [cmp, n1, sep, n2].concat();
        (!s.is_empty()).then_some(("valueString", Value::String(s)))
    })
}

/// The text of a repetition: components joined with `^` (subcomponents with `&`), so text
/// that carried unescaped delimiters is not cut at the first one.
fn rep_text(rep: Rep) -> String {
    let parts: Vec<String> =
        rep.components().map(|c| c.subs().map(|s| s.value().into_owned()).collect::<Vec<_>>().join("&")).collect();
    let joined = parts.join("^");
    joined.trim_end_matches(['^', '&']).to_string()
}

/// v2 TM (`HH[MM[SS[.S…]]][+/-ZZZZ]`) → FHIR time `hh:mm:ss[.s…]` (the offset is dropped: FHIR
/// time has none).
pub fn fhir_time(value: &str) -> Option<String> {
    let v = value.trim();
    let body = v.split(['+', '-']).next().unwrap_or("");
    let (main, frac) = body.split_once('.').unwrap_or((body, ""));
    if !matches!(main.len(), 2 | 4 | 6)
        || !main.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    if !frac.is_empty() && main.len() != 6 {
        return None;
    }
    let num = |i: usize| main.get(i..i + 2).map_or(Some(0), |s| s.parse::<u32>().ok());
    let (h, m, s) = (num(0)?, num(2)?, num(4)?);
    if h > 23 || m > 59 || s > 59 {
        return None;
    }
    let frac = if frac.is_empty() { String::new() } else { format!(".{frac}") };
    Some(format!("{h:02}:{m:02}:{s:02}{frac}"))
}

/// OBX-5 by OBX-2 → `(value[x] key, value)`s (IG OBX\[Observation\]):
///
/// - NM → valueQuantity (units from OBX-6); a non-numeric NM is kept as valueString with a
///   warning. SN → see `structured_numeric` (valueQuantity with comparator / valueRange /
///   valueRatio). CWE/CE/CNE/CF → valueCodeableConcept. DT/DTM/TS → valueDateTime. TM →
///   valueTime. One entry per repetition (the caller makes components of more than one).
/// - ST/TX/FT (and any other type: ID, IS, NA, …) → one valueString, repetitions joined with
///   `"\n"`.
/// - ED: R4 `Observation.value[x]` has no Attachment; returns `("attachment", Attachment)`
///   per repetition for the caller to place (IG OBX\[DocumentReference\] /
///   `DiagnosticReport.presentedForm`).
///
/// Empty or `""` → no entries.
pub fn observation_value(
    value_type: &str,
    obx5: Field,
    units: Rep,
    site: &SiteMaps,
    report: &mut Report,
) -> Vec<(&'static str, Value)> {
    if obx5.is_empty() || obx5.is_null() {
        return Vec::new();
    }
    let reps = || obx5.reps().filter(|r| !r.is_empty() && !r.is_null());
    let ty = value_type.trim().to_ascii_uppercase();
    match ty.as_str() {
        "NM" => reps()
            .filter_map(|r| {
                let n = text(r.component(1));
                match decimal(&n) {
                    Some(_) => Some(("valueQuantity", quantity(&n, units, site, report))),
                    None => {
                        report.warn("OBX-5 not numeric for value type NM; kept as valueString");
                        Some(("valueString", Value::String(rep_text(r)))).filter(|(_, v)| v.as_str() != Some(""))
                    }
                }
            })
            .collect(),
        "SN" => reps().filter_map(|r| structured_numeric(r, units, site, report)).collect(),
        "CWE" | "CE" | "CNE" | "CF" => reps()
            .map(|r| ("valueCodeableConcept", codeable_concept(r, site, report)))
            .filter(|(_, v)| !v.is_null())
            .collect(),
        "DT" | "DTM" | "TS" => reps()
            .map(|r| ("valueDateTime", datetime(&r.value(), site, report)))
            .filter(|(_, v)| !v.is_null())
            .collect(),
        "TM" => reps()
            .filter_map(|r| match fhir_time(&r.value()) {
                Some(t) => Some(("valueTime", Value::String(t))),
                None => {
                    report.warn("invalid time");
                    None
                }
            })
            .collect(),
        "ED" => reps().map(|r| ("attachment", attachment(r))).filter(|(_, v)| !v.is_null()).collect(),
        _ => {
            let joined = obx5.reps().map(rep_text).collect::<Vec<_>>().join("\n");
            if joined.trim().is_empty() {
                Vec::new()
            } else {
                vec![("valueString", Value::String(joined))]
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Attachments
// ---------------------------------------------------------------------------------------

/// (ED.2 type of data, ED.3 subtype) → MIME type, for the values v2 senders use.
fn mime_type(ty: &str, subtype: &str) -> Option<&'static str> {
    let ty = ty.to_ascii_uppercase();
    let sub = subtype.to_ascii_uppercase();
    let text = matches!(ty.as_str(), "TEXT" | "TX" | "FT");
    let image = matches!(ty.as_str(), "IM" | "IMAGE");
    Some(match sub.as_str() {
        "PDF" => "application/pdf",
        "RTF" if text => "text/rtf",
        "RTF" => "application/rtf",
        "XML" if text => "text/xml",
        "XML" => "application/xml",
        "HTML" => "text/html",
        "PLAIN" | "TXT" | "TEXT" => "text/plain",
        "JPEG" | "JPG" => "image/jpeg",
        "PNG" => "image/png",
        "GIF" => "image/gif",
        "TIFF" | "TIF" => "image/tiff",
        "BMP" if image => "image/bmp",
        "MSWORD" | "DOC" => "application/msword",
        "DOCX" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "DICOM" => "application/dicom",
        "OCTET-STREAM" => "application/octet-stream",
        "" if text => "text/plain",
        _ => return None,
    })
}

/// Standard padded base64 (FHIR `base64Binary`).
pub fn base64_encode(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Whitespace removed; `None` unless valid padded base64 (FHIR `base64Binary`).
fn normalize_base64(s: &str) -> Option<String> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if s.is_empty() || !s.len().is_multiple_of(4) {
        return None;
    }
    let body = s.trim_end_matches('=');
    if s.len() - body.len() > 2 || !body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/') {
        return None;
    }
    Some(s)
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let s: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks(2).map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok()).collect()
}

/// ED → Attachment (IG ED\[Attachment\]): contentType from ED.3 (a MIME type as sent, or
/// mapped with ED.2, e.g. `AP^PDF` → `application/pdf`); data from ED.5 by ED.4 encoding:
/// `Base64` kept (whitespace removed), `Hex` decoded and base64-encoded, `A` (or empty) the
/// text base64-encoded as UTF-8. Invalid data for its encoding is left out. `Null` when
/// neither is present.
pub fn attachment(ed: Rep) -> Value {
    let c = |i| text(ed.component(i));
    let (ty, subtype, encoding) = (c(2), c(3), c(4));
    let raw = ed.component(5).value();
    let content_type = if subtype.contains('/') && !subtype.contains(char::is_whitespace) {
        Some(subtype.to_ascii_lowercase())
    } else {
        mime_type(&ty, &subtype).map(str::to_string)
    };
    let data = match encoding.to_ascii_uppercase().as_str() {
        _ if raw.is_empty() => None,
        "BASE64" => normalize_base64(&raw),
        "HEX" => hex_decode(&raw).map(|b| base64_encode(&b)),
        _ => Some(base64_encode(raw.as_bytes())),
    };
    if data.is_none() && content_type.is_none() {
        return Value::Null;
    }
    Obj::new().set("contentType", content_type).set("data", data).value()
}

// ---------------------------------------------------------------------------------------
// Dates and times
// ---------------------------------------------------------------------------------------

/// v2 DTM/TS/DT → FHIR dateTime; an offset-less time takes MSH-7's offset, else the site
/// zone ([`time::to_fhir_datetime_in`]). Empty → `Null`; invalid → `Null` and a warning
/// "invalid date/time".
pub fn datetime(value: &str, site: &SiteMaps, report: &mut Report) -> Value {
    if value.trim().is_empty() {
        return Value::Null;
    }
    match time::to_fhir_datetime_in(value, report.message_offset, &site.zone) {
        Ok(s) => Value::String(s),
        Err(_) => {
            report.warn("invalid date/time");
            Value::Null
        }
    }
}

/// v2 DT/DTM → FHIR date (time of day dropped). Empty → `Null`; invalid → `Null` + warning.
pub fn date(value: &str, report: &mut Report) -> Value {
    if value.trim().is_empty() {
        return Value::Null;
    }
    match time::to_fhir_date(value) {
        Ok(s) => Value::String(s),
        Err(_) => {
            report.warn("invalid date/time");
            Value::Null
        }
    }
}

/// v2 DTM → FHIR instant (needs a time of day). Empty → `Null`; invalid → `Null` + "invalid
/// date/time"; valid but only a date → `Null` + "date/time too imprecise for an instant".
pub fn instant(value: &str, site: &SiteMaps, report: &mut Report) -> Value {
    if value.trim().is_empty() {
        return Value::Null;
    }
    match time::to_fhir_instant_in(value, report.message_offset, &site.zone) {
        Ok(Some(s)) => Value::String(s),
        Ok(None) => {
            report.warn("date/time too imprecise for an instant");
            Value::Null
        }
        Err(_) => {
            report.warn("invalid date/time");
            Value::Null
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::site::MappedCode;
    use crate::hl7::parser::{parse, Message};
    use jiff::tz::TimeZone;
    use serde_json::json;

    fn msg(segments: &str) -> Vec<u8> {
        format!("MSH|^~\\&|LAB|HOSP|GW|CLOUD|20260101120000||ORU^R01^ORU_R01|C1|P|2.5.1\r{segments}\r").into_bytes()
    }

    fn site() -> SiteMaps {
        let mut s = SiteMaps::empty(TimeZone::get("America/Chicago").unwrap());
        s.identifier_systems.insert("HOSP".into(), "urn:oid:1.2.840.114350.1.13.1".into());
        s.insert_code(
            "L",
            "GLU",
            MappedCode {
                system: "http://loinc.org".into(),
                code: "2345-7".into(),
                display: "Glucose [Mass/volume] in Serum or Plasma".into(),
            },
        );
        s
    }

    fn field<'m>(m: &'m Message<'m>, seg: &str, n: usize) -> Field<'m> {
        m.segment(seg).unwrap().field(n)
    }

    #[test]
    fn cx_identifiers() {
        let raw = msg("PID|1||MRN123^^^HOSP^MR~123-45-6789^^^SSA^SS~A1^^^X^MR^^20200101^20301231~X9^5^M10^&2.16.840.1.113883.19.5&ISO^PI~~\"\"^^^HOSP^MR");
        let m = parse(&raw).unwrap();
        let s = site();
        let f = field(&m, "PID", 3);
        let (v, id) = identifier(f.rep(1), &s).unwrap();
        assert_eq!(
            v,
            json!({"value":"MRN123","system":"urn:oid:1.2.840.114350.1.13.1","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]}})
        );
        assert_eq!(id, Some(Identity { system: "urn:oid:1.2.840.114350.1.13.1".into(), value: "MRN123".into() }));
        let (v, id) = identifier(f.rep(2), &s).unwrap();
        assert_eq!(v["system"], "http://hl7.org/fhir/sid/us-ssn");
        assert!(id.is_some());
        // An authority the site has not mapped: the default system; period from CX.7/8.
        let (v, id) = identifier(f.rep(3), &s).unwrap();
        assert_eq!(id, Some(Identity { system: "urn:hl7v2-gateway:authority:X".into(), value: "A1".into() }));
        assert_eq!(v["system"], "urn:hl7v2-gateway:authority:X");
        assert_eq!(v["period"], json!({"start":"2020-01-01","end":"2030-12-31"}));
        // No authority at all: no system, no identity.
        let raw = msg("PID|1||B2^^^^MR");
        let m = parse(&raw).unwrap();
        let (v, id) = identifier(field(&m, "PID", 3).rep(1), &s).unwrap();
        assert_eq!((v.get("system"), id), (None, None));
        // ISO universal id, check digit.
        let (v, id) = identifier(f.rep(4), &s).unwrap();
        assert_eq!(v["system"], "urn:oid:2.16.840.1.113883.19.5");
        assert_eq!(v["extension"][0], json!({"url":EXT_CHECK_DIGIT,"valueString":"5"}));
        assert_eq!(v["extension"][1], json!({"url":EXT_CHECK_DIGIT_SCHEME,"valueString":"M10"}));
        assert_eq!(id.unwrap().value, "X9");
        // Empty and "" CX.1 → None.
        assert!(identifier(f.rep(5), &s).is_none());
        assert!(identifier(f.rep(6), &s).is_none());
    }

    #[test]
    fn ei_identifiers() {
        let raw = msg("ORC|NW|PL1^HOSP|FL9^LAB^1.2.3.4^ISO|G1^ELSE");
        let m = parse(&raw).unwrap();
        let s = site();
        let (v, id) = ei_identifier(field(&m, "ORC", 2).rep(1), &s).unwrap();
        assert_eq!(v, json!({"value":"PL1","system":"urn:oid:1.2.840.114350.1.13.1"}));
        assert!(id.is_some());
        let (v, _) = ei_identifier(field(&m, "ORC", 3).rep(1), &s).unwrap();
        assert_eq!(v["system"], "urn:oid:1.2.3.4");
        let (v, id) = ei_identifier(field(&m, "ORC", 4).rep(1), &s).unwrap();
        assert_eq!(v, json!({"value":"G1","system":"urn:hl7v2-gateway:authority:ELSE"}));
        assert!(id.is_some());
        assert!(ei_identifier(field(&m, "ORC", 5).rep(1), &s).is_none());
    }

    #[test]
    fn names_addresses_telecoms() {
        let raw = msg("PID|1||1||O\\T\\BRIEN^MARY^ANN^JR^DR^PHD^L^^^^^20200101~\"\"^^^^^^^~SMITH^^^^^^M||19800101|F|||123 Main St^Apt 4^Springfield^IL^62701^USA^H^^Sangamon~PO Box 9^^Town^ST^11111^^M||555-1234~^PRN^PH^^1^217^5551234^22~^NET^Internet^mary@example.org~^WPN^CP^^^312^5550000^^^^^+13125550000");
        let m = parse(&raw).unwrap();
        let names = field(&m, "PID", 5);
        assert_eq!(
            human_name(names.rep(1)),
            json!({"family":"O&BRIEN","given":["MARY","ANN"],"suffix":["JR","PHD"],"prefix":["DR"],"use":"official","period":{"start":"2020-01-01"}})
        );
        assert_eq!(human_name(names.rep(2)), Value::Null);
        assert_eq!(human_name(names.rep(3)), json!({"family":"SMITH","use":"maiden"}));
        let addrs = field(&m, "PID", 11);
        assert_eq!(
            address(addrs.rep(1)),
            json!({"line":["123 Main St","Apt 4"],"city":"Springfield","state":"IL","postalCode":"62701","country":"USA","use":"home","district":"Sangamon"})
        );
        assert_eq!(
            address(addrs.rep(2)),
            json!({"line":["PO Box 9"],"city":"Town","state":"ST","postalCode":"11111","type":"postal"})
        );
        let phones = field(&m, "PID", 13);
        // No equipment type: a phone number (a value needs a system, cpt-2).
        assert_eq!(contact_point(phones.rep(1)), json!({"value":"555-1234","system":"phone"}));
        let v = contact_point(phones.rep(2));
        assert_eq!(v["value"], "+1 217 5551234 X22");
        assert_eq!(v["system"], "phone");
        assert_eq!(v["use"], "home");
        assert_eq!(v["extension"].as_array().unwrap().len(), 4);
        assert_eq!(contact_point(phones.rep(3)), json!({"value":"mary@example.org","system":"email"}));
        let v = contact_point(phones.rep(4));
        assert_eq!(v["value"], "+13125550000");
        assert_eq!((v["system"].as_str(), v["use"].as_str()), (Some("phone"), Some("work")));
        assert_eq!(contact_point(field(&m, "PID", 14).rep(1)), Value::Null);
    }

    #[test]
    fn codeable_concepts() {
        let raw = msg("OBX|1|CWE|GLU^Glucose^L^2345-7^Glucose SerPl-mCnc^LN^^2.74^Glucose, fasting|1|X1^Thing^99ZZ~^^^^^^^^Free text only~\"\"~8480-6^Systolic^http://loinc.org~A^^1.2.3");
        let m = parse(&raw).unwrap();
        let s = site();
        let mut r = Report::default();
        let v = codeable_concept(field(&m, "OBX", 3).rep(1), &s, &mut r);
        assert_eq!(
            v,
            json!({"coding":[
                {"code":"GLU","display":"Glucose"},
                {"system":"http://loinc.org","code":"2345-7","display":"Glucose SerPl-mCnc","version":"2.74"},
            ],"text":"Glucose, fasting"})
        );
        // Site-mapped local code: the mapped coding equals the alternate one, so it is not repeated.
        assert!(r.unmapped_codes.is_empty(), "{r:?}");
        let ob5 = field(&m, "OBX", 5);
        let v = codeable_concept(ob5.rep(1), &s, &mut r);
        assert_eq!(v, json!({"coding":[{"code":"X1","display":"Thing"}],"text":"Thing"}));
        assert_eq!(r.unmapped_codes, vec!["99ZZ|X1".to_string()]);
        assert_eq!(codeable_concept(ob5.rep(2), &s, &mut r), json!({"text":"Free text only"}));
        assert_eq!(codeable_concept(ob5.rep(3), &s, &mut r), Value::Null);
        assert_eq!(codeable_concept(ob5.rep(4), &s, &mut r)["coding"][0]["system"], "http://loinc.org");
        assert_eq!(codeable_concept(ob5.rep(5), &s, &mut r)["coding"][0]["system"], "urn:oid:1.2.3");
        assert_eq!(codeable_concept(ob5.rep(9), &s, &mut r), Value::Null);
        // A site map adds the standard coding beside the local one.
        let raw = msg("OBX|1|CWE|GLU^Glucose^L");
        let m = parse(&raw).unwrap();
        let mut r = Report::default();
        let v = codeable_concept(field(&m, "OBX", 3).rep(1), &s, &mut r);
        assert_eq!(v["coding"][0], json!({"code":"GLU","display":"Glucose"}));
        assert_eq!(
            v["coding"][1],
            json!({"system":"http://loinc.org","code":"2345-7","display":"Glucose [Mass/volume] in Serum or Plasma"})
        );
        assert!(r.unmapped_codes.is_empty());
    }

    #[test]
    fn practitioners_organizations_locations() {
        let orc = format!("ORC|NW{}Good Health Hospital^L^^^^HOSP&1.2.3&ISO^XX^^^GHH01", "|".repeat(20));
        let raw = msg(&format!("PV1|1|I|4EAST^402^A^HOSP^^^MAIN^4^Corner bed||||1234567893^SMITH^JOHN^Q^JR^DR^MD^^NPI&2.16.840.1.113883.4.6&ISO^L^^^NPI|^JONES^ANN|\"\"\r{orc}"));
        let m = parse(&raw).unwrap();
        let s = site();
        let p = practitioner(field(&m, "PV1", 7).rep(1), &s).unwrap();
        assert_eq!(p.kind, "Practitioner");
        assert_eq!(p.key, "Practitioner/1234567893-NPI");
        let id = p.identity.clone().unwrap();
        assert_eq!(id.system, "urn:oid:2.16.840.1.113883.4.6");
        let body = p.body.value();
        assert_eq!(
            body["name"],
            json!([{"family":"SMITH","given":["JOHN","Q"],"suffix":["JR"],"prefix":["DR"],"use":"official"}])
        );
        assert_eq!(body["qualification"][0]["code"]["coding"][0]["code"], "MD");
        let p = practitioner(field(&m, "PV1", 8).rep(1), &s).unwrap();
        assert_eq!(p.key, "Practitioner/JONES-ANN");
        assert!(p.identity.is_none());
        assert!(practitioner(field(&m, "PV1", 9).rep(1), &s).is_none());

        let o = organization(field(&m, "ORC", 21).rep(1), &s).unwrap();
        assert_eq!(o.key, "Organization/GHH01-HOSP");
        assert_eq!(o.identity.as_ref().unwrap().system, "urn:oid:1.2.840.114350.1.13.1");
        let body = o.body.value();
        assert_eq!(body["name"], "Good Health Hospital");
        assert_eq!(body["identifier"][0]["value"], "GHH01");
        let hd_msg = msg(&format!("OBR|1{}HOSP^1.2.840.114350^ISO|NAMEONLY", "|".repeat(45)));
        let m2 = parse(&hd_msg).unwrap();
        let o = organization(m2.segment("OBR").unwrap().field(46).rep(1), &s).unwrap();
        assert_eq!(o.identity, Some(Identity { system: RFC3986.into(), value: "urn:oid:1.2.840.114350".into() }));
        assert_eq!(o.body.value()["name"], "HOSP");
        let o = organization(m2.segment("OBR").unwrap().field(47).rep(1), &s).unwrap();
        assert_eq!(o.body.value(), json!({"name":"NAMEONLY","identifier":[{"value":"NAMEONLY"}]}));

        // Facility → building → point of care → floor → room → bed (the IG's order read
        // upwards), most general first, each partOf the one before it.
        let chain = locations(field(&m, "PV1", 3).rep(1));
        let kinds: Vec<_> = chain
            .iter()
            .map(|l| {
                let b = l.body.clone().value();
                (b["name"].as_str().unwrap().to_string(), b["physicalType"]["coding"][0]["code"].clone())
            })
            .collect();
        assert_eq!(
            kinds,
            [("HOSP", "si"), ("MAIN", "bu"), ("4EAST", "wa"), ("4", "lvl"), ("402", "ro"), ("A", "bd")]
                .map(|(n, c)| (n.to_string(), json!(c)))
        );
        for pair in chain.windows(2) {
            assert_eq!(pair[1].body.clone().value()["partOf"], crate::fhir::model::reference(&pair[0].key));
        }
        assert!(chain[0].body.get("partOf").is_none());
        let bed = chain[5].body.clone().value();
        assert_eq!(bed["description"], "Corner bed");
        assert_eq!(bed["mode"], "instance");
        assert!(chain[4].body.get("description").is_none());
        assert!(locations(field(&m, "PV1", 50).rep(1)).is_empty());
        // Two beds of one room share the room (and everything above it); bed A of another room
        // is another bed.
        let beds = msg("PV1|1|I|4EAST^402^A^HOSP~4EAST^402^B^HOSP~4EAST^403^A^HOSP");
        let m4 = parse(&beds).unwrap();
        let f = m4.segment("PV1").unwrap().field(3);
        let ids = |i| locations(f.rep(i)).into_iter().map(|l| l.identity.unwrap()).collect::<Vec<_>>();
        let (a402, b402, a403) = (ids(1), ids(2), ids(3));
        assert_eq!(a402.len(), 4);
        assert_eq!(a402[..3], b402[..3]);
        assert_ne!(a402[3], b402[3]);
        assert_eq!(a402[..2], a403[..2]);
        assert_ne!(a402[2], a403[2]);
        assert_ne!(a402[3], a403[3]);
        let poc = msg("PV1|1|O|CLINIC");
        let m3 = parse(&poc).unwrap();
        let l = locations(m3.segment("PV1").unwrap().field(3).rep(1));
        assert_eq!(l.len(), 1);
        assert_eq!(
            l[0].body.clone().value(),
            json!({"identifier":[{"value":"CLINIC"}],"name":"CLINIC","mode":"instance","physicalType":{"coding":[{"system":codes::LOCATION_PHYSICAL_TYPE,"code":"wa"}]}})
        );
    }

    #[test]
    fn decimals() {
        assert_eq!(decimal("5").unwrap().to_string(), "5");
        assert_eq!(decimal("+5.25").unwrap().to_string(), "5.25");
        assert_eq!(decimal("-0.5").unwrap().to_string(), "-0.5");
        assert_eq!(decimal(".5").unwrap().to_string(), "0.5");
        assert_eq!(decimal("007").unwrap().to_string(), "7");
        assert_eq!(decimal("-0").unwrap().to_string(), "0");
        // Precision as sent: trailing zeros stay, in the number and in the JSON text.
        assert_eq!(decimal("13.50").unwrap().to_string(), "13.50");
        assert_eq!(decimal("-0.00").unwrap().to_string(), "0.00");
        assert_eq!(decimal("0100.0").unwrap().to_string(), "100.0");
        let q = serde_json::to_string(&json!({"value": decimal("13.50").unwrap()})).unwrap();
        assert_eq!(q, r#"{"value":13.50}"#);
        let back: Value = serde_json::from_str(&q).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), q, "a stored bundle reads back digit for digit");
        for bad in ["", "abc", "1.2.3", "1e5", "-", ".", "5 mg", "NaN"] {
            assert!(decimal(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn numeric_observation_values() {
        let raw = msg("OBX|1|NM|GLU^Glucose^L||98.5~101|mg/dL^milligrams per deciliter^UCUM\r\
OBX|2|NM|X^X^L||7.2|mmol/L\r\
OBX|3|NM|X^X^L||12|cells^cells per field^99UNIT\r\
OBX|4|SN|X^X^L||>^10~<^5~<=^0.5~^10^-^20~^1^:^128~=^7~^2^+~<>^5|U/L\r\
OBX|5|NM|X^X^L||POSITIVE");
        let m = parse(&raw).unwrap();
        let s = site();
        let mut r = Report::default();
        let obx: Vec<_> = m.segments_named("OBX").collect();
        let v = observation_value("NM", obx[0].field(5), obx[0].field(6).rep(1), &s, &mut r);
        assert_eq!(
            v,
            vec![
                (
                    "valueQuantity",
                    json!({"value":98.5,"unit":"milligrams per deciliter","system":"http://unitsofmeasure.org","code":"mg/dL"})
                ),
                (
                    "valueQuantity",
                    json!({"value":101,"unit":"milligrams per deciliter","system":"http://unitsofmeasure.org","code":"mg/dL"})
                ),
            ]
        );
        let v = observation_value("NM", obx[1].field(5), obx[1].field(6).rep(1), &s, &mut r);
        assert_eq!(v[0].1, json!({"value":7.2,"unit":"mmol/L","system":"http://unitsofmeasure.org","code":"mmol/L"}));
        let v = observation_value("NM", obx[2].field(5), obx[2].field(6).rep(1), &s, &mut r);
        assert_eq!(v[0].1, json!({"value":12,"unit":"cells per field"}));
        assert_eq!(r.unmapped_codes, vec!["99UNIT|cells".to_string()]);
        let v = observation_value("SN", obx[3].field(5), obx[3].field(6).rep(1), &s, &mut r);
        let u = |value: Value| json!({"value":value,"unit":"U/L","system":"http://unitsofmeasure.org","code":"U/L"});
        let with = |mut q: Value, cmp: &str| {
            q["comparator"] = json!(cmp);
            q
        };
        assert_eq!(v[0], ("valueQuantity", with(u(json!(10)), ">")));
        assert_eq!(v[1], ("valueQuantity", with(u(json!(5)), "<")));
        assert_eq!(v[2], ("valueQuantity", with(u(json!(0.5)), "<=")));
        assert_eq!(v[3], ("valueRange", json!({"low":u(json!(10)),"high":u(json!(20))})));
        assert_eq!(v[4], ("valueRatio", json!({"numerator":{"value":1},"denominator":{"value":128}})));
        assert_eq!(v[5], ("valueQuantity", u(json!(7))));
        assert_eq!(v[6], ("valueString", json!("2+")));
        assert_eq!(v[7], ("valueString", json!("<>5")));
        assert!(r.warnings.is_empty());
        let v = observation_value("NM", obx[4].field(5), obx[4].field(6).rep(1), &s, &mut r);
        assert_eq!(v, vec![("valueString", json!("POSITIVE"))]);
        assert_eq!(r.warnings.len(), 1);
        let mut r = Report::default();
        assert_eq!(quantity("12,5", obx[0].field(6).rep(1), &s, &mut r), Value::Null);
        assert_eq!(r.warnings, vec!["invalid numeric value".to_string()]);
    }

    #[test]
    fn other_observation_values() {
        let raw = msg("OBX|1|FT|N^Note^L||Line one\\.br\\still one~Line two \\T\\ more~~Last||\r\
OBX|2|ST|X^X^L||\"\"\r\
OBX|3|CWE|X^X^L||260373001^Detected^SCT~LOC1^Local^L\r\
OBX|4|DTM|X^X^L||20260315083000~2026021\r\
OBX|5|TM|X^X^L||0830~123045.5-0500~2561\r\
OBX|6|ED|X^X^L||LAB^AP^PDF^Base64^JVBERi0xLjQK\r\
OBX|7|TX|X^X^L||a^b&c");
        let m = parse(&raw).unwrap();
        let s = site();
        let mut r = Report::default();
        let obx: Vec<_> = m.segments_named("OBX").collect();
        let none = obx[0].field(6).rep(1);
        assert_eq!(
            observation_value("FT", obx[0].field(5), none, &s, &mut r),
            vec![("valueString", json!("Line one\nstill one\nLine two & more\n\nLast"))]
        );
        assert!(observation_value("ST", obx[1].field(5), none, &s, &mut r).is_empty());
        let v = observation_value("CWE", obx[2].field(5), none, &s, &mut r);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].1["coding"][0]["system"], codes::SNOMED);
        assert_eq!(r.unmapped_codes, vec!["L|LOC1".to_string()]);
        let v = observation_value("DTM", obx[3].field(5), none, &s, &mut r);
        assert_eq!(v, vec![("valueDateTime", json!("2026-03-15T08:30:00-05:00"))]);
        assert_eq!(r.warnings, vec!["invalid date/time".to_string()]);
        let v = observation_value("TM", obx[4].field(5), none, &s, &mut r);
        assert_eq!(v, vec![("valueTime", json!("08:30:00")), ("valueTime", json!("12:30:45.5"))]);
        let v = observation_value("ED", obx[5].field(5), none, &s, &mut r);
        assert_eq!(v, vec![("attachment", json!({"contentType":"application/pdf","data":"JVBERi0xLjQK"}))]);
        let v = observation_value("TX", obx[6].field(5), none, &s, &mut r);
        assert_eq!(v, vec![("valueString", json!("a^b&c"))]);
    }

    #[test]
    fn attachments() {
        let raw = msg("OBX|1|ED|X||^application^pdf^Base64^JVBE Ri0x\\.br\\LjQK~^TEXT^^A^Hi \\T\\ bye~^IM^PNG^Hex^89504E47~^AP^PDF^Base64^not*base64~^^^^");
        let m = parse(&raw).unwrap();
        let f = field(&m, "OBX", 5);
        assert_eq!(attachment(f.rep(1)), json!({"contentType":"application/pdf","data":"JVBERi0xLjQK"}));
        assert_eq!(attachment(f.rep(2)), json!({"contentType":"text/plain","data":base64_encode(b"Hi & bye")}));
        assert_eq!(base64_encode(b"Hi & bye"), "SGkgJiBieWU=");
        assert_eq!(attachment(f.rep(3)), json!({"contentType":"image/png","data":"iVBORw=="}));
        assert_eq!(attachment(f.rep(4)), json!({"contentType":"application/pdf"}));
        assert_eq!(attachment(f.rep(5)), Value::Null);
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
    }

    #[test]
    fn dates_and_times() {
        let s = site();
        let mut r = Report::default();
        assert_eq!(datetime("20260115083000", &s, &mut r), json!("2026-01-15T08:30:00-06:00"));
        assert_eq!(datetime("", &s, &mut r), Value::Null);
        assert!(r.warnings.is_empty());
        assert_eq!(datetime("2026-01-15", &s, &mut r), Value::Null);
        assert_eq!(r.warnings, vec!["invalid date/time".to_string()]);
        assert_eq!(date("20260115083000", &mut r), json!("2026-01-15"));
        assert_eq!(instant("202601150830-0500", &s, &mut r), json!("2026-01-15T08:30:00-05:00"));
        assert_eq!(instant("20260115", &s, &mut r), Value::Null);
        assert_eq!(r.warnings.len(), 2);
        assert_eq!(fhir_time("2400"), None);
        assert_eq!(fhir_time("08"), Some("08:00:00".into()));
    }

    /// One ORU converted with the Chicago site zone; the first Observation and the report.
    fn observe(msh7: &str, obx: &str) -> (Value, Report) {
        let raw = format!(
            "MSH|^~\\&|LAB|HOSP|GW|CLOUD|{msh7}||ORU^R01^ORU_R01|C1|P|2.5.1\rPID|1||M1^^^HOSP^MR\rOBR|1||F1^LAB|GLU^Glucose^L\r{obx}\r"
        );
        let c = crate::fhir::convert::convert(raw.as_bytes(), &site()).unwrap();
        let obs = c.resources.iter().find(|r| r.kind == "Observation").expect("an Observation").body.clone().value();
        (obs, c.report)
    }

    #[test]
    fn decimals_reach_the_bundle_as_sent_and_invalid_ones_are_dropped_with_a_location() {
        let (obs, report) = observe("20260115083000", "OBX|1|NM|GLU^Glucose^L||13.50|mg/dL|3.50-10.00|||||F");
        let text = serde_json::to_string(&obs).unwrap();
        assert!(text.contains(r#""value":13.50"#), "{text}");
        assert!(
            text.contains(r#""low":{"code":"mg/dL","system":"http://unitsofmeasure.org","unit":"mg/dL","value":3.50}"#),
            "{text}"
        );
        assert!(text.contains(r#""value":10.00"#), "{text}");
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        // Specimen quantity with an invalid number: dropped, the warning names the field.
        let (_, report) = observe(
            "20260115083000",
            "OBX|1|NM|GLU^Glucose^L||5|mg/dL|||||F\rSPM|1|S1||BLD^Blood^HL70487||||||||1,5^mL",
        );
        assert!(
            report.warnings.iter().any(|w| w.ends_with(":SPM-12.1: invalid numeric value")),
            "{:?}",
            report.warnings
        );
    }

    #[test]
    fn offsetless_times_take_msh7_offset() {
        // MSH-7 at -0400 while the site zone (Chicago) is at -06:00 in January: OBX-14 sent
        // without an offset is in the sender's -04:00.
        let (obs, _) = observe("20260115083000-0400", "OBX|1|NM|GLU^Glucose^L||5|mg/dL|||||F|||20260115081500");
        assert_eq!(obs["effectiveDateTime"], "2026-01-15T08:15:00-04:00");
        let (obs, _) = observe("20260715083000", "OBX|1|NM|GLU^Glucose^L||5|mg/dL|||||F|||20260715081500");
        assert_eq!(obs["effectiveDateTime"], "2026-07-15T08:15:00-05:00", "no MSH-7 offset: the site zone, DST");
        let (obs, _) = observe("20260115083000-0400", "OBX|1|NM|GLU^Glucose^L||5|mg/dL|||||F|||20260115081500+0100");
        assert_eq!(obs["effectiveDateTime"], "2026-01-15T08:15:00+01:00", "its own offset wins");
    }

    #[test]
    fn codes_are_normalised_and_blank_ones_dropped_with_a_location() {
        // OBX-3's alternate code is blank: the warning is located at the OBX (segment 3).
        let (_, report) = observe("20260115083000", "OBX|1|NM|GLU^Glucose^L^\u{1}^X^99L||5|mg/dL|||||F");
        assert!(report.warnings.iter().any(|w| w.starts_with("3:OBX: CWE.4: code")), "{:?}", report.warnings);
        let (obs, report) = observe(
            "20260115083000",
            "OBX|1|CWE|GLU^Glucose^L||A  \t B^Two words^99L~\u{1}^Control only^99L|\u{2}^units|||||F",
        );
        // Two repetitions: two components. The second keeps its text, not its blank code.
        assert_eq!(obs["component"][0]["valueCodeableConcept"]["coding"][0]["code"], "A B");
        assert_eq!(obs["component"][1]["valueCodeableConcept"], json!({"text": "Control only"}));
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.ends_with(":OBX-5: CWE.1: code with nothing but whitespace or control characters dropped")),
            "{:?}",
            report.warnings
        );
        let mut r = Report::default();
        let raw = msg("OBX|1|NM|X||1|\u{3}^Units");
        let m = parse(raw.as_slice()).unwrap();
        let q = quantity("1", field(&m, "OBX", 6).rep(1), &site(), &mut r);
        assert_eq!(q, json!({"value": 1, "unit": "Units"}));
        assert_eq!(
            r.warnings,
            vec!["units code with nothing but whitespace or control characters dropped".to_string()]
        );
    }

    #[test]
    fn identifier_system_per_authority_and_type() {
        let mut site = SiteMaps::empty(jiff::tz::TimeZone::UTC);
        site.identifier_systems.insert("UHMC^MR".into(), "urn:oid:1.2.3.1".into());
        site.identifier_systems.insert("UHMC".into(), "urn:oid:1.2.3".into());
        let m = crate::hl7::parser::parse(
            b"MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.5.1\rPID|1||M1^^^UHMC^MR~V1^^^UHMC^VN\r",
        )
        .unwrap();
        let pid = m.segment("PID").unwrap();
        let (_, mr) = identifier(pid.field(3).rep(1), &site).unwrap();
        let (_, vn) = identifier(pid.field(3).rep(2), &site).unwrap();
        assert_eq!(mr.unwrap().system, "urn:oid:1.2.3.1");
        assert_eq!(vn.unwrap().system, "urn:oid:1.2.3", "untyped authority entry is the fallback");
    }
}
