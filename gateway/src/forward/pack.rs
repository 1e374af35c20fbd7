//! Which of a job's opened parts go into its request, and how: an entry two parts carry
//! identically (a shared Practitioner, say) is sent once; a lane's later parts (followers) go
//! only behind all its earlier ones, and not when an earlier part rewrites what they leave out
//! as unchanged; a create-if-absent of a resource the request writes goes along unsent (it
//! would change nothing), and a write replaces a create-if-absent; any other part that writes
//! a resource differently from an earlier part waits for the next request, since a batch's
//! entries may be applied in any order (every version reaches the server); a request holds at
//! most `max_entries` (for several lanes' transactions, the target's transaction limits too;
//! for salesforce, creates needing no more searches than one batch's reads, see `lookup`),
//! and the heads that no longer fit are given back; two requests in flight never both create
//! one resource. Salesforce: when some parts need no search, those that do wait for a later
//! request and their searches ride in this one (`searched_ahead`, up to a third of it).

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::deliver::Verdict;
use super::ids::Selected;
use super::lookup::Searches;
use super::worker::{with_unsent, Ctx, Opened, Part};

/// The request a job's parts make.
pub(super) struct Request {
    /// The entries as stored, with their content hashes.
    pub(super) entries: Vec<(Value, [u8; 32])>,
    /// The parts in it, and for each (index in its bundle, request position) of each entry
    /// it sent.
    pub(super) packed: Vec<usize>,
    pub(super) positions: Vec<Vec<(usize, usize)>>,
    /// For each packed part, its entries another part's entry stands in for (a create-if-absent
    /// next to a write): a refusal of that entry is not theirs.
    pub(super) stand_ins: Vec<Vec<usize>>,
    /// The placeholders it creates, claimed against the other requests in flight.
    pub(super) claimed: HashSet<String>,
    /// Heads that no longer fit.
    pub(super) given_back: Vec<usize>,
    /// Heads that wait for the answers to their searches, which ride in this request
    /// (salesforce, `lookup`), and those searches.
    pub(super) searched_ahead: Vec<usize>,
    pub(super) ahead: Searches,
}

/// Builds the request from `parts` (opened as `opened`): a part settled without sending gets
/// its verdict in `verdicts`; a part neither packed, settled nor given back waits.
pub(super) fn build(
    parts: &[Part],
    opened: &[Option<Opened>],
    verdicts: &mut [Option<Verdict>],
    batch: bool,
    ctx: &Ctx<'_>,
) -> Request {
    let (max_entries, max_updates) = if batch {
        (ctx.max_entries, usize::MAX)
    } else {
        (ctx.max_entries.min(ctx.tx_limits.max_entries), ctx.tx_limits.max_updates)
    };
    let mut updates = 0;
    // The searches its creates need first (salesforce, `lookup`): one batch's reads at most.
    let max_searches = ctx.target.max_reads();
    let mut searches = Searches::default();
    // A search costs a request's round trip before the writes that wait for it. So when some
    // parts need none, they go now and the searches of the others ride in this request, up
    // to `reserve` of its entries, while those parts wait for the next one; a job whose every
    // part needs searches makes them first, and searches ahead for the parts that do not fit.
    let needs: Vec<usize> = opened
        .iter()
        .map(|o| {
            o.as_ref().map_or(0, |o| Searches::default().added(o.selected.send.iter().map(|(_, e, _)| e), ctx).count())
        })
        .collect();
    let search_first =
        needs.iter().zip(opened).all(|(n, o)| *n > 0 || o.as_ref().is_none_or(|o| o.selected.send.is_empty()));
    let reserve = max_searches.min(max_entries / 3).min(needs.iter().sum());
    let mut ahead = Searches::default();
    let mut searched_ahead = Vec::new();
    let mut request: Vec<(Value, [u8; 32])> = Vec::new();
    let mut by_key: HashMap<String, usize> = HashMap::new();
    let mut packed: Vec<usize> = Vec::new();
    let mut positions: Vec<Vec<(usize, usize)>> = Vec::new();
    let mut claimed: HashSet<String> = HashSet::new();
    // Lanes with a part left out: their later parts wait too, so a lane keeps its order.
    let mut held_back: HashSet<&str> = HashSet::new();
    let mut given_back: Vec<usize> = Vec::new();
    for (i, o) in opened.iter().enumerate() {
        let lane = parts[i].lane.as_str();
        if held_back.contains(lane) {
            continue;
        }
        let Some(o) = o else { continue };
        // A follower waits when an earlier part rewrites what it leaves out as unchanged:
        // applied after that part, its message would have put the old content back.
        if parts[i].follower && o.unchanged.iter().any(|k| by_key.contains_key(k)) {
            held_back.insert(lane);
            continue;
        }
        if o.selected.send.is_empty() {
            verdicts[i] = Some(with_unsent(Verdict::Settled { ok: vec![], dead: vec![] }, &o.selected, o.batch));
            continue;
        }
        let keys: Vec<Option<String>> = o.selected.send.iter().map(|(_, e, _)| entry_key(e)).collect();
        let joins: Vec<Option<Join>> = keys
            .iter()
            .zip(&o.selected.send)
            .map(|(k, (_, e, _))| match k.as_ref().and_then(|k| by_key.get(k)) {
                None => Some(Join::New),
                Some(&pos) if request[pos].0 == *e => Some(Join::Same(pos)),
                Some(&pos) => join(&request[pos].0, e).map(|j| j(pos)),
            })
            .collect();
        let conflicts = joins.iter().any(Option::is_none);
        let new_entries = joins.iter().filter(|j| matches!(j, Some(Join::New))).count();
        let new_updates = joins
            .iter()
            .zip(&o.selected.send)
            .filter(|(j, (_, e, _))| is_update(e) && matches!(j, Some(Join::New | Join::Replaces(_))))
            .count();
        let writes =
            joins.iter().zip(&o.selected.send).filter(|(j, _)| matches!(j, Some(Join::New | Join::Replaces(_))));
        let new_searches = searches.added(writes.map(|(_, (_, e, _))| e), ctx);
        let full = !request.is_empty()
            && (request.len() + new_entries > max_entries - reserve
                || updates + new_updates > max_updates
                || (new_searches.count() > 0 && searches.count() + new_searches.count() > max_searches));
        let may_wait = new_searches.count() > 0 && !parts[i].follower && !new_searches.unsettled(ctx);
        if may_wait && (full || !search_first) {
            if ahead.count() + new_searches.count() <= reserve {
                ahead.extend(new_searches);
                searched_ahead.push(i);
            } else {
                given_back.push(i);
            }
            held_back.insert(lane);
            continue;
        }
        if full && !parts[i].follower {
            given_back.push(i);
        }
        if conflicts || full {
            held_back.insert(lane);
            continue;
        }
        // Two requests in flight must not both create one resource (two server records): a
        // part whose creates another request has under way waits for its answer.
        let creates = new_creates(&o.selected, ctx, &claimed);
        if !ctx.ids.claim(&creates) {
            held_back.insert(lane);
            continue;
        }
        claimed.extend(creates);
        updates += new_updates;
        searches.extend(new_searches);
        let mut sent = Vec::with_capacity(o.selected.send.len());
        for (((n, entry, content), key), how) in o.selected.send.iter().zip(keys).zip(joins.into_iter().flatten()) {
            match how {
                Join::Same(pos) | Join::Absorbed(pos) => sent.push((*n, pos)),
                Join::Replaces(pos) => {
                    request[pos] = (entry.clone(), *content);
                    sent.push((*n, pos));
                }
                Join::New => {
                    if let Some(key) = key {
                        by_key.insert(key, request.len());
                    }
                    sent.push((*n, request.len()));
                    request.push((entry.clone(), *content));
                }
            }
        }
        packed.push(i);
        positions.push(sent);
    }
    let stand_ins = packed
        .iter()
        .zip(&positions)
        .map(|(&i, sent)| {
            let contents = opened[i].as_ref().map_or(&[][..], |o| &o.selected.send[..]);
            sent.iter()
                .zip(contents)
                .filter(|(&(_, pos), (_, _, content))| request[pos].1 != *content)
                .map(|(&(n, _), _)| n)
                .collect()
        })
        .collect();
    Request { entries: request, packed, positions, stand_ins, claimed, given_back, searched_ahead, ahead }
}

