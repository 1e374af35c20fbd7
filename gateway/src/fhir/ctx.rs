//! The state one message's conversion shares between the maps: the message, the site maps,
//! the resources added so far (indexed, so adding and finding stay O(1)), the report, which
//! segments were consumed, and the budget's deadline and heap limit.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use crate::hl7::parser::Message;
use crate::hl7::structure::Grouped;

use super::budget::OverBudget;
use super::memory::{Forgetful, Memory};
use super::model::{Identity, Report, Resource, SOURCE_KEY_SYSTEM};
use super::site::SiteMaps;

/// `<segment index>:<segment ID>-<field>` (`3:PID-7`, `5:OBX-5.1`).
fn field_location(segment: crate::hl7::parser::Segment, field: impl std::fmt::Display) -> String {
    format!("{}:{}-{field}", segment.index(), segment.id())
}

/// Conversion state shared by the maps of one message.
pub struct Ctx<'m, 'a> {
    pub msg: &'m Message<'a>,
    pub site: &'m SiteMaps,
    pub memory: &'m dyn Memory,
    pub report: Report,
    /// (surviving, replaced) record keys of the merges this message makes.
    pub merges: Vec<(Identity, Identity)>,
    resources: Vec<Resource>,
    /// Indexes into `resources`, so adding and finding stay O(1) however many resources a
    /// message makes (a linear scan per add was quadratic: 50,000 OBX took 13.7 s).
    by_key: HashMap<String, usize>,
    by_identity: HashMap<(&'static str, Identity), usize>,
    /// Values in a resource's list (resource index, list, canonical JSON), for
    /// [`Ctx::append_unique`], and the lists indexed so far.
    appended: HashSet<(usize, &'static str, String)>,
    lists_indexed: HashSet<(usize, &'static str)>,
    consumed: Vec<bool>,
    /// Past this instant, or this much heap held by the thread, resources are no longer
    /// added and the conversion fails ([`Budget`](super::budget::Budget)).
    deadline: Option<Instant>,
    heap_limit: isize,
    over: Option<OverBudget>,
}

impl<'m, 'a> Ctx<'m, 'a> {
    pub fn new(msg: &'m Message<'a>, site: &'m SiteMaps) -> Self {
        Ctx::with_memory(msg, site, &Forgetful)
    }

    pub fn with_memory(msg: &'m Message<'a>, site: &'m SiteMaps, memory: &'m dyn Memory) -> Self {
        let mut report = Report::default();
        report.message_offset = super::time::message_offset(&msg.msh().field(7).value());
        Ctx {
            msg,
            site,
            memory,
            report,
            merges: Vec::new(),
            resources: Vec::new(),
            by_key: HashMap::new(),
            by_identity: HashMap::new(),
            appended: HashSet::new(),
            lists_indexed: HashSet::new(),
            consumed: vec![false; msg.segment_count()],
            deadline: Instant::now().checked_add(site.budget.max_time()),
            heap_limit: gateway_heap::thread_net().saturating_add(site.budget.max_heap()),
            over: None,
        }
    }

    /// Marks a segment as mapped (so it is not reported as unconsumed).
    pub fn consume(&mut self, segment_index: usize) {
        if let Some(c) = self.consumed.get_mut(segment_index) {
            *c = true;
        }
        if let Some(seg) = self.msg.segment_at(segment_index) {
            self.report.locate(format!("{segment_index}:{}", seg.id()));
        }
    }

    /// A warning about field `field` (`7`, or `7.4` for a component) of `segment`:
    /// `<index>:<ID>-<field>: text`. The text names positions and kinds, never values.
    pub fn warn_at(&mut self, segment: crate::hl7::parser::Segment, field: impl std::fmt::Display, text: &str) {
        self.report.push_warning(format!("{}: {text}", field_location(segment, field)));
    }

    /// The report, with the warnings that follow (from the datatype maps, which see values
    /// only) located at `field` of `segment` until the next field or segment is located.
    pub fn at(&mut self, segment: crate::hl7::parser::Segment, field: impl std::fmt::Display) -> &mut Report {
        self.report.locate(field_location(segment, field));
        &mut self.report
    }

    /// Who sent the message: MSH-4.1 (sending facility), else MSH-3.1 (application). Scopes
    /// keys made of identifiers that name no assigning authority.
    pub fn sender(&self) -> String {
        let msh = self.msg.msh();
        let facility = msh.field(4).rep(1).component(1).value().trim().to_string();
        if facility.is_empty() {
            msh.field(3).rep(1).component(1).value().trim().to_string()
        } else {
            facility
        }
    }

    /// The upsert key (`system|value`) of the resource added under `key`: the part by which a
    /// patient's or an order's dependents are keyed. Empty when it has none.
    pub fn token_of(&self, key: &str) -> String {
        self.identity_of(key).map(Identity::token).unwrap_or_default()
    }

    /// The upsert key of the resource added under `key`.
    pub fn identity_of(&self, key: &str) -> Option<&Identity> {
        self.by_key.get(key).and_then(|&i| self.resources[i].identity.as_ref())
    }

    /// An identifier's key, or, for an identifier that names no assigning authority (no
    /// system), a source key over the sender and its value.
    pub fn scoped_identity(&self, kind: &str, id: Option<&(serde_json::Value, Option<Identity>)>) -> Option<Identity> {
        let (value, identity) = id?;
        if identity.is_some() {
            return identity.clone();
        }
        let value = value.get("value").and_then(serde_json::Value::as_str).unwrap_or_default();
        Identity::source_key(kind, &[&self.sender(), value])
    }

    /// Adds a resource and returns its key. A resource of the same kind and business
    /// identifier, or with the same key (keys are derived from content, e.g. the same location
    /// in PV1-3 and PV1-6), already added is not added twice: the first one's key is returned.
    pub fn add(&mut self, resource: Resource) -> String {
        if self.over.is_none() {
            let budget = &self.site.budget;
            if self.deadline.is_some_and(|d| Instant::now() > d) {
                self.over = Some(OverBudget::Time { limit_ms: budget.max_convert_ms });
            } else if gateway_heap::thread_net() > self.heap_limit {
                self.over = Some(OverBudget::Memory { limit_mib: budget.max_convert_mib });
            }
        }
        if self.over.is_some() {
            // The conversion fails anyway: stop growing the result.
            return resource.key;
        }
        let mut resource = resource;
        if resource.identity.is_none() {
            resource.identity = self.shared_resource_key(&resource);
        }
        if let Some(id) = &resource.identity {
            if let Some(existing) = self.find(resource.kind, id) {
                return existing.key.clone();
            }
        }
        if self.by_key.contains_key(&resource.key) {
            return resource.key;
        }
        if let Some(id) = resource.identity.as_ref().filter(|id| id.system == SOURCE_KEY_SYSTEM) {
            // Written on the resource, so a later message finds it by identifier.
            let identifier = serde_json::json!({"system": id.system, "value": id.value});
            resource.body.push_all("identifier", [identifier]);
        }
        let index = self.resources.len();
        if let Some(id) = &resource.identity {
            self.by_identity.insert((resource.kind, id.clone()), index);
        }
        self.by_key.insert(resource.key.clone(), index);
        let key = resource.key.clone();
        self.resources.push(resource);
        key
    }

    /// Practitioners, organizations and locations made from a name or a local code (no
    /// identifier system): a source key over their local key, which the datatype maps build
    /// from those parts — scoped to the sender for practitioners, whose local ids are the
    /// sender's own.
    fn shared_resource_key(&self, r: &Resource) -> Option<Identity> {
        let local = r.key.split_once('/').map_or(r.key.as_str(), |(_, k)| k);
        match r.kind {
            "Location" | "Organization" => Identity::source_key(r.kind, &[local]),
            "Practitioner" => Identity::source_key(r.kind, &[&self.sender(), local]),
            _ => None,
        }
    }

    pub fn find(&self, kind: &'static str, identity: &Identity) -> Option<&Resource> {
        self.by_identity.get(&(kind, identity.clone())).map(|&i| &self.resources[i])
    }

    pub fn resources(&self) -> &[Resource] {
        &self.resources
    }

    /// Appends `value` to list `list` of the added resource `key` unless the list already
    /// holds an equal value; O(1) per value (maps that merge repeated segments into one list).
    pub fn append_unique(&mut self, key: &str, list: &'static str, value: serde_json::Value) {
        let Some(&i) = self.by_key.get(key) else { return };
        if self.lists_indexed.insert((i, list)) {
            if let Some(serde_json::Value::Array(existing)) = self.resources[i].body.get(list) {
                self.appended.extend(existing.iter().map(|v| (i, list, v.to_string())));
            }
        }
        // The maps build equal values with their keys in the same order: equal text.
        if self.appended.insert((i, list, value.to_string())) {
            self.resources[i].body.push_all(list, [value]);
        }
    }

    /// Mutable access to an added resource by key (maps that enrich an earlier resource,
    /// e.g. NK1 adding `Patient.contact`).
    pub fn resource_mut(&mut self, key: &str) -> Option<&mut Resource> {
        let &i = self.by_key.get(key)?;
        self.resources.get_mut(i)
    }

    /// Why the conversion went past its budget, if it did.
    pub(super) fn over_budget(&mut self) -> Option<OverBudget> {
        self.over.take()
    }

    /// The resources and the report, with the segments no map consumed.
    pub(super) fn finish(mut self, grouped: &Grouped) -> (Vec<Resource>, Report) {
        let msg = self.msg;
        for (i, seg) in msg.segments().enumerate() {
            let id = seg.id();
            if !self.consumed[i] {
                self.report.unconsumed.push(format!("{i}:{id}"));
            }
        }
        self.report.structure = grouped.structure.id().to_string();
        for r in &mut self.resources {
            r.body.clean();
        }
        let mut authorities = std::collections::BTreeSet::new();
        let mut keyless = std::collections::BTreeSet::new();
        for r in &self.resources {
            match &r.identity {
                Some(id) => {
                    if let Some(authority) = self.site.default_system_authority(&id.system) {
                        authorities.insert(format!("{authority} -> {}", id.system));
                    }
                }
                // One per message by design: who sent it, when.
                None if r.kind == "Provenance" => {}
                None => {
                    keyless.insert(r.kind.to_string());
                }
            }
        }
        self.report.default_systems = authorities.into_iter().collect();
        self.report.keyless = keyless.into_iter().collect();
        (self.resources, self.report)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::fhir::convert::convert;
    use crate::fhir::site::SiteMaps;

    /// `^\d+:[A-Z][A-Z0-9]{2}-\d+(\.\d+)*: ` — a segment index, ID and field (component) first.
    fn located_at_a_field(w: &str) -> bool {
        let Some((at, text)) = w.split_once(": ") else { return false };
        let Some((index, rest)) = at.split_once(':') else { return false };
        let Some((id, field)) = rest.split_once('-') else { return false };
        let id = id.as_bytes();
        !index.is_empty()
            && index.bytes().all(|b| b.is_ascii_digit())
            && id.len() == 3
            && id[0].is_ascii_uppercase()
            && id.iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            && field.split('.').all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            && !text.is_empty()
    }

    /// The message with every value that looks like a date or time (12+ digits, or 8 digits
    /// starting 19/20) made an impossible one, and every OBX-5 of a numeric OBX not a number:
    /// each map that reads a time or a number warns.
    fn spoiled(raw: &str) -> String {
        let looks_like_time = |v: &str| {
            let digits = v.bytes().take_while(u8::is_ascii_digit).count();
            digits >= 12 || (digits == 8 && (v.starts_with("19") || v.starts_with("20")))
        };
        let mut out = String::new();
        for seg in raw.split(['\r', '\n']).filter(|s| !s.is_empty()) {
            let mut fields: Vec<String> = seg.split('|').map(String::from).collect();
            let numeric_obx = fields[0] == "OBX" && fields.get(2).is_some_and(|t| t == "NM" || t == "SN");
            for (n, f) in fields.iter_mut().enumerate().skip(1) {
                if fields_is_msh_header(seg, n) {
                    continue;
                }
                let parts: Vec<String> = f
                    .split('^')
                    .map(|c| if looks_like_time(c) { "20261399".to_string() } else { c.to_string() })
                    .collect();
                *f = parts.join("^");
                if numeric_obx && n == 5 {
                    *f = "about ten".into();
                }
            }
            out.push_str(&fields.join("|"));
            out.push('\r');
        }
        out
    }

    /// MSH-1/2 (the delimiters), MSH-7 (the message must stay readable) and MSH-9..12.
    fn fields_is_msh_header(seg: &str, n: usize) -> bool {
        seg.starts_with("MSH") && (n <= 1 || n == 6 || (8..=11).contains(&n))
    }

    /// Family and given names of PID-5 in `raw` (3+ letters, as a warning could quote them).
    fn names(raw: &str) -> Vec<String> {
        raw.split(['\r', '\n'])
            .filter(|s| s.starts_with("PID|"))
            .filter_map(|s| s.split('|').nth(5).map(str::to_string))
            .flat_map(|f| f.split(['~', '^']).map(str::to_string).collect::<Vec<_>>())
            .filter(|n| n.len() >= 3 && n.chars().all(char::is_alphabetic))
            .collect()
    }

    #[test]
    fn every_warning_is_located_at_a_field_and_quotes_no_name() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus/hl7");
        let site = SiteMaps::empty(jiff::tz::TimeZone::UTC);
        let (mut warnings, mut problems) = (0, Vec::new());
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for path in files.iter().filter(|p| p.extension().is_some_and(|x| x == "hl7")) {
            let raw = String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
            let names = names(&raw);
            for text in [raw.clone(), spoiled(&raw)] {
                let Ok(c) = convert(text.as_bytes(), &site) else { continue };
                for w in &c.report.warnings {
                    warnings += 1;
                    let name = path.file_name().unwrap().to_string_lossy();
                    if !located_at_a_field(w) {
                        problems.push(format!("{name}: not located at a field: {w}"));
                    }
                    if let Some(n) = names.iter().find(|n| w.contains(n.as_str())) {
                        problems.push(format!("{name}: quotes the name {n}: {w}"));
                    }
                }
            }
        }
        assert!(warnings >= 100, "only {warnings} warnings: the spoiled messages should warn");
        assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
    }

    #[test]
    fn field_locations() {
        assert!(located_at_a_field("3:PID-7: invalid date/time"));
        assert!(located_at_a_field("12:OBR-27.4: invalid date/time"));
        assert!(!located_at_a_field("3:PID: invalid date/time"));
        assert!(!located_at_a_field("invalid date/time"));
        assert!(!located_at_a_field("3:PID-: x"));
        assert!(!located_at_a_field("3:pid-7: x"));
    }
}
