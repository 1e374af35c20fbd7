//! Conversion → FHIR R4 Bundles, per delivery profile.
//!
//! The converter emits resources with local keys and references of the form
//! `{"reference": "local:<key>"}` (see [`model::reference`](super::model::reference)); this
//! module gives every resource a deterministic id, rewrites those references and packs the
//! resources into Bundles:
//!
//! - [`Profile::Generic`]: one `transaction` Bundle. Every entry has `fullUrl`
//!   `urn:uuid:<id>` and references point at those fullUrls, which the server resolves within
//!   the transaction. A keyed resource (see docs/CONVERSION.md, identity table) is a
//!   *conditional update* (`PUT <Kind>?identifier=<system>|<value>`, no `resource.id`), or,
//!   when the message only refers to it ([`Write::CreateIfAbsent`]), a *conditional create*
//!   (`POST <Kind>` with `ifNoneExist`), so the server keeps what an ADT wrote. A keyless
//!   resource is `PUT <Kind>/<id>` with `resource.id = <id>`. A transaction over the server's
//!   limits ([`TxLimits`], [`bundles_within`]) is split into several, sent in order and split
//!   as the Salesforce batches are (below). Each is self-contained: a reference to what an
//!   earlier one wrote is a *conditional reference* `<Kind>?identifier=<system>|<value>` (keyed;
//!   the server resolves it by search when it writes) or `<Kind>/<id>` (keyless), so it needs
//!   no entry — a resource that references many others, like the Provenance of every message,
//!   fits wherever it lands.
//! - [`Profile::Salesforce`]: `batch` Bundles of at most [`BATCH_MAX_ENTRIES`] entries, as the
//!   Salesforce Healthcare API documents them (docs/CONVERSION.md, "Salesforce profile"): every
//!   entry has `fullUrl` `urn:uuid:<id>` and references point at those placeholders, which the
//!   server resolves within the batch (multi-level dependencies, 424 for a failed one). Every
//!   entry is a `POST <Kind>` without `resource.id` (the server assigns ids); a create-if-absent
//!   entry also carries `ifNoneExist`. The forwarder rewrites entries at send time: a resource
//!   whose server id it learned (its id map, keyed by the `urn:uuid`) becomes `PUT <Kind>/<server
//!   id>`, a reference to it `<Kind>/<server id>`, and a create-if-absent one already known is left
//!   out. The resources are split along their references: every resource lands in the same
//!   Bundle as, or a later one than, each resource it references, so a later Bundle's placeholder
//!   references name resources whose server ids are known by the time it is sent. Patient,
//!   Practitioner, Organization and Location go first when the order is otherwise free.
//!
//! # Ids
//! `<id>` is a name-based UUID (v5, in a namespace of this gateway) over the resource type and
//! key (`system`, `value`), so the same patient gets the same id from every message. A
//! keyless resource (or one whose key's system or value is blank, which would make an unsafe
//! conditional URL) gets one over its type, the sender (MSH-3|MSH-4), the message's content
//! key and its local key. The content key
//! ([`convert::content_key`](super::convert::content_key)) is a SHA-256 of the message with
//! MSH-7 and MSH-10 blanked, not the control ID: EHR resend tools regenerate both, and a
//! resend must update what the first send created, never create it again. The name hashed
//! into the v5 UUID holds the content key, not message text. The output is a pure function
//! of the conversion: no clock, no randomness, and JSON objects come out with
//! sorted keys.
//!
//! # Reference cycles
//! References may form cycles (Patient.link both ways in a merge). Placeholders resolve within
//! a batch, so the resources of a cycle are always placed in one Bundle (a cycle larger than a Bundle is an
//! error, [`BundleError::CycleTooLarge`]). In the generic transaction every reference resolves
//! through its `urn:uuid` fullUrl regardless of order, and a split keeps a cycle in one
//! transaction ([`BundleError::OverTransactionLimits`] when it cannot).
//!
//! A reference to a local key that is not in the conversion is an error
//! ([`BundleError::UnknownReference`]): no Bundle ever carries a dangling reference.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::convert::Conversion;
use super::model::{Identity, Resource, Write, LOCAL_REF};

/// Most entries in one batch Bundle of the Salesforce profile.
pub const BATCH_MAX_ENTRIES: usize = 30;

/// Namespace of resource ids: UUID v5 of the URL `urn:hl7v2-gateway:fhir-resource-id` in the
/// standard URL namespace. Never change it: ids already on servers are derived from it.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x078f2aa1_1feb_5404_a35d_10305b71099d);

/// Resource types placed first when the dependency order leaves a choice.
const FIRST_KINDS: [&str; 4] = ["Patient", "Practitioner", "Organization", "Location"];

/// How Bundles are shaped for the receiving server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// One transaction Bundle with conditional updates and `urn:uuid` references.
    #[default]
    Generic,
    /// Batch Bundles of at most [`BATCH_MAX_ENTRIES`] entries with `urn:uuid` placeholders,
    /// split in dependency order; server ids are applied at send time.
    Salesforce,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Generic => "generic",
            Profile::Salesforce => "salesforce",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown profile name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown profile {0:?} (expected \"generic\" or \"salesforce\")")]
pub struct UnknownProfile(pub String);

impl FromStr for Profile {
    type Err = UnknownProfile;

    fn from_str(s: &str) -> Result<Profile, UnknownProfile> {
        match s {
            "generic" => Ok(Profile::Generic),
            "salesforce" => Ok(Profile::Salesforce),
            _ => Err(UnknownProfile(s.to_string())),
        }
    }
}

