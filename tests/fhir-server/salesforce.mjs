// Salesforce mode of the test FHIR server: the Salesforce Healthcare API as its developer guide
// ("Get Started", "Considerations") describes it, so the gateway's salesforce profile can fail a
// test. Only `batch` Bundles; at most `salesforce_max_entries` entries, at most
// `salesforce_max_reads` of them reads/searches; entries depend on each other through
// `urn:uuid:` placeholders in fullUrl and references (multi-level), resolved in dependency
// order, a failed dependency answers 424; the server assigns ids (a create with a client id,
// a conditional create or an update of an id it never gave out is refused); resource types
// outside `salesforce_types` are refused; more than `salesforce_max_concurrent` requests at
// once are refused; `salesforce_latency_ms` delays every answer (the docs expect ~3 s).

import { randomUUID } from 'node:crypto';

/** Resource types of the documented modules (Administration, Clinical, Diagnostics, Medications). */
export const DOCUMENTED_TYPES = [
  // Administration
  'Patient', 'Practitioner', 'PractitionerRole', 'Encounter', 'Organization', 'Location', 'RelatedPerson',
  // Clinical
  'AllergyIntolerance', 'Condition', 'Procedure', 'CarePlan', 'CareTeam', 'Goal', 'FamilyMemberHistory',
  // Clinical Workflow
  'ServiceRequest',
  // Diagnostics
  'Observation', 'DiagnosticReport', 'DocumentReference',
  // Medications
  'Medication', 'MedicationRequest', 'MedicationStatement', 'MedicationAdministration', 'Immunization',
];

const outcome = (code, text) => ({
  resourceType: 'OperationOutcome',
  issue: [{ severity: 'error', code, details: { text }, diagnostics: text }],
});

const entryAnswer = (status, extra = {}) => ({ response: { status, ...extra } });

/** Every `reference` string under v. */
function references(v, out = []) {
  if (Array.isArray(v)) v.forEach((x) => references(x, out));
  else if (v && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      if (k === 'reference' && typeof x === 'string') out.push(x);
      else references(x, out);
    }
  }
  return out;
}

function rewriteReferences(v, map) {
  if (Array.isArray(v)) return v.map((x) => rewriteReferences(x, map));
  if (v && typeof v === 'object') {
    const o = {};
    for (const [k, x] of Object.entries(v)) o[k] = k === 'reference' && typeof x === 'string' && map.has(x) ? map.get(x) : rewriteReferences(x, map);
    return o;
  }
  return v;
}

/** Entry indexes in dependency order (Kahn); members of a cycle follow in bundle order. */
function dependencyOrder(entries, deps) {
  const order = [];
  const placed = new Set();
  let progress = true;
  while (progress) {
    progress = false;
    for (let i = 0; i < entries.length; i++) {
      if (placed.has(i)) continue;
      if ([...deps[i]].every((j) => placed.has(j) || j === i)) {
        order.push(i);
        placed.add(i);
        progress = true;
      }
    }
  }
  for (let i = 0; i < entries.length; i++) if (!placed.has(i)) order.push(i);
  return order;
}

export class Salesforce {
  constructor(store, faults) {
    this.store = store;
    this.faults = faults;
    this.inFlight = 0;
    this.reset();
  }

  reset() {
    this.given = new Set(); // "Type/id" the server handed out
    this.counters = { requests: 0, patient_api_requests: 0, concurrency_refused: 0, max_in_flight: 0, entries: 0, reads: 0, reads_with_writes: 0, creates: 0, updates: 0, failed_dependency: 0, refused_types: 0 };
  }

  /** Answers one FHIR request in salesforce mode: [status, body]. */
  async handle(method, path, rel, body, api = 'fhir') {
    const s = this.faults.state;
    this.counters.requests++;
    if (api === 'patient') this.counters.patient_api_requests++;
    this.inFlight++;
    this.counters.max_in_flight = Math.max(this.counters.max_in_flight, this.inFlight);
    try {
      if (this.inFlight > s.salesforce_max_concurrent) {
        this.counters.concurrency_refused++;
        return [429, outcome('throttled', `REQUEST_LIMIT_EXCEEDED: more than ${s.salesforce_max_concurrent} concurrent requests`)];
      }
      if (s.salesforce_latency_ms > 0) await new Promise((r) => setTimeout(r, s.salesforce_latency_ms));
      if (method === 'GET') return this.store.handle(method, rel, undefined, {}).then(([oc, res]) => [statusOf(oc), res ?? oc]);
      if (method !== 'POST' || path !== '') return [400, outcome('not-supported', `only batch Bundles are accepted, not ${method} ${path}`)];
      if (body?.resourceType !== 'Bundle' || body.type !== 'batch') return [400, outcome('not-supported', `only batch Bundles are accepted, not ${body?.resourceType} ${body?.type}`)];
      const entries = body.entry ?? [];
      if (entries.length > s.salesforce_max_entries) return [400, outcome('too-costly', `at most ${s.salesforce_max_entries} entries per batch, got ${entries.length}`)];
      const reads = entries.filter((e) => e.request?.method === 'GET').length;
      if (reads > s.salesforce_max_reads) return [400, outcome('too-costly', `at most ${s.salesforce_max_reads} reads per batch, got ${reads}`)];
      this.counters.entries += entries.length;
      if (reads > 0 && reads < entries.length) this.counters.reads_with_writes += reads;
      return [200, { resourceType: 'Bundle', type: 'batch-response', entry: await this.batch(entries, api) }];
    } finally {
      this.inFlight--;
    }
  }

