// Self-test of the test FHIR server: `npm test --prefix tests/fhir-server`.
// Starts server.mjs on an ephemeral port, exercises each feature, prints "ok - …" / "not ok - …"
// lines and a final "N passed, N failed" line; exits 0 when everything passed.

import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SignJWT, exportJWK, exportSPKI, generateKeyPair } from 'jose';

const HERE = dirname(fileURLToPath(import.meta.url));
const SYS = 'urn:example:id';
const CLIENT_ID = 'gateway-client';
const SF_KEY = 'sf-consumer-key';
const SF_USER = 'integration@example.com';
const STATIC_TOKEN = 'static-secret';

let passed = 0;
let failed = 0;
function check(name, ok, detail) {
  if (ok) {
    passed++;
    console.log(`ok - ${name}`);
  } else {
    failed++;
    console.log(`not ok - ${name}${detail === undefined ? '' : `: ${JSON.stringify(detail).slice(0, 600)}`}`);
  }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const nowSecs = () => Math.floor(Date.now() / 1000);

// --- keys ------------------------------------------------------------------------------------
const dir = mkdtempSync(join(tmpdir(), 'fhir-selftest-'));
const rs384 = await generateKeyPair('RS384', { extractable: true });
const es384 = await generateKeyPair('ES384', { extractable: true });
const rs256 = await generateKeyPair('RS256', { extractable: true });
const jwks = {
  keys: [
    { ...(await exportJWK(rs384.publicKey)), kid: 'rs384-1', alg: 'RS384', use: 'sig' },
    { ...(await exportJWK(es384.publicKey)), kid: 'es384-1', alg: 'ES384', use: 'sig' },
  ],
};
writeFileSync(join(dir, 'jwks.json'), JSON.stringify(jwks));
writeFileSync(join(dir, 'sf.pem'), await exportSPKI(rs256.publicKey));

// --- server ----------------------------------------------------------------------------------
const nodeFlags = Number(process.versions.node.split('.')[0]) < 22 ? ['--experimental-websocket'] : [];
const tlsChildren = [];
const child = spawn(
  process.execPath,
  [
    ...nodeFlags,
    join(HERE, 'server.mjs'),
    '--port', '0',
    '--smart-jwks', join(dir, 'jwks.json'),
    '--smart-client-id', CLIENT_ID,
    '--sf-public-key', join(dir, 'sf.pem'),
    '--sf-consumer-key', SF_KEY,
    '--sf-user', SF_USER,
    '--static-token', STATIC_TOKEN,
  ],
  { stdio: ['pipe', 'pipe', 'pipe'] }
);
let stderr = '';
child.stderr.on('data', (d) => (stderr += d));
const exited = new Promise((r) => child.on('exit', (code, signal) => r({ code, signal })));
const watchdog = setTimeout(() => finish('watchdog: self-test took over 180 s'), 180_000);

function finish(error) {
  clearTimeout(watchdog);
  if (error) check(error, false);
  if (child.exitCode === null) child.kill('SIGTERM');
  for (const c of tlsChildren) if (c.exitCode === null) c.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
  if (failed) process.stderr.write(`--- server stderr ---\n${stderr}\n`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

const started = Date.now();
const origin = await new Promise((resolve) => {
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
    const m = /^listening (http:\/\/127\.0\.0\.1:\d+)\n/.exec(out);
    if (m) resolve(m[1]);
  });
  exited.then(() => resolve(null));
});
if (!origin) finish('server did not start');
check(`server started (${Date.now() - started} ms): ${origin}`, true);
const base = `${origin}/fhir/R4`;

async function fhir(method, path, body, headers = {}) {
  const r = await fetch(base + path, {
    method,
    headers: { 'Content-Type': 'application/fhir+json', Accept: 'application/fhir+json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, headers: r.headers, body: text ? JSON.parse(text) : undefined };
}
const getJson = async (path) => (await fetch(origin + path)).json();
const control = async (patch) => {
  const r = await fetch(`${origin}/__control`, { method: 'POST', body: JSON.stringify(patch) });
  if (r.status !== 200) throw new Error(`control ${JSON.stringify(patch)}: ${r.status} ${await r.text()}`);
  return r.json();
};
const token = async (form) => {
  const r = await fetch(`${origin}/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form),
  });
  return { status: r.status, body: await r.json() };
};
const fails = (promise) => promise.then(() => false, () => true);

// --- FHIR ------------------------------------------------------------------------------------
function patientObservation(type, pid, oid, observationExtra = {}) {
  const patientUrn = `urn:uuid:${randomUUID()}`;
  return {
    resourceType: 'Bundle',
    type,
    entry: [
      {
        fullUrl: patientUrn,
        resource: {
          resourceType: 'Patient',
          identifier: [{ system: SYS, value: pid }],
          name: [{ family: 'Selftest', given: ['Pat'] }],
          birthDate: '1980-02-03',
        },
        request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${SYS}|${pid}` },
      },
      {
        fullUrl: `urn:uuid:${randomUUID()}`,
        resource: {
          resourceType: 'Observation',
          identifier: [{ system: SYS, value: oid }],
          status: 'final',
          code: { coding: [{ system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' }] },
          subject: { reference: patientUrn },
          effectiveDateTime: '2024-01-01T10:00:00Z',
          valueQuantity: { value: 72, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
          ...observationExtra,
        },
        request: { method: 'PUT', url: `Observation?identifier=${SYS}|${oid}` },
      },
    ],
  };
}

try {
  let r = await fhir('POST', '/', patientObservation('transaction', 'p1', 'o1'));
  check('transaction -> 200 transaction-response', r.status === 200 && r.body?.type === 'transaction-response', r);
  check('transaction entries created (201, 201)', r.body?.entry?.map((e) => e.response.status).join() === '201,201', r.body?.entry?.map((e) => e.response));
  const patientId = r.body?.entry?.[0]?.resource?.id;

  r = await fhir('GET', `/Observation?identifier=${encodeURIComponent(`${SYS}|o1`)}`);
  check('search by identifier finds the Observation', r.status === 200 && r.body.total === 1, r.body);
  check('urn:uuid reference resolved to Patient/<id>', r.body?.entry?.[0]?.resource?.subject?.reference === `Patient/${patientId}`, r.body?.entry?.[0]?.resource?.subject);

  r = await fhir('POST', '/', patientObservation('transaction', 'p1', 'o1'));
  check('same transaction again -> 200, 200 (conditional create matched, conditional update updated)', r.body?.entry?.map((e) => e.response.status).join() === '200,200', r.body?.entry?.map((e) => e.response));
  let dump = await getJson('/__dump');
  check('no duplicates after posting twice', dump.Patient?.length === 1 && dump.Observation?.length === 1, Object.fromEntries(Object.entries(dump).map(([k, v]) => [k, v.length])));

  r = await fhir('PUT', '/Patient/fixed-1', { resourceType: 'Patient', id: 'fixed-1', identifier: [{ system: SYS, value: 'fixed-1' }] });
  check('PUT Patient/fixed-1 (client id, update-as-create) -> 201 + Location', r.status === 201 && /\/Patient\/fixed-1\/_history\//.test(r.headers.get('location') ?? ''), r);
  r = await fhir('PUT', '/Patient/fixed-1', { resourceType: 'Patient', id: 'fixed-1', identifier: [{ system: SYS, value: 'fixed-1' }], gender: 'female' });
  check('PUT Patient/fixed-1 again -> 200', r.status === 200 && r.body.gender === 'female', r);
  r = await fhir('GET', '/Patient/fixed-1');
  check('GET Patient/fixed-1 -> 200', r.status === 200 && r.body.id === 'fixed-1', r);
  r = await fhir('GET', '/Patient?_count=1000');
  check('GET Patient?_count=1000 lists 2', r.status === 200 && r.body.entry?.length === 2, r.body);

  // Invalid resource: transaction is all-or-nothing.
  r = await fhir('POST', '/', patientObservation('transaction', 'p2', 'o2', { status: 'bogus', colour: 'red' }));
  const issues = r.body?.issue ?? [];
  check('invalid transaction -> 400 OperationOutcome', r.status === 400 && r.body?.resourceType === 'OperationOutcome', r);
  check('issue code invalid/structure, diagnostics name the path', issues.some((i) => ['invalid', 'structure'].includes(i.code)) && issues.some((i) => /Observation\.status/.test(i.diagnostics)) && issues.some((i) => /Observation\.colour/.test(i.diagnostics)), issues);
  dump = await getJson('/__dump');
  check('invalid transaction rolled back (no Patient p2)', dump.Patient?.length === 2 && !dump.Patient.some((p) => p.identifier?.[0]?.value === 'p2'), dump.Patient?.map((p) => p.identifier));
  // An update in a failed transaction is undone too: the resource, its history, its identifier.
  r = await fhir('POST', '/', {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      { resource: { resourceType: 'Patient', id: 'fixed-1', identifier: [{ system: SYS, value: 'renamed' }], gender: 'male' }, request: { method: 'PUT', url: 'Patient/fixed-1' } },
      // A PUT too, so it runs after the Patient's (a transaction runs its POSTs first).
      { resource: { resourceType: 'Observation', id: 'bad', status: 'bogus', code: { text: 'x' } }, request: { method: 'PUT', url: 'Observation/bad' } },
    ],
  });
  check('transaction with an update and an invalid entry -> 400', r.status === 400, r);
  r = await fhir('GET', '/Patient/fixed-1');
  const history = await fhir('GET', '/Patient/fixed-1/_history');
  check('the update rolled back: content and history as before', r.body?.gender === 'female' && history.body?.entry?.length === 2, [r.body, history.body?.entry?.length]);
  r = await fhir('GET', `/Patient?identifier=${encodeURIComponent(`${SYS}|fixed-1`)}`);
  const renamed = await fhir('GET', `/Patient?identifier=${encodeURIComponent(`${SYS}|renamed`)}`);
  check('the update rolled back: found by its identifier, not by the new one', r.body?.entry?.length === 1 && !renamed.body?.entry, [r.body, renamed.body]);

  r = await fhir('POST', '/Observation', { resourceType: 'Observation', status: 'final', code: { text: 'x' }, valueString: 'a', valueInteger: 1 });
  check('two value[x] properties -> 400 (Medplum warning made an error)', r.status === 400 && r.body?.issue?.some((i) => /Conflicting choice of type/.test(i.diagnostics)), r.body);
  r = await fhir('POST', '/Observation', { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: `urn:uuid:${randomUUID()}` } });
  check('unresolved urn:uuid reference -> 400', r.status === 400, r.body);

  // Batch: per-entry status.
  const batch = {
    resourceType: 'Bundle',
    type: 'batch',
    entry: [
      { resource: { resourceType: 'Patient', id: 'b1', birthDate: '2001-01-01' }, request: { method: 'PUT', url: 'Patient/b1' } },
      { resource: { resourceType: 'Patient', id: 'b2', birthDate: '2001-13-01' }, request: { method: 'PUT', url: 'Patient/b2' } },
    ],
  };
  r = await fhir('POST', '/', batch);
  check('batch with one invalid entry -> 200 batch-response [201, 400]', r.status === 200 && r.body?.type === 'batch-response' && r.body.entry.map((e) => e.response.status).join() === '201,400', r.body?.entry?.map((e) => e.response));
  check('failed batch entry carries an OperationOutcome', r.body?.entry?.[1]?.response?.outcome?.issue?.some((i) => /Patient\.birthDate/.test(i.diagnostics)), r.body?.entry?.[1]);

  const many = Array.from({ length: 12 }, (_, i) => ({
    resource: { resourceType: 'Patient', identifier: [{ system: SYS, value: `many-${i}` }] },
    request: { method: 'PUT', url: `Patient?identifier=${SYS}|many-${i}` },
  }));
  r = await fhir('POST', '/', { resourceType: 'Bundle', type: 'transaction', entry: many });
  check('transaction of 12 conditional entries -> 200 (Medplum server limit of 8 lifted)', r.status === 200 && r.body.entry.every((e) => e.response.status === '201'), r.body?.issue ?? r.status);

  // Conditional references resolve by search: one match -> Type/id; none -> 400.
  const byCondition = (value) => ({ resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: `Patient?identifier=${SYS}|${value}` } });
  r = await fhir('POST', '/Observation', byCondition('many-3'));
  const many3 = (await getJson('/__dump')).Patient.find((p) => p.identifier?.[0]?.value === 'many-3');
  check('conditional reference -> Patient/<id> of the one match', r.status === 201 && r.body.subject?.reference === `Patient/${many3?.id}`, r.body);
  r = await fhir('POST', '/Observation', byCondition('nobody'));
  check('conditional reference matching nothing -> 400', r.status === 400, r.body);

  const log = await getJson('/__log?writes=1');
  check('/__log: Patient before Observation, ordered seq', log[0]?.type === 'Patient' && log[1]?.type === 'Observation' && log[0].seq < log[1].seq && log[0].status === 201, log.slice(0, 2));
  check('/__log hides rolled-back entries', !log.some((e) => e.rolled_back) && (await getJson('/__log?include_rolled_back=1')).some((e) => e.rolled_back));

  // --- faults ---------------------------------------------------------------------------------
  await control({ fail_every_n_429: 2, retry_after_secs: 3 });
  const statuses = [];
  let retryAfter;
  for (let i = 0; i < 4; i++) {
    r = await fhir('GET', '/Patient?_count=1000');
    statuses.push(r.status);
    if (r.status === 429) retryAfter = r.headers.get('retry-after');
  }
  check('fail_every_n_429=2 -> 200,429,200,429 with Retry-After: 3', statuses.join() === '200,429,200,429' && retryAfter === '3', { statuses, retryAfter });
  await control({ fail_every_n_429: 1, retry_after_http_date: true });
  r = await fhir('GET', '/Patient');
  const date = Date.parse(r.headers.get('retry-after') ?? '');
  check('retry_after_http_date -> Retry-After is an HTTP-date >= now', r.status === 429 && date >= Date.now() - 1000, r.headers.get('retry-after'));
  await control({ fail_every_n_429: 0, retry_after_http_date: false, fail_every_n_500: 1 });
  r = await fhir('GET', '/Patient');
  check('fail_every_n_500=1 -> 500 OperationOutcome', r.status === 500 && r.body?.resourceType === 'OperationOutcome', r.status);
  await control({ fail_every_n_500: 0, drop_every_n: 1 });
  check('drop_every_n=1 -> connection dropped', await fails(fetch(`${base}/Patient`)));
  await control({ drop_every_n: 0, hang_every_n: 1 });
  check('hang_every_n=1 -> no answer (client times out)', await fails(fetch(`${base}/Patient`, { signal: AbortSignal.timeout(500) })));
  await control({ hang_every_n: 0, down: true });
  r = await fhir('GET', '/Patient');
  check('down -> 503 + Retry-After', r.status === 503 && r.headers.get('retry-after') === '3', r.status);
  await control({ down: false });
  r = await fhir('GET', '/Patient');
  check('down=false -> 200', r.status === 200, r.status);
  await control({ down: true, down_mode: 'refuse', down_for_secs: 1 });
  check('down_mode=refuse -> connection refused', await fails(fetch(`${base}/Patient`)));
  await sleep(1500);
  r = await fhir('GET', '/Patient');
  check('down_for_secs=1 -> listening again on the same port', r.status === 200, r.status);
  await control({ down_mode: '503', down_for_secs: 0, retry_after_secs: 1 });

  // Salesforce mode.
  await control({ salesforce: true, sforce_limit: 'api-usage=5/15000' });
  r = await fhir('POST', '/', patientObservation('transaction', 'p3', 'o3'));
  check('salesforce: transaction -> 400 OperationOutcome', r.status === 400 && r.body?.resourceType === 'OperationOutcome', r.body);
  const post = (i) => ({ fullUrl: `urn:uuid:00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patient' } });
  const sfBatch = (entry) => ({ resourceType: 'Bundle', type: 'batch', entry });
  r = await fhir('POST', '/', sfBatch(Array.from({ length: 31 }, (_, i) => post(i))));
  check('salesforce: 31 entries -> 400', r.status === 400, r.body);
  r = await fhir('POST', '/', sfBatch(Array.from({ length: 11 }, () => ({ request: { method: 'GET', url: 'Patient?identifier=x|y' } }))));
  check('salesforce: 11 reads -> 400', r.status === 400, r.body);
  r = await fhir('POST', '/', patientObservation('batch', 'p3', 'o3'));
  check('salesforce: conditional entries refused entry by entry', r.status === 200 && r.body.entry.every((e) => !e.response.status.startsWith('2')), r.body);
  r = await fhir('POST', '/', sfBatch(Array.from({ length: 30 }, (_, i) => post(i))));
  check('salesforce: batch of 30 creates -> 201 with server ids + Sforce-Limit-Info', r.status === 200 && r.body.entry.every((e) => e.response.status === '201 Created' && /^Patient\/[0-9a-f-]{36}\/_history\//.test(e.response.location)) && r.headers.get('sforce-limit-info') === 'api-usage=5/15000', { status: r.status, h: r.headers.get('sforce-limit-info') });
  const given = r.body.entry[0].response.location.split('/_history')[0];
  // Placeholders resolve within the batch; a failed dependency answers 424; unlisted types and client ids are refused.
  const p = post(1), bad = { ...post(2), resource: { resourceType: 'Patient', id: 'client-chosen' } };
  const obs = (subject) => ({ fullUrl: 'urn:uuid:00000000-0000-4000-8000-0000000000aa', resource: { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: subject } }, request: { method: 'POST', url: 'Observation' } });
  r = await fhir('POST', '/', sfBatch([obs(p.fullUrl), p]));
  const obsAt = r.body.entry?.[0]?.response?.location ?? '';
  check('salesforce: urn:uuid reference resolved to the server id', r.body.entry?.[0]?.response?.status === '201 Created', r.body);
  r = await fhir('GET', `/${obsAt.split('/_history')[0]}`);
  check('salesforce: stored reference names the created Patient', r.body?.subject?.reference?.startsWith('Patient/') && !r.body.subject.reference.includes('urn:uuid'), r.body);
  r = await fhir('POST', '/', sfBatch([bad, obs(bad.fullUrl), { resource: { resourceType: 'Provenance' }, request: { method: 'POST', url: 'Provenance' } }, { resource: { resourceType: 'Patient', id: 'nope' }, request: { method: 'PUT', url: 'Patient/nope' } }, { resource: { resourceType: 'Patient', id: given.split('/')[1] }, request: { method: 'PUT', url: given } }]));
  check('salesforce: client id refused, dependant 424, unlisted type refused, unknown id 404, known id 200', r.body.entry.map((e) => e.response.status.slice(0, 3)).join(',') === '400,424,400,404,200', r.body.entry.map((e) => e.response.status));
  // Searches on identifier are answered with a searchset (the gateway's lookup before create).
  const withId = (i, value) => ({ ...post(i), resource: { resourceType: 'Patient', identifier: [{ system: SYS, value }] } });
  r = await fhir('POST', '/', sfBatch([withId(40, 'sf-dup'), withId(41, 'sf-dup'), withId(42, 'sf-one')]));
  const oneId = r.body.entry?.[2]?.response?.location?.split('/')[1];
  let reads = (await control({})).counters.salesforce.reads;
  const search = (value) => ({ request: { method: 'GET', url: `Patient?identifier=${encodeURIComponent(SYS)}|${value}` } });
  r = await fhir('POST', '/', sfBatch([search('sf-one'), search('sf-dup'), search('sf-none')]));
  const hits = r.body.entry?.map((e) => (e.resource?.type === 'searchset' ? (e.resource.entry ?? []).map((x) => x.resource.id) : null));
  check('salesforce: identifier searches -> searchsets (one, two, none), counted as reads', r.status === 200 && JSON.stringify(hits) === JSON.stringify([[oneId], hits?.[1], []]) && hits[1]?.length === 2 && (await control({})).counters.salesforce.reads === reads + 3, { hits, body: r.body });
  // The Patient API under its own path: Patient only there, refused at the FHIR base.
  await control({ salesforce_patient_base: '/patient-api' });
  const patientApi = async (body) => {
    const resp = await fetch(`${origin}/patient-api`, { method: 'POST', headers: { 'Content-Type': 'application/fhir+json' }, body: JSON.stringify(body) });
    return { status: resp.status, body: await resp.json() };
  };
  r = await patientApi(sfBatch([withId(43, 'sf-api'), obs(post(44).fullUrl), search('sf-api')]));
  check('salesforce_patient_base: Patient created and searched there, other types refused', r.status === 200 && r.body.entry.map((e) => e.response.status.slice(0, 3)).join(',') === '201,400,200', r.body.entry?.map((e) => e.response.status));
  r = await fhir('POST', '/', sfBatch([withId(45, 'sf-main'), search('sf-api')]));
  check('salesforce_patient_base: Patient writes and searches refused at the FHIR base', r.status === 200 && r.body.entry.every((e) => e.response.status.startsWith('400')), r.body.entry?.map((e) => e.response.status));
  await control({ salesforce: false, sforce_limit: '', salesforce_patient_base: '' });

  // --- auth -----------------------------------------------------------------------------------
  await control({ require_auth: true });
  r = await fhir('GET', '/Patient');
  check('require_auth: no token -> 401 OperationOutcome', r.status === 401 && r.body?.resourceType === 'OperationOutcome', r);
  r = await fhir('GET', '/Patient', undefined, { Authorization: `Bearer ${STATIC_TOKEN}` });
  check('static token -> 200', r.status === 200, r.status);

  const tokenUrl = `${origin}/token`;
  const smartAssertion = (key, alg, kid, claims = {}) =>
    new SignJWT({})
      .setProtectedHeader({ alg, kid, typ: 'JWT' })
      .setIssuer(claims.iss ?? CLIENT_ID)
      .setSubject(claims.sub ?? CLIENT_ID)
      .setAudience(claims.aud ?? tokenUrl)
      .setExpirationTime(claims.exp ?? nowSecs() + 240)
      .setJti(randomUUID())
      .sign(key);
  const smartForm = (assertion) => ({
    grant_type: 'client_credentials',
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: assertion,
    scope: 'system/*.write',
  });
  for (const [name, key, alg, kid] of [
    ['RS384', rs384.privateKey, 'RS384', 'rs384-1'],
    ['ES384', es384.privateKey, 'ES384', 'es384-1'],
  ]) {
    const assertion = await smartAssertion(key, alg, kid);
    const t = await token(smartForm(assertion));
    check(`SMART ${name} -> access token`, t.status === 200 && t.body.token_type === 'bearer' && t.body.expires_in > 0 && t.body.scope === 'system/*.write', t);
    r = await fhir('GET', '/Patient', undefined, { Authorization: `Bearer ${t.body.access_token}` });
    check(`SMART ${name} token accepted by FHIR routes`, r.status === 200, r.status);
    if (name === 'RS384') {
      const replay = await token(smartForm(assertion));
      check('SMART replayed jti -> 401 invalid_grant', replay.status === 401 && replay.body.error === 'invalid_grant', replay);
    }
  }
  let t = await token(smartForm(await smartAssertion(rs384.privateKey, 'RS384', 'rs384-1', { aud: `${origin}/other` })));
  check('SMART wrong aud -> 401', t.status === 401, t);
  t = await token(smartForm(await smartAssertion(rs384.privateKey, 'RS384', 'rs384-1', { exp: nowSecs() + 600 })));
  check('SMART exp > now + 5 min -> 401', t.status === 401, t);
  const stranger = await generateKeyPair('RS384');
  t = await token(smartForm(await smartAssertion(stranger.privateKey, 'RS384', 'rs384-1')));
  check('SMART wrong key -> 401', t.status === 401, t);

  const sfAssertion = (exp) =>
    new SignJWT({}).setProtectedHeader({ alg: 'RS256' }).setIssuer(SF_KEY).setSubject(SF_USER).setAudience(origin).setExpirationTime(exp).sign(rs256.privateKey);
  const sfForm = (assertion) => ({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion });
  t = await token(sfForm(await sfAssertion(nowSecs() + 120)));
  check('Salesforce RS256 -> access token + instance_url', t.status === 200 && t.body.token_type === 'Bearer' && t.body.instance_url === origin, t);
  r = await fhir('GET', '/Patient', undefined, { Authorization: `Bearer ${t.body.access_token}` });
  check('Salesforce token accepted by FHIR routes', r.status === 200, r.status);
  t = await token(sfForm(await sfAssertion(nowSecs() + 600)));
  check('Salesforce exp > now + 3 min -> 400 invalid_grant', t.status === 400 && t.body.error === 'invalid_grant', t);

  t = await token(smartForm(await smartAssertion(rs384.privateKey, 'RS384', 'rs384-1')));
  await control({ expire_tokens_after_secs: 1 });
  await sleep(1100);
  r = await fhir('GET', '/Patient', undefined, { Authorization: `Bearer ${t.body.access_token}` });
  check('expire_tokens_after_secs=1 -> token rejected with 401', r.status === 401, r.status);
  await control({ expire_tokens_after_secs: 0, require_auth: false });

  // --- counters, reset, stdin ------------------------------------------------------------------
  const state = await getJson('/__control');
  const c = state.counters;
  check('counters: requests, per-status, entries written, per type', c.requests > 20 && c.by_status['429'] === 3 && c.entries_written >= 47 && c.by_type.Patient >= 45, c);
  await control({ reset: true });
  dump = await getJson('/__dump');
  const after = (await getJson('/__control')).counters;
  check('reset clears repository and counters', Object.keys(dump).length === 0 && after.requests === 0 && after.entries_written === 0, { dump, after });

  child.stdin.end();
  const exit = await Promise.race([exited, sleep(5000).then(() => null)]);
  check('server exits when stdin closes', exit?.code === 0, exit);
} catch (err) {
  check(`unexpected error: ${err.stack ?? err}`, false);
}
try {
  await tlsTests();
} catch (err) {
  check(`unexpected error (TLS): ${err.stack ?? err}`, false);
}
finish();

// --- TLS and mutual TLS (--tls-cert, --tls-key, --tls-client-ca) --------------------------------
// Fixtures in testdata/ (sh testdata/gen.sh regenerates them): ca.pem signs server.pem
// (127.0.0.1, localhost) and client.pem (CN selftest-client); other-client.pem has another CA.

/** Starts server.mjs with `flags`; resolves to its stdout line, or to `{ exit, stderr }` if it exits first. */
function startServer(flags) {
  const c = spawn(process.execPath, [...nodeFlags, join(HERE, 'server.mjs'), '--port', '0', ...flags], { stdio: ['pipe', 'pipe', 'pipe'] });
  tlsChildren.push(c);
  let out = '';
  let err = '';
  c.stderr.on('data', (d) => (err += d));
  return new Promise((resolve) => {
    c.stdout.on('data', (d) => {
      out += d;
      if (out.endsWith('\n')) resolve({ child: c, line: out.trim() });
    });
    c.on('exit', (code) => resolve({ child: c, exit: code, stderr: err }));
  });
}

/** One HTTPS request on a fresh connection; rejects on a TLS or connection error. */
function httpsCall(url, { method = 'GET', body, ca, cert, key, timeout = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const headers = body === undefined ? {} : { 'Content-Type': 'application/fhir+json' };
    const req = https.request(url, { method, ca, cert, key, headers, agent: false, timeout }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode, body: text ? JSON.parse(text) : undefined }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

async function tlsTests() {
  const data = (f) => join(HERE, 'testdata', f);
  const pem = (f) => readFileSync(data(f));
  const ca = pem('ca.pem');
  const client = { cert: pem('client.pem'), key: pem('client.key') };
  const stranger = { cert: pem('other-client.pem'), key: pem('other-client.key') };

  // Flag errors stop the server before the definitions load.
  for (const [what, flags] of [
    ['--tls-cert without --tls-key', ['--tls-cert', data('server.pem')]],
    ['--tls-client-ca without --tls-cert', ['--tls-client-ca', data('ca.pem')]],
    ['--tls-cert FILE missing', ['--tls-cert', data('nope.pem'), '--tls-key', data('server.key')]],
  ]) {
    const r = await startServer(flags);
    check(`${what} -> exit 2 with a message`, r.exit === 2 && /--tls-/.test(r.stderr), r);
  }

  const serverFlags = ['--tls-cert', data('server.pem'), '--tls-key', data('server.key')];
  const [tlsSrv, mtlsSrv] = await Promise.all([startServer(serverFlags), startServer([...serverFlags, '--tls-client-ca', data('ca.pem')])]);
  const lineRe = /^listening (https:\/\/127\.0\.0\.1:\d+) control (http:\/\/127\.0\.0\.1:\d+)$/;
  const m = lineRe.exec(tlsSrv.line ?? '');
  const mm = lineRe.exec(mtlsSrv.line ?? '');
  check('TLS: stdout line is `listening https://… control http://…`', m && mm, [tlsSrv.line ?? tlsSrv.stderr, mtlsSrv.line ?? mtlsSrv.stderr]);
  if (!m || !mm) return;
  const [, tlsOrigin, tlsControl] = m;
  const [, mtlsOrigin, mtlsControl] = mm;
  const controlOf = async (c) => (await fetch(`${c}/__control`)).json();

  // TLS with a custom CA.
  let r = await httpsCall(`${tlsOrigin}/fhir/R4`, { method: 'POST', body: patientObservation('transaction', 'tls-p1', 'tls-o1'), ca });
  check('TLS: transaction over HTTPS (custom CA) -> 200 transaction-response', r.status === 200 && r.body?.type === 'transaction-response', r);
  check('TLS: a client that does not trust the CA fails the handshake', await fails(httpsCall(`${tlsOrigin}/fhir/R4/metadata`)));
  check('TLS: plain HTTP to the HTTPS port fails', await fails(fetch(`${tlsOrigin.replace('https:', 'http:')}/fhir/R4/metadata`, { signal: AbortSignal.timeout(3000) }).then((x) => (x.ok ? x : Promise.reject(new Error(String(x.status)))))));
  let view = await controlOf(tlsControl);
  check('TLS: control over plain HTTP: https base_url, handshakes and errors counted', view.base_url === `${tlsOrigin}/fhir/R4` && view.counters.tls?.handshakes >= 1 && view.counters.tls?.handshake_errors >= 1 && view.counters.entries_written === 2, view.counters);
  const dumpView = await (await fetch(`${tlsControl}/__dump`)).json();
  check('TLS: /__dump on the control port', dumpView.Patient?.length === 1 && dumpView.Observation?.length === 1, Object.keys(dumpView));
  r = await httpsCall(`${tlsOrigin}/__control`, { ca });
  check('TLS: control routes also on the HTTPS port', r.status === 200 && r.body?.counters?.requests >= 1, r.status);
  check('TLS: the control port serves no FHIR routes', (await fetch(`${tlsControl}/fhir/R4/metadata`)).status === 404);
  await fetch(`${tlsControl}/__control`, { method: 'POST', body: JSON.stringify({ hang_every_n: 1 }) });
  const hung = await fails(httpsCall(`${tlsOrigin}/fhir/R4/metadata`, { ca, timeout: 500 }));
  check('TLS: fault switches apply over HTTPS (hang_every_n=1 -> no answer)', hung && (await controlOf(tlsControl)).counters.faults.hang === 1);
  await fetch(`${tlsControl}/__control`, { method: 'POST', body: JSON.stringify({ hang_every_n: 0, reset: true }) });
  view = await controlOf(tlsControl);
  check('TLS: reset clears the TLS counters', view.counters.tls?.handshakes === 0 && view.counters.tls?.handshake_errors === 0, view.counters.tls);

  // Mutual TLS.
  r = await httpsCall(`${mtlsOrigin}/fhir/R4`, { method: 'POST', body: patientObservation('transaction', 'mtls-p1', 'mtls-o1'), ca, ...client });
  check('mTLS: with a client certificate from --tls-client-ca -> 200', r.status === 200 && r.body?.type === 'transaction-response', r);
  check('mTLS: without a client certificate -> refused', await fails(httpsCall(`${mtlsOrigin}/fhir/R4/metadata`, { ca })));
  check('mTLS: with a client certificate from another CA -> refused', await fails(httpsCall(`${mtlsOrigin}/fhir/R4/metadata`, { ca, ...stranger })));
  // A refused handshake may be counted a moment after the client saw it fail: poll (bounded).
  for (let i = 0; i < 30; i++) {
    view = await controlOf(mtlsControl);
    if (view.counters.tls?.handshake_errors >= 2) break;
    await sleep(100);
  }
  const t = view.counters.tls;
  check(
    'mTLS: counters: one accepted client (CN), two refused handshakes, one FHIR request',
    t?.handshakes === 1 && t.client_certs?.['selftest-client'] === 1 && t.handshake_errors === 2 && t.errors?.ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE === 1 && view.counters.requests === 1,
    view.counters
  );

  for (const s of [tlsSrv, mtlsSrv]) s.child.stdin.end();
  const exits = await Promise.race([Promise.all([tlsSrv, mtlsSrv].map((s) => new Promise((res) => (s.child.exitCode === null ? s.child.on('exit', res) : res(s.child.exitCode))))), sleep(5000).then(() => null)]);
  check('TLS servers exit when stdin closes', exits?.every((c) => c === 0), exits);
}
