#!/usr/bin/env node
// Loopback FHIR R4 test server: Medplum's fhir-router on an in-memory repository, with a
// SMART / Salesforce token endpoint and fault switches. Test-only; see README.md.
//
//   node --experimental-websocket server.mjs --port 0 [flags]     (Node 20; on Node >= 22 the flag is not needed)
//
// Prints exactly one line to stdout once it accepts requests: `listening http://127.0.0.1:<port>`,
// or with --tls-cert `listening https://127.0.0.1:<port> control http://127.0.0.1:<control port>`.
// Everything else goes to stderr.

import { fstatSync, readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { parseArgs } from 'node:util';
import { Auth } from './auth.mjs';
import { DEFAULTS, Faults } from './faults.mjs';

const HOST = '127.0.0.1';
const FHIR_BASE = '/fhir/R4';
const FHIR_JSON = 'application/fhir+json; charset=utf-8';
const MAX_BODY = 64 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Command line

const flagName = (key) => key.replaceAll('_', '-');
const options = {
  port: { type: 'string' },
  'control-port': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'tls-client-ca': { type: 'string' },
  'smart-jwks': { type: 'string' },
  'smart-client-id': { type: 'string' },
  'sf-public-key': { type: 'string' },
  'sf-consumer-key': { type: 'string' },
  'sf-user': { type: 'string' },
  'sf-login-url': { type: 'string' },
  'static-token': { type: 'string', multiple: true },
  'token-ttl': { type: 'string', default: '300' },
  'stdin-watch': { type: 'string', default: 'auto' },
  control: { type: 'string' },
  lenient: { type: 'boolean', default: false },
  'medplum-tx-limits': { type: 'boolean', default: false },
  verbose: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
};
// Every control key is also a flag: fail_every_n_429 -> --fail-every-n-429 N, down -> --down, ...
for (const [key, value] of Object.entries(DEFAULTS)) {
  options[flagName(key)] = { type: typeof value === 'boolean' ? 'boolean' : 'string' };
}

let args;
try {
  args = parseArgs({ options, strict: true, allowPositionals: false }).values;
} catch (err) {
  die(`${err.message}\n(try --help)`);
}
if (args.help) {
  process.stderr.write(`usage: node --experimental-websocket server.mjs [--port N] [flags]
  --port N                 listen on 127.0.0.1:N (default: env PORT, else 0 = ephemeral)
  --control-port N         also serve /__control, /__dump, /__log on this port (0 = ephemeral, printed on stderr)
  --tls-cert FILE          serve HTTPS with this PEM certificate chain (needs --tls-key); the control routes
                           are then also served over plain HTTP on --control-port (default 0 = ephemeral), and
                           the stdout line is \`listening https://127.0.0.1:<port> control http://127.0.0.1:<cport>\`
  --tls-key FILE           PEM private key of --tls-cert
  --tls-client-ca FILE     require a client certificate issued by this PEM CA (mutual TLS; needs --tls-cert)
  --smart-jwks FILE        JWKS / JWK / PEM public key for SMART client assertions (RS384, ES384)
  --smart-client-id ID     required iss == sub of SMART client assertions
  --sf-public-key FILE     PEM public key (or certificate) for Salesforce JWT bearer assertions (RS256)
  --sf-consumer-key KEY    required iss of Salesforce assertions
  --sf-user USER           required sub of Salesforce assertions
  --sf-login-url URL       required aud of Salesforce assertions (default http://127.0.0.1:<port>)
  --require-auth           FHIR routes need "Authorization: Bearer <token>"
  --static-token TOKEN     always-valid bearer token (repeatable)
  --token-ttl SECS         lifetime of issued tokens (default 300)
  --stdin-watch auto|on|off  exit when stdin closes (auto: only when stdin is a pipe or socket)
  --control JSON           initial control state, as for POST /__control
  --lenient                accept what Medplum's validateResource only warns about (conflicting value[x],
                           reference to a type the element does not allow, unresolved urn:uuid)
  --medplum-tx-limits      keep fhir-router's own limits: a transaction with a conditional entry has
                           at most 8 entries, and any transaction at most 50 updates (lifted by default)
  --verbose                log requests to stderr
 fault switches (same as the /__control keys):
${Object.entries(DEFAULTS)
  .map(([k, v]) => `  --${flagName(k)}${typeof v === 'boolean' ? '' : ' VALUE'}   (default ${JSON.stringify(v)})`)
  .join('\n')}
`);
  process.exit(0);
}

function die(message) {
  process.stderr.write(`fhir-server: ${message}\n`);
  process.exit(2);
}

function portArg(value, what) {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) die(`${what}: not a port: ${value}`);
  return n;
}