/// Why a conversion cannot be bundled. Messages name local keys and resource types only,
/// never identifier values (patient data).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("resource {from} references local key {target:?}, which is not in the conversion")]
    UnknownReference { from: String, target: String },
    #[error("two resources have the local key {0}")]
    DuplicateKey(String),
    #[error("resources {first} and {second} are the same {kind} (same business identifier)")]
    DuplicateResource { kind: String, first: String, second: String },
    #[error(
        "{size} resources reference each other in a cycle (first: {first}); a batch holds at most {BATCH_MAX_ENTRIES}"
    )]
    CycleTooLarge { size: usize, first: String },
    #[error(
        "{entries} resources reference each other in a cycle (first: {first}, {updates} updates): over the \
         server's transaction limits"
    )]
    OverTransactionLimits { first: String, entries: usize, updates: usize },
}

/// The largest transaction the target server accepts (`[cloud] transaction_max_entries`,
/// `transaction_max_updates`). The generic profile splits a transaction that does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxLimits {
    /// Most entries in a transaction that holds a conditional entry (a conditional update or a
    /// create with `ifNoneExist`); one without is not limited by this.
    pub max_entries: usize,
    /// Most updates (`PUT` entries) in any transaction.
    pub max_updates: usize,
}

impl TxLimits {
    /// What a Medplum server accepts: it runs a transaction with a conditional entry in
    /// serializable isolation, and refuses one with more than 8 entries, or more than 50 updates.
    pub const MEDPLUM: TxLimits = TxLimits { max_entries: 8, max_updates: 50 };
    /// No limit: every conversion is one transaction.
    pub const NONE: TxLimits = TxLimits { max_entries: usize::MAX, max_updates: usize::MAX };
}

impl Default for TxLimits {
    fn default() -> Self {
        TxLimits::MEDPLUM
    }
}

/// The Bundles for one conversion, in the order they must be sent.
///
/// Generic: exactly one transaction Bundle (without `entry` when there are no resources),
/// whatever its size ([`bundles_within`] fits transactions under a server's limits).
/// Salesforce: one batch Bundle per ≤ [`BATCH_MAX_ENTRIES`] resources (none when there are
/// no resources).
pub fn bundles(conv: &Conversion, profile: Profile) -> Result<Vec<Value>, BundleError> {
    bundles_within(conv, profile, TxLimits::NONE)
}

/// [`bundles`], with the generic profile's transactions split to fit under `limits`:
/// several transactions, to be sent in order, each self-contained (see the module documentation).
pub fn bundles_within(conv: &Conversion, profile: Profile, limits: TxLimits) -> Result<Vec<Value>, BundleError> {
    let plan = Plan::new(conv)?;
    match profile {
        Profile::Generic => plan.transactions(limits),
        Profile::Salesforce => plan.batches(),
    }
}

/// The identity used for a conditional update: both parts present.
fn usable_identity(r: &Resource) -> Option<&Identity> {
    r.identity.as_ref().filter(|i| !i.system.trim().is_empty() && !i.value.trim().is_empty())
}

/// The deterministic id of a resource (see the module documentation): from its business
/// identifier, else from the sender, the message's content key (never the control ID) and the
/// local key. The parts of the name are separated by NUL, which occurs in none of them, so
/// distinct inputs never collide by concatenation.
fn resource_id(conv: &Conversion, r: &Resource) -> Uuid {
    let name = match usable_identity(r) {
        Some(id) => format!("identity\0{}\0{}\0{}", r.kind, id.system, id.value),
        None => format!("content\0{}\0{}\0{}\0{}", r.kind, conv.sender, conv.content_key, r.key),
    };
    Uuid::new_v5(&ID_NAMESPACE, name.as_bytes())
}

/// `<Kind>?identifier=<system>|<value>`, each part escaped for FHIR search (`\`, `|`, `,`, `$`
/// get a backslash) and then percent-encoded; the separating `|` is literal.
pub fn conditional_url(kind: &str, identity: &Identity) -> String {
    format!("{kind}?{}", identifier_search(identity))
}

/// `identifier=<system>|<value>`, escaped as in [`conditional_url`] (an `ifNoneExist`).
fn identifier_search(identity: &Identity) -> String {
    format!("identifier={}|{}", encode_search_part(&identity.system), encode_search_part(&identity.value))
}

fn encode_search_part(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for c in part.chars() {
        if matches!(c, '\\' | '|' | ',' | '$') {
            percent_encode_into('\\', &mut out);
        }
        percent_encode_into(c, &mut out);
    }
    out
}

/// Keeps RFC 3986 unreserved characters and `:` `/` `@` (allowed in a query and common in
/// system URIs); percent-encodes the UTF-8 bytes of anything else.
fn percent_encode_into(c: char, out: &mut String) {
    if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | ':' | '/' | '@') {
        out.push(c);
        return;
    }
    let mut buf = [0u8; 4];
    for b in c.encode_utf8(&mut buf).bytes() {
        out.push_str(&format!("%{b:02X}"));
    }
}

/// Calls `f` on every `local:` reference key in `fields`, without copying anything.
fn visit_references(
    fields: &Map<String, Value>,
    f: &mut dyn FnMut(&str) -> Result<(), BundleError>,
) -> Result<(), BundleError> {
    fn walk(v: &Value, f: &mut dyn FnMut(&str) -> Result<(), BundleError>) -> Result<(), BundleError> {
        match v {
            Value::Object(map) => visit_references(map, f),
            Value::Array(items) => items.iter().try_for_each(|v| walk(v, f)),
            _ => Ok(()),
        }
    }
    for (k, v) in fields {
        match v {
            Value::String(s) if k == "reference" => {
                if let Some(key) = s.strip_prefix(LOCAL_REF) {
                    f(key)?;
                }
            }
            _ => walk(v, f)?,
        }
    }
    Ok(())
}