  async batch(entries, api) {
    const listed = this.faults.state.salesforce_types.split(',').map((t) => t.trim()).filter(Boolean);
    let types = new Set(listed.length ? listed : DOCUMENTED_TYPES);
    if (this.faults.state.salesforce_patient_base) {
      // The Patient API takes Patient only; the other APIs everything else.
      types = api === 'patient' ? new Set(['Patient']) : new Set([...types].filter((t) => t !== 'Patient'));
    }
    const byPlaceholder = new Map();
    entries.forEach((e, i) => {
      if (typeof e.fullUrl === 'string' && e.fullUrl.startsWith('urn:uuid:')) byPlaceholder.set(e.fullUrl, i);
    });
    const deps = entries.map((e) => new Set(references(e.resource).filter((r) => byPlaceholder.has(r)).map((r) => byPlaceholder.get(r))));
    const answers = new Array(entries.length);
    const failed = new Set();
    const resolved = new Map(); // placeholder -> Type/id
    // Ids are assigned before anything is written, so a reference cycle resolves too.
    entries.forEach((e) => {
      if (e.request?.method === 'POST' && e.resource?.resourceType && byPlaceholder.has(e.fullUrl)) {
        resolved.set(e.fullUrl, `${e.resource.resourceType}/${randomUUID()}`);
      } else if (e.request?.method === 'PUT' && byPlaceholder.has(e.fullUrl)) resolved.set(e.fullUrl, e.request.url);
    });
    for (const i of dependencyOrder(entries, deps)) {
      const e = entries[i];
      if ([...deps[i]].some((j) => j !== i && failed.has(j))) {
        answers[i] = entryAnswer('424 Failed Dependency', { outcome: outcome('processing', 'a dependency of this entry failed') });
        this.counters.failed_dependency++;
        failed.add(i);
        continue;
      }
      const [status, extra, resource] = await this.entry(e, types, resolved);
      answers[i] = { ...entryAnswer(status, extra), ...(resource ? { resource } : {}) };
      if (!status.startsWith('2')) failed.add(i);
    }
    return answers;
  }

  async entry(e, types, resolved) {
    const method = e.request?.method;
    const url = e.request?.url ?? '';
    if (method === 'GET') {
      this.counters.reads++;
      const readType = url.split(/[/?]/)[0];
      if (!types.has(readType)) {
        this.counters.refused_types++;
        return ['400 Bad Request', { outcome: outcome('not-supported', `resource type ${readType} is not served here`) }];
      }
      const [oc, res] = await this.store.handle('GET', url, undefined, {});
      return [`${statusOf(oc)}`, res ? {} : { outcome: oc }, res];
    }
    const resource = e.resource;
    const type = resource?.resourceType;
    if (!types.has(type)) {
      this.counters.refused_types++;
      return ['400 Bad Request', { outcome: outcome('not-supported', `resource type ${type} is not supported`) }];
    }
    const s = this.faults.state;
    if (type === s.salesforce_fail_type && s.salesforce_fail_count > 0) {
      s.salesforce_fail_count--;
      return ['503 Service Unavailable', { outcome: outcome('transient', 'salesforce_fail_type switch') }];
    }
    if (e.request?.ifNoneExist) return ['400 Bad Request', { outcome: outcome('not-supported', 'conditional create is not supported') }];
    let target;
    if (method === 'POST' && url === type) {
      if (resource.id) return ['400 Bad Request', { outcome: outcome('invalid', 'a create must not carry an id: the server assigns it') }];
      target = resolved.get(e.fullUrl) ?? `${type}/${randomUUID()}`;
    } else if (method === 'PUT' && /^[A-Za-z]+\/[A-Za-z0-9\-.]{1,64}$/.test(url) && url.startsWith(`${type}/`)) {
      if (!this.given.has(url)) return ['404 Not Found', { outcome: outcome('not-found', 'no resource with this id: ids are assigned by the server') }];
      target = url;
    } else {
      return ['400 Bad Request', { outcome: outcome('not-supported', `only POST Type and PUT Type/id writes are accepted, not ${method} ${url}`) }];
    }
    for (const r of references(resource)) {
      if (r.startsWith('urn:uuid:') && !resolved.has(r)) return ['400 Bad Request', { outcome: outcome('invalid', 'a urn:uuid reference names no entry of the batch') }];
    }
    const [id] = target.split('/').slice(1);
    const body = { ...rewriteReferences(resource, resolved), id };
    const [oc, res] = await this.store.handle('PUT', target, body, {});
    const status = statusOf(oc);
    if (status >= 300) return [`${status}`, { outcome: oc }];
    const created = !this.given.has(target);
    this.given.add(target);
    this.counters[created ? 'creates' : 'updates']++;
    return [created ? '201 Created' : '200 OK', { location: `${target}/_history/${res?.meta?.versionId ?? '1'}` }];
  }
}

let statusOf = () => 200;
/** Installs the outcome → HTTP status function of fhir.mjs. */
export function useStatus(getStatus) {
  statusOf = getStatus;
}