const faults = new Faults();
try {
  const initial = {};
  for (const key of Object.keys(DEFAULTS)) {
    if (args[flagName(key)] !== undefined) initial[key] = args[flagName(key)];
  }
  if (args.control) Object.assign(initial, JSON.parse(args.control));
  faults.update(initial);
} catch (err) {
  die(err.message);
}

const tokenTtl = Number(args['token-ttl']);
if (!Number.isInteger(tokenTtl) || tokenTtl <= 0) die('--token-ttl: expected a positive integer');
const auth = new Auth(
  {
    smartJwks: args['smart-jwks'],
    smartClientId: args['smart-client-id'],
    sfPublicKey: args['sf-public-key'],
    sfConsumerKey: args['sf-consumer-key'],
    sfUser: args['sf-user'],
    sfLoginUrl: args['sf-login-url'],
    staticTokens: args['static-token'],
    tokenTtl,
  },
  faults
);

// TLS: files are read once at start (a bad path stops the server before the slow definitions load).
if (Boolean(args['tls-cert']) !== Boolean(args['tls-key'])) die('--tls-cert and --tls-key go together');
if (args['tls-client-ca'] && !args['tls-cert']) die('--tls-client-ca needs --tls-cert and --tls-key');
const readPem = (flag) => {
  try {
    return readFileSync(args[flag]);
  } catch (err) {
    return die(`--${flag}: ${err.message}`);
  }
};
const tls = args['tls-cert']
  ? {
      cert: readPem('tls-cert'),
      key: readPem('tls-key'),
      ...(args['tls-client-ca'] ? { ca: readPem('tls-client-ca'), requestCert: true, rejectUnauthorized: true } : {}),
    }
  : null;
const scheme = tls ? 'https' : 'http';
/** TLS handshakes on the main listener (only in TLS mode; cleared by `reset`). */
const freshTlsCounters = () => ({ handshakes: 0, handshake_errors: 0, errors: {}, client_certs: {} });
let tlsCounters = freshTlsCounters();

// @medplum/core reads the global WebSocket when it loads: Node 20 has it only behind a flag.
if (typeof globalThis.WebSocket === 'undefined') {
  die(`Node ${process.version} has no global WebSocket, which @medplum/core needs: run \`node --experimental-websocket server.mjs\``);
}
const { Store, createValidator, getStatus } = await import('./fhir.mjs');
const store = new Store(createValidator({ strict: !args.lenient }), { medplumTxLimits: args['medplum-tx-limits'] });
const { Salesforce, useStatus } = await import('./salesforce.mjs');
useStatus(getStatus);
const salesforce = new Salesforce(store, faults);

// ---------------------------------------------------------------------------------------------
// HTTP plumbing

const outcome = (code, text, expression) => ({
  resourceType: 'OperationOutcome',
  issue: [{ severity: 'error', code, details: { text }, diagnostics: text, ...(expression ? { expression: [expression] } : {}) }],
});