/// Calls `f` on every `local:` reference in `value`, replacing it with what `f` returns.
fn rewrite_references(
    value: &mut Value,
    f: &mut dyn FnMut(&str) -> Result<String, BundleError>,
) -> Result<(), BundleError> {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                match v {
                    Value::String(s) if k == "reference" => {
                        if let Some(key) = s.strip_prefix(LOCAL_REF) {
                            *s = f(key)?;
                        }
                    }
                    _ => rewrite_references(v, f)?,
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                rewrite_references(v, f)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The conversion with ids assigned and the references between resources resolved to indexes.
struct Plan<'c> {
    conv: &'c Conversion,
    ids: Vec<Uuid>,
    by_key: HashMap<&'c str, usize>,
    /// Per resource, the indexes of the resources it references (sorted, no duplicates).
    deps: Vec<Vec<usize>>,
}

impl<'c> Plan<'c> {
    fn new(conv: &'c Conversion) -> Result<Plan<'c>, BundleError> {
        let resources = &conv.resources;
        let mut by_key = HashMap::with_capacity(resources.len());
        for (i, r) in resources.iter().enumerate() {
            if by_key.insert(r.key.as_str(), i).is_some() {
                return Err(BundleError::DuplicateKey(r.key.clone()));
            }
        }
        let ids: Vec<Uuid> = resources.iter().map(|r| resource_id(conv, r)).collect();
        let mut seen: HashMap<(&str, Uuid), usize> = HashMap::with_capacity(resources.len());
        for (i, r) in resources.iter().enumerate() {
            if let Some(&first) = seen.get(&(r.kind, ids[i])) {
                return Err(BundleError::DuplicateResource {
                    kind: r.kind.to_string(),
                    first: resources[first].key.clone(),
                    second: r.key.clone(),
                });
            }
            seen.insert((r.kind, ids[i]), i);
        }
        let mut deps = Vec::with_capacity(resources.len());
        for r in resources {
            let mut set = BTreeSet::new();
            visit_references(r.body.fields(), &mut |key| match by_key.get(key) {
                Some(&j) => {
                    set.insert(j);
                    Ok(())
                }
                None => Err(BundleError::UnknownReference { from: r.key.clone(), target: key.to_string() }),
            })?;
            deps.push(set.into_iter().collect());
        }
        Ok(Plan { conv, ids, by_key, deps })
    }

    /// The resource JSON with `resourceType`, optionally `id`, and references rewritten by
    /// `target` (index → reference string).
    fn resource_json(&self, i: usize, with_id: bool, target: &dyn Fn(usize) -> String) -> Value {
        let r = &self.conv.resources[i];
        let mut body = r.body.clone().value();
        rewrite_references(&mut body, &mut |key| Ok(target(self.by_key[key])))
            .expect("references were checked in Plan::new");
        let map: &mut Map<String, Value> = match &mut body {
            Value::Object(m) => m,
            _ => unreachable!("Obj is an object"),
        };
        map.insert("resourceType".into(), Value::String(r.kind.to_string()));
        if with_id {
            map.insert("id".into(), Value::String(self.ids[i].to_string()));
        } else {
            map.remove("id");
        }
        body
    }

    fn full_url(&self, i: usize) -> String {
        format!("urn:uuid:{}", self.ids[i])
    }

    fn type_id(&self, i: usize) -> String {
        format!("{}/{}", self.conv.resources[i].kind, self.ids[i])
    }

    /// The entry that writes resource `i` (see the module documentation), its references
    /// rewritten by `target`.
    fn write_entry(&self, i: usize, target: &dyn Fn(usize) -> String) -> Value {
        let r = &self.conv.resources[i];
        let request = match (usable_identity(r), r.write) {
            (Some(identity), Write::Upsert) => {
                json!({ "method": "PUT", "url": conditional_url(r.kind, identity) })
            }
            (Some(identity), Write::CreateIfAbsent) => {
                json!({ "method": "POST", "url": r.kind, "ifNoneExist": identifier_search(identity) })
            }
            (None, _) => json!({ "method": "PUT", "url": self.type_id(i) }),
        };
        let with_id = usable_identity(r).is_none();
        json!({
            "fullUrl": self.full_url(i),
            "resource": self.resource_json(i, with_id, target),
            "request": request,
        })
    }

    /// One transaction Bundle writing `part`. A reference to a resource of the part points
    /// at its fullUrl; one to a resource an earlier part wrote is a conditional reference
    /// (`<Kind>?identifier=…`, which the server resolves by search) when it is keyed, else
    /// `<Kind>/<id>` (the gateway chose the id).
    fn transaction(&self, part: &Part) -> Value {
        let target = |j: usize| {
            if part.held.contains(&j) {
                self.full_url(j)
            } else {
                match usable_identity(&self.conv.resources[j]) {
                    Some(identity) => conditional_url(self.conv.resources[j].kind, identity),
                    None => self.type_id(j),
                }
            }
        };
        bundle("transaction", part.members.iter().map(|&i| self.write_entry(i, &target)).collect())
    }

    /// The generic profile's transactions: one when it fits under `limits`, else several in
    /// dependency order (as [`Plan::ordered_components`], a reference cycle kept in one),
    /// each filled greedily. Each part is self-contained: its references to what earlier parts
    /// wrote need no entry (see [`Plan::transaction`]), so a resend of every part changes
    /// nothing, and none counts against the limits.
    fn transactions(&self, limits: TxLimits) -> Result<Vec<Value>, BundleError> {
        let mut everything = Part::default();
        everything.add(self, (0..self.deps.len()).collect());
        if everything.fits(limits) {
            return Ok(vec![self.transaction(&everything)]);
        }
        let mut parts = Vec::new();
        let mut part = Part::default();
        for members in self.ordered_components() {
            if !part.members.is_empty() && !part.grown(self, &members).fits(limits) {
                parts.push(std::mem::take(&mut part));
            }
            part.add(self, members);
            if !part.fits(limits) {
                return Err(BundleError::OverTransactionLimits {
                    first: self.conv.resources[part.members[0]].key.clone(),
                    entries: part.members.len(),
                    updates: part.updates,
                });
            }
        }
        parts.push(part);
        Ok(parts.iter().map(|p| self.transaction(p)).collect())
    }

    /// `PUT` entries count as updates; a create-if-absent is a `POST`.
    fn is_update(&self, i: usize) -> bool {
        let r = &self.conv.resources[i];
        usable_identity(r).is_none() || r.write == Write::Upsert
    }

    /// The Salesforce profile's batches: `POST <Kind>` entries (no client id) with `urn:uuid`
    /// placeholders in `fullUrl` and references; a create-if-absent entry carries `ifNoneExist`
    /// so the forwarder can leave it out once the server holds the resource.
    fn batches(&self) -> Result<Vec<Value>, BundleError> {
        let mut out = Vec::new();
        for group in self.split()? {
            let entries: Vec<Value> = group
                .into_iter()
                .map(|i| {
                    let r = &self.conv.resources[i];
                    let mut request = json!({ "method": "POST", "url": r.kind });
                    if let (Some(identity), Write::CreateIfAbsent) = (usable_identity(r), r.write) {
                        request["ifNoneExist"] = Value::String(identifier_search(identity));
                    }
                    json!({
                        "fullUrl": self.full_url(i),
                        "resource": self.resource_json(i, false, &|j| self.full_url(j)),
                        "request": request,
                    })
                })
                .collect();
            if !entries.is_empty() {
                out.push(bundle("batch", entries));
            }
        }
        Ok(out)
    }

    /// Resource indexes in groups of at most [`BATCH_MAX_ENTRIES`]: each resource in the same
    /// group as, or a later one than, every resource it references.
    fn split(&self) -> Result<Vec<Vec<usize>>, BundleError> {
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut current: Vec<usize> = Vec::new();
        for members in self.ordered_components() {
            if members.len() > BATCH_MAX_ENTRIES {
                let first = self.conv.resources[members[0]].key.clone();
                return Err(BundleError::CycleTooLarge { size: members.len(), first });
            }
            if current.len() + members.len() > BATCH_MAX_ENTRIES {
                groups.push(std::mem::take(&mut current));
            }
            current.extend(members);
        }
        if !current.is_empty() {
            groups.push(current);
        }
        debug_assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), self.deps.len());
        Ok(groups)
    }

    /// The strongly connected components of the references (the resources of a cycle), each
    /// sorted, in an order where every component comes after the ones it references; Patient,
    /// Practitioner, Organization and Location first when the order is otherwise free.
    fn ordered_components(&self) -> Vec<Vec<usize>> {
        let components = strongly_connected(&self.deps);
        let n_comp = components.len();
        let mut comp_of = vec![0; self.deps.len()];
        for (c, members) in components.iter().enumerate() {
            for &i in members {
                comp_of[i] = c;
            }
        }
        // Component c depends on the components its members reference; count the distinct
        // ones still to be placed, and note who waits on whom.
        let mut waiting_on = vec![0usize; n_comp];
        let mut dependents: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n_comp];
        for (c, members) in components.iter().enumerate() {
            let mut needs = BTreeSet::new();
            for &i in members {
                needs.extend(self.deps[i].iter().map(|&j| comp_of[j]).filter(|&d| d != c));
            }
            waiting_on[c] = needs.len();
            for d in needs {
                dependents[d].insert(c);
            }
        }
        let priority = |c: usize| {
            let members = &components[c];
            let first = *members.iter().min().unwrap_or(&0);
            let later = members.iter().all(|&i| !FIRST_KINDS.contains(&self.conv.resources[i].kind));
            Reverse((later, first, c))
        };
        let mut ready: BinaryHeap<Reverse<(bool, usize, usize)>> =
            (0..n_comp).filter(|&c| waiting_on[c] == 0).map(priority).collect();
        let mut out = Vec::with_capacity(n_comp);
        while let Some(Reverse((_, _, c))) = ready.pop() {
            let mut sorted = components[c].clone();
            sorted.sort_unstable();
            out.push(sorted);
            for &d in &dependents[c] {
                waiting_on[d] -= 1;
                if waiting_on[d] == 0 {
                    ready.push(priority(d));
                }
            }
        }
        out
    }
}