/// How an entry joins a request that has an entry for the same resource already.
#[derive(Clone, Copy)]
enum Join {
    /// The resource is not in the request yet.
    New,
    /// The same entry: sent once.
    Same(usize),
    /// A create-if-absent of a resource the request writes: it would change nothing.
    Absorbed(usize),
    /// A write in the place of the request's create-if-absent.
    Replaces(usize),
}

/// How `new` joins a request holding `old` for the same resource, or `None` when it must wait
/// for the next request (a batch may apply its entries in any order). A create-if-absent
/// changes nothing next to a write of the resource, in either order, whatever the lanes.
fn join(old: &Value, new: &Value) -> Option<fn(usize) -> Join> {
    let request = |e: &Value| e.get("request").cloned().unwrap_or_default();
    let (old, new) = (request(old), request(new));
    let writes = |r: &Value| {
        matches!(r.get("method").and_then(Value::as_str), Some("PUT" | "POST")) && r.get("ifMatch").is_none()
    };
    let if_absent = |r: &Value| r.get("ifNoneExist").is_some();
    if !(writes(&old) && writes(&new)) {
        return None;
    }
    match (if_absent(&old), if_absent(&new)) {
        (_, true) => Some(Join::Absorbed),
        (true, false) => Some(Join::Replaces),
        (false, false) => None,
    }
}

/// The key of an entry in a request: its placeholder, else its request URL.
pub(super) fn entry_key(entry: &Value) -> Option<String> {
    entry
        .get("fullUrl")
        .and_then(Value::as_str)
        .or_else(|| entry.get("request")?.get("url")?.as_str())
        .map(str::to_string)
}

fn is_update(entry: &Value) -> bool {
    entry.get("request").and_then(|r| r.get("method")).and_then(Value::as_str) == Some("PUT")
}

/// The placeholders a part would create (salesforce: no server id known yet) that this
/// request has not claimed already.
fn new_creates(selected: &Selected, ctx: &Ctx<'_>, claimed: &HashSet<String>) -> Vec<String> {
    if ctx.rules.profile != crate::fhir::bundle::Profile::Salesforce {
        return Vec::new();
    }
    selected
        .send
        .iter()
        .filter_map(|(_, e, _)| e.get("fullUrl").and_then(Value::as_str))
        .filter(|p| !claimed.contains(*p) && ctx.ids.known(p).and_then(|k| k.server_id).is_none())
        .map(str::to_string)
        .collect()
}