function send(res, status, body, headers = {}, contentType = 'application/json') {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** Sends a FHIR response: counts its status and adds the Sforce-Limit-Info header when set. */
function fhirSend(res, status, body, headers = {}) {
  faults.countStatus(status);
  if (faults.state.sforce_limit) headers['Sforce-Limit-Info'] = faults.state.sforce_limit;
  send(res, status, body, headers, FHIR_JSON);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(Object.assign(new Error(`request body over ${MAX_BODY} bytes`), { status: 413 }));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

const origin = () => `${scheme}://${HOST}:${port}`;

// ---------------------------------------------------------------------------------------------
// FHIR routes

const hung = new Set(); // responses of requests that are never answered

/** A path under `prefix` (the prefix itself or below it). */
const under = (p, prefix) => prefix !== '' && (p === prefix || p.startsWith(`${prefix}/`));

async function fhirRequest(req, res, url, basePath = FHIR_BASE) {
  const method = req.method;
  const rel = url.pathname.slice(basePath.length).replace(/^\/+/, '') + url.search; // "Patient?identifier=..."
  const raw = await readBody(req);

  switch (faults.next()) {
    case 'down':
      if (faults.state.down_mode === 'refuse') return req.socket.destroy();
      return fhirSend(res, 503, outcome('transient', 'service unavailable (fault switch "down")'), { 'Retry-After': faults.retryAfter() });
    case 'drop':
      return req.socket.destroy();
    case 'hang':
      hung.add(res);
      res.on('close', () => hung.delete(res));
      return;
    case '429':
      return fhirSend(res, 429, outcome('throttled', 'too many requests (fault switch "fail_every_n_429")'), { 'Retry-After': faults.retryAfter() });
    case '500':
      return fhirSend(res, 500, outcome('exception', 'internal error (fault switch "fail_every_n_500")'));
  }

  const path = rel.split('?')[0];
  if (method === 'GET' && path === 'metadata') return fhirSend(res, 200, capabilityStatement());
  if (method === 'GET' && path === '.well-known/smart-configuration') return fhirSend(res, 200, smartConfiguration());

  if (faults.state.require_auth) {
    const why = auth.check(req.headers.authorization);
    if (why) {
      faults.counters.auth_rejected++;
      return fhirSend(res, 401, outcome('login', why), { 'WWW-Authenticate': `Bearer error="invalid_token", error_description="${why}"` });
    }
  }

  if (faults.state.reject_marker && raw.includes(faults.state.reject_marker)) {
    return fhirSend(res, 400, outcome('business-rule', 'refused by a server rule (fault switch "reject_marker")'));
  }

  let body;
  if (raw.length) {
    if (/^application\/x-www-form-urlencoded\b/i.test(req.headers['content-type'] ?? '')) {
      body = Object.fromEntries(new URLSearchParams(raw)); // POST Type/_search
    } else {
      try {
        body = JSON.parse(raw);
      } catch (err) {
        return fhirSend(res, 400, outcome('structure', `request body is not JSON: ${err.message}`));
      }
    }
  }

  if (faults.state.salesforce) {
    const api = basePath === FHIR_BASE ? 'fhir' : 'patient';
    const [status, answer] = await salesforce.handle(method, path, rel, body, api);
    return fhirSend(res, status, answer);
  }

  if (faults.state.latency_ms > 0) await new Promise((r) => setTimeout(r, faults.state.latency_ms));
  const [oc, resource] = await store.handle(method, rel, body, req.headers);
  const status = getStatus(oc);
  const headers = {};
  if (resource?.resourceType === 'Bundle' && resource.type === 'searchset') {
    for (const e of resource.entry ?? []) e.fullUrl ??= `${origin()}${FHIR_BASE}/${e.resource.resourceType}/${e.resource.id}`;
  } else if (resource?.id && resource.meta?.versionId && status < 300) {
    headers.ETag = `W/"${resource.meta.versionId}"`;
    if (resource.meta.lastUpdated) headers['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
    if (status === 201) headers.Location = `${origin()}${FHIR_BASE}/${resource.resourceType}/${resource.id}/_history/${resource.meta.versionId}`;
  }
  return fhirSend(res, status, resource ?? oc, headers);
}

function capabilityStatement() {
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: new Date().toISOString(),
    kind: 'instance',
    fhirVersion: '4.0.1',
    format: ['json'],
    implementation: { description: 'gateway test FHIR server (Medplum fhir-router, in memory)', url: `${origin()}${FHIR_BASE}` },
    rest: [
      {
        mode: 'server',
        security: {
          extension: [
            {
              url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris',
              extension: [{ url: 'token', valueUri: auth.tokenUrl }],
            },
          ],
        },
        interaction: [{ code: 'transaction' }, { code: 'batch' }, { code: 'search-system' }],
      },
    ],
  };
}

function smartConfiguration() {
  return {
    token_endpoint: auth.tokenUrl,
    token_endpoint_auth_methods_supported: ['private_key_jwt'],
    token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
    grant_types_supported: ['client_credentials'],
    scopes_supported: ['system/*.*', 'system/*.read', 'system/*.write'],
    capabilities: ['client-confidential-asymmetric'],
  };
}

// ---------------------------------------------------------------------------------------------
// Token and control routes

async function tokenRequest(req, res) {
  if (req.method !== 'POST') return send(res, 405, { error: 'invalid_request', error_description: 'use POST' }, { Allow: 'POST' });
  const raw = await readBody(req);
  const { status, body } = await auth.token(req.headers['content-type'], raw);
  send(res, status, body, { 'Cache-Control': 'no-store', Pragma: 'no-cache' });
}

function controlView() {
  return {
    state: faults.state,
    counters: { ...faults.counters, ...store.stats, salesforce: salesforce.counters, ...(tls ? { tls: tlsCounters } : {}) },
    base_url: `${origin()}${FHIR_BASE}`,
    token_url: auth.tokenUrl,
    listening: server.listening,
  };
}

async function controlRequest(req, res, url) {
  const route = `${req.method} ${url.pathname}`;
  const q = url.searchParams;
  switch (route) {
    case 'GET /__health':
      return send(res, 200, { ok: true });
    case 'GET /__control':
      return send(res, 200, controlView());
    case 'POST /__control': {
      const raw = await readBody(req);
      let changes;
      try {
        changes = faults.update(raw.trim() ? JSON.parse(raw) : {});
      } catch (err) {
        return send(res, 400, { error: err.message });
      }
      if (changes.actions.includes('reset')) {
        salesforce.reset();
        await store.run(() => store.reset());
        tlsCounters = freshTlsCounters();
      }
      const downChanged = ['down', 'down_mode', 'down_for_secs'].some((k) => changes.changed.includes(k)) || changes.actions.includes('reset_faults');
      if (downChanged) armDownTimer();
      // Answer first: going "refuse" closes this very connection.
      const text = JSON.stringify(controlView());
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
      res.end(text, () => downChanged && applyDown().catch((err) => warn(`down switch: ${err.message}`)));
      return;
    }
    case 'GET /__dump':
      return send(res, 200, await store.run(() => store.dump(q.get('type') ?? undefined)));
    case 'GET /__log': {
      const writes = /^(1|true)$/.test(q.get('writes') ?? '');
      const withRolledBack = /^(1|true)$/.test(q.get('include_rolled_back') ?? '');
      const type = q.get('type');
      const entries = store.log.filter(
        (e) => (withRolledBack || !e.rolled_back) && (!writes || e.method !== 'GET') && (!type || e.type === type)
      );
      return send(res, 200, entries);
    }
  }
  return send(res, 404, { error: `no route ${route}` });
}

// ---------------------------------------------------------------------------------------------
// Servers and lifecycle

const verbose = args.verbose;
const warn = (m) => process.stderr.write(`fhir-server: ${m}\n`);

/** An HTTP server, or HTTPS with `tlsOptions` (then its handshakes are counted in `tlsCounters`). */
function makeServer(handler, tlsOptions = null) {
  const onRequest = async (req, res) => {
    const started = Date.now();
    if (verbose) res.on('finish', () => warn(`${req.method} ${req.url} -> ${res.statusCode} (${Date.now() - started} ms)`));
    try {
      await handler(req, res, new URL(req.url, `http://${HOST}`));
    } catch (err) {
      warn(`${req.method} ${req.url}: ${err.stack ?? err}`);
      if (!res.headersSent) send(res, err.status ?? 500, outcome('exception', err.message), {}, FHIR_JSON);
      else res.destroy();
    }
  };
  const srv = tlsOptions ? https.createServer(tlsOptions, onRequest) : http.createServer(onRequest);
  if (tlsOptions) {
    srv.on('secureConnection', (s) => {
      tlsCounters.handshakes++;
      const cn = s.getPeerCertificate()?.subject?.CN;
      if (cn) tlsCounters.client_certs[cn] = (tlsCounters.client_certs[cn] ?? 0) + 1;
    });
    srv.on('tlsClientError', (err) => {
      tlsCounters.handshake_errors++;
      const code = err.code ?? 'unknown';
      tlsCounters.errors[code] = (tlsCounters.errors[code] ?? 0) + 1;
      if (verbose) warn(`TLS handshake failed: ${err.code ?? ''} ${err.message}`);
    });
  }
  // Generous keep-alive: a client may reuse a connection after waiting on a long request queue.
  srv.keepAliveTimeout = 30_000;
  srv.sockets = new Set();
  srv.on('connection', (s) => {
    srv.sockets.add(s);
    s.on('close', () => srv.sockets.delete(s));
  });
  return srv;
}

const server = makeServer((req, res, url) => {
  const p = url.pathname;
  if (p === FHIR_BASE || p.startsWith(`${FHIR_BASE}/`)) return fhirRequest(req, res, url);
  const patientBase = faults.state.salesforce ? faults.state.salesforce_patient_base : '';
  if (under(p, patientBase)) return fhirRequest(req, res, url, patientBase);
  if (p === '/token' || p === '/services/oauth2/token') return tokenRequest(req, res);
  if (p.startsWith('/__')) return controlRequest(req, res, url);
  return send(res, 404, outcome('not-found', `no route ${req.method} ${p} (FHIR base is ${FHIR_BASE})`), {}, FHIR_JSON);
}, tls);

function listen(srv, p) {
  return new Promise((resolve, reject) => {
    const onError = (err) => reject(err);
    srv.once('error', onError);
    srv.listen(p, HOST, () => {
      srv.off('error', onError);
      resolve(srv.address().port);
    });
  });
}

let downTimer;
function armDownTimer() {
  clearTimeout(downTimer);
  const secs = faults.state.down_for_secs;
  if (faults.state.down && secs > 0) {
    downTimer = setTimeout(() => {
      faults.state.down = false;
      applyDown().catch((err) => warn(`down switch: ${err.message}`));
    }, secs * 1000);
    downTimer.unref();
  }
}

/** down_mode "refuse": close the listening socket (and open connections); reopen on the same port when cleared. */
async function applyDown() {
  const refuse = faults.state.down && faults.state.down_mode === 'refuse';
  if (refuse && server.listening) {
    server.close();
    for (const s of server.sockets) s.destroy();
    warn('down (refuse): listener closed');
  } else if (!refuse && !server.listening && !shuttingDown) {
    for (let attempt = 0; ; attempt++) {
      try {
        await listen(server, port);
        warn(`up again on port ${port}`);
        return;
      } catch (err) {
        if (attempt >= 50) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
}

let shuttingDown = false;
function shutdown(why) {
  if (shuttingDown) return;
  shuttingDown = true;
  if (verbose) warn(`shutting down: ${why}`);
  for (const srv of [server, controlServer]) {
    if (!srv) continue;
    srv.close();
    for (const s of srv.sockets) s.destroy();
  }
  process.exit(0);
}

const port = await listen(server, portArg(args.port ?? process.env.PORT ?? '0', '--port')).catch((err) => die(`cannot listen: ${err.message}`));
auth.origin = origin();

// With TLS, the control routes are also on plain HTTP (test harnesses drive them without a TLS client).
let controlServer;
let cport;
const controlPort = args['control-port'] ?? (tls ? '0' : undefined);
if (controlPort !== undefined) {
  controlServer = makeServer((req, res, url) => controlRequest(req, res, url));
  cport = await listen(controlServer, portArg(controlPort, '--control-port')).catch((err) => die(`cannot listen: ${err.message}`));
  warn(`control http://${HOST}:${cport}`);
}

await applyDown(); // --down --down-mode refuse at start
armDownTimer();

process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
const stdinMode = args['stdin-watch'];
if (!['auto', 'on', 'off'].includes(stdinMode)) die('--stdin-watch: expected auto, on or off');
let stdinIsPipe = false;
try {
  const st = fstatSync(0);
  stdinIsPipe = st.isFIFO() || st.isSocket();
} catch {
  // no stdin at all
}
if (stdinMode === 'on' || (stdinMode === 'auto' && stdinIsPipe)) {
  process.stdin.on('end', () => shutdown('stdin closed'));
  process.stdin.on('close', () => shutdown('stdin closed'));
  process.stdin.on('error', () => shutdown('stdin error'));
  process.stdin.resume();
}

process.stdout.write(tls ? `listening ${origin()} control http://${HOST}:${cport}\n` : `listening ${origin()}\n`);