/// One transaction of the generic profile being filled, with the counts the server's limits
/// apply to.
#[derive(Default)]
struct Part {
    members: Vec<usize>,
    /// `members`, for looking up: what a reference can point at by fullUrl.
    held: HashSet<usize>,
    updates: usize,
    /// Holds a conditional entry (a conditional update or create).
    conditional: bool,
}

/// The counts of a [`Part`], to check the limits before adding to it.
struct Counts {
    entries: usize,
    updates: usize,
    conditional: bool,
}

impl Part {
    fn grown(&self, plan: &Plan<'_>, members: &[usize]) -> Counts {
        Counts {
            entries: self.members.len() + members.len(),
            updates: self.updates + members.iter().filter(|&&i| plan.is_update(i)).count(),
            conditional: self.conditional
                || members.iter().any(|&i| usable_identity(&plan.conv.resources[i]).is_some()),
        }
    }

    fn add(&mut self, plan: &Plan<'_>, members: Vec<usize>) {
        let counts = self.grown(plan, &members);
        self.updates = counts.updates;
        self.conditional = counts.conditional;
        self.held.extend(&members);
        self.members.extend(members);
    }

    fn fits(&self, limits: TxLimits) -> bool {
        Counts { entries: self.members.len(), updates: self.updates, conditional: self.conditional }.fits(limits)
    }
}

impl Counts {
    fn fits(&self, limits: TxLimits) -> bool {
        self.updates <= limits.max_updates && (!self.conditional || self.entries <= limits.max_entries)
    }
}

fn bundle(kind: &str, entries: Vec<Value>) -> Value {
    let mut b = json!({ "resourceType": "Bundle", "type": kind });
    if !entries.is_empty() {
        b["entry"] = Value::Array(entries);
    }
    b
}

