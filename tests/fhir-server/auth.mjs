// Token endpoint and bearer-token check of the test FHIR server.
//  - SMART Backend Services: client_credentials + private_key_jwt client assertion (RS384 / ES384).
//  - Salesforce OAuth 2.0 JWT bearer flow (RS256).
// Key files are re-read on every token request, so a test may rotate them while the server runs.

import { createPublicKey, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';

const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const SMART_ALGS = ['RS384', 'ES384'];
const SF_ALGS = ['RS256'];
const SMART_MAX_EXP_SECS = 300; // exp <= now + 5 min
const SF_MAX_EXP_SECS = 180; // exp <= now + 3 min

/** A key file as a jose key (or key-resolver function): JWKS / single JWK JSON, or PEM (public key, cert, or private key). */
function loadKey(file) {
  const text = readFileSync(file, 'utf8').trim();
  if (text.startsWith('-----BEGIN')) return createPublicKey(text);
  const json = JSON.parse(text);
  return createLocalJWKSet(Array.isArray(json.keys) ? json : { keys: [json] });
}

class OAuthError extends Error {
  constructor(status, error, description) {
    super(description);
    this.status = status;
    this.error = error;
  }
}

const nowSecs = () => Math.floor(Date.now() / 1000);
const stripSlash = (u) => String(u).replace(/\/+$/, '');

export class Auth {
  /**
   * @param {object} opts - { smartJwks, smartClientId, sfPublicKey, sfConsumerKey, sfUser, sfLoginUrl, staticTokens, tokenTtl }
   * @param {import('./faults.mjs').Faults} faults - for expire_tokens_after_secs and counters
   */
  constructor(opts, faults) {
    this.opts = opts;
    this.faults = faults;
    this.origin = undefined; // set once listening: http://127.0.0.1:<port>
    this.tokens = new Map(); // access_token -> { kind, issuedMs, ttl, scope, sub }
    this.jtis = new Map(); // jti -> exp (secs), for replay detection
    this.staticTokens = new Set(opts.staticTokens ?? []);
  }

  get tokenUrl() {
    return `${this.origin}/token`;
  }

  get sfLoginUrl() {
    return this.opts.sfLoginUrl ?? this.origin;
  }

  /** Handles a token request. @returns {{ status: number, body: object }} */
  async token(contentType, rawBody) {
    try {
      if (!/^application\/x-www-form-urlencoded\b/i.test(contentType ?? '')) {
        throw new OAuthError(400, 'invalid_request', 'Content-Type must be application/x-www-form-urlencoded');
      }
      const form = new URLSearchParams(rawBody);
      const grant = form.get('grant_type');
      let body;
      if (grant === 'client_credentials') body = await this.smart(form);
      else if (grant === JWT_BEARER_GRANT) body = await this.salesforce(form);
      else throw new OAuthError(400, 'unsupported_grant_type', `unsupported grant_type: ${grant}`);
      this.faults.counters.tokens_issued++;
      return { status: 200, body };
    } catch (err) {
      this.faults.counters.token_errors++;
      if (err instanceof OAuthError) return { status: err.status, body: { error: err.error, error_description: err.message } };
      throw err;
    }
  }

  async smart(form) {
    if (!this.opts.smartJwks) throw new OAuthError(400, 'unauthorized_client', 'SMART backend services not configured (--smart-jwks)');
    if (form.get('client_assertion_type') !== CLIENT_ASSERTION_TYPE) {
      throw new OAuthError(400, 'invalid_request', `client_assertion_type must be ${CLIENT_ASSERTION_TYPE}`);
    }
    const assertion = form.get('client_assertion');
    if (!assertion) throw new OAuthError(400, 'invalid_request', 'missing client_assertion');
    const header = this.header(assertion, 'invalid_client', 401);
    if (!header.kid) throw new OAuthError(401, 'invalid_client', 'client_assertion header has no kid');
    const clientId = this.opts.smartClientId;
    const payload = await this.verify(assertion, this.opts.smartJwks, {
      algorithms: SMART_ALGS,
      audience: this.tokenUrl,
      ...(clientId ? { issuer: clientId, subject: clientId } : {}),
      requiredClaims: ['iss', 'sub', 'aud', 'exp', 'jti'],
    }, 'invalid_client', 401);
    if (payload.iss !== payload.sub) throw new OAuthError(401, 'invalid_client', 'iss must equal sub');
    const formClient = form.get('client_id');
    if (formClient && formClient !== payload.iss) throw new OAuthError(401, 'invalid_client', 'client_id does not match iss');
    if (payload.exp > nowSecs() + SMART_MAX_EXP_SECS) {
      throw new OAuthError(401, 'invalid_client', `exp is more than ${SMART_MAX_EXP_SECS} s in the future`);
    }
    this.useJti(payload.jti, payload.exp);
    const scope = form.get('scope') || 'system/*.*';
    const access_token = this.issue({ kind: 'smart', sub: payload.sub, scope });
    return { access_token, token_type: 'bearer', expires_in: this.opts.tokenTtl, scope };
  }

  async salesforce(form) {
    if (!this.opts.sfPublicKey) throw new OAuthError(400, 'invalid_grant', 'Salesforce JWT bearer flow not configured (--sf-public-key)');
    const assertion = form.get('assertion');
    if (!assertion) throw new OAuthError(400, 'invalid_request', 'missing assertion');
    this.header(assertion, 'invalid_grant', 400);
    const { sfConsumerKey, sfUser } = this.opts;
    const payload = await this.verify(assertion, this.opts.sfPublicKey, {
      algorithms: SF_ALGS,
      ...(sfConsumerKey ? { issuer: sfConsumerKey } : {}),
      ...(sfUser ? { subject: sfUser } : {}),
      requiredClaims: ['iss', 'sub', 'aud', 'exp'],
    }, 'invalid_grant', 400);
    const auds = [payload.aud].flat().map(stripSlash);
    if (!auds.includes(stripSlash(this.sfLoginUrl))) {
      throw new OAuthError(400, 'invalid_grant', `audience is invalid: expected ${this.sfLoginUrl}`);
    }
    if (payload.exp > nowSecs() + SF_MAX_EXP_SECS) {
      throw new OAuthError(400, 'invalid_grant', `expiration is more than ${SF_MAX_EXP_SECS} s in the future`);
    }
    const access_token = this.issue({ kind: 'salesforce', sub: payload.sub, scope: 'api' });
    return {
      access_token,
      instance_url: this.origin,
      id: `${this.origin}/id/00D000000000000AAA/005000000000000AAA`,
      token_type: 'Bearer',
      issued_at: String(Date.now()),
      scope: 'api',
    };
  }

  header(jwt, error, status) {
    try {
      return decodeProtectedHeader(jwt);
    } catch (err) {
      throw new OAuthError(status, error, `malformed JWT: ${err.message}`);
    }
  }

  async verify(jwt, keyFile, options, error, status) {
    let key;
    try {
      key = loadKey(keyFile);
    } catch (err) {
      throw new OAuthError(500, 'server_error', `cannot load key file ${keyFile}: ${err.message}`);
    }
    try {
      return (await jwtVerify(jwt, key, options)).payload;
    } catch (err) {
      const claim = err.claim ? ` (claim ${err.claim})` : '';
      throw new OAuthError(status, error, `${err.code ?? 'ERR'}: ${err.message}${claim}`);
    }
  }

  useJti(jti, exp) {
    const now = nowSecs();
    for (const [k, e] of this.jtis) if (e < now) this.jtis.delete(k);
    if (this.jtis.has(jti)) throw new OAuthError(401, 'invalid_grant', `jti already used: ${jti}`);
    this.jtis.set(jti, exp);
  }

  issue({ kind, sub, scope }) {
    const token = randomBytes(24).toString('base64url');
    this.tokens.set(token, { kind, sub, scope, issuedMs: Date.now(), ttl: this.opts.tokenTtl });
    return token;
  }

  /** @returns {string | null} why the Authorization header is not acceptable, or null if it is */
  check(authorization) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
    if (!m) return 'missing Bearer token';
    const token = m[1];
    if (this.staticTokens.has(token)) return null;
    const t = this.tokens.get(token);
    if (!t) return 'unknown access token';
    let life = t.ttl;
    const early = this.faults.state.expire_tokens_after_secs;
    if (early > 0) life = Math.min(life, early);
    if (Date.now() >= t.issuedMs + life * 1000) return 'access token expired';
    return null;
  }
}
