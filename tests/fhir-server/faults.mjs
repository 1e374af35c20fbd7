// Fault switches and counters of the test FHIR server.
// State is set at start (flags) and at runtime (POST /__control); see README.md.

export const DEFAULTS = Object.freeze({
  fail_every_n_429: 0, // every Nth FHIR request -> 429 + Retry-After
  retry_after_secs: 1, // Retry-After value for 429 and 503
  retry_after_http_date: false, // send Retry-After as an HTTP-date instead of seconds
  fail_every_n_500: 0, // every Nth FHIR request -> 500
  hang_every_n: 0, // every Nth FHIR request is read and never answered
  drop_every_n: 0, // every Nth FHIR request: socket destroyed without a response
  down: false, // FHIR requests -> 503 (down_mode "503") or listener closed (down_mode "refuse")
  down_mode: '503',
  down_for_secs: 0, // when > 0 and down is set true: switch back to false after that many seconds
  expire_tokens_after_secs: 0, // issued tokens stop working after N seconds (0 = normal TTL)
  salesforce: false, // the Salesforce Healthcare API as documented (salesforce.mjs)
  salesforce_max_entries: 30,
  salesforce_max_reads: 10, // reads/searches per batch
  salesforce_max_concurrent: 5, // more requests at once -> 429
  salesforce_latency_ms: 0, // added to every answer (the docs expect ~3000)
  salesforce_types: '', // accepted resource types, comma-separated; '' = the documented modules' types
  salesforce_fail_type: '', // entries writing this type fail with 503 ...
  salesforce_fail_count: 0, // ... this many times (so their dependants answer 424)
  salesforce_patient_base: '', // e.g. "/patient-api": Patient only there, refused at the FHIR base
  sforce_limit: '', // e.g. "api-usage=10/15000" -> Sforce-Limit-Info response header
  require_auth: false, // FHIR routes need a Bearer token from /token or --static-token
  reject_marker: '', // a request whose body holds this string -> 400 business-rule (a server rule refusing one bundle)
  latency_ms: 0, // added to every FHIR answer outside salesforce mode (a distant server)
});

const TYPES = {
  fail_every_n_429: 'count',
  retry_after_secs: 'count',
  retry_after_http_date: 'boolean',
  fail_every_n_500: 'count',
  hang_every_n: 'count',
  drop_every_n: 'count',
  down: 'boolean',
  down_mode: ['503', 'refuse'],
  down_for_secs: 'count',
  expire_tokens_after_secs: 'count',
  salesforce: 'boolean',
  salesforce_max_entries: 'count',
  salesforce_max_reads: 'count',
  salesforce_max_concurrent: 'count',
  salesforce_latency_ms: 'count',
  latency_ms: 'count',
  salesforce_types: 'string',
  salesforce_fail_type: 'string',
  salesforce_fail_count: 'count',
  salesforce_patient_base: 'string',
  sforce_limit: 'string',
  require_auth: 'boolean',
  reject_marker: 'string',
};

/** Keys that are actions, not state. */
const ACTIONS = ['reset', 'reset_faults'];

/** The "every N" switches, in precedence order when several fire on the same request. */
const EVERY = [
  ['drop', 'drop_every_n'],
  ['hang', 'hang_every_n'],
  ['429', 'fail_every_n_429'],
  ['500', 'fail_every_n_500'],
];

function freshCounters() {
  return {
    requests: 0, // FHIR requests received (including faulted ones)
    by_status: {}, // HTTP status of FHIR responses sent
    faults: { down: 0, drop: 0, hang: 0, 429: 0, 500: 0 },
    auth_rejected: 0,
    tokens_issued: 0,
    token_errors: 0,
  };
}

export class Faults {
  constructor() {
    this.state = { ...DEFAULTS };
    this.seen = { drop: 0, hang: 0, 429: 0, 500: 0 };
    this.counters = freshCounters();
  }

  /** Coerces a value given as a flag (string) or JSON to the key's type; throws on a bad one. */
  static coerce(key, value) {
    const type = TYPES[key];
    if (Array.isArray(type)) {
      const v = String(value);
      if (!type.includes(v)) throw new Error(`${key}: expected one of ${type.join(', ')}`);
      return v;
    }
    if (type === 'boolean') {
      if (value === true || value === 'true' || value === '1' || value === 1) return true;
      if (value === false || value === 'false' || value === '0' || value === 0) return false;
      throw new Error(`${key}: expected a boolean`);
    }
    if (type === 'count') {
      const n = typeof value === 'number' ? value : Number(value);
      if (!Number.isInteger(n) || n < 0) throw new Error(`${key}: expected an integer >= 0`);
      return n;
    }
    if (typeof value !== 'string') throw new Error(`${key}: expected a string`);
    return value;
  }

  static isKey(key) {
    return key in TYPES;
  }

  /**
   * Applies a control patch. Validates everything before changing anything.
   * @returns {{ changed: string[], actions: string[] }}
   */
  update(patch) {
    if (!patch || typeof patch !== 'object' || Array.isArray(patch)) throw new Error('expected a JSON object');
    const next = {};
    const actions = [];
    for (const [key, value] of Object.entries(patch)) {
      if (ACTIONS.includes(key)) {
        if (Faults.coerce('retry_after_http_date', value)) actions.push(key); // any boolean key checks the value
      } else if (key in TYPES) {
        next[key] = Faults.coerce(key, value);
      } else {
        throw new Error(`unknown control key: ${key} (known: ${[...Object.keys(TYPES), ...ACTIONS].join(', ')})`);
      }
    }
    if (actions.includes('reset_faults')) this.state = { ...DEFAULTS, require_auth: this.state.require_auth };
    if (actions.includes('reset')) this.resetCounters();
    Object.assign(this.state, next);
    // Setting an "every N" switch restarts its count, so "2" means the 2nd request from now.
    for (const [name, key] of EVERY) {
      if (key in next || actions.includes('reset') || actions.includes('reset_faults')) this.seen[name] = 0;
    }
    return { changed: Object.keys(next), actions };
  }

  resetCounters() {
    this.counters = freshCounters();
    for (const k of Object.keys(this.seen)) this.seen[k] = 0;
  }

  /**
   * Counts one FHIR request and decides its fault.
   * @returns {null | 'down' | 'drop' | 'hang' | '429' | '500'}
   */
  next() {
    this.counters.requests++;
    if (this.state.down) {
      this.counters.faults.down++;
      return 'down';
    }
    let fault = null;
    // Every active switch counts every request, so each fires on its own period.
    for (const [name, key] of EVERY) {
      const n = this.state[key];
      if (n > 0 && ++this.seen[name] % n === 0 && !fault) fault = name;
    }
    if (fault) this.counters.faults[fault]++;
    return fault;
  }

  countStatus(status) {
    this.counters.by_status[status] = (this.counters.by_status[status] ?? 0) + 1;
  }

  /** The Retry-After header value for 429/503. */
  retryAfter() {
    const secs = this.state.retry_after_secs;
    if (!this.state.retry_after_http_date) return String(secs);
    // HTTP-dates have 1 s resolution: round up so the date is never earlier than now + secs.
    return new Date(Math.ceil((Date.now() + secs * 1000) / 1000) * 1000).toUTCString();
  }
}