/// Tarjan's strongly connected components, iteratively (no recursion depth limit). `edges[i]`
/// lists the nodes `i` points to.
fn strongly_connected(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    const NONE: usize = usize::MAX;
    let n = edges.len();
    let mut index = vec![NONE; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut out = Vec::new();
    let mut next = 0;
    for root in 0..n {
        if index[root] != NONE {
            continue;
        }
        // (node, position in its edge list)
        let mut work = vec![(root, 0usize)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut pos)) = work.last_mut() {
            if let Some(&w) = edges[v].get(*pos) {
                *pos += 1;
                if index[w] == NONE {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                out.push(component);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::json::Obj;
    use crate::fhir::model::{reference, Report};

    fn res(kind: &'static str, key: &str, identity: Option<(&str, &str)>, refs: &[&str]) -> Resource {
        let mut body = Obj::new().set("status", "final");
        body.push_all("ref", refs.iter().map(|k| reference(k)));
        // A nested reference too, as in Observation.performer[].reference inside a backbone.
        if let Some(first) = refs.first() {
            body.put("nested", json!({ "deep": [{ "actor": reference(first) }] }));
        }
        Resource {
            kind,
            key: key.to_string(),
            identity: identity.map(|(s, v)| Identity { system: s.into(), value: v.into() }),
            body,
            write: Write::Upsert,
        }
    }

    fn conv(resources: Vec<Resource>) -> Conversion {
        Conversion {
            resources,
            report: Report::default(),
            sender: "EPIC|HOSP".into(),
            control_id: "CTRL1".into(),
            content_key: "0".repeat(64),
            merges: Vec::new(),
        }
    }

    /// Every `reference` string in `v`.
    fn references(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    match x {
                        Value::String(s) if k == "reference" => out.push(s.clone()),
                        _ => references(x, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| references(x, out)),
            _ => {}
        }
    }

    fn entries(b: &Value) -> &[Value] {
        b["entry"].as_array().map(Vec::as_slice).unwrap_or(&[])
    }

    fn small() -> Conversion {
        conv(vec![
            res("Patient", "Patient/pid", Some(("http://hosp.example/mrn", "MRN|1, 2")), &[]),
            res("Encounter", "Encounter/pv1", None, &["Patient/pid"]),
            res("Observation", "Observation/obx-1", None, &["Patient/pid", "Encounter/pv1"]),
        ])
    }

    #[test]
    fn namespace_is_the_documented_uuid() {
        assert_eq!(ID_NAMESPACE, Uuid::new_v5(&Uuid::NAMESPACE_URL, b"urn:hl7v2-gateway:fhir-resource-id"));
    }

    #[test]
    fn profile_from_str() {
        assert_eq!("generic".parse(), Ok(Profile::Generic));
        assert_eq!("salesforce".parse(), Ok(Profile::Salesforce));
        assert!("Salesforce2".parse::<Profile>().is_err());
        assert_eq!(Profile::Salesforce.to_string(), "salesforce");
    }

    #[test]
    fn generic_is_one_transaction_with_rewritten_references() {
        let c = small();
        let out = bundles(&c, Profile::Generic).unwrap();
        assert_eq!(out.len(), 1);
        let b = &out[0];
        assert_eq!(b["resourceType"], "Bundle");
        assert_eq!(b["type"], "transaction");
        let es = entries(b);
        assert_eq!(es.len(), 3);
        let full_urls: Vec<&str> = es.iter().map(|e| e["fullUrl"].as_str().unwrap()).collect();
        assert!(full_urls.iter().all(|u| u.starts_with("urn:uuid:") && Uuid::parse_str(&u[9..]).is_ok()));
        assert_eq!(full_urls.iter().collect::<BTreeSet<_>>().len(), 3, "fullUrls are unique");
        // Patient: conditional update, no id, URL escaped.
        let p = &es[0];
        assert_eq!(p["resource"]["resourceType"], "Patient");
        assert!(p["resource"].get("id").is_none());
        assert_eq!(p["request"]["method"], "PUT");
        assert_eq!(p["request"]["url"], "Patient?identifier=http://hosp.example/mrn|MRN%5C%7C1%5C%2C%202");
        // Encounter: no identity → PUT Type/id with the id in the resource.
        let e = &es[1];
        let id = e["resource"]["id"].as_str().unwrap();
        assert_eq!(e["request"]["url"], format!("Encounter/{id}"));
        assert_eq!(e["fullUrl"], format!("urn:uuid:{id}"));
        // References point at fullUrls of the bundle.
        let mut refs = Vec::new();
        references(b, &mut refs);
        assert_eq!(refs.len(), 5);
        for r in &refs {
            assert!(full_urls.contains(&r.as_str()), "dangling {r}");
        }
        assert_eq!(es[2]["resource"]["ref"][0]["reference"], full_urls[0]);
        assert_eq!(es[2]["resource"]["ref"][1]["reference"], full_urls[1]);
        assert_eq!(es[2]["resource"]["nested"]["deep"][0]["actor"]["reference"], full_urls[0]);
    }

    #[test]
    fn conditional_urls_are_never_empty() {
        let c = conv(vec![
            res("Patient", "Patient/a", Some(("", "123")), &[]),
            res("Patient", "Patient/b", Some(("http://x", "")), &[]),
            res("Practitioner", "Practitioner/c", Some(("urn:oid:1.2.3", "Dr Who")), &[]),
        ]);
        let b = &bundles(&c, Profile::Generic).unwrap()[0];
        let urls: Vec<&str> = entries(b).iter().map(|e| e["request"]["url"].as_str().unwrap()).collect();
        // Incomplete identities fall back to message-derived ids.
        assert!(urls[0].starts_with("Patient/") && !urls[0].contains('?'));
        assert!(urls[1].starts_with("Patient/") && !urls[1].contains('?'));
        assert_ne!(urls[0], urls[1]);
        assert_eq!(urls[2], "Practitioner?identifier=urn:oid:1.2.3|Dr%20Who");
        for e in entries(b) {
            let url = e["request"]["url"].as_str().unwrap();
            if let Some((_, q)) = url.split_once("?identifier=") {
                let (s, v) = q.split_once('|').unwrap();
                assert!(!s.is_empty() && !v.is_empty(), "{url}");
            }
        }
    }

    #[test]
    fn unknown_local_key_is_an_error() {
        let c = conv(vec![res("Observation", "Observation/1", None, &["Patient/missing"])]);
        for profile in [Profile::Generic, Profile::Salesforce] {
            let e = bundles(&c, profile).unwrap_err();
            assert_eq!(
                e,
                BundleError::UnknownReference { from: "Observation/1".into(), target: "Patient/missing".into() }
            );
        }
    }

    #[test]
    fn duplicate_keys_and_resources_are_errors() {
        let c = conv(vec![res("Patient", "P", None, &[]), res("Patient", "P", None, &[])]);
        assert_eq!(bundles(&c, Profile::Generic).unwrap_err(), BundleError::DuplicateKey("P".into()));
        let c = conv(vec![res("Patient", "P1", Some(("s", "v")), &[]), res("Patient", "P2", Some(("s", "v")), &[])]);
        assert!(matches!(bundles(&c, Profile::Generic).unwrap_err(), BundleError::DuplicateResource { .. }));
    }

    #[test]
    fn empty_conversion() {
        let c = conv(vec![]);
        assert_eq!(
            bundles(&c, Profile::Generic).unwrap(),
            vec![json!({"resourceType": "Bundle", "type": "transaction"})]
        );
        assert!(bundles(&c, Profile::Salesforce).unwrap().is_empty());
    }

    #[test]
    fn ids_are_deterministic_and_identity_based() {
        let a = small();
        let mut b = small();
        b.content_key = "1".repeat(64);
        let ba = bundles(&a, Profile::Generic).unwrap();
        let bb = bundles(&b, Profile::Generic).unwrap();
        // Same patient identity → same id from another message; content-derived ids differ.
        assert_eq!(entries(&ba[0])[0]["fullUrl"], entries(&bb[0])[0]["fullUrl"]);
        assert_ne!(entries(&ba[0])[1]["fullUrl"], entries(&bb[0])[1]["fullUrl"]);
        // The control ID is not part of any id: same content under another MSH-10 → same bundle.
        let mut resent = small();
        resent.control_id = "OTHER".into();
        for profile in [Profile::Generic, Profile::Salesforce] {
            let x = serde_json::to_vec(&bundles(&a, profile).unwrap()).unwrap();
            let y = serde_json::to_vec(&bundles(&resent, profile).unwrap()).unwrap();
            assert_eq!(x, y, "{profile}");
        }
        // Another sender → other content-derived ids, same identity-derived ones.
        let mut other_sender = small();
        other_sender.sender = "CERNER|HOSP".into();
        let bo = bundles(&other_sender, Profile::Generic).unwrap();
        assert_eq!(entries(&ba[0])[0]["fullUrl"], entries(&bo[0])[0]["fullUrl"]);
        assert_ne!(entries(&ba[0])[1]["fullUrl"], entries(&bo[0])[1]["fullUrl"]);
        assert_ne!(entries(&ba[0])[2]["fullUrl"], entries(&bo[0])[2]["fullUrl"]);
        // Same kind, same identity, different type → different ids.
        let c =
            conv(vec![res("Patient", "P", Some(("s", "v")), &[]), res("RelatedPerson", "R", Some(("s", "v")), &[])]);
        let bc = bundles(&c, Profile::Generic).unwrap();
        assert_ne!(entries(&bc[0])[0]["fullUrl"], entries(&bc[0])[1]["fullUrl"]);
    }

    /// 70 resources in an adversarial order: referencing resources before what they reference,
    /// the patient last.
    fn seventy() -> Conversion {
        let mut rs = Vec::new();
        for n in 0..22 {
            for m in 0..2 {
                rs.push(res(
                    "Observation",
                    &format!("Observation/{n}-{m}"),
                    None,
                    &["Patient/p", "Encounter/e", "Practitioner/dr"],
                ));
            }
            rs.push(res(
                "DiagnosticReport",
                &format!("DiagnosticReport/{n}"),
                None,
                &["Patient/p", "Encounter/e", &format!("Observation/{n}-0"), &format!("Observation/{n}-1")],
            ));
        }
        rs.push(res("Encounter", "Encounter/e", Some(("urn:visit", "V1")), &["Patient/p", "Organization/o"]));
        rs.push(res("Organization", "Organization/o", Some(("urn:org", "O1")), &[]));
        rs.push(res("Practitioner", "Practitioner/dr", Some(("urn:npi", "123")), &["Organization/o"]));
        rs.push(res("Patient", "Patient/p", Some(("urn:mrn", "M1")), &["Organization/o"]));
        assert_eq!(rs.len(), 70);
        conv(rs)
    }

    /// Checks the Salesforce invariants and returns the kinds per bundle: `POST <Kind>` entries
    /// without ids, `urn:uuid` fullUrls, every reference a placeholder of the same or an
    /// earlier bundle.
    fn check_batches(c: &Conversion, out: &[Value]) -> Vec<Vec<String>> {
        let mut sent: BTreeSet<String> = BTreeSet::new();
        let mut kinds = Vec::new();
        let mut total = 0;
        for b in out {
            assert_eq!(b["type"], "batch");
            let es = entries(b);
            assert!(!es.is_empty() && es.len() <= BATCH_MAX_ENTRIES, "{} entries", es.len());
            total += es.len();
            let mut here = BTreeSet::new();
            for e in es {
                let r = &e["resource"];
                assert_eq!(e["request"]["method"], "POST");
                assert_eq!(e["request"]["url"], r["resourceType"]);
                assert!(r.get("id").is_none(), "the server assigns ids");
                let full_url = e["fullUrl"].as_str().unwrap().to_string();
                assert!(full_url.starts_with("urn:uuid:"));
                assert!(here.insert(full_url), "duplicate entry");
            }
            let mut refs = Vec::new();
            references(b, &mut refs);
            for r in refs {
                assert!(r.starts_with("urn:uuid:"), "{r}");
                assert!(sent.contains(&r) || here.contains(&r), "{r} is in a later bundle or nowhere");
            }
            kinds.push(es.iter().map(|e| e["resource"]["resourceType"].as_str().unwrap().to_string()).collect());
            sent.extend(here);
        }
        assert_eq!(total, c.resources.len());
        kinds
    }

    #[test]
    fn salesforce_create_if_absent_carries_if_none_exist() {
        let mut p = res("Patient", "P", Some(("urn:mrn", "1")), &[]);
        p.write = Write::CreateIfAbsent;
        let c = conv(vec![p, res("Observation", "O", None, &["P"])]);
        let out = bundles(&c, Profile::Salesforce).unwrap();
        let es = entries(&out[0]);
        assert_eq!(es[0]["request"]["ifNoneExist"], "identifier=urn:mrn|1");
        assert!(es[1]["request"].get("ifNoneExist").is_none());
        assert_eq!(es[1]["resource"]["ref"][0]["reference"], es[0]["fullUrl"]);
    }

    #[test]
    fn salesforce_splits_in_dependency_order() {
        let c = seventy();
        let out = bundles(&c, Profile::Salesforce).unwrap();
        assert_eq!(out.len(), 3);
        let kinds = check_batches(&c, &out);
        assert_eq!(&kinds[0][..3], ["Organization", "Practitioner", "Patient"]);
        assert_eq!(kinds[0][3], "Encounter");
    }

    #[test]
    fn salesforce_keeps_cycles_together() {
        let mut rs = vec![res("Organization", "O", None, &[])];
        for n in 0..28 {
            rs.push(res("Practitioner", &format!("Dr{n}"), None, &["O"]));
        }
        // A merge: two patients linking each other. They must share a bundle, so they do not
        // fit into the first one (29 entries so far) and both go to the second.
        rs.push(res("Patient", "P1", Some(("urn:mrn", "1")), &["P2", "O"]));
        rs.push(res("Patient", "P2", Some(("urn:mrn", "2")), &["P1"]));
        rs.push(res("Observation", "Obs", None, &["P1", "Dr0"]));
        let c = conv(rs);
        let out = bundles(&c, Profile::Salesforce).unwrap();
        let kinds = check_batches(&c, &out);
        assert_eq!(kinds.iter().map(Vec::len).collect::<Vec<_>>(), [29, 3]);
        assert_eq!(kinds[1], ["Patient", "Patient", "Observation"]);
        // The generic profile resolves the cycle through fullUrls.
        let g = bundles(&c, Profile::Generic).unwrap();
        assert_eq!(entries(&g[0]).len(), 32);
    }

    #[test]
    fn oversized_cycle_is_an_error() {
        let rs: Vec<Resource> =
            (0..31).map(|n| res("Patient", &format!("P{n}"), None, &[&format!("P{}", (n + 1) % 31)])).collect();
        let e = bundles(&conv(rs), Profile::Salesforce).unwrap_err();
        assert!(matches!(e, BundleError::CycleTooLarge { size: 31, .. }), "{e}");
    }

    #[test]
    fn output_is_deterministic() {
        let c = seventy();
        for profile in [Profile::Generic, Profile::Salesforce] {
            let a = serde_json::to_vec(&bundles(&c, profile).unwrap()).unwrap();
            let b = serde_json::to_vec(&bundles(&c.clone(), profile).unwrap()).unwrap();
            assert_eq!(a, b);
        }
    }

    /// `v` with every `reference` mapped by `f`.
    fn map_references(v: &Value, f: &dyn Fn(&str) -> String) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, x)| match x {
                        Value::String(s) if k == "reference" => (k.clone(), Value::String(f(s))),
                        _ => (k.clone(), map_references(x, f)),
                    })
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(|x| map_references(x, f)).collect()),
            _ => v.clone(),
        }
    }

    /// What a transaction entry writes, as a reference from another transaction would name it:
    /// `<Kind>?identifier=…` for a conditional entry, else `<Kind>/<id>`.
    fn outside_name(e: &Value) -> String {
        let r = &e["request"];
        match r["ifNoneExist"].as_str() {
            Some(query) => format!("{}?{query}", r["url"].as_str().unwrap()),
            None => r["url"].as_str().unwrap().to_string(),
        }
    }

    /// Checks the split transactions of `c` against `limits` and the unsplit transaction:
    /// every part within the limits; every reference resolves within its part (a fullUrl of
    /// one of its entries) or names a resource an earlier part wrote (conditionally when it is
    /// keyed, else by its id); every resource is written exactly once, as in the unsplit bundle
    /// (references aside). Returns the number of parts.
    fn check_transactions(c: &Conversion, limits: TxLimits) -> usize {
        let parts = bundles_within(c, Profile::Generic, limits).unwrap();
        let whole = &bundles(c, Profile::Generic).unwrap()[0];
        let unsplit: HashMap<&str, &Value> =
            entries(whole).iter().map(|e| (e["fullUrl"].as_str().unwrap(), e)).collect();
        // What earlier parts wrote: the name a later part uses → its fullUrl.
        let mut earlier: HashMap<String, String> = HashMap::new();
        for (n, b) in parts.iter().enumerate() {
            assert_eq!(b["type"], "transaction");
            let es = entries(b);
            let conditional = es.iter().any(|e| outside_name(e).contains('?'));
            let updates = es.iter().filter(|e| e["request"]["method"] == "PUT").count();
            assert!(updates <= limits.max_updates, "part {n}: {updates} updates");
            assert!(!conditional || es.len() <= limits.max_entries, "part {n}: {} entries", es.len());
            let here: BTreeSet<&str> = es.iter().map(|e| e["fullUrl"].as_str().unwrap()).collect();
            let resolve = |r: &str| -> String {
                if here.contains(r) {
                    return r.to_string();
                }
                match earlier.get(r) {
                    Some(full_url) => full_url.clone(),
                    None => panic!("part {n}: {r} resolves neither within the part nor to an earlier part"),
                }
            };
            for e in es {
                let full_url = e["fullUrl"].as_str().unwrap();
                assert!(!earlier.values().any(|u| u == full_url), "part {n}: {full_url} written twice");
                let original = unsplit[full_url];
                assert_eq!(e["request"], original["request"], "part {n}: {full_url}");
                assert_eq!(map_references(&e["resource"], &|r| resolve(r)), original["resource"], "part {n}");
            }
            for e in es {
                earlier.insert(outside_name(e), e["fullUrl"].as_str().unwrap().to_string());
            }
        }
        let written: BTreeSet<&str> = earlier.values().map(String::as_str).collect();
        assert_eq!(written, unsplit.keys().copied().collect(), "every resource, once");
        parts.len()
    }

    #[test]
    fn generic_under_the_limits_is_one_transaction() {
        let c = small();
        let limited = bundles_within(&c, Profile::Generic, TxLimits::MEDPLUM).unwrap();
        assert_eq!(limited, bundles(&c, Profile::Generic).unwrap());
        assert_eq!(check_transactions(&c, TxLimits::MEDPLUM), 1);
        // No conditional entry: only the updates count.
        let keyless = conv((0..50).map(|n| res("Observation", &format!("O{n}"), None, &[])).collect());
        assert_eq!(check_transactions(&keyless, TxLimits::MEDPLUM), 1);
    }

    #[test]
    fn generic_over_the_limits_is_split_into_self_contained_parts() {
        let c = seventy();
        // Four keyed resources (conditional entries) go first; 66 keyless ones follow, and once
        // the parts hold no conditional entry only the updates count.
        for (entries, updates, parts) in [(8, 50, 3), (20, 50, 2), (8, 5, 14), (100, 30, 3), (4, 50, 3), (3, 50, 4)] {
            let limits = TxLimits { max_entries: entries, max_updates: updates };
            assert_eq!(check_transactions(&c, limits), parts, "{limits:?}");
        }
        // Keyless resources only: no conditional entry, split by updates alone, and later parts
        // reference earlier ones as `<Kind>/<id>`.
        let mut rs = vec![res("Patient", "P", None, &[])];
        rs.extend((0..120).map(|n| res("Observation", &format!("O{n}"), None, &["P"])));
        assert_eq!(check_transactions(&conv(rs), TxLimits::MEDPLUM), 3);
        // A merge's cycle stays in one part; what references it gets copies of both patients.
        let mut rs = vec![
            res("Patient", "P1", Some(("urn:mrn", "1")), &["P2"]),
            res("Patient", "P2", Some(("urn:mrn", "2")), &["P1"]),
        ];
        rs.extend((0..10).map(|n| res("Observation", &format!("O{n}"), Some(("urn:obs", &n.to_string())), &["P1"])));
        assert_eq!(check_transactions(&conv(rs), TxLimits::MEDPLUM), 2);
    }

    #[test]
    fn references_to_earlier_parts_need_no_entry() {
        // One resource referencing more keyed resources than a conditional transaction holds
        // (a Provenance's targets): they go first, it references them conditionally.
        let mut rs: Vec<Resource> =
            (0..12).map(|n| res("Practitioner", &format!("Dr{n}"), Some(("urn:npi", &n.to_string())), &[])).collect();
        let keys: Vec<String> = (0..12).map(|n| format!("Dr{n}")).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        rs.push(res("Provenance", "Prov", None, &refs));
        let c = conv(rs);
        assert_eq!(check_transactions(&c, TxLimits::MEDPLUM), 2);
        let parts = bundles_within(&c, Profile::Generic, TxLimits::MEDPLUM).unwrap();
        let prov = entries(&parts[1]).iter().find(|e| e["resource"]["resourceType"] == "Provenance").unwrap();
        assert_eq!(prov["resource"]["ref"][0]["reference"], "Practitioner?identifier=urn:npi|0");
    }

    #[test]
    fn a_cycle_over_the_limits_is_an_error() {
        let rs: Vec<Resource> = (0..9)
            .map(|n| {
                res("Patient", &format!("P{n}"), Some(("urn:mrn", &n.to_string())), &[&format!("P{}", (n + 1) % 9)])
            })
            .collect();
        let c = conv(rs);
        let e = bundles_within(&c, Profile::Generic, TxLimits::MEDPLUM).unwrap_err();
        assert_eq!(e, BundleError::OverTransactionLimits { first: "P0".into(), entries: 9, updates: 9 });
        assert_eq!(check_transactions(&c, TxLimits { max_entries: 9, max_updates: 9 }), 1);
    }

    #[test]
    fn split_transactions_are_deterministic() {
        let c = seventy();
        let a = serde_json::to_vec(&bundles_within(&c, Profile::Generic, TxLimits::MEDPLUM).unwrap());
        let b = serde_json::to_vec(&bundles_within(&c.clone(), Profile::Generic, TxLimits::MEDPLUM).unwrap());
        assert_eq!(a.unwrap(), b.unwrap());
    }

    #[test]
    fn scc_finds_cycles() {
        let edges = vec![vec![1], vec![2], vec![0], vec![0], vec![]];
        let mut comps: Vec<Vec<usize>> = strongly_connected(&edges)
            .into_iter()
            .map(|mut c| {
                c.sort();
                c
            })
            .collect();
        comps.sort();
        assert_eq!(comps, vec![vec![0, 1, 2], vec![3], vec![4]]);
    }
}
